//! The GPT's normalization, fused with int8 quantization: LayerNorm or RMSNorm in f32, then
//! [`quantize`].

use super::quantize::{le_f32, quantize};
use crate::format::{GptNorm, NormParams};

/// `out = Q(norm(x), 1/s)` (`x`, `out`: `[d]`; `p.weight`, `p.bias`: `d` f32 LE): LayerNorm
/// `(v−μ)·rstd·w + b` with `μ = (Σx)/d`, `rstd = 1/sqrtf(max((Σx²)/d − μ², 0) + ε)` (one pass
/// over `x`), or RMSNorm `v·r·w` with `r = 1/sqrtf((Σx²)/d + ε)` (sums left to right),
/// quantized with `1/s`.
pub fn norm_q(kind: GptNorm, eps: f32, x: &[f32], p: &NormParams, s: f32, out: &mut [i8]) {
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
