//! Int8 export of a trained [`Gpt`] as an `aka-core` model file (`Body::Gpt`), and evaluation of
//! such files with `aka-core` itself.
//!
//! The arithmetic the file feeds is documented (one table) in `aka_core::gpt`. This module:
//!
//! * quantizes every projection (`wq wk wv wo w1 w2 w3`, untied `lm_head`) and both embeddings
//!   to int8, **per output row, symmetric**: `s = max|w_row| / 127`, `q = round(w / s)` (ties
//!   away from zero, clamped to ±127); an all-zero row gets `s = 1`;
//! * calibrates the static activation scales ([`calibrate`]) by running
//!   [`Gpt::forward_traced`] on seeded training batches and taking `max|x|` (or a percentile of
//!   `|x|`) per tap, `scale = that / 127`;
//! * builds each block's MLP activation table ([`act_lut`]: GELU or SiLU of every int8
//!   up-projection value, evaluated in f64, quantized with aka-core's `quantize`), using the
//!   calibrated `mlp_gate` and `mlp_act` scales;
//! * stores norm weights/biases as f32, the RoPE tables of `Tensor::rope_tables(0, block, hd)`,
//!   and the vocabulary (the tokenizer's chars, strictly increasing, plus the unknown id);
//! * word-aligns every weight matrix in the file (`crate::export::encode_aligned`);
//! * evaluates the float model ([`float_eval`]) and the file **as run by aka-core**
//!   ([`int8_eval`]) on the same fixed validation batches (`train::validation_batches`) and
//!   records both losses, the top-1 agreement and the top-1 accuracies in the file.
//!
//! [`export_gpt`] does all of it; [`write_gpt`] writes atomically. Encoding is deterministic.

use std::path::Path;

use aka_core::format::{
    Body, GptBlock, GptBlockList, GptConfig as CoreConfig, GptDesc, GptEval, GptMlp, GptPosition,
    GptVocab, Metadata, ModelFile, NormParams, QMatrix, RopeTables, Task,
};
use aka_core::gpt::GptModel;
use aka_core::rng::Rng;
use anyhow::{bail, ensure, Context as _};
use rayon::prelude::*;

use super::model::Gpt;
use super::train::{validation_batches, Batches};
use crate::autograd::{no_grad, Tensor};
use crate::data::text::{CharTokenizer, Split, TextDataset};
use crate::nn::Ctx;

/// XORed into the calibration seed for the calibration-batch stream.
pub const CALIB_STREAM: u64 = 0x6361_6c69_6200_0003;

/// How activation scales are chosen from the calibration taps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleMethod {
    /// `max |x|` over all calibration values.
    AbsMax,
    /// The `p`-th percentile of `|x|`, `p` in `(0, 100]` (e.g. `99.99`): clips rare outliers.
    Percentile(f32),
}

/// Calibration settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibConfig {
    /// Number of training batches (default 8).
    pub batches: usize,
    /// Sequences per batch (default 16).
    pub batch_size: usize,
    /// Sequence length; `None`: the model's `block_size` (default).
    pub block: Option<usize>,
    /// Default [`ScaleMethod::AbsMax`].
    pub method: ScaleMethod,
    /// Seeds the batches (`Rng::new(seed ^ CALIB_STREAM)`, training split). Default 0.
    pub seed: u64,
}

impl Default for CalibConfig {
    fn default() -> Self {
        Self {
            batches: 8,
            batch_size: 16,
            block: None,
            method: ScaleMethod::AbsMax,
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

/// Descriptive information stored in the file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GptExportMeta {
    /// The training seed.
    pub seed: u64,
    /// The command line that trained the model.
    pub train_command: String,
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

/// Mean loss and predictions of a model over fixed batches.
#[derive(Clone, Debug, PartialEq)]
pub struct LmEval {
    /// Mean next-token cross-entropy (nats) over all positions.
    pub loss: f64,
    /// Argmax of the logits at every position, in batch order.
    pub predictions: Vec<u32>,
    /// Fraction of positions whose argmax is the target, in percent.
    pub top1_accuracy: f64,
}

impl LmEval {
    /// Percentage of positions where `self` and `other` predict the same token.
    pub fn agreement(&self, other: &LmEval) -> f64 {
        let n = self.predictions.len().min(other.predictions.len());
        if n == 0 {
            return f64::NAN;
        }
        let same = self
            .predictions
            .iter()
            .zip(&other.predictions)
            .filter(|(a, b)| a == b)
            .count();
        100.0 * same as f64 / n as f64
    }
}

/// What [`export_gpt`] produced.
#[derive(Clone, Debug)]
pub struct GptExported {
    /// The model file.
    pub bytes: Vec<u8>,
    /// The calibrated activation scales.
    pub scales: ActScales,
    /// The float model on the validation batches.
    pub float: LmEval,
    /// The int8 file as run by aka-core on the same batches.
    pub int8: LmEval,
    /// Predicted positions per evaluation.
    pub val_tokens: usize,
    /// `GptModel::state_size()` of the file: run-state bytes (KV cache included).
    pub state_size: usize,
    /// `GptModel::param_bytes()`.
    pub param_bytes: usize,
}

impl GptExported {
    /// A few lines for the terminal.
    pub fn report(&self) -> String {
        format!(
            "int8 GPT: {} bytes ({} of parameters), run state {} bytes\n\
             validation ({} positions): float loss {:.4}, int8 loss {:.4} ({:+.2}%), \
             top-1 agreement {:.2}%, top-1 accuracy float {:.2}% / int8 {:.2}%",
            self.bytes.len(),
            self.param_bytes,
            self.state_size,
            self.val_tokens,
            self.float.loss,
            self.int8.loss,
            100.0 * (self.int8.loss / self.float.loss - 1.0),
            self.int8.agreement(&self.float),
            self.float.top1_accuracy,
            self.int8.top1_accuracy,
        )
    }
}

/// Per-row symmetric int8 quantization of a `[rows, cols]` matrix: `(int8 bytes, f32 LE
/// scales)`.
pub fn quantize_rows(w: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(w.len(), rows * cols, "matrix shape");
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows * 4);
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let amax = row.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        let s = if amax > 0.0 && amax.is_finite() {
            amax / 127.0
        } else {
            1.0
        };
        q.extend(
            row.iter()
                .map(|&v| ((v / s).round() as i32).clamp(-127, 127) as i8 as u8),
        );
        scales.extend_from_slice(&s.to_le_bytes());
    }
    (q, scales)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.value().iter().copied().collect()
}

fn u32_of(v: usize, what: &str) -> anyhow::Result<u32> {
    u32::try_from(v).with_context(|| format!("{what} {v} does not fit in u32"))
}

/// Collects `|x|` statistics per tap.
enum Stat {
    /// Running `max |x|`.
    Max(f32),
    /// All `|x|` and the percentile to take.
    Values(Vec<f32>, f32),
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
    if let ScaleMethod::Percentile(p) = calib.method {
        ensure!(p > 0.0 && p <= 100.0, "percentile {p} not in (0, 100]");
    }
    let n_layer = cfg.n_layer;
    let new_stat = || match calib.method {
        ScaleMethod::AbsMax => Stat::Max(0.0),
        ScaleMethod::Percentile(p) => Stat::Values(Vec::new(), p),
    };
    let mut blocks: Vec<Vec<Stat>> = (0..n_layer)
        .map(|_| BLOCK_TAPS.iter().map(|_| new_stat()).collect())
        .collect();
    let mut head = new_stat();
    let mut rng = Rng::new(calib.seed ^ CALIB_STREAM);
    let mut ctx = Ctx::eval();
    for _ in 0..calib.batches {
        let (x, _) = data.sample_batch(Split::Train, calib.batch_size, block, &mut rng);
        let ids: Vec<usize> = x.iter().map(|&i| i as usize).collect();
        let mut tap = |name: &str, t: &Tensor| {
            let stat = if name == "head_in" {
                Some(&mut head)
            } else {
                name.strip_prefix("blocks.").and_then(|rest| {
                    let (i, tap) = rest.split_once('.')?;
                    let i: usize = i.parse().ok()?;
                    let k = BLOCK_TAPS.iter().position(|&n| n == tap)?;
                    blocks.get_mut(i)?.get_mut(k)
                })
            };
            let Some(stat) = stat else { return };
            let v = t.value();
            match stat {
                Stat::Max(m) => *m = v.iter().fold(*m, |m, &x| m.max(x.abs())),
                Stat::Values(all, _) => all.extend(v.iter().map(|x| x.abs())),
            }
        };
        no_grad(|| {
            model.forward_traced(&ids, calib.batch_size, block, &mut ctx, &mut tap);
        });
    }
    let finish = |s: Stat| -> f32 {
        let amax = match s {
            Stat::Max(m) => m,
            Stat::Values(mut v, p) => {
                if v.is_empty() {
                    0.0
                } else {
                    let k = (((p as f64 / 100.0) * v.len() as f64).ceil() as usize)
                        .clamp(1, v.len())
                        - 1;
                    let (_, kth, _) = v.select_nth_unstable_by(k, f32::total_cmp);
                    *kth
                }
            }
        };
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

/// Owned arrays of a quantized block (borrowed by the encoded `GptBlock`).
struct BlockBytes {
    ln1: (Vec<u8>, Option<Vec<u8>>),
    ln2: (Vec<u8>, Option<Vec<u8>>),
    wq: (Vec<u8>, Vec<u8>),
    wk: (Vec<u8>, Vec<u8>),
    wv: (Vec<u8>, Vec<u8>),
    wo: (Vec<u8>, Vec<u8>),
    w1: (Vec<u8>, Vec<u8>),
    w2: (Vec<u8>, Vec<u8>),
    w3: Option<(Vec<u8>, Vec<u8>)>,
}

fn qm(m: &(Vec<u8>, Vec<u8>)) -> QMatrix<'_> {
    QMatrix {
        pad: &[],
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

fn norm_bytes(n: &super::model::Norm) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        f32_bytes(&values(&n.weight)),
        n.bias.as_ref().map(|b| f32_bytes(&values(b))),
    )
}

fn matrix(t: &Tensor) -> (Vec<u8>, Vec<u8>) {
    let shape = t.shape();
    let v = t.value();
    let data: Vec<f32> = v.iter().copied().collect();
    quantize_rows(&data, shape[0], shape[1])
}

/// Encodes `model` with `tokenizer`'s vocabulary, activation `scales` and evaluation figures as
/// an aka model file, and checks that `aka_core::gpt::GptModel::load` accepts it.
/// `accuracies` = (float, int8) next-token top-1 accuracy in percent (NaN if unknown).
pub fn encode_gpt(
    model: &Gpt,
    tokenizer: &CharTokenizer,
    scales: &ActScales,
    eval: GptEval,
    accuracies: (f32, f32),
    meta: &GptExportMeta,
) -> anyhow::Result<Vec<u8>> {
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

    let tok = matrix(&model.tok_emb);
    let pos = model.pos_emb.as_ref().map(matrix);
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
            wq: matrix(&b.attn.wq),
            wk: matrix(&b.attn.wk),
            wv: matrix(&b.attn.wv),
            wo: matrix(&b.attn.wo),
            w1: matrix(&b.mlp.w1),
            w2: matrix(&b.mlp.w2),
            w3: b.mlp.w3.as_ref().map(matrix),
        })
        .collect();
    let ln_f = norm_bytes(&model.ln_f);
    let head = model.lm_head.as_ref().map(matrix);

    // For GELU the table's values are the input of w2: one scale for both.
    let act_scale = |s: &[f32; 9]| if cfg.mlp == GptMlp::Gelu { s[8] } else { s[7] };
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
    let metadata = Metadata {
        task: Task::LanguageModel,
        labels: "",
        float_accuracy: accuracies.0,
        int8_accuracy: accuracies.1,
        seed: meta.seed,
        train_command: &meta.train_command,
    };
    let bytes = crate::export::encode_aligned(ModelFile::new(metadata, Body::Gpt(desc)))?;
    GptModel::load(&bytes)
        .map_err(|e| anyhow::anyhow!("aka-core rejects the exported GPT: {e}"))?;
    Ok(bytes)
}

/// The MLP activation as aka-core's table: `lut[q as u8] = Q(act(s_gate · q), s_act)` for every
/// int8 `q`, where `act` is the trainer's GELU (tanh approximation) or SiLU evaluated in `f64`,
/// and `Q` is aka-core's [`aka_core::gpt::quantize`] with `1 / s_act`.
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
            };
            aka_core::gpt::quantize(a as f32, inv) as u8
        })
        .collect()
}

/// Cross-entropy `-log softmax(logits)[target]` in f64, and the argmax (first max wins).
fn ce_and_argmax(logits: &[f32], target: usize) -> (f64, u32) {
    let m = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = logits
        .iter()
        .map(|&v| (v as f64 - m).exp())
        .sum::<f64>()
        .ln()
        + m;
    let arg = aka_core::sample::argmax(logits).unwrap_or(0) as u32;
    (lse - logits[target] as f64, arg)
}

fn finish_eval(per_seq: Vec<(f64, Vec<u32>, usize)>, positions: usize) -> LmEval {
    let mut loss = 0.0;
    let mut correct = 0;
    let mut predictions = Vec::with_capacity(positions);
    for (l, p, c) in per_seq {
        loss += l;
        correct += c;
        predictions.extend(p);
    }
    let n = positions.max(1) as f64;
    LmEval {
        loss: loss / n,
        predictions,
        top1_accuracy: 100.0 * correct as f64 / n,
    }
}

/// The float model on `batches` (`batch` sequences of `block` tokens each).
pub fn float_eval(model: &Gpt, batches: &Batches, batch: usize, block: usize) -> LmEval {
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
                correct += usize::from(a as usize == y[r]);
                preds.push(a);
            }
            per_seq.push((loss, preds, correct));
        }
    }
    finish_eval(per_seq, batches.len() * batch * block)
}

/// Model-file `bytes` **as run by aka-core** (`GptModel::forward`, one fresh KV cache per
/// sequence, positions `0..block`) on `batches`. Sequences run in parallel.
pub fn int8_eval(
    bytes: &[u8],
    batches: &Batches,
    batch: usize,
    block: usize,
) -> Result<LmEval, aka_core::Error> {
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
                correct += usize::from(a as usize == target);
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
    Ok(int8_eval(bytes, &batches, batch, block)
        .map_err(|e| anyhow::anyhow!("running the GPT with aka-core: {e}"))?
        .loss)
}

/// Calibrates, quantizes and encodes `model`, evaluates the float model and the int8 file (with
/// aka-core) on the same validation batches, and returns the final bytes with the figures in
/// the file (`GptDesc::eval`, and the top-1 accuracies in the metadata).
pub fn export_gpt(
    model: &Gpt,
    data: &TextDataset,
    calib: &CalibConfig,
    eval: &EvalConfig,
    meta: &GptExportMeta,
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
    let float = float_eval(model, &batches, eval.batch_size, block);
    // The figures are part of the file: evaluate a draft (its eval fields do not affect the
    // arithmetic), then encode again with them filled in.
    let draft = encode_gpt(
        model,
        tokenizer,
        &scales,
        GptEval::UNKNOWN,
        (f32::NAN, f32::NAN),
        meta,
    )?;
    let int8 = int8_eval(&draft, &batches, eval.batch_size, block)
        .map_err(|e| anyhow::anyhow!("running the exported GPT with aka-core: {e}"))?;
    let val_tokens = batches.len() * eval.batch_size * block;
    let figures = GptEval {
        val_loss_float: float.loss as f32,
        val_loss_int8: int8.loss as f32,
        top1_agreement: int8.agreement(&float) as f32,
        val_tokens: val_tokens as u64,
    };
    let bytes = encode_gpt(
        model,
        tokenizer,
        &scales,
        figures,
        (float.top1_accuracy as f32, int8.top1_accuracy as f32),
        meta,
    )?;
    let loaded = GptModel::load(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (state_size, param_bytes) = (loaded.state_size(), loaded.param_bytes());
    Ok(GptExported {
        bytes,
        scales,
        float,
        int8,
        val_tokens,
        state_size,
        param_bytes,
    })
}

/// Writes a model file atomically ([`crate::io::write_atomic`]).
pub fn write_gpt(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::io::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::GptConfig;

    #[test]
    fn quantize_rows_per_row_symmetric() {
        let w = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.0, -0.004];
        let (q, s) = quantize_rows(&w, 3, 3);
        let scales: Vec<f32> = s
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(scales, [1.0 / 127.0, 1.0, 2.0 / 127.0]);
        let q: Vec<i8> = q.iter().map(|&b| b as i8).collect();
        assert_eq!(&q[..6], &[64, -127, 32, 0, 0, 0]);
        assert_eq!(&q[6..], &[127, 64, 0]);
    }

    #[test]
    fn percentile_calibration_is_below_absmax() {
        let text = "abcdefgh ijklmnop qrstuvwx yz.\n".repeat(40);
        let data = TextDataset::from_text(&text, None);
        let config = GptConfig {
            n_layer: 2,
            n_head: 2,
            d_model: 16,
            block_size: 16,
            vocab_size: data.tokenizer().vocab_size(),
            ..GptConfig::default()
        };
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
                method: ScaleMethod::Percentile(99.0),
                ..base.clone()
            },
        )
        .unwrap();
        let p100 = calibrate(
            &model,
            &data,
            &CalibConfig {
                method: ScaleMethod::Percentile(100.0),
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
                method: ScaleMethod::Percentile(0.0),
                ..base
            }
        )
        .is_err());
    }
}
