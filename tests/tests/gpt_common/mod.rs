//! Shared helpers of the `gpt_*` tests: train a tiny GPT quickly and export it.
#![allow(dead_code)]

use std::sync::OnceLock;

use aka_core::rng::Rng;
use aka_trainer::data::text::TextDataset;
use aka_trainer::export::gpt::{export_gpt, CalibConfig, EvalConfig, GptExported};
use aka_trainer::export::ExportMetadata;
use aka_trainer::gpt::{Gpt, GptConfig};
use aka_trainer::train::language_model::{train_gpt, GptTrainConfig};
use aka_trainer::train::Progress;

pub const SHAKESPEARE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/tinyshakespeare/input.txt"
);

/// The tinyshakespeare dataset (loaded once per test binary).
pub fn shakespeare() -> &'static TextDataset {
    static DATA: OnceLock<TextDataset> = OnceLock::new();
    DATA.get_or_init(|| TextDataset::load(SHAKESPEARE.as_ref()).expect("tinyshakespeare"))
}

/// Trains `config` (vocab size taken from `data`) for `steps` steps with a fixed seed, quietly.
pub fn train(data: &TextDataset, config: GptConfig, steps: usize, seed: u64) -> Gpt {
    let config = GptConfig {
        vocab_size: data.tokenizer().vocab_size(),
        ..config
    };
    let model = Gpt::new(config, &mut Rng::new(seed));
    let tc = GptTrainConfig {
        steps,
        batch_size: 16,
        lr: 3e-3,
        warmup_steps: steps / 10,
        seed,
        eval_interval: steps,
        eval_batches: 2,
        progress: Progress::Quiet,
        sample: None,
        ..GptTrainConfig::default()
    };
    train_gpt(&model, data, &tc).expect("training");
    model
}

/// Exports with the default calibration and `eval_batches` validation batches of 8 sequences.
pub fn export(model: &Gpt, data: &TextDataset, eval_batches: usize) -> GptExported {
    export_gpt(
        model,
        data,
        &CalibConfig::default(),
        &EvalConfig {
            batches: eval_batches,
            batch_size: 8,
            seed: 7,
        },
        &ExportMetadata::language_model(0, "aka-tests"),
    )
    .expect("export")
}

/// The test model: 2 layers, 4 heads, d = 64, context 64, learned positions, LayerNorm, GELU,
/// tied head (the trainer's defaults).
pub fn small_config() -> GptConfig {
    GptConfig {
        n_layer: 2,
        n_head: 4,
        d_model: 64,
        block_size: 64,
        ..GptConfig::default()
    }
}

/// The default test model (deterministic: same seed, same weights), with its export.
pub fn trained_default() -> (Gpt, GptExported) {
    let data = shakespeare();
    let model = train(data, small_config(), 400, 1);
    let exported = export(&model, data, 4);
    (model, exported)
}
