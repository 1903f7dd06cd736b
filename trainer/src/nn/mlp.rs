//! The transformer feed-forward network.

pub use aka_core::format::GptMlp;

use super::gpt::{Pass, INIT_STD};
use super::{qat, Init, ParamSource};
use crate::autograd::{GateAct, Tensor};

/// The feed-forward network on rows `x: [b·t, d]`, bias-free:
/// `Gelu`: `w2 · gelu(w1 · x)`; gated (`SwiGlu`, `GeGlu`): `w2 · (act(w1 · x) ⊙ (w3 · x))` with
/// act = SiLU / GELU (tanh approximation).
pub struct Mlp {
    /// Which variant.
    pub kind: GptMlp,
    /// Up projection `[hidden, d]` (the activated branch when gated).
    pub w1: Tensor,
    /// Down projection `[d, hidden]` (a residual projection: init scaled by `1/√(2·n_layer)`).
    pub w2: Tensor,
    /// Gate's linear branch `[hidden, d]`; `Some` exactly for SwiGLU/GeGLU.
    pub w3: Option<Tensor>,
}

impl Mlp {
    /// Takes `{prefix}.w1` `[hidden, d]`, `{prefix}.w2` `[d, hidden]` (init `resid_std`) and,
    /// when gated, `{prefix}.w3` `[hidden, d]` from `params`.
    pub(crate) fn build(
        prefix: &str,
        kind: GptMlp,
        d: usize,
        hidden: usize,
        resid_std: f32,
        params: &mut ParamSource,
    ) -> Self {
        let w1 = params.take(format!("{prefix}.w1"), &[hidden, d], Init::Normal(INIT_STD));
        let w2 = params.take(
            format!("{prefix}.w2"),
            &[d, hidden],
            Init::Normal(resid_std),
        );
        let w3 = kind
            .is_gated()
            .then(|| params.take(format!("{prefix}.w3"), &[hidden, d], Init::Normal(INIT_STD)));
        Self { kind, w1, w2, w3 }
    }

    /// `x: [b·t, d] -> [b·t, d]`. Taps `mlp_in`, `mlp_gate`, `mlp_act`, `mlp_hidden`.
    pub(crate) fn forward(&self, x: &Tensor, pass: &mut Pass) -> Tensor {
        pass.emit("mlp_in", |p| p.rows(x)); // [b, t, d]
        let w1 = qat::weight(&self.w1);
        let hidden = match &self.w3 {
            None if self.kind == GptMlp::GeluErf => x.linear(&w1, None).gelu_erf(), // [b·t, hidden]
            None => x.linear(&w1, None).gelu(),                                     // [b·t, hidden]
            Some(w3) => {
                let ug = x.linear_cat(&[&w1, &qat::weight(w3)]); // [b·t, 2·hidden] = [w1·x | w3·x]
                let act = if self.kind == GptMlp::SwiGlu {
                    GateAct::Silu
                } else {
                    GateAct::Gelu
                };
                ug.gated(act) // [b·t, hidden]
            }
        };
        if pass.tapping() {
            // What the int8 runtime quantizes inside the MLP: the up-projection (the index of
            // its activation table) and the activation (the table's values).
            let gate = x.linear(&w1, None); // [b·t, hidden]
            let act = match self.kind {
                GptMlp::SwiGlu => gate.mul(&gate.sigmoid()), // [b·t, hidden]
                GptMlp::Gelu | GptMlp::GeGlu => gate.gelu(), // [b·t, hidden]
                GptMlp::GeluErf => gate.gelu_erf(),          // [b·t, hidden]
            };
            pass.emit("mlp_gate", |p| p.rows(&gate)); // [b, t, hidden]
            pass.emit("mlp_act", |p| p.rows(&act)); // [b, t, hidden]
        }
        pass.emit("mlp_hidden", |p| p.rows(&hidden)); // [b, t, hidden]
        hidden.linear(&qat::weight(&self.w2), None) // [b·t, d]
    }
}
