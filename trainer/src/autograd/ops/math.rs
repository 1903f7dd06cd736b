//! Scalar math shared by the ops: the vectorisable `exp` and `tanh`, the GELU constants, and the
//! activations with their derivatives. Each is written once here.

/// `e^x` for `f32`, accurate to about 2 ulp over the whole range (Cephes `expf` polynomial after
/// `x = n·ln2 + r` range reduction). Inputs below -87.3 return 0 (also `-inf`), above 88.7 `+inf`.
/// Written without branches or calls so loops over slices vectorise.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest with the 1.5·2^23 trick (`f32::round` is a libm call on baseline x86-64,
    // which would stop vectorisation); exact for |x·log2 e| < 2^22.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.336_55, 88.722_83);
    let n = (xc * LOG2E + MAGIC) - MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n via the exponent field; n ∈ [-126, 128] after the clamp, 128 overflows to inf below.
    let n_i = n as i32;
    let scale = f32::from_bits(((n_i.clamp(-126, 127) + 127) as u32) << 23);
    let v = y * scale;
    let v = if n_i > 127 { f32::INFINITY } else { v };
    if x < -87.336_55 {
        0.0
    } else {
        v
    }
}

/// `tanh(x)` for `f32` as a rational function (Eigen's `ptanh_float`: odd degree-13 numerator,
/// even degree-6 denominator, input clamped to ±7.9053), within a few ulp of `f32::tanh`.
#[inline(always)]
pub fn tanh_fast(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    p *= x;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    p / q
}

/// `√(2/π)`, the constant inside the tanh approximation of GELU.
pub const GELU_K: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh approximation of GELU.
pub const GELU_A: f32 = 0.044_715;

/// GELU, tanh approximation: returns `(gelu(x), gelu'(x))` with
/// `gelu(x) = 0.5 · x · (1 + tanh(GELU_K · (x + GELU_A · x³)))` ([`tanh_fast`]).
#[inline(always)]
pub fn gelu_and_grad(x: f32) -> (f32, f32) {
    let t = tanh_fast(GELU_K * (x + GELU_A * x * x * x));
    let y = 0.5 * x * (1.0 + t);
    let dy = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_A * x * x);
    (y, dy)
}

/// SiLU `x·σ(x)` ([`exp_fast`]): returns `(silu(x), silu'(x))`.
#[inline(always)]
pub fn silu_and_grad(x: f32) -> (f32, f32) {
    let s = 1.0 / (1.0 + exp_fast(-x));
    (x * s, s * (1.0 + x * (1.0 - s)))
}

/// Numerically stable logistic function (no overflow of `exp` for large `|x|`).
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}
