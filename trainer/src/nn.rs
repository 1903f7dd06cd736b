//! Layers and models.
//!
//! Two ways to write a model, as in the tutorial:
//! - [`Sequential`]: a list of [`Layer`]s run in order, e.g. the MNIST MLP
//!   `Sequential::new([Flatten.into(), Linear::new(784, 576, rng).into(), ReLU.into(), Linear::new(576, 10, rng).into()])`.
//!   Its parameters are named by position (`1.weight`, `1.bias`, ...), and the int8 exporter knows
//!   how to lower every layer.
//! - Plain code: any type implementing [`Module`] with its own parameters and `forward` (see
//!   `trainer/examples/custom_module.rs`).
//!
//! Shapes follow PyTorch: images are NCHW `[n, c, h, w]`; `Linear` weights are `[out, in]`;
//! `Conv2d` weights are `[c_out, c_in, kh, kw]`.

use std::fmt::Write as _;

use aka_core::rng::Rng;
use ndarray::IxDyn;

use crate::autograd::{no_grad, Array, Tensor};

/// Per-call state of a forward pass: training or evaluation, and the random stream dropout
/// draws its masks from.
pub struct Ctx {
    /// Training mode: dropout is active. In evaluation mode it is the identity.
    pub training: bool,
    /// Random stream for dropout masks.
    pub rng: Rng,
}

impl Ctx {
    /// Evaluation mode (no dropout; the rng is unused).
    pub fn eval() -> Self {
        Self {
            training: false,
            rng: Rng::new(0),
        }
    }

    /// Training mode drawing dropout masks from `rng`.
    pub fn train(rng: Rng) -> Self {
        Self {
            training: true,
            rng,
        }
    }
}

/// A differentiable function with named parameters.
pub trait Module {
    /// Runs the module on a batch.
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor;

    /// Trainable parameters with stable names, in a fixed order.
    fn parameters(&self) -> Vec<(String, Tensor)>;

    /// Total number of trainable scalars.
    fn parameter_count(&self) -> usize {
        self.parameters().iter().map(|(_, p)| p.value().len()).sum()
    }
}

/// Uniform init in `[-bound, bound]`.
fn uniform(shape: &[usize], bound: f32, rng: &mut Rng) -> Array {
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
        .collect();
    Array::from_shape_vec(IxDyn(shape), data).expect("shape")
}

/// Fully connected layer: `x [n, in] -> x·Wᵀ + b [n, out]`, weight `[out, in]`, bias `[out]`.
pub struct Linear {
    /// `[out, in]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
}

impl Linear {
    /// PyTorch's default initialisation: weight and bias uniform in `±1/sqrt(in_features)`
    /// (kaiming-uniform with `a = sqrt(5)`).
    pub fn new(in_features: usize, out_features: usize, rng: &mut Rng) -> Self {
        let bound = 1.0 / (in_features as f32).sqrt();
        let weight = Tensor::param(uniform(&[out_features, in_features], bound, rng));
        let bias = Some(Tensor::param(uniform(&[out_features], bound, rng)));
        Self { weight, bias }
    }

    /// `in_features`.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// `out_features`.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }
}

/// 2-D convolution over NCHW images: weight `[c_out, c_in, k, k]`, bias `[c_out]`.
pub struct Conv2d {
    /// `[c_out, c_in, k, k]`
    pub weight: Tensor,
    /// `[c_out]`
    pub bias: Option<Tensor>,
    /// Step between output positions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Conv2d {
    /// PyTorch's default initialisation: uniform in `±1/sqrt(c_in * k * k)`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        rng: &mut Rng,
    ) -> Self {
        let bound = 1.0 / ((c_in * kernel * kernel) as f32).sqrt();
        let weight = Tensor::param(uniform(&[c_out, c_in, kernel, kernel], bound, rng));
        let bias = Some(Tensor::param(uniform(&[c_out], bound, rng)));
        Self {
            weight,
            bias,
            stride,
            padding,
        }
    }
}

/// Max pooling over NCHW images with a square window.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
}

/// `[n, ...] -> [n, product(...)]`.
#[derive(Clone, Copy, Debug)]
pub struct Flatten;

/// `max(x, 0)`.
#[derive(Clone, Copy, Debug)]
#[allow(clippy::upper_case_acronyms)]
pub struct ReLU;

/// Inverted dropout with drop probability `p` in training; the identity in evaluation.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    /// Probability of zeroing an element.
    pub p: f32,
}

/// One layer of a [`Sequential`] model. The exporter lowers each variant to an int8 kernel.
pub enum Layer {
    Linear(Linear),
    Conv2d(Conv2d),
    MaxPool2d(MaxPool2d),
    Flatten(Flatten),
    ReLU(ReLU),
    Dropout(Dropout),
}

macro_rules! layer_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Layer {
            fn from(l: $t) -> Self {
                Layer::$t(l)
            }
        }
    )*};
}
layer_from!(Linear, Conv2d, MaxPool2d, Flatten, ReLU, Dropout);

impl Layer {
    /// A short description, e.g. `Linear(784 -> 576)`.
    pub fn describe(&self) -> String {
        match self {
            Layer::Linear(l) => format!("Linear({} -> {})", l.in_features(), l.out_features()),
            Layer::Conv2d(c) => {
                let s = c.weight.shape();
                format!(
                    "Conv2d({} -> {}, {}x{}, stride {}, pad {})",
                    s[1], s[0], s[2], s[3], c.stride, c.padding
                )
            }
            Layer::MaxPool2d(p) => {
                format!("MaxPool2d({}x{}, stride {})", p.kernel, p.kernel, p.stride)
            }
            Layer::Flatten(_) => "Flatten".into(),
            Layer::ReLU(_) => "ReLU".into(),
            Layer::Dropout(d) => format!("Dropout(p={})", d.p),
        }
    }

    /// This layer's own parameters, named `weight` / `bias`.
    pub fn parameters(&self) -> Vec<(&'static str, Tensor)> {
        let wb = |w: &Tensor, b: &Option<Tensor>| {
            let mut v = vec![("weight", w.clone())];
            v.extend(b.as_ref().map(|b| ("bias", b.clone())));
            v
        };
        match self {
            Layer::Linear(l) => wb(&l.weight, &l.bias),
            Layer::Conv2d(c) => wb(&c.weight, &c.bias),
            _ => Vec::new(),
        }
    }

    /// Runs the layer.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        match self {
            Layer::Linear(l) => x.linear(&l.weight, l.bias.as_ref()),
            Layer::Conv2d(c) => x.conv2d(&c.weight, c.bias.as_ref(), c.stride, c.padding),
            Layer::MaxPool2d(p) => x.max_pool2d(p.kernel, p.stride),
            Layer::Flatten(_) => x.flatten(1),
            Layer::ReLU(_) => x.relu(),
            Layer::Dropout(d) if ctx.training && d.p > 0.0 => x.dropout(d.p, &mut ctx.rng),
            Layer::Dropout(_) => x.clone(),
        }
    }
}

/// Layers run in order.
pub struct Sequential {
    /// The layers, in order.
    pub layers: Vec<Layer>,
}

impl Sequential {
    /// A model from its layers.
    pub fn new(layers: impl IntoIterator<Item = Layer>) -> Self {
        Self {
            layers: layers.into_iter().collect(),
        }
    }

    /// A table of each layer, its output shape for an input of `input_shape` (batch included),
    /// and its parameter count, with the total.
    pub fn summary(&self, input_shape: &[usize]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<4} {:<40} {:<20} {:>10}",
            "#", "layer", "output shape", "params"
        );
        let mut x = Tensor::new(Array::zeros(IxDyn(input_shape)));
        let mut ctx = Ctx::eval();
        no_grad(|| {
            for (i, layer) in self.layers.iter().enumerate() {
                x = layer.forward(&x, &mut ctx);
                let params: usize = layer
                    .parameters()
                    .iter()
                    .map(|(_, p)| p.value().len())
                    .sum();
                let _ = writeln!(
                    out,
                    "{i:<4} {:<40} {:<20} {params:>10}",
                    layer.describe(),
                    format!("{:?}", x.shape())
                );
            }
        });
        let _ = writeln!(out, "total parameters: {}", self.parameter_count());
        out
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        self.layers
            .iter()
            .fold(x.clone(), |x, layer| layer.forward(&x, ctx))
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, p) in layer.parameters() {
                out.push((format!("{i}.{name}"), p));
            }
        }
        out
    }
}

/// The tutorial's MNIST classifier: `Flatten, Linear(784, 576), ReLU, Linear(576, 10)`.
pub fn mnist_mlp(rng: &mut Rng) -> Sequential {
    Sequential::new([
        Flatten.into(),
        Linear::new(784, 576, rng).into(),
        ReLU.into(),
        Linear::new(576, 10, rng).into(),
    ])
}

/// A small LeNet-like CNN for 28x28 MNIST, under 100 k parameters so it fits a microcontroller:
/// `Conv(1->8, 3x3, pad 1), ReLU, MaxPool 2, Conv(8->16, 3x3, pad 1), ReLU, MaxPool 2, Flatten,
/// Dropout(0.25), Linear(784 -> 64), ReLU, Linear(64 -> 10)`.
pub fn mnist_cnn(rng: &mut Rng) -> Sequential {
    Sequential::new([
        Conv2d::new(1, 8, 3, 1, 1, rng).into(),
        ReLU.into(),
        MaxPool2d {
            kernel: 2,
            stride: 2,
        }
        .into(),
        Conv2d::new(8, 16, 3, 1, 1, rng).into(),
        ReLU.into(),
        MaxPool2d {
            kernel: 2,
            stride: 2,
        }
        .into(),
        Flatten.into(),
        Dropout { p: 0.25 }.into(),
        Linear::new(16 * 7 * 7, 64, rng).into(),
        ReLU.into(),
        Linear::new(64, 10, rng).into(),
    ])
}
