//! The attention kernel for Armv7E-M: `Q·Kᵀ` scores ([`qk_scores`]: the fully connected loop
//! for one query, the 2×2 micro-kernel of [`super::gemm`] for several). (The single int8 × int8
//! dot product is [`super::dot`]'s `dot_i8` with the second operand viewed as bytes.)

use core::mem::MaybeUninit;

use super::gemm::{extend_pair, gemm2x2_i32, GemmArgs};
use crate::kernels::attention::check_qk_scores;
use crate::kernels::portable;
use crate::Error;

/// Largest `d` of the DSP `qk_scores` (A buffer on the stack: `4 · MAX_D` bytes, uninitialised).
const MAX_D: usize = 256;

/// [`crate::kernels::qk_scores`] for Armv7E-M.
pub fn qk_scores(q: &[i8], k: &[i8], d: usize, scores: &mut [i32]) -> Result<(), Error> {
    let (tq, tk) = check_qk_scores(q, k, d, scores)?;
    if tq == 1 {
        // One query (decoding): the keys are the rows of a matrix-vector product, which the
        // fully connected loop does with the query sign-extended once (half the work of a 2x2
        // tile with a duplicated query row).
        return super::linear::matvec_i32(q, crate::kernels::i8_as_bytes(k), scores);
    }
    if !d.is_multiple_of(4) || d > MAX_D || tk < 2 || tq == 0 {
        return portable::qk_scores(q, k, d, scores);
    }
    let mut abuf = [const { MaybeUninit::<u32>::uninit() }; MAX_D];
    let kpairs = tk / 2;
    for i in (0..tq).step_by(2) {
        let i1 = (i + 1).min(tq - 1);
        extend_pair(&mut abuf[..d], &q[i * d..][..d], &q[i1 * d..][..d]);
        let a = abuf.as_ptr().cast::<u32>();
        let out = scores[i * tk..].as_mut_ptr().cast::<u8>();
        let args = GemmArgs {
            a,
            a_end: a.wrapping_add(d),
            b: k.as_ptr().cast(),
            kreg: d as isize - 4,
            b_adv: d as isize,
            end: out.wrapping_add(8 * kpairs),
            duff: 0,
            out,
            out1: ((i1 - i) * tk * 4) as isize,
            table: core::ptr::null(),
            lo: 0,
            c1off: 0,
        };
        // SAFETY: abuf[..d] was written by `extend_pair` (d/4 steps of 4 words, d >= 4),
        // 4-aligned; B pairs p < kpairs read key rows 2p and 2p+1 (d bytes each, `kreg = d - 4`,
        // `b_adv = d`), inside `k`; the kernel writes scores[i][0..2·kpairs] and the same in row
        // i1 (`out1`), inside `scores` (tq·tk i32, 4-aligned).
        unsafe { gemm2x2_i32(&args) };
        if tk % 2 == 1 {
            let last = &k[(tk - 1) * d..];
            scores[i * tk + tk - 1] = portable::dot_i8_i8(&q[i * d..][..d], last);
            scores[i1 * tk + tk - 1] = portable::dot_i8_i8(&q[i1 * d..][..d], last);
        }
    }
    Ok(())
}
