//! [`Sequential`]: layers run in order, each a [`Layer`] the int8 exporter knows how to lower;
//! the parameter-free layers ([`Flatten`], [`ReLU`], [`Dropout`]); and the MNIST models.

use std::fmt::Write as _;

use aka_core::rng::Rng;
use ndarray::IxDyn;

use super::{Conv2d, Ctx, Linear, MaxPool2d, Module};
use crate::autograd::{no_grad, Array, Tensor};

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
            Layer::Linear(l) => l.forward(x),
            Layer::Conv2d(c) => c.forward(x),
            Layer::MaxPool2d(p) => p.forward(x),
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
