//! Which matrices of a GPT the exporter makes int4 ([`GptWeights`]); re-exported from
//! [`super::gpt`].

use anyhow::ensure;

use super::quantize::WeightBits;
use crate::autograd::Tensor;
use crate::nn::gpt::Gpt;

/// Which GPT matrices are int4: `weights` for every projection (`wq wk wv wo w1 w2 w3`) and an
/// untied `lm_head`, except the roles in `int8`. The embeddings (and so a tied head) are
/// always int8. The int8 projections and the head (untied, or the token table of a tied one)
/// are written in the offset-binary layout (`WeightType::Int8Offset`, same values and results,
/// a faster Cortex-M4 kernel) when their column count is a multiple of 8, unless `plain_int8`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GptWeights {
    /// The precision of the matrices not kept int8.
    pub weights: WeightBits,
    /// Roles kept int8 (`"wq"`, ..., `"w3"`, `"lm_head"`), in every block.
    pub int8: Vec<String>,
    /// Write the int8 matrices as plain int8 rows (`WeightType::Int8`) instead of the
    /// offset-binary layout (for comparisons; both give bit-identical results).
    pub plain_int8: bool,
}

/// The roles a [`GptWeights`] rule can name.
pub const MATRIX_ROLES: [&str; 8] = ["wq", "wk", "wv", "wo", "w1", "w2", "w3", "lm_head"];

impl GptWeights {
    /// Checks that every `int8` role is one of [`MATRIX_ROLES`].
    pub fn validate(&self) -> anyhow::Result<()> {
        for r in &self.int8 {
            ensure!(
                MATRIX_ROLES.contains(&r.as_str()),
                "unknown matrix {r:?} (one of {})",
                MATRIX_ROLES.join(", ")
            );
        }
        Ok(())
    }

    /// The precision of matrices of `role`.
    pub fn bits_of(&self, role: &str) -> WeightBits {
        if self.int8.iter().any(|r| r == role) {
            WeightBits::Int8
        } else {
            self.weights
        }
    }

    /// Every projection (and an untied head) of `model` with its precision: what the exporter
    /// quantizes per row and quantization-aware training fake-quantizes.
    pub fn plan(&self, model: &Gpt) -> Vec<(Tensor, WeightBits)> {
        let mut out = Vec::new();
        for b in &model.blocks {
            let a = &b.attn;
            for (role, t) in [("wq", &a.wq), ("wk", &a.wk), ("wv", &a.wv), ("wo", &a.wo)] {
                out.push((t.clone(), self.bits_of(role)));
            }
            out.push((b.mlp.w1.clone(), self.bits_of("w1")));
            out.push((b.mlp.w2.clone(), self.bits_of("w2")));
            if let Some(w3) = &b.mlp.w3 {
                out.push((w3.clone(), self.bits_of("w3")));
            }
        }
        if let Some(h) = &model.lm_head {
            out.push((h.clone(), self.bits_of("lm_head")));
        }
        out
    }

    /// One line for the terminal, e.g. `int4 weights (wo, w2 kept int8; embeddings int8)`.
    pub fn describe(&self) -> String {
        match (self.weights, self.int8.is_empty()) {
            (WeightBits::Int8, _) => "int8 weights".into(),
            (WeightBits::Int4, true) => "int4 weights (embeddings and a tied head int8)".into(),
            (WeightBits::Int4, false) => format!(
                "int4 weights ({} kept int8; embeddings and a tied head int8)",
                self.int8.join(", ")
            ),
        }
    }
}
