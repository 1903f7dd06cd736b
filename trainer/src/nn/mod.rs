//! Layers and models, one file per layer.
//!
//! Two ways to write a model, as in the tutorial:
//! - [`Sequential`]: a list of [`Layer`]s run in order, e.g. the MNIST MLP
//!   `Sequential::new([Flatten.into(), Linear::new(784, 576, rng).into(), ReLU.into(), Linear::new(576, 10, rng).into()])`.
//!   Its parameters are named by position (`1.weight`, `1.bias`, ...), and the int8 exporter knows
//!   how to lower every layer.
//! - Plain code: any type implementing [`Module`] with its own parameters and `forward` (see
//!   `trainer/examples/custom_module.rs`), like [`Gpt`], built from [`Norm`], [`Attention`],
//!   [`Mlp`] and [`Block`].
//!
//! Shapes follow PyTorch: images are NCHW `[n, c, h, w]`; `Linear` weights are `[out, in]`;
//! `Conv2d` weights are `[c_out, c_in, kh, kw]`.
//!
//! | file | layers |
//! |---|---|
//! | `linear.rs` | [`Linear`] |
//! | `conv.rs` | [`Conv2d`], [`MaxPool2d`] |
//! | `norm.rs` | [`Norm`] (LayerNorm / RMSNorm) |
//! | `attention.rs` | [`Attention`] (causal multi-head self-attention) |
//! | `mlp.rs` | [`Mlp`] (GELU / SwiGLU / GeGLU feed-forward) |
//! | `block.rs` | [`Block`] (pre-norm transformer block) |
//! | `sequential.rs` | [`Sequential`], [`Layer`], [`Flatten`], [`ReLU`], [`Dropout`], the MNIST models |
//! | `gpt.rs` | [`GptConfig`], [`Gpt`] |
//! | `qat.rs` | the fake-quantization hook of quantization-aware training ([`qat::weight`]) |

use aka_core::rng::Rng;
use ndarray::IxDyn;

use crate::autograd::{Array, Tensor};

mod attention;
mod block;
mod conv;
pub mod gpt;
mod linear;
mod mlp;
mod norm;
pub mod qat;
mod sequential;

pub use attention::Attention;
pub use block::Block;
pub use conv::{Conv2d, MaxPool2d};
pub use gpt::{Gpt, GptConfig, Tap};
pub use linear::Linear;
pub use mlp::Mlp;
pub use norm::Norm;
pub use sequential::{mnist_cnn, mnist_mlp, Dropout, Flatten, Layer, ReLU, Sequential};

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

/// How a parameter is initialised when a model is built fresh.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Init {
    /// Normal(0, std²), one `rng.normal()` per element in row-major order.
    Normal(f32),
    /// All ones (norm weights).
    Ones,
    /// All zeros (norm biases).
    Zeros,
}

/// Where the parameters of a model come from while it is built. A model's `build` asks for its
/// parameters in their one fixed order; the source decides what each becomes (fresh init, given
/// tensors, or only a recorded name and shape), and [`ParamSource::take`] records every one, so
/// building, loading, listing the shapes and [`Module::parameters`] cannot disagree.
pub(crate) struct ParamSource<'a> {
    make: &'a mut dyn FnMut(&str, &[usize], Init) -> Tensor,
    /// Every parameter taken so far, in order.
    pub taken: Vec<(String, Tensor)>,
}

impl<'a> ParamSource<'a> {
    /// A source whose parameters are `make(name, shape, init)`.
    pub fn new(make: &'a mut dyn FnMut(&str, &[usize], Init) -> Tensor) -> Self {
        Self {
            make,
            taken: Vec::new(),
        }
    }

    /// The next parameter, `name` with `shape`.
    pub fn take(&mut self, name: String, shape: &[usize], init: Init) -> Tensor {
        let t = (self.make)(&name, shape, init);
        self.taken.push((name, t.clone()));
        t
    }
}
