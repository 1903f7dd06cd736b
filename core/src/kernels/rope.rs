//! Rotary position embedding (RoPE), rotate-half form, in f32.

use super::quantize::le_f32;

/// Rotate-half RoPE on every head of `x` (`[n_head][hd]`): per head, the pairs `(i, i + hd/2)`
/// become `(a·cos − b·sin, b·cos + a·sin)`. `cos`/`sin`: the `hd / 2` f32 LE values of this
/// position.
pub fn rope_rotate(x: &mut [f32], hd: usize, cos: &[u8], sin: &[u8]) {
    let half = hd / 2;
    if half == 0 {
        return;
    }
    for head in x.chunks_exact_mut(hd) {
        let (x1, x2) = head.split_at_mut(half);
        for (((a, b), c), s) in x1
            .iter_mut()
            .zip(x2.iter_mut())
            .zip(cos.chunks_exact(4).map(le_f32))
            .zip(sin.chunks_exact(4).map(le_f32))
        {
            let (va, vb) = (*a, *b);
            *a = va * c - vb * s;
            *b = vb * c + va * s;
        }
    }
}
