//! Training a [`Gpt`] on a [`TextDataset`], nanoGPT style: AdamW (betas 0.9/0.99, weight decay
//! on ≥2-D weights), linear warmup then cosine decay to `lr · min_lr_ratio`, global-norm
//! clipping, random contiguous blocks per batch, validation loss on a fixed set of batches,
//! progress bar (plain lines when stdout is not a terminal), loss chart, atomic checkpoints with
//! resume, and a sample at the end.
//!
//! **Output directory** (`out_dir`): `checkpoint.bin` ([`GptCheckpoint`], postcard: model config,
//! vocabulary, parameters, optimizer state, step, RNG state, history) and `chart.svg`. Rebuild a
//! trained model and its tokenizer with [`load_trained`].
//!
//! **Randomness**: the model is initialised by the caller (the CLI uses `Rng::new(seed)`); the
//! training batches and dropout masks come from one stream `Rng::new(seed ^ TRAIN_STREAM)`
//! (checkpointed); the validation batches from `Rng::new(seed ^ VAL_STREAM)`, drawn once.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aka_core::rng::Rng;
use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::model::{Gpt, GptConfig};
use super::sample::{generate, Sampling};
use crate::autograd::{no_grad, Tensor};
use crate::data::text::{CharTokenizer, Split, TextDataset};
use crate::nn::{Ctx, Module};
use crate::optim::{clip_grad_norm, LrSchedule, Optimizer, OptimizerConfig, OptimizerState};
use crate::train::{Checkpoint, NamedArray, Progress};

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
}

/// What training produced (also stored in the checkpoint).
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
    /// Mean wall time of an optimizer step in milliseconds.
    pub fn ms_per_step(&self) -> f64 {
        self.train_seconds * 1e3 / self.train_loss.len().max(1) as f64
    }

    /// The last validation loss, if any.
    pub fn final_val_loss(&self) -> Option<f32> {
        self.val_loss.last().map(|&(_, l)| l)
    }
}

/// A GPT training checkpoint: everything to continue training, or to rebuild the trained model
/// and its tokenizer ([`GptCheckpoint::model`], [`GptCheckpoint::tokenizer`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GptCheckpoint {
    /// Format tag, [`GptCheckpoint::FORMAT`].
    pub format: u32,
    /// The model's configuration.
    pub config: GptConfig,
    /// The tokenizer's vocabulary: token id `i` is `vocab[i]` ([`CharTokenizer::from_vocab`]).
    pub vocab: Vec<char>,
    /// Optimizer steps done.
    pub step: usize,
    /// Total steps of the run (the schedule's length).
    pub total_steps: usize,
    /// State of the training-batch/dropout stream after `step` steps.
    pub rng_state: u64,
    /// Parameters by name, in [`Module::parameters`] order.
    pub params: Vec<NamedArray>,
    /// AdamW state.
    pub optimizer: OptimizerState,
    /// History so far.
    pub history: GptHistory,
}

impl GptCheckpoint {
    /// Current format.
    pub const FORMAT: u32 = 1;
    /// File name inside the output directory.
    pub const FILE: &'static str = "checkpoint.bin";

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = postcard::to_stdvec(self).context("encoding GPT checkpoint")?;
        crate::io::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a checkpoint written by [`GptCheckpoint::save`].
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let ck: Self = postcard::from_bytes(&bytes).with_context(|| {
            format!(
                "{}: not a GPT checkpoint (corrupt, another model type or another version)",
                path.display()
            )
        })?;
        if ck.format != Self::FORMAT {
            bail!(
                "{}: GPT checkpoint format {} (this build reads {})",
                path.display(),
                ck.format,
                Self::FORMAT
            );
        }
        Ok(ck)
    }

    /// Rebuilds the trained model (config + parameters).
    pub fn model(&self) -> anyhow::Result<Gpt> {
        let model = Gpt::new(self.config.clone(), &mut Rng::new(0));
        Checkpoint::restore_params(&self.params, &model)?;
        Ok(model)
    }

    /// Rebuilds the tokenizer from the stored vocabulary.
    pub fn tokenizer(&self) -> anyhow::Result<CharTokenizer> {
        CharTokenizer::from_vocab(self.vocab.clone()).map_err(anyhow::Error::msg)
    }
}

/// Loads `dir/checkpoint.bin` and rebuilds the trained model and its tokenizer.
pub fn load_trained(dir: &Path) -> anyhow::Result<(Gpt, CharTokenizer, GptCheckpoint)> {
    let ck = GptCheckpoint::load(&dir.join(GptCheckpoint::FILE))?;
    Ok((ck.model()?, ck.tokenizer()?, ck))
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
    if batches.is_empty() {
        return f32::NAN;
    }
    let mut ctx = Ctx::eval();
    let sum: f64 = no_grad(|| {
        batches
            .iter()
            .map(|(x, y)| model.loss(x, y, batch, block, &mut ctx).item() as f64)
            .sum()
    });
    (sum / batches.len() as f64) as f32
}

/// Trains `model` on `data` (token ids must be below the model's vocabulary size). Returns the
/// history, also stored in every checkpoint.
pub fn train_gpt(
    model: &Gpt,
    data: &TextDataset,
    config: &GptTrainConfig,
) -> anyhow::Result<GptHistory> {
    crate::tune_allocator();
    let mcfg = model.config().clone();
    let block = mcfg.block_size;
    let batch = config.batch_size;
    if batch == 0 {
        bail!("batch size must be at least 1");
    }
    if config.eval_interval == 0 {
        bail!("eval interval must be at least 1");
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
    let (val, val_block) = validation_batches(data, batch, block, config.eval_batches, config.seed);
    let params = model.parameters();
    let opt_config = match OptimizerConfig::adamw(config.lr, config.weight_decay) {
        OptimizerConfig::AdamW {
            lr,
            beta1,
            eps,
            weight_decay,
            ..
        } => OptimizerConfig::AdamW {
            lr,
            beta1,
            beta2: config.beta2,
            eps,
            weight_decay,
        },
        other => other,
    };
    let mut optimizer = Optimizer::new(opt_config, params.clone());
    let schedule = config.schedule();
    let mut rng = Rng::new(config.seed ^ TRAIN_STREAM);
    let mut history = GptHistory::default();
    let mut step = 0usize;
    let ck_path = config.out_dir.as_ref().map(|d| d.join(GptCheckpoint::FILE));
    if let Some(dir) = &config.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let quiet = config.progress == Progress::Quiet;

    if config.resume {
        match &ck_path {
            Some(path) if path.exists() => {
                let ck = GptCheckpoint::load(path)?;
                if ck.config != mcfg {
                    bail!(
                        "{}: checkpoint model {:?} differs from the requested {:?}",
                        path.display(),
                        ck.config,
                        mcfg
                    );
                }
                if ck.vocab != data.tokenizer().vocab() {
                    bail!(
                        "{}: checkpoint vocabulary differs from the data's",
                        path.display()
                    );
                }
                Checkpoint::restore_params(&ck.params, model)?;
                optimizer
                    .load_state(ck.optimizer)
                    .map_err(anyhow::Error::msg)?;
                if ck.total_steps != config.steps && !quiet {
                    println!(
                        "note: checkpoint was for {} steps, continuing to {} (the LR schedule changes)",
                        ck.total_steps, config.steps
                    );
                }
                rng = Rng::from_state(ck.rng_state);
                history = ck.history;
                history.sample = None;
                step = ck.step;
                if !quiet {
                    println!("resumed from {} at step {step}", path.display());
                }
            }
            Some(path) => {
                if !quiet {
                    println!("no checkpoint at {}: starting from scratch", path.display());
                }
            }
            None => bail!("resume needs an output directory to find the checkpoint in"),
        }
    }

    let save = |step: usize, rng: &Rng, optimizer: &Optimizer, history: &GptHistory| {
        let Some(dir) = &config.out_dir else {
            return Ok(());
        };
        write_chart(dir, history)?;
        GptCheckpoint {
            format: GptCheckpoint::FORMAT,
            config: mcfg.clone(),
            vocab: data.tokenizer().vocab().to_vec(),
            step,
            total_steps: config.steps,
            rng_state: rng.state(),
            params: Checkpoint::capture_params(model),
            optimizer: optimizer.state(),
            history: history.clone(),
        }
        .save(ck_path.as_ref().expect("out_dir set"))
    };

    if step == 0 && history.val_loss.is_empty() && !val.is_empty() {
        let l = evaluate(model, &val, batch, val_block);
        history.val_loss.push((0, l));
        if !quiet {
            println!("step 0: val loss {l:.4}");
        }
    }

    let end = config.stop_at.unwrap_or(config.steps).min(config.steps);
    let show_bar = config.progress == Progress::Auto && std::io::stdout().is_terminal();
    let print_lines =
        config.progress == Progress::Lines || (config.progress == Progress::Auto && !show_bar);
    let bar = (show_bar && step < end).then(|| {
        let bar = ProgressBar::new(end as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("valid template"),
        );
        bar.set_position(step as u64);
        bar.reset_eta();
        bar
    });
    let line_every = (config.eval_interval / 5).max(1);
    let run_start_step = step;
    let run_start = Instant::now();
    let mut run_train_secs = 0.0f64;
    let mut ctx = Ctx::train(rng);
    while step < end {
        let t0 = Instant::now();
        let (x, y) = data.sample_batch(Split::Train, batch, block, &mut ctx.rng);
        let (x, y) = (to_usize(&x), to_usize(&y));
        optimizer.zero_grad();
        let loss = model.loss(&x, &y, batch, block, &mut ctx);
        loss.backward();
        if let Some(max_norm) = config.grad_clip {
            clip_grad_norm(optimizer.params(), max_norm);
        }
        optimizer.step(schedule.lr(config.lr, step as u64));
        let l = loss.item();
        drop(loss);
        step += 1;
        let dt = t0.elapsed().as_secs_f64();
        history.train_seconds += dt;
        run_train_secs += dt;
        history.train_loss.push(l);
        if !l.is_finite() {
            bail!("training diverged at step {step}: loss {l}");
        }

        let ms = run_train_secs * 1e3 / (step - run_start_step) as f64;
        let last_val = history.final_val_loss().unwrap_or(f32::NAN);
        if let Some(bar) = &bar {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {l:.4} · val {last_val:.4} · {ms:.1} ms/step"));
        } else if print_lines && (step.is_multiple_of(line_every) || step == end) {
            let eta = (end - step) as f64 * ms / 1e3;
            println!(
                "step {step}/{end} loss {l:.4} val {last_val:.4} {ms:.1} ms/step eta {eta:.0}s"
            );
        }

        let eval_now = step.is_multiple_of(config.eval_interval) || step == config.steps;
        if eval_now && !val.is_empty() {
            let v = evaluate(model, &val, batch, val_block);
            history.val_loss.push((step, v));
            let msg = format!("step {step}: train loss {l:.4}, val loss {v:.4}");
            match &bar {
                Some(bar) => bar.println(msg),
                None if !quiet => println!("{msg}"),
                None => {}
            }
        }
        if eval_now || step == end {
            save(step, &ctx.rng, &optimizer, &history)?;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !quiet && step > run_start_step {
        println!(
            "{} steps in {:.1}s ({:.1} ms/step training, {:.1}s with evaluation)",
            step - run_start_step,
            run_train_secs,
            run_train_secs * 1e3 / (step - run_start_step) as f64,
            run_start.elapsed().as_secs_f64()
        );
    }

    if let Some(s) = &config.sample {
        let tokenizer = data.tokenizer();
        let text = generate(model, tokenizer, &s.prompt, s.tokens, s.sampling, s.seed);
        if !quiet {
            println!(
                "sample (temperature {}, top-k {}, seed {}):\n{}{}",
                s.sampling.temperature, s.sampling.top_k, s.seed, s.prompt, text
            );
        }
        history.sample = Some(text);
    }
    if let Some(dir) = &config.out_dir {
        if !quiet {
            println!("chart: {}", dir.join("chart.svg").display());
        }
    }
    Ok(history)
}

/// `OUT/chart.svg`: training loss per step and validation loss at each evaluation.
fn write_chart(dir: &Path, history: &GptHistory) -> anyhow::Result<()> {
    let train: Vec<(usize, f32)> = history
        .train_loss
        .iter()
        .enumerate()
        .map(|(i, &l)| (i + 1, l))
        .collect();
    crate::chart::train_val_loss_chart(
        &dir.join("chart.svg"),
        "GPT: training and validation loss",
        &train,
        &history.val_loss,
    )
}

/// `Tensor` ids `[b, t]` as f32 for [`Module::forward`] on a [`Gpt`].
pub fn ids_tensor(ids: &[usize], b: usize, t: usize) -> Tensor {
    Tensor::from_vec(&[b, t], ids.iter().map(|&i| i as f32).collect())
}
