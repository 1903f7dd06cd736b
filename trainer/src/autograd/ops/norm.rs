//! LayerNorm and RMSNorm over the last axis. Both work on contiguous rows, so they cost one pass
//! over the data forward and one backward.

use ndarray::IxDyn;
use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::{assume_init, block_rows, par_fill, uninit_vec};
use crate::autograd::tensor::{Array, Tensor};

/// The last-axis length and number of rows of `shape` (rows = product of the other axes).
fn rows_of(shape: &[usize], what: &str) -> (usize, usize) {
    let d = *shape
        .last()
        .unwrap_or_else(|| panic!("{what} needs at least one axis"));
    let rows = shape[..shape.len() - 1].iter().product();
    (rows, d)
}

/// The elements of a 1-D parameter of length `d`, as a vector.
fn vector(t: &Tensor, d: usize, what: &str) -> Vec<f32> {
    let v = t.value();
    assert_eq!(v.shape(), [d], "{what} must have shape [{d}]");
    v.iter().copied().collect()
}

/// `Σ_rows a[row] ⊙ b[row]` over rows of length `d`, as a `[d]` array.
fn sum_rows_product(a: &[f32], b: &[f32], d: usize) -> Array {
    let mut acc = vec![0.0f32; d];
    if d > 0 {
        for (ra, rb) in a.chunks_exact(d).zip(b.chunks_exact(d)) {
            for ((s, &x), &y) in acc.iter_mut().zip(ra).zip(rb) {
                *s += x * y;
            }
        }
    }
    Array::from_shape_vec(IxDyn(&[d]), acc).expect("[d]")
}

/// `Σ_rows a[row]` over rows of length `d`, as a `[d]` array.
fn sum_rows(a: &[f32], d: usize) -> Array {
    let mut acc = vec![0.0f32; d];
    if d > 0 {
        for r in a.chunks_exact(d) {
            for (s, &x) in acc.iter_mut().zip(r) {
                *s += x;
            }
        }
    }
    Array::from_shape_vec(IxDyn(&[d]), acc).expect("[d]")
}

/// Normalises the rows (length `d`) of `xs`: with `(shift, r) = stats(row)`,
/// `xhat = (x - shift)·r` and `y = xhat ⊙ w (+ b)`. Returns `(xhat, r per row, y)`, the two
/// `[rows·d]`, `r` `[rows]`.
fn normalize_rows(
    xs: &[f32],
    rows: usize,
    d: usize,
    w: &[f32],
    b: Option<&[f32]>,
    stats: impl Fn(&[f32]) -> (f32, f32) + Sync,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut xhat, mut out) = (uninit_vec(rows * d), uninit_vec(rows * d));
    let mut rs = vec![0.0f32; rows];
    if d > 0 {
        let br = block_rows(d);
        xs.par_chunks(br * d)
            .zip(xhat.par_chunks_mut(br * d))
            .zip(out.par_chunks_mut(br * d))
            .zip(rs.par_chunks_mut(br))
            .for_each(|(((xs, xhat), out), rs)| {
                for (((xr, hr), yr), r) in xs
                    .chunks_exact(d)
                    .zip(xhat.chunks_exact_mut(d))
                    .zip(out.chunks_exact_mut(d))
                    .zip(rs.iter_mut())
                {
                    let (shift, ri) = stats(xr);
                    *r = ri;
                    let xw = hr.iter_mut().zip(yr.iter_mut()).zip(xr).zip(w);
                    match b {
                        None => {
                            for (((h, y), &v), &wi) in xw {
                                let hv = (v - shift) * ri;
                                h.write(hv);
                                y.write(hv * wi);
                            }
                        }
                        Some(b) => {
                            for ((((h, y), &v), &wi), &bi) in xw.zip(b) {
                                let hv = (v - shift) * ri;
                                h.write(hv);
                                y.write(hv * wi + bi);
                            }
                        }
                    }
                }
            });
    }
    // Every element of `xhat` and `out` was written (`rows·d` of them, all rows).
    let (xhat, out) = (assume_init(xhat), assume_init(out));
    (xhat, rs, out)
}

/// The input gradient of a row normalisation, `[rows, d]` shaped as `shape`: `row(g, xhat, dx, r)`
/// fills each row of `dx` from the rows of the upstream gradient `g` and of `xhat`, and that
/// row's `r`.
fn rows_grad(
    shape: &[usize],
    g: &[f32],
    xhat: &[f32],
    rs: &[f32],
    d: usize,
    row: impl Fn(&[f32], &[f32], &mut [MaybeUninit<f32>], f32) + Sync,
) -> Array {
    if d == 0 {
        return Array::zeros(IxDyn(shape));
    }
    let br = block_rows(d);
    let dx = par_fill(xhat.len(), br * d, |blk, dx| {
        let at = blk * br * d;
        let (g, xhat) = (&g[at..at + dx.len()], &xhat[at..at + dx.len()]);
        for (((gr, hr), dr), &r) in g
            .chunks_exact(d)
            .zip(xhat.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
            .zip(&rs[blk * br..])
        {
            row(gr, hr, dr, r);
        }
    });
    Array::from_shape_vec(IxDyn(shape), dx).expect("same shape")
}

impl Tensor {
    /// Layer normalisation over the last axis: for each row `x` of length `d`,
    /// `y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias`, with the biased variance
    /// (divide by `d`), as PyTorch `LayerNorm`. `self: [.., d]`, `weight: [d]`, `bias: [d]` or
    /// `None` (no shift, as nanoGPT's `bias=False`); output has the input's shape.
    pub fn layer_norm(&self, weight: &Tensor, bias: Option<&Tensor>, eps: f32) -> Tensor {
        let shape = self.shape();
        let (rows, d) = rows_of(&shape, "layer_norm");
        let w = vector(weight, d, "layer_norm weight");
        let b = bias.map(|b| vector(b, d, "layer_norm bias"));
        let x = self.value();
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        let (xhat, rstd, out) = normalize_rows(xs, rows, d, &w, b.as_deref(), |xr| {
            let mean = xr.iter().sum::<f32>() / d as f32;
            let var = xr.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            (mean, 1.0 / (var + eps).sqrt())
        });
        drop(x);
        let value = Array::from_shape_vec(IxDyn(&shape), out).expect("same shape");
        let mut inputs = vec![self.clone(), weight.clone()];
        inputs.extend(bias.cloned());
        Tensor::from_op("layer_norm", value, inputs, move |c| {
            let g = c.grad.as_standard_layout();
            let g = g.as_slice().expect("standard layout");
            let gx = c.needs[0].then(|| {
                // dx = rstd * (dxh - mean(dxh) - xhat * mean(dxh * xhat)), dxh = g * w
                rows_grad(&shape, g, &xhat, &rstd, d, |gr, hr, dr, r| {
                    let (mut m1, mut m2) = (0.0f32, 0.0f32);
                    for ((&gi, &wi), &h) in gr.iter().zip(&w).zip(hr) {
                        let t = gi * wi;
                        m1 += t;
                        m2 += t * h;
                    }
                    let (m1, m2) = (m1 / d as f32, m2 / d as f32);
                    for (((o, &gi), &wi), &h) in dr.iter_mut().zip(gr).zip(&w).zip(hr) {
                        o.write(r * (gi * wi - m1 - h * m2));
                    }
                })
            });
            let gw = c.needs[1].then(|| sum_rows_product(g, &xhat, d));
            let mut grads = vec![gx, gw];
            if c.inputs.len() == 3 {
                grads.push(c.needs[2].then(|| sum_rows(g, d)));
            }
            grads
        })
    }

    /// RMS normalisation over the last axis: for each row `x` of length `d`,
    /// `y = x / sqrt(mean(x²) + eps) * weight` (as Llama / PyTorch `RMSNorm`). `self: [.., d]`,
    /// `weight: [d]`; output has the input's shape.
    pub fn rms_norm(&self, weight: &Tensor, eps: f32) -> Tensor {
        let shape = self.shape();
        let (rows, d) = rows_of(&shape, "rms_norm");
        let w = vector(weight, d, "rms_norm weight");
        let x = self.value();
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        // `x - 0.0` is `x` exactly, so the shared `(x - shift)·r` is `x·r` here.
        let (xhat, rinv, out) = normalize_rows(xs, rows, d, &w, None, |xr| {
            let ms = xr.iter().map(|&v| v * v).sum::<f32>() / d as f32;
            (0.0, 1.0 / (ms + eps).sqrt())
        });
        drop(x);
        let value = Array::from_shape_vec(IxDyn(&shape), out).expect("same shape");
        Tensor::from_op(
            "rms_norm",
            value,
            vec![self.clone(), weight.clone()],
            move |c| {
                let g = c.grad.as_standard_layout();
                let g = g.as_slice().expect("standard layout");
                let gx = c.needs[0].then(|| {
                    // dx = r * (dxh - xhat * mean(dxh * xhat)), dxh = g * w
                    rows_grad(&shape, g, &xhat, &rinv, d, |gr, hr, dr, r| {
                        let m2 = gr
                            .iter()
                            .zip(&w)
                            .zip(hr)
                            .map(|((&gi, &wi), &h)| gi * wi * h)
                            .sum::<f32>()
                            / d as f32;
                        for (((o, &gi), &wi), &h) in dr.iter_mut().zip(gr).zip(&w).zip(hr) {
                            o.write(r * (gi * wi - h * m2));
                        }
                    })
                });
                let gw = c.needs[1].then(|| sum_rows_product(g, &xhat, d));
                vec![gx, gw]
            },
        )
    }
}
