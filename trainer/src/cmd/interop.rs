//! `aka-trainer import nanogpt` and `aka-trainer export-safetensors`: GPTs to and from PyTorch
//! through `safetensors` files in nanoGPT's layout (see [`aka_trainer::interop`]).
//!
//! An imported model goes through the same exporter and evaluation as a trained one: it writes
//! `OUT/model.aka` (int8, calibrated on the data), `OUT/checkpoint.bin` (the float model at step
//! 0, which `aka-trainer gpt --resume` fine-tunes with the same sizes) and `OUT/summary.json`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use aka_core::rng::Rng;
use aka_trainer::data::text::{read_text, CharTokenizer, TextDataset};
use aka_trainer::export::gpt::{export_gpt, CalibConfig, EvalConfig};
use aka_trainer::export::{ExportMetadata, ExportSummary};
use aka_trainer::gpt::{Gpt, GptConfig};
use aka_trainer::interop::{self, SafetensorsFile, VocabFile};
use aka_trainer::nn::Module as _;
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
    /// Output directory for model.aka, checkpoint.bin and summary.json.
    #[arg(long, default_value = "runs/import")]
    out: PathBuf,
}

#[derive(Args)]
pub struct ExportSafetensorsArgs {
    /// A GPT checkpoint written by `aka-trainer gpt`.
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// Output directory for model.safetensors and vocab.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
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
    command: String,
}

pub fn import(command: ImportCommand) -> anyhow::Result<()> {
    match command {
        ImportCommand::Nanogpt(args) => import_nanogpt(args),
    }
}

fn import_nanogpt(args: NanogptArgs) -> anyhow::Result<()> {
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
    let exported = export_gpt(&model, &data, &CalibConfig::default(), &eval, &meta)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let path = args
        .out
        .join(format!("model.{}", aka_trainer::export::EXTENSION));
    aka_trainer::export::write(&path, &exported.bytes)?;
    println!("{}\nint8 model: {}", exported.report(), path.display());

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
    let optimizer = Optimizer::new(OptimizerConfig::adamw(1e-3, 0.0), model.parameters());
    Checkpoint {
        format: Checkpoint::FORMAT,
        model: ModelSpec::Gpt {
            config: model.config().clone(),
            vocab,
        },
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
    let (model, tokenizer) = ck.gpt().with_context(|| {
        format!(
            "{}: only GPT checkpoints are exported",
            args.checkpoint.display()
        )
    })?;
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
