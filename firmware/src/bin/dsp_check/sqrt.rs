//! `kernels::sqrt_f32` (one `VSQRT.F32` on this FPU target) against `libm::sqrtf` (the portable
//! version, software): the same bits, or both NaN.

use aka_core::kernels;
use aka_core::rng::Rng;

use super::{rand_pow2, Bufs, Tally};

/// The edges: zeros, subnormals, the normal range's ends, around 1 and 4, infinities, NaNs
/// (quiet, signalling, negative) and negative inputs (NaN results).
const SPECIAL: [u32; 28] = [
    0x0000_0000, // 0
    0x8000_0000, // -0
    0x0000_0001, // smallest subnormal
    0x0000_0002,
    0x0000_0003,
    0x0040_0000,
    0x007f_ffff, // largest subnormal
    0x0080_0000, // f32::MIN_POSITIVE
    0x0080_0001,
    0x3f7f_ffff, // 1 - 2^-24
    0x3f80_0000, // 1
    0x3f80_0001, // 1 + 2^-23
    0x4000_0000, // 2
    0x407f_ffff,
    0x4080_0000, // 4
    0x3727_c5ac, // 1e-5 (a norm's eps)
    0x3586_37bd, // 1e-6
    0x7f7f_ffff, // f32::MAX
    0x7f80_0000, // +inf
    0xff80_0000, // -inf
    0x7fc0_0000, // NaN
    0xffc0_0000, // -NaN
    0x7f80_0001, // signalling NaN
    0x7fff_ffff,
    0xbf80_0000, // -1
    0x8000_0001, // -smallest subnormal
    0x8080_0000, // -MIN_POSITIVE
    0xff7f_ffff, // -MAX
];

/// The input of case `case`: the special values first, then in turn a random bit pattern (any
/// sign, NaNs and subnormals included), a random positive finite one, a LayerNorm/RMSNorm
/// argument `var + eps` (variance log-uniform in `[2^-30, 2^20)` or exactly 0, eps 1e-5 or 1e-6)
/// and a head dimension `hd` (the attention's `1/sqrt(hd)`).
fn input(rng: &mut Rng, case: u32) -> f32 {
    if let Some(&bits) = SPECIAL.get(case as usize) {
        return f32::from_bits(bits);
    }
    match case % 4 {
        0 => f32::from_bits(rng.next_u32()),
        1 => f32::from_bits(rng.below(0x7f80_0000)),
        2 => {
            let var = if rng.below(16) == 0 {
                0.0
            } else {
                rand_pow2(rng, -30, 20) as f32
            };
            let eps = if rng.below(2) == 0 { 1e-5 } else { 1e-6 };
            var + eps
        }
        _ => (1 + rng.below(1024)) as f32,
    }
}

pub(crate) fn check_sqrt(rng: &mut Rng, _b: &mut Bufs, t: &mut Tally, case: u32) {
    let x = input(rng, case);
    let (got, want) = (kernels::sqrt_f32(x), libm::sqrtf(x));
    let ok = if want.is_nan() {
        got.is_nan()
    } else {
        got.to_bits() == want.to_bits()
    };
    // Every case runs the `VSQRT.F32` (the firmware targets are all `eabihf`).
    t.on_dsp_path(true);
    if !ok {
        defmt::error!(
            "sqrt_f32({=u32:#x}) = {=u32:#x}, libm::sqrtf {=u32:#x}",
            x.to_bits(),
            got.to_bits(),
            want.to_bits()
        );
    }
    t.check(ok, "sqrt_f32", case);
}
