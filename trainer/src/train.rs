//! The training loop: `train(&model, &data, &TrainConfig { .. })`, shaped like the tutorial's
//! `train(model, MNIST, CrossEntropyLoss, batch_size=64, epochs=1, show_chart=True)`.
//!
//! Each epoch: seeded shuffle, mini-batch steps with a progress bar (plain periodic lines when
//! stdout is not a terminal), test-set loss and accuracy, a chart (SVG) and an atomic checkpoint
//! (weights, optimizer state, epoch, RNG state, history) that `resume` continues from.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aka_core::rng::Rng;
use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Axis, IxDyn};
use serde::{Deserialize, Serialize};

use crate::autograd::{no_grad, Array, Tensor};
use crate::data::mnist::PixelNorm;
use crate::nn::{Ctx, Module};
use crate::optim::{clip_grad_norm, LrSchedule, Optimizer, OptimizerConfig, OptimizerState};

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

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A bar when stdout is a terminal, plain periodic lines otherwise.
    Auto,
    /// Plain periodic lines.
    Lines,
    /// Nothing but the per-epoch summary line.
    Quiet,
}

/// Everything `train` needs besides the model and the data.
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

/// What `train` returns: the loss of every step and a record per epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Training loss of every optimizer step, in order.
    pub step_loss: Vec<f32>,
    /// One record per completed epoch.
    pub epochs: Vec<EpochRecord>,
}

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

/// Everything needed to continue training exactly where an epoch ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format tag, [`Checkpoint::FORMAT`].
    pub format: u32,
    /// Epochs completed.
    pub epochs_done: usize,
    /// State of the shuffling/dropout random stream after those epochs.
    pub rng_state: u64,
    /// Model parameters.
    pub params: Vec<NamedArray>,
    /// Optimizer state.
    pub optimizer: OptimizerState,
    /// History so far.
    pub history: History,
    /// The training set's pixel normalization ([`Dataset::pixel_norm`]).
    pub pixel_norm: Option<PixelNorm>,
}

impl Checkpoint {
    /// Current checkpoint format (2: [`Checkpoint::pixel_norm`] added).
    pub const FORMAT: u32 = 2;
    /// File name inside the output directory.
    pub const FILE: &'static str = "checkpoint.bin";

    /// Captures the model's parameters.
    pub fn capture_params(model: &dyn Module) -> Vec<NamedArray> {
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

    /// Writes the checkpoint atomically (temp file, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = postcard::to_stdvec(self).context("encoding checkpoint")?;
        crate::io::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a checkpoint.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let ck: Self = postcard::from_bytes(&bytes).with_context(|| {
            format!(
                "{}: not a valid aka checkpoint (corrupt or from another version)",
                path.display()
            )
        })?;
        if ck.format != Self::FORMAT {
            bail!(
                "{}: checkpoint format {} (this build reads {})",
                path.display(),
                ck.format,
                Self::FORMAT
            );
        }
        Ok(ck)
    }

    /// Copies the stored parameters into `model`, checking names and shapes.
    pub fn restore_params(params: &[NamedArray], model: &dyn Module) -> anyhow::Result<()> {
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
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    no_grad(|| {
        let indices: Vec<usize> = (0..n).collect();
        for chunk in indices.chunks(batch_size.max(1)) {
            let (x, labels) = data.batch(chunk);
            let out = model.forward(&Tensor::new(x), &mut ctx);
            loss_sum += loss.compute(&out, &labels).item() as f64 * chunk.len() as f64;
            let v = out.value();
            for (row, &label) in v.axis_iter(Axis(0)).zip(&labels) {
                correct += usize::from(argmax(row.iter().copied()) == label);
            }
        }
    });
    ((loss_sum / n as f64) as f32, correct as f32 / n as f32)
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

/// Trains `model` on `data.train`, evaluating on `data.test` after every epoch. Returns the
/// history (also stored in each checkpoint).
pub fn train(
    model: &dyn Module,
    data: &Splits<'_>,
    config: &TrainConfig,
) -> anyhow::Result<History> {
    crate::tune_allocator();
    if config.batch_size == 0 {
        bail!("batch size must be at least 1");
    }
    if data.train.is_empty() {
        bail!("the training set is empty");
    }
    let mut optimizer = Optimizer::new(config.optimizer, model.parameters());
    let mut rng = Rng::new(config.seed);
    let mut history = History::default();
    let mut first_epoch = 0;
    let checkpoint_path = config.out_dir.as_ref().map(|d| d.join(Checkpoint::FILE));
    if let Some(dir) = &config.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    if config.resume {
        match &checkpoint_path {
            Some(path) if path.exists() => {
                let ck = Checkpoint::load(path)?;
                let now = data.train.pixel_norm();
                if ck.pixel_norm != now {
                    let show =
                        |n: Option<PixelNorm>| n.map_or("none".to_string(), |n| n.to_string());
                    bail!(
                        "{}: the checkpoint was trained with pixel normalization {}, but the \
                         training data now gives {} (use the same data and --no-normalize \
                         setting as the original run)",
                        path.display(),
                        show(ck.pixel_norm),
                        show(now)
                    );
                }
                Checkpoint::restore_params(&ck.params, model)?;
                optimizer
                    .load_state(ck.optimizer)
                    .map_err(anyhow::Error::msg)?;
                rng = Rng::from_state(ck.rng_state);
                history = ck.history;
                first_epoch = ck.epochs_done;
                println!(
                    "resumed from {} after epoch {}",
                    path.display(),
                    first_epoch
                );
            }
            Some(path) => println!("no checkpoint at {}: starting from scratch", path.display()),
            None => bail!("resume needs an output directory to find the checkpoint in"),
        }
    }

    let n = data.train.len();
    let steps_per_epoch = n.div_ceil(config.batch_size);
    let show_bar = config.progress == Progress::Auto && std::io::stdout().is_terminal();
    let print_lines =
        config.progress == Progress::Lines || (config.progress == Progress::Auto && !show_bar);

    for epoch in first_epoch..config.epochs {
        let order = shuffled(n, &mut rng);
        let mut ctx = Ctx::train(rng);
        let bar = show_bar.then(|| {
            let bar = ProgressBar::new(steps_per_epoch as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .expect("valid template"),
            );
            bar.set_prefix(format!("{}/{}", epoch + 1, config.epochs));
            bar
        });
        let start = Instant::now();
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        let line_every = (steps_per_epoch / 10).max(1);
        for (step, chunk) in order.chunks(config.batch_size).enumerate() {
            let global_step = (epoch * steps_per_epoch + step) as u64;
            let (x, labels) = data.train.batch(chunk);
            optimizer.zero_grad();
            let out = model.forward(&Tensor::new(x), &mut ctx);
            let loss = config.loss.compute(&out, &labels);
            loss.backward();
            if let Some(max_norm) = config.clip_grad_norm {
                clip_grad_norm(optimizer.params(), max_norm);
            }
            optimizer.step(config.schedule.lr(config.optimizer.lr(), global_step));
            let l = loss.item();
            history.step_loss.push(l);
            loss_sum += l as f64 * chunk.len() as f64;
            seen += chunk.len();
            let rate = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
            let running = loss_sum / seen as f64;
            if let Some(bar) = &bar {
                bar.set_position(step as u64 + 1);
                bar.set_message(format!("loss {running:.4} · {rate:.0} samples/s"));
            } else if print_lines && ((step + 1) % line_every == 0 || step + 1 == steps_per_epoch) {
                let eta = (n - seen) as f64 / rate;
                println!(
                    "epoch {}/{} step {}/{steps_per_epoch} loss {running:.4} {rate:.0} samples/s eta {eta:.1}s",
                    epoch + 1,
                    config.epochs,
                    step + 1
                );
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let seconds = start.elapsed().as_secs_f64();
        rng = ctx.rng;
        let (test_loss, test_accuracy) =
            evaluate(model, data.test, config.loss, config.eval_batch_size);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: (loss_sum / seen as f64) as f32,
            test_loss,
            test_accuracy,
            seconds,
            samples_per_sec: seen as f64 / seconds.max(1e-9),
        };
        println!(
            "epoch {}/{}: train loss {:.4}, test loss {:.4}, test accuracy {:.2}% ({:.1}s, {:.0} samples/s)",
            record.epoch,
            config.epochs,
            record.train_loss,
            record.test_loss,
            record.test_accuracy * 100.0,
            record.seconds,
            record.samples_per_sec
        );
        history.epochs.push(record);

        if let Some(dir) = &config.out_dir {
            if config.show_chart {
                write_chart(dir, &history)?;
            }
            let ck = Checkpoint {
                format: Checkpoint::FORMAT,
                epochs_done: epoch + 1,
                rng_state: rng.state(),
                params: Checkpoint::capture_params(model),
                optimizer: optimizer.state(),
                history: history.clone(),
                pixel_norm: data.train.pixel_norm(),
            };
            ck.save(checkpoint_path.as_ref().expect("out_dir set"))?;
        }
    }
    if let (Some(dir), true) = (&config.out_dir, config.show_chart) {
        println!("chart: {}", dir.join("chart.svg").display());
    }
    Ok(history)
}

fn write_chart(dir: &Path, history: &History) -> anyhow::Result<()> {
    let losses: Vec<(usize, f32)> = history.step_loss.iter().copied().enumerate().collect();
    let acc: Vec<(usize, f32)> = history
        .epochs
        .iter()
        .map(|e| (e.epoch, e.test_accuracy * 100.0))
        .collect();
    crate::chart::loss_and_accuracy_chart(&dir.join("chart.svg"), "training", &losses, &acc)
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
