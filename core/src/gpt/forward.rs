//! [`GptModel::forward`]: one token through the model (the table in the [module
//! documentation](super) gives every step's arithmetic), and the projection helpers it uses.

use super::state::GptState;
use super::validate::param;
use super::{GptModel, Step};
use crate::format::{QMatrix, WeightType, ACT_LUT_LEN};
use crate::kernels::attention::softmax_u8;
use crate::kernels::quantize::le_f32;
#[cfg(not(feature = "offset-only"))]
use crate::kernels::{dot_i8, linear_s4::dot_s4, matvec_i32, matvec_i32_s4};
use crate::kernels::{dot_i8_offset, matvec_i32_offset_pre, OffsetBuf, OffsetInput};
use crate::kernels::{i8_as_bytes, matvec_i32_strided_u8, norm_q, quantize, rope_rotate, sqrt_f32};
use crate::Error;

/// Rows per [`matvec_i32`] call: the i32 sums of one call live in one stack array of
/// [`GptModel::forward`] (2 KiB), reused by every projection of the token. 512: the MLP
/// up-projection of the 128-dim flagships (`hidden` 512) is one call.
const ACC_ROWS: usize = 512;

impl GptModel<'_> {
    /// Runs token `token` at position `pos` (`< block_size`) and returns the next-token logits
    /// (`[vocab_size]` f32, in the state). Writes the token's keys and values into cache slot
    /// `pos` and attends to slots `0..=pos`, which must hold this sequence's earlier tokens.
    ///
    /// Errors: [`Error::BadToken`], [`Error::ContextFull`], [`Error::ArenaTooSmall`] (a state
    /// built for a smaller model; [`Error::BadArgument`] for a larger one). Nothing is written
    /// on a token, position or state error.
    pub fn forward<'s>(
        &self,
        state: &'s mut GptState<'_>,
        token: u32,
        pos: usize,
    ) -> Result<&'s [f32], Error> {
        self.forward_profiled(state, token, pos, |_| {})
    }

    /// [`Self::forward`], calling `mark(step)` each time a [`Step`] of the computation ends (in
    /// order; the attention steps once per head), for per-step profiles on a device: the caller
    /// reads a counter in `mark`. The same arithmetic and results as [`Self::forward`] (which is
    /// this with a `mark` that does nothing, compiled away).
    #[inline(always)]
    pub fn forward_profiled<'s>(
        &self,
        state: &'s mut GptState<'_>,
        token: u32,
        pos: usize,
        mut mark: impl FnMut(Step),
    ) -> Result<&'s [f32], Error> {
        self.check_token(token)?;
        let dm = self.dims;
        if pos >= dm.block {
            return Err(Error::ContextFull {
                pos,
                block_size: dm.block,
            });
        }
        let layout = dm.state();
        if state.layout != layout {
            let (need, have) = (layout.bytes(), state.layout.bytes());
            return Err(if have < need {
                Error::ArenaTooSmall { need, have }
            } else {
                Error::BadArgument {
                    what: msg!("run state built for a different model"),
                }
            });
        }
        let GptState {
            x,
            q,
            k,
            up,
            logits,
            k_consts,
            k_cache,
            v_cache,
            a,
            qq,
            hq,
            pq,
            ..
        } = state;
        // Unreachable (the layout matches): a cache slice that does not fit.
        let too_small = Error::ArenaTooSmall {
            need: layout.bytes(),
            have: layout.bytes(),
        };
        let (d, hd, hidden) = (dm.d, dm.hd, dm.hidden);
        // [ACC_ROWS] i32 sums of one matvec_i32 call, reused by every projection of the token.
        let acc = &mut [0i32; ACC_ROWS];
        // The pre-extended input of the offset-binary products (one vector at a time: the q, k
        // and v projections share it, and so do the row chunks of one matrix).
        let obuf = &mut OffsetBuf::new();

        let desc = &self.desc;
        let cfg = &desc.config;
        let rope = desc.rope.is_some();

        // ---- embedding: x = s_tok[t]·E[t] (+ s_pos[p]·P[p]) ----
        embed(&desc.tok_emb, token as usize, x, false);
        if let Some(pe) = &desc.pos_emb {
            embed(pe, pos, x, true);
        }

        mark(Step::Embed);
        // This position's RoPE tables: [hd/2] cos and sin, f32 LE.
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
        let inv_sqrt_hd = 1.0 / sqrt_f32(hd as f32);
        // One head's keys are `block` rows of `hd` in the cache, and their row constants
        // `block` i32 LE.
        let kv_head = dm.block * hd;
        let kc_layer = dm.n_head * dm.block * 4;

        for (l, blk) in desc.blocks.as_slice().iter().enumerate() {
            // This layer's caches.
            let base = l * dm.kv_layer;
            let kl = k_cache.get_mut(base..base + dm.kv_layer).ok_or(too_small)?; // [head][block][hd]
            let vl = v_cache.get_mut(base..base + dm.kv_layer).ok_or(too_small)?; // [d][block]
            let kcl = k_consts
                .get_mut(l * kc_layer..(l + 1) * kc_layer)
                .ok_or(too_small)?; // [head][block] i32 LE

            // ---- attention: x += Wo · attention(Q(norm1(x))) ----
            // Norm 1, quantized: a = Q(norm1(x), 1/s_attn_in).
            norm_q(cfg.norm, cfg.norm_eps, x, &blk.ln1, blk.attn_in_scale, a); // [d] int8
            mark(Step::Norm);
            let ain = &mut OffsetInput::new(a, obuf); // q, k and v share the extended input
            let s_in = blk.attn_in_scale;
            let (inv_q, inv_k, inv_v) = (1.0 / blk.q_scale, 1.0 / blk.k_scale, 1.0 / blk.v_scale);
            // Requantization multipliers without the per-row weight scale.
            let (mq, mk, mv) = (s_in * inv_q, s_in * inv_k, s_in * inv_v);
            // K, then Q, int8 in `qq`: K goes to the cache first.
            // `[d]` int8 from the i32 sums at multiplier `mm` (without the per-row weight scale).
            let to_i8 =
                |mm: f32| move |o: &mut i8, v: i32, sw: f32| *o = quantize(v as f32, sw * mm);
            if rope {
                // q, k in f32, rotated, then quantized.
                let dq = |o: &mut f32, v: i32, sw: f32| *o = v as f32 * (s_in * sw);
                rows_into(ain, &blk.wq, q, acc, dq);
                rows_into(ain, &blk.wk, k, acc, dq);
                rope_rotate(q, hd, cos, sin);
                rope_rotate(k, hd, cos, sin);
                for (o, &v) in qq.iter_mut().zip(k.iter()) {
                    *o = quantize(v, inv_k);
                }
            } else {
                // k straight from the i32 sums to int8.
                rows_into(ain, &blk.wk, qq, acc, to_i8(mk));
            }
            // This token's key rows into the cache, K `[head][block][hd]` at (head, pos), in
            // the offset-binary layout, and their row constants.
            for hh in 0..dm.n_head {
                let (at, c) = (hh * kv_head + pos * hd, (hh * dm.block + pos) * 4);
                let cs = kcl.get_mut(c..c + 4).map(<&mut [i8; 4]>::try_from);
                let src = qq.get(hh * hd..(hh + 1) * hd);
                if let (Some(key), Some(Ok(cs)), Some(src)) = (kl.get_mut(at..at + hd), cs, src) {
                    key.copy_from_slice(src);
                    *cs = encode_key(key).to_le_bytes().map(|b| b as i8);
                }
            }
            if rope {
                for (o, &v) in qq.iter_mut().zip(q.iter()) {
                    *o = quantize(v, inv_q);
                }
            } else {
                rows_into(ain, &blk.wq, qq, acc, to_i8(mq));
            }
            // V projection into the (transposed) cache: row r at r·block + pos.
            let block = dm.block.max(1); // > pos
            matvec_chunks(ain, &blk.wv, d, acc, |r0, sums, scales| {
                let rows = vl
                    .get_mut(r0 * block..)
                    .unwrap_or(&mut [])
                    .chunks_exact_mut(block);
                for ((row, &v), s) in rows.zip(sums).zip(scales.chunks_exact(4)) {
                    if let Some(o) = row.get_mut(pos) {
                        *o = quantize(v as f32, le_f32(s) * mv);
                    }
                }
            });

            mark(Step::Qkv);
            // Per head: scores, integer softmax weights, P·V into `a`.
            let score_scale = (blk.q_scale * blk.k_scale) * inv_sqrt_hd;
            let pv_base = blk.v_scale * (1.0 / blk.attn_out_scale);
            let n = pos + 1;
            let n4 = n.next_multiple_of(4).min(dm.block);
            for hh in 0..dm.n_head {
                let off = hh * hd;
                // Keys 0..n3 (a multiple of 3 when `block` and ACC_ROWS allow): whole triples
                // of rows for the DSP kernel; the sums of the keys past `pos` (stale cache rows)
                // are unused.
                let qh = qq.get(off..off + hd).unwrap_or(&[]); // [hd]
                let n3 = n.next_multiple_of(3).min(dm.block).min(ACC_ROWS).max(n);
                let kh = kl.get(hh * kv_head..hh * kv_head + n3 * hd).unwrap_or(&[]); // [n3][hd]
                let c0 = hh * dm.block * 4;
                let ch = i8_as_bytes(kcl.get(c0..c0 + n3 * 4).unwrap_or(&[])); // [n3] i32 LE
                let pn = pq.get_mut(..n).unwrap_or(&mut []);
                // u8 weights P[t] ≈ 255·e^(e[t] − max e) of e[t] = (q·k_t)·score_scale, and
                // their sum.
                let qin = &mut OffsetInput::new(qh, obuf);
                let total = key_weights(qin, kh, ch, score_scale, acc, pn, &mut mark);
                mark(Step::Softmax);
                // P·V is divided by Σ P here: P[t]/Σ P is the softmax.
                let pv_mult = pv_base * (1.0 / total as f32);
                // Head output o[i] = Σ_t P[t]·v_t[i] (rows i of V^T, `block` apart), quantized
                // for Wo. P is zero-padded to n4 keys (a multiple of 4 when `block` is, which
                // the DSP loop wants); the padded slots multiply stale cache values by 0.
                pq.get_mut(n..n4).unwrap_or(&mut []).fill(0);
                // Keys of weight 0 add nothing: the product runs over t0..t1, from the group of
                // 4 keys of the first nonzero weight to the end of the last one's (the same
                // exact i32 sums; the DSP loop's alignment is kept).
                let p4 = i8_as_bytes(pq.get(..n4).unwrap_or(&[])); // [n4] u8 weights
                let (t0, t1) = nonzero_span4(p4);
                let p4 = p4.get(t0..t1).unwrap_or(&[]);
                // [ACC_ROWS] output dims at a time (one pass when hd <= ACC_ROWS).
                let mut c0 = 0;
                while c0 < hd {
                    let cn = (hd - c0).min(ACC_ROWS);
                    let (lo, hi) = (off + c0, off + c0 + cn);
                    let vh = vl.get(lo * dm.block + t0..).unwrap_or(&[]); // rows lo.. from t0
                    let sums = &mut acc[..cn];
                    if matvec_i32_strided_u8(p4, i8_as_bytes(vh), dm.block, sums).is_err() {
                        // Unreachable after load (shapes as above); the row-by-row definition.
                        for (i, y) in sums.iter_mut().enumerate() {
                            let at = (lo + i) * dm.block + t0;
                            let vt = vl.get(at..at + p4.len()).unwrap_or(&[]);
                            *y = p4
                                .iter()
                                .zip(vt)
                                .fold(0i32, |s, (&p, &v)| s.wrapping_add(p as i32 * v as i32));
                        }
                    }
                    for (o, &v) in a
                        .get_mut(lo..hi)
                        .unwrap_or(&mut [])
                        .iter_mut()
                        .zip(sums.iter())
                    {
                        *o = quantize(v as f32, pv_mult);
                    }
                    c0 = hi - off;
                }
                mark(Step::Pv);
            }
            // Output projection, added to the residual: x += Wo·a.
            let s_o = blk.attn_out_scale;
            let ain = &mut OffsetInput::new(a, obuf);
            rows_into(ain, &blk.wo, x, acc, |o, v, sw| *o += v as f32 * (s_o * sw));
            mark(Step::Wo);

            // ---- MLP: x += W2 · Q(act(Q(W1·a)) [· W3·a]), a = Q(norm2(x)) ----
            // Norm 2, quantized: a = Q(norm2(x), 1/s_mlp_in).
            norm_q(cfg.norm, cfg.norm_eps, x, &blk.ln2, blk.mlp_in_scale, a); // [d] int8
            mark(Step::Norm);
            let ain = &mut OffsetInput::new(a, obuf); // W1 and W3 share the extended input
            let s_in = blk.mlp_in_scale;
            let mg = s_in * (1.0 / blk.mlp_gate_scale);
            let lut: &[u8; ACT_LUT_LEN] = blk
                .act_lut
                .try_into()
                .map_err(|_| param(Some(l), msg!("act_lut must have 256 entries")))?;
            // The activation table over the quantized gate g = Q(W1·a).
            let act = |v: i32, sw: f32| -> i8 {
                let g = quantize(v as f32, sw * mg);
                lut[g as u8 as usize] as i8
            };
            // Hidden layer: hq = act(g) (GELU), or Q(act(g)·(W3·a)) (gated).
            match &blk.w3 {
                None => rows_into(ain, &blk.w1, hq, acc, |o, v, sw| *o = act(v, sw)),
                Some(w3) => {
                    rows_into(ain, w3, up, acc, |o, v, sw| *o = v as f32 * (s_in * sw));
                    let (s_act, inv_h) = (blk.mlp_act_scale, 1.0 / blk.mlp_hidden_scale);
                    rows(ain, &blk.w1, hidden, acc, |r, v, sw| {
                        if let (Some(o), Some(&ur)) = (hq.get_mut(r), up.get(r)) {
                            *o = quantize((act(v, sw) as f32 * s_act) * ur, inv_h);
                        }
                    });
                }
            }
            mark(Step::MlpUp);
            // Down projection, added to the residual: x += W2·hq.
            let s_h = blk.mlp_hidden_scale;
            let hin = &mut OffsetInput::new(hq, obuf);
            rows_into(hin, &blk.w2, x, acc, |o, v, sw| *o += v as f32 * (s_h * sw));
            mark(Step::MlpDown);
        }

        // ---- head: logits = H · Q(norm_f(x)) ----
        norm_q(cfg.norm, cfg.norm_eps, x, &desc.ln_f, desc.head_in_scale, a);
        mark(Step::Norm);
        let head = desc.lm_head.as_ref().unwrap_or(&desc.tok_emb);
        let s_in = desc.head_in_scale;
        let ain = &mut OffsetInput::new(a, obuf);
        rows_into(ain, head, logits, acc, |o, v, sw| {
            *o = v as f32 * (s_in * sw)
        });
        mark(Step::Head);
        Ok(logits)
    }
}

/// `x = s[r]·E[r]` (`add`: `x += s[r]·E[r]`) for row `r` of the embedding table `m`
/// (`x.len()` columns, int8 or offset-binary int8 by [`GptModel::load`]: a tied head's table is
/// stored for the offset-binary kernel, and its even bytes are flipped back here).
#[inline(never)]
fn embed(m: &QMatrix, r: usize, x: &mut [f32], add: bool) {
    let cols = x.len();
    let w = m.weights.get(r * cols..(r + 1) * cols).unwrap_or(&[]);
    let s = le_f32(m.scales.get(r * 4..r * 4 + 4).unwrap_or(&[]));
    let flip = if m.weight_type == WeightType::Int8Offset {
        0x80u8
    } else {
        0
    };
    for (i, (xi, &b)) in x.iter_mut().zip(w).enumerate() {
        // Even columns: `flip`; odd: 0.
        let v = s * ((b ^ (flip & (i as u8 & 1).wrapping_sub(1))) as i8) as f32;
        *xi = if add { *xi + v } else { v };
    }
}

/// The rows `r < n_rows` of `m` (`x.len()` columns) times `x`, [`ACC_ROWS`] at a time: calls
/// `chunk(r0, sums, scales)` with the exact i32 sums `Σ x·W[r]` of rows `r0..r0 + sums.len()`
/// (from [`matvec_i32`], [`matvec_i32_s4`] or [`matvec_i32_offset`] by the matrix's weight
/// type: the fully connected loop, which extends `x` once per call) and
/// their f32 LE scales. Rows the weights do not cover (impossible after [`GptModel::load`]) are
/// skipped.
///
/// With the `compact` feature every call site shares one copy of the loop, through a
/// `&mut dyn FnMut` (same arithmetic, so the same results; smaller code for the size builds).
#[inline(always)]
fn matvec_chunks(
    x: &mut OffsetInput,
    m: &QMatrix,
    n_rows: usize,
    acc: &mut [i32; ACC_ROWS],
    mut chunk: impl FnMut(usize, &[i32], &[u8]),
) {
    #[cfg(feature = "compact")]
    matvec_chunks_dyn(x, m, n_rows, acc, &mut chunk);
    #[cfg(not(feature = "compact"))]
    matvec_chunks_body(x, m, n_rows, acc, &mut chunk);
}

/// A [`matvec_chunks`] callback: `chunk(r0, sums, scales)`.
#[cfg(feature = "compact")]
type ChunkFn<'f> = dyn FnMut(usize, &[i32], &[u8]) + 'f;

/// [`matvec_chunks`] out of line, for every closure at once (the `compact` feature).
#[cfg(feature = "compact")]
#[inline(never)]
fn matvec_chunks_dyn(
    x: &mut OffsetInput,
    m: &QMatrix,
    n_rows: usize,
    acc: &mut [i32; ACC_ROWS],
    chunk: &mut ChunkFn<'_>,
) {
    matvec_chunks_body(x, m, n_rows, acc, chunk);
}

/// The loop of [`matvec_chunks`].
#[inline(always)]
fn matvec_chunks_body<F: FnMut(usize, &[i32], &[u8]) + ?Sized>(
    xin: &mut OffsetInput,
    m: &QMatrix,
    n_rows: usize,
    acc: &mut [i32; ACC_ROWS],
    chunk: &mut F,
) {
    let x = xin.input();
    let cols = x.len();
    if cols == 0 {
        return;
    }
    let row_bytes = m.weight_type.row_bytes(cols);
    let n_rows = n_rows.min(m.weights.len() / row_bytes);
    let mut r0 = 0;
    while r0 < n_rows {
        let n = (n_rows - r0).min(ACC_ROWS);
        let w = m
            .weights
            .get(r0 * row_bytes..(r0 + n) * row_bytes)
            .unwrap_or(&[]); // [n][cols] (an offset-binary matrix's rows come first too)
        let sums = &mut acc[..n];
        let done = match m.weight_type {
            WeightType::Int8Offset => offset_sums(xin, m, r0, w, sums),
            #[cfg(not(feature = "offset-only"))]
            WeightType::Int8 => matvec_i32(x, w, sums),
            #[cfg(not(feature = "offset-only"))]
            WeightType::Int4 => matvec_i32_s4(x, w, sums),
            // Unreachable: the loader refused the model (`offset-only`).
            #[cfg(feature = "offset-only")]
            _ => {
                sums.fill(0);
                Ok(())
            }
        };
        if done.is_err() {
            // Unreachable (shapes as above); the row-by-row definition.
            for (y, row) in sums.iter_mut().zip(w.chunks_exact(row_bytes)) {
                *y = match m.weight_type {
                    WeightType::Int8Offset => dot_i8_offset(x, row),
                    #[cfg(not(feature = "offset-only"))]
                    WeightType::Int8 => dot_i8(x, row),
                    #[cfg(not(feature = "offset-only"))]
                    WeightType::Int4 => dot_s4(x, row),
                    #[cfg(feature = "offset-only")]
                    _ => 0,
                };
            }
        }
        chunk(r0, sums, m.scales.get(r0 * 4..(r0 + n) * 4).unwrap_or(&[]));
        r0 += n;
    }
}

/// [`matvec_i32_offset_pre`] on the rows `w` = `r0..r0 + sums.len()` of the offset-binary matrix
/// `m`, with their row constants. Out of line: [`matvec_chunks`] is inlined at every projection,
/// and one copy of this serves them all.
#[inline(never)]
fn offset_sums(
    xin: &mut OffsetInput,
    m: &QMatrix,
    r0: usize,
    w: &[u8],
    sums: &mut [i32],
) -> Result<(), Error> {
    let x = xin.input();
    let wt = m.weight_type;
    let all_rows = m.weights.len() / (wt.row_bytes(x.len()) + wt.row_const_bytes()).max(1);
    let (_, consts) = wt.split_matrix(m.weights, all_rows, x.len());
    let c = consts.get(r0 * 4..(r0 + sums.len()) * 4).unwrap_or(&[]);
    matvec_i32_offset_pre(xin, w, c, sums)
}

/// `each(&mut out[r], Σ x·W[r], s_w[r])` for every row `r < out.len()` of `m`.
#[inline(always)]
fn rows_into<T>(
    x: &mut OffsetInput,
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
    x: &mut OffsetInput,
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

/// The span `t0..t1` of `p` that holds its nonzero bytes, widened to multiples of 4 (`t1` at
/// most `p.len()`); `(0, 0)` if every byte is 0.
#[inline(always)]
fn nonzero_span4(p: &[u8]) -> (usize, usize) {
    let Some(first) = p.iter().position(|&w| w != 0) else {
        return (0, 0);
    };
    let last = p.iter().rposition(|&w| w != 0).unwrap_or(first);
    (first & !3, ((last | 3) + 1).min(p.len()))
}

/// Converts one key row of the cache (`hd` int8 values, just written) to the offset-binary
/// layout in place (every even byte XOR 0x80, [`crate::kernels::to_offset_binary`]) and returns
/// its row constant ([`crate::kernels::offset_row_const`] of the converted row: 128 · the sum of
/// the odd bytes, which the conversion leaves as they are).
#[inline(always)]
fn encode_key(row: &mut [i8]) -> i32 {
    // Two little-endian words [e0 o1 e2 o3] at a time: XOR 0x0080_0080, and the odd bytes
    // (bits 8..16 and 24..32) summed sign-extended.
    let mut odd = 0i32;
    let mut words = row.chunks_exact_mut(8);
    for w8 in &mut words {
        for w in w8.chunks_exact_mut(4) {
            if let Ok(w) = <&mut [i8; 4]>::try_from(w) {
                let v = u32::from_le_bytes(w.map(|b| b as u8));
                let odd_pair = ((v >> 8) as i8 as i32) + ((v as i32) >> 24);
                odd = odd.wrapping_add(odd_pair);
                *w = (v ^ 0x0080_0080).to_le_bytes().map(|b| b as i8);
            }
        }
    }
    for pair in words.into_remainder().chunks_mut(2) {
        if let [e, rest @ ..] = pair {
            *e ^= i8::MIN;
            odd = odd.wrapping_add(rest.first().map_or(0, |&o| o as i32));
        }
    }
    odd.wrapping_mul(128)
}

/// The exact i32 sums `q·k_t` of the `sums.len()` keys of one head (`k`: `[t][hd]` offset-binary
/// rows, `hd = q.len()`, `consts` their row constants, i32 LE), through [`matvec_i32_offset`]
/// (the keys are the matrix, the query the input vector).
#[inline(always)]
fn qk_sums(qin: &mut OffsetInput, k: &[i8], consts: &[u8], sums: &mut [i32]) {
    if matvec_i32_offset_pre(qin, i8_as_bytes(k), consts, sums).is_err() {
        let q = qin.input();
        // `hd % 8 != 0` (or no keys): the key-by-key definition.
        for (y, kt) in sums.iter_mut().zip(k.chunks_exact(q.len().max(1))) {
            *y = dot_i8_offset(q, i8_as_bytes(kt));
        }
    }
}

/// The sums `q·k_t` of the `len` keys of pass `ci` of [`key_weights`] into `acc` (`have` key
/// rows in `k`; rounded up to whole triples of rows for the DSP kernel where `k` and `acc`
/// allow).
#[inline(always)]
fn pass_sums(
    qin: &mut OffsetInput,
    k: &[i8],
    consts: &[u8],
    have: usize,
    ci: usize,
    len: usize,
    acc: &mut [i32; ACC_ROWS],
) {
    let hd = qin.input().len();
    let lo = ci * ACC_ROWS;
    let rows = len
        .next_multiple_of(3)
        .min(ACC_ROWS)
        .min(have.saturating_sub(lo))
        .max(len);
    let kc = k.get(lo * hd..(lo + rows) * hd).unwrap_or(&[]);
    let cc = consts.get(lo * 4..(lo + rows) * 4).unwrap_or(&[]);
    qk_sums(qin, kc, cc, acc.get_mut(..rows).unwrap_or(&mut []));
}

/// One head's attention weights: [`softmax_u8`] of the scores of its `p.len()` keys into `p`
/// (`k`: `[≥ p.len()][hd]` offset-binary key rows, `consts` their row constants, `hd =
/// q.len()`; rows past `p.len()` are computed where that completes a triple of rows for the DSP
/// kernel, and unused). Returns the sum of the weights; marks [`Step::Scores`] once the maximum
/// score is known.
///
/// The sums `q·k_t` are computed [`ACC_ROWS`] keys at a time. When every key fits one pass
/// (contexts up to 512) they stay in `acc` between the maximum and the weights; above that
/// they are computed twice, once for the maximum and once for the weights (no buffer for all of
/// them; the same results as one pass).
fn key_weights(
    qin: &mut OffsetInput,
    k: &[i8],
    consts: &[u8],
    scale: f32,
    acc: &mut [i32; ACC_ROWS],
    p: &mut [i8],
    mark: &mut impl FnMut(Step),
) -> u32 {
    let hd = qin.input().len().max(1);
    let have = k.len() / hd; // key rows available, >= p.len()
    let passes = p.len().div_ceil(ACC_ROWS);
    let mut best = i32::MIN;
    for (ci, ps) in p.chunks(ACC_ROWS).enumerate() {
        pass_sums(qin, k, consts, have, ci, ps.len(), acc);
        best = acc[..ps.len()].iter().fold(best, |m, &v| m.max(v));
    }
    mark(Step::Scores);
    let mut total = 0u32;
    for (ci, ps) in p.chunks_mut(ACC_ROWS).enumerate() {
        if passes > 1 {
            pass_sums(qin, k, consts, have, ci, ps.len(), acc);
        }
        total = total.wrapping_add(softmax_u8(&acc[..ps.len()], best, scale, ps));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The attention weights of one pass (up to [`ACC_ROWS`] keys) and of two (above) against
    /// the definition: every sum `q·k_t` at once (a plain dot product per key), their maximum, then
    /// [`softmax_u8`].
    #[test]
    fn key_weights_is_the_one_pass_softmax() {
        extern crate std;
        use std::vec::Vec;
        let mut rng = Rng::new(81);
        for (n, hd) in [(1, 8), (7, 16), (512, 4), (1025, 4), (600, 8), (513, 32)] {
            let q: Vec<i8> = (0..hd).map(|_| rng.next_u32() as i8).collect();
            let k: Vec<i8> = (0..n * hd).map(|_| rng.next_u32() as i8).collect();
            let sums: Vec<i32> = k
                .chunks_exact(hd)
                .map(|kt| kt.iter().zip(&q).map(|(&a, &b)| a as i32 * b as i32).sum())
                .collect();
            let best = *sums.iter().max().unwrap();
            let mut want = std::vec![0i8; n];
            let want_total = softmax_u8(&sums, best, 0.01, &mut want);
            // The cache's layout: offset-binary key rows and their row constants.
            let mut ko = k.clone();
            let consts: Vec<u8> = ko
                .chunks_exact_mut(hd)
                .flat_map(|kt| encode_key(kt).to_le_bytes())
                .collect();
            let (mut got, mut steps) = (std::vec![0i8; n], Vec::new());
            let acc = &mut [0i32; ACC_ROWS];
            let (buf, mut push) = (&mut OffsetBuf::new(), |s| steps.push(s));
            let qin = &mut OffsetInput::new(&q, buf);
            let total = key_weights(qin, &ko, &consts, 0.01, acc, &mut got, &mut push);
            assert_eq!((total, got), (want_total, want), "n {n}");
            assert_eq!(steps, [Step::Scores]);
        }
    }

    /// A cached key row's conversion is `to_offset_binary` and its constant `offset_row_const`,
    /// and the scores over converted rows are the plain int8 dot products (every `hd` parity,
    /// with and without the kernel's `hd % 8 == 0`).
    #[test]
    fn encoded_keys_give_the_plain_scores() {
        extern crate std;
        use crate::kernels::{offset_row_const, to_offset_binary};
        use std::vec::Vec;
        let mut rng = Rng::new(83);
        for hd in [1, 2, 3, 7, 8, 16, 24, 32, 33, 64] {
            for n in [1, 2, 3, 4, 5, 17] {
                let q: Vec<i8> = (0..hd).map(|_| rng.next_u32() as i8).collect();
                let k: Vec<i8> = (0..n * hd)
                    .map(|i| match i % 5 {
                        0 => -128,
                        1 => 127,
                        _ => rng.next_u32() as i8,
                    })
                    .collect();
                let mut ko = k.clone();
                let mut consts = Vec::new();
                for (kt, plain) in ko.chunks_exact_mut(hd).zip(k.chunks_exact(hd)) {
                    let c = encode_key(kt);
                    let mut want: Vec<u8> = i8_as_bytes(plain).to_vec();
                    to_offset_binary(&mut want);
                    assert_eq!(i8_as_bytes(kt), &want[..], "hd {hd}");
                    assert_eq!(c, offset_row_const(&want), "hd {hd}");
                    consts.extend_from_slice(&c.to_le_bytes());
                }
                let want: Vec<i32> = k
                    .chunks_exact(hd)
                    .map(|kt| kt.iter().zip(&q).map(|(&a, &b)| a as i32 * b as i32).sum())
                    .collect();
                let mut got = std::vec![0x5a5a_5a5a; n];
                qk_sums(
                    &mut OffsetInput::new(&q, &mut OffsetBuf::new()),
                    &ko,
                    &consts,
                    &mut got,
                );
                assert_eq!(got, want, "hd {hd} n {n}");
            }
        }
    }

    /// The span of the nonzero weights, in groups of 4, against a scan of every group.
    #[test]
    fn nonzero_span4_covers_every_nonzero_group() {
        extern crate std;
        let mut rng = Rng::new(82);
        for case in 0..2000 {
            let n = rng.below(40) as usize;
            let p: std::vec::Vec<u8> = (0..n)
                .map(|_| {
                    if rng.below(4 + case % 9) == 0 {
                        rng.next_u32() as u8 | 1
                    } else {
                        0
                    }
                })
                .collect();
            let (t0, t1) = nonzero_span4(&p);
            let groups: std::vec::Vec<usize> = (0..n.div_ceil(4))
                .filter(|&g| p[g * 4..(g * 4 + 4).min(n)].iter().any(|&w| w != 0))
                .collect();
            match (groups.first(), groups.last()) {
                (Some(&g0), Some(&g1)) => assert_eq!((t0, t1), (g0 * 4, (g1 * 4 + 4).min(n))),
                _ => assert_eq!((t0, t1), (0, 0)),
            }
        }
    }
}
