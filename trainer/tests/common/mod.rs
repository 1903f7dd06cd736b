//! Helpers shared by the training integration tests (`training.rs`, `gpt_train.rs`,
//! `kill_checkpoint.rs`, `int4.rs`, `offset_binary.rs`).
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use aka_core::rng::Rng;

use aka_trainer::nn::Module;

/// A path under the system temp dir for this test binary's `name`, removed if it exists (not
/// created).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "aka-{}-{name}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Every parameter's values as bits, in parameter order: for bit-identity checks.
pub fn weights(model: &dyn Module) -> Vec<Vec<u32>> {
    model
        .parameters()
        .iter()
        .map(|(_, p)| p.value().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// An MNIST-format directory of 28x28 random images (`train` + `test` images).
pub fn write_random_mnist(dir: &Path, train: u32, test: u32) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(5);
    let mut train_pixels = Vec::new();
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let mut images = Vec::new();
        images.extend_from_slice(&0x0803u32.to_be_bytes());
        for d in [n, 28, 28] {
            images.extend_from_slice(&d.to_be_bytes());
        }
        // Mostly dark, like digits: pixel = (random byte)^2 / 255.
        let pixels: Vec<u8> = (0..n * 784)
            .map(|_| {
                let r = rng.below(256);
                (r * r / 255) as u8
            })
            .collect();
        images.extend_from_slice(&pixels);
        if prefix == "train" {
            train_pixels = pixels;
        }
        let mut labels = Vec::new();
        labels.extend_from_slice(&0x0801u32.to_be_bytes());
        labels.extend_from_slice(&n.to_be_bytes());
        labels.extend((0..n).map(|i| (i % 10) as u8));
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
    train_pixels
}

/// A small GPT trained for `steps` steps (batch 8, lr 3e-3, 5 warm-up steps, quiet) on `data`,
/// and a function exporting it with the default calibration and evaluation and the given
/// weight options: the exporter tests' common setup.
pub fn trained_gpt(
    cfg: aka_trainer::gpt::GptConfig,
    seed: u64,
    steps: usize,
    data: &aka_trainer::data::text::TextDataset,
) -> aka_trainer::gpt::Gpt {
    use aka_trainer::train::language_model::{train_gpt, GptTrainConfig};
    let model = aka_trainer::gpt::Gpt::new(cfg, &mut Rng::new(seed));
    let train_config = GptTrainConfig {
        steps,
        batch_size: 8,
        lr: 3e-3,
        warmup_steps: 5,
        eval_interval: steps,
        eval_batches: 2,
        progress: aka_trainer::train::Progress::Quiet,
        sample: None,
        ..GptTrainConfig::default()
    };
    train_gpt(&model, data, &train_config).unwrap();
    model
}

/// `model` exported with the default calibration and evaluation and `weights`.
pub fn export_gpt_with(
    model: &aka_trainer::gpt::Gpt,
    data: &aka_trainer::data::text::TextDataset,
    weights: &aka_trainer::export::gpt::GptWeights,
) -> aka_trainer::export::gpt::GptExported {
    use aka_trainer::export::gpt::{export_gpt_weights, CalibConfig, EvalConfig};
    export_gpt_weights(
        model,
        data,
        &CalibConfig::default(),
        &EvalConfig::default(),
        &aka_trainer::export::ExportMetadata::language_model(0, "test"),
        weights,
    )
    .unwrap()
}
