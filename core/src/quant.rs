//! Int8 quantization arithmetic, bit-exact with TensorFlow Lite's reference kernels.
//!
//! A real value `r` is represented by an int8 `q` with `r = scale * (q - zero_point)`.
//! A layer computes an int32 accumulator at scale `s_in * s_w[c]` and rescales it to the output
//! scale `s_out` by the real multiplier `M = s_in * s_w[c] / s_out`, which is stored as a Q31
//! fixed-point `multiplier` and a power-of-two `shift`: `M ≈ multiplier * 2^(shift - 31)`.

use core::fmt;

/// Smallest shift accepted by [`multiply_by_quantized_multiplier`] and the model loader.
pub const MIN_SHIFT: i32 = -31;
/// Largest shift accepted by [`multiply_by_quantized_multiplier`] and the model loader.
pub const MAX_SHIFT: i32 = 30;

/// Why a real multiplier cannot be quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MultiplierError {
    /// NaN or infinite.
    NotFinite,
    /// Negative multipliers are not used by this runtime (scales are positive).
    Negative,
    /// `real >= 2^30`: the shift would exceed [`MAX_SHIFT`].
    TooLarge,
}

impl fmt::Display for MultiplierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultiplierError::NotFinite => write!(f, "multiplier is not finite"),
            MultiplierError::Negative => write!(f, "multiplier is negative"),
            MultiplierError::TooLarge => write!(f, "multiplier is too large (>= 2^30)"),
        }
    }
}

impl core::error::Error for MultiplierError {}

/// TFLite's `QuantizeMultiplier`: `real ≈ multiplier * 2^(shift - 31)` with `multiplier` in
/// `[2^30, 2^31)` (a Q31 value in `[0.5, 1)`). Returns `(multiplier, shift)`.
///
/// * `frexp` (via `libm`) splits `real = q * 2^shift` with `q` in `[0.5, 1)`;
///   `multiplier = round(q * 2^31)` (round half away from zero, like `std::round`).
/// * If rounding gives exactly `2^31`, it becomes `2^30` and `shift + 1`.
/// * `real == 0` (or `-0`) gives `(0, 0)`, like TFLite (a dead channel outputs its zero point).
/// * Tiny reals whose shift would be `< -31` are flushed to `(0, 0)`, like TFLite.
/// * Errors: NaN/infinite ([`MultiplierError::NotFinite`]), negative
///   ([`MultiplierError::Negative`]), or `real >= 2^30` so that `shift > 30`
///   ([`MultiplierError::TooLarge`]).
pub fn quantize_multiplier(real: f64) -> Result<(i32, i32), MultiplierError> {
    if !real.is_finite() {
        return Err(MultiplierError::NotFinite);
    }
    if real < 0.0 {
        return Err(MultiplierError::Negative);
    }
    if real == 0.0 {
        return Ok((0, 0));
    }
    let (q, mut shift) = libm::frexp(real);
    // q in [0.5, 1), so q * 2^31 is in [2^30, 2^31] after rounding: fits in i64 exactly.
    let mut q_fixed = libm::round(q * (1u64 << 31) as f64) as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < MIN_SHIFT {
        return Ok((0, 0));
    }
    if shift > MAX_SHIFT {
        return Err(MultiplierError::TooLarge);
    }
    // q_fixed is in [2^30, 2^31 - 1] here.
    Ok((q_fixed as i32, shift))
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: the high 32 bits of `2 * a * b`, rounded
/// (`floor(a * b / 2^31 + 1/2)`, i.e. ties toward +infinity), saturating the single overflow
/// case `a == b == i32::MIN` to `i32::MAX`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // |ab + nudge| / 2^31 < 2^31 except in the saturated case handled above.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest, ties away from zero.
/// `exponent` is clamped to `0..=31`.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let exponent = exponent.clamp(0, 31);
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier`: `x * multiplier * 2^(shift - 31)`, rounded.
///
/// This is the **double-rounding** variant: gemmlowp's `SaturatingRoundingDoublingHighMul`
/// followed by `RoundingDivideByPOT`, exactly as in TFLite's reference kernels built without
/// `TFLITE_SINGLE_ROUNDING` and CMSIS-NN's `arm_nn_requantize` built without
/// `CMSIS_NN_USE_SINGLE_ROUNDING`:
///
/// ```text
/// left  = max(shift, 0);  right = max(-shift, 0)
/// RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^left, multiplier), right)
/// ```
///
/// `shift` is clamped to [`MIN_SHIFT`]`..=`[`MAX_SHIFT`] (the loader rejects other values).
/// `x * 2^left` wraps on overflow (two's complement, as the C code does on Arm); TFLite never
/// produces a positive shift for multipliers below 1, which is the normal case.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let shift = shift.clamp(MIN_SHIFT, MAX_SHIFT);
    let left = shift.max(0);
    let right = (-shift).max(0);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x.wrapping_mul(1 << left), multiplier),
        right,
    )
}

/// Quantizes a real value to int8: `clamp(round(real / scale) + zero_point, -128, 127)`, with
/// `f32` arithmetic and `libm::roundf` (ties away from zero) like TFLite's `Quantize`. IEEE-754
/// `f32` division is correctly rounded on every target, so host and device agree bit for bit.
/// NaN maps to `zero_point`.
#[inline]
pub fn quantize_f32(real: f32, scale: f32, zero_point: i8) -> i8 {
    let q = libm::roundf(real / scale);
    // `as i32` saturates (and maps NaN to 0), so no overflow is possible before the clamp.
    let q = (q as i32).saturating_add(zero_point as i32);
    q.clamp(i8::MIN as i32, i8::MAX as i32) as i8
}

/// The real value of an 8-bit pixel under the input normalization `(mean, std)`:
/// `(pixel as f32 / 255.0 - mean) / std`, exactly these `f32` operations in this order (the
/// trainer computes its input batches with the same expression). `mean = 0, std = 1` gives
/// `pixel / 255`.
#[inline]
pub fn pixel_value(pixel: u8, mean: f32, std: f32) -> f32 {
    (pixel as f32 / 255.0 - mean) / std
}

/// Quantizes an 8-bit pixel: its real value [`pixel_value`]`(pixel, mean, std)`, then
/// [`quantize_f32`] with the model's input scale and zero point.
#[inline]
pub fn quantize_pixel(pixel: u8, mean: f32, std: f32, scale: f32, zero_point: i8) -> i8 {
    quantize_f32(pixel_value(pixel, mean, std), scale, zero_point)
}

/// Real value of an int8 quantity: `scale * (q - zero_point)`.
#[inline]
pub fn dequantize(q: i8, scale: f32, zero_point: i8) -> f32 {
    scale * (q as i32 - zero_point as i32) as f32
}

/// The shared test references (`tests/src/reference.rs`: requantization and naive layers, written
/// from the definitions), for this crate's unit tests; aka-core cannot depend on aka-tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/src/reference.rs"]
pub(crate) mod reference;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    // The shared independent references (exact i128 arithmetic with explicit floor/round
    // semantics), also used by the host tests.
    use super::reference::{
        self, divide_by_pot as rdbpot_ref, doubling_high_mul as srdhm_ref,
        multiply_by_quantized_multiplier as mbqm_ref,
    };

    #[test]
    fn reference_rounding_by_hand() {
        reference::check_by_hand();
    }

    const EDGES: [i32; 16] = [
        0,
        1,
        -1,
        2,
        -2,
        3,
        -3,
        1 << 30,
        -(1 << 30),
        (1 << 30) + 1,
        i32::MAX,
        i32::MIN,
        i32::MIN + 1,
        i32::MAX - 1,
        123_456_789,
        -987_654_321,
    ];

    #[test]
    fn srdhm_edges_and_random() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        for &a in &EDGES {
            for &b in &EDGES {
                assert_eq!(
                    saturating_rounding_doubling_high_mul(a, b),
                    srdhm_ref(a, b),
                    "{a} {b}"
                );
            }
        }
        // Exact ties: a * b = ±2^30 is ±0.5 after the doubling high mul; ties go toward +inf.
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 15, 1 << 15), 1);
        assert_eq!(
            saturating_rounding_doubling_high_mul(-(1 << 15), 1 << 15),
            0
        );
        // ±1.5
        assert_eq!(saturating_rounding_doubling_high_mul(3 << 15, 1 << 15), 2);
        assert_eq!(
            saturating_rounding_doubling_high_mul(-(3 << 15), 1 << 15),
            -1
        );
        let mut rng = Rng::new(1);
        for _ in 0..100_000 {
            let (a, b) = (rng.next_u32() as i32, rng.next_u32() as i32);
            assert_eq!(
                saturating_rounding_doubling_high_mul(a, b),
                srdhm_ref(a, b),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn rounding_divide_ties_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(1, 1), 1); // 0.5 -> 1
        assert_eq!(rounding_divide_by_pot(-1, 1), -1); // -0.5 -> -1
        assert_eq!(rounding_divide_by_pot(3, 1), 2); // 1.5 -> 2
        assert_eq!(rounding_divide_by_pot(-3, 1), -2); // -1.5 -> -2
        assert_eq!(rounding_divide_by_pot(5, 2), 1); // 1.25 -> 1
        assert_eq!(rounding_divide_by_pot(-5, 2), -1);
        assert_eq!(rounding_divide_by_pot(6, 2), 2); // 1.5 -> 2
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 0), i32::MAX);
        for &x in &EDGES {
            for e in 0..=31 {
                assert_eq!(rounding_divide_by_pot(x, e), rdbpot_ref(x, e), "{x} {e}");
            }
        }
        let mut rng = Rng::new(2);
        for _ in 0..100_000 {
            let x = rng.next_u32() as i32;
            let e = rng.below(32) as i32;
            assert_eq!(rounding_divide_by_pot(x, e), rdbpot_ref(x, e), "{x} {e}");
        }
    }

    #[test]
    fn multiply_by_quantized_multiplier_matches_reference() {
        let mut shifts: [i32; 62] = [0; 62];
        for (i, s) in shifts.iter_mut().enumerate() {
            *s = i as i32 - 31;
        }
        for &x in &EDGES {
            for &m in &EDGES {
                for &s in &shifts {
                    assert_eq!(
                        multiply_by_quantized_multiplier(x, m, s),
                        mbqm_ref(x, m, s),
                        "{x} {m} {s}"
                    );
                }
            }
        }
        // Saturation inside the doubling high mul.
        assert_eq!(
            multiply_by_quantized_multiplier(i32::MIN, i32::MIN, 0),
            i32::MAX
        );
        // Typical requantization: multiplier in [2^30, 2^31), shift in [-31, 0].
        let mut rng = Rng::new(3);
        for _ in 0..200_000 {
            let x = rng.next_u32() as i32 >> rng.below(31);
            let m = (1 << 30) + rng.below(1 << 30) as i32;
            let s = -(rng.below(32) as i32);
            let got = multiply_by_quantized_multiplier(x, m, s);
            assert_eq!(got, mbqm_ref(x, m, s), "{x} {m} {s}");
            // And close to the real product (two roundings: at most 1 off).
            let real = x as f64 * m as f64 * libm::exp2((s - 31) as f64);
            assert!(
                (got as f64 - real).abs() <= 1.0,
                "{x} {m} {s}: {got} vs {real}"
            );
        }
        // Out-of-range shifts are clamped, not a panic.
        assert_eq!(
            multiply_by_quantized_multiplier(5, 1 << 30, 100),
            multiply_by_quantized_multiplier(5, 1 << 30, 30)
        );
        assert_eq!(multiply_by_quantized_multiplier(5, 1 << 30, -100), 0);
    }

    #[test]
    fn quantize_multiplier_like_tflite() {
        assert_eq!(quantize_multiplier(0.5), Ok((1 << 30, 0)));
        assert_eq!(quantize_multiplier(1.0), Ok((1 << 30, 1)));
        assert_eq!(quantize_multiplier(0.25), Ok((1 << 30, -1)));
        assert_eq!(quantize_multiplier(0.75), Ok((3 << 29, 0)));
        assert_eq!(quantize_multiplier(0.0), Ok((0, 0)));
        assert_eq!(quantize_multiplier(-0.0), Ok((0, 0)));
        // q rounds up to exactly 2^31: becomes 2^30 with shift + 1.
        assert_eq!(quantize_multiplier(1.0 - 1e-12), Ok((1 << 30, 1)));
        assert_eq!(quantize_multiplier(0.5 - 1e-13), Ok((1 << 30, 0)));
        // Flush to zero below 2^-32.
        assert_eq!(quantize_multiplier(libm::exp2(-33.0)), Ok((0, 0)));
        assert_eq!(quantize_multiplier(libm::exp2(-32.0)), Ok((1 << 30, -31)));
        assert_eq!(quantize_multiplier(libm::exp2(29.0)), Ok((1 << 30, 30)));
        assert_eq!(
            quantize_multiplier(libm::exp2(30.0)),
            Err(MultiplierError::TooLarge)
        );
        assert_eq!(quantize_multiplier(-0.1), Err(MultiplierError::Negative));
        assert_eq!(
            quantize_multiplier(f64::NAN),
            Err(MultiplierError::NotFinite)
        );
        assert_eq!(
            quantize_multiplier(f64::INFINITY),
            Err(MultiplierError::NotFinite)
        );
        let mut rng = Rng::new(4);
        for _ in 0..10_000 {
            let real = libm::exp2(rng.next_f64() * 40.0 - 30.0);
            let (m, s) = quantize_multiplier(real).unwrap();
            assert!((1 << 30..=i32::MAX).contains(&m));
            assert!((MIN_SHIFT..=MAX_SHIFT).contains(&s));
            let back = m as f64 * libm::exp2((s - 31) as f64);
            assert!((back / real - 1.0).abs() < 1e-9, "{real} {m} {s}");
        }
    }

    #[test]
    fn quantize_pixels() {
        // scale 1/255, zp -128: pixel p -> p - 128.
        for p in 0..=255u8 {
            assert_eq!(
                quantize_pixel(p, 0.0, 1.0, 1.0 / 255.0, -128),
                (p as i32 - 128) as i8
            );
            assert_eq!(pixel_value(p, 0.0, 1.0), p as f32 / 255.0);
        }
        // Clamping and ties.
        assert_eq!(quantize_pixel(255, 0.0, 1.0, 0.001, 0), 127);
        assert_eq!(quantize_pixel(0, 0.0, 1.0, 1.0, -128), -128);
        // Normalized: (p / 255 - 0.5) / 0.25 spans [-2, 2] (by hand); at scale 0.01, zp 0:
        // p = 0 -> -200 -> clamped to -128; p = 255 -> 200 -> clamped to 127;
        // p = 51 -> (0.2 - 0.5) / 0.25 = -1.2, at scale 0.01 -> -120.
        assert_eq!(pixel_value(0, 0.5, 0.25), -2.0);
        assert_eq!(pixel_value(255, 0.5, 0.25), 2.0);
        assert_eq!(quantize_pixel(0, 0.5, 0.25, 0.01, 0), -128);
        assert_eq!(quantize_pixel(255, 0.5, 0.25, 0.01, 0), 127);
        // p = 102 -> (0.4 - 0.5) / 0.25 = -0.4, at scale 0.02 -> -20.
        assert_eq!(quantize_pixel(102, 0.5, 0.25, 0.02, 0), -20);
        assert!((pixel_value(51, 0.5, 0.25) + 1.2).abs() < 1e-6);
        assert_eq!(quantize_pixel(51, 0.5, 0.25, 0.01, 0), -120);
        assert_eq!(quantize_pixel(51, 0.5, 0.25, 0.01, 7), -113);
        // A huge value (tiny std) saturates instead of overflowing.
        assert_eq!(quantize_pixel(255, 0.0, 1e-38, 1.0, 0), 127);
        assert_eq!(quantize_pixel(0, 1.0, 1e-38, 1.0, 0), -128);
        assert_eq!(quantize_f32(0.5, 1.0, 0), 1);
        assert_eq!(quantize_f32(-0.5, 1.0, 0), -1);
        assert_eq!(quantize_f32(f32::NAN, 1.0, 3), 3);
        assert_eq!(quantize_f32(1e30, 1e-30, 0), 127);
        assert_eq!(dequantize(-128, 0.5, -128), 0.0);
        assert_eq!(dequantize(0, 0.5, -128), 64.0);
    }
}
