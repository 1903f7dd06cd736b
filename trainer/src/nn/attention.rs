//! Causal multi-head self-attention.

use super::gpt::{Pass, INIT_STD};
use super::{qat, Init, ParamSource};
use crate::autograd::Tensor;

/// Causal multi-head self-attention with separate bias-free projections, all `[d, d]`
/// (PyTorch layout, `y = x·Wᵀ`), on rows `x: [b·t, d]`:
///
/// ```text
/// [q | k | v] = x · [wq; wk; wv]ᵀ             [b·t, 3d], each row [n_head, head_dim]
/// q, k = rope(q), rope(k)                      (RoPE positions only)
/// o_h = causal_softmax(q_h·k_hᵀ / √head_dim) · v_h   per head h
/// y = [o_1 | … | o_h] · woᵀ                    [b·t, d]
/// ```
pub struct Attention {
    /// Query projection `[d, d]`.
    pub wq: Tensor,
    /// Key projection `[d, d]`.
    pub wk: Tensor,
    /// Value projection `[d, d]`.
    pub wv: Tensor,
    /// Output projection `[d, d]` (a residual projection: init scaled by `1/√(2·n_layer)`).
    pub wo: Tensor,
    /// Number of heads; `head_dim = d / n_head`.
    pub n_head: usize,
    /// Rotate q and k with RoPE (positions `0..t`).
    pub rope: bool,
}

impl Attention {
    /// Takes `{prefix}.{wq,wk,wv,wo}`, each `[d, d]`, from `params` (`wo` initialised with
    /// `resid_std`, the others with [`INIT_STD`]).
    pub(crate) fn build(
        prefix: &str,
        d: usize,
        n_head: usize,
        rope: bool,
        resid_std: f32,
        params: &mut ParamSource,
    ) -> Self {
        let mut w = |name: &str, std: f32| {
            params.take(format!("{prefix}.{name}"), &[d, d], Init::Normal(std))
        };
        Self {
            wq: w("wq", INIT_STD),
            wk: w("wk", INIT_STD),
            wv: w("wv", INIT_STD),
            wo: w("wo", resid_std),
            n_head,
            rope,
        }
    }

    /// `x: [b·t, d] -> [b·t, d]`. Taps `attn_in`, `q`, `k`, `v`, `attn_probs`, `attn_out`.
    pub(crate) fn forward(&self, x: &Tensor, pass: &mut Pass) -> Tensor {
        let (t, h) = (pass.t, self.n_head);
        let d = x.shape()[1];
        pass.emit("attn_in", |p| p.rows(x)); // [b, t, d]
        let (wq, wk, wv) = (
            qat::weight(&self.wq),
            qat::weight(&self.wk),
            qat::weight(&self.wv),
        );
        let mut qkv = x.linear_cat(&[&wq, &wk, &wv]); // [b·t, 3d] = [q | k | v]
        if self.rope {
            qkv = qkv.rope_rows(t, d / h, 2 * d, 0); // q and k rotated
        }
        pass.emit("q", |p| p.heads(&qkv, 0, h)); // [b, h, t, hd]
        pass.emit("k", |p| p.heads(&qkv, 1, h)); // [b, h, t, hd]
        pass.emit("v", |p| p.heads(&qkv, 2, h)); // [b, h, t, hd]
        let keep_probs = pass.tapping();
        let (att, probs) = qkv.causal_attention(t, h, pass.attn_dropout(), keep_probs); // [b·t, d]
        if let Some(probs) = probs {
            pass.emit("attn_probs", |_| Tensor::new(probs)); // [b, h, t, t]
        }
        pass.emit("attn_out", |p| p.rows(&att)); // [b, t, d]
        att.linear(&qat::weight(&self.wo), None) // [b·t, d]
    }
}
