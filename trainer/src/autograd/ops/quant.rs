//! Fake quantization with a straight-through estimator, for quantization-aware training.
//!
//! [`Tensor::fake_quant`] replaces a weight by what its quantized form stands for (`s · q`,
//! computed by the caller's quantizer, e.g. the exporter's own
//! `export::quantize::quantize_rows_as` + `dequantize`) in the forward pass, and passes the
//! gradient straight through in the backward pass (`d out / d w = 1`, the straight-through
//! estimator of Bengio et al. 2013): rounding has a zero derivative almost everywhere, so the
//! float weight is trained as if the rounding were the identity while the loss sees the rounded
//! weight.

use super::{array, std_slice};
use crate::autograd::tensor::Tensor;

impl Tensor {
    /// `quantize(values)` in the forward pass (same shape; `quantize` receives the row-major
    /// values and returns as many), the identity's gradient in the backward pass.
    ///
    /// Panics if `quantize` returns a different number of values.
    pub fn fake_quant(&self, quantize: impl FnOnce(&[f32]) -> Vec<f32>) -> Tensor {
        let shape = self.shape();
        let q = {
            let v = self.value();
            let values = std_slice(&v);
            let q = quantize(&values);
            assert_eq!(
                q.len(),
                values.len(),
                "fake_quant: the quantizer changed the length"
            );
            q
        };
        Tensor::from_op("fake_quant", array(&shape, q), vec![self.clone()], |c| {
            vec![Some(c.grad.clone())]
        })
    }
}
