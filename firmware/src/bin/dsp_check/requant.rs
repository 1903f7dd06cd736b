//! The assembly requantizers under stress, against the portable output stage.

use aka_core::kernels::{self, portable, Conv2dGeometry, OutputStage};
use aka_core::rng::Rng;

use super::{fill_w, fill_x, rand_i8, rand_zp, report_diff, Bufs, Tally, C_CAP};

/// Requantization stress: small layers whose accumulators are dominated by full-range random
/// biases, with multipliers anywhere in `[0, 2^31)` (mostly `[2^30, 2^31)`), shifts around the
/// fast path's limits (`-23..=1`), and random zero points and clamps, through the three assembly
/// requantizers (fully connected, 2x2 micro-kernel via a 1x1 convolution with 4 input channels,
/// and the 1-channel 3x3 convolution). Counted "on the assembly path" when all three are.
pub(crate) fn check_requant(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let n_out = 1 + rng.below(C_CAP as u32) as usize;
    let c = 4 * n_out;
    // Half of the cases keep every channel on the fast path (the convolutions need that for the
    // whole call), including its edges (shift 0 and -22, multiplier 0 and 2^30 - 1).
    let all_fast = rng.below(2) == 0;
    for ((bi, m), sh) in b.bias[..c]
        .chunks_exact_mut(4)
        .zip(b.mult[..c].chunks_exact_mut(4))
        .zip(b.shift[..c].chunks_exact_mut(4))
    {
        let bias = match rng.below(4) {
            0 => [i32::MIN, i32::MAX, i32::MIN + 1, i32::MAX - 1, 0, -1][rng.below(6) as usize],
            _ => rng.next_u32() as i32 >> rng.below(31),
        };
        let mult = match rng.below(8) {
            0 => rng.below(1 << 30) as i32,
            1 => [0, 1, 1 << 30, i32::MAX, (1 << 30) - 1][rng.below(5) as usize],
            _ => (1 << 30) + rng.below(1 << 30) as i32,
        };
        let shift = if all_fast {
            -(rng.below(23) as i32)
        } else {
            1 - rng.below(25) as i32
        };
        // One channel in 16: the largest requantized values (e = 0, m ≈ 2^31, |acc| ≈ 2^31).
        let (bias, mult, shift) = if rng.below(16) == 0 {
            let b = [
                i32::MAX - rng.below(256) as i32,
                i32::MIN + rng.below(256) as i32,
            ];
            (b[rng.below(2) as usize], i32::MAX - rng.below(64) as i32, 0)
        } else {
            (bias, mult, shift)
        };
        bi.copy_from_slice(&bias.to_le_bytes());
        m.copy_from_slice(&mult.to_le_bytes());
        sh.copy_from_slice(&shift.to_le_bytes());
    }
    let zp = rand_zp(rng);
    let lo = match rng.below(3) {
        0 => i8::MIN,
        1 => zp,
        _ => rand_i8(rng),
    };
    let stage = OutputStage {
        bias: &b.bias[..c],
        multipliers: &b.mult[..c],
        shifts: &b.shift[..c],
        zero_point: zp,
        act_min: lo,
        act_max: 127,
    };
    fill_w(rng, &mut b.w[..9 * n_out]);
    if rng.below(4) == 0 {
        b.w[..9 * n_out].fill(0); // accumulator = bias exactly (reaches the edges above)
    }
    fill_x(rng, &mut b.x[..36]);
    let mut ok = true;
    // Fully connected, 8 inputs.
    let (w, x) = (&b.w[..8 * n_out], &b.x[..8]);
    let r1 = kernels::linear(x, w, &stage, &mut b.y_dsp[..n_out]);
    let r2 = portable::linear(x, w, &stage, &mut b.y_ref[..n_out]);
    ok &= r1 == r2 && b.y_dsp[..n_out] == b.y_ref[..n_out];
    // 1x1 convolution over 3x3 pixels of 4 channels (the im2col micro-kernel).
    let g = Conv2dGeometry {
        in_h: 3,
        in_w: 3,
        in_c: 4,
        out_c: n_out,
        kernel_h: 1,
        kernel_w: 1,
        stride_h: 1,
        stride_w: 1,
        pad_h: 0,
        pad_w: 0,
        input_zero_point: rand_zp(rng),
    };
    let (w, x, n) = (&b.w[..4 * n_out], &b.x[..36], 9 * n_out);
    let r1 = kernels::conv2d(x, &g, w, &stage, &mut b.y_dsp[..n]);
    let r2 = portable::conv2d(x, &g, w, &stage, &mut b.y_ref[..n]);
    ok &= r1 == r2 && b.y_dsp[..n] == b.y_ref[..n];
    // 3x3 convolution of a 3x3 single-channel image, padding 1 (the direct kernel).
    let g = Conv2dGeometry {
        in_c: 1,
        kernel_h: 3,
        kernel_w: 3,
        pad_h: 1,
        pad_w: 1,
        ..g
    };
    let (w, x) = (&b.w[..9 * n_out], &b.x[..9]);
    let r1 = kernels::conv2d(x, &g, w, &stage, &mut b.y_dsp[..n]);
    let r2 = portable::conv2d(x, &g, w, &stage, &mut b.y_ref[..n]);
    ok &= r1 == r2 && b.y_dsp[..n] == b.y_ref[..n];
    if !ok {
        defmt::error!(
            "requant stress: {=usize} channels, zp {=i8} act_min {=i8}",
            n_out,
            zp,
            lo
        );
        report_diff(&b.y_dsp[..n_out], &b.y_ref[..n_out], &stage);
    }
    t.on_dsp_path(all_fast);
    t.check(ok, "requant", case);
}
