//! [`GptModel::load`](super::GptModel::load)'s checks: the configuration, the vocabulary,
//! every array length against the configuration, every stored scale (finite and > 0), norm
//! parameter and RoPE value (finite), and the state sizes (no overflow). After them, the forward
//! pass cannot index out of bounds.

use super::state::StateLayout;
use super::{Dims, UNKNOWN_CHAR};
use crate::format::valid_scale;
use crate::format::{
    GptBlock, GptConfig, GptDesc, GptNorm, GptPosition, NormParams, QMatrix, WeightType,
    ACT_LUT_LEN, MAX_GPT_DIM, MAX_GPT_LAYERS, MAX_PAD,
};
use crate::kernels::quantize::le_f32;
use crate::Error;

pub(super) fn param(block: Option<usize>, what: &'static str) -> Error {
    Error::GptParameter { block, what }
}

fn overflow(block: Option<usize>) -> Error {
    param(block, msg!("sizes overflow"))
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

/// What a GPT matrix is for, which decides the weight types it may have.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// An embedding table, only looked up: int8 rows, plain or offset-binary (never int4).
    Table,
    /// Multiplied by a fully connected kernel (a projection, an untied head): any weight type.
    Product,
    /// The token table of a tied head: looked up and multiplied, so both rules.
    TiedHead,
}

/// The error of a model that an aka-core built with the `offset-only` feature cannot run.
#[cfg(feature = "offset-only")]
const OFFSET_ONLY: &str =
    msg!("this aka-core is built with the offset-only feature (int8-offset GPT matrices only)");

/// Checks a `[rows][cols]` int8, int4 or offset-binary int8 matrix with per-row scales, and its
/// weight type against its [`Role`] (with the `offset-only` feature, every matrix a kernel
/// multiplies must be int8-offset: such a build refuses other models at load time).
#[inline(never)]
fn check_matrix(
    block: Option<usize>,
    role: Role,
    names: (&'static str, &'static str, &'static str),
    m: &QMatrix,
    rows: usize,
    cols: usize,
) -> Result<(), Error> {
    if role != Role::Product && m.weight_type == WeightType::Int4 {
        return Err(param(block, msg!("the embedding tables must be int8")));
    }
    #[cfg(feature = "offset-only")]
    if role != Role::Table && m.weight_type != WeightType::Int8Offset {
        return Err(param(block, OFFSET_ONLY));
    }
    let n = m
        .weight_type
        .matrix_bytes(rows, cols)
        .ok_or(overflow(block))?;
    if m.pad.len() > MAX_PAD {
        return Err(param(
            block,
            msg!("more than 3 padding bytes before a matrix"),
        ));
    }
    check_len(block, names.0, n, m.weights)?;
    m.weight_type
        .check_weights(m.weights, rows, cols)
        .map_err(|what| param(block, what))?;
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

// Out of line (as are `check_norm` and `check_matrix`): called from several places, inlined
// copies cost flash (docs/SIZE.md).
#[inline(never)]
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

#[inline(never)]
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
        msg!("norm weight not finite"),
        p.weight,
        d,
        f32::is_finite,
    )?;
    match (kind, p.bias) {
        (GptNorm::LayerNorm, Some(b)) => check_f32s(
            block,
            names.1,
            msg!("norm bias not finite"),
            b,
            d,
            f32::is_finite,
        ),
        (GptNorm::LayerNorm, None) => Err(param(block, msg!("LayerNorm without a bias"))),
        (GptNorm::RmsNorm, None) => Ok(()),
        (GptNorm::RmsNorm, Some(_)) => Err(param(block, msg!("RMSNorm with a bias"))),
    }
}

/// True if every scale is [`valid_scale`] (a loop, not unrolled at every call).
#[inline(never)]
fn all_valid_scales(scales: &[f32]) -> bool {
    scales.iter().all(|&s| valid_scale(s))
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
                what: msg!("chars are not strictly increasing"),
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
            what: msg!("number of chars differs from vocab_size"),
        });
    }
    if fffd != desc.vocab.unknown {
        return Err(Error::BadVocab {
            what: msg!("unknown id is not the id of U+FFFD"),
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
    check_norm(
        b,
        cfg.norm,
        &blk.ln1,
        d,
        (msg!("ln1.weight"), msg!("ln1.bias")),
    )?;
    check_norm(
        b,
        cfg.norm,
        &blk.ln2,
        d,
        (msg!("ln2.weight"), msg!("ln2.bias")),
    )?;
    if !all_valid_scales(&[
        blk.attn_in_scale,
        blk.q_scale,
        blk.k_scale,
        blk.v_scale,
        blk.attn_out_scale,
        blk.mlp_in_scale,
        blk.mlp_gate_scale,
        blk.mlp_act_scale,
        blk.mlp_hidden_scale,
    ]) {
        return Err(param(b, msg!("activation scale must be finite and > 0")));
    }
    check_len(b, msg!("act_lut"), ACT_LUT_LEN, blk.act_lut)?;
    if cfg.mlp.is_plain_gelu() && blk.mlp_act_scale != blk.mlp_hidden_scale {
        return Err(param(
            b,
            msg!("GELU MLP: mlp_act_scale must equal mlp_hidden_scale"),
        ));
    }
    // The projections in file order, one [`check_matrix`] call for all (a table instead of one
    // inlined call per matrix: smaller code, the same checks in the same order).
    const NAMES: [(&str, &str); 7] = [
        (msg!("wq.weights"), msg!("wq.scales")),
        (msg!("wk.weights"), msg!("wk.scales")),
        (msg!("wv.weights"), msg!("wv.scales")),
        (msg!("wo.weights"), msg!("wo.scales")),
        (msg!("w1.weights"), msg!("w1.scales")),
        (msg!("w3.weights"), msg!("w3.scales")),
        (msg!("w2.weights"), msg!("w2.scales")),
    ];
    for (k, (m, names)) in blk.projections().into_iter().zip(NAMES).enumerate() {
        // `[rows][cols]`: `[d][d]`, `w1` and `w3` `[hidden][d]`, `w2` `[d][hidden]`.
        let (rows, cols) = match k {
            4 | 5 => (hidden, d),
            6 => (d, hidden),
            _ => (d, d),
        };
        if k == 5 && m.is_some() != cfg.mlp.is_gated() {
            return Err(param(
                b,
                match m {
                    Some(_) => msg!("w3 present for a non-gated MLP"),
                    None => msg!("w3 missing for a gated MLP"),
                },
            ));
        }
        if let Some(m) = m {
            check_matrix(
                b,
                Role::Product,
                (
                    names.0,
                    names.1,
                    msg!("weight scale must be finite and > 0"),
                ),
                m,
                rows,
                cols,
            )?;
        }
    }
    Ok(())
}

#[inline(never)]
pub(super) fn check_desc(desc: &GptDesc) -> Result<Dims, Error> {
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
        return Err(param(
            None,
            msg!("n_layer differs from the number of blocks"),
        ));
    }
    let d = check_dim(cfg.d_model, msg!("d_model must be in 1..=2^16"))?;
    let hidden = check_dim(cfg.hidden, msg!("hidden must be in 1..=2^16"))?;
    let block = check_dim(cfg.block_size, msg!("block_size must be in 1..=2^16"))?;
    let vocab = cfg.vocab_size as usize;
    if vocab == 0 {
        return Err(param(None, msg!("vocab_size is 0")));
    }
    let n_head = cfg.n_head as usize;
    if n_head == 0 || !d.is_multiple_of(n_head) {
        return Err(param(None, msg!("n_head must divide d_model")));
    }
    let hd = d / n_head;
    if !valid_scale(cfg.norm_eps) {
        return Err(param(None, msg!("norm_eps must be finite and > 0")));
    }
    if !valid_scale(desc.head_in_scale) {
        return Err(param(None, msg!("head_in_scale must be finite and > 0")));
    }
    check_vocab(desc, vocab)?;

    let bad = msg!("weight scale must be finite and > 0");
    let tok_role = if cfg.tied_head {
        Role::TiedHead
    } else {
        Role::Table
    };
    check_matrix(
        None,
        tok_role,
        (msg!("tok_emb.weights"), msg!("tok_emb.scales"), bad),
        &desc.tok_emb,
        vocab,
        d,
    )?;
    match (cfg.position, &desc.pos_emb, &desc.rope) {
        (GptPosition::Learned, Some(pe), None) => check_matrix(
            None,
            Role::Table,
            (msg!("pos_emb.weights"), msg!("pos_emb.scales"), bad),
            pe,
            block,
            d,
        )?,
        (GptPosition::Rope, None, Some(r)) => {
            if !hd.is_multiple_of(2) {
                return Err(param(None, msg!("RoPE needs an even head size")));
            }
            let n = block.checked_mul(hd / 2).ok_or(overflow(None))?;
            let unit = |v: f32| v.is_finite() && (-1.0..=1.0).contains(&v);
            check_f32s(
                None,
                msg!("rope.cos"),
                msg!("rope value out of [-1, 1]"),
                r.cos,
                n,
                unit,
            )?;
            check_f32s(
                None,
                msg!("rope.sin"),
                msg!("rope value out of [-1, 1]"),
                r.sin,
                n,
                unit,
            )?;
        }
        (GptPosition::Learned, _, _) => {
            return Err(param(
                None,
                msg!("learned positions need pos_emb and no rope"),
            ))
        }
        (GptPosition::Rope, _, _) => {
            return Err(param(None, msg!("RoPE needs rope tables and no pos_emb")))
        }
    }
    for (i, blk) in desc.blocks.as_slice().iter().enumerate() {
        check_block(i, blk, cfg, d, hidden)?;
    }
    check_norm(
        None,
        cfg.norm,
        &desc.ln_f,
        d,
        (msg!("ln_f.weight"), msg!("ln_f.bias")),
    )?;
    match (&desc.lm_head, cfg.tied_head) {
        (Some(h), false) => check_matrix(
            None,
            Role::Product,
            (msg!("lm_head.weights"), msg!("lm_head.scales"), bad),
            h,
            vocab,
            d,
        )?,
        (None, true) => {} // the head is the token table (checked above)
        (Some(_), true) => return Err(param(None, msg!("lm_head present with a tied head"))),
        (None, false) => return Err(param(None, msg!("lm_head missing (head not tied)"))),
    }

    // State sizes.
    let n_layer = declared;
    let gated = cfg.mlp.is_gated();
    let kv_layer = block.checked_mul(d).ok_or(overflow(None))?;
    let layout = StateLayout::new(d, block, hidden, gated, vocab, n_layer).ok_or(overflow(None))?;
    Ok(Dims {
        n_layer,
        n_head,
        d,
        hd,
        hidden,
        block,
        vocab,
        kv_layer,
        layout,
    })
}
