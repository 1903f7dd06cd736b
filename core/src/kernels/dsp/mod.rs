//! Cortex-M4/M7 (Armv7E-M, DSP extension) kernels: Thumb-2 assembly inner loops with `SMLAD`
//! (two 16×16 multiply-accumulates per instruction), `SXTB16` (sign-extend two bytes to two
//! halfwords, optionally after a rotation by 8 bits), `SMMLAR`/`QADD`/`SSAT` (requantization) and
//! `SSUB8`/`SEL` (four byte-wise maxima per two instructions).
//!
//! | kernel | method | instructions (`-icount`) |
//! |---|---|---|
//! | [`linear`], [`matvec_i32`] | 3 rows per pass over a pre-extended input (word-aligned rows, `n % 8 == 0`; else and for 1–2 leftover rows 2 per pass); per 8 inputs: `LDM` (inputs), 3 `LDRD` (weights), 12 `SXTB16`, 12 `SMLAD` | 1.18 per MAC + ~25 per output (~7 for `matvec_i32`) |
//! | [`linear_s4`], [`matvec_i32_s4`] (int4 weights) | 3 rows per pass over a pre-extended input (2 for 1–2 leftover rows); per 8 inputs: `LDM` (inputs), 3 `LDR` (24 nibbles), 12 `AND` (nibbles to the top of halfwords, no sign extension), 12 `SMLAD` | 1.18 per MAC + ~25 per output (the int8 kernel's requantization; ~7 for `matvec_i32_s4` at `n <= 256`) |
//! | [`conv2d`], 1 input channel, 3×3 | direct: halfword-pair band per output row, 5 multiplies per channel against pre-extended weights | ~15 per output + ~10 per pixel |
//! | [`conv2d`], `in_c % 4 == 0` | im2col of 2 pixels + 2×2 micro-kernel (2 pixels × 2 filters, filters read in place): 15 per 16 MACs | 0.94 per MAC + ~15 per output + im2col |
//! | [`conv2d_s4`] (int4 weights) | the layer's filters unpacked once per call (up to 2,048 weights, on the stack), then [`conv2d`] | [`conv2d`]'s + ~4 per weight per call |
//! | [`qk_scores`] | the same micro-kernel (2 query rows × 2 key rows) | 0.94 per MAC + ~6 per score |
//! | [`max_pool2d`], [`relu`] | 4 channels per word, `SSUB8` + `SEL` | 2 per 4 lanes per tap + loads |
//! | [`dot_i8`], [`dot_i8_i8`] | both operands extended on the fly: 2 `LDR`, 4 `SXTB16`, 2 `SMLAD` per 4 elements | 2 per MAC + ~25 per call |
//!
//! Bounds: weights are used once per inference in a fully connected layer, so each weight word
//! costs `SXTB16` ×2 + `SMLAD` ×2 = 1 instruction per MAC before any load (no pre-packing: the
//! file format keeps raw int8). The micro-kernel shares each weight extension between 2 pixels
//! (0.75 per MAC for `SXTB16` + `SMLAD`) and needs all 14 allocatable registers.
//!
//! # The one place with `unsafe`
//!
//! `aka-core` is `#![deny(unsafe_code)]`; this module (compiled only with `cfg(aka_dsp)`) allows
//! it for two things:
//!
//! * naked functions written in `naked_asm!` (the hot loops, which need all 14 allocatable
//!   registers and exact control of the instruction stream), called through a `#[repr(C)]`
//!   argument block whose pointers the safe Rust wrapper derives from slices it has checked;
//! * one-instruction `asm!` helpers (`SXTB16`, `PKHBT`/`PKHTB`, `SSUB8`+`SEL`) used from safe
//!   Rust.
//!
//! Every `unsafe` block says why it is sound (`// SAFETY:`). The wrappers validate shapes with
//! the same checks as the portable kernels (same errors) and fall back to the portable kernels for
//! whatever the assembly does not handle; results are bit-identical either way (the firmware's
//! `dsp_check` binary compares both on thousands of random cases).
//!
//! # Reading weights in place
//!
//! Weights stay where the model file puts them (flash, any alignment), and no byte outside a
//! slice is ever read. The fully connected kernel reads them with `LDRD` from **word-aligned**
//! addresses: a row that starts at `addr % 4 = k != 0` is an aligned middle plus an unaligned head
//! (`4 - k` bytes) and tail (`k` bytes), read with two unaligned `LDR`s of whole words inside the
//! row and multiplied against inputs that are zero outside the head/tail. The micro-kernel reads
//! filters and key rows with plain `LDR` (unaligned accesses are allowed on Armv7-M).
//!
//! # Requantization
//!
//! TFLite's double-rounding `MultiplyByQuantizedMultiplier` (see [`crate::quant`]), then `+ zp`
//! and the clamp, in 7–9 instructions per output, bit-exact. With `m` the Q31 multiplier,
//! `e = -shift` and `x` the accumulator:
//!
//! 1. `SaturatingRoundingDoublingHighMul(x, m) = floor((x·m + 2^30) / 2^31)
//!    = floor((x·2m + 2^31) / 2^32)`. With `m2 = 2m mod 2^32` (as i32) this is
//!    `SMMLAR(x, m2, x & (m2 >> 31))`: for `m >= 2^30`, `m2 = 2m - 2^32` and the `+x` accumulate
//!    restores the missing `x·2^32`; for `0 <= m < 2^30` nothing is missing. No saturation case
//!    exists for `m >= 0`.
//! 2. `RoundingDivideByPOT(s, e)` (round half away from zero) plus an offset `zl` as one
//!    saturating add and an arithmetic shift: `(QADD(s, c) >> e)` with
//!    `c = (((2·zl + 1) << e) + (s >> 31)) >> 1 = zl·2^e + 2^(e-1) - [s < 0]`
//!    (and `zl` exactly for `e = 0`). If `QADD` saturates, the true quotient is beyond ±511 and
//!    clamps to the same int8 value.
//! 3. The clamp. `act_min == -128` (what the exporter writes: ReLU ranges are calibrated after
//!    the ReLU, so `zp_out = -128`): `zl = zp`, then `SSAT #8`. Any other `act_min`:
//!    `zl = zp - act_min`, then `USAT #31` (max with `act_min`, after the offset), `QADD act_min`
//!    (saturating: for `e = 0` the value can be `2^31 - 1`), `SSAT #8` (min with 127).
//!
//! The fast path therefore needs `m >= 0`, `0 <= e <= 22` (so that `(2·255 + 1) << e` fits) and
//! `act_max == 127` (what the exporter writes); anything else takes an exact generic path (in the
//! fully connected kernel, per output) or the portable kernel (convolutions, per call). A host
//! test checks an instruction-level model of this sequence against
//! [`crate::quant::multiply_by_quantized_multiplier`] on millions of values and all edges.
//!
//! # Stack
//!
//! Buffers live on the stack (the kernels cannot allocate; the uninitialised ones cost nothing to
//! reserve): [`linear`] 2.2 KB (inputs up to 1024), [`conv2d`] 3 KB (1 channel) or 5.7 KB
//! (im2col: filters up to 576 elements, `kernel_h` padded input rows up to 2 KB), [`qk_scores`]
//! 1 KB (`d` up to 256). Larger shapes use the portable kernels.
#![allow(unsafe_code)]

/// Defines `#[inline(always)] fn name(a: u32, ...) -> u32` as the one register-only instruction
/// `asm` (output operand `{r}`, inputs named like the arguments), with the options `pure,
/// nomem, nostack, preserves_flags`: e.g. `asm_op!(/** doc */ fn sxtb16(x) = "sxtb16 {r}, {x}");`.
macro_rules! asm_op {
    ($(#[$attr:meta])* fn $name:ident($($arg:ident),+) = $asm:literal) => {
        $(#[$attr])*
        #[inline(always)]
        fn $name($($arg: u32),+) -> u32 {
            let r: u32;
            // SAFETY: one register-only instruction of Armv7E-M (this module only exists
            // there): no memory, stack or flags are touched.
            unsafe {
                core::arch::asm!($asm, r = lateout(reg) r, $($arg = in(reg) $arg,)+
                    options(pure, nomem, nostack, preserves_flags));
            }
            r
        }
    };
}

mod attention;
mod conv2d;
mod dot;
mod gemm;
#[macro_use]
mod linear;
mod linear_offset;
mod linear_s4;
mod pool;

pub use attention::qk_scores;
pub use conv2d::{conv2d, conv2d_s4};
pub use dot::dot_i8;
pub use linear::{linear, matvec_i32};
pub use linear::{matvec_i32_strided, FcInput};
pub use linear_offset::{matvec_i32_offset, matvec_i32_offset_pre, OffsetBuf, OffsetInput};
pub use linear_s4::{linear_s4, matvec_i32_s4};
pub use pool::{max_pool2d, relu};

use super::OutputStage;

/// Largest `e = -shift` of the fast requantization (see the module docs).
const MAX_FAST_E: i32 = 22;

asm_op!(
    /// `SXTB16 x`: the sign-extended bytes 0 and 2 of `x` as two halfwords.
    fn sxtb16(x) = "sxtb16 {r}, {x}"
);

asm_op!(
    /// `SXTB16 x, ROR #8`: the sign-extended bytes 1 and 3 of `x` as two halfwords.
    fn sxtb16_ror8(x) = "sxtb16 {r}, {x}, ror #8"
);

/// `UXTB16 x`: the zero-extended bytes 0 and 2 of `x` as two halfwords.
#[inline(always)]
fn uxtb16(x: u32) -> u32 {
    x & 0x00ff_00ff
}

/// `UXTB16 x, ROR #8`: the zero-extended bytes 1 and 3 of `x` as two halfwords.
#[inline(always)]
fn uxtb16_ror8(x: u32) -> u32 {
    (x >> 8) & 0x00ff_00ff
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
