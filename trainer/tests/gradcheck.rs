//! Finite-difference gradient checks for every autograd op (tolerances: `autograd::gradcheck`).

// `check(&[x.clone()], ..)` reads better than `check(std::slice::from_ref(&x), ..)` in tests.
#![allow(clippy::cloned_ref_to_slice_refs)]

use aka_core::rng::Rng;
use aka_trainer::autograd::gradcheck::{check, randn};

mod reference;

fn rng() -> Rng {
    Rng::new(1234)
}

#[test]
fn add_sub_mul_div_broadcast() {
    let mut r = rng();
    let a = randn(&[3, 4], 1.0, &mut r);
    let b = randn(&[4], 1.0, &mut r);
    let c = randn(&[3, 1], 1.0, &mut r).mapv(|x| x.abs() + 0.5);
    check(&[a.clone(), b.clone()], |t| t[0].add(&t[1])).unwrap();
    check(&[a.clone(), b.clone()], |t| t[0].sub(&t[1])).unwrap();
    check(&[a.clone(), b.clone()], |t| t[0].mul(&t[1])).unwrap();
    check(&[a.clone(), c.clone()], |t| t[0].div(&t[1])).unwrap();
}

#[test]
fn matmul_linear_and_reductions() {
    let mut r = rng();
    let a = randn(&[3, 5], 1.0, &mut r);
    let b = randn(&[5, 2], 1.0, &mut r);
    check(&[a.clone(), b.clone()], |t| t[0].matmul(&t[1])).unwrap();
    let w = randn(&[4, 5], 1.0, &mut r);
    let bias = randn(&[4], 1.0, &mut r);
    check(&[a.clone(), w, bias], |t| t[0].linear(&t[1], Some(&t[2]))).unwrap();
    let ba = randn(&[2, 3, 4], 1.0, &mut r);
    let bb = randn(&[2, 4, 3], 1.0, &mut r);
    check(&[ba.clone(), bb], |t| t[0].matmul(&t[1])).unwrap();
    let shared = randn(&[4, 2], 1.0, &mut r);
    check(&[ba.clone(), shared], |t| t[0].matmul(&t[1])).unwrap();
    check(&[ba.clone()], |t| t[0].sum_axis(1, false)).unwrap();
    check(&[ba.clone()], |t| t[0].mean_axis(2, true)).unwrap();
    check(&[ba.clone()], |t| t[0].mean()).unwrap();
}

#[test]
fn losses() {
    let mut r = rng();
    let logits = randn(&[4, 6], 2.0, &mut r);
    check(&[logits.clone()], |t| t[0].cross_entropy(&[0, 5, 2, 2])).unwrap();
    check(&[logits.clone()], |t| t[0].log_softmax(1)).unwrap();
    let target = randn(&[4, 6], 1.0, &mut r);
    check(&[logits, target], |t| t[0].mse(&t[1])).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Activations, convolution/pooling and transformer ops.
//
// Kinks and ties: the checker perturbs one element at a time by ±EPS (= 0.01), so a piecewise
// op is checked exactly when no perturbation crosses a kink or changes an argmax. ReLU inputs are
// pushed to |x| >= 0.05 (5·EPS from the kink); max-pool inputs are a random permutation of values
// spaced 0.05 apart, so any two elements of a window differ by >= 5·EPS and no ±EPS step can
// change a window's argmax. Dropout is checked with a fixed mask (a fresh `Rng::new(seed)` inside
// the closure, so every evaluation draws the same mask), under which it is linear.

use aka_trainer::autograd::{no_grad, Array, Tensor};
use ndarray::IxDyn;

/// Forward values agree within a small absolute/relative tolerance.
fn assert_close(a: &Array, b: &Array, tol: f32) {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    for (i, (&x, &y)) in a.iter().zip(b.iter()).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "element {i}: {x} vs {y}"
        );
    }
}

/// `n` distinct values `k · 0.05 - n · 0.025` (k = 0..n) in a random order, shaped `shape`.
fn distinct(shape: &[usize], r: &mut Rng) -> Array {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|k| k as f32 * 0.05 - n as f32 * 0.025).collect();
    for i in (1..n).rev() {
        let j = r.below(i as u32 + 1) as usize;
        v.swap(i, j);
    }
    Array::from_shape_vec(IxDyn(shape), v).unwrap()
}

#[test]
fn elementwise_activations() {
    let mut r = rng();
    let x = randn(&[3, 5], 1.5, &mut r);
    check(&[x.clone()], |t| t[0].sigmoid()).unwrap();
    check(&[x.clone()], |t| t[0].tanh()).unwrap();
    check(&[x.clone()], |t| t[0].gelu()).unwrap();
    check(&[x.clone()], |t| t[0].gelu_erf()).unwrap();
    check(&[x.clone()], |t| t[0].silu()).unwrap();
    check(&[x.clone()], |t| t[0].exp()).unwrap();
    let pos = x.mapv(|v| v.abs() + 0.5);
    check(&[pos], |t| t[0].log()).unwrap();
    // Large inputs: the stable sigmoid must not overflow.
    let big = Tensor::from_vec(&[4], vec![-100.0, -30.0, 30.0, 100.0]);
    let s = big.sigmoid();
    assert!(s
        .value()
        .iter()
        .all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
}

#[test]
fn relu_away_from_kink() {
    let mut r = rng();
    // |x| >= 0.05 = 5·EPS, so no ±EPS step crosses 0.
    let x = randn(&[4, 6], 1.0, &mut r).mapv(|v| v.signum() * (v.abs() + 0.05));
    check(&[x], |t| t[0].relu()).unwrap();
}

#[test]
fn activation_forward_values() {
    // GELU tanh approximation, reference values from PyTorch GELU(approximate="tanh").
    let x = Tensor::from_vec(&[5], vec![-3.0, -1.0, 0.0, 1.0, 2.0]);
    let want = Array::from_shape_vec(
        IxDyn(&[5]),
        vec![-0.003_637_392, -0.158_808, 0.0, 0.841_192, 1.954_597_7],
    )
    .unwrap();
    assert_close(&x.gelu().value(), &want, 1e-5);
    // Exact GELU x·Φ(x) (PyTorch's nn.GELU()), from the normal CDF: Φ(-3) = 0.0013498980,
    // Φ(-1) = 0.1586552539, Φ(1) = 0.8413447461, Φ(2) = 0.9772498681.
    let erf_want = Array::from_shape_vec(
        IxDyn(&[5]),
        vec![-0.004_049_694, -0.158_655_25, 0.0, 0.841_344_8, 1.954_499_7],
    )
    .unwrap();
    assert_close(&x.gelu_erf().value(), &erf_want, 1e-6);
    let silu = Array::from_shape_vec(
        IxDyn(&[5]),
        vec![-0.142_277_36, -0.268_941_43, 0.0, 0.731_058_6, 1.761_594_2],
    )
    .unwrap();
    assert_close(&x.silu().value(), &silu, 1e-5);
    // softmax sums to 1 and matches exp(log_softmax).
    let mut r = rng();
    let a = Tensor::new(randn(&[2, 3, 4], 3.0, &mut r));
    let s = a.softmax(1);
    assert_close(&s.value(), &a.log_softmax(1).exp().value(), 1e-6);
    for v in s.value().sum_axis(ndarray::Axis(1)).iter() {
        assert!((v - 1.0).abs() < 1e-6);
    }
}

#[test]
fn softmax_axes() {
    let mut r = rng();
    let x = randn(&[2, 3, 4], 1.5, &mut r);
    check(&[x.clone()], |t| t[0].softmax(2)).unwrap();
    check(&[x.clone()], |t| t[0].softmax(1)).unwrap();
    check(&[x], |t| t[0].softmax(0)).unwrap();
}

#[test]
fn dropout_fixed_mask() {
    let mut r = rng();
    let x = randn(&[4, 6], 1.0, &mut r);
    // Same seed in every evaluation: a fixed mask, under which dropout is linear.
    check(&[x.clone()], |t| t[0].dropout(0.3, &mut Rng::new(42))).unwrap();
    check(&[x.clone()], |t| {
        t[0].dropout(0.3, &mut Rng::new(42)).tanh()
    })
    .unwrap();

    // Kept values are scaled by 1/(1-p), dropped ones are 0, the seed fixes the mask.
    let big = Tensor::new(Array::ones(IxDyn(&[100, 100])));
    let a = big.dropout(0.25, &mut Rng::new(7));
    let b = big.dropout(0.25, &mut Rng::new(7));
    assert_eq!(*a.value(), *b.value());
    let dropped = a.value().iter().filter(|&&v| v == 0.0).count();
    assert!(a
        .value()
        .iter()
        .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!(
        (2300..2700).contains(&dropped),
        "dropped {dropped} of 10000 at p = 0.25"
    );
    // p = 0 is the identity.
    assert!(big.dropout(0.0, &mut Rng::new(7)).same(&big));
}

/// Direct (7 nested loops) convolution, for checking the im2col forward pass.
fn conv2d_naive(x: &Array, w: &Array, b: Option<&Array>, stride: usize, pad: usize) -> Array {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (co, kh, kw) = (w.shape()[0], w.shape()[2], w.shape()[3]);
    let (oh, ow) = (
        (h + 2 * pad - kh) / stride + 1,
        (wd + 2 * pad - kw) / stride + 1,
    );
    let mut out = Array::zeros(IxDyn(&[n, co, oh, ow]));
    for bi in 0..n {
        for o in 0..co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = b.map_or(0.0, |b| b[[o]]);
                    for ci in 0..c {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let iy = (oy * stride + ki) as isize - pad as isize;
                                let ix = (ox * stride + kj) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    s += x[[bi, ci, iy as usize, ix as usize]] * w[[o, ci, ki, kj]];
                                }
                            }
                        }
                    }
                    out[[bi, o, oy, ox]] = s;
                }
            }
        }
    }
    out
}

/// A convolution shape: `(n, c_in, h, w, c_out, kh, kw, stride, padding)`.
type ConvCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

/// Configurations covering stride and padding edge cases.
const CONV_CASES: [ConvCase; 5] = [
    (2, 3, 5, 6, 4, 3, 3, 1, 1),
    (1, 2, 7, 5, 3, 2, 3, 2, 0),
    (2, 2, 6, 7, 2, 3, 3, 2, 1),
    (1, 1, 4, 4, 2, 1, 1, 3, 2),
    (1, 2, 3, 3, 2, 3, 2, 1, 2),
];

/// Calls `f(case, x, weight, bias, stride, padding)` for each of [`CONV_CASES`], with input
/// `[n, c, h, w]`, weight `[co, c, kh, kw]` and bias `[co]` standard normal (from [`rng`], drawn
/// in that order).
fn for_each_conv_case(mut f: impl FnMut(ConvCase, Array, Array, Array, usize, usize)) {
    let mut r = rng();
    for case in CONV_CASES {
        let (n, c, h, w, co, kh, kw, s, p) = case;
        let x = randn(&[n, c, h, w], 1.0, &mut r);
        let wt = randn(&[co, c, kh, kw], 1.0, &mut r);
        f(case, x, wt, randn(&[co], 1.0, &mut r), s, p);
    }
}

#[test]
fn conv2d_forward_matches_direct() {
    for_each_conv_case(|_, x, wt, b, s, p| {
        let got = Tensor::new(x.clone()).conv2d(
            &Tensor::new(wt.clone()),
            Some(&Tensor::new(b.clone())),
            s,
            p,
        );
        assert_close(&got.value(), &conv2d_naive(&x, &wt, Some(&b), s, p), 1e-5);
        let got = Tensor::new(x.clone()).conv2d(&Tensor::new(wt.clone()), None, s, p);
        assert_close(&got.value(), &conv2d_naive(&x, &wt, None, s, p), 1e-5);
    });
}

/// A batch large enough for every parallel path of the convolution (im2col rows, col2im
/// images, column-split products, and the weight gradient's reduction split over `n·oh·ow =
/// 12,544`): 1 and 2 threads give the same bits, and the values match direct references.
#[test]
fn conv2d_large_batch_is_thread_count_independent() {
    let mut r = rng();
    let (n, c, h, w, co) = (16, 2, 28, 28, 8);
    let x = randn(&[n, c, h, w], 1.0, &mut r);
    let wt = randn(&[co, c, 3, 3], 0.5, &mut r);
    let b = randn(&[co], 0.5, &mut r);
    let dy = randn(&[n, co, h, w], 1.0, &mut r);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (tx, tw, tb) = (
                Tensor::param(x.clone()),
                Tensor::param(wt.clone()),
                Tensor::param(b.clone()),
            );
            let y = tx.conv2d(&tw, Some(&tb), 1, 1);
            y.mul(&Tensor::new(dy.clone())).sum().backward();
            let g = |t: &Tensor| t.grad().unwrap().clone();
            let value = y.value().clone();
            (value, g(&tx), g(&tw), g(&tb))
        })
    };
    let one = run(1);
    let two = run(2);
    assert!(one.0 == two.0 && one.1 == two.1 && one.2 == two.2 && one.3 == two.3);
    assert_close(&one.0, &conv2d_naive(&x, &wt, Some(&b), 1, 1), 1e-5);
    // dW[o][ci][ki][kj] = Σ dy[b][o][y][x] · x[b][ci][y + ki - 1][x + kj - 1], in f64.
    let mut dw = Array::zeros(IxDyn(&[co, c, 3, 3]));
    for o in 0..co {
        for ci in 0..c {
            for ki in 0..3 {
                for kj in 0..3 {
                    let mut s = 0.0f64;
                    for bi in 0..n {
                        for oy in 0..h {
                            for ox in 0..w {
                                let (iy, ix) = (oy + ki, ox + kj);
                                if iy >= 1 && ix >= 1 && iy <= h && ix <= w {
                                    s += dy[[bi, o, oy, ox]] as f64
                                        * x[[bi, ci, iy - 1, ix - 1]] as f64;
                                }
                            }
                        }
                    }
                    dw[[o, ci, ki, kj]] = s as f32;
                }
            }
        }
    }
    assert_close(&one.2, &dw, 1e-4);
    // dX by the adjoint: dX[b][ci][iy][ix] = Σ dy[b][o][oy][ox] · w[o][ci][ki][kj].
    let mut dx = Array::zeros(IxDyn(&[n, c, h, w]));
    for bi in 0..n {
        for o in 0..co {
            for oy in 0..h {
                for ox in 0..w {
                    for ci in 0..c {
                        for ki in 0..3 {
                            for kj in 0..3 {
                                let (iy, ix) = (oy + ki, ox + kj);
                                if iy >= 1 && ix >= 1 && iy <= h && ix <= w {
                                    dx[[bi, ci, iy - 1, ix - 1]] +=
                                        dy[[bi, o, oy, ox]] * wt[[o, ci, ki, kj]];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_close(&one.1, &dx, 1e-4);
}

#[test]
fn conv2d_gradients() {
    for_each_conv_case(|case, x, wt, b, s, p| {
        check(&[x.clone(), wt.clone(), b], |t| {
            t[0].conv2d(&t[1], Some(&t[2]), s, p)
        })
        .unwrap_or_else(|e| panic!("case {case:?}: {e}"));
        check(&[x, wt], |t| t[0].conv2d(&t[1], None, s, p)).unwrap();
    });
}

#[test]
fn conv2d_constant_input_skips_input_grad() {
    // A data input (a constant): only the weight and bias gradients are computed.
    let mut r = rng();
    let x = randn(&[2, 1, 6, 6], 1.0, &mut r);
    let wt = randn(&[3, 1, 3, 3], 1.0, &mut r);
    let b = randn(&[3], 1.0, &mut r);
    check(&[wt, b], |t| {
        Tensor::new(x.clone()).conv2d(&t[0], Some(&t[1]), 1, 1)
    })
    .unwrap();
}

#[test]
fn conv_stack_gradients() {
    // conv -> tanh -> conv (stride 2) -> flatten -> linear: smooth, so checked at random points.
    let mut r = rng();
    let x = randn(&[2, 2, 6, 6], 1.0, &mut r);
    let w1 = randn(&[3, 2, 3, 3], 0.4, &mut r);
    let w2 = randn(&[2, 3, 3, 3], 0.4, &mut r);
    let wl = randn(&[4, 18], 0.4, &mut r);
    check(&[x, w1, w2, wl], |t| {
        t[0].conv2d(&t[1], None, 1, 1)
            .tanh()
            .conv2d(&t[2], None, 2, 1)
            .flatten(1)
            .linear(&t[3], None)
    })
    .unwrap();
}

/// Direct max-pooling, for checking the forward pass.
fn max_pool_naive(x: &Array, k: usize, s: usize) -> Array {
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    Array::from_shape_fn(IxDyn(&[n, c, oh, ow]), |i| {
        let mut m = f32::NEG_INFINITY;
        for ki in 0..k {
            for kj in 0..k {
                m = m.max(x[[i[0], i[1], i[2] * s + ki, i[3] * s + kj]]);
            }
        }
        m
    })
}

#[test]
fn max_pool2d_away_from_ties() {
    let mut r = rng();
    // (shape, kernel, stride): non-overlapping, overlapping, and a ragged edge (floor mode).
    let cases: [(&[usize], usize, usize); 4] = [
        (&[2, 3, 6, 6], 2, 2),
        (&[1, 2, 7, 7], 3, 2),
        (&[1, 2, 5, 4], 2, 1),
        (&[2, 1, 7, 5], 2, 2),
    ];
    for (shape, k, s) in cases {
        let x = distinct(shape, &mut r);
        assert_close(
            &Tensor::new(x.clone()).max_pool2d(k, s).value(),
            &max_pool_naive(&x, k, s),
            0.0,
        );
        check(&[x], |t| t[0].max_pool2d(k, s))
            .unwrap_or_else(|e| panic!("case {shape:?} k {k} s {s}: {e}"));
    }
    // Ties go to the first maximum: the gradient lands on one element only.
    let x = Tensor::param(Array::zeros(IxDyn(&[1, 1, 2, 2])));
    x.max_pool2d(2, 2).sum().backward();
    assert_eq!(
        x.grad().unwrap().iter().copied().collect::<Vec<_>>(),
        [1.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn embedding_scatter_adds() {
    let mut r = rng();
    let table = randn(&[7, 4], 1.0, &mut r);
    let ids = [3, 0, 3, 6, 1, 3];
    check(&[table.clone()], |t| t[0].embedding(&ids)).unwrap();
    let e = Tensor::new(table.clone()).embedding(&ids);
    assert_eq!(e.shape(), [6, 4]);
    assert_eq!(e.value().row_view(2), table.row_view(3));

    // With a position table (ids [2, 3]): row bi·t + p is table[id] + pos[p]; both get
    // gradients, and only the first t rows of pos are used.
    let pos = randn(&[5, 4], 1.0, &mut r);
    check(&[table.clone(), pos.clone()], |t| {
        t[0].embedding_with_positions(Some(&t[1]), &ids, 3)
    })
    .unwrap();
    let e = Tensor::new(table.clone()).embedding_with_positions(
        Some(&Tensor::new(pos.clone())),
        &ids,
        3,
    );
    let want: Vec<f32> = table
        .row_view(6)
        .iter()
        .zip(pos.row_view(0))
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(e.value().row_view(3), want);
}

/// Row `i` of a 2-D array.
trait RowView {
    fn row_view(&self, i: usize) -> Vec<f32>;
}
impl RowView for Array {
    fn row_view(&self, i: usize) -> Vec<f32> {
        self.index_axis(ndarray::Axis(0), i)
            .iter()
            .copied()
            .collect()
    }
}

#[test]
fn layer_norm_and_rms_norm() {
    let mut r = rng();
    let x = randn(&[2, 3, 8], 1.0, &mut r);
    let w = randn(&[8], 1.0, &mut r);
    let b = randn(&[8], 1.0, &mut r);
    check(&[x.clone(), w.clone(), b.clone()], |t| {
        t[0].layer_norm(&t[1], Some(&t[2]), 1e-5)
    })
    .unwrap();
    check(&[x.clone(), w.clone()], |t| {
        t[0].layer_norm(&t[1], None, 1e-5)
    })
    .unwrap();
    check(&[x.clone(), w.clone()], |t| t[0].rms_norm(&t[1], 1e-5)).unwrap();
    let x2 = randn(&[5, 6], 2.0, &mut r).mapv(|v| v + 1.0);
    let w2 = randn(&[6], 1.0, &mut r);
    check(&[x2.clone(), w2.clone()], |t| t[0].rms_norm(&t[1], 1e-5)).unwrap();
    check(&[x2, w2.clone(), w2], |t| {
        t[0].layer_norm(&t[1], Some(&t[2]), 1e-5)
    })
    .unwrap();

    // With unit weight and no bias, every row has mean 0 and variance 1 (up to eps).
    let ones = Tensor::new(Array::ones(IxDyn(&[8])));
    let y = Tensor::new(x.clone()).layer_norm(&ones, None, 0.0);
    for row in y.value().rows() {
        let m = row.sum() / 8.0;
        let v = row.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / 8.0;
        assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4, "mean {m} var {v}");
    }
    let y = Tensor::new(x).rms_norm(&ones, 0.0);
    for row in y.value().rows() {
        let ms = row.iter().map(|a| a * a).sum::<f32>() / 8.0;
        assert!((ms - 1.0).abs() < 1e-4, "mean square {ms}");
    }
}

#[test]
fn causal_mask_and_softmax() {
    let mut r = rng();
    let s = randn(&[2, 3, 5, 5], 1.5, &mut r);
    check(&[s.clone()], |t| reference::causal_softmax(&t[0])).unwrap();
    check(&[s.clone()], |t| reference::masked_fill_causal(&t[0], 0.0)).unwrap();
    check(&[s.clone()], |t| {
        reference::masked_fill_causal(&t[0], -1e4).softmax(3)
    })
    .unwrap();

    let a = Tensor::new(s);
    let fused = reference::causal_softmax(&a);
    assert_close(
        &fused.value(),
        &reference::masked_fill_causal(&a, f32::NEG_INFINITY)
            .softmax(3)
            .value(),
        1e-6,
    );
    let v = fused.value();
    for i in 0..5 {
        for j in 0..5 {
            let p = v[[1, 2, i, j]];
            if j > i {
                assert_eq!(p, 0.0, "key {j} visible to query {i}");
            } else {
                assert!(p > 0.0);
            }
        }
        let row: f32 = (0..5).map(|j| v[[1, 2, i, j]]).sum();
        assert!((row - 1.0).abs() < 1e-6);
    }
}

#[test]
fn rope_gradients_and_convention() {
    let mut r = rng();
    let x = randn(&[2, 2, 5, 8], 1.0, &mut r);
    check(&[x.clone()], |t| t[0].rope(0)).unwrap();
    check(&[x.clone()], |t| t[0].rope(3)).unwrap();

    // Rotate-half convention, checked element by element against the documented formula.
    let y = Tensor::new(x.clone()).rope(2);
    let (cos, sin) = Tensor::rope_tables(2, 5, 8);
    let yv = y.value();
    for p in 0..5 {
        for i in 0..4 {
            let (a, b) = (x[[1, 0, p, i]], x[[1, 0, p, i + 4]]);
            let (c, s) = (cos[[p, i]], sin[[p, i]]);
            assert_eq!(yv[[1, 0, p, i]], a * c - b * s);
            assert_eq!(yv[[1, 0, p, i + 4]], b * c + a * s);
        }
    }
    // Table values: angle = pos · 10000^(-2i/d).
    let ang = 6.0f64 * 10_000f64.powf(-2.0 / 8.0);
    assert_eq!(cos[[4, 1]], ang.cos() as f32);
    assert_eq!(sin[[4, 1]], ang.sin() as f32);
    // Position 0 is the identity.
    assert_close(
        &Tensor::new(x.clone())
            .rope(0)
            .value()
            .slice(ndarray::s![.., .., 0..1, ..])
            .to_owned()
            .into_dyn(),
        &x.slice(ndarray::s![.., .., 0..1, ..]).to_owned().into_dyn(),
        0.0,
    );

    // Relative positions: <rope(q)@m, rope(k)@n> depends only on m - n.
    let q = randn(&[1, 1, 1, 8], 1.0, &mut r);
    let k = randn(&[1, 1, 1, 8], 1.0, &mut r);
    let dot = |m: usize, n: usize| -> f32 {
        let a = Tensor::new(q.clone()).rope(m);
        let b = Tensor::new(k.clone()).rope(n);
        let d = a
            .value()
            .iter()
            .zip(b.value().iter())
            .map(|(x, y)| x * y)
            .sum::<f32>();
        d
    };
    assert!((dot(5, 2) - dot(13, 10)).abs() < 1e-4);
    assert!(
        (dot(5, 2) - dot(2, 5)).abs() > 1e-3,
        "rotation should not be symmetric"
    );
}

#[test]
fn narrow_and_concat() {
    let mut r = rng();
    let x = randn(&[2, 9, 3], 1.0, &mut r);
    check(&[x.clone()], |t| reference::narrow(&t[0], 1, 3, 4)).unwrap();
    check(&[x.clone()], |t| reference::narrow(&t[0], 2, 1, 2)).unwrap();
    let a = randn(&[2, 2, 3], 1.0, &mut r);
    let b = randn(&[2, 4, 3], 1.0, &mut r);
    check(&[x.clone(), a.clone(), b.clone()], |t| {
        reference::concat(t, 1)
    })
    .unwrap();
    check(&[a.clone(), a.clone()], |t| reference::concat(t, 0)).unwrap();
    check(&[a.clone(), a], |t| reference::concat(t, 2)).unwrap();

    // Splitting and re-joining is the identity.
    let t = Tensor::new(x.clone());
    let parts = [
        reference::narrow(&t, 1, 0, 3),
        reference::narrow(&t, 1, 3, 3),
        reference::narrow(&t, 1, 6, 3),
    ];
    assert_eq!(*reference::concat(&parts, 1).value(), x);
}

/// The one-pass cross-entropy gives exactly the bits of the `log_softmax` composition it
/// replaced (the MNIST loss history depends on them), for loss and gradient.
#[test]
fn cross_entropy_bits_match_unfused_reference() {
    let mut r = rng();
    // 600 x 65 is above the size split across threads.
    for (n, k) in [(64, 10), (37, 65), (5, 1), (3, 200), (600, 65)] {
        let logits = randn(&[n, k], 4.0, &mut r);
        let targets: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % k).collect();
        let (want_loss, want_grad) = reference::cross_entropy_unfused(&logits, &targets);
        let x = Tensor::param(logits);
        let loss = x.cross_entropy(&targets);
        assert_eq!(loss.item().to_bits(), want_loss.to_bits(), "loss {n}x{k}");
        loss.backward();
        let grad = x.grad().unwrap().clone();
        assert!(
            grad.iter()
                .zip(want_grad.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "gradient {n}x{k}"
        );
    }
}

#[test]
fn cross_entropy_on_flattened_sequence() {
    // Language-model loss: [b, t, vocab] logits flattened to [b*t, vocab].
    let mut r = rng();
    let logits = randn(&[2, 3, 7], 2.0, &mut r);
    let targets = [0, 6, 2, 2, 5, 1];
    check(&[logits], |t| t[0].reshape(&[6, 7]).cross_entropy(&targets)).unwrap();
}

#[test]
fn attention_block_gradients() {
    // One causal self-attention head block: x [b*t, d] -> qkv -> heads -> RoPE -> causal softmax
    // -> merge heads -> projection, with layer norm and GELU around it.
    let (b, t, h, hd) = (2, 4, 2, 4);
    let d = h * hd;
    let mut r = rng();
    let x = randn(&[b * t, d], 1.0, &mut r);
    let ln_w = randn(&[d], 1.0, &mut r);
    let w_qkv = randn(&[3 * d, d], 0.3, &mut r);
    let w_o = randn(&[d, d], 0.3, &mut r);
    let table = randn(&[11, d], 1.0, &mut r);
    let ids = [1, 4, 4, 9, 0, 2, 10, 3];
    check(&[x, ln_w, w_qkv, w_o, table], |p| {
        let x = p[0].add(&p[4].embedding(&ids));
        let hn = x.layer_norm(&p[1], None, 1e-5);
        let qkv = hn.linear(&p[2], None);
        let heads = |i: usize| {
            reference::narrow(&qkv, 1, i * d, d)
                .reshape(&[b, t, h, hd])
                .permute(&[0, 2, 1, 3])
        };
        let q = heads(0).rope(0).reshape(&[b * h, t, hd]);
        let k = heads(1).rope(0).reshape(&[b * h, t, hd]);
        let v = heads(2).reshape(&[b * h, t, hd]);
        let scores = q
            .matmul(&k.transpose(1, 2))
            .mul_scalar(1.0 / (hd as f32).sqrt())
            .reshape(&[b, h, t, t]);
        let att = reference::causal_softmax(&scores).reshape(&[b * h, t, t]);
        let y = att
            .matmul(&v)
            .reshape(&[b, h, t, hd])
            .permute(&[0, 2, 1, 3])
            .reshape(&[b * t, d]);
        x.add(&y.linear(&p[3], None).gelu())
    })
    .unwrap();
}

/// Rough timings of the MNIST CNN's convolutions (no assertions). Run with
/// `cargo test -p aka-trainer --test gradcheck conv_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn conv_timing() {
    use std::time::Instant;
    let mut r = rng();
    let reps = 50;
    let time = |label: &str, f: &dyn Fn()| {
        f();
        let mut times: Vec<f64> = (0..reps)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / reps as f64;
        println!(
            "{label:58} min {:7.3} ms  median {:7.3} ms  mean {mean:7.3} ms",
            times[0],
            times[reps / 2]
        );
    };
    let x1 = Tensor::new(randn(&[64, 1, 28, 28], 1.0, &mut r));
    let w1 = Tensor::param(randn(&[8, 1, 3, 3], 0.3, &mut r));
    let b1 = Tensor::param(randn(&[8], 0.3, &mut r));
    let x2 = Tensor::param(randn(&[64, 8, 14, 14], 1.0, &mut r));
    let w2 = Tensor::param(randn(&[16, 8, 3, 3], 0.1, &mut r));
    let b2 = Tensor::param(randn(&[16], 0.1, &mut r));
    let wl1 = Tensor::param(randn(&[64, 784], 0.03, &mut r));
    let wl2 = Tensor::param(randn(&[10, 64], 0.1, &mut r));
    let targets: Vec<usize> = (0..64).map(|i| i % 10).collect();

    let convs = [
        ("conv 1->8 [64,1,28,28]", "no input grad", (&x1, &w1, &b1)),
        (
            "conv 8->16 [64,8,14,14]",
            "with input grad",
            (&x2, &w2, &b2),
        ),
    ];
    for (name, grads, (x, w, b)) in convs {
        time(&format!("{name} forward"), &|| {
            no_grad(|| x.conv2d(w, Some(b), 1, 1));
        });
        time(&format!("{name} forward+backward ({grads})"), &|| {
            x.conv2d(w, Some(b), 1, 1).sum().backward();
        });
    }
    let p1 = Tensor::param(randn(&[64, 8, 28, 28], 1.0, &mut r));
    time("max_pool2d 2x2 [64,8,28,28] forward", &|| {
        no_grad(|| p1.max_pool2d(2, 2));
    });
    time("max_pool2d 2x2 [64,8,28,28] forward+backward", &|| {
        p1.max_pool2d(2, 2).sum().backward();
    });
    time("whole MNIST CNN step (batch 64) forward+backward", &|| {
        x1.conv2d(&w1, Some(&b1), 1, 1)
            .relu()
            .max_pool2d(2, 2)
            .conv2d(&w2, Some(&b2), 1, 1)
            .relu()
            .max_pool2d(2, 2)
            .flatten(1)
            .linear(&wl1, None)
            .relu()
            .linear(&wl2, None)
            .cross_entropy(&targets)
            .backward();
    });
}

#[test]
fn linear_on_three_dimensional_input() {
    let mut r = rng();
    let x = randn(&[2, 3, 5], 1.0, &mut r);
    let w = randn(&[4, 5], 1.0, &mut r);
    let b = randn(&[4], 1.0, &mut r);
    check(&[x, w, b], |t| t[0].linear(&t[1], Some(&t[2]))).unwrap();
}
