//! Shape ops: reshape, flatten, permute, transpose. Values are copied into standard layout;
//! gradients are mapped back by the inverse shape change.

use ndarray::IxDyn;

use crate::autograd::tensor::Tensor;

impl Tensor {
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
}
