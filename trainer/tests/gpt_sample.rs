//! Token sampling: greedy = argmax (first max wins), top-k 1 = greedy, seeded sampling is
//! reproducible, temperature and top-k shape the distribution as they should.

use aka_core::rng::Rng;
use aka_trainer::gpt::sample::{argmax, sample_token};

fn histogram(logits: &[f32], temperature: f32, top_k: usize, draws: usize) -> Vec<f64> {
    let mut rng = Rng::new(7);
    let mut scratch = vec![0.0f32; logits.len()];
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..draws {
        counts[sample_token(logits, temperature, top_k, &mut rng, &mut scratch)] += 1;
    }
    counts.iter().map(|&c| c as f64 / draws as f64).collect()
}

fn softmax(logits: &[f32], temperature: f32) -> Vec<f64> {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = logits
        .iter()
        .map(|&l| ((l as f64 - m) / temperature as f64).exp())
        .collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

#[test]
fn greedy_is_argmax_and_first_max_wins() {
    let logits = [0.5, 2.0, -1.0, 2.0, 1.9];
    assert_eq!(argmax(&logits), 1);
    let mut rng = Rng::new(0);
    let before = rng;
    let mut scratch = [0.0f32; 5];
    assert_eq!(sample_token(&logits, 0.0, 0, &mut rng, &mut scratch), 1);
    assert_eq!(sample_token(&logits, -1.0, 3, &mut rng, &mut scratch), 1);
    assert_eq!(rng, before, "greedy draws nothing");
    assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    assert_eq!(argmax(&[f32::NAN, -1.0, 0.5]), 2);
    assert_eq!(argmax(&[]), 0);
}

#[test]
fn top_k_one_is_greedy_even_with_ties() {
    let mut rng = Rng::new(3);
    let before = rng;
    let mut scratch = [0.0f32; 6];
    let logits = [0.1, 3.0, 3.0, -2.0, 2.9, 3.0];
    for temperature in [0.1, 1.0, 5.0] {
        for _ in 0..200 {
            assert_eq!(
                sample_token(&logits, temperature, 1, &mut rng, &mut scratch),
                1
            );
        }
    }
    assert_eq!(rng, before, "top-k 1 draws nothing");
}

/// The trainer's sampler is the runtime's: same ids from the same logits and seed.
#[test]
fn same_picks_as_the_runtime() {
    let logits: Vec<f32> = (0..65)
        .map(|i| ((i * 29) % 17) as f32 * 0.37 - 2.0)
        .collect();
    for (temperature, top_k) in [(0.8, 40), (1.0, 0), (0.5, 3), (0.0, 0), (2.0, 1)] {
        let (mut a, mut b) = (Rng::new(11), Rng::new(11));
        let mut scratch = vec![0.0f32; 65];
        let cfg = aka_trainer::gpt::Sampling::new(temperature, top_k).to_core();
        for _ in 0..500 {
            let x = sample_token(&logits, temperature, top_k, &mut a, &mut scratch);
            let y = aka_core::sample::sample(&logits, &cfg, &mut b, &mut scratch).unwrap();
            assert_eq!(x, y as usize);
        }
    }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let run = |seed| {
        let mut rng = Rng::new(seed);
        let mut scratch = vec![0.0f32; 50];
        (0..300)
            .map(|_| sample_token(&logits, 0.8, 10, &mut rng, &mut scratch))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn temperature_one_matches_softmax_and_shapes_the_distribution() {
    let logits = [1.0f32, 0.0, 2.0, -1.0, 0.5];
    let draws = 200_000;
    let h = histogram(&logits, 1.0, 0, draws);
    for (got, want) in h.iter().zip(softmax(&logits, 1.0)) {
        assert!((got - want).abs() < 0.006, "{h:?}");
    }
    let h2 = histogram(&logits, 2.0, 0, draws);
    for (got, want) in h2.iter().zip(softmax(&logits, 2.0)) {
        assert!((got - want).abs() < 0.006, "{h2:?}");
    }
    // Low temperature concentrates on the argmax; high temperature flattens.
    let cold = histogram(&logits, 0.05, 0, 20_000);
    assert!(cold[2] > 0.999);
    let hot = histogram(&logits, 100.0, 0, draws);
    assert!(hot.iter().all(|&p| (p - 0.2).abs() < 0.01), "{hot:?}");
    let entropy = |p: &[f64]| {
        -p.iter()
            .filter(|&&x| x > 0.0)
            .map(|x| x * x.ln())
            .sum::<f64>()
    };
    assert!(entropy(&cold) < entropy(&h) && entropy(&h) < entropy(&h2));
}

#[test]
fn top_k_restricts_and_renormalises() {
    let logits = [1.0f32, 0.0, 2.0, -1.0, 0.5, 1.5];
    let h = histogram(&logits, 1.0, 3, 200_000);
    // Only ids 2 (2.0), 5 (1.5), 0 (1.0) survive, in softmax proportion among themselves.
    let kept = softmax(&[1.0, 2.0, 1.5], 1.0);
    assert_eq!(h[1], 0.0);
    assert_eq!(h[3], 0.0);
    assert_eq!(h[4], 0.0);
    for (got, want) in [h[0], h[2], h[5]].iter().zip(kept) {
        assert!((got - want).abs() < 0.006, "{h:?}");
    }
    // k >= len is no restriction.
    let all = histogram(&logits, 1.0, 100, 50_000);
    assert!(all.iter().all(|&p| p > 0.0));
}

#[test]
fn never_picks_negative_infinity() {
    let logits = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, -0.5];
    let h = histogram(&logits, 1.5, 0, 20_000);
    assert_eq!(h[0], 0.0);
    assert_eq!(h[2], 0.0);
    let h = histogram(&logits, 1.0, 3, 20_000);
    assert_eq!(h[0] + h[2], 0.0);
}
