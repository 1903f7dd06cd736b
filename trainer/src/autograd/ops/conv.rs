//! 2-D convolution and max-pooling on NCHW tensors.
//!
//! Convolution is lowered to one large matrix product (im2col): the input patches are unfolded
//! into a `[c_in·kh·kw, n·oh·ow]` matrix, multiplied by the weight viewed as
//! `[c_out, c_in·kh·kw]`, and the `[c_out, n·oh·ow]` result is rearranged to
//! `[n, c_out, oh, ow]`. The backward pass uses
//! the same matrices: `dW = dY · colsᵀ` and `dcols = Wᵀ · dY`, folded back onto the input by
//! col2im. The hot loops copy whole contiguous rows (slice copies) rather than indexing element
//! by element.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, Axis, IxDyn};
use std::ops::Range;

use crate::autograd::tensor::{Array, Tensor};

/// Shapes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    /// Rows of the column matrix: `c_in·kh·kw`.
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Output positions per image: `oh·ow`.
    fn l(&self) -> usize {
        self.oh * self.ow
    }
    /// Columns of the column matrix: `n·oh·ow`.
    fn nl(&self) -> usize {
        self.n * self.l()
    }

    /// For column-matrix row `r = (ci, ki, kj)`: the input channel, the valid output rows
    /// `ylo..yhi` and columns `xlo..xhi` (those whose tap falls inside the unpadded input), and the
    /// input column of output column `xlo`.
    #[allow(clippy::type_complexity)]
    fn row_plan(&self, r: usize) -> (usize, usize, (usize, usize), (usize, usize), usize) {
        let kj = r % self.kw;
        let ki = (r / self.kw) % self.kh;
        let ci = r / (self.kw * self.kh);
        let ys = valid_range(
            self.h,
            self.oh,
            self.stride,
            ki as isize - self.pad as isize,
        );
        let xs = valid_range(
            self.w,
            self.ow,
            self.stride,
            kj as isize - self.pad as isize,
        );
        // Within the valid ranges `o * stride + k >= pad`, so these cannot underflow.
        let x0 = if xs.0 < xs.1 {
            xs.0 * self.stride + kj - self.pad
        } else {
            0
        };
        (ci, ki, ys, xs, x0)
    }
}

/// The output positions `o` in `0..n_out` for which `o * stride + off` lies in `0..n_in`.
fn valid_range(n_in: usize, n_out: usize, stride: usize, off: isize) -> (usize, usize) {
    let lo = if off >= 0 {
        0
    } else {
        off.unsigned_abs().div_ceil(stride)
    };
    let last = n_in as isize - 1 - off;
    let hi = if last < 0 {
        0
    } else {
        (last as usize / stride + 1).min(n_out)
    };
    (lo.min(hi), hi)
}

/// Calls `f(col, input)` for every run of the column matrix that reads the input, in order of
/// column-matrix row `(ci, ki, kj)`, image and output row: `col` is a range of the flat
/// `[c·kh·kw, n·oh·ow]` columns (the valid output columns of one output row), `input` the range of
/// the flat `[n, c, h, w]` input from that run's first tap to the end of its input row (the taps
/// are `stride` apart in it).
fn for_each_run(g: &Geom, mut f: impl FnMut(Range<usize>, Range<usize>)) {
    let (nl, l, hw) = (g.nl(), g.l(), g.h * g.w);
    for r in 0..g.k() {
        let (ci, ki, (ylo, yhi), (xlo, xhi), x0) = g.row_plan(r);
        if xlo >= xhi {
            continue;
        }
        for b in 0..g.n {
            let (col0, plane) = (r * nl + b * l, (b * g.c + ci) * hw);
            for oy in ylo..yhi {
                let iy = oy * g.stride + ki - g.pad;
                let row = col0 + oy * g.ow;
                f(
                    row + xlo..row + xhi,
                    plane + iy * g.w + x0..plane + (iy + 1) * g.w,
                );
            }
        }
    }
}

/// Unfolds `x` (`[n, c, h, w]`, row-major) into the `[c·kh·kw, n·oh·ow]` column matrix.
fn im2col(x: &[f32], g: &Geom) -> Vec<f32> {
    let mut cols = vec![0.0f32; g.k() * g.nl()];
    for_each_run(g, |c, i| {
        let (dst, src) = (&mut cols[c], &x[i]);
        if g.stride == 1 {
            dst.copy_from_slice(&src[..dst.len()]);
        } else {
            for (d, &s) in dst.iter_mut().zip(src.iter().step_by(g.stride)) {
                *d = s;
            }
        }
    });
    cols
}

/// Folds a `[c·kh·kw, n·oh·ow]` column-matrix gradient back onto the input: the adjoint of
/// [`im2col`] (overlapping taps add up). Returns `[n, c, h, w]` row-major.
fn col2im(cols: &[f32], g: &Geom) -> Vec<f32> {
    let mut dx = vec![0.0f32; g.n * g.c * g.h * g.w];
    for_each_run(g, |c, i| {
        let (dst, src) = (&mut dx[i], &cols[c]);
        if g.stride == 1 {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        } else {
            for (d, &s) in dst.iter_mut().step_by(g.stride).zip(src) {
                *d += s;
            }
        }
    });
    dx
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch `conv2d`), NCHW.
    ///
    /// - `self`: input `[n, c_in, h, w]`
    /// - `weight`: `[c_out, c_in, kh, kw]` (PyTorch layout)
    /// - `bias`: optional `[c_out]`
    /// - `stride` (same for both axes, ≥ 1) and zero `padding` on every side
    ///
    /// Returns `[n, c_out, oh, ow]` with `oh = (h + 2·padding - kh) / stride + 1` and likewise
    /// `ow` (floor division). The input gradient is only computed when the input needs one (not
    /// for a first layer fed with data).
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Tensor {
        let x = self.value();
        let wt = weight.value();
        assert_eq!(
            x.ndim(),
            4,
            "conv2d input must be [n, c, h, w], got {:?}",
            x.shape()
        );
        assert_eq!(
            wt.ndim(),
            4,
            "conv2d weight must be [c_out, c_in, kh, kw], got {:?}",
            wt.shape()
        );
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (co, kh, kw) = (wt.shape()[0], wt.shape()[2], wt.shape()[3]);
        assert_eq!(
            wt.shape()[1],
            c,
            "conv2d: weight c_in {} != input channels {c}",
            wt.shape()[1]
        );
        assert!(stride >= 1, "conv2d stride must be >= 1");
        assert!(
            h + 2 * padding >= kh && w + 2 * padding >= kw,
            "conv2d kernel {kh}x{kw} larger than padded input {h}x{w} (+{padding})"
        );
        if let Some(b) = bias {
            assert_eq!(b.shape(), [co], "conv2d bias must be [c_out]");
        }
        let g = Geom {
            n,
            c,
            h,
            w,
            kh,
            kw,
            stride,
            pad: padding,
            oh: (h + 2 * padding - kh) / stride + 1,
            ow: (w + 2 * padding - kw) / stride + 1,
        };
        let (k, l, nl) = (g.k(), g.l(), g.nl());

        let xs = x.as_standard_layout();
        let cols = im2col(xs.as_slice().expect("standard layout"), &g);
        drop(xs);
        drop(x);
        let ws = wt.as_standard_layout();
        let wm = ArrayView2::from_shape((co, k), ws.as_slice().expect("standard layout"))
            .expect("weight as matrix");
        let cm = ArrayView2::from_shape((k, nl), &cols[..]).expect("cols as matrix");
        let mut om = Array2::<f32>::zeros((co, nl));
        general_mat_mul(1.0, &wm, &cm, 0.0, &mut om);
        drop(ws);
        drop(wt);

        // [c_out, n·L] -> [n, c_out, L], adding the bias.
        let bias_v: Option<Vec<f32>> = bias.map(|b| b.value().iter().copied().collect());
        let om = om.as_slice().expect("standard layout");
        let mut out = vec![0.0f32; n * co * l];
        if l > 0 {
            for (i, dst) in out.chunks_exact_mut(l).enumerate() {
                let (b, o) = (i / co, i % co);
                let src = &om[o * nl + b * l..][..l];
                let bv = bias_v.as_ref().map_or(0.0, |v| v[o]);
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = s + bv;
                }
            }
        }
        let value = Array::from_shape_vec(IxDyn(&[n, co, g.oh, g.ow]), out).expect("output shape");

        let mut inputs = vec![self.clone(), weight.clone()];
        inputs.extend(bias.cloned());
        Tensor::from_op("conv2d", value, inputs, move |ctx| {
            // dY as [c_out, n·L].
            let gy = ctx.grad.as_standard_layout();
            let gy = gy.as_slice().expect("standard layout");
            let mut gm = vec![0.0f32; co * nl];
            if l > 0 {
                for (i, src) in gy.chunks_exact(l).enumerate() {
                    let (b, o) = (i / co, i % co);
                    gm[o * nl + b * l..][..l].copy_from_slice(src);
                }
            }
            let gm = ArrayView2::from_shape((co, nl), &gm[..]).expect("dY as matrix");

            let gx = ctx.needs[0].then(|| {
                let wt = ctx.inputs[1].value();
                let ws = wt.as_standard_layout();
                let wm = ArrayView2::from_shape((co, k), ws.as_slice().expect("standard layout"))
                    .expect("weight as matrix");
                let mut dcols = Array2::<f32>::zeros((k, nl));
                general_mat_mul(1.0, &wm.t(), &gm, 0.0, &mut dcols);
                let dx = col2im(dcols.as_slice().expect("standard layout"), &g);
                Array::from_shape_vec(IxDyn(&[g.n, g.c, g.h, g.w]), dx).expect("input shape")
            });
            let gw = ctx.needs[1].then(|| {
                let cm = ArrayView2::from_shape((k, nl), &cols[..]).expect("cols as matrix");
                let mut dw = Array2::<f32>::zeros((co, k));
                general_mat_mul(1.0, &gm, &cm.t(), 0.0, &mut dw);
                dw.into_shape_with_order(IxDyn(&[co, g.c, g.kh, g.kw]))
                    .expect("weight shape")
            });
            let mut grads = vec![gx, gw];
            if ctx.inputs.len() == 3 {
                grads.push(ctx.needs[2].then(|| gm.sum_axis(Axis(1)).into_dyn()));
            }
            grads
        })
    }

    /// 2-D max-pooling, NCHW, no padding, floor mode: `[n, c, h, w] -> [n, c, oh, ow]` with
    /// `oh = (h - kernel) / stride + 1` and likewise `ow`. Square `kernel × kernel` windows.
    ///
    /// Backward sends each output gradient to the maximum of its window only; ties go to the
    /// first maximum in row-major window order. A NaN in a window propagates to the output (and
    /// then receives no gradient).
    pub fn max_pool2d(&self, kernel: usize, stride: usize) -> Tensor {
        let x = self.value();
        assert_eq!(
            x.ndim(),
            4,
            "max_pool2d input must be [n, c, h, w], got {:?}",
            x.shape()
        );
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        assert!(
            kernel >= 1 && stride >= 1,
            "max_pool2d kernel and stride must be >= 1"
        );
        assert!(
            h >= kernel && w >= kernel,
            "max_pool2d kernel {kernel} larger than {h}x{w}"
        );
        let p = Pool {
            w,
            k: kernel,
            s: stride,
            ow: (w - kernel) / stride + 1,
        };
        let (hw, ohw) = (h * w, ((h - kernel) / stride + 1) * p.ow);

        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        let mut out = vec![0.0f32; n * c * ohw];
        if hw > 0 && ohw > 0 {
            for (plane, o) in xs.chunks_exact(hw).zip(out.chunks_exact_mut(ohw)) {
                pool_forward(plane, o, &p);
            }
        }
        let value =
            Array::from_shape_vec(IxDyn(&[n, c, ohw / p.ow, p.ow]), out).expect("output shape");
        drop(x);
        Tensor::from_op("max_pool2d", value, vec![self.clone()], move |ctx| {
            let x = ctx.inputs[0].value();
            let xs = x.as_standard_layout();
            let xs = xs.as_slice().expect("standard layout");
            let gy = ctx.grad.as_standard_layout();
            let gy = gy.as_slice().expect("standard layout");
            let out = ctx.out.as_standard_layout();
            let out = out.as_slice().expect("standard layout");
            let mut dx = vec![0.0f32; xs.len()];
            let mut done = vec![0u32; p.ow];
            if hw > 0 && ohw > 0 {
                let planes = xs.chunks_exact(hw).zip(dx.chunks_exact_mut(hw));
                let outs = out.chunks_exact(ohw).zip(gy.chunks_exact(ohw));
                for ((plane, d), (o, g)) in planes.zip(outs) {
                    pool_backward(plane, o, g, d, &mut done, &p);
                }
            }
            vec![Some(
                Array::from_shape_vec(IxDyn(&[n, c, h, w]), dx).expect("input shape"),
            )]
        })
    }
}

/// Max-pooling geometry of one plane (the output height is implied by the output length).
#[derive(Clone, Copy, Debug)]
struct Pool {
    w: usize,
    k: usize,
    s: usize,
    ow: usize,
}

// Both pooling loops run one window tap at a time across a whole output row: the windows are
// independent, so the inner loop pipelines, and the selects are bit masks with unconditional
// stores. A per-window loop with an `if` is one dependency chain whose branch mispredicts on real
// activations, and LLVM turns a stored argmax select back into such a branch; hence no stored
// argmax: backward finds the first tap equal to the output.

/// Maximum of every window of one `[h, w]` plane into `out` (`[oh, ow]`).
fn pool_forward(plane: &[f32], out: &mut [f32], p: &Pool) {
    for (oy, orow) in out.chunks_exact_mut(p.ow).enumerate() {
        let base = oy * p.s * p.w;
        for ki in 0..p.k {
            for kj in 0..p.k {
                let first = ki == 0 && kj == 0;
                let taps = plane[base + ki * p.w + kj..].iter().step_by(p.s);
                for (o, &v) in orow.iter_mut().zip(taps) {
                    // Take a larger value or a NaN (once NaN, nothing is larger).
                    let take = first | (v > *o) | (v.is_nan() & !o.is_nan());
                    let m = (take as u32).wrapping_neg();
                    *o = f32::from_bits(o.to_bits() ^ ((o.to_bits() ^ v.to_bits()) & m));
                }
            }
        }
    }
}

/// Adds each output gradient of one plane to the first tap (row-major) of its window that equals
/// the window's output. `done` is scratch of length `ow`.
fn pool_backward(
    plane: &[f32],
    out: &[f32],
    gy: &[f32],
    dx: &mut [f32],
    done: &mut [u32],
    p: &Pool,
) {
    let rows = out.chunks_exact(p.ow).zip(gy.chunks_exact(p.ow));
    for (oy, (orow, grow)) in rows.enumerate() {
        let base = oy * p.s * p.w;
        done.fill(0);
        for ki in 0..p.k {
            for kj in 0..p.k {
                let off = base + ki * p.w + kj;
                let taps = plane[off..].iter().step_by(p.s);
                let dtaps = dx[off..].iter_mut().step_by(p.s);
                let lanes = orow.iter().zip(grow).zip(done.iter_mut());
                for ((d, &v), ((&o, &g), dn)) in dtaps.zip(taps).zip(lanes) {
                    let hit = ((v == o) as u32).wrapping_neg() & !*dn;
                    *d += f32::from_bits(g.to_bits() & hit);
                    *dn |= hit;
                }
            }
        }
    }
}
