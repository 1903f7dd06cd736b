//! Int8 export of a trained [`Gpt`] as an `aka-core` model file (`Body::Gpt`), and evaluation of
//! such files with `aka-core` itself.
//!
//! The arithmetic the file feeds is documented (one table) in `aka_core::gpt`. This module:
//!
//! * quantizes every projection (`wq wk wv wo w1 w2 w3`, untied `lm_head`) and both embeddings
//!   **per output row, symmetric** ([`quantize_rows_as`]): int8 `s = max|w_row| / 127`,
//!   `q = round(w / s)` (ties away from zero, clamped to ±127; an all-zero row gets `s = 1`), or,
//!   for the projections and head a [`GptWeights`] makes int4, packed int4 with a clipping
//!   search for `s` (the embeddings, and so a tied head, stay int8);
//! * calibrates the static activation scales ([`calibrate`]) by running
//!   [`Gpt::forward_traced`] on seeded training batches and taking `max|x|` (or a percentile of
//!   `|x|`) per tap with an [`Observer`] ([`Observer::abs_bound`]), `scale = that / 127` (1 if
//!   that is 0 or not finite);
//! * builds each block's MLP activation table ([`act_lut`]: GELU or SiLU of every int8
//!   up-projection value, evaluated in f64, quantized with aka-core's `quantize`), using the
//!   calibrated `mlp_gate` and `mlp_act` scales;
//! * stores norm weights/biases as f32, the RoPE tables of `Tensor::rope_tables(0, block, hd)`,
//!   and the vocabulary (the tokenizer's chars, strictly increasing, plus the unknown id);
//! * word-aligns every weight matrix in the file ([`encode_aligned`]);
//! * evaluates the float model ([`evaluate_float`]) and the file **as run by aka-core**
//!   ([`evaluate_int8`]) on the same fixed validation batches (`train::validation_batches`) and
//!   records both losses, the top-1 agreement and the top-1 accuracies in the file.
//!
//! [`export_gpt`] does all of it; [`super::write()`] writes atomically. Encoding is deterministic.

use std::path::Path;

use aka_core::format::{
    Body, GptBlock, GptBlockList, GptConfig as CoreConfig, GptDesc, GptEval, GptMlp, GptPosition,
    GptVocab, ModelFile, NormParams, QMatrix, RopeTables, WeightType,
};
use aka_core::gpt::GptModel;
use aka_core::kernels::{offset_row_const, to_offset_binary};
use aka_core::rng::Rng;
use anyhow::{bail, ensure};
use rayon::prelude::*;
use serde::Serialize;

pub use super::gpt_weights::{GptWeights, MATRIX_ROLES};
use super::quantize::{quantize_rows_as, Calibration, WeightBits};
use super::{
    encode_aligned, f32_bytes, u32_of, weight_bytes, BodySummary, Evaluation, ExportMetadata,
    ExportSummary, Observer,
};
use crate::autograd::{no_grad, Tensor};
use crate::data::text::{CharTokenizer, Split, TextDataset};
use crate::nn::Ctx;
use crate::nn::{gpt::Gpt, Norm};
use crate::train::language_model::{validation_batches, Batches};

/// XORed into the calibration seed for the calibration-batch stream.
pub const CALIB_STREAM: u64 = 0x6361_6c69_6200_0003;

/// Calibration settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibConfig {
    /// Number of training batches (default 8).
    pub batches: usize,
    /// Sequences per batch (default 16).
    pub batch_size: usize,
    /// Sequence length; `None`: the model's `block_size` (default).
    pub block: Option<usize>,
    /// How the scales are read from the taps: `max |x|` ([`Calibration::MinMax`], the default)
    /// or the `p`-th percentile of `|x|`, `p` in `(0, 100]`.
    pub method: Calibration,
    /// Seeds the batches (`Rng::new(seed ^ CALIB_STREAM)`, training split). Default 0.
    pub seed: u64,
}

impl Default for CalibConfig {
    fn default() -> Self {
        Self {
            batches: 8,
            batch_size: 16,
            block: None,
            method: Calibration::MinMax,
            seed: 0,
        }
    }
}

/// Which validation batches the float and int8 figures are computed on.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalConfig {
    /// Number of batches (default 4).
    pub batches: usize,
    /// Sequences per batch (default 8).
    pub batch_size: usize,
    /// Seed passed to `train::validation_batches` (default 0; the training seed reproduces
    /// the trainer's own validation batches).
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            batches: 4,
            batch_size: 8,
            seed: 0,
        }
    }
}

/// Static activation scales (`real = scale · q`), one set per block plus the head input.
#[derive(Clone, Debug, PartialEq)]
pub struct ActScales {
    /// Per block, in [`BLOCK_TAPS`] order.
    pub blocks: Vec<[f32; 9]>,
    /// Input of the head (`ln_f(x)`).
    pub head_in: f32,
}

/// The tap names of one block, in [`ActScales::blocks`] order.
pub const BLOCK_TAPS: [&str; 9] = [
    "attn_in",
    "q",
    "k",
    "v",
    "attn_out",
    "mlp_in",
    "mlp_gate",
    "mlp_act",
    "mlp_hidden",
];

/// What [`export_gpt`] produced.
#[derive(Clone, Debug)]
pub struct GptExported {
    /// The model file.
    pub bytes: Vec<u8>,
    /// The calibrated activation scales.
    pub scales: ActScales,
    /// The float model on the validation batches (with its mean loss).
    pub float: Evaluation,
    /// The int8 file as run by aka-core on the same batches (with its mean loss).
    pub int8: Evaluation,
    /// How the scales were calibrated.
    pub calibration: Calibration,
    /// Calibration sequences (batches × batch size).
    pub calibration_samples: usize,
    /// Predicted positions per evaluation.
    pub val_tokens: usize,
    /// `GptModel::state_size()` of the file: run-state bytes (KV cache included).
    pub state_size: usize,
    /// `GptModel::param_bytes()`.
    pub param_bytes: usize,
    /// Which matrices are int4.
    pub weights: GptWeights,
}

impl GptExported {
    /// A few lines for the terminal.
    pub fn report(&self) -> String {
        format!(
            "quantized GPT, {}: {} bytes ({} of parameters), run state {} bytes\n\
             validation ({} positions): float loss {:.4}, quantized loss {:.4} ({:+.2}%), \
             top-1 agreement {:.2}%, top-1 accuracy float {:.2}% / quantized {:.2}%",
            self.weights.describe(),
            self.bytes.len(),
            self.param_bytes,
            self.state_size,
            self.val_tokens,
            self.float.loss(),
            self.int8.loss(),
            100.0 * (self.int8.loss() / self.float.loss() - 1.0),
            self.int8.agreement(&self.float),
            self.float.accuracy(),
            self.int8.accuracy(),
        )
    }

    /// Summary for `summary.json`; `file` is where the bytes were written.
    pub fn summary(&self, file: &Path) -> ExportSummary {
        ExportSummary::new(
            file,
            &self.bytes,
            self.param_bytes,
            (&self.float, &self.int8),
            (self.calibration, self.calibration_samples),
            self.weights.weights,
            BodySummary::Gpt(GptSummary {
                state_bytes: self.state_size,
                val_tokens: self.val_tokens,
                float_val_loss: self.float.loss(),
                quantized_val_loss: self.int8.loss(),
            }),
        )
    }
}

/// The language model's own keys in `summary.json`'s `export` (after [`ExportSummary`]'s).
#[derive(Clone, Debug, Serialize)]
pub struct GptSummary {
    /// Run-state bytes (KV cache included), `GptModel::state_size()`.
    pub state_bytes: usize,
    /// Predicted positions per evaluation.
    pub val_tokens: usize,
    /// Mean next-token cross-entropy (nats) of the float model on the validation batches.
    pub float_val_loss: f64,
    /// The same of the int8 file as run by aka-core.
    pub quantized_val_loss: f64,
}

/// Calibrates the activation scales on `calib.batches` seeded training batches.
pub fn calibrate(
    model: &Gpt,
    data: &TextDataset,
    calib: &CalibConfig,
) -> anyhow::Result<ActScales> {
    let cfg = model.config();
    let block = calib
        .block
        .unwrap_or(cfg.block_size)
        .min(cfg.block_size)
        .min(data.max_block(Split::Train));
    ensure!(
        block >= 1,
        "the training split is too short to calibrate on"
    );
    ensure!(
        calib.batches >= 1 && calib.batch_size >= 1,
        "no calibration batches"
    );
    if let Calibration::Percentile(p) = calib.method {
        ensure!(p > 0.0 && p <= 100.0, "percentile {p} not in (0, 100]");
    }
    // Every value is kept for a percentile (no subsampling).
    let new_observer = || Observer::new(calib.method, None);
    let mut blocks: Vec<Vec<Observer>> = (0..cfg.n_layer)
        .map(|_| BLOCK_TAPS.iter().map(|_| new_observer()).collect())
        .collect();
    let mut head = new_observer();
    let mut rng = Rng::new(calib.seed ^ CALIB_STREAM);
    let mut ctx = Ctx::eval();
    for _ in 0..calib.batches {
        let (x, _) = data.sample_batch(Split::Train, calib.batch_size, block, &mut rng);
        let ids: Vec<usize> = x.iter().map(|&i| i as usize).collect();
        let mut tap = |name: &str, t: &Tensor| {
            let observer = if name == "head_in" {
                Some(&mut head)
            } else {
                name.strip_prefix("blocks.").and_then(|rest| {
                    let (i, tap) = rest.split_once('.')?;
                    let i: usize = i.parse().ok()?;
                    let k = BLOCK_TAPS.iter().position(|&n| n == tap)?;
                    blocks.get_mut(i)?.get_mut(k)
                })
            };
            if let Some(observer) = observer {
                // A non-finite value makes the tap's scale 1 (see `finish`).
                observer.observe(&t.value());
            }
        };
        no_grad(|| {
            model.forward_traced(&ids, calib.batch_size, block, &mut ctx, &mut tap);
        });
    }
    let finish = |o: Observer| -> f32 {
        let amax = o.abs_bound(calib.method);
        if amax > 0.0 && amax.is_finite() {
            amax / 127.0
        } else {
            1.0
        }
    };
    let blocks = blocks
        .into_iter()
        .map(|stats| {
            let mut out = [0f32; 9];
            for (o, s) in out.iter_mut().zip(stats) {
                *o = finish(s);
            }
            out
        })
        .collect();
    Ok(ActScales {
        blocks,
        head_in: finish(head),
    })
}

/// A quantized matrix: `(weight bytes, f32 LE row scales, layout)`.
type Mat = (Vec<u8>, Vec<u8>, WeightType);

/// Owned arrays of a quantized block (borrowed by the encoded `GptBlock`).
struct BlockBytes {
    ln1: (Vec<u8>, Option<Vec<u8>>),
    ln2: (Vec<u8>, Option<Vec<u8>>),
    wq: Mat,
    wk: Mat,
    wv: Mat,
    wo: Mat,
    w1: Mat,
    w2: Mat,
    w3: Option<Mat>,
}

fn qm(m: &Mat) -> QMatrix<'_> {
    QMatrix {
        pad: &[],
        weight_type: m.2,
        weights: &m.0,
        scales: &m.1,
    }
}

fn np(n: &(Vec<u8>, Option<Vec<u8>>)) -> NormParams<'_> {
    NormParams {
        weight: &n.0,
        bias: n.1.as_deref(),
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.value().iter().copied().collect()
}

fn norm_bytes(n: &Norm) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        f32_bytes(&values(&n.weight)),
        n.bias.as_ref().map(|b| f32_bytes(&values(b))),
    )
}

/// A `[rows, cols]` weight quantized per row at precision `bits` ([`quantize_rows_as`]).
fn matrix(t: &Tensor, bits: WeightBits) -> Mat {
    let rows = t.shape()[0];
    let qw = quantize_rows_as(&values(t), rows, bits);
    (
        weight_bytes(&qw.q, rows, bits),
        f32_bytes(&qw.scales),
        bits.format(),
    )
}

/// An int8 matrix of `cols` columns in the offset-binary layout
/// ([`WeightType::Int8Offset`]: even bytes `^ 0x80`, then one i32 LE row constant per row) when
/// `cols` is a multiple of 8 (the layout's rule); any other matrix unchanged (plain int8 rows
/// run through the plain int8 kernels, with the same sums).
fn offset_binary(mut m: Mat, cols: usize) -> Mat {
    if m.2 != WeightType::Int8 || cols == 0 || !cols.is_multiple_of(8) {
        return m;
    }
    // Rows of an even length keep the byte parity: one pass over the whole matrix.
    to_offset_binary(&mut m.0);
    let consts: Vec<u8> =
        m.0.chunks_exact(cols)
            .flat_map(|row| offset_row_const(row).to_le_bytes())
            .collect();
    m.0.extend_from_slice(&consts);
    m.2 = WeightType::Int8Offset;
    m
}

/// Encodes `model` with `tokenizer`'s vocabulary, activation `scales` and evaluation figures as
/// an aka model file, and checks that `aka_core::gpt::GptModel::load` accepts it.
/// `meta` ([`ExportMetadata::language_model`]) carries the float and int8 next-token top-1
/// accuracies in percent (NaN if unknown).
pub fn encode_gpt(
    model: &Gpt,
    tokenizer: &CharTokenizer,
    scales: &ActScales,
    eval: GptEval,
    meta: &ExportMetadata,
    weights: &GptWeights,
) -> anyhow::Result<Vec<u8>> {
    weights.validate()?;
    let cfg = model.config();
    ensure!(
        tokenizer.vocab_size() == cfg.vocab_size,
        "tokenizer has {} ids, the model {}",
        tokenizer.vocab_size(),
        cfg.vocab_size
    );
    ensure!(
        tokenizer.vocab().windows(2).all(|w| w[0] < w[1]),
        "the vocabulary must be sorted by char value (CharTokenizer::from_corpus order)"
    );
    ensure!(
        scales.blocks.len() == cfg.n_layer,
        "{} blocks of scales for {} layers",
        scales.blocks.len(),
        cfg.n_layer
    );
    ensure!(
        cfg.n_layer <= aka_core::format::MAX_GPT_LAYERS,
        "{} layers: aka-core runs at most {}",
        cfg.n_layer,
        aka_core::format::MAX_GPT_LAYERS
    );
    let vocab: String = tokenizer.vocab().iter().collect();
    let core_cfg = CoreConfig {
        n_layer: u32_of(cfg.n_layer, "n_layer")?,
        n_head: u32_of(cfg.n_head, "n_head")?,
        d_model: u32_of(cfg.d_model, "d_model")?,
        hidden: u32_of(cfg.hidden(), "hidden")?,
        block_size: u32_of(cfg.block_size, "block_size")?,
        vocab_size: u32_of(cfg.vocab_size, "vocab_size")?,
        position: cfg.position,
        norm: cfg.norm,
        mlp: cfg.mlp,
        tied_head: cfg.tied_head,
        norm_eps: cfg.norm_eps,
    };

    let int8 = |t: &Tensor| matrix(t, WeightBits::Int8);
    let m = |t: &Tensor, role: &str| {
        let q = matrix(t, weights.bits_of(role));
        match weights.plain_int8 {
            true => q,
            false => offset_binary(q, t.shape()[1]),
        }
    };
    // A tied head multiplies through the token table: the offset-binary layout too (the
    // runtime's lookup flips the even bytes back). An untied table is only looked up.
    let tok = match cfg.tied_head && !weights.plain_int8 {
        true => offset_binary(int8(&model.tok_emb), cfg.d_model),
        false => int8(&model.tok_emb),
    };
    let pos = model.pos_emb.as_ref().map(int8);
    let rope = (cfg.position == GptPosition::Rope).then(|| {
        let (c, s) = Tensor::rope_tables(0, cfg.block_size, cfg.head_dim());
        (
            f32_bytes(&c.iter().copied().collect::<Vec<_>>()),
            f32_bytes(&s.iter().copied().collect::<Vec<_>>()),
        )
    });
    let blocks: Vec<BlockBytes> = model
        .blocks
        .iter()
        .map(|b| BlockBytes {
            ln1: norm_bytes(&b.ln1),
            ln2: norm_bytes(&b.ln2),
            wq: m(&b.attn.wq, "wq"),
            wk: m(&b.attn.wk, "wk"),
            wv: m(&b.attn.wv, "wv"),
            wo: m(&b.attn.wo, "wo"),
            w1: m(&b.mlp.w1, "w1"),
            w2: m(&b.mlp.w2, "w2"),
            w3: b.mlp.w3.as_ref().map(|w| m(w, "w3")),
        })
        .collect();
    let ln_f = norm_bytes(&model.ln_f);
    let head = model.lm_head.as_ref().map(|h| m(h, "lm_head"));

    // For GELU the table's values are the input of w2: one scale for both.
    let act_scale = |s: &[f32; 9]| if cfg.mlp.is_plain_gelu() { s[8] } else { s[7] };
    let luts: Vec<Vec<u8>> = scales
        .blocks
        .iter()
        .map(|s| act_lut(cfg.mlp, s[6], act_scale(s)))
        .collect();
    let mut list = GptBlockList::new();
    for ((b, s), lut) in blocks.iter().zip(&scales.blocks).zip(&luts) {
        let block = GptBlock {
            ln1: np(&b.ln1),
            attn_in_scale: s[0],
            wq: qm(&b.wq),
            wk: qm(&b.wk),
            wv: qm(&b.wv),
            q_scale: s[1],
            k_scale: s[2],
            v_scale: s[3],
            attn_out_scale: s[4],
            wo: qm(&b.wo),
            ln2: np(&b.ln2),
            mlp_in_scale: s[5],
            w1: qm(&b.w1),
            w3: b.w3.as_ref().map(qm),
            mlp_gate_scale: s[6],
            mlp_act_scale: act_scale(s),
            act_lut: lut,
            mlp_hidden_scale: s[8],
            w2: qm(&b.w2),
        };
        if list.push(block).is_err() {
            bail!("too many blocks");
        }
    }
    let desc = GptDesc {
        config: core_cfg,
        vocab: GptVocab {
            chars: &vocab,
            unknown: tokenizer.unknown_id(),
        },
        tok_emb: qm(&tok),
        pos_emb: pos.as_ref().map(qm),
        rope: rope.as_ref().map(|(c, s)| RopeTables { cos: c, sin: s }),
        blocks: list,
        ln_f: np(&ln_f),
        head_in_scale: scales.head_in,
        lm_head: head.as_ref().map(qm),
        eval,
    };
    let labels = meta.labels_text()?;
    let bytes = encode_aligned(ModelFile::new(meta.to_core(&labels), Body::Gpt(desc)))?;
    GptModel::load(&bytes)
        .map_err(|e| anyhow::anyhow!("aka-core rejects the exported GPT: {e}"))?;
    Ok(bytes)
}

/// The MLP activation as aka-core's table: `lut[q as u8] = Q(act(s_gate · q), s_act)` for every
/// int8 `q`, where `act` is the trainer's GELU (tanh approximation, or exact for
/// [`GptMlp::GeluErf`]) or SiLU evaluated in `f64`,
/// and `Q` is aka-core's [`aka_core::kernels::quantize()`] with `1 / s_act`.
pub fn act_lut(kind: GptMlp, s_gate: f32, s_act: f32) -> Vec<u8> {
    let inv = 1.0 / s_act;
    (0..=255u8)
        .map(|i| {
            let g = (s_gate * f32::from(i as i8)) as f64;
            let a = match kind {
                GptMlp::Gelu | GptMlp::GeGlu => {
                    let k = (2.0 / std::f64::consts::PI).sqrt();
                    0.5 * g * (1.0 + (k * (g + 0.044_715 * g * g * g)).tanh())
                }
                GptMlp::SwiGlu => g / (1.0 + (-g).exp()),
                GptMlp::GeluErf => 0.5 * g * (1.0 + libm::erf(g / std::f64::consts::SQRT_2)),
            };
            aka_core::kernels::quantize(a as f32, inv) as u8
        })
        .collect()
}

/// Cross-entropy `-log softmax(logits)[target]` in f64, and the argmax (first max wins).
fn ce_and_argmax(logits: &[f32], target: usize) -> (f64, usize) {
    let m = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = logits
        .iter()
        .map(|&v| (v as f64 - m).exp())
        .sum::<f64>()
        .ln()
        + m;
    let arg = aka_core::sample::argmax(logits).unwrap_or(0);
    (lse - logits[target] as f64, arg)
}

/// One [`Evaluation`] from per-sequence `(summed loss, predictions, correct)`.
fn finish_eval(per_seq: Vec<(f64, Vec<usize>, usize)>, positions: usize) -> Evaluation {
    let mut loss = 0.0;
    let mut correct = 0;
    let mut predictions = Vec::with_capacity(positions);
    for (l, p, c) in per_seq {
        loss += l;
        correct += c;
        predictions.extend(p);
    }
    Evaluation {
        predictions,
        correct,
        mean_loss: Some(loss / positions.max(1) as f64),
    }
}

/// The float model on `batches` (`batch` sequences of `block` tokens each).
pub fn evaluate_float(model: &Gpt, batches: &Batches, batch: usize, block: usize) -> Evaluation {
    let vocab = model.config().vocab_size;
    let mut per_seq = Vec::new();
    let mut ctx = Ctx::eval();
    for (x, y) in batches {
        let logits = no_grad(|| model.forward(x, batch, block, &mut ctx));
        let v = logits.value();
        let v = v.as_standard_layout();
        let rows = v.as_slice().expect("standard layout");
        for s in 0..batch {
            let mut loss = 0.0;
            let mut preds = Vec::with_capacity(block);
            let mut correct = 0;
            for p in 0..block {
                let r = s * block + p;
                let (l, a) = ce_and_argmax(&rows[r * vocab..(r + 1) * vocab], y[r]);
                loss += l;
                correct += usize::from(a == y[r]);
                preds.push(a);
            }
            per_seq.push((loss, preds, correct));
        }
    }
    finish_eval(per_seq, batches.len() * batch * block)
}

/// Model-file `bytes` **as run by aka-core** (`GptModel::forward`, one fresh KV cache per
/// sequence, positions `0..block`) on `batches`. Sequences run in parallel.
pub fn evaluate_int8(
    bytes: &[u8],
    batches: &Batches,
    batch: usize,
    block: usize,
) -> Result<Evaluation, aka_core::Error> {
    let model = GptModel::load(bytes)?;
    let seqs: Vec<(&[usize], &[usize])> = batches
        .iter()
        .flat_map(|(x, y)| x.chunks_exact(block).zip(y.chunks_exact(block)).take(batch))
        .collect();
    let per_seq = seqs
        .par_iter()
        .map(|(x, y)| {
            let mut f = vec![0f32; model.state_f32_len()];
            let mut c = vec![0i8; model.state_i8_len()];
            let mut state = model.new_state(&mut f, &mut c)?;
            let mut loss = 0.0;
            let mut preds = Vec::with_capacity(block);
            let mut correct = 0;
            for (p, (&t, &target)) in x.iter().zip(y.iter()).enumerate() {
                let logits = model.forward(&mut state, t as u32, p)?;
                let (l, a) = ce_and_argmax(logits, target);
                loss += l;
                correct += usize::from(a == target);
                preds.push(a);
            }
            Ok((loss, preds, correct))
        })
        .collect::<Result<Vec<_>, aka_core::Error>>()?;
    Ok(finish_eval(per_seq, seqs.len() * block))
}

/// Mean int8 loss of `bytes` (as run by aka-core) on `n` validation batches of `batch`
/// sequences drawn like `train::validation_batches(data, batch, block_size, n, seed)`.
pub fn int8_val_loss(
    bytes: &[u8],
    data: &TextDataset,
    n: usize,
    batch: usize,
    seed: u64,
) -> anyhow::Result<f64> {
    let model = GptModel::load(bytes).map_err(|e| anyhow::anyhow!("loading the GPT: {e}"))?;
    let (batches, block) = validation_batches(data, batch, model.block_size(), n, seed);
    ensure!(!batches.is_empty(), "the validation split is too short");
    Ok(evaluate_int8(bytes, &batches, batch, block)
        .map_err(|e| anyhow::anyhow!("running the GPT with aka-core: {e}"))?
        .loss())
}

/// Calibrates, quantizes and encodes `model`, evaluates the float model and the int8 file (with
/// aka-core) on the same validation batches, and returns the final bytes with the figures in
/// the file (`GptDesc::eval`, and the top-1 accuracies in the metadata).
pub fn export_gpt(
    model: &Gpt,
    data: &TextDataset,
    calib: &CalibConfig,
    eval: &EvalConfig,
    meta: &ExportMetadata,
) -> anyhow::Result<GptExported> {
    export_gpt_weights(model, data, calib, eval, meta, &GptWeights::default())
}

/// [`export_gpt`] with the matrices' precision chosen by `weights` (int8 for
/// `GptWeights::default()`).
pub fn export_gpt_weights(
    model: &Gpt,
    data: &TextDataset,
    calib: &CalibConfig,
    eval: &EvalConfig,
    meta: &ExportMetadata,
    weights: &GptWeights,
) -> anyhow::Result<GptExported> {
    let tokenizer = data.tokenizer();
    let scales = calibrate(model, data, calib)?;
    let (batches, block) = validation_batches(
        data,
        eval.batch_size,
        model.config().block_size,
        eval.batches,
        eval.seed,
    );
    ensure!(
        !batches.is_empty(),
        "the validation split is too short to evaluate on"
    );
    let float = evaluate_float(model, &batches, eval.batch_size, block);
    // The figures are part of the file: evaluate a draft (its eval fields do not affect the
    // arithmetic), then encode again with them filled in.
    let mut meta = ExportMetadata {
        float_accuracy: f32::NAN,
        int8_accuracy: f32::NAN,
        ..meta.clone()
    };
    let draft = encode_gpt(model, tokenizer, &scales, GptEval::UNKNOWN, &meta, weights)?;
    let int8 = evaluate_int8(&draft, &batches, eval.batch_size, block)
        .map_err(|e| anyhow::anyhow!("running the exported GPT with aka-core: {e}"))?;
    let val_tokens = batches.len() * eval.batch_size * block;
    let figures = GptEval {
        val_loss_float: float.loss() as f32,
        val_loss_int8: int8.loss() as f32,
        top1_agreement: int8.agreement(&float) as f32,
        val_tokens: val_tokens as u64,
    };
    meta.float_accuracy = float.accuracy() as f32;
    meta.int8_accuracy = int8.accuracy() as f32;
    let bytes = encode_gpt(model, tokenizer, &scales, figures, &meta, weights)?;
    let loaded = GptModel::load(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (state_size, param_bytes) = (loaded.state_size(), loaded.param_bytes());
    Ok(GptExported {
        bytes,
        scales,
        float,
        int8,
        calibration: calib.method,
        calibration_samples: calib.batches * calib.batch_size,
        val_tokens,
        state_size,
        param_bytes,
        weights: weights.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::GptConfig;

    #[test]
    fn percentile_calibration_is_below_absmax() {
        let text = "abcdefgh ijklmnop qrstuvwx yz.\n".repeat(40);
        let data = TextDataset::from_text(&text, None);
        let config = GptConfig::sized(2, 2, 16, 16, data.tokenizer().vocab_size());
        let model = Gpt::new(config, &mut Rng::new(1));
        let base = CalibConfig {
            batches: 2,
            batch_size: 4,
            ..CalibConfig::default()
        };
        let max = calibrate(&model, &data, &base).unwrap();
        let p99 = calibrate(
            &model,
            &data,
            &CalibConfig {
                method: Calibration::Percentile(99.0),
                ..base.clone()
            },
        )
        .unwrap();
        let p100 = calibrate(
            &model,
            &data,
            &CalibConfig {
                method: Calibration::Percentile(100.0),
                ..base.clone()
            },
        )
        .unwrap();
        assert_eq!(max, p100);
        assert_eq!(max.blocks.len(), 2);
        for (a, b) in max.blocks.iter().zip(&p99.blocks) {
            for (x, y) in a.iter().zip(b) {
                assert!(*x > 0.0 && y <= x, "{a:?} {b:?}");
            }
        }
        assert!(p99.head_in < max.head_in);
        assert!(calibrate(
            &model,
            &data,
            &CalibConfig {
                method: Calibration::Percentile(0.0),
                ..base
            }
        )
        .is_err());
    }
}
