//! Elementwise activations (sigmoid, tanh, GELU, SiLU, exp, log), softmax along an axis, and
//! inverted dropout.
//!
//! All of these accept a tensor of any shape and return a tensor of the same shape.

use aka_core::rng::Rng;
use ndarray::{Axis, Zip};

use super::tensor::{Array, Tensor};

/// `√(2/π)`, the constant inside the tanh approximation of GELU.
const GELU_K: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh approximation of GELU.
const GELU_A: f32 = 0.044_715;

/// Numerically stable logistic function (no overflow of `exp` for large `|x|`).
fn sigmoid_f32(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

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

impl Tensor {
    /// Logistic sigmoid `1 / (1 + e^-x)`, elementwise. Any shape; output has the input's shape.
    pub fn sigmoid(&self) -> Tensor {
        unary(self, "sigmoid", sigmoid_f32, |_, y| y * (1.0 - y))
    }

    /// Hyperbolic tangent, elementwise. Any shape; output has the input's shape.
    pub fn tanh(&self) -> Tensor {
        unary(self, "tanh", f32::tanh, |_, y| 1.0 - y * y)
    }

    /// GELU, **tanh approximation** (as in GPT-2, nanoGPT's `NewGELU`, and PyTorch
    /// `GELU(approximate="tanh")`), elementwise:
    ///
    /// `gelu(x) = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`
    ///
    /// Any shape; output has the input's shape. It differs from the exact `x·Φ(x)` by < 1e-3.
    pub fn gelu(&self) -> Tensor {
        unary(
            self,
            "gelu",
            |x| 0.5 * x * (1.0 + (GELU_K * (x + GELU_A * x * x * x)).tanh()),
            |x, _| {
                let t = (GELU_K * (x + GELU_A * x * x * x)).tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_A * x * x)
            },
        )
    }

    /// SiLU (swish) `x · sigmoid(x)`, elementwise. Any shape; output has the input's shape.
    pub fn silu(&self) -> Tensor {
        unary(
            self,
            "silu",
            |x| x * sigmoid_f32(x),
            |x, _| {
                let s = sigmoid_f32(x);
                s * (1.0 + x * (1.0 - s))
            },
        )
    }

    /// `e^x`, elementwise. Any shape; output has the input's shape.
    pub fn exp(&self) -> Tensor {
        unary(self, "exp", f32::exp, |_, y| y)
    }

    /// Natural logarithm, elementwise (NaN/-inf for non-positive inputs, as `f32::ln`). Any
    /// shape; output has the input's shape.
    pub fn log(&self) -> Tensor {
        unary(self, "log", f32::ln, |x, _| 1.0 / x)
    }

    /// `softmax(x)` along `axis` (max-subtracted, so large logits do not overflow). Any shape;
    /// output has the input's shape and sums to 1 along `axis`.
    pub fn softmax(&self, axis: usize) -> Tensor {
        let value = softmax_array(&self.value(), axis);
        Tensor::from_op("softmax", value, vec![self.clone()], move |c| {
            // dx = y * (g - sum(g * y))
            let gy = c.grad * c.out;
            let s = gy.sum_axis(Axis(axis)).insert_axis(Axis(axis));
            vec![Some(gy - &(c.out * &s))]
        })
    }

    /// Inverted dropout: each element is zeroed with probability `p` and the kept ones are scaled
    /// by `1 / (1 - p)`, so the expectation is unchanged. Any shape; output has the input's shape.
    ///
    /// The mask draws one `rng.next_f32()` per element in row-major order (element kept iff the
    /// draw is `>= p`), so the rng state fixes the mask. Call it only in training mode (it does
    /// not look at [`super::is_grad_enabled`]). `p == 0` returns `self` unchanged without drawing.
    /// Panics unless `0 <= p < 1`.
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

/// `softmax` of an array along `axis` (max-subtracted for stability).
pub(crate) fn softmax_array(x: &Array, axis: usize) -> Array {
    let max = x.map_axis(Axis(axis), |lane| {
        lane.fold(f32::NEG_INFINITY, |m, &v| m.max(v))
    });
    let mut e = (x - &max.insert_axis(Axis(axis))).mapv(f32::exp);
    let s = e.sum_axis(Axis(axis)).insert_axis(Axis(axis));
    e /= &s;
    e
}
