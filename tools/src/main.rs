//! The `aka` command line.
use clap::Parser;

/// Inspect and run aka model files.
#[derive(Parser)]
#[command(name = "aka", version, about)]
enum Cli {}

fn main() {
    let _ = Cli::parse();
}
