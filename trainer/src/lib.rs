//! `aka-trainer`: train small networks on a laptop and export them, int8-quantized, for
//! `aka-core`.
//!
//! - [`autograd`]: reverse-mode automatic differentiation over `ndarray`.
//! - [`nn`]: layers and models (`Sequential`, `Linear`, `Conv2d`, ...).
//! - [`optim`]: optimizers, gradient clipping and learning-rate schedules.
//! - [`data`]: datasets (MNIST IDX files).
//! - [`train`]: the training loop with progress, charts and checkpoints.
//! - [`chart`]: SVG charts of training curves.
//! - [`io`]: atomic file writes.
pub mod autograd;
pub mod chart;
pub mod data;
pub mod export;
pub mod gpt;
pub mod io;
pub mod nn;
pub mod optim;
pub mod quantize;
pub mod train;

/// Sets the number of worker threads for matrix products, convolutions and optimizer updates
/// (one rayon pool). `None` keeps rayon's default (`RAYON_NUM_THREADS`, else all cores). Call it
/// before any training work.
pub fn set_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = threads {
        anyhow::ensure!(n >= 1, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| anyhow::anyhow!("setting up {n} threads: {e}"))?;
    }
    Ok(())
}
