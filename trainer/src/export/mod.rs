//! Int8 (or int4-weight) export of trained models as `aka-core` model files, and evaluation of
//! those files with `aka-core` itself.
//!
//! A model file is the postcard encoding of `aka_core::format::ModelFile` (the very types the
//! runtime decodes), conventionally named `*.aka` ([`EXTENSION`]); `aka inspect model.aka`
//! prints it. Encoding is deterministic: the same model, calibration data and metadata give the
//! same bytes.
//!
//! * [`sequential`]: a [`crate::nn::Sequential`] classifier (`Body::Sequential`; the
//!   `aka-trainer mnist` pipeline is [`sequential::export_classifier`]);
//! * [`gpt`]: a [`crate::gpt::Gpt`] language model (`Body::Gpt`; [`gpt::export_gpt`]);
//! * [`quantize`]: the quantization arithmetic both share (per-row symmetric int8 or int4 weight
//!   scales, asymmetric activation ranges, requantization multipliers); [`weight_bytes`] packs
//!   int4 rows as the format defines them.
//!
//! What the two bodies share is here, written once: the metadata ([`ExportMetadata`]), the byte
//! encoders and the word-aligning encoder ([`encode_aligned`]), the calibration [`Observer`], the
//! float-versus-int8 [`Evaluation`] (agreement and accuracy always in percent), the
//! `summary.json` record ([`ExportSummary`]) and the atomic [`write()`].

pub mod gpt;
mod gpt_weights;
pub mod quantize;
pub mod sequential;

use std::path::Path;

use aka_core::format::{self, Metadata, ModelFile, Task};
use anyhow::{ensure, Context as _};
use serde::Serialize;

use crate::autograd::Array;
use quantize::{Calibration, WeightBits, PERCENTILE_MAX_VALUES};

/// File extension of aka model files.
pub const EXTENSION: &str = "aka";

/// Descriptive information stored in the file (nothing here affects the arithmetic).
#[derive(Clone, Debug, PartialEq)]
pub struct ExportMetadata {
    /// What the model does ([`Task::Classifier`] or [`Task::LanguageModel`]).
    pub task: Task,
    /// One label per output, e.g. `"0"` to `"9"` (none for a language model); none may contain
    /// `'\n'`.
    pub labels: Vec<String>,
    /// Float accuracy in percent (classifier: test images; language model: next-token top-1 on
    /// the validation batches); NaN if unknown.
    pub float_accuracy: f32,
    /// Int8 accuracy in percent, as run by aka-core (NaN if unknown).
    pub int8_accuracy: f32,
    /// The training seed.
    pub seed: u64,
    /// The command line that trained the model.
    pub train_command: String,
}

impl ExportMetadata {
    /// A digit classifier: labels `"0"`..`"9"`, unknown accuracies.
    pub fn digits(seed: u64, train_command: impl Into<String>) -> Self {
        Self {
            task: Task::Classifier,
            labels: (0..10).map(|d| d.to_string()).collect(),
            float_accuracy: f32::NAN,
            int8_accuracy: f32::NAN,
            seed,
            train_command: train_command.into(),
        }
    }

    /// A language model: no labels, unknown accuracies.
    pub fn language_model(seed: u64, train_command: impl Into<String>) -> Self {
        Self {
            task: Task::LanguageModel,
            labels: Vec::new(),
            ..Self::digits(seed, train_command)
        }
    }

    /// The labels as the file stores them: joined with `'\n'`. Errors on a label containing a
    /// newline, or an empty one among several.
    pub fn labels_text(&self) -> anyhow::Result<String> {
        ensure!(
            self.labels.iter().all(|l| !l.contains('\n')),
            "class labels must not contain newlines"
        );
        ensure!(
            self.labels.iter().all(|l| !l.is_empty()) || self.labels.len() <= 1,
            "class labels must not be empty"
        );
        Ok(self.labels.join("\n"))
    }

    /// The file's `Metadata`, borrowing `labels` (from [`ExportMetadata::labels_text`]).
    pub fn to_core<'a>(&'a self, labels: &'a str) -> Metadata<'a> {
        Metadata {
            task: self.task,
            labels,
            float_accuracy: self.float_accuracy,
            int8_accuracy: self.int8_accuracy,
            seed: self.seed,
            train_command: &self.train_command,
        }
    }
}

/// `v` as a file's `u32` field; `what` names it in the error.
pub(crate) fn u32_of(v: usize, what: &str) -> anyhow::Result<u32> {
    u32::try_from(v).with_context(|| format!("{what} {v} does not fit in u32"))
}

/// `[n]` int8 values as `n` bytes.
pub(crate) fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

/// `[rows][cols]` weight values as the file stores them at precision `bits`: int8, one byte
/// each; int4 ([`quantize::INT4_MIN`]`..=`[`quantize::INT4_MAX`]), each row packed into
/// `cols.div_ceil(2)` bytes, value `c` in the low nibble of byte `c / 2` when `c` is even, the
/// high nibble when odd (two's complement; an odd row's last high nibble is 0).
pub fn weight_bytes(q: &[i8], rows: usize, bits: WeightBits) -> Vec<u8> {
    match bits {
        WeightBits::Int8 => i8_bytes(q),
        WeightBits::Int4 => {
            let cols = q.len() / rows.max(1);
            let per_row = aka_core::kernels::s4_row_bytes(cols);
            let mut out = vec![0u8; per_row * rows];
            for (row, dst) in q
                .chunks_exact(cols.max(1))
                .zip(out.chunks_exact_mut(per_row.max(1)))
            {
                aka_core::kernels::pack_s4_row(row, dst).expect("s4_row_bytes(cols) bytes");
            }
            out
        }
    }
}

/// `[n]` int32 values as `4 n` little-endian bytes.
pub(crate) fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `[n]` f32 values as `4 n` little-endian bytes.
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Encodes `file` (postcard) with every int8 weight array's `pad` chosen so that the weights start
/// at a multiple of 4 bytes from the start of the file ([`format::Body::for_each_weights_mut`]): loaded at
/// a 4-aligned address, as the firmware embeds it, the DSP kernels then read every row with
/// word loads. Encode, find the first misaligned array (offsets read back by decoding the bytes
/// in place), pad it, repeat: each round fixes one array, and padding one only moves the later
/// ones.
pub fn encode_aligned(mut file: ModelFile) -> anyhow::Result<Vec<u8>> {
    const ZEROS: [u8; format::MAX_PAD] = [0; format::MAX_PAD];
    let mut pads: Vec<usize> = Vec::new();
    file.body.for_each_weights_mut(|_, _| pads.push(0));
    for _ in 0..=pads.len() {
        let mut i = 0;
        file.body.for_each_weights_mut(|pad, _| {
            *pad = &ZEROS[..pads[i]];
            i += 1;
        });
        let bytes = postcard::to_stdvec(&file).context("encoding the model file")?;
        let (mut decoded, _) = ModelFile::take_from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("decoding the encoded model: {e}"))?;
        let mut offsets = Vec::new();
        decoded.body.for_each_weights_mut(|_, w| {
            offsets.push(w.as_ptr() as usize - bytes.as_ptr() as usize)
        });
        ensure!(
            offsets.len() == pads.len(),
            "the encoded model decodes differently"
        );
        match offsets.iter().position(|o| o % 4 != 0) {
            None => return Ok(bytes),
            Some(k) => pads[k] = (pads[k] + 4 - offsets[k] % 4) % 4,
        }
    }
    anyhow::bail!("could not word-align the weight arrays")
}

/// Writes model bytes atomically (temp file + rename, [`crate::io::write_atomic`]).
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::io::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Statistics of one calibrated tensor over a calibration run (the values it sees are
/// activations of any shape; only their multiset matters).
#[derive(Clone, Debug)]
pub enum Observer {
    /// Running minimum and maximum ([`Calibration::MinMax`]).
    MinMax { min: f32, max: f32 },
    /// Every `stride`-th value seen ([`Calibration::Percentile`]); `skip` counts down to the
    /// next one kept.
    Values {
        values: Vec<f32>,
        stride: usize,
        skip: usize,
    },
    /// A value was not finite: the tensor cannot be calibrated (see [`Observer::observe`]).
    NonFinite,
}

impl Observer {
    /// An empty observer for `method`. With a percentile, `expected` is the number of values it
    /// will see: more than [`PERCENTILE_MAX_VALUES`] are evenly subsampled to at most that many;
    /// `None` keeps them all.
    pub fn new(method: Calibration, expected: Option<usize>) -> Self {
        match method {
            Calibration::MinMax => Observer::MinMax {
                min: f32::INFINITY,
                max: f32::NEG_INFINITY,
            },
            Calibration::Percentile(_) => {
                let total = expected.unwrap_or(0);
                Observer::Values {
                    values: Vec::with_capacity(total.min(PERCENTILE_MAX_VALUES)),
                    stride: total.div_ceil(PERCENTILE_MAX_VALUES).max(1),
                    skip: 0,
                }
            }
        }
    }

    /// Observes every value of `x`. Returns `false` (and forgets all statistics) as soon as a
    /// value is not finite.
    pub fn observe(&mut self, x: &Array) -> bool {
        match self {
            Observer::MinMax { min, max } => {
                for &v in x.iter() {
                    if !v.is_finite() {
                        *self = Observer::NonFinite;
                        return false;
                    }
                    *min = min.min(v);
                    *max = max.max(v);
                }
            }
            Observer::Values {
                values,
                stride,
                skip,
            } => {
                for &v in x.iter() {
                    if !v.is_finite() {
                        *self = Observer::NonFinite;
                        return false;
                    }
                    if *skip == 0 {
                        values.push(v);
                        *skip = *stride;
                    }
                    *skip -= 1;
                }
            }
            Observer::NonFinite => return false,
        }
        true
    }

    /// The range `(lo, hi)` of an asymmetric quantization: the observed min/max, or the `p`-th
    /// and `(100 - p)`-th percentiles (ranks `ceil(p/100 · (n-1))` and
    /// `floor((100-p)/100 · (n-1))` of the sorted values). `(0, 0)` if nothing usable was seen.
    pub fn range(self, method: Calibration) -> (f32, f32) {
        match (self, method) {
            (Observer::MinMax { min, max }, _) => (min, max),
            (Observer::Values { mut values, .. }, Calibration::Percentile(p)) => {
                if values.is_empty() {
                    return (0.0, 0.0);
                }
                let last = values.len() - 1;
                let hi_rank = ((p as f64 / 100.0) * last as f64).ceil() as usize;
                let lo_rank = (((100.0 - p as f64) / 100.0) * last as f64).floor() as usize;
                let hi = *values
                    .select_nth_unstable_by(hi_rank.min(last), f32::total_cmp)
                    .1;
                let lo = *values
                    .select_nth_unstable_by(lo_rank.min(last), f32::total_cmp)
                    .1;
                (lo, hi)
            }
            (Observer::Values { .. } | Observer::NonFinite, _) => (0.0, 0.0),
        }
    }

    /// The bound `a` of a symmetric quantization `[-a, a]`: `max |x|` (MinMax; `-inf` if nothing
    /// was seen), or the `p`-th percentile of `|x|` (rank `ceil(p/100 · n) - 1`, at least 0, of
    /// the sorted `|x|`; 0 if nothing was seen). Infinite once a value was not finite.
    pub fn abs_bound(self, method: Calibration) -> f32 {
        match (self, method) {
            (Observer::MinMax { min, max }, _) => (-min).max(max),
            (Observer::Values { mut values, .. }, Calibration::Percentile(p)) => {
                if values.is_empty() {
                    return 0.0;
                }
                values.iter_mut().for_each(|v| *v = v.abs());
                let k = (((p as f64 / 100.0) * values.len() as f64).ceil() as usize)
                    .clamp(1, values.len())
                    - 1;
                *values.select_nth_unstable_by(k, f32::total_cmp).1
            }
            (Observer::Values { .. }, Calibration::MinMax) => 0.0,
            (Observer::NonFinite, _) => f32::INFINITY,
        }
    }
}

/// Predictions of a model (float, or int8 as run by aka-core) against targets: a classifier's
/// class per test image, or a language model's next token per validation position.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The prediction (argmax) at every image / position, in order.
    pub predictions: Vec<usize>,
    /// How many predictions equal their target.
    pub correct: usize,
    /// Mean cross-entropy in nats over all predictions (language models); `None` where it is
    /// not measured (classifiers).
    pub mean_loss: Option<f64>,
}

impl Evaluation {
    /// `predictions` against `targets` (same length), without a loss.
    pub fn new(predictions: Vec<usize>, targets: impl IntoIterator<Item = usize>) -> Self {
        let correct = predictions
            .iter()
            .zip(targets)
            .filter(|(&p, t)| p == *t)
            .count();
        Self {
            predictions,
            correct,
            mean_loss: None,
        }
    }

    /// Number of predictions.
    pub fn total(&self) -> usize {
        self.predictions.len()
    }

    /// Top-1 accuracy in percent: `100 · correct / total` (NaN if there are no predictions).
    pub fn accuracy(&self) -> f64 {
        100.0 * self.correct as f64 / self.total() as f64
    }

    /// Mean cross-entropy in nats (NaN where not measured).
    pub fn loss(&self) -> f64 {
        self.mean_loss.unwrap_or(f64::NAN)
    }

    /// Top-1 agreement in percent: of the predictions, how many `self` and `other` make the
    /// same (`100 · same / max(total)`; NaN if both are empty).
    pub fn agreement(&self, other: &Evaluation) -> f64 {
        let same = self
            .predictions
            .iter()
            .zip(&other.predictions)
            .filter(|(a, b)| a == b)
            .count();
        100.0 * same as f64 / self.total().max(other.total()) as f64
    }
}

/// The export results in `summary.json` (key `export`): the same keys for both bodies, then the
/// body's own.
#[derive(Clone, Debug, Serialize)]
pub struct ExportSummary {
    /// Where the file was written.
    pub file: String,
    pub file_bytes: usize,
    /// Bytes of weights, biases, scales, multipliers and shifts (`param_bytes()` of aka-core).
    pub param_bytes: usize,
    /// Percent: top-1 accuracy of the float model (test images / validation positions).
    pub float_accuracy: f64,
    /// Percent, aka-core on the host (the quantized file, int8 or int4 weights; kept under this
    /// name for existing readers, the same as `quantized_accuracy`).
    pub int8_accuracy: f64,
    /// `"int8"` or `"int4"`: the weight precision asked for (`--weights`; some layers may be
    /// kept int8, see the per-layer reports).
    pub weights: WeightBits,
    /// Percent, aka-core on the host: the quantized file's top-1 accuracy.
    pub quantized_accuracy: f64,
    /// Percent of predictions where int8 and float agree.
    pub top1_agreement: f64,
    /// How activation ranges were calibrated.
    pub calibration: Calibration,
    /// Calibration images (classifier) or sequences (language model).
    pub calibration_samples: usize,
    #[serde(flatten)]
    pub body: BodySummary,
}

/// The body-specific part of an [`ExportSummary`].
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum BodySummary {
    Sequential(sequential::SequentialSummary),
    Gpt(gpt::GptSummary),
}

impl ExportSummary {
    /// The shared keys from the file `bytes` written to `file` and the evaluations `(float,
    /// int8)` of the same data.
    pub fn new(
        file: &Path,
        bytes: &[u8],
        param_bytes: usize,
        (float, int8): (&Evaluation, &Evaluation),
        (calibration, calibration_samples): (Calibration, usize),
        weights: WeightBits,
        body: BodySummary,
    ) -> Self {
        Self {
            file: file.display().to_string(),
            file_bytes: bytes.len(),
            param_bytes,
            float_accuracy: float.accuracy(),
            int8_accuracy: int8.accuracy(),
            weights,
            quantized_accuracy: int8.accuracy(),
            top1_agreement: int8.agreement(float),
            calibration,
            calibration_samples,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn array(v: &[f32]) -> Array {
        ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap()
    }

    #[test]
    fn evaluation_is_in_percent() {
        let float = Evaluation::new(vec![1, 2, 3, 4], [1, 2, 0, 0]);
        let int8 = Evaluation::new(vec![1, 2, 3, 0], [1, 2, 0, 0]);
        assert_eq!((float.correct, float.total()), (2, 4));
        assert_eq!(float.accuracy(), 50.0);
        assert_eq!(int8.accuracy(), 75.0);
        assert_eq!(int8.agreement(&float), 75.0);
        assert!(float.loss().is_nan());
        assert!(Evaluation::new(vec![], [])
            .agreement(&Evaluation::new(vec![], []))
            .is_nan());
    }

    #[test]
    fn observers_give_ranges_and_symmetric_bounds() {
        let x = array(&[-3.0, 0.5, 2.0, -0.25]);
        let mut mm = Observer::new(Calibration::MinMax, None);
        assert!(mm.observe(&x));
        assert_eq!(mm.clone().range(Calibration::MinMax), (-3.0, 2.0));
        assert_eq!(mm.abs_bound(Calibration::MinMax), 3.0);
        // The 50th percentile of |x| = {0.25, 0.5, 2, 3}: rank ceil(0.5 · 4) - 1 = 1.
        let p = Calibration::Percentile(50.0);
        let mut values = Observer::new(p, None);
        assert!(values.observe(&x));
        assert_eq!(values.abs_bound(p), 0.5);
        // Nothing seen: no symmetric bound (the exporters then use scale 1).
        assert!(Observer::new(Calibration::MinMax, None).abs_bound(Calibration::MinMax) < 0.0);
        // A non-finite value: `observe` says so, and the bound is infinite.
        let mut bad = Observer::new(Calibration::MinMax, None);
        assert!(!bad.observe(&array(&[1.0, f32::NAN])));
        assert_eq!(bad.abs_bound(Calibration::MinMax), f32::INFINITY);
    }

    #[test]
    fn percentile_observer_subsamples_to_the_cap() {
        let p = Calibration::Percentile(99.0);
        let Observer::Values { stride, .. } = Observer::new(p, Some(3 * PERCENTILE_MAX_VALUES))
        else {
            panic!("a percentile keeps values");
        };
        assert_eq!(stride, 3);
    }

    #[test]
    fn metadata_constructors() {
        let lm = ExportMetadata::language_model(3, "cmd");
        assert_eq!(lm.task, Task::LanguageModel);
        assert_eq!(lm.labels_text().unwrap(), "");
        let digits = ExportMetadata::digits(3, "cmd");
        assert_eq!(digits.task, Task::Classifier);
        assert_eq!(
            digits.labels_text().unwrap(),
            "0\n1\n2\n3\n4\n5\n6\n7\n8\n9"
        );
        let bad = ExportMetadata {
            labels: vec!["a\nb".into()],
            ..digits
        };
        assert!(bad.labels_text().is_err());
    }
}
