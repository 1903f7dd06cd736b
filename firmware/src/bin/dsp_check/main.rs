//! Checks that the Cortex-M4 DSP kernels (`aka_core::kernels::*`, which dispatch to them on this
//! target) produce exactly the same bytes and errors as the portable reference kernels
//! (`aka_core::kernels::portable::*`), on thousands of random cases: odd sizes, lengths that are
//! not multiples of 4, every weight alignment, all paddings and strides, extreme zero points,
//! biases and multipliers (including the ones that take the generic requantization path). Also
//! `kernels::sqrt_f32` (one `VSQRT.F32`) against `libm::sqrtf`, bit for bit.
//!
//! `cargo run --release --bin dsp_check` (QEMU). Logs "dsp_check: N passed, 0 failed" and exits
//! 0; any mismatch is logged and the exit code is 1.
#![no_std]
#![no_main]

use aka_core::kernels::{self, portable, Conv2dGeometry, OutputStage, Pool2dGeometry};
use aka_core::quant::quantize_multiplier;
use aka_core::rng::Rng;
use aka_firmware as fw;
use cortex_m_rt::entry;

mod int4;
mod offset;
mod requant;
mod sqrt;
use int4::check_linear_s4;
use requant::check_requant;

/// Biggest weight array of a case, plus 3 bytes of slack for the alignment offset.
const W_CAP: usize = 24 * 1024 + 3;
/// Biggest activation.
const X_CAP: usize = 6 * 1024;
/// Biggest per-channel array (channels).
const C_CAP: usize = 96;

struct Bufs {
    w: [u8; W_CAP],
    x: [i8; X_CAP + 3],
    y_dsp: [i8; X_CAP],
    y_ref: [i8; X_CAP],
    bias: [u8; 4 * C_CAP + 3],
    mult: [u8; 4 * C_CAP + 3],
    shift: [u8; 4 * C_CAP + 3],
    s_dsp: [i32; X_CAP / 4],
    s_ref: [i32; X_CAP / 4],
    f_dsp: [f32; 256],
    f_ref: [f32; 256],
}

static mut BUFS: Bufs = Bufs {
    w: [0; W_CAP],
    x: [0; X_CAP + 3],
    y_dsp: [0; X_CAP],
    y_ref: [0; X_CAP],
    bias: [0; 4 * C_CAP + 3],
    mult: [0; 4 * C_CAP + 3],
    shift: [0; 4 * C_CAP + 3],
    s_dsp: [0; X_CAP / 4],
    s_ref: [0; X_CAP / 4],
    f_dsp: [0.0; 256],
    f_ref: [0.0; 256],
};

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    /// Cases that took the assembly path (by the dispatch conditions), per kernel.
    dsp_path: u32,
    /// Cases whose leading rows took the three-row fully connected kernel (word-aligned rows of
    /// `n % 8 == 0`, at least 3 rows).
    three_rows: u32,
}

impl Tally {
    /// Counts a case that meets the DSP path's conditions (mirrors the dispatch in
    /// `aka_core::kernels::dsp`).
    fn on_dsp_path(&mut self, yes: bool) {
        self.dsp_path += u32::from(yes);
    }

    /// Counts a fully connected case on the three-row kernel (mirrors `Rows::triples_ok` in
    /// `aka_core::kernels::dsp::linear`, given that the case is on the assembly path).
    fn on_three_rows(&mut self, dsp: bool, w: &[u8], n_in: usize, n_out: usize) {
        let yes = dsp && (w.as_ptr() as usize).is_multiple_of(4) && n_in.is_multiple_of(8);
        self.three_rows += u32::from(yes && n_out >= 3 && n_out != 4);
    }

    fn check(&mut self, ok: bool, kernel: &str, case: u32) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            if self.failed <= 20 {
                defmt::error!("dsp_check: {=str} case {=u32} differs", kernel, case);
            }
        }
    }
}

/// `sqrt(n)` rounded down, in integers.
fn isqrt(n: usize) -> usize {
    let mut r = 0;
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}

/// A random factor in `[2^lo, 2^hi)`, roughly log-uniform.
fn rand_pow2(rng: &mut Rng, lo: i32, hi: i32) -> f64 {
    let e = lo + rng.below((hi - lo) as u32) as i32;
    let p = if e >= 0 {
        (1u64 << e) as f64
    } else {
        1.0 / (1u64 << -e) as f64
    };
    p * (1.0 + rng.next_f64())
}

fn rand_i8(rng: &mut Rng) -> i8 {
    rng.next_u32() as i8
}

/// A zero point: often an extreme.
fn rand_zp(rng: &mut Rng) -> i8 {
    match rng.below(5) {
        0 => -128,
        1 => 127,
        _ => rand_i8(rng),
    }
}

/// Activations: uniform, or saturated at one end, or near a zero point.
fn fill_x(rng: &mut Rng, x: &mut [i8]) {
    let mode = rng.below(6);
    for v in x.iter_mut() {
        *v = match mode {
            0 => -128,
            1 => 127,
            2 => (rng.below(9) as i32 - 4 - 120) as i8,
            _ => rand_i8(rng),
        };
    }
}

/// int8 weights: uniform, or extreme, or small.
fn fill_w(rng: &mut Rng, w: &mut [u8]) {
    let mode = rng.below(6);
    for v in w.iter_mut() {
        *v = match mode {
            0 => 0x80,
            1 => 0x7f,
            2 => (rng.below(7) as i32 - 3) as u8,
            _ => rng.next_u32() as u8,
        };
    }
}

/// Per-channel bias/multiplier/shift: realistic (what the exporter writes, for a layer of
/// `fan_in` inputs) most of the time, extreme sometimes (to exercise the generic path).
fn fill_channels(rng: &mut Rng, fan_in: usize, bias: &mut [u8], mult: &mut [u8], shift: &mut [u8]) {
    let wild = rng.below(4) == 0;
    let root = isqrt(fan_in).max(1);
    let typical = 1.0 / root as f64 / 40.0;
    for ((b, m), s) in bias
        .chunks_exact_mut(4)
        .zip(mult.chunks_exact_mut(4))
        .zip(shift.chunks_exact_mut(4))
    {
        let (bv, mv, sv): (i32, i32, i32) = if wild && rng.below(3) == 0 {
            let mv = match rng.below(6) {
                0 => 0,
                1 => i32::MAX,
                2 => i32::MIN,
                3 => rng.below(1 << 30) as i32,
                4 => -(rng.below(1 << 30) as i32),
                _ => (1 << 30) + rng.below(1 << 30) as i32,
            };
            let sv = rng.below(62) as i32 - 31;
            (rng.next_u32() as i32, mv, sv)
        } else {
            let real = typical * rand_pow2(rng, -3, 3);
            let (mv, sv) = quantize_multiplier(real).unwrap_or((1 << 30, -8));
            let bv = (rng.normal() * 2000.0 * root as f32) as i32;
            let bv = if wild && rng.below(2) == 0 {
                rng.next_u32() as i32
            } else {
                bv
            };
            (bv, mv, sv)
        };
        b.copy_from_slice(&bv.to_le_bytes());
        m.copy_from_slice(&mv.to_le_bytes());
        s.copy_from_slice(&sv.to_le_bytes());
    }
}

/// Output zero point and clamp: mostly the exporter's (fused ReLU: `act_min = zp`), sometimes
/// arbitrary (including `act_min > act_max`).
fn rand_act(rng: &mut Rng) -> (i8, i8, i8) {
    let zp = rand_zp(rng);
    match rng.below(8) {
        0..=2 => (zp, i8::MIN, i8::MAX),
        3..=5 => (zp, zp, i8::MAX),
        6 => (zp, rand_i8(rng), i8::MAX),
        _ => (zp, rand_i8(rng), rand_i8(rng)),
    }
}

/// A random output stage for `c / 4` channels of dot products over `fan_in` inputs
/// ([`fill_channels`] into the three slices, then [`rand_act`]'s zero point and clamp).
fn rand_stage<'a>(
    rng: &mut Rng,
    fan_in: usize,
    bias: &'a mut [u8],
    mult: &'a mut [u8],
    shift: &'a mut [u8],
) -> OutputStage<'a> {
    fill_channels(rng, fan_in, bias, mult, shift);
    let (zero_point, act_min, act_max) = rand_act(rng);
    OutputStage {
        bias,
        multipliers: mult,
        shifts: shift,
        zero_point,
        act_min,
        act_max,
    }
}

fn check_linear(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let n_in = match rng.below(4) {
        0 => 1 + rng.below(24) as usize,
        1 => 4 * (1 + rng.below(64) as usize),
        2 => 8 * (1 + rng.below(128) as usize),
        _ => 1 + rng.below(400) as usize,
    };
    let max_out = ((W_CAP - 3) / n_in).min(C_CAP);
    let n_out = 1 + rng.below(max_out.min(40) as u32) as usize;
    let align = rng.below(4) as usize;
    let w = &mut b.w[align..align + n_in * n_out];
    fill_w(rng, w);
    let x = &mut b.x[..n_in];
    fill_x(rng, x);
    let c = n_out * 4;
    let ca = rng.below(4) as usize; // per-channel arrays at any alignment too
    let stage = rand_stage(
        rng,
        n_in,
        &mut b.bias[ca..ca + c],
        &mut b.mult[ca..ca + c],
        &mut b.shift[ca..ca + c],
    );
    let (zp, lo, hi) = (stage.zero_point, stage.act_min, stage.act_max);
    let w = &b.w[align..align + n_in * n_out];
    let x = &b.x[..n_in];
    b.y_dsp[..n_out].fill(0x55);
    b.y_ref[..n_out].fill(0x2a);
    let dsp = n_in.is_multiple_of(4) && n_in <= 1024 && hi == 127;
    t.on_dsp_path(dsp);
    t.on_three_rows(dsp, w, n_in, n_out);
    let r1 = kernels::linear(x, w, &stage, &mut b.y_dsp[..n_out]);
    let r2 = portable::linear(x, w, &stage, &mut b.y_ref[..n_out]);
    let ok = r1 == r2 && r1.is_ok() && b.y_dsp[..n_out] == b.y_ref[..n_out];
    if !ok {
        defmt::error!(
            "linear {=usize}x{=usize} align {=usize} zp {=i8} act {=i8}..{=i8}",
            n_in,
            n_out,
            align,
            zp,
            lo,
            hi
        );
        report_diff(&b.y_dsp[..n_out], &b.y_ref[..n_out], &stage);
    }
    t.check(ok, "linear", case);
}

/// True if every channel takes the fast requantization (the conv kernels need that).
fn all_fast(stage: &OutputStage) -> bool {
    let le = |a: &[u8]| i32::from_le_bytes([a[0], a[1], a[2], a[3]]);
    stage.act_max == 127
        && stage
            .multipliers
            .chunks_exact(4)
            .zip(stage.shifts.chunks_exact(4))
            .all(|(m, s)| le(m) >= 0 && (-22..=0).contains(&le(s)))
}

fn report_diff(got: &[i8], want: &[i8], stage: &OutputStage) {
    let le = |a: &[u8], i: usize| {
        i32::from_le_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]])
    };
    let mut shown = 0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w && shown < 4 {
            shown += 1;
            let ch = i % (stage.bias.len() / 4);
            defmt::error!(
                "  [{=usize}] dsp {=i8} portable {=i8} (channel {=usize}: bias {=i32} m {=i32} shift {=i32})",
                i,
                g,
                w,
                ch,
                le(stage.bias, ch),
                le(stage.multipliers, ch),
                le(stage.shifts, ch)
            );
        }
    }
}

fn check_conv(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let kernel_h = 1 + rng.below(4) as usize;
    let kernel_w = if rng.below(3) == 0 {
        1 + rng.below(4) as usize
    } else {
        kernel_h
    };
    let (kernel_h, kernel_w) = if rng.below(3) == 0 {
        (3, 3)
    } else {
        (kernel_h, kernel_w)
    };
    let in_c = match rng.below(6) {
        0 | 1 => 1,
        2 => 4 * (1 + rng.below(4) as usize),
        3 => 8,
        _ => 1 + rng.below(12) as usize,
    };
    let out_c = if rng.below(4) == 0 {
        1 + rng.below(80) as usize // several channel passes (32 or 64 per pass)
    } else {
        1 + rng.below(24) as usize
    };
    let g = Conv2dGeometry {
        in_h: 1 + rng.below(14) as usize,
        in_w: 1 + rng.below(14) as usize,
        in_c,
        out_c,
        kernel_h,
        kernel_w,
        stride_h: 1 + rng.below(3) as usize,
        stride_w: 1 + rng.below(3) as usize,
        pad_h: rng.below(kernel_h as u32) as usize,
        pad_w: rng.below(kernel_w as u32) as usize,
        input_zero_point: rand_zp(rng),
    };
    let Some((out_h, out_w)) = g.output_hw() else {
        return;
    };
    let in_len = g.in_h * g.in_w * in_c;
    let w_len = out_c * kernel_h * kernel_w * in_c;
    let out_len = out_h * out_w * out_c;
    if in_len > X_CAP || w_len > W_CAP - 3 || out_len > X_CAP {
        return;
    }
    let align = rng.below(4) as usize;
    fill_w(rng, &mut b.w[align..align + w_len]);
    fill_x(rng, &mut b.x[..in_len]);
    let c = out_c * 4;
    let stage = rand_stage(
        rng,
        kernel_h * kernel_w * in_c,
        &mut b.bias[..c],
        &mut b.mult[..c],
        &mut b.shift[..c],
    );
    let (zp, lo, hi) = (stage.zero_point, stage.act_min, stage.act_max);
    let w = &b.w[align..align + w_len];
    let x = &b.x[..in_len];
    b.y_dsp[..out_len].fill(0x55);
    b.y_ref[..out_len].fill(0x2a);
    t.on_dsp_path(
        all_fast(&stage)
            && ((in_c == 1 && kernel_h == 3 && kernel_w == 3) || in_c.is_multiple_of(4)),
    );
    let r1 = kernels::conv2d(x, &g, w, &stage, &mut b.y_dsp[..out_len]);
    let r2 = portable::conv2d(x, &g, w, &stage, &mut b.y_ref[..out_len]);
    let ok = r1 == r2 && r1.is_ok() && b.y_dsp[..out_len] == b.y_ref[..out_len];
    if !ok {
        defmt::error!(
            "conv2d {=usize}x{=usize}x{=usize} -> {=usize}, k {=usize}x{=usize} s {=usize}x{=usize} p {=usize}x{=usize} zp_in {=i8} align {=usize} zp {=i8} act {=i8}..{=i8}",
            g.in_h, g.in_w, in_c, out_c, kernel_h, kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w,
            g.input_zero_point, align, zp, lo, hi
        );
        report_diff(&b.y_dsp[..out_len], &b.y_ref[..out_len], &stage);
    }
    t.check(ok, "conv2d", case);
}

fn check_pool(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let kernel_h = 1 + rng.below(4) as usize;
    let kernel_w = if rng.below(2) == 0 {
        kernel_h
    } else {
        1 + rng.below(4) as usize
    };
    let g = Pool2dGeometry {
        in_h: 1 + rng.below(16) as usize,
        in_w: 1 + rng.below(16) as usize,
        channels: if rng.below(2) == 0 {
            4 * (1 + rng.below(6) as usize)
        } else {
            1 + rng.below(20) as usize
        },
        kernel_h,
        kernel_w,
        stride_h: 1 + rng.below(3) as usize,
        stride_w: 1 + rng.below(3) as usize,
    };
    let Some((out_h, out_w)) = g.output_hw() else {
        return;
    };
    let in_len = g.in_h * g.in_w * g.channels;
    let out_len = out_h * out_w * g.channels;
    if in_len > X_CAP {
        return;
    }
    let xa = rng.below(4) as usize;
    fill_x(rng, &mut b.x[xa..xa + in_len]);
    let ya = rng.below(4) as usize;
    b.y_dsp[..out_len + ya].fill(0x55);
    b.y_ref[..out_len].fill(0x2a);
    let x = &b.x[xa..xa + in_len];
    t.on_dsp_path(g.channels.is_multiple_of(4));
    let r1 = kernels::max_pool2d(x, &g, &mut b.y_dsp[ya..ya + out_len]);
    let r2 = portable::max_pool2d(x, &g, &mut b.y_ref[..out_len]);
    let ok = r1 == r2 && r1.is_ok() && b.y_dsp[ya..ya + out_len] == b.y_ref[..out_len];
    if !ok {
        defmt::error!(
            "max_pool2d {=usize}x{=usize}x{=usize} k {=usize}x{=usize} s {=usize}x{=usize}",
            g.in_h,
            g.in_w,
            g.channels,
            kernel_h,
            kernel_w,
            g.stride_h,
            g.stride_w
        );
    }
    t.check(ok, "max_pool2d", case);
}

fn check_relu(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let n = rng.below(300) as usize;
    let xa = rng.below(4) as usize;
    fill_x(rng, &mut b.x[xa..xa + n]);
    let zp = rand_zp(rng);
    b.y_dsp[xa..xa + n].copy_from_slice(&b.x[xa..xa + n]);
    b.y_ref[..n].copy_from_slice(&b.x[xa..xa + n]);
    t.on_dsp_path(n >= 4); // words of 4 lanes, then a byte tail
    kernels::relu(&mut b.y_dsp[xa..xa + n], zp);
    portable::relu(&mut b.y_ref[..n], zp);
    t.check(b.y_dsp[xa..xa + n] == b.y_ref[..n], "relu", case);
}

fn check_qk(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let d = match rng.below(3) {
        0 => 4 * (1 + rng.below(24) as usize),
        1 => 8 * (1 + rng.below(10) as usize),
        _ => 1 + rng.below(70) as usize,
    };
    let tq = 1 + rng.below(9) as usize;
    let tk = 1 + rng.below(16) as usize;
    if (tq + tk) * d > X_CAP || tq * tk > X_CAP / 4 {
        return;
    }
    // q and k share the activation buffer at independent alignments.
    let qa = rng.below(4) as usize;
    let ka = qa + tq * d + rng.below(4) as usize;
    if ka + tk * d > X_CAP + 3 {
        return;
    }
    fill_x(rng, &mut b.x[qa..qa + tq * d]);
    fill_x(rng, &mut b.x[ka..ka + tk * d]);
    let (q, k) = (&b.x[qa..qa + tq * d], &b.x[ka..ka + tk * d]);
    let n = tq * tk;
    b.s_dsp[..n].fill(0x5555);
    b.s_ref[..n].fill(0x2a2a);
    t.on_dsp_path(d.is_multiple_of(4) && tk >= 2);
    let r1 = kernels::qk_scores(q, k, d, &mut b.s_dsp[..n]);
    let r2 = portable::qk_scores(q, k, d, &mut b.s_ref[..n]);
    let ok = r1 == r2 && r1.is_ok() && b.s_dsp[..n] == b.s_ref[..n];
    if !ok {
        defmt::error!("qk_scores tq {=usize} tk {=usize} d {=usize}", tq, tk, d);
    }
    t.check(ok, "qk_scores", case);
}

fn check_matvec(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let n_in = match rng.below(3) {
        0 => 4 * (1 + rng.below(128) as usize),
        1 => 1 + rng.below(40) as usize,
        _ => 1 + rng.below(600) as usize,
    };
    let n_out = 1 + rng.below(((W_CAP - 3) / n_in).min(X_CAP / 4).min(70) as u32) as usize;
    let align = rng.below(4) as usize;
    fill_w(rng, &mut b.w[align..align + n_in * n_out]);
    fill_x(rng, &mut b.x[..n_in]);
    let (x, w) = (&b.x[..n_in], &b.w[align..align + n_in * n_out]);
    b.s_dsp[..n_out].fill(0x5555);
    b.s_ref[..n_out].fill(0x2a2a);
    let r1 = kernels::matvec_i32(x, w, &mut b.s_dsp[..n_out]);
    let r2 = portable::matvec_i32(x, w, &mut b.s_ref[..n_out]);
    let dsp = n_in.is_multiple_of(4) && n_in <= 1024;
    t.on_dsp_path(dsp);
    t.on_three_rows(dsp, w, n_in, n_out);
    let ok = r1 == r2 && r1.is_ok() && b.s_dsp[..n_out] == b.s_ref[..n_out];
    if !ok {
        defmt::error!(
            "matvec_i32 {=usize}x{=usize} align {=usize}",
            n_in,
            n_out,
            align
        );
    }
    t.check(ok, "matvec_i32", case);
}

/// `matvec_i32_strided` and `matvec_i32_strided_u8` (the GPT's P·V over the transposed V cache):
/// rows of `n` bytes, `stride` apart; strides that are multiples of 4 (the DSP path) and any
/// other; int8 and u8 inputs.
fn check_matvec_strided(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let n_in = match rng.below(2) {
        0 => 4 * (1 + rng.below(32) as usize),
        _ => 1 + rng.below(130) as usize,
    };
    let stride = match rng.below(2) {
        0 => n_in.next_multiple_of(4) + 4 * rng.below(8) as usize,
        _ => n_in + rng.below(9) as usize,
    };
    let n_out = 1 + rng.below(((W_CAP - 3 - n_in) / stride).min(X_CAP / 4).min(70) as u32) as usize;
    let len = (n_out - 1) * stride + n_in;
    let align = rng.below(4) as usize;
    fill_w(rng, &mut b.w[align..align + len]);
    fill_x(rng, &mut b.x[..n_in]);
    let (x, w) = (&b.x[..n_in], &b.w[align..align + len]);
    b.s_dsp[..n_out].fill(0x5555);
    b.s_ref[..n_out].fill(0x2a2a);
    // Every other case with u8 inputs (the GPT's attention probabilities).
    let u8_input = case % 2 == 1;
    let xu = aka_core::kernels::i8_as_bytes(x);
    let (r1, r2) = if u8_input {
        (
            kernels::matvec_i32_strided_u8(xu, w, stride, &mut b.s_dsp[..n_out]),
            portable::matvec_i32_strided_u8(xu, w, stride, &mut b.s_ref[..n_out]),
        )
    } else {
        (
            kernels::matvec_i32_strided(x, w, stride, &mut b.s_dsp[..n_out]),
            portable::matvec_i32_strided(x, w, stride, &mut b.s_ref[..n_out]),
        )
    };
    let dsp = n_in.is_multiple_of(4) && (stride == n_in || stride.is_multiple_of(4));
    t.on_dsp_path(dsp);
    t.on_three_rows(dsp, w, n_in, n_out);
    let ok = r1 == r2 && r1.is_ok() && b.s_dsp[..n_out] == b.s_ref[..n_out];
    if !ok {
        defmt::error!(
            "matvec_i32_strided {=usize}x{=usize} stride {=usize} align {=usize} u8 {=bool}",
            n_in,
            n_out,
            stride,
            align,
            u8_input
        );
    }
    t.check(ok, "matvec_i32_strided", case);
}

fn check_dot(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let n = rng.below(600) as usize;
    let (xa, wa) = (rng.below(4) as usize, rng.below(4) as usize);
    // Lengths may differ: the dot runs over the common length.
    let m = if rng.below(4) == 0 {
        rng.below(600) as usize
    } else {
        n
    };
    fill_x(rng, &mut b.x[xa..xa + n]);
    fill_w(rng, &mut b.w[wa..wa + m]);
    let (x, w) = (&b.x[xa..xa + n], &b.w[wa..wa + m]);
    let mut ok = kernels::dot_i8(x, w) == portable::dot_i8(x, w);
    // int8 × int8: the second operand from the same random bytes.
    fill_x(rng, &mut b.y_dsp[wa..wa + m]);
    let y = &b.y_dsp[wa..wa + m];
    ok &= kernels::dot_i8_i8(x, y) == portable::dot_i8_i8(x, y);
    t.on_dsp_path(n.min(m) >= 8);
    if !ok {
        defmt::error!(
            "dot lengths {=usize} {=usize} align {=usize} {=usize}",
            n,
            m,
            xa,
            wa
        );
    }
    t.check(ok, "dot", case);
}

fn check_softmax(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    let n = 1 + rng.below(256) as usize;
    let scale = rand_pow2(rng, -4, 8) as f32;
    for (d, r) in b.f_dsp[..n].iter_mut().zip(b.f_ref[..n].iter_mut()) {
        let v = if rng.below(20) == 0 {
            f32::NEG_INFINITY
        } else {
            rng.normal() * scale
        };
        *d = v;
        *r = v;
    }
    // Not an assembly kernel: the same f32 code (on the FPU); checked for the record.
    kernels::softmax_f32(&mut b.f_dsp[..n]);
    portable::softmax_f32(&mut b.f_ref[..n]);
    let same = b.f_dsp[..n]
        .iter()
        .zip(&b.f_ref[..n])
        .all(|(a, r)| a.to_bits() == r.to_bits());
    t.check(same, "softmax_f32", case);
}

/// The GPT's integer attention softmax (`softmax_u8`, one code for every target) on sums from
/// the DSP `qk_scores` of one query, as in the GPT's decode step, against its definition
/// written out per key (`z = ((best − s) as u32 as f32 · (scale · 256·log2 e) + 0.5) as u32`, then
/// `exp2_neg_q8_u8(z)`) and against `255 · exp_f32(e − e_max)` within 1 (the bound the host
/// tests prove against f64): weights, their sum, and 255 at the maximum.
fn check_softmax_u8(rng: &mut Rng, b: &mut Bufs, t: &mut Tally, case: u32) {
    use kernels::attention::{exp2_neg_q8_u8, softmax_u8, EXP2_Q8_PER_NAT};
    let hd = 4 * (1 + rng.below(16) as usize);
    // Keys up to 256, all in `x` with the query.
    let n = 1 + rng.below((X_CAP / hd - 1).min(256) as u32) as usize;
    fill_x(rng, &mut b.x[..hd + n * hd]);
    let (q, k) = b.x[..hd + n * hd].split_at(hd);
    let sums = &mut b.s_dsp[..n];
    if kernels::qk_scores(q, k, hd, sums).is_err() {
        t.check(false, "softmax_u8 (qk_scores)", case);
        return;
    }
    let scale = rand_pow2(rng, -12, -2) as f32;
    let best = sums.iter().copied().max().unwrap_or(0);
    let total = softmax_u8(sums, best, scale, &mut b.y_dsp[..n]);
    let c = scale * EXP2_Q8_PER_NAT;
    let (mut want_total, mut same, mut close) = (0u32, true, true);
    for (&s, &p) in sums.iter().zip(&b.y_dsp[..n]) {
        let want = exp2_neg_q8_u8((best.wrapping_sub(s) as u32 as f32 * c + 0.5) as u32);
        want_total += want;
        same &= p as u8 as u32 == want;
        let exact = 255.0 * kernels::exp_f32((s as f32 - best as f32) * scale);
        close &= (p as u8 as f32 - exact).abs() <= 1.0;
    }
    let top = sums.iter().position(|&s| s == best).unwrap_or(0);
    same &= total == want_total && b.y_dsp[top] as u8 == 255;
    t.check(same && close, "softmax_u8", case);
}

/// Shape errors must be identical too.
fn check_errors(t: &mut Tally) {
    let st = OutputStage {
        bias: &[0; 8],
        multipliers: &[0; 8],
        shifts: &[0; 8],
        zero_point: 0,
        act_min: -128,
        act_max: 127,
    };
    let mut y = [0i8; 2];
    let mut y2 = [0i8; 2];
    t.check(
        kernels::linear(&[1, 2, 3, 4], &[0; 7], &st, &mut y)
            == portable::linear(&[1, 2, 3, 4], &[0; 7], &st, &mut y2),
        "linear error",
        0,
    );
    t.check(
        kernels::linear_s4(&[1; 8], &[0; 7], &st, &mut y)
            == portable::linear_s4(&[1; 8], &[0; 7], &st, &mut y2),
        "linear_s4 error",
        0,
    );
    let mut s = [0i32; 3];
    let mut s2 = [0i32; 3];
    t.check(
        kernels::qk_scores(&[0; 8], &[0; 8], 4, &mut s)
            == portable::qk_scores(&[0; 8], &[0; 8], 4, &mut s2),
        "qk_scores error",
        0,
    );
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    let board = fw::init(&mut cp);
    // SAFETY: the only reference to BUFS, taken once in a single-threaded program.
    let b = unsafe { &mut *core::ptr::addr_of_mut!(BUFS) };
    defmt::info!(
        "dsp_check on {=str}: DSP kernels {=bool}",
        fw::BOARD,
        kernels::DSP
    );
    let mut rng = Rng::new(0x00d5_9c8e);
    type Check = fn(&mut Rng, &mut Bufs, &mut Tally, u32);
    let kernels: [(&str, Check, u32); 15] = [
        ("requant stress", check_requant, 1000),
        ("linear", check_linear, 2000),
        ("linear_s4, matvec_i32_s4", check_linear_s4, 1000),
        ("conv2d", check_conv, 2000),
        ("conv2d_s4", int4::check_conv_s4, 600),
        ("max_pool2d", check_pool, 800),
        ("relu", check_relu, 300),
        ("qk_scores", check_qk, 800),
        ("matvec_i32", check_matvec, 800),
        (
            "matvec_i32_offset (offset-binary int8)",
            offset::check_matvec_offset,
            600,
        ),
        (
            "matvec_i32_strided (i8 and u8 inputs)",
            check_matvec_strided,
            800,
        ),
        ("dot_i8, dot_i8_i8", check_dot, 1000),
        ("softmax_f32", check_softmax, 100),
        ("softmax_u8 (GPT attention)", check_softmax_u8, 300),
        (
            "sqrt_f32 (VSQRT.F32 vs libm::sqrtf)",
            sqrt::check_sqrt,
            4000,
        ),
    ];
    let mut total = Tally::default();
    check_errors(&mut total);
    let (_, span) = board.counter.measure(|| {
        for (name, check, cases) in kernels {
            let mut t = Tally::default();
            for case in 0..cases {
                check(&mut rng, b, &mut t, case);
            }
            defmt::info!(
                "{=str}: {=u32} passed, {=u32} failed ({=u32} on the assembly path, {=u32} on the three-row fully connected kernel)",
                name,
                t.passed,
                t.failed,
                t.dsp_path,
                t.three_rows
            );
            total.passed += t.passed;
            total.failed += t.failed;
        }
    });
    let t = total;
    defmt::info!("dsp_check took {}", span);
    defmt::info!(
        "dsp_check: {=u32} passed, {=u32} failed",
        t.passed,
        t.failed
    );
    fw::exit(if t.failed == 0 { 0 } else { 1 })
}
