//! Rotary position embedding (RoPE), **rotate-half (GPT-NeoX / Hugging Face Llama) convention**,
//! base [`Tensor::ROPE_BASE`] = 10000: the tables ([`Tensor::rope_tables`]) and one rotation
//! kernel used by both [`Tensor::rope`] (`[.., t, head_dim]`) and [`Tensor::rope_rows`] (the
//! GPT's `[b·t, n_head·head_dim]` rows).

use std::mem::MaybeUninit;

use super::{array, block_rows, par_fill, std_slice};
use crate::autograd::tensor::{Array, Tensor};

impl Tensor {
    /// The RoPE frequency base (`θ_i = ROPE_BASE^(-2i / head_dim)`), as in RoFormer, GPT-NeoX and
    /// Llama.
    pub const ROPE_BASE: f64 = 10_000.0;

    /// The RoPE tables for positions `start_pos .. start_pos + t`: `(cos, sin)`, each
    /// `[t, head_dim / 2]`, with `angle[p, i] = (start_pos + p) · ROPE_BASE^(-2i / head_dim)`
    /// (`inv_freq = ROPE_BASE.powf(-(2i) / head_dim)` and the product in f64, then `cos`/`sin`
    /// in f64, each rounded once to f32). Export these tables to reproduce [`Tensor::rope`]
    /// bit-exactly. Panics if `head_dim` is odd.
    pub fn rope_tables(start_pos: usize, t: usize, head_dim: usize) -> (Array, Array) {
        assert!(
            head_dim.is_multiple_of(2),
            "rope head_dim {head_dim} must be even"
        );
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for p in start_pos..start_pos + t {
            for i in 0..half {
                let inv_freq = Tensor::ROPE_BASE.powf(-((2 * i) as f64) / head_dim as f64);
                let angle = p as f64 * inv_freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (array(&[t, half], cos), array(&[t, half], sin))
    }

    /// Rotary position embedding on `self: [b, h, t, head_dim]` (any rank ≥ 2 works: axis -2 is
    /// the position, axis -1 the head dimension, which must be even). Position `p` of axis -2 is
    /// `start_pos + p` (0 for training; the cache length when decoding one token at a time).
    ///
    /// With `half = head_dim / 2` and `(cos, sin)` from [`Tensor::rope_tables`], for `i < half`
    /// the pair `(x[i], x[i + half])` (not adjacent elements) is rotated by `angle[p, i]`:
    ///
    /// ```text
    /// y[i]        = x[i] · cos[p, i] - x[i + half] · sin[p, i]
    /// y[i + half] = x[i + half] · cos[p, i] + x[i] · sin[p, i]
    /// ```
    ///
    /// computed in f32 exactly as written. Output has the input's shape. The backward pass is the
    /// inverse rotation. (The same kernel as [`Tensor::rope_rows`], on rows of one head.)
    pub fn rope(&self, start_pos: usize) -> Tensor {
        let shape = self.shape();
        assert!(
            shape.len() >= 2,
            "rope needs [.., t, head_dim], got {shape:?}"
        );
        let (t, hd) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let rows = shape.iter().product::<usize>() / hd.max(1);
        self.reshape(&[rows, hd])
            .rope_rows(t, hd, hd, start_pos)
            .reshape(&shape)
    }

    /// RoPE on the GPT's row layout: rotates the head slices in the first `cols` columns of
    /// every row of `self: [b·t, width]` (rows in `(batch, position)` order; columns `0..cols`
    /// are consecutive `[head_dim]` slices, the rest pass through) at position
    /// `start_pos + (row % t)`, with the rotation and tables of [`Tensor::rope`]. For a fused
    /// `[q | k | v]` tensor, `cols = 2·d` rotates q and k. Output `[b·t, width]`.
    pub fn rope_rows(&self, t: usize, head_dim: usize, cols: usize, start_pos: usize) -> Tensor {
        let shape = self.shape();
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
        let xv = self.value();
        let out = rotate_rows(&std_slice(&xv), &cos, &sin, t, width, head_dim, cols, false);
        drop(xv);
        Tensor::from_op("rope", array(&shape, out), vec![self.clone()], move |c| {
            let g = std_slice(c.grad);
            vec![Some(array(
                &shape,
                rotate_rows(&g, &cos, &sin, t, width, head_dim, cols, true),
            ))]
        })
    }
}

/// The rotate-half rotation (or its inverse) of the `[hd]` slices in columns `0..cols` of rows
/// of length `width`; other columns are copied. Blocks of rows run across the rayon pool (each
/// element is computed on its own: the split changes no result).
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
    if width == 0 || cols == 0 || t == 0 {
        return x.to_vec();
    }
    let half = hd / 2;
    let br = block_rows(width);
    par_fill(x.len(), br * width, |blk, out| {
        let x = &x[blk * br * width..blk * br * width + out.len()];
        for (i, (xr, yr)) in x
            .chunks_exact(width)
            .zip(out.chunks_exact_mut(width))
            .enumerate()
        {
            let p = (blk * br + i) % t;
            let (c, s) = (
                &cos[p * half..(p + 1) * half],
                &sin[p * half..(p + 1) * half],
            );
            let (yh, yrest) = yr.split_at_mut(cols);
            for (xh, yh) in xr[..cols].chunks_exact(hd).zip(yh.chunks_exact_mut(hd)) {
                if inverse {
                    rotate_half::<true>(xh, yh, c, s);
                } else {
                    rotate_half::<false>(xh, yh, c, s);
                }
            }
            for (y, &v) in yrest.iter_mut().zip(&xr[cols..]) {
                y.write(v);
            }
        }
    })
}

/// The rotate-half RoPE rotation (or its inverse) of one `[2·half]` slice `x` into `y`, with the
/// `[half]` cos/sin of its position.
#[inline(always)]
fn rotate_half<const INVERSE: bool>(
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    cos: &[f32],
    sin: &[f32],
) {
    let half = cos.len();
    let (x1, x2) = x.split_at(half);
    let (y1, y2) = y.split_at_mut(half);
    for (((((y1, y2), &a), &b), &ci), &si) in
        y1.iter_mut().zip(y2).zip(x1).zip(x2).zip(cos).zip(sin)
    {
        if INVERSE {
            y1.write(a * ci + b * si);
            y2.write(b * ci - a * si);
        } else {
            y1.write(a * ci - b * si);
            y2.write(b * ci + a * si);
        }
    }
}
