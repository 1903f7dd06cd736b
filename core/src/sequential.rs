//! The runtime for [`Body::Sequential`] models: load (zero-copy, fully validated) and run in a
//! caller-provided arena.
//!
//! [`Body::Sequential`]: crate::format::Body::Sequential

use crate::format::{check_pixel_normalization, decode_file, valid_scale};
use crate::format::{
    Conv2d, InputDesc, Layer, LayerList, MaxPool2d, Metadata, QuantParams, Requant, SequentialDesc,
    Shape, WeightType, MAX_LAYERS, MAX_PAD,
};
use crate::kernels::{self, Conv2dGeometry, OutputStage, Pool2dGeometry};
use crate::quant::{quantize_pixel, MAX_SHIFT, MIN_SHIFT};
use crate::Error;

/// A validated sequential int8 model borrowing its parameters from the file bytes.
///
/// Memory: the struct itself holds the decoded layer descriptors (no parameter data) and a
/// 256-byte pixel lookup table; running needs an external arena of [`Self::arena_size`] bytes.
#[derive(Clone, Debug)]
pub struct SequentialModel<'a> {
    metadata: Metadata<'a>,
    input: InputDesc,
    layers: LayerList<'a>,
    /// `shapes[0]` is the model input, `shapes[i + 1]` the output of layer `i`.
    shapes: [Shape; MAX_LAYERS + 1],
    /// Quantization of the last layer's output.
    output_quant: QuantParams,
    /// Largest activation (elements = bytes), input included.
    max_activation: usize,
    file_size: usize,
    /// `pixel_lut[p]` = [`quantize_pixel`]`(p, pixel mean, pixel std, input scale, input zero
    /// point)`, built once at load.
    pixel_lut: [i8; 256],
}

/// Layer `index` of a model with its shapes and sizes, for printing.
#[derive(Clone, Copy, Debug)]
pub struct LayerInfo<'m, 'a> {
    pub index: usize,
    pub layer: &'m Layer<'a>,
    pub input: Shape,
    pub output: Shape,
    /// Weights + biases.
    pub params: usize,
    /// Bytes of weights, bias, multipliers and shifts in the file.
    pub param_bytes: usize,
}

impl LayerInfo<'_, '_> {
    /// Multiply-accumulates of this layer per inference (saturating): `in · out` for a linear
    /// layer, `out_h · out_w · out_c · kernel_h · kernel_w · in_c` for a convolution, 0 for the
    /// others.
    pub fn macs(&self) -> u64 {
        let o = self.output;
        match self.layer {
            Layer::Linear(l) => u64::from(l.in_features).saturating_mul(u64::from(l.out_features)),
            Layer::Conv2d(c) => [o.h, o.w, o.c, c.kernel_h, c.kernel_w, c.in_channels]
                .iter()
                .fold(1u64, |p, &v| p.saturating_mul(u64::from(v))),
            _ => 0,
        }
    }

    /// [`Self::macs`] with checked arithmetic: `None` if the product overflows `u64`.
    pub fn checked_macs(&self) -> Option<u64> {
        let o = self.output;
        match self.layer {
            Layer::Linear(l) => u64::from(l.in_features).checked_mul(u64::from(l.out_features)),
            Layer::Conv2d(c) => [o.h, o.w, o.c, c.kernel_h, c.kernel_w, c.in_channels]
                .iter()
                .try_fold(1u64, |p, &v| p.checked_mul(u64::from(v))),
            _ => Some(0),
        }
    }

    /// The work this layer declares per inference, in operations (checked; `None` on `u64`
    /// overflow): its [MACs](Self::checked_macs) plus one element operation per output value
    /// (requantization, ReLU), or per window tap for a max pool (`out_len · kernel_h ·
    /// kernel_w`); 0 for `Flatten`. A bound a caller can refuse before running.
    pub fn work(&self) -> Option<u64> {
        let out_len = u64::from(self.output.h)
            .checked_mul(u64::from(self.output.w))?
            .checked_mul(u64::from(self.output.c))?;
        let elems = match self.layer {
            Layer::Flatten => 0,
            Layer::MaxPool2d(p) => out_len
                .checked_mul(u64::from(p.kernel_h))?
                .checked_mul(u64::from(p.kernel_w))?,
            _ => out_len,
        };
        self.checked_macs()?.checked_add(elems)
    }
}

impl<'a> SequentialModel<'a> {
    /// Parses and validates a model file. Never panics; every problem is a typed [`Error`].
    ///
    /// Order: magic ([`Error::BadMagic`]), version ([`Error::UnsupportedVersion`]), postcard
    /// decode ([`Error::Truncated`] / [`Error::Malformed`] / [`Error::TrailingBytes`]), then the
    /// model: input description, layer count, and for each layer its parameters, the chain of
    /// shapes and quantization, every slice length, and size overflow.
    pub fn load(bytes: &'a [u8]) -> Result<Self, Error> {
        let (metadata, desc) = decode_file::<SequentialDesc>(bytes)?;
        Self::from_parts(metadata, desc.input, desc.layers, bytes.len())
    }

    /// Not inlined into [`Self::load`]: the decoded file and the model under construction then
    /// live in separate frames (the firmware's stack high-water is set by the loader).
    #[inline(never)]
    fn from_parts(
        metadata: Metadata<'a>,
        input: InputDesc,
        layers: LayerList<'a>,
        file_size: usize,
    ) -> Result<Self, Error> {
        if layers.declared_len() > MAX_LAYERS {
            return Err(Error::TooManyLayers {
                found: layers.declared_len(),
                max: MAX_LAYERS,
            });
        }
        if layers.is_empty() {
            return Err(Error::NoLayers);
        }
        if input.shape.is_empty() {
            return Err(Error::BadInput {
                what: msg!("zero dimension"),
            });
        }
        let input_len = input.shape.len().ok_or(Error::BadInput {
            what: msg!("size overflows"),
        })?;
        if !valid_scale(input.quant.scale) {
            return Err(Error::BadInput {
                what: msg!("scale must be finite and > 0"),
            });
        }
        check_pixel_normalization(&input)?;

        let mut shapes = [Shape::default(); MAX_LAYERS + 1];
        shapes[0] = input.shape;
        let mut quant = input.quant;
        let mut max_activation = input_len;
        for (i, layer) in layers.as_slice().iter().enumerate() {
            let in_shape = shapes.get(i).copied().unwrap_or_default();
            let (out_shape, out_quant) = check_layer(i, layer, in_shape, quant)?;
            let out_len = out_shape.len().ok_or(Error::SizeOverflow { layer: i })?;
            max_activation = max_activation.max(out_len);
            if let Some(slot) = shapes.get_mut(i + 1) {
                *slot = out_shape;
            }
            quant = out_quant;
        }
        // Two ping-pong halves must be addressable.
        max_activation.checked_mul(2).ok_or(Error::SizeOverflow {
            layer: layers.len() - 1,
        })?;

        let output_len = shapes.get(layers.len()).and_then(Shape::len).unwrap_or(0);
        let labels = metadata.label_count();
        if labels != 0 && labels != output_len {
            return Err(Error::LabelCount {
                labels,
                outputs: output_len,
            });
        }

        let mut pixel_lut = [0i8; 256];
        for (p, q) in pixel_lut.iter_mut().enumerate() {
            *q = quantize_pixel(
                p as u8,
                input.pixel_mean,
                input.pixel_std,
                input.quant.scale,
                input.quant.zero_point,
            );
        }
        Ok(Self {
            metadata,
            input,
            layers,
            shapes,
            output_quant: quant,
            max_activation,
            file_size,
            pixel_lut,
        })
    }

    /// Arena bytes [`Self::run`] needs: `2 * max(input_len, max over layers of output_len)`
    /// (two ping-pong halves, each holding the largest activation).
    pub fn arena_size(&self) -> usize {
        // Checked at load.
        self.max_activation.saturating_mul(2)
    }

    /// Runs the model on a quantized input (`input_len()` int8 values, NHWC) using only `arena`
    /// (at least [`Self::arena_size`] bytes). Returns the output (`output_len()` int8 values),
    /// which lives in the arena.
    pub fn run<'b>(&self, input: &[i8], arena: &'b mut [i8]) -> Result<&'b [i8], Error> {
        self.forward_observed(input, arena, ignore)
    }

    /// [`Self::run`], calling `observe(layer_index, output)` after each layer with that layer's
    /// output (`layers()[layer_index]`'s output shape, NHWC int8; in place for `Relu` and
    /// `Flatten`). For profilers and per-layer checks; with an empty closure it compiles to
    /// [`Self::run`].
    pub fn forward_observed<'b>(
        &self,
        input: &[i8],
        arena: &'b mut [i8],
        observe: impl FnMut(usize, &[i8]),
    ) -> Result<&'b [i8], Error> {
        let (a, b) = self.split_arena(input.len(), arena)?;
        for (dst, &src) in a.iter_mut().zip(input) {
            *dst = src;
        }
        self.forward(a, b, observe)
    }

    /// Quantizes 8-bit pixels (real value `(pixel / 255 - pixel_mean) / pixel_std`, see
    /// [`crate::quant::quantize_pixel`]; one table lookup per pixel),
    /// runs the model and returns `(argmax class, scores)`; ties go to the lowest class index.
    pub fn classify_u8<'b>(
        &self,
        pixels: &[u8],
        arena: &'b mut [i8],
    ) -> Result<(usize, &'b [i8]), Error> {
        let (a, b) = self.split_arena(pixels.len(), arena)?;
        for (q, &p) in a.iter_mut().zip(pixels) {
            *q = self.pixel_lut[p as usize];
        }
        let scores = self.forward(a, b, ignore)?;
        Ok((kernels::argmax(scores).unwrap_or(0), scores))
    }

    /// Quantizes one pixel with the model's input parameters (what `classify_u8` does).
    pub fn quantize_pixel(&self, pixel: u8) -> i8 {
        self.pixel_lut[pixel as usize]
    }

    /// Checks an input of `input_len` values ([`Error::InputLength`]) and the arena
    /// ([`Error::ArenaTooSmall`]), then splits the arena into the two activation buffers.
    fn split_arena<'b>(
        &self,
        input_len: usize,
        arena: &'b mut [i8],
    ) -> Result<(&'b mut [i8], &'b mut [i8]), Error> {
        if input_len != self.input_len() {
            return Err(Error::InputLength {
                expected: self.input_len(),
                found: input_len,
            });
        }
        let need = self.arena_size();
        if arena.len() < need {
            return Err(Error::ArenaTooSmall {
                need,
                have: arena.len(),
            });
        }
        let (a, rest) = arena.split_at_mut(self.max_activation);
        Ok((a, rest))
    }

    /// Runs all layers, calling `observe(i, output of layer i)` after each; the input is at the
    /// start of `a`.
    fn forward<'b>(
        &self,
        a: &'b mut [i8],
        b: &'b mut [i8],
        mut observe: impl FnMut(usize, &[i8]),
    ) -> Result<&'b [i8], Error> {
        // Unreachable after `split_arena`; reported rather than panicking.
        let too_small = Error::ArenaTooSmall {
            need: self.arena_size(),
            have: a.len() + b.len(),
        };
        let (mut cur, mut next) = (a, b);
        for (i, layer) in self.layers.as_slice().iter().enumerate() {
            let in_shape = self.shape(i);
            let out_shape = self.shape(i + 1);
            let in_len = in_shape.len().unwrap_or(0);
            let out_len = out_shape.len().unwrap_or(0);
            let x = cur.get(..in_len).ok_or(too_small)?;
            match layer {
                Layer::Linear(l) => {
                    let y = next.get_mut(..out_len).ok_or(too_small)?;
                    let stage = stage(l.bias, &l.requant);
                    match l.weight_type {
                        WeightType::Int8 => kernels::linear(x, l.weights, &stage, y)?,
                        WeightType::Int4 => kernels::linear_s4(x, l.weights, &stage, y)?,
                        // Refused by `load` (GPT matrices only).
                        WeightType::Int8Offset => {
                            return Err(Error::KernelShape {
                                kernel: msg!("linear"),
                            })
                        }
                    }
                    core::mem::swap(&mut cur, &mut next);
                }
                Layer::Conv2d(c) => {
                    let y = next.get_mut(..out_len).ok_or(too_small)?;
                    let conv = match c.weight_type {
                        WeightType::Int8 => kernels::conv2d,
                        WeightType::Int4 => kernels::conv2d_s4,
                        // Refused by `load` (GPT matrices only).
                        WeightType::Int8Offset => {
                            return Err(Error::KernelShape {
                                kernel: msg!("conv2d"),
                            })
                        }
                    };
                    let g = conv_geometry(c, in_shape);
                    conv(x, &g, c.weights, &stage(c.bias, &c.requant), y)?;
                    core::mem::swap(&mut cur, &mut next);
                }
                Layer::MaxPool2d(p) => {
                    let y = next.get_mut(..out_len).ok_or(too_small)?;
                    kernels::max_pool2d(x, &pool_geometry(p, in_shape), y)?;
                    core::mem::swap(&mut cur, &mut next);
                }
                Layer::Flatten => {}
                Layer::Relu { zero_point } => {
                    kernels::relu(cur.get_mut(..in_len).ok_or(too_small)?, *zero_point);
                }
            }
            observe(i, cur.get(..out_len).unwrap_or(&[]));
        }
        let out_len = self.output_len();
        let cur: &'b [i8] = cur;
        cur.get(..out_len).ok_or(too_small)
    }

    fn shape(&self, i: usize) -> Shape {
        self.shapes.get(i).copied().unwrap_or_default()
    }

    /// The file's metadata (task, labels, accuracies, seed, training command).
    pub fn metadata(&self) -> &Metadata<'a> {
        &self.metadata
    }

    /// Input shape (NHWC).
    pub fn input_shape(&self) -> Shape {
        self.input.shape
    }

    /// The input description: shape, quantization and pixel normalization.
    pub fn input(&self) -> &InputDesc {
        &self.input
    }

    /// The pixel normalization `(pixel_mean, pixel_std)`: pixel `p` means
    /// `(p / 255 - pixel_mean) / pixel_std`.
    pub fn pixel_normalization(&self) -> (f32, f32) {
        (self.input.pixel_mean, self.input.pixel_std)
    }

    /// Number of int8 input values.
    pub fn input_len(&self) -> usize {
        self.input.shape.len().unwrap_or(0)
    }

    /// Input quantization (`real = pixel / 255` for images).
    pub fn input_quant(&self) -> QuantParams {
        self.input.quant
    }

    /// Output shape (`1 x 1 x classes` for a classifier).
    pub fn output_shape(&self) -> Shape {
        self.shape(self.layers.len())
    }

    /// Number of int8 output values.
    pub fn output_len(&self) -> usize {
        self.output_shape().len().unwrap_or(0)
    }

    /// Output quantization: `score = scale * (q - zero_point)`.
    pub fn output_quant(&self) -> QuantParams {
        self.output_quant
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer<'a>] {
        self.layers.as_slice()
    }

    /// Layer `index` with its input/output shapes and sizes.
    pub fn layer_info(&self, index: usize) -> Option<LayerInfo<'_, 'a>> {
        let layer = self.layers.as_slice().get(index)?;
        Some(LayerInfo {
            index,
            layer,
            input: self.shape(index),
            output: self.shape(index + 1),
            params: layer.param_count(),
            param_bytes: layer.param_bytes(),
        })
    }

    /// All layers with their shapes and sizes.
    pub fn layer_infos(&self) -> impl Iterator<Item = LayerInfo<'_, 'a>> {
        (0..self.layers.len()).filter_map(|i| self.layer_info(i))
    }

    /// Multiply-accumulates per inference: the sum of [`LayerInfo::macs`] (saturating).
    pub fn macs(&self) -> u64 {
        self.layer_infos()
            .fold(0u64, |s, info| s.saturating_add(info.macs()))
    }

    /// [`Self::macs`] with checked arithmetic: `None` if the sum overflows `u64`.
    pub fn checked_macs(&self) -> Option<u64> {
        self.layer_infos()
            .try_fold(0u64, |s, info| s.checked_add(info.checked_macs()?))
    }

    /// The work one inference declares, in operations (checked; `None` on `u64` overflow): one
    /// per input value (quantization) plus every layer's [`LayerInfo::work`]. Bounded only by the
    /// file's shapes, so a caller running untrusted files can refuse it before running.
    pub fn work(&self) -> Option<u64> {
        let input = u64::try_from(self.input_len()).ok()?;
        self.layer_infos()
            .try_fold(input, |s, info| s.checked_add(info.work()?))
    }

    /// Total weights + biases.
    pub fn param_count(&self) -> usize {
        self.layers().iter().map(Layer::param_count).sum()
    }

    /// Total bytes of parameter data (weights, bias, multipliers, shifts) — what stays in flash
    /// besides the small descriptors; see also [`Self::file_size`].
    pub fn param_bytes(&self) -> usize {
        self.layers().iter().map(Layer::param_bytes).sum()
    }

    /// Size of the whole model file in bytes.
    pub fn file_size(&self) -> usize {
        self.file_size
    }
}

/// The observer of [`SequentialModel::run`] and `classify_u8`: nothing (one function type, so
/// both share one instance of the layer loop).
#[inline(always)]
fn ignore(_: usize, _: &[i8]) {}

fn to_usize(v: u32) -> usize {
    v as usize
}

/// Validates one layer against its input; returns its output shape and quantization.
fn check_layer(
    i: usize,
    layer: &Layer,
    input: Shape,
    quant: QuantParams,
) -> Result<(Shape, QuantParams), Error> {
    let overflow = Error::SizeOverflow { layer: i };
    let bad = |what| Error::BadParameter { layer: i, what };
    // A build with only the int8 Linear and ReLU kernels refuses the other layers at load time,
    // not at their first inference.
    #[cfg(feature = "linear-only")]
    if !matches!(
        layer,
        Layer::Flatten
            | Layer::Relu { .. }
            | Layer::Linear(crate::format::Linear {
                weight_type: WeightType::Int8,
                ..
            })
    ) {
        return Err(bad(msg!(
            "this aka-core is built with the linear-only feature (int8 Linear, ReLU, Flatten)"
        )));
    }
    match layer {
        Layer::Linear(l) => {
            let flat = to_usize(input.h)
                .checked_mul(to_usize(input.w))
                .ok_or(overflow)?;
            check_shape(
                i,
                msg!("linear input height*width (insert a Flatten)"),
                1,
                flat,
            )?;
            let (expected, found) = (to_usize(input.c), to_usize(l.in_features));
            check_shape(i, msg!("linear in_features"), expected, found)?;
            if l.out_features == 0 {
                return Err(bad(msg!("out_features is 0")));
            }
            let (n_in, n_out) = (to_usize(l.in_features), to_usize(l.out_features));
            if l.weight_type == WeightType::Int8Offset {
                return Err(bad(msg!("int8-offset weights are for GPT matrices only")));
            }
            let w_len = l.weight_type.matrix_bytes(n_out, n_in).ok_or(overflow)?;
            if l.pad.len() > MAX_PAD {
                return Err(bad(msg!("more than 3 padding bytes before the weights")));
            }
            check_len(i, msg!("weights"), w_len, l.weights)?;
            if !l.weight_type.padding_is_zero(l.weights, n_in) {
                return Err(bad(msg!("an int4 row's padding nibble is not 0")));
            }
            check_len(
                i,
                msg!("bias"),
                n_out.checked_mul(4).ok_or(overflow)?,
                l.bias,
            )?;
            check_requant(i, &l.requant, n_out)?;
            Ok((Shape::flat(l.out_features), l.requant.output))
        }
        Layer::Conv2d(c) => {
            let (expected, found) = (to_usize(input.c), to_usize(c.in_channels));
            check_shape(i, msg!("conv2d in_channels"), expected, found)?;
            if c.input_zero_point != quant.zero_point {
                return Err(bad(msg!(
                    "conv2d input_zero_point differs from the previous output's zero point"
                )));
            }
            if c.out_channels == 0 {
                return Err(bad(msg!("out_channels is 0")));
            }
            if c.kernel_h == 0 || c.kernel_w == 0 {
                return Err(bad(msg!("kernel size is 0")));
            }
            if c.stride_h == 0 || c.stride_w == 0 {
                return Err(bad(msg!("stride is 0")));
            }
            if c.pad_h >= c.kernel_h || c.pad_w >= c.kernel_w {
                return Err(bad(msg!("padding must be smaller than the kernel")));
            }
            let g = conv_geometry(c, input);
            let (out_h, out_w) = g
                .output_hw()
                .ok_or(bad(msg!("kernel larger than the padded input")))?;
            if c.pad_h > input.h || c.pad_w > input.w {
                return Err(bad(msg!("padding larger than the input")));
            }
            // The padded input is >= the kernel > the padding, so this does not overflow.
            let (padded_h, padded_w) = (g.in_h + 2 * g.pad_h, g.in_w + 2 * g.pad_w);
            if g.stride_h > padded_h || g.stride_w > padded_w {
                return Err(bad(msg!("stride larger than the padded input")));
            }
            let filter = g
                .kernel_h
                .checked_mul(g.kernel_w)
                .and_then(|n| n.checked_mul(g.in_c))
                .ok_or(overflow)?;
            if c.weight_type == WeightType::Int8Offset {
                return Err(bad(msg!("int8-offset weights are for GPT matrices only")));
            }
            let w_len = c
                .weight_type
                .matrix_bytes(g.out_c, filter)
                .ok_or(overflow)?;
            if c.pad.len() > MAX_PAD {
                return Err(bad(msg!("more than 3 padding bytes before the weights")));
            }
            check_len(i, msg!("weights"), w_len, c.weights)?;
            if !c.weight_type.padding_is_zero(c.weights, filter) {
                return Err(bad(msg!("an int4 row's padding nibble is not 0")));
            }
            check_len(
                i,
                msg!("bias"),
                g.out_c.checked_mul(4).ok_or(overflow)?,
                c.bias,
            )?;
            check_requant(i, &c.requant, g.out_c)?;
            let out = Shape::new(
                u32::try_from(out_h).map_err(|_| overflow)?,
                u32::try_from(out_w).map_err(|_| overflow)?,
                c.out_channels,
            );
            Ok((out, c.requant.output))
        }
        Layer::MaxPool2d(p) => {
            if p.kernel_h == 0 || p.kernel_w == 0 {
                return Err(bad(msg!("kernel size is 0")));
            }
            if p.stride_h == 0 || p.stride_w == 0 {
                return Err(bad(msg!("stride is 0")));
            }
            let (out_h, out_w) = pool_geometry(p, input)
                .output_hw()
                .ok_or(bad(msg!("pool kernel larger than the input")))?;
            if p.stride_h > input.h || p.stride_w > input.w {
                return Err(bad(msg!("pool stride larger than the input")));
            }
            let out = Shape::new(
                u32::try_from(out_h).map_err(|_| overflow)?,
                u32::try_from(out_w).map_err(|_| overflow)?,
                input.c,
            );
            Ok((out, quant))
        }
        Layer::Flatten => {
            let n = input
                .len()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(overflow)?;
            Ok((Shape::flat(n), quant))
        }
        Layer::Relu { zero_point } => {
            if *zero_point != quant.zero_point {
                return Err(bad(msg!(
                    "relu zero_point differs from its input's zero point"
                )));
            }
            Ok((input, quant))
        }
    }
}

/// [`Error::ShapeMismatch`] for `layer` unless `found == expected`.
fn check_shape(
    layer: usize,
    what: &'static str,
    expected: usize,
    found: usize,
) -> Result<(), Error> {
    let mismatch = Error::ShapeMismatch {
        layer,
        what,
        expected,
        found,
    };
    (found == expected).then_some(()).ok_or(mismatch)
}

fn check_len(layer: usize, what: &'static str, expected: usize, bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() != expected {
        return Err(Error::LengthMismatch {
            layer,
            what,
            expected,
            found: bytes.len(),
        });
    }
    Ok(())
}

fn check_requant(i: usize, r: &Requant, channels: usize) -> Result<(), Error> {
    let bytes = channels
        .checked_mul(4)
        .ok_or(Error::SizeOverflow { layer: i })?;
    check_len(i, msg!("multipliers"), bytes, r.multipliers)?;
    check_len(i, msg!("shifts"), bytes, r.shifts)?;
    let bad = |what| Error::BadParameter { layer: i, what };
    let le = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if r.multipliers.chunks_exact(4).any(|m| le(m) < 0) {
        return Err(bad(msg!("negative multiplier")));
    }
    if r.shifts
        .chunks_exact(4)
        .any(|s| !(MIN_SHIFT..=MAX_SHIFT).contains(&le(s)))
    {
        return Err(bad(msg!("shift outside -31..=30")));
    }
    if !valid_scale(r.output.scale) {
        return Err(bad(msg!("output scale must be finite and > 0")));
    }
    if r.act_min > r.act_max {
        return Err(bad(msg!("act_min > act_max")));
    }
    Ok(())
}

/// The output stage a Linear or Conv2d layer's kernel call takes: its bias and requantization.
/// Public so that code running a model layer by layer (the firmware's profiler) builds exactly
/// the arguments [`SequentialModel::run`] does.
pub fn stage<'a>(bias: &'a [u8], r: &Requant<'a>) -> OutputStage<'a> {
    OutputStage {
        bias,
        multipliers: r.multipliers,
        shifts: r.shifts,
        zero_point: r.output.zero_point,
        act_min: r.act_min,
        act_max: r.act_max,
    }
}

/// The kernel geometry of a Conv2d layer applied to an input of shape `input` (see [`stage`]).
pub fn conv_geometry(c: &Conv2d, input: Shape) -> Conv2dGeometry {
    Conv2dGeometry {
        in_h: to_usize(input.h),
        in_w: to_usize(input.w),
        in_c: to_usize(input.c),
        out_c: to_usize(c.out_channels),
        kernel_h: to_usize(c.kernel_h),
        kernel_w: to_usize(c.kernel_w),
        stride_h: to_usize(c.stride_h),
        stride_w: to_usize(c.stride_w),
        pad_h: to_usize(c.pad_h),
        pad_w: to_usize(c.pad_w),
        input_zero_point: c.input_zero_point,
    }
}

/// The kernel geometry of a MaxPool2d layer applied to an input of shape `input` (see [`stage`]).
pub fn pool_geometry(p: &MaxPool2d, input: Shape) -> Pool2dGeometry {
    Pool2dGeometry {
        in_h: to_usize(input.h),
        in_w: to_usize(input.w),
        channels: to_usize(input.c),
        kernel_h: to_usize(p.kernel_h),
        kernel_w: to_usize(p.kernel_w),
        stride_h: to_usize(p.stride_h),
        stride_w: to_usize(p.stride_w),
    }
}
