//! LayerNorm / RMSNorm over the last axis.

pub use aka_core::format::GptNorm;

use super::{Init, ParamSource};
use crate::autograd::{Array, Tensor};
use ndarray::IxDyn;

/// A LayerNorm or RMSNorm over the last axis, `x: [.., d] -> [.., d]`:
/// LayerNorm is PyTorch's `LayerNorm(d, eps)` (biased variance, weight and bias), RMSNorm is
/// `x / sqrt(mean(x²) + eps) · weight` (no bias).
pub struct Norm {
    /// `[d]`, initialised to 1.
    pub weight: Tensor,
    /// `[d]`, initialised to 0; `Some` exactly for LayerNorm.
    pub bias: Option<Tensor>,
    /// Added to the variance (mean square) under the square root.
    pub eps: f32,
}

impl Norm {
    /// A fresh norm of width `d`: weight 1, bias 0 (LayerNorm only).
    pub fn new(kind: GptNorm, d: usize, eps: f32) -> Self {
        Self {
            weight: Tensor::param(Array::ones(IxDyn(&[d]))),
            bias: (kind == GptNorm::LayerNorm).then(|| Tensor::param(Array::zeros(IxDyn(&[d])))),
            eps,
        }
    }

    /// Takes `{prefix}.weight` `[d]` and, for LayerNorm, `{prefix}.bias` `[d]` from `params`.
    pub(crate) fn build(
        prefix: &str,
        kind: GptNorm,
        d: usize,
        eps: f32,
        params: &mut ParamSource,
    ) -> Self {
        let weight = params.take(format!("{prefix}.weight"), &[d], Init::Ones);
        let bias = (kind == GptNorm::LayerNorm)
            .then(|| params.take(format!("{prefix}.bias"), &[d], Init::Zeros));
        Self { weight, bias, eps }
    }

    /// `x: [.., d] -> [.., d]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match &self.bias {
            Some(b) => x.layer_norm(&self.weight, Some(b), self.eps),
            None => x.rms_norm(&self.weight, self.eps),
        }
    }
}
