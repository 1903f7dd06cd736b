//! `aka-trainer mnist`: train the tutorial's MLP (or the small CNN) on MNIST, then quantize it to
//! int8 and export it for aka-core as `OUT/model.aka` (unless `--no-export`).
//!
//! `--weights int4` exports packed int4 weights (one scale per output channel; `--int8-layers`
//! keeps some layers int8), and `--qat-steps N` fine-tunes N more steps with the weights
//! fake-quantized exactly as exported before the export, reporting PTQ and QAT side by side.
//!
//! After training, the export step calibrates activation ranges on `--calibration` training
//! images, writes the model file atomically, runs it **with aka-core** on the whole test set, and
//! prints float accuracy, int8 accuracy, top-1 agreement, file and arena sizes and the per-layer
//! weight quantization error (all also in `summary.json` under `export`).
//!
//! Inputs are standardized with the mean and std of the training pixels, computed at load
//! (`aka_trainer::data::mnist::PixelNorm`; MNIST: 0.1307, 0.3081); the model file stores them,
//! so aka-core takes raw pixels. `--no-normalize` keeps plain `p / 255` instead. Either way the
//! normalization is in `summary.json` (`pixel_normalization`) and in the checkpoint (resuming
//! with a different one is an error).

use std::path::PathBuf;
use std::time::Instant;

use aka_core::rng::Rng;
use aka_trainer::data::mnist::{Mnist, PixelNorm};
use aka_trainer::export::quantize::{Calibration, WeightBits};
use aka_trainer::export::sequential::quantize::weight_plan;
use aka_trainer::export::sequential::{export_classifier, ExportConfig, QuantConfig};
use aka_trainer::export::{ExportMetadata, ExportSummary};
use aka_trainer::nn::{mnist_cnn, mnist_mlp, Module, Sequential};
use aka_trainer::optim::OptimizerConfig;
use aka_trainer::train::{train, Loss, Progress, QatSteps, Splits, TrainConfig};
use anyhow::Context as _;
use clap::ValueEnum;
use serde::Serialize;

#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Flatten, Linear(784, 576), ReLU, Linear(576, 10).
    Mlp,
    /// Conv(1->8), pool, Conv(8->16), pool, Linear(784->64), Linear(64->10): 52 k parameters.
    Cnn,
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Adamw,
    Sgd,
}

#[derive(clap::Args)]
pub struct MnistArgs {
    /// Which network.
    #[arg(long, value_enum, default_value = "mlp")]
    model: ModelKind,
    /// Passes over the 60,000 training images.
    #[arg(long, value_parser = super::at_least_1(), default_value_t = 1)]
    epochs: usize,
    /// Images per optimizer step.
    #[arg(long, value_parser = super::at_least_1(), default_value_t = 64)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Update rule (Adam is the tutorial's).
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerKind,
    /// Seeds initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory with MNIST-format IDX files (gzip or raw); any dataset in that format works.
    #[arg(long, default_value_os_t = default_data_dir())]
    data: PathBuf,
    /// Feed pixels as p/255 in [0, 1] instead of standardizing them with the training pixels'
    /// mean and std.
    #[arg(long)]
    no_normalize: bool,
    /// Output directory for the checkpoint, chart and summary [default: runs/mnist-MODEL].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from OUT/checkpoint.bin.
    #[arg(long)]
    resume: bool,
    /// Do not write chart.svg.
    #[arg(long)]
    no_chart: bool,
    /// Worker threads for matrix products and convolutions [default: all cores].
    #[arg(long, value_parser = super::threads())]
    threads: Option<usize>,
    /// Do not quantize and export OUT/model.aka after training.
    #[arg(long)]
    no_export: bool,
    /// Training images used to calibrate the int8 activation ranges.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = super::at_least_1())]
    calibration: usize,
    /// Calibrate ranges to the P-th percentile, in (50, 100] (e.g. 99.99), instead of the
    /// min/max.
    #[arg(long, value_name = "P")]
    calibration_percentile: Option<f32>,
    /// Weight precision of the exported file: int8, or int4 (packed, one scale per output
    /// channel; about half the flash).
    #[arg(long, value_enum, default_value = "int8")]
    weights: WeightBits,
    /// Layers (indices in the model summary) kept int8 with `--weights int4`, e.g. `0,5`.
    #[arg(long, value_delimiter = ',', value_name = "I,J,...")]
    int8_layers: Vec<usize>,
    /// Quantization-aware fine-tuning: N more optimizer steps after the float epochs with the
    /// weights fake-quantized exactly as exported (`--weights`, `--int8-layers`) and
    /// straight-through gradients. Prints and records the post-training quantization (PTQ)
    /// figures before them next to the final ones. The checkpoint keeps float weights.
    #[arg(long, default_value_t = 0, value_name = "N")]
    qat_steps: usize,
    /// Learning rate of the QAT steps as a fraction of `--lr`.
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    qat_lr_scale: f32,
}

/// Post-training quantization next to quantization-aware training, in `summary.json`.
#[derive(Serialize)]
struct QatSummary {
    steps: usize,
    lr_scale: f32,
    /// Percent: the float model after the epochs (before QAT).
    ptq_float_accuracy: f64,
    /// Percent, aka-core: that model quantized directly (PTQ).
    ptq_quantized_accuracy: f64,
    /// Percent, aka-core: the file exported after QAT (also `export.quantized_accuracy`).
    qat_quantized_accuracy: f64,
}

/// `data/mnist` of this checkout, wherever cargo is run from.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

/// JSON summary written next to the checkpoint.
#[derive(Serialize)]
struct Summary<'a> {
    model: ModelKind,
    parameters: usize,
    epochs: usize,
    batch_size: usize,
    lr: f32,
    optimizer: OptimizerKind,
    seed: u64,
    threads: Option<usize>,
    /// Pixel `p` is fed as `(p / 255 - mean) / std` (mean 0, std 1 with `--no-normalize`).
    pixel_normalization: PixelNorm,
    wall_seconds: f64,
    history: &'a aka_trainer::train::History,
    command: String,
    /// The export (absent with `--no-export`).
    #[serde(skip_serializing_if = "Option::is_none")]
    export: Option<ExportSummary>,
    /// PTQ vs QAT (with `--qat-steps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    qat: Option<QatSummary>,
}

impl MnistArgs {
    /// Checks every flag that clap's value parsers do not, before anything is read.
    fn validate(&self) -> anyhow::Result<()> {
        super::check_lr(self.lr)?;
        super::check(
            self.qat_lr_scale.is_finite() && self.qat_lr_scale > 0.0,
            "--qat-lr-scale",
            self.qat_lr_scale,
            "must be positive",
        )?;
        if let Some(p) = self.calibration_percentile {
            // The same range as the export's own check (`export::sequential::quantize`).
            super::check(
                p > 50.0 && p <= 100.0,
                "--calibration-percentile",
                p,
                "must be in (50, 100]",
            )?;
        }
        Ok(())
    }
}

pub fn run(args: MnistArgs) -> anyhow::Result<()> {
    args.validate()?;
    aka_trainer::set_threads(args.threads)?;
    let wall = Instant::now();
    let mut data = Mnist::load(&args.data)
        .with_context(|| format!("loading MNIST from {}", args.data.display()))?;
    if args.no_normalize {
        data.set_norm(PixelNorm::NONE);
        println!("pixels: p/255 (--no-normalize)");
    } else {
        let n = data.norm();
        println!(
            "pixels: (p/255 - {}) / {} (mean and std of the training pixels)",
            n.mean, n.std
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/mnist-{:?}", args.model).to_lowercase()));

    let mut rng = Rng::new(args.seed);
    let model: Sequential = match args.model {
        ModelKind::Mlp => mnist_mlp(&mut rng),
        ModelKind::Cnn => mnist_cnn(&mut rng),
    };
    print!("{}", model.summary(&[1, 1, 28, 28]));
    let quant = quant_config(&args);
    // Checks --int8-layers before training; the weights QAT fake-quantizes.
    let plan = weight_plan(&model, &quant)?;

    let optimizer = match args.optimizer {
        OptimizerKind::Adam => OptimizerConfig::adam(args.lr),
        OptimizerKind::Adamw => OptimizerConfig::adamw(args.lr, 0.01),
        OptimizerKind::Sgd => OptimizerConfig::sgd(args.lr, 0.9),
    };
    let config = TrainConfig {
        loss: Loss::CrossEntropy,
        batch_size: args.batch_size,
        epochs: args.epochs,
        optimizer,
        seed: args.seed,
        show_chart: !args.no_chart,
        out_dir: Some(out.clone()),
        resume: args.resume,
        progress: Progress::Auto,
        ..TrainConfig::default()
    };
    let splits = Splits {
        train: &data.train,
        test: &data.test,
    };
    let mut history = train(&model, &splits, &config)?;

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut ptq = None;
    if args.qat_steps > 0 {
        if !args.no_export {
            let e = export_classifier(
                &model,
                &data.train,
                &data.test,
                &export_config(&args, &command),
            )?;
            println!(
                "PTQ ({}): float {:.2}%, quantized {:.2}% (aka-core)",
                args.weights.name(),
                e.float.accuracy(),
                e.int8.accuracy()
            );
            ptq = Some((e.float.accuracy(), e.int8.accuracy()));
        }
        println!(
            "QAT: {} steps with the weights fake-quantized ({}), lr {} x {}",
            args.qat_steps,
            args.weights.name(),
            args.lr,
            args.qat_lr_scale
        );
        let qat = TrainConfig {
            resume: true,
            qat: Some(QatSteps {
                steps: args.qat_steps,
                weights: plan,
                lr_scale: args.qat_lr_scale,
            }),
            ..config
        };
        history = train(&model, &splits, &qat)?;
    }
    let export = if args.no_export {
        None
    } else {
        Some(export(&args, &model, &data, &out, &command)?)
    };
    let qat = match (&export, ptq) {
        (Some(e), Some((float, quantized))) => {
            println!(
                "PTQ vs QAT ({}): float {float:.2}%, PTQ {quantized:.2}%, QAT {:.2}%",
                args.weights.name(),
                e.quantized_accuracy
            );
            Some(QatSummary {
                steps: args.qat_steps,
                lr_scale: args.qat_lr_scale,
                ptq_float_accuracy: float,
                ptq_quantized_accuracy: quantized,
                qat_quantized_accuracy: e.quantized_accuracy,
            })
        }
        _ => None,
    };

    let summary = Summary {
        model: args.model,
        parameters: model.parameter_count(),
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        optimizer: args.optimizer,
        seed: args.seed,
        threads: args.threads,
        pixel_normalization: data.norm(),
        wall_seconds: wall.elapsed().as_secs_f64(),
        history: &history,
        command,
        export,
        qat,
    };
    let summary_path = out.join("summary.json");
    aka_trainer::io::write_json(&summary_path, &summary)?;
    println!(
        "checkpoint: {}",
        out.join(aka_trainer::train::Checkpoint::FILE).display()
    );
    println!("summary: {}", summary_path.display());
    Ok(())
}

/// The export settings of `aka-trainer mnist`'s flags.
fn export_config(args: &MnistArgs, command: &str) -> ExportConfig {
    let settings = ExportSettings {
        calibration: args.calibration,
        calibration_percentile: args.calibration_percentile,
        seed: args.seed,
        weights: args.weights,
        int8_layers: args.int8_layers.clone(),
    };
    settings.config(command)
}

/// The export's quantization settings from the flags.
fn quant_config(args: &MnistArgs) -> QuantConfig {
    export_config(args, "").quant
}

/// Quantizes, writes `out/model.aka`, evaluates it with aka-core and prints the report.
fn export(
    args: &MnistArgs,
    model: &Sequential,
    data: &Mnist,
    out: &std::path::Path,
    command: &str,
) -> anyhow::Result<ExportSummary> {
    write_export(model, data, out, &export_config(args, command))
}

/// The int8 export settings of an MNIST-format classifier (`aka-trainer mnist`'s flags).
pub struct ExportSettings {
    /// Training images used to calibrate the activation ranges.
    pub calibration: usize,
    /// Calibrate to this percentile instead of the min/max.
    pub calibration_percentile: Option<f32>,
    /// Seeds the choice of calibration images.
    pub seed: u64,
    /// Weight precision of the Linear/Conv2d layers (`--weights`).
    pub weights: WeightBits,
    /// Layers (model-summary indices) kept int8 with int4 `weights` (`--int8-layers`).
    pub int8_layers: Vec<usize>,
}

impl ExportSettings {
    /// The exporter's settings with `command` in the metadata.
    fn config(&self, command: &str) -> ExportConfig {
        ExportConfig {
            quant: QuantConfig {
                samples: self.calibration,
                method: match self.calibration_percentile {
                    Some(p) => Calibration::Percentile(p),
                    None => Calibration::MinMax,
                },
                seed: self.seed,
                weights: self.weights,
                int8_layers: self.int8_layers.clone(),
                ..QuantConfig::default()
            },
            metadata: ExportMetadata::digits(self.seed, command),
            eval_batch_size: 1000,
        }
    }
}

/// The one export path of MNIST-format classifiers, trained here (`aka-trainer mnist`) or
/// imported (`aka-trainer import sequential`): quantizes `model` (calibrating on the training
/// images) with the settings' weight types, writes `out/model.aka`, evaluates the float model and the file
/// (with aka-core) on the test set and prints the report.
pub fn export_classifier_to(
    model: &Sequential,
    data: &Mnist,
    out: &std::path::Path,
    settings: &ExportSettings,
    command: &str,
) -> anyhow::Result<ExportSummary> {
    write_export(model, data, out, &settings.config(command))
}

/// [`export_classifier_to`] with any [`ExportConfig`] (int4 weights included).
fn write_export(
    model: &Sequential,
    data: &Mnist,
    out: &std::path::Path,
    config: &ExportConfig,
) -> anyhow::Result<ExportSummary> {
    let started = Instant::now();
    println!(
        "{} export: calibrating on {} training images",
        config.quant.weights.name(),
        config.quant.samples.min(data.train.len())
    );
    let exported = export_classifier(model, &data.train, &data.test, config)?;
    let path = out.join(format!("model.{}", aka_trainer::export::EXTENSION));
    aka_trainer::export::write(&path, &exported.bytes)?;
    print!("{}", exported.report());
    println!(
        "model: {} ({:.1}s; inspect with `cargo run -p aka-tools -- inspect {}`)",
        path.display(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(exported.summary(&path))
}
