//! Cortex-M4/M7 (Armv7E-M, DSP extension) kernels: Thumb-2 assembly inner loops with `SMLAD`
//! (two 16×16 multiply-accumulates per instruction), `SXTB16` (sign-extend two bytes to two
//! halfwords, optionally after a rotation by 8 bits), `SMMLAR` and `QADD` (requantization) and
//! `SSUB8`/`SEL` (four byte-wise maxima per two instructions).
//!
//! # The one place with `unsafe`
//!
//! `aka-core` is `#![deny(unsafe_code)]`; this module (compiled only with `cfg(aka_dsp)`) allows
//! it for two things:
//!
//! * naked functions written in `naked_asm!` (the hot loops, which need all 14 allocatable
//!   registers and exact control of the instruction stream), called through a `#[repr(C)]`
//!   argument block whose pointers the safe Rust wrapper derives from slices it has checked;
//! * one-instruction `asm!` helpers (`SXTB16`, `SSUB8`+`SEL`) used from safe Rust.
//!
//! Every `unsafe` block says why it is sound (`// SAFETY:`). The wrappers validate shapes with
//! the same checks as the portable kernels (same errors) and fall back to the portable kernels for
//! whatever the assembly does not handle; results are bit-identical either way (the firmware's
//! `dsp_check` binary compares both on thousands of random cases).
//!
//! # Reading weights in place
//!
//! Weights stay where the model file puts them (flash, any alignment). The inner loops read them
//! with `LDR`/`LDRD` from **word-aligned** addresses only: a row that starts at `addr % 4 = k != 0`
//! is split into an unaligned head (`4 - k` bytes) and tail (`k` bytes), read with two unaligned
//! `LDR`s of whole words that lie inside the row and multiplied against inputs that are zero
//! outside the head/tail, plus an aligned middle. No byte outside a slice is ever read.
//!
//! # Requantization
//!
//! TFLite's double-rounding `MultiplyByQuantizedMultiplier` (see [`crate::quant`]), then `+ zp`
//! and the clamp, in 9–10 instructions per output, bit-exact. With `m` the Q31 multiplier,
//! `e = -shift` and `x` the accumulator:
//!
//! 1. `SaturatingRoundingDoublingHighMul(x, m) = floor((x·m + 2^30) / 2^31)
//!    = floor((x·2m + 2^31) / 2^32)`. With `m2 = 2m mod 2^32` (as i32) this is
//!    `SMMLAR(x, m2, x & (m2 >> 31))`: for `m >= 2^30`, `m2 = 2m - 2^32` and the `+x` accumulate
//!    restores the missing `x·2^32`; for `0 <= m < 2^30` nothing is missing. No saturation case
//!    exists for `m >= 0`.
//! 2. `RoundingDivideByPOT(s, e)` (round half away from zero) `+ (zp - lo)` as one saturating
//!    add and an arithmetic shift: `(QADD(s, c) >> e)` with
//!    `c = (((2(zp - lo) + 1) << e) + (s >> 31)) >> 1 = (zp - lo)·2^e + 2^(e-1) - [s < 0]`
//!    (and `(zp - lo)` exactly for `e = 0`).
//!    If `QADD` saturates, the true quotient is beyond ±511 and clamps to the same int8 value.
//! 3. `USAT #31` (max with 0, i.e. with `act_min` after the offset), `+ lo`, `SSAT #8` (min with
//!    127).
//!
//! The fast path therefore needs `m >= 0`, `0 <= e <= 22` (so that `(2·255 + 1) << e` fits) and
//! `act_max == 127` (what the exporter writes); anything else takes an exact generic path (in the
//! fully connected kernel, per output) or the portable kernel (convolutions, per call).
#![allow(unsafe_code)]

mod conv;
mod fc;
mod gemm;
mod pool;

pub(super) use conv::conv2d;
pub(super) use fc::linear;
pub(super) use gemm::qk_scores;
pub(super) use pool::{max_pool2d, relu};

use super::OutputStage;

/// Largest `e = -shift` of the fast requantization (see the module docs).
const MAX_FAST_E: i32 = 22;

/// `SXTB16 x`: the sign-extended bytes 0 and 2 of `x` as two halfwords.
#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    let r: u32;
    // SAFETY: a register-only instruction of Armv7E-M (this module only exists there).
    unsafe {
        core::arch::asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
            options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// `SXTB16 x, ROR #8`: the sign-extended bytes 1 and 3 of `x` as two halfwords.
#[inline(always)]
fn sxtb16_ror8(x: u32) -> u32 {
    let r: u32;
    // SAFETY: a register-only instruction of Armv7E-M.
    unsafe {
        core::arch::asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
            options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// Byte-wise signed maximum of two words of four int8 lanes (`SSUB8` sets the GE flags, `SEL`
/// picks).
#[inline(always)]
fn max_i8x4(a: u32, b: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only instructions; they write the APSR.GE bits, which no Rust code reads
    // (not `preserves_flags`).
    unsafe {
        core::arch::asm!("ssub8 {r}, {a}, {b}", "sel {r}, {a}, {b}",
            r = out(reg) r, a = in(reg) a, b = in(reg) b, options(pure, nomem, nostack));
    }
    r
}

/// Four int8 activations as a word (any alignment: one `LDR`, which may be unaligned on
/// Armv7-M).
#[inline(always)]
fn word_i8(x: &[i8]) -> u32 {
    u32::from_le_bytes([x[0] as u8, x[1] as u8, x[2] as u8, x[3] as u8])
}

/// One channel's fast requantization constants (see the module docs), or `None` if it needs the
/// generic path.
#[derive(Clone, Copy, Debug)]
struct FastRequant {
    /// `2m mod 2^32`.
    m2: i32,
    /// `(2(zp - lo) + 1) << e`.
    c: i32,
    /// `-shift`, in `0..=MAX_FAST_E`.
    e: i32,
}

impl FastRequant {
    /// `zl` is what the kernel adds before its clamp: `zp - act_min` for the `USAT`, `+ act_min`,
    /// `SSAT` clamp (any `act_min`), `zp` for the `SSAT`-only clamp (`act_min == -128`); in
    /// `-255..=255`.
    fn new(multiplier: i32, shift: i32, zl: i32, act_max: i8) -> Option<Self> {
        let e = shift.checked_neg()?;
        if multiplier < 0 || !(0..=MAX_FAST_E).contains(&e) || act_max != i8::MAX {
            return None;
        }
        Some(Self {
            m2: multiplier.wrapping_mul(2),
            c: (2 * zl + 1) << e, // |511 << 22| < 2^31
            e,
        })
    }
}

/// `2(zp - act_min) + 1`, the per-layer part of [`FastRequant::c`].
fn zl2p1(stage: &OutputStage) -> i32 {
    2 * (stage.zero_point as i32 - stage.act_min as i32) + 1
}
