//! The `aka` command line: inspect model files and run them on the host with aka-core.
//!
//! ```text
//! aka inspect runs/mnist-mlp/model.aka
//! aka run runs/mnist-mlp/model.aka --mnist-index 0          # bundled MNIST test set
//! aka run runs/mnist-mlp/model.aka --image digit.png [--invert]
//! ```
//!
//! Errors (unreadable or invalid files, bad arguments) are printed as `error: ...` on stderr with
//! exit status 1 (2 for command-line usage errors); the tool does not panic on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aka_tools::input::{self, looks_inverted};
use aka_tools::model::{self, Model};
use aka_tools::{inspect, run};
use clap::{Args, Parser, Subcommand};

/// Inspect and run aka model files (`*.aka`, written by `aka-trainer`).
#[derive(Parser)]
#[command(name = "aka", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's layers, shapes, parameters, flash and arena bytes, and metadata.
    Inspect {
        /// Model file.
        file: PathBuf,
    },
    /// Classify one image with aka-core on the host; print the class, label and scores.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Model file.
    file: PathBuf,
    /// PNG or PGM/PPM image of any size: converted to grey (alpha over black) and resized to
    /// the model input by area averaging. MNIST digits are white on black.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "mnist_index",
        required_unless_present = "mnist_index"
    )]
    image: Option<PathBuf>,
    /// Invert the image (255 - p), for a dark digit on a light background.
    #[arg(long, requires = "image")]
    invert: bool,
    /// Use image N of the MNIST-format test set in --data.
    #[arg(long, value_name = "N")]
    mnist_index: Option<usize>,
    /// Directory with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz].
    #[arg(long, value_name = "DIR", default_value_os_t = input::default_mnist_dir(), requires = "mnist_index")]
    data: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { file } => cmd_inspect(&file),
        Command::Run(args) => cmd_run(&args),
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

fn cmd_inspect(file: &Path) -> anyhow::Result<()> {
    let model = model::open(file)?;
    print!("{}", inspect::describe(&model, &display_name(file)));
    Ok(())
}

fn cmd_run(args: &RunArgs) -> anyhow::Result<()> {
    let model = model::open(&args.file)?;
    let (img, truth, source) = match (&args.image, args.mnist_index) {
        (Some(path), _) => {
            let mut img = input::read_image(path)?;
            if args.invert {
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
                if args.invert { ", inverted" } else { "" }
            );
            (img, None, source)
        }
        (None, Some(index)) => {
            let set = input::load_test_set(&args.data)?;
            let (img, label) = set.get(index)?;
            (
                img,
                Some(label),
                format!(
                    "test image {index} of {}",
                    std::fs::canonicalize(&args.data)
                        .unwrap_or_else(|_| args.data.clone())
                        .display()
                ),
            )
        }
        (None, None) => anyhow::bail!("give --image PATH or --mnist-index N"),
    };
    match &model {
        Model::Sequential(m) => {
            let c = run::classify(m, &img)?;
            println!("input: {source}");
            print!("{}", run::format(m, &c, truth));
        }
    }
    Ok(())
}
