//! The int4 kernels (`linear_s4`, `matvec_i32_s4`, `conv2d_s4`) against the portable ones.

use aka_core::kernels::{self, portable, Conv2dGeometry};
use aka_core::rng::Rng;

use super::{fill_x, rand_stage, Bufs, Tally, C_CAP, W_CAP, X_CAP};

/// int4 weights: random bytes (every byte is two valid nibbles), or all -8, or all 7.
fn fill_w_s4(rng: &mut Rng, w: &mut [u8]) {
    let mode = rng.below(5);
    for v in w.iter_mut() {
        *v = match mode {
            0 => 0x88,
            1 => 0x77,
            _ => rng.next_u32() as u8,
        };
    }
}

/// `linear_s4` and `matvec_i32_s4`: lengths that are multiples of 8 (the DSP path, up to 1024:
/// several 256-input blocks, odd and even word counts), odd and any other lengths (both nibbles,
/// the padding nibble), odd and even row counts, weights at any alignment.
pub(crate) fn check_linear_s4(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let n_in = match rng.below(4) {
        0 => 8 * (1 + rng.below(128) as usize),
        1 => 8 * (1 + rng.below(8) as usize),
        2 => 1 + 2 * rng.below(40) as usize,
        _ => 1 + rng.below(700) as usize,
    };
    let row = n_in.div_ceil(2);
    let n_out = 1 + rng.below(((W_CAP - 3) / row).min(C_CAP).min(40) as u32) as usize;
    let align = rng.below(4) as usize;
    fill_w_s4(rng, &mut b.w[align..align + row * n_out]);
    fill_x(rng, &mut b.x[..n_in]);
    let c = n_out * 4;
    let stage = rand_stage(
        rng,
        n_in,
        &mut b.bias[..c],
        &mut b.mult[..c],
        &mut b.shift[..c],
    );
    let (zp, lo, hi) = (stage.zero_point, stage.act_min, stage.act_max);
    let (x, w) = (&b.x[..n_in], &b.w[align..align + row * n_out]);
    let dsp = n_in.is_multiple_of(8) && n_in <= 1024;
    t.on_dsp_path(dsp && hi == 127);
    // The three-row int4 kernels take any alignment (`matvec_i32_s4` regardless of the clamp).
    t.three_rows += u32::from(dsp && n_out >= 3 && n_out != 4);
    b.y_dsp[..n_out].fill(0x55);
    b.y_ref[..n_out].fill(0x2a);
    let r1 = kernels::linear_s4(x, w, &stage, &mut b.y_dsp[..n_out]);
    let r2 = portable::linear_s4(x, w, &stage, &mut b.y_ref[..n_out]);
    b.s_dsp[..n_out].fill(0x5555);
    b.s_ref[..n_out].fill(0x2a2a);
    let r3 = kernels::matvec_i32_s4(x, w, &mut b.s_dsp[..n_out]);
    let r4 = portable::matvec_i32_s4(x, w, &mut b.s_ref[..n_out]);
    let ok = r1 == r2
        && r1.is_ok()
        && b.y_dsp[..n_out] == b.y_ref[..n_out]
        && r3 == r4
        && r3.is_ok()
        && b.s_dsp[..n_out] == b.s_ref[..n_out];
    if !ok {
        defmt::error!(
            "linear_s4 {=usize}x{=usize} align {=usize} zp {=i8} act {=i8}..{=i8}",
            n_in,
            n_out,
            align,
            zp,
            lo,
            hi
        );
    }
    t.check(ok, "linear_s4", case);
}

/// `conv2d_s4`: geometries whose filters have odd lengths (tap rows start mid-byte), both
/// DSP convolution paths (1 channel 3×3, `in_c % 4 == 0`) and the portable fallback, layers
/// above the 2,048 weights the DSP version unpacks, weights at any alignment.
pub(crate) fn check_conv_s4(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let (kernel_h, kernel_w) = match rng.below(3) {
        0 => (3, 3),
        _ => (1 + rng.below(3) as usize, 1 + rng.below(3) as usize),
    };
    let in_c = match rng.below(4) {
        0 => 1,
        1 => 4 * (1 + rng.below(3) as usize),
        _ => 1 + rng.below(9) as usize,
    };
    let max_out_c = if rng.below(4) == 0 { 90 } else { 20 };
    let out_c = 1 + rng.below(max_out_c) as usize;
    let g = Conv2dGeometry {
        in_h: 1 + rng.below(12) as usize,
        in_w: 1 + rng.below(12) as usize,
        in_c,
        out_c,
        kernel_h,
        kernel_w,
        stride_h: 1 + rng.below(2) as usize,
        stride_w: 1 + rng.below(2) as usize,
        pad_h: rng.below(kernel_h as u32) as usize,
        pad_w: rng.below(kernel_w as u32) as usize,
        input_zero_point: rng.next_u32() as i8,
    };
    let Some((out_h, out_w)) = g.output_hw() else {
        return;
    };
    let filter = kernel_h * kernel_w * in_c;
    let (in_len, out_len) = (g.in_h * g.in_w * in_c, out_h * out_w * out_c);
    let w_len = out_c * filter.div_ceil(2);
    if in_len > X_CAP || w_len > W_CAP - 3 || out_len > X_CAP || out_c > C_CAP {
        return;
    }
    let align = rng.below(4) as usize;
    fill_w_s4(rng, &mut b.w[align..align + w_len]);
    fill_x(rng, &mut b.x[..in_len]);
    let c = out_c * 4;
    let stage = rand_stage(
        rng,
        filter,
        &mut b.bias[..c],
        &mut b.mult[..c],
        &mut b.shift[..c],
    );
    let (x, w) = (&b.x[..in_len], &b.w[align..align + w_len]);
    t.on_dsp_path(out_c * filter <= 2048);
    b.y_dsp[..out_len].fill(0x55);
    b.y_ref[..out_len].fill(0x2a);
    let r1 = kernels::conv2d_s4(x, &g, w, &stage, &mut b.y_dsp[..out_len]);
    let r2 = portable::conv2d_s4(x, &g, w, &stage, &mut b.y_ref[..out_len]);
    let ok = r1 == r2 && r1.is_ok() && b.y_dsp[..out_len] == b.y_ref[..out_len];
    if !ok {
        defmt::error!(
            "conv2d_s4 {=usize}x{=usize}x{=usize} -> {=usize}, k {=usize}x{=usize} s {=usize}x{=usize} p {=usize}x{=usize} align {=usize}",
            g.in_h, g.in_w, in_c, out_c, kernel_h, kernel_w, g.stride_h, g.stride_w, g.pad_h,
            g.pad_w, align
        );
    }
    t.check(ok, "conv2d_s4", case);
}
