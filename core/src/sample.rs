//! Next-token sampling from logits: greedy, temperature and top-k, seeded with
//! [`crate::rng::Rng`], no allocation (the caller lends scratch), [`exp_f32`], so the trainer
//! (float logits) and a device (int8 logits) draw identically from identical logits.
//!
//! The procedure of [`sample`], exactly:
//!
//! 1. Greedy if `temperature <= 0` or `top_k == 1`: [`argmax`] (first maximum wins; no random
//!    number is drawn).
//! 2. Otherwise the candidates are the `top_k` largest logits (`top_k == 0` or `>= len`: all);
//!    ties at the boundary go to the lower index. NaN logits are never candidates.
//! 3. `m` = the largest logit; weight `w_i = exp_f32((l_i - m) / temperature)` for candidates
//!    (0 for the others and for `-inf` logits); `total = Σ w_i` in index order. If `total` is
//!    not `> 0`, the argmax.
//! 4. One draw `r = rng.next_f32() * total`; the result is the first index (in index order)
//!    whose running sum of positive weights exceeds `r` (the last positive-weight candidate if
//!    rounding leaves none).
//!
//! For finite logits this is the arithmetic of the trainer's `gpt::sample::sample_token` (same
//! cut, weights, single draw and search), so both pick the same ids from the same logits and
//! seed; the only difference is that `top_k == 1` draws nothing here (the pick is the argmax
//! either way).

use crate::kernels::exp_f32;
use crate::rng::Rng;
use crate::Error;

/// Sampling settings.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sampling {
    /// Softmax temperature, not NaN; `<= 0` means greedy (`+inf`: uniform over the top-k).
    pub temperature: f32,
    /// Keep only the `top_k` largest logits; `0` means no limit, `1` means greedy.
    pub top_k: u32,
}

impl Sampling {
    /// Always the most likely token.
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_k: 1,
    };

    /// True if [`sample`] will take the argmax without drawing.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// Index of the largest value; the **first** maximum wins; NaN values are skipped. `None` if
/// `logits` is empty or all NaN.
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

/// Draws a token id from `logits` (see the [module documentation](self) for the exact
/// procedure). `scratch` needs `logits.len()` values when sampling with `0 < top_k < len`
/// (otherwise it is used only if it has that length: it keeps the candidates' weights between the
/// two passes, which are then computed once; the result is the same either way).
///
/// Errors ([`Error::BadArgument`]): empty or all-NaN logits, NaN temperature;
/// [`Error::BufferTooSmall`] for a short `scratch`.
pub fn sample(
    logits: &[f32],
    cfg: &Sampling,
    rng: &mut Rng,
    scratch: &mut [f32],
) -> Result<u32, Error> {
    if cfg.temperature.is_nan() {
        return Err(Error::BadArgument {
            what: msg!("temperature is NaN"),
        });
    }
    let best = argmax(logits).ok_or(Error::BadArgument {
        what: msg!("no finite logits"),
    })?;
    if cfg.is_greedy() {
        return Ok(best as u32);
    }
    let n = logits.len();
    let k = cfg.top_k as usize;
    // Candidate rule: l > threshold, or l == threshold for the first `ties` such indices.
    let (threshold, ties) = if k == 0 || k >= n {
        (f32::NEG_INFINITY, usize::MAX)
    } else {
        let have = scratch.len();
        let s = scratch
            .get_mut(..n)
            .ok_or(Error::BufferTooSmall { need: n, have })?;
        // NaN sorts below everything: never selected as a top value. Each value is stored as
        // its `total_cmp` key (see `order_key`), so that the selection compares integers.
        for (o, &l) in s.iter_mut().zip(logits) {
            let l = if l.is_nan() { f32::NEG_INFINITY } else { l };
            *o = f32::from_bits(order_key(l) as u32);
        }
        let kth = kth_largest(s, k);
        // `order_key` is its own inverse.
        let kth = f32::from_bits(order_key(kth) as u32);
        let above = logits.iter().filter(|&&l| l > kth).count();
        (kth, k - above)
    };
    let m = logits.get(best).copied().unwrap_or(0.0);
    let t = cfg.temperature;
    let weight = |l: f32| {
        if l == f32::NEG_INFINITY {
            0.0
        } else {
            exp_f32((l - m) / t)
        }
    };
    let candidates = Candidates { threshold, ties };
    // The candidates' weights are kept in `scratch` (free again) when it is long enough, so the
    // search below does not compute them twice.
    let mut kept = scratch.get_mut(..n);
    let mut total = 0.0f32;
    let mut c = candidates;
    for (i, &l) in logits.iter().enumerate() {
        if c.admit(l) {
            let w = weight(l);
            if let Some(o) = kept.as_deref_mut().and_then(|k| k.get_mut(i)) {
                *o = w;
            }
            total += w;
        }
    }
    // Also catches NaN (e.g. `inf - inf`).
    if total.is_nan() || total <= 0.0 {
        return Ok(best as u32);
    }
    let r = rng.next_f32() * total;
    let mut c = candidates;
    let mut acc = 0.0f32;
    let mut last = best;
    for (i, &l) in logits.iter().enumerate() {
        if !c.admit(l) {
            continue;
        }
        let w = match kept.as_deref().and_then(|k| k.get(i)) {
            Some(&w) => w,
            None => weight(l),
        };
        if w.is_nan() || w <= 0.0 {
            continue;
        }
        acc += w;
        last = i;
        if r < acc {
            return Ok(i as u32);
        }
    }
    Ok(last as u32)
}

/// The `k`-th largest (`1 <= k <= s.len()`) of the keys stored as bits in `s` (signed order):
/// [`kth_largest_small`] with the `compact` feature, else [`kth_largest_select`]. The same value
/// either way (tested).
fn kth_largest(s: &mut [f32], k: usize) -> f32 {
    if cfg!(feature = "compact") {
        kth_largest_small(s, k)
    } else {
        kth_largest_select(s, k)
    }
}

/// [`kth_largest`] with `select_nth_unstable` (reorders `s`).
fn kth_largest_select(s: &mut [f32], k: usize) -> f32 {
    // Descending: the k-th largest lands at index k - 1.
    let key = |v: &f32| v.to_bits() as i32;
    let (_, &mut kth, _) = s.select_nth_unstable_by(k - 1, |a, b| key(b).cmp(&key(a)));
    kth
}

/// [`kth_largest`] for the `compact` feature: a plain quickselect with a three-way partition
/// (pivot: the middle element; reorders `s`). No median-of-medians fallback, so it is quadratic
/// in the worst case, which for a vocabulary-sized `s` costs little; in return it is much less
/// code than `select_nth_unstable`. The same value (the k-th largest is unique as a value).
fn kth_largest_small(s: &mut [f32], k: usize) -> f32 {
    let key = |v: f32| v.to_bits() as i32;
    // Descending order: the answer is the element that would land at index `want`.
    let (mut lo, mut hi, want) = (0, s.len(), k - 1);
    while lo < hi {
        let p = key(s[lo + (hi - lo) / 2]);
        // [lo, gt) > p, [gt, i) == p, [lt, hi) < p; [i, lt) not looked at yet.
        let (mut gt, mut i, mut lt) = (lo, lo, hi);
        while i < lt {
            let v = key(s[i]);
            if v > p {
                s.swap(gt, i);
                gt += 1;
                i += 1;
            } else if v < p {
                lt -= 1;
                s.swap(i, lt);
            } else {
                i += 1;
            }
        }
        if want < gt {
            hi = gt;
        } else if want < lt {
            return f32::from_bits(p as u32);
        } else {
            lo = lt;
        }
    }
    // Unreachable for 1 <= k <= s.len() (the pivot's run is never empty).
    f32::from_bits(i32::MIN as u32)
}

/// The integer whose signed order is [`f32::total_cmp`]'s order of `x` (the same bit trick):
/// the bits, with the magnitude bits flipped for negative values. Applied to its own result (as
/// bits) it gives `x`'s bits back.
#[inline]
fn order_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

/// The top-k rule, applied in index order: `l > threshold`, or `l == threshold` for the first
/// `ties` such logits; never NaN.
#[derive(Clone, Copy)]
struct Candidates {
    threshold: f32,
    ties: usize,
}

impl Candidates {
    fn admit(&mut self, l: f32) -> bool {
        if l.is_nan() || l < self.threshold {
            false
        } else if l > self.threshold {
            true
        } else if self.ties > 0 {
            self.ties -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(logits: &[f32], cfg: Sampling, seed: u64, n: usize) -> [u32; 8] {
        let mut rng = Rng::new(seed);
        let mut scratch = [0f32; 8];
        let mut counts = [0u32; 8];
        for _ in 0..n {
            let i = sample(logits, &cfg, &mut rng, &mut scratch).unwrap() as usize;
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn argmax_first_max_wins_and_skips_nan() {
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[f32::NAN]), None);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[f32::NAN, -1.0, f32::NAN, -0.5]), Some(3));
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), Some(0));
    }

    #[test]
    fn greedy_is_argmax_and_draws_nothing() {
        let logits = [0.1, 2.0, -1.0, 2.0, 1.5];
        let mut rng = Rng::new(5);
        let before = rng;
        let mut s = [0f32; 5];
        for cfg in [
            Sampling::GREEDY,
            Sampling {
                temperature: 0.0,
                top_k: 0,
            },
            Sampling {
                temperature: 1.3,
                top_k: 1,
            },
        ] {
            assert_eq!(sample(&logits, &cfg, &mut rng, &mut s), Ok(1));
        }
        assert_eq!(rng, before);
    }

    #[test]
    fn seeded_reproducible() {
        let logits = [0.3, 1.0, -0.2, 0.8, 0.0, 0.5, -1.0, 0.9];
        let cfg = Sampling {
            temperature: 0.9,
            top_k: 5,
        };
        let a = draw(&logits, cfg, 11, 500);
        assert_eq!(a, draw(&logits, cfg, 11, 500));
        assert_ne!(a, draw(&logits, cfg, 12, 500));
        let mut r1 = Rng::new(3);
        let mut r2 = Rng::new(3);
        let mut s = [0f32; 8];
        for _ in 0..100 {
            assert_eq!(
                sample(&logits, &cfg, &mut r1, &mut s),
                sample(&logits, &cfg, &mut r2, &mut s)
            );
        }
    }

    #[test]
    fn top_k_keeps_the_k_largest_with_low_index_ties() {
        let logits = [1.0, 5.0, 3.0, 5.0, 3.0, 3.0, 0.0, -2.0];
        let c = draw(
            &logits,
            Sampling {
                temperature: 50.0,
                top_k: 3,
            },
            1,
            3000,
        );
        // 5.0 (1), 5.0 (3), and the first 3.0 (2).
        assert!(c[1] > 0 && c[3] > 0 && c[2] > 0, "{c:?}");
        assert_eq!(c[0] + c[4] + c[5] + c[6] + c[7], 0, "{c:?}");
        let c = draw(
            &logits,
            Sampling {
                temperature: 1.0,
                top_k: 0,
            },
            1,
            3000,
        );
        assert!(c.iter().filter(|&&n| n > 0).count() >= 6, "{c:?}");
    }

    #[test]
    fn temperature_shapes_the_distribution() {
        let logits = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let n = 20_000;
        let frac = |t: f32| {
            let c = draw(
                &logits,
                Sampling {
                    temperature: t,
                    top_k: 0,
                },
                9,
                n,
            );
            c[1] as f64 / n as f64
        };
        // p(1) = e^(1/t) / (e^(1/t) + 7)
        for t in [0.25f32, 1.0, 4.0] {
            let e = (1.0 / t as f64).exp();
            let want = e / (e + 7.0);
            let got = frac(t);
            assert!((got - want).abs() < 0.015, "t {t}: {got} vs {want}");
        }
        assert!(frac(0.25) > frac(1.0) && frac(1.0) > frac(4.0));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut rng = Rng::new(0);
        let mut s = [0f32; 2];
        let cfg = Sampling {
            temperature: 1.0,
            top_k: 2,
        };
        assert!(matches!(
            sample(&[], &cfg, &mut rng, &mut s),
            Err(Error::BadArgument { .. })
        ));
        assert!(matches!(
            sample(&[f32::NAN; 3], &cfg, &mut rng, &mut s),
            Err(Error::BadArgument { .. })
        ));
        let nan_t = Sampling {
            temperature: f32::NAN,
            top_k: 0,
        };
        assert!(matches!(
            sample(&[1.0], &nan_t, &mut rng, &mut s),
            Err(Error::BadArgument { .. })
        ));
        // Negative temperature: greedy; infinite: uniform over the candidates, -inf excluded.
        let neg = Sampling {
            temperature: -1.0,
            top_k: 0,
        };
        assert_eq!(sample(&[0.0, 2.0, 1.0], &neg, &mut rng, &mut s), Ok(1));
        let inf = Sampling {
            temperature: f32::INFINITY,
            top_k: 0,
        };
        let mut seen = [0u32; 3];
        for _ in 0..300 {
            let i = sample(&[0.0, f32::NEG_INFINITY, 5.0], &inf, &mut rng, &mut s).unwrap();
            seen[i as usize] += 1;
        }
        assert!(seen[0] > 100 && seen[2] > 100 && seen[1] == 0, "{seen:?}");
        assert_eq!(
            sample(&[1.0, 2.0, 3.0], &cfg, &mut rng, &mut s),
            Err(Error::BufferTooSmall { need: 3, have: 2 })
        );
        // NaN logits are never drawn.
        let c = Sampling {
            temperature: 100.0,
            top_k: 0,
        };
        for _ in 0..200 {
            let i = sample(&[f32::NAN, 0.0, f32::NAN], &c, &mut rng, &mut s).unwrap();
            assert_eq!(i, 1);
        }
    }

    /// The procedure as first written (a `total_cmp` selection, weights computed in both
    /// passes): the faster [`sample`] must pick the same ids from the same draws.
    fn sample_as_specified(logits: &[f32], cfg: &Sampling, rng: &mut Rng) -> u32 {
        let best = argmax(logits).unwrap();
        if cfg.is_greedy() {
            return best as u32;
        }
        let (n, k) = (logits.len(), cfg.top_k as usize);
        let (threshold, ties) = if k == 0 || k >= n {
            (f32::NEG_INFINITY, usize::MAX)
        } else {
            let mut s = [0f32; 256];
            let s = &mut s[..n];
            for (o, &l) in s.iter_mut().zip(logits) {
                *o = if l.is_nan() { f32::NEG_INFINITY } else { l };
            }
            let (_, &mut kth, _) = s.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
            (kth, k - logits.iter().filter(|&&l| l > kth).count())
        };
        let (m, t) = (logits[best], cfg.temperature);
        let weight = |l: f32| {
            if l == f32::NEG_INFINITY {
                0.0
            } else {
                exp_f32((l - m) / t)
            }
        };
        let candidates = Candidates { threshold, ties };
        let (mut c, mut total) = (candidates, 0.0f32);
        for &l in logits {
            if c.admit(l) {
                total += weight(l);
            }
        }
        if total.is_nan() || total <= 0.0 {
            return best as u32;
        }
        let r = rng.next_f32() * total;
        let (mut c, mut acc, mut last) = (candidates, 0.0f32, best);
        for (i, &l) in logits.iter().enumerate() {
            if !c.admit(l) {
                continue;
            }
            let w = weight(l);
            if w.is_nan() || w <= 0.0 {
                continue;
            }
            acc += w;
            last = i;
            if r < acc {
                return i as u32;
            }
        }
        last as u32
    }

    #[test]
    fn sample_equals_the_procedure_as_specified() {
        let mut gen = Rng::new(11);
        let specials = [
            f32::NAN,
            f32::NEG_INFINITY,
            f32::INFINITY,
            0.0,
            -0.0,
            1.0,
            -1.0,
        ];
        let mut logits = [0f32; 80];
        let mut scratch = [0f32; 80];
        for case in 0..3000 {
            let n = 1 + gen.below(80) as usize;
            for l in logits[..n].iter_mut() {
                *l = match gen.below(6) {
                    0 => specials[gen.below(specials.len() as u32) as usize],
                    1 => (gen.below(5) as f32) - 2.0, // ties
                    _ => gen.normal() * 3.0,
                };
            }
            let cfg = Sampling {
                temperature: [0.8f32, 1.0, 0.05, 7.0][case % 4],
                top_k: [40u32, 0, 1, 2, 5, 79, 200][case % 7],
            };
            let (mut r1, mut r2) = (Rng::new(case as u64), Rng::new(case as u64));
            let got = sample(&logits[..n], &cfg, &mut r1, &mut scratch);
            if argmax(&logits[..n]).is_none() {
                assert!(got.is_err());
                continue;
            }
            let want = sample_as_specified(&logits[..n], &cfg, &mut r2);
            assert_eq!(got, Ok(want), "case {case}: {:?} {cfg:?}", &logits[..n]);
            // Without scratch for the weights (top_k 0 needs none): the same.
            if cfg.top_k == 0 {
                let mut r3 = Rng::new(case as u64);
                assert_eq!(sample(&logits[..n], &cfg, &mut r3, &mut []), Ok(want));
            }
        }
    }

    /// The `compact` feature's k-th largest (a plain quickselect) is the value
    /// `select_nth_unstable` finds, on random keys with ties, extremes and every `k`.
    #[test]
    fn kth_largest_small_equals_select() {
        let mut gen = Rng::new(12);
        let mut keys = [0f32; 40];
        for case in 0..2000 {
            let n = 1 + (case % 40);
            for key in keys[..n].iter_mut() {
                let l = match gen.below(5) {
                    0 => [f32::NEG_INFINITY, f32::INFINITY, -0.0, 0.0, f32::MAX]
                        [gen.below(5) as usize],
                    1 => (gen.below(4) as f32) - 1.5,
                    _ => gen.normal() * 3.0,
                };
                *key = f32::from_bits(order_key(l) as u32);
            }
            for k in 1..=n {
                let mut s = keys;
                let want = kth_largest_select(&mut s[..n], k).to_bits();
                let mut s2 = keys;
                let got = kth_largest_small(&mut s2[..n], k).to_bits();
                assert_eq!(got, want, "case {case}, k {k}: {:?}", &keys[..n]);
            }
        }
    }
}
