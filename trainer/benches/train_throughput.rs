//! Training throughput (images/s) of the MNIST MLP and CNN at batch 64, with 1 and 2 threads.
//!
//! `cargo bench -p aka-trainer --bench train_throughput`
//!
//! Thread counts are process-wide (matrixmultiply reads `MATMUL_NUM_THREADS` once), so each
//! configuration runs in a child process of this binary.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aka_core::rng::Rng;
use aka_trainer::autograd::Tensor;
use aka_trainer::data::mnist::Mnist;
use aka_trainer::nn::{mnist_cnn, mnist_mlp, Ctx, Module};
use aka_trainer::optim::{Optimizer, OptimizerConfig};
use aka_trainer::train::{shuffled, Dataset};

const BATCH: usize = 64;

fn child(model_name: &str, steps: usize) {
    aka_trainer::tune_allocator(); // as train() does
    let data =
        Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")).expect("MNIST");
    let mut rng = Rng::new(0);
    let model = if model_name == "mlp" {
        mnist_mlp(&mut rng)
    } else {
        mnist_cnn(&mut rng)
    };
    let mut opt = Optimizer::new(OptimizerConfig::adam(1e-3), model.parameters());
    let order = shuffled(data.train.len(), &mut rng);
    let mut ctx = Ctx::train(rng);
    let mut batches = order.chunks(BATCH).cycle();
    let mut step = |ctx: &mut Ctx| {
        let (x, y) = Dataset::batch(&data.train, batches.next().expect("cycle"));
        opt.zero_grad();
        model
            .forward(&Tensor::new(x), ctx)
            .cross_entropy(&y)
            .backward();
        opt.step(1e-3);
    };
    for _ in 0..10 {
        step(&mut ctx); // warm-up: thread pools, allocator
    }
    let start = Instant::now();
    for _ in 0..steps {
        step(&mut ctx);
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{}", (steps * BATCH) as f64 / secs);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(&args[pos + 1], args[pos + 2].parse().expect("steps"));
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!("| model | threads | images/s | one epoch (60,000 images) |");
    println!("|---|---:|---:|---:|");
    for (model, steps) in [("mlp", 300), ("cnn", 150)] {
        for threads in [1, 2] {
            let out = Command::new(&exe)
                .args(["--child", model, &steps.to_string()])
                .env("MATMUL_NUM_THREADS", threads.to_string())
                .env("RAYON_NUM_THREADS", threads.to_string())
                .output()
                .expect("child runs");
            let rate: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(f64::NAN);
            println!(
                "| {model} | {threads} | {rate:.0} | {:.2} s |",
                60_000.0 / rate
            );
        }
    }
}
