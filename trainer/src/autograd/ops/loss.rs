//! Losses: the one cross-entropy (MNIST classifiers and the GPT's next-token loss) and mean
//! squared error.

use ndarray::IxDyn;

use super::reduce::log_softmax_array;
use crate::autograd::tensor::{Array, Tensor};

impl Tensor {
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
