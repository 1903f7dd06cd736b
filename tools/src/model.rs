//! Reading model files and loading them with aka-core.
//!
//! [`Model`] has one variant per body kind of the file format; commands match on it, so a new
//! kind (e.g. the GPT body) is one more variant and one more arm in each command.

use std::path::Path;

use aka_core::SequentialModel;
use anyhow::Context as _;

/// A loaded, validated model, by body kind.
#[derive(Debug)]
pub enum Model<'a> {
    /// `Body::Sequential`: a chain of int8 layers (MNIST MLP / CNN).
    Sequential(SequentialModel<'a>),
}

/// Reads a whole model file.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Loads and validates `bytes` with aka-core, whatever the body kind.
///
/// Errors are aka-core's ([`aka_core::Error`], whose `Display` says what is wrong); a body kind
/// this build cannot run is `Error::WrongBody`.
pub fn load(bytes: &[u8]) -> Result<Model<'_>, aka_core::Error> {
    SequentialModel::load(bytes).map(Model::Sequential)
}

/// [`read`] then [`load`], with the path in the error message. The bytes are leaked so that the
/// model can borrow them for the rest of the (short-lived) command.
pub fn open(path: &Path) -> anyhow::Result<Model<'static>> {
    let bytes: &'static [u8] = Vec::leak(read(path)?);
    load(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
