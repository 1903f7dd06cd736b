//! Fused autograd ops for the GPT, each one [`Tensor::from_op`] with a hand-written backward.
//!
//! Activations inside a block stay 2-D, `[b·t, cols]` with rows in `(batch, position)` order, so
//! splitting and merging heads costs no permute or copy: a projection row is
//! `[n_head, head_dim]` (what `x·Wᵀ` produces), and [`causal_attention`] and [`rope_rows`] read
//! and write that layout directly.
//!
//! - [`linear_cat`]: several bias-free projections of one input as one matrix product
//!   (`wq|wk|wv`, and `w1|w3` of gated MLPs).
//! - [`embed`]: token embedding plus (learned) position embedding in one pass.
//! - [`rope_rows`] / [`rope_bthd`]: RoPE on that layout, bit-identical to [`Tensor::rope`] on
//!   the `[b, h, t, hd]` permutation.
//! - [`causal_attention`]: multi-head causal softmax attention on a fused `[b·t, 3d]` q|k|v
//!   tensor (scores, causal softmax, optional probability dropout, weighted sum of values) with
//!   a backward pass that reuses the saved probabilities.
//! - [`gelu`], [`gated`]: the MLP activations; [`cross_entropy`]: the loss.
//!
//! Work is split across the rayon pool by rows or batch elements, and each output element is
//! computed by the same sequence of operations whatever the split, so results do not depend on
//! the thread count. Hot loops are compiled twice (baseline and AVX2, chosen at run time) with
//! the same arithmetic, so results do not depend on the instruction set either.

use aka_core::rng::Rng;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, Axis, Ix2, IxDyn};
use rayon::prelude::*;

use crate::autograd::{rotate_half, Array, Tensor};

/// The contiguous row-major elements of `a` (copied only if `a` is not in standard layout).
fn std_slice(a: &Array) -> std::borrow::Cow<'_, [f32]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

fn array(shape: &[usize], data: Vec<f32>) -> Array {
    Array::from_shape_vec(IxDyn(shape), data).expect("shape matches data")
}

/// Runs `body` compiled for AVX2 when the CPU has it (8-wide vectors instead of SSE2's 4-wide);
/// the arithmetic, and so the result, is the same either way.
macro_rules! with_avx2 {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),* $(,)?)) => {
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: `avx2` only differs from `$body` in being compiled for AVX2,
                    // and the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Elementwise math: exp and tanh that the compiler vectorises (no calls, no branches).

/// `e^x` for `f32`, accurate to about 2 ulp over the whole range (Cephes `expf` polynomial after
/// `x = n·ln2 + r` range reduction). Inputs below -87.3 return 0 (also `-inf`), above 88.7 `+inf`.
/// Written without branches or calls so loops over slices vectorise.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest with the 1.5·2^23 trick (`f32::round` is a libm call on baseline x86-64,
    // which would stop vectorisation); exact for |x·log2 e| < 2^22.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.336_55, 88.722_83);
    let n = (xc * LOG2E + MAGIC) - MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n via the exponent field; n ∈ [-126, 128] after the clamp, 128 overflows to inf below.
    let n_i = n as i32;
    let scale = f32::from_bits(((n_i.clamp(-126, 127) + 127) as u32) << 23);
    let v = y * scale;
    let v = if n_i > 127 { f32::INFINITY } else { v };
    if x < -87.336_55 {
        0.0
    } else {
        v
    }
}

/// `tanh(x)` for `f32` as a rational function (Eigen's `ptanh_float`: odd degree-13 numerator,
/// even degree-6 denominator, input clamped to ±7.9053), within a few ulp of `f32::tanh`.
#[inline(always)]
pub fn tanh_fast(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    p *= x;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    p / q
}

/// `√(2/π)`, as in [`Tensor::gelu`].
const GELU_K: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh approximation of GELU.
const GELU_A: f32 = 0.044_715;

/// GELU (tanh approximation, as [`Tensor::gelu`]): returns `(gelu(x), gelu'(x))`.
#[inline(always)]
fn gelu_and_grad(x: f32) -> (f32, f32) {
    let t = tanh_fast(GELU_K * (x + GELU_A * x * x * x));
    let y = 0.5 * x * (1.0 + t);
    let dy = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_A * x * x);
    (y, dy)
}

/// SiLU `x·σ(x)`: returns `(silu(x), silu'(x))`.
#[inline(always)]
fn silu_and_grad(x: f32) -> (f32, f32) {
    let s = 1.0 / (1.0 + exp_fast(-x));
    (x * s, s * (1.0 + x * (1.0 - s)))
}

#[inline(always)]
fn gelu_body(x: &[f32], y: &mut [f32], dy: &mut [f32]) {
    for ((y, dy), &x) in y.iter_mut().zip(dy.iter_mut()).zip(x) {
        (*y, *dy) = gelu_and_grad(x);
    }
}
with_avx2!(gelu_kernel, gelu_body, (x: &[f32], y: &mut [f32], dy: &mut [f32]));

#[inline(always)]
fn mul_body(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a * b;
    }
}
with_avx2!(mul_kernel, mul_body, (a: &[f32], b: &[f32], out: &mut [f32]));

/// Elementwise `a ⊙ b` into a new vector.
fn mul_vec(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    mul_kernel(a, b, &mut out);
    out
}

/// GELU (tanh approximation, same formula as [`Tensor::gelu`]) with a vectorised `tanh`. Any
/// shape. The derivative is computed in the forward pass and kept for backward.
pub fn gelu(x: &Tensor) -> Tensor {
    let xv = x.value();
    let n = xv.len();
    let mut y = vec![0.0f32; n];
    let mut dy = vec![0.0f32; n];
    gelu_kernel(&std_slice(&xv), &mut y, &mut dy);
    let shape = xv.shape().to_vec();
    drop(xv);
    Tensor::from_op("gpt_gelu", array(&shape, y), vec![x.clone()], move |c| {
        vec![Some(array(&shape, mul_vec(&std_slice(c.grad), &dy)))]
    })
}

/// The activation of a gated MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateAct {
    /// SiLU (SwiGLU).
    Silu,
    /// GELU, tanh approximation (GeGLU).
    Gelu,
}

#[inline(always)]
fn gated_body(ug: &[f32], h: usize, silu: bool, out: &mut [f32], da: &mut [f32], dg: &mut [f32]) {
    // Per row: out = act(u) ⊙ g, da = act'(u) ⊙ g, dg = act(u).
    for ((((row, o), da), dg), _) in ug
        .chunks_exact(2 * h)
        .zip(out.chunks_exact_mut(h))
        .zip(da.chunks_exact_mut(h))
        .zip(dg.chunks_exact_mut(h))
        .zip(0..)
    {
        let (u, g) = row.split_at(h);
        for ((((o, da), dg), &u), &g) in o.iter_mut().zip(da).zip(dg).zip(u).zip(g) {
            let (y, d) = if silu {
                silu_and_grad(u)
            } else {
                gelu_and_grad(u)
            };
            *o = y * g;
            *da = d * g;
            *dg = y;
        }
    }
}
with_avx2!(gated_kernel, gated_body, (
    ug: &[f32],
    h: usize,
    silu: bool,
    out: &mut [f32],
    da: &mut [f32],
    dg: &mut [f32],
));

/// Gated activation on a packed `[n, 2h]` input whose row is `[u | g]` (`u = w1·x`,
/// `g = w3·x`, as [`linear_cat`] of `w1, w3` produces): `act(u) ⊙ g`, `[n, h]` (SwiGLU / GeGLU).
pub fn gated(ug: &Tensor, act: GateAct) -> Tensor {
    let v = ug.value();
    assert_eq!(v.ndim(), 2, "gated expects [n, 2h]");
    let (n, w) = (v.shape()[0], v.shape()[1]);
    assert!(w.is_multiple_of(2), "gated expects an even width");
    let h = w / 2;
    let mut out = vec![0.0f32; n * h];
    let mut da = vec![0.0f32; n * h];
    let mut dg = vec![0.0f32; n * h];
    gated_kernel(
        &std_slice(&v),
        h,
        act == GateAct::Silu,
        &mut out,
        &mut da,
        &mut dg,
    );
    drop(v);
    Tensor::from_op(
        "gpt_gated",
        array(&[n, h], out),
        vec![ug.clone()],
        move |c| {
            let up = std_slice(c.grad);
            let mut g = vec![0.0f32; n * w];
            for (((row, up), da), dg) in g
                .chunks_exact_mut(w)
                .zip(up.chunks_exact(h))
                .zip(da.chunks_exact(h))
                .zip(dg.chunks_exact(h))
            {
                let (gu, gg) = row.split_at_mut(h);
                mul_kernel(up, da, gu);
                mul_kernel(up, dg, gg);
            }
            vec![Some(array(&[n, w], g))]
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy.

#[inline(always)]
fn softmax_rows_body(x: &[f32], v: usize, p: &mut [f32], lse: &mut [f32]) {
    for ((xr, pr), l) in x
        .chunks_exact(v)
        .zip(p.chunks_exact_mut(v))
        .zip(lse.iter_mut())
    {
        let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for (p, &x) in pr.iter_mut().zip(xr) {
            *p = exp_fast(x - m);
        }
        let s: f32 = pr.iter().sum();
        let inv = 1.0 / s;
        for p in pr.iter_mut() {
            *p *= inv;
        }
        *l = m + s.ln();
    }
}
with_avx2!(softmax_rows, softmax_rows_body, (
    x: &[f32],
    v: usize,
    p: &mut [f32],
    lse: &mut [f32],
));

/// Mean cross-entropy of logits `[n, v]` against integer targets (same value as
/// [`Tensor::cross_entropy`] up to rounding): `mean_i (logsumexp(x_i) - x_i[target_i])`. The
/// softmax is kept from the forward pass for the backward `(softmax - onehot) / n`.
pub fn cross_entropy(logits: &Tensor, targets: &[usize]) -> Tensor {
    let lv = logits.value();
    assert_eq!(lv.ndim(), 2, "cross_entropy expects [n, classes] logits");
    let (n, v) = (lv.shape()[0], lv.shape()[1]);
    assert_eq!(n, targets.len(), "one target per row");
    assert!(targets.iter().all(|&t| t < v), "target out of range 0..{v}");
    let xs = std_slice(&lv);
    let mut p = vec![0.0f32; n * v];
    let mut lse = vec![0.0f32; n];
    softmax_rows(&xs, v, &mut p, &mut lse);
    let total: f64 = targets
        .iter()
        .enumerate()
        .map(|(i, &t)| (lse[i] - xs[i * v + t]) as f64)
        .sum();
    drop(xs);
    drop(lv);
    let loss = (total / n.max(1) as f64) as f32;
    let targets = targets.to_vec();
    Tensor::from_op(
        "gpt_cross_entropy",
        Array::from_elem(IxDyn(&[]), loss),
        vec![logits.clone()],
        move |c| {
            let scale = c.grad.sum() / n.max(1) as f32;
            let mut g = p.clone();
            for (i, &t) in targets.iter().enumerate() {
                g[i * v + t] -= 1.0;
            }
            for x in g.iter_mut() {
                *x *= scale;
            }
            vec![Some(array(&[n, v], g))]
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Projections.

/// `a [m, k] · b [k, n]` (any strides), split by rows of the output across the rayon pool when
/// the product is large enough to pay for it. Every output element is computed by the same
/// kernel sequence whatever the split, so the result does not depend on the thread count.
fn matmul(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    const MIN_WORK: usize = 1 << 20;
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let mut c = Array2::<f32>::zeros((m, n));
    let threads = rayon::current_num_threads();
    if threads <= 1 || m * n * k < MIN_WORK || m < 16 {
        general_mat_mul(1.0, &a, &b, 0.0, &mut c);
        return c;
    }
    // Row chunks a multiple of 8 (the kernel's row block) so the split changes no tile.
    let chunk = m.div_ceil(threads).div_ceil(8) * 8;
    let parts: Vec<_> = c
        .axis_chunks_iter_mut(Axis(0), chunk)
        .zip(a.axis_chunks_iter(Axis(0), chunk))
        .collect();
    parts
        .into_par_iter()
        .for_each(|(mut ci, ai)| general_mat_mul(1.0, &ai, &b, 0.0, &mut ci));
    c
}

/// Several bias-free projections of one input in one matrix product:
/// `x [n, in] · [w_1; …; w_m]ᵀ -> [n, Σ out_i]`, each `w_i: [out_i, in]` (PyTorch layout), the
/// outputs side by side in the order given (`linear_cat(x, &[wq, wk, wv])` is `[q | k | v]`).
/// Backward is one product for `dx` and one for all the weights.
pub fn linear_cat(x: &Tensor, ws: &[&Tensor]) -> Tensor {
    let xv = x.value();
    assert_eq!(xv.ndim(), 2, "linear_cat expects x [n, in]");
    let (n, d_in) = (xv.shape()[0], xv.shape()[1]);
    let outs: Vec<usize> = ws.iter().map(|w| w.shape()[0]).collect();
    let total: usize = outs.iter().sum();
    let mut wcat = Vec::with_capacity(total * d_in);
    for w in ws {
        let wv = w.value();
        assert_eq!(wv.shape()[1], d_in, "weight [out, {d_in}] expected");
        wcat.extend_from_slice(&std_slice(&wv));
    }
    let wcat = Array2::from_shape_vec((total, d_in), wcat).expect("[total, in]");
    let x2 = xv.view().into_dimensionality::<Ix2>().expect("2-D");
    let y = matmul(x2, wcat.t()).into_dyn();
    drop(xv);
    let mut inputs = vec![x.clone()];
    inputs.extend(ws.iter().map(|&w| w.clone()));
    Tensor::from_op("gpt_linear_cat", y, inputs, move |c| {
        let g = c.grad.view().into_dimensionality::<Ix2>().expect("2-D");
        let mut grads = Vec::with_capacity(c.inputs.len());
        grads.push(c.needs[0].then(|| matmul(g, wcat.view()).into_dyn()));
        if c.needs[1..].iter().any(|&b| b) {
            let xv = c.inputs[0].value();
            let x2 = xv.view().into_dimensionality::<Ix2>().expect("2-D");
            let gw = matmul(g.t(), x2); // [total, in]
            let mut row = 0;
            for (&o, &need) in outs.iter().zip(&c.needs[1..]) {
                grads.push(need.then(|| {
                    gw.slice(ndarray::s![row..row + o, ..])
                        .to_owned()
                        .into_dyn()
                }));
                row += o;
            }
        } else {
            grads.extend(outs.iter().map(|_| None));
        }
        let _ = n;
        grads
    })
}

// ---------------------------------------------------------------------------------------------
// Embedding.

/// Token plus position embedding: row `r = bi·t + p` of the `[ids.len(), d]` output is
/// `tok[ids[r]] + pos[p]` (`pos` is `[≥t, d]`, only its first `t` rows are used; `None` adds
/// nothing). Panics on an id `>= vocab` or if `ids.len()` is not a multiple of `t`.
pub fn embed(tok: &Tensor, pos: Option<&Tensor>, ids: &[usize], t: usize) -> Tensor {
    let tv = tok.value();
    let (vocab, d) = (tv.shape()[0], tv.shape()[1]);
    assert!(t > 0 && ids.len().is_multiple_of(t), "ids must be [b, t]");
    let ts = std_slice(&tv);
    let pv = pos.map(|p| p.value());
    if let Some(pv) = &pv {
        assert!(
            pv.shape()[0] >= t && pv.shape()[1] == d,
            "pos_emb too short"
        );
    }
    let ps = pv.as_ref().map(|p| std_slice(p));
    let mut out = vec![0.0f32; ids.len() * d];
    for (r, (&id, row)) in ids.iter().zip(out.chunks_exact_mut(d)).enumerate() {
        assert!(id < vocab, "token id {id} out of range 0..{vocab}");
        row.copy_from_slice(&ts[id * d..(id + 1) * d]);
        if let Some(ps) = &ps {
            let p = r % t;
            for (o, &x) in row.iter_mut().zip(&ps[p * d..(p + 1) * d]) {
                *o += x;
            }
        }
    }
    let pos_rows = pv.as_ref().map(|p| p.shape()[0]);
    drop(ps);
    drop(pv);
    drop(ts);
    drop(tv);
    let ids = ids.to_vec();
    let mut inputs = vec![tok.clone()];
    inputs.extend(pos.cloned());
    Tensor::from_op("gpt_embed", array(&[ids.len(), d], out), inputs, move |c| {
        let g = std_slice(c.grad);
        let gt = c.needs[0].then(|| {
            let mut dt = vec![0.0f32; vocab * d];
            for (&id, gr) in ids.iter().zip(g.chunks_exact(d)) {
                for (a, &x) in dt[id * d..(id + 1) * d].iter_mut().zip(gr) {
                    *a += x;
                }
            }
            array(&[vocab, d], dt)
        });
        let mut grads = vec![gt];
        if let Some(rows) = pos_rows {
            grads.push(c.needs[1].then(|| {
                let mut dp = vec![0.0f32; rows * d];
                for (r, gr) in g.chunks_exact(d).enumerate() {
                    let p = r % t;
                    for (a, &x) in dp[p * d..(p + 1) * d].iter_mut().zip(gr) {
                        *a += x;
                    }
                }
                array(&[rows, d], dp)
            }));
        }
        grads
    })
}

// ---------------------------------------------------------------------------------------------
// RoPE on [b, t, h, hd] rows.

/// Rotates the head slices in the first `cols` columns of every row of `x: [b·t, width]` (rows
/// in `(batch, position)` order; columns `0..cols` are consecutive `[head_dim]` slices, the rest
/// pass through) by the rotate-half RoPE of [`Tensor::rope`] at position
/// `start_pos + (row % t)`, with the tables of [`Tensor::rope_tables`]: exactly the arithmetic
/// of `Tensor::rope` on the `[b, h, t, hd]` permutation, so the results are bit-identical.
/// For a fused `[q | k | v]` tensor, `cols = 2·d` rotates q and k.
pub fn rope_rows(x: &Tensor, t: usize, head_dim: usize, cols: usize, start_pos: usize) -> Tensor {
    let shape = x.shape();
    assert_eq!(shape.len(), 2, "rope_rows expects [b*t, width]");
    let width = shape[1];
    assert!(
        head_dim > 0 && cols <= width && cols.is_multiple_of(head_dim),
        "cols must be whole heads within the row"
    );
    let (cos, sin) = Tensor::rope_tables(start_pos, t, head_dim);
    let (cos, sin) = (
        cos.into_raw_vec_and_offset().0,
        sin.into_raw_vec_and_offset().0,
    );
    let xv = x.value();
    let out = rotate_rows(&std_slice(&xv), &cos, &sin, t, width, head_dim, cols, false);
    drop(xv);
    Tensor::from_op("gpt_rope", array(&shape, out), vec![x.clone()], move |c| {
        let g = std_slice(c.grad);
        vec![Some(array(
            &shape,
            rotate_rows(&g, &cos, &sin, t, width, head_dim, cols, true),
        ))]
    })
}

/// [`rope_rows`] of every head of `x: [b·t, n_head·hd]` (a q or k projection).
pub fn rope_bthd(x: &Tensor, t: usize, n_head: usize, start_pos: usize) -> Tensor {
    let d = x.shape()[1];
    assert!(d.is_multiple_of(n_head), "d must be a multiple of n_head");
    rope_rows(x, t, d / n_head, d, start_pos)
}

/// The rotate-half rotation (or its inverse) of the `[hd]` slices in columns `0..cols` of rows
/// of length `width`; other columns are copied.
#[allow(clippy::too_many_arguments)]
fn rotate_rows(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    t: usize,
    width: usize,
    hd: usize,
    cols: usize,
    inverse: bool,
) -> Vec<f32> {
    let half = hd / 2;
    let mut out = x.to_vec();
    if width == 0 || cols == 0 {
        return out;
    }
    for (r, (xr, yr)) in x
        .chunks_exact(width)
        .zip(out.chunks_exact_mut(width))
        .enumerate()
    {
        let p = r % t;
        let (c, s) = (
            &cos[p * half..(p + 1) * half],
            &sin[p * half..(p + 1) * half],
        );
        for (xh, yh) in xr[..cols]
            .chunks_exact(hd)
            .zip(yr[..cols].chunks_exact_mut(hd))
        {
            rotate_half(xh, yh, c, s, inverse);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Small register-tiled matrix products for attention.
//
// Per head, attention multiplies `[t, hd]` and `[t, t]` matrices (64 × 16 for the small model):
// too small for a general GEMM to amortise its packing and per-call overhead. `tile_gemm` keeps
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

/// `c[i·ldc + j] = Σ_k a(i, k) · b[k·ldb + j]` for `i < m`, `j < n`, `k` in `krange` of `0..kdim`.
/// With `lower_only`, output tiles entirely above the diagonal (`j0 >= i0 + rows`) are not
/// written (the caller ignores them). `avx` selects the AVX micro-kernel for full tiles (only
/// pass `true` when the CPU has AVX; see [`has_avx`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile_gemm(
    m: usize,
    n: usize,
    kdim: usize,
    a: Operand<'_>,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    krange: KRange,
    lower_only: bool,
    avx: bool,
) {
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
            if rows == MR && cols == NR {
                #[cfg(target_arch = "x86_64")]
                if avx {
                    // SAFETY: callers pass `avx = true` only when `has_avx()` said so.
                    unsafe { tile_avx(a, i0, klo, khi, b, ldb, j0, &mut acc) };
                } else {
                    tile_portable(a, i0, klo, khi, b, ldb, j0, MR, &mut acc);
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = avx;
                    tile_portable(a, i0, klo, khi, b, ldb, j0, MR, &mut acc);
                }
            } else {
                for kk in klo..khi {
                    let mut bv = [0.0f32; NR];
                    bv[..cols].copy_from_slice(&b[kk * ldb + j0..kk * ldb + j0 + cols]);
                    for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
                        let av = a.data[(i0 + r) * a.rs + kk * a.cs];
                        for (x, &bb) in acc_r.iter_mut().zip(&bv) {
                            *x += av * bb;
                        }
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate().take(rows) {
                let at = (i0 + r) * ldc + j0;
                c[at..at + cols].copy_from_slice(&acc_r[..cols]);
            }
        }
    }
}

/// One `rows × NR` output tile, portable code: `acc[r][j] = Σ_k a(i0 + r, k) · b[k·ldb + j0 + j]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile_portable(
    a: Operand<'_>,
    i0: usize,
    klo: usize,
    khi: usize,
    b: &[f32],
    ldb: usize,
    j0: usize,
    rows: usize,
    acc: &mut [[f32; NR]; MR],
) {
    for kk in klo..khi {
        let bv: &[f32; NR] = b[kk * ldb + j0..kk * ldb + j0 + NR]
            .try_into()
            .expect("NR columns");
        for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
            let av = a.data[(i0 + r) * a.rs + kk * a.cs];
            for (x, &bb) in acc_r.iter_mut().zip(bv) {
                *x += av * bb;
            }
        }
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
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx")]
fn tile_avx(
    a: Operand<'_>,
    i0: usize,
    klo: usize,
    khi: usize,
    b: &[f32],
    ldb: usize,
    j0: usize,
    acc: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let mut c: [__m256; 2 * MR] = [_mm256_setzero_ps(); 2 * MR];
    for kk in klo..khi {
        let bs: &[f32; NR] = b[kk * ldb + j0..kk * ldb + j0 + NR]
            .try_into()
            .expect("NR columns");
        // SAFETY: `bs` has NR = 16 elements: lanes 0..8 and 8..16 are in bounds.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(bs.as_ptr()),
                _mm256_loadu_ps(bs.as_ptr().add(8)),
            )
        };
        for r in 0..MR {
            let av = _mm256_set1_ps(a.data[(i0 + r) * a.rs + kk * a.cs]);
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

/// Forward for one batch element: `xb` its `[t, 3d]` q|k|v rows, `ob` its `[t, d]` output rows,
/// `pb` its `[h, t, t]` probabilities (written), `mb` its dropout mask, if any.
#[inline(always)]
fn attn_fwd_body(dims: AttnDims, xb: &[f32], ob: &mut [f32], pb: &mut [f32], mb: Option<&[f32]>) {
    let AttnDims {
        t,
        d,
        hd,
        n_head,
        scale,
        avx,
    } = dims;
    let (tt, ld) = (t * t, 3 * d);
    let mut kt = vec![0.0f32; hd * t];
    let mut dropped = mb.map(|_| vec![0.0f32; tt]);
    for hi in 0..n_head {
        let (qc, kc, vc) = (hi * hd, d + hi * hd, 2 * d + hi * hd);
        for j in 0..t {
            for (c, &x) in xb[j * ld + kc..j * ld + kc + hd].iter().enumerate() {
                kt[c * t + j] = x;
            }
        }
        let ph = &mut pb[hi * tt..(hi + 1) * tt];
        // S = Q·Kᵀ (lower triangle)
        let q = Operand {
            data: &xb[qc..],
            rs: ld,
            cs: 1,
        };
        tile_gemm(t, t, hd, q, &kt, t, ph, t, KRange::Full, true, avx);
        for (i, row) in ph.chunks_exact_mut(t).enumerate() {
            softmax_scaled_in_place(&mut row[..=i], scale);
            row[i + 1..].fill(0.0);
        }
        let p_used: &[f32] = match (&mut dropped, mb) {
            (Some(buf), Some(m)) => {
                for ((o, &p), &mm) in buf.iter_mut().zip(ph.iter()).zip(&m[hi * tt..]) {
                    *o = p * mm;
                }
                buf
            }
            _ => ph,
        };
        // O = P'·V
        let p = Operand {
            data: p_used,
            rs: t,
            cs: 1,
        };
        tile_gemm(
            t,
            hd,
            t,
            p,
            &xb[vc..],
            ld,
            &mut ob[qc..],
            d,
            KRange::Lower,
            false,
            avx,
        );
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
    let AttnDims {
        t,
        d,
        hd,
        n_head,
        scale,
        avx,
    } = dims;
    let (tt, ld) = (t * t, 3 * d);
    let mut vt = vec![0.0f32; hd * t];
    let mut dp = vec![0.0f32; tt];
    let mut dropped = mb.map(|_| vec![0.0f32; tt]);
    for hi in 0..n_head {
        let (qc, kc, vc) = (hi * hd, d + hi * hd, 2 * d + hi * hd);
        let ph = &pb[hi * tt..(hi + 1) * tt];
        let mh = mb.map(|m| &m[hi * tt..(hi + 1) * tt]);
        for j in 0..t {
            for (c, &x) in xb[j * ld + vc..j * ld + vc + hd].iter().enumerate() {
                vt[c * t + j] = x;
            }
        }
        let p_used: &[f32] = match (&mut dropped, mh) {
            (Some(buf), Some(m)) => {
                for ((o, &p), &mm) in buf.iter_mut().zip(ph).zip(m) {
                    *o = p * mm;
                }
                buf
            }
            _ => ph,
        };
        // dV = P'ᵀ·dO: row j of dV sums over queries i >= j.
        let pt = Operand {
            data: p_used,
            rs: 1,
            cs: t,
        };
        tile_gemm(
            t,
            hd,
            t,
            pt,
            &gb[qc..],
            d,
            &mut gxb[vc..],
            ld,
            KRange::Upper,
            false,
            avx,
        );
        // dP = dO·Vᵀ (lower triangle)
        let go = Operand {
            data: &gb[qc..],
            rs: d,
            cs: 1,
        };
        tile_gemm(t, t, hd, go, &vt, t, &mut dp, t, KRange::Full, true, avx);
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
                *x = p * (*x - s) * scale;
            }
            dr[i + 1..].fill(0.0);
        }
        // dQ = dS·K ; dK = dSᵀ·Q
        let ds = Operand {
            data: &dp,
            rs: t,
            cs: 1,
        };
        tile_gemm(
            t,
            hd,
            t,
            ds,
            &xb[kc..],
            ld,
            &mut gxb[qc..],
            ld,
            KRange::Lower,
            false,
            avx,
        );
        let dst = Operand {
            data: &dp,
            rs: 1,
            cs: t,
        };
        tile_gemm(
            t,
            hd,
            t,
            dst,
            &xb[qc..],
            ld,
            &mut gxb[kc..],
            ld,
            KRange::Upper,
            false,
            avx,
        );
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

/// Multi-head causal attention on a fused `qkv: [b·t, 3d]` tensor (rows in `(batch, position)`
/// order, each row `[q | k | v]`, each of those `[n_head, head_dim]`, as
/// `linear_cat(x, &[wq, wk, wv])` produces). For every batch element and head,
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
    qkv: &Tensor,
    t: usize,
    n_head: usize,
    dropout: Option<(f32, &mut Rng)>,
    keep_probs: bool,
) -> (Tensor, Option<Array>) {
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
        "gpt_causal_attention",
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
                    tile_gemm(m, n, k, op, &b, n, &mut c, n, krange, false, avx);
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
