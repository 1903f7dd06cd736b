//! The one error type of the runtime: plain, `Copy`, printable with `core::fmt` (and `defmt`).
//!
//! With the `terse-errors` feature every `&'static str` field (`what`, `kernel`) is `""`: the
//! variant and the numbers stay, [`Error`]'s `Display` names the variant's kind instead.

use core::fmt;

/// Everything that can go wrong when loading or running a model.
///
/// `layer` fields are 0-based indices into the model's layer list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The file does not start with [`crate::format::MAGIC`].
    BadMagic,
    /// The file's format version is not the one this runtime reads.
    UnsupportedVersion { found: u16, supported: u16 },
    /// The file ends before the model description does.
    Truncated,
    /// The bytes are not a valid postcard encoding of the model description
    /// (bad enum tag, bad varint, invalid UTF-8, ...).
    Malformed,
    /// Bytes left over after the model description.
    TrailingBytes { count: usize },
    /// The model body is not the kind the loader reads (`SequentialModel::load` on a GPT file, or
    /// `GptModel::load` on a sequential one).
    WrongBody,
    /// More layers than [`crate::format::MAX_LAYERS`].
    TooManyLayers { found: usize, max: usize },
    /// The layer list is empty.
    NoLayers,
    /// The model's input description is invalid (zero dimension, bad scale, ...).
    BadInput { what: &'static str },
    /// A layer's declared input does not match the previous layer's output.
    ShapeMismatch {
        layer: usize,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A byte slice in the file has the wrong length for the declared shapes.
    LengthMismatch {
        layer: usize,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A layer parameter is out of range (zero stride, padding >= kernel, shift out of range, ...).
    BadParameter { layer: usize, what: &'static str },
    /// A size computed from the file's numbers overflows `usize`.
    SizeOverflow { layer: usize },
    /// The number of class labels does not match the number of outputs.
    LabelCount { labels: usize, outputs: usize },
    /// `run` got an input of the wrong length.
    InputLength { expected: usize, found: usize },
    /// The caller's arena is smaller than [`crate::SequentialModel::arena_size`].
    ArenaTooSmall { need: usize, have: usize },
    /// A kernel was called with slice lengths that do not match its shape arguments.
    KernelShape { kernel: &'static str },
    /// A GPT array has the wrong byte length for the declared configuration. `block` is the
    /// transformer block (`None`: embeddings, final norm, head, vocabulary tables).
    GptLength {
        block: Option<usize>,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A GPT configuration value or stored parameter is out of range (head count does not divide
    /// the width, scale not finite and > 0, optional array present/absent against the config, ...).
    GptParameter {
        block: Option<usize>,
        what: &'static str,
    },
    /// The stored GPT vocabulary is invalid (wrong char count, not strictly increasing,
    /// inconsistent unknown id).
    BadVocab { what: &'static str },
    /// A token id `>= vocab_size`.
    BadToken { token: u32, vocab_size: usize },
    /// A position `>= block_size` (the KV cache holds `block_size` positions; see
    /// `aka_core::gpt::Decoder` for the sliding window).
    ContextFull { pos: usize, block_size: usize },
    /// An output buffer is too small (`need` elements).
    BufferTooSmall { need: usize, have: usize },
    /// A call argument is invalid (empty prompt, empty logits, NaN temperature, ...).
    BadArgument { what: &'static str },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BadMagic => write!(f, "not an aka model file (bad magic bytes)"),
            Error::UnsupportedVersion { found, supported } => {
                write!(f, "model format version {found} is not supported (this runtime reads version {supported}; re-export the model from its checkpoint with the matching aka-trainer)")
            }
            Error::Truncated => write!(f, "model file is truncated"),
            Error::Malformed => write!(f, "model file is malformed (postcard decode error)"),
            Error::TrailingBytes { count } => {
                write!(f, "{count} unexpected bytes after the model description")
            }
            Error::WrongBody => write!(
                f,
                "model body is not of the kind this loader reads (sequential vs gpt)"
            ),
            Error::TooManyLayers { found, max } => {
                write!(f, "{found} layers, at most {max} supported")
            }
            Error::NoLayers => write!(f, "model has no layers"),
            Error::BadInput { what } => {
                write!(f, "invalid model input description{}", Detail(what))
            }
            Error::ShapeMismatch {
                layer,
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "layer {layer}: {}: expected {expected}, found {found}",
                    Or(what, "input size")
                )
            }
            Error::LengthMismatch {
                layer,
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "layer {layer}: {} has {found} bytes, expected {expected}",
                    Or(what, "an array")
                )
            }
            Error::BadParameter { layer, what } => {
                write!(f, "layer {layer}: invalid parameter{}", Detail(what))
            }
            Error::SizeOverflow { layer } => write!(f, "layer {layer}: size overflows"),
            Error::LabelCount { labels, outputs } => {
                write!(f, "{labels} class labels for {outputs} outputs")
            }
            Error::InputLength { expected, found } => {
                write!(
                    f,
                    "input has {found} elements, the model expects {expected}"
                )
            }
            Error::ArenaTooSmall { need, have } => {
                write!(f, "arena too small: need {need} bytes, have {have}")
            }
            Error::KernelShape { kernel } => {
                write!(
                    f,
                    "{}: slice lengths do not match the shape",
                    Or(kernel, "kernel")
                )
            }
            Error::GptLength {
                block,
                what,
                expected,
                found,
            } => {
                if let Some(b) = block {
                    write!(f, "block {b}: ")?;
                }
                write!(
                    f,
                    "{} has {found} bytes, expected {expected}",
                    Or(what, "an array")
                )
            }
            Error::GptParameter { block, what } => {
                if let Some(b) = block {
                    write!(f, "block {b}: ")?;
                }
                write!(f, "invalid GPT parameter{}", Detail(what))
            }
            Error::BadVocab { what } => write!(f, "invalid vocabulary{}", Detail(what)),
            Error::BadToken { token, vocab_size } => {
                write!(
                    f,
                    "token id {token} out of range (vocabulary of {vocab_size})"
                )
            }
            Error::ContextFull { pos, block_size } => {
                write!(
                    f,
                    "position {pos} is beyond the context of {block_size} tokens"
                )
            }
            Error::BufferTooSmall { need, have } => {
                write!(f, "buffer too small: need {need} elements, have {have}")
            }
            Error::BadArgument { what } => write!(f, "invalid argument{}", Detail(what)),
        }
    }
}

impl core::error::Error for Error {}

/// An error's text as `": text"`, or nothing if it is empty (the `terse-errors` feature).
struct Detail(&'static str);

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            "" => Ok(()),
            text => write!(f, ": {text}"),
        }
    }
}

/// An error's name text, or `fallback` if it is empty (the `terse-errors` feature).
struct Or(&'static str, &'static str);

impl fmt::Display for Or {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { self.1 } else { self.0 })
    }
}

impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Self {
        match e {
            postcard::Error::DeserializeUnexpectedEnd => Error::Truncated,
            _ => Error::Malformed,
        }
    }
}
