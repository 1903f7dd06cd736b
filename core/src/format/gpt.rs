//! The GPT body: a decoder-only character-level transformer (configuration, vocabulary, int8
//! matrices with per-row f32 scales, norms, RoPE tables, calibrated activation scales), run by
//! [`crate::gpt::GptModel`].

use serde::{Deserialize, Serialize};

use super::read::Reader;
use super::{FixedList, ListItem, WeightType};

/// Capacity of a [`GptBlockList`]: the most transformer blocks a GPT file may have.
pub const MAX_GPT_LAYERS: usize = 8;

/// Largest `d_model`, `hidden`, `block_size` a GPT file may declare (2^16): with int8 × int8
/// products of magnitude ≤ 128², an i32 accumulator over at most 2^16 terms cannot overflow.
pub const MAX_GPT_DIM: u32 = 1 << 16;

/// How positions enter a GPT.
///
/// Measured on nanoGPT's CPU config (4 layers, 4 heads, 128 dims, context 64, batch 12, 2,000
/// steps at lr 1e-3, tinyshakespeare): validation loss 1.91 with `Learned`, 1.79 with `Rope`.
// `Deserialize` for the trainer's checkpoints and configurations (the loaders use
// `Reader::variant`).
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
// `Deserialize` for the trainer's checkpoints and configurations (the loaders use
// `Reader::variant`).
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
// `Deserialize` for the trainer's checkpoints and configurations (the loaders use
// `Reader::variant`).
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
    /// `w2 · gelu(w1 · x)` with the exact GELU `x · Φ(x)` (erf; PyTorch's `nn.GELU()`, nanoGPT).
    /// The runtime is the same as [`GptMlp::Gelu`]'s: the activation is the block's table.
    /// New in this version of the format, appended: files without it read as before.
    GeluErf,
}

impl GptMlp {
    /// True for the gated variants (which have a `w3`).
    pub fn is_gated(self) -> bool {
        matches!(self, GptMlp::SwiGlu | GptMlp::GeGlu)
    }

    /// True for the plain (ungated) GELU variants, whose activation table holds the input of
    /// `w2` directly.
    pub fn is_plain_gelu(self) -> bool {
        matches!(self, GptMlp::Gelu | GptMlp::GeluErf)
    }
}

named_variants!(GptPosition { Learned = "learned", Rope = "rope" });
named_variants!(GptNorm { LayerNorm = "layernorm", RmsNorm = "rmsnorm" });
named_variants!(GptMlp { Gelu = "gelu", SwiGlu = "swiglu", GeGlu = "geglu", GeluErf = "gelu-erf" });

/// GPT hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GptVocab<'a> {
    /// The vocabulary chars in id order, concatenated as UTF-8; **strictly increasing** by char
    /// value (the order of the trainer's `CharTokenizer::from_corpus`), `vocab_size` chars.
    pub chars: &'a str,
    /// The unknown token: exactly the id of U+FFFD if the vocabulary contains it, else `None`.
    pub unknown: Option<u32>,
}

/// A quantized matrix with one f32 scale per row: `real[r][c] = scale[r] * q[r][c]`
/// (symmetric, zero point 0). Used for the projections (`[out][in]`, PyTorch layout: row = output
/// channel) and the embedding tables (`[rows][d]`). The projections (`wq wk wv wo w1 w3 w2`) and
/// an untied `lm_head` may be [`WeightType::Int4`] or [`WeightType::Int8Offset`]; the embedding
/// tables (`tok_emb`, `pos_emb`) are int8 rows, plain or [`WeightType::Int8Offset`] (the
/// exporter writes a tied head's `tok_emb` so, for the offset-binary kernel), never int4.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct QMatrix<'a> {
    /// 0 to [`MAX_PAD`](super::MAX_PAD) ignored bytes, chosen by the exporter so that `weights` starts at a
    /// multiple of 4 bytes from the start of the file: loaded at a 4-aligned address (as the
    /// firmware embeds it), every row is then word-aligned when `cols % 4 == 0`, which saves the
    /// DSP loop its unaligned head and tail words.
    pub pad: &'a [u8],
    /// How `weights` stores its values.
    pub weight_type: WeightType,
    /// Row-major, `weight_type.matrix_bytes(rows, cols)` bytes (the rows, then the row
    /// constants of [`WeightType::Int8Offset`]).
    pub weights: &'a [u8],
    /// f32 LE, `rows * 4` bytes, each finite and > 0.
    pub scales: &'a [u8],
}

impl QMatrix<'_> {
    /// An empty matrix (placeholder in fixed-capacity arrays).
    pub const EMPTY: QMatrix<'static> = QMatrix {
        pad: &[],
        weight_type: WeightType::Int8,
        weights: &[],
        scales: &[],
    };

    /// Bytes of parameter data.
    pub fn param_bytes(&self) -> usize {
        self.weights.len() + self.scales.len()
    }
}

/// The parameters of a LayerNorm / RMSNorm over `d` values (f32 LE, `d * 4` bytes each, finite).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct RopeTables<'a> {
    pub cos: &'a [u8],
    pub sin: &'a [u8],
}

/// One pre-norm transformer block, int8 weights and calibrated static activation scales
/// (`s_*`: the real value of int8 `q` is `s * q`; finite and > 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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

impl<'a> GptDesc<'a> {
    /// Calls `f` on every matrix in file order: `tok_emb`, `pos_emb`, per block `wq wk wv
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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

// The GPT body's decoding: one function per struct, fields in declaration order (the order
// postcard writes them), each through [`Reader`]. The unit tests check it against serde's
// derived decoding (`format::tests`).

impl GptDesc<'_> {
    /// The first matrix that [`GptModel::forward`](crate::gpt::GptModel::forward) multiplies
    /// through a fully connected kernel and that is not stored as [`WeightType::Int8Offset`], as
    /// `(block, name, weight type)`: the projections of each block in file order, then the head
    /// (`lm_head`, or `tok_emb` when tied). `None` when the int8-offset kernel runs every
    /// product, which an aka-core built with the `offset-only` feature requires (its loader
    /// refuses the others; the firmware's build script calls this on the decoded file first, to
    /// name the matrix).
    pub fn first_non_offset_matrix(&self) -> Option<(Option<usize>, &'static str, WeightType)> {
        for (i, blk) in self.blocks.as_slice().iter().enumerate() {
            for (m, name) in blk.projections().into_iter().zip(GptBlock::PROJECTIONS) {
                match m {
                    Some(m) if m.weight_type != WeightType::Int8Offset => {
                        return Some((Some(i), name, m.weight_type))
                    }
                    _ => {}
                }
            }
        }
        let (head, name) = match &self.lm_head {
            Some(h) => (h, "lm_head"),
            None => (&self.tok_emb, "tok_emb (the tied head)"),
        };
        (head.weight_type != WeightType::Int8Offset).then_some((None, name, head.weight_type))
    }
}

impl<'a> GptBlock<'a> {
    /// The names of [`Self::projections`], in order.
    pub const PROJECTIONS: [&'static str; 7] = ["wq", "wk", "wv", "wo", "w1", "w3", "w2"];

    /// The block's projection matrices in file order: `wq wk wv wo w1 w3 w2` (`w3` only with a
    /// gated MLP).
    pub fn projections(&self) -> [Option<&QMatrix<'a>>; 7] {
        [
            Some(&self.wq),
            Some(&self.wk),
            Some(&self.wv),
            Some(&self.wo),
            Some(&self.w1),
            self.w3.as_ref(),
            Some(&self.w2),
        ]
    }
}

impl<'a> QMatrix<'a> {
    #[inline(never)]
    fn read(r: &mut Reader<'a>) -> Self {
        QMatrix {
            pad: r.bytes(),
            weight_type: WeightType::read(r),
            weights: r.bytes(),
            scales: r.bytes(),
        }
    }
}

impl<'a> NormParams<'a> {
    #[inline(never)]
    fn read(r: &mut Reader<'a>) -> Self {
        NormParams {
            weight: r.bytes(),
            bias: r.option(Reader::bytes),
        }
    }
}

impl GptConfig {
    fn read(r: &mut Reader<'_>) -> Self {
        GptConfig {
            n_layer: r.u32(),
            n_head: r.u32(),
            d_model: r.u32(),
            hidden: r.u32(),
            block_size: r.u32(),
            vocab_size: r.u32(),
            position: r.variant(GptPosition::ALL),
            norm: r.variant(GptNorm::ALL),
            mlp: r.variant(GptMlp::ALL),
            tied_head: r.bool(),
            norm_eps: r.f32(),
        }
    }
}

impl<'a> GptBlock<'a> {
    fn read(r: &mut Reader<'a>) -> Self {
        GptBlock {
            ln1: NormParams::read(r),
            attn_in_scale: r.f32(),
            wq: QMatrix::read(r),
            wk: QMatrix::read(r),
            wv: QMatrix::read(r),
            q_scale: r.f32(),
            k_scale: r.f32(),
            v_scale: r.f32(),
            attn_out_scale: r.f32(),
            wo: QMatrix::read(r),
            ln2: NormParams::read(r),
            mlp_in_scale: r.f32(),
            w1: QMatrix::read(r),
            w3: r.option(QMatrix::read),
            mlp_gate_scale: r.f32(),
            mlp_act_scale: r.f32(),
            act_lut: r.bytes(),
            mlp_hidden_scale: r.f32(),
            w2: QMatrix::read(r),
        }
    }
}

impl<'a> GptDesc<'a> {
    /// Decodes a GPT body (the bytes after its [`super::Body`] variant index).
    pub(crate) fn read(r: &mut Reader<'a>) -> Self {
        GptDesc {
            config: GptConfig::read(r),
            vocab: GptVocab {
                chars: r.str(),
                unknown: r.option(Reader::u32),
            },
            tok_emb: QMatrix::read(r),
            pos_emb: r.option(QMatrix::read),
            rope: r.option(|r| RopeTables {
                cos: r.bytes(),
                sin: r.bytes(),
            }),
            blocks: r.list(GptBlock::read),
            ln_f: NormParams::read(r),
            head_in_scale: r.f32(),
            lm_head: r.option(QMatrix::read),
            eval: GptEval {
                val_loss_float: r.f32(),
                val_loss_int8: r.f32(),
                top1_agreement: r.f32(),
                val_tokens: r.u64(),
            },
        }
    }
}
