//! The fully connected loop for offset-binary int8 weights
//! ([`crate::format::WeightType::Int8Offset`], see `kernels::linear_offset` for the layout and
//! the portable reference): int32 outputs only (the GPT's projections).
//!
//! The input is pre-extended once per call into two words per 4 inputs,
//! `P = SXTB16(x) = (x0, x2)` and `Q = REV16(x) ^ 0xFF80_FF80 = (q1, q3)`,
//! `q_o = (x_o + 128) + 256·(!x_{o-1}) = x_o − 128 − 256·x_{o-1}` (a valid halfword for every
//! pair of int8 inputs, −32768..32767), and the vector constant `−128·Σ_e x_e` is summed on the
//! way. A weight word `[e0 b1 e2 b3]` read as halfwords is `(b0 + 128 + 256·b1, b2 + 128 + 256·b3)`
//! and `t = SXTB16(w, ROR #8) = (b1, b3)`, so
//!
//! ```text
//! SMLAD(acc, w, P) + SMLAD(acc, t, Q) = Σ x·b + 128·Σ_e x_e − 128·Σ_o b_o   (mod 2^32)
//! ```
//!
//! and each accumulator starts at its row's stored constant `128·Σ_o b_o` plus the vector
//! constant: the sums are the exact products, bit-identical to the portable kernel (`SMLAD`
//! keeps the low 32 bits of the exact sum). The inner step of 8 inputs × 3 rows is `LDM` +
//! 3 × (`LDRD` + 2 `SXTB16` + 4 `SMLAD`) = 22 instructions for 24 MACs (the plain int8 three-row
//! kernel: 28), unrolled 8 times with a Duff entry.
//!
//! Three rows per pass only (with the `two-row` feature too: there is no plain-int8 equivalent
//! to drop, and this one kernel covers every row). When the row count is not a multiple of 3 the
//! last three rows run again as one more (overlapping) triple: at most 2 rows computed twice,
//! about what a two-row tail kernel would cost, without its code. Fewer than 3 rows, weights or
//! row constants that are not word-aligned, or inputs longer than [`MAX_IN`] use the portable
//! kernel (the GPT's matrices are word-aligned in the file, and `cols % 8 == 0` is a format rule).

use core::mem::MaybeUninit;

use crate::kernels::linear_offset::{check_matvec_i32_offset, matvec_i32_offset as portable};
use crate::Error;

/// Largest input length of the DSP path (the pre-extended input lives on the stack: `2 · MAX_IN`
/// bytes, uninitialised).
pub const MAX_IN: usize = 1024;

/// Pre-extends `words` input words at `x` into `buf` (`P`, `Q` per word) and returns the vector
/// correction `−128·Σ_e x_e`. Per 4 inputs: `LDR`, `SXTB16`, `REV16`, `EOR`, `SMLAD` (the sum
/// of `P`'s lanes), `STRD`, loop: 8 instructions.
///
/// # Safety
///
/// `x` readable for `words >= 1` words (any alignment), `buf` writable for `2·words` words,
/// 4-aligned.
#[unsafe(naked)]
unsafe extern "C" fn pre_extend(x: *const u32, buf: *mut u32, words: usize) -> i32 {
    core::arch::naked_asm!(
        "push {{r4-r7}}",
        "add r2, r0, r2, lsl #2", // end of x
        "movw r3, #0xff80",
        "movt r3, #0xff80",
        "movw r7, #1",
        "movt r7, #1",
        "movs r12, #0",
        "1:",
        "ldr r4, [r0], #4",
        "sxtb16 r5, r4",
        "rev16 r6, r4",
        "eor r6, r6, r3",
        "smlad r12, r5, r7, r12",
        "strd r5, r6, [r1], #8",
        "cmp r0, r2",
        "bne 1b",
        "rsb r0, r12, #0",
        "lsl r0, r0, #7",
        "pop {{r4-r7}}",
        "bx lr",
    )
}

/// The argument block of [`fc_rows3_off`] (offsets in the comments).
#[repr(C)]
struct OffArgs {
    x: *const u32,     // 0   pre-extended input (P, Q per 4 inputs)
    x_end: *const u32, // 4
    out: *mut i32,     // 8   advanced by the kernel
    out_end: *mut i32, // 12
    corr: *const i32,  // 16  row constants (4-aligned i32), advanced by the kernel
    vc: i32,           // 20  the vector correction
    advance: i32,      // 24  bytes added to the row pointers after each triple (2·n)
    duff: usize,       // 28  set by the kernel
    pairs: u32,        // 32  steps of 8 inputs (n / 8)
    p0: *const u8,     // 36
    p1: *const u8,     // 40
    p2: *const u8,     // 44
}

/// 8 inputs × 3 rows: 22 instructions for 24 MACs, all 32 bits wide (88 bytes, for the Duff
/// entry).
#[rustfmt::skip]
macro_rules! off_step {
    () => {
        concat!(
            "ldm.w r0!, {{r4, r5, r6, r7}}\n", // P0, Q0, P1, Q1
            off_row!("r1", "r11"),
            off_row!("r2", "r12"),
            off_row!("r3", "lr"),
        )
    };
}

/// 8 offset-binary weights of the row at `$p` (post-incremented) into `$acc` (uses r8, r9).
#[rustfmt::skip]
macro_rules! off_row {
    ($p:literal, $acc:literal) => {
        concat!(
            "ldrd r8, r9, [", $p, "], #8\n",
            "smlad ", $acc, ", r8, r4, ", $acc, "\n",  // (e0 + 256·b1, e2 + 256·b3) · (x0, x2)
            "sxtb16 r8, r8, ror #8\n",                 // (b1, b3)
            "smlad ", $acc, ", r8, r5, ", $acc, "\n",  // · (q1, q3)
            "smlad ", $acc, ", r9, r6, ", $acc, "\n",
            "sxtb16 r9, r9, ror #8\n",
            "smlad ", $acc, ", r9, r7, ", $acc, "\n",
        )
    };
}

/// Accumulators of the next three rows (r11, r12, lr) = their corrections + the vector
/// correction, then the jump to the Duff entry. Expects lr = args; uses r8-r10.
#[rustfmt::skip]
macro_rules! off_init_and_enter {
    () => {
        concat!(
            "ldr r8, [lr, #16]\n",
            "add r9, r8, #12\n",
            "str r9, [lr, #16]\n",
            "ldr r10, [lr, #20]\n",
            "ldr r9, [lr, #28]\n",
            "ldm r8, {{r11, r12, lr}}\n",
            "add r11, r11, r10\n",
            "add r12, r12, r10\n",
            "add lr, lr, r10\n",
            "bx r9\n",
        )
    };
}

/// Three rows per pass of offset-binary weights, int32 outputs (the structure of aka-core's
/// `fc_rows3_i32`: Duff entry into 8 unrolled steps, all registers).
///
/// # Safety
///
/// `a` points to a valid [`OffArgs`] with `pairs >= 1`, `x_end = x + 4·pairs` words readable and
/// 4-aligned, `advance = 2·n` for rows of `n = 8·pairs` bytes back to back, and for every triple
/// `g` of rows (`p0`, `p1`, `p2` advanced by `n + advance` per triple) those bytes readable and
/// 4-aligned; `corr` readable for three int32 per triple; `out..out_end` 4-aligned int32,
/// writable, three per triple.
#[unsafe(naked)]
unsafe extern "C" fn fc_rows3_off(a: *mut OffArgs) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "mov lr, r0",
        "ldr r1, [lr, #4]",
        "push {{r0, r1}}", // [sp] = args, [sp + 4] = x_end
        // Duff entry: skip (8 - pairs % 8) % 8 steps of the first pass (88 bytes each).
        "ldr r0, [lr, #32]",
        "adr.w r2, 20f",
        "and r1, r0, #7",
        "rsb r1, r1, #8",
        "and r1, r1, #7",
        "movs r3, #88",
        "mla r2, r1, r3, r2",
        "orr r2, r2, #1",
        "str r2, [lr, #28]",
        "ldr r1, [lr, #36]",
        "ldr r2, [lr, #40]",
        "ldr r3, [lr, #44]",
        "ldr r0, [lr, #0]",
        off_init_and_enter!(),
        ".p2align 2",
        "20:",
        off_step!(),
        off_step!(),
        off_step!(),
        off_step!(),
        off_step!(),
        off_step!(),
        off_step!(),
        off_step!(),
        "ldr r10, [sp, #4]",
        "cmp r0, r10",
        "bne 20b",
        // Store the three sums; return or start the next three rows.
        "ldr r10, [sp]",
        "ldr r5, [r10, #8]",
        "stm r5!, {{r11, r12, lr}}",
        "str r5, [r10, #8]",
        "ldr r8, [r10, #12]",
        "cmp r5, r8",
        "beq 90f",
        "ldr r4, [r10, #24]",
        "add r1, r1, r4",
        "add r2, r2, r4",
        "add r3, r3, r4",
        "ldr r0, [r10, #0]",
        "mov lr, r10",
        off_init_and_enter!(),
        "90:",
        "add sp, #8",
        "pop {{r4-r11, pc}}",
    )
}

/// The buffer of an [`OffsetInput`]: one input vector pre-extended by the DSP kernel
/// (`2 · MAX_IN` bytes, uninitialised until used). Declare it once (e.g. on the stack of the
/// function that runs several products) and lend it to each [`OffsetInput`].
pub struct OffsetBuf([MaybeUninit<u32>; MAX_IN / 2]);

impl OffsetBuf {
    /// An unused buffer (no initialisation).
    #[inline(always)]
    pub const fn new() -> Self {
        Self([const { MaybeUninit::uninit() }; MAX_IN / 2])
    }
}

impl Default for OffsetBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// One input vector for several [`matvec_i32_offset_pre`] calls (e.g. the q, k and v
/// projections of the same activations, or the row chunks of one matrix): the DSP kernel
/// pre-extends it into the borrowed [`OffsetBuf`] on the first call and reuses it after.
pub struct OffsetInput<'x, 'b> {
    x: &'x [i8],
    buf: &'b mut OffsetBuf,
    /// The vector correction once `buf` holds the pre-extended input (its first
    /// `x.len() / 2` words).
    vc: Option<i32>,
}

impl<'x, 'b> OffsetInput<'x, 'b> {
    /// `x`, not yet pre-extended.
    #[inline(always)]
    pub fn new(x: &'x [i8], buf: &'b mut OffsetBuf) -> Self {
        Self { x, buf, vc: None }
    }

    /// The input vector.
    #[inline(always)]
    pub fn input(&self) -> &'x [i8] {
        self.x
    }

    /// The pre-extended input (pre-extending it on the first call) and its vector correction;
    /// `None` for inputs the DSP path does not take (empty, `len % 8 != 0` or above `MAX_IN`).
    fn extended(&mut self) -> Option<(*const u32, i32)> {
        let n = self.x.len();
        if n == 0 || !n.is_multiple_of(8) || n > MAX_IN {
            return None;
        }
        let vc = match self.vc {
            Some(vc) => vc,
            None => {
                // SAFETY: `x` holds n / 4 >= 2 words (read with LDR, any alignment); the buffer
                // holds MAX_IN / 2 >= 2·(n / 4) words, 4-aligned.
                let vc = unsafe {
                    pre_extend(
                        self.x.as_ptr().cast(),
                        self.buf.0.as_mut_ptr().cast(),
                        n / 4,
                    )
                };
                self.vc = Some(vc);
                vc
            }
        };
        Some((self.buf.0.as_ptr().cast(), vc))
    }
}

/// [`matvec_i32_offset`] of a prepared input (`x.input()`): the same results and shape errors;
/// the input is pre-extended once over every call with the same `x`.
pub fn matvec_i32_offset_pre(
    x: &mut OffsetInput<'_, '_>,
    weights: &[u8],
    consts: &[u8],
    output: &mut [i32],
) -> Result<(), Error> {
    let input = x.input();
    check_matvec_i32_offset(input, weights, consts, output)?;
    if output.len() < 3
        || !(weights.as_ptr() as usize).is_multiple_of(4)
        || !(consts.as_ptr() as usize).is_multiple_of(4)
    {
        return portable(input, weights, consts, output);
    }
    match x.extended() {
        // SAFETY: `xbuf` holds the n / 2 words of `input` written by `pre_extend` (n =
        // input.len(), checked by `extended`); shapes checked above.
        Some((xbuf, vc)) => unsafe { run_rows(xbuf, vc, input.len(), weights, consts, output) },
        None => return portable(input, weights, consts, output),
    }
    Ok(())
}

/// The products of every row (at least 3) with the pre-extended input at `xbuf`: whole triples,
/// then the last three rows again when the row count is not a multiple of 3.
///
/// # Safety
///
/// `xbuf` 4-aligned with the `n / 2` words `pre_extend` wrote for an input of `n` bytes
/// (`n % 8 == 0`, `n >= 8`); the shapes of [`check_matvec_i32_offset`] with
/// `output.len() >= 3`; `weights` and `consts` 4-aligned.
#[inline(always)]
unsafe fn run_rows(
    xbuf: *const u32,
    vc: i32,
    n: usize,
    weights: &[u8],
    consts: &[u8],
    output: &mut [i32],
) {
    let n_out = output.len();
    let whole = n_out - n_out % 3;
    let mut run = |r0: usize, rows: usize| {
        let w = weights.as_ptr().wrapping_add(r0 * n);
        let out = output.as_mut_ptr().wrapping_add(r0);
        let mut args = OffArgs {
            x: xbuf,
            x_end: xbuf.wrapping_add(n / 2),
            out,
            out_end: out.wrapping_add(rows),
            corr: consts.as_ptr().cast::<i32>().wrapping_add(r0),
            vc,
            advance: 2 * n as i32,
            duff: 0,
            pairs: (n / 8) as u32,
            p0: w,
            p1: w.wrapping_add(n),
            p2: w.wrapping_add(2 * n),
        };
        // SAFETY: rows r0..r0 + rows (a multiple of 3, inside n_out) of n bytes each are inside
        // `weights` (length n·n_out by the shape check, 4-aligned, n % 8 == 0 so every row is
        // 4-aligned); `consts` holds n_out little-endian i32 (4-aligned; the target is little
        // endian), `output` n_out i32; `xbuf` holds n / 2 words written by `pre_extend`;
        // pairs = n / 8 >= 1 and x_end = x + 4·pairs. The kernel writes output[r0..r0 + rows].
        unsafe { fc_rows3_off(&mut args) };
    };
    run(0, whole);
    if whole < n_out {
        run(n_out - 3, 3);
    }
}

/// `output[o] = Σ input·W[o]` for offset-binary rows (see the module docs); the same results
/// and shape errors as the portable `matvec_i32_offset`.
pub fn matvec_i32_offset(
    input: &[i8],
    weights: &[u8],
    consts: &[u8],
    output: &mut [i32],
) -> Result<(), Error> {
    check_matvec_i32_offset(input, weights, consts, output)?;
    let (n, n_out) = (input.len(), output.len());
    if n_out < 3
        || n > MAX_IN
        || !(weights.as_ptr() as usize).is_multiple_of(4)
        || !(consts.as_ptr() as usize).is_multiple_of(4)
    {
        return portable(input, weights, consts, output);
    }
    let mut xbuf = [const { MaybeUninit::<u32>::uninit() }; MAX_IN / 2];
    // SAFETY: `input` holds n / 4 >= 2 words (read with LDR, any alignment); `xbuf` holds
    // MAX_IN / 2 >= 2·(n / 4) words, 4-aligned; the kernel below reads only those written.
    let vc = unsafe { pre_extend(input.as_ptr().cast(), xbuf.as_mut_ptr().cast(), n / 4) };
    // SAFETY: `xbuf` holds the n / 2 words written by `pre_extend`; shapes checked above.
    unsafe { run_rows(xbuf.as_ptr().cast(), vc, n, weights, consts, output) };
    Ok(())
}
