//! `aka-core`: the `no_std`, no-heap int8 runtime of aka.
//!
//! Everything here runs on a Cortex-M microcontroller and on the host with bit-identical integer
//! results. Nothing allocates; nothing panics on bad input (errors are typed).
//!
//! * [`quant`]: TFLite-exact int8 arithmetic (`quantize_multiplier`,
//!   `multiply_by_quantized_multiplier`, input quantization);
//! * [`format`]: the model file (postcard, zero-copy), shared with the exporter;
//! * [`kernels`]: int8 kernels (linear, conv2d, max-pool, relu, argmax, attention scores,
//!   softmax): portable reference implementations, and on Cortex-M4/M7 (Armv7E-M) hand-written DSP
//!   assembly selected at compile time that gives bit-identical results;
//! * [`SequentialModel`]: loads and validates a file, runs it in a caller-provided arena.
//! * [`GptModel`] ([`gpt`]): a character-level int8 GPT with an int8 KV cache, run token by
//!   token in caller buffers ([`Decoder`] adds a sliding context window, [`gpt::Generation`]
//!   is the prompt-then-sample loop that `aka run` and the firmware share);
//! * [`sample`]: greedy / temperature / top-k next-token sampling, seeded with [`rng::Rng`].
//!
//! **`unsafe`.** The crate is `#![deny(unsafe_code)]`. The only exception is the private module
//! `kernels::dsp` (compiled only for Armv7E-M), which allows it for its inline assembly: naked
//! functions for the inner loops and one-instruction helpers, each `unsafe` block with a
//! `// SAFETY:` argument. Besides it, two one-line `unsafe` blocks: [`kernels::i8_as_bytes`]
//! and the `VSQRT.F32` of [`kernels::sqrt_f32`] (Arm `eabihf` only). Everything else, including
//! the portable kernels, is safe Rust.
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
#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_code)]

/// An error message or field name literal for an [`Error`]: the literal itself, or `""` with the
/// `terse-errors` feature (the text is then not in the binary at all; the error keeps its
/// variant and numbers). Every message text aka-core puts into an `Error` goes through it.
#[cfg(not(feature = "terse-errors"))]
macro_rules! msg {
    ($text:literal) => {
        $text
    };
}

/// See the other definition: with `terse-errors`, every error text is empty.
#[cfg(feature = "terse-errors")]
macro_rules! msg {
    ($text:literal) => {
        ""
    };
}

#[cfg(feature = "chat")]
pub mod chat;
mod error;
pub mod format;
pub mod gpt;
pub mod kernels;
pub mod quant;
pub mod rng;
pub mod sample;
pub mod sequential;

pub use error::Error;
pub use format::{Layer, Metadata, QuantParams, Shape, Task};
pub use gpt::{Decoder, Generation, GptModel, GptState};
pub use sequential::{LayerInfo, SequentialModel};
