//! Fully connected layer ([`linear`], requantized int8 outputs) and its accumulators alone
//! ([`matvec_i32`]): three output rows per pass over the input (two for the rows left over and
//! for rows that are not word-aligned or have `n % 8 != 0`).
//!
//! The input (`n` int8) is sign-extended once into a stack buffer of halfword pairs, in the order
//! that matches `SXTB16` on a weight word `[w0 w1 w2 w3]`: `Xe = (x0, x2)`, `Xo = (x1, x3)`. The
//! inner loop step of the three-row kernel (8 inputs × 3 rows, 28 instructions for 24 MACs):
//!
//! ```text
//! ldm    x!, {Xe0, Xo0, Xe1, Xo1}     ; 8 pre-extended inputs, shared by the 3 rows
//! ldrd   W0, W1, [p0], #8             ; 8 weights of row 0
//! sxtb16 T, W0 ; smlad a0, T, Xe0, a0 ; sxtb16 W0, W0, ror #8 ; smlad a0, W0, Xo0, a0
//! sxtb16 T, W1 ; smlad a0, T, Xe1, a0 ; sxtb16 W1, W1, ror #8 ; smlad a0, W1, Xo1, a0
//! ldrd   W0, W1, [p1], #8             ; row 1, same inputs
//! ...                                 ; row 2
//! ```
//!
//! unrolled 8 times (entered in the middle for the remainder, Duff's device; the loop end,
//! `x_end`, is read from the stack: 3 instructions per 8 steps). It uses all 14 allocatable
//! registers (x, 4 inputs, 2 weight words, T, 3 accumulators, 3 row pointers), with the argument
//! block on the stack: a fourth row would need 2 more (`LDRD` has no register offset, so each row
//! needs its own pointer). Weights are sign-extended on every use (each is used once per
//! inference), so `SXTB16` + `SMLAD` is a floor of 1 instruction per MAC; loads and loop add
//! ~0.18 (`1/8` for the weights, `1/24` for the inputs, `1/64` for the loop), requantization and
//! row bookkeeping ~26 instructions per output row (~7 with int32 outputs: one `STM` of the
//! three sums).
//!
//! The three-row kernel needs word-aligned rows of an even number of words (`n % 8 == 0`, no
//! head, tail or odd word). A remainder of one row turns the last triple into two pairs (a
//! single row costs as much as a pair: it runs as both rows of one); the two-row kernel does the
//! leftover pair and every other shape. Its step is the same for 2 rows (19 instructions for 16
//! MACs), unrolled 4 times with a Duff entry.
//!
//! The three-row kernels and their wrappers are in `linear_rows3.rs` (a child module); the
//! `two-row` feature leaves them out, and every row then runs through the two-row kernel, with
//! the same results (the size builds, docs/SIZE.md).
//!
//! Rows start at `weights + o·n`, any alignment. With `n % 4 == 0` all rows share `k = addr % 4`;
//! for `k != 0` each row is an aligned middle plus an unaligned head and tail word (see the module
//! docs of `dsp`). `n % 4 != 0` or `n > MAX_IN` uses the portable kernel.

use core::mem::MaybeUninit;

use super::{sxtb16, sxtb16_ror8, uxtb16, uxtb16_ror8, word_i8, zl2p1};
use crate::kernels::linear::{
    check_linear, check_matvec_i32, check_matvec_i32_strided, strided_rows,
};
use crate::kernels::{portable, OutputStage, StridedInput};
use crate::Error;

/// Largest input length of the DSP path (the pre-extended input lives on the stack:
/// `2 * MAX_IN + 16` bytes, uninitialised).
const MAX_IN: usize = 1024;
const XBUF_WORDS: usize = MAX_IN / 2 + 4;

/// The argument block of [`fc_rows2_full`] and [`fc_rows2_sat`]; offsets are hard-coded in the assembly.
#[repr(C)]
struct FcArgs {
    mult: *const u8,   // 0   advanced by the kernel
    shift: *const u8,  // 4   advanced by the kernel
    out: *mut i8,      // 8   advanced by the kernel
    zl2p1: i32,        // 12  2 * (zp - act_min) + 1
    lo: i32,           // 16  act_min
    bias: *const u8,   // 20  advanced by the kernel
    out_end: *mut i8,  // 24
    x: *const u32,     // 28  pre-extended input (aligned-middle words)
    x_end: *const u32, // 32  end of the pair loop's words
    advance: i32,      // 36  added to both row pointers after each pair of rows
    entry: usize,      // 40  set by the kernel
    duff: usize,       // 44  set by the kernel
    pairs: u32,        // 48  8-input steps of the pair loop
    ht_x: *const u32,  // 52  pre-extended head and tail words
    head_off: i32,     // 56  head word = aligned start + head_off
    tail_off: i32,     // 60  tail word = aligned start + tail_off
    zp: i32,           // 64
    act_min: i32,      // 68
    act_max: i32,      // 72
    p0: *const u8,     // 76  aligned middle of row 0
    p1: *const u8,     // 80  aligned middle of row 1
    flags: u32,        // 84  bit 0: one odd aligned word first; bit 1: head and tail words
    p2: *const u8,     // 88  aligned middle of row 2 (the three-row kernels only)
}

/// One step of the pair loop: 8 inputs × 2 rows. Every instruction is 32 bits wide (76 bytes per
/// step), which the Duff entry computation relies on.
#[rustfmt::skip]
macro_rules! fc_step {
    () => {
        concat!(
            "ldm.w r0!, {{r4, r5, r6, r7}}\n",  // 8 pre-extended inputs
            "ldrd r8, r9, [r1], #8\n",          // 8 weights of row 0
            "sxtb16 r10, r8\n",
            "smlad r11, r10, r4, r11\n",
            "sxtb16 r8, r8, ror #8\n",
            "smlad r11, r8, r5, r11\n",
            "sxtb16 r10, r9\n",
            "smlad r11, r10, r6, r11\n",
            "sxtb16 r9, r9, ror #8\n",
            "smlad r11, r9, r7, r11\n",
            "ldrd r8, r9, [r2], #8\n",          // 8 weights of row 1
            "sxtb16 r10, r8\n",
            "smlad r12, r10, r4, r12\n",
            "sxtb16 r8, r8, ror #8\n",
            "smlad r12, r8, r5, r12\n",
            "sxtb16 r10, r9\n",
            "smlad r12, r10, r6, r12\n",
            "sxtb16 r9, r9, ror #8\n",
            "smlad r12, r9, r7, r12\n",
        )
    };
}

/// Multiply-accumulate one weight word at `[$addr]` with the pre-extended pair `$xe`, `$xo` into
/// `$acc` (uses r8, r10).
#[rustfmt::skip]
macro_rules! fc_word {
    ($acc:literal, $addr:literal, $xe:literal, $xo:literal) => {
        concat!(
            "ldr.w r8, ", $addr, "\n",
            "sxtb16 r10, r8\n",
            "smlad ", $acc, ", r10, ", $xe, ", ", $acc, "\n",
            "sxtb16 r8, r8, ror #8\n",
            "smlad ", $acc, ", r8, ", $xo, ", ", $acc, "\n",
        )
    };
}

/// Requantizes accumulator `$a` and stores it at `[r5], #1`. Expects r3 = multiplier pointer,
/// r4 = shift pointer, r5 = output pointer, r6 = `2·zl + 1`, r7 = act_min, lr = args; uses r0,
/// r8, r9, r10. `$slow`/`$store` are unique numeric labels. `full`: any `act_min`
/// (`zl = zp - act_min`); `sat`: `act_min == -128` (`zl = zp`).
#[rustfmt::skip]
macro_rules! fc_requant {
    ($v:ident, $a:literal, $slow:literal, $store:literal) => {
        concat!(
            "ldr r8, [r3], #4\n",                       // m
            "ldr r9, [r4], #4\n",                       // shift
            "lsls r10, r8, #1\n",                       // m2 = 2m; C = (m < 0)
            "bcs ", $slow, "f\n",
            "rsb r0, r9, #0\n",                         // e = -shift
            "cmp r0, #22\n",                            // 0 <= e <= 22 (unsigned compare)
            "bhi ", $slow, "f\n",
            "and r8, ", $a, ", r10, asr #31\n",         // x if m >= 2^30, else 0
            "smmlar ", $a, ", ", $a, ", r10, r8\n",     // s = SRDHM(x, m)
            "lsl r8, r6, r0\n",                         // (2·zl + 1) << e
            "add r8, r8, ", $a, ", asr #31\n",
            "asr r8, r8, #1\n",                         // zl·2^e + 2^(e-1) - [s < 0]
            "qadd ", $a, ", ", $a, ", r8\n",
            "asr ", $a, ", ", $a, ", r0\n",             // RDBPOT(s, e) + zl
            fc_clamp!($v, $a),
            $store, ":\n",
            "strb ", $a, ", [r5], #1\n",
        )
    };
}

#[rustfmt::skip]
macro_rules! fc_clamp {
    (full, $a:literal) => {
        concat!(
            "usat ", $a, ", #31, ", $a, "\n",           // max(.., 0)
            "qadd ", $a, ", ", $a, ", r7\n",            // + act_min (USAT may leave 2^31 - 1)
            "ssat ", $a, ", #8, ", $a, "\n",            // min(.., 127)
        )
    };
    (sat, $a:literal) => {
        concat!("ssat ", $a, ", #8, ", $a, "\n")
    };
}

/// The exact generic output stage for accumulator `$a` with r8 = multiplier, r9 = shift (any
/// values), as in `quant::multiply_by_quantized_multiplier` + zero point + clamp; jumps back to
/// `$store`. Uses r0, r10; reads zp/act_min/act_max from the argument block (lr).
#[rustfmt::skip]
macro_rules! fc_requant_slow {
    ($a:literal, $slow:literal, $store:literal) => {
        concat!(
            $slow, ":\n",
            "cmp r9, #30\n", "it gt\n", "movgt r9, #30\n",      // clamp shift to -31..=30
            "cmn r9, #31\n", "it lt\n", "mvnlt r9, #30\n",
            "cmp r9, #0\n", "it gt\n",
            "lslgt ", $a, ", ", $a, ", r9\n",                   // x << left (wrapping)
            "mov r0, #0x40000000\n",
            "mov r10, #0\n",
            "smlal r0, r10, ", $a, ", r8\n",                    // x·m + 2^30
            "lsl ", $a, ", r10, #1\n",
            "orr ", $a, ", ", $a, ", r0, lsr #31\n",            // >> 31
            "cmp r10, #0x40000000\n", "it eq\n",                // x = m = i32::MIN:
            "mvneq ", $a, ", #0x80000000\n",                    //   saturates to i32::MAX
            "rsbs r9, r9, #0\n",                                // right = -shift
            "ble 1f\n",
            "mov r0, #1\n",
            "lsl r0, r0, r9\n",
            "sub r0, r0, #1\n",                                 // mask
            "and r10, ", $a, ", r0\n",                          // remainder
            "lsr r0, r0, #1\n",
            "sub r0, r0, ", $a, ", asr #31\n",                  // threshold
            "asr ", $a, ", ", $a, ", r9\n",
            "cmp r10, r0\n", "it gt\n",
            "addgt ", $a, ", ", $a, ", #1\n",
            "1:\n",
            "ldr r0, [lr, #64]\n",
            "qadd ", $a, ", ", $a, ", r0\n",                    // + zp, saturating
            "ldr r0, [lr, #68]\n",
            "cmp ", $a, ", r0\n", "it lt\n", "movlt ", $a, ", r0\n",
            "ldr r0, [lr, #72]\n",
            "cmp ", $a, ", r0\n", "it gt\n", "movgt ", $a, ", r0\n",
            "b ", $store, "b\n",
        )
    };
}

/// Accumulators of the next pair of rows: the biases (advancing the bias pointer), or 0.
#[rustfmt::skip]
macro_rules! fc_init {
    (i32) => {
        concat!("mov r11, #0\n", "mov r12, #0\n")
    };
    ($v:ident) => {
        concat!(
            "ldr r0, [lr, #20]\n",
            "ldr r11, [r0], #4\n",
            "ldr r12, [r0], #4\n",
            "str r0, [lr, #20]\n",
        )
    };
}

/// Stores the pair's outputs (int32, or requantized int8), leaving the output pointer in r5.
#[rustfmt::skip]
macro_rules! fc_outputs {
    (i32) => {
        concat!(
            "ldr r5, [lr, #8]\n",
            "str r11, [r5], #4\n",
            "str r12, [r5], #4\n",
            "str r5, [lr, #8]\n",
        )
    };
    ($v:ident) => {
        concat!(
            "ldm lr, {{r3, r4, r5, r6, r7}}\n",
            fc_requant!($v, "r11", "40", "41"),
            fc_requant!($v, "r12", "42", "43"),
            "stm lr, {{r3, r4, r5}}\n",
        )
    };
}

/// `r3 = x_end` again before the next pair: the requantizing output stages use r3 (the `i32`
/// one does not, and the per-row extras at `30:` restore it themselves).
#[rustfmt::skip]
macro_rules! fc_reload_x_end {
    (i32) => {
        ""
    };
    ($v:ident) => {
        "ldr r3, [lr, #32]\n"
    };
}

#[rustfmt::skip]
macro_rules! fc_slow {
    (i32) => {
        ""
    };
    ($v:ident) => {
        concat!(
            fc_requant_slow!("r11", "40", "41"),
            fc_requant_slow!("r12", "42", "43"),
        )
    };
}

/// The kernel: computes `(out_end - out) / 2` pairs of rows (`(out_end - out) / 8` for `i32`);
/// see the module docs.
macro_rules! fc_kernel {
    ($v:ident) => {
        core::arch::naked_asm!(
            "push {{r4-r11, lr}}",
            "mov lr, r0",
            // Duff entry: skip (4 - pairs % 4) % 4 steps of the first pass (76 bytes each).
            "ldr r0, [lr, #48]",
            "cmp r0, #0",
            "beq 3f",
            "adr.w r2, 20f",
            "and r1, r0, #3",
            "rsb r1, r1, #4",
            "and r1, r1, #3",
            "movs r3, #76",
            "mla r2, r1, r3, r2",
            "b 4f",
            "3:",
            "adr.w r2, 21f",
            "4:",
            "orr r2, r2, #1",
            "str r2, [lr, #44]",
            "ldr r3, [lr, #84]",
            "cmp r3, #0",
            "beq 5f",
            "adr.w r2, 30f",
            "orr r2, r2, #1",
            "5:",
            "str r2, [lr, #40]",
            // First pair of rows.
            "ldr r1, [lr, #76]",
            "ldr r2, [lr, #80]",
            fc_init!($v),
            "ldr r0, [lr, #28]",
            "ldr r3, [lr, #32]",
            "ldr pc, [lr, #40]",
            // The pair loop.
            ".p2align 2",
            "20:",
            fc_step!(),
            fc_step!(),
            fc_step!(),
            fc_step!(),
            "cmp r0, r3",
            "bne 20b",
            "21:",
            fc_outputs!($v),
            "ldr r0, [lr, #24]",
            "cmp r5, r0",
            "beq 90f",
            // Next pair of rows.
            fc_init!($v),
            "ldr r4, [lr, #36]",
            "add r1, r1, r4",
            "add r2, r2, r4",
            "ldr r0, [lr, #28]",
            fc_reload_x_end!($v),
            "ldr pc, [lr, #40]",
            "90:",
            "pop {{r4-r11, pc}}",
            // Rare per-row extras: unaligned head and tail words, one odd aligned word.
            "30:",
            "ldr r8, [lr, #84]",
            "tst r8, #2",
            "beq 31f",
            "ldr r9, [lr, #52]",
            "ldm r9, {{r4, r5, r6, r7}}",
            "ldr r9, [lr, #56]",
            "ldr r3, [lr, #60]",
            fc_word!("r11", "[r1, r9]", "r4", "r5"),
            fc_word!("r11", "[r1, r3]", "r6", "r7"),
            fc_word!("r12", "[r2, r9]", "r4", "r5"),
            fc_word!("r12", "[r2, r3]", "r6", "r7"),
            "ldr r3, [lr, #32]",
            "ldr r8, [lr, #84]",
            "31:",
            "tst r8, #1",
            "beq 32f",
            "ldrd r4, r5, [r0], #8",
            fc_word!("r11", "[r1], #4", "r4", "r5"),
            fc_word!("r12", "[r2], #4", "r4", "r5"),
            "32:",
            "ldr pc, [lr, #44]",
            fc_slow!($v),
        )
    };
}

/// Any `act_min` (`zl2p1 = 2·(zp - act_min) + 1`).
///
/// # Safety
///
/// See [`fc_rows2_sat`].
#[unsafe(naked)]
unsafe extern "C" fn fc_rows2_full(a: *mut FcArgs) {
    fc_kernel!(full)
}

/// `act_min == -128` (`zl2p1 = 2·zp + 1`).
///
/// # Safety
///
/// `a` points to a valid [`FcArgs`] whose pointers cover: `x..x_end` (+ the odd word) and
/// `ht_x[0..4]` readable and 4-aligned; for every pair of rows `g` (`p0`, `p1` advanced by
/// `advance` per pair), the bytes that the kernel reads (aligned middles of `8·pairs (+4)` bytes,
/// and the head/tail words at `head_off`/`tail_off`) inside the weights; `bias`, `mult`, `shift`
/// readable for two int32 per pair of rows; `out..out_end` writable, two outputs per pair.
#[unsafe(naked)]
unsafe extern "C" fn fc_rows2_sat(a: *mut FcArgs) {
    fc_kernel!(sat)
}

/// int32 outputs, no bias (`mult`, `shift`, `bias` and the requantization fields unused; `out`
/// points to int32).
///
/// # Safety
///
/// As [`fc_rows2_sat`], with `out..out_end` 4-aligned int32 (two per pair of rows).
#[unsafe(naked)]
unsafe extern "C" fn fc_rows2_i32(a: *mut FcArgs) {
    fc_kernel!(i32)
}

/// Stores the three rows' outputs (r11, r12, r1; int32 or requantized int8), leaving the output
/// pointer in r5. Expects lr = args. Shared by the int8 three-row kernels (`linear_rows3.rs`) and
/// the int4 one (`linear_s4`).
#[rustfmt::skip]
macro_rules! fc3_outputs {
    (i32) => {
        concat!(
            "ldr r5, [lr, #8]\n",
            "str r11, [r5], #4\n",
            "str r12, [r5], #4\n",
            "str r1, [r5], #4\n",
            "str r5, [lr, #8]\n",
        )
    };
    ($v:ident) => {
        concat!(
            "ldm lr, {{r3, r4, r5, r6, r7}}\n",
            fc_requant!($v, "r11", "40", "41"),
            fc_requant!($v, "r12", "42", "43"),
            fc_requant!($v, "r1", "44", "45"),
            "stm lr, {{r3, r4, r5}}\n",
        )
    };
}

#[rustfmt::skip]
macro_rules! fc3_slow {
    (i32) => {
        ""
    };
    ($v:ident) => {
        concat!(
            fc_requant_slow!("r11", "40", "41"),
            fc_requant_slow!("r12", "42", "43"),
            fc_requant_slow!("r1", "44", "45"),
        )
    };
}

// The three-row kernels (`fc_rows3_*`) and their wrappers: their own file, left out with the
// `two-row` feature (the size builds, docs/SIZE.md). A child module, so that it sees the macros
// above and the private argument block.
#[cfg(not(feature = "two-row"))]
#[path = "linear_rows3.rs"]
mod rows3;

/// With `two-row`: no triples, every row goes through the two-row kernels.
#[cfg(feature = "two-row")]
mod rows3 {
    use super::{FcArgs, Rows};

    pub(super) fn matvec_i32(_: &mut FcArgs, _: &Rows, _: usize, _: &mut [i32]) -> usize {
        0
    }

    pub(super) fn linear(_: &mut FcArgs, _: &Rows, _: usize, _: bool, _: &mut [i8]) -> usize {
        0
    }
}

/// An input element type of the fully connected loop: how a word of four inputs becomes the
/// two pre-extended halfword-pair words `(x0, x2)`, `(x1, x3)` that match `SXTB16` of a weight
/// word. int8 inputs are sign-extended, u8 inputs (the GPT's attention probabilities)
/// zero-extended; `SMLAD` then multiplies them with the signed weights either way.
pub trait FcInput: Copy + Into<i32> {
    const ZERO: Self;
    /// Four inputs as a word (any alignment).
    fn word(x: &[Self]) -> u32;
    /// `(x0, x2)` and `(x1, x3)` as halfword pairs.
    fn pairs(w: u32) -> (u32, u32);
}

impl FcInput for i8 {
    const ZERO: Self = 0;
    fn word(x: &[i8]) -> u32 {
        word_i8(x)
    }
    fn pairs(w: u32) -> (u32, u32) {
        (sxtb16(w), sxtb16_ror8(w))
    }
}

impl FcInput for u8 {
    const ZERO: Self = 0;
    fn word(x: &[u8]) -> u32 {
        u32::from_le_bytes([x[0], x[1], x[2], x[3]])
    }
    fn pairs(w: u32) -> (u32, u32) {
        (uxtb16(w), uxtb16_ror8(w))
    }
}

/// Rows of an FC layer as the assembly sees them: rows at `weights + o·n`, `n` bytes each, all
/// with the same `k = addr % 4` (needs `n % 4 == 0`).
struct Rows {
    k: usize,
    head: usize,
    words: usize,
}

impl Rows {
    fn new(weights: &[u8], n: usize) -> Self {
        let k = weights.as_ptr() as usize % 4;
        Self {
            k,
            head: (4 - k) % 4, // bytes before the aligned middle
            words: if k == 0 { n / 4 } else { n / 4 - 1 }, // aligned middle words per row
        }
    }

    /// Whether the three-row kernels apply: word-aligned rows (no head and tail words) of an even
    /// number of words (no odd word).
    #[cfg(not(feature = "two-row"))]
    fn triples_ok(&self) -> bool {
        self.k == 0 && self.words.is_multiple_of(2)
    }

    /// Extends `input` into `xbuf`: the middle's words, then the head and tail words.
    fn extend<T: FcInput>(&self, input: &[T], xbuf: &mut [MaybeUninit<u32>]) {
        let (k, head, n) = (self.k, self.head, input.len());
        let (mid, rest) = xbuf.split_at_mut(2 * self.words);
        for (slot, x) in mid.chunks_exact_mut(2).zip(input[head..].chunks_exact(4)) {
            let (e, o) = T::pairs(T::word(x));
            slot[0].write(e);
            slot[1].write(o);
        }
        if k != 0 {
            // Head word = row bytes 0..4 (positions >= head are not head bytes: x = 0 there);
            // tail word = row bytes n-4..n (positions < head are not tail bytes).
            let mut h = [T::ZERO; 4];
            let mut t = [T::ZERO; 4];
            h[..head].copy_from_slice(&input[..head]);
            t[head..].copy_from_slice(&input[n - k..]);
            let (he, ho) = T::pairs(T::word(&h));
            let (te, to) = T::pairs(T::word(&t));
            rest[0].write(he);
            rest[1].write(ho);
            rest[2].write(te);
            rest[3].write(to);
        }
    }

    /// The argument block with the geometry filled in (outputs and parameters still null): rows
    /// of `n` bytes, `stride` bytes apart (`stride >= n`, `stride % 4 == 0` or `stride == n`).
    fn args(&self, xbuf: &[MaybeUninit<u32>], weights: &[u8], n: usize, stride: usize) -> FcArgs {
        let (k, head, words) = (self.k, self.head, self.words);
        let x = xbuf.as_ptr().cast::<u32>();
        FcArgs {
            mult: core::ptr::null(),
            shift: core::ptr::null(),
            out: core::ptr::null_mut(),
            zl2p1: 0,
            lo: 0,
            bias: core::ptr::null(),
            out_end: core::ptr::null_mut(),
            x,
            x_end: x.wrapping_add(2 * words),
            advance: (2 * stride - 4 * words) as i32,
            entry: 0,
            duff: 0,
            pairs: (words / 2) as u32,
            ht_x: x.wrapping_add(2 * words),
            head_off: k as i32 - 4,
            tail_off: (n + k) as i32 - 8,
            zp: 0,
            act_min: 0,
            act_max: 0,
            p0: weights.as_ptr().wrapping_add(head),
            p1: weights.as_ptr().wrapping_add(head + stride),
            p2: weights.as_ptr().wrapping_add(head + 2 * stride),
            flags: (words % 2) as u32 | if k != 0 { 2 } else { 0 },
        }
    }
}

/// [`crate::kernels::matvec_i32`] for Armv7E-M.
pub fn matvec_i32(input: &[i8], weights: &[u8], output: &mut [i32]) -> Result<(), Error> {
    check_matvec_i32(input, weights, output)?;
    matvec_i32_rows_i8(input, weights, input.len(), output);
    Ok(())
}

/// [`crate::kernels::matvec_i32_strided`] for Armv7E-M (int8 or u8 inputs).
pub fn matvec_i32_strided<T: StridedInput>(
    input: &[T],
    weights: &[u8],
    stride: usize,
    output: &mut [i32],
) -> Result<(), Error> {
    check_matvec_i32_strided(input.len(), weights, stride, output)?;
    matvec_i32_rows(input, weights, stride, output);
    Ok(())
}

/// [`matvec_i32_rows`] for int8 inputs, out of line: inlined into `matvec_i32` (its only caller),
/// it moved the firmware's other code (+1.7% instructions on the bench's row-by-row `dot_i8`).
#[inline(never)]
fn matvec_i32_rows_i8(input: &[i8], weights: &[u8], stride: usize, output: &mut [i32]) {
    matvec_i32_rows(input, weights, stride, output);
}

/// `output[o] = Σ input·weights[o·stride..][..n]`, shapes checked by the caller (rows inside
/// `weights`, `stride >= n = input.len() >= 1`).
fn matvec_i32_rows<T: FcInput>(input: &[T], weights: &[u8], stride: usize, output: &mut [i32]) {
    let n = input.len();
    let n_out = output.len();
    if !n.is_multiple_of(4)
        || (stride != n && !stride.is_multiple_of(4))
        || n > MAX_IN
        || n_out == 0
    {
        strided_rows(input, weights, stride, output);
        return;
    }
    // Every row starts at the same `addr % 4` (stride a multiple of 4, or rows back to back with
    // n a multiple of 4).
    let rows = Rows::new(weights, n);
    let mut xbuf = [const { MaybeUninit::<u32>::uninit() }; XBUF_WORDS];
    rows.extend(input, &mut xbuf);
    let mut args = rows.args(&xbuf, weights, n, stride);
    let row = |o: usize| weights.as_ptr().wrapping_add(o * stride + rows.head);
    // Triples of rows first, when the rows are whole pairs of aligned words.
    let done = rows3::matvec_i32(&mut args, &rows, stride, output);
    args.advance = (2 * stride - 4 * rows.words) as i32;
    let even = done + ((n_out - done) & !1);
    if even > done {
        args.out = output.as_mut_ptr().wrapping_add(done).cast();
        args.out_end = output.as_mut_ptr().wrapping_add(even).cast();
        args.p0 = row(done);
        args.p1 = row(done + 1);
        // SAFETY: shapes checked by the callers: `weights` holds n_out rows of n bytes, `stride`
        // apart; for each of the `(even - done) / 2` pairs from row `done` the kernel reads the
        // aligned middle (words·4 bytes from row + head), and the head word (row bytes 0..4) and
        // tail word (n-4..n) when k != 0, all inside the rows since n >= 4; `xbuf` holds 2·words
        // (+ 4 when k != 0) initialised words, 4-aligned. It writes output[done..even] (int32,
        // 4-aligned) and reads no per-channel parameters.
        unsafe { fc_rows2_i32(&mut args) };
    }
    if even < n_out {
        let o = n_out - 1;
        let mut out2 = [0i32; 2];
        args.out = out2.as_mut_ptr().cast();
        args.out_end = out2.as_mut_ptr().wrapping_add(2).cast();
        args.p0 = row(o);
        args.p1 = row(o);
        args.advance = 0;
        // SAFETY: as above for the single row `o` (read twice) into 2 local int32.
        unsafe { fc_rows2_i32(&mut args) };
        output[o] = out2[0];
    }
}

/// [`crate::kernels::linear()`] for Armv7E-M.
pub fn linear(
    input: &[i8],
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
) -> Result<(), Error> {
    check_linear(input, weights, stage, output)?;
    let n = input.len();
    let n_out = output.len();
    if !n.is_multiple_of(4) || n > MAX_IN || stage.act_max != i8::MAX || n_out == 0 {
        return portable::linear(input, weights, stage, output);
    }

    let rows = Rows::new(weights, n);
    let mut xbuf = [const { MaybeUninit::<u32>::uninit() }; XBUF_WORDS];
    rows.extend(input, &mut xbuf);
    let sat = stage.act_min == i8::MIN;
    let kernel = if sat { fc_rows2_sat } else { fc_rows2_full };
    let mut args = FcArgs {
        mult: stage.multipliers.as_ptr(),
        shift: stage.shifts.as_ptr(),
        out: output.as_mut_ptr(),
        zl2p1: if sat {
            2 * stage.zero_point as i32 + 1
        } else {
            zl2p1(stage)
        },
        lo: stage.act_min as i32,
        bias: stage.bias.as_ptr(),
        zp: stage.zero_point as i32,
        act_min: stage.act_min as i32,
        act_max: stage.act_max as i32,
        ..rows.args(&xbuf, weights, n, n)
    };
    let row = |o: usize| weights.as_ptr().wrapping_add(o * n + rows.head);
    // Triples of rows first, when the rows are whole pairs of aligned words.
    let done = rows3::linear(&mut args, &rows, n, sat, output);
    args.advance = (2 * n - 4 * rows.words) as i32;
    let even = done + ((n_out - done) & !1);
    if even > done {
        args.mult = stage.multipliers.as_ptr().wrapping_add(4 * done);
        args.shift = stage.shifts.as_ptr().wrapping_add(4 * done);
        args.bias = stage.bias.as_ptr().wrapping_add(4 * done);
        args.out = output.as_mut_ptr().wrapping_add(done);
        args.out_end = output.as_mut_ptr().wrapping_add(even);
        args.p0 = row(done);
        args.p1 = row(done + 1);
        // SAFETY: shapes checked above: `weights` holds n_out rows of n bytes; for each of the
        // `(even - done) / 2` pairs from row `done` the kernel reads the aligned middle
        // (words·4 bytes from row + head), the head word (row bytes 0..4) and tail word (n-4..n)
        // when k != 0 — all inside the rows since n >= 4. `bias`/`multipliers`/`shifts` hold
        // n_out int32 each (`fits`), the kernel reads those of rows done..even and writes
        // output[done..even]. `xbuf` holds 2·words + 4 initialised words (the head/tail ones
        // only read when k != 0, and then written above), 4-aligned.
        unsafe { kernel(&mut args) };
    }
    if even < n_out {
        // The last row alone: run it as both rows of a pair, with its per-channel parameters
        // duplicated and the second output discarded.
        let o = n_out - 1;
        let (bias, mult, shift) = last_row_params(stage, o);
        let mut out2 = [0i8; 2];
        args.mult = mult.as_ptr();
        args.shift = shift.as_ptr();
        args.bias = bias.as_ptr();
        args.out = out2.as_mut_ptr();
        args.out_end = out2.as_mut_ptr().wrapping_add(2);
        args.p0 = row(o);
        args.p1 = row(o);
        // SAFETY: as above for the single row `o` (read twice), with 2 int32 of each parameter
        // in the local arrays and 2 writable output bytes.
        unsafe { kernel(&mut args) };
        output[o] = out2[0];
    }
    Ok(())
}

/// The rows of `n_out` that the three-row kernels compute: the whole triples, except that a
/// remainder of one row turns the last triple into two pairs (a single row costs a pair).
pub(super) fn triple_rows(n_out: usize) -> usize {
    match n_out % 3 {
        1 if n_out >= 4 => n_out - 4,
        r => n_out - r,
    }
}

/// Row `o`'s bias, multiplier and shift, each twice (8 bytes): the parameters of a pair of rows
/// that is the last row of an odd count run twice.
pub(super) fn last_row_params(stage: &OutputStage, o: usize) -> ([u8; 8], [u8; 8], [u8; 8]) {
    let dup = |a: &[u8]| -> [u8; 8] {
        let mut d = [0u8; 8];
        d[..4].copy_from_slice(&a[4 * o..4 * o + 4]);
        d[4..].copy_from_slice(&a[4 * o..4 * o + 4]);
        d
    };
    (dup(stage.bias), dup(stage.multipliers), dup(stage.shifts))
}
