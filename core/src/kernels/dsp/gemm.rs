//! The 2×2 micro-kernel: two "A" rows (pre-extended, interleaved) times two "B" rows (raw int8,
//! read in place) per pass, for `qk_scores` (A = query rows, B = key rows, int32 out) and for
//! convolutions through im2col (A = the patches of two output pixels, B = two filters,
//! requantized int8 out).
//!
//! A is stored as `[Xe(a0), Xo(a0), Xe(a1), Xo(a1)]` per 4 elements (`Xe = (x0, x2)`,
//! `Xo = (x1, x3)` as halfwords), so one `LDM` fetches 4 elements of both A rows. Step (4
//! elements, 16 MACs, 15 instructions):
//!
//! ```text
//! ldm    a!, {A0e, A0o, A1e, A1o}
//! ldr    W, [b], #4           ; 4 bytes of B row 0 (any alignment)
//! sxtb16 T, W ; sxtb16 W, W, ror #8
//! smlad  c00 += T·A0e + W·A0o ; smlad c10 += T·A1e + W·A1o   (4 SMLADs)
//! ldr    W, [b, kreg]         ; B row 1
//! sxtb16 T, W ; sxtb16 W, W, ror #8
//! smlad  c01 ... ; smlad c11 ...                               (4 SMLADs)
//! ```
//!
//! unrolled 4× with a Duff entry. All 14 allocatable registers are in use in the loop; the
//! argument block is copied to the stack frame.

use core::mem::MaybeUninit;

use super::{sxtb16, sxtb16_ror8, word_i8};

/// The argument block of the micro-kernels (copied to the stack by the kernel; offsets are
/// hard-coded in the assembly).
#[repr(C)]
pub(super) struct GemmArgs {
    /// Pre-extended A, 4 words per 4 elements.
    pub a: *const u32, // 0
    pub a_end: *const u32, // 4
    /// B row 0 of the first pair.
    pub b: *const u8, // 8
    /// Address of B row 1 minus (address of B row 0 + 4): `stride - 4` (`-4`: row 1 = row 0).
    pub kreg: isize, // 12
    /// Added to the B pointer after each pair (which advanced it by the row length).
    pub b_adv: isize, // 16
    /// `i32` kernel: end of `out` (`out + 8 · pairs`); requantizing kernel: end of `table`.
    pub end: *const u8, // 20
    pub duff: usize,       // 24  set by the kernel
    /// Output of (A row 0, B row 0).
    pub out: *mut u8, // 28
    /// Byte offset of A row 1's outputs from A row 0's (0: A row 1 = A row 0).
    pub out1: isize, // 32
    /// Requantizing kernel: `[m2, c, e, bias]` per B row (channel).
    pub table: *const [i32; 4], // 36
    /// Requantizing kernel: `act_min`.
    pub lo: i32, // 40
    /// Requantizing kernel: byte offset of B row 1's output from B row 0's (1, or 0 if the
    /// same row).
    pub c1off: isize, // 44
}

#[rustfmt::skip]
macro_rules! gemm_step {
    () => {
        concat!(
            "ldm.w r0!, {{r4, r5, r6, r7}}\n",  // 4 elements of A rows 0 and 1
            "ldr.w r9, [r1], #4\n",             // 4 bytes of B row 0
            "sxtb16 r10, r9\n",
            "sxtb16 r9, r9, ror #8\n",
            "smlad r11, r10, r4, r11\n",        // c00
            "smlad r11, r9, r5, r11\n",
            "smlad r12, r10, r6, r12\n",        // c10
            "smlad r12, r9, r7, r12\n",
            "ldr.w r9, [r1, r2]\n",             // 4 bytes of B row 1
            "sxtb16 r10, r9\n",
            "sxtb16 r9, r9, ror #8\n",
            "smlad r8, r10, r4, r8\n",          // c01
            "smlad r8, r9, r5, r8\n",
            "smlad lr, r10, r6, lr\n",          // c11
            "smlad lr, r9, r7, lr\n",
        )
    };
}

/// Prologue: frame, copy of the arguments, Duff entry (`steps = (a_end - a) / 16 >= 1`).
#[rustfmt::skip]
macro_rules! gemm_prologue {
    () => {
        concat!(
            "push {{r4-r11, lr}}\n",
            "sub sp, sp, #48\n",
            "ldm r0, {{r1-r12}}\n",
            "stm sp, {{r1-r12}}\n",
            "sub r4, r2, r1\n",
            "lsr r4, r4, #4\n",                 // steps
            "and r4, r4, #3\n",
            "rsb r4, r4, #4\n",
            "and r4, r4, #3\n",                 // steps skipped in the first pass
            "adr.w r5, 20f\n",
            "movs r6, #60\n",                   // bytes per step
            "mla r5, r4, r6, r5\n",
            "orr r5, r5, #1\n",
            "str r5, [sp, #24]\n",
        )
    };
}

/// Enters the K loop for the next pair of B rows.
#[rustfmt::skip]
macro_rules! gemm_enter {
    () => {
        concat!(
            "ldr r1, [sp, #8]\n",
            "ldr r2, [sp, #12]\n",
            "ldr r0, [sp]\n",
            "ldr r3, [sp, #4]\n",
            "ldr pc, [sp, #24]\n",
        )
    };
}

/// Advances to the next pair of B rows and enters the K loop again; then the exit (label 90)
/// that frees the frame and returns. The tail of every micro-kernel.
#[rustfmt::skip]
macro_rules! gemm_next_pair_or_exit {
    () => {
        concat!(
            "ldr r9, [sp, #16]\n",
            "add r1, r1, r9\n",
            "str r1, [sp, #8]\n",
            gemm_enter!(),
            "90:\n",
            "add sp, sp, #48\n",
            "pop {{r4-r11, pc}}\n",
        )
    };
}

/// The K loop (label 20, exit 21), entered by `gemm_enter`.
#[rustfmt::skip]
macro_rules! gemm_loop {
    () => {
        concat!(
            gemm_enter!(),
            ".p2align 2\n",
            "20:\n",
            gemm_step!(),
            gemm_step!(),
            gemm_step!(),
            gemm_step!(),
            "cmp r0, r3\n",
            "bne 20b\n",
            "21:\n",
        )
    };
}

/// Requantizes `$a` with r4 = m2, r5 = c, r6 = e, r10 = act_min (r7 scratch); see `dsp` docs.
#[rustfmt::skip]
macro_rules! gemm_rq {
    (full, $a:literal) => {
        concat!(
            gemm_rq!(common, $a),
            "usat ", $a, ", #31, ", $a, "\n",
            "qadd ", $a, ", ", $a, ", r10\n",
            "ssat ", $a, ", #8, ", $a, "\n",
        )
    };
    (sat, $a:literal) => {
        concat!(
            gemm_rq!(common, $a),
            "ssat ", $a, ", #8, ", $a, "\n",
        )
    };
    (common, $a:literal) => {
        concat!(
            "and r7, ", $a, ", r4, asr #31\n",
            "smmlar ", $a, ", ", $a, ", r4, r7\n",
            "add r7, r5, ", $a, ", asr #31\n",
            "asr r7, r7, #1\n",
            "qadd ", $a, ", ", $a, ", r7\n",
            "asr ", $a, ", ", $a, ", r6\n",
        )
    };
}

/// The requantizing micro-kernel body for clamp variant `$v` (`full`: any `act_min`, table `c`
/// built with `zp - act_min`; `sat`: `act_min == -128`, table `c` built with `zp`).
macro_rules! gemm_rq_kernel {
    ($v:ident) => {
        core::arch::naked_asm!(
            gemm_prologue!(),
            // First pair: accumulators start at the biases.
            "ldr r9, [sp, #36]",
            "ldr r11, [r9, #12]",
            "mov r12, r11",
            "ldr r8, [r9, #28]",
            "mov lr, r8",
            gemm_loop!(),
            "ldr r0, [sp, #36]",
            "ldm r0!, {{r4, r5, r6, r7}}",
            "ldr r3, [sp, #28]",
            "ldr r9, [sp, #32]",
            "ldr r10, [sp, #40]",
            gemm_rq!($v, "r11"),
            "strb r11, [r3]",
            gemm_rq!($v, "r12"),
            "strb r12, [r3, r9]",
            "ldm r0!, {{r4, r5, r6, r7}}",
            "ldr r2, [sp, #44]",
            gemm_rq!($v, "r8"),
            "strb r8, [r3, r2]",
            "add r9, r9, r3",
            gemm_rq!($v, "lr"),
            "strb lr, [r9, r2]",
            "add r3, r3, #2",
            "str r3, [sp, #28]",
            "str r0, [sp, #36]",
            "ldr r9, [sp, #20]",
            "cmp r0, r9",
            "beq 90f",
            "ldr r11, [r0, #12]",
            "mov r12, r11",
            "ldr r8, [r0, #28]",
            "mov lr, r8",
            gemm_next_pair_or_exit!(),
        )
    };
}

/// Writes the interleaved pre-extended pair of rows `r0`, `r1` (same length, a multiple of 4)
/// into `dst` (`r0.len()` words): the A operand of the micro-kernels.
#[inline(always)]
pub(super) fn extend_pair(dst: &mut [MaybeUninit<u32>], r0: &[i8], r1: &[i8]) {
    for ((d, x0), x1) in dst
        .chunks_exact_mut(4)
        .zip(r0.chunks_exact(4))
        .zip(r1.chunks_exact(4))
    {
        let (w0, w1) = (word_i8(x0), word_i8(x1));
        d[0].write(sxtb16(w0));
        d[1].write(sxtb16_ror8(w0));
        d[2].write(sxtb16(w1));
        d[3].write(sxtb16_ror8(w1));
    }
}

/// Requantizing micro-kernel, any `act_min` (`act_max` must be 127).
///
/// # Safety
///
/// `args` is a valid [`GemmArgs`]: `a..a_end` (a positive multiple of 16 bytes, 4-aligned)
/// readable; for each of the `(end - table) / 32` B row pairs `p`: `steps · 4` bytes readable at
/// `b + p·(stride·2)` and at that `+ kreg + 4`; `table` readable up to `end`; the output bytes
/// `out + 2p + {0, c1off} + {0, out1}` writable.
#[unsafe(naked)]
pub(super) unsafe extern "C" fn gemm2x2_rq_full(args: *const GemmArgs) {
    gemm_rq_kernel!(full)
}

/// Requantizing micro-kernel for `act_min == -128`, `act_max == 127`.
///
/// # Safety
///
/// As [`gemm2x2_rq_full`].
#[unsafe(naked)]
pub(super) unsafe extern "C" fn gemm2x2_rq_sat(args: *const GemmArgs) {
    gemm_rq_kernel!(sat)
}

/// int32 micro-kernel: `out[0], out[1]` (A row 0 × B rows 0, 1) and the same at `out + out1`
/// (A row 1), then `out += 8` per B row pair.
///
/// # Safety
///
/// `args` is a valid [`GemmArgs`]: `a..a_end` as for [`gemm2x2_rq_full`]; B rows as there for
/// `(end - out) / 8` pairs; `out..end` and `out + out1 ..end + out1` writable, 4-aligned.
#[unsafe(naked)]
pub(super) unsafe extern "C" fn gemm2x2_i32(args: *const GemmArgs) {
    core::arch::naked_asm!(
        gemm_prologue!(),
        "mov r11, #0",
        "mov r12, #0",
        "mov r8, #0",
        "mov lr, #0",
        gemm_loop!(),
        "ldr r3, [sp, #28]",
        "ldr r9, [sp, #32]",
        "add r9, r9, r3",
        "strd r12, lr, [r9]",
        "strd r11, r8, [r3], #8",
        "str r3, [sp, #28]",
        "ldr r9, [sp, #20]",
        "cmp r3, r9",
        "beq 90f",
        "mov r11, #0",
        "mov r12, #0",
        "mov r8, #0",
        "mov lr, #0",
        gemm_next_pair_or_exit!(),
    )
}
