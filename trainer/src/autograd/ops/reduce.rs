//! Reductions: sums and means (all elements or one axis), and softmax / log-softmax along an
//! axis.

use ndarray::{Axis, IxDyn};

use crate::autograd::tensor::{Array, Tensor};

impl Tensor {
    /// Sum of all elements, as a scalar tensor.
    pub fn sum(&self) -> Tensor {
        let value = Array::from_elem(IxDyn(&[]), self.value().sum());
        let shape = self.shape();
        Tensor::from_op("sum", value, vec![self.clone()], move |c| {
            vec![Some(Array::from_elem(IxDyn(&shape), c.grad.sum()))]
        })
    }

    /// Mean of all elements, as a scalar tensor.
    pub fn mean(&self) -> Tensor {
        let n = self.value().len().max(1) as f32;
        self.sum().mul_scalar(1.0 / n)
    }

    /// Sum over `axis`; with `keepdim` the axis stays with length 1.
    pub fn sum_axis(&self, axis: usize, keepdim: bool) -> Tensor {
        let mut value = self.value().sum_axis(Axis(axis));
        if keepdim {
            value = value.insert_axis(Axis(axis));
        }
        let shape = self.shape();
        Tensor::from_op("sum_axis", value, vec![self.clone()], move |c| {
            let g = if keepdim {
                c.grad.clone()
            } else {
                c.grad.clone().insert_axis(Axis(axis))
            };
            vec![Some(
                g.broadcast(IxDyn(&shape))
                    .expect("broadcast back")
                    .to_owned(),
            )]
        })
    }

    /// Mean over `axis`; with `keepdim` the axis stays with length 1.
    pub fn mean_axis(&self, axis: usize, keepdim: bool) -> Tensor {
        let n = self.shape()[axis].max(1) as f32;
        self.sum_axis(axis, keepdim).mul_scalar(1.0 / n)
    }

    /// `log(softmax(x))` along `axis`, computed stably.
    pub fn log_softmax(&self, axis: usize) -> Tensor {
        let value = log_softmax_array(&self.value(), axis);
        Tensor::from_op("log_softmax", value, vec![self.clone()], move |c| {
            // dx = g - softmax * sum(g)
            let sum_g = c.grad.sum_axis(Axis(axis)).insert_axis(Axis(axis));
            let soft = c.out.mapv(f32::exp);
            vec![Some(c.grad - &(soft * &sum_g))]
        })
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
}

/// `log_softmax` of an array along `axis` (max-subtracted for stability).
pub(crate) fn log_softmax_array(x: &Array, axis: usize) -> Array {
    let max = x.map_axis(Axis(axis), |lane| {
        lane.fold(f32::NEG_INFINITY, |m, &v| m.max(v))
    });
    let shifted = x - &max.insert_axis(Axis(axis));
    let lse = shifted
        .mapv(f32::exp)
        .sum_axis(Axis(axis))
        .mapv(f32::ln)
        .insert_axis(Axis(axis));
    shifted - &lse
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
