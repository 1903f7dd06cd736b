//! Fused multi-head causal attention ([`Tensor::causal_attention`]) on the GPT's row layout.
//!
//! Activations inside a GPT block stay 2-D, `[b·t, cols]` with rows in `(batch, position)`
//! order, so splitting and merging heads costs no permute or copy: a projection row is
//! `[n_head, head_dim]` (what `x·Wᵀ` produces), and the attention reads and writes that layout
//! directly. Per head, the products run as small register-tiled matrix products on the rows in
//! place; batch elements are split across the rayon pool. The unfused composition of basic ops
//! it must agree with lives in `trainer/tests/reference/`.

use aka_core::rng::Rng;
use rayon::prelude::*;

use super::math::exp_fast;
use super::{array, std_slice};
use crate::autograd::tensor::{Array, Tensor};

// Small register-tiled matrix products for attention.
//
// Per head, attention multiplies `[t, hd]` and `[t, t]` matrices (64 × 16 for the small model):
// too small for a general GEMM to amortise its packing and per-call overhead. `TileGemm` keeps
// a 4 × 16 tile of the output in registers, reads both operands in place (any row/column stride
// for A, contiguous rows for B), and skips the tiles and k-ranges that causality makes zero.
// Each output element is `Σ_k a·b` accumulated in ascending k in f32 (separate multiply and
// add, no FMA), so results do not depend on the instruction set or the thread count.

/// Rows of an output tile.
const MR: usize = 4;
/// Columns of an output tile.
const NR: usize = 16;

/// A read-only matrix operand: element `(i, k)` is `data[i·rs + k·cs]`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Operand<'a> {
    /// A row-major matrix whose rows are `rs` apart.
    fn rows(data: &'a [f32], rs: usize) -> Self {
        Self { data, rs, cs: 1 }
    }

    /// The transpose of a row-major matrix whose rows are `rs` apart.
    fn transposed(data: &'a [f32], rs: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: rs,
        }
    }
}

/// Which `k` contribute to output row block `i0 .. i0 + rows`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KRange {
    /// All of `0..k`.
    Full,
    /// `0 .. i0 + rows` (A is lower-triangular: `a(i, k) = 0` for `k > i`).
    Lower,
    /// `i0 .. k` (A is upper-triangular: `a(i, k) = 0` for `k < i`).
    Upper,
}

/// A small matrix product's shape and options: `c[i·ldc + j] = Σ_k a(i, k) · b[k·ldb + j]` for
/// `i < m`, `j < n`, `k` in `krange` of `0..kdim` ([`TileGemm::run`]).
#[derive(Clone, Copy)]
struct TileGemm {
    m: usize,
    n: usize,
    kdim: usize,
    krange: KRange,
    /// Output tiles entirely above the diagonal (`j0 >= i0 + rows`) are not written (the caller
    /// ignores them).
    lower_only: bool,
    /// Use the AVX micro-kernel for full tiles (only `true` when the CPU has AVX; see
    /// [`has_avx`]).
    avx: bool,
}

impl TileGemm {
    /// `c = a·b` as described on [`TileGemm`]: `b` rows `ldb` apart, `c` rows `ldc` apart.
    #[inline(always)]
    fn run(self, a: Operand<'_>, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize) {
        let TileGemm {
            m,
            n,
            kdim,
            krange,
            lower_only,
            avx,
        } = self;
        for i0 in (0..m).step_by(MR) {
            let rows = MR.min(m - i0);
            let (klo, khi) = match krange {
                KRange::Full => (0, kdim),
                KRange::Lower => (0, (i0 + rows).min(kdim)),
                KRange::Upper => (i0.min(kdim), kdim),
            };
            for j0 in (0..n).step_by(NR) {
                if lower_only && j0 >= i0 + rows {
                    break;
                }
                let cols = NR.min(n - j0);
                let mut acc = [[0.0f32; NR]; MR];
                let tile = Tile {
                    a,
                    b,
                    ldb,
                    i0,
                    j0,
                    klo,
                    khi,
                };
                if rows == MR && cols == NR {
                    #[cfg(target_arch = "x86_64")]
                    if avx {
                        // SAFETY: callers pass `avx = true` only when `has_avx()` said so.
                        unsafe { tile_avx(tile, &mut acc) };
                    } else {
                        tile_portable(tile, &mut acc);
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    {
                        let _ = avx;
                        tile_portable(tile, &mut acc);
                    }
                } else {
                    // A partial tile: the portable kernel on the rows there are, columns zero-padded.
                    for kk in klo..khi {
                        let mut bv = [0.0f32; NR];
                        bv[..cols].copy_from_slice(&tile.b_row(kk)[..cols]);
                        tile.add_products(kk, &bv, &mut acc[..rows]);
                    }
                }
                for (r, acc_r) in acc.iter().enumerate().take(rows) {
                    let at = (i0 + r) * ldc + j0;
                    c[at..at + cols].copy_from_slice(&acc_r[..cols]);
                }
            }
        }
    }
}

/// The inputs of one output tile: rows `i0 ..` of `a` and columns `j0 .. j0 + NR` of `b` (rows
/// `ldb` apart), over `k` in `klo..khi`.
#[derive(Clone, Copy)]
struct Tile<'a> {
    a: Operand<'a>,
    b: &'a [f32],
    ldb: usize,
    i0: usize,
    j0: usize,
    klo: usize,
    khi: usize,
}

impl Tile<'_> {
    /// `a(i0 + r, kk)`.
    #[inline(always)]
    fn a(&self, r: usize, kk: usize) -> f32 {
        self.a.data[(self.i0 + r) * self.a.rs + kk * self.a.cs]
    }

    /// Row `kk` of `b` from column `j0` on (at most `NR` wide, fewer at the right edge).
    #[inline(always)]
    fn b_row(&self, kk: usize) -> &[f32] {
        let at = kk * self.ldb + self.j0;
        &self.b[at..(at + NR).min(self.b.len())]
    }

    /// `acc[r][j] += a(i0 + r, kk) · bv[j]` for the rows of `acc`.
    #[inline(always)]
    fn add_products(&self, kk: usize, bv: &[f32; NR], acc: &mut [[f32; NR]]) {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = self.a(r, kk);
            for (x, &bb) in acc_r.iter_mut().zip(bv) {
                *x += av * bb;
            }
        }
    }
}

/// One full `MR × NR` output tile, portable code: `acc[r][j] = Σ_k a(i0 + r, k) · b[k·ldb + j0 + j]`.
#[inline(always)]
fn tile_portable(tile: Tile<'_>, acc: &mut [[f32; NR]; MR]) {
    for kk in tile.klo..tile.khi {
        let bv: &[f32; NR] = tile.b_row(kk).try_into().expect("NR columns");
        tile.add_products(kk, bv, acc);
    }
}

/// Whether the AVX micro-kernel can run on this CPU.
fn has_avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`tile_portable`] for a full `MR × NR` tile with AVX: the tile lives in 8 `ymm` registers;
/// each k broadcasts 4 values of A and loads 16 of B. Same operations in the same order as the
/// portable code (multiply, then add; no FMA), so the same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn tile_avx(tile: Tile<'_>, acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let mut c: [__m256; 2 * MR] = [_mm256_setzero_ps(); 2 * MR];
    for kk in tile.klo..tile.khi {
        let bs: &[f32; NR] = tile.b_row(kk).try_into().expect("NR columns");
        // SAFETY: `bs` has NR = 16 elements: lanes 0..8 and 8..16 are in bounds.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(bs.as_ptr()),
                _mm256_loadu_ps(bs.as_ptr().add(8)),
            )
        };
        for r in 0..MR {
            let av = _mm256_set1_ps(tile.a(r, kk));
            c[2 * r] = _mm256_add_ps(c[2 * r], _mm256_mul_ps(av, b0));
            c[2 * r + 1] = _mm256_add_ps(c[2 * r + 1], _mm256_mul_ps(av, b1));
        }
    }
    for (r, out) in acc.iter_mut().enumerate() {
        // SAFETY: `out` has NR = 16 elements: lanes 0..8 and 8..16 are in bounds.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), c[2 * r]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), c[2 * r + 1]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Causal multi-head attention.

/// Shapes shared by the per-batch-element attention kernels.
#[derive(Clone, Copy)]
struct AttnDims {
    t: usize,
    /// Model width; the fused input rows are `3·d` wide, the output rows `d`.
    d: usize,
    hd: usize,
    n_head: usize,
    scale: f32,
    /// Use the AVX tile kernel ([`has_avx`]).
    avx: bool,
}

impl AttnDims {
    /// The product `c = a·b` of one head, over `krange`: `a` a `[t, t]` probability-shaped
    /// operand, `b` and `c` `[t, hd]`.
    fn head_product(self, krange: KRange) -> TileGemm {
        TileGemm {
            m: self.t,
            n: self.hd,
            kdim: self.t,
            krange,
            lower_only: false,
            avx: self.avx,
        }
    }

    /// `c = a·bᵀ` for one head, lower triangle: `a` `[t, hd]`, `bt` the `[hd, t]` transposed
    /// right operand, `c` `[t, t]`.
    #[inline(always)]
    fn scores(self, a: Operand<'_>, bt: &[f32], c: &mut [f32]) {
        let t = self.t;
        let gemm = TileGemm {
            m: t,
            n: t,
            kdim: self.hd,
            krange: KRange::Full,
            lower_only: true,
            avx: self.avx,
        };
        gemm.run(a, bt, t, c, t);
    }
}

/// Copies the `[t, hd]` column block at `col` of the `[t, ld]` rows `xb` into `out`, transposed
/// (`[hd, t]`).
#[inline(always)]
fn transpose_block(xb: &[f32], ld: usize, col: usize, hd: usize, out: &mut [f32]) {
    let t = out.len() / hd;
    for j in 0..t {
        for (c, &x) in xb[j * ld + col..j * ld + col + hd].iter().enumerate() {
            out[c * t + j] = x;
        }
    }
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
    let mut kt = vec![0.0f32; hd * t];
    let mut dropped = mb.map(|_| vec![0.0f32; tt]);
    for hi in 0..dims.n_head {
        let (qc, kc, vc) = (hi * hd, d + hi * hd, 2 * d + hi * hd);
        transpose_block(xb, ld, kc, hd, &mut kt);
        let ph = &mut pb[hi * tt..(hi + 1) * tt];
        // S = Q·Kᵀ (lower triangle)
        dims.scores(Operand::rows(&xb[qc..], ld), &kt, ph);
        for (i, row) in ph.chunks_exact_mut(t).enumerate() {
            softmax_scaled_in_place(&mut row[..=i], dims.scale);
            row[i + 1..].fill(0.0);
        }
        let p_used = dropped_out(&mut dropped, ph, mb.map(|m| &m[hi * tt..(hi + 1) * tt]));
        // O = P'·V
        let p = Operand::rows(p_used, t);
        dims.head_product(KRange::Lower)
            .run(p, &xb[vc..], ld, &mut ob[qc..], d);
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
    let mut vt = vec![0.0f32; hd * t];
    let mut dp = vec![0.0f32; tt];
    let mut dropped = mb.map(|_| vec![0.0f32; tt]);
    for hi in 0..dims.n_head {
        let (qc, kc, vc) = (hi * hd, d + hi * hd, 2 * d + hi * hd);
        let ph = &pb[hi * tt..(hi + 1) * tt];
        let mh = mb.map(|m| &m[hi * tt..(hi + 1) * tt]);
        transpose_block(xb, ld, vc, hd, &mut vt);
        let p_used = dropped_out(&mut dropped, ph, mh);
        // dV = P'ᵀ·dO: row j of dV sums over queries i >= j.
        let pt = Operand::transposed(p_used, t);
        dims.head_product(KRange::Upper)
            .run(pt, &gb[qc..], d, &mut gxb[vc..], ld);
        // dP = dO·Vᵀ (lower triangle)
        dims.scores(Operand::rows(&gb[qc..], d), &vt, &mut dp);
        // dS = P ⊙ (dP ⊙ mask - rowsum(P ⊙ dP ⊙ mask)) · scale, zero above the diagonal.
        for (i, (dr, pr)) in dp.chunks_exact_mut(t).zip(ph.chunks_exact(t)).enumerate() {
            let (dl, pl) = (&mut dr[..=i], &pr[..=i]);
            if let Some(m) = mh {
                for (x, &mm) in dl.iter_mut().zip(&m[i * t..]) {
                    *x *= mm;
                }
            }
            let s: f32 = dl.iter().zip(pl).map(|(&x, &p)| x * p).sum();
            for (x, &p) in dl.iter_mut().zip(pl) {
                *x = p * (*x - s) * dims.scale;
            }
            dr[i + 1..].fill(0.0);
        }
        // dQ = dS·K ; dK = dSᵀ·Q
        let (ds, dst) = (Operand::rows(&dp, t), Operand::transposed(&dp, t));
        dims.head_product(KRange::Lower)
            .run(ds, &xb[kc..], ld, &mut gxb[qc..], ld);
        dims.head_product(KRange::Upper)
            .run(dst, &xb[qc..], ld, &mut gxb[kc..], ld);
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
    /// Per head, the products run as register-tiled small matrix products on the rows in place;
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
            avx: has_avx(),
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
        let mut out = vec![0.0f32; n * d];
        let mut probs = vec![0.0f32; b * n_head * tt];
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
                let mut gx = vec![0.0f32; n * w];
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

/// `row ← softmax(row · scale)` in place (max-subtracted).
#[inline(always)]
fn softmax_scaled_in_place(row: &mut [f32], scale: f32) {
    let mut m = f32::NEG_INFINITY;
    for s in row.iter_mut() {
        *s *= scale;
        m = m.max(*s);
    }
    for s in row.iter_mut() {
        *s = exp_fast(*s - m);
    }
    let sum: f32 = row.iter().sum();
    let inv = 1.0 / sum;
    for s in row.iter_mut() {
        *s *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aka_core::rng::Rng;

    /// The AVX tile kernel (selected at run time, behind `unsafe`) and the portable one give the
    /// same bits, and both equal a plain ascending-k sum written here, for full and partial tiles
    /// and every `KRange`.
    #[test]
    fn avx_tile_gemm_equals_portable_and_naive() {
        let mut rng = Rng::new(11);
        for &(m, n, k) in &[(4, 16, 7), (9, 33, 20), (13, 50, 64), (1, 5, 3), (8, 32, 1)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
            for krange in [KRange::Full, KRange::Lower, KRange::Upper] {
                let mut naive = vec![0.0f32; m * n];
                for i in 0..m {
                    let i0 = i - i % MR;
                    let (lo, hi) = match krange {
                        KRange::Full => (0, k),
                        KRange::Lower => (0, (i0 + MR.min(m - i0)).min(k)),
                        KRange::Upper => (i0.min(k), k),
                    };
                    for j in 0..n {
                        let mut s = 0.0f32;
                        for kk in lo..hi {
                            s += a[i * k + kk] * b[kk * n + j];
                        }
                        naive[i * n + j] = s;
                    }
                }
                let run = |avx: bool| {
                    let mut c = vec![0.0f32; m * n];
                    let op = Operand {
                        data: &a,
                        rs: k,
                        cs: 1,
                    };
                    let gemm = TileGemm {
                        m,
                        n,
                        kdim: k,
                        krange,
                        lower_only: false,
                        avx,
                    };
                    gemm.run(op, &b, n, &mut c, n);
                    c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                let expected: Vec<u32> = naive.iter().map(|v| v.to_bits()).collect();
                assert_eq!(run(false), expected, "portable {m}x{n}x{k}");
                if has_avx() {
                    assert_eq!(run(true), expected, "avx {m}x{n}x{k}");
                }
            }
        }
    }
}
