//! f32 → int8 quantization (zero point 0), the GPT's activation quantizer: `Q(v, m)`.

/// `1.5 · 2^23`: for `|y| < 2^22`, `(y + ROUND_MAGIC) - ROUND_MAGIC` is `y` rounded to the
/// nearest integer, ties to even (f32 addition rounds to nearest even on every target).
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;

/// `Q(v, m) = clamp(rne(v · m), -128, 127)`: int8 quantization (zero point 0) with the
/// reciprocal scale (or a combined multiplier) `m`. Ties to even, NaN → 0, `+inf` → 127,
/// `-inf` → -128 (for `|v·m| >= 2^22` the rounding trick is inexact, but the clamp decides). On
/// a Cortex-M4F: `VMUL`, `VADD`, `VSUB`, `VCVT`, `VMOV`, `SSAT`.
#[inline(always)]
pub fn quantize(v: f32, m: f32) -> i8 {
    let y = v * m;
    let r = (y + ROUND_MAGIC) - ROUND_MAGIC;
    (r as i32).clamp(-128, 127) as i8
}

/// The f32 stored little-endian in `b` (4 bytes; anything else reads as 0.0). Model files keep
/// f32 arrays as LE bytes so that they can be read in place at any alignment.
#[inline]
pub(crate) fn le_f32(b: &[u8]) -> f32 {
    match b {
        [a, b, c, d] => f32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        // Reference in f64: round half to even of the same f32 product, then clamp.
        fn reference(v: f32, m: f32) -> i8 {
            let y = (v * m) as f64;
            if y.is_nan() {
                return 0;
            }
            let fl = y.floor();
            let r = match (y - fl).partial_cmp(&0.5).unwrap() {
                core::cmp::Ordering::Less => fl,
                core::cmp::Ordering::Greater => fl + 1.0,
                core::cmp::Ordering::Equal if fl % 2.0 == 0.0 => fl,
                core::cmp::Ordering::Equal => fl + 1.0,
            };
            r.clamp(-128.0, 127.0) as i8
        }
        let mut rng = Rng::new(5);
        for i in -1000..=1000 {
            let v = i as f32 * 0.25; // exact halves and quarters
            assert_eq!(quantize(v, 1.0), reference(v, 1.0), "{v}");
        }
        for _ in 0..100_000 {
            let v = rng.normal() * [0.01f32, 1.0, 100.0, 1e7, 1e30][rng.below(5) as usize];
            let m = [1.0f32, 0.37, 127.0, 3e-5][rng.below(4) as usize];
            assert_eq!(quantize(v, m), reference(v, m), "{v} * {m}");
        }
        assert_eq!(quantize(0.5, 1.0), 0);
        assert_eq!(quantize(1.5, 1.0), 2);
        assert_eq!(quantize(-2.5, 1.0), -2);
        assert_eq!(quantize(f32::NAN, 1.0), 0);
        assert_eq!(quantize(f32::INFINITY, 1.0), 127);
        assert_eq!(quantize(f32::NEG_INFINITY, 1.0), -128);
        assert_eq!(quantize(-4_194_303.5, 1.0), -128);
        assert_eq!(quantize(-128.4, 1.0), -128);
        assert_eq!(quantize(-128.6, 1.0), -128);
        assert_eq!(quantize(3e9, 1.0), 127);
    }
}
