//! The three-row fully connected kernels (`fc_rows3_full`, `fc_rows3_sat`, `fc_rows3_i32`) and
//! their safe wrappers, a child module of `linear` (see its module docs for the inner loop). The
//! `two-row` feature leaves this file out: every row then runs through the two-row kernels, with
//! the same results (the size builds, docs/SIZE.md).

use super::{triple_rows, FcArgs, Rows};

/// The triples of [`super::matvec_i32_rows`]: computes `output[..done]` with
/// [`fc_rows3_i32`] and returns `done` (0 when the rows are not whole pairs of aligned words).
/// `args` holds the geometry of [`Rows::args`] for rows `stride` bytes apart.
pub(super) fn matvec_i32(
    args: &mut FcArgs,
    rows: &Rows,
    stride: usize,
    output: &mut [i32],
) -> usize {
    let done = if rows.triples_ok() {
        triple_rows(output.len())
    } else {
        0
    };
    if done > 0 {
        args.out = output.as_mut_ptr().cast();
        args.out_end = output.as_mut_ptr().wrapping_add(done).cast();
        args.advance = (3 * stride - 4 * rows.words) as i32;
        // SAFETY: shapes checked by the callers: `weights` holds n_out rows of n bytes, `stride`
        // apart, word-aligned (k == 0) with an even number of words (`triples_ok`); for each of
        // the `done / 3` triples the kernel reads the rows' `4 · words = n` bytes; `xbuf` holds
        // 2·words initialised words, 4-aligned. It writes output[..done] (int32, 4-aligned) and
        // reads no per-channel parameters.
        unsafe { fc_rows3_i32(args) };
    }
    done
}

/// The triples of [`super::linear`]: computes `output[..done]` with [`fc_rows3_sat`] (`sat`) or
/// [`fc_rows3_full`] and returns `done`. `args` holds the layer's full argument block (rows of
/// `n` bytes back to back, per-channel parameters and `out` from row 0).
pub(super) fn linear(
    args: &mut FcArgs,
    rows: &Rows,
    n: usize,
    sat: bool,
    output: &mut [i8],
) -> usize {
    let done = if rows.triples_ok() {
        triple_rows(output.len())
    } else {
        0
    };
    if done > 0 {
        let kernel3 = if sat { fc_rows3_sat } else { fc_rows3_full };
        args.out_end = output.as_mut_ptr().wrapping_add(done);
        args.advance = (3 * n - 4 * rows.words) as i32;
        // SAFETY: shapes checked by the caller: `weights` holds n_out rows of n bytes,
        // word-aligned (k == 0) with an even number of words (`triples_ok`); for each of the
        // `done / 3` triples the kernel reads the rows' n bytes. `bias`/`multipliers`/`shifts`
        // hold n_out int32 each (`fits`), the kernel reads `done` of each and writes
        // output[..done]. `xbuf` holds 2·words initialised words, 4-aligned.
        unsafe { kernel3(args) };
    }
    done
}

/// One step of the three-row loop: 8 inputs × 3 rows, 28 instructions for 24 MACs, every one
/// 32 bits wide (112 bytes per step, for the Duff entry).
#[rustfmt::skip]
macro_rules! fc3_step {
    () => {
        concat!(
            "ldm.w r0!, {{r4, r5, r6, r7}}\n",  // 8 pre-extended inputs, shared by the 3 rows
            fc3_row!("r1", "r11"),
            fc3_row!("r2", "r12"),
            fc3_row!("r3", "lr"),
        )
    };
}

/// 8 weights of the row at `$p` (post-incremented) into accumulator `$acc` (uses r8-r10).
#[rustfmt::skip]
macro_rules! fc3_row {
    ($p:literal, $acc:literal) => {
        concat!(
            "ldrd r8, r9, [", $p, "], #8\n",
            "sxtb16 r10, r8\n",
            "smlad ", $acc, ", r10, r4, ", $acc, "\n",
            "sxtb16 r8, r8, ror #8\n",
            "smlad ", $acc, ", r8, r5, ", $acc, "\n",
            "sxtb16 r10, r9\n",
            "smlad ", $acc, ", r10, r6, ", $acc, "\n",
            "sxtb16 r9, r9, ror #8\n",
            "smlad ", $acc, ", r9, r7, ", $acc, "\n",
        )
    };
}

/// Accumulators of the next three rows (r11, r12, lr: the biases, advancing the bias pointer, or
/// 0), then the jump to the Duff entry. Expects lr = args; uses r8-r10.
#[rustfmt::skip]
macro_rules! fc3_init_and_enter {
    (i32) => {
        concat!(
            "mov r11, #0\n",
            "mov r12, #0\n",
            "ldr r10, [lr, #44]\n",
            "mov lr, #0\n",
            "bx r10\n",
        )
    };
    ($v:ident) => {
        concat!(
            "ldr r8, [lr, #20]\n",
            "ldr r11, [r8], #4\n",
            "ldr r12, [r8], #4\n",
            "ldr r9, [r8], #4\n",
            "str r8, [lr, #20]\n",
            "ldr r10, [lr, #44]\n",
            "mov lr, r9\n",
            "bx r10\n",
        )
    };
}

/// After the three-row loop: stores the outputs, and returns (`90:`) or starts the next three
/// rows. The `i32` outputs are one `STM` with the row pointers kept in registers; the
/// requantizing ones save the row pointers in the argument block (the output stage needs r1-r7).
#[rustfmt::skip]
macro_rules! fc3_next {
    (i32) => {
        concat!(
            "ldr r10, [sp]\n",
            "ldr r5, [r10, #8]\n",
            "stm r5!, {{r11, r12, lr}}\n",
            "str r5, [r10, #8]\n",
            "ldr r8, [r10, #24]\n",
            "cmp r5, r8\n",
            "beq 90f\n",
            "ldr r4, [r10, #36]\n",
            "add r1, r1, r4\n",
            "add r2, r2, r4\n",
            "add r3, r3, r4\n",
            "ldr r0, [r10, #28]\n",
            "mov r11, #0\n",
            "mov r12, #0\n",
            "mov lr, #0\n",
            "ldr r8, [r10, #44]\n",
            "bx r8\n",
        )
    };
    ($v:ident) => {
        concat!(
            "ldr r10, [sp]\n",
            "str r1, [r10, #76]\n",
            "str r2, [r10, #80]\n",
            "str r3, [r10, #88]\n",
            "mov r1, lr\n",
            "mov lr, r10\n",
            fc3_outputs!($v),
            "ldr r0, [lr, #24]\n",
            "cmp r5, r0\n",
            "beq 90f\n",
            "ldr r4, [lr, #36]\n",
            "ldr r1, [lr, #76]\n",
            "ldr r2, [lr, #80]\n",
            "ldr r3, [lr, #88]\n",
            "add r1, r1, r4\n",
            "add r2, r2, r4\n",
            "add r3, r3, r4\n",
            "ldr r0, [lr, #28]\n",
            fc3_init_and_enter!($v),
        )
    };
}

/// The three-row kernel: `(out_end - out) / 3` triples of rows (`/ 12` for `i32`), rows
/// word-aligned (`k == 0`) with an even number of words (`pairs >= 1` steps of 8 inputs, no
/// extras). Registers in the loop: r0 inputs, r1-r3 row pointers, r4-r7 inputs, r8-r10 weights,
/// r11, r12, lr accumulators; the argument block and `x_end` are on the stack.
macro_rules! fc3_kernel {
    ($v:ident) => {
        core::arch::naked_asm!(
            "push {{r4-r11, lr}}",
            "mov lr, r0",
            "ldr r1, [lr, #32]",
            "push {{r0, r1}}", // [sp] = args, [sp + 4] = x_end
            // Duff entry: skip (8 - pairs % 8) % 8 steps of the first pass (112 bytes each).
            "ldr r0, [lr, #48]",
            "adr.w r2, 20f",
            "and r1, r0, #7",
            "rsb r1, r1, #8",
            "and r1, r1, #7",
            "movs r3, #112",
            "mla r2, r1, r3, r2",
            "orr r2, r2, #1",
            "str r2, [lr, #44]",
            // First three rows.
            "ldr r1, [lr, #76]",
            "ldr r2, [lr, #80]",
            "ldr r3, [lr, #88]",
            "ldr r0, [lr, #28]",
            fc3_init_and_enter!($v),
            // The loop: 8 steps of 8 inputs.
            ".p2align 2",
            "20:",
            fc3_step!(),
            fc3_step!(),
            fc3_step!(),
            fc3_step!(),
            fc3_step!(),
            fc3_step!(),
            fc3_step!(),
            fc3_step!(),
            "ldr r10, [sp, #4]",
            "cmp r0, r10",
            "bne 20b",
            fc3_next!($v),
            "90:",
            "add sp, #8",
            "pop {{r4-r11, pc}}",
            fc3_slow!($v),
        )
    };
}

/// Three rows per pass, any `act_min`.
///
/// # Safety
///
/// See [`fc_rows3_sat`].
#[unsafe(naked)]
unsafe extern "C" fn fc_rows3_full(a: *mut FcArgs) {
    fc3_kernel!(full)
}

/// Three rows per pass, `act_min == -128`.
///
/// # Safety
///
/// `a` points to a valid [`FcArgs`] with `pairs >= 1`, `x_end = x + 4 · pairs` words readable and
/// 4-aligned, `advance = 3 · stride - 8 · pairs` (bytes) and, for every triple of rows `g`
/// (`p0`, `p1`, `p2` advanced by `advance` after their `8 · pairs` bytes), those bytes inside the
/// weights; `bias`, `mult`, `shift` readable for three int32 per triple; `out..out_end`
/// writable, three outputs per triple (`(out_end - out) % 3 == 0`).
#[unsafe(naked)]
unsafe extern "C" fn fc_rows3_sat(a: *mut FcArgs) {
    fc3_kernel!(sat)
}

/// Three rows per pass, int32 outputs, no bias.
///
/// # Safety
///
/// As [`fc_rows3_sat`], with `out..out_end` 4-aligned int32 (three per triple) and no
/// per-channel parameters.
#[unsafe(naked)]
unsafe extern "C" fn fc_rows3_i32(a: *mut FcArgs) {
    fc3_kernel!(i32)
}
