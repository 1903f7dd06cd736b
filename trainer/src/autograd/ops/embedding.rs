//! Embedding lookup: rows of a table by id, optionally plus a (learned) position table, in one
//! pass forward and one scatter-add backward.

use super::{array, std_slice};
use crate::autograd::tensor::Tensor;

impl Tensor {
    /// Embedding lookup on a table `self: [vocab, d]`: row `ids[i]` of the table becomes output
    /// row `i`, giving `[ids.len(), d]` (reshape to `[b, t, d]` as needed). Backward scatter-adds
    /// the output rows into the table gradient (repeated ids accumulate). Panics on an id
    /// `>= vocab`.
    pub fn embedding(&self, ids: &[usize]) -> Tensor {
        self.embedding_with_positions(None, ids, ids.len().max(1))
    }

    /// Token plus position embedding for ids `[b, t]` (row-major, `ids.len() = b·t`): row
    /// `r = bi·t + p` of the `[b·t, d]` output is `self[ids[r]] + pos[p]`, with the table
    /// `self: [vocab, d]` and `pos: [≥t, d]` (only its first `t` rows are used; `None` adds
    /// nothing). Panics on an id `>= vocab` or if `ids.len()` is not a multiple of `t`.
    pub fn embedding_with_positions(
        &self,
        pos: Option<&Tensor>,
        ids: &[usize],
        t: usize,
    ) -> Tensor {
        let tv = self.value();
        assert_eq!(
            tv.ndim(),
            2,
            "embedding table must be [vocab, d], got {:?}",
            tv.shape()
        );
        let (vocab, d) = (tv.shape()[0], tv.shape()[1]);
        assert!(t > 0 && ids.len().is_multiple_of(t), "ids must be [b, t]");
        let ts = std_slice(&tv);
        let pv = pos.map(|p| p.value());
        if let Some(pv) = &pv {
            assert!(
                pv.shape()[0] >= t && pv.shape()[1] == d,
                "position table too short"
            );
        }
        let ps = pv.as_ref().map(|p| std_slice(p));
        let mut out = vec![0.0f32; ids.len() * d];
        if d > 0 {
            for (r, (&id, row)) in ids.iter().zip(out.chunks_exact_mut(d)).enumerate() {
                assert!(id < vocab, "embedding id {id} out of range 0..{vocab}");
                row.copy_from_slice(&ts[id * d..(id + 1) * d]);
                if let Some(ps) = &ps {
                    let p = r % t;
                    for (o, &x) in row.iter_mut().zip(&ps[p * d..(p + 1) * d]) {
                        *o += x;
                    }
                }
            }
        }
        let pos_rows = pv.as_ref().map(|p| p.shape()[0]);
        drop(ps);
        drop(pv);
        drop(ts);
        drop(tv);
        let ids = ids.to_vec();
        let mut inputs = vec![self.clone()];
        inputs.extend(pos.cloned());
        Tensor::from_op("embedding", array(&[ids.len(), d], out), inputs, move |c| {
            let g = std_slice(c.grad);
            let gt = c.needs[0].then(|| {
                let mut dt = vec![0.0f32; vocab * d];
                if d > 0 {
                    for (&id, gr) in ids.iter().zip(g.chunks_exact(d)) {
                        for (a, &x) in dt[id * d..(id + 1) * d].iter_mut().zip(gr) {
                            *a += x;
                        }
                    }
                }
                array(&[vocab, d], dt)
            });
            let mut grads = vec![gt];
            if let Some(rows) = pos_rows {
                grads.push(c.needs[1].then(|| {
                    let mut dp = vec![0.0f32; rows * d];
                    if d > 0 {
                        for (r, gr) in g.chunks_exact(d).enumerate() {
                            let p = r % t;
                            for (a, &x) in dp[p * d..(p + 1) * d].iter_mut().zip(gr) {
                                *a += x;
                            }
                        }
                    }
                    array(&[rows, d], dp)
                }));
            }
            grads
        })
    }
}
