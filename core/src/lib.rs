//! `aka-core`: the `no_std`, no-heap int8 runtime of aka.
//!
//! Everything here runs on a Cortex-M microcontroller and on the host with bit-identical integer
//! results. Nothing allocates; nothing panics on bad input (errors are typed).
//!
//! * [`quant`]: TFLite-exact int8 arithmetic (`quantize_multiplier`,
//!   `multiply_by_quantized_multiplier`, input quantization);
//! * [`format`]: the model file (postcard, zero-copy), shared with the exporter;
//! * [`kernels`]: portable reference kernels (linear, conv2d, max-pool, relu, argmax);
//! * [`SequentialModel`]: loads and validates a file, runs it in a caller-provided arena.
//!
//! ```no_run
//! use aka_core::SequentialModel;
//!
//! fn classify(model_bytes: &[u8], pixels: &[u8; 28 * 28]) -> Result<usize, aka_core::Error> {
//!     let model = SequentialModel::load(model_bytes)?; // checks everything, copies no weights
//!     let mut arena = [0i8; 16 * 1024];
//!     let arena = arena.get_mut(..model.arena_size()).ok_or(aka_core::Error::ArenaTooSmall {
//!         need: model.arena_size(),
//!         have: 16 * 1024,
//!     })?;
//!     let (class, scores) = model.classify_u8(pixels, arena)?;
//!     let q = model.output_quant();
//!     let _logit = q.dequantize(scores[class]); // host side: real-valued score
//!     let _label = model.metadata().label(class);
//!     Ok(class)
//! }
//! ```
#![no_std]
#![forbid(unsafe_code)]

mod error;
pub mod format;
pub mod kernels;
pub mod quant;
pub mod rng;
pub mod sequential;

pub use error::Error;
pub use format::{Layer, Metadata, QuantParams, Shape, Task};
pub use sequential::{LayerInfo, SequentialModel};
