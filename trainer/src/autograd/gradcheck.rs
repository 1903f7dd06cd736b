//! Finite-difference gradient checks.
//!
//! [`check`] compares the gradients that [`Tensor::backward`] computes with central differences
//! `(L(x + ε) - L(x - ε)) / 2ε`, evaluated in f64 around f32 inputs, where the scalar `L` is the op's
//! output dotted with fixed random weights (so every output element matters, with a different
//! weight each).
//!
//! **Tolerance.** An element passes when `|analytic - numeric| <= ATOL + RTOL * |numeric|`, with
//! `ATOL = 2e-3`, `RTOL = 2e-2` and `ε = 1e-2`. Inputs are f32, so the forward pass carries
//! roughly 1e-7 relative rounding error; divided by 2ε this gives ~1e-5 absolute noise in the
//! numeric derivative, and the O(ε²) truncation error of central differences is ~1e-4 for the
//! smooth ops here. The bounds leave an order of magnitude of headroom over both while still
//! catching any wrong formula (a wrong sign, factor or index shows up as an O(1) relative error).
//! Ops with kinks (ReLU, max-pool) are checked at points at least 2ε away from the kink.

use aka_core::rng::Rng;
use ndarray::IxDyn;

use super::{Array, Tensor};

/// Step used for central differences.
pub const EPS: f32 = 1e-2;
/// Absolute tolerance.
pub const ATOL: f64 = 2e-3;
/// Relative tolerance.
pub const RTOL: f64 = 2e-2;

/// Random array with standard-normal entries scaled by `scale`.
pub fn randn(shape: &[usize], scale: f32, rng: &mut Rng) -> Array {
    let n = shape.iter().product();
    Array::from_shape_vec(IxDyn(shape), (0..n).map(|_| rng.normal() * scale).collect())
        .expect("shape")
}

/// Checks the gradient of `f` with respect to every input. `f` builds a tensor from the inputs
/// (given as parameters); returns a description of the worst mismatch on failure.
pub fn check(inputs: &[Array], f: impl Fn(&[Tensor]) -> Tensor) -> Result<(), String> {
    let mut rng = Rng::new(0x9C);
    let params: Vec<Tensor> = inputs.iter().map(|a| Tensor::param(a.clone())).collect();
    let out = f(&params);
    let weights = Tensor::new(randn(&out.shape(), 1.0, &mut rng));
    let loss = if out.shape().is_empty() {
        out.clone()
    } else {
        out.mul(&weights).sum()
    };
    loss.backward();

    let eval = |xs: &[Array]| -> f64 {
        let ts: Vec<Tensor> = xs.iter().map(|a| Tensor::new(a.clone())).collect();
        let out = super::no_grad(|| f(&ts));
        let v = out.value();
        if v.ndim() == 0 {
            return v.sum() as f64;
        }
        v.iter()
            .zip(weights.value().iter())
            .map(|(&a, &w)| a as f64 * w as f64)
            .sum()
    };

    for (i, p) in params.iter().enumerate() {
        let analytic = p
            .grad()
            .map(|g| g.clone())
            .unwrap_or_else(|| Array::zeros(IxDyn(&p.shape())));
        let mut xs: Vec<Array> = inputs.to_vec();
        for j in 0..inputs[i].len() {
            let orig = inputs[i].as_slice().expect("standard layout")[j];
            xs[i].as_slice_mut().expect("standard layout")[j] = orig + EPS;
            let plus = eval(&xs);
            xs[i].as_slice_mut().expect("standard layout")[j] = orig - EPS;
            let minus = eval(&xs);
            xs[i].as_slice_mut().expect("standard layout")[j] = orig;
            let numeric = (plus - minus) / (2.0 * EPS as f64);
            let a = analytic.as_slice().expect("standard layout")[j] as f64;
            if (a - numeric).abs() > ATOL + RTOL * numeric.abs() {
                return Err(format!(
                    "input {i} element {j}: analytic {a:.6} vs numeric {numeric:.6} (input shape {:?})",
                    inputs[i].shape()
                ));
            }
        }
    }
    Ok(())
}
