//! Attention helpers (for the GPT runtime): int8 `Q·Kᵀ` scores and an `f32` softmax. The
//! portable reference implementations.

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
    let err = || shape_error("qk_scores");
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
/// Computed as: `max` over `x` (NaNs ignored by `f32::max`); `e[i] = libm::expf(x[i] - max)`
/// summed left to right; then every `e[i]` is multiplied by `1.0 / sum`. Every step is plain
/// IEEE-754 `f32` arithmetic and `libm` is software, so the host and a Cortex-M4F FPU give
/// bit-identical results. `-inf` entries (masked positions) become exactly 0 as long as one
/// entry is finite; an empty slice is left alone.
pub fn softmax_f32(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
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
            kernel: "qk_scores",
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
