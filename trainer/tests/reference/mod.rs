//! Test references: the unfused compositions of basic ops that the library's fused ops must
//! agree with, and the generic ops only tests need (causal mask, causal softmax, narrow,
//! concat). Shared by `gradcheck.rs` and `gpt_model.rs` (`mod reference;`).

// Each test crate uses a different subset.
#![allow(dead_code)]

use aka_trainer::autograd::{Array, Tensor};
use ndarray::{Axis, IxDyn, Slice};

/// Causal mask for attention scores `x: [.., t, t]` (query `i` on axis -2, key `j` on
/// axis -1): every element with `j > i` is replaced by `value` (typically `f32::NEG_INFINITY`
/// before a [`Tensor::softmax`] on the last axis); the others pass through. Output has the
/// input's shape; masked elements get no gradient. [`causal_softmax`] fuses this with
/// the softmax.
pub fn masked_fill_causal(x: &Tensor, value: f32) -> Tensor {
    let shape = x.shape();
    let t = square_last_two(&shape, "masked_fill_causal");
    let mut out = x.value().as_standard_layout().into_owned();
    apply_causal(out.as_slice_mut().expect("standard layout"), t, value);
    Tensor::from_op("masked_fill_causal", out, vec![x.clone()], move |c| {
        let mut g = c.grad.as_standard_layout().into_owned();
        apply_causal(g.as_slice_mut().expect("standard layout"), t, 0.0);
        vec![Some(g)]
    })
}

/// Causal softmax of attention scores `x: [.., t, t]` (query `i` on axis -2, key `j` on
/// axis -1): row `i` is the softmax of `x[.., i, 0..=i]`, and keys `j > i` get exactly 0
/// probability. Same result as `masked_fill_causal(-inf).softmax(last)` in one pass. Output
/// has the input's shape.
pub fn causal_softmax(x: &Tensor) -> Tensor {
    let shape = x.shape();
    let t = square_last_two(&shape, "causal_softmax");
    let xv = x.value();
    let xs = xv.as_standard_layout();
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
    drop(xv);
    let value = Array::from_shape_vec(IxDyn(&shape), out).expect("same shape");
    Tensor::from_op("causal_softmax", value, vec![x.clone()], move |c| {
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

/// The elements `start .. start + len` of `axis` (like PyTorch `narrow`); the other axes are
/// unchanged: `[.., n, ..] -> [.., len, ..]`. Backward pads the gradient with zeros.
pub fn narrow(x: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
    let shape = x.shape();
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
    let value = x
        .value()
        .slice_axis(Axis(axis), slice)
        .as_standard_layout()
        .into_owned();
    Tensor::from_op("narrow", value, vec![x.clone()], move |c| {
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

/// Reference attention from basic ops: `q, k, v: [b·t, d]` -> `[b, h, t, hd]`,
/// `causal_softmax(q·kᵀ/√hd)` (RoPE on q and k first when `rope`), `·v`, back to `[b·t, d]`.
/// What [`Tensor::causal_attention`] fuses.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    b: usize,
    t: usize,
    h: usize,
    rope: bool,
) -> Tensor {
    let d = q.shape()[1];
    let hd = d / h;
    let split = |x: &Tensor| x.reshape(&[b, t, h, hd]).permute(&[0, 2, 1, 3]);
    let (mut q, mut k, v) = (split(q), split(k), split(v));
    if rope {
        q = q.rope(0);
        k = k.rope(0);
    }
    let q3 = q.reshape(&[b * h, t, hd]);
    let k3 = k.reshape(&[b * h, t, hd]).transpose(1, 2);
    let v3 = v.reshape(&[b * h, t, hd]);
    let scores = q3.matmul(&k3).mul_scalar(1.0 / (hd as f32).sqrt());
    let p = causal_softmax(&scores.reshape(&[b, h, t, t])).reshape(&[b * h, t, t]);
    p.matmul(&v3)
        .reshape(&[b, h, t, hd])
        .permute(&[0, 2, 1, 3])
        .reshape(&[b * t, d])
}

/// GELU (tanh approximation) with the library `f32::tanh`, elementwise, and its derivative: the
/// formula [`Tensor::gelu`] evaluates with a vectorised tanh.
pub fn gelu(x: &Tensor) -> Tensor {
    const K: f32 = 0.797_884_6;
    const A: f32 = 0.044_715;
    unary(
        x,
        |x| 0.5 * x * (1.0 + (K * (x + A * x * x * x)).tanh()),
        |x| {
            let t = (K * (x + A * x * x * x)).tanh();
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * K * (1.0 + 3.0 * A * x * x)
        },
    )
}

/// SiLU `x · sigmoid(x)` from [`Tensor::sigmoid`] and [`Tensor::mul`].
pub fn silu(x: &Tensor) -> Tensor {
    x.mul(&x.sigmoid())
}

/// An elementwise op `f` with derivative `df`, any shape.
fn unary(x: &Tensor, f: impl Fn(f32) -> f32, df: impl Fn(f32) -> f32 + 'static) -> Tensor {
    let value = x.value().mapv(f);
    Tensor::from_op("reference_unary", value, vec![x.clone()], move |c| {
        let x = c.inputs[0].value();
        let mut g = c.grad.clone();
        g.zip_mut_with(&*x, |g, &x| *g *= df(x));
        vec![Some(g)]
    })
}

/// Cross-entropy as the composition the library's one-pass [`Tensor::cross_entropy`] must
/// reproduce bit for bit: `(loss, dloss/dlogits)` from [`Tensor::log_softmax`] on whole arrays
/// (loss `-(Σ_i logp[i, target_i]) / n`, gradient `(exp(logp) - onehot) / n`).
pub fn cross_entropy_unfused(logits: &Array, targets: &[usize]) -> (f32, Array) {
    let n = logits.shape()[0];
    let logp = Tensor::new(logits.clone()).log_softmax(1).value().clone();
    let loss = -targets
        .iter()
        .enumerate()
        .map(|(i, &t)| logp[[i, t]])
        .sum::<f32>()
        / n as f32;
    let scale = 1.0 / n as f32;
    let mut g = logp.mapv(f32::exp);
    for (i, &t) in targets.iter().enumerate() {
        g[[i, t]] -= 1.0;
    }
    (loss, g * scale)
}
