//! Helpers shared by the training integration tests (`training.rs`, `gpt_train.rs`).

use std::path::PathBuf;

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
