//! A tiny character-level GPT, trained end to end on a laptop (nanoGPT's `shakespeare_char`).
//!
//! - [`model`]: [`GptConfig`], [`Gpt`] (with [`Attention`], [`Mlp`], [`Block`]): pre-norm
//!   transformer, bias-free projections, learned or rotary positions, LayerNorm or RMSNorm,
//!   GELU / SwiGLU / GeGLU MLPs, tied or untied head; `forward_traced` exposes the activations
//!   the int8 exporter calibrates on.
//! - [`ops`]: fused autograd ops (embedding, RoPE on the `[b, t, h, hd]` layout, causal
//!   multi-head attention, MLP activations) with hand-written backward passes.
//! - [`sample`]: greedy / temperature / top-k token choice ([`sample::sample_token`], shareable
//!   with the `no_std` runtime) and [`sample::generate`].
//! - [`train`]: moved to [`crate::train`] (the [`LanguageModel`](crate::train::LanguageModel)
//!   task of [`fit`](crate::train::fit), [`train_gpt`](crate::train::train_gpt),
//!   [`load_trained`](crate::train::load_trained)); old paths re-exported.
//!
//! ```no_run
//! use aka_core::rng::Rng;
//! use aka_trainer::data::text::TextDataset;
//! use aka_trainer::gpt::{Gpt, GptConfig};
//! use aka_trainer::train::{train_gpt, GptTrainConfig};
//!
//! let data = TextDataset::load("data/tinyshakespeare/input.txt".as_ref()).unwrap();
//! let config = GptConfig { vocab_size: data.tokenizer().vocab_size(), ..GptConfig::default() };
//! let model = Gpt::new(config, &mut Rng::new(0));
//! let history = train_gpt(&model, &data, &GptTrainConfig::default()).unwrap();
//! println!("val loss {:?}", history.final_val_loss());
//! ```

pub mod model;
pub mod ops;
pub mod sample;
pub mod train;

pub use model::{Attention, Block, Gpt, GptConfig, GptMlp, GptNorm, GptPosition, Mlp};
pub use sample::{generate, sample_token, Sampling};
