//! Broadcasting arithmetic, scalar ops, matrix products, reductions and reshapes.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, Ix2, IxDyn, Zip};
use rayon::prelude::*;

use super::tensor::{sum_to_shape, Array, Tensor};

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

    /// Matrix product. `[m, k] @ [k, n] -> [m, n]`; batched `[b, m, k] @ [b, k, n] -> [b, m, n]`;
    /// and `[b, m, k] @ [k, n] -> [b, m, n]` (a shared right-hand matrix).
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        let value = matmul_arrays(&self.value(), &other.value(), false, false);
        Tensor::from_op("matmul", value, vec![self.clone(), other.clone()], |c| {
            let (a, b) = (c.inputs[0].value(), c.inputs[1].value());
            let ga = c.needs[0].then(|| matmul_arrays(c.grad, &b, false, true));
            let gb = c.needs[1].then(|| {
                let g = matmul_arrays(&a, c.grad, true, false);
                sum_to_shape(g, b.shape())
            });
            vec![ga, gb]
        })
    }

    /// A fully connected layer in one op: `x [n, in] · wᵀ [in, out] + b [out] -> [n, out]`, with
    /// `w` stored `[out, in]` as in PyTorch. Avoids materialising the transpose.
    /// Inputs with more leading axes (`[b, t, in]`) are flattened to `[b·t, in]` and back.
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        let shape = self.shape();
        if shape.len() > 2 {
            let (lead, inner) = shape.split_at(shape.len() - 1);
            let rows = lead.iter().product();
            let mut out_shape = lead.to_vec();
            out_shape.push(w.shape()[0]);
            return self
                .reshape(&[rows, inner[0]])
                .linear(w, b)
                .reshape(&out_shape);
        }
        let mut value = matmul_arrays(&self.value(), &w.value(), false, true);
        if let Some(b) = b {
            value += &*b.value();
        }
        let mut inputs = vec![self.clone(), w.clone()];
        inputs.extend(b.cloned());
        Tensor::from_op("linear", value, inputs, |c| {
            let gx = c.needs[0].then(|| matmul_arrays(c.grad, &c.inputs[1].value(), false, false));
            let gw = c.needs[1].then(|| matmul_arrays(c.grad, &c.inputs[0].value(), true, false));
            let mut grads = vec![gx, gw];
            if c.inputs.len() == 3 {
                grads.push(c.needs[2].then(|| c.grad.sum_axis(Axis(0))));
            }
            grads
        })
    }

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

    /// The same elements in a new shape (row-major order).
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        let v = self.value();
        let value = v
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(shape))
            .unwrap_or_else(|e| panic!("reshape {:?} -> {shape:?}: {e}", v.shape()));
        drop(v);
        let old = self.shape();
        Tensor::from_op("reshape", value, vec![self.clone()], move |c| {
            let g = c.grad.as_standard_layout().into_owned();
            vec![Some(
                g.into_shape_with_order(IxDyn(&old)).expect("same length"),
            )]
        })
    }

    /// Flattens all dimensions from `start` on into one: `[n, c, h, w].flatten(1) -> [n, c*h*w]`.
    pub fn flatten(&self, start: usize) -> Tensor {
        let s = self.shape();
        let mut shape: Vec<usize> = s[..start].to_vec();
        shape.push(s[start..].iter().product());
        self.reshape(&shape)
    }

    /// Reorders axes: output axis `i` is input axis `axes[i]`.
    pub fn permute(&self, axes: &[usize]) -> Tensor {
        let value = self
            .value()
            .view()
            .permuted_axes(IxDyn(axes))
            .as_standard_layout()
            .into_owned();
        let mut inverse = vec![0; axes.len()];
        for (i, &a) in axes.iter().enumerate() {
            inverse[a] = i;
        }
        Tensor::from_op("permute", value, vec![self.clone()], move |c| {
            let g = c
                .grad
                .view()
                .permuted_axes(IxDyn(&inverse))
                .as_standard_layout()
                .into_owned();
            vec![Some(g)]
        })
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: usize, b: usize) -> Tensor {
        let mut axes: Vec<usize> = (0..self.ndim()).collect();
        axes.swap(a, b);
        self.permute(&axes)
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

    /// Mean cross-entropy of `[n, classes]` logits against integer class targets.
    pub fn cross_entropy(&self, targets: &[usize]) -> Tensor {
        let logits = self.value();
        assert_eq!(
            logits.ndim(),
            2,
            "cross_entropy expects [n, classes] logits"
        );
        let (n, k) = (logits.shape()[0], logits.shape()[1]);
        assert_eq!(n, targets.len(), "one target per row");
        assert!(targets.iter().all(|&t| t < k), "target out of range 0..{k}");
        let logp = log_softmax_array(&logits, 1);
        drop(logits);
        let loss = -targets
            .iter()
            .enumerate()
            .map(|(i, &t)| logp[[i, t]])
            .sum::<f32>()
            / n as f32;
        let targets = targets.to_vec();
        Tensor::from_op(
            "cross_entropy",
            Array::from_elem(IxDyn(&[]), loss),
            vec![self.clone()],
            move |c| {
                // d/dlogits = (softmax - onehot) / n
                let scale = c.grad.sum() / n as f32;
                let mut g = logp.mapv(f32::exp);
                for (i, &t) in targets.iter().enumerate() {
                    g[[i, t]] -= 1.0;
                }
                vec![Some(g * scale)]
            },
        )
    }

    /// Mean squared error against a target of the same shape.
    pub fn mse(&self, target: &Tensor) -> Tensor {
        let d = self.sub(target);
        d.mul(&d).mean()
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

/// `op(a) @ op(b)` where `op` optionally swaps the last two axes. Supports 2-D @ 2-D,
/// 3-D @ 3-D (same batch) and 3-D @ 2-D.
fn mat(x: ndarray::ArrayViewD<'_, f32>, t: bool) -> ndarray::ArrayView2<'_, f32> {
    let m = x.into_dimensionality::<Ix2>().expect("2-D");
    if t {
        m.reversed_axes()
    } else {
        m
    }
}

pub(crate) fn matmul_arrays(a: &Array, b: &Array, ta: bool, tb: bool) -> Array {
    match (a.ndim(), b.ndim()) {
        (2, 2) => gemm(mat(a.view(), ta), mat(b.view(), tb)).into_dyn(),
        (3, 2) | (3, 3) => {
            let batch = a.shape()[0];
            if b.ndim() == 3 {
                assert_eq!(b.shape()[0], batch, "matmul batch sizes differ");
            }
            let outs: Vec<_> = (0..batch)
                .map(|i| {
                    let ai = mat(a.index_axis(Axis(0), i), ta);
                    let bi = if b.ndim() == 3 {
                        mat(b.index_axis(Axis(0), i), tb)
                    } else {
                        mat(b.view(), tb)
                    };
                    gemm(ai, bi)
                })
                .collect();
            let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
            ndarray::stack(Axis(0), &views)
                .expect("same shapes")
                .into_dyn()
        }
        (x, y) => panic!("matmul of {x}-D and {y}-D tensors is not supported"),
    }
}

/// `a [m, k] @ b [k, n] -> [m, n]` with matrixmultiply's kernel, split by output columns (or
/// rows) across the rayon pool when the product is large enough to pay for it.
///
/// Each output element is computed by exactly the same sequence of operations whatever the
/// split, so results do not depend on the thread count.
pub(crate) fn gemm(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    let (m, n) = (a.nrows(), b.ncols());
    let mut c = Array2::<f32>::zeros((m, n));
    gemm_into(a, b, c.view_mut());
    c
}

/// `c = a @ b` into an existing `[m, n]` view (see [`gemm`]).
pub(crate) fn gemm_into(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    mut c: ArrayViewMut2<'_, f32>,
) {
    const MIN_WORK: usize = 1 << 20; // multiply-adds below which one thread is faster
    const MIN_SIDE: usize = 32;
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let threads = rayon::current_num_threads();
    if threads <= 1 || m * n * k < MIN_WORK || (n < 2 * MIN_SIDE && m < 2 * MIN_SIDE) {
        general_mat_mul(1.0, &a, &b, 0.0, &mut c);
        return;
    }
    if n >= m {
        let chunk = n.div_ceil(threads).max(MIN_SIDE);
        let parts: Vec<_> = c
            .axis_chunks_iter_mut(Axis(1), chunk)
            .zip(b.axis_chunks_iter(Axis(1), chunk))
            .collect();
        parts
            .into_par_iter()
            .for_each(|(mut ci, bi)| general_mat_mul(1.0, &a, &bi, 0.0, &mut ci));
    } else {
        let chunk = m.div_ceil(threads).max(MIN_SIDE);
        let parts: Vec<_> = c
            .axis_chunks_iter_mut(Axis(0), chunk)
            .zip(a.axis_chunks_iter(Axis(0), chunk))
            .collect();
        parts
            .into_par_iter()
            .for_each(|(mut ci, ai)| general_mat_mul(1.0, &ai, &b, 0.0, &mut ci));
    }
}
