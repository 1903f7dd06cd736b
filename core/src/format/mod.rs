//! The model file format, defined once for the exporter (serialize) and the runtime
//! (zero-copy deserialize).
//!
//! A model file is the [postcard] encoding of one [`ModelFile`]:
//!
//! ```text
//! ModelFile
//! ├─ header:   Header { magic: *b"AKAM" (4 raw bytes), version: u16 (varint, 3) }
//! ├─ metadata: Metadata { task, labels, accuracies, seed, train_command }
//! └─ body:     Body::Sequential(SequentialDesc { input: InputDesc { shape, quant, pixel_mean, pixel_std }, layers: LayerList })
//!            | Body::Gpt(GptDesc { config, vocab, tok_emb, pos_emb?, rope?, blocks, ln_f, head_in_scale, lm_head?, eval })
//! ```
//!
//! The GPT body (appended after `Sequential`, so Sequential files keep their encoding) is read by
//! [`crate::gpt::GptModel`]; its arrays are `&[u8]` too: int8 weights one byte per value, and
//! **f32 arrays (per-row scales, norm weights, RoPE tables) 4 bytes per value, little-endian**.
//!
//! Every weight/bias/requantization array is a `&[u8]` borrowed from the file (postcard writes
//! a varint length then the raw bytes), so on a microcontroller the model stays in flash:
//!
//! * weights: int8, one byte per value, read as `b as i8` (two's complement), packed int4,
//!   two values per byte, low nibble first, or (GPT matrices) int8 in offset-binary pairs with
//!   one i32 row constant per row: see [`WeightType`] for the one definition;
//! * int32 arrays (bias, multipliers, shifts): 4 bytes per value, **little-endian**.
//!
//! The exporter builds the same structs and calls `postcard::to_stdvec(&file)`.
//! The loaders (and [`ModelFile::take_from_bytes`]) read those bytes back with one hand-written
//! postcard reader (`format/read.rs`, no serde `Deserialize`: much less code on a device), with
//! the values and errors serde's decoding would give.
//! [`crate::SequentialModel::load`] checks the header first, then decodes and validates the rest.

use core::fmt;
#[cfg(test)]
use core::marker::PhantomData;

#[cfg(test)]
use serde::de::{SeqAccess, Visitor};
#[cfg(test)]
use serde::{Deserialize, Deserializer};
use serde::{Serialize, Serializer};

// `named_variants!` (below) is defined before the body modules that use it.

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"AKAM";
/// The format version written by this crate and the only one it reads.
///
/// Version 3 added [`WeightType`] (int8 or packed int4 weights) to every weight array
/// ([`Linear`], [`Conv2d`], [`QMatrix`]). Version 2 files are refused with
/// [`crate::Error::UnsupportedVersion`]: re-export them from their checkpoint with this version's
/// `aka-trainer`.
pub const VERSION: u16 = 3;

/// How a weight array stores its values (new in format version 3). Both are symmetric (zero
/// point 0) with **one scale per output row** (output channel): for [`Linear`] and [`Conv2d`]
/// the scale is folded into the per-channel requantization, for [`QMatrix`] it is the per-row
/// f32 scale. Per-row scales (a group size of one whole row) were chosen by measurement: see
/// `docs/RESULTS.md#int4-weights-issue-12`.
///
/// A weight matrix has `rows` rows of `cols` values (a Linear: `out_features` rows of
/// `in_features`; a Conv2d: one row per output channel holding its whole OHWI filter,
/// `kernel_h * kernel_w * in_channels` values; a [`QMatrix`]: `[rows][cols]`).
///
/// * [`WeightType::Int8`]: one byte per value, two's complement, `rows * cols` bytes.
/// * [`WeightType::Int4`]: **packed signed int4**, two values per byte, two's complement
///   nibbles in `-8..=7`. Every row starts on a byte boundary and takes `cols.div_ceil(2)` bytes
///   ([`crate::kernels::s4_row_bytes`]); value `c` of a row is the **low nibble** (bits 0–3) of
///   byte `c / 2` when `c` is even and the **high nibble** (bits 4–7) when `c` is odd. With an odd
///   `cols`, the high nibble of a row's last byte is padding: the exporter writes 0 and the
///   kernels ignore it. This is the only definition of the order; [`crate::kernels::s4_weight`]
///   reads it and [`crate::kernels::pack_s4_row`] writes it.
/// * [`WeightType::Int8Offset`] (appended after version 3's first two variants: postcard encodes
///   the variant index, so older files load unchanged): int8 in **offset-binary pairs**, for the
///   GPT's [`QMatrix`] projections only (the Sequential loader refuses it). `rows * cols` bytes of
///   rows, then **one i32 LE row constant per row** (`4 * rows` bytes, in the same `weights`
///   array). In every row, byte `c` stores weight `b_c` as `b_c ^ 0x80` (`b_c + 128`, unsigned)
///   when `c` is even and as plain two's complement `b_c` when `c` is odd; `cols` must be a
///   multiple of 8 (whole 8-weight steps of the DSP loop, every row word-aligned). Row `r`'s
///   constant is `128 · Σ_{c odd} b_c` of that row; the loader recomputes it from the row's bytes
///   and refuses a file where they differ (`GptModel::load`). The layout lets the DSP kernel
///   multiply a weight word with one `SXTB16` and two `SMLAD`
///   (`crate::kernels::offset_row_const` and `crate::kernels::to_offset_binary` are the one
///   definition of the byte order and the constant; docs/RESULTS.md, "Offset-binary weights").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WeightType {
    /// One signed byte per weight.
    #[default]
    Int8,
    /// Two signed 4-bit weights per byte, low nibble first.
    Int4,
    /// int8 with the even bytes of each row stored as `b ^ 0x80`, followed by one i32 LE row
    /// constant per row (GPT matrices only).
    Int8Offset,
}

impl WeightType {
    /// Bits per weight (8 or 4).
    pub fn bits(self) -> u32 {
        match self {
            WeightType::Int8 | WeightType::Int8Offset => 8,
            WeightType::Int4 => 4,
        }
    }

    /// Bytes of one row of `cols` weights (the distance between rows).
    pub fn row_bytes(self, cols: usize) -> usize {
        match self {
            WeightType::Int8 | WeightType::Int8Offset => cols,
            WeightType::Int4 => cols.div_ceil(2),
        }
    }

    /// Bytes per row stored after all rows: 4 (the i32 row constant) for
    /// [`WeightType::Int8Offset`], else 0.
    pub fn row_const_bytes(self) -> usize {
        match self {
            WeightType::Int8Offset => 4,
            WeightType::Int8 | WeightType::Int4 => 0,
        }
    }

    /// Decodes a weight type (its variant index, see [`Self::ALL`]).
    pub(crate) fn read(r: &mut Reader<'_>) -> Self {
        r.variant(Self::ALL)
    }

    /// Bytes of a `rows x cols` matrix (its rows, then any row constants), `None` on overflow.
    pub fn matrix_bytes(self, rows: usize, cols: usize) -> Option<usize> {
        rows.checked_mul(self.row_bytes(cols).checked_add(self.row_const_bytes())?)
    }

    /// `weights` of a `rows x cols` matrix split into its rows and its row constants (empty
    /// unless [`WeightType::Int8Offset`]). Short `weights` give short parts (never a panic).
    pub fn split_matrix(self, weights: &[u8], rows: usize, cols: usize) -> (&[u8], &[u8]) {
        let n = rows.saturating_mul(self.row_bytes(cols)).min(weights.len());
        weights.split_at(n)
    }

    /// The loaders' check of the layout's own invariants (after the length check), `Err` with
    /// the reason: an int4 row's padding nibble (odd `cols`) must be 0; an
    /// [`WeightType::Int8Offset`] matrix needs `cols % 8 == 0` and every stored row constant
    /// equal to the one computed from its row's bytes (so that a crafted file cannot make the
    /// portable and DSP kernels disagree: the portable one ignores the constants).
    pub(crate) fn check_weights(
        self,
        weights: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<(), &'static str> {
        match self {
            WeightType::Int8 => Ok(()),
            WeightType::Int4 => match self.padding_is_zero(weights, cols) {
                true => Ok(()),
                false => Err(msg!("an int4 row's padding nibble is not 0")),
            },
            WeightType::Int8Offset => {
                if cols == 0 || !cols.is_multiple_of(8) {
                    return Err(msg!("int8-offset matrix columns not a multiple of 8"));
                }
                let (w, consts) = self.split_matrix(weights, rows, cols);
                let ok = w
                    .chunks_exact(cols)
                    .zip(consts.chunks_exact(4))
                    .all(|(row, c)| {
                        crate::kernels::offset_row_const(row)
                            == i32::from_le_bytes([c[0], c[1], c[2], c[3]])
                    });
                match ok {
                    true => Ok(()),
                    false => Err(msg!("an int8-offset row constant does not match its row")),
                }
            }
        }
    }

    /// False if `weights` (rows of `cols` values) is int4 with an odd `cols` and a row's padding
    /// nibble (the high nibble of its last byte) is not 0. The loaders refuse such a file: the
    /// exporter always writes 0 there, so anything else is a corrupt or foreign file.
    pub(crate) fn padding_is_zero(self, weights: &[u8], cols: usize) -> bool {
        if self != WeightType::Int4 || cols.is_multiple_of(2) {
            return true;
        }
        weights
            .chunks_exact(self.row_bytes(cols).max(1))
            .all(|row| row.last().is_none_or(|&b| b & 0xF0 == 0))
    }
}

/// File header: checked before anything else is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Header {
    /// Must equal [`MAGIC`] (encoded as 4 raw bytes at offset 0).
    pub magic: [u8; 4],
    /// Must equal [`VERSION`] (postcard varint right after the magic).
    pub version: u16,
}

impl Header {
    fn read(r: &mut Reader<'_>) -> Self {
        let mut magic = [0u8; 4];
        for (m, b) in magic.iter_mut().zip(r.take(4)) {
            *m = *b;
        }
        Header {
            magic,
            version: r.u16(),
        }
    }

    /// The header this crate writes.
    pub const CURRENT: Header = Header {
        magic: MAGIC,
        version: VERSION,
    };
}

/// A whole model file.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct ModelFile<'a> {
    pub header: Header,
    #[serde(borrow)]
    pub metadata: Metadata<'a>,
    #[serde(borrow)]
    pub body: Body<'a>,
}

impl<'a> ModelFile<'a> {
    /// Decodes a model file's postcard bytes, as written by `postcard::to_stdvec(&file)`, and
    /// returns the bytes after it (like `postcard::take_from_bytes`). Checks the encoding only
    /// (not the magic, the version or the model: the loaders do). Errors: [`crate::Error::Truncated`],
    /// [`crate::Error::Malformed`].
    pub fn take_from_bytes(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), crate::Error> {
        let mut r = Reader::new(bytes);
        let header = Header::read(&mut r);
        let metadata = Metadata::read(&mut r);
        let found = r.variant(&BODY_KINDS);
        let body = read_body(&mut r, found);
        r.check()?;
        Ok((
            ModelFile {
                header,
                metadata,
                body,
            },
            r.rest(),
        ))
    }

    /// A file with the current [`Header`].
    pub fn new(metadata: Metadata<'a>, body: Body<'a>) -> Self {
        Self {
            header: Header::CURRENT,
            metadata,
            body,
        }
    }
}

/// What the model does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Task {
    /// Image classifier: the output vector holds one score per class; the predicted class is its
    /// argmax. (Postcard encodes the variant index, so appending variants keeps old files valid.)
    #[default]
    Classifier,
    /// Next-token language model ([`Body::Gpt`]). `labels` is empty (the vocabulary lives in
    /// [`GptDesc::vocab`]); `float_accuracy` / `int8_accuracy` hold the **next-token top-1
    /// accuracy** in percent on the exporter's validation batches, and the validation losses are
    /// in [`GptDesc::eval`].
    LanguageModel,
}

/// Descriptive information carried by the file. Nothing here affects the arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Metadata<'a> {
    pub task: Task,
    /// Class labels separated by `'\n'` (no trailing newline), e.g. `"0\n1\n...\n9"`; one per
    /// output, in output order. Empty string: no labels.
    pub labels: &'a str,
    /// Test accuracy of the float model, in **percent** (0..=100). NaN if unknown.
    pub float_accuracy: f32,
    /// Test accuracy of the int8 model (as run by this runtime), in **percent**. NaN if unknown.
    pub int8_accuracy: f32,
    /// The `--seed` the model was trained with.
    pub seed: u64,
    /// The command line that trained the model.
    pub train_command: &'a str,
}

impl Task {
    /// Every variant, in declaration order (the index postcard writes).
    pub const ALL: &'static [Task] = &[Task::Classifier, Task::LanguageModel];
}

impl<'a> Metadata<'a> {
    fn read(r: &mut Reader<'a>) -> Self {
        Metadata {
            task: r.variant(Task::ALL),
            labels: r.str(),
            float_accuracy: r.f32(),
            int8_accuracy: r.f32(),
            seed: r.u64(),
            train_command: r.str(),
        }
    }

    /// The class labels (none if `labels` is empty).
    pub fn labels(&self) -> impl Iterator<Item = &'a str> {
        let labels = self.labels;
        labels
            .split('\n')
            .take(if labels.is_empty() { 0 } else { usize::MAX })
    }

    /// Number of class labels.
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// Label of class `index`.
    pub fn label(&self, index: usize) -> Option<&'a str> {
        self.labels().nth(index)
    }
}

/// The network. An enum so that other architectures can be appended.
// Both variants hold fixed-capacity arrays of descriptors (no heap to box into); the enum is
// decoded once at load, so its size only matters as a one-off stack cost (~1.5 KiB on Cortex-M).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[non_exhaustive]
pub enum Body<'a> {
    /// A chain of layers, each consuming the previous one's output.
    Sequential(#[serde(borrow)] SequentialDesc<'a>),
    /// A decoder-only transformer (character-level GPT), run by [`crate::gpt::GptModel`].
    Gpt(#[serde(borrow)] GptDesc<'a>),
}

/// An element of a [`FixedList`]: `EMPTY` fills the unused slots and `WHAT` names a sequence
/// of them in decode error messages.
pub trait ListItem: Copy {
    /// Placeholder for unused slots.
    const EMPTY: Self;
    /// What a sequence of these is called (`"layers"`, `"GPT blocks"`).
    const WHAT: &'static str;
}

/// A fixed-capacity list of at most `N` items (no heap).
///
/// Serialized as a postcard sequence (varint count, then the items), exactly like a `Vec`.
/// Decoding a file that declares more than `N` items still succeeds but keeps only the first
/// `N`; [`FixedList::declared_len`] tells, and the loader rejects it with
/// `Error::TooManyLayers`.
#[derive(Clone)]
pub struct FixedList<T, const N: usize> {
    items: [T; N],
    len: usize,
    declared: usize,
}

impl<T: ListItem, const N: usize> FixedList<T, N> {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            items: [T::EMPTY; N],
            len: 0,
            declared: 0,
        }
    }

    /// A list holding `items`; `None` if there are more than `N`.
    pub fn from_slice(items: &[T]) -> Option<Self> {
        let mut list = Self::new();
        for &item in items {
            list.push(item).ok()?;
        }
        Some(list)
    }

    /// Appends an item; gives it back if the list is full.
    #[allow(clippy::result_large_err)]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                self.declared = self.len;
                Ok(())
            }
            None => Err(item),
        }
    }
}

impl<T, const N: usize> FixedList<T, N> {
    /// The stored items.
    pub fn as_slice(&self) -> &[T] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// The stored items, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.items.get_mut(..self.len).unwrap_or(&mut [])
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of items the encoded file declared (may exceed `N`).
    pub fn declared_len(&self) -> usize {
        self.declared
    }
}

impl<T: ListItem, const N: usize> Default for FixedList<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for FixedList<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T: PartialEq, const N: usize> PartialEq for FixedList<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.declared == other.declared && self.as_slice() == other.as_slice()
    }
}

impl<T: Serialize, const N: usize> Serialize for FixedList<T, N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.as_slice())
    }
}

// serde's decoding, for the unit tests' comparison with [`Reader::list`] only.
#[cfg(test)]
impl<'de, T: ListItem + Deserialize<'de>, const N: usize> Deserialize<'de> for FixedList<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T, const N: usize>(PhantomData<T>);

        impl<'de, T: ListItem + Deserialize<'de>, const N: usize> Visitor<'de> for ListVisitor<T, N> {
            type Value = FixedList<T, N>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a sequence of {}", T::WHAT)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = FixedList::new();
                let mut declared = 0usize;
                // Every element consumes at least one input byte, so this loop is bounded by the
                // file size even if the declared count is huge.
                while let Some(item) = seq.next_element::<T>()? {
                    let _ = list.push(item);
                    declared = declared.saturating_add(1);
                }
                list.declared = declared;
                Ok(list)
            }
        }

        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}

/// The command-line / text names of the GPT variant enums ([`GptPosition`], [`GptNorm`],
/// [`GptMlp`]): one lowercase word per variant, parsed by `FromStr` and printed by `Display`.
macro_rules! named_variants {
    ($ty:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            /// The variants' names, in the order of [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The lowercase name (`FromStr` parses it back).
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl core::str::FromStr for $ty {
            type Err = $crate::format::UnknownName;

            fn from_str(s: &str) -> Result<Self, $crate::format::UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err($crate::format::UnknownName { expected: Self::NAMES }),
                }
            }
        }
    };
}

/// A name that is not one of a variant enum's [`GptMlp::NAMES`] (or the other enums' `NAMES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// The accepted names.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected one of:")?;
        for name in self.expected {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

impl core::error::Error for UnknownName {}

named_variants!(WeightType {
    Int8 = "int8",
    Int4 = "int4",
    Int8Offset = "int8-offset",
});

mod gpt;
mod read;
mod sequential;
#[cfg(test)]
pub(crate) mod tests;

use read::Reader;

pub use gpt::{
    GptBlock, GptBlockList, GptConfig, GptDesc, GptEval, GptMlp, GptNorm, GptPosition, GptVocab,
    NormParams, QMatrix, RopeTables, ACT_LUT_LEN, MAX_GPT_DIM, MAX_GPT_LAYERS,
};
pub(crate) use sequential::check_pixel_normalization;
pub use sequential::{
    Conv2d, InputDesc, Layer, LayerList, Linear, MaxPool2d, QuantParams, Requant, SequentialDesc,
    Shape, MAX_LAYERS,
};

/// Most padding bytes before a weight array ([`QMatrix::pad`], [`Linear::pad`],
/// [`Conv2d::pad`]).
pub const MAX_PAD: usize = 3;

impl<'a> Body<'a> {
    /// Calls `f(pad, weights)` for every weight array in file order (a Sequential body's
    /// Linear and Conv2d layers, or [`GptDesc::for_each_matrix_mut`]'s matrices): the exporter
    /// sets each `pad` so that the weights start at a multiple of 4 bytes in the file.
    pub fn for_each_weights_mut(&mut self, mut f: impl FnMut(&mut &'a [u8], &'a [u8])) {
        match self {
            Body::Sequential(seq) => {
                for layer in seq.layers.as_mut_slice() {
                    match layer {
                        Layer::Linear(l) => f(&mut l.pad, l.weights),
                        Layer::Conv2d(c) => f(&mut c.pad, c.weights),
                        _ => {}
                    }
                }
            }
            Body::Gpt(desc) => desc.for_each_matrix_mut(|m| f(&mut m.pad, m.weights)),
        }
    }
}

/// Checks the magic bytes, then the format version, before anything else is decoded (shared by
/// every body kind's loader).
fn check_header(bytes: &[u8]) -> Result<(), crate::Error> {
    match bytes.get(..MAGIC.len()) {
        Some(magic) if magic == MAGIC => {}
        Some(_) => return Err(crate::Error::BadMagic),
        None if MAGIC.starts_with(bytes) => return Err(crate::Error::Truncated),
        None => return Err(crate::Error::BadMagic),
    }
    let mut r = Reader::new(bytes);
    let header = Header::read(&mut r);
    r.check()?;
    if header.version != VERSION {
        return Err(crate::Error::UnsupportedVersion {
            found: header.version,
            supported: VERSION,
        });
    }
    Ok(())
}

/// Decodes a whole model file for a loader: header ([`check_header`]), postcard body
/// ([`crate::Error::Truncated`] / [`crate::Error::Malformed`]), no trailing bytes
/// ([`crate::Error::TrailingBytes`]), and the body of kind `T` (else [`crate::Error::WrongBody`]).
/// Returns the metadata and the body. Decoded with [`Reader`], with the errors postcard's serde
/// decoding gives.
///
/// A file of the other body kind: by default its body is decoded too (and must be followed by
/// nothing) before `WrongBody`, so a broken body reports `Truncated`, `Malformed` or
/// `TrailingBytes` as a whole-file decode would. With the `compact` feature it is refused with
/// `WrongBody` as soon as its variant index is read (an unknown index: `Malformed`), so a loader
/// links the decoding of its own body kind only.
pub(crate) fn decode_file<'a, T: BodyKind<'a>>(
    bytes: &'a [u8],
) -> Result<(Metadata<'a>, T), crate::Error> {
    check_header(bytes)?;
    let mut r = Reader::new(bytes);
    Header::read(&mut r);
    let metadata = Metadata::read(&mut r);
    let found = r.u32();
    r.check()?;
    if found >= BODY_VARIANTS {
        return Err(crate::Error::Malformed);
    }
    if found != T::VARIANT {
        #[cfg(not(feature = "compact"))]
        {
            read_body(&mut r, found);
            r.finish()?;
        }
        return Err(crate::Error::WrongBody);
    }
    let body = T::read(&mut r)?;
    r.finish()?;
    Ok((metadata, body))
}

/// A body type a loader decodes with [`decode_file`]: its [`Body`] variant (the index postcard
/// writes before the body) and its decoding.
pub(crate) trait BodyKind<'a>: Sized {
    /// The variant's index in [`Body`] (declaration order).
    const VARIANT: u32;
    /// Decodes the body (after its variant index).
    fn read(r: &mut Reader<'a>) -> Result<Self, crate::Error>;
}

impl<'a> BodyKind<'a> for SequentialDesc<'a> {
    const VARIANT: u32 = 0;
    fn read(r: &mut Reader<'a>) -> Result<Self, crate::Error> {
        let desc = SequentialDesc::read(r);
        r.check()?;
        Ok(desc)
    }
}

impl<'a> BodyKind<'a> for GptDesc<'a> {
    const VARIANT: u32 = 1;
    fn read(r: &mut Reader<'a>) -> Result<Self, crate::Error> {
        let desc = GptDesc::read(r);
        r.check()?;
        Ok(desc)
    }
}

/// The [`Body`] variants' indices, in declaration order.
const BODY_KINDS: [u32; 2] = [
    <SequentialDesc<'static> as BodyKind<'static>>::VARIANT,
    <GptDesc<'static> as BodyKind<'static>>::VARIANT,
];

/// How many variants [`Body`] has.
const BODY_VARIANTS: u32 = BODY_KINDS.len() as u32;

/// The body after its variant index `found` (one of [`BODY_KINDS`]), decoded as that kind.
fn read_body<'a>(r: &mut Reader<'a>, found: u32) -> Body<'a> {
    if found == <SequentialDesc<'a> as BodyKind<'a>>::VARIANT {
        Body::Sequential(SequentialDesc::read(r))
    } else {
        Body::Gpt(GptDesc::read(r))
    }
}

/// A quantization scale the runtime accepts: finite and positive (`scale.is_finite() && scale >
/// 0.0`), computed on the bits: the positive finite non-zero `f32`s are exactly the bit patterns
/// `1..=0x7F7F_FFFF` (sign 0, exponent not all ones, not +0), one compare instead of two float
/// tests in every validation loop.
pub(crate) fn valid_scale(scale: f32) -> bool {
    scale.to_bits().wrapping_sub(1) < 0x7F7F_FFFF
}
