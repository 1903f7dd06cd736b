//! One pre-norm transformer block.

use super::gpt::{GptConfig, Pass};
use super::{Attention, Mlp, Norm, ParamSource};
use crate::autograd::Tensor;
use aka_core::format::GptPosition;

/// One pre-norm transformer block on rows `x: [b·t, d]`:
/// `x = x + attn(ln1(x)); x = x + mlp(ln2(x))` (dropout on each branch while training).
pub struct Block {
    /// Norm before attention.
    pub ln1: Norm,
    /// Self-attention.
    pub attn: Attention,
    /// Norm before the MLP.
    pub ln2: Norm,
    /// Feed-forward network.
    pub mlp: Mlp,
}

impl Block {
    /// Takes `{prefix}.ln1.*`, `{prefix}.attn.*`, `{prefix}.ln2.*`, `{prefix}.mlp.*` from
    /// `params`, in that order.
    pub(crate) fn build(prefix: &str, cfg: &GptConfig, params: &mut ParamSource) -> Self {
        let (d, resid_std) = (cfg.d_model, cfg.resid_std());
        let norm = |name: &str, params: &mut ParamSource| {
            Norm::build(
                &format!("{prefix}.{name}"),
                cfg.norm,
                d,
                cfg.norm_eps,
                params,
            )
        };
        let ln1 = norm("ln1", params);
        let attn = Attention::build(
            &format!("{prefix}.attn"),
            d,
            cfg.n_head,
            cfg.position == GptPosition::Rope,
            resid_std,
            params,
        );
        let ln2 = norm("ln2", params);
        let mlp = Mlp::build(
            &format!("{prefix}.mlp"),
            cfg.mlp,
            d,
            cfg.hidden(),
            resid_std,
            params,
        );
        Self {
            ln1,
            attn,
            ln2,
            mlp,
        }
    }

    /// `x: [b·t, d] -> [b·t, d]`.
    pub(crate) fn forward(&self, x: &Tensor, pass: &mut Pass) -> Tensor {
        let attn = self.attn.forward(&self.ln1.forward(x), pass);
        let x = x.add(&pass.dropout(attn)); // x = x + attn(ln1(x))
        let mlp = self.mlp.forward(&self.ln2.forward(&x), pass);
        x.add(&pass.dropout(mlp)) // x = x + mlp(ln2(x))
    }
}
