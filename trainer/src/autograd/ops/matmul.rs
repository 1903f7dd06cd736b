//! Matrix products: [`gemm`], the one parallel matrix multiply every product goes through
//! (`matmul`, `linear`, `linear_cat`; the attention heads call the `gemm` crate directly, one
//! single-threaded call per product, see `attention`).

use ndarray::{Array2, ArrayView2, Axis, Ix2};
use rayon::prelude::*;

use super::std_slice;
use crate::autograd::tensor::{sum_to_shape, Array, Tensor};

impl Tensor {
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

    /// Several bias-free projections of one input in one matrix product:
    /// `self [n, in] · [w_1; …; w_m]ᵀ -> [n, Σ out_i]`, each `w_i: [out_i, in]` (PyTorch layout),
    /// the outputs side by side in the order given (`x.linear_cat(&[wq, wk, wv])` is
    /// `[q | k | v]`). Backward is one product for `dx` and one for all the weights.
    pub fn linear_cat(&self, ws: &[&Tensor]) -> Tensor {
        let xv = self.value();
        assert_eq!(xv.ndim(), 2, "linear_cat expects x [n, in]");
        let d_in = xv.shape()[1];
        let outs: Vec<usize> = ws.iter().map(|w| w.shape()[0]).collect();
        let total: usize = outs.iter().sum();
        let mut wcat = Vec::with_capacity(total * d_in);
        for w in ws {
            let wv = w.value();
            assert_eq!(wv.shape()[1], d_in, "weight [out, {d_in}] expected");
            wcat.extend_from_slice(&std_slice(&wv));
        }
        let wcat = Array2::from_shape_vec((total, d_in), wcat).expect("[total, in]");
        let y = gemm(mat(xv.view(), false), wcat.t()).into_dyn();
        drop(xv);
        let mut inputs = vec![self.clone()];
        inputs.extend(ws.iter().map(|&w| w.clone()));
        Tensor::from_op("linear_cat", y, inputs, move |c| {
            let g = mat(c.grad.view(), false);
            let mut grads = Vec::with_capacity(c.inputs.len());
            grads.push(c.needs[0].then(|| gemm(g, wcat.view()).into_dyn()));
            if c.needs[1..].iter().any(|&b| b) {
                let xv = c.inputs[0].value();
                let gw = gemm(g.t(), mat(xv.view(), false)); // [total, in]
                let mut row = 0;
                for (&o, &need) in outs.iter().zip(&c.needs[1..]) {
                    grads.push(need.then(|| {
                        gw.slice(ndarray::s![row..row + o, ..])
                            .to_owned()
                            .into_dyn()
                    }));
                    row += o;
                }
            } else {
                grads.extend(outs.iter().map(|_| None));
            }
            grads
        })
    }
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

/// `a [m, k] @ b [k, n] -> [m, n]` with the `gemm` crate's kernel, split by output columns (or
/// rows) across the rayon pool when the product is large enough to pay for it. The output is
/// written once, never zeroed first.
///
/// Each output element is computed by exactly the same sequence of operations whatever the
/// split, so results do not depend on the thread count (see [`gemm_raw`]).
pub(crate) fn gemm(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    let (m, n) = (a.nrows(), b.ncols());
    let mut c = Array2::<f32>::uninit((m, n));
    let cp = c.as_mut_ptr().cast::<f32>();
    // SAFETY: `c` is a standard-layout `[m, n]` buffer; `gemm_raw` writes every element of it
    // (β = 0 semantics: nothing is read from it), so it is initialised afterwards.
    unsafe {
        gemm_raw(a, b, cp, n as isize, 1);
        c.assume_init()
    }
}

/// A raw pointer that may cross to the rayon pool: each task writes a disjoint block of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used for disjoint output blocks while the owner waits for the tasks.
unsafe impl Send for SendPtr {}
// SAFETY: as for `Send`: the tasks never touch the same elements.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the whole `SendPtr`).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `c = a @ b`, `c` given as a pointer with row/column strides (elements) to `[m, n]` writable
/// `f32`s; they need not be initialised. Splits the wider side of `c` into one block per thread
/// (with the operand it reads: columns of `b` or rows of `a`), each block one single-threaded
/// `gemm::gemm` call. (Two blocks per thread measured no faster.)
///
/// Thread-count independence: `gemm`'s f32 kernel accumulates every output element over `k` in
/// ascending order within k-blocks of `kc`, then adds the blocks in order; `kc` depends only on
/// `k` and the cache sizes, except on its path for products with both sides ≤ 64. A block keeps
/// the other side whole, so when that side is > 64 any block takes the product's path; when it
/// is ≤ 64 the blocks are kept > 64 on the split side. Either way each block takes the same
/// path as the whole product and every element sees the same operations.
///
/// # Safety
/// `c` must be valid for writes of every `(i, j)`, `i < m`, `j < n`, at `i·rs + j·cs`, and not
/// alias `a` or `b`.
unsafe fn gemm_raw(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    c: *mut f32,
    rs: isize,
    cs: isize,
) {
    const MIN_WORK: usize = 1 << 20; // multiply-adds below which one thread is faster
    const SMALL: usize = 64; // `gemm`'s small-product path: both sides ≤ 64
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    assert_eq!(b.nrows(), k, "gemm inner dimensions differ");
    let threads = rayon::current_num_threads();
    let one = |a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, c: *mut f32| {
        let (ar, ac) = (a.strides()[0], a.strides()[1]);
        let (br, bc) = (b.strides()[0], b.strides()[1]);
        // SAFETY: the views describe valid operands at their strides; `c` as the caller says.
        unsafe {
            gemm_one(
                (a.nrows(), b.ncols(), k),
                (c, rs, cs),
                (a.as_ptr(), ar, ac),
                (b.as_ptr(), br, bc),
            )
        }
    };
    if threads <= 1 || m * n * k < MIN_WORK || (n <= SMALL && m <= SMALL) {
        one(a, b, c);
        return;
    }
    let by_columns = n >= m;
    let (len, other) = if by_columns { (n, m) } else { (m, n) };
    // Near-equal blocks, each at least `min_side` long (see the doc comment).
    let min_side = if other > SMALL { 32 } else { SMALL + 1 };
    let blocks = threads.min(len / min_side);
    if blocks < 2 {
        one(a, b, c);
        return;
    }
    let c = SendPtr(c);
    (0..blocks).into_par_iter().for_each(|i| {
        let (start, end) = (i * len / blocks, (i + 1) * len / blocks);
        if by_columns {
            let bj = b.slice(ndarray::s![.., start..end]);
            // SAFETY: column block `start..end` of `c`, disjoint from the other tasks'.
            one(a, bj, unsafe { c.get().offset(start as isize * cs) });
        } else {
            let ai = a.slice(ndarray::s![start..end, ..]);
            // SAFETY: row block `start..end` of `c`, disjoint from the other tasks'.
            one(ai, b, unsafe { c.get().offset(start as isize * rs) });
        }
    });
}

/// A strided matrix operand: the pointer to element `(0, 0)`, then the row and column strides
/// (elements).
pub(super) type Strided<P> = (P, isize, isize);

/// `c = a·b` (`[m, k]·[k, n]`) as one single-threaded `gemm::gemm` call on strided operands.
/// β = 0 (`read_dst = false`): every element of `c`'s `m × n` block is written, none is read, so
/// it need not be initialised.
///
/// # Safety
/// `a` and `b` must be readable at every `(i, j)` of their `m × k` and `k × n` blocks at their
/// strides, `c` writable at every `(i, j)` of its `m × n` block, and `c` must alias neither.
pub(super) unsafe fn gemm_one(
    (m, n, k): (usize, usize, usize),
    (c, c_rs, c_cs): Strided<*mut f32>,
    (a, a_rs, a_cs): Strided<*const f32>,
    (b, b_rs, b_cs): Strided<*const f32>,
) {
    // SAFETY: as the caller guarantees.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c,
            c_cs,
            c_rs,
            false,
            a,
            a_cs,
            a_rs,
            b,
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            ::gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aka_core::rng::Rng;

    /// The parallel split changes no bits: [`gemm`] on 2, 3 and 4 threads equals [`gemm`] on
    /// one, for the shapes training uses (the GPT's projections and their transposed backward
    /// products at the small and flagship sizes, the MNIST MLP) and ragged ones, including
    /// products with one side ≤ 64 (the `gemm` crate's small-size path); and it is a matrix
    /// product (against an f64 reference).
    #[test]
    fn gemm_is_thread_count_independent() {
        let mut rng = Rng::new(3);
        let shapes = [
            (2048, 64, 192, false, false),
            (2048, 256, 64, false, false),
            (192, 2048, 64, true, false),
            (4096, 128, 384, false, true),
            (4096, 512, 128, false, true),
            (4096, 384, 128, false, false),
            (384, 4096, 128, true, false),
            (128, 4096, 128, true, false),
            (128, 4096, 512, true, false),
            (64, 784, 576, false, false),
            (576, 64, 784, true, false),
            (60, 1000, 140, false, true),
            (65, 4096, 128, true, false),
            (128, 2000, 100, true, false),
            (140, 1000, 60, true, false),
            (100, 130, 70, false, false),
            (33, 700, 300, true, true),
        ];
        for (m, k, n, ta, tb) in shapes {
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
            let a = if ta {
                Array2::from_shape_vec((k, m), a).unwrap().reversed_axes()
            } else {
                Array2::from_shape_vec((m, k), a).unwrap()
            };
            let b = if tb {
                Array2::from_shape_vec((n, k), b).unwrap().reversed_axes()
            } else {
                Array2::from_shape_vec((k, n), b).unwrap()
            };
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| gemm(a.view(), b.view()))
            };
            let want = on(1);
            let exact = a.mapv(f64::from).dot(&b.mapv(f64::from));
            for (x, y) in want.iter().zip(exact.iter()) {
                assert!(
                    (f64::from(*x) - y).abs() < 1e-4 * (k as f64).sqrt() * 4.0,
                    "{m}x{k}x{n}"
                );
            }
            for threads in 2..=4 {
                let got = on(threads);
                assert!(
                    got.iter()
                        .zip(want.iter())
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}x{k}x{n} on {threads} threads"
                );
            }
        }
    }
}
