//! Independent references of aka-core's int8 arithmetic, shared by every test that checks it bit
//! for bit: the requantization (gemmlowp / TFLite double rounding) and a naive forward pass of the
//! Sequential layers.
//!
//! Everything here is written from the definitions, straightforwardly, in `i64`/`i128`, and calls
//! nothing of aka-core: a test that compares aka-core against these functions compares two
//! independent implementations. The layers compute the accumulator the way TFLite's reference
//! kernels do, `bias + Σ (x - zp_in) * w` over the **in-bounds** taps with the bias **not**
//! folded, rather than aka-core's folded form (`bias' = bias - zp_in * Σ w`, padded taps read as
//! `zp_in`), so a test also checks that folding changes nothing.
//!
//! Plain `core` + `alloc` code without dependencies, because it is compiled three ways: as
//! `aka_tests::reference` (the host tests in `tests/tests/`), and by `#[path]` into aka-core's
//! integration tests (`core/tests/common/mod.rs`) and unit tests (`core/src/quant.rs`,
//! `core/src/kernels/mod.rs`), since aka-core cannot depend on aka-tests. Layouts: activations
//! NHWC with N = 1 (`[h][w][c]`), Linear weights `[out][in]`, Conv2d weights OHWI.

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: `a * b / 2^31` rounded with ties toward
/// +infinity (`floor((a * b + 2^30) / 2^31)`), saturated to `i32` (only `i32::MIN * i32::MIN`
/// saturates).
pub fn doubling_high_mul(a: i32, b: i32) -> i32 {
    let p = a as i128 * b as i128;
    let r = (p + (1i128 << 30)).div_euclid(1i128 << 31);
    r.clamp(i32::MIN as i128, i32::MAX as i128) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded with ties away from zero;
/// `exponent` in `0..=31`.
pub fn divide_by_pot(x: i32, exponent: i32) -> i32 {
    assert!((0..=31).contains(&exponent), "exponent {exponent}");
    if exponent == 0 {
        return x;
    }
    let d = 1i128 << exponent;
    let (mag, neg) = ((x as i128).abs(), x < 0);
    let q = (mag + d / 2) / d;
    (if neg { -q } else { q }) as i32
}

/// TFLite's double-rounding `MultiplyByQuantizedMultiplier(x, multiplier, shift)`:
/// `divide_by_pot(doubling_high_mul(x * 2^left, multiplier), right)` with
/// `left = max(shift, 0)`, `right = max(-shift, 0)`. `x * 2^left` wraps like the C code on Arm;
/// `shift` in `-31..=30`.
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    let shifted = (x as i64 * (1i64 << left)) as i32; // wraps, like the C code
    divide_by_pot(doubling_high_mul(shifted, multiplier), right)
}

/// One output value: requantize the accumulator, add the output zero point, clamp to
/// `act_min..=act_max`. Panics if the accumulator overflows `i32` or the left shift overflows
/// (the reference never relies on wrapping; a real model never gets there).
pub fn requantize(acc: i64, multiplier: i32, shift: i32, zero_point: i8, lo: i8, hi: i8) -> i8 {
    let acc = i32::try_from(acc).expect("reference accumulator overflows i32");
    assert!(
        i32::try_from(acc as i64 * (1i64 << shift.max(0))).is_ok(),
        "requantization's left shift overflows: {acc} << {shift}"
    );
    let y = multiply_by_quantized_multiplier(acc, multiplier, shift) as i64 + zero_point as i64;
    y.clamp(lo as i64, hi as i64) as i8
}

/// The per-output-channel output stage of Linear and Conv2d, as plain integers.
#[derive(Clone, Copy, Debug)]
pub struct Stage<'a> {
    /// int32 bias per output channel, at scale `s_in * s_w[c]`, **not** folded.
    pub bias: &'a [i32],
    /// Q31 multiplier per output channel.
    pub multipliers: &'a [i32],
    /// Shift per output channel.
    pub shifts: &'a [i32],
    /// Output zero point.
    pub zero_point: i8,
    /// Lower clamp (fused ReLU: the zero point).
    pub act_min: i8,
    /// Upper clamp.
    pub act_max: i8,
}

impl Stage<'_> {
    /// Output channel `o` of accumulator `acc` (which includes the bias).
    pub fn output(&self, o: usize, acc: i64) -> i8 {
        requantize(
            acc,
            self.multipliers[o],
            self.shifts[o],
            self.zero_point,
            self.act_min,
            self.act_max,
        )
    }
}

/// Naive fully connected layer: `y[o] = stage(bias[o] + Σ_i (x[i] - zp_in) * w[o][i])`.
/// `x: [in]`, `w: [out][in]` with `out = stage.bias.len()`; returns `[out]`.
pub fn linear(x: &[i8], w: &[i8], zp_in: i8, stage: &Stage) -> Vec<i8> {
    let n_in = x.len();
    let n_out = stage.bias.len();
    assert_eq!(w.len(), n_in * n_out, "linear weights");
    (0..n_out)
        .map(|o| {
            let row = &w[o * n_in..(o + 1) * n_in];
            let acc = stage.bias[o] as i64
                + x.iter()
                    .zip(row)
                    .map(|(&xi, &wi)| (xi as i64 - zp_in as i64) * wi as i64)
                    .sum::<i64>();
            stage.output(o, acc)
        })
        .collect()
}

/// Geometry of a 2-D convolution (NHWC input, OHWI weights).
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding on each side (vertical, horizontal).
    pub pad: (usize, usize),
}

impl ConvShape {
    /// Output height and width: `(h + 2·pad - kernel) / stride + 1`.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad.0 - self.kernel.0) / self.stride.0 + 1,
            (self.w + 2 * self.pad.1 - self.kernel.1) / self.stride.1 + 1,
        )
    }
}

/// Naive convolution, TFLite's reference way: out-of-bounds taps are **skipped** (they hold real
/// zero), the bias is not folded. `x: [h][w][in_c]`, `w: [out_c][kh][kw][in_c]`; returns
/// `[oh][ow][out_c]` with `(oh, ow) = g.out_hw()`.
pub fn conv2d(x: &[i8], g: &ConvShape, w: &[i8], zp_in: i8, stage: &Stage) -> Vec<i8> {
    let ((kh, kw), (sh, sw), (ph, pw)) = (g.kernel, g.stride, g.pad);
    assert_eq!(x.len(), g.h * g.w * g.in_c, "conv input");
    assert_eq!(w.len(), g.out_c * kh * kw * g.in_c, "conv weights");
    assert_eq!(stage.bias.len(), g.out_c, "conv bias");
    let (oh, ow) = g.out_hw();
    let mut out = vec![0i8; oh * ow * g.out_c];
    for oy in 0..oh {
        for ox in 0..ow {
            for o in 0..g.out_c {
                let mut acc = stage.bias[o] as i64;
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (oy * sh + ky) as isize - ph as isize;
                        let ix = (ox * sw + kx) as isize - pw as isize;
                        if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                            continue;
                        }
                        for i in 0..g.in_c {
                            let xv = x[(iy as usize * g.w + ix as usize) * g.in_c + i] as i64;
                            let wv = w[((o * kh + ky) * kw + kx) * g.in_c + i] as i64;
                            acc += (xv - zp_in as i64) * wv;
                        }
                    }
                }
                out[(oy * ow + ox) * g.out_c + o] = stage.output(o, acc);
            }
        }
    }
    out
}

/// Naive max pooling (no padding). `x: [h][w][c]`; returns `[oh][ow][c]` and `(oh, ow)` with
/// `oh = (h - kh) / sh + 1` (likewise `ow`).
pub fn max_pool2d(
    x: &[i8],
    (h, w, ch): (usize, usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
) -> (Vec<i8>, (usize, usize)) {
    assert_eq!(x.len(), h * w * ch, "pool input");
    let (oh, ow) = ((h - kh) / sh + 1, (w - kw) / sw + 1);
    let mut out = vec![i8::MIN; oh * ow * ch];
    for oy in 0..oh {
        for ox in 0..ow {
            for c in 0..ch {
                let o = &mut out[(oy * ow + ox) * ch + c];
                for ky in 0..kh {
                    for kx in 0..kw {
                        *o = (*o).max(x[((oy * sh + ky) * w + ox * sw + kx) * ch + c]);
                    }
                }
            }
        }
    }
    (out, (oh, ow))
}

/// ReLU on int8 values: `max(x, zero_point)`, in place.
pub fn relu(x: &mut [i8], zero_point: i8) {
    x.iter_mut().for_each(|v| *v = (*v).max(zero_point));
}

/// The reference's rounding helpers against hand-computed values, so that a bug in the
/// reference cannot hide a bug in aka-core by making the same mistake. Called by a test in each
/// crate that includes this file.
pub fn check_by_hand() {
    // 2^30 * 2^30 / 2^31 = 2^29 exactly.
    assert_eq!(doubling_high_mul(1 << 30, 1 << 30), 1 << 29);
    // 3 * 2^30 / 2^31 = 1.5 -> 2 (ties up); -1.5 -> -1 (ties toward +inf).
    assert_eq!(doubling_high_mul(3, 1 << 30), 2);
    assert_eq!(doubling_high_mul(-3, 1 << 30), -1);
    assert_eq!(doubling_high_mul(i32::MIN, i32::MIN), i32::MAX);
    assert_eq!(divide_by_pot(5, 1), 3); // 2.5 -> 3
    assert_eq!(divide_by_pot(-5, 1), -3); // -2.5 -> -3
    assert_eq!(divide_by_pot(-5, 2), -1); // -1.25 -> -1
    assert_eq!(divide_by_pot(6, 2), 2); // 1.5 -> 2
    assert_eq!(divide_by_pot(i32::MIN, 31), -1);
    assert_eq!(divide_by_pot(i32::MAX, 31), 1);
    // 1000 * 0.75 * 2^-3 = 93.75 -> 94 (multiplier 0.75 = 3 * 2^29, shift -3).
    assert_eq!(multiply_by_quantized_multiplier(1000, 3 << 29, -3), 94);
    assert_eq!(multiply_by_quantized_multiplier(-1000, 3 << 29, -3), -94);
    // Output stage: 94 + zp 10 = 104; clamps at act_max; -94 - 100 clamps at -128.
    assert_eq!(requantize(1000, 3 << 29, -3, 10, -128, 127), 104);
    assert_eq!(requantize(1000, 3 << 29, -3, 10, -128, 100), 100);
    assert_eq!(requantize(-1000, 3 << 29, -3, -100, -128, 127), -128);
}
