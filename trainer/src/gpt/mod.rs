//! A tiny character-level GPT, trained end to end on a laptop (nanoGPT's `shakespeare_char`).
//!
//! - The model lives with the other layers: [`crate::nn::gpt`] ([`GptConfig`], [`Gpt`], built
//!   from [`crate::nn::Norm`], [`Attention`], [`Mlp`], [`Block`]): pre-norm transformer,
//!   bias-free projections, learned or rotary positions, LayerNorm or RMSNorm, GELU / SwiGLU /
//!   GeGLU MLPs, tied or untied head; `forward_traced` exposes the activations the int8
//!   exporter calibrates on. Its ops are the generic autograd ops ([`crate::autograd::ops`]).
//! - [`sample`]: greedy / temperature / top-k token choice ([`sample::sample_token`], shareable
//!   with the `no_std` runtime) and [`sample::generate`].
//! - Training is the [`LanguageModel`](crate::train::LanguageModel) task of
//!   [`fit`](crate::train::fit) ([`train_gpt`](crate::train::train_gpt),
//!   [`load_trained`](crate::train::load_trained)); export is [`crate::export::gpt`].
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

pub mod sample;

pub use crate::nn::gpt::{Gpt, GptConfig, GptMlp, GptNorm, GptPosition, Tap};
pub use crate::nn::{Attention, Block, Mlp};
pub use sample::{generate, sample_token, Sampling};
