//! Classification: a [`Dataset`] of labelled examples, trained in epochs through
//! [`fit`] by [`train`], shaped like the tutorial's
//! `train(model, MNIST, CrossEntropyLoss, batch_size=64, epochs=1, show_chart=True)`.
//!
//! Each epoch is `ceil(n / batch_size)` steps: a seeded shuffle at its first step, mini-batches,
//! then test-set loss and accuracy, the chart (SVG) and the checkpoint.

use std::path::{Path, PathBuf};

use anyhow::bail;
use ndarray::{Axis, IxDyn};
use serde::{Deserialize, Serialize};

use super::{
    argmax, fit, shuffled, Cadence, Checkpoint, FitConfig, Log, MeanLoss, Metrics, ModelSpec,
    Progress, Qat, QatSteps, Task,
};
use crate::autograd::{no_grad, Array, Tensor};
use crate::data::mnist::PixelNorm;
use crate::nn::{Ctx, Module};
use crate::optim::{LrSchedule, OptimizerConfig};

/// A labelled dataset that can produce batches by index.
pub trait Dataset {
    /// Number of examples.
    fn len(&self) -> usize;

    /// Whether there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inputs (batch dimension first) and integer labels of the examples at `indices`.
    fn batch(&self, indices: &[usize]) -> (Array, Vec<usize>);

    /// The pixel normalization the inputs were made with, if the data set has one (image sets).
    /// Recorded in checkpoints: resuming with a different one is an error.
    fn pixel_norm(&self) -> Option<PixelNorm> {
        None
    }
}

/// Train and test sets.
pub struct Splits<'a> {
    /// What the optimizer sees.
    pub train: &'a dyn Dataset,
    /// Evaluated after each epoch.
    pub test: &'a dyn Dataset,
}

/// The loss to minimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// Cross-entropy of logits against integer class labels (PyTorch's `CrossEntropyLoss`).
    CrossEntropy,
    /// Mean squared error of the outputs against one-hot labels.
    Mse,
}

impl Loss {
    /// The loss of `output [n, classes]` against `labels`.
    pub fn compute(&self, output: &Tensor, labels: &[usize]) -> Tensor {
        match self {
            Loss::CrossEntropy => output.cross_entropy(labels),
            Loss::Mse => {
                let shape = output.shape();
                let mut onehot = Array::zeros(IxDyn(&shape));
                for (i, &l) in labels.iter().enumerate() {
                    onehot[[i, l]] = 1.0;
                }
                output.mse(&Tensor::new(onehot))
            }
        }
    }
}

/// Everything [`train`] needs besides the model and the data.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Loss function (default cross-entropy).
    pub loss: Loss,
    /// Examples per optimizer step (default 64).
    pub batch_size: usize,
    /// Passes over the training set (default 1).
    pub epochs: usize,
    /// Update rule (default Adam, lr 1e-3, the tutorial's).
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule over all steps (default constant).
    pub schedule: LrSchedule,
    /// Global-norm gradient clipping (default off).
    pub clip_grad_norm: Option<f32>,
    /// Seeds shuffling and dropout (initialisation is seeded by whoever builds the model).
    pub seed: u64,
    /// Write `chart.svg` (training loss per step, test accuracy per epoch) into `out_dir`.
    pub show_chart: bool,
    /// Where checkpoints and the chart go; `None` writes nothing.
    pub out_dir: Option<PathBuf>,
    /// Continue from `out_dir/checkpoint.bin` if it exists.
    pub resume: bool,
    /// Progress display.
    pub progress: Progress,
    /// Batch size for the test-set evaluation (default 1000).
    pub eval_batch_size: usize,
    /// Quantization-aware fine-tuning after the `epochs` (default `None`). The steps continue
    /// the epochs' count; with `resume`, a checkpoint at the end of the float epochs continues
    /// into them.
    pub qat: Option<QatSteps>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            loss: Loss::CrossEntropy,
            batch_size: 64,
            epochs: 1,
            optimizer: OptimizerConfig::adam(1e-3),
            schedule: LrSchedule::Constant,
            clip_grad_norm: None,
            seed: 0,
            show_chart: false,
            out_dir: None,
            resume: false,
            progress: Progress::Auto,
            eval_batch_size: 1000,
            qat: None,
        }
    }
}

/// One epoch's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f32,
    /// Mean test loss.
    pub test_loss: f32,
    /// Test accuracy in [0, 1].
    pub test_accuracy: f32,
    /// Wall time of the training steps (evaluation excluded), seconds.
    pub seconds: f64,
    /// Training throughput.
    pub samples_per_sec: f64,
}

/// What [`train`] returns: the loss of every step and a record per epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Training loss of every optimizer step, in order.
    pub step_loss: Vec<f32>,
    /// One record per completed epoch.
    pub epochs: Vec<EpochRecord>,
}

impl History {
    /// The per-epoch view of a [`fit`] log with `steps_per_epoch` steps per epoch.
    pub fn from_log(log: &Log, steps_per_epoch: usize) -> Self {
        let epochs = log
            .evals
            .iter()
            .map(|e| EpochRecord {
                epoch: e.step.div_ceil(steps_per_epoch),
                train_loss: e.train_loss,
                test_loss: e.loss,
                test_accuracy: e.accuracy.unwrap_or(f32::NAN),
                seconds: e.seconds,
                samples_per_sec: e.samples_per_sec(),
            })
            .collect();
        Self {
            step_loss: log.step_loss.clone(),
            epochs,
        }
    }
}

/// Loss and accuracy of `model` on `data`, in evaluation mode (no graph, no dropout).
pub fn evaluate(
    model: &dyn Module,
    data: &dyn Dataset,
    loss: Loss,
    batch_size: usize,
) -> (f32, f32) {
    let n = data.len();
    if n == 0 {
        return (f32::NAN, f32::NAN);
    }
    let mut ctx = Ctx::eval();
    let (mut mean, mut correct) = (MeanLoss::default(), 0usize);
    no_grad(|| {
        let indices: Vec<usize> = (0..n).collect();
        for chunk in indices.chunks(batch_size.max(1)) {
            let (x, labels) = data.batch(chunk);
            let out = model.forward(&Tensor::new(x), &mut ctx);
            mean.add(loss.compute(&out, &labels).item(), chunk.len());
            let v = out.value();
            for (row, &label) in v.axis_iter(Axis(0)).zip(&labels) {
                correct += usize::from(argmax(row.iter().copied()) == label);
            }
        }
    });
    (mean.mean(), correct as f32 / n as f32)
}

/// Classifying the examples of a [`Dataset`]: shuffled mini-batches, one epoch after another.
pub struct Classification<'a> {
    data: &'a Splits<'a>,
    loss: Loss,
    batch_size: usize,
    eval_batch_size: usize,
    /// This epoch's order of the training examples.
    order: Vec<usize>,
}

impl<'a> Classification<'a> {
    /// A task on `data` with batches of `batch_size` (at least 1; the training set must not be
    /// empty) and evaluation batches of `eval_batch_size`.
    pub fn new(
        data: &'a Splits<'a>,
        loss: Loss,
        batch_size: usize,
        eval_batch_size: usize,
    ) -> anyhow::Result<Self> {
        if batch_size == 0 {
            bail!("batch size must be at least 1");
        }
        if data.train.is_empty() {
            bail!("the training set is empty");
        }
        Ok(Self {
            data,
            loss,
            batch_size,
            eval_batch_size,
            order: Vec::new(),
        })
    }

    /// Steps per pass over the training set.
    pub fn steps_per_epoch(&self) -> usize {
        self.data.train.len().div_ceil(self.batch_size)
    }
}

impl Task for Classification<'_> {
    type Model = dyn Module + 'static;

    fn spec(&self, _model: &Self::Model) -> ModelSpec {
        ModelSpec::Sequential {
            pixel_norm: self.data.train.pixel_norm(),
        }
    }

    fn check_resume(
        &self,
        _model: &Self::Model,
        ck: &Checkpoint,
        path: &Path,
    ) -> anyhow::Result<()> {
        let now = self.data.train.pixel_norm();
        if ck.pixel_norm() != now {
            let show = |n: Option<PixelNorm>| n.map_or("none".to_string(), |n| n.to_string());
            bail!(
                "{}: the checkpoint was trained with pixel normalization {}, but the training \
                 data now gives {} (use the same data and --no-normalize setting as the original \
                 run)",
                path.display(),
                show(ck.pixel_norm()),
                show(now)
            );
        }
        let spe = self.steps_per_epoch();
        if !ck.step.is_multiple_of(spe) {
            bail!(
                "{}: the checkpoint stopped at step {}, not at the end of an epoch of {spe} steps \
                 (use the same data and batch size as the original run)",
                path.display(),
                ck.step
            );
        }
        Ok(())
    }

    fn train_loss(&mut self, model: &Self::Model, step: usize, ctx: &mut Ctx) -> (Tensor, usize) {
        let n = self.data.train.len();
        let s = step % self.steps_per_epoch();
        if s == 0 || self.order.is_empty() {
            self.order = shuffled(n, &mut ctx.rng);
        }
        let chunk = &self.order[s * self.batch_size..((s + 1) * self.batch_size).min(n)];
        let (x, labels) = self.data.train.batch(chunk);
        let out = model.forward(&Tensor::new(x), ctx);
        (self.loss.compute(&out, &labels), chunk.len())
    }

    fn evaluate(&self, model: &Self::Model) -> Option<Metrics> {
        let (loss, accuracy) = evaluate(model, self.data.test, self.loss, self.eval_batch_size);
        Some(Metrics {
            loss,
            accuracy: Some(accuracy),
        })
    }
}

/// Trains `model` on `data.train` for `config.epochs` epochs through [`fit`], evaluating on
/// `data.test` after every epoch. Returns the history (also stored in each checkpoint).
pub fn train(
    model: &(dyn Module + 'static),
    data: &Splits<'_>,
    config: &TrainConfig,
) -> anyhow::Result<History> {
    let mut task =
        Classification::new(data, config.loss, config.batch_size, config.eval_batch_size)?;
    let steps_per_epoch = task.steps_per_epoch();
    let float_steps = config.epochs * steps_per_epoch;
    let fit_config = FitConfig {
        steps: float_steps + config.qat.as_ref().map_or(0, |q| q.steps),
        stop_at: None,
        optimizer: config.optimizer,
        schedule: config.schedule,
        clip_grad_norm: config.clip_grad_norm,
        seed: config.seed,
        cadence: Cadence::Epochs {
            steps_per_epoch,
            examples: data.train.len(),
        },
        chart: config.show_chart.then(|| "training".to_string()),
        out_dir: config.out_dir.clone(),
        resume: config.resume,
        progress: config.progress,
        qat: config.qat.as_ref().map(|q| Qat {
            start: float_steps,
            weights: q.weights.clone(),
            lr_scale: q.lr_scale,
        }),
    };
    let log = fit(model, &mut task, &fit_config)?;
    if let (Some(dir), true) = (&config.out_dir, config.show_chart) {
        println!("chart: {}", dir.join("chart.svg").display());
    }
    Ok(History::from_log(&log, steps_per_epoch))
}

/// The first `n` examples of another dataset (quick experiments and tests).
pub struct Subset<'a> {
    data: &'a dyn Dataset,
    n: usize,
}

impl<'a> Subset<'a> {
    /// The first `min(n, data.len())` examples of `data`.
    pub fn first(data: &'a dyn Dataset, n: usize) -> Self {
        Self {
            data,
            n: n.min(data.len()),
        }
    }
}

impl Dataset for Subset<'_> {
    fn len(&self) -> usize {
        self.n
    }

    fn batch(&self, indices: &[usize]) -> (Array, Vec<usize>) {
        self.data.batch(indices)
    }

    fn pixel_norm(&self) -> Option<PixelNorm> {
        self.data.pixel_norm()
    }
}

impl Dataset for crate::data::mnist::ImageSet {
    fn len(&self) -> usize {
        self.len()
    }

    fn batch(&self, indices: &[usize]) -> (Array, Vec<usize>) {
        let (x, y) = crate::data::mnist::ImageSet::batch(self, indices);
        (x.into_dyn(), y)
    }

    fn pixel_norm(&self) -> Option<PixelNorm> {
        Some(self.norm)
    }
}
