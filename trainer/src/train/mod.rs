//! Training: one step-based loop, [`fit`], for every model and task.
//!
//! `fit(model, task, config)` runs optimizer steps on the batches and loss a [`Task`] supplies
//! (a [`Classification`] on an image set, a [`LanguageModel`] on a text), evaluates on the task's
//! held-out data at the [`Cadence`] (every epoch, or every N steps), writes the chart
//! ([`write_chart`]) and an atomic [`Checkpoint`] at each evaluation, continues from that
//! checkpoint with `resume`, and stops with "training diverged" on a non-finite loss or parameter
//! without overwriting the last good checkpoint.
//!
//! The front ends keep their shapes: [`train`] (`train(model, data, TrainConfig { epochs, .. })`,
//! the tutorial's call) and [`train_gpt`] (nanoGPT's recipe, counted in steps) both build a task
//! and a [`FitConfig`] and call [`fit`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use aka_core::rng::Rng;
use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::autograd::Tensor;
use crate::export::quantize::WeightBits;
use crate::nn::qat::with_fake_quant;
use crate::nn::{Ctx, Module};
use crate::optim::{clip_grad_norm, LrSchedule, Optimizer, OptimizerConfig};

pub mod checkpoint;
pub mod classification;
pub mod language_model;
mod progress;

pub use checkpoint::{Checkpoint, ModelSpec, NamedArray};
pub use classification::{
    evaluate, train, Classification, Dataset, EpochRecord, History, Loss, Splits, Subset,
    TrainConfig,
};
pub use language_model::{
    load_trained, train_gpt, GptHistory, GptTrainConfig, LanguageModel, SampleConfig,
};
pub use progress::Progress;

/// What a [`Task`] measures on its held-out data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// Mean loss ([`MeanLoss`]).
    pub loss: f32,
    /// Fraction of correct top-1 predictions in [0, 1], for classifiers.
    pub accuracy: Option<f32>,
}

/// A training problem: what a batch is, its loss, and how the model is evaluated.
pub trait Task {
    /// The model it trains.
    type Model: Module + ?Sized;

    /// What the checkpoint records about the model.
    fn spec(&self, model: &Self::Model) -> ModelSpec;

    /// Checks that `ck` (already known to hold the same kind of model) can be continued with
    /// this task, explaining why not.
    fn check_resume(&self, model: &Self::Model, ck: &Checkpoint, path: &Path)
        -> anyhow::Result<()>;

    /// The loss (graph built, training mode) of the batch of 0-based step `step`, and the number
    /// of examples in it. Every random draw (batch order, dropout) comes from `ctx.rng`, the
    /// checkpointed stream.
    fn train_loss(&mut self, model: &Self::Model, step: usize, ctx: &mut Ctx) -> (Tensor, usize);

    /// Loss (and accuracy) on the held-out data in evaluation mode; `None` if there is none.
    fn evaluate(&self, model: &Self::Model) -> Option<Metrics>;
}

/// When [`fit`] evaluates, charts and checkpoints, and how progress is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// At the end of every epoch of `steps_per_epoch` steps over `examples` examples.
    Epochs {
        /// Steps per pass over the training set.
        steps_per_epoch: usize,
        /// Training examples per pass (progress ETA).
        examples: usize,
    },
    /// Before the first step, every `eval_interval` steps, and at the last step.
    Steps {
        /// Steps between evaluations.
        eval_interval: usize,
    },
}

impl Cadence {
    fn interval(self) -> usize {
        match self {
            Cadence::Epochs {
                steps_per_epoch, ..
            } => steps_per_epoch,
            Cadence::Steps { eval_interval } => eval_interval,
        }
    }
}

/// Everything [`fit`] needs besides the model and the task.
#[derive(Clone, Debug)]
pub struct FitConfig {
    /// Optimizer steps in the whole run; the learning-rate schedule spans them.
    pub steps: usize,
    /// Stop after this step even if `steps` is larger (as if interrupted: the checkpoint is
    /// written, the schedule still spans `steps`).
    pub stop_at: Option<usize>,
    /// Update rule; its learning rate is the schedule's base.
    pub optimizer: OptimizerConfig,
    /// Learning rate per step.
    pub schedule: LrSchedule,
    /// Global-norm gradient clipping.
    pub clip_grad_norm: Option<f32>,
    /// Seeds the batch/dropout stream, `Rng::new(seed)` (checkpointed).
    pub seed: u64,
    /// When to evaluate and checkpoint.
    pub cadence: Cadence,
    /// Write `chart.svg` with this title at each evaluation.
    pub chart: Option<String>,
    /// Where the checkpoint and chart go; `None` writes nothing.
    pub out_dir: Option<PathBuf>,
    /// Continue from `out_dir/checkpoint.bin` if it exists.
    pub resume: bool,
    /// Progress display.
    pub progress: Progress,
    /// Quantization-aware fine-tuning at the end of the run (`None`: float training only).
    pub qat: Option<Qat>,
}

/// Quantization-aware fine-tuning in [`fit`]: from 0-based step `start` on, every forward pass
/// (training and evaluation) sees `weights` fake-quantized exactly as the exporter quantizes
/// them ([`crate::nn::qat`]), gradients pass straight through to the float weights, and the
/// learning rate is scaled by `lr_scale`. Evaluations at steps after `start` are of the
/// fake-quantized model; the checkpoint keeps the float weights.
#[derive(Clone, Debug)]
pub struct Qat {
    /// The first fake-quantized step (the float steps before it are unchanged).
    pub start: usize,
    /// The weights to fake-quantize, each with its precision.
    pub weights: Vec<(Tensor, WeightBits)>,
    /// Factor on the scheduled learning rate during those steps.
    pub lr_scale: f32,
}

/// Quantization-aware fine-tuning after the float training of [`train`] or [`train_gpt`]:
/// `steps` more steps with `weights` fake-quantized (see [`Qat`]).
#[derive(Clone, Debug)]
pub struct QatSteps {
    /// Extra steps after the float training.
    pub steps: usize,
    /// The weights to fake-quantize, each with its precision.
    pub weights: Vec<(Tensor, WeightBits)>,
    /// Factor on the learning rate during those steps.
    pub lr_scale: f32,
}

/// A mean of losses weighted by example counts, summed in `f64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanLoss {
    sum: f64,
    weight: usize,
}

impl MeanLoss {
    /// Adds the mean loss of `weight` examples.
    pub fn add(&mut self, loss: f32, weight: usize) {
        self.sum += loss as f64 * weight as f64;
        self.weight += weight;
    }

    /// The weighted sum so far.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The examples so far.
    pub fn weight(&self) -> usize {
        self.weight
    }

    /// The mean; NaN with no examples.
    pub fn mean(&self) -> f32 {
        if self.weight == 0 {
            f32::NAN
        } else {
            (self.sum / self.weight as f64) as f32
        }
    }
}

/// Training since the last evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Training loss, weighted by examples.
    pub loss: MeanLoss,
    /// Wall time of the optimizer steps, seconds.
    pub seconds: f64,
}

/// One evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Steps done when it was taken (0: before training).
    pub step: usize,
    /// Held-out loss.
    pub loss: f32,
    /// Held-out accuracy in [0, 1], for classifiers.
    pub accuracy: Option<f32>,
    /// Mean training loss since the previous evaluation (NaN at step 0).
    pub train_loss: f32,
    /// Training examples since the previous evaluation.
    pub train_examples: usize,
    /// Wall time of those training steps, seconds.
    pub seconds: f64,
}

impl EvalRecord {
    /// Training throughput since the previous evaluation.
    pub fn samples_per_sec(&self) -> f64 {
        self.train_examples as f64 / self.seconds.max(1e-9)
    }
}

/// What [`fit`] records (and checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// Training loss of every step, in order (index = step - 1).
    pub step_loss: Vec<f32>,
    /// Every evaluation, in order.
    pub evals: Vec<EvalRecord>,
    /// Wall time of the optimizer steps only, seconds, summed over resumed runs.
    pub train_seconds: f64,
    /// Training since the last evaluation.
    pub since_eval: Interval,
}

impl Log {
    fn record(&mut self, step: usize, m: Metrics) -> EvalRecord {
        let e = EvalRecord {
            step,
            loss: m.loss,
            accuracy: m.accuracy,
            train_loss: self.since_eval.loss.mean(),
            train_examples: self.since_eval.loss.weight(),
            seconds: self.since_eval.seconds,
        };
        self.evals.push(e);
        self.since_eval = Interval::default();
        e
    }
}

/// Writes `dir/chart.svg`: the loss of every step with, per epoch, the held-out accuracy
/// (classifiers), or with the validation loss at each evaluation (per-step cadence).
pub fn write_chart(dir: &Path, title: &str, log: &Log, cadence: Cadence) -> anyhow::Result<()> {
    let svg = match cadence {
        Cadence::Epochs {
            steps_per_epoch, ..
        } => {
            let losses: Vec<(usize, f32)> = log.step_loss.iter().copied().enumerate().collect();
            let acc: Vec<(usize, f32)> = log
                .evals
                .iter()
                .map(|e| {
                    let epoch = e.step.div_ceil(steps_per_epoch);
                    (epoch, e.accuracy.unwrap_or(f32::NAN) * 100.0)
                })
                .collect();
            crate::chart::loss_and_accuracy_svg(title, &losses, &acc)?
        }
        Cadence::Steps { .. } => {
            let train: Vec<(usize, f32)> = (1..).zip(log.step_loss.iter().copied()).collect();
            let val: Vec<(usize, f32)> = log.evals.iter().map(|e| (e.step, e.loss)).collect();
            crate::chart::train_val_loss_svg(title, &train, &val)?
        }
    };
    crate::chart::write_svg(&dir.join("chart.svg"), &svg)
}

/// Index of the largest value (first one on ties).
pub fn argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Fisher–Yates shuffle of `0..n` drawn from `rng`.
pub fn shuffled(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u32 + 1) as usize;
        idx.swap(i, j);
    }
    idx
}

/// The first parameter with a non-finite value, by name.
fn non_finite_param<M: Module + ?Sized>(model: &M) -> Option<String> {
    model
        .parameters()
        .into_iter()
        .find(|(_, p)| !p.value().iter().all(|v| v.is_finite()))
        .map(|(name, _)| name)
}

/// Trains `model` on `task` for `config.steps` steps (or until `config.stop_at`), evaluating,
/// charting and checkpointing at the `config.cadence`. Returns the log, also stored in every
/// checkpoint.
///
/// Errors (without touching the last checkpoint) when a loss or parameter becomes non-finite
/// ("training diverged"), and when `resume` finds a checkpoint of another model or format.
pub fn fit<T: Task>(model: &T::Model, task: &mut T, config: &FitConfig) -> anyhow::Result<Log> {
    crate::tune_allocator();
    let cadence = config.cadence;
    if cadence.interval() == 0 {
        bail!("eval interval must be at least 1");
    }
    let mut optimizer = Optimizer::new(config.optimizer, model.parameters());
    let mut rng = Rng::new(config.seed);
    let mut log = Log::default();
    let mut step = 0usize;
    let ck_path = config.out_dir.as_ref().map(|d| d.join(Checkpoint::FILE));
    if let Some(dir) = &config.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let end = config.stop_at.unwrap_or(config.steps).min(config.steps);
    let say = |msg: String| {
        if config.progress != Progress::Quiet {
            println!("{msg}");
        }
    };

    if config.resume {
        match &ck_path {
            Some(path) if path.exists() => {
                let ck = Checkpoint::load(path)?;
                let spec = task.spec(model);
                if std::mem::discriminant(&ck.model) != std::mem::discriminant(&spec) {
                    bail!(
                        "{}: the checkpoint holds {}, but this run trains {}",
                        path.display(),
                        ck.model.kind(),
                        spec.kind()
                    );
                }
                task.check_resume(model, &ck, path)?;
                Checkpoint::restore_params(&ck.params, model)?;
                optimizer
                    .load_state(ck.optimizer)
                    .map_err(anyhow::Error::msg)?;
                let schedule_spans_run = matches!(config.schedule, LrSchedule::WarmupCosine { .. });
                if ck.total_steps != config.steps && schedule_spans_run && config.qat.is_none() {
                    say(format!(
                        "note: checkpoint was for {} steps, continuing to {} (the LR schedule changes)",
                        ck.total_steps, config.steps
                    ));
                }
                rng = Rng::from_state(ck.rng_state);
                log = ck.log;
                step = ck.step;
                say(match cadence {
                    Cadence::Epochs {
                        steps_per_epoch, ..
                    } => format!(
                        "resumed from {} after epoch {}",
                        path.display(),
                        step / steps_per_epoch
                    ),
                    Cadence::Steps { .. } => {
                        format!("resumed from {} at step {step}", path.display())
                    }
                });
            }
            Some(path) => say(format!(
                "no checkpoint at {}: starting from scratch",
                path.display()
            )),
            None => bail!("resume needs an output directory to find the checkpoint in"),
        }
    }

    // The fake-quantized weights for training step `s` (0-based) / the evaluation after `s`
    // steps: none before the QAT start.
    let none: &[(Tensor, WeightBits)] = &[];
    let fq_train = |s: usize| match &config.qat {
        Some(q) if s >= q.start => q.weights.as_slice(),
        _ => none,
    };
    let fq_eval = |s: usize| match &config.qat {
        Some(q) if s > q.start => q.weights.as_slice(),
        _ => none,
    };
    let mut reporter = progress::Reporter::new(config.progress, cadence, config.steps, step, end);
    if matches!(cadence, Cadence::Steps { .. }) && step == 0 && log.evals.is_empty() {
        if let Some(m) = task.evaluate(model) {
            let e = log.record(0, m);
            reporter.evaluated(&e, None);
        }
    }

    let spec = task.spec(model);
    let save = |step: usize, rng: &Rng, optimizer: &Optimizer, log: &Log| -> anyhow::Result<()> {
        if let Some(name) = non_finite_param(model) {
            bail!(
                "training diverged at step {step}: parameter {name} is not finite{}",
                kept(&ck_path)
            );
        }
        let (Some(dir), Some(path)) = (&config.out_dir, &ck_path) else {
            return Ok(());
        };
        if let Some(title) = &config.chart {
            write_chart(dir, title, log, cadence)?;
        }
        Checkpoint {
            format: Checkpoint::FORMAT,
            model: spec.clone(),
            step,
            total_steps: config.steps,
            rng_state: rng.state(),
            params: Checkpoint::capture_params(model),
            optimizer: optimizer.state(),
            log: log.clone(),
        }
        .save(path)
    };

    let mut ctx = Ctx::train(rng);
    let interval = cadence.interval();
    while step < end {
        reporter.step_started(step);
        let t0 = Instant::now();
        optimizer.zero_grad();
        let (loss, examples) =
            with_fake_quant(fq_train(step), || task.train_loss(model, step, &mut ctx));
        loss.backward();
        if let Some(max_norm) = config.clip_grad_norm {
            clip_grad_norm(optimizer.params(), max_norm);
        }
        let lr_scale = match &config.qat {
            Some(q) if step >= q.start => q.lr_scale,
            _ => 1.0,
        };
        optimizer.step(config.schedule.lr(config.optimizer.lr(), step as u64) * lr_scale);
        let l = loss.item();
        drop(loss);
        step += 1;
        let dt = t0.elapsed().as_secs_f64();
        log.step_loss.push(l);
        log.train_seconds += dt;
        log.since_eval.loss.add(l, examples);
        log.since_eval.seconds += dt;
        if !l.is_finite() {
            bail!(
                "training diverged at step {step}: loss {l}{}",
                kept(&ck_path)
            );
        }
        reporter.step_done(step, l, dt, &log);

        let eval_now = step.is_multiple_of(interval) || step == config.steps;
        if eval_now {
            if let Some(m) = with_fake_quant(fq_eval(step), || task.evaluate(model)) {
                let e = log.record(step, m);
                reporter.evaluated(&e, Some(l));
            }
        }
        if eval_now || step == end {
            save(step, &ctx.rng, &optimizer, &log)?;
        }
    }
    reporter.finish(step);
    Ok(log)
}

/// " (the last good checkpoint, PATH, is kept)" when there is one.
fn kept(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) if p.exists() => format!(" (the last good checkpoint, {}, is kept)", p.display()),
        _ => String::new(),
    }
}
