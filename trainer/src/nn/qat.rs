//! The fake-quantization hook of quantization-aware training.
//!
//! Layers read their weight matrices through [`weight`]. Normally that is the parameter itself;
//! inside [`with_fake_quant`] the registered parameters are replaced by their fake-quantized
//! values ([`Tensor::fake_quant`] with the exporter's own per-row quantization,
//! [`quantize_rows_as`] then [`dequantize`]), so the forward pass sees exactly the weights the
//! exported file will hold, and the straight-through gradient trains the float weights (which
//! stay float: the checkpoint holds them).

use std::cell::RefCell;

use crate::autograd::Tensor;
use crate::export::quantize::{dequantize, quantize_rows_as, WeightBits};

thread_local! {
    static FAKE_QUANT: RefCell<Vec<(Tensor, WeightBits)>> = const { RefCell::new(Vec::new()) };
}

/// `t`, fake-quantized per output row (`t.shape()[0]` rows) if it is registered by the
/// enclosing [`with_fake_quant`], else `t` itself.
pub fn weight(t: &Tensor) -> Tensor {
    let bits = FAKE_QUANT.with(|f| {
        f.borrow()
            .iter()
            .find(|(w, _)| w.same(t))
            .map(|&(_, bits)| bits)
    });
    match bits {
        Some(bits) => fake_quantize(t, bits),
        None => t.clone(),
    }
}

/// `t` fake-quantized per output row with `bits`, exactly as the exporter quantizes it.
pub fn fake_quantize(t: &Tensor, bits: WeightBits) -> Tensor {
    let rows = t.shape()[0];
    t.fake_quant(|v| dequantize(&quantize_rows_as(v, rows, bits)))
}

/// Runs `f` with the weights `weights` fake-quantized in every forward pass ([`weight`]).
/// Nested calls replace the set for their duration.
pub fn with_fake_quant<R>(weights: &[(Tensor, WeightBits)], f: impl FnOnce() -> R) -> R {
    struct Restore(Vec<(Tensor, WeightBits)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = std::mem::take(&mut self.0);
            FAKE_QUANT.with(|f| *f.borrow_mut() = old);
        }
    }
    let _restore = Restore(FAKE_QUANT.with(|f| f.replace(weights.to_vec())));
    f()
}
