//! `aka-trainer gpt`: train a character-level GPT on a text file (default: the bundled
//! tinyshakespeare), nanoGPT's `shakespeare_char` recipe scaled for a laptop CPU.
//!
//! Writes `OUT/checkpoint.bin` (config, vocabulary, weights, optimizer state; reload with
//! `aka_trainer::train::language_model::load_trained(OUT)`), `OUT/chart.svg`, the int8 model for
//! aka-core `OUT/model.aka` (`export::gpt::export_gpt`; skip with `--no-export`) and
//! `OUT/summary.json` (the export's figures under `export`, the same keys as `aka-trainer mnist`
//! plus the GPT's).
//!
//! `--weights int4` makes the projections (and an untied head) int4, the embeddings stay int8;
//! `--int8-matrices` keeps some roles int8; `--qat-steps N` adds N quantization-aware steps
//! (PTQ and QAT figures side by side in `summary.json` under `qat`).

use std::path::PathBuf;
use std::time::Instant;

use aka_core::rng::Rng;
use aka_trainer::data::text::TextDataset;
use aka_trainer::export::gpt::{export_gpt_weights, CalibConfig, EvalConfig, GptWeights};
use aka_trainer::export::quantize::WeightBits;
use aka_trainer::export::{ExportMetadata, ExportSummary};
use aka_trainer::gpt::{generate, Gpt, GptConfig, GptMlp, GptNorm, GptPosition, Sampling};
use aka_trainer::nn::Module;
use aka_trainer::train::language_model::{
    evaluate, load_trained, train_gpt, validation_batches, GptHistory, GptTrainConfig, SampleConfig,
};
use aka_trainer::train::{Progress, QatSteps};
use anyhow::Context as _;
use serde::Serialize;

/// A clap parser for one of core's variant enums (`GptPosition`, `GptNorm`, `GptMlp`): `--help`
/// lists the names, and a bad name is rejected with them.
macro_rules! variant_parser {
    ($ty:ty) => {
        clap::builder::TypedValueParser::try_map(
            clap::builder::PossibleValuesParser::new(<$ty>::NAMES),
            |name: String| name.parse::<$ty>(),
        )
    };
}

/// Arguments of `aka-trainer gpt`.
#[derive(clap::Args)]
pub struct GptArgs {
    /// Transformer blocks.
    #[arg(long, value_parser = super::at_least_1(), default_value_t = 2)]
    layers: usize,
    /// Attention heads per block (must divide --dim).
    #[arg(long, value_parser = super::at_least_1(), default_value_t = 4)]
    heads: usize,
    /// Model width.
    #[arg(long, value_parser = super::at_least_1(), default_value_t = 64)]
    dim: usize,
    /// Context length in characters.
    #[arg(long, value_parser = super::at_least_1(), default_value_t = 64)]
    block: usize,
    /// Optimizer steps.
    #[arg(long, value_parser = super::at_least_1(), default_value_t = 2000)]
    steps: usize,
    /// Sequences per step.
    #[arg(long, value_parser = super::at_least_1(), default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (warmup, then cosine decay to lr/10). 3e-3 by measurement
    /// (docs/RESULTS.md, recipe sweep): 1.80 against 1e-3's 1.97 on the default model at 2,000
    /// steps, 1.78 against 1.91 on nanoGPT's CPU config.
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Final learning rate of the cosine decay, as a fraction of --lr.
    #[arg(long, default_value_t = 0.1)]
    min_lr_ratio: f32,
    /// AdamW weight decay (matrices and embeddings only).
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f32,
    /// AdamW beta2 (nanoGPT's shakespeare_char value; beta1 is 0.9).
    #[arg(long, default_value_t = 0.99)]
    beta2: f32,
    /// Seeds initialisation, batches, dropout, validation batches and the sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// UTF-8 text file to train on (first 90% train, last 10% validation).
    #[arg(long, default_value_os_t = default_data())]
    data: PathBuf,
    /// Keep the N-1 most frequent chars plus an unknown token [default: all chars].
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..))]
    max_vocab: Option<usize>,
    /// Position encoding.
    #[arg(long, default_value = "learned", value_parser = variant_parser!(GptPosition))]
    position: GptPosition,
    /// Normalisation.
    #[arg(long, default_value = "layernorm", value_parser = variant_parser!(GptNorm))]
    norm: GptNorm,
    /// Feed-forward variant (hidden width 4·dim).
    #[arg(long, default_value = "gelu", value_parser = variant_parser!(GptMlp))]
    mlp: GptMlp,
    /// Use a separate output head instead of the token embedding.
    #[arg(long)]
    untied: bool,
    /// Dropout probability while training.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Evaluate, chart and checkpoint every N steps (and at the end).
    #[arg(long, value_parser = super::at_least_1(), default_value_t = 250)]
    eval_interval: usize,
    /// Validation batches per evaluation.
    #[arg(long, default_value_t = 20)]
    eval_batches: usize,
    /// Output directory for the checkpoint, chart and summary.
    #[arg(long, default_value = "runs/gpt")]
    out: PathBuf,
    /// Continue from OUT/checkpoint.bin.
    #[arg(long)]
    resume: bool,
    /// Do not train: evaluate OUT/checkpoint.bin on --eval-batches validation batches (drawn
    /// with --seed) and generate a sample.
    #[arg(long)]
    eval_only: bool,
    /// Do not quantize and export OUT/model.aka after training.
    #[arg(long)]
    no_export: bool,
    /// Worker threads [default: all cores].
    #[arg(long, value_parser = super::threads())]
    threads: Option<usize>,
    /// Prompt of the sample printed at the end.
    #[arg(long, default_value = "\n")]
    prompt: String,
    /// Characters to generate at the end (0: no sample).
    #[arg(long, default_value_t = 200)]
    sample_chars: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Sample among the K most likely characters (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Refuse a run whose estimated training memory (parameters, optimizer state, activations
    /// and gradients) exceeds this many GiB [default: the machine's physical memory].
    #[arg(long, value_name = "GIB", value_parser = clap::value_parser!(u64).range(1..))]
    max_memory_gib: Option<u64>,
    /// Weight precision of the exported projections (wq wk wv wo w1 w2 w3, an untied head):
    /// int8, or int4 (packed, one scale per output row). The embeddings, and so a tied head,
    /// stay int8.
    #[arg(long, value_enum, default_value = "int8")]
    weights: WeightBits,
    /// Matrices kept int8 with `--weights int4`, by role in every block (`wq,wk,wv,wo,w1,w2,w3,
    /// lm_head`), e.g. `w2`.
    #[arg(long, value_delimiter = ',', value_name = "ROLE,...")]
    int8_matrices: Vec<String>,
    /// Write the int8 matrices as plain int8 rows instead of the default offset-binary layout
    /// (`int8-offset`: the same values and results, a faster Cortex-M4 kernel, 4 bytes more per
    /// row; used for matrices whose column count is a multiple of 8).
    #[arg(long)]
    plain_int8: bool,
    /// Quantization-aware fine-tuning: N more steps after --steps at the schedule's final
    /// learning rate, with the matrices fake-quantized exactly as exported and
    /// straight-through gradients. Prints and records the PTQ figures next to the final ones.
    #[arg(long, default_value_t = 0, value_name = "N")]
    qat_steps: usize,
    /// Context of the exported file, in tokens (1..=--block; default --block): a shorter KV
    /// cache for a board with less RAM (the cache is 2·layers·context·dim bytes). The file's
    /// float and quantized validation losses are measured at this context.
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u64).range(1..))]
    export_block: Option<u64>,
}

/// Post-training quantization next to quantization-aware training, in `summary.json`.
#[derive(Serialize)]
struct QatSummary {
    steps: usize,
    /// The float model after --steps (before QAT), on the export's validation batches.
    ptq_float_val_loss: f64,
    /// That model quantized directly (PTQ), as run by aka-core.
    ptq_quantized_val_loss: f64,
    /// The file exported after QAT (also `export.quantized_val_loss`).
    qat_quantized_val_loss: f64,
}

/// `data/tinyshakespeare/input.txt` of this checkout, wherever cargo is run from.
pub fn default_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/tinyshakespeare/input.txt")
}

/// JSON summary written next to the checkpoint.
#[derive(Serialize)]
struct Summary<'a> {
    config: &'a GptConfig,
    parameters: usize,
    data: String,
    steps: usize,
    batch_size: usize,
    lr: f32,
    warmup: usize,
    min_lr_ratio: f32,
    weight_decay: f32,
    beta2: f32,
    seed: u64,
    threads: usize,
    final_val_loss: Option<f32>,
    val_loss: &'a [(usize, f32)],
    final_train_loss: Option<f32>,
    ms_per_step: f64,
    train_seconds: f64,
    wall_seconds: f64,
    sample_prompt: &'a str,
    sample: Option<&'a str>,
    /// The export's figures (`None` with --no-export).
    export: Option<ExportSummary>,
    /// PTQ vs QAT (with `--qat-steps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    qat: Option<QatSummary>,
    command: String,
}

impl GptArgs {
    /// Which matrices the export makes int4.
    fn gpt_weights(&self) -> GptWeights {
        GptWeights {
            weights: self.weights,
            int8: self.int8_matrices.clone(),
            plain_int8: self.plain_int8,
        }
    }

    /// The model the flags ask for, with `vocab_size` tokens.
    fn config(&self, vocab_size: usize) -> GptConfig {
        GptConfig {
            dropout: self.dropout,
            ..GptConfig::sized(self.layers, self.heads, self.dim, self.block, vocab_size).variant(
                self.position,
                self.norm,
                self.mlp,
                !self.untied,
            )
        }
    }

    /// Checks every flag that clap's value parsers do not (cross-field rules, floats, the memory
    /// estimate with the smallest vocabulary the data could give), before anything is read.
    fn validate(&self) -> anyhow::Result<()> {
        use super::check;
        self.gpt_weights().validate()?;
        check(
            self.dim.is_multiple_of(self.heads),
            "--heads",
            self.heads,
            &format!("must divide --dim {}", self.dim),
        )?;
        check(
            self.position != GptPosition::Rope || (self.dim / self.heads).is_multiple_of(2),
            "--dim",
            self.dim,
            &format!(
                "--position rope needs an even head width, and --dim / --heads = {} / {} = {}",
                self.dim,
                self.heads,
                self.dim / self.heads
            ),
        )?;
        super::check_lr(self.lr)?;
        if let Some(b) = self.export_block {
            check(
                b <= self.block as u64,
                "--export-block",
                b,
                &format!("must be at most --block {}", self.block),
            )?;
        }
        check(
            (0.0..=1.0).contains(&self.min_lr_ratio),
            "--min-lr-ratio",
            self.min_lr_ratio,
            "must be in [0, 1]",
        )?;
        check(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "--weight-decay",
            self.weight_decay,
            "must be a finite number of at least 0",
        )?;
        check(
            (0.0..1.0).contains(&self.beta2),
            "--beta2",
            self.beta2,
            "must be in [0, 1)",
        )?;
        check(
            (0.0..1.0).contains(&self.dropout),
            "--dropout",
            self.dropout,
            "must be in [0, 1)",
        )?;
        check(
            self.temperature.is_finite() && self.temperature >= 0.0,
            "--temperature",
            self.temperature,
            "must be a finite number of at least 0 (0: greedy)",
        )?;
        if self.eval_only {
            check(
                self.eval_batches >= 1,
                "--eval-batches",
                self.eval_batches,
                "--eval-only needs at least 1 validation batch",
            )?;
        } else {
            // The vocabulary is at least 1 token (at most --max-vocab): a lower bound for now,
            // checked again with the data's.
            let vocab = self.max_vocab.unwrap_or(1);
            self.check_memory(&self.config(vocab), self.batch_size, false)?;
        }
        Ok(())
    }

    /// Refuses `config` trained on batches of `batch` (`vocab_known`: `config.vocab_size` is the
    /// data's, not a lower bound) when [`training_bytes`] exceeds
    /// `--max-memory-gib` (default: the machine's physical memory). With `--eval-only` the sizes
    /// are the checkpoint's and only `--batch-size` can be reduced (the estimate, for training,
    /// is above what evaluation needs).
    fn check_memory(
        &self,
        config: &GptConfig,
        batch: usize,
        vocab_known: bool,
    ) -> anyhow::Result<()> {
        let limit = match self.max_memory_gib {
            Some(g) => g as f64 * (1u64 << 30) as f64,
            None => match super::physical_memory() {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        let need = training_bytes(config, batch);
        let (sizes, reduce) = if self.eval_only {
            ("the checkpoint's model, ", "--batch-size")
        } else {
            ("", "--block, --batch-size or --dim")
        };
        anyhow::ensure!(
            need <= limit,
            "{sizes}--layers {} --heads {} --dim {} --block {} --batch-size {} (vocab {}{}) needs \
             about {} of memory, more than the {} allowed: reduce {reduce}, or raise \
             --max-memory-gib",
            config.n_layer,
            config.n_head,
            config.d_model,
            config.block_size,
            batch,
            if vocab_known { "" } else { "at least " },
            config.vocab_size,
            super::gib(need),
            super::gib(limit)
        );
        Ok(())
    }
}

/// A rough upper estimate, in bytes, of the memory that training `config` on batches of `batch`
/// sequences takes: parameters with their gradients and AdamW's two moments, plus every block's
/// saved activations and their gradients (the `[batch, heads, block, block]` attention maps
/// among them) and the logits. In `f64`, so that absurd sizes do not overflow.
pub fn training_bytes(config: &GptConfig, batch: usize) -> f64 {
    let (l, h, d) = (
        config.n_layer as f64,
        config.n_head as f64,
        config.d_model as f64,
    );
    let (t, v, b) = (
        config.block_size as f64,
        config.vocab_size as f64,
        batch as f64,
    );
    let heads = if config.tied_head { 1.0 } else { 2.0 };
    let position = if config.position == GptPosition::Learned {
        t * d
    } else {
        0.0
    };
    // Attention 4·d², the widest MLP (SwiGLU) 3·4·d², norms and biases.
    let parameters = heads * v * d + position + l * (16.0 * d * d + 16.0 * d);
    // Activations and their gradients at the peak. Measured peak RSS (debug build, `--steps 2`)
    // against this estimate: 1.2 / 1.8 GiB for `--layers 4 --dim 256 --heads 8 --block 256
    // --batch-size 32`; 1.0 / 2.4 GiB for `--layers 2 --dim 128 --block 1024 --batch-size 16`,
    // 1.8 / 2.4 GiB with `--dropout 0.1 --mlp swiglu --untied`.
    let per_block = 24.0 * b * t * d + 4.0 * b * h * t * t;
    let floats = 4.0 * parameters + l * per_block + 3.0 * b * t * v;
    4.0 * floats
}

/// Runs `aka-trainer gpt`.
pub fn run(args: GptArgs) -> anyhow::Result<()> {
    args.validate()?;
    aka_trainer::set_threads(args.threads)?;
    let wall = Instant::now();
    let data = TextDataset::load_with_max_vocab(&args.data, args.max_vocab)
        .with_context(|| format!("loading {}", args.data.display()))?;
    if args.eval_only {
        return eval_only(&args, &data);
    }
    let train_tokens = data.split(aka_trainer::data::Split::Train).len();
    super::check(
        args.block <= data.max_block(aka_trainer::data::Split::Train),
        "--block",
        args.block,
        &format!(
            "the training split of {} has {train_tokens} tokens, too few for blocks of {} \
             (at most {})",
            args.data.display(),
            args.block,
            data.max_block(aka_trainer::data::Split::Train)
        ),
    )?;
    let vocab_size = data.tokenizer().vocab_size();
    let config = args.config(vocab_size);
    config.validate()?;
    args.check_memory(&config, args.batch_size, true)?;
    let model = Gpt::new(config.clone(), &mut Rng::new(args.seed));
    println!(
        "data: {} ({} train / {} val tokens, vocab {})",
        args.data.display(),
        data.split(aka_trainer::data::Split::Train).len(),
        data.split(aka_trainer::data::Split::Val).len(),
        data.tokenizer().vocab_size()
    );
    println!("{}", model.describe());
    println!(
        "threads: {}, steps: {}, batch {} x {}, lr {} (warmup {}, cosine to lr/10)",
        rayon::current_num_threads(),
        args.steps,
        args.batch_size,
        args.block,
        args.lr,
        args.warmup
    );

    let train_config = GptTrainConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        lr: args.lr,
        warmup_steps: args.warmup,
        min_lr_ratio: args.min_lr_ratio,
        weight_decay: args.weight_decay,
        beta2: args.beta2,
        seed: args.seed,
        eval_interval: args.eval_interval,
        eval_batches: args.eval_batches,
        out_dir: Some(args.out.clone()),
        resume: args.resume,
        progress: Progress::Auto,
        sample: (args.sample_chars > 0).then(|| SampleConfig {
            prompt: args.prompt.clone(),
            tokens: args.sample_chars,
            sampling: Sampling::new(args.temperature, args.top_k),
            seed: args.seed,
        }),
        ..GptTrainConfig::default()
    };
    let mut history: GptHistory = train_gpt(&model, &data, &train_config)?;

    // ---- export: calibrate, quantize, check with aka-core, write OUT/model.aka -----------------
    let weights = args.gpt_weights();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let meta = ExportMetadata::language_model(args.seed, command);
    // The file's float and quantized losses on the training's own validation batches (the
    // --eval-batches seeded batches of --batch-size), at the exported context.
    let eval = EvalConfig {
        batches: args.eval_batches.max(1),
        batch_size: args.batch_size,
        seed: args.seed,
    };
    let export_now = || {
        // The exported context (`--export-block`, default the trained one): shares the tensors.
        let deployed = model.with_context(args.export_block.map_or(args.block, |b| b as usize))?;
        export_gpt_weights(
            &deployed,
            &data,
            &CalibConfig::default(),
            &eval,
            &meta,
            &weights,
        )
    };
    let mut ptq = None;
    if args.qat_steps > 0 {
        if !args.no_export {
            let e = export_now()?;
            println!(
                "PTQ ({}): float val loss {:.4}, quantized {:.4} (aka-core)",
                weights.describe(),
                e.float.loss(),
                e.int8.loss()
            );
            ptq = Some((e.float.loss(), e.int8.loss()));
        }
        println!(
            "QAT: {} steps with the matrices fake-quantized ({})",
            args.qat_steps,
            weights.describe()
        );
        let qat = GptTrainConfig {
            resume: true,
            sample: None,
            qat: Some(QatSteps {
                steps: args.qat_steps,
                weights: weights.plan(&model),
                lr_scale: 1.0,
            }),
            ..train_config
        };
        let after = train_gpt(&model, &data, &qat)?;
        history = GptHistory {
            sample: history.sample.take(),
            ..after
        };
    }
    let export = if args.no_export {
        None
    } else {
        let exported = export_now()?;
        let path = args
            .out
            .join(format!("model.{}", aka_trainer::export::EXTENSION));
        aka_trainer::export::write(&path, &exported.bytes)?;
        println!("{}\nmodel: {}", exported.report(), path.display());
        Some(exported)
    };
    let qat = match (&export, ptq) {
        (Some(e), Some((float, quantized))) => {
            println!(
                "PTQ vs QAT ({}): float {float:.4}, PTQ {quantized:.4}, QAT {:.4} (val loss)",
                weights.describe(),
                e.int8.loss()
            );
            Some(QatSummary {
                steps: args.qat_steps,
                ptq_float_val_loss: float,
                ptq_quantized_val_loss: quantized,
                qat_quantized_val_loss: e.int8.loss(),
            })
        }
        _ => None,
    };
    let export = export.map(|e| {
        e.summary(
            &args
                .out
                .join(format!("model.{}", aka_trainer::export::EXTENSION)),
        )
    });

    let summary = Summary {
        config: &config,
        parameters: model.parameter_count(),
        data: args.data.display().to_string(),
        steps: args.steps,
        batch_size: args.batch_size,
        lr: args.lr,
        warmup: args.warmup,
        min_lr_ratio: args.min_lr_ratio,
        weight_decay: args.weight_decay,
        beta2: args.beta2,
        seed: args.seed,
        threads: rayon::current_num_threads(),
        final_val_loss: history.final_val_loss(),
        val_loss: &history.val_loss,
        final_train_loss: history.train_loss.last().copied(),
        ms_per_step: history.ms_per_step(),
        train_seconds: history.train_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        sample_prompt: &args.prompt,
        sample: history.sample.as_deref(),
        export,
        qat,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let summary_path = args.out.join("summary.json");
    aka_trainer::io::write_json(&summary_path, &summary)?;
    println!(
        "final val loss {}, {:.1} ms/step, wall {:.1}s",
        history
            .final_val_loss()
            .map_or("n/a".into(), |l| format!("{l:.4}")),
        history.ms_per_step(),
        summary.wall_seconds
    );
    println!(
        "checkpoint: {}",
        args.out
            .join(aka_trainer::train::Checkpoint::FILE)
            .display()
    );
    println!("summary: {}", summary_path.display());
    Ok(())
}

/// `--eval-only`: validation loss and a sample from a trained checkpoint.
fn eval_only(args: &GptArgs, data: &TextDataset) -> anyhow::Result<()> {
    let (model, tokenizer, ck) = load_trained(&args.out)?;
    anyhow::ensure!(
        tokenizer == *data.tokenizer(),
        "{}: the checkpoint's vocabulary differs from {}'s",
        args.out.display(),
        args.data.display()
    );
    args.check_memory(model.config(), args.batch_size, true)?;
    println!("{} (step {})", model.describe(), ck.step);
    let block = model.config().block_size;
    let (batches, block) =
        validation_batches(data, args.batch_size, block, args.eval_batches, args.seed);
    let start = Instant::now();
    let loss = evaluate(&model, &batches, args.batch_size, block);
    println!(
        "val loss {loss:.4} over {} batches of {} x {block} (seed {}, {:.1}s)",
        batches.len(),
        args.batch_size,
        args.seed,
        start.elapsed().as_secs_f64()
    );
    if args.sample_chars > 0 {
        let text = generate(
            &model,
            &tokenizer,
            &args.prompt,
            args.sample_chars,
            Sampling::new(args.temperature, args.top_k),
            args.seed,
        );
        println!("{}{}", args.prompt, text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate leaves the default run, and nanoGPT's shakespeare_char size, well inside a
    /// laptop's memory, and grows with the attention maps' `block²`.
    #[test]
    fn training_estimate_is_sane() {
        let gib = |c: &GptConfig, b| training_bytes(c, b) / (1u64 << 30) as f64;
        let default = GptConfig::sized(2, 4, 64, 64, 65);
        assert!(gib(&default, 32) < 0.5, "{}", gib(&default, 32));
        let nano = GptConfig::sized(6, 6, 384, 256, 65);
        assert!(gib(&nano, 64) < 16.0, "{}", gib(&nano, 64));
        let long = GptConfig::sized(2, 4, 64, 1_000_000_000, 65);
        assert!(gib(&long, 32) > 1e9);
        assert!(training_bytes(&long, 32).is_finite());
    }
}
