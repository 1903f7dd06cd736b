//! (d) Greedy generation: the trainer's float GPT and aka-core's int8 GPT produce the same text
//! for a measured number of characters; plus seeded sampling through `aka_core::sample`.

mod gpt_common;

use aka_core::rng::Rng;
use aka_core::sample::{sample, Sampling};
use aka_core::GptModel;
use aka_tests::GptBuffers;
use aka_trainer::gpt::sample::{generate, Sampling as TrainerSampling};
use gpt_common::*;

/// Greedy continuation with aka-core, with the trainer's context rule (the last `block_size`
/// tokens, positions from 0): incremental while the context fits, a fresh prefill after.
fn core_greedy(m: &GptModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let block = m.block_size();
    let mut bufs = GptBuffers::new(m);
    let mut st = bufs.state(m);
    let mut ids = prompt.to_vec();
    let mut logits = m.prefill(&mut st, prompt, 0).unwrap().to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let next = aka_core::sample::argmax(&logits).unwrap() as u32;
        out.push(next);
        ids.push(next);
        logits = if ids.len() <= block {
            m.forward(&mut st, next, ids.len() - 1).unwrap().to_vec()
        } else {
            m.prefill(&mut st, &ids[ids.len() - block..], 0)
                .unwrap()
                .to_vec()
        };
    }
    out
}

#[test]
fn greedy_generation_matches_float() {
    let data = shakespeare();
    let (model, e) = trained_default();
    let m = GptModel::load(&e.bytes).unwrap();
    let tok = data.tokenizer();
    let n = 200;
    let mut matched = Vec::new();
    let prompts = [
        "\n",
        "ROMEO:\n",
        "First Citizen:\nWe are",
        "KING HENRY",
        "O, ",
        "JULIET:\nWhat",
        "My lord, ",
        "Thou art",
    ];
    for prompt in prompts {
        let float = generate(&model, tok, prompt, n, TrainerSampling::GREEDY, 0);
        let mut ids = [0u32; 64];
        let k = m.encode(prompt, &mut ids).unwrap();
        assert_eq!(&ids[..k], tok.encode(prompt).as_slice());
        let int8: String = core_greedy(&m, &ids[..k], n)
            .iter()
            .map(|&t| m.decode_token(t).unwrap())
            .collect();
        let same = float
            .chars()
            .zip(int8.chars())
            .take_while(|(a, b)| a == b)
            .count();
        println!("prompt {prompt:?}: {same}/{n} greedy chars match\n  float: {float:?}\n  int8:  {int8:?}");
        matched.push(same);
    }
    let total: usize = matched.iter().sum();
    println!(
        "greedy match: {matched:?} of {n} chars each (mean {:.1})",
        total as f64 / matched.len() as f64
    );
    // Measured on this model (400 steps, val loss ~2.35): [56, 28, 16, 35, 64, 28, 57, 58] and,
    // after a change of the trainer's kernels, [53, 121, 12, 117, 28, 16, 7, 16] (mean ~45). An
    // undertrained model has near-ties ("the" vs "thean") that any rounding difference flips, so
    // single prompts vary a lot; the floors are on the aggregate, with margin.
    let long = matched.iter().filter(|&&s| s >= 15).count();
    assert!(total >= 20 * matched.len(), "{matched:?}");
    assert!(long * 2 >= matched.len(), "{matched:?}");
}

#[test]
fn seeded_sampling_with_the_decoder() {
    let data = shakespeare();
    let model = train(data, small_config(), 100, 2);
    let e = export(&model, data, 1);
    let m = GptModel::load(&e.bytes).unwrap();
    let run = |seed: u64| -> String {
        let mut bufs = GptBuffers::new(&m);
        let mut dec = bufs.decoder(&m);
        let mut scratch = vec![0f32; m.vocab_size()];
        let cfg = Sampling {
            temperature: 0.8,
            top_k: 20,
        };
        let mut rng = Rng::new(seed);
        let mut next = m.char_id('\n').unwrap();
        let mut text = String::new();
        // Longer than the context: exercises the sliding window.
        for _ in 0..3 * m.block_size() {
            let logits = dec.push(next).unwrap();
            next = sample(logits, &cfg, &mut rng, &mut scratch).unwrap();
            text.push_str(m.decode_token(next).unwrap());
        }
        text
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    assert_eq!(a.chars().count(), 3 * m.block_size());
    println!("sampled: {a:?}");
}

/// Contract: the trainer's `sample_token` picks the same ids as `aka_core::sample::sample` from
/// the same logits and seed, and leaves the generator in the same state (today it wraps it).
#[test]
fn core_and_trainer_sampling_agree() {
    use aka_trainer::gpt::sample::sample_token;
    let mut gen = Rng::new(42);
    let mut scratch_a = vec![0f32; 80];
    let mut scratch_b = vec![0f32; 80];
    for case in 0..2000 {
        let n = 1 + gen.below(80) as usize;
        // Coarse values so that ties at the top-k cut happen often.
        let logits: Vec<f32> = (0..n).map(|_| (gen.below(12) as f32 - 6.0) * 0.5).collect();
        let temperature = [0.0, 0.3, 0.8, 1.0, 2.5][gen.below(5) as usize];
        let top_k = [0u32, 2, 3, 5, 40][gen.below(5) as usize];
        let seed = gen.next_u64();
        let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
        for _ in 0..3 {
            let a = sample(
                &logits,
                &Sampling { temperature, top_k },
                &mut r1,
                &mut scratch_a,
            )
            .unwrap();
            let b = sample_token(
                &logits,
                temperature,
                top_k as usize,
                &mut r2,
                &mut scratch_b,
            );
            assert_eq!(
                a as usize, b,
                "case {case}: {logits:?} t {temperature} k {top_k}"
            );
            assert_eq!(r1, r2, "case {case}");
        }
    }
}
