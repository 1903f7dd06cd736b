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
pub mod io;
pub mod nn;
pub mod optim;
pub mod train;
