//! `matvec_i32_offset` (offset-binary int8 weights, the GPT's projections) against the portable
//! int8 `matvec_i32` on the same weights in the plain layout (an independent definition: the
//! plain kernel never sees the offset-binary bytes or the row constants), and against the
//! portable `matvec_i32_offset`; and `matvec_i32_offset_pre` (one prepared input, used three
//! times) against the same.

use aka_core::kernels::{self, offset_row_const, portable, to_offset_binary};
use aka_core::rng::Rng;

use super::{Bufs, Tally, W_CAP, X_CAP};

/// Fixed shapes: the GPT's (128→65 head, 128→128, 128→184 (as many rows as the buffer holds), 512→128), odd row counts,
/// fewer than 3 rows (the portable fallback), 8-input rows, the longest DSP input (1024) and one
/// past it (1032, portable).
const SHAPES: [(usize, usize); 12] = [
    (128, 65),
    (128, 128),
    (128, 184),
    (512, 40),
    (8, 1),
    (8, 2),
    (8, 3),
    (64, 5),
    (16, 7),
    (1024, 20),
    (1032, 4),
    (256, 4),
];

/// Value of kind `k` (0 random, 1 all −128, 2 all 127, 3 alternating −128/127 by index,
/// 4 random −128/127).
fn edge(rng: &mut Rng, k: u32, i: usize) -> i8 {
    let u = rng.next_u32();
    match k {
        0 => u as i8,
        1 => -128,
        2 => 127,
        3 => [-128, 127][i & 1],
        _ => [-128, 127][(u >> 9) as usize & 1],
    }
}

pub(crate) fn check_matvec_offset(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let (n_in, n_out) = if case < 3 * SHAPES.len() as u32 {
        SHAPES[case as usize % SHAPES.len()]
    } else {
        let n_in = match rng.below(3) {
            0 => 8 * (1 + rng.below(128) as usize),
            1 => 8 * (1 + rng.below(8) as usize),
            _ => 8 * (1 + rng.below(40) as usize),
        };
        let cap = ((W_CAP - 3) / (n_in + 4)).min(X_CAP / 4).min(70);
        (n_in, 1 + rng.below(cap as u32) as usize)
    };
    // Mostly word-aligned (as in a model file), sometimes not (the portable fallback).
    let align = if rng.below(4) == 0 {
        rng.below(4) as usize
    } else {
        0
    };
    let (wk, xk) = (rng.below(5), rng.below(5));
    let nw = n_in * n_out;
    for (i, v) in b.w[align..align + nw].iter_mut().enumerate() {
        *v = edge(rng, wk, i) as u8;
    }
    for (i, v) in b.x[..n_in].iter_mut().enumerate() {
        *v = edge(rng, xk, i);
    }
    b.s_ref[..n_out].fill(0x2a2a);
    let r_plain =
        portable::matvec_i32(&b.x[..n_in], &b.w[align..align + nw], &mut b.s_ref[..n_out]);
    // To the offset-binary layout, with the row constants after the rows.
    to_offset_binary(&mut b.w[align..align + nw]);
    for r in 0..n_out {
        let c = offset_row_const(&b.w[align + r * n_in..align + (r + 1) * n_in]);
        let at = align + nw + 4 * r;
        b.w[at..at + 4].copy_from_slice(&c.to_le_bytes());
    }
    let (x, w, consts) = (
        &b.x[..n_in],
        &b.w[align..align + nw],
        &b.w[align + nw..align + nw + 4 * n_out],
    );
    b.s_dsp[..n_out].fill(0x5555);
    let r_dsp = kernels::matvec_i32_offset(x, w, consts, &mut b.s_dsp[..n_out]);
    let mut ok = r_plain.is_ok() && r_dsp.is_ok() && b.s_dsp[..n_out] == b.s_ref[..n_out];
    // The portable offset kernel too (the host's and the non-DSP targets' path).
    b.s_dsp[..n_out].fill(0x1111);
    let r_port = portable::matvec_i32_offset(x, w, consts, &mut b.s_dsp[..n_out]);
    ok &= r_port.is_ok() && b.s_dsp[..n_out] == b.s_ref[..n_out];
    // A prepared input (`matvec_i32_offset_pre`): pre-extended once, then reused for the rows
    // in two parts (as the GPT's q, k, v and the row chunks of one matrix reuse it).
    let mut buf = kernels::OffsetBuf::new();
    let mut pre = kernels::OffsetInput::new(x, &mut buf);
    b.s_dsp[..n_out].fill(0x2222);
    let r_pre = kernels::matvec_i32_offset_pre(&mut pre, w, consts, &mut b.s_dsp[..n_out]);
    ok &= r_pre.is_ok() && b.s_dsp[..n_out] == b.s_ref[..n_out];
    let h = n_out / 2;
    b.s_dsp[..n_out].fill(0x3333);
    let (lo, hi) = b.s_dsp[..n_out].split_at_mut(h);
    let r_lo = kernels::matvec_i32_offset_pre(&mut pre, &w[..h * n_in], &consts[..4 * h], lo);
    let r_hi = kernels::matvec_i32_offset_pre(&mut pre, &w[h * n_in..], &consts[4 * h..], hi);
    ok &= (h == 0 || r_lo.is_ok()) && r_hi.is_ok() && b.s_dsp[..n_out] == b.s_ref[..n_out];
    let dsp = n_in <= 1024 && n_out >= 3 && align == 0;
    t.on_dsp_path(dsp);
    t.three_rows += u32::from(dsp);
    if !ok {
        defmt::error!(
            "matvec_i32_offset {=usize}x{=usize} align {=usize} weights {=u32} inputs {=u32}",
            n_in,
            n_out,
            align,
            wk,
            xk
        );
    }
    t.check(ok, "matvec_i32_offset", case);
}
