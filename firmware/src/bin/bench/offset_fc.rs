//! Prototype, not in aka-core: an int8 `matvec_i32` whose weights are stored with their **even**
//! bytes in offset binary (`b ^ 0x80`, i.e. `b + 128` as an unsigned byte) and their odd bytes as
//! plain int8 (issue 13, part 4: decode speed; docs/RESULTS.md, "A faster inner loop:
//! offset-binary weights (prototype)").
//!
//! Read as two signed halfwords, a raw weight word `[e0 b1 e2 b3]` (`e = b + 128`, 0..255) is
//! `(e0 + 256·b1, e2 + 256·b3)`: the even weights need no sign extension. With
//! `t = SXTB16(w, ROR #8) = (b1, b3)` and two input words per 4 inputs,
//!
//! * `P = SXTB16(x) = (x0, x2)` (the current pre-extension's first word),
//! * `Q = REV16(x) ^ 0xFF80_FF80 = (q1, q3)`, `q_o = (x_o + 128) + 256·(!x_{o-1})
//!   = x_o − 128 − 256·x_{o-1}` (a halfword whose low byte is `x_o ^ 0x80` and whose high byte
//!   is `!x_{o-1}`, so every int8 input gives a valid halfword: no range condition at all),
//!
//! `SMLAD(acc, w, P) + SMLAD(acc, t, Q) = Σ x·b + 128·Σ_e x_e − 128·Σ_o b_o` exactly (mod 2^32,
//! which is what `SMLAD` keeps). `−128·Σ_o b_o` is a per-row constant (an export-time bias
//! fold); `128·Σ_e x_e` a per-vector one, summed while the input is pre-extended and shared by
//! all rows. The inner step of 8 inputs × 3 rows is `LDM` + 3 × (`LDRD` + 2 `SXTB16` +
//! 4 `SMLAD`) = 22 instructions for 24 MACs (the three-row kernel of aka-core: 28).
//!
//! (The lead's formulation, `P = (x_e + 1)`, gives the same `Q` and the constants
//! `Σ_e b_e + 128·Σ_o b_o` and `128·Σ_e x_e + 64·n`; `P = SXTB16(x)` saves the `+1`.)

use core::mem::MaybeUninit;

use aka_core::kernels::portable;
use aka_core::rng::Rng;

/// The largest input this prototype handles (784: the MNIST MLP).
pub const MAX_IN: usize = 784;

/// Offset-binary layout of int8 weights: every even byte (in memory order; rows of a multiple of
/// 4 bytes keep the row's byte parity) XOR 0x80.
pub fn to_offset_binary(w: &mut [u8]) {
    for v in w.iter_mut().step_by(2) {
        *v ^= 0x80;
    }
}

/// The per-row constants that the kernel's sums include, negated (`128·Σ_o b_o` of each row of
/// the *original* int8 weights): a real model would fold them into its bias at export time.
pub fn row_corrections(w: &[u8], n: usize, corr: &mut [i32]) {
    for (c, row) in corr.iter_mut().zip(w.chunks_exact(n)) {
        let odd: i32 = row.iter().skip(1).step_by(2).map(|&b| b as i8 as i32).sum();
        *c = 128 * odd;
    }
}

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
    corr: *const i32,  // 16  per-row corrections, advanced by the kernel
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

/// `output[o] = Σ input·w[o]` for weights `w_off` in the offset-binary layout
/// ([`to_offset_binary`] of int8 rows of `n = input.len()` bytes, back to back, 4-aligned) and
/// `corr` = [`row_corrections`] of the original weights: bit-identical to
/// `portable::matvec_i32` on the original weights. `n % 8 == 0`, `8 <= n <= MAX_IN`,
/// `output.len() >= 3`. When the row count is not a multiple of 3, the last three rows run again
/// as one more triple (overlapping the previous one: at most 2 rows computed twice).
pub fn matvec_i32_offset(input: &[i8], w_off: &[u8], corr: &[i32], output: &mut [i32]) {
    let n = input.len();
    let n_out = output.len();
    assert!(n.is_multiple_of(8) && (8..=MAX_IN).contains(&n) && n_out >= 3);
    assert!(w_off.len() == n * n_out && corr.len() == n_out);
    assert!((w_off.as_ptr() as usize).is_multiple_of(4));
    let mut xbuf = [const { MaybeUninit::<u32>::uninit() }; MAX_IN / 2];
    // SAFETY: `input` holds n / 4 words (read with LDR, any alignment); `xbuf` holds
    // MAX_IN / 2 >= 2·(n / 4) words, 4-aligned; the kernel below reads only those written.
    let vc = unsafe { pre_extend(input.as_ptr().cast(), xbuf.as_mut_ptr().cast(), n / 4) };
    let whole = n_out - n_out % 3;
    let mut run = |r0: usize, rows: usize| {
        let w = w_off.as_ptr().wrapping_add(r0 * n);
        let out = output.as_mut_ptr().wrapping_add(r0);
        let mut args = OffArgs {
            x: xbuf.as_ptr().cast(),
            x_end: xbuf.as_ptr().wrapping_add(n / 2).cast(),
            out,
            out_end: out.wrapping_add(rows),
            corr: corr.as_ptr().wrapping_add(r0),
            vc,
            advance: 2 * n as i32,
            duff: 0,
            pairs: (n / 8) as u32,
            p0: w,
            p1: w.wrapping_add(n),
            p2: w.wrapping_add(2 * n),
        };
        // SAFETY: rows r0..r0 + rows (a multiple of 3, inside n_out) of n bytes each are inside
        // `w_off` (length n·n_out, 4-aligned, n % 8 == 0 so every row is 4-aligned); `corr`
        // and `output` hold n_out int32 (4-aligned); `xbuf` holds n / 2 words written by
        // `pre_extend`; pairs = n / 8 >= 1 and x_end = x + 4·pairs.
        unsafe { fc_rows3_off(&mut args) };
    };
    run(0, whole);
    if whole < n_out {
        run(n_out - 3, 3);
    }
}

/// Checks [`matvec_i32_offset`] against `portable::matvec_i32` bit for bit at `n -> n_out` on
/// random data and on the lane-range edge cases (inputs all −128, all 127, alternating, random
/// ±128/127; weights random, all −128, all 127, random −128/127). `w` and `w_off` hold
/// `n·n_out` bytes (4-aligned), `r` and `y` `n_out` int32. Panics (the run fails) on any
/// difference; returns the number of cases checked.
#[allow(clippy::too_many_arguments)]
pub fn check(
    rng: &mut Rng,
    n: usize,
    n_out: usize,
    x: &mut [i8],
    w: &mut [u8],
    corr: &mut [i32],
    r: &mut [i32],
    y: &mut [i32],
) -> u32 {
    let mut cases = 0;
    for wk in 0..4 {
        for v in w.iter_mut() {
            let u = rng.next_u32();
            *v = match wk {
                0 => u as u8,
                1 => 0x80,
                2 => 0x7f,
                _ => [0x80, 0x7f][(u >> 7) as usize & 1],
            };
        }
        for xk in 0..5 {
            for (i, v) in x.iter_mut().enumerate() {
                let u = rng.next_u32();
                *v = match xk {
                    0 => u as i8,
                    1 => -128,
                    2 => 127,
                    3 => [-128, 127][i & 1],
                    _ => [-128, 127][(u >> 9) as usize & 1],
                };
            }
            portable::matvec_i32(x, w, r).unwrap();
            row_corrections(w, n, corr);
            to_offset_binary(w);
            y.fill(0x5a5a_5a5a);
            matvec_i32_offset(x, w, corr, y);
            to_offset_binary(w); // back to int8
            if let Some(o) = r.iter().zip(y.iter()).position(|(a, b)| a != b) {
                defmt::panic!(
                    "offset-binary matvec_i32 {=usize}->{=usize} differs (weights {=usize}, inputs {=usize}): output {=usize} = {=i32}, expected {=i32}",
                    n,
                    n_out,
                    wk,
                    xk,
                    o,
                    y[o],
                    r[o]
                );
            }
            cases += 1;
        }
    }
    cases
}

/// Only the input pre-extension of [`matvec_i32_offset`] (with its vector correction), for the
/// bench's breakdown; returns the correction.
pub fn pre_extend_only(input: &[i8]) -> i32 {
    let n = input.len();
    assert!(n.is_multiple_of(4) && (4..=MAX_IN).contains(&n));
    let mut xbuf = [const { MaybeUninit::<u32>::uninit() }; MAX_IN / 2];
    // SAFETY: as in `matvec_i32_offset`: n / 4 input words, 2·(n / 4) <= MAX_IN / 2 buffer words.
    let vc = unsafe { pre_extend(input.as_ptr().cast(), xbuf.as_mut_ptr().cast(), n / 4) };
    core::hint::black_box(&xbuf);
    vc
}
