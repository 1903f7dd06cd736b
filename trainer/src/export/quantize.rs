//! The quantization arithmetic shared by both bodies (TensorFlow Lite's int8 scheme):
//!
//! * **Weights** ([`quantize_rows`]): int8, symmetric, **per output row** (channel):
//!   `s[o] = max|W[o]| / 127`, `q = clamp(round(w / s[o]), -127, 127)`, zero point 0; an
//!   all-zero (or non-finite) row gets scale 1. The maximum error is measured, absolute and
//!   relative to the row's `max|W[o]|`. **int4** ([`quantize_rows_int4`], issue 12): the same
//!   per row, `q = clamp(round(w / s[o]), -8, 7)` with `s[o] = α·max|W[o]| / 7` and `α` chosen
//!   per row by a clipping search ([`Int4Scale::Search`]); [`quantize_rows_as`] picks by
//!   [`WeightBits`], and the file packs the values ([`super::weight_bytes`]). Rounding is
//!   `f32::round` (half away from zero) for both.
//! * **Activations** ([`activation_quant`]): int8, per tensor, asymmetric `(scale, zero_point)`
//!   of a calibrated range `[lo, hi]` widened to contain 0 (so that real 0 is exact):
//!   `scale = (max - min) / 255`, `zero_point = clamp(round(-128 - min / scale), -128, 127)`.
//!   The GPT instead uses symmetric scales `max|x| / 127` (see [`super::gpt`]).
//! * **Bias** ([`fold_bias`]): int32 at scale `s_in * s_w[o]`, with the input zero point folded
//!   in: `bias'[o] = round(b[o] / (s_in * s_w[o])) - zp_in * Σ W_q[o]`.
//! * **Requantization** ([`requant`]): `M[o] = s_in * s_w[o] / s_out` (in `f64` from the `f32`
//!   scales), stored as `aka_core::quant::quantize_multiplier(M[o])` (Q31 multiplier and shift).
//!
//! How the ranges are read from a calibration run is [`Calibration`] with a
//! [`super::Observer`] per tensor.

use aka_core::format::QuantParams;
use aka_core::quant::quantize_multiplier;
use anyhow::ensure;
use serde::{Deserialize, Serialize};

use crate::data::mnist::PixelNorm;

/// Input scale of an **unnormalized** input ([`PixelNorm::NONE`], pixel `p` is `p / 255`): what
/// [`input_quant`] gives for it. Also the scale of an empty activation range.
pub const INPUT_SCALE: f32 = 1.0 / 255.0;
/// Input zero point of an unnormalized input: pixel `p` is stored as `p - 128`.
pub const INPUT_ZERO_POINT: i8 = -128;
/// Largest symmetric weight value (TFLite's int8 weight range is `[-127, 127]`).
pub const WEIGHT_MAX: i32 = 127;
/// A percentile calibration keeps at most this many values per tensor (evenly subsampled) when
/// it knows how many it will see.
pub const PERCENTILE_MAX_VALUES: usize = 4_000_000;

/// How activation ranges are chosen from the calibration run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Calibration {
    /// The observed minimum and maximum (TFLite's default); for a symmetric scale, `max |x|`.
    MinMax,
    /// Percentiles of all observed values, `p` at most 100 (e.g. `99.99`): ignores rare
    /// outliers, clipping them. Asymmetric: the `p`-th and `(100 - p)`-th percentiles of `x`
    /// (`p` in `(50, 100]`); symmetric: the `p`-th percentile of `|x|` (`p` in `(0, 100]`).
    Percentile(f32),
}

/// Per-row symmetric int8 weights of a `[rows][k]` row-major array.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantWeights {
    /// `[rows][k]` int8 values.
    pub q: Vec<i8>,
    /// `[rows]` scales (`w ≈ scale[o] · q`).
    pub scales: Vec<f32>,
    /// `max |w - s · q|` over all weights.
    pub max_abs_error: f32,
    /// `max over rows of max|w - s · q| / max|W[o]|` (rows with `max|W[o]| > 0`).
    pub max_rel_error: f32,
}

/// Quantizes a `[rows][w.len() / rows]` matrix per row, symmetric: `s = max|w_row| / 127`
/// (1 for an all-zero or non-finite row), `q = clamp(round(w / s), -127, 127)`.
///
/// Panics unless `rows > 0` divides `w.len()`.
pub fn quantize_rows(w: &[f32], rows: usize) -> QuantWeights {
    assert!(
        rows > 0 && w.len().is_multiple_of(rows),
        "{} weights in {rows} rows",
        w.len()
    );
    let k = w.len() / rows;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows);
    let (mut max_abs_error, mut max_rel_error) = (0.0f32, 0.0f32);
    for row in w.chunks_exact(k.max(1)).take(rows) {
        let max_abs = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if max_abs > 0.0 && max_abs.is_finite() {
            max_abs / WEIGHT_MAX as f32
        } else {
            1.0
        };
        let mut err = 0.0f32;
        for &v in row {
            let qv = (v / scale)
                .round()
                .clamp(-(WEIGHT_MAX as f32), WEIGHT_MAX as f32);
            err = err.max((v - qv * scale).abs());
            q.push(qv as i8);
        }
        max_abs_error = max_abs_error.max(err);
        if max_abs > 0.0 {
            max_rel_error = max_rel_error.max(err / max_abs);
        }
        scales.push(scale);
    }
    QuantWeights {
        q,
        scales,
        max_abs_error,
        max_rel_error,
    }
}

/// Largest int4 weight value; int4 weights are two's-complement nibbles in `[-8, 7]`.
pub const INT4_MAX: i32 = 7;
/// Smallest int4 weight value.
pub const INT4_MIN: i32 = -8;
/// Clip ratios `α` the int4 clipping search tries: `1.00, 0.99, ..., 0.50`.
pub const INT4_CLIP_STEPS: usize = 51;

/// The weight precision of a layer or matrix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WeightBits {
    /// int8 per row, `s = max|w| / 127` ([`quantize_rows`]).
    #[default]
    Int8,
    /// int4 per row with the clipping search ([`quantize_rows_int4`]).
    Int4,
}

impl WeightBits {
    /// The file's [`WeightType`](aka_core::format::WeightType).
    pub fn format(self) -> aka_core::format::WeightType {
        match self {
            WeightBits::Int8 => aka_core::format::WeightType::Int8,
            WeightBits::Int4 => aka_core::format::WeightType::Int4,
        }
    }

    /// `"int8"` / `"int4"`.
    pub fn name(self) -> &'static str {
        match self {
            WeightBits::Int8 => "int8",
            WeightBits::Int4 => "int4",
        }
    }
}

impl std::str::FromStr for WeightBits {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "int8" => Ok(WeightBits::Int8),
            "int4" => Ok(WeightBits::Int4),
            _ => Err(format!("unknown weight type {s:?} (int8 or int4)")),
        }
    }
}

/// How an int4 row scale is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int4Scale {
    /// `s = max|w| / 7`: nothing is clipped.
    Max,
    /// `s = α · max|w| / 7` with `α` in `1.00, 0.99, ..., 0.50` ([`INT4_CLIP_STEPS`]) chosen per
    /// row to minimize `Σ (w - s·q)²` (the first, i.e. largest, `α` on ties): clips the rare
    /// large weights to resolve the many small ones better. This is the exporter's choice
    /// (measured in docs/RESULTS.md, "int4 weights (issue 12)").
    Search,
}

/// Quantizes the weights by `bits` the way the exporters do: [`quantize_rows`] for int8,
/// [`quantize_rows_int4`] with [`Int4Scale::Search`] for int4.
pub fn quantize_rows_as(w: &[f32], rows: usize, bits: WeightBits) -> QuantWeights {
    match bits {
        WeightBits::Int8 => quantize_rows(w, rows),
        WeightBits::Int4 => quantize_rows_int4(w, rows, Int4Scale::Search),
    }
}

/// `s · q` of every weight: what the quantized weights stand for.
pub fn dequantize(qw: &QuantWeights) -> Vec<f32> {
    let k = qw.q.len() / qw.scales.len().max(1);
    qw.q.chunks_exact(k.max(1))
        .zip(&qw.scales)
        .flat_map(|(row, &s)| row.iter().map(move |&q| q as f32 * s))
        .collect()
}

/// The int4 values of one row at `scale`: `clamp(round(w / scale), -8, 7)` (round half away
/// from zero), into `q`; returns `Σ (w - scale·q)²`.
fn int4_row(row: &[f32], scale: f32, q: &mut Vec<i8>) -> f64 {
    let mut sse = 0.0f64;
    for &v in row {
        let qv = (v / scale).round().clamp(INT4_MIN as f32, INT4_MAX as f32);
        let e = (v - qv * scale) as f64;
        sse += e * e;
        q.push(qv as i8);
    }
    sse
}

/// Quantizes a `[rows][w.len() / rows]` matrix to int4 per row, symmetric (zero point 0):
/// `q = clamp(round(w / s), -8, 7)` with `s` from `scale` ([`Int4Scale`]); an all-zero or
/// non-finite row gets scale 1, as in [`quantize_rows`].
///
/// Panics unless `rows > 0` divides `w.len()`.
pub fn quantize_rows_int4(w: &[f32], rows: usize, scale: Int4Scale) -> QuantWeights {
    assert!(
        rows > 0 && w.len().is_multiple_of(rows),
        "{} weights in {rows} rows",
        w.len()
    );
    let k = w.len() / rows;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows);
    let (mut max_abs_error, mut max_rel_error) = (0.0f32, 0.0f32);
    let mut trial = Vec::with_capacity(k);
    for row in w.chunks_exact(k.max(1)).take(rows) {
        let max_abs = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let s = if max_abs > 0.0 && max_abs.is_finite() {
            let full = max_abs / INT4_MAX as f32;
            match scale {
                Int4Scale::Max => full,
                Int4Scale::Search => {
                    let mut best = (f64::INFINITY, full);
                    for i in 0..INT4_CLIP_STEPS {
                        let s = full * (1.0 - 0.01 * i as f32);
                        trial.clear();
                        let sse = int4_row(row, s, &mut trial);
                        if sse < best.0 {
                            best = (sse, s);
                        }
                    }
                    best.1
                }
            }
        } else {
            1.0
        };
        let start = q.len();
        int4_row(row, s, &mut q);
        let err = row
            .iter()
            .zip(&q[start..])
            .fold(0.0f32, |m, (&v, &qv)| m.max((v - qv as f32 * s).abs()));
        max_abs_error = max_abs_error.max(err);
        if max_abs > 0.0 && max_abs.is_finite() {
            max_rel_error = max_rel_error.max(err / max_abs);
        }
        scales.push(s);
    }
    QuantWeights {
        q,
        scales,
        max_abs_error,
        max_rel_error,
    }
}

/// What per-group quantization would give (an experiment, not a file format): every row of
/// `[rows][k]` is cut into groups of `group` values along the row (the last one shorter if
/// `group` does not divide `k`; `None`: whole rows), each group quantized on its own by `bits`
/// ([`quantize_rows_as`]), and the dequantized values returned.
pub fn fake_quantize_groups(
    w: &[f32],
    rows: usize,
    group: Option<usize>,
    bits: WeightBits,
) -> Vec<f32> {
    assert!(rows > 0 && w.len().is_multiple_of(rows));
    let k = w.len() / rows;
    let g = group.unwrap_or(k).clamp(1, k.max(1));
    let mut out = Vec::with_capacity(w.len());
    for row in w.chunks_exact(k.max(1)) {
        for chunk in row.chunks(g) {
            out.extend(dequantize(&quantize_rows_as(chunk, 1, bits)));
        }
    }
    out
}

/// Quantization of the model input under pixel normalization `norm`: [`activation_quant`] of the
/// input range `[norm.apply(0), norm.apply(255)]` = `[(0 - mean) / std, (1 - mean) / std]`.
/// [`PixelNorm::NONE`] gives scale [`INPUT_SCALE`] and zero point [`INPUT_ZERO_POINT`].
pub fn input_quant(norm: PixelNorm) -> QuantParams {
    activation_quant(norm.apply(0), norm.apply(255))
}

/// Asymmetric int8 quantization of the range `[lo, hi]` widened to contain 0:
/// `scale = (max - min) / 255`, `zero_point = clamp(round(-128 - min / scale), -128, 127)`.
/// An empty range (all zeros) gets scale `1/255`.
pub fn activation_quant(lo: f32, hi: f32) -> QuantParams {
    let min = (lo as f64).min(0.0);
    let max = (hi as f64).max(0.0);
    let range = max - min;
    let scale = if range.is_finite() && range > 0.0 {
        (range / 255.0) as f32
    } else {
        INPUT_SCALE
    };
    let scale = if scale > 0.0 && scale.is_finite() {
        scale
    } else {
        f32::MIN_POSITIVE
    };
    let zp = (-128.0 - min / scale as f64).round().clamp(-128.0, 127.0) as i8;
    QuantParams {
        scale,
        zero_point: zp,
    }
}

/// Requantization of an int32 accumulator to the int8 output, per output channel.
#[derive(Clone, Debug, PartialEq)]
pub struct QRequant {
    /// `[channels]` Q31 multipliers (`quantize_multiplier(s_in * s_w[o] / s_out)`).
    pub multipliers: Vec<i32>,
    /// `[channels]` the matching shifts.
    pub shifts: Vec<i32>,
    /// Output quantization.
    pub output: QuantParams,
    /// Lower clamp: `output.zero_point` with a fused ReLU, else `-128`.
    pub act_min: i8,
    /// Upper clamp (`127`).
    pub act_max: i8,
}

/// `bias'[o] = round(b[o] / (s_in * s_w[o])) - zp_in * Σ W_q[o]` for `[channels]` float biases
/// `b`, in `i64`, checked to fit `i32`. `layer` names the layer in errors.
pub fn fold_bias(
    b: &[f32],
    qw: &QuantWeights,
    input: QuantParams,
    layer: usize,
) -> anyhow::Result<Vec<i32>> {
    let channels = qw.scales.len();
    ensure!(
        b.len() == channels,
        "layer {layer}: {} biases for {channels} channels",
        b.len()
    );
    let k = qw.q.len() / channels;
    let zp = input.zero_point as i64;
    let mut out = Vec::with_capacity(channels);
    for (o, ((&bf, &sw), row)) in b
        .iter()
        .zip(&qw.scales)
        .zip(qw.q.chunks_exact(k))
        .enumerate()
    {
        let bias_scale = input.scale as f64 * sw as f64;
        let bq = (bf as f64 / bias_scale).round();
        ensure!(
            bq.is_finite() && bq.abs() <= i32::MAX as f64,
            "layer {layer}: bias {bf} of channel {o} does not fit int32 at scale {bias_scale:e}"
        );
        let sum: i64 = row.iter().map(|&w| w as i64).sum();
        let folded = bq as i64 - zp * sum;
        let folded = i32::try_from(folded).map_err(|_| {
            anyhow::anyhow!(
                "layer {layer}: channel {o}: bias with the input zero point folded in ({folded}) does not fit int32"
            )
        })?;
        out.push(folded);
    }
    Ok(out)
}

/// The requantization from `input` through `[channels]` weight scales to `output`; a fused ReLU
/// clamps at the output zero point. `layer` names the layer in errors.
pub fn requant(
    input: QuantParams,
    weight_scales: &[f32],
    output: QuantParams,
    relu: bool,
    layer: usize,
) -> anyhow::Result<QRequant> {
    let mut multipliers = Vec::with_capacity(weight_scales.len());
    let mut shifts = Vec::with_capacity(weight_scales.len());
    for (o, &sw) in weight_scales.iter().enumerate() {
        let real = input.scale as f64 * sw as f64 / output.scale as f64;
        let (m, s) = quantize_multiplier(real).map_err(|e| {
            anyhow::anyhow!("layer {layer}: channel {o}: requantization multiplier {real:e}: {e}")
        })?;
        multipliers.push(m);
        shifts.push(s);
    }
    Ok(QRequant {
        multipliers,
        shifts,
        output,
        act_min: if relu { output.zero_point } else { i8::MIN },
        act_max: i8::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rows_per_row_symmetric() {
        let w = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.0, -0.004];
        let qw = quantize_rows(&w, 3);
        assert_eq!(qw.scales, [1.0 / 127.0, 1.0, 2.0 / 127.0]);
        assert_eq!(&qw.q[..6], &[64, -127, 32, 0, 0, 0]);
        assert_eq!(&qw.q[6..], &[127, 64, 0]);
        // Rows with a non-finite maximum get scale 1 (the GPT exporter's convention).
        let odd = quantize_rows(&[f32::INFINITY, 1.0], 1);
        assert_eq!(odd.scales, [1.0]);
        assert_eq!(odd.q, [127, 1]);
    }

    #[test]
    fn int4_rows_round_half_away_and_clamp() {
        // Max scaling: s = 0.7 / 7 = 0.1; 0.35 / 0.1 = 3.5 rounds away from zero to 4 (3.4999..
        // in f32 is fine either way, so use exactly representable halves).
        let w = [0.7, -0.7, 0.25, -0.25, 0.0, 0.05];
        let qw = quantize_rows_int4(&w, 1, Int4Scale::Max);
        assert_eq!(qw.scales, [0.7 / 7.0]);
        assert_eq!(qw.q[..2], [7, -7]);
        assert!(qw.q.iter().all(|&q| (-8..=7).contains(&q)));
        let s = 2.0f32; // halves are exact at scale 2
        let w = [14.0, 3.0, -3.0, 5.0, -5.0, 1.0];
        let qw = quantize_rows_int4(&w, 1, Int4Scale::Max);
        assert_eq!(qw.scales, [s]);
        assert_eq!(qw.q, [7, 2, -2, 3, -3, 1]); // 1.5 -> 2, -1.5 -> -2, 2.5 -> 3, 0.5 -> 1
                                                // Zero and non-finite rows get scale 1.
        let z = quantize_rows_int4(&[0.0; 4], 2, Int4Scale::Search);
        assert_eq!(z.scales, [1.0, 1.0]);
        assert_eq!(z.q, [0; 4]);
    }

    #[test]
    fn int4_search_never_worse_and_clips_outliers() {
        // Normally distributed weights (a trained layer's shape): clipping the rare large ones
        // resolves the many small ones better.
        let mut rng = aka_core::rng::Rng::new(0);
        let w: Vec<f32> = (0..256).map(|_| rng.normal() * 0.1).collect();
        let sse = |qw: &QuantWeights| -> f64 {
            w.iter()
                .zip(dequantize(qw))
                .map(|(&a, b)| ((a - b) as f64).powi(2))
                .sum()
        };
        let max = quantize_rows_int4(&w, 1, Int4Scale::Max);
        let search = quantize_rows_int4(&w, 1, Int4Scale::Search);
        assert!(
            sse(&search) < sse(&max),
            "{} vs {}",
            sse(&search),
            sse(&max)
        );
        assert!(search.scales[0] < max.scales[0]);
        assert!(search.q.iter().all(|&q| (-8..=7).contains(&q)));
        // Uniform weights: the search can still only be as good or better.
        let u: Vec<f32> = (0..32).map(|i| i as f32 / 31.0 - 0.5).collect();
        let a = dequantize(&quantize_rows_int4(&u, 1, Int4Scale::Max));
        let b = dequantize(&quantize_rows_int4(&u, 1, Int4Scale::Search));
        let e = |d: &[f32]| -> f64 {
            u.iter()
                .zip(d)
                .map(|(&x, &y)| ((x - y) as f64).powi(2))
                .sum()
        };
        assert!(e(&b) <= e(&a));
    }

    #[test]
    fn groups_of_whole_rows_equal_rows() {
        let w: Vec<f32> = (0..96).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
        let rows = dequantize(&quantize_rows_as(&w, 2, WeightBits::Int4));
        assert_eq!(fake_quantize_groups(&w, 2, None, WeightBits::Int4), rows);
        let g = fake_quantize_groups(&w, 2, Some(32), WeightBits::Int4);
        let first = dequantize(&quantize_rows_as(&w[..32], 1, WeightBits::Int4));
        assert_eq!(g[..32], first[..]);
        // 48 is cut 32 + 16.
        let tail = dequantize(&quantize_rows_as(&w[32..48], 1, WeightBits::Int4));
        assert_eq!(g[32..48], tail[..]);
    }
}
