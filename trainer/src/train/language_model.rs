//! Language modelling: a [`Gpt`] on a [`TextDataset`], trained through [`fit`] by
//! [`train_gpt`], nanoGPT style: AdamW (betas 0.9/0.99, weight decay on ≥2-D weights), linear
//! warmup then cosine decay to `lr · min_lr_ratio`, global-norm clipping, random contiguous
//! blocks per batch, validation loss on a fixed set of batches, and a sample at the end.
//!
//! **Output directory** (`out_dir`): `checkpoint.bin` (the one [`Checkpoint`], holding a
//! [`ModelSpec::Gpt`]: model config and vocabulary) and `chart.svg`. Rebuild a trained model and
//! its tokenizer with [`load_trained`].
//!
//! **Randomness**: the model is initialised by the caller (the CLI uses `Rng::new(seed)`); the
//! training batches and dropout masks come from one stream `Rng::new(seed ^ TRAIN_STREAM)`
//! (checkpointed); the validation batches from `Rng::new(seed ^ VAL_STREAM)`, drawn once.

use std::path::{Path, PathBuf};

use aka_core::rng::Rng;
use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::{
    fit, Cadence, Checkpoint, FitConfig, Log, MeanLoss, Metrics, ModelSpec, Progress, Qat,
    QatSteps, Task,
};
use crate::autograd::{no_grad, Tensor};
use crate::data::text::{CharTokenizer, Split, TextDataset};
use crate::gpt::{generate, Gpt, Sampling};
use crate::nn::Ctx;
use crate::optim::{LrSchedule, OptimizerConfig};

/// XORed into the seed for the training-batch (and dropout) stream.
pub const TRAIN_STREAM: u64 = 0x7472_6169_6e00_0001;
/// XORed into the seed for the fixed validation batches.
pub const VAL_STREAM: u64 = 0x7661_6c00_0000_0002;

/// What to generate after training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleConfig {
    /// Text to continue (default `"\n"`).
    pub prompt: String,
    /// Tokens to generate (default 200).
    pub tokens: usize,
    /// Temperature and top-k (default 0.8, 40).
    pub sampling: Sampling,
    /// Seed of the sampling stream (default 0).
    pub seed: u64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            prompt: "\n".into(),
            tokens: 200,
            sampling: Sampling::new(0.8, 40),
            seed: 0,
        }
    }
}

/// Everything [`train_gpt`] needs besides the model and the data.
#[derive(Clone, Debug)]
pub struct GptTrainConfig {
    /// Optimizer steps in the whole run (default 2000); the LR schedule spans them.
    pub steps: usize,
    /// Sequences per step (default 32).
    pub batch_size: usize,
    /// Peak learning rate (default 1e-3).
    pub lr: f32,
    /// Linear warmup steps (default 100).
    pub warmup_steps: usize,
    /// Final learning rate as a fraction of `lr` (default 0.1, nanoGPT's `min_lr = lr / 10`).
    pub min_lr_ratio: f32,
    /// AdamW decoupled weight decay on ≥2-D parameters (default 0.1).
    pub weight_decay: f32,
    /// AdamW second-moment decay (default 0.99, as nanoGPT's `shakespeare_char` config, which
    /// suits small batches better than GPT-2's 0.95: 1.915 vs 1.931 validation loss on the
    /// nanoGPT CPU config; `beta1` is 0.9, eps 1e-8).
    pub beta2: f32,
    /// Global gradient-norm clip (default `Some(1.0)`).
    pub grad_clip: Option<f32>,
    /// Seeds the batch/dropout stream and the validation batches (default 0).
    pub seed: u64,
    /// Evaluate, chart and checkpoint every this many steps (default 250), and at the end.
    pub eval_interval: usize,
    /// Validation batches (of `batch_size` blocks of `block_size`) per evaluation (default 20).
    pub eval_batches: usize,
    /// Where `checkpoint.bin` and `chart.svg` go; `None` writes nothing.
    pub out_dir: Option<PathBuf>,
    /// Continue from `out_dir/checkpoint.bin` if it exists.
    pub resume: bool,
    /// Stop after this global step even if `steps` is larger (as if interrupted: the checkpoint
    /// is written, the schedule still spans `steps`). For tests and time-boxed runs.
    pub stop_at: Option<usize>,
    /// Progress display (default `Auto`: a bar on a terminal, plain lines otherwise).
    pub progress: Progress,
    /// Generate a sample at the end (default `Some(SampleConfig::default())`).
    pub sample: Option<SampleConfig>,
    /// Quantization-aware fine-tuning after the `steps` (default `None`), at the schedule's
    /// final learning rate (times `lr_scale`); the schedule still spans `steps`.
    pub qat: Option<QatSteps>,
}

impl Default for GptTrainConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch_size: 32,
            lr: 1e-3,
            warmup_steps: 100,
            min_lr_ratio: 0.1,
            weight_decay: 0.1,
            beta2: 0.99,
            grad_clip: Some(1.0),
            seed: 0,
            eval_interval: 250,
            eval_batches: 20,
            out_dir: None,
            resume: false,
            stop_at: None,
            progress: Progress::Auto,
            sample: Some(SampleConfig::default()),
            qat: None,
        }
    }
}

impl GptTrainConfig {
    /// The learning-rate schedule: warmup, then cosine to `lr · min_lr_ratio` at `steps`.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule::WarmupCosine {
            warmup_steps: self.warmup_steps as u64,
            total_steps: self.steps as u64,
            min_ratio: self.min_lr_ratio,
        }
    }

    /// AdamW with `lr`, `weight_decay` and `beta2`.
    pub fn optimizer(&self) -> OptimizerConfig {
        match OptimizerConfig::adamw(self.lr, self.weight_decay) {
            OptimizerConfig::AdamW {
                lr,
                beta1,
                eps,
                weight_decay,
                ..
            } => OptimizerConfig::AdamW {
                lr,
                beta1,
                beta2: self.beta2,
                eps,
                weight_decay,
            },
            other => other,
        }
    }
}

/// What training produced (the [`fit`] log, seen per step, and the sample).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GptHistory {
    /// Training loss of every step, in order (index = step - 1).
    pub train_loss: Vec<f32>,
    /// `(steps done, validation loss)` at each evaluation (step 0 = before training).
    pub val_loss: Vec<(usize, f32)>,
    /// Wall time of the optimizer steps only (evaluation, checkpoints excluded), seconds,
    /// summed over resumed runs.
    pub train_seconds: f64,
    /// The text generated at the end (the continuation of the prompt), if asked for.
    pub sample: Option<String>,
}

impl GptHistory {
    /// The per-step view of a [`fit`] log (no sample).
    pub fn from_log(log: &Log) -> Self {
        Self {
            train_loss: log.step_loss.clone(),
            val_loss: log.evals.iter().map(|e| (e.step, e.loss)).collect(),
            train_seconds: log.train_seconds,
            sample: None,
        }
    }

    /// Mean wall time of an optimizer step in milliseconds.
    pub fn ms_per_step(&self) -> f64 {
        self.train_seconds * 1e3 / self.train_loss.len().max(1) as f64
    }

    /// The last validation loss, if any.
    pub fn final_val_loss(&self) -> Option<f32> {
        self.val_loss.last().map(|&(_, l)| l)
    }
}

/// Loads `dir/checkpoint.bin` and rebuilds the trained model and its tokenizer.
pub fn load_trained(dir: &Path) -> anyhow::Result<(Gpt, CharTokenizer, Checkpoint)> {
    let path = dir.join(Checkpoint::FILE);
    let ck = Checkpoint::load(&path)?;
    let (model, tokenizer) = ck.gpt().with_context(|| path.display().to_string())?;
    Ok((model, tokenizer, ck))
}

/// Fixed validation batches: `(x ids, y ids)` pairs of `batch · block` tokens.
pub type Batches = Vec<(Vec<usize>, Vec<usize>)>;

/// `n` validation batches drawn from `Rng::new(seed ^ VAL_STREAM)`; blocks are shortened to
/// fit a small validation split.
pub fn validation_batches(
    data: &TextDataset,
    batch: usize,
    block: usize,
    n: usize,
    seed: u64,
) -> (Batches, usize) {
    let block = block.min(data.max_block(Split::Val));
    let mut rng = Rng::new(seed ^ VAL_STREAM);
    let batches = (0..n)
        .filter(|_| block > 0)
        .map(|_| {
            let (x, y) = data.sample_batch(Split::Val, batch, block, &mut rng);
            (to_usize(&x), to_usize(&y))
        })
        .collect();
    (batches, block)
}

fn to_usize(ids: &[u32]) -> Vec<usize> {
    ids.iter().map(|&i| i as usize).collect()
}

/// Mean loss of `model` over `batches` of `batch` sequences of length `block` (evaluation mode,
/// no graph). NaN when there are no batches.
pub fn evaluate(model: &Gpt, batches: &Batches, batch: usize, block: usize) -> f32 {
    let mut ctx = Ctx::eval();
    let mut mean = MeanLoss::default();
    no_grad(|| {
        for (x, y) in batches {
            mean.add(model.loss(x, y, batch, block, &mut ctx).item(), 1);
        }
    });
    mean.mean()
}

/// Next-token prediction on random blocks of a text, validated on fixed batches.
pub struct LanguageModel<'a> {
    data: &'a TextDataset,
    batch: usize,
    block: usize,
    val: Batches,
    val_block: usize,
}

impl<'a> LanguageModel<'a> {
    /// Batches of `batch` blocks of the model's `block_size` from `data`, validated on
    /// `eval_batches` batches drawn with `seed` ([`validation_batches`]). Errors if the data does
    /// not fit the model.
    pub fn new(
        model: &Gpt,
        data: &'a TextDataset,
        batch: usize,
        eval_batches: usize,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let mcfg = model.config();
        let block = mcfg.block_size;
        if batch == 0 {
            bail!("batch size must be at least 1");
        }
        if data.tokenizer().vocab_size() > mcfg.vocab_size {
            bail!(
                "the data has {} token ids, the model only {}",
                data.tokenizer().vocab_size(),
                mcfg.vocab_size
            );
        }
        if block > data.max_block(Split::Train) {
            bail!(
                "the training split has {} tokens: too few for blocks of {block}",
                data.split(Split::Train).len()
            );
        }
        let (val, val_block) = validation_batches(data, batch, block, eval_batches, seed);
        Ok(Self {
            data,
            batch,
            block,
            val,
            val_block,
        })
    }
}

impl Task for LanguageModel<'_> {
    type Model = Gpt;

    fn spec(&self, model: &Gpt) -> ModelSpec {
        ModelSpec::Gpt {
            config: model.config().clone(),
            vocab: self.data.tokenizer().vocab().to_vec(),
        }
    }

    fn check_resume(&self, model: &Gpt, ck: &Checkpoint, path: &Path) -> anyhow::Result<()> {
        let ModelSpec::Gpt { config, vocab } = &ck.model else {
            bail!(
                "{}: the checkpoint holds {}",
                path.display(),
                ck.model.kind()
            );
        };
        if config != model.config() {
            bail!(
                "{}: checkpoint model {:?} differs from the requested {:?}",
                path.display(),
                config,
                model.config()
            );
        }
        if vocab != self.data.tokenizer().vocab() {
            bail!(
                "{}: checkpoint vocabulary differs from the data's",
                path.display()
            );
        }
        Ok(())
    }

    fn train_loss(&mut self, model: &Gpt, _step: usize, ctx: &mut Ctx) -> (Tensor, usize) {
        let (x, y) = self
            .data
            .sample_batch(Split::Train, self.batch, self.block, &mut ctx.rng);
        let (x, y) = (to_usize(&x), to_usize(&y));
        (model.loss(&x, &y, self.batch, self.block, ctx), self.batch)
    }

    fn evaluate(&self, model: &Gpt) -> Option<Metrics> {
        (!self.val.is_empty()).then(|| Metrics {
            loss: evaluate(model, &self.val, self.batch, self.val_block),
            accuracy: None,
        })
    }
}

/// Trains `model` on `data` (token ids must be below the model's vocabulary size) through
/// [`fit`], then generates the sample. Returns the history; its log is also in every checkpoint.
pub fn train_gpt(
    model: &Gpt,
    data: &TextDataset,
    config: &GptTrainConfig,
) -> anyhow::Result<GptHistory> {
    let mut task = LanguageModel::new(
        model,
        data,
        config.batch_size,
        config.eval_batches,
        config.seed,
    )?;
    let fit_config = FitConfig {
        steps: config.steps + config.qat.as_ref().map_or(0, |q| q.steps),
        stop_at: config.stop_at,
        optimizer: config.optimizer(),
        schedule: config.schedule(),
        clip_grad_norm: config.grad_clip,
        seed: config.seed ^ TRAIN_STREAM,
        cadence: Cadence::Steps {
            eval_interval: config.eval_interval,
        },
        chart: Some("GPT: training and validation loss".into()),
        out_dir: config.out_dir.clone(),
        resume: config.resume,
        progress: config.progress,
        qat: config.qat.as_ref().map(|q| Qat {
            start: config.steps,
            weights: q.weights.clone(),
            lr_scale: q.lr_scale,
        }),
    };
    let log = fit(model, &mut task, &fit_config)?;
    let mut history = GptHistory::from_log(&log);
    let quiet = config.progress == Progress::Quiet;
    if let Some(s) = &config.sample {
        let text = generate(
            model,
            data.tokenizer(),
            &s.prompt,
            s.tokens,
            s.sampling,
            s.seed,
        );
        if !quiet {
            println!(
                "sample (temperature {}, top-k {}, seed {}):\n{}{}",
                s.sampling.temperature, s.sampling.top_k, s.seed, s.prompt, text
            );
        }
        history.sample = Some(text);
    }
    if let (Some(dir), false) = (&config.out_dir, quiet) {
        println!("chart: {}", dir.join("chart.svg").display());
    }
    Ok(history)
}

/// `Tensor` ids `[b, t]` as f32 for [`Module::forward`](crate::nn::Module::forward) on a [`Gpt`].
pub fn ids_tensor(ids: &[usize], b: usize, t: usize) -> Tensor {
    Tensor::from_vec(&[b, t], ids.iter().map(|&i| i as f32).collect())
}
