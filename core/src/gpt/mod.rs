//! The int8 runtime for [`Body::Gpt`] models: a character-level decoder-only transformer with an
//! int8 KV cache, run one token at a time in caller-provided buffers (no heap, no `unsafe`,
//! no panics on bad input).
//!
//! ```no_run
//! use aka_core::gpt::{Decoder, Generation, GptModel};
//! use aka_core::sample::Sampling;
//! use aka_core::rng::Rng;
//!
//! fn generate(bytes: &[u8], prompt: &str) -> Result<(), aka_core::Error> {
//!     let model = GptModel::load(bytes)?; // validates everything, copies no weights
//!     // Sized from model.state_f32_len() / state_i8_len() (static arrays on a device).
//!     let mut f = [0f32; 4096];
//!     let mut kv = [0i8; 64 * 1024];
//!     let mut window = [0u32; 256]; // >= block_size
//!     let mut ids = [0u32; 64];
//!     let mut scratch = [0f32; 256]; // >= vocab_size
//!     let state = model.new_state(&mut f, &mut kv)?; // the run state, carved once
//!     let dec = Decoder::new(&model, state, &mut window)?;
//!     let n = model.encode(prompt, &mut ids)?;
//!     let cfg = Sampling { temperature: 0.8, top_k: 40 };
//!     // Feeds the prompt, then yields 100 sampled ids (Decoder::push + sample per id).
//!     for id in Generation::new(dec, &ids[..n], cfg, Rng::new(1), &mut scratch, 100)? {
//!         let _text: &str = model.decode_token(id?)?; // one char, UTF-8
//!     }
//!     Ok(())
//! }
//! ```
//!
//! The code: this file (the model: loader and accessors), `state.rs` ([`GptState`], the run
//! state's buffers, listed once), `forward.rs` ([`GptModel::forward`], one commented step per
//! row of the table below), `validate.rs` (the loader's checks), `decoder.rs` ([`Decoder`] and
//! [`Generation`]). The f32 steps (`quantize`, `norm_q`, `rope_rotate`) and the integer
//! softmax (`softmax_u8`) are kernels in [`crate::kernels`].
//!
//! # The int8 scheme
//!
//! Per token, llama2.c style: the residual stream `x` stays in `f32`; every projection is an
//! int8 × int8 → i32 dot product. Notation: `Q(v, m) = clamp(rne(v · m), -128, 127)`
//! ([`crate::kernels::quantize()`]: f32 product, round half to even, NaN → 0, zero point 0), used with the
//! reciprocal `1/s` of a scale or with a combined multiplier; weight matrices have one f32 scale
//! per output row `s_w[c]`; `s_*` activation scales are static, calibrated by the exporter as
//! `max|v| / 127` (or a percentile of `|v|` over 127) over training batches; integer sums are
//! exact (wrapping i32 that cannot overflow: every length is `<= 2^16`). All f32 arithmetic is
//! plain `+ - * /` in the order written (no fused multiply-add; Rust never contracts), plus
//! [`crate::kernels::sqrt_f32`] (correctly rounded) and [`crate::kernels::exp_f32`], so the
//! host and a Cortex-M4F produce identical bits. Wherever a projection's output is only used
//! quantized, it goes from the i32 sum to int8 in one step (`Q(Σ, s_w[c]·(s_in·(1/s_out)))`, no
//! f32 vector in between).
//!
//! | step | computation (f32 unless noted) | stored in the file |
//! |------|--------------------------------|--------------------|
//! | embed | `x[i] = s_tok[t]·E[t][i]` (+ `s_pos[p]·P[p][i]` if learned positions) | `tok_emb`, `pos_emb`: int8 rows (plain or offset-binary: the lookup flips the even bytes back) + per-row f32 scale |
//! | norm | `a = Q(norm(x), 1/s)`: LayerNorm `(x−μ)·rstd·w + b` with `μ = (Σx)/d`, `rstd = 1/sqrt(max((Σx²)/d − μ², 0)+ε)` (one pass); or RMSNorm `x·(1/sqrt((Σx²)/d+ε))·w` (sums left to right) | `ln1`, `ln2`, `ln_f`: f32 LE; `norm_eps` |
//! | qkv | `a = Q(norm₁(x), 1/s_attn_in)`; learned positions: `qq[c] = Q(Σ a·Wq[c], s_wq[c]·(s_attn_in·(1/s_q)))`, the same for k into the cache; RoPE: `q[c] = (Σ a·Wq[c]) as f32·(s_attn_in·s_wq[c])` (and k), rotated, then `Q(q, 1/s_q)`, `Q(k, 1/s_k)`; `v` like learned-position k with `s_v` | `wq wk wv`: int8 `[d][d]` + per-row scale; `attn_in_scale q_scale k_scale v_scale` |
//! | RoPE | per head, pairs `(i, i+hd/2)`: `y₁ = a·cos − b·sin`, `y₂ = b·cos + a·sin` on q and k | `rope.cos/sin [block][hd/2]` f32 (the trainer's tables) |
//! | cache | int8 k, v at `pos` (per layer: K head-major `[head][block][hd]`, each key row in the offset-binary layout of [`crate::kernels::to_offset_binary`] with its i32 row constant [`crate::kernels::offset_row_const`] beside the cache; V transposed `[d][block]`) | |
//! | scores | `e[t] = (Σ qq·k_t) · s_score`, `s_score = (s_q·s_k) · (1 / sqrt(hd))` (f32), for `t ≤ pos` (per head; only the exact i32 sums are computed, by [`crate::kernels::matvec_i32_offset`] over the offset-binary keys) | |
//! | softmax | integer ([`crate::kernels::attention::softmax_u8`]): `m = max` of the i32 sums; per key `z = ((m − Σ_t) as u32 as f32 · (s_score · 369.32986) + 0.5) as i32` (the Q8 base-2 exponent `(max e − e[t])·256·log2 e`, rounded), **u8** weight `P[t] = ((EXP2_Q8[z & 255] >> (z >> 8)) + 64) >> 7` (`z` clamped to `4095`; `EXP2_Q8[f] = rne(32640·2^(−f/256))`: `P ≈ 255·e^(e[t] − max e)`, 255 at the maximum), `S = Σ P` (u32) | |
//! | P·V | `a[i] = Q(Σ_t P[t]·v_t[i], (s_v·(1/s_attn_out))·(1/S as f32))` (u8 × int8 sums: the division by `S` normalizes the softmax); heads concatenated | |
//! | out | `x += (Σ a·Wo[c]) as f32 · (s_attn_out·s_wo[c])` | `wo`, `attn_out_scale` |
//! | MLP | `a = Q(norm₂(x), 1/s_mlp_in)`; `g[c] = Q(Σ a·W1[c], s_w1[c]·(s_mlp_in·(1/s_gate)))`; Gelu: `h[c] = act_lut[g[c]]`; gated: `h[c] = Q((act_lut[g[c]] as f32·s_act)·u[c], 1/s_mlp_hidden)` with `u[c] = (Σ a·W3[c]) as f32·(s_mlp_in·s_w3[c])`; `x += (Σ h·W2[c]) as f32·(s_mlp_hidden·s_w2[c])` | `w1 w3 w2`, `mlp_in_scale`, `mlp_gate_scale`, `act_lut`, `mlp_act_scale` (= `mlp_hidden_scale` for Gelu), `mlp_hidden_scale` |
//! | head | `logits[c] = (Σ Q(norm_f(x), 1/s_head_in)·H[c]) as f32 · (s_head_in·s_h[c])`; tied: `H = E`, `s_h = s_tok` | `lm_head` (untied), `head_in_scale` |
//!
//! The activation (GELU, tanh approximation, or SiLU) is a 256-entry table over the int8 `g`
//! computed by the exporter, so no transcendental function has to agree between host and device.
//!
//! # State and context
//!
//! [`GptModel::forward`] computes the logits of one token at position `pos`, writing its keys
//! and values into the cache and attending to cache positions `0..=pos` (the caller must have
//! run positions `0..pos` before, as [`GptModel::prefill`] and [`Decoder`] do). Positions are
//! limited to `0..block_size`: `pos >= block_size` is [`Error::ContextFull`]. [`Decoder`] adds
//! the **sliding window**: when a token arrives with the cache full, it keeps the last
//! `block_size / 2` tokens, recomputes them at positions `0..block_size / 2` and continues
//! from there (the result equals a fresh run over those tokens).
//!
//! [`Body::Gpt`]: crate::format::Body::Gpt

mod decoder;
mod forward;
mod state;
#[cfg(test)]
mod tests;
mod validate;

pub use decoder::{Decoder, Generation};
pub use state::GptState;

use crate::format::decode_file;
use crate::format::{GptBlock, GptConfig, GptDesc, GptEval, Metadata, QMatrix, Task};
use crate::Error;
use state::StateLayout;

/// The char that stands for the unknown token (U+FFFD), as in the trainer's `CharTokenizer`.
pub const UNKNOWN_CHAR: char = '\u{FFFD}';

/// The steps of [`GptModel::forward_profiled`], reported as each ends (for per-step profiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// The embedding lookup (once per token).
    Embed,
    /// A norm fused with the quantization of its output (norm 1 and norm 2 per layer, the
    /// final norm).
    Norm,
    /// The q, k and v projections of a layer, with RoPE and the writes into the KV cache.
    Qkv,
    /// One head's attention scores `q·k_t` (f32, and their maximum).
    Scores,
    /// One head's quantized softmax.
    Softmax,
    /// One head's `P·V`, quantized for `Wo`.
    Pv,
    /// The output projection, added to the residual stream.
    Wo,
    /// The MLP's up projection(s) and activation.
    MlpUp,
    /// The MLP's down projection, added to the residual stream.
    MlpDown,
    /// The head: the logits.
    Head,
}

impl Step {
    /// Every step, in the order of [`Step::index`].
    pub const ALL: [Step; 10] = [
        Step::Embed,
        Step::Norm,
        Step::Qkv,
        Step::Scores,
        Step::Softmax,
        Step::Pv,
        Step::Wo,
        Step::MlpUp,
        Step::MlpDown,
        Step::Head,
    ];

    /// Position in [`Step::ALL`] (for per-step tables).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Short lowercase name.
    pub const fn name(self) -> &'static str {
        match self {
            Step::Embed => "embed",
            Step::Norm => "norm",
            Step::Qkv => "qkv",
            Step::Scores => "scores",
            Step::Softmax => "softmax",
            Step::Pv => "pv",
            Step::Wo => "wo",
            Step::MlpUp => "mlp_up",
            Step::MlpDown => "mlp_down",
            Step::Head => "head",
        }
    }
}

/// Sizes derived from the configuration (all checked for overflow at load).
#[derive(Clone, Copy, Debug)]
struct Dims {
    n_layer: usize,
    n_head: usize,
    d: usize,
    hd: usize,
    hidden: usize,
    block: usize,
    vocab: usize,
    /// `block * d`: one layer's K (or V) cache.
    kv_layer: usize,
    /// The run state's buffers, without the K cache's row constants (see [`Dims::state`]).
    layout: StateLayout,
}

impl Dims {
    /// The run state's buffers: [`Dims::layout`] with the K cache's row constants of `n_head`
    /// heads.
    fn state(&self) -> StateLayout {
        self.layout.with_heads(self.n_head)
    }
}

/// A validated int8 GPT borrowing its parameters from the file bytes.
#[derive(Clone, Debug)]
pub struct GptModel<'a> {
    metadata: Metadata<'a>,
    desc: GptDesc<'a>,
    dims: Dims,
    file_size: usize,
}

impl<'a> GptModel<'a> {
    /// Parses and validates a GPT model file. Never panics; every problem is a typed [`Error`].
    ///
    /// Order: magic, version, postcard decode ([`Error::Truncated`] / [`Error::Malformed`] /
    /// [`Error::TrailingBytes`]), body kind ([`Error::WrongBody`]), then the configuration, the
    /// vocabulary, every array length against the configuration, every stored scale (finite and
    /// > 0), norm parameter and RoPE value (finite), and the state sizes (no overflow).
    pub fn load(bytes: &'a [u8]) -> Result<Self, Error> {
        let (metadata, desc) = decode_file::<GptDesc>(bytes)?;
        if metadata.task != Task::LanguageModel {
            return Err(Error::GptParameter {
                block: None,
                what: msg!("metadata task is not LanguageModel"),
            });
        }
        let dims = validate::check_desc(&desc)?;
        Ok(Self {
            metadata,
            desc,
            dims,
            file_size: bytes.len(),
        })
    }

    /// The file's metadata (task, top-1 accuracies, seed, training command).
    pub fn metadata(&self) -> &Metadata<'a> {
        &self.metadata
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &GptConfig {
        &self.desc.config
    }

    /// The whole validated description (weights included, borrowed from the file).
    pub fn desc(&self) -> &GptDesc<'a> {
        &self.desc
    }

    /// Validation losses and agreement recorded by the exporter.
    pub fn eval(&self) -> &GptEval {
        &self.desc.eval
    }

    /// Number of token ids (logits per step).
    pub fn vocab_size(&self) -> usize {
        self.dims.vocab
    }

    /// Context length: positions `0..block_size`.
    pub fn block_size(&self) -> usize {
        self.dims.block
    }

    /// Size of the whole model file in bytes.
    pub fn file_size(&self) -> usize {
        self.file_size
    }

    /// Bytes of parameter data (int8 weights, f32 scales, norms, RoPE tables, vocabulary).
    pub fn param_bytes(&self) -> usize {
        let d = &self.desc;
        d.vocab.chars.len()
            + d.tok_emb.param_bytes()
            + d.pos_emb.as_ref().map_or(0, QMatrix::param_bytes)
            + d.rope.as_ref().map_or(0, |r| r.cos.len() + r.sin.len())
            + d.blocks
                .as_slice()
                .iter()
                .map(GptBlock::param_bytes)
                .sum::<usize>()
            + d.ln_f.param_bytes()
            + d.lm_head.as_ref().map_or(0, QMatrix::param_bytes)
    }

    /// Number of `f32` values of run-state scratch: `3·d + (hidden if gated) + vocab_size` (see
    /// [`GptState`] for the buffers).
    pub fn state_f32_len(&self) -> usize {
        self.dims.state().f32_len()
    }

    /// Number of `i8` values of run state: the KV cache `2 · n_layer · block_size · d`, the K
    /// cache's row constants `4 · n_layer · n_head · block_size`, and `2·d + hidden +
    /// block_size` of quantized scratch (see [`GptState`]).
    pub fn state_i8_len(&self) -> usize {
        self.dims.state().i8_len()
    }

    /// Total run-state bytes: `4 · state_f32_len() + state_i8_len()` (checked at load).
    pub fn state_size(&self) -> usize {
        self.dims.state().bytes()
    }

    /// Bytes of the int8 KV cache alone: `2 · n_layer · block_size · d`, plus the K cache's
    /// row constants, `4 · n_layer · n_head · block_size`.
    pub fn kv_cache_size(&self) -> usize {
        self.dims.state().kv_bytes()
    }

    /// Carves caller buffers into a run state (once; [`GptModel::forward`] reuses it); extra
    /// length is ignored. Errors with [`Error::ArenaTooSmall`] (`need`/`have` in elements of
    /// the short buffer).
    pub fn new_state<'s>(
        &self,
        f32s: &'s mut [f32],
        i8s: &'s mut [i8],
    ) -> Result<GptState<'s>, Error> {
        self.dims.state().carve(f32s, i8s)
    }

    /// Weight multiply-accumulates per token (saturating): the int8 matrix-vector products q, k,
    /// v, o, the MLP (`W1`, `W2`, and `W3` if gated) and the head,
    /// `n_layer · (4·d² + (2 or 3)·hidden·d) + vocab·d`. The embedding lookup is not counted,
    /// nor attention (see [`Self::attention_macs`]).
    pub fn weight_macs(&self) -> u64 {
        let dm = &self.dims;
        let (d, h, v) = (dm.d as u64, dm.hidden as u64, dm.vocab as u64);
        let mlp_mats: u64 = if self.desc.config.mlp.is_gated() {
            3
        } else {
            2
        };
        let per_layer = d
            .saturating_mul(d)
            .saturating_mul(4)
            .saturating_add(mlp_mats.saturating_mul(h).saturating_mul(d));
        (dm.n_layer as u64)
            .saturating_mul(per_layer)
            .saturating_add(v.saturating_mul(d))
    }

    /// The work one token declares at full context, in operations (checked; `None` on `u64`
    /// overflow): the weight MACs ([`Self::weight_macs`]), the attention MACs at position
    /// `block_size - 1` ([`Self::attention_macs`]), and the element operations: per layer
    /// `8·d + 2·hidden + 2·n_head·block_size` (norms, requantizations, residuals, softmax), then
    /// `2·d + vocab` (final norm, logits). Bounded only by the file's configuration, so a caller
    /// running untrusted files can refuse it before allocating a state.
    pub fn work_per_token(&self) -> Option<u64> {
        let dm = &self.dims;
        let u = |v: usize| u64::try_from(v).ok();
        let (d, h, v, b, nh, nl) = (
            u(dm.d)?,
            u(dm.hidden)?,
            u(dm.vocab)?,
            u(dm.block)?,
            u(dm.n_head)?,
            u(dm.n_layer)?,
        );
        let mlp_mats: u64 = if self.desc.config.mlp.is_gated() {
            3
        } else {
            2
        };
        let weight = d
            .checked_mul(d)?
            .checked_mul(4)?
            .checked_add(mlp_mats.checked_mul(h)?.checked_mul(d)?)?;
        let attention = d.checked_mul(b)?.checked_mul(2)?;
        let elems = d
            .checked_mul(8)?
            .checked_add(h.checked_mul(2)?)?
            .checked_add(nh.checked_mul(b)?.checked_mul(2)?)?;
        let per_layer = weight.checked_add(attention)?.checked_add(elems)?;
        let head = v
            .checked_mul(d)?
            .checked_add(v)?
            .checked_add(d.checked_mul(2)?)?;
        nl.checked_mul(per_layer)?.checked_add(head)
    }

    /// Attention multiply-accumulates (q·k and P·V, all heads, all layers) of a token at
    /// position `pos` (saturating): `2 · n_layer · d · (pos + 1)`.
    pub fn attention_macs(&self, pos: usize) -> u64 {
        let dm = &self.dims;
        (2 * dm.n_layer as u64)
            .saturating_mul(dm.d as u64)
            .saturating_mul((pos as u64).saturating_add(1))
    }

    /// Checks a token id.
    pub fn check_token(&self, token: u32) -> Result<(), Error> {
        if (token as usize) < self.dims.vocab {
            Ok(())
        } else {
            Err(Error::BadToken {
                token,
                vocab_size: self.dims.vocab,
            })
        }
    }

    /// Runs `tokens` at positions `start_pos..start_pos + tokens.len()` and returns the logits
    /// after the last one. Checks every token and the last position first (so a bad prompt
    /// changes nothing). Empty `tokens`: [`Error::BadArgument`].
    pub fn prefill<'s>(
        &self,
        state: &'s mut GptState<'_>,
        tokens: &[u32],
        start_pos: usize,
    ) -> Result<&'s [f32], Error> {
        let Some((&last, init)) = tokens.split_last() else {
            return Err(Error::BadArgument {
                what: msg!("empty prompt"),
            });
        };
        for &t in tokens {
            self.check_token(t)?;
        }
        let last_pos = start_pos.saturating_add(init.len());
        if last_pos >= self.dims.block {
            return Err(Error::ContextFull {
                pos: last_pos,
                block_size: self.dims.block,
            });
        }
        for (i, &t) in init.iter().enumerate() {
            self.forward(state, t, start_pos + i)?;
        }
        self.forward(state, last, last_pos)
    }

    /// The unknown token id (the id of U+FFFD), if the vocabulary has one.
    pub fn unknown_id(&self) -> Option<u32> {
        self.desc.vocab.unknown
    }

    /// The vocabulary chars in id order (UTF-8).
    pub fn vocab_chars(&self) -> &'a str {
        self.desc.vocab.chars
    }

    /// The id of `c` if it is in the vocabulary (no unknown-token fallback).
    pub fn char_id(&self, c: char) -> Option<u32> {
        // Strictly increasing chars: stop at the first larger one.
        for (i, v) in self.desc.vocab.chars.chars().enumerate() {
            if v == c {
                return Some(i as u32);
            }
            if v > c {
                return None;
            }
        }
        None
    }

    /// Encodes `text` into `out`, one id per char, like the trainer's `CharTokenizer::encode`:
    /// a char outside the vocabulary becomes the unknown id, or is **dropped** if the vocabulary
    /// has none. Returns the number of ids; [`Error::BufferTooSmall`] (nothing written) if `out`
    /// is too short.
    pub fn encode(&self, text: &str, out: &mut [u32]) -> Result<usize, Error> {
        let id = |c| self.char_id(c).or(self.desc.vocab.unknown);
        let need = text.chars().filter(|&c| id(c).is_some()).count();
        if need > out.len() {
            return Err(Error::BufferTooSmall {
                need,
                have: out.len(),
            });
        }
        for (o, t) in out.iter_mut().zip(text.chars().filter_map(id)) {
            *o = t;
        }
        Ok(need)
    }

    /// The char of token `id` as UTF-8 (1 to 4 bytes, borrowed from the file).
    pub fn decode_token(&self, id: u32) -> Result<&'a str, Error> {
        let chars = self.desc.vocab.chars;
        let bad = Error::BadToken {
            token: id,
            vocab_size: self.dims.vocab,
        };
        let (at, c) = chars.char_indices().nth(id as usize).ok_or(bad)?;
        chars.get(at..at + c.len_utf8()).ok_or(bad)
    }
}
