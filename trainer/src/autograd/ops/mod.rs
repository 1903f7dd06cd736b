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
//! arithmetic either way, so results do not depend on the instruction set either. (The matrix
//! products, `matmul` and `attention`'s, use the `gemm` crate's kernel for the CPU, FMA or not:
//! those depend on the instruction set, as `matrixmultiply`'s did.)

use std::borrow::Cow;
use std::mem::MaybeUninit;

use ndarray::IxDyn;
use rayon::prelude::*;

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

/// Elements per rayon task in elementwise and row-wise ops (`norm`, `rope`, activations): a
/// fixed block size, so the split does not depend on the thread count (and no element's
/// arithmetic depends on the split anyway).
const ROW_BLOCK_ELEMS: usize = 16 * 1024;

/// A new vector of `len` elements written block by block (blocks of `block` elements, one rayon
/// task each) by `fill(block_index, block)`, never zeroed first: `fill` must write every
/// element of its block (`MaybeUninit::write`). The blocks are fixed by `block`, not by the
/// thread count.
fn par_fill(
    len: usize,
    block: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut v = uninit_vec(len);
    v.par_chunks_mut(block.max(1))
        .enumerate()
        .for_each(|(i, b)| fill(i, b));
    assume_init(v)
}

/// `len` zeros, written over the rayon pool (a fresh buffer that a parallel kernel overwrites:
/// one thread zeroing 8 MB left the other idle).
fn par_zeros(len: usize) -> Vec<f32> {
    par_fill(len, ROW_BLOCK_ELEMS, |_, b| b.fill(MaybeUninit::new(0.0)))
}

/// Two vectors of `len` elements filled together, as [`par_fill`].
fn par_fill2(
    len: usize,
    block: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>], &mut [MaybeUninit<f32>]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let (mut a, mut b) = (uninit_vec(len), uninit_vec(len));
    a.par_chunks_mut(block.max(1))
        .zip(b.par_chunks_mut(block.max(1)))
        .enumerate()
        .for_each(|(i, (x, y))| fill(i, x, y));
    (assume_init(a), assume_init(b))
}

/// `len` elements not written yet (no zeroing), for kernels that write every one of them.
fn uninit_vec(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit<f32>` needs no initialisation; the capacity is `len`.
    unsafe { v.set_len(len) };
    v
}

/// Rows per rayon task for rows of `width` elements: about [`ROW_BLOCK_ELEMS`] elements, at
/// least one row (fixed by the width, not by the thread count).
fn block_rows(width: usize) -> usize {
    (ROW_BLOCK_ELEMS / width.max(1)).max(1)
}

/// The vector of a [`par_fill`] once every element has been written.
fn assume_init(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: same allocation, layout and length; the callers' `fill` wrote every element
    // (`MaybeUninit<f32>` has `f32`'s layout).
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, cap) }
}

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
