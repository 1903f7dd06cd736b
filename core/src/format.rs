//! The model file format, defined once for the exporter (serialize) and the runtime
//! (zero-copy deserialize).
//!
//! A model file is the [postcard] encoding of one [`ModelFile`]:
//!
//! ```text
//! ModelFile
//! ├─ header:   Header { magic: *b"AKA\x01"-style 4 raw bytes, version: u16 (varint) }
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
//! * int8 arrays (weights): one byte per value, read as `b as i8` (two's complement);
//! * int32 arrays (bias, multipliers, shifts): 4 bytes per value, **little-endian**.
//!
//! The exporter builds the same structs and calls `postcard::to_stdvec(&file)`.
//! [`crate::SequentialModel::load`] checks the header first, then decodes and validates the rest.

use core::fmt;
use core::marker::PhantomData;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"AKAM";
/// The format version written by this crate and the only one it reads.
pub const VERSION: u16 = 2;
/// Capacity of a [`LayerList`] (the runtime allocates nothing, so the layer list is a fixed array).
pub const MAX_LAYERS: usize = 16;

/// File header: checked before anything else is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Must equal [`MAGIC`] (encoded as 4 raw bytes at offset 0).
    pub magic: [u8; 4],
    /// Must equal [`VERSION`] (postcard varint right after the magic).
    pub version: u16,
}

impl Header {
    /// The header this crate writes.
    pub const CURRENT: Header = Header {
        magic: MAGIC,
        version: VERSION,
    };
}

/// A whole model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile<'a> {
    pub header: Header,
    #[serde(borrow)]
    pub metadata: Metadata<'a>,
    #[serde(borrow)]
    pub body: Body<'a>,
}

impl<'a> ModelFile<'a> {
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Task {
    /// Image classifier: the output vector holds one score per class; the predicted class is its
    /// argmax. (Postcard encodes the variant index, so appending variants keeps old files valid.)
    Classifier,
    /// Next-token language model ([`Body::Gpt`]). `labels` is empty (the vocabulary lives in
    /// [`GptDesc::vocab`]); `float_accuracy` / `int8_accuracy` hold the **next-token top-1
    /// accuracy** in percent on the exporter's validation batches, and the validation losses are
    /// in [`GptDesc::eval`].
    LanguageModel,
}

/// Descriptive information carried by the file. Nothing here affects the arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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

impl<'a> Metadata<'a> {
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Body<'a> {
    /// A chain of layers, each consuming the previous one's output.
    Sequential(#[serde(borrow)] SequentialDesc<'a>),
    /// A decoder-only transformer (character-level GPT), run by [`crate::gpt::GptModel`].
    Gpt(#[serde(borrow)] GptDesc<'a>),
}

/// A sequential (feed-forward chain) model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequentialDesc<'a> {
    pub input: InputDesc,
    #[serde(borrow)]
    pub layers: LayerList<'a>,
}

/// An activation tensor shape, **NHWC** with N = 1: `h` rows of `w` pixels of `c` channels,
/// stored `[h][w][c]` (channel fastest). A flat vector of `n` values is `1 x 1 x n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    pub h: u32,
    pub w: u32,
    pub c: u32,
}

impl Shape {
    /// `h x w x c` shape.
    pub const fn new(h: u32, w: u32, c: u32) -> Self {
        Self { h, w, c }
    }

    /// A flat vector of `n` values (`1 x 1 x n`).
    pub const fn flat(n: u32) -> Self {
        Self { h: 1, w: 1, c: n }
    }

    /// Number of elements, `None` on overflow.
    pub fn len(&self) -> Option<usize> {
        (self.h as usize)
            .checked_mul(self.w as usize)?
            .checked_mul(self.c as usize)
    }

    /// True if any dimension is 0.
    pub fn is_empty(&self) -> bool {
        self.h == 0 || self.w == 0 || self.c == 0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

/// Affine quantization of a tensor: `real = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QuantParams {
    /// Finite and > 0.
    pub scale: f32,
    pub zero_point: i8,
}

impl QuantParams {
    /// `scale * (q - zero_point)`.
    pub fn dequantize(&self, q: i8) -> f32 {
        crate::quant::dequantize(q, self.scale, self.zero_point)
    }

    /// `clamp(round(real / scale) + zero_point)`, see [`crate::quant::quantize_f32`].
    pub fn quantize(&self, real: f32) -> i8 {
        crate::quant::quantize_f32(real, self.scale, self.zero_point)
    }
}

/// The model input.
///
/// For images, the **real value of pixel `p`** (a `u8`) is, in `f32` arithmetic,
///
/// ```text
/// real(p) = (p as f32 / 255.0 - pixel_mean) / pixel_std
/// ```
///
/// (the trainer's input normalization; `pixel_mean = 0, pixel_std = 1` is plain `p / 255`), and
/// it is quantized with `quant` like any activation ([`crate::quant::quantize_pixel`]). The
/// loader requires a finite `pixel_mean` and a finite, positive `pixel_std`
/// ([`crate::Error::BadInput`]). `pixel_mean` and `pixel_std` are new in format version 2;
/// version 1 files are refused by the version check ([`crate::Error::UnsupportedVersion`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputDesc {
    /// Image: `H x W x C` (MNIST: 28 x 28 x 1).
    pub shape: Shape,
    /// Quantization of the (real, normalized) input.
    pub quant: QuantParams,
    /// Subtracted from `p / 255`; finite.
    pub pixel_mean: f32,
    /// Divides `p / 255 - pixel_mean`; finite and > 0.
    pub pixel_std: f32,
}

impl InputDesc {
    /// An input of `shape` quantized with `quant`, without pixel normalization (`pixel_mean` 0,
    /// `pixel_std` 1: pixel `p` is `p / 255`).
    pub const fn new(shape: Shape, quant: QuantParams) -> Self {
        Self {
            shape,
            quant,
            pixel_mean: 0.0,
            pixel_std: 1.0,
        }
    }

    /// The real value of pixel `p`, see [`crate::quant::pixel_value`].
    pub fn pixel_value(&self, pixel: u8) -> f32 {
        crate::quant::pixel_value(pixel, self.pixel_mean, self.pixel_std)
    }
}

/// One layer. Activations are NHWC int8; see each variant for its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Layer<'a> {
    /// Fully connected layer on a flat `1 x 1 x in_features` input.
    Linear(#[serde(borrow)] Linear<'a>),
    /// 2-D convolution, NHWC activations, OHWI weights.
    Conv2d(#[serde(borrow)] Conv2d<'a>),
    /// Max pooling, no padding; output keeps the input's quantization.
    MaxPool2d(MaxPool2d),
    /// `H x W x C` → `1 x 1 x (H*W*C)`: a no-op on the bytes, which stay in `[h][w][c]` order.
    Flatten,
    /// Standalone ReLU: `y = max(x, zero_point)`; `zero_point` must equal the input's zero point.
    Relu { zero_point: i8 },
}

/// Fully connected layer: `y[o] = requant(bias[o] + Σ_i x[i] * W[o][i])`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Linear<'a> {
    pub in_features: u32,
    pub out_features: u32,
    /// 0 to [`MAX_PAD`] ignored bytes that word-align `weights` in the file (see
    /// [`QMatrix::pad`]).
    pub pad: &'a [u8],
    /// int8, `[out_features][in_features]` row-major (PyTorch's `weight` layout),
    /// `out_features * in_features` bytes. Symmetric (weight zero point 0).
    pub weights: &'a [u8],
    /// int32 LE, `out_features * 4` bytes, **input zero point folded in**:
    /// `bias'[o] = bias_q[o] - zp_in * Σ_i W[o][i]`, where `bias_q[o] = round(b[o] / (s_in * s_w[o]))`.
    pub bias: &'a [u8],
    #[serde(borrow)]
    pub requant: Requant<'a>,
}

/// 2-D convolution with symmetric zero padding ("zero" in real terms, i.e. `zp_in` in int8),
/// PyTorch `Conv2d(in, out, (kh, kw), stride, padding)` semantics:
/// `out_h = (in_h + 2 * pad_h - kernel_h) / stride_h + 1` (same for `w`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2d<'a> {
    pub in_channels: u32,
    pub out_channels: u32,
    pub kernel_h: u32,
    pub kernel_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    /// Rows of padding on the top and on the bottom; `< kernel_h`.
    pub pad_h: u32,
    /// Columns of padding on the left and on the right; `< kernel_w`.
    pub pad_w: u32,
    /// Zero point of the input activations (must match the previous layer's output); padded taps
    /// read this value.
    pub input_zero_point: i8,
    /// 0 to [`MAX_PAD`] ignored bytes that word-align `weights` in the file (see
    /// [`QMatrix::pad`]).
    pub pad: &'a [u8],
    /// int8, **OHWI** `[out_channels][kernel_h][kernel_w][in_channels]` (TFLite/CMSIS-NN layout;
    /// PyTorch's OIHW must be transposed). Symmetric (weight zero point 0).
    pub weights: &'a [u8],
    /// int32 LE, `out_channels * 4` bytes, input zero point folded in over the **whole** kernel:
    /// `bias'[o] = bias_q[o] - zp_in * Σ_{kh,kw,i} W[o][kh][kw][i]`.
    pub bias: &'a [u8],
    #[serde(borrow)]
    pub requant: Requant<'a>,
}

/// Max pooling window (no padding): `out = (in - kernel) / stride + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxPool2d {
    pub kernel_h: u32,
    pub kernel_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
}

/// Per-output-channel requantization of an int32 accumulator to int8:
/// `y = clamp(MultiplyByQuantizedMultiplier(acc, multiplier[c], shift[c]) + zero_point, act_min, act_max)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requant<'a> {
    /// int32 LE per output channel (`out * 4` bytes): Q31 multipliers from
    /// [`crate::quant::quantize_multiplier`]`(s_in * s_w[c] / s_out)`; must be >= 0.
    pub multipliers: &'a [u8],
    /// int32 LE per output channel (`out * 4` bytes): the matching shifts, in `-31..=30`.
    pub shifts: &'a [u8],
    /// Output quantization (`scale` is informative: used to dequantize scores on the host).
    pub output: QuantParams,
    /// Lower clamp. Fused ReLU: `output.zero_point`; no activation: `-128`.
    pub act_min: i8,
    /// Upper clamp, `>= act_min`. Usually `127`.
    pub act_max: i8,
}

impl<'a> Layer<'a> {
    /// Short lowercase name (`"linear"`, `"conv2d"`, `"maxpool2d"`, `"flatten"`, `"relu"`).
    pub fn name(&self) -> &'static str {
        match self {
            Layer::Linear(_) => "linear",
            Layer::Conv2d(_) => "conv2d",
            Layer::MaxPool2d(_) => "maxpool2d",
            Layer::Flatten => "flatten",
            Layer::Relu { .. } => "relu",
        }
    }

    /// Number of trainable parameters stored (weights + biases).
    pub fn param_count(&self) -> usize {
        match self {
            Layer::Linear(l) => l.weights.len() + l.bias.len() / 4,
            Layer::Conv2d(c) => c.weights.len() + c.bias.len() / 4,
            _ => 0,
        }
    }

    /// Bytes of parameter data stored in the file (weights + bias + multipliers + shifts).
    pub fn param_bytes(&self) -> usize {
        match self {
            Layer::Linear(l) => {
                l.weights.len()
                    + l.bias.len()
                    + l.requant.multipliers.len()
                    + l.requant.shifts.len()
            }
            Layer::Conv2d(c) => {
                c.weights.len()
                    + c.bias.len()
                    + c.requant.multipliers.len()
                    + c.requant.shifts.len()
            }
            _ => 0,
        }
    }

    /// The requantization parameters of a Linear or Conv2d layer.
    pub fn requant(&self) -> Option<&Requant<'a>> {
        match self {
            Layer::Linear(l) => Some(&l.requant),
            Layer::Conv2d(c) => Some(&c.requant),
            _ => None,
        }
    }
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

impl ListItem for Layer<'_> {
    const EMPTY: Self = Layer::Flatten;
    const WHAT: &'static str = "layers";
}

/// At most [`MAX_LAYERS`] layers; see [`FixedList`].
pub type LayerList<'a> = FixedList<Layer<'a>, MAX_LAYERS>;

// ---------------------------------------------------------------------------------------------
// GPT
// ---------------------------------------------------------------------------------------------

/// Capacity of a [`GptBlockList`]: the most transformer blocks a GPT file may have.
pub const MAX_GPT_LAYERS: usize = 8;

/// Largest `d_model`, `hidden`, `block_size` a GPT file may declare (2^16): with int8 × int8
/// products of magnitude ≤ 128², an i32 accumulator over at most 2^16 terms cannot overflow.
pub const MAX_GPT_DIM: u32 = 1 << 16;

/// How positions enter a GPT.
///
/// Measured on nanoGPT's CPU config (4 layers, 4 heads, 128 dims, context 64, batch 12, 2,000
/// steps at lr 1e-3, tinyshakespeare): validation loss 1.91 with `Learned`, 1.79 with `Rope`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GptPosition {
    /// A learned table `pos_emb [block_size, d]` added to the token embedding (GPT-2).
    #[default]
    Learned,
    /// Rotary embedding of q and k (rotate-half convention), with the tables stored in the file.
    Rope,
}

/// The normalisation of a GPT (pre-norm blocks and the final norm).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GptNorm {
    /// `(x - mean) / sqrt(var + eps) * weight + bias` (biased variance).
    #[default]
    LayerNorm,
    /// `x / sqrt(mean(x²) + eps) * weight` (no bias).
    RmsNorm,
}

/// The MLP of a GPT block (`hidden` units).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GptMlp {
    /// `w2 · gelu(w1 · x)` (tanh approximation, GPT-2).
    #[default]
    Gelu,
    /// `w2 · (silu(w1 · x) ⊙ (w3 · x))`.
    SwiGlu,
    /// `w2 · (gelu(w1 · x) ⊙ (w3 · x))`.
    GeGlu,
}

impl GptMlp {
    /// True for the gated variants (which have a `w3`).
    pub fn is_gated(self) -> bool {
        matches!(self, GptMlp::SwiGlu | GptMlp::GeGlu)
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

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl core::str::FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName { expected: Self::NAMES }),
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

named_variants!(GptPosition { Learned = "learned", Rope = "rope" });
named_variants!(GptNorm { LayerNorm = "layernorm", RmsNorm = "rmsnorm" });
named_variants!(GptMlp { Gelu = "gelu", SwiGlu = "swiglu", GeGlu = "geglu" });

/// GPT hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GptConfig {
    /// Number of transformer blocks, `1..=`[`MAX_GPT_LAYERS`]; equals the length of
    /// [`GptDesc::blocks`].
    pub n_layer: u32,
    /// Attention heads; divides `d_model`. Head size `hd = d_model / n_head` (even with RoPE).
    pub n_head: u32,
    /// Residual width `d`, `1..=`[`MAX_GPT_DIM`].
    pub d_model: u32,
    /// MLP hidden width (the trainer uses `4 · d`), `1..=`[`MAX_GPT_DIM`].
    pub hidden: u32,
    /// Context length (number of positions), `1..=`[`MAX_GPT_DIM`].
    pub block_size: u32,
    /// Number of token ids, `>= 1`; equals the number of chars in [`GptVocab::chars`].
    pub vocab_size: u32,
    pub position: GptPosition,
    pub norm: GptNorm,
    pub mlp: GptMlp,
    /// The head reuses the token embedding (`lm_head` absent).
    pub tied_head: bool,
    /// The norms' epsilon, finite and > 0 (the trainer uses `1e-5`).
    pub norm_eps: f32,
}

/// The character vocabulary: token id `i` is the `i`-th char of `chars`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GptVocab<'a> {
    /// The vocabulary chars in id order, concatenated as UTF-8; **strictly increasing** by char
    /// value (the order of the trainer's `CharTokenizer::from_corpus`), `vocab_size` chars.
    pub chars: &'a str,
    /// The unknown token: exactly the id of U+FFFD if the vocabulary contains it, else `None`.
    pub unknown: Option<u32>,
}

/// An int8 matrix with one f32 scale per row: `real[r][c] = scale[r] * q[r][c]`
/// (symmetric, zero point 0). Used for the projections (`[out][in]`, PyTorch layout: row = output
/// channel) and the embedding tables (`[rows][d]`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QMatrix<'a> {
    /// 0 to [`MAX_PAD`] ignored bytes, chosen by the exporter so that `weights` starts at a
    /// multiple of 4 bytes from the start of the file: loaded at a 4-aligned address (as the
    /// firmware embeds it), every row is then word-aligned when `cols % 4 == 0`, which saves the
    /// DSP loop its unaligned head and tail words.
    pub pad: &'a [u8],
    /// int8, `rows * cols` bytes, row-major.
    pub weights: &'a [u8],
    /// f32 LE, `rows * 4` bytes, each finite and > 0.
    pub scales: &'a [u8],
}

impl QMatrix<'_> {
    /// An empty matrix (placeholder in fixed-capacity arrays).
    pub const EMPTY: QMatrix<'static> = QMatrix {
        pad: &[],
        weights: &[],
        scales: &[],
    };

    /// Bytes of parameter data.
    pub fn param_bytes(&self) -> usize {
        self.weights.len() + self.scales.len()
    }
}

/// The parameters of a LayerNorm / RMSNorm over `d` values (f32 LE, `d * 4` bytes each, finite).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormParams<'a> {
    pub weight: &'a [u8],
    /// Present for [`GptNorm::LayerNorm`], absent for [`GptNorm::RmsNorm`].
    #[serde(borrow)]
    pub bias: Option<&'a [u8]>,
}

impl NormParams<'_> {
    /// An empty norm (placeholder).
    pub const EMPTY: NormParams<'static> = NormParams {
        weight: &[],
        bias: None,
    };

    /// Bytes of parameter data.
    pub fn param_bytes(&self) -> usize {
        self.weight.len() + self.bias.map_or(0, <[u8]>::len)
    }
}

/// RoPE tables for positions `0..block_size`: `cos[p][i]`, `sin[p][i]` for `i < hd / 2`, f32 LE
/// (`block_size * hd / 2 * 4` bytes each, finite, `|v| <= 1`). Exactly the trainer's
/// `Tensor::rope_tables(0, block_size, hd)` (computed in f64, rounded once to f32), so no
/// transcendental function has to agree between host and device.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeTables<'a> {
    pub cos: &'a [u8],
    pub sin: &'a [u8],
}

/// One pre-norm transformer block, int8 weights and calibrated static activation scales
/// (`s_*`: the real value of int8 `q` is `s * q`; finite and > 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptBlock<'a> {
    #[serde(borrow)]
    pub ln1: NormParams<'a>,
    /// Scale of the quantized `ln1(x)` (input of `wq`, `wk`, `wv`).
    pub attn_in_scale: f32,
    /// `[d][d]` each.
    #[serde(borrow)]
    pub wq: QMatrix<'a>,
    #[serde(borrow)]
    pub wk: QMatrix<'a>,
    #[serde(borrow)]
    pub wv: QMatrix<'a>,
    /// Scale of the quantized queries (after RoPE).
    pub q_scale: f32,
    /// Scale of the int8 keys in the KV cache (after RoPE).
    pub k_scale: f32,
    /// Scale of the int8 values in the KV cache.
    pub v_scale: f32,
    /// Scale of the quantized concatenated head outputs (input of `wo`).
    pub attn_out_scale: f32,
    /// `[d][d]`.
    #[serde(borrow)]
    pub wo: QMatrix<'a>,
    #[serde(borrow)]
    pub ln2: NormParams<'a>,
    /// Scale of the quantized `ln2(x)` (input of `w1`, `w3`).
    pub mlp_in_scale: f32,
    /// `[hidden][d]`.
    #[serde(borrow)]
    pub w1: QMatrix<'a>,
    /// `[hidden][d]`; present exactly for the gated MLPs.
    #[serde(borrow)]
    pub w3: Option<QMatrix<'a>>,
    /// Scale of the quantized up-projection `W1·a` (the index of `act_lut`).
    pub mlp_gate_scale: f32,
    /// Scale of the values in `act_lut`. For [`GptMlp::Gelu`] the table's values are the input
    /// of `w2`, so this must equal `mlp_hidden_scale`.
    pub mlp_act_scale: f32,
    /// The activation as a table, [`ACT_LUT_LEN`] int8 values:
    /// `act_lut[q as u8] = Q(act(mlp_gate_scale · q), mlp_act_scale)` for every int8 `q`
    /// (`act` = GELU, or SiLU for [`GptMlp::SwiGlu`]), computed by the exporter.
    pub act_lut: &'a [u8],
    /// Scale of the quantized activation (input of `w2`).
    pub mlp_hidden_scale: f32,
    /// `[d][hidden]`.
    #[serde(borrow)]
    pub w2: QMatrix<'a>,
}

impl GptBlock<'_> {
    /// An empty block (placeholder in fixed-capacity arrays).
    pub const EMPTY: GptBlock<'static> = GptBlock {
        ln1: NormParams::EMPTY,
        attn_in_scale: 1.0,
        wq: QMatrix::EMPTY,
        wk: QMatrix::EMPTY,
        wv: QMatrix::EMPTY,
        q_scale: 1.0,
        k_scale: 1.0,
        v_scale: 1.0,
        attn_out_scale: 1.0,
        wo: QMatrix::EMPTY,
        ln2: NormParams::EMPTY,
        mlp_in_scale: 1.0,
        w1: QMatrix::EMPTY,
        w3: None,
        mlp_gate_scale: 1.0,
        mlp_act_scale: 1.0,
        act_lut: &[],
        mlp_hidden_scale: 1.0,
        w2: QMatrix::EMPTY,
    };

    /// Bytes of parameter data stored for this block.
    pub fn param_bytes(&self) -> usize {
        self.ln1.param_bytes()
            + self.ln2.param_bytes()
            + [self.wq, self.wk, self.wv, self.wo, self.w1, self.w2]
                .iter()
                .map(QMatrix::param_bytes)
                .sum::<usize>()
            + self.w3.as_ref().map_or(0, QMatrix::param_bytes)
            + self.act_lut.len()
    }
}

/// Most padding bytes before an int8 weight array ([`QMatrix::pad`], [`Linear::pad`],
/// [`Conv2d::pad`]).
pub const MAX_PAD: usize = 3;

impl<'a> Body<'a> {
    /// Calls `f(pad, weights)` for every int8 weight array in file order (a Sequential body's
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

impl<'a> GptDesc<'a> {
    /// Calls `f` on every int8 matrix in file order: `tok_emb`, `pos_emb`, per block `wq wk wv
    /// wo w1 w3 w2`, `lm_head` (the order in which the exporter pads them, see [`QMatrix::pad`]).
    pub fn for_each_matrix_mut(&mut self, mut f: impl FnMut(&mut QMatrix<'a>)) {
        f(&mut self.tok_emb);
        if let Some(m) = &mut self.pos_emb {
            f(m);
        }
        for b in self.blocks.as_mut_slice() {
            f(&mut b.wq);
            f(&mut b.wk);
            f(&mut b.wv);
            f(&mut b.wo);
            f(&mut b.w1);
            if let Some(m) = &mut b.w3 {
                f(m);
            }
            f(&mut b.w2);
        }
        if let Some(m) = &mut self.lm_head {
            f(m);
        }
    }
}

/// Entries of [`GptBlock::act_lut`]: one per int8 value.
pub const ACT_LUT_LEN: usize = 256;

/// How well the exported model did on the exporter's validation batches (informative).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GptEval {
    /// Mean next-token cross-entropy (nats) of the float model. NaN if unknown.
    pub val_loss_float: f32,
    /// Mean next-token cross-entropy (nats) of this int8 model as run by aka-core. NaN if unknown.
    pub val_loss_int8: f32,
    /// Percentage of positions where the int8 and float argmax agree. NaN if unknown.
    pub top1_agreement: f32,
    /// Number of predicted positions the figures are averaged over (0 if unknown).
    pub val_tokens: u64,
}

impl GptEval {
    /// No evaluation figures.
    pub const UNKNOWN: GptEval = GptEval {
        val_loss_float: f32::NAN,
        val_loss_int8: f32::NAN,
        top1_agreement: f32::NAN,
        val_tokens: 0,
    };
}

/// A character-level GPT: see [`crate::gpt`] for the arithmetic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptDesc<'a> {
    pub config: GptConfig,
    #[serde(borrow)]
    pub vocab: GptVocab<'a>,
    /// `[vocab_size][d]`, per-row scales. With `tied_head`, also the head.
    #[serde(borrow)]
    pub tok_emb: QMatrix<'a>,
    /// `[block_size][d]`, per-row scales; present exactly for [`GptPosition::Learned`].
    #[serde(borrow)]
    pub pos_emb: Option<QMatrix<'a>>,
    /// Present exactly for [`GptPosition::Rope`].
    #[serde(borrow)]
    pub rope: Option<RopeTables<'a>>,
    /// `n_layer` blocks.
    #[serde(borrow)]
    pub blocks: GptBlockList<'a>,
    /// The final norm.
    #[serde(borrow)]
    pub ln_f: NormParams<'a>,
    /// Scale of the quantized `ln_f(x)` (input of the head).
    pub head_in_scale: f32,
    /// `[vocab_size][d]`; present exactly when `tied_head` is false.
    #[serde(borrow)]
    pub lm_head: Option<QMatrix<'a>>,
    pub eval: GptEval,
}

impl ListItem for GptBlock<'_> {
    const EMPTY: Self = GptBlock::EMPTY;
    const WHAT: &'static str = "GPT blocks";
}

/// At most [`MAX_GPT_LAYERS`] blocks (no heap); encoded like a `Vec`. Decoding more keeps the
/// first [`MAX_GPT_LAYERS`] and records the count in [`FixedList::declared_len`] (the loader
/// rejects it with `Error::TooManyLayers`). See [`FixedList`].
pub type GptBlockList<'a> = FixedList<GptBlock<'a>, MAX_GPT_LAYERS>;

/// Checks the magic bytes, then the format version, before anything else is decoded (shared by
/// every body kind's loader).
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), crate::Error> {
    match bytes.get(..MAGIC.len()) {
        Some(magic) if magic == MAGIC => {}
        Some(_) => return Err(crate::Error::BadMagic),
        None if MAGIC.starts_with(bytes) => return Err(crate::Error::Truncated),
        None => return Err(crate::Error::BadMagic),
    }
    let (header, _) = postcard::take_from_bytes::<Header>(bytes)?;
    if header.version != VERSION {
        return Err(crate::Error::UnsupportedVersion {
            found: header.version,
            supported: VERSION,
        });
    }
    Ok(())
}

/// A quantization scale the runtime accepts: finite and positive.
pub(crate) fn valid_scale(scale: f32) -> bool {
    scale.is_finite() && scale > 0.0
}

/// Checks an input's pixel normalization: a finite `pixel_mean` and a finite, positive
/// `pixel_std`.
pub(crate) fn check_pixel_normalization(input: &InputDesc) -> Result<(), crate::Error> {
    if !input.pixel_mean.is_finite() {
        return Err(crate::Error::BadInput {
            what: "pixel mean must be finite",
        });
    }
    if !valid_scale(input.pixel_std) {
        return Err(crate::Error::BadInput {
            what: "pixel std must be finite and > 0",
        });
    }
    Ok(())
}
