//! Datasets.
//!
//! - [`mnist`]: MNIST-format image classification sets (IDX files, gzip or raw), e.g. MNIST or
//!   Fashion-MNIST, with fast batch gathering into `[n, 1, rows, cols]` `f32` arrays.
//! - [`text`]: a character-level tokenizer and a text corpus split into train/validation, with
//!   random contiguous blocks for language-model training.
//!
//! Every loading error is a [`DataError`], whose message starts with the offending file's path.

pub mod mnist;
pub mod text;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use mnist::{ImageSet, Mnist};
pub use text::{CharTokenizer, Split, TextDataset};

/// An error while loading a dataset. The `Display` message always begins with the path of the
/// file at fault (`"<path>: <what is wrong>"`).
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// The file (or directory) does not exist. `also_tried` lists other accepted names that
    /// were looked for (e.g. the file without `.gz`).
    NotFound {
        path: PathBuf,
        also_tried: Vec<PathBuf>,
    },
    /// Any other I/O error while opening or reading the file.
    Io { path: PathBuf, source: io::Error },
    /// The file starts with the gzip magic bytes but does not decompress (corrupt, truncated or
    /// bad checksum).
    Gzip { path: PathBuf, source: io::Error },
    /// The IDX magic number is not the expected one. `kind` is `"image"` or `"label"`.
    BadMagic {
        path: PathBuf,
        kind: &'static str,
        expected: u32,
        found: u32,
    },
    /// The file ends inside the IDX header.
    TruncatedHeader {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    /// The file is shorter than its header says (`expected` = header + payload bytes,
    /// after decompression for gzip files).
    Truncated {
        path: PathBuf,
        expected: u64,
        got: u64,
        gzip: bool,
    },
    /// The file is longer than its header says.
    TrailingData {
        path: PathBuf,
        expected: u64,
        got: u64,
        gzip: bool,
    },
    /// The header is well-formed but describes an unusable data set (zero images, zero-sized
    /// images, a size that overflows `usize`, ...).
    BadHeader { path: PathBuf, reason: String },
    /// The label file does not have one label per image.
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        n_images: usize,
        n_labels: usize,
    },
    /// A label is not a valid class index.
    BadLabel {
        path: PathBuf,
        index: usize,
        label: u8,
        num_classes: usize,
    },
    /// The test images do not have the training images' size.
    ShapeMismatch {
        path: PathBuf,
        expected: (usize, usize),
        found: (usize, usize),
    },
    /// A text file is not valid UTF-8; `offset` is the byte offset of the first invalid byte.
    NotUtf8 { path: PathBuf, offset: usize },
    /// A text file is empty.
    Empty { path: PathBuf },
}

impl DataError {
    /// The file the error is about (for [`DataError::CountMismatch`], the label file).
    pub fn path(&self) -> &Path {
        match self {
            DataError::NotFound { path, .. }
            | DataError::Io { path, .. }
            | DataError::Gzip { path, .. }
            | DataError::BadMagic { path, .. }
            | DataError::TruncatedHeader { path, .. }
            | DataError::Truncated { path, .. }
            | DataError::TrailingData { path, .. }
            | DataError::BadHeader { path, .. }
            | DataError::BadLabel { path, .. }
            | DataError::ShapeMismatch { path, .. }
            | DataError::NotUtf8 { path, .. }
            | DataError::Empty { path } => path,
            DataError::CountMismatch { labels, .. } => labels,
        }
    }

    /// Maps an I/O error on `path`: `NotFound` becomes [`DataError::NotFound`].
    pub(crate) fn io(path: &Path, source: io::Error) -> DataError {
        if source.kind() == io::ErrorKind::NotFound {
            DataError::NotFound {
                path: path.to_path_buf(),
                also_tried: Vec::new(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path().display())?;
        match self {
            DataError::NotFound { also_tried, .. } => {
                f.write_str("not found")?;
                if !also_tried.is_empty() {
                    let names: Vec<String> =
                        also_tried.iter().map(|p| p.display().to_string()).collect();
                    write!(f, " (also tried {})", names.join(", "))?;
                }
                Ok(())
            }
            DataError::Io { source, .. } => write!(f, "{source}"),
            DataError::Gzip { source, .. } => {
                write!(f, "corrupt or truncated gzip stream: {source}")
            }
            DataError::BadMagic {
                kind,
                expected,
                found,
                ..
            } => {
                write!(
                    f,
                    "not an IDX {kind} file (magic 0x{found:08x}, expected 0x{expected:08x})"
                )?;
                match *found {
                    mnist::IMAGES_MAGIC => f.write_str("; this looks like an IDX image file"),
                    mnist::LABELS_MAGIC => f.write_str("; this looks like an IDX label file"),
                    _ => Ok(()),
                }
            }
            DataError::TruncatedHeader { expected, got, .. } => write!(
                f,
                "truncated: the IDX header needs {expected} bytes, got {got}"
            ),
            DataError::Truncated {
                expected,
                got,
                gzip,
                ..
            } => write!(
                f,
                "truncated: expected {expected} bytes, got {got}{}",
                if *gzip { " (after decompression)" } else { "" }
            ),
            DataError::TrailingData {
                expected,
                got,
                gzip,
                ..
            } => write!(
                f,
                "unexpected trailing data: expected {expected} bytes, got {got}{}",
                if *gzip { " (after decompression)" } else { "" }
            ),
            DataError::BadHeader { reason, .. } => f.write_str(reason),
            DataError::CountMismatch {
                images,
                n_images,
                n_labels,
                ..
            } => write!(
                f,
                "{n_labels} labels, but {} has {n_images} images",
                images.display()
            ),
            DataError::BadLabel {
                index,
                label,
                num_classes,
                ..
            } => write!(
                f,
                "label {label} at index {index} is out of range (must be < {num_classes})"
            ),
            DataError::ShapeMismatch {
                expected, found, ..
            } => write!(
                f,
                "images are {}x{}, but the training images are {}x{}",
                found.0, found.1, expected.0, expected.1
            ),
            DataError::NotUtf8 { offset, .. } => {
                write!(f, "not valid UTF-8 (invalid byte at offset {offset})")
            }
            DataError::Empty { .. } => f.write_str("empty file"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } | DataError::Gzip { source, .. } => Some(source),
            _ => None,
        }
    }
}
