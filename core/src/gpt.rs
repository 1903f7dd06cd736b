//! The int8 runtime for [`Body::Gpt`] models: a character-level decoder-only transformer with an
//! int8 KV cache, run one token at a time in caller-provided buffers (no heap, no `unsafe`,
//! no panics on bad input).
//!
//! ```no_run
//! use aka_core::gpt::{Decoder, GptModel};
//! use aka_core::sample::{sample, Sampling};
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
//!     let state = model.new_state(&mut f, &mut kv)?;
//!     let mut dec = Decoder::new(&model, state, &mut window)?;
//!     let n = model.encode(prompt, &mut ids)?;
//!     let mut rng = Rng::new(1);
//!     let cfg = Sampling { temperature: 0.8, top_k: 40 };
//!     let mut next = 0;
//!     for &t in &ids[..n] {
//!         next = sample(dec.push(t)?, &cfg, &mut rng, &mut scratch)?;
//!     }
//!     for _ in 0..100 {
//!         let _text: &str = model.decode_token(next)?; // one char, UTF-8
//!         next = sample(dec.push(next)?, &cfg, &mut rng, &mut scratch)?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # The int8 scheme
//!
//! Per token, llama2.c style: the residual stream `x` stays in `f32`; every projection is an
//! int8 × int8 → i32 dot product. Notation: `Q(v, m) = clamp(rne(v · m), -128, 127)`
//! ([`quantize`]: f32 product, round half to even, NaN → 0, zero point 0), used with the
//! reciprocal `1/s` of a scale or with a combined multiplier; weight matrices have one f32 scale
//! per output row `s_w[c]`; `s_*` activation scales are static, calibrated by the exporter as
//! `max|v| / 127` (or a percentile of `|v|` over 127) over training batches; integer sums are
//! exact (wrapping i32 that cannot overflow: every length is `<= 2^16`). All f32 arithmetic is
//! plain `+ - * /` in the order written (no fused multiply-add; Rust never contracts), plus
//! `libm::sqrtf` and [`crate::kernels::exp_f32`], so the host and a Cortex-M4F produce identical
//! bits. Wherever a projection's output is only used quantized, it goes from the i32 sum to int8
//! in one step (`Q(Σ, s_w[c]·(s_in·(1/s_out)))`, no f32 vector in between).
//!
//! | step | computation (f32 unless noted) | stored in the file |
//! |------|--------------------------------|--------------------|
//! | embed | `x[i] = s_tok[t]·E[t][i]` (+ `s_pos[p]·P[p][i]` if learned positions) | `tok_emb`, `pos_emb`: int8 rows + per-row f32 scale |
//! | norm | `a = Q(norm(x), 1/s)`: LayerNorm `(x−μ)·rstd·w + b` with `μ = (Σx)/d`, `rstd = 1/sqrtf(max((Σx²)/d − μ², 0)+ε)` (one pass); or RMSNorm `x·(1/sqrtf((Σx²)/d+ε))·w` (sums left to right) | `ln1`, `ln2`, `ln_f`: f32 LE; `norm_eps` |
//! | qkv | `a = Q(norm₁(x), 1/s_attn_in)`; learned positions: `qq[c] = Q(Σ a·Wq[c], s_wq[c]·(s_attn_in·(1/s_q)))`, the same for k into the cache; RoPE: `q[c] = (Σ a·Wq[c]) as f32·(s_attn_in·s_wq[c])` (and k), rotated, then `Q(q, 1/s_q)`, `Q(k, 1/s_k)`; `v` like learned-position k with `s_v` | `wq wk wv`: int8 `[d][d]` + per-row scale; `attn_in_scale q_scale k_scale v_scale` |
//! | RoPE | per head, pairs `(i, i+hd/2)`: `y₁ = a·cos − b·sin`, `y₂ = b·cos + a·sin` on q and k | `rope.cos/sin [block][hd/2]` f32 (the trainer's tables) |
//! | cache | int8 k, v at `pos` (per layer: K head-major `[head][block][hd]`, V transposed `[d][block]`) | |
//! | scores | `e[t] = (Σ qq·k_t) as f32 · ((s_q·s_k) · (1 / sqrtf(hd)))` for `t ≤ pos` (per head) | |
//! | softmax | `m = max e` (taken on the i32 sums); `u = exp_f32(e − m)`; **u8** `P = clamp(rne(u · (255 / Σu)), 0, 255)` (scale `1/255`) | |
//! | P·V | `a[i] = Q(Σ_t P[t]·v_t[i], ((1/255)·s_v)·(1/s_attn_out))` (u8 × int8 sums); heads concatenated | |
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

use crate::format::{check_header, valid_scale};
use crate::format::{
    Body, GptBlock, GptConfig, GptDesc, GptEval, GptMlp, GptNorm, GptPosition, Metadata, ModelFile,
    NormParams, QMatrix, Task, ACT_LUT_LEN, MAX_GPT_DIM, MAX_GPT_LAYERS, MAX_PAD,
};
use crate::kernels::{
    dot_i8, dot_i8_i8, exp_minus, i8_as_bytes, matvec_i32, matvec_i32_strided_u8, qk_scores,
};
use crate::Error;

/// The char that stands for the unknown token (U+FFFD), as in the trainer's `CharTokenizer`.
pub const UNKNOWN_CHAR: char = '\u{FFFD}';

/// Scale of the quantized attention probabilities, which are **u8**: `p ≈ P / 255`.
pub const PROB_SCALE: f32 = 1.0 / 255.0;

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
    gated: bool,
    /// `block * d`: one layer's K (or V) cache.
    kv_layer: usize,
    f32_len: usize,
    i8_len: usize,
}

/// A validated int8 GPT borrowing its parameters from the file bytes.
#[derive(Clone, Debug)]
pub struct GptModel<'a> {
    metadata: Metadata<'a>,
    desc: GptDesc<'a>,
    dims: Dims,
    file_size: usize,
}

/// The mutable run state of a [`GptModel`]: f32 scratch and the int8 KV cache, borrowed from
/// the caller. Build it with [`GptModel::new_state`].
#[derive(Debug)]
pub struct GptState<'s> {
    f: &'s mut [f32],
    c: &'s mut [i8],
}

impl<'s> GptState<'s> {
    /// Gives the buffers back.
    pub fn into_inner(self) -> (&'s mut [f32], &'s mut [i8]) {
        (self.f, self.c)
    }
}

impl<'a> GptModel<'a> {
    /// Parses and validates a GPT model file. Never panics; every problem is a typed [`Error`].
    ///
    /// Order: magic, version, postcard decode ([`Error::Truncated`] / [`Error::Malformed`] /
    /// [`Error::TrailingBytes`]), body kind ([`Error::WrongBody`]), then the configuration, the
    /// vocabulary, every array length against the configuration, every stored scale (finite and
    /// > 0), norm parameter and RoPE value (finite), and the state sizes (no overflow).
    pub fn load(bytes: &'a [u8]) -> Result<Self, Error> {
        check_header(bytes)?;
        let (file, rest) = postcard::take_from_bytes::<ModelFile<'a>>(bytes)?;
        if !rest.is_empty() {
            return Err(Error::TrailingBytes { count: rest.len() });
        }
        let Body::Gpt(desc) = file.body else {
            return Err(Error::WrongBody);
        };
        if file.metadata.task != Task::LanguageModel {
            return Err(Error::GptParameter {
                block: None,
                what: "metadata task is not LanguageModel",
            });
        }
        let dims = check_desc(&desc)?;
        Ok(Self {
            metadata: file.metadata,
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

    /// Number of `f32` values of run-state scratch: `3·d + block_size + (hidden if gated) +
    /// vocab_size` (x, q, k, one head's scores, the gated MLP's `W3·a`, logits).
    pub fn state_f32_len(&self) -> usize {
        self.dims.f32_len
    }

    /// Number of `i8` values of run state: the KV cache `2 · n_layer · block_size · d` plus
    /// `2·d + hidden + block_size` of quantized scratch.
    pub fn state_i8_len(&self) -> usize {
        self.dims.i8_len
    }

    /// Total run-state bytes: `4 · state_f32_len() + state_i8_len()` (checked at load).
    pub fn state_size(&self) -> usize {
        self.dims
            .f32_len
            .saturating_mul(4)
            .saturating_add(self.dims.i8_len)
    }

    /// Bytes of the int8 KV cache alone (`2 · n_layer · block_size · d`).
    pub fn kv_cache_size(&self) -> usize {
        self.dims.kv_layer.saturating_mul(2 * self.dims.n_layer)
    }

    /// Wraps caller buffers as a run state; extra length is ignored. Errors with
    /// [`Error::ArenaTooSmall`] (`need`/`have` in elements of the short buffer).
    pub fn new_state<'s>(
        &self,
        f32s: &'s mut [f32],
        i8s: &'s mut [i8],
    ) -> Result<GptState<'s>, Error> {
        let (nf, nc) = (self.dims.f32_len, self.dims.i8_len);
        let have = (f32s.len(), i8s.len());
        let f = f32s.get_mut(..nf).ok_or(Error::ArenaTooSmall {
            need: nf,
            have: have.0,
        })?;
        let c = i8s.get_mut(..nc).ok_or(Error::ArenaTooSmall {
            need: nc,
            have: have.1,
        })?;
        Ok(GptState { f, c })
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

    /// Runs token `token` at position `pos` (`< block_size`) and returns the next-token logits
    /// (`vocab_size` f32, in the state). Writes the token's keys and values into cache slot
    /// `pos` and attends to slots `0..=pos`, which must hold this sequence's earlier tokens.
    ///
    /// Errors: [`Error::BadToken`], [`Error::ContextFull`], [`Error::ArenaTooSmall`] (a state
    /// built for a smaller model). Nothing is written on a token or position error.
    pub fn forward<'s>(
        &self,
        state: &'s mut GptState<'_>,
        token: u32,
        pos: usize,
    ) -> Result<&'s [f32], Error> {
        self.check_token(token)?;
        let dm = self.dims;
        if pos >= dm.block {
            return Err(Error::ContextFull {
                pos,
                block_size: dm.block,
            });
        }
        let (d, hd, hidden) = (dm.d, dm.hd, dm.hidden);
        let too_small = Error::ArenaTooSmall {
            need: self.state_size(),
            have: state
                .f
                .len()
                .saturating_mul(4)
                .saturating_add(state.c.len()),
        };
        // Carve the state (layout documented on state_f32_len / state_i8_len).
        let mut fbuf: &mut [f32] = state.f;
        let x = take(&mut fbuf, d, too_small)?; // [d] residual stream
        let q = take(&mut fbuf, d, too_small)?; // [d] queries before RoPE (RoPE only)
        let k = take(&mut fbuf, d, too_small)?; // [d] keys before RoPE (RoPE only)
        let scores = take(&mut fbuf, dm.block, too_small)?; // [block] one head's scores
        let u = take(&mut fbuf, if dm.gated { hidden } else { 0 }, too_small)?; // [hidden] W3·a
        let logits = take(&mut fbuf, dm.vocab, too_small)?; // [vocab]
        let mut cbuf: &mut [i8] = state.c;
        let kcache = take(&mut cbuf, dm.kv_layer * dm.n_layer, too_small)?; // [layer][head][block][hd]
        let vcache = take(&mut cbuf, dm.kv_layer * dm.n_layer, too_small)?; // [layer][d][block]
        let a = take(&mut cbuf, d, too_small)?; // [d] quantized norm / attention output
        let qq = take(&mut cbuf, d, too_small)?; // [d] quantized queries
        let hq = take(&mut cbuf, hidden, too_small)?; // [hidden] quantized activation
        let pq = take(&mut cbuf, dm.block, too_small)?; // [block] one head's probabilities
                                                        // [ACC_ROWS] i32 sums of one matvec_i32 call, reused by every projection of the token.
        let acc = &mut [0i32; ACC_ROWS];

        let desc = &self.desc;
        let cfg = &desc.config;
        let rope = desc.rope.is_some();

        // Embedding: x = s_tok[t]·E[t] (+ s_pos[p]·P[p]).
        let (e_row, e_scale) = row(&desc.tok_emb, token as usize, d);
        for (xi, &w) in x.iter_mut().zip(e_row) {
            *xi = e_scale * (w as i8) as f32;
        }
        if let Some(pe) = &desc.pos_emb {
            let (p_row, p_scale) = row(pe, pos, d);
            for (xi, &w) in x.iter_mut().zip(p_row) {
                *xi += p_scale * (w as i8) as f32;
            }
        }

        let half = hd / 2;
        let (cos, sin) = match &desc.rope {
            Some(r) => (
                r.cos
                    .get(pos * half * 4..(pos + 1) * half * 4)
                    .unwrap_or(&[]),
                r.sin
                    .get(pos * half * 4..(pos + 1) * half * 4)
                    .unwrap_or(&[]),
            ),
            None => (&[][..], &[][..]),
        };
        let inv_sqrt_hd = 1.0 / libm::sqrtf(hd as f32);
        // One head's keys are `block` rows of `hd` in the cache.
        let kv_head = dm.block * hd;

        for (l, blk) in desc.blocks.as_slice().iter().enumerate() {
            let base = l * dm.kv_layer;
            let kl = kcache.get_mut(base..base + dm.kv_layer).ok_or(too_small)?; // [head][block][hd]
            let vl = vcache.get_mut(base..base + dm.kv_layer).ok_or(too_small)?; // [d][block]

            // ---- attention: x += Wo · attention(Q(norm1(x))) ----
            norm_q(cfg.norm, cfg.norm_eps, x, &blk.ln1, blk.attn_in_scale, a); // [d] int8
            let s_in = blk.attn_in_scale;
            let (inv_q, inv_k, inv_v) = (1.0 / blk.q_scale, 1.0 / blk.k_scale, 1.0 / blk.v_scale);
            // Requantization multipliers without the per-row weight scale.
            let (mq, mk, mv) = (s_in * inv_q, s_in * inv_k, s_in * inv_v);
            // This token's slots in the cache: K `[head][block][hd]` at (head, pos); V
            // transposed, `[d][block]` (so that P·V reads rows), at column pos.
            let k_slot = |r: usize| (r / hd.max(1)) * kv_head + pos * hd + r % hd.max(1);
            if rope {
                // q, k in f32, rotated, then quantized.
                let dq = |o: &mut f32, v: i32, sw: f32| *o = v as f32 * (s_in * sw);
                rows_into(a, &blk.wq, q, acc, dq);
                rows_into(a, &blk.wk, k, acc, dq);
                rope_rotate(q, hd, cos, sin);
                rope_rotate(k, hd, cos, sin);
                for (o, &v) in qq.iter_mut().zip(q.iter()) {
                    *o = quantize(v, inv_q);
                }
                for (r, &v) in k.iter().enumerate() {
                    if let Some(o) = kl.get_mut(k_slot(r)) {
                        *o = quantize(v, inv_k);
                    }
                }
            } else {
                // q, k straight from the i32 sums to int8.
                rows_into(a, &blk.wq, qq, acc, |o, v, sw| {
                    *o = quantize(v as f32, sw * mq);
                });
                rows(a, &blk.wk, d, acc, |r, v, sw| {
                    if let Some(o) = kl.get_mut(k_slot(r)) {
                        *o = quantize(v as f32, sw * mk);
                    }
                });
            }
            rows(a, &blk.wv, d, acc, |r, v, sw| {
                if let Some(o) = vl.get_mut(r * dm.block + pos) {
                    *o = quantize(v as f32, sw * mv);
                }
            });

            let score_scale = (blk.q_scale * blk.k_scale) * inv_sqrt_hd;
            let pv_mult = (PROB_SCALE * blk.v_scale) * (1.0 / blk.attn_out_scale);
            let n = pos + 1;
            let n4 = n.next_multiple_of(4).min(dm.block);
            let sc = scores.get_mut(..n).ok_or(too_small)?; // [n]
            for hh in 0..dm.n_head {
                let off = hh * hd;
                let qh = qq.get(off..off + hd).unwrap_or(&[]); // [hd]
                let kh = kl.get(hh * kv_head..hh * kv_head + n * hd).unwrap_or(&[]); // [n][hd]
                                                                                     // e[t] = (q·k_t)·score_scale, then P = quantized softmax(e).
                let max = head_scores(qh, kh, score_scale, acc, sc);
                softmax_q(sc, max, pq.get_mut(..n).unwrap_or(&mut []));
                // Head output o[i] = Σ_t P[t]·v_t[i] (rows i of V^T, `block` apart), quantized
                // for Wo. P is zero-padded to n4 keys (a multiple of 4 when `block` is, which
                // the DSP loop wants); the padded slots multiply stale cache values by 0.
                pq.get_mut(n..n4).unwrap_or(&mut []).fill(0);
                let p4 = i8_as_bytes(pq.get(..n4).unwrap_or(&[])); // [n4] u8 probabilities
                let vh = vl.get(off * dm.block..).unwrap_or(&[]); // rows off.. of [d][block]
                let sums = &mut acc[..hd.min(ACC_ROWS)];
                if matvec_i32_strided_u8(p4, i8_as_bytes(vh), dm.block, sums).is_err() {
                    // Unreachable after load (shapes as above); the row-by-row definition.
                    for (i, y) in sums.iter_mut().enumerate() {
                        let at = (off + i) * dm.block;
                        let vt = vl.get(at..at + n4).unwrap_or(&[]);
                        *y = p4
                            .iter()
                            .zip(vt)
                            .fold(0i32, |s, (&p, &v)| s.wrapping_add(p as i32 * v as i32));
                    }
                }
                for (o, &v) in a
                    .get_mut(off..off + hd)
                    .unwrap_or(&mut [])
                    .iter_mut()
                    .zip(sums.iter())
                {
                    *o = quantize(v as f32, pv_mult);
                }
            }
            let s_o = blk.attn_out_scale;
            rows_into(a, &blk.wo, x, acc, |o, v, sw| *o += v as f32 * (s_o * sw));

            // ---- MLP: x += W2 · Q(act(Q(W1·a)) [· W3·a]), a = Q(norm2(x)) ----
            norm_q(cfg.norm, cfg.norm_eps, x, &blk.ln2, blk.mlp_in_scale, a); // [d] int8
            let s_in = blk.mlp_in_scale;
            let mg = s_in * (1.0 / blk.mlp_gate_scale);
            let lut: &[u8; ACT_LUT_LEN] = blk
                .act_lut
                .try_into()
                .map_err(|_| param(Some(l), "act_lut must have 256 entries"))?;
            let act = |v: i32, sw: f32| -> i8 {
                let g = quantize(v as f32, sw * mg);
                lut[g as u8 as usize] as i8
            };
            match &blk.w3 {
                None => rows_into(a, &blk.w1, hq, acc, |o, v, sw| *o = act(v, sw)),
                Some(w3) => {
                    rows_into(a, w3, u, acc, |o, v, sw| *o = v as f32 * (s_in * sw));
                    let (s_act, inv_h) = (blk.mlp_act_scale, 1.0 / blk.mlp_hidden_scale);
                    rows(a, &blk.w1, hidden, acc, |r, v, sw| {
                        if let (Some(o), Some(&ur)) = (hq.get_mut(r), u.get(r)) {
                            *o = quantize((act(v, sw) as f32 * s_act) * ur, inv_h);
                        }
                    });
                }
            }
            let s_h = blk.mlp_hidden_scale;
            rows_into(hq, &blk.w2, x, acc, |o, v, sw| *o += v as f32 * (s_h * sw));
        }

        // ---- head: logits = H · Q(norm_f(x)) ----
        norm_q(cfg.norm, cfg.norm_eps, x, &desc.ln_f, desc.head_in_scale, a);
        let head = desc.lm_head.as_ref().unwrap_or(&desc.tok_emb);
        let s_in = desc.head_in_scale;
        rows_into(a, head, logits, acc, |o, v, sw| *o = v as f32 * (s_in * sw));
        Ok(logits)
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
                what: "empty prompt",
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

/// Incremental decoding with a **sliding window** over a caller-provided token history.
///
/// [`Decoder::push`] feeds one token and returns the next-token logits. While fewer than
/// `block_size` tokens are in the window, the token runs at the next position. When the window
/// is full, the decoder first keeps only the last `block_size / 2` tokens, re-runs them at
/// positions `0..block_size / 2` (rebuilding the KV cache; this is also what makes learned
/// position embeddings and RoPE consistent), then runs the new token after them. So after a
/// slide the logits equal those of a fresh decoder fed the kept tokens and the new one.
#[derive(Debug)]
pub struct Decoder<'m, 'a, 's> {
    model: &'m GptModel<'a>,
    state: GptState<'s>,
    window: &'s mut [u32],
    len: usize,
}

impl<'m, 'a, 's> Decoder<'m, 'a, 's> {
    /// A decoder with an empty window. `window` needs at least `block_size` slots
    /// ([`Error::BufferTooSmall`] otherwise).
    pub fn new(
        model: &'m GptModel<'a>,
        state: GptState<'s>,
        window: &'s mut [u32],
    ) -> Result<Self, Error> {
        let block = model.block_size();
        let have = window.len();
        let window = window
            .get_mut(..block)
            .ok_or(Error::BufferTooSmall { need: block, have })?;
        Ok(Self {
            model,
            state,
            window,
            len: 0,
        })
    }

    /// Feeds `token` (sliding the window first if it is full) and returns the next-token
    /// logits. A bad token is rejected before anything changes.
    pub fn push(&mut self, token: u32) -> Result<&[f32], Error> {
        self.model.check_token(token)?;
        let block = self.window.len();
        if self.len >= block {
            let keep = block / 2;
            self.window.copy_within(block - keep.., 0);
            self.len = 0;
            for p in 0..keep {
                let t = self.window.get(p).copied().unwrap_or(0);
                self.model.forward(&mut self.state, t, p)?;
                self.len = p + 1;
            }
        }
        let pos = self.len;
        if let Some(slot) = self.window.get_mut(pos) {
            *slot = token;
        }
        let logits = self.model.forward(&mut self.state, token, pos)?;
        self.len = pos + 1;
        Ok(logits)
    }

    /// The tokens currently in the window (their positions are their indices).
    pub fn tokens(&self) -> &[u32] {
        self.window.get(..self.len).unwrap_or(&[])
    }

    /// Number of tokens in the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first [`Decoder::push`] (or after [`Decoder::reset`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the window (the cache is overwritten as new tokens arrive).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// The model.
    pub fn model(&self) -> &'m GptModel<'a> {
        self.model
    }

    /// Gives the state and the window back.
    pub fn into_inner(self) -> (GptState<'s>, &'s mut [u32]) {
        (self.state, self.window)
    }
}

// ---------------------------------------------------------------------------------------------
// Arithmetic helpers (portable; the int8 dot products and the softmax are `crate::kernels`').
// ---------------------------------------------------------------------------------------------

/// Splits the first `n` elements off `buf`.
fn take<'b, T>(buf: &mut &'b mut [T], n: usize, err: Error) -> Result<&'b mut [T], Error> {
    let b = core::mem::take(buf);
    let (head, tail) = b.split_at_mut_checked(n).ok_or(err)?;
    *buf = tail;
    Ok(head)
}

#[inline]
fn le_f32(b: &[u8]) -> f32 {
    match b {
        [a, b, c, d] => f32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0.0,
    }
}

/// Row `r` of an int8 matrix with `cols` columns, and its scale.
fn row<'a>(m: &QMatrix<'a>, r: usize, cols: usize) -> (&'a [u8], f32) {
    let w = m.weights.get(r * cols..(r + 1) * cols).unwrap_or(&[]);
    let s = le_f32(m.scales.get(r * 4..r * 4 + 4).unwrap_or(&[]));
    (w, s)
}

/// `1.5 · 2^23`: for `|y| < 2^22`, `(y + ROUND_MAGIC) - ROUND_MAGIC` is `y` rounded to the
/// nearest integer, ties to even (f32 addition rounds to nearest even on every target).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `Q(v, m) = clamp(rne(v · m), -128, 127)`: int8 quantization (zero point 0) with the
/// reciprocal scale (or a combined multiplier) `m`. Ties to even, NaN → 0, `+inf` → 127,
/// `-inf` → -128 (for `|v·m| >= 2^22` the rounding trick is inexact, but the clamp decides). On
/// a Cortex-M4F: `VMUL`, `VADD`, `VSUB`, `VCVT`, `VMOV`, `SSAT`.
#[inline(always)]
pub fn quantize(v: f32, m: f32) -> i8 {
    let y = v * m;
    let r = (y + ROUND_MAGIC) - ROUND_MAGIC;
    (r as i32).clamp(-128, 127) as i8
}

/// Rows per [`matvec_i32`] call: the i32 sums of one call live in one stack array of
/// [`GptModel::forward`] (1 KiB), reused by every projection of the token.
const ACC_ROWS: usize = 256;

/// The rows `r < n_rows` of `m` (`x.len()` columns) times `x`, [`ACC_ROWS`] at a time: calls
/// `chunk(r0, sums, scales)` with the exact i32 sums `Σ x·W[r]` of rows `r0..r0 + sums.len()`
/// (from [`matvec_i32`], the fully connected loop, which sign-extends `x` once per call) and
/// their f32 LE scales. Rows the weights do not cover (impossible after [`GptModel::load`]) are
/// skipped.
#[inline(always)]
fn matvec_chunks(
    x: &[i8],
    m: &QMatrix,
    n_rows: usize,
    acc: &mut [i32; ACC_ROWS],
    mut chunk: impl FnMut(usize, &[i32], &[u8]),
) {
    let cols = x.len();
    if cols == 0 {
        return;
    }
    let n_rows = n_rows.min(m.weights.len() / cols);
    let mut r0 = 0;
    while r0 < n_rows {
        let n = (n_rows - r0).min(ACC_ROWS);
        let w = m.weights.get(r0 * cols..(r0 + n) * cols).unwrap_or(&[]); // [n][cols]
        let sums = &mut acc[..n];
        if matvec_i32(x, w, sums).is_err() {
            // Unreachable (shapes as above); the row-by-row definition.
            for (y, row) in sums.iter_mut().zip(w.chunks_exact(cols)) {
                *y = dot_i8(x, row);
            }
        }
        chunk(r0, sums, m.scales.get(r0 * 4..(r0 + n) * 4).unwrap_or(&[]));
        r0 += n;
    }
}

/// `each(&mut out[r], Σ x·W[r], s_w[r])` for every row `r < out.len()` of `m`.
#[inline(always)]
fn rows_into<T>(
    x: &[i8],
    m: &QMatrix,
    out: &mut [T],
    acc: &mut [i32; ACC_ROWS],
    mut each: impl FnMut(&mut T, i32, f32),
) {
    let n_rows = out.len();
    matvec_chunks(x, m, n_rows, acc, |r0, sums, scales| {
        let outs = out.get_mut(r0..).unwrap_or(&mut []);
        for ((o, &v), s) in outs.iter_mut().zip(sums).zip(scales.chunks_exact(4)) {
            each(o, v, le_f32(s));
        }
    });
}

/// `each(r, Σ x·W[r], s_w[r])` for the rows `r < n_rows` of `m` (for scattered outputs).
#[inline(always)]
fn rows(
    x: &[i8],
    m: &QMatrix,
    n_rows: usize,
    acc: &mut [i32; ACC_ROWS],
    mut each: impl FnMut(usize, i32, f32),
) {
    matvec_chunks(x, m, n_rows, acc, |r0, sums, scales| {
        for (i, (&v, s)) in sums.iter().zip(scales.chunks_exact(4)).enumerate() {
            each(r0 + i, v, le_f32(s));
        }
    });
}

/// `e[t] = (Σ q·k_t) as f32 · scale` for the `e.len()` keys of one head (`k`: `[t][hd]`,
/// `hd = q.len()`), through [`qk_scores`] [`ACC_ROWS`] keys at a time (the same exact i32 sums
/// as one [`dot_i8_i8`] per key). Returns `max e` (`-inf` if empty), taken on the integer sums:
/// `i32 → f32` and `· scale > 0` are monotonic, so it is the maximum of the products.
fn head_scores(q: &[i8], k: &[i8], scale: f32, acc: &mut [i32; ACC_ROWS], e: &mut [f32]) -> f32 {
    let hd = q.len();
    if hd == 0 || e.is_empty() {
        return f32::NEG_INFINITY;
    }
    let mut best = i32::MIN;
    for (ci, ys) in e.chunks_mut(ACC_ROWS).enumerate() {
        let n = ys.len();
        let t0 = ci * ACC_ROWS;
        let kc = k.get(t0 * hd..(t0 + n) * hd).unwrap_or(&[]); // [n][hd]
        let sums = &mut acc[..n];
        if qk_scores(q, kc, hd, sums).is_err() {
            // Unreachable after load (shapes as above); the key-by-key definition.
            for (y, kt) in sums.iter_mut().zip(kc.chunks_exact(hd)) {
                *y = dot_i8_i8(q, kt);
            }
        }
        for (y, &v) in ys.iter_mut().zip(sums.iter()) {
            best = best.max(v);
            *y = v as f32 * scale;
        }
    }
    best as f32 * scale
}

/// `out = Q(norm(x), 1/s)`: LayerNorm `(v−μ)·rstd·w + b` with `μ = (Σx)/d`,
/// `rstd = 1/sqrtf(max((Σx²)/d − μ², 0) + ε)` (one pass over `x`), or RMSNorm `v·r·w` with
/// `r = 1/sqrtf((Σx²)/d + ε)` (sums left to right), quantized with `1/s`.
fn norm_q(kind: GptNorm, eps: f32, x: &[f32], p: &NormParams, s: f32, out: &mut [i8]) {
    let n = x.len() as f32;
    let inv_s = 1.0 / s;
    let w = p.weight.chunks_exact(4).map(le_f32);
    match kind {
        GptNorm::LayerNorm => {
            let (mut sum, mut sq) = (0.0f32, 0.0f32);
            for &v in x {
                sum += v;
                sq += v * v;
            }
            let mean = sum / n;
            let var = (sq / n - mean * mean).max(0.0);
            let rstd = 1.0 / libm::sqrtf(var + eps);
            let b = p.bias.unwrap_or(&[]).chunks_exact(4).map(le_f32);
            for ((o, &v), (wi, bi)) in out.iter_mut().zip(x).zip(w.zip(b)) {
                *o = quantize((v - mean) * rstd * wi + bi, inv_s);
            }
        }
        GptNorm::RmsNorm => {
            let mut ss = 0.0f32;
            for &v in x {
                ss += v * v;
            }
            let r = 1.0 / libm::sqrtf(ss / n + eps);
            for ((o, &v), wi) in out.iter_mut().zip(x).zip(w) {
                *o = quantize(v * r * wi, inv_s);
            }
        }
    }
}

/// Rotate-half RoPE on every head of `x` (`cos`/`sin`: `hd / 2` f32 LE values of this position).
fn rope_rotate(x: &mut [f32], hd: usize, cos: &[u8], sin: &[u8]) {
    let half = hd / 2;
    if half == 0 {
        return;
    }
    for head in x.chunks_exact_mut(hd) {
        let (x1, x2) = head.split_at_mut(half);
        for (((a, b), c), s) in x1
            .iter_mut()
            .zip(x2.iter_mut())
            .zip(cos.chunks_exact(4).map(le_f32))
            .zip(sin.chunks_exact(4).map(le_f32))
        {
            let (va, vb) = (*a, *b);
            *a = va * c - vb * s;
            *b = vb * c + va * s;
        }
    }
}

/// The softmax of `scores` (whose maximum is `max`) quantized to u8 at scale [`PROB_SCALE`]:
/// `u = exp_f32(e − max)` ([`exp_minus`]), `P = clamp(rne(u · (255 / Σu)), 0, 255)`, stored as
/// the bytes of `out` (`P as u8 as i8`: the run state is an i8 buffer). (`scores` is left
/// holding `u`.)
fn softmax_q(scores: &mut [f32], max: f32, out: &mut [i8]) {
    let k = 255.0 / exp_minus(scores, max);
    for (o, &u) in out.iter_mut().zip(scores.iter()) {
        let r = (u * k + ROUND_MAGIC) - ROUND_MAGIC; // u >= 0 and k > 0 (or NaN: 0)
        *o = (r as i32).clamp(0, 255) as u8 as i8;
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn param(block: Option<usize>, what: &'static str) -> Error {
    Error::GptParameter { block, what }
}

fn overflow(block: Option<usize>) -> Error {
    param(block, "sizes overflow")
}

fn check_len(
    block: Option<usize>,
    what: &'static str,
    expected: usize,
    bytes: &[u8],
) -> Result<(), Error> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(Error::GptLength {
            block,
            what,
            expected,
            found: bytes.len(),
        })
    }
}

/// Checks a `[rows][cols]` int8 matrix with per-row scales.
fn check_matrix(
    block: Option<usize>,
    names: (&'static str, &'static str, &'static str),
    m: &QMatrix,
    rows: usize,
    cols: usize,
) -> Result<(), Error> {
    let n = rows.checked_mul(cols).ok_or(overflow(block))?;
    if m.pad.len() > MAX_PAD {
        return Err(param(block, "more than 3 padding bytes before a matrix"));
    }
    check_len(block, names.0, n, m.weights)?;
    check_len(
        block,
        names.1,
        rows.checked_mul(4).ok_or(overflow(block))?,
        m.scales,
    )?;
    if !m.scales.chunks_exact(4).map(le_f32).all(valid_scale) {
        return Err(param(block, names.2));
    }
    Ok(())
}

fn check_f32s(
    block: Option<usize>,
    what: &'static str,
    bad: &'static str,
    bytes: &[u8],
    n: usize,
    ok: impl Fn(f32) -> bool,
) -> Result<(), Error> {
    check_len(block, what, n.checked_mul(4).ok_or(overflow(block))?, bytes)?;
    if bytes.chunks_exact(4).map(le_f32).all(ok) {
        Ok(())
    } else {
        Err(param(block, bad))
    }
}

fn check_norm(
    block: Option<usize>,
    kind: GptNorm,
    p: &NormParams,
    d: usize,
    names: (&'static str, &'static str),
) -> Result<(), Error> {
    check_f32s(
        block,
        names.0,
        "norm weight not finite",
        p.weight,
        d,
        f32::is_finite,
    )?;
    match (kind, p.bias) {
        (GptNorm::LayerNorm, Some(b)) => {
            check_f32s(block, names.1, "norm bias not finite", b, d, f32::is_finite)
        }
        (GptNorm::LayerNorm, None) => Err(param(block, "LayerNorm without a bias")),
        (GptNorm::RmsNorm, None) => Ok(()),
        (GptNorm::RmsNorm, Some(_)) => Err(param(block, "RMSNorm with a bias")),
    }
}

fn check_dim(v: u32, what: &'static str) -> Result<usize, Error> {
    if v == 0 || v > MAX_GPT_DIM {
        return Err(param(None, what));
    }
    Ok(v as usize)
}

fn check_vocab(desc: &GptDesc, vocab: usize) -> Result<(), Error> {
    let mut count = 0usize;
    let mut prev: Option<char> = None;
    let mut fffd: Option<u32> = None;
    for c in desc.vocab.chars.chars() {
        if prev.is_some_and(|p| p >= c) {
            return Err(Error::BadVocab {
                what: "chars are not strictly increasing",
            });
        }
        if c == UNKNOWN_CHAR {
            fffd = u32::try_from(count).ok();
        }
        prev = Some(c);
        count += 1;
    }
    if count != vocab {
        return Err(Error::BadVocab {
            what: "number of chars differs from vocab_size",
        });
    }
    if fffd != desc.vocab.unknown {
        return Err(Error::BadVocab {
            what: "unknown id is not the id of U+FFFD",
        });
    }
    Ok(())
}

fn check_block(
    i: usize,
    blk: &GptBlock,
    cfg: &GptConfig,
    d: usize,
    hidden: usize,
) -> Result<(), Error> {
    let b = Some(i);
    check_norm(b, cfg.norm, &blk.ln1, d, ("ln1.weight", "ln1.bias"))?;
    check_norm(b, cfg.norm, &blk.ln2, d, ("ln2.weight", "ln2.bias"))?;
    for s in [
        blk.attn_in_scale,
        blk.q_scale,
        blk.k_scale,
        blk.v_scale,
        blk.attn_out_scale,
        blk.mlp_in_scale,
        blk.mlp_gate_scale,
        blk.mlp_act_scale,
        blk.mlp_hidden_scale,
    ] {
        if !valid_scale(s) {
            return Err(param(b, "activation scale must be finite and > 0"));
        }
    }
    check_len(b, "act_lut", ACT_LUT_LEN, blk.act_lut)?;
    if cfg.mlp == GptMlp::Gelu && blk.mlp_act_scale != blk.mlp_hidden_scale {
        return Err(param(
            b,
            "GELU MLP: mlp_act_scale must equal mlp_hidden_scale",
        ));
    }
    let bad = "weight scale must be finite and > 0";
    check_matrix(b, ("wq.weights", "wq.scales", bad), &blk.wq, d, d)?;
    check_matrix(b, ("wk.weights", "wk.scales", bad), &blk.wk, d, d)?;
    check_matrix(b, ("wv.weights", "wv.scales", bad), &blk.wv, d, d)?;
    check_matrix(b, ("wo.weights", "wo.scales", bad), &blk.wo, d, d)?;
    check_matrix(b, ("w1.weights", "w1.scales", bad), &blk.w1, hidden, d)?;
    match (&blk.w3, cfg.mlp.is_gated()) {
        (Some(w3), true) => check_matrix(b, ("w3.weights", "w3.scales", bad), w3, hidden, d)?,
        (None, false) => {}
        (Some(_), false) => return Err(param(b, "w3 present for a non-gated MLP")),
        (None, true) => return Err(param(b, "w3 missing for a gated MLP")),
    }
    check_matrix(b, ("w2.weights", "w2.scales", bad), &blk.w2, d, hidden)?;
    Ok(())
}

fn check_desc(desc: &GptDesc) -> Result<Dims, Error> {
    let cfg = &desc.config;
    let declared = desc.blocks.declared_len();
    if declared > MAX_GPT_LAYERS {
        return Err(Error::TooManyLayers {
            found: declared,
            max: MAX_GPT_LAYERS,
        });
    }
    if declared == 0 {
        return Err(Error::NoLayers);
    }
    if cfg.n_layer as usize != declared {
        return Err(param(None, "n_layer differs from the number of blocks"));
    }
    let d = check_dim(cfg.d_model, "d_model must be in 1..=2^16")?;
    let hidden = check_dim(cfg.hidden, "hidden must be in 1..=2^16")?;
    let block = check_dim(cfg.block_size, "block_size must be in 1..=2^16")?;
    let vocab = cfg.vocab_size as usize;
    if vocab == 0 {
        return Err(param(None, "vocab_size is 0"));
    }
    let n_head = cfg.n_head as usize;
    if n_head == 0 || !d.is_multiple_of(n_head) {
        return Err(param(None, "n_head must divide d_model"));
    }
    let hd = d / n_head;
    if !valid_scale(cfg.norm_eps) {
        return Err(param(None, "norm_eps must be finite and > 0"));
    }
    if !valid_scale(desc.head_in_scale) {
        return Err(param(None, "head_in_scale must be finite and > 0"));
    }
    check_vocab(desc, vocab)?;

    let bad = "weight scale must be finite and > 0";
    check_matrix(
        None,
        ("tok_emb.weights", "tok_emb.scales", bad),
        &desc.tok_emb,
        vocab,
        d,
    )?;
    match (cfg.position, &desc.pos_emb, &desc.rope) {
        (GptPosition::Learned, Some(pe), None) => check_matrix(
            None,
            ("pos_emb.weights", "pos_emb.scales", bad),
            pe,
            block,
            d,
        )?,
        (GptPosition::Rope, None, Some(r)) => {
            if !hd.is_multiple_of(2) {
                return Err(param(None, "RoPE needs an even head size"));
            }
            let n = block.checked_mul(hd / 2).ok_or(overflow(None))?;
            let unit = |v: f32| v.is_finite() && (-1.0..=1.0).contains(&v);
            check_f32s(
                None,
                "rope.cos",
                "rope value out of [-1, 1]",
                r.cos,
                n,
                unit,
            )?;
            check_f32s(
                None,
                "rope.sin",
                "rope value out of [-1, 1]",
                r.sin,
                n,
                unit,
            )?;
        }
        (GptPosition::Learned, _, _) => {
            return Err(param(None, "learned positions need pos_emb and no rope"))
        }
        (GptPosition::Rope, _, _) => {
            return Err(param(None, "RoPE needs rope tables and no pos_emb"))
        }
    }
    for (i, blk) in desc.blocks.as_slice().iter().enumerate() {
        check_block(i, blk, cfg, d, hidden)?;
    }
    check_norm(None, cfg.norm, &desc.ln_f, d, ("ln_f.weight", "ln_f.bias"))?;
    match (&desc.lm_head, cfg.tied_head) {
        (Some(h), false) => check_matrix(
            None,
            ("lm_head.weights", "lm_head.scales", bad),
            h,
            vocab,
            d,
        )?,
        (None, true) => {}
        (Some(_), true) => return Err(param(None, "lm_head present with a tied head")),
        (None, false) => return Err(param(None, "lm_head missing (head not tied)")),
    }

    // State sizes.
    let n_layer = declared;
    let gated = cfg.mlp.is_gated();
    let of = overflow(None);
    let kv_layer = block.checked_mul(d).ok_or(of)?;
    let cache = kv_layer
        .checked_mul(n_layer)
        .and_then(|c| c.checked_mul(2))
        .ok_or(of)?;
    let f32_len = d
        .checked_mul(3)
        .and_then(|v| v.checked_add(block))
        .and_then(|v| v.checked_add(if gated { hidden } else { 0 }))
        .and_then(|v| v.checked_add(vocab))
        .ok_or(of)?;
    let i8_len = cache
        .checked_add(d)
        .and_then(|v| v.checked_add(d))
        .and_then(|v| v.checked_add(hidden))
        .and_then(|v| v.checked_add(block))
        .ok_or(of)?;
    f32_len
        .checked_mul(4)
        .and_then(|v| v.checked_add(i8_len))
        .ok_or(of)?;
    Ok(Dims {
        n_layer,
        n_head,
        d,
        hd,
        hidden,
        block,
        vocab,
        gated,
        kv_layer,
        f32_len,
        i8_len,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::format::{GptBlockList, GptVocab, RopeTables};
    use crate::rng::Rng;

    /// Owned arrays of a random GPT (the test-side "exporter").
    struct Owned {
        cfg: GptConfig,
        vocab: std::string::String,
        unknown: Option<u32>,
        tok: (Vec<u8>, Vec<u8>),
        pos: Option<(Vec<u8>, Vec<u8>)>,
        rope: Option<(Vec<u8>, Vec<u8>)>,
        blocks: Vec<OwnedBlock>,
        ln_f: (Vec<u8>, Option<Vec<u8>>),
        head: Option<(Vec<u8>, Vec<u8>)>,
    }

    struct OwnedBlock {
        ln1: (Vec<u8>, Option<Vec<u8>>),
        ln2: (Vec<u8>, Option<Vec<u8>>),
        m: Vec<(Vec<u8>, Vec<u8>)>, // wq wk wv wo w1 w2 [w3]
        lut: Vec<u8>,               // act_lut
    }

    fn f32s(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
        v.into_iter().flat_map(f32::to_le_bytes).collect()
    }

    fn matrix(rng: &mut Rng, rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>) {
        let w = (0..rows * cols)
            .map(|_| rng.below(255) as u8 ^ 0x80)
            .collect();
        let s = f32s((0..rows).map(|_| 0.002 + 0.01 * rng.next_f32()));
        (w, s)
    }

    fn norm_p(rng: &mut Rng, d: usize, kind: GptNorm) -> (Vec<u8>, Option<Vec<u8>>) {
        let w = f32s((0..d).map(|_| 0.8 + 0.4 * rng.next_f32()));
        let b = (kind == GptNorm::LayerNorm).then(|| f32s((0..d).map(|_| 0.1 * rng.normal())));
        (w, b)
    }

    fn owned(cfg: GptConfig, seed: u64) -> Owned {
        let mut rng = Rng::new(seed);
        let (d, h, v, blk) = (
            cfg.d_model as usize,
            cfg.hidden as usize,
            cfg.vocab_size as usize,
            cfg.block_size as usize,
        );
        let hd = d / cfg.n_head as usize;
        let vocab: std::string::String = "\nabcdefghijklmnopqrstuvwxyzé日\u{FFFD}"
            .chars()
            .take(v)
            .collect();
        assert_eq!(vocab.chars().count(), v);
        let unknown = vocab
            .chars()
            .position(|c| c == UNKNOWN_CHAR)
            .map(|i| i as u32);
        let rope = (cfg.position == GptPosition::Rope).then(|| {
            let (mut c, mut s) = (Vec::new(), Vec::new());
            for p in 0..blk {
                for i in 0..hd / 2 {
                    let a = p as f64 * libm::pow(10_000.0, -((2 * i) as f64) / hd as f64);
                    c.push(libm::cos(a) as f32);
                    s.push(libm::sin(a) as f32);
                }
            }
            (f32s(c), f32s(s))
        });
        let blocks = (0..cfg.n_layer)
            .map(|_| {
                let mut m = vec![
                    matrix(&mut rng, d, d),
                    matrix(&mut rng, d, d),
                    matrix(&mut rng, d, d),
                    matrix(&mut rng, d, d),
                    matrix(&mut rng, h, d),
                    matrix(&mut rng, d, h),
                ];
                if cfg.mlp.is_gated() {
                    m.push(matrix(&mut rng, h, d));
                }
                OwnedBlock {
                    ln1: norm_p(&mut rng, d, cfg.norm),
                    ln2: norm_p(&mut rng, d, cfg.norm),
                    m,
                    lut: (0..ACT_LUT_LEN).map(|_| rng.below(256) as u8).collect(),
                }
            })
            .collect();
        Owned {
            cfg,
            vocab,
            unknown,
            tok: matrix(&mut rng, v, d),
            pos: (cfg.position == GptPosition::Learned).then(|| matrix(&mut rng, blk, d)),
            rope,
            blocks,
            ln_f: norm_p(&mut rng, d, cfg.norm),
            head: (!cfg.tied_head).then(|| matrix(&mut rng, v, d)),
        }
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

    fn desc(o: &Owned) -> GptDesc<'_> {
        let blocks: Vec<GptBlock> = o
            .blocks
            .iter()
            .map(|b| GptBlock {
                ln1: np(&b.ln1),
                attn_in_scale: 0.03,
                wq: qm(&b.m[0]),
                wk: qm(&b.m[1]),
                wv: qm(&b.m[2]),
                q_scale: 0.02,
                k_scale: 0.02,
                v_scale: 0.01,
                attn_out_scale: 0.01,
                wo: qm(&b.m[3]),
                ln2: np(&b.ln2),
                mlp_in_scale: 0.03,
                w1: qm(&b.m[4]),
                w3: b.m.get(6).map(qm),
                mlp_gate_scale: 0.05,
                mlp_act_scale: if o.cfg.mlp.is_gated() { 0.02 } else { 0.005 },
                act_lut: &b.lut,
                mlp_hidden_scale: 0.005,
                w2: qm(&b.m[5]),
            })
            .collect();
        GptDesc {
            config: o.cfg,
            vocab: GptVocab {
                chars: &o.vocab,
                unknown: o.unknown,
            },
            tok_emb: qm(&o.tok),
            pos_emb: o.pos.as_ref().map(qm),
            rope: o.rope.as_ref().map(|r| RopeTables {
                cos: &r.0,
                sin: &r.1,
            }),
            blocks: GptBlockList::from_slice(&blocks).unwrap(),
            ln_f: np(&o.ln_f),
            head_in_scale: 0.03,
            lm_head: o.head.as_ref().map(qm),
            eval: GptEval::UNKNOWN,
        }
    }

    fn metadata() -> Metadata<'static> {
        Metadata {
            task: Task::LanguageModel,
            labels: "",
            float_accuracy: f32::NAN,
            int8_accuracy: f32::NAN,
            seed: 1,
            train_command: "test",
        }
    }

    fn bytes_of(desc: GptDesc) -> Vec<u8> {
        postcard::to_stdvec(&ModelFile::new(metadata(), Body::Gpt(desc))).unwrap()
    }

    fn config(position: GptPosition, norm: GptNorm, mlp: GptMlp, tied: bool) -> GptConfig {
        GptConfig {
            n_layer: 2,
            n_head: 2,
            d_model: 8,
            hidden: 12,
            block_size: 6,
            vocab_size: 30,
            position,
            norm,
            mlp,
            tied_head: tied,
            norm_eps: 1e-5,
        }
    }

    fn all_configs() -> Vec<GptConfig> {
        let mut v = Vec::new();
        for p in [GptPosition::Learned, GptPosition::Rope] {
            for n in [GptNorm::LayerNorm, GptNorm::RmsNorm] {
                for m in [GptMlp::Gelu, GptMlp::SwiGlu, GptMlp::GeGlu] {
                    for t in [false, true] {
                        v.push(config(p, n, m, t));
                    }
                }
            }
        }
        v
    }

    struct Buffers {
        f: Vec<f32>,
        c: Vec<i8>,
    }

    fn buffers(m: &GptModel) -> Buffers {
        Buffers {
            f: vec![0.0; m.state_f32_len()],
            c: vec![0; m.state_i8_len()],
        }
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        // Reference in f64: round half to even of the same f32 product, then clamp.
        fn reference(v: f32, m: f32) -> i8 {
            let y = (v * m) as f64;
            if y.is_nan() {
                return 0;
            }
            let fl = y.floor();
            let r = match (y - fl).partial_cmp(&0.5).unwrap() {
                core::cmp::Ordering::Less => fl,
                core::cmp::Ordering::Greater => fl + 1.0,
                core::cmp::Ordering::Equal if fl % 2.0 == 0.0 => fl,
                core::cmp::Ordering::Equal => fl + 1.0,
            };
            r.clamp(-128.0, 127.0) as i8
        }
        let mut rng = Rng::new(5);
        for i in -1000..=1000 {
            let v = i as f32 * 0.25; // exact halves and quarters
            assert_eq!(quantize(v, 1.0), reference(v, 1.0), "{v}");
        }
        for _ in 0..100_000 {
            let v = rng.normal() * [0.01f32, 1.0, 100.0, 1e7, 1e30][rng.below(5) as usize];
            let m = [1.0f32, 0.37, 127.0, 3e-5][rng.below(4) as usize];
            assert_eq!(quantize(v, m), reference(v, m), "{v} * {m}");
        }
        assert_eq!(quantize(0.5, 1.0), 0);
        assert_eq!(quantize(1.5, 1.0), 2);
        assert_eq!(quantize(-2.5, 1.0), -2);
        assert_eq!(quantize(f32::NAN, 1.0), 0);
        assert_eq!(quantize(f32::INFINITY, 1.0), 127);
        assert_eq!(quantize(f32::NEG_INFINITY, 1.0), -128);
        assert_eq!(quantize(-4_194_303.5, 1.0), -128);
        assert_eq!(quantize(-128.4, 1.0), -128);
        assert_eq!(quantize(-128.6, 1.0), -128);
        assert_eq!(quantize(3e9, 1.0), 127);
    }

    #[test]
    fn incremental_equals_recompute_for_every_config() {
        for (ci, cfg) in all_configs().into_iter().enumerate() {
            let o = owned(cfg, ci as u64);
            let bytes = bytes_of(desc(&o));
            let m = GptModel::load(&bytes).unwrap();
            assert_eq!(m.state_size(), 4 * m.state_f32_len() + m.state_i8_len());
            let toks = [3u32, 0, 27, 28, 5, 5];
            let mut b = buffers(&m);
            let mut st = m.new_state(&mut b.f, &mut b.c).unwrap();
            let inc: Vec<Vec<f32>> = toks
                .iter()
                .enumerate()
                .map(|(p, &t)| m.forward(&mut st, t, p).unwrap().to_vec())
                .collect();
            for p in 0..toks.len() {
                let mut b2 = buffers(&m);
                // Dirty buffers must not matter.
                b2.f.iter_mut().for_each(|v| *v = 7.5);
                b2.c.iter_mut().for_each(|v| *v = -3);
                let mut st2 = m.new_state(&mut b2.f, &mut b2.c).unwrap();
                let full = m.prefill(&mut st2, &toks[..=p], 0).unwrap();
                let same = full
                    .iter()
                    .zip(&inc[p])
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "config {ci} pos {p}");
                assert!(full.iter().all(|v| v.is_finite()));
            }
        }
    }

    #[test]
    fn bad_token_context_full_and_small_state() {
        let o = owned(
            config(GptPosition::Rope, GptNorm::RmsNorm, GptMlp::SwiGlu, true),
            1,
        );
        let bytes = bytes_of(desc(&o));
        let m = GptModel::load(&bytes).unwrap();
        let mut b = buffers(&m);
        let mut st = m.new_state(&mut b.f, &mut b.c).unwrap();
        assert_eq!(
            m.forward(&mut st, 30, 0).unwrap_err(),
            Error::BadToken {
                token: 30,
                vocab_size: 30
            }
        );
        assert_eq!(
            m.forward(&mut st, u32::MAX, 0).unwrap_err(),
            Error::BadToken {
                token: u32::MAX,
                vocab_size: 30
            }
        );
        assert_eq!(
            m.forward(&mut st, 1, 6).unwrap_err(),
            Error::ContextFull {
                pos: 6,
                block_size: 6
            }
        );
        assert_eq!(
            m.prefill(&mut st, &[1; 7], 0).unwrap_err(),
            Error::ContextFull {
                pos: 6,
                block_size: 6
            }
        );
        assert!(matches!(
            m.prefill(&mut st, &[], 0),
            Err(Error::BadArgument { .. })
        ));
        assert!(matches!(
            m.prefill(&mut st, &[1, 99], 0),
            Err(Error::BadToken { token: 99, .. })
        ));
        let mut f = vec![0f32; m.state_f32_len() - 1];
        let mut c = vec![0i8; m.state_i8_len()];
        assert_eq!(
            m.new_state(&mut f, &mut c).unwrap_err(),
            Error::ArenaTooSmall {
                need: m.state_f32_len(),
                have: m.state_f32_len() - 1
            }
        );
        let mut f = vec![0f32; m.state_f32_len()];
        let mut c = vec![0i8; m.state_i8_len() - 1];
        assert!(matches!(
            m.new_state(&mut f, &mut c),
            Err(Error::ArenaTooSmall { .. })
        ));
        // A state built for a smaller model is reported, not a panic.
        let small = GptConfig {
            n_layer: 1,
            ..config(GptPosition::Rope, GptNorm::RmsNorm, GptMlp::SwiGlu, true)
        };
        let o2 = owned(small, 2);
        let bytes2 = bytes_of(desc(&o2));
        let m2 = GptModel::load(&bytes2).unwrap();
        let mut b2 = buffers(&m2);
        let mut st2 = m2.new_state(&mut b2.f, &mut b2.c).unwrap();
        assert!(matches!(
            m.forward(&mut st2, 1, 0),
            Err(Error::ArenaTooSmall { .. })
        ));
    }

    #[test]
    fn decoder_slides_its_window() {
        for (ci, cfg) in all_configs().into_iter().enumerate().step_by(5) {
            let o = owned(cfg, 100 + ci as u64);
            let bytes = bytes_of(desc(&o));
            let m = GptModel::load(&bytes).unwrap();
            let mut b = buffers(&m);
            let mut w = [0u32; 6];
            let st = m.new_state(&mut b.f, &mut b.c).unwrap();
            let mut dec = Decoder::new(&m, st, &mut w).unwrap();
            let toks: Vec<u32> = (0..20u32).map(|i| (i * 7 + 3) % 30).collect();
            for (i, &t) in toks.iter().enumerate() {
                let got = dec.push(t).unwrap().to_vec();
                // Expected window: block 6; a full window keeps 3, then the new token.
                let n = i + 1;
                let expect_len = if n <= 6 { n } else { 4 + (n - 7) % 3 };
                assert_eq!(dec.len(), expect_len, "step {i}");
                assert_eq!(dec.tokens(), &toks[n - expect_len..n]);
                let mut b2 = buffers(&m);
                let mut st2 = m.new_state(&mut b2.f, &mut b2.c).unwrap();
                let want = m.prefill(&mut st2, dec.tokens(), 0).unwrap();
                assert!(want
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            }
            assert!(matches!(dec.push(30), Err(Error::BadToken { .. })));
            let len = dec.len();
            assert_eq!(dec.len(), len);
            dec.reset();
            assert!(dec.is_empty());
        }
        let o = owned(
            config(
                GptPosition::Learned,
                GptNorm::LayerNorm,
                GptMlp::Gelu,
                false,
            ),
            3,
        );
        let bytes = bytes_of(desc(&o));
        let m = GptModel::load(&bytes).unwrap();
        let mut b = buffers(&m);
        let st = m.new_state(&mut b.f, &mut b.c).unwrap();
        let mut w = [0u32; 5];
        assert_eq!(
            Decoder::new(&m, st, &mut w).unwrap_err(),
            Error::BufferTooSmall { need: 6, have: 5 }
        );
    }

    #[test]
    fn vocabulary_encode_decode() {
        let o = owned(
            config(GptPosition::Rope, GptNorm::LayerNorm, GptMlp::GeGlu, false),
            4,
        );
        let bytes = bytes_of(desc(&o));
        let m = GptModel::load(&bytes).unwrap();
        assert_eq!(m.unknown_id(), Some(29));
        let mut out = [0u32; 16];
        let n = m.encode("ab日é?\n", &mut out).unwrap();
        assert_eq!(&out[..n], &[1, 2, 28, 27, 29, 0]);
        let text: std::string::String = out[..n]
            .iter()
            .map(|&t| m.decode_token(t).unwrap())
            .collect();
        assert_eq!(text, "ab日é\u{FFFD}\n");
        assert_eq!(
            m.encode("abcdef", &mut out[..3]).unwrap_err(),
            Error::BufferTooSmall { need: 6, have: 3 }
        );
        assert!(matches!(m.decode_token(30), Err(Error::BadToken { .. })));
        // Without an unknown token, unknown chars are dropped (as the trainer does).
        let cfg = GptConfig {
            vocab_size: 28,
            ..config(GptPosition::Rope, GptNorm::LayerNorm, GptMlp::GeGlu, false)
        };
        let o = owned(cfg, 5);
        let bytes = bytes_of(desc(&o));
        let m = GptModel::load(&bytes).unwrap();
        assert_eq!(m.unknown_id(), None);
        let n = m.encode("a日z?", &mut out).unwrap();
        assert_eq!(&out[..n], &[1, 26]);
    }

    #[test]
    fn loader_rejects_inconsistent_descriptions() {
        let cfg = config(
            GptPosition::Learned,
            GptNorm::LayerNorm,
            GptMlp::SwiGlu,
            false,
        );
        let o = owned(cfg, 6);
        let check = |edit: &dyn Fn(&mut GptDesc)| {
            let mut dsc = desc(&o);
            edit(&mut dsc);
            let bytes = bytes_of(dsc);
            GptModel::load(&bytes).unwrap_err()
        };
        assert!(matches!(
            check(&|d| d.config.n_head = 3),
            Error::GptParameter { .. }
        ));
        assert!(matches!(
            check(&|d| d.config.d_model = 10),
            Error::GptParameter { .. } | Error::GptLength { .. }
        ));
        assert!(matches!(
            check(&|d| d.config.hidden = 13),
            Error::GptLength { block: Some(0), .. }
        ));
        assert!(matches!(
            check(&|d| d.config.vocab_size = 29),
            Error::BadVocab { .. }
        ));
        assert!(matches!(
            check(&|d| d.vocab.unknown = None),
            Error::BadVocab { .. }
        ));
        assert!(matches!(
            check(&|d| d.vocab.chars = "ba"),
            Error::BadVocab { .. }
        ));
        assert!(matches!(
            check(&|d| d.config.n_layer = 3),
            Error::GptParameter { .. }
        ));
        assert!(matches!(
            check(&|d| d.config.position = GptPosition::Rope),
            Error::GptParameter { .. }
        ));
        assert!(matches!(
            check(&|d| d.config.tied_head = true),
            Error::GptParameter { .. }
        ));
        assert!(matches!(
            check(&|d| d.config.mlp = GptMlp::Gelu),
            Error::GptParameter { block: Some(0), .. }
        ));
        assert!(matches!(
            check(&|d| d.config.norm = GptNorm::RmsNorm),
            Error::GptParameter { block: Some(0), .. }
        ));
        assert!(matches!(
            check(&|d| d.config.norm_eps = 0.0),
            Error::GptParameter { .. }
        ));
        assert!(matches!(
            check(&|d| d.config.block_size = 0),
            Error::GptParameter { .. }
        ));
        assert!(matches!(
            check(&|d| d.config.d_model = u32::MAX),
            Error::GptParameter { .. }
        ));
        assert!(matches!(
            check(&|d| d.head_in_scale = f32::NAN),
            Error::GptParameter { .. }
        ));
        let zero: &'static [u8] = f32s([0.0; 8]).leak();
        let nan_w: &'static [u8] = f32s([f32::NAN; 8]).leak();
        assert!(matches!(
            check(&|d| {
                let mut blocks: Vec<GptBlock> = d.blocks.as_slice().to_vec();
                blocks[1].v_scale = -1.0;
                d.blocks = GptBlockList::from_slice(&blocks).unwrap();
            }),
            Error::GptParameter { block: Some(1), .. }
        ));
        assert!(matches!(
            check(&|d| {
                let mut blocks: Vec<GptBlock> = d.blocks.as_slice().to_vec();
                blocks[1].wq.scales = zero;
                d.blocks = GptBlockList::from_slice(&blocks).unwrap();
            }),
            Error::GptParameter { block: Some(1), .. }
        ));
        assert!(matches!(
            check(&|d| d.ln_f.weight = nan_w),
            Error::GptParameter { block: None, .. }
        ));
        assert!(matches!(
            check(&|d| d.tok_emb.weights = &[]),
            Error::GptLength { block: None, .. }
        ));
        assert!(matches!(
            check(&|d| d.blocks = GptBlockList::new()),
            Error::NoLayers
        ));
        // Wrong task, wrong body.
        let bytes = postcard::to_stdvec(&ModelFile::new(
            Metadata {
                task: Task::Classifier,
                ..metadata()
            },
            Body::Gpt(desc(&o)),
        ))
        .unwrap();
        assert!(matches!(
            GptModel::load(&bytes),
            Err(Error::GptParameter { .. })
        ));
        let bytes = bytes_of(desc(&o));
        assert!(GptModel::load(&bytes).is_ok());
        assert_eq!(
            crate::SequentialModel::load(&bytes).unwrap_err(),
            Error::WrongBody
        );
    }
}
