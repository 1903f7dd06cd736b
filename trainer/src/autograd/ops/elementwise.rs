//! Elementwise ops: broadcasting arithmetic, scalar ops, activations (ReLU, sigmoid, tanh, GELU,
//! SiLU and the gated MLP activation), `exp`, `log`, and inverted dropout.
//!
//! Unless stated otherwise every op accepts any shape and returns the input's shape (binary ops
//! broadcast like numpy; their gradients are summed back to each input's shape).

use std::mem::MaybeUninit;

use aka_core::rng::Rng;
use ndarray::Zip;

use super::math::{gelu_and_grad, sigmoid, silu_and_grad};
use super::{array, par_fill, par_fill2, std_slice, ROW_BLOCK_ELEMS};
use crate::autograd::tensor::{sum_to_shape, Array, Tensor};

/// Records an elementwise op `y = f(x)` whose derivative is `df(x, y)`.
fn unary(
    x: &Tensor,
    name: &'static str,
    f: impl Fn(f32) -> f32,
    df: impl Fn(f32, f32) -> f32 + 'static,
) -> Tensor {
    let value = x.value().mapv(f);
    Tensor::from_op(name, value, vec![x.clone()], move |c| {
        let x = c.inputs[0].value();
        let g = Zip::from(c.grad)
            .and(&*x)
            .and(c.out)
            .map_collect(|&g, &x, &y| g * df(x, y));
        vec![Some(g)]
    })
}

#[inline(always)]
fn act_body(x: &[f32], silu: bool, y: &mut [MaybeUninit<f32>], dy: &mut [MaybeUninit<f32>]) {
    // Two loops rather than a branch inside one, so each vectorises on its own.
    if silu {
        for ((y, dy), &x) in y.iter_mut().zip(dy.iter_mut()).zip(x) {
            let (a, b) = silu_and_grad(x);
            y.write(a);
            dy.write(b);
        }
    } else {
        for ((y, dy), &x) in y.iter_mut().zip(dy.iter_mut()).zip(x) {
            let (a, b) = gelu_and_grad(x);
            y.write(a);
            dy.write(b);
        }
    }
}
with_avx2!(act_kernel, act_body, (
    x: &[f32],
    silu: bool,
    y: &mut [MaybeUninit<f32>],
    dy: &mut [MaybeUninit<f32>],
));

#[inline(always)]
fn mul_body(a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        o.write(a * b);
    }
}
with_avx2!(mul_kernel, mul_body, (a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]));

/// `s` as a slice the kernels above write into.
fn as_uninit(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the kernels only ever write initialised values into it, so `s` stays
    // initialised.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Elementwise `a ⊙ b` into a new vector (blocks of [`ROW_BLOCK_ELEMS`] across the rayon pool).
fn mul_vec(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "mul_vec lengths");
    par_fill(a.len(), ROW_BLOCK_ELEMS, |i, o| {
        let r = i * ROW_BLOCK_ELEMS..i * ROW_BLOCK_ELEMS + o.len();
        mul_kernel(&a[r.clone()], &b[r], o)
    })
}

/// GELU or SiLU of any shape with the vectorised kernels of [`super::math`]; the derivative is
/// computed in the forward pass and kept for backward.
fn activation(x: &Tensor, silu: bool) -> Tensor {
    let xv = x.value();
    let n = xv.len();
    let xs = std_slice(&xv);
    let (y, dy) = par_fill2(n, ROW_BLOCK_ELEMS, |i, y, dy| {
        let at = i * ROW_BLOCK_ELEMS;
        act_kernel(&xs[at..at + y.len()], silu, y, dy)
    });
    drop(xs);
    let shape = xv.shape().to_vec();
    drop(xv);
    let name = if silu { "silu" } else { "gelu" };
    Tensor::from_op(name, array(&shape, y), vec![x.clone()], move |c| {
        vec![Some(array(&shape, mul_vec(&std_slice(c.grad), &dy)))]
    })
}

/// The activation of a gated MLP ([`Tensor::gated`]).
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
    for (((row, o), da), dg) in ug
        .chunks_exact(2 * h)
        .zip(out.chunks_exact_mut(h))
        .zip(da.chunks_exact_mut(h))
        .zip(dg.chunks_exact_mut(h))
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

impl Tensor {
    /// `self + other`, numpy broadcasting.
    pub fn add(&self, other: &Tensor) -> Tensor {
        let value = &*self.value() + &*other.value();
        let (sa, sb) = (self.shape(), other.shape());
        Tensor::from_op("add", value, vec![self.clone(), other.clone()], move |c| {
            vec![
                c.needs[0].then(|| sum_to_shape(c.grad.clone(), &sa)),
                c.needs[1].then(|| sum_to_shape(c.grad.clone(), &sb)),
            ]
        })
    }

    /// `self - other`, numpy broadcasting.
    pub fn sub(&self, other: &Tensor) -> Tensor {
        let value = &*self.value() - &*other.value();
        let (sa, sb) = (self.shape(), other.shape());
        Tensor::from_op("sub", value, vec![self.clone(), other.clone()], move |c| {
            vec![
                c.needs[0].then(|| sum_to_shape(c.grad.clone(), &sa)),
                c.needs[1].then(|| sum_to_shape(-c.grad, &sb)),
            ]
        })
    }

    /// `self * other` elementwise, numpy broadcasting.
    pub fn mul(&self, other: &Tensor) -> Tensor {
        let value = &*self.value() * &*other.value();
        Tensor::from_op("mul", value, vec![self.clone(), other.clone()], |c| {
            let (a, b) = (c.inputs[0].value(), c.inputs[1].value());
            vec![
                c.needs[0].then(|| sum_to_shape(c.grad * &*b, a.shape())),
                c.needs[1].then(|| sum_to_shape(c.grad * &*a, b.shape())),
            ]
        })
    }

    /// `self / other` elementwise, numpy broadcasting.
    pub fn div(&self, other: &Tensor) -> Tensor {
        let value = &*self.value() / &*other.value();
        Tensor::from_op("div", value, vec![self.clone(), other.clone()], |c| {
            let (a, b) = (c.inputs[0].value(), c.inputs[1].value());
            vec![
                c.needs[0].then(|| sum_to_shape(c.grad / &*b, a.shape())),
                // d(a/b)/db = -a/b^2 = -out/b
                c.needs[1].then(|| sum_to_shape(-(c.grad * c.out) / &*b, b.shape())),
            ]
        })
    }

    /// `-self`.
    pub fn neg(&self) -> Tensor {
        self.mul_scalar(-1.0)
    }

    /// `self + s`.
    pub fn add_scalar(&self, s: f32) -> Tensor {
        let value = &*self.value() + s;
        Tensor::from_op("add_scalar", value, vec![self.clone()], |c| {
            vec![Some(c.grad.clone())]
        })
    }

    /// `self * s`.
    pub fn mul_scalar(&self, s: f32) -> Tensor {
        let value = &*self.value() * s;
        Tensor::from_op("mul_scalar", value, vec![self.clone()], move |c| {
            vec![Some(c.grad * s)]
        })
    }

    /// `self ^ p` elementwise.
    pub fn powf(&self, p: f32) -> Tensor {
        let value = self.value().mapv(|x| x.powf(p));
        Tensor::from_op("powf", value, vec![self.clone()], move |c| {
            let x = c.inputs[0].value();
            let mut g = c.grad.clone();
            Zip::from(&mut g)
                .and(&*x)
                .for_each(|g, &x| *g *= p * x.powf(p - 1.0));
            vec![Some(g)]
        })
    }

    /// `max(x, 0)`.
    pub fn relu(&self) -> Tensor {
        let value = self.value().mapv(|x| x.max(0.0));
        Tensor::from_op("relu", value, vec![self.clone()], |c| {
            // Branch-free mask: the sign of real activations is unpredictable.
            let mut g = c.grad.clone();
            Zip::from(&mut g)
                .and(c.out)
                .for_each(|g, &y| *g *= f32::from(u8::from(y > 0.0)));
            vec![Some(g)]
        })
    }

    /// Logistic sigmoid `1 / (1 + e^-x)`, elementwise (stable: no overflow for large `|x|`).
    pub fn sigmoid(&self) -> Tensor {
        unary(self, "sigmoid", sigmoid, |_, y| y * (1.0 - y))
    }

    /// Hyperbolic tangent, elementwise.
    pub fn tanh(&self) -> Tensor {
        unary(self, "tanh", f32::tanh, |_, y| 1.0 - y * y)
    }

    /// GELU, **tanh approximation** (as in GPT-2, nanoGPT's `NewGELU`, and PyTorch
    /// `GELU(approximate="tanh")`), elementwise:
    ///
    /// `gelu(x) = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`
    ///
    /// with the vectorised [`super::math::tanh_fast`] (within a few ulp of `f32::tanh`). It
    /// differs from the exact `x·Φ(x)` by < 1e-3. The derivative is computed in the forward pass
    /// and kept for backward.
    pub fn gelu(&self) -> Tensor {
        activation(self, false)
    }

    /// The exact GELU `x · Φ(x) = x/2 · (1 + erf(x/√2))` (PyTorch's `nn.GELU()`), elementwise,
    /// with `libm`'s `erf` in `f64`; gradient `Φ(x) + x · φ(x)`.
    pub fn gelu_erf(&self) -> Tensor {
        let xv = self.value();
        let (y, dy): (Vec<f32>, Vec<f32>) = xv
            .iter()
            .map(|&x| {
                let x = f64::from(x);
                let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                ((x * cdf) as f32, (cdf + x * pdf) as f32)
            })
            .unzip();
        let shape = xv.shape().to_vec();
        drop(xv);
        Tensor::from_op("gelu_erf", array(&shape, y), vec![self.clone()], move |c| {
            vec![Some(array(&shape, mul_vec(&std_slice(c.grad), &dy)))]
        })
    }

    /// SiLU (swish) `x · sigmoid(x)`, elementwise, with the vectorised
    /// [`super::math::exp_fast`].
    pub fn silu(&self) -> Tensor {
        activation(self, true)
    }

    /// Gated activation on a packed `self: [n, 2h]` whose row is `[u | g]` (`u = w1·x`,
    /// `g = w3·x`, as [`Tensor::linear_cat`] of `w1, w3` produces): `act(u) ⊙ g`, `[n, h]`
    /// (SwiGLU / GeGLU), with the same activations as [`Tensor::silu`] / [`Tensor::gelu`].
    pub fn gated(&self, act: GateAct) -> Tensor {
        let v = self.value();
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
        Tensor::from_op("gated", array(&[n, h], out), vec![self.clone()], move |c| {
            let up = std_slice(c.grad);
            let mut g = vec![0.0f32; n * w];
            for (((row, up), da), dg) in g
                .chunks_exact_mut(w)
                .zip(up.chunks_exact(h))
                .zip(da.chunks_exact(h))
                .zip(dg.chunks_exact(h))
            {
                let (gu, gg) = row.split_at_mut(h);
                mul_kernel(up, da, as_uninit(gu));
                mul_kernel(up, dg, as_uninit(gg));
            }
            vec![Some(array(&[n, w], g))]
        })
    }

    /// `e^x`, elementwise.
    pub fn exp(&self) -> Tensor {
        unary(self, "exp", f32::exp, |_, y| y)
    }

    /// Natural logarithm, elementwise (NaN/-inf for non-positive inputs, as `f32::ln`).
    pub fn log(&self) -> Tensor {
        unary(self, "log", f32::ln, |x, _| 1.0 / x)
    }

    /// Inverted dropout: each element is zeroed with probability `p` and the kept ones are scaled
    /// by `1 / (1 - p)`, so the expectation is unchanged.
    ///
    /// The mask draws one `rng.next_f32()` per element in row-major order (element kept iff the
    /// draw is `>= p`), so the rng state fixes the mask. Call it only in training mode (it does
    /// not look at [`crate::autograd::is_grad_enabled`]). `p == 0` returns `self` unchanged
    /// without drawing. Panics unless `0 <= p < 1`.
    pub fn dropout(&self, p: f32, rng: &mut Rng) -> Tensor {
        assert!(
            (0.0..1.0).contains(&p),
            "dropout probability {p} not in [0, 1)"
        );
        if p == 0.0 {
            return self.clone();
        }
        let scale = 1.0 / (1.0 - p);
        let x = self.value();
        let mask: Vec<f32> = (0..x.len())
            .map(|_| if rng.next_f32() >= p { scale } else { 0.0 })
            .collect();
        let mask = Array::from_shape_vec(x.raw_dim(), mask).expect("same length");
        let value = &*x * &mask;
        drop(x);
        Tensor::from_op("dropout", value, vec![self.clone()], move |c| {
            vec![Some(c.grad * &mask)]
        })
    }
}
