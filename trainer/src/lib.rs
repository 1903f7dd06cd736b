//! `aka-trainer`: train small networks on a laptop and export them, int8-quantized, for
//! `aka-core`.
//!
//! - [`autograd`]: reverse-mode automatic differentiation over `ndarray`.
//! - [`nn`]: layers and models (`Sequential`, `Linear`, `Conv2d`, ...).
//! - [`optim`]: optimizers, gradient clipping and learning-rate schedules.
//! - [`data`]: datasets (MNIST IDX files).
//! - [`train`]: the training loop with progress, charts and checkpoints.
//! - [`export`]: int8 export to `aka-core` model files (Sequential and GPT bodies), with
//!   calibration and float-versus-int8 evaluation.
//! - [`chart`]: SVG charts of training curves.
//! - [`io`]: atomic file writes.
pub mod autograd;
pub mod chart;
pub mod data;
pub mod export;
pub mod gpt;
pub mod interop;
pub mod io;
pub mod nn;
pub mod optim;
pub mod train;

/// Keeps freed memory in the process between training steps (glibc only; a no-op elsewhere).
///
/// Every step allocates and frees tens of megabytes of activations and gradients in blocks of
/// up to a few megabytes. With glibc's defaults those blocks are mmapped or trimmed from the top
/// of the heap when freed, so the next step page-faults all of it back in: a quarter of the step
/// time for the small GPT, and half of the MNIST CNN's (whose speed then also flips between two
/// modes with glibc's dynamic mmap threshold). This sets `M_MMAP_THRESHOLD` to 32 MiB (blocks below it come
/// from the heap), `M_TRIM_THRESHOLD` to 1 GiB and `M_TOP_PAD` to 64 MiB (the heap is not
/// shrunk), like `MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432
/// MALLOC_TOP_PAD_=67108864`. Process-wide and idempotent; [`train::fit`] calls it.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        for (param, value) in [
            (M_MMAP_THRESHOLD, 32 << 20),
            (M_TRIM_THRESHOLD, 1 << 30),
            (M_TOP_PAD, 64 << 20),
        ] {
            // SAFETY: `mallopt` is glibc's thread-safe allocator-tuning entry point; it takes
            // two ints by value, touches no caller memory, and only changes when memory is
            // returned to the OS (a failed call leaves the setting unchanged).
            unsafe {
                mallopt(param, value);
            }
        }
    }
}

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
