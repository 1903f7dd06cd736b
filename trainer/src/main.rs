//! `aka-trainer`: train models on the bundled data and export them for aka-core.
//!
//! `cargo run --release -p aka-trainer -- mnist` trains the tutorial's MLP for one epoch.
//! `cargo run --release -p aka-trainer -- gpt` trains the tiny character-level GPT.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aka-trainer",
    version,
    about = "Train small networks and export them for aka-core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an MNIST classifier (the tutorial's MLP, or a small CNN).
    Mnist(cmd::mnist::MnistArgs),
    /// Train a character-level GPT on a text file (default: the bundled tinyshakespeare).
    Gpt(cmd::gpt::GptArgs),
    /// Import a model trained elsewhere (PyTorch, as safetensors) and export it for aka-core.
    #[command(subcommand)]
    Import(cmd::interop::ImportCommand),
    /// Write a GPT checkpoint as safetensors in nanoGPT's layout, plus vocab.json (for PyTorch).
    ExportSafetensors(cmd::interop::ExportSafetensorsArgs),
}

/// Runs the command; an error is printed as `error: ` and its causes on one line (like `aka`,
/// without a backtrace), with exit status 1.
fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Mnist(args) => cmd::mnist::run(args),
        Command::Gpt(args) => cmd::gpt::run(args),
        Command::Import(command) => cmd::interop::import(command),
        Command::ExportSafetensors(args) => cmd::interop::export_safetensors(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
