//! Milliseconds per training step of the tiny GPT (forward, backward, clipping, AdamW) on
//! tinyshakespeare batches, for the small model and nanoGPT's CPU config, with 1 and 2 threads.
//!
//! `cargo bench -p aka-trainer --bench gpt_step` (add `-- STEPS` to change the number of timed
//! steps, default 40; the median of 5 rounds of STEPS/5 steps is reported). `-- --config N`
//! runs only configuration N (0 small, 1 nanoGPT-cpu, 2 the flagship: 4 × 128, RoPE, context
//! 128, batch 32) and `-- --threads T` only T threads, e.g.
//! `cargo bench -p aka-trainer --bench gpt_step -- --config 2 --threads 2 20`.
//! `cargo bench -p aka-trainer --bench gpt_step -- --ops` instead times each op (forward +
//! backward, fastest of 30 runs) at the small model's shapes; run it with `RAYON_NUM_THREADS=1`
//! for single-thread figures.
//!
//! Timings are wall clock: on a machine shared with other work, compare runs made close together
//! (or measure CPU time, e.g. `perf stat -e task-clock` on a `--child` run).
//!
//! The thread count is process-wide (one rayon pool), so each configuration runs in a child
//! process of this binary.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aka_core::format::GptPosition;
use aka_core::rng::Rng;
use aka_trainer::data::text::{Split, TextDataset};
use aka_trainer::gpt::{Gpt, GptConfig};
use aka_trainer::nn::{Ctx, Module};
use aka_trainer::optim::{clip_grad_norm, Optimizer, OptimizerConfig};

/// (name, layers, heads, dim, block, batch, RoPE)
type Config = (&'static str, usize, usize, usize, usize, usize, bool);
const CONFIGS: [Config; 3] = [
    ("small 2L/4H/64d ctx64 b32", 2, 4, 64, 64, 32, false),
    ("nanoGPT-cpu 4L/4H/128d ctx64 b12", 4, 4, 128, 64, 12, false),
    (
        "flagship 4L/4H/128d ctx128 b32 RoPE",
        4,
        4,
        128,
        128,
        32,
        true,
    ),
];

fn child(index: usize, steps: usize) {
    aka_trainer::tune_allocator(); // as train_gpt does
    let (_, layers, heads, dim, block, batch, rope) = CONFIGS[index];
    let data = TextDataset::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tinyshakespeare/input.txt"),
    )
    .expect("tinyshakespeare");
    let mut config = GptConfig::sized(layers, heads, dim, block, data.tokenizer().vocab_size());
    if rope {
        config.position = GptPosition::Rope;
    }
    let model = Gpt::new(config, &mut Rng::new(0));
    let mut opt = Optimizer::new(OptimizerConfig::adamw(1e-3, 0.1), model.parameters());
    let mut ctx = Ctx::train(Rng::new(1));
    let mut step = |ctx: &mut Ctx| {
        let (x, y) = data.sample_batch(Split::Train, batch, block, &mut ctx.rng);
        let x: Vec<usize> = x.iter().map(|&i| i as usize).collect();
        let y: Vec<usize> = y.iter().map(|&i| i as usize).collect();
        opt.zero_grad();
        model.loss(&x, &y, batch, block, ctx).backward();
        clip_grad_norm(opt.params(), 1.0);
        opt.step(1e-3);
    };
    for _ in 0..5 {
        step(&mut ctx); // warm-up: thread pool, allocator
    }
    let rounds = 5;
    let per_round = (steps / rounds).max(1);
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                step(&mut ctx);
            }
            start.elapsed().as_secs_f64() * 1e3 / per_round as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("{} {}", times[rounds / 2], model.parameter_count());
}

/// Forward + backward time of each op at the small model's shapes (`-- --ops`, one thread), or
/// the flagship's (`-- --ops --flagship`: b32, t128, 4 heads, d128).
fn ops_breakdown(flagship: bool) {
    use aka_trainer::autograd::gradcheck::randn;
    use aka_trainer::autograd::Tensor;
    aka_trainer::tune_allocator();
    let (b, t, h, d) = if flagship {
        (32, 128, 4, 128)
    } else {
        (32, 64, 4, 64)
    };
    let n = b * t;
    let mut rng = Rng::new(0);
    let mut p = |shape: &[usize]| Tensor::param(randn(shape, 0.5, &mut rng));
    let (x, w, w1, w2, u, ln_w, ln_b) = (
        p(&[n, d]),
        p(&[d, d]),
        p(&[4 * d, d]),
        p(&[d, 4 * d]),
        p(&[n, 4 * d]),
        p(&[d]),
        p(&[d]),
    );
    let (q, qkv, wq, wk, wv) = (
        p(&[n, d]),
        p(&[n, 3 * d]),
        p(&[d, d]),
        p(&[d, d]),
        p(&[d, d]),
    );
    let logits = p(&[n, 65]);
    let targets: Vec<usize> = (0..n).map(|i| i % 65).collect();
    let time = |name: &str, f: &dyn Fn() -> Tensor| {
        for _ in 0..3 {
            f().sum().backward();
        }
        // The fastest of 30 runs: robust to other processes on a busy machine.
        let ms = (0..30)
            .map(|_| {
                let start = Instant::now();
                f().sum().backward();
                start.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min);
        println!("| {name} | {ms:.3} |");
    };
    let shapes = if flagship { "flagship" } else { "small-model" };
    println!("| op (fwd + bwd, {shapes} shapes) | ms |");
    println!("|---|---:|");
    time(&format!("linear [{n},{d}]x[{d},{d}]ᵀ (wo)"), &|| {
        x.linear(&w, None)
    });
    time(
        &format!("linear_cat wq|wk|wv [{n},{d}] -> [{n},{}]", 3 * d),
        &|| x.linear_cat(&[&wq, &wk, &wv]),
    );
    time(
        &format!("linear [{n},{d}]x[{},{d}]ᵀ (w1)", 4 * d),
        &|| x.linear(&w1, None),
    );
    time(
        &format!("linear [{n},{}]x[{d},{}]ᵀ (w2)", 4 * d, 4 * d),
        &|| u.linear(&w2, None),
    );
    time(
        &format!("causal_attention b{b} h{h} t{t} hd{}", d / h),
        &|| qkv.causal_attention(t, h, None, false).0,
    );
    time(&format!("rope_rows q|k of [{n},{}]", 3 * d), &|| {
        qkv.rope_rows(t, d / h, 2 * d, 0)
    });
    time(&format!("gelu [{n},{}]", 4 * d), &|| u.gelu());
    time(&format!("layer_norm [{n},{d}]"), &|| {
        x.layer_norm(&ln_w, Some(&ln_b), 1e-5)
    });
    time(&format!("add [{n},{d}]"), &|| x.add(&q));
    time(&format!("cross_entropy [{n},65]"), &|| {
        logits.cross_entropy(&targets)
    });
    time(&format!("sum only [{n},{d}]"), &|| x.clone());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--ops") {
        ops_breakdown(args.iter().any(|a| a == "--flagship"));
        return;
    }
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(
            args[pos + 1].parse().expect("config index"),
            args[pos + 2].parse().expect("steps"),
        );
        return;
    }
    // `cargo bench` passes `--bench`; `--config N` and `--threads T` select; a bare number sets
    // the timed steps.
    let flag = |name: &str| -> Option<usize> {
        let pos = args.iter().position(|a| a == name)?;
        Some(args.get(pos + 1)?.parse().expect("a number after the flag"))
    };
    let (only_config, only_threads) = (flag("--config"), flag("--threads"));
    let steps: usize = args
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| !matches!(args[i - 1].as_str(), "--config" | "--threads"))
        .find_map(|(_, a)| a.parse().ok())
        .unwrap_or(40);
    let exe = std::env::current_exe().expect("own path");
    println!("| config | params | threads | ms/step |");
    println!("|---|---:|---:|---:|");
    for (i, (name, ..)) in CONFIGS.iter().enumerate() {
        if only_config.is_some_and(|c| c != i) {
            continue;
        }
        for threads in [1, 2] {
            if only_threads.is_some_and(|t| t != threads) {
                continue;
            }
            let out = Command::new(&exe)
                .args(["--child", &i.to_string(), &steps.to_string()])
                .env("RAYON_NUM_THREADS", threads.to_string())
                .output()
                .expect("child runs");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text.split_whitespace();
            let ms: f64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            let params = it.next().unwrap_or("?").to_string();
            println!("| {name} | {params} | {threads} | {ms:.2} |");
        }
    }
}
