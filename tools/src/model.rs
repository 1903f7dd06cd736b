//! Reading model files and loading them with aka-core.
//!
//! [`Model`] has one variant per body kind of the file format; commands match on it, so a new
//! kind is one more variant and one more arm in each command.

use std::path::Path;

use aka_core::gpt::GptModel;
use aka_core::SequentialModel;
use anyhow::Context as _;

/// A loaded, validated model, by body kind.
// Both variants hold fixed-capacity descriptor arrays (a few KiB); one model is loaded per
// command, so the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Model<'a> {
    /// `Body::Sequential`: a chain of int8 layers (MNIST MLP / CNN).
    Sequential(SequentialModel<'a>),
    /// `Body::Gpt`: a character-level decoder-only transformer.
    Gpt(GptModel<'a>),
}

impl Model<'_> {
    /// `"sequential model (image classifier)"` / `"GPT model (language model)"`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Sequential(_) => "sequential model (image classifier)",
            Model::Gpt(_) => "GPT model (language model)",
        }
    }
}

/// Reads a whole model file of at most `max_bytes` bytes, through a bounded reader (so a device
/// or a pipe that never ends, `/dev/zero`, fails as soon as the limit is passed).
pub fn read(path: &Path, max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        anyhow::bail!(
            "{}: larger than the model file limit of {} MiB (raise it with --max-file-mib)",
            path.display(),
            max_bytes.div_ceil(1 << 20)
        );
    }
    Ok(bytes)
}

/// Loads and validates `bytes` with aka-core, whatever the body kind.
///
/// Errors are aka-core's ([`aka_core::Error`], whose `Display` says what is wrong); the
/// sequential loader is tried first and the GPT loader only if the body is not sequential
/// (`Error::WrongBody`), so header and decoding errors are reported once, as they are.
pub fn load(bytes: &[u8]) -> Result<Model<'_>, aka_core::Error> {
    match SequentialModel::load(bytes) {
        Err(aka_core::Error::WrongBody) => GptModel::load(bytes).map(Model::Gpt),
        other => other.map(Model::Sequential),
    }
}

/// [`read`] (at most `max_bytes`) then [`load`], with the path in the error message. The bytes are leaked so that the
/// model can borrow them for the rest of the (short-lived) command.
pub fn open(path: &Path, max_bytes: u64) -> anyhow::Result<Model<'static>> {
    let bytes: &'static [u8] = Vec::leak(read(path, max_bytes)?);
    load(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
