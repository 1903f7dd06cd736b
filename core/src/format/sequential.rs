//! The Sequential body: the input description and a chain of layers (linear, conv2d,
//! max-pool, ReLU, flatten), run by [`crate::SequentialModel`].

use core::fmt;

#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

use super::read::Reader;

use super::{valid_scale, FixedList, ListItem, WeightType};

/// Capacity of a [`LayerList`] (the runtime allocates nothing, so the layer list is a fixed array).
pub const MAX_LAYERS: usize = 16;

/// A sequential (feed-forward chain) model.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct SequentialDesc<'a> {
    pub input: InputDesc,
    #[serde(borrow)]
    pub layers: LayerList<'a>,
}

/// An activation tensor shape, **NHWC** with N = 1: `h` rows of `w` pixels of `c` channels,
/// stored `[h][w][c]` (channel fastest). A flat vector of `n` values is `1 x 1 x n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Linear<'a> {
    pub in_features: u32,
    pub out_features: u32,
    /// 0 to [`MAX_PAD`](super::MAX_PAD) ignored bytes that word-align `weights` in the file (see
    /// [`QMatrix::pad`](super::QMatrix::pad)).
    pub pad: &'a [u8],
    /// How `weights` stores its values (int8, or packed int4 rows of `in_features` values).
    pub weight_type: WeightType,
    /// `[out_features][in_features]` row-major (PyTorch's `weight` layout), symmetric (weight
    /// zero point 0): `out_features * weight_type.row_bytes(in_features)` bytes.
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
    /// 0 to [`MAX_PAD`](super::MAX_PAD) ignored bytes that word-align `weights` in the file (see
    /// [`QMatrix::pad`](super::QMatrix::pad)).
    pub pad: &'a [u8],
    /// How `weights` stores its values: int8, or packed int4 with one row per output channel
    /// (its whole `kernel_h * kernel_w * in_channels` filter, see [`WeightType`]).
    pub weight_type: WeightType,
    /// **OHWI** `[out_channels][kernel_h][kernel_w][in_channels]` (TFLite/CMSIS-NN layout;
    /// PyTorch's OIHW must be transposed). Symmetric (weight zero point 0).
    pub weights: &'a [u8],
    /// int32 LE, `out_channels * 4` bytes, input zero point folded in over the **whole** kernel:
    /// `bias'[o] = bias_q[o] - zp_in * Σ_{kh,kw,i} W[o][kh][kw][i]`.
    pub bias: &'a [u8],
    #[serde(borrow)]
    pub requant: Requant<'a>,
}

/// Max pooling window (no padding): `out = (in - kernel) / stride + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct MaxPool2d {
    pub kernel_h: u32,
    pub kernel_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
}

/// Per-output-channel requantization of an int32 accumulator to int8:
/// `y = clamp(MultiplyByQuantizedMultiplier(acc, multiplier[c], shift[c]) + zero_point, act_min, act_max)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
        let weights = |rows: u32, cols: u64| (rows as u64).saturating_mul(cols) as usize;
        match self {
            Layer::Linear(l) => {
                weights(l.out_features, l.in_features as u64).saturating_add(l.bias.len() / 4)
            }
            Layer::Conv2d(c) => {
                let filter = (c.kernel_h as u64)
                    .saturating_mul(c.kernel_w as u64)
                    .saturating_mul(c.in_channels as u64);
                weights(c.out_channels, filter).saturating_add(c.bias.len() / 4)
            }
            _ => 0,
        }
    }

    /// The weight type of a Linear or Conv2d layer.
    pub fn weight_type(&self) -> Option<WeightType> {
        match self {
            Layer::Linear(l) => Some(l.weight_type),
            Layer::Conv2d(c) => Some(c.weight_type),
            _ => None,
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

impl ListItem for Layer<'_> {
    const EMPTY: Self = Layer::Flatten;
    const WHAT: &'static str = "layers";
}

/// At most [`MAX_LAYERS`] layers; see [`FixedList`].
pub type LayerList<'a> = FixedList<Layer<'a>, MAX_LAYERS>;

/// Checks an input's pixel normalization: a finite `pixel_mean` and a finite, positive
/// `pixel_std`.
pub(crate) fn check_pixel_normalization(input: &InputDesc) -> Result<(), crate::Error> {
    if !input.pixel_mean.is_finite() {
        return Err(crate::Error::BadInput {
            what: msg!("pixel mean must be finite"),
        });
    }
    if !valid_scale(input.pixel_std) {
        return Err(crate::Error::BadInput {
            what: msg!("pixel std must be finite and > 0"),
        });
    }
    Ok(())
}

// The Sequential body's decoding through [`Reader`], fields in declaration order (the order
// postcard writes them); checked against serde's derived decoding by `format::tests`.

impl<'a> SequentialDesc<'a> {
    /// Decodes a Sequential body (the bytes after its [`super::Body`] variant index).
    pub(crate) fn read(r: &mut Reader<'a>) -> Self {
        SequentialDesc {
            input: InputDesc {
                shape: Shape::read(r),
                quant: QuantParams::read(r),
                pixel_mean: r.f32(),
                pixel_std: r.f32(),
            },
            layers: r.list(Layer::read),
        }
    }
}

impl Shape {
    fn read(r: &mut Reader<'_>) -> Self {
        Shape {
            h: r.u32(),
            w: r.u32(),
            c: r.u32(),
        }
    }
}

impl QuantParams {
    fn read(r: &mut Reader<'_>) -> Self {
        QuantParams {
            scale: r.f32(),
            zero_point: r.i8(),
        }
    }
}

impl<'a> Requant<'a> {
    fn read(r: &mut Reader<'a>) -> Self {
        Requant {
            multipliers: r.bytes(),
            shifts: r.bytes(),
            output: QuantParams::read(r),
            act_min: r.i8(),
            act_max: r.i8(),
        }
    }
}

impl<'a> Layer<'a> {
    /// A layer: its variant index (declaration order), then the variant's fields.
    fn read(r: &mut Reader<'a>) -> Self {
        match r.variant(&[0u8, 1, 2, 3, 4]) {
            0 => Layer::Linear(Linear {
                in_features: r.u32(),
                out_features: r.u32(),
                pad: r.bytes(),
                weight_type: WeightType::read(r),
                weights: r.bytes(),
                bias: r.bytes(),
                requant: Requant::read(r),
            }),
            1 => Layer::Conv2d(Conv2d {
                in_channels: r.u32(),
                out_channels: r.u32(),
                kernel_h: r.u32(),
                kernel_w: r.u32(),
                stride_h: r.u32(),
                stride_w: r.u32(),
                pad_h: r.u32(),
                pad_w: r.u32(),
                input_zero_point: r.i8(),
                pad: r.bytes(),
                weight_type: WeightType::read(r),
                weights: r.bytes(),
                bias: r.bytes(),
                requant: Requant::read(r),
            }),
            2 => Layer::MaxPool2d(MaxPool2d {
                kernel_h: r.u32(),
                kernel_w: r.u32(),
                stride_h: r.u32(),
                stride_w: r.u32(),
            }),
            3 => Layer::Flatten,
            _ => Layer::Relu { zero_point: r.i8() },
        }
    }
}
