//! Fully connected layer with int4 weights ([`linear_s4`], [`matvec_i32_s4`]) for Armv7E-M:
//! three rows per pass over a pre-extended input (two for the 1–2 rows left over), and no
//! nibble is ever sign-extended.
//!
//! A weight word holds 8 nibbles `n0..n7` (low nibble first, see
//! [`crate::kernels::linear_s4`]). `AND` with `0xF000F000`, of the word shifted left by 0, 4, 8
//! and 12, leaves two nibbles in the top 4 bits of the two halfwords: `(n3, n7)`, `(n2, n6)`,
//! `(n1, n5)`, `(n0, n4)`, each worth `4096 · n` as a signed halfword, since the nibble's sign
//! bit is the halfword's. `SMLAD` multiplies them with the input, pre-extended once into the same
//! pairs of halfwords `X0 = (x3, x7)`, `X1 = (x2, x6)`, `X2 = (x1, x5)`, `X3 = (x0, x4)`. One
//! step is 8 inputs × 3 rows, 28 instructions for 24 MACs:
//!
//! ```text
//! ldm   x!, {X0, X1, X2, X3}          ; 8 pre-extended inputs, shared by the 3 rows
//! ldr   W, [p0], #4                   ; 8 int4 weights of row 0
//! and   T, W, M          ; smlad a0, T, X0, a0      (M = 0xF000F000)
//! and   T, M, W, lsl #4  ; smlad a0, T, X1, a0
//! and   T, M, W, lsl #8  ; smlad a0, T, X2, a0
//! and   T, M, W, lsl #12 ; smlad a0, T, X3, a0
//! ldr   W, [p1], #4 ...               ; row 1, same inputs
//! ldr   W, [p2], #4 ...               ; row 2
//! ```
//!
//! unrolled 8 times with a Duff entry (all 14 allocatable registers: x, 4 inputs, W, T, M, 3
//! sums, 3 row pointers; the argument block and the block's end are on the stack). The rows left
//! over (a remainder of one row turns the last triple into two pairs) use the same step for 2
//! rows (19 instructions for 16 MACs), unrolled twice. CMSIS-NN's `arm_fully_connected_s4` unpacks nibbles with shifts and
//! sign-extensions (39 instructions per 8 MACs, see `firmware/BENCH.md`).
//!
//! The sums are `4096 ×` the true sums. A block of at most 256 inputs is summed in a register
//! (`|4096 · 8 · 128| · 256 = 2^30` fits), then shifted right by 12 (exact: every term is a
//! multiple of 4096) and added to the row's accumulator, which wraps like the portable kernel's.
//! The three-row kernel makes the first block the short one (1 to 32 steps, its Duff entry
//! computed once per call) and the others whole (32 steps, entered at the top); the totals stay
//! in the argument block between blocks and go to registers after the last one. `matvec_i32_s4`
//! with rows of at most 256 inputs (one block) uses a variant without totals: the sums, shifted,
//! go straight to one `STM` (21 instructions per three rows outside the loop).
//!
//! The DSP path needs `n % 8 == 0` (so every row is whole weight words; rows may start at any
//! alignment: `LDR` may be unaligned on Armv7-M) and `n <= MAX_IN`; other shapes use the
//! portable kernel. The output stage is the int8 kernel's assembly (`fc_outputs!`: the fast requantization of
//! the module docs of `dsp`, or its exact generic path per output); `act_max != 127` uses the
//! portable kernel.

use core::mem::MaybeUninit;

use super::linear::{last_row_params, triple_rows};
use super::zl2p1;
use crate::kernels::linear_s4::{check_linear_s4, check_matvec_i32_s4, s4_row_bytes};
use crate::kernels::{portable, OutputStage};
use crate::Error;

/// Largest input length of the DSP path (the pre-extended input lives on the stack: `2 · MAX_IN`
/// bytes, uninitialised).
const MAX_IN: usize = 1024;

/// The argument block of the `s4_rows2_*` kernels. The offsets are hard-coded in the assembly;
/// the requantizing ones (mult, shift, out, zl2p1, lo, bias, out_end, zp, act_min, act_max) are
/// those of the int8 kernel's `FcArgs`, whose output stage this kernel reuses.
#[repr(C)]
struct S4Args {
    mult: *const u8,  // 0   advanced by the kernel
    shift: *const u8, // 4   advanced by the kernel
    out: *mut u8,     // 8   int8 (or int32 for `s4_rows2_i32`) outputs, advanced
    zl2p1: i32,       // 12  2 * (zp - act_min) + 1 (or 2 * zp + 1 for `sat`)
    lo: i32,          // 16  act_min
    bias: *const u8,  // 20  advanced by the kernel
    out_end: *mut u8, // 24
    x: *const u32,    // 28  pre-extended input (4 words per 8 inputs)
    x_end: usize,     // 32  set by the kernel
    p1_off: usize,    // 36  second row of a pair = first + p1_off: the row length, or 0
    sum0: i32,        // 40  scratch
    sum1: i32,        // 44  scratch
    words: usize,     // 48  weight words per row (>= 1)
    sum2: i32,        // 52  scratch (three-row kernels)
    entry: usize,     // 56  set by the three-row kernels: Duff entry of the first block
    first_end: usize, // 60  set by the three-row kernels: end of the first block
    zp: i32,          // 64
    act_min: i32,     // 68
    act_max: i32,     // 72
    p0: *const u8,    // 76  first row of the next pair (advanced by the kernel)
}

/// One step: 8 inputs × 2 rows, 19 instructions.
#[rustfmt::skip]
macro_rules! s4_step {
    () => {
        concat!(
            "ldm r0!, {{r4, r5, r6, r7}}\n",
            "ldr r8, [r1], #4\n",
            "and r9, r8, r3\n",
            "smlad r10, r9, r4, r10\n",
            "and r9, r3, r8, lsl #4\n",
            "smlad r10, r9, r5, r10\n",
            "and r9, r3, r8, lsl #8\n",
            "smlad r10, r9, r6, r10\n",
            "and r9, r3, r8, lsl #12\n",
            "smlad r10, r9, r7, r10\n",
            "ldr r8, [r2], #4\n",
            "and r9, r8, r3\n",
            "smlad r11, r9, r4, r11\n",
            "and r9, r3, r8, lsl #4\n",
            "smlad r11, r9, r5, r11\n",
            "and r9, r3, r8, lsl #8\n",
            "smlad r11, r9, r6, r11\n",
            "and r9, r3, r8, lsl #12\n",
            "smlad r11, r9, r7, r11\n",
        )
    };
}

/// The kernel: `(out_end - out) / 2` pairs of rows back to back from `p0` (`/ 8` for `i32`),
/// each summed in blocks of up to 256 inputs, started at the biases (`i32`: at 0), then
/// requantized by the int8 kernel's output stage (`fc_outputs!`, `fc_slow!`).
macro_rules! s4_kernel {
    ($v:ident) => {
        core::arch::naked_asm!(
            "push {{r4-r11, lr}}",
            "mov lr, r0",
            "ldr r0, [lr, #28]",
            "ldr r12, [lr, #48]",
            "add r12, r0, r12, lsl #4",
            "str r12, [lr, #32]", // end of the input
            // A pair of rows.
            "20:",
            fc_init!($v),
            "strd r11, r12, [lr, #40]",
            "mov.w r3, #0xF000F000",
            "ldr r1, [lr, #76]",
            "ldr r2, [lr, #36]",
            "add r2, r1, r2",
            "ldr r0, [lr, #28]",
            // A block of up to 32 words (256 inputs).
            "10:",
            "mov.w r10, #0",
            "mov.w r11, #0",
            "ldr r12, [lr, #32]",
            "sub r9, r12, r0",
            "cmp r9, #512",
            "it hi",
            "movhi r9, #512",
            "add r12, r0, r9", // end of the block
            "tst r9, #16",     // an odd number of words: one step first
            "beq 2f",
            s4_step!(),
            "cmp r0, r12",
            "beq 3f",
            "2:",
            s4_step!(),
            s4_step!(),
            "cmp r0, r12",
            "bne 2b",
            "3:",
            // sum += block / 4096 (exact), for both rows.
            "ldr r9, [lr, #40]",
            "add r9, r9, r10, asr #12",
            "str r9, [lr, #40]",
            "ldr r9, [lr, #44]",
            "add r9, r9, r11, asr #12",
            "str r9, [lr, #44]",
            "ldr r12, [lr, #32]",
            "cmp r0, r12",
            "bne 10b",
            // The next pair starts where row 1 ended; requantize and store this one.
            "str r2, [lr, #76]",
            "ldrd r11, r12, [lr, #40]",
            fc_outputs!($v),
            "ldr r0, [lr, #24]",
            "cmp r5, r0",
            "bne 20b",
            "pop {{r4-r11, pc}}",
            fc_slow!($v),
        )
    };
}

/// Requantized int8 outputs, any `act_min` (`act_max == 127`).
///
/// # Safety
///
/// As [`s4_rows2_sat`].
#[unsafe(naked)]
unsafe extern "C" fn s4_rows2_full(args: *mut S4Args) {
    s4_kernel!(full)
}

/// Requantized int8 outputs, `act_min == -128` (`act_max == 127`).
///
/// # Safety
///
/// `args.words >= 1`; `args.x` 4-aligned and readable for `16 · words` bytes; for each of the
/// `pairs = (out_end - out) / 2 >= 1` pairs `k`, rows `p0 + 2k · r` and `+ p1_off`
/// (`r = 4 · words` bytes each, any alignment) readable; `bias`, `mult`, `shift` readable for
/// `2 · pairs` int32 (any alignment); `out..out_end` writable.
#[unsafe(naked)]
unsafe extern "C" fn s4_rows2_sat(args: *mut S4Args) {
    s4_kernel!(sat)
}

/// int32 sums without bias (`out` points to int32, `(out_end - out) / 8` pairs).
///
/// # Safety
///
/// As [`s4_rows2_sat`] without the per-channel arrays, with `out..out_end` 4-aligned int32.
#[unsafe(naked)]
unsafe extern "C" fn s4_rows2_i32(args: *mut S4Args) {
    s4_kernel!(i32)
}

/// One step of the three-row loop: 8 inputs × 3 rows, 28 instructions for 24 MACs, every one
/// 32 bits wide (112 bytes, for the Duff entry).
#[rustfmt::skip]
macro_rules! s4_step3 {
    () => {
        concat!(
            "ldm.w r0!, {{r4, r5, r6, r7}}\n",
            s4_row3!("r1", "r11"),
            s4_row3!("r2", "r12"),
            s4_row3!("r3", "lr"),
        )
    };
}

/// 8 int4 weights of the row at `$p` (post-incremented) into `$acc` (r10 = `0xF000F000`; uses r8,
/// r9).
#[rustfmt::skip]
macro_rules! s4_row3 {
    ($p:literal, $acc:literal) => {
        concat!(
            "ldr.w r8, [", $p, "], #4\n",
            "and.w r9, r8, r10\n",
            "smlad ", $acc, ", r9, r4, ", $acc, "\n",
            "and.w r9, r10, r8, lsl #4\n",
            "smlad ", $acc, ", r9, r5, ", $acc, "\n",
            "and.w r9, r10, r8, lsl #8\n",
            "smlad ", $acc, ", r9, r6, ", $acc, "\n",
            "and.w r9, r10, r8, lsl #12\n",
            "smlad ", $acc, ", r9, r7, ", $acc, "\n",
        )
    };
}

/// The sums of the next three rows (`sum0`, `sum1`, `sum2`): the biases, advancing the bias
/// pointer, or 0. Expects lr = args; uses r8-r11.
#[rustfmt::skip]
macro_rules! s4_init3 {
    (i32) => {
        concat!(
            "mov r9, #0\n",
            "str r9, [lr, #40]\n",
            "str r9, [lr, #44]\n",
            "str r9, [lr, #52]\n",
        )
    };
    ($v:ident) => {
        concat!(
            "ldr r8, [lr, #20]\n",
            "ldr r9, [r8], #4\n",
            "ldr r10, [r8], #4\n",
            "ldr r11, [r8], #4\n",
            "str r8, [lr, #20]\n",
            "str r9, [lr, #40]\n",
            "str r10, [lr, #44]\n",
            "str r11, [lr, #52]\n",
        )
    };
}

/// The outputs of three rows whose sums are in r11, r12, lr, with r9 = args; leaves lr = args
/// and the output pointer in r5.
#[rustfmt::skip]
macro_rules! s4_outputs3 {
    (i32) => {
        concat!(
            "ldr r5, [r9, #8]\n",
            "stm r5!, {{r11, r12, lr}}\n",
            "str r5, [r9, #8]\n",
            "mov lr, r9\n",
        )
    };
    ($v:ident) => {
        concat!(
            "mov r1, lr\n",
            "mov lr, r9\n",
            fc3_outputs!($v),
        )
    };
}

/// The three-row kernel: `(out_end - out) / 3` triples of rows back to back from `p0` (`/ 12` for
/// `i32`). Each row is summed in blocks: a first one of 1 to 32 steps (8 inputs each), entered
/// in the middle of the 8-step loop (Duff's device), then blocks of 32 steps (256 inputs). After
/// each block the three sums, shifted right by 12, are added to the row totals (started at the
/// biases, or 0), which stay in the argument block until the last block; then the int8 kernel's
/// output stage. Registers in the loop: r0 inputs, r1-r3 row pointers, r4-r7 inputs, r8, r9
/// weights, r10 the mask, r11, r12, lr block sums; the argument block and the end of the
/// current block are on the stack.
macro_rules! s4_kernel3 {
    ($v:ident) => {
        core::arch::naked_asm!(
            "push {{r4-r11, lr}}",
            "mov lr, r0",
            "sub sp, #8",
            "str lr, [sp]", // [sp] = args, [sp + 4] = end of the current block
            "ldr r0, [lr, #28]",
            "ldr r12, [lr, #48]",
            "add r1, r0, r12, lsl #4",
            "str r1, [lr, #32]", // end of the input
            "sub r12, r12, #1",
            "and r12, r12, #31",
            "add r12, r12, #1", // steps of the first block (1..=32)
            "add r1, r0, r12, lsl #4",
            "str r1, [lr, #60]",
            // Duff entry: skip (8 - steps % 8) % 8 steps (112 bytes each) of the first pass.
            "and r12, r12, #7",
            "rsb r12, r12, #8",
            "and r12, r12, #7",
            "adr.w r8, 11f",
            "movs r9, #112",
            "mla r8, r12, r9, r8",
            "orr r8, r8, #1",
            "str r8, [lr, #56]",
            // Three rows.
            "20:",
            s4_init3!($v),
            "ldr r1, [lr, #76]",
            "ldr r4, [lr, #36]",
            "add r2, r1, r4",
            "add r3, r2, r4",
            "ldr r0, [lr, #28]",
            "ldr r12, [lr, #60]",
            "str r12, [sp, #4]",
            "ldr r8, [lr, #56]",
            "mov.w r10, #0xF000F000",
            "mov.w r11, #0",
            "mov.w r12, #0",
            "mov.w lr, #0",
            "bx r8",
            ".p2align 2",
            "11:",
            s4_step3!(),
            s4_step3!(),
            s4_step3!(),
            s4_step3!(),
            s4_step3!(),
            s4_step3!(),
            s4_step3!(),
            s4_step3!(),
            "ldr r9, [sp, #4]",
            "cmp r0, r9",
            "bne 11b",
            // A block done: totals += block / 4096 (exact).
            "ldr r9, [sp]",
            "ldr r8, [r9, #32]",
            "cmp r0, r8",
            "beq 12f",
            "ldr r8, [r9, #40]",
            "add r8, r8, r11, asr #12",
            "str r8, [r9, #40]",
            "ldr r8, [r9, #44]",
            "add r8, r8, r12, asr #12",
            "str r8, [r9, #44]",
            "ldr r8, [r9, #52]",
            "add r8, r8, lr, asr #12",
            "str r8, [r9, #52]",
            "add r8, r0, #512", // the next block: 32 whole steps
            "str r8, [sp, #4]",
            "mov.w r11, #0",
            "mov.w r12, #0",
            "mov.w lr, #0",
            "b 11b",
            // The last block: the totals into r11, r12, lr.
            "12:",
            "ldr r8, [r9, #40]",
            "add r11, r8, r11, asr #12",
            "ldr r8, [r9, #44]",
            "add r12, r8, r12, asr #12",
            "ldr r8, [r9, #52]",
            "add lr, r8, lr, asr #12",
            "str r3, [r9, #76]", // the next triple starts where row 2 ended
            s4_outputs3!($v),
            "ldr r0, [lr, #24]",
            "cmp r5, r0",
            "bne 20b",
            "add sp, #8",
            "pop {{r4-r11, pc}}",
            fc3_slow!($v),
        )
    };
}

/// [`s4_rows3_i32`] for rows of at most 256 inputs (`words <= 32`): one block per row, so no
/// totals in memory; the sums go from the loop (`>> 12`) straight to one `STM`, and the row
/// length, input start and Duff entry are reloaded from the argument block (21 instructions per
/// three rows outside the loop instead of ~35).
///
/// # Safety
///
/// As [`s4_rows3_i32`], with `1 <= words <= 32`.
#[unsafe(naked)]
unsafe extern "C" fn s4_rows3_i32_short(args: *mut S4Args) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "mov lr, r0",
        "sub sp, #8",
        "str lr, [sp]", // [sp] = args, [sp + 4] = end of the input
        "ldr r0, [lr, #28]",
        "ldr r12, [lr, #48]",
        "add r1, r0, r12, lsl #4",
        "str r1, [sp, #4]",
        // Duff entry: skip (8 - words % 8) % 8 steps (112 bytes each) of the first pass.
        "and r12, r12, #7",
        "rsb r12, r12, #8",
        "and r12, r12, #7",
        "adr.w r8, 11f",
        "movs r9, #112",
        "mla r8, r12, r9, r8",
        "orr r8, r8, #1",
        "str r8, [lr, #56]",
        "mov.w r10, #0xF000F000",
        "ldr r1, [lr, #76]",
        "ldr r4, [lr, #36]",
        // Three rows (r1 = the first, r4 = the row length, r8 = the entry).
        "20:",
        "add r2, r1, r4",
        "add r3, r2, r4",
        "mov.w r11, #0",
        "mov.w r12, #0",
        "mov.w lr, #0",
        "bx r8",
        ".p2align 2",
        "11:",
        s4_step3!(),
        s4_step3!(),
        s4_step3!(),
        s4_step3!(),
        s4_step3!(),
        s4_step3!(),
        s4_step3!(),
        s4_step3!(),
        "ldr r9, [sp, #4]",
        "cmp r0, r9",
        "bne 11b",
        // The sums / 4096 (exact) to the outputs.
        "ldr r9, [sp]",
        "asr r11, r11, #12",
        "asr r12, r12, #12",
        "asr lr, lr, #12",
        "ldr r5, [r9, #8]",
        "stm r5!, {{r11, r12, lr}}",
        "str r5, [r9, #8]",
        "ldr r8, [r9, #24]",
        "cmp r5, r8",
        "beq 90f",
        // The next three rows start where row 2 ended.
        "mov r1, r3",
        "ldr r4, [r9, #36]",
        "ldr r0, [r9, #28]",
        "ldr r8, [r9, #56]",
        "b 20b",
        "90:",
        "add sp, #8",
        "pop {{r4-r11, pc}}",
    )
}

/// Three rows per pass, requantized int8 outputs, any `act_min`.
///
/// # Safety
///
/// As [`s4_rows3_sat`].
#[unsafe(naked)]
unsafe extern "C" fn s4_rows3_full(args: *mut S4Args) {
    s4_kernel3!(full)
}

/// Three rows per pass, requantized int8 outputs, `act_min == -128`.
///
/// # Safety
///
/// As [`s4_rows2_sat`] with triples instead of pairs: `(out_end - out) % 3 == 0`, rows
/// `p0 + 3k · r`, `+ r`, `+ 2r` (`p1_off = r`) readable for each triple `k`; `bias`, `mult`,
/// `shift` readable for three int32 per triple.
#[unsafe(naked)]
unsafe extern "C" fn s4_rows3_sat(args: *mut S4Args) {
    s4_kernel3!(sat)
}

/// Three rows per pass, int32 sums without bias (`out` points to int32, `(out_end - out) / 12`
/// triples).
///
/// # Safety
///
/// As [`s4_rows3_sat`] without the per-channel arrays, with `out..out_end` 4-aligned int32.
#[unsafe(naked)]
unsafe extern "C" fn s4_rows3_i32(args: *mut S4Args) {
    s4_kernel3!(i32)
}

/// Pre-extends `input` (`n % 8 == 0`, `n <= MAX_IN`) into the halfword pairs of the module docs.
fn extend(input: &[i8], xbuf: &mut [MaybeUninit<u32>; MAX_IN / 2]) {
    let pair = |a: i8, b: i8| (a as i16 as u16 as u32) | ((b as i16 as u16 as u32) << 16);
    for (slot, x) in xbuf.chunks_exact_mut(4).zip(input.chunks_exact(8)) {
        slot[0].write(pair(x[3], x[7]));
        slot[1].write(pair(x[2], x[6]));
        slot[2].write(pair(x[1], x[5]));
        slot[3].write(pair(x[0], x[4]));
    }
}

/// The argument block for rows of `input` (pre-extended into `xbuf`), first row `row0`, no
/// outputs or parameters yet.
fn args(xbuf: &[MaybeUninit<u32>], row0: *const u8, n: usize) -> S4Args {
    S4Args {
        mult: core::ptr::null(),
        shift: core::ptr::null(),
        out: core::ptr::null_mut(),
        zl2p1: 0,
        lo: 0,
        bias: core::ptr::null(),
        out_end: core::ptr::null_mut(),
        x: xbuf.as_ptr().cast(),
        x_end: 0,
        p1_off: s4_row_bytes(n),
        sum0: 0,
        sum1: 0,
        words: n / 8,
        sum2: 0,
        entry: 0,
        first_end: 0,
        zp: 0,
        act_min: 0,
        act_max: 0,
        p0: row0,
    }
}

/// The rows of `n_out` for the three-row kernels ([`triple_rows`]); none with the `two-row`
/// feature, which leaves those kernels unused (not linked): every row then runs through the
/// two-row kernels, with the same results.
fn triples(n_out: usize) -> usize {
    if cfg!(feature = "two-row") {
        0
    } else {
        triple_rows(n_out)
    }
}

/// [`crate::kernels::linear_s4`] for Armv7E-M.
pub fn linear_s4(
    input: &[i8],
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
) -> Result<(), Error> {
    check_linear_s4(input, weights, stage, output)?;
    let n = input.len();
    let n_out = output.len();
    if !n.is_multiple_of(8) || n > MAX_IN || stage.act_max != i8::MAX || n_out == 0 {
        return portable::linear_s4(input, weights, stage, output);
    }
    let mut xbuf = [const { MaybeUninit::<u32>::uninit() }; MAX_IN / 2];
    extend(input, &mut xbuf);
    let sat = stage.act_min == i8::MIN;
    let kernel = if sat { s4_rows2_sat } else { s4_rows2_full };
    let mut a = S4Args {
        mult: stage.multipliers.as_ptr(),
        shift: stage.shifts.as_ptr(),
        out: output.as_mut_ptr().cast(),
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
        ..args(&xbuf, weights.as_ptr(), n)
    };
    let kernel3 = if sat { s4_rows3_sat } else { s4_rows3_full };
    let row = |o: usize| weights.as_ptr().wrapping_add(o * s4_row_bytes(n));
    let done = triples(n_out);
    if done > 0 {
        a.out_end = output.as_mut_ptr().wrapping_add(done).cast();
        // SAFETY: n / 8 >= 1 words; `xbuf` is 4-aligned with its first n / 2 words written by
        // `extend`, of which the kernel reads 16 · (n / 8) = 2n bytes; rows 0..done (<= n_out)
        // are `n / 2 = 4 · words` bytes each, back to back inside `weights` (checked:
        // n_out · n / 2 bytes; `p1_off` is the row length); `bias`/`multipliers`/`shifts` hold
        // n_out int32 each (checked), the kernel reads `done` of each and writes
        // output[..done].
        unsafe { kernel3(&mut a) };
    }
    let even = done + ((n_out - done) & !1);
    if even > done {
        a.mult = stage.multipliers.as_ptr().wrapping_add(4 * done);
        a.shift = stage.shifts.as_ptr().wrapping_add(4 * done);
        a.bias = stage.bias.as_ptr().wrapping_add(4 * done);
        a.out = output.as_mut_ptr().wrapping_add(done).cast();
        a.out_end = output.as_mut_ptr().wrapping_add(even).cast();
        a.p0 = row(done);
        // SAFETY: as above for the pair of rows done..even (< n_out), reading the parameters of
        // those rows and writing output[done..even].
        unsafe { kernel(&mut a) };
    }
    if even < n_out {
        // The last row alone, as both rows of a pair, with its per-channel parameters
        // duplicated and the second output discarded.
        let o = n_out - 1;
        let (bias, mult, shift) = last_row_params(stage, o);
        let mut out2 = [0i8; 2];
        a.mult = mult.as_ptr();
        a.shift = shift.as_ptr();
        a.bias = bias.as_ptr();
        a.out = out2.as_mut_ptr().cast();
        a.out_end = out2.as_mut_ptr().wrapping_add(2).cast();
        a.p0 = row(o);
        a.p1_off = 0;
        // SAFETY: as above for the single row `o` (read twice), with 2 int32 of each parameter
        // in the local arrays and 2 writable output bytes.
        unsafe { kernel(&mut a) };
        output[o] = out2[0];
    }
    Ok(())
}

/// [`crate::kernels::matvec_i32_s4`] for Armv7E-M.
pub fn matvec_i32_s4(input: &[i8], weights: &[u8], output: &mut [i32]) -> Result<(), Error> {
    check_matvec_i32_s4(input, weights, output)?;
    let n = input.len();
    let n_out = output.len();
    if !n.is_multiple_of(8) || n > MAX_IN || n_out == 0 {
        return portable::matvec_i32_s4(input, weights, output);
    }
    let mut xbuf = [const { MaybeUninit::<u32>::uninit() }; MAX_IN / 2];
    extend(input, &mut xbuf);
    let mut a = args(&xbuf, weights.as_ptr(), n);
    let row = |o: usize| weights.as_ptr().wrapping_add(o * s4_row_bytes(n));
    let done = triples(n_out);
    if done > 0 {
        a.out = output.as_mut_ptr().cast();
        a.out_end = output.as_mut_ptr().wrapping_add(done).cast();
        if n <= 256 {
            // SAFETY: as in `linear_s4` for rows 0..done, without per-channel arrays, with
            // words = n / 8 <= 32; it writes output[..done] (int32, 4-aligned).
            unsafe { s4_rows3_i32_short(&mut a) };
        } else {
            // SAFETY: as in `linear_s4` for rows 0..done, without per-channel arrays; it writes
            // output[..done] (int32, 4-aligned).
            unsafe { s4_rows3_i32(&mut a) };
        }
    }
    let even = done + ((n_out - done) & !1);
    if even > done {
        a.out = output.as_mut_ptr().wrapping_add(done).cast();
        a.out_end = output.as_mut_ptr().wrapping_add(even).cast();
        a.p0 = row(done);
        // SAFETY: as in `linear_s4` for the pair of rows done..even, without per-channel
        // arrays; it writes output[done..even] (int32, 4-aligned).
        unsafe { s4_rows2_i32(&mut a) };
    }
    if even < n_out {
        let o = n_out - 1;
        let mut out2 = [0i32; 2];
        a.out = out2.as_mut_ptr().cast();
        a.out_end = out2.as_mut_ptr().wrapping_add(2).cast();
        a.p0 = row(o);
        a.p1_off = 0;
        // SAFETY: as above for the single row `o` (read twice) into 2 local int32.
        unsafe { s4_rows2_i32(&mut a) };
        output[o] = out2[0];
    }
    Ok(())
}
