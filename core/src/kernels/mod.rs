//! Portable int8 kernels: plain functions on slices, no `unsafe`, no allocation.
//!
//! These are the reference implementations (bit-exact with TFLite's reference int8 kernels);
//! target-specific versions (e.g. Cortex-M4 DSP) must produce identical bytes.
//!
//! Conventions shared by all kernels:
//! * activations are int8, NHWC with N = 1 (`[h][w][c]`, channel fastest);
//! * weights are int8 stored as raw bytes (`&[u8]`, read as `b as i8`), symmetric (zero point 0);
//! * int32 per-channel arrays (bias, multipliers, shifts) are little-endian 4-byte groups;
//! * the int32 accumulator starts at the bias, which has the input zero point folded in
//!   (`bias' = bias - zp_in * Σ w`), so the inner loop is a plain `Σ x * w` with wrapping i32
//!   arithmetic (the accumulator of Arm's `SMLAD` wraps too);
//! * every kernel checks slice lengths against its shape first and returns
//!   [`Error::KernelShape`] on a mismatch (it never panics).

pub mod activation;
pub mod conv2d;
pub mod linear;
pub mod pool;

pub use activation::{argmax, relu};
pub use conv2d::{conv2d, Conv2dGeometry};
pub use linear::linear;
pub use pool::{max_pool2d, Pool2dGeometry};

use crate::quant::multiply_by_quantized_multiplier;
use crate::Error;

/// The per-output-channel "output stage" of Linear and Conv2d: bias, requantization and clamp.
///
/// For output channel `c`:
/// `y = clamp(MultiplyByQuantizedMultiplier(bias[c] + Σ x·w, multiplier[c], shift[c]) + zero_point, act_min, act_max)`.
#[derive(Clone, Copy, Debug)]
pub struct OutputStage<'a> {
    /// int32 LE, `out_channels * 4` bytes, input zero point already folded in.
    pub bias: &'a [u8],
    /// int32 LE Q31 multipliers, `out_channels * 4` bytes.
    pub multipliers: &'a [u8],
    /// int32 LE shifts, `out_channels * 4` bytes (clamped to `-31..=30`).
    pub shifts: &'a [u8],
    /// Output zero point.
    pub zero_point: i8,
    /// Lower clamp (fused ReLU: `zero_point`).
    pub act_min: i8,
    /// Upper clamp.
    pub act_max: i8,
}

/// One output channel's parameters, decoded.
#[derive(Clone, Copy, Debug)]
struct Channel {
    bias: i32,
    multiplier: i32,
    shift: i32,
}

impl<'a> OutputStage<'a> {
    /// True if all three arrays hold exactly `channels` int32 values.
    fn fits(&self, channels: usize) -> bool {
        let Some(bytes) = channels.checked_mul(4) else {
            return false;
        };
        self.bias.len() == bytes && self.multipliers.len() == bytes && self.shifts.len() == bytes
    }

    /// The channels' parameters, in order.
    fn channels(&self) -> impl Iterator<Item = Channel> + 'a {
        let le = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        self.bias
            .chunks_exact(4)
            .zip(self.multipliers.chunks_exact(4))
            .zip(self.shifts.chunks_exact(4))
            .map(move |((b, m), s)| Channel {
                bias: le(b),
                multiplier: le(m),
                shift: le(s),
            })
    }

    /// Requantizes one accumulator (which already includes the bias) to int8.
    #[inline]
    fn requantize(&self, acc: i32, ch: Channel) -> i8 {
        let y = multiply_by_quantized_multiplier(acc, ch.multiplier, ch.shift)
            .saturating_add(self.zero_point as i32);
        // max then min (TFLite order); never panics even if act_min > act_max.
        y.max(self.act_min as i32).min(self.act_max as i32) as i8
    }
}

/// `Σ x[i] * w[i]` over the common length, int8 × int8 → wrapping int32.
///
/// Written as a plain zipped fold so that LLVM vectorizes it on the host.
#[inline]
pub fn dot_i8(x: &[i8], w: &[u8]) -> i32 {
    x.iter().zip(w).fold(0i32, |acc, (&x, &w)| {
        acc.wrapping_add(x as i32 * (w as i8) as i32)
    })
}

/// `Σ w[i]` of int8 weights (stored as bytes), wrapping int32.
#[inline]
pub fn sum_i8(w: &[u8]) -> i32 {
    w.iter()
        .fold(0i32, |acc, &w| acc.wrapping_add((w as i8) as i32))
}

fn shape_error(kernel: &'static str) -> Error {
    Error::KernelShape { kernel }
}
