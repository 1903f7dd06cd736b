//! The GPT's normalization, fused with int8 quantization: LayerNorm or RMSNorm in f32, then
//! [`quantize`].

use super::quantize::{le_f32, quantize};
use crate::format::{GptNorm, NormParams};

/// `out = Q(norm(x), 1/s)` (`x`, `out`: `[d]`; `p.weight`, `p.bias`: `d` f32 LE): LayerNorm
/// `(v−μ)·rstd·w + b` with `μ = (Σx)/d`, `rstd = 1/sqrt(max((Σx²)/d − μ², 0) + ε)` (one pass
/// over `x`), or RMSNorm `v·r·w` with `r = 1/sqrt((Σx²)/d + ε)` (sums left to right),
/// quantized with `1/s`. The square root is [`sqrt_f32`] (correctly rounded).
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
            let rstd = 1.0 / sqrt_f32(var + eps);
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
            let r = 1.0 / sqrt_f32(ss / n + eps);
            for ((o, &v), wi) in out.iter_mut().zip(x).zip(w) {
                *o = quantize(v * r * wi, inv_s);
            }
        }
    }
}

/// `√x`, correctly rounded (IEEE 754 `squareRoot`, as `libm::sqrtf`): the same bits on every
/// target. `-0` for `-0`, `+inf` for `+inf`, NaN for NaN and for `x < 0`.
///
/// On Arm with a hardware FPU (the `eabihf` targets: Cortex-M4F, M7, M33, ...) one `VSQRT.F32`
/// (14 cycles on a Cortex-M4F, plus a call) instead of `libm::sqrtf`'s software routine (212 B
/// of code and a 256 B table there); elsewhere `libm::sqrtf`. The two agree bit for bit (NaN
/// for NaN): checked over special values, random bit patterns and normalization arguments by
/// the firmware's `dsp_check` in QEMU. The norms' `1/sqrt(var + ε)` and the attention's
/// `1/sqrt(hd)` use it.
#[inline]
pub fn sqrt_f32(x: f32) -> f32 {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        vsqrt_f32(x)
    }
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    {
        libm::sqrtf(x)
    }
}

/// One `VSQRT.F32`: a naked function, `x` and the result in `s0` (the hard-float ABI's first
/// `f32` argument and return register).
///
/// Gated on `target_abi = "eabihf"` (the hard-float ABI: an FPU with `VSQRT.F32`), not on a
/// target feature: on stable Rust (checked with 1.95) Arm target features are invisible to
/// `cfg` (see build.rs). Not an inline `asm!`: 1.95 refuses the FPU register class `sreg` on
/// `thumbv7em-none-eabihf` ("requires the `vfp2` target feature", which includes double
/// precision; rust-lang/rust#159988 relaxes it later), and `f32::sqrt` is not in `core`. The
/// instruction is written as its encoding, `vsqrt.f32 s0, s0` in both Thumb-2 (T1) and A32
/// (condition AL): naked functions are module-level assembly, which LLVM assembles without the
/// target's FPU, and a `.fpu` directive would also rewrite the object's `Tag_FP_arch`.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
// SAFETY: the hard-float procedure call standard passes `x` in `s0` and returns the `f32` in
// `s0`; the body reads and writes only `s0` (and FPSCR's cumulative exception flags), no memory
// and no stack, and returns with `bx lr`.
#[allow(unsafe_code)]
#[unsafe(naked)]
extern "C" fn vsqrt_f32(x: f32) -> f32 {
    core::arch::naked_asm!(
        ".inst 0xeeb10ac0", // vsqrt.f32 s0, s0
        "bx lr",
    )
}

#[cfg(test)]
mod tests {
    use super::sqrt_f32;

    #[test]
    fn sqrt_f32_is_correctly_rounded() {
        extern crate std;
        // Every 4099th bit pattern (both signs, subnormals, infinities, NaNs) and the edges,
        // against f64's square root rounded to f32: exact, since 53 >= 2·24 + 2 bits.
        let edges = [
            0,
            0x8000_0000,
            1,
            0x007f_ffff,
            0x3f80_0000,
            0x7f7f_ffff,
            0x7f80_0000,
        ];
        for bits in (0..=u32::MAX).step_by(4099).chain(edges) {
            let x = f32::from_bits(bits);
            let (got, want) = (sqrt_f32(x), (x as f64).sqrt() as f32);
            if want.is_nan() {
                assert!(got.is_nan(), "sqrt_f32({x:e}) = {got:e}, want NaN");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "sqrt_f32({x:e})");
            }
        }
        assert_eq!(sqrt_f32(-0.0).to_bits(), 0x8000_0000);
        assert!(sqrt_f32(-1.0).is_nan());
    }
}
