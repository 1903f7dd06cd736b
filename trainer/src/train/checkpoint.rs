//! The one training checkpoint, `OUT/checkpoint.bin` (postcard): what model it holds
//! ([`ModelSpec`]), its parameters, the optimizer state, the step, the random stream and the
//! [`Log`] so far. [`fit`](super::fit) writes it atomically at every evaluation (and when a run
//! stops early) and continues from it with `resume`.
//!
//! Files from before [`Checkpoint::FORMAT`] 3 (the separate MNIST and GPT checkpoints) are
//! refused with a message saying so, never a panic.

use std::path::Path;

use aka_core::rng::Rng;
use anyhow::{bail, Context as _};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};

use super::Log;
use crate::autograd::Array;
use crate::data::mnist::PixelNorm;
use crate::data::text::CharTokenizer;
use crate::gpt::{Gpt, GptConfig};
use crate::nn::Module;
use crate::optim::OptimizerState;

/// A tensor by name, flattened, for checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NamedArray {
    /// Parameter name (`1.weight`).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Which model a checkpoint holds, with what is needed to rebuild or check it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelSpec {
    /// A [`Sequential`](crate::nn::Sequential) classifier (its layers are checked by parameter
    /// names and shapes), trained on inputs made with `pixel_norm` (image sets).
    Sequential {
        /// The training set's pixel normalization ([`Dataset::pixel_norm`](super::Dataset)).
        pixel_norm: Option<PixelNorm>,
    },
    /// A character-level [`Gpt`].
    Gpt {
        /// The model's configuration.
        config: GptConfig,
        /// The tokenizer's vocabulary: token id `i` is `vocab[i]`.
        vocab: Vec<char>,
    },
}

impl ModelSpec {
    /// `"a Sequential model"` / `"a GPT"`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::Sequential { .. } => "a Sequential model",
            ModelSpec::Gpt { .. } => "a GPT",
        }
    }
}

/// Everything needed to continue training exactly where a run stopped, or to rebuild the trained
/// model ([`Checkpoint::gpt`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format tag, [`Checkpoint::FORMAT`]; always the first field.
    pub format: u32,
    /// What model the parameters belong to.
    pub model: ModelSpec,
    /// Optimizer steps done.
    pub step: usize,
    /// Total steps of the run that wrote it (the learning-rate schedule's length).
    pub total_steps: usize,
    /// State of the batch/dropout random stream after `step` steps.
    pub rng_state: u64,
    /// Parameters by name, in [`Module::parameters`] order.
    pub params: Vec<NamedArray>,
    /// Optimizer state.
    pub optimizer: OptimizerState,
    /// Losses and evaluations so far.
    pub log: Log,
}

impl Checkpoint {
    /// Current format: 3, one type for every model (1 was the GPT's, 2 the classifier's).
    pub const FORMAT: u32 = 3;
    /// File name inside the output directory.
    pub const FILE: &'static str = "checkpoint.bin";

    /// Captures the model's parameters.
    pub fn capture_params<M: Module + ?Sized>(model: &M) -> Vec<NamedArray> {
        model
            .parameters()
            .into_iter()
            .map(|(name, p)| {
                let v = p.value();
                NamedArray {
                    name,
                    shape: v.shape().to_vec(),
                    data: v.iter().copied().collect(),
                }
            })
            .collect()
    }

    /// Copies the stored parameters into `model`, checking names and shapes.
    pub fn restore_params<M: Module + ?Sized>(
        params: &[NamedArray],
        model: &M,
    ) -> anyhow::Result<()> {
        let model_params = model.parameters();
        if model_params.len() != params.len() {
            bail!(
                "checkpoint has {} parameters, model has {}",
                params.len(),
                model_params.len()
            );
        }
        for ((name, p), saved) in model_params.iter().zip(params) {
            if *name != saved.name || p.shape() != saved.shape {
                bail!(
                    "checkpoint parameter {} {:?} does not match model parameter {name} {:?}",
                    saved.name,
                    saved.shape,
                    p.shape()
                );
            }
            *p.value_mut() = Array::from_shape_vec(IxDyn(&saved.shape), saved.data.clone())?;
        }
        Ok(())
    }

    /// Writes the checkpoint atomically (temp file, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = postcard::to_stdvec(self).context("encoding checkpoint")?;
        crate::io::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a checkpoint. Files of another format version are refused with a message that says
    /// which (older: retrain or use an older aka), corrupt files with one naming the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let corrupt = || {
            format!(
                "{}: not a valid aka checkpoint (corrupt or truncated)",
                path.display()
            )
        };
        let (format, _) = postcard::take_from_bytes::<u32>(&bytes).with_context(corrupt)?;
        if format < Self::FORMAT {
            bail!(
                "{}: this checkpoint was written by an older version of aka (checkpoint format \
                 {format}, this build reads {}): retrain, or use an older aka to continue or \
                 export it",
                path.display(),
                Self::FORMAT
            );
        }
        if format > Self::FORMAT {
            bail!(
                "{}: this checkpoint was written by a newer version of aka (checkpoint format \
                 {format}, this build reads {})",
                path.display(),
                Self::FORMAT
            );
        }
        postcard::from_bytes(&bytes).with_context(corrupt)
    }

    /// The training set's pixel normalization, if this holds a Sequential model trained on images.
    pub fn pixel_norm(&self) -> Option<PixelNorm> {
        match &self.model {
            ModelSpec::Sequential { pixel_norm } => *pixel_norm,
            ModelSpec::Gpt { .. } => None,
        }
    }

    /// The GPT configuration, if this holds a GPT.
    pub fn gpt_config(&self) -> Option<&GptConfig> {
        match &self.model {
            ModelSpec::Gpt { config, .. } => Some(config),
            ModelSpec::Sequential { .. } => None,
        }
    }

    /// Rebuilds the trained GPT (configuration and parameters) and its tokenizer; an error if this
    /// checkpoint holds another model.
    pub fn gpt(&self) -> anyhow::Result<(Gpt, CharTokenizer)> {
        let ModelSpec::Gpt { config, vocab } = &self.model else {
            bail!("the checkpoint holds {}, not a GPT", self.model.kind());
        };
        let model = Gpt::new(config.clone(), &mut Rng::new(0));
        Self::restore_params(&self.params, &model)?;
        let tokenizer = CharTokenizer::from_vocab(vocab.clone()).map_err(anyhow::Error::msg)?;
        Ok((model, tokenizer))
    }
}
