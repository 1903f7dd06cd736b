//! Fully connected layer with int4 weights ([`linear_s4`], [`matvec_i32_s4`]) for Armv7E-M:
//! two rows per pass over a pre-extended input, and no nibble is ever sign-extended.
//!
//! A weight word holds 8 nibbles `n0..n7` (low nibble first, see
//! [`crate::kernels::linear_s4`]). `AND` with `0xF000F000`, of the word shifted left by 0, 4, 8
//! and 12, leaves two nibbles in the top 4 bits of the two halfwords: `(n3, n7)`, `(n2, n6)`,
//! `(n1, n5)`, `(n0, n4)`, each worth `4096 · n` as a signed halfword, since the nibble's sign
//! bit is the halfword's. `SMLAD` multiplies them with the input, pre-extended once into the same
//! pairs of halfwords `X0 = (x3, x7)`, `X1 = (x2, x6)`, `X2 = (x1, x5)`, `X3 = (x0, x4)`. One
//! step is 8 inputs × 2 rows, 19 instructions for 16 MACs:
//!
//! ```text
//! ldm   x!, {X0, X1, X2, X3}          ; 8 pre-extended inputs, shared by both rows
//! ldr   W, [p0], #4                   ; 8 int4 weights of row 0
//! and   T, W, M          ; smlad a0, T, X0, a0      (M = 0xF000F000)
//! and   T, M, W, lsl #4  ; smlad a0, T, X1, a0
//! and   T, M, W, lsl #8  ; smlad a0, T, X2, a0
//! and   T, M, W, lsl #12 ; smlad a0, T, X3, a0
//! ldr   W, [p1], #4 ...               ; row 1, same inputs
//! ```
//!
//! unrolled twice. CMSIS-NN's `arm_fully_connected_s4` unpacks nibbles with shifts and
//! sign-extensions (39 instructions per 8 MACs, see `firmware/BENCH.md`).
//!
//! The sums are `4096 ×` the true sums. A block of at most 256 inputs is summed in a register
//! (`|4096 · 8 · 128| · 256 = 2^30` fits), then shifted right by 12 (exact: every term is a
//! multiple of 4096) and added to the row's accumulator, which wraps like the portable kernel's.
//!
//! The DSP path needs `n % 8 == 0` (so every row is whole weight words; rows may start at any
//! alignment: `LDR` may be unaligned on Armv7-M) and `n <= MAX_IN`; other shapes use the
//! portable kernel. Requantization is the fast output stage of the module docs of `dsp` (in Rust, once per
//! output row), or the portable one for channels it does not cover.

use core::mem::MaybeUninit;

use super::FastRequant;
use crate::kernels::linear_s4::{check_linear_s4, check_matvec_i32_s4, s4_row_bytes};
use crate::kernels::{portable, OutputStage};
use crate::Error;

/// Largest input length of the DSP path (the pre-extended input lives on the stack: `2 · MAX_IN`
/// bytes, uninitialised).
const MAX_IN: usize = 1024;

/// Rows per call of [`s4_rows2`] (its int32 results live on the stack); even.
const CHUNK: usize = 32;

/// The argument block of [`s4_rows2`]; offsets are hard-coded in the assembly.
#[repr(C)]
struct S4Args {
    x: *const u32,     // 0   pre-extended input (4 words per 8 inputs)
    p0: *const u8,     // 4   first row of the next pair (advanced by the kernel)
    p1_off: usize,     // 8   second row = p0 + p1_off: the row length, or 0 (one row, twice)
    words: usize,      // 12  weight words per row (>= 1); overwritten with the input's end
    acc0: i32,         // 16  scratch: row 0's sum
    acc1: i32,         // 20  scratch: row 1's sum
    out: *mut i32,     // 24  sums, two per pair (advanced by the kernel)
    out_end: *mut i32, // 28
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

/// `Σ x·w` of each row, two rows per pass, for `(out_end - out) / 2` pairs of rows back to back
/// from `p0` (see the module docs).
///
/// # Safety
///
/// `args.words >= 1`; `args.x` 4-aligned and readable for `16 · words` bytes; every pair's rows
/// (`p0 + 2k · r` and `+ p1_off`, `r = 4 · words` bytes each, any alignment) readable, for
/// `k < pairs = (out_end - out) / 2 >= 1`; `args.out` 4-aligned and writable for `2 · pairs` int32.
#[unsafe(naked)]
unsafe extern "C" fn s4_rows2(args: *mut S4Args) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "mov lr, r0",
        "ldr r0, [lr, #0]",
        "ldr r12, [lr, #12]",
        "add r12, r0, r12, lsl #4",
        "str r12, [lr, #12]", // end of the input
        "mov.w r3, #0xF000F000",
        // A pair of rows.
        "20:",
        "ldr r1, [lr, #4]",
        "ldr r2, [lr, #8]",
        "add r2, r1, r2",
        "ldr r0, [lr, #0]",
        "mov.w r9, #0",
        "str r9, [lr, #16]",
        "str r9, [lr, #20]",
        // A block of up to 32 words (256 inputs).
        "10:",
        "mov.w r10, #0",
        "mov.w r11, #0",
        "ldr r12, [lr, #12]",
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
        "ldr r9, [lr, #16]",
        "add r9, r9, r10, asr #12",
        "str r9, [lr, #16]",
        "ldr r9, [lr, #20]",
        "add r9, r9, r11, asr #12",
        "str r9, [lr, #20]",
        "ldr r12, [lr, #12]",
        "cmp r0, r12",
        "bne 10b",
        // Store the pair's sums; the next pair starts where row 1 ended.
        "str r2, [lr, #4]",
        "ldr r9, [lr, #24]",
        "ldrd r10, r11, [lr, #16]",
        "strd r10, r11, [r9], #8",
        "str r9, [lr, #24]",
        "ldr r10, [lr, #28]",
        "cmp r9, r10",
        "bne 20b",
        "pop {{r4-r11, pc}}",
    )
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

/// Calls `f(o, sums)` for runs of up to [`CHUNK`] rows from row `o`, with
/// `sums[k] = Σ_i input[i]·w[o + k][i]` (wrapping). Shapes checked by the caller; `n % 8 == 0`,
/// `8 <= n <= MAX_IN`.
fn rows(input: &[i8], weights: &[u8], n_out: usize, mut f: impl FnMut(usize, &[i32])) {
    let n = input.len();
    let row_bytes = s4_row_bytes(n);
    let mut xbuf = [const { MaybeUninit::<u32>::uninit() }; MAX_IN / 2];
    extend(input, &mut xbuf);
    let mut sums = [0i32; CHUNK];
    let mut o = 0;
    while o < n_out {
        let len = CHUNK.min(n_out - o);
        let even = len & !1;
        let mut args = S4Args {
            x: xbuf.as_ptr().cast(),
            p0: weights.as_ptr().wrapping_add(o * row_bytes),
            p1_off: row_bytes,
            words: n / 8,
            acc0: 0,
            acc1: 0,
            out: sums.as_mut_ptr(),
            out_end: sums.as_mut_ptr().wrapping_add(even),
        };
        if even > 0 {
            // SAFETY: n / 8 >= 1 words; `xbuf` is 4-aligned with its first n / 2 words written
            // by `extend` (4 per 8 inputs), of which the kernel reads 16 · (n / 8) = 2n bytes;
            // rows o..o + even (< n_out) are `row_bytes = n / 2 = 4 · words` bytes each inside
            // `weights` (checked: n_out · row_bytes bytes); it writes sums[..even].
            unsafe { s4_rows2(&mut args) };
        }
        if len > even {
            // The last row of an odd run, as both rows of a pair (len <= CHUNK - 1 here, so
            // sums[even..even + 2] exists).
            args.x = xbuf.as_ptr().cast();
            args.p0 = weights.as_ptr().wrapping_add((o + even) * row_bytes);
            args.p1_off = 0;
            args.words = n / 8;
            args.out = sums.as_mut_ptr().wrapping_add(even);
            args.out_end = sums.as_mut_ptr().wrapping_add(even + 2);
            // SAFETY: as above for the single row o + even < n_out, read twice; it writes
            // sums[even..even + 2].
            unsafe { s4_rows2(&mut args) };
        }
        f(o, &sums[..len]);
        o += len;
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
    if !n.is_multiple_of(8) || n > MAX_IN {
        return portable::linear_s4(input, weights, stage, output);
    }
    let n_out = output.len();
    // The fast output stage where the channel allows it (see `dsp`'s module docs), else the
    // portable one.
    let full = stage.act_min != i8::MIN;
    let zl = stage.zero_point as i32 - if full { stage.act_min as i32 } else { 0 };
    let lo = stage.act_min as i32;
    let mut channels = stage.channels();
    let mut outputs = output.iter_mut();
    rows(input, weights, n_out, |_, sums| {
        // `sums` first: it ends the zip before an output or a channel is taken.
        for ((&acc, y), ch) in sums.iter().zip(&mut outputs).zip(&mut channels) {
            let acc = ch.bias.wrapping_add(acc);
            *y = match FastRequant::new(ch.multiplier, ch.shift, zl, stage.act_max) {
                Some(f) => f.apply(acc, full, lo),
                None => stage.requantize(acc, ch),
            };
        }
    });
    Ok(())
}

/// [`crate::kernels::matvec_i32_s4`] for Armv7E-M.
pub fn matvec_i32_s4(input: &[i8], weights: &[u8], output: &mut [i32]) -> Result<(), Error> {
    check_matvec_i32_s4(input, weights, output)?;
    let n = input.len();
    if !n.is_multiple_of(8) || n > MAX_IN {
        return portable::matvec_i32_s4(input, weights, output);
    }
    rows(input, weights, output.len(), |o, sums| {
        output[o..o + sums.len()].copy_from_slice(sums);
    });
    Ok(())
}
