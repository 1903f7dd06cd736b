//! Moved: GPT training is the [`LanguageModel`](crate::train::LanguageModel) task of
//! [`crate::train`], trained by [`crate::train::fit`] through
//! [`crate::train::train_gpt`].

// SHIM(issue10): old paths, still used by `gpt::export` and the workspace tests.
pub use crate::train::language_model::{
    evaluate, ids_tensor, load_trained, train_gpt, validation_batches, Batches, GptHistory,
    GptTrainConfig, SampleConfig, TRAIN_STREAM, VAL_STREAM,
};
