//! Fused multi-head causal attention ([`Tensor::causal_attention`]) on the GPT's row layout.
//!
//! Activations inside a GPT block stay 2-D, `[b·t, cols]` with rows in `(batch, position)`
//! order, so splitting and merging heads costs no permute or copy: a projection row is
//! `[n_head, head_dim]` (what `x·Wᵀ` produces), and the attention reads and writes that layout
//! directly. Per head, the products are single-threaded `gemm` crate calls on the rows in place
//! (any strides, so no transposed copies); batch elements are split across the rayon pool, so
//! each product is computed whole by one task and results do not depend on the thread count.
//! The unfused composition of basic ops it must agree with lives in `trainer/tests/reference/`.

use aka_core::rng::Rng;
use rayon::prelude::*;

use super::math::exp_fast;
use super::matmul::gemm_one;
use super::{array, par_zeros, std_slice};
use crate::autograd::tensor::{Array, Tensor};

// Per-head matrix products.
//
// Per head, attention multiplies `[t, hd]` and `[t, t]` matrices (128 × 32 for the flagship).
// Each product is two single-threaded `gemm::gemm` calls reading the operands in place (rows of
// the fused `[t, 3d]` input, their transposes by strides), one per half of the output rows, so
// that the causal zeros cost only a quarter of the full square instead of half: at these sizes
// the `gemm` kernel runs ~4× as fast per multiply-add as the causal register tiles it replaces
// (issue 13), which more than pays for the zeros it still multiplies.

/// A read-only matrix operand in place: element `(i, k)` is `data[i·rs + k·cs]`, for a
/// `rows × cols` matrix that lies within `data` (checked by [`Operand::new`]).
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
    rows: usize,
    cols: usize,
}

impl<'a> Operand<'a> {
    /// A `rows × cols` matrix in `data` at strides `rs`, `cs`; panics if it does not fit.
    fn new(data: &'a [f32], rs: usize, cs: usize, rows: usize, cols: usize) -> Self {
        if rows > 0 && cols > 0 {
            assert!(
                (rows - 1) * rs + (cols - 1) * cs < data.len(),
                "operand outside its slice"
            );
        }
        Self {
            data,
            rs,
            cs,
            rows,
            cols,
        }
    }

    /// Rows `r0..r1` and columns `c0..c1` of this matrix.
    fn block(self, r0: usize, r1: usize, c0: usize, c1: usize) -> Self {
        assert!(
            r0 <= r1 && r1 <= self.rows && c0 <= c1 && c1 <= self.cols,
            "block outside"
        );
        let at = r0 * self.rs + c0 * self.cs;
        let data = if r1 > r0 && c1 > c0 {
            &self.data[at..]
        } else {
            &self.data[..0]
        };
        Self::new(data, self.rs, self.cs, r1 - r0, c1 - c0)
    }

    /// Row-major `rows × cols`, rows `rs` apart.
    fn rows(data: &'a [f32], rs: usize, rows: usize, cols: usize) -> Self {
        Self::new(data, rs, 1, rows, cols)
    }

    /// The transpose of the row-major `cols × rows` matrix whose rows are `rs` apart.
    fn transposed(data: &'a [f32], rs: usize, rows: usize, cols: usize) -> Self {
        Self::new(data, 1, rs, rows, cols)
    }
}

/// `c = a·b` (`[m, k]·[k, n]`) into the row-major `c` (rows `ldc` apart), one single-threaded
/// `gemm::gemm` call: every element of `c`'s `m × n` block is written, none read.
fn product(a: Operand<'_>, b: Operand<'_>, c: &mut [f32], ldc: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "output outside its slice");
    // SAFETY: `Operand::new` checked that `a` and `b` lie within their slices, and the assert
    // above that the `m × n` block at stride `ldc` lies within `c`; `c` is a unique borrow, so
    // it aliases neither operand. β = 0 (`read_dst = false`): `c` is only written.
    unsafe {
        gemm_one(
            (m, n, k),
            (c.as_mut_ptr(), ldc as isize, 1),
            (a.data.as_ptr(), a.rs as isize, a.cs as isize),
            (b.data.as_ptr(), b.rs as isize, b.cs as isize),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Causal multi-head attention.

/// `c = a·b` where `a` is `[t, t]` lower-triangular (`a(i, k) = 0` for `k > i`), `b` `[t, n]`,
/// `c` rows `ldc` apart: the top half of the rows only reads the first half of `k`.
fn product_lower(a: Operand<'_>, b: Operand<'_>, c: &mut [f32], ldc: usize) {
    let (t, n) = (a.rows, b.cols);
    let h = t / 2;
    product(a.block(0, h, 0, h), b.block(0, h, 0, n), c, ldc);
    product(a.block(h, t, 0, t), b, &mut c[h * ldc..], ldc);
}

/// `c = a·b` where `a` is `[t, t]` upper-triangular (`a(i, k) = 0` for `k < i`), `b` `[t, n]`,
/// `c` rows `ldc` apart: the bottom half of the rows only reads the second half of `k`.
fn product_upper(a: Operand<'_>, b: Operand<'_>, c: &mut [f32], ldc: usize) {
    let (t, n) = (a.rows, b.cols);
    let h = t / 2;
    product(a.block(0, h, 0, t), b, c, ldc);
    product(
        a.block(h, t, h, t),
        b.block(h, t, 0, n),
        &mut c[h * ldc..],
        ldc,
    );
}

/// The lower triangle (and some of the upper) of `c = a·bᵀ`, `[t, t]` (rows `t` apart): the
/// top half of the rows is computed only left of the middle; what is left unwritten lies above
/// the diagonal.
fn product_scores(a: Operand<'_>, bt: Operand<'_>, c: &mut [f32]) {
    let (t, k) = (a.rows, a.cols);
    let h = t / 2;
    product(a.block(0, h, 0, k), bt.block(0, k, 0, h), c, t);
    product(a.block(h, t, 0, k), bt, &mut c[h * t..], t);
}

/// Shapes shared by the per-batch-element attention kernels.
#[derive(Clone, Copy)]
struct AttnDims {
    t: usize,
    /// Model width; the fused input rows are `3·d` wide, the output rows `d`.
    d: usize,
    hd: usize,
    n_head: usize,
    scale: f32,
}

/// The probabilities as used: `p ⊙ mask` (written into `buf`) when there is a dropout mask,
/// else `p` itself.
#[inline(always)]
fn dropped_out<'a>(buf: &'a mut Option<Vec<f32>>, p: &'a [f32], mask: Option<&[f32]>) -> &'a [f32] {
    match (buf, mask) {
        (Some(buf), Some(m)) => {
            for ((o, &p), &mm) in buf.iter_mut().zip(p).zip(m) {
                *o = p * mm;
            }
            buf
        }
        _ => p,
    }
}

/// Forward for one batch element: `xb` its `[t, 3d]` q|k|v rows, `ob` its `[t, d]` output rows,
/// `pb` its `[h, t, t]` probabilities (written), `mb` its dropout mask, if any.
#[inline(always)]
fn attn_fwd_body(dims: AttnDims, xb: &[f32], ob: &mut [f32], pb: &mut [f32], mb: Option<&[f32]>) {
    let AttnDims { t, d, hd, .. } = dims;
    let (tt, ld) = (t * t, 3 * d);
    let mut dropped = mb.map(|_| vec![0.0f32; tt]);
    for hi in 0..dims.n_head {
        let (qc, kc, vc) = (hi * hd, d + hi * hd, 2 * d + hi * hd);
        let ph = &mut pb[hi * tt..(hi + 1) * tt];
        // S = Q·Kᵀ (the lower triangle, which the softmax reads; the rest is overwritten)
        let q = Operand::rows(&xb[qc..], ld, t, hd);
        let kt = Operand::transposed(&xb[kc..], ld, hd, t);
        product_scores(q, kt, ph);
        for (i, row) in ph.chunks_exact_mut(t).enumerate() {
            softmax_scaled_in_place(&mut row[..=i], dims.scale);
            row[i + 1..].fill(0.0);
        }
        let p_used = dropped_out(&mut dropped, ph, mb.map(|m| &m[hi * tt..(hi + 1) * tt]));
        // O = P'·V
        let p = Operand::rows(p_used, t, t, t);
        let v = Operand::rows(&xb[vc..], ld, t, hd);
        product_lower(p, v, &mut ob[qc..], d);
    }
}

with_avx2!(attn_fwd, attn_fwd_body, (
    dims: AttnDims,
    xb: &[f32],
    ob: &mut [f32],
    pb: &mut [f32],
    mb: Option<&[f32]>,
));

/// Backward for one batch element: input rows `xb` (`[t, 3d]`), upstream gradient `gb`
/// (`[t, d]`), saved probabilities `pb` (`[h, t, t]`) and mask `mb`; writes `gxb` (`[t, 3d]`:
/// dq | dk | dv).
#[inline(always)]
fn attn_bwd_body(
    dims: AttnDims,
    xb: &[f32],
    gb: &[f32],
    pb: &[f32],
    mb: Option<&[f32]>,
    gxb: &mut [f32],
) {
    let AttnDims { t, d, hd, .. } = dims;
    let (tt, ld) = (t * t, 3 * d);
    let mut dp = vec![0.0f32; tt];
    let mut dropped = mb.map(|_| vec![0.0f32; tt]);
    for hi in 0..dims.n_head {
        let (qc, kc, vc) = (hi * hd, d + hi * hd, 2 * d + hi * hd);
        let ph = &pb[hi * tt..(hi + 1) * tt];
        let mh = mb.map(|m| &m[hi * tt..(hi + 1) * tt]);
        let p_used = dropped_out(&mut dropped, ph, mh);
        let go = Operand::rows(&gb[qc..], d, t, hd);
        // dV = P'ᵀ·dO
        product_upper(Operand::transposed(p_used, t, t, t), go, &mut gxb[vc..], ld);
        // dP = dO·Vᵀ (the lower triangle; the rest is overwritten)
        product_scores(go, Operand::transposed(&xb[vc..], ld, hd, t), &mut dp);
        // dS = P ⊙ (dP ⊙ mask - rowsum(P ⊙ dP ⊙ mask)) · scale, zero above the diagonal.
        for (i, (dr, pr)) in dp.chunks_exact_mut(t).zip(ph.chunks_exact(t)).enumerate() {
            let (dl, pl) = (&mut dr[..=i], &pr[..=i]);
            if let Some(m) = mh {
                for (x, &mm) in dl.iter_mut().zip(&m[i * t..]) {
                    *x *= mm;
                }
            }
            let s = dot_lanes(dl, pl);
            for (x, &p) in dl.iter_mut().zip(pl) {
                *x = p * (*x - s) * dims.scale;
            }
            dr[i + 1..].fill(0.0);
        }
        // dQ = dS·K ; dK = dSᵀ·Q
        let k = Operand::rows(&xb[kc..], ld, t, hd);
        let q = Operand::rows(&xb[qc..], ld, t, hd);
        product_lower(Operand::rows(&dp, t, t, t), k, &mut gxb[qc..], ld);
        product_upper(Operand::transposed(&dp, t, t, t), q, &mut gxb[kc..], ld);
    }
}

with_avx2!(attn_bwd, attn_bwd_body, (
    dims: AttnDims,
    xb: &[f32],
    gb: &[f32],
    pb: &[f32],
    mb: Option<&[f32]>,
    gxb: &mut [f32],
));

impl Tensor {
    /// Multi-head causal attention on `self`, a fused `qkv: [b·t, 3d]` tensor (rows in `(batch, position)`
    /// order, each row `[q | k | v]`, each of those `[n_head, head_dim]`, as
    /// `x.linear_cat(&[wq, wk, wv])` produces). For every batch element and head,
    /// `P = causal_softmax(Q·Kᵀ / √head_dim)` (query `i` attends to keys `j ≤ i`) and the head's
    /// output is `P·V`. Returns `[b·t, d]`, heads concatenated in order (the input of `wo`).
    ///
    /// With `dropout = Some((p, rng))` and `p > 0`, the probabilities are multiplied by an inverted
    /// dropout mask (kept iff `rng.next_f32() >= p`, scaled by `1/(1-p)`), drawing one number per
    /// unmasked element `(batch, head, i, j ≤ i)` in row-major order (as nanoGPT's `attn_dropout`).
    ///
    /// Also returns, if `keep_probs`, the probabilities `[b, n_head, t, t]` before dropout (zeros
    /// above the diagonal), for calibration taps.
    ///
    /// Per head, the products are `gemm` crate calls on the rows in place (see the module notes);
    /// backward reuses the saved probabilities: `dV = P'ᵀ·dO`, `dP = dO·Vᵀ (⊙ mask)`,
    /// `dS = P ⊙ (dP - rowsum(P ⊙ dP)) / √hd`, `dQ = dS·K`, `dK = dSᵀ·Q`.
    pub fn causal_attention(
        &self,
        t: usize,
        n_head: usize,
        dropout: Option<(f32, &mut Rng)>,
        keep_probs: bool,
    ) -> (Tensor, Option<Array>) {
        let qkv = self;
        let shape = qkv.shape();
        assert_eq!(shape.len(), 2, "causal_attention expects [b*t, 3d]");
        let (n, w) = (shape[0], shape[1]);
        assert!(w.is_multiple_of(3), "causal_attention expects [b*t, 3d]");
        let d = w / 3;
        assert!(t > 0 && n.is_multiple_of(t), "rows must be b*t");
        assert!(
            n_head > 0 && d.is_multiple_of(n_head),
            "d must be a multiple of n_head"
        );
        let b = n / t;
        let hd = d / n_head;
        let dims = AttnDims {
            t,
            d,
            hd,
            n_head,
            scale: 1.0 / (hd as f32).sqrt(),
        };
        let tt = t * t;

        let mask: Option<Vec<f32>> = match dropout {
            Some((p, rng)) if p > 0.0 => {
                assert!(
                    (0.0..1.0).contains(&p),
                    "dropout probability {p} not in [0, 1)"
                );
                let keep = 1.0 / (1.0 - p);
                let mut m = vec![0.0f32; b * n_head * tt];
                for (r, row) in m.chunks_exact_mut(t).enumerate() {
                    for x in &mut row[..=r % t] {
                        *x = if rng.next_f32() >= p { keep } else { 0.0 };
                    }
                }
                Some(m)
            }
            _ => None,
        };

        let xv = qkv.value();
        let xs = std_slice(&xv);
        let mut out = par_zeros(n * d);
        let mut probs = par_zeros(b * n_head * tt);
        let (in_rows, out_rows, p_len) = (t * w, t * d, n_head * tt);
        out.par_chunks_mut(out_rows)
            .zip(probs.par_chunks_mut(p_len))
            .enumerate()
            .for_each(|(bi, (ob, pb))| {
                let mb = mask.as_ref().map(|m| &m[bi * p_len..(bi + 1) * p_len]);
                attn_fwd(dims, &xs[bi * in_rows..(bi + 1) * in_rows], ob, pb, mb);
            });
        drop(xs);
        drop(xv);
        let kept = keep_probs.then(|| array(&[b, n_head, t, t], probs.clone()));

        let out = Tensor::from_op(
            "causal_attention",
            array(&[n, d], out),
            vec![qkv.clone()],
            move |c| {
                let xv = c.inputs[0].value();
                let xs = std_slice(&xv);
                let g = std_slice(c.grad);
                let mut gx = par_zeros(n * w);
                gx.par_chunks_mut(in_rows)
                    .enumerate()
                    .for_each(|(bi, gxb)| {
                        let pr = bi * p_len..(bi + 1) * p_len;
                        let mb = mask.as_ref().map(|m| &m[pr.clone()]);
                        attn_bwd(
                            dims,
                            &xs[bi * in_rows..(bi + 1) * in_rows],
                            &g[bi * out_rows..(bi + 1) * out_rows],
                            &probs[pr],
                            mb,
                            gxb,
                        );
                    });
                vec![Some(array(&[n, w], gx))]
            },
        );
        (out, kept)
    }
}

/// `Σ x` in 8 interleaved partial sums (one vector register), added in a fixed order, then
/// the remainder: vectorises, unlike one serial chain of adds, and gives the same result for the
/// same input whatever the instruction set or thread.
#[inline(always)]
fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in chunks.remainder() {
        s += v;
    }
    s
}

/// `Σ a·b` as [`sum_lanes`] sums.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *s += u * v;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&u, &v) in ca.remainder().iter().zip(cb.remainder()) {
        s += u * v;
    }
    s
}

/// `row ← softmax(row · scale)` in place (max-subtracted).
#[inline(always)]
fn softmax_scaled_in_place(row: &mut [f32], scale: f32) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        for (l, s) in lanes.iter_mut().zip(c) {
            *s *= scale;
            *l = l.max(*s);
        }
    }
    let mut m = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for s in chunks.into_remainder() {
        *s *= scale;
        m = m.max(*s);
    }
    for s in row.iter_mut() {
        *s = exp_fast(*s - m);
    }
    let sum = sum_lanes(row);
    let inv = 1.0 / sum;
    for s in row.iter_mut() {
        *s *= inv;
    }
}
