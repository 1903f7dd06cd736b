//! The tutorial's MNIST MLP written as plain code: its own parameters and its own forward
//! function (PyTorch's `nn.Module(forward=...)` style), trained with the same `train()`.
//!
//! `cargo run --release -p aka-trainer --example custom_module`

use aka_core::rng::Rng;
use aka_trainer::autograd::{Array, Tensor};
use aka_trainer::data::mnist::Mnist;
use aka_trainer::nn::{Ctx, Module};
use aka_trainer::train::{train, Splits, Subset, TrainConfig};
use ndarray::IxDyn;

/// `x [n, 1, 28, 28] -> flatten -> relu(x·W1ᵀ + b1) -> ·W2ᵀ + b2 -> [n, 10]`.
struct Mlp {
    w1: Tensor, // [576, 784]
    b1: Tensor, // [576]
    w2: Tensor, // [10, 576]
    b2: Tensor, // [10]
}

impl Mlp {
    fn new(rng: &mut Rng) -> Self {
        let mut uniform = |shape: &[usize], fan_in: usize| {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let n = shape.iter().product();
            let v = (0..n)
                .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
                .collect();
            Tensor::param(Array::from_shape_vec(IxDyn(shape), v).unwrap())
        };
        Self {
            w1: uniform(&[576, 784], 784),
            b1: uniform(&[576], 784),
            w2: uniform(&[10, 576], 576),
            b2: uniform(&[10], 576),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor, _ctx: &mut Ctx) -> Tensor {
        let h = x.flatten(1).linear(&self.w1, Some(&self.b1)).relu(); // [n, 576]
        h.linear(&self.w2, Some(&self.b2)) // [n, 10]
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        [
            ("w1", &self.w1),
            ("b1", &self.b1),
            ("w2", &self.w2),
            ("b2", &self.b2),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect()
    }
}

fn main() -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let mnist = Mnist::load(&dir)?;
    let model = Mlp::new(&mut Rng::new(0));
    println!("parameters: {}", model.parameter_count());
    let train_set = Subset::first(&mnist.train, 20_000);
    let history = train(
        &model,
        &Splits {
            train: &train_set,
            test: &mnist.test,
        },
        &TrainConfig::default(),
    )?;
    println!(
        "test accuracy after 1 epoch on 20k images: {:.2}%",
        history.epochs[0].test_accuracy * 100.0
    );
    Ok(())
}
