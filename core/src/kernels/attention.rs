//! Attention helpers (for the GPT runtime): int8 `Q·Kᵀ` scores, the integer attention softmax
//! ([`softmax_u8`]) and an `f32` softmax. The portable reference implementations.

use super::shape_error;
use crate::Error;

/// Attention scores: `scores[i][j] = Σ_t q[i][t] * k[j][t]`, int8 × int8 → wrapping int32.
///
/// Shapes: `q` `[tq][d]` and `k` `[tk][d]` row-major (`tq = q.len() / d`, `tk = k.len() / d`);
/// `scores` `[tq][tk]` row-major. No scaling, no zero points: the caller applies the
/// (symmetric) scales, `1/√d` and any causal mask afterwards.
///
/// Errors ([`Error::KernelShape`]): `d == 0`, a length not a multiple of `d`, or
/// `scores.len() != tq * tk`.
pub fn qk_scores(q: &[i8], k: &[i8], d: usize, scores: &mut [i32]) -> Result<(), Error> {
    let (_, tk) = check_qk_scores(q, k, d, scores)?;
    if tk == 0 {
        return Ok(());
    }
    for (q_row, s_row) in q.chunks_exact(d).zip(scores.chunks_exact_mut(tk)) {
        for (k_row, s) in k.chunks_exact(d).zip(s_row) {
            *s = dot_i8_i8(q_row, k_row);
        }
    }
    Ok(())
}

/// The shape check shared by every implementation of [`qk_scores`]; returns `(tq, tk)`.
pub(crate) fn check_qk_scores(
    q: &[i8],
    k: &[i8],
    d: usize,
    scores: &[i32],
) -> Result<(usize, usize), Error> {
    let err = || shape_error(msg!("qk_scores"));
    if d == 0 || !q.len().is_multiple_of(d) || !k.len().is_multiple_of(d) {
        return Err(err());
    }
    let (tq, tk) = (q.len() / d, k.len() / d);
    if tq.checked_mul(tk) != Some(scores.len()) {
        return Err(err());
    }
    Ok((tq, tk))
}

/// `Σ a[i] * b[i]` over the common length, int8 × int8 → wrapping int32: the portable reference
/// of [`crate::kernels::dot_i8_i8`] (a zipped fold, which vectorizes on the host).
#[inline]
pub fn dot_i8_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .fold(0i32, |acc, (&a, &b)| acc.wrapping_add(a as i32 * b as i32))
}

/// In-place softmax: `x[i] = exp(x[i] - max) / Σ_j exp(x[j] - max)`.
///
/// Computed as: `max` over `x` (NaNs ignored), [`exp_minus`] (`e[i] = `[`exp_f32`]`(x[i] -
/// max)` and `Σ e`), then every `e[i]` is multiplied by `1.0 / sum`. Every step is plain
/// IEEE-754 `f32` arithmetic, so the host and a Cortex-M4F FPU give bit-identical results.
/// `-inf` entries (masked positions) become exactly 0 as long as one entry is finite; an empty
/// slice is left alone.
pub fn softmax_f32(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let inv = 1.0 / exp_minus(x, max);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// The unnormalized softmax given the maximum `max` of `x`: `x[i] = `[`exp_f32`]`(x[i] - max)`
/// in place; returns `Σ x[i]` summed left to right (0 for an empty slice).
pub fn exp_minus(x: &mut [f32], max: f32) -> f32 {
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = exp_f32(*v - max);
        sum += *v;
    }
    sum
}

/// `256 · log2(e)` (f32): turns a difference of natural-log scores into the Q8 base-2 exponent
/// of [`softmax_u8`].
pub const EXP2_Q8_PER_NAT: f32 = 369.329_86;

/// The largest Q8 exponent [`softmax_u8`] evaluates: `z` is clamped to `16 · 256 − 1`, whose
/// shift `z >> 8 = 15` already gives weight 0 (every table entry is below `2^15`; in fact every
/// `z ≥ 2,303` does).
pub const EXP2_Q8_Z_MAX: u32 = 16 * 256 - 1;

/// `EXP2_Q8[f] = rne(32640 · 2^(−f/256))` for `f` in `0..256` (`32640 = 255 · 2^7`): the
/// fractional part of [`softmax_u8`]'s base-2 exponent, 15 bits (`EXP2_Q8[0] = 32640`,
/// `EXP2_Q8[255] = 16364`). Built at compile time (an f64 Taylor series of `e^(−f·ln2/256)`,
/// tested against `f64::powf`).
pub static EXP2_Q8: [u16; 256] = exp2_q8_table();

const fn exp2_q8_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut f = 0;
    while f < 256 {
        // e^(−x), x = f·ln2/256 in [0, 0.694): 30 terms are exact to f64 precision.
        let x = f as f64 * (core::f64::consts::LN_2 / 256.0);
        let (mut term, mut sum, mut k) = (1.0f64, 1.0f64, 1);
        while k < 30 {
            term = term * -x / k as f64;
            sum += term;
            k += 1;
        }
        t[f] = (sum * 32640.0 + 0.5) as u16; // > 0: rounds half up (no exact halves occur)
        f += 1;
    }
    t
}

/// The u8 weight `255 · 2^(−z/256)` of a Q8 base-2 exponent `z ≥ 0`:
/// `((EXP2_Q8[z & 255] >> (z >> 8)) + 64) >> 7` with `z` clamped to [`EXP2_Q8_Z_MAX`] (integer
/// operations only; 255 at `z = 0`, non-increasing in `z`, 0 from `z = 2,303` on).
#[inline(always)]
pub fn exp2_neg_q8_u8(z: u32) -> u32 {
    let z = z.min(EXP2_Q8_Z_MAX);
    let t = EXP2_Q8[(z & 255) as usize] as u32;
    ((t >> (z >> 8)) + 64) >> 7
}

/// The GPT's attention softmax as **unnormalized u8 weights**, straight from the i32 sums
/// `q·k_t` of one head (score `e[t] = sums[t] · scale`, `scale > 0`) given their maximum
/// `best`: for every `t`,
///
/// * `d = best − sums[t]` (exact, as u32: `best ≥ sums[t]`),
/// * `z = clamp((d as f32 · c + 0.5) as i32, 0, `[`EXP2_Q8_Z_MAX`]`)` with `c = scale · `[`EXP2_Q8_PER_NAT`]
///   (one f32 product per head): the exponent `(e_max − e[t]) · log2 e` in Q8, rounded to
///   nearest (`as i32` truncates and saturates; NaN → 0),
/// * `out[t] = `[`exp2_neg_q8_u8`]`(z)` (`≈ 255 · e^(e[t] − e_max)`, stored `as u8 as i8`),
///
/// and returns `Σ out[t]` (u32). The softmax is `out[t] / Σ out`: the caller divides once, in
/// the `P·V` requantization (an exact normalization of the weights actually used). The entry
/// at the maximum is exactly 255 (so the sum is ≥ 255 when `best` is one of the sums); each
/// weight is within 1 of `255 · e^(e[t] − e_max)` (tested against `f64`). About 15
/// instructions per score on a Cortex-M4F instead of ~55 for an `f32` `exp` and a second,
/// normalizing pass. The same integer and IEEE-754 `f32` operations on every target.
///
/// `out` and `sums` are zipped (the shorter decides). A sum above `best` (a caller error) gets
/// weight 0.
#[inline(never)] // one copy for the GPT's one- and two-pass callers (code size)
pub fn softmax_u8(sums: &[i32], best: i32, scale: f32, out: &mut [i8]) -> u32 {
    let c = scale * EXP2_Q8_PER_NAT;
    let mut total = 0u32;
    for (o, &s) in out.iter_mut().zip(sums) {
        let d = best.wrapping_sub(s) as u32;
        // `as i32` saturates (NaN → 0) and the clamp to EXP2_Q8_Z_MAX is one `USAT #12`: the
        // same weight as `exp2_neg_q8_u8((d as f32 · c + 0.5) as u32)` (tested).
        let z = ((d as f32 * c + 0.5) as i32).clamp(0, EXP2_Q8_Z_MAX as i32) as u32;
        let u = exp2_neg_q8_u8(z);
        *o = u as u8 as i8;
        total = total.wrapping_add(u);
    }
    total
}

/// `e^x` in about 20 `f32` operations, within 2 ulp of the exact value (tested against `f64`)
/// for `x` in `[-86.6, 88.7]`; `0` below (where `e^x < 2.7·10^-38`, the edge of the normal
/// range), `+inf` above, NaN for NaN.
///
/// Cephes' `expf`: `x = n·ln2 + r` with `n = rne(x·log2 e)` and `|r| <= ln2/2` (`ln2` split into
/// an exact high part and a low correction), `e^r = 1 + r + r²·P(r)` with Cephes' degree-5
/// minimax `P`, then `2^n` added to the exponent bits. Plain `+ - *` in the order written (no
/// fused multiply-add), so every target computes the same bits. The softmax of the attention
/// and of sampling use it; it replaces `libm::expf` (about 3 times the instructions on a
/// Cortex-M4F).
#[cfg_attr(feature = "compact", inline(never))] // sampling calls it twice
#[cfg_attr(not(feature = "compact"), inline)]
pub fn exp_f32(x: f32) -> f32 {
    // One integer compare for the common case |x| < 86.6 (NaN and ±inf fail it too).
    if x.to_bits() & 0x7fff_ffff >= 86.6f32.to_bits() {
        return if x.is_nan() {
            x
        } else if x < -86.6 {
            0.0
        } else if x > 88.7 {
            f32::INFINITY
        } else {
            exp_core(x)
        };
    }
    exp_core(x)
}

/// [`exp_f32`] without the range checks: `x` in `[-86.6, 88.7]`.
#[inline(always)]
fn exp_core(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // 355/512: exact, and n·LN2_HI is exact for |n| < 2^15
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 - LN2_HI
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: (y + MAGIC) - MAGIC rounds y to an integer
    let n = (x * LOG2E + MAGIC) - MAGIC; // integer in [-125, 128]
    let r = (x - n * LN2_HI) - n * LN2_LO; // |r| <= ~0.347
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * (r * r) + r + 1.0; // e^r in [0.70, 1.42]
                                   // e · 2^n: add n to the biased exponent (the result stays normal: n >= -125, and for
                                   // n = 128 only when e < 1).
    f32::from_bits(e.to_bits().wrapping_add((n as i32 as u32) << 23))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn qk_scores_matches_naive_reference() {
        let mut rng = Rng::new(77);
        let mut q = [0i8; 9 * 70];
        let mut k = [0i8; 13 * 70];
        let mut s = [0i32; 9 * 13];
        for case in 0..300 {
            let d = 1 + rng.below(70) as usize;
            let tq = 1 + rng.below(9) as usize;
            let tk = rng.below(14) as usize;
            let extreme = case % 5 == 0;
            for v in q[..tq * d].iter_mut().chain(k[..tk * d].iter_mut()) {
                *v = if extreme { -128 } else { rng.next_u32() as i8 };
            }
            let (q, k, s) = (&q[..tq * d], &k[..tk * d], &mut s[..tq * tk]);
            qk_scores(q, k, d, s).unwrap();
            for i in 0..tq {
                for j in 0..tk {
                    let want: i64 = (0..d)
                        .map(|t| q[i * d + t] as i64 * k[j * d + t] as i64)
                        .sum();
                    assert_eq!(s[i * tk + j] as i64, want, "case {case} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn qk_scores_rejects_bad_shapes() {
        let err = Err(Error::KernelShape {
            kernel: msg!("qk_scores"),
        });
        let mut s = [0i32; 4];
        assert_eq!(qk_scores(&[0; 8], &[0; 8], 0, &mut s), err);
        assert_eq!(qk_scores(&[0; 7], &[0; 8], 4, &mut s[..2]), err);
        assert_eq!(qk_scores(&[0; 8], &[0; 9], 4, &mut s[..4]), err);
        assert_eq!(qk_scores(&[0; 8], &[0; 8], 4, &mut s[..3]), err);
        assert_eq!(qk_scores(&[0; 8], &[0; 8], 4, &mut s[..4]), Ok(()));
        assert_eq!(qk_scores(&[], &[0; 8], 4, &mut []), Ok(()));
        assert_eq!(qk_scores(&[0; 8], &[], 4, &mut []), Ok(()));
    }

    #[test]
    fn exp_f32_is_within_2_ulp_of_f64_exp() {
        extern crate std;
        // Every 97th f32 bit pattern in [-86.6, 88.7] plus the edges, against f64 exp.
        let mut worst = 0.0f64;
        let mut check = |x: f32| {
            if !(-86.6..=88.7).contains(&x) {
                return;
            }
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            let ulp = (want as f32).abs().next_up() as f64 - (want as f32).abs() as f64;
            let err = (got - want).abs() / ulp;
            assert!(err <= 2.0, "exp_f32({x}) = {got}, want {want} ({err} ulp)");
            worst = worst.max(err);
        };
        for bits in (0..0x42B3_3333u32).step_by(97) {
            check(f32::from_bits(bits)); // 0 ..= 89.6 (only <= 88.7 counts)
            check(-f32::from_bits(bits));
        }
        for x in [
            -86.6f32, -86.0, -10.0, -1.0, -0.5, 0.0, 0.5, 1.0, 10.0, 88.0, 88.7,
        ] {
            check(x);
        }
        assert!(worst > 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-86.61), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(88.71), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_is_a_distribution() {
        let mut rng = Rng::new(78);
        let mut x = [0f32; 100];
        for case in 0..200 {
            let n = 1 + rng.below(100) as usize;
            let scale = [0.01f32, 1.0, 30.0, 1e4][case % 4];
            for v in x[..n].iter_mut() {
                *v = rng.normal() * scale;
            }
            if n > 1 {
                x[0] = f32::NEG_INFINITY; // a masked position
            }
            let orig = x;
            softmax_f32(&mut x[..n]);
            let max = orig[..n].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let denom: f64 = orig[..n].iter().map(|&v| ((v - max) as f64).exp()).sum();
            let sum: f32 = x[..n].iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "case {case}: sum {sum}");
            for (i, (&p, &v)) in x[..n].iter().zip(&orig[..n]).enumerate() {
                let want = ((v - max) as f64).exp() / denom;
                assert!(
                    (p as f64 - want).abs() < 1e-6,
                    "case {case} [{i}]: {p} vs {want}"
                );
            }
            if n > 1 {
                assert_eq!(x[0], 0.0);
            }
        }
        let mut empty: [f32; 0] = [];
        softmax_f32(&mut empty);
        let mut one = [5.0f32];
        softmax_f32(&mut one);
        assert_eq!(one, [1.0]);
    }

    #[test]
    fn exp2_q8_table_is_rounded_powers_of_two() {
        extern crate std;
        for (f, &t) in EXP2_Q8.iter().enumerate() {
            let want = 32640.0 * 2f64.powf(-(f as f64) / 256.0);
            assert!(
                (t as f64 - want).abs() <= 0.5,
                "EXP2_Q8[{f}] = {t}, want {want}"
            );
        }
        assert_eq!((EXP2_Q8[0], EXP2_Q8[255]), (32640, 16364));
        assert!(EXP2_Q8.iter().all(|&t| t < 1 << 15));
        // The weights: 255 at 0, non-increasing, exactly 255·2^(−z/256) within 0.51 (the final
        // rounding, the table's and the shift's truncation), 0 from 2,303 on.
        let mut prev = 255;
        for z in 0..5000u32 {
            let u = exp2_neg_q8_u8(z);
            let want = 255.0 * 2f64.powf(-(z as f64) / 256.0);
            assert!(u <= prev, "not monotonic at {z}");
            assert!((u as f64 - want).abs() <= 0.51, "z {z}: {u}, want {want}");
            assert_eq!(u == 0, z >= 2303, "z {z}");
            prev = u;
        }
        assert_eq!(exp2_neg_q8_u8(0), 255);
        assert_eq!(exp2_neg_q8_u8(u32::MAX), 0);
        // softmax_u8's saturating i32 conversion and clamp to 4095 give the same weights as the
        // u32 conversion.
        for y in [
            0.0f32,
            0.9,
            255.5,
            3839.9,
            3840.0,
            4095.5,
            4096.0,
            1e9,
            3e9,
            5e9,
            f32::INFINITY,
        ] {
            let z = (y as i32).clamp(0, EXP2_Q8_Z_MAX as i32) as u32;
            assert_eq!(exp2_neg_q8_u8(z), exp2_neg_q8_u8(y as u32), "{y}");
        }
    }

    #[test]
    fn softmax_u8_is_within_bounds_of_f64_softmax() {
        extern crate std;
        let mut rng = Rng::new(79);
        let mut sums = [0i32; 300];
        let mut out = [0i8; 300];
        let mut worst = 0.0f64;
        for case in 0..400 {
            let n = 1 + rng.below(300) as usize;
            let spread = [10u32, 1_000, 100_000, 1 << 30][case % 4];
            for v in sums[..n].iter_mut() {
                *v = (rng.next_u32() % (2 * spread)) as i32 - spread as i32;
            }
            if case % 7 == 0 {
                sums[..n].fill(i32::MIN); // all equal, at the extreme
            }
            if case % 11 == 0 {
                sums[0] = i32::MAX; // the widest difference
            }
            let scale = [1e-5f32, 1e-3, 0.01, 0.37, 3.0][case % 5];
            let best = *sums[..n].iter().max().unwrap();
            let total = softmax_u8(&sums[..n], best, scale, &mut out[..n]);
            let u: std::vec::Vec<f64> = out[..n].iter().map(|&p| p as u8 as f64).collect();
            assert_eq!(total as f64, u.iter().sum::<f64>(), "case {case}");
            assert!(total >= 255, "case {case}");
            // The reference: f64 scores, exact weights 255·e^(e − e_max) and softmax.
            let e: std::vec::Vec<f64> =
                sums[..n].iter().map(|&v| v as f64 * scale as f64).collect();
            let emax = e.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: std::vec::Vec<f64> = e.iter().map(|&v| 255.0 * (v - emax).exp()).collect();
            let wsum: f64 = w.iter().sum();
            for t in 0..n {
                // Each weight within 1 of the exact one: 0.51 (rounding, table) + 255·(1 −
                // 2^(−0.5/256)) = 0.35 (z rounded) + the f32 rounding of d·c.
                let err = (u[t] - w[t]).abs();
                worst = worst.max(err);
                assert!(err <= 1.0, "case {case} [{t}]: {} vs {}", u[t], w[t]);
                // Hence the probabilities: |u/U − w/W| <= (1 + n·w/W)/U.
                let (p, q) = (u[t] / total as f64, w[t] / wsum);
                let bound = (1.0 + n as f64 * q) / total as f64;
                assert!((p - q).abs() <= bound, "case {case} [{t}]: p {p} vs {q}");
            }
        }
        assert!(worst > 0.5);
        assert_eq!(softmax_u8(&[], 0, 1.0, &mut []), 0);
        // A sum above `best` (a caller error) gets weight 0, no panic.
        let mut o = [0i8; 2];
        assert_eq!(softmax_u8(&[5, 6], 5, 1.0, &mut o), 255);
        assert_eq!(o, [-1, 0]);
    }

    #[test]
    fn entry_points_agree_with_portable() {
        // On the host the entry points are the portable kernels; on Armv7E-M the firmware's
        // `dsp_check` compares the DSP kernels with these.
        let q: [i8; 8] = [1, -2, 3, -4, 5, -6, 7, -128];
        let mut a = [0i32; 4];
        let mut b = [0i32; 4];
        crate::kernels::qk_scores(&q, &q, 4, &mut a).unwrap();
        crate::kernels::portable::qk_scores(&q, &q, 4, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], 1 + 4 + 9 + 16);
    }
}
