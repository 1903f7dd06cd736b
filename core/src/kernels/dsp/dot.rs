//! The single int8 dot product [`dot_i8`] for Armv7E-M: both operands are read in place (any
//! alignment) and sign-extended on the fly, 4 elements per step (`dot4`; the attention's
//! `dot_i8_i8` is the same with the second operand viewed as bytes):
//!
//! ```text
//! ldr a, [pa], #4 ; ldr b, [pb], #4
//! sxtb16 ae, a ; sxtb16 a, a, ror #8 ; sxtb16 be, b ; sxtb16 b, b, ror #8
//! smlad acc, ae, be, acc ; smlad acc, a, b, acc
//! ```
//!
//! 8 instructions per 4 MACs (unrolled 4× with a Duff entry), the bound for a dot product whose
//! operands are both used once; the 0–3 trailing elements are done in Rust.

use crate::kernels::portable;

/// One step: 4 elements, 8 instructions, all 32 bits wide (32 bytes, for the Duff entry).
#[rustfmt::skip]
macro_rules! dot_step {
    () => {
        concat!(
            "ldr.w r4, [r0], #4\n",
            "ldr.w r5, [r1], #4\n",
            "sxtb16 r6, r4\n",
            "sxtb16 r4, r4, ror #8\n",
            "sxtb16 r7, r5\n",
            "sxtb16 r5, r5, ror #8\n",
            "smlad r12, r6, r7, r12\n",
            "smlad r12, r4, r5, r12\n",
        )
    };
}

/// `Σ a[i]·b[i]` over `4 · words` int8 elements at `a` and `b`.
///
/// # Safety
///
/// `words >= 1`; `a` and `b` readable for `4 · words` bytes each (any alignment).
#[unsafe(naked)]
unsafe extern "C" fn dot4(a: *const u8, b: *const u8, words: usize) -> i32 {
    core::arch::naked_asm!(
        "push {{r4-r7, lr}}",
        "mov r12, #0",
        "add r3, r0, r2, lsl #2", // end of a
        "and r2, r2, #3",
        "rsb r2, r2, #4",
        "and r2, r2, #3", // steps skipped in the first pass
        "adr.w lr, 20f",
        "add lr, lr, r2, lsl #5", // 32 bytes per step
        "orr lr, lr, #1",
        "bx lr",
        ".p2align 2",
        "20:",
        dot_step!(),
        dot_step!(),
        dot_step!(),
        dot_step!(),
        "cmp r0, r3",
        "bne 20b",
        "mov r0, r12",
        "pop {{r4-r7, pc}}",
    )
}

/// [`crate::kernels::dot_i8`] for Armv7E-M: whole words in assembly, the 0-3 trailing elements
/// with the portable dot.
#[inline]
pub fn dot_i8(x: &[i8], w: &[u8]) -> i32 {
    let n = x.len().min(w.len());
    let words = n / 4;
    if words < 2 {
        return portable::dot_i8(x, w);
    }
    // SAFETY: words >= 1 and both slices hold at least 4·words bytes.
    let acc = unsafe { dot4(x.as_ptr().cast(), w.as_ptr(), words) };
    acc.wrapping_add(portable::dot_i8(&x[4 * words..n], &w[4 * words..n]))
}
