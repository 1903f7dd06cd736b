//! The model file format, defined once for the exporter (serialize) and the runtime
//! (zero-copy deserialize).
//!
//! A model file is the [postcard] encoding of one [`ModelFile`]:
//!
//! ```text
//! ModelFile
//! ├─ header:   Header { magic: *b"AKA\x01"-style 4 raw bytes, version: u16 (varint) }
//! ├─ metadata: Metadata { task, labels, accuracies, seed, train_command }
//! └─ body:     Body::Sequential(SequentialDesc { input: InputDesc, layers: LayerList })
//! ```
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
pub const VERSION: u16 = 1;
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
    /// argmax. (A language-model variant will be appended later; postcard encodes the variant
    /// index, so appending variants keeps old files valid.)
    Classifier,
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

/// The network. An enum so that other architectures (a GPT) can be appended later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Body<'a> {
    /// A chain of layers, each consuming the previous one's output.
    Sequential(#[serde(borrow)] SequentialDesc<'a>),
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputDesc {
    /// Image: `H x W x C` (MNIST: 28 x 28 x 1).
    pub shape: Shape,
    /// Quantization of the input; for images the real value of a pixel is `pixel / 255`.
    pub quant: QuantParams,
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

/// A fixed-capacity list of at most [`MAX_LAYERS`] layers (no heap).
///
/// Serialized as a postcard sequence (varint count, then the layers). Decoding a file that
/// declares more than [`MAX_LAYERS`] layers still succeeds but keeps only the first
/// [`MAX_LAYERS`]; [`LayerList::declared_len`] tells, and the loader rejects it with
/// `Error::TooManyLayers`.
#[derive(Clone)]
pub struct LayerList<'a> {
    layers: [Layer<'a>; MAX_LAYERS],
    len: usize,
    declared: usize,
}

impl<'a> LayerList<'a> {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            layers: [Layer::Flatten; MAX_LAYERS],
            len: 0,
            declared: 0,
        }
    }

    /// A list holding `layers`; `None` if there are more than [`MAX_LAYERS`].
    pub fn from_slice(layers: &[Layer<'a>]) -> Option<Self> {
        let mut list = Self::new();
        for &layer in layers {
            list.push(layer).ok()?;
        }
        Some(list)
    }

    /// Appends a layer; gives it back if the list is full.
    pub fn push(&mut self, layer: Layer<'a>) -> Result<(), Layer<'a>> {
        match self.layers.get_mut(self.len) {
            Some(slot) => {
                *slot = layer;
                self.len += 1;
                self.declared = self.len;
                Ok(())
            }
            None => Err(layer),
        }
    }

    /// The stored layers.
    pub fn as_slice(&self) -> &[Layer<'a>] {
        self.layers.get(..self.len).unwrap_or(&[])
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of layers the encoded file declared (may exceed [`MAX_LAYERS`]).
    pub fn declared_len(&self) -> usize {
        self.declared
    }
}

impl Default for LayerList<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LayerList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl PartialEq for LayerList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.declared == other.declared && self.as_slice() == other.as_slice()
    }
}

impl Serialize for LayerList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.as_slice())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LayerList<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ListVisitor<'a> {
            type Value = LayerList<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a sequence of layers")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = LayerList::new();
                let mut declared = 0usize;
                // Every element consumes at least one input byte, so this loop is bounded by the
                // file size even if the declared count is huge.
                while let Some(layer) = seq.next_element::<Layer<'a>>()? {
                    let _ = list.push(layer);
                    declared = declared.saturating_add(1);
                }
                list.declared = declared;
                Ok(list)
            }
        }

        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}
