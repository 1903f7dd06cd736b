//! The `aka` command line: inspect model files and run them on the host with aka-core.
//!
//! ```text
//! aka inspect runs/mnist-mlp/model.aka
//! aka run runs/mnist-mlp/model.aka --mnist-index 0          # bundled MNIST test set
//! aka run runs/mnist-mlp/model.aka --image digit.png [--invert]
//! aka inspect firmware/models/gpt.aka
//! aka inspect --board nrf52840 firmware/models/gpt.aka [--json]   # fits? (see aka_tools::budget)
//! aka run firmware/models/gpt.aka --prompt "ROMEO:" --tokens 200 --temperature 0.8 --top-k 40 --seed 1
//! aka chat --qemu --tokens 50                                # the `chat` firmware (see aka_tools::chat)
//! ```
//!
//! `run` on a GPT model streams the prompt and then each generated char to stdout as it is
//! produced (flushed per token; one newline at the end), and prints tokens/s on stderr. The
//! defaults (prompt "ROMEO:", 100 tokens, temperature 0.8, top-k 40, seed 1) are the firmware's
//! (`firmware/src/app/gpt.rs`), and so is the loop (see `aka_tools::generate`), so the host
//! prints the text a device prints. `--temperature 0` is greedy (argmax).
//!
//! Errors (unreadable or invalid files, bad arguments) are printed as `error: ...` on stderr with
//! exit status 1 (2 for command-line usage errors); the tool does not panic on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aka_tools::input::{self, looks_inverted};
use aka_tools::limits::{self, Limits};
use aka_tools::model::{self, Model};
use aka_tools::{budget, inspect, run};
use clap::{ArgGroup, Args, Parser, Subcommand};

/// Inspect and run aka model files (`*.aka`, written by `aka-trainer`).
#[derive(Parser)]
#[command(name = "aka", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The caps on what one command reads, allocates and runs (model files are untrusted).
#[derive(Args)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// Largest model file read, in MiB.
    #[arg(long, global = true, value_name = "MIB", default_value_t = limits::DEFAULT_MAX_FILE_MIB)]
    max_file_mib: u64,
    /// Largest arena (sequential models) or run state (GPT) allocated by `run`, in MiB.
    #[arg(long, global = true, value_name = "MIB", default_value_t = limits::DEFAULT_MAX_ARENA_MIB)]
    max_arena_mib: u64,
    /// Most operations (MACs + element operations) a model may declare per inference (per token
    /// for a GPT) for `run`.
    #[arg(long, global = true, value_name = "N", default_value_t = limits::DEFAULT_MAX_OPS)]
    max_ops: u64,
    /// Largest `--image` decoded by `run`, in millions of pixels (checked from the file header).
    #[arg(long, global = true, value_name = "MPIX", default_value_t = limits::DEFAULT_MAX_IMAGE_MPIX)]
    max_image_mpix: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's layers, shapes, parameters, flash and arena bytes, and metadata.
    ///
    /// With --board (or --flash and --ram): also whether it fits that board with the firmware,
    /// flash (runtime code + model + data) and RAM (model state and KV cache + the firmware's
    /// other statics + the stack high-water mark), with the margins or by how much it is over;
    /// exit status 1 if it does not fit.
    Inspect(InspectArgs),
    /// Run a model with aka-core on the host: classify one image (sequential models) or
    /// generate text (GPT models).
    Run(RunArgs),
    /// Talk to the `chat` firmware over its serial line: in QEMU (--qemu) or on a board
    /// (--serial PORT). Each line of stdin is a prompt or a /command.
    Chat(aka_tools::chat::ChatArgs),
}

#[derive(Args)]
#[command(group(ArgGroup::new("target").args(["board", "flash"])))]
struct InspectArgs {
    /// Model file.
    file: PathBuf,
    /// Budget the model on this board (its flash and RAM are those of firmware/memory/BOARD.x).
    #[arg(long, value_name = "BOARD", value_parser = ["nrf52840", "stm32f411", "qemu"],
          conflicts_with_all = ["flash", "ram"])]
    board: Option<String>,
    /// Budget the model on another board with this much flash: bytes, or with K/KiB or M/MiB
    /// (e.g. 1M). Needs --ram. The firmware figures are the nrf52840 build's.
    #[arg(long, value_name = "BYTES", value_parser = budget::parse_bytes, requires = "ram")]
    flash: Option<u64>,
    /// The other board's RAM (see --flash).
    #[arg(long, value_name = "BYTES", value_parser = budget::parse_bytes, requires = "flash")]
    ram: Option<u64>,
    /// Take the runtime code and static RAM from this built firmware ELF (the `gpt` or `mnist`
    /// binary, e.g. firmware/target/thumbv7em-none-eabihf/release/gpt) instead of the figures
    /// recorded in firmware/budgets.json.
    #[arg(long, value_name = "ELF", requires = "target")]
    elf: Option<PathBuf>,
    /// Print the budget as one JSON object (fits, flash, ram, eval) instead of text.
    #[arg(long, requires = "target")]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Model file.
    file: PathBuf,
    #[command(flatten)]
    sequential: SequentialArgs,
    #[command(flatten)]
    gpt: GptArgs,
}

/// The flags of `run` on a sequential (MNIST) model.
#[derive(Args)]
#[command(next_help_heading = "Sequential (MNIST) models")]
struct SequentialArgs {
    /// PNG or PGM/PPM image of any size: converted to grey (alpha over black) and resized to
    /// the model input by area averaging. MNIST digits are white on black.
    #[arg(long, value_name = "PATH", conflicts_with = "mnist_index")]
    image: Option<PathBuf>,
    /// Invert the image (255 - p), for a dark digit on a light background.
    #[arg(long, requires = "image")]
    invert: bool,
    /// Use image N of the MNIST-format test set in --data.
    #[arg(long, value_name = "N")]
    mnist_index: Option<usize>,
    /// Directory with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]
    /// [default: data/mnist of this checkout].
    #[arg(long, value_name = "DIR", requires = "mnist_index")]
    data: Option<PathBuf>,
}

/// The flags of `run` on a GPT model.
#[derive(Args)]
#[command(next_help_heading = "GPT models")]
struct GptArgs {
    /// Text to start from (printed first) [default: "ROMEO:", the firmware's].
    #[arg(long, value_name = "TEXT")]
    prompt: Option<String>,
    /// Number of tokens (chars) to generate after the prompt [default: 100, the firmware's].
    #[arg(long, value_name = "N")]
    tokens: Option<usize>,
    /// Softmax temperature, >= 0; 0 = greedy (argmax) [default: 0.8].
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Sample among the K most likely tokens; 0 = all, 1 = greedy [default: 40].
    #[arg(long, value_name = "K")]
    top_k: Option<u32>,
    /// Seed of the sampling RNG (aka-core's SplitMix64) [default: 1].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

impl SequentialArgs {
    /// The flags given.
    fn given(&self) -> Vec<&'static str> {
        let flags = [
            (self.image.is_some(), "--image"),
            (self.invert, "--invert"),
            (self.mnist_index.is_some(), "--mnist-index"),
            (self.data.is_some(), "--data"),
        ];
        flags.into_iter().filter(|f| f.0).map(|f| f.1).collect()
    }
}

impl GptArgs {
    /// The flags given.
    fn given(&self) -> Vec<&'static str> {
        let flags = [
            (self.prompt.is_some(), "--prompt"),
            (self.tokens.is_some(), "--tokens"),
            (self.temperature.is_some(), "--temperature"),
            (self.top_k.is_some(), "--top-k"),
            (self.seed.is_some(), "--seed"),
        ];
        flags.into_iter().filter(|f| f.0).map(|f| f.1).collect()
    }
}

/// A command-line usage error found after parsing (exit status 2, like clap's own).
fn usage_error(kind: clap::error::ErrorKind, message: String) -> ! {
    use clap::CommandFactory as _;
    Cli::command().error(kind, message).exit()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limits = Limits {
        max_file_mib: cli.limits.max_file_mib,
        max_arena_mib: cli.limits.max_arena_mib,
        max_ops: cli.limits.max_ops,
        max_image_mpix: cli.limits.max_image_mpix,
    };
    let result = match cli.command {
        Command::Inspect(args) => cmd_inspect(&args, &limits),
        Command::Run(args) => cmd_run(&args, &limits),
        Command::Chat(args) => aka_tools::chat::run(&args, limits.max_file_bytes()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

fn cmd_inspect(args: &InspectArgs, limits: &Limits) -> anyhow::Result<()> {
    let file = &args.file;
    let model = model::open(file, limits.max_file_bytes())?;
    let name = display_name(file);
    let board = match (&args.board, args.flash, args.ram) {
        (Some(b), _, _) => Some(budget::board(b)?),
        (None, Some(flash), Some(ram)) => Some(budget::Board {
            name: "custom",
            flash,
            ram,
        }),
        _ => None,
    };
    let Some(board) = board else {
        print!("{}", inspect::describe(&model, &name));
        return Ok(());
    };
    let firmware = budget::firmware_for(&model, board.name, args.elf.as_deref())?;
    let file_bytes = std::fs::metadata(file)
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
        .len();
    let b = budget::Budget::new(&model, file_bytes, board, firmware);
    if args.json {
        println!("{}", b.json(&name, budget::eval_json(&model)));
    } else {
        print!("{}", inspect::describe(&model, &name));
        println!();
        print!("{}", b.text());
    }
    if !b.fits() {
        anyhow::bail!("{name}: {}", b.verdict());
    }
    Ok(())
}

fn cmd_run(args: &RunArgs, limits: &Limits) -> anyhow::Result<()> {
    let model = model::open(&args.file, limits.max_file_bytes())?;
    let (given, other) = match &model {
        Model::Sequential(_) => (args.gpt.given(), "--image PATH or --mnist-index N"),
        Model::Gpt(_) => (
            args.sequential.given(),
            "--prompt, --tokens, --temperature, --top-k, --seed",
        ),
    };
    if !given.is_empty() {
        usage_error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "{} cannot be used with {}: it is a {} (its flags: {other})",
                given.join(", "),
                args.file.display(),
                model.kind()
            ),
        );
    }
    limits.check_run(&model, &display_name(&args.file))?;
    match &model {
        Model::Sequential(m) => run_sequential(m, args, limits),
        Model::Gpt(m) => run_gpt(m, args),
    }
}

fn run_gpt(m: &aka_core::gpt::GptModel<'_>, args: &RunArgs) -> anyhow::Result<()> {
    use aka_tools::generate::{self, Settings};
    use std::io::Write as _;
    let d = Settings::default();
    let settings = Settings {
        prompt: args.gpt.prompt.clone().unwrap_or(d.prompt),
        tokens: args.gpt.tokens.unwrap_or(d.tokens),
        sampling: aka_core::sample::Sampling {
            temperature: args.gpt.temperature.unwrap_or(d.sampling.temperature),
            top_k: args.gpt.top_k.unwrap_or(d.sampling.top_k),
        },
        seed: args.gpt.seed.unwrap_or(d.seed),
    };
    if m.unknown_id().is_some() {
        let unknown: String = settings
            .prompt
            .chars()
            .filter(|&c| m.char_id(c).is_none())
            .collect();
        if !unknown.is_empty() {
            eprintln!("note: {unknown:?} not in the vocabulary: fed as the unknown token");
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_error = None;
    let stats = generate::generate(m, &settings, |s| {
        match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                write_error = Some(e);
                false
            }
        }
    })?;
    match write_error {
        // A closed pipe (`aka run ... | head`) just ends the output.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Some(e) => anyhow::bail!("writing to stdout: {e}"),
        None => {}
    }
    let _ = writeln!(out);
    let _ = out.flush();
    eprintln!(
        "{} tokens in {:.3} s on the host: {:.1} tokens/s (prompt: {} tokens, {:.1} ms; seed {}, temperature {}, top-k {})",
        stats.tokens,
        (stats.prefill + stats.decode).as_secs_f64(),
        stats.tokens_per_second(),
        stats.prompt_tokens,
        stats.prefill.as_secs_f64() * 1e3,
        settings.seed,
        settings.sampling.temperature,
        settings.sampling.top_k
    );
    Ok(())
}

fn run_sequential(
    m: &aka_core::SequentialModel<'_>,
    args: &RunArgs,
    limits: &Limits,
) -> anyhow::Result<()> {
    let (img, truth, source) = match (&args.sequential.image, args.sequential.mnist_index) {
        (Some(path), _) => {
            let mut img = input::read_image(path, limits.max_image_pixels())?;
            if args.sequential.invert {
                img.invert();
            } else if looks_inverted(&img) {
                eprintln!(
                    "note: {} looks dark-on-light; MNIST digits are white on black (try --invert)",
                    path.display()
                );
            }
            let source = format!(
                "{} ({}x{}{})",
                path.display(),
                img.width,
                img.height,
                if args.sequential.invert {
                    ", inverted"
                } else {
                    ""
                }
            );
            (img, None, source)
        }
        (None, Some(index)) => {
            let data = args
                .sequential
                .data
                .clone()
                .unwrap_or_else(input::default_mnist_dir);
            let set = input::load_test_set(&data)?;
            let (img, label) = set.get(index)?;
            // A label the model cannot output is not a true label for it.
            let classes = m.output_len();
            if usize::from(label) >= classes {
                anyhow::bail!(
                    "{}: test image {index} has label {label}, outside the model's {classes} classes \
                     (0..={}): this data set does not go with {}",
                    data.display(),
                    classes.saturating_sub(1),
                    args.file.display()
                );
            }
            (
                img,
                Some(label),
                format!(
                    "test image {index} of {}",
                    std::fs::canonicalize(&data)
                        .unwrap_or_else(|_| data.clone())
                        .display()
                ),
            )
        }
        (None, None) => usage_error(
            clap::error::ErrorKind::MissingRequiredArgument,
            format!(
                "{} is a sequential (image classifier) model: give --image PATH or --mnist-index N",
                args.file.display()
            ),
        ),
    };
    let c = run::classify(m, &img)?;
    println!("input: {source}");
    print!("{}", run::format(m, &c, truth));
    Ok(())
}
