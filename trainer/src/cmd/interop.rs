//! `aka-trainer import nanogpt|sequential` and `aka-trainer export-safetensors`: models to and
//! from PyTorch through `safetensors` files, in nanoGPT's layout for GPTs and `nn.Sequential`'s
//! for classifiers (see [`aka_trainer::interop`]).
//!
//! An imported model goes through the same exporter and evaluation as a trained one
//! (`export_gpt` as `aka-trainer gpt`, [`super::mnist::export_classifier_to`] as
//! `aka-trainer mnist`): it writes `OUT/model.aka` (int8, calibrated on the data),
//! `OUT/checkpoint.bin` (the float model at step 0; `aka-trainer gpt --resume` fine-tunes a GPT
//! with the same sizes, `export-safetensors` writes either back) and `OUT/summary.json`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use aka_core::rng::Rng;
use aka_trainer::data::mnist::{Mnist, PixelNorm, NUM_CLASSES};
use aka_trainer::data::text::{read_text, CharTokenizer, TextDataset};
use aka_trainer::export::gpt::{export_gpt_weights, CalibConfig, EvalConfig, GptWeights};
use aka_trainer::export::quantize::WeightBits;
use aka_trainer::export::{ExportMetadata, ExportSummary};
use aka_trainer::gpt::{Gpt, GptConfig};
use aka_trainer::interop::sequential::{
    format_layers, parse_input, recorded_pixel_norm, sequential_metadata, INPUT_KEY, LAYERS_KEY,
};
use aka_trainer::interop::{self, LayerSpec, SafetensorsFile, VocabFile};
use aka_trainer::nn::{mnist_cnn, mnist_mlp, Module, Sequential};
use aka_trainer::optim::{Optimizer, OptimizerConfig};
use aka_trainer::train::{Checkpoint, Log, ModelSpec};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde::Serialize;

/// `import`'s model kinds.
#[derive(Subcommand)]
pub enum ImportCommand {
    /// A GPT in nanoGPT's `state_dict` layout (`transformer.wte.weight`, `transformer.h.{i}...`).
    Nanogpt(NanogptArgs),
    /// An `nn.Sequential` classifier (`{index}.weight` / `{index}.bias`) for MNIST-format images.
    Sequential(SequentialArgs),
}

#[derive(Args)]
pub struct NanogptArgs {
    /// The model's tensors (PyTorch: `safetensors.torch.save_file(model.state_dict(), F)`).
    #[arg(long, value_name = "FILE")]
    safetensors: PathBuf,
    /// The vocabulary, `{"itos": ["\n", " ", "!", ...]}` (nanoGPT's `meta.pkl` `itos`).
    #[arg(long, value_name = "FILE")]
    vocab: PathBuf,
    /// Attention heads per block (not in the tensors' shapes; files written by aka record it).
    #[arg(long, value_parser = super::at_least_1())]
    heads: Option<usize>,
    /// Text to calibrate and evaluate on (first 90 % train, last 10 % validation, as
    /// `aka-trainer gpt`) [default: the bundled tinyshakespeare].
    #[arg(long, value_name = "TEXT", default_value_os_t = super::gpt::default_data())]
    data: PathBuf,
    /// Seeds the validation batches, as `aka-trainer gpt --seed`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Weight precision of the exported projections, as `aka-trainer gpt --weights` (the
    /// embeddings, and so a tied head, stay int8).
    #[arg(long, value_enum, default_value = "int8")]
    weights: WeightBits,
    /// Matrices kept int8 with `--weights int4`, by role, as `aka-trainer gpt --int8-matrices`.
    #[arg(long, value_delimiter = ',', value_name = "ROLE,...")]
    int8_matrices: Vec<String>,
    /// Write the int8 matrices as plain int8 rows instead of the default offset-binary layout
    /// (`int8-offset`: the same values and results, a faster Cortex-M4 kernel, 4 bytes more per
    /// row; used for matrices whose column count is a multiple of 8).
    #[arg(long)]
    plain_int8: bool,
    /// Output directory for model.aka, checkpoint.bin and summary.json.
    #[arg(long, default_value = "runs/import")]
    out: PathBuf,
}

impl NanogptArgs {
    /// Which matrices the export makes int4.
    fn gpt_weights(&self) -> GptWeights {
        GptWeights {
            weights: self.weights,
            int8: self.int8_matrices.clone(),
            plain_int8: self.plain_int8,
        }
    }
}

#[derive(Args)]
pub struct SequentialArgs {
    /// The model's tensors (PyTorch: `safetensors.torch.save_file(model.state_dict(), F)`).
    #[arg(long, value_name = "FILE")]
    safetensors: PathBuf,
    /// The layers in order, one per `nn.Sequential` index: linear, conv2d[:KxK][:sS][:pP],
    /// maxpool2d:K[:sS], relu, flatten, dropout[:P] [default: the list recorded in files
    /// written by `export-safetensors`].
    #[arg(long, value_name = "LIST")]
    layers: Option<String>,
    /// Input shape HxWxC [default: recorded in the file, else 28x28x1].
    #[arg(long, value_name = "HxWxC")]
    input: Option<String>,
    /// The PyTorch model saw pixel p as (p/255 - M) / S (p/255: M 0, S 1) [default: recorded in
    /// the file, else 0].
    #[arg(
        long,
        value_name = "M",
        requires = "pixel_std",
        allow_negative_numbers = true
    )]
    pixel_mean: Option<f32>,
    /// See --pixel-mean [default: recorded in the file, else 1].
    #[arg(
        long,
        value_name = "S",
        requires = "pixel_mean",
        allow_negative_numbers = true
    )]
    pixel_std: Option<f32>,
    /// Directory with MNIST-format IDX files: calibration on the training images, evaluation on
    /// the test set.
    #[arg(long, value_name = "DIR", default_value_os_t = super::mnist::default_data_dir())]
    data: PathBuf,
    /// Training images used to calibrate the int8 activation ranges (as `aka-trainer mnist`).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = super::at_least_1())]
    calibration: usize,
    /// Calibrate ranges to the P-th percentile, in (50, 100], instead of the min/max.
    #[arg(long, value_name = "P")]
    calibration_percentile: Option<f32>,
    /// Seeds the choice of calibration images.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Weight precision of the exported file, as `aka-trainer mnist --weights`.
    #[arg(long, value_enum, default_value = "int8")]
    weights: WeightBits,
    /// Layers (indices in the model summary) kept int8 with `--weights int4`.
    #[arg(long, value_delimiter = ',', value_name = "I,J,...")]
    int8_layers: Vec<usize>,
    /// Output directory for model.aka, checkpoint.bin and summary.json.
    #[arg(long, default_value = "runs/import-sequential")]
    out: PathBuf,
}

#[derive(Args)]
pub struct ExportSafetensorsArgs {
    /// A checkpoint written by `aka-trainer gpt`, `aka-trainer mnist` or `aka-trainer import`.
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Output directory for model.safetensors (and vocab.json for a GPT).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Sequential checkpoints: the layers (as for `import sequential`) [default: known for
    /// `aka-trainer mnist`'s models; needed for others].
    #[arg(long, value_name = "LIST")]
    layers: Option<String>,
    /// Sequential checkpoints: the input shape HxWxC.
    #[arg(long, value_name = "HxWxC", default_value = "28x28x1")]
    input: String,
}

/// `OUT/summary.json` of an import.
#[derive(Serialize)]
struct ImportSummary<'a> {
    source: String,
    config: &'a GptConfig,
    parameters: usize,
    data: String,
    seed: u64,
    export: ExportSummary,
    /// The float loss over every non-overlapping window of the validation split.
    all_windows: WindowLoss,
    command: String,
}

/// [`interop::window_val_loss`] in `summary.json`.
#[derive(Serialize)]
struct WindowLoss {
    float_val_loss: f64,
    windows: usize,
    block: usize,
}

/// `OUT/summary.json` of an `import sequential`.
#[derive(Serialize)]
struct SequentialSummary {
    source: String,
    layers: String,
    input: String,
    parameters: usize,
    /// Pixel `p` is fed as `(p / 255 - mean) / std`.
    pixel_normalization: PixelNorm,
    data: String,
    export: SequentialExport,
    command: String,
}

/// [`ExportSummary`]'s keys, plus `quantized_accuracy`.
#[derive(Serialize)]
struct SequentialExport {
    #[serde(flatten)]
    summary: ExportSummary,
    /// Percent: the accuracy of the quantized file (int8 weights: `int8_accuracy`).
    quantized_accuracy: f64,
}

pub fn import(command: ImportCommand) -> anyhow::Result<()> {
    match command {
        ImportCommand::Nanogpt(args) => import_nanogpt(args),
        ImportCommand::Sequential(args) => import_sequential(args),
    }
}

fn import_nanogpt(args: NanogptArgs) -> anyhow::Result<()> {
    args.gpt_weights().validate()?;
    let file = SafetensorsFile::read(&args.safetensors)?;
    let vocab = VocabFile::read(&args.vocab)?;
    let tokenizer = CharTokenizer::from_vocab(vocab.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.vocab.display()))?;
    let model = interop::import_gpt(&file, tokenizer.vocab_size(), args.heads)
        .with_context(|| format!("{}", args.safetensors.display()))?;
    let text = read_text(&args.data).with_context(|| format!("loading {}", args.data.display()))?;
    let missing: BTreeSet<char> = text
        .chars()
        .filter(|&c| tokenizer.id(c).is_none())
        .collect();
    if !missing.is_empty() && tokenizer.unknown_id().is_none() {
        let shown: String = missing.iter().take(20).map(|c| format!("{c:?} ")).collect();
        bail!(
            "{}: {} characters are not in the vocabulary of {}: {shown}",
            args.data.display(),
            missing.len(),
            args.vocab.display()
        );
    }
    let data = TextDataset::with_tokenizer(&text, tokenizer);
    println!("{}", model.describe());

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let meta = ExportMetadata::language_model(args.seed, command.clone());
    let eval = EvalConfig {
        seed: args.seed,
        ..EvalConfig::default()
    };
    let exported = export_gpt_weights(
        &model,
        &data,
        &CalibConfig::default(),
        &eval,
        &meta,
        &args.gpt_weights(),
    )?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let path = args
        .out
        .join(format!("model.{}", aka_trainer::export::EXTENSION));
    aka_trainer::export::write(&path, &exported.bytes)?;
    println!(
        "{}\nmodel: {} ({})",
        exported.report(),
        path.display(),
        args.gpt_weights().describe()
    );

    let block = model.config().block_size;
    let (window_loss, windows) = interop::window_val_loss(&model, &data, block);
    println!(
        "float val loss over all {windows} non-overlapping windows of the validation split: \
         {window_loss:.4}"
    );
    let checkpoint = fresh_checkpoint(&model, vocab, args.seed);
    let ck_path = args.out.join(Checkpoint::FILE);
    checkpoint.save(&ck_path)?;
    let summary = ImportSummary {
        source: args.safetensors.display().to_string(),
        config: model.config(),
        parameters: model.parameter_count(),
        data: args.data.display().to_string(),
        seed: args.seed,
        export: exported.summary(&path),
        all_windows: WindowLoss {
            float_val_loss: window_loss,
            windows,
            block: block.min(data.max_block(aka_trainer::data::text::Split::Val)),
        },
        command,
    };
    let summary_path = args.out.join("summary.json");
    aka_trainer::io::write_json(&summary_path, &summary)?;
    println!(
        "checkpoint: {} (fine-tune with `aka-trainer gpt --resume --out {}` and the same sizes)",
        ck_path.display(),
        args.out.display()
    );
    println!("summary: {}", summary_path.display());
    Ok(())
}

/// The imported model as a checkpoint at step 0 (fresh optimizer state, empty log).
fn fresh_checkpoint(model: &Gpt, vocab: Vec<char>, seed: u64) -> Checkpoint {
    let spec = ModelSpec::Gpt {
        config: model.config().clone(),
        vocab,
    };
    step0_checkpoint(model, spec, OptimizerConfig::adamw(1e-3, 0.0), seed)
}

/// `model` as a checkpoint of `spec` at step 0 (fresh `optimizer` state, empty log).
fn step0_checkpoint(
    model: &dyn Module,
    spec: ModelSpec,
    optimizer: OptimizerConfig,
    seed: u64,
) -> Checkpoint {
    let optimizer = Optimizer::new(optimizer, model.parameters());
    Checkpoint {
        format: Checkpoint::FORMAT,
        model: spec,
        step: 0,
        total_steps: 0,
        rng_state: Rng::new(seed).state(),
        params: Checkpoint::capture_params(model),
        optimizer: optimizer.state(),
        log: Log::default(),
    }
}

pub fn export_safetensors(args: ExportSafetensorsArgs) -> anyhow::Result<()> {
    let ck = Checkpoint::load(&args.checkpoint)?;
    if let ModelSpec::Sequential { pixel_norm } = &ck.model {
        return export_sequential_safetensors(&args, &ck, pixel_norm.unwrap_or(PixelNorm::NONE));
    }
    let (model, tokenizer) = ck
        .gpt()
        .with_context(|| format!("{}", args.checkpoint.display()))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let config = serde_json::to_string(model.config()).context("encoding the configuration")?;
    let metadata = HashMap::from([
        (interop::CONFIG_KEY.to_string(), config),
        ("format".to_string(), "pt".to_string()),
    ]);
    let path = args.out.join("model.safetensors");
    interop::write_safetensors(&path, &interop::gpt_tensors(&model), metadata)?;
    let vocab_path = args.out.join("vocab.json");
    let vocab = serde_json::to_string(&VocabFile::new(tokenizer.vocab()))?;
    aka_trainer::io::write_atomic(&vocab_path, vocab.as_bytes())
        .with_context(|| format!("writing {}", vocab_path.display()))?;
    println!("{}", model.describe());
    println!("wrote {} and {}", path.display(), vocab_path.display());
    Ok(())
}

fn import_sequential(args: SequentialArgs) -> anyhow::Result<()> {
    // Flags first, before anything is read.
    let flag_layers = args
        .layers
        .as_deref()
        .map(LayerSpec::parse_list)
        .transpose()?;
    let flag_input = args
        .input
        .as_deref()
        .map(parse_input)
        .transpose()
        .context("--input")?;
    if let (Some(m), Some(s)) = (args.pixel_mean, args.pixel_std) {
        super::check(m.is_finite(), "--pixel-mean", m, "must be a finite number")?;
        super::check(
            s.is_finite() && s > 0.0,
            "--pixel-std",
            s,
            "must be a finite number greater than 0",
        )?;
    }
    if let Some(p) = args.calibration_percentile {
        super::check(
            p > 50.0 && p <= 100.0,
            "--calibration-percentile",
            p,
            "must be in (50, 100]",
        )?;
    }
    let name = args.safetensors.display().to_string();
    let file = SafetensorsFile::read(&args.safetensors)?;
    let layers = match flag_layers {
        Some(l) => l,
        None => {
            let recorded = file.metadata.get(LAYERS_KEY).with_context(|| {
                format!("{name}: --layers is needed (the file does not record its layers)")
            })?;
            LayerSpec::parse_list(recorded)
                .with_context(|| format!("{name}: metadata {LAYERS_KEY}"))?
        }
    };
    let input = match (flag_input, file.metadata.get(INPUT_KEY)) {
        (Some(i), _) => i,
        (None, Some(recorded)) => {
            parse_input(recorded).with_context(|| format!("{name}: metadata {INPUT_KEY}"))?
        }
        (None, None) => [28, 28, 1],
    };
    let norm = match (args.pixel_mean, args.pixel_std) {
        (Some(mean), Some(std)) => PixelNorm { mean, std },
        _ => match recorded_pixel_norm(&file).with_context(|| name.clone())? {
            Some((mean, std)) => PixelNorm { mean, std },
            None => PixelNorm::NONE,
        },
    };
    let imported =
        interop::import_sequential(&file, &layers, input).with_context(|| name.clone())?;
    let model = imported.model;
    anyhow::ensure!(
        imported.outputs == NUM_CLASSES,
        "{name}: the model has {} outputs; an MNIST-format classifier has {NUM_CLASSES}",
        imported.outputs
    );
    let mut data = Mnist::load(&args.data)
        .with_context(|| format!("loading MNIST from {}", args.data.display()))?;
    let [h, w, c] = input;
    anyhow::ensure!(
        (data.test.rows, data.test.cols, 1) == (h, w, c),
        "--input {h}x{w}x{c}, but the images in {} are {}x{}x1",
        args.data.display(),
        data.test.rows,
        data.test.cols
    );
    data.set_norm(norm);
    println!("pixels: {norm}");
    print!("{}", model.summary(&[1, c, h, w]));

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let settings = super::mnist::ExportSettings {
        calibration: args.calibration,
        calibration_percentile: args.calibration_percentile,
        seed: args.seed,
        weights: args.weights,
        int8_layers: args.int8_layers.clone(),
    };
    let export = super::mnist::export_classifier_to(&model, &data, &args.out, &settings, &command)?;
    let export = SequentialExport {
        quantized_accuracy: export.int8_accuracy,
        summary: export,
    };

    let spec = ModelSpec::Sequential {
        pixel_norm: Some(norm),
    };
    let checkpoint = step0_checkpoint(&model, spec, OptimizerConfig::adam(1e-3), args.seed);
    let ck_path = args.out.join(Checkpoint::FILE);
    checkpoint.save(&ck_path)?;
    let summary = SequentialSummary {
        source: name,
        layers: format_layers(&layers),
        input: format!("{h}x{w}x{c}"),
        parameters: model.parameter_count(),
        pixel_normalization: norm,
        data: args.data.display().to_string(),
        export,
        command,
    };
    let summary_path = args.out.join("summary.json");
    aka_trainer::io::write_json(&summary_path, &summary)?;
    println!("checkpoint: {}", ck_path.display());
    println!("summary: {}", summary_path.display());
    Ok(())
}

/// `export-safetensors` of a Sequential checkpoint: the parameters under their `nn.Sequential`
/// names, with the layers, input shape and pixel normalization in the metadata.
fn export_sequential_safetensors(
    args: &ExportSafetensorsArgs,
    ck: &Checkpoint,
    norm: PixelNorm,
) -> anyhow::Result<()> {
    let name = args.checkpoint.display();
    let input = parse_input(&args.input).context("--input")?;
    let layers = match &args.layers {
        Some(list) => LayerSpec::parse_list(list)?,
        None => known_layers(ck).with_context(|| {
            format!(
                "{name}: not one of `aka-trainer mnist`'s models, so its layers are unknown: \
                 pass --layers"
            )
        })?,
    };
    // Check the layers against the parameters by importing them.
    let file = SafetensorsFile {
        tensors: ck
            .params
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect(),
        metadata: HashMap::new(),
    };
    let imported = interop::import_sequential(&file, &layers, input)
        .with_context(|| format!("{name} with --layers {}", format_layers(&layers)))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let path = args.out.join("model.safetensors");
    let metadata = sequential_metadata(&layers, input, norm.mean, norm.std);
    interop::write_safetensors(
        &path,
        &interop::sequential_tensors(&imported.model),
        metadata,
    )?;
    let [h, w, c] = input;
    print!("{}", imported.model.summary(&[1, c, h, w]));
    println!("layers: {}", format_layers(&layers));
    println!("pixels: {norm}");
    println!("wrote {}", path.display());
    Ok(())
}

/// The layers of a checkpoint of `aka-trainer mnist`'s MLP or CNN (matched by parameter names
/// and shapes).
fn known_layers(ck: &Checkpoint) -> Option<Vec<LayerSpec>> {
    let mut rng = Rng::new(0);
    [mnist_mlp(&mut rng), mnist_cnn(&mut rng)]
        .into_iter()
        .find(|m: &Sequential| {
            let ours = Checkpoint::capture_params(m);
            ours.len() == ck.params.len()
                && ours
                    .iter()
                    .zip(&ck.params)
                    .all(|(a, b)| a.name == b.name && a.shape == b.shape)
        })
        .map(|m| interop::infer_layers(&m))
}
