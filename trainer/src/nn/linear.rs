//! Fully connected layer.

use aka_core::rng::Rng;

use super::uniform;
use crate::autograd::Tensor;

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

    /// `x: [n, in] -> [n, out]` (more leading axes are flattened and restored).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&super::qat::weight(&self.weight), self.bias.as_ref())
    }
}
