//! Losses: the one cross-entropy (MNIST classifiers and the GPT's next-token loss) and mean
//! squared error.

use ndarray::{ArrayView1, IxDyn};
use rayon::prelude::*;

use super::{array, std_slice};
use crate::autograd::tensor::{Array, Tensor};

impl Tensor {
    /// Mean cross-entropy of `[n, classes]` logits against integer class targets:
    /// `-(Σ_i log_softmax(x_i)[target_i]) / n`, the loss of the MNIST classifiers and of the
    /// GPT (`[b·t, vocab]` logits). One pass per row, with the arithmetic (and bits) of
    /// [`Tensor::log_softmax`]: max, `x - max`, `f32::exp`, ndarray's sum, `ln`. Backward is
    /// `(exp(log_softmax) - onehot) · grad / n`.
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
        let logp = log_softmax_rows(&std_slice(&logits), k); // [n, k]
        drop(logits);
        let loss = -targets
            .iter()
            .enumerate()
            .map(|(i, &t)| logp[i * k + t])
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
                let mut g = vec![0.0f32; n * k];
                let grad_rows = |(g, (logp, &t)): (&mut [f32], (&[f32], &usize))| {
                    for (g, &l) in g.iter_mut().zip(logp) {
                        *g = l.exp();
                    }
                    g[t] -= 1.0;
                    for x in g.iter_mut() {
                        *x *= scale;
                    }
                };
                if k > 0 {
                    let rows = g
                        .chunks_exact_mut(k)
                        .zip(logp.chunks_exact(k).zip(&targets));
                    if n * k < PAR_MIN {
                        rows.for_each(grad_rows);
                    } else {
                        g.par_chunks_exact_mut(k)
                            .zip(logp.par_chunks_exact(k).zip(&targets))
                            .for_each(grad_rows);
                    }
                }
                vec![Some(array(&[n, k], g))]
            },
        )
    }

    /// Mean squared error against a target of the same shape.
    pub fn mse(&self, target: &Tensor) -> Tensor {
        let d = self.sub(target);
        d.mul(&d).mean()
    }
}

/// Elements (`n·k`) below which [`log_softmax_rows`] and the backward run on one thread.
const PAR_MIN: usize = 1 << 15;

/// `log_softmax` of each row of a row-major `[n, k]` matrix: the same operations, in the same
/// order, as `log_softmax_array(x, 1)` of [`Tensor::log_softmax`] (per row: max, `x - max`,
/// `f32::exp`, ndarray's `sum`, `ln`, subtract), so the same bits, without its temporaries.
/// Large inputs are split by rows across the rayon pool (each row is computed the same way
/// whatever the split).
fn log_softmax_rows(xs: &[f32], k: usize) -> Vec<f32> {
    let mut logp = xs.to_vec();
    if k == 0 {
        return logp;
    }
    let rows = |chunk: &mut [f32]| {
        let mut e = vec![0.0f32; k];
        for row in chunk.chunks_exact_mut(k) {
            let m = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            for x in row.iter_mut() {
                *x -= m;
            }
            for (e, &x) in e.iter_mut().zip(row.iter()) {
                *e = x.exp();
            }
            let lse = ArrayView1::from(&e[..]).sum().ln();
            for x in row.iter_mut() {
                *x -= lse;
            }
        }
    };
    if logp.len() < PAR_MIN {
        rows(&mut logp);
    } else {
        logp.par_chunks_mut(k * (PAR_MIN / k).max(1)).for_each(rows);
    }
    logp
}
