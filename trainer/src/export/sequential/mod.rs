//! Export of a [`Sequential`] classifier (`Body::Sequential`), and evaluation of such model files
//! with `aka-core` itself.
//!
//! * [`quantize()`](quantize::quantize): the int8 parameters ([`QuantizedModel`]).
//! * [`encode`]: bytes of a quantized model with its metadata; the bytes are checked with
//!   `aka_core::SequentialModel::load` before they are returned, so the exporter never produces a
//!   file the runtime rejects.
//! * [`evaluate_int8`]: accuracy and predictions of model bytes **as run by aka-core**
//!   (`SequentialModel::load` + `classify_u8` on the raw `u8` pixels: the file's pixel
//!   normalization is applied by aka-core) over an [`ImageSet`].
//! * [`export_classifier`]: the whole pipeline used by `aka-trainer mnist`: float evaluation,
//!   quantization, int8 evaluation, and the final bytes with both accuracies in the metadata.
//!
//! Encoding is deterministic: the same model, calibration data and metadata give the same bytes.

pub mod quantize;

use std::path::Path;

use aka_core::format::{
    self, Body, Conv2d, Layer, LayerList, Linear, ModelFile, Requant, SequentialDesc,
};
use aka_core::SequentialModel;
use anyhow::ensure;
use ndarray::Axis;
use rayon::prelude::*;
use serde::Serialize;

pub use self::quantize::{
    chw_to_hwc_columns, oihw_to_ohwi, quantize, LayerReport, QConv2d, QLayer, QLinear, QuantConfig,
    QuantizedModel,
};
use super::quantize::{QRequant, WeightBits};
use super::{
    encode_aligned, i32_bytes, u32_of, weight_bytes, BodySummary, Evaluation, ExportMetadata,
    ExportSummary,
};
use crate::autograd::{no_grad, Tensor};
use crate::data::mnist::ImageSet;
use crate::nn::{Ctx, Module, Sequential};
use crate::train::argmax;

/// Owned little-endian byte arrays of one layer, borrowed by the encoded `format::Layer`.
struct LayerBytes {
    weights: Vec<u8>,
    bias: Vec<u8>,
    multipliers: Vec<u8>,
    shifts: Vec<u8>,
}

impl LayerBytes {
    fn new(weights: &[i8], bits: WeightBits, bias: &[i32], r: &QRequant) -> Self {
        Self {
            weights: weight_bytes(weights, bias.len(), bits),
            bias: i32_bytes(bias),
            multipliers: i32_bytes(&r.multipliers),
            shifts: i32_bytes(&r.shifts),
        }
    }

    fn requant(&self, r: &QRequant) -> Requant<'_> {
        Requant {
            multipliers: &self.multipliers,
            shifts: &self.shifts,
            output: r.output,
            act_min: r.act_min,
            act_max: r.act_max,
        }
    }
}

/// Encodes `model` with `meta` as an aka model file (postcard of `aka_core::format::ModelFile`),
/// then loads the bytes with `aka_core::SequentialModel::load` to make sure the runtime accepts
/// them.
pub fn encode(model: &QuantizedModel, meta: &ExportMetadata) -> anyhow::Result<Vec<u8>> {
    let labels = meta.labels_text()?;
    let buffers: Vec<Option<LayerBytes>> = model
        .layers
        .iter()
        .map(|l| match l {
            QLayer::Linear(l) => Some(LayerBytes::new(
                &l.weights,
                l.weight_bits,
                &l.bias,
                &l.requant,
            )),
            QLayer::Conv2d(c) => Some(LayerBytes::new(
                &c.weights,
                c.weight_bits,
                &c.bias,
                &c.requant,
            )),
            _ => None,
        })
        .collect();
    let mut layers = LayerList::new();
    for (layer, buf) in model.layers.iter().zip(&buffers) {
        let encoded = match (layer, buf) {
            (QLayer::Linear(l), Some(b)) => Layer::Linear(Linear {
                in_features: u32_of(l.in_features, "in_features")?,
                out_features: u32_of(l.out_features, "out_features")?,
                pad: &[],
                weight_type: l.weight_bits.format(),
                weights: &b.weights,
                bias: &b.bias,
                requant: b.requant(&l.requant),
            }),
            (QLayer::Conv2d(c), Some(b)) => Layer::Conv2d(Conv2d {
                in_channels: u32_of(c.in_channels, "in_channels")?,
                out_channels: u32_of(c.out_channels, "out_channels")?,
                kernel_h: u32_of(c.kernel_h, "kernel")?,
                kernel_w: u32_of(c.kernel_w, "kernel")?,
                stride_h: u32_of(c.stride, "stride")?,
                stride_w: u32_of(c.stride, "stride")?,
                pad_h: u32_of(c.padding, "padding")?,
                pad_w: u32_of(c.padding, "padding")?,
                input_zero_point: c.input_zero_point,
                pad: &[],
                weight_type: c.weight_bits.format(),
                weights: &b.weights,
                bias: &b.bias,
                requant: b.requant(&c.requant),
            }),
            (QLayer::MaxPool2d(p), _) => Layer::MaxPool2d(*p),
            (QLayer::Flatten, _) => Layer::Flatten,
            (QLayer::Relu { zero_point }, _) => Layer::Relu {
                zero_point: *zero_point,
            },
            (QLayer::Linear(_) | QLayer::Conv2d(_), None) => {
                anyhow::bail!("internal error: a Linear/Conv2d layer without parameter buffers")
            }
        };
        layers.push(encoded).map_err(|_| {
            anyhow::anyhow!(
                "{} layers; aka-core runs at most {}",
                model.layers.len(),
                format::MAX_LAYERS
            )
        })?;
    }
    let file = ModelFile::new(
        meta.to_core(&labels),
        Body::Sequential(SequentialDesc {
            input: model.input,
            layers,
        }),
    );
    let bytes = encode_aligned(file)?;
    SequentialModel::load(&bytes)
        .map_err(|e| anyhow::anyhow!("aka-core rejects the exported model: {e}"))?;
    Ok(bytes)
}

/// Runs model bytes with **aka-core** (`SequentialModel::load`, then `classify_u8` on every image,
/// in parallel) and returns the predictions and accuracy.
pub fn evaluate_int8(bytes: &[u8], set: &ImageSet) -> Result<Evaluation, aka_core::Error> {
    let model = SequentialModel::load(bytes)?;
    let n = set.len();
    let chunk = 256;
    let starts: Vec<usize> = (0..n).step_by(chunk).collect();
    let parts: Result<Vec<Vec<usize>>, aka_core::Error> = starts
        .par_iter()
        .map(|&start| {
            let mut arena = vec![0i8; model.arena_size()];
            (start..(start + chunk).min(n))
                .map(|i| Ok(model.classify_u8(set.image(i), &mut arena)?.0))
                .collect()
        })
        .collect();
    Ok(Evaluation::new(parts?.concat(), labels(set)))
}

/// Predictions of the float model (evaluation mode, no graph) over `set`.
pub fn evaluate_float(model: &Sequential, set: &ImageSet, batch_size: usize) -> Evaluation {
    let mut ctx = Ctx::eval();
    let mut predictions = Vec::with_capacity(set.len());
    no_grad(|| {
        let indices: Vec<usize> = (0..set.len()).collect();
        for chunk in indices.chunks(batch_size.max(1)) {
            let x = Tensor::new(set.batch_images(chunk).into_dyn());
            let out = model.forward(&x, &mut ctx);
            let v = out.value();
            predictions.extend(v.axis_iter(Axis(0)).map(|row| argmax(row.iter().copied())));
        }
    });
    Evaluation::new(predictions, labels(set))
}

fn labels(set: &ImageSet) -> impl Iterator<Item = usize> + '_ {
    set.labels.iter().map(|&l| l as usize)
}

/// Settings of [`export_classifier`].
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// Quantization (calibration) settings.
    pub quant: QuantConfig,
    /// Metadata; its accuracies are filled in by [`export_classifier`].
    pub metadata: ExportMetadata,
    /// Batch size of the float evaluation.
    pub eval_batch_size: usize,
}

/// Everything [`export_classifier`] produced.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The final file, with both accuracies in its metadata.
    pub bytes: Vec<u8>,
    /// The quantized parameters and per-layer reports.
    pub quantized: QuantizedModel,
    /// Float predictions on the test set.
    pub float: Evaluation,
    /// aka-core int8 predictions on the test set.
    pub int8: Evaluation,
    /// aka-core arena bytes needed to run the model.
    pub arena_size: usize,
    /// Bytes of weights, biases, multipliers and shifts.
    pub param_bytes: usize,
    /// Multiply-accumulates per inference.
    pub macs: u64,
}

/// The classifier's own keys in `summary.json`'s `export` (after [`ExportSummary`]'s).
#[derive(Clone, Debug, Serialize)]
pub struct SequentialSummary {
    pub arena_bytes: usize,
    pub macs_per_inference: u64,
    pub test_images: usize,
    /// The input's pixel normalization and quantization as stored in the file.
    pub input: InputSummary,
    pub layers: Vec<LayerReport>,
}

/// The model input in `summary.json`: pixel `p` is `(p / 255 - pixel_mean) / pixel_std`,
/// quantized with `scale` and `zero_point`.
#[derive(Clone, Debug, Serialize)]
pub struct InputSummary {
    pub pixel_mean: f32,
    pub pixel_std: f32,
    pub scale: f32,
    pub zero_point: i8,
}

impl Exported {
    /// Summary for `summary.json`; `file` is where the bytes were written.
    pub fn summary(&self, file: &Path) -> ExportSummary {
        let input = &self.quantized.input;
        ExportSummary::new(
            file,
            &self.bytes,
            self.param_bytes,
            (&self.float, &self.int8),
            (
                self.quantized.calibration,
                self.quantized.calibration_samples,
            ),
            self.quantized.weights,
            BodySummary::Sequential(SequentialSummary {
                arena_bytes: self.arena_size,
                macs_per_inference: self.macs,
                test_images: self.int8.total(),
                input: InputSummary {
                    pixel_mean: input.pixel_mean,
                    pixel_std: input.pixel_std,
                    scale: input.quant.scale,
                    zero_point: input.quant.zero_point,
                },
                layers: self.quantized.reports.clone(),
            }),
        )
    }

    /// A human-readable report: accuracies, agreement, sizes and per-layer weight errors.
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let n = self.int8.total();
        let _ = writeln!(
            s,
            "float accuracy   {:6.2}% ({} / {n} test images)",
            self.float.accuracy(),
            self.float.correct
        );
        let _ = writeln!(
            s,
            "{} accuracy    {:6.2}% ({} / {n}, aka-core on the host)",
            self.quantized.weights.name(),
            self.int8.accuracy(),
            self.int8.correct
        );
        let _ = writeln!(
            s,
            "top-1 agreement  {:6.2}% ({} vs float)",
            self.int8.agreement(&self.float),
            self.quantized.weights.name()
        );
        let _ = writeln!(
            s,
            "file {} bytes (parameters {} bytes), arena {} bytes, {} MACs/inference",
            self.bytes.len(),
            self.param_bytes,
            self.arena_size,
            self.macs
        );
        let _ = writeln!(
            s,
            "calibration: {:?} over {} training images",
            self.quantized.calibration, self.quantized.calibration_samples
        );
        let input = &self.quantized.input;
        let pixel = if (input.pixel_mean, input.pixel_std) == (0.0, 1.0) {
            "p/255".to_string()
        } else {
            format!("(p/255 - {}) / {}", input.pixel_mean, input.pixel_std)
        };
        let _ = writeln!(
            s,
            "input: pixel p -> {pixel}, scale {:.6} zero point {}",
            input.quant.scale, input.quant.zero_point
        );
        for r in &self.quantized.reports {
            let _ = writeln!(s, "  layer {:>2}: {r}", r.export_index);
        }
        s
    }
}

/// Quantizes `model` (calibrating on `calibration`), evaluates the float model and the int8 model
/// (with aka-core) on `test`, and returns the final bytes with both accuracies in the metadata.
/// Both sets must have the same pixel normalization (the model's; it is stored in the file).
pub fn export_classifier(
    model: &Sequential,
    calibration: &ImageSet,
    test: &ImageSet,
    config: &ExportConfig,
) -> anyhow::Result<Exported> {
    ensure!(
        calibration.norm == test.norm,
        "the calibration and test sets have different pixel normalizations ({} vs {})",
        calibration.norm,
        test.norm
    );
    let quantized = quantize(model, calibration, &config.quant)?;
    let float = evaluate_float(model, test, config.eval_batch_size);
    let mut meta = config.metadata.clone();
    meta.float_accuracy = float.accuracy() as f32;
    // The int8 accuracy is part of the file: evaluate a first encoding (its metadata does not
    // affect the arithmetic), then encode again with the accuracy filled in.
    let draft = encode(&quantized, &meta)?;
    let int8 = evaluate_int8(&draft, test)
        .map_err(|e| anyhow::anyhow!("running the exported model with aka-core: {e}"))?;
    meta.int8_accuracy = int8.accuracy() as f32;
    let bytes = encode(&quantized, &meta)?;
    let loaded = SequentialModel::load(&bytes)
        .map_err(|e| anyhow::anyhow!("aka-core rejects the exported model: {e}"))?;
    let (arena_size, param_bytes, macs) =
        (loaded.arena_size(), loaded.param_bytes(), loaded.macs());
    Ok(Exported {
        bytes,
        quantized,
        float,
        int8,
        arena_size,
        param_bytes,
        macs,
    })
}
