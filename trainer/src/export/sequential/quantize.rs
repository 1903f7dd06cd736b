//! Post-training int8 quantization of a [`Sequential`] model, TensorFlow Lite's int8 scheme.
//!
//! [`quantize`] turns a trained float model into a [`QuantizedModel`]: the integer parameters
//! that [`super::encode`] writes into an `aka-core` model file. The arithmetic is exactly what
//! `aka-core` runs:
//!
//! * **Input**: the calibration set's pixel normalization `{ mean, std }`
//!   ([`crate::data::mnist::PixelNorm`]) is stored in the file (`InputDesc::pixel_mean` /
//!   `pixel_std`): pixel `p` means `x = (p / 255 - mean) / std`, in `f32`, as in the training
//!   batches. Its quantization is [`input_quant`]: the same asymmetric formula as the activations
//!   (below) over the input range `[(0 - mean) / std, (1 - mean) / std]`, so real 0 is exactly a
//!   zero point (and a Conv2d's zero padding stays exact). aka-core quantizes a raw pixel as
//!   `clamp(round(x / scale) + zero_point)` (`aka_core::quant::quantize_pixel`, a 256-entry table
//!   built at load). Without normalization (mean 0, std 1, `--no-normalize`) this is scale
//!   `1/255`, zero point `-128` ([`crate::export::quantize::INPUT_SCALE`],
//!   [`crate::export::quantize::INPUT_ZERO_POINT`]), i.e. `q = p - 128`.
//! * **Weights** ([`quantize_rows_as`]): int8 (or int4, [`QuantConfig::weights`]), symmetric, **per output channel**: `s_w[o] = max|W[o]| / 127`,
//!   `q = clamp(round(w / s_w[o]), -127, 127)`, zero point 0 (an all-zero channel gets scale 1).
//!   The maximum quantization error per layer is reported, absolute and relative to the
//!   channel's `max|W[o]|` ([`LayerReport`]).
//! * **Activations**: int8, **per tensor**, asymmetric `(scale, zero_point)`, calibrated by running
//!   the float model (`no_grad`, evaluation mode, so dropout is off) on
//!   [`QuantConfig::samples`] training images, normalized exactly like the training batches
//!   (`ImageSet::batch_images` with the set's normalization). The range is the observed min/max
//!   ([`Calibration::MinMax`]) or a symmetric percentile of the values
//!   ([`Calibration::Percentile`]), always widened to contain 0 (so that real 0 is exact); then
//!   `scale = (max - min) / 255`, `zero_point = clamp(round(-128 - min / scale), -128, 127)`.
//! * **Bias**: int32 at scale `s_in * s_w[o]`, with the input zero point folded in as aka-core
//!   expects: `bias'[o] = round(b[o] / (s_in * s_w[o])) - zp_in * Σ W_q[o]` (computed in `i64`; a
//!   value outside `i32` is an error).
//! * **Requantization**: `M[o] = s_in * s_w[o] / s_out` (in `f64` from the `f32` scales), stored as
//!   `aka_core::quant::quantize_multiplier(M[o])` (TFLite's Q31 multiplier and shift).
//! * **Layers**: `Linear`/`Conv2d` followed by `ReLU` (dropouts in between are skipped) fuse the
//!   ReLU as output clamping (`act_min = zp_out`), and their output range is calibrated **after**
//!   the ReLU. A ReLU that does not follow a Linear/Conv2d becomes a standalone `Relu` layer.
//!   `MaxPool2d` and `Flatten` keep their input's quantization. `Dropout` disappears.
//! * **Layouts**: aka-core is NHWC. Conv2d weights are transposed from PyTorch's OIHW to OHWI.
//!   PyTorch's `Flatten` orders a `[c, h, w]` activation channel-major while aka-core's flattens
//!   `[h][w][c]` (channel fastest), so the input columns of the first `Linear` after a `Flatten`
//!   are permuted accordingly. Every `Flatten` of the float model is exported as an explicit
//!   `Flatten` layer (aka-core's `Linear` requires a `1 x 1 x n` input).

use std::fmt;

use aka_core::format::{InputDesc, MaxPool2d as CoreMaxPool2d, QuantParams, Shape};
use aka_core::rng::Rng;
use anyhow::{bail, ensure, Context as _};
use serde::Serialize;

use crate::autograd::{no_grad, Tensor};
use crate::data::mnist::ImageSet;
use crate::export::quantize::{
    activation_quant, fold_bias, input_quant, quantize_rows_as, requant, Calibration, QRequant,
    QuantWeights, WeightBits,
};
use crate::export::{u32_of, Observer};
use crate::nn::{self, Ctx, Sequential};
use crate::train::shuffled;

/// Quantization settings.
#[derive(Clone, Debug)]
pub struct QuantConfig {
    /// Number of calibration images (drawn without replacement from the calibration set with
    /// [`QuantConfig::seed`]; all of them if the set is smaller). Default 1000.
    pub samples: usize,
    /// How ranges are chosen (default min/max).
    pub method: Calibration,
    /// Seeds the choice of calibration images.
    pub seed: u64,
    /// Images per calibration forward pass (default 250).
    pub batch_size: usize,
    /// Weight precision of every Linear/Conv2d layer (default int8), except `int8_layers`.
    pub weights: WeightBits,
    /// Float-model indices of Linear/Conv2d layers kept at int8 whatever `weights` says.
    pub int8_layers: Vec<usize>,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            samples: 1000,
            method: Calibration::MinMax,
            seed: 0,
            batch_size: 250,
            weights: WeightBits::Int8,
            int8_layers: Vec::new(),
        }
    }
}

impl QuantConfig {
    /// The weight precision of float layer `index`.
    pub fn bits_of(&self, index: usize) -> WeightBits {
        if self.int8_layers.contains(&index) {
            WeightBits::Int8
        } else {
            self.weights
        }
    }
}

/// The Linear and Conv2d weights of `model` with their float-layer index, in order: what
/// [`QuantConfig::weights`] and `int8_layers` apply to (and what quantization-aware training
/// fake-quantizes).
pub fn weight_layers(model: &Sequential) -> Vec<(usize, Tensor)> {
    model
        .layers
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match l {
            nn::Layer::Linear(l) => Some((i, l.weight.clone())),
            nn::Layer::Conv2d(c) => Some((i, c.weight.clone())),
            _ => None,
        })
        .collect()
}

/// [`weight_layers`] with the precision `config` gives each; errors if an `int8_layers` index
/// is not a Linear/Conv2d layer.
pub fn weight_plan(
    model: &Sequential,
    config: &QuantConfig,
) -> anyhow::Result<Vec<(Tensor, WeightBits)>> {
    let layers = weight_layers(model);
    for &i in &config.int8_layers {
        ensure!(
            layers.iter().any(|(j, _)| *j == i),
            "--int8-layers: layer {i} is not a Linear or Conv2d layer (those are {:?})",
            layers.iter().map(|(j, _)| *j).collect::<Vec<_>>()
        );
    }
    Ok(layers
        .into_iter()
        .map(|(i, t)| (t, config.bits_of(i)))
        .collect())
}

/// An int8 fully connected layer.
#[derive(Clone, Debug, PartialEq)]
pub struct QLinear {
    pub in_features: usize,
    pub out_features: usize,
    /// `[out][in]`, input columns already in aka-core's (NHWC-flattened) order; int4 values
    /// (`-8..=7`, unpacked) when `weight_bits` is int4.
    pub weights: Vec<i8>,
    /// The weights' precision.
    pub weight_bits: WeightBits,
    /// Bias with the input zero point folded in.
    pub bias: Vec<i32>,
    pub requant: QRequant,
}

/// An int8 2-D convolution.
#[derive(Clone, Debug, PartialEq)]
pub struct QConv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    pub padding: usize,
    /// Zero point of the input activations.
    pub input_zero_point: i8,
    /// OHWI `[out][kh][kw][in]` (unpacked int4 values when `weight_bits` is int4).
    pub weights: Vec<i8>,
    /// The weights' precision.
    pub weight_bits: WeightBits,
    /// Bias with the input zero point folded in (over the whole kernel).
    pub bias: Vec<i32>,
    pub requant: QRequant,
}

/// One layer of a [`QuantizedModel`], in aka-core's terms.
#[derive(Clone, Debug, PartialEq)]
pub enum QLayer {
    Linear(QLinear),
    Conv2d(QConv2d),
    MaxPool2d(CoreMaxPool2d),
    Flatten,
    Relu { zero_point: i8 },
}

impl QLayer {
    /// Short lowercase name, as aka-core's `Layer::name`.
    pub fn name(&self) -> &'static str {
        match self {
            QLayer::Linear(_) => "linear",
            QLayer::Conv2d(_) => "conv2d",
            QLayer::MaxPool2d(_) => "maxpool2d",
            QLayer::Flatten => "flatten",
            QLayer::Relu { .. } => "relu",
        }
    }
}

/// What happened to one Linear/Conv2d layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerReport {
    /// Index of the layer in the float model.
    pub float_index: usize,
    /// Index of the layer in the exported model.
    pub export_index: usize,
    /// e.g. `Linear(784 -> 576) + ReLU`.
    pub description: String,
    /// Whether a following ReLU was fused.
    pub relu_fused: bool,
    /// The weights' precision.
    pub weights: WeightBits,
    /// `max |w - s_w * q|` over all weights.
    pub max_abs_error: f32,
    /// `max over channels of max|w - s_w * q| / max|W[o]|` (at most `1/254` for int8; for int4
    /// the clipped largest weights dominate it).
    pub max_rel_error: f32,
    /// Smallest and largest per-channel weight scale.
    pub weight_scale_min: f32,
    pub weight_scale_max: f32,
    /// Calibrated output range (before widening to include 0).
    pub calibrated_min: f32,
    pub calibrated_max: f32,
    /// Input and output quantization.
    pub input: QuantParams,
    pub output: QuantParams,
}

impl fmt::Display for LayerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<34} {} max |w - ŵ| {:.3e} ({:.3}% of channel max), out range [{:.3}, {:.3}] -> scale {:.5} zp {}",
            self.description,
            self.weights.name(),
            self.max_abs_error,
            self.max_rel_error * 100.0,
            self.calibrated_min,
            self.calibrated_max,
            self.output.scale,
            self.output.zero_point
        )
    }
}

/// A quantized model: aka-core's layers with owned parameters, plus what quantization did.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedModel {
    /// Input shape (NHWC) and quantization.
    pub input: InputDesc,
    /// The layers, in aka-core order.
    pub layers: Vec<QLayer>,
    /// One report per Linear/Conv2d layer.
    pub reports: Vec<LayerReport>,
    /// How the ranges were calibrated.
    pub calibration: Calibration,
    /// Number of calibration images actually used.
    pub calibration_samples: usize,
    /// The weight precision asked for ([`QuantConfig::weights`]).
    pub weights: WeightBits,
}

impl QuantizedModel {
    /// Quantization of the model output.
    pub fn output_quant(&self) -> QuantParams {
        let mut q = self.input.quant;
        for layer in &self.layers {
            match layer {
                QLayer::Linear(l) => q = l.requant.output,
                QLayer::Conv2d(c) => q = c.requant.output,
                _ => {}
            }
        }
        q
    }
}

/// The activation flowing between float layers while planning.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// NCHW image `[c, h, w]` (aka-core: `h x w x c`).
    Spatial { c: usize, h: usize, w: usize },
    /// Flat vector; `from` is the `[c, h, w]` it was flattened from, until a Linear consumes it.
    Flat {
        n: usize,
        from: Option<(usize, usize, usize)>,
    },
}

/// A float layer lowered to an aka-core layer, before calibration.
enum Planned<'m> {
    Linear {
        layer: &'m nn::Linear,
        float_index: usize,
        /// Float layer whose output is this layer's (calibrated) output.
        capture: usize,
        relu: bool,
        /// Permute input columns from PyTorch's `[c][h][w]` to aka-core's `[h][w][c]`.
        permute: Option<(usize, usize, usize)>,
    },
    Conv {
        layer: &'m nn::Conv2d,
        float_index: usize,
        capture: usize,
        relu: bool,
    },
    Pool(CoreMaxPool2d),
    Flatten,
    Relu,
}

/// Quantizes `model` for images of `calibration.rows x calibration.cols` pixels (one channel),
/// calibrating on images of `calibration` (usually the training set), whose pixel normalization
/// (`calibration.norm`, the one the model was trained with) becomes the file's. See the
/// [module documentation](self) for the scheme.
///
/// Errors: an invalid pixel normalization, a layer sequence aka-core cannot run (e.g. a Linear on an image without a Flatten,
/// padding not smaller than the kernel), non-finite weights or activations, a bias or
/// multiplier out of range.
pub fn quantize(
    model: &Sequential,
    calibration: &ImageSet,
    config: &QuantConfig,
) -> anyhow::Result<QuantizedModel> {
    ensure!(!calibration.is_empty(), "the calibration set is empty");
    ensure!(config.samples > 0, "--calibration must be at least 1");
    if let Calibration::Percentile(p) = config.method {
        ensure!(
            p > 50.0 && p <= 100.0,
            "calibration percentile must be in (50, 100], got {p}"
        );
    }
    let (rows, cols) = (calibration.rows, calibration.cols);
    let plan = plan(model, (1, rows, cols))?;
    let captures: Vec<usize> = plan
        .iter()
        .filter_map(|p| match p {
            Planned::Linear { capture, .. } | Planned::Conv { capture, .. } => Some(*capture),
            _ => None,
        })
        .collect();

    let n = calibration.len();
    let samples = config.samples.min(n);
    let indices: Vec<usize> = if samples == n {
        (0..n).collect()
    } else {
        let mut rng = Rng::new(config.seed);
        let mut idx = shuffled(n, &mut rng);
        idx.truncate(samples);
        idx.sort_unstable();
        idx
    };
    let ranges = calibrate(
        model,
        calibration,
        &indices,
        &captures,
        config.method,
        config.batch_size,
    )?;

    let norm = calibration.norm;
    ensure!(
        norm.mean.is_finite() && norm.std.is_finite() && norm.std > 0.0,
        "invalid pixel normalization: mean {}, std {}",
        norm.mean,
        norm.std
    );
    let input = InputDesc {
        shape: Shape::new(u32_of(rows, "size")?, u32_of(cols, "size")?, 1),
        quant: input_quant(norm),
        pixel_mean: norm.mean,
        pixel_std: norm.std,
    };
    let mut quant = input.quant;
    let mut layers = Vec::new();
    let mut reports = Vec::new();
    for step in &plan {
        match *step {
            Planned::Linear {
                layer,
                float_index,
                capture,
                relu,
                permute,
            } => {
                let (lo, hi) = range_of(&ranges, capture)?;
                let output = activation_quant(lo, hi);
                let w = layer.weight.value();
                let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
                let w: Vec<f32> = w.iter().copied().collect();
                let b = bias_values(layer.bias.as_ref(), out_f);
                let bits = config.bits_of(float_index);
                let qw = quantize_weights(&w, out_f, float_index, bits)?;
                let bias = fold_bias(&b, &qw, quant, float_index)?;
                let requant = requant(quant, &qw.scales, output, relu, float_index)?;
                let weights = match permute {
                    Some((c, h, wd)) if c * h * wd == in_f => {
                        chw_to_hwc_columns(&qw.q, out_f, c, h, wd)
                    }
                    Some(_) => bail!(
                        "layer {float_index}: Linear input does not match the flattened shape"
                    ),
                    None => qw.q.clone(),
                };
                reports.push(report(
                    float_index,
                    layers.len(),
                    format!(
                        "Linear({in_f} -> {out_f}){}",
                        if relu { " + ReLU" } else { "" }
                    ),
                    relu,
                    (&qw, bits),
                    (lo, hi),
                    quant,
                    output,
                ));
                layers.push(QLayer::Linear(QLinear {
                    in_features: in_f,
                    out_features: out_f,
                    weights,
                    weight_bits: bits,
                    bias,
                    requant,
                }));
                quant = output;
            }
            Planned::Conv {
                layer,
                float_index,
                capture,
                relu,
            } => {
                let (lo, hi) = range_of(&ranges, capture)?;
                let output = activation_quant(lo, hi);
                let w = layer.weight.value();
                let s = w.shape().to_vec();
                let (co, ci, kh, kw) = (s[0], s[1], s[2], s[3]);
                let w: Vec<f32> = w.iter().copied().collect();
                let b = bias_values(layer.bias.as_ref(), co);
                let bits = config.bits_of(float_index);
                let qw = quantize_weights(&w, co, float_index, bits)?;
                let bias = fold_bias(&b, &qw, quant, float_index)?;
                let requant = requant(quant, &qw.scales, output, relu, float_index)?;
                let weights = oihw_to_ohwi(&qw.q, co, ci, kh, kw);
                let description = format!(
                    "Conv2d({ci} -> {co}, {kh}x{kw}, s{}, p{}){}",
                    layer.stride,
                    layer.padding,
                    if relu { " + ReLU" } else { "" }
                );
                reports.push(report(
                    float_index,
                    layers.len(),
                    description,
                    relu,
                    (&qw, bits),
                    (lo, hi),
                    quant,
                    output,
                ));
                layers.push(QLayer::Conv2d(QConv2d {
                    in_channels: ci,
                    out_channels: co,
                    kernel_h: kh,
                    kernel_w: kw,
                    stride: layer.stride,
                    padding: layer.padding,
                    input_zero_point: quant.zero_point,
                    weights,
                    weight_bits: bits,
                    bias,
                    requant,
                }));
                quant = output;
            }
            Planned::Pool(p) => layers.push(QLayer::MaxPool2d(p)),
            Planned::Flatten => layers.push(QLayer::Flatten),
            Planned::Relu => layers.push(QLayer::Relu {
                zero_point: quant.zero_point,
            }),
        }
    }
    ensure!(!layers.is_empty(), "the model has no layers to export");
    Ok(QuantizedModel {
        input,
        layers,
        reports,
        calibration: config.method,
        calibration_samples: indices.len(),
        weights: config.weights,
    })
}

/// Walks the float layers, checking that aka-core can run them and deciding fusion.
fn plan(model: &Sequential, input: (usize, usize, usize)) -> anyhow::Result<Vec<Planned<'_>>> {
    let layers = &model.layers;
    // The next ReLU after `i`, skipping dropouts (identity at inference).
    let fused_relu = |i: usize| -> Option<usize> {
        let mut j = i + 1;
        while let Some(nn::Layer::Dropout(_)) = layers.get(j) {
            j += 1;
        }
        matches!(layers.get(j), Some(nn::Layer::ReLU(_))).then_some(j)
    };
    let mut act = Act::Spatial {
        c: input.0,
        h: input.1,
        w: input.2,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < layers.len() {
        let mut next = i + 1;
        match &layers[i] {
            nn::Layer::Linear(l) => {
                let Act::Flat { n, from } = act else {
                    bail!(
                        "layer {i} ({}): a Linear needs a flat input; put a Flatten before it",
                        layers[i].describe()
                    );
                };
                ensure!(
                    l.weight.ndim() == 2 && l.in_features() == n,
                    "layer {i} ({}): expects {} inputs, gets {n}",
                    layers[i].describe(),
                    l.in_features()
                );
                let relu = fused_relu(i);
                out.push(Planned::Linear {
                    layer: l,
                    float_index: i,
                    capture: relu.unwrap_or(i),
                    relu: relu.is_some(),
                    permute: from,
                });
                next = relu.map_or(i + 1, |j| j + 1);
                act = Act::Flat {
                    n: l.out_features(),
                    from: None,
                };
            }
            nn::Layer::Conv2d(conv) => {
                let Act::Spatial { c, h, w } = act else {
                    bail!("layer {i}: Conv2d on a flat input");
                };
                let s = conv.weight.shape();
                ensure!(s.len() == 4, "layer {i}: Conv2d weight must be 4-D");
                let (co, ci, kh, kw) = (s[0], s[1], s[2], s[3]);
                ensure!(
                    ci == c,
                    "layer {i}: Conv2d expects {ci} input channels, gets {c}"
                );
                ensure!(
                    conv.stride >= 1 && kh >= 1 && kw >= 1,
                    "layer {i}: zero stride or kernel"
                );
                ensure!(
                    conv.padding < kh && conv.padding < kw,
                    "layer {i}: aka-core needs padding ({}) smaller than the kernel ({kh}x{kw})",
                    conv.padding
                );
                let (ph, pw) = (h + 2 * conv.padding, w + 2 * conv.padding);
                ensure!(
                    ph >= kh && pw >= kw,
                    "layer {i}: kernel larger than the padded input"
                );
                let relu = fused_relu(i);
                out.push(Planned::Conv {
                    layer: conv,
                    float_index: i,
                    capture: relu.unwrap_or(i),
                    relu: relu.is_some(),
                });
                next = relu.map_or(i + 1, |j| j + 1);
                act = Act::Spatial {
                    c: co,
                    h: (ph - kh) / conv.stride + 1,
                    w: (pw - kw) / conv.stride + 1,
                };
            }
            nn::Layer::MaxPool2d(p) => {
                let Act::Spatial { c, h, w } = act else {
                    bail!("layer {i}: MaxPool2d on a flat input");
                };
                ensure!(
                    p.kernel >= 1 && p.stride >= 1 && h >= p.kernel && w >= p.kernel,
                    "layer {i}: bad MaxPool2d {}x{} stride {} on {h}x{w}",
                    p.kernel,
                    p.kernel,
                    p.stride
                );
                out.push(Planned::Pool(CoreMaxPool2d {
                    kernel_h: u32_of(p.kernel, "size")?,
                    kernel_w: u32_of(p.kernel, "size")?,
                    stride_h: u32_of(p.stride, "size")?,
                    stride_w: u32_of(p.stride, "size")?,
                }));
                act = Act::Spatial {
                    c,
                    h: (h - p.kernel) / p.stride + 1,
                    w: (w - p.kernel) / p.stride + 1,
                };
            }
            nn::Layer::Flatten(_) => {
                if let Act::Spatial { c, h, w } = act {
                    out.push(Planned::Flatten);
                    act = Act::Flat {
                        n: c * h * w,
                        from: Some((c, h, w)),
                    };
                }
            }
            nn::Layer::ReLU(_) => out.push(Planned::Relu),
            nn::Layer::Dropout(_) => {}
        }
        i = next;
    }
    let kept = out.len();
    ensure!(
        kept <= aka_core::format::MAX_LAYERS,
        "the exported model would have {kept} layers; aka-core runs at most {}",
        aka_core::format::MAX_LAYERS
    );
    Ok(out)
}

/// Runs the float model on the calibration images and returns the range of each captured layer
/// output, as `(float layer index, (lo, hi))`.
fn calibrate(
    model: &Sequential,
    set: &ImageSet,
    indices: &[usize],
    captures: &[usize],
    method: Calibration,
    batch_size: usize,
) -> anyhow::Result<Vec<(usize, (f32, f32))>> {
    let Some(&last) = captures.iter().max() else {
        return Ok(Vec::new());
    };
    let mut observers: Vec<(usize, Option<Observer>)> =
        captures.iter().map(|&c| (c, None)).collect();
    let mut ctx = Ctx::eval();
    no_grad(|| -> anyhow::Result<()> {
        for chunk in indices.chunks(batch_size.max(1)) {
            let mut x = Tensor::new(set.batch_images(chunk).into_dyn());
            for (i, layer) in model.layers.iter().enumerate().take(last + 1) {
                x = layer.forward(&x, &mut ctx);
                for (c, obs) in observers.iter_mut().filter(|(c, _)| *c == i) {
                    let v = x.value();
                    let obs = obs.get_or_insert_with(|| {
                        let per_sample = v.len() / chunk.len().max(1);
                        Observer::new(method, Some(per_sample.saturating_mul(indices.len())))
                    });
                    ensure!(
                        obs.observe(&v),
                        "calibration: layer {c} produced a non-finite activation"
                    );
                }
            }
        }
        Ok(())
    })?;
    Ok(observers
        .into_iter()
        .map(|(c, o)| (c, o.map_or((0.0, 0.0), |o| o.range(method))))
        .collect())
}

fn range_of(ranges: &[(usize, (f32, f32))], capture: usize) -> anyhow::Result<(f32, f32)> {
    ranges
        .iter()
        .find(|(c, _)| *c == capture)
        .map(|(_, r)| *r)
        .with_context(|| format!("no calibration range for layer {capture}"))
}

/// [`quantize_rows_as`] of `[channels][k]` float weights, which must be finite.
fn quantize_weights(
    w: &[f32],
    channels: usize,
    layer: usize,
    bits: WeightBits,
) -> anyhow::Result<QuantWeights> {
    ensure!(
        channels > 0 && w.len().is_multiple_of(channels) && !w.is_empty(),
        "layer {layer}: empty weights"
    );
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        bail!(
            "layer {layer}: channel {} has a non-finite weight",
            i / (w.len() / channels)
        );
    }
    Ok(quantize_rows_as(w, channels, bits))
}

fn bias_values(bias: Option<&Tensor>, channels: usize) -> Vec<f32> {
    match bias {
        Some(b) => b.value().iter().copied().collect(),
        None => vec![0.0; channels],
    }
}

/// PyTorch `[o][c][kh][kw]` to aka-core/TFLite `[o][kh][kw][c]`.
pub fn oihw_to_ohwi<T: Copy>(w: &[T], co: usize, ci: usize, kh: usize, kw: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(w.len());
    for o in 0..co {
        for y in 0..kh {
            for x in 0..kw {
                for c in 0..ci {
                    out.push(w[((o * ci + c) * kh + y) * kw + x]);
                }
            }
        }
    }
    out
}

/// Permutes the input columns of a `[out][c*h*w]` Linear weight from PyTorch's flatten order
/// (`c`, `h`, `w`) to aka-core's (`h`, `w`, `c`): new column `(y*w + x)*c + ch` is old column
/// `ch*h*w + y*w + x`.
pub fn chw_to_hwc_columns<T: Copy>(
    weights: &[T],
    out: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Vec<T> {
    let n = c * h * w;
    let mut res = Vec::with_capacity(weights.len());
    for row in weights.chunks_exact(n).take(out) {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    res.push(row[(ch * h + y) * w + x]);
                }
            }
        }
    }
    res
}

#[allow(clippy::too_many_arguments)]
fn report(
    float_index: usize,
    export_index: usize,
    description: String,
    relu_fused: bool,
    (qw, weights): (&QuantWeights, WeightBits),
    (lo, hi): (f32, f32),
    input: QuantParams,
    output: QuantParams,
) -> LayerReport {
    let smin = qw.scales.iter().copied().fold(f32::INFINITY, f32::min);
    let smax = qw.scales.iter().copied().fold(0.0f32, f32::max);
    LayerReport {
        float_index,
        export_index,
        description,
        relu_fused,
        weights,
        max_abs_error: qw.max_abs_error,
        max_rel_error: qw.max_rel_error,
        weight_scale_min: smin,
        weight_scale_max: smax,
        calibrated_min: lo,
        calibrated_max: hi,
        input,
        output,
    }
}
