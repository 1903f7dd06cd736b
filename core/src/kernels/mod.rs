//! Int8 kernels: plain functions on slices, no allocation, no panics.
//!
//! Two implementations of every kernel:
//!
//! * [`portable`]: safe Rust, the **reference** (bit-exact with TFLite's reference int8
//!   kernels). Used on every target without the Arm DSP extension, and by the host tests. Written
//!   as simple zipped folds so that LLVM vectorizes the inner loops on the host.
//! * `dsp` (Armv7E-M only: Cortex-M4/M7, `cfg(aka_dsp)` set by `build.rs`): hand-written
//!   Thumb-2 assembly with `SMLAD`/`SXTB16`/`SMMLAR`/`SSUB8`+`SEL` inner loops. It produces exactly
//!   the same bytes as the portable kernels (checked on random shapes and values by the
//!   firmware's `dsp_check` binary) and falls back to them for the shapes it does not handle.
//!
//! The functions at this level ([`linear()`], [`matvec_i32`], [`matvec_i32_strided`] (int8 or
//! u8 inputs), [`linear_s4()`] and [`matvec_i32_s4`] (packed int4 weights), [`conv2d()`],
//! [`conv2d_s4()`], [`max_pool2d`], [`relu`], [`qk_scores`],
//! [`softmax_f32`], [`dot_i8`], [`dot_i8_i8`]) are the entry points: they pick the DSP kernel at
//! compile time where it exists and the portable one otherwise, with identical results and
//! identical shape errors. [`exp_f32`] and [`exp_minus`] are the same code on every target, and
//! so (for now) are the GPT's f32 steps: [`quantize()`] (f32 → int8), [`norm_q`] (LayerNorm /
//! RMSNorm then quantize), [`rope_rotate`] and the integer attention softmax
//! [`attention::softmax_u8`] (u8 weights). [`sqrt_f32`] is one `VSQRT.F32` on Arm with a
//! hardware FPU (`eabihf`) and `libm::sqrtf` elsewhere: the same bits (both correctly rounded).
//!
//! Conventions shared by all kernels:
//! * activations are int8, NHWC with N = 1 (`[h][w][c]`, channel fastest);
//! * weights are int8 stored as raw bytes (`&[u8]`, read as `b as i8`), symmetric (zero point 0),
//!   at any alignment (they are read in place from the model file, e.g. in flash);
//! * int32 per-channel arrays (bias, multipliers, shifts) are little-endian 4-byte groups;
//! * the int32 accumulator starts at the bias, which has the input zero point folded in
//!   (`bias' = bias - zp_in * Σ w`), so the inner loop is a plain `Σ x * w` with wrapping i32
//!   arithmetic (the accumulator of Arm's `SMLAD` wraps too);
//! * every kernel checks slice lengths against its shape first and returns
//!   [`Error::KernelShape`] on a mismatch (it never panics).

pub mod activation;
pub mod attention;
pub mod conv2d;
pub mod linear;
pub mod linear_offset;
pub mod linear_s4;
pub mod norm;
pub mod pool;
pub mod quantize;
pub mod rope;

#[cfg(aka_dsp)]
// With `linear-only` the convolution, pooling and int4 Linear DSP kernels are unused.
#[cfg_attr(feature = "linear-only", allow(dead_code, unused_imports))]
mod dsp;

pub use activation::argmax;
// `softmax_f32` is the same code on every target (on a Cortex-M4F it runs on the FPU).
pub use attention::{exp_f32, exp_minus, softmax_f32};
pub use conv2d::Conv2dGeometry;
pub use norm::{norm_q, sqrt_f32};
pub use pool::Pool2dGeometry;
pub use quantize::quantize;
pub use rope::rope_rotate;

/// The portable reference kernels, callable on every target (the entry points in
/// [`crate::kernels`] use them except where a target-specific kernel exists). Useful to compare
/// against, e.g. in the firmware's `dsp_check` and `bench` binaries.
#[cfg(not(all(aka_dsp, feature = "dsp-only")))]
pub mod portable {
    pub use super::activation::relu;
    pub use super::attention::{dot_i8_i8, qk_scores, softmax_f32};
    pub use super::conv2d::{conv2d, conv2d_s4};
    pub use super::linear::{
        dot_i8, linear, matvec_i32, matvec_i32_strided, matvec_i32_strided_u8,
    };
    pub use super::linear_offset::matvec_i32_offset;
    pub use super::linear_s4::{linear_s4, matvec_i32_s4};
    pub use super::pool::max_pool2d;
}

/// With the `dsp-only` feature on Armv7E-M: the DSP kernels' fallbacks. The kernels that are
/// only a *fallback* of a DSP kernel (for the shapes it does not cover: e.g. `linear` with an
/// input length that is not a multiple of 4) return [`Error::KernelShape`] instead of running, so
/// their code is not linked; every shape the DSP kernels cover gives the same bytes as without
/// the feature. The pieces the DSP kernels build on (`dot_i8`, `dot_i8_i8`, `matvec_i32`,
/// `matvec_i32_strided`, `relu`, `softmax_f32`) stay the portable reference code.
#[cfg(all(aka_dsp, feature = "dsp-only"))]
pub mod portable {
    pub use super::activation::relu;
    pub use super::attention::{dot_i8_i8, softmax_f32};
    pub use super::linear::{dot_i8, matvec_i32, matvec_i32_strided, matvec_i32_strided_u8};
    pub use super::linear_offset::matvec_i32_offset;
    pub use super::not_linked::{
        conv2d, conv2d_s4, linear, linear_s4, matvec_i32_s4, max_pool2d, qk_scores,
    };
}

/// The kernels a size feature leaves out (`dsp-only`: the DSP kernels' portable fallbacks;
/// `linear-only`: what an MLP does not use), with their signatures: each returns
/// [`Error::KernelShape`] without running.
#[cfg(any(feature = "linear-only", all(aka_dsp, feature = "dsp-only")))]
#[allow(dead_code)]
mod not_linked {
    use super::{shape_error, Conv2dGeometry, OutputStage, Pool2dGeometry};
    use crate::Error;

    /// Not linked in this build (a size feature): [`Error::KernelShape`].
    pub fn linear(_: &[i8], _: &[u8], _: &OutputStage, _: &mut [i8]) -> Result<(), Error> {
        Err(shape_error(msg!("linear")))
    }

    /// Not linked in this build (a size feature): [`Error::KernelShape`].
    pub fn linear_s4(_: &[i8], _: &[u8], _: &OutputStage, _: &mut [i8]) -> Result<(), Error> {
        Err(shape_error(msg!("linear_s4")))
    }

    /// Not linked in this build (a size feature): [`Error::KernelShape`].
    pub fn matvec_i32_s4(_: &[i8], _: &[u8], _: &mut [i32]) -> Result<(), Error> {
        Err(shape_error(msg!("matvec_i32_s4")))
    }

    /// Not linked in this build (a size feature): [`Error::KernelShape`].
    pub fn conv2d(
        _: &[i8],
        _: &Conv2dGeometry,
        _: &[u8],
        _: &OutputStage,
        _: &mut [i8],
    ) -> Result<(), Error> {
        Err(shape_error(msg!("conv2d")))
    }

    /// Not linked in this build (a size feature): [`Error::KernelShape`].
    pub fn conv2d_s4(
        _: &[i8],
        _: &Conv2dGeometry,
        _: &[u8],
        _: &OutputStage,
        _: &mut [i8],
    ) -> Result<(), Error> {
        Err(shape_error(msg!("conv2d_s4")))
    }

    /// Not linked in this build (a size feature): [`Error::KernelShape`].
    pub fn max_pool2d(_: &[i8], _: &Pool2dGeometry, _: &mut [i8]) -> Result<(), Error> {
        Err(shape_error(msg!("max_pool2d")))
    }

    /// Not linked in this build (a size feature): [`Error::KernelShape`].
    pub fn qk_scores(_: &[i8], _: &[i8], _: usize, _: &mut [i32]) -> Result<(), Error> {
        Err(shape_error(msg!("qk_scores")))
    }
}

// The entry points: the DSP kernel where one exists, with the portable kernel's definition,
// shapes and errors (see [`portable`] for each one's documentation). On Armv7E-M: `linear` and
// `matvec_i32` run the fully connected loop (input sign-extended once, two rows per pass: about
// 1.2 instructions per MAC); `dot_i8` is an `SXTB16`/`SMLAD` loop (about 2 instructions per
// element plus a call; both operands are sign-extended on the fly, so for many rows against one
// input prefer `linear`, which extends the input once); `matvec_i32_strided` runs the same fully
// connected loop when `n` and `stride` are multiples of 4 (u8 inputs zero-extended instead of
// sign-extended).
/// [`matvec_i32_strided`] by the name it had when it took only u8 inputs.
pub use self::matvec_i32_strided as matvec_i32_strided_u8;
#[cfg(all(aka_dsp, not(feature = "linear-only")))]
pub use dsp::{conv2d, conv2d_s4, linear_s4, max_pool2d};
#[cfg(aka_dsp)]
pub use dsp::{dot_i8, linear, matvec_i32, matvec_i32_s4, matvec_i32_strided, qk_scores, relu};
#[cfg(aka_dsp)]
pub use dsp::{matvec_i32_offset, matvec_i32_offset_pre, OffsetBuf, OffsetInput};
pub use linear::StridedInput;
pub use linear_offset::{dot_i8_offset, offset_row_const, offset_weight, to_offset_binary};
#[cfg(not(aka_dsp))]
pub use linear_offset::{matvec_i32_offset, matvec_i32_offset_pre, OffsetBuf, OffsetInput};
pub use linear_s4::{pack_s4_row, s4_row_bytes, s4_weight};

// With the `linear-only` feature the Sequential runtime's kernels other than int8 `linear` and
// `relu` are not linked (the op set of an MLP; TFLite Micro's equivalent is registering only
// FULLY_CONNECTED), and `SequentialModel::load` refuses models with other layers. The GPT
// runtime is unaffected.
#[cfg(feature = "linear-only")]
pub use not_linked::{conv2d, conv2d_s4, linear_s4, max_pool2d};
#[cfg(all(not(aka_dsp), not(feature = "linear-only")))]
pub use portable::{conv2d, conv2d_s4, linear_s4, max_pool2d};
#[cfg(not(aka_dsp))]
pub use portable::{
    dot_i8, linear, matvec_i32, matvec_i32_s4, matvec_i32_strided, qk_scores, relu,
};

/// True if this build uses the Cortex-M DSP kernels (`cfg(aka_dsp)`), false if the portable
/// ones.
pub const DSP: bool = cfg!(aka_dsp);

/// `x` viewed as raw bytes, the way kernels take weights (read back as `b as i8`): e.g. the GPT's
/// int8 V cache as the rows of [`matvec_i32_strided`]. (The crate's only `unsafe` outside the
/// DSP kernels; `bytemuck::cast_slice` would do the same.)
#[allow(unsafe_code)]
pub fn i8_as_bytes(x: &[i8]) -> &[u8] {
    // SAFETY: `i8` and `u8` have the same size and alignment and every bit pattern is valid for
    // both; the result borrows `x` immutably for its whole lifetime.
    unsafe { core::slice::from_raw_parts(x.as_ptr().cast::<u8>(), x.len()) }
}

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

/// `Σ a[i] * b[i]` over the common length, int8 × int8 → wrapping int32: on Armv7E-M
/// [`dot_i8`] with `b` viewed as bytes (the same loop), elsewhere [`portable::dot_i8_i8`].
#[inline]
pub fn dot_i8_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(aka_dsp)]
    return dsp::dot_i8(a, i8_as_bytes(b));
    #[cfg(not(aka_dsp))]
    return attention::dot_i8_i8(a, b);
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

/// An instruction-level model of the DSP kernels' fast requantization (see `dsp`'s module docs),
/// checked on the host against the independent reference of the portable output stage
/// (`tests/src/reference.rs`: [`multiply_by_quantized_multiplier`], zero point, clamp). The
/// firmware's `dsp_check` checks the assembly itself against the portable kernels.
#[cfg(test)]
mod fast_requant_model {
    use crate::rng::Rng;

    /// `SMMLAR Rd, Rn, Rm, Ra`: bits 63..32 of `(Ra << 32) + Rn·Rm + 2^31`.
    fn smmlar(n: i32, m: i32, a: i32) -> i32 {
        let r = ((a as i128) << 32) + n as i128 * m as i128 + (1i128 << 31);
        (r >> 32) as u32 as i32 // bits 63..32 (the register keeps 32 of them)
    }

    /// The sequence of the kernels: `full` clamps with `USAT #31`, `QADD lo`, `SSAT #8`; otherwise
    /// (`lo == -128`) `SSAT #8` alone, with `zl = zp` instead of `zp - lo`.
    fn fast(x: i32, m: i32, shift: i32, zp: i8, lo: i8, full: bool) -> i8 {
        let e = -shift;
        assert!((0..=22).contains(&e) && m >= 0);
        let zl = if full {
            zp as i32 - lo as i32
        } else {
            zp as i32
        };
        let m2 = m.wrapping_mul(2);
        let ra = x & (m2 >> 31);
        let s = smmlar(x, m2, ra);
        let c = (2 * zl + 1) << e;
        let nudge = c.wrapping_add(s >> 31) >> 1;
        let t = s.saturating_add(nudge) >> e;
        let t = if full {
            t.clamp(0, i32::MAX).saturating_add(lo as i32)
        } else {
            t
        };
        t.clamp(-128, 127) as i8
    }

    /// The portable output stage (requantize, add zero point, clamp to `lo..=127`), from the
    /// shared independent reference.
    fn reference(x: i32, m: i32, shift: i32, zp: i8, lo: i8) -> i8 {
        crate::quant::reference::requantize(x as i64, m, shift, zp, lo, 127)
    }

    #[test]
    fn fast_requantization_is_bit_exact() {
        let mut rng = Rng::new(99);
        let edges_x = [
            0,
            1,
            -1,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
            i32::MAX - 1,
            1 << 30,
            -(1 << 30),
        ];
        let edges_m = [
            0,
            1,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 1,
            i32::MAX,
            i32::MAX - 1,
        ];
        let mut checked = 0u64;
        for i in 0..3_000_000u32 {
            let x = match i % 4 {
                0 => edges_x[rng.below(edges_x.len() as u32) as usize],
                1 => rng.next_u32() as i32,
                _ => (rng.next_u32() as i32) >> rng.below(32),
            };
            let m = match i % 3 {
                0 => edges_m[rng.below(edges_m.len() as u32) as usize],
                1 => rng.below(1 << 31) as i32,
                _ => (1 << 30) + rng.below(1 << 30) as i32,
            };
            let shift = -(rng.below(23) as i32);
            let zp = rng.next_u32() as i8;
            let lo = match rng.below(3) {
                0 => -128,
                1 => zp,
                _ => rng.next_u32() as i8,
            };
            let want = reference(x, m, shift, zp, lo);
            assert_eq!(
                fast(x, m, shift, zp, lo, true),
                want,
                "{x} {m} {shift} {zp} {lo}"
            );
            if lo == -128 {
                assert_eq!(
                    fast(x, m, shift, zp, lo, false),
                    want,
                    "{x} {m} {shift} {zp}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 3_000_000);
    }
}
