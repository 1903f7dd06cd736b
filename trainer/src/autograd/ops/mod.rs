//! The autograd operations, one file per concept. Each op is a method on [`Tensor`](super::Tensor) built with
//! [`Tensor::from_op`](super::Tensor::from_op) and a hand-written backward; every one has a finite-difference check in
//! `trainer/tests/gradcheck.rs` (the GPT's fused ones also in `trainer/tests/gpt_model.rs`,
//! against unfused references in `trainer/tests/reference/`).
//!
//! - [`math`]: the vectorisable `exp` / `tanh`, the GELU constants and activation derivatives.
//! - `elementwise`: broadcasting arithmetic, activations (ReLU, sigmoid, tanh, GELU, SiLU, the
//!   gated MLP activation), `exp`, `log`, dropout.
//! - `matmul`: the one parallel GEMM (`gemm`), `matmul`, `linear`, `linear_cat`.
//! - `reduce`: sums and means, softmax and log-softmax along an axis.
//! - `shape`: reshape, flatten, permute, transpose.
//! - `conv`: 2-D convolution (im2col) and max-pooling.
//! - `norm`: LayerNorm and RMSNorm over the last axis.
//! - `embedding`: table lookup, optionally plus a position table.
//! - `rope`: rotary position embedding (tables and rotation).
//! - `attention`: fused multi-head causal attention.
//! - `loss`: cross-entropy and mean squared error.
//! - `quant`: fake quantization with a straight-through gradient (quantization-aware training).
//!
//! Work split across the rayon pool is arranged so that each output element is computed by the
//! same sequence of operations whatever the split: results do not depend on the thread count.
//! Hot loops compiled twice (baseline and AVX2, chosen at run time, `with_avx2`) do the same
//! arithmetic either way, so results do not depend on the instruction set either.

use std::borrow::Cow;

use ndarray::IxDyn;

use super::tensor::Array;

/// Runs `$body` compiled for AVX2 when the CPU has it (8-wide vectors instead of SSE2's 4-wide);
/// the arithmetic, and so the result, is the same either way.
macro_rules! with_avx2 {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),* $(,)?)) => {
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: `avx2` only differs from `$body` in being compiled for AVX2,
                    // and the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub mod math;

mod attention;
mod conv;
mod elementwise;
mod embedding;
mod loss;
mod matmul;
mod norm;
mod quant;
mod reduce;
mod rope;
mod shape;

pub use elementwise::GateAct;

/// The contiguous row-major elements of `a` (copied only if `a` is not in standard layout).
fn std_slice(a: &Array) -> Cow<'_, [f32]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// An array of `shape` from row-major `data` (lengths must agree).
fn array(shape: &[usize], data: Vec<f32>) -> Array {
    Array::from_shape_vec(IxDyn(shape), data).expect("shape matches data")
}
