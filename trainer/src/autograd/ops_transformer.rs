//! Operations for transformers: token embedding, layer/RMS normalisation, causal masking and
//! softmax for attention scores, rotary position embedding (RoPE), and slicing/concatenation to
//! split and merge heads.
//!
//! The normalisation, masking and RoPE ops work on the contiguous last axes (row-major slices),
//! so they cost one pass over the data forward and one backward.

use ndarray::{Axis, IxDyn, Slice};

use super::tensor::{Array, Tensor};

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

impl Tensor {
    /// The RoPE frequency base (`θ_i = ROPE_BASE^(-2i / head_dim)`), as in RoFormer, GPT-NeoX and
    /// Llama.
    pub const ROPE_BASE: f64 = 10_000.0;

    /// Embedding lookup on a table `self: [vocab, d]`: row `ids[i]` of the table becomes output
    /// row `i`, giving `[ids.len(), d]` (reshape to `[b, t, d]` as needed). Backward scatter-adds
    /// the output rows into the table gradient (repeated ids accumulate). Panics on an id
    /// `>= vocab`.
    pub fn embedding(&self, ids: &[usize]) -> Tensor {
        let table = self.value();
        assert_eq!(
            table.ndim(),
            2,
            "embedding table must be [vocab, d], got {:?}",
            table.shape()
        );
        let (vocab, d) = (table.shape()[0], table.shape()[1]);
        let ts = table.as_standard_layout();
        let ts = ts.as_slice().expect("standard layout");
        let mut out = Vec::with_capacity(ids.len() * d);
        for &i in ids {
            assert!(i < vocab, "embedding id {i} out of range 0..{vocab}");
            out.extend_from_slice(&ts[i * d..(i + 1) * d]);
        }
        let value = Array::from_shape_vec(IxDyn(&[ids.len(), d]), out).expect("[len, d]");
        drop(table);
        let ids = ids.to_vec();
        Tensor::from_op("embedding", value, vec![self.clone()], move |c| {
            let g = c.grad.as_standard_layout();
            let g = g.as_slice().expect("standard layout");
            let mut dt = vec![0.0f32; vocab * d];
            for (r, &i) in ids.iter().enumerate() {
                for (a, &x) in dt[i * d..(i + 1) * d]
                    .iter_mut()
                    .zip(&g[r * d..(r + 1) * d])
                {
                    *a += x;
                }
            }
            vec![Some(
                Array::from_shape_vec(IxDyn(&[vocab, d]), dt).expect("[vocab, d]"),
            )]
        })
    }

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
        let mut xhat = vec![0.0f32; rows * d];
        let mut rstd = vec![0.0f32; rows];
        let mut out = vec![0.0f32; rows * d];
        if d > 0 {
            for (((xr, hr), yr), r) in xs
                .chunks_exact(d)
                .zip(xhat.chunks_exact_mut(d))
                .zip(out.chunks_exact_mut(d))
                .zip(rstd.iter_mut())
            {
                let mean = xr.iter().sum::<f32>() / d as f32;
                let var = xr.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                *r = 1.0 / (var + eps).sqrt();
                for (((h, y), &v), &wi) in hr.iter_mut().zip(yr.iter_mut()).zip(xr).zip(&w) {
                    *h = (v - mean) * *r;
                    *y = *h * wi;
                }
                if let Some(b) = &b {
                    for (y, &bi) in yr.iter_mut().zip(b) {
                        *y += bi;
                    }
                }
            }
        }
        drop(x);
        let value = Array::from_shape_vec(IxDyn(&shape), out).expect("same shape");
        let mut inputs = vec![self.clone(), weight.clone()];
        inputs.extend(bias.cloned());
        Tensor::from_op("layer_norm", value, inputs, move |c| {
            let g = c.grad.as_standard_layout();
            let g = g.as_slice().expect("standard layout");
            let gx = c.needs[0].then(|| {
                // dx = rstd * (dxh - mean(dxh) - xhat * mean(dxh * xhat)), dxh = g * w
                let mut dx = vec![0.0f32; rows * d];
                let mut dxh = vec![0.0f32; d];
                if d > 0 {
                    for (((gr, hr), dr), &r) in g
                        .chunks_exact(d)
                        .zip(xhat.chunks_exact(d))
                        .zip(dx.chunks_exact_mut(d))
                        .zip(&rstd)
                    {
                        let (mut m1, mut m2) = (0.0f32, 0.0f32);
                        for (((t, &gi), &wi), &h) in dxh.iter_mut().zip(gr).zip(&w).zip(hr) {
                            *t = gi * wi;
                            m1 += *t;
                            m2 += *t * h;
                        }
                        let (m1, m2) = (m1 / d as f32, m2 / d as f32);
                        for ((o, &t), &h) in dr.iter_mut().zip(&dxh).zip(hr) {
                            *o = r * (t - m1 - h * m2);
                        }
                    }
                }
                Array::from_shape_vec(IxDyn(&shape), dx).expect("same shape")
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
        let mut xhat = vec![0.0f32; rows * d];
        let mut rinv = vec![0.0f32; rows];
        let mut out = vec![0.0f32; rows * d];
        if d > 0 {
            for (((xr, hr), yr), r) in xs
                .chunks_exact(d)
                .zip(xhat.chunks_exact_mut(d))
                .zip(out.chunks_exact_mut(d))
                .zip(rinv.iter_mut())
            {
                let ms = xr.iter().map(|&v| v * v).sum::<f32>() / d as f32;
                *r = 1.0 / (ms + eps).sqrt();
                for (((h, y), &v), &wi) in hr.iter_mut().zip(yr.iter_mut()).zip(xr).zip(&w) {
                    *h = v * *r;
                    *y = *h * wi;
                }
            }
        }
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
                    let mut dx = vec![0.0f32; rows * d];
                    if d > 0 {
                        for (((gr, hr), dr), &r) in g
                            .chunks_exact(d)
                            .zip(xhat.chunks_exact(d))
                            .zip(dx.chunks_exact_mut(d))
                            .zip(&rinv)
                        {
                            let m2 = gr
                                .iter()
                                .zip(&w)
                                .zip(hr)
                                .map(|((&gi, &wi), &h)| gi * wi * h)
                                .sum::<f32>()
                                / d as f32;
                            for (((o, &gi), &wi), &h) in dr.iter_mut().zip(gr).zip(&w).zip(hr) {
                                *o = r * (gi * wi - h * m2);
                            }
                        }
                    }
                    Array::from_shape_vec(IxDyn(&shape), dx).expect("same shape")
                });
                let gw = c.needs[1].then(|| sum_rows_product(g, &xhat, d));
                vec![gx, gw]
            },
        )
    }

    /// Causal mask for attention scores `self: [.., t, t]` (query `i` on axis -2, key `j` on
    /// axis -1): every element with `j > i` is replaced by `value` (typically `f32::NEG_INFINITY`
    /// before a [`Tensor::softmax`] on the last axis); the others pass through. Output has the
    /// input's shape; masked elements get no gradient. [`Tensor::causal_softmax`] fuses this with
    /// the softmax.
    pub fn masked_fill_causal(&self, value: f32) -> Tensor {
        let shape = self.shape();
        let t = square_last_two(&shape, "masked_fill_causal");
        let mut out = self.value().as_standard_layout().into_owned();
        apply_causal(out.as_slice_mut().expect("standard layout"), t, value);
        Tensor::from_op("masked_fill_causal", out, vec![self.clone()], move |c| {
            let mut g = c.grad.as_standard_layout().into_owned();
            apply_causal(g.as_slice_mut().expect("standard layout"), t, 0.0);
            vec![Some(g)]
        })
    }

    /// Causal softmax of attention scores `self: [.., t, t]` (query `i` on axis -2, key `j` on
    /// axis -1): row `i` is the softmax of `self[.., i, 0..=i]`, and keys `j > i` get exactly 0
    /// probability. Same result as `masked_fill_causal(-inf).softmax(last)` in one pass. Output
    /// has the input's shape.
    pub fn causal_softmax(&self) -> Tensor {
        let shape = self.shape();
        let t = square_last_two(&shape, "causal_softmax");
        let x = self.value();
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        let mut out = vec![0.0f32; xs.len()];
        if t > 0 {
            for (row_idx, (xr, yr)) in xs.chunks_exact(t).zip(out.chunks_exact_mut(t)).enumerate() {
                let i = row_idx % t;
                let (xr, yr) = (&xr[..=i], &mut yr[..=i]);
                let m = xr.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let mut s = 0.0f32;
                for (y, &v) in yr.iter_mut().zip(xr) {
                    *y = (v - m).exp();
                    s += *y;
                }
                let inv = 1.0 / s;
                for y in yr.iter_mut() {
                    *y *= inv;
                }
            }
        }
        drop(x);
        let value = Array::from_shape_vec(IxDyn(&shape), out).expect("same shape");
        Tensor::from_op("causal_softmax", value, vec![self.clone()], move |c| {
            // dx = y * (g - sum(g * y)) on the unmasked part; 0 elsewhere.
            let g = c.grad.as_standard_layout();
            let g = g.as_slice().expect("standard layout");
            let y = c.out.as_standard_layout();
            let y = y.as_slice().expect("standard layout");
            let mut dx = vec![0.0f32; g.len()];
            if t > 0 {
                for (row_idx, ((gr, yr), dr)) in g
                    .chunks_exact(t)
                    .zip(y.chunks_exact(t))
                    .zip(dx.chunks_exact_mut(t))
                    .enumerate()
                {
                    let n = row_idx % t + 1;
                    let s: f32 = gr[..n].iter().zip(&yr[..n]).map(|(&a, &b)| a * b).sum();
                    for ((o, &gi), &yi) in dr[..n].iter_mut().zip(&gr[..n]).zip(&yr[..n]) {
                        *o = yi * (gi - s);
                    }
                }
            }
            vec![Some(
                Array::from_shape_vec(IxDyn(&shape), dx).expect("same shape"),
            )]
        })
    }

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
        let shape = IxDyn(&[t, half]);
        (
            Array::from_shape_vec(shape.clone(), cos).expect("[t, half]"),
            Array::from_shape_vec(shape, sin).expect("[t, half]"),
        )
    }

    /// Rotary position embedding, **rotate-half (GPT-NeoX / Hugging Face Llama) convention**,
    /// base [`Tensor::ROPE_BASE`] = 10000, on `self: [b, h, t, head_dim]` (any rank ≥ 2 works:
    /// axis -2 is the position, axis -1 the head dimension, which must be even). Position `p` of
    /// axis -2 is `start_pos + p` (0 for training; the cache length when decoding one token at a
    /// time).
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
    /// inverse rotation.
    pub fn rope(&self, start_pos: usize) -> Tensor {
        let shape = self.shape();
        assert!(
            shape.len() >= 2,
            "rope needs [.., t, head_dim], got {shape:?}"
        );
        let (t, hd) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let (cos, sin) = Tensor::rope_tables(start_pos, t, hd);
        let cos = cos.into_raw_vec_and_offset().0;
        let sin = sin.into_raw_vec_and_offset().0;
        let half = hd / 2;
        let x = self.value();
        let xs = x.as_standard_layout();
        let mut out = vec![0.0f32; xs.len()];
        rotate(
            xs.as_slice().expect("standard layout"),
            &mut out,
            &cos,
            &sin,
            t,
            half,
            false,
        );
        drop(x);
        let value = Array::from_shape_vec(IxDyn(&shape), out).expect("same shape");
        Tensor::from_op("rope", value, vec![self.clone()], move |c| {
            let g = c.grad.as_standard_layout();
            let mut dx = vec![0.0f32; g.len()];
            rotate(
                g.as_slice().expect("standard layout"),
                &mut dx,
                &cos,
                &sin,
                t,
                half,
                true,
            );
            vec![Some(
                Array::from_shape_vec(IxDyn(&shape), dx).expect("same shape"),
            )]
        })
    }

    /// The elements `start .. start + len` of `axis` (like PyTorch `narrow`); the other axes are
    /// unchanged: `[.., n, ..] -> [.., len, ..]`. Backward pads the gradient with zeros.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Tensor {
        let shape = self.shape();
        assert!(
            axis < shape.len(),
            "narrow axis {axis} of a {}-D tensor",
            shape.len()
        );
        assert!(
            start + len <= shape[axis],
            "narrow {start}..{} out of range 0..{} on axis {axis}",
            start + len,
            shape[axis]
        );
        let slice = Slice::from(start..start + len);
        let value = self
            .value()
            .slice_axis(Axis(axis), slice)
            .as_standard_layout()
            .into_owned();
        Tensor::from_op("narrow", value, vec![self.clone()], move |c| {
            let mut g = Array::zeros(IxDyn(&shape));
            g.slice_axis_mut(Axis(axis), slice).assign(c.grad);
            vec![Some(g)]
        })
    }

    /// Concatenates `parts` along `axis`; all other axes must agree:
    /// `[.., n1, ..] ++ [.., n2, ..] -> [.., n1 + n2, ..]`. Panics on an empty list or mismatched
    /// shapes.
    pub fn concat(parts: &[Tensor], axis: usize) -> Tensor {
        assert!(!parts.is_empty(), "concat of no tensors");
        let values: Vec<_> = parts.iter().map(|p| p.value()).collect();
        let views: Vec<_> = values.iter().map(|v| v.view()).collect();
        let value = ndarray::concatenate(Axis(axis), &views)
            .unwrap_or_else(|e| panic!("concat along axis {axis}: {e}"))
            .as_standard_layout()
            .into_owned();
        let lens: Vec<usize> = values.iter().map(|v| v.shape()[axis]).collect();
        drop(views);
        drop(values);
        Tensor::from_op("concat", value, parts.to_vec(), move |c| {
            let mut start = 0;
            lens.iter()
                .zip(c.needs)
                .map(|(&len, &need)| {
                    let s = Slice::from(start..start + len);
                    start += len;
                    need.then(|| {
                        c.grad
                            .slice_axis(Axis(axis), s)
                            .as_standard_layout()
                            .into_owned()
                    })
                })
                .collect()
        })
    }
}

/// Checks that `shape` is `[.., t, t]` and returns `t`.
fn square_last_two(shape: &[usize], what: &str) -> usize {
    assert!(
        shape.len() >= 2 && shape[shape.len() - 1] == shape[shape.len() - 2],
        "{what} needs scores of shape [.., t, t], got {shape:?}"
    );
    shape[shape.len() - 1]
}

/// Sets every element with key index > query index of each `[t, t]` block to `value`.
fn apply_causal(a: &mut [f32], t: usize, value: f32) {
    if t == 0 {
        return;
    }
    for (row_idx, row) in a.chunks_exact_mut(t).enumerate() {
        let i = row_idx % t;
        row[i + 1..].fill(value);
    }
}

/// Applies the rotate-half RoPE rotation (or its inverse) to every `[t, 2·half]` block of `x`.
fn rotate(
    x: &[f32],
    out: &mut [f32],
    cos: &[f32],
    sin: &[f32],
    t: usize,
    half: usize,
    inverse: bool,
) {
    let hd = 2 * half;
    if hd == 0 || t == 0 {
        return;
    }
    for (row_idx, (xr, yr)) in x.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
        let p = row_idx % t;
        let (c, s) = (
            &cos[p * half..(p + 1) * half],
            &sin[p * half..(p + 1) * half],
        );
        rotate_half(xr, yr, c, s, inverse);
    }
}

/// The rotate-half RoPE rotation (or its inverse) of one `[2·half]` slice `x` into `y`, with the
/// `[half]` cos/sin of its position. Shared with the GPT trainer's fused ops.
pub(crate) fn rotate_half(x: &[f32], y: &mut [f32], cos: &[f32], sin: &[f32], inverse: bool) {
    let half = cos.len();
    let (x1, x2) = x.split_at(half);
    let (y1, y2) = y.split_at_mut(half);
    for i in 0..half {
        let (a, b, ci, si) = (x1[i], x2[i], cos[i], sin[i]);
        if inverse {
            y1[i] = a * ci + b * si;
            y2[i] = b * ci - a * si;
        } else {
            y1[i] = a * ci - b * si;
            y2[i] = b * ci + a * si;
        }
    }
}
