//! `aka-trainer gpt`: train a character-level GPT (being written).

/// Arguments of `aka-trainer gpt`.
#[derive(clap::Args)]
pub struct GptArgs {}

/// Runs `aka-trainer gpt`.
pub fn run(_args: GptArgs) -> anyhow::Result<()> {
    anyhow::bail!("the gpt subcommand is not implemented yet")
}
