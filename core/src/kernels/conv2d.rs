//! 2-D convolution, NHWC activations, OHWI weights: geometry and the portable reference.

use super::linear::dot_i8;
use super::linear_s4::{dot_s4_at, s4_row_bytes, sum_s4_at};
use super::{shape_error, sum_i8, OutputStage};
use crate::Error;

/// Geometry of a convolution: input `in_h x in_w x in_c` (NHWC), `out_c` filters of
/// `kernel_h x kernel_w x in_c` (OHWI), symmetric padding `pad_h` rows top and bottom and
/// `pad_w` columns left and right, output `out_h x out_w x out_c` with
/// `out = (in + 2 * pad - kernel) / stride + 1` (PyTorch's formula).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    /// Zero point of the input; padded taps read this value (real 0).
    pub input_zero_point: i8,
}

impl Conv2dGeometry {
    /// `(out_h, out_w)`, or `None` if the kernel or stride is 0, the padded input is smaller than
    /// the kernel, or a size overflows.
    pub fn output_hw(&self) -> Option<(usize, usize)> {
        if self.kernel_h == 0 || self.kernel_w == 0 || self.stride_h == 0 || self.stride_w == 0 {
            return None;
        }
        let padded_h = self.pad_h.checked_mul(2)?.checked_add(self.in_h)?;
        let padded_w = self.pad_w.checked_mul(2)?.checked_add(self.in_w)?;
        let out_h = padded_h.checked_sub(self.kernel_h)? / self.stride_h + 1;
        let out_w = padded_w.checked_sub(self.kernel_w)? / self.stride_w + 1;
        Some((out_h, out_w))
    }
}

/// NHWC convolution with per-output-channel requantization:
///
/// `output[oy][ox][o] = requant(bias'[o] + Σ_{ky,kx,i} x(oy*sh + ky - pad_h, ox*sw + kx - pad_w, i) * W[o][ky][kx][i])`
///
/// where `x(y, x, i)` is `input[y][x][i]` inside the image and `input_zero_point` outside it.
///
/// Shapes: `input` `[in_h][in_w][in_c]`; `weights` int8 bytes `[out_c][kernel_h][kernel_w][in_c]`;
/// `stage` `out_c` channels; `output` `[out_h][out_w][out_c]` (see [`Conv2dGeometry::output_hw`]).
///
/// **Bias folding and padding.** TFLite's reference int8 conv computes
/// `bias[o] + Σ_{in-bounds taps} (x - zp_in) * w` and skips out-of-bounds taps. With
/// `bias'[o] = bias[o] - zp_in * Σ_{all taps} w` folded at export, reading padded taps as
/// `x = zp_in` gives exactly the same integer: the folded term cancels `zp_in * w` for the padded
/// taps. So this kernel is bit-identical to TFLite's reference.
pub fn conv2d(
    input: &[i8],
    g: &Conv2dGeometry,
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
) -> Result<(), Error> {
    let (_, out_w) = check_conv2d(input, g, weights, stage, output)?;
    conv2d_filters::<Int8>(input, g, weights, stage, output, out_w)
}

/// [`conv2d()`] with **packed int4 weights**: each output channel's OHWI filter
/// (`kernel_h · kernel_w · in_c` values) is one packed int4 row of
/// [`s4_row_bytes`]`(kernel_h · kernel_w · in_c)` bytes (see [`crate::format::WeightType`]).
/// Exactly [`conv2d()`] on the unpacked weights; the same shapes otherwise.
pub fn conv2d_s4(
    input: &[i8],
    g: &Conv2dGeometry,
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
) -> Result<(), Error> {
    let (_, out_w) = check_conv2d_as::<Int4>(input, g, weights, stage, output, msg!("conv2d_s4"))?;
    conv2d_filters::<Int4>(input, g, weights, stage, output, out_w)
}

/// How a convolution reads one output channel's filter, stored as one row of bytes: the two
/// weight types of [`crate::format::WeightType`]. A filter is `kernel_h` tap rows of `tap`
/// weights; tap row `ky` starts at weight `base = ky · tap`.
trait FilterRow {
    /// Bytes of a filter of `n` weights.
    fn row_bytes(n: usize) -> usize;
    /// `Σ w[base + i]`, `i < tap`: a tap row that lies wholly in the padding.
    fn sum(filt: &[u8], base: usize, tap: usize) -> i32;
    /// For the tap row at `base` whose weights `w0..w1` meet the input `x`
    /// (`x.len() == w1 - w0`): `(Σ x[i] · w[base + w0 + i], Σ w over the rest of the row)`.
    fn split_dot(x: &[i8], filt: &[u8], base: usize, w: (usize, usize), tap: usize) -> (i32, i32);
}

/// int8 filters: one byte per weight.
struct Int8;
/// Packed int4 filters (low nibble first).
struct Int4;

impl FilterRow for Int8 {
    fn row_bytes(n: usize) -> usize {
        n
    }
    #[inline(always)]
    fn sum(filt: &[u8], base: usize, tap: usize) -> i32 {
        sum_i8(filt.get(base..base + tap).unwrap_or(&[]))
    }
    #[inline(always)]
    fn split_dot(x: &[i8], filt: &[u8], base: usize, w: (usize, usize), tap: usize) -> (i32, i32) {
        // Exact-length slices: the loop LLVM compiles best on every target.
        let row = filt.get(base..base + tap).unwrap_or(&[]);
        let (left, rest) = row.split_at(w.0.min(row.len()));
        let (w_in, right) = rest.split_at((w.1 - w.0).min(rest.len()));
        (dot_i8(x, w_in), sum_i8(left).wrapping_add(sum_i8(right)))
    }
}

impl FilterRow for Int4 {
    fn row_bytes(n: usize) -> usize {
        s4_row_bytes(n)
    }
    #[inline(always)]
    fn sum(filt: &[u8], base: usize, tap: usize) -> i32 {
        sum_s4_at(filt, base, tap)
    }
    #[inline(always)]
    fn split_dot(x: &[i8], filt: &[u8], base: usize, w: (usize, usize), tap: usize) -> (i32, i32) {
        let padded =
            sum_s4_at(filt, base, w.0).wrapping_add(sum_s4_at(filt, base + w.1, tap - w.1));
        (dot_s4_at(x, filt, base + w.0), padded)
    }
}

/// The convolution loop of [`conv2d()`] and [`conv2d_s4`], after their shape checks.
fn conv2d_filters<W: FilterRow>(
    input: &[i8],
    g: &Conv2dGeometry,
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
    out_w: usize,
) -> Result<(), Error> {
    let err = || shape_error(msg!("conv2d"));
    let tap_row = g.kernel_w * g.in_c; // weights per (o, ky)
    let filter = g.kernel_h * tap_row; // weights per o
    let zp = g.input_zero_point as i32;
    let in_row = g.in_w * g.in_c; // input bytes per image row
    for (oy, out_row) in output.chunks_exact_mut(out_w * g.out_c).enumerate() {
        let top = oy * g.stride_h; // window top, in padded coordinates
        for (ox, out_px) in out_row.chunks_exact_mut(g.out_c).enumerate() {
            let left = ox * g.stride_w; // window left, in padded coordinates
                                        // Taps kx in [kx0, kx1) fall inside the image: pad_w <= left + kx < pad_w + in_w.
            let kx0 = g.pad_w.saturating_sub(left).min(g.kernel_w);
            let kx1 = (g.pad_w + g.in_w)
                .saturating_sub(left)
                .min(g.kernel_w)
                .max(kx0);
            let ix0 = (left + kx0).saturating_sub(g.pad_w);
            let (w0, w1) = (kx0 * g.in_c, kx1 * g.in_c); // in-bounds part of a weight row
            for ((y, filt), ch) in out_px
                .iter_mut()
                .zip(weights.chunks_exact(W::row_bytes(filter)))
                .zip(stage.channels())
            {
                let mut acc = ch.bias;
                for ky in 0..g.kernel_h {
                    let base = ky * tap_row; // the (o, ky) tap row within the filter
                    let py = top + ky;
                    if py < g.pad_h || py >= g.pad_h + g.in_h {
                        // Whole row of padded taps: each reads zp_in.
                        acc = acc.wrapping_add(zp.wrapping_mul(W::sum(filt, base, tap_row)));
                        continue;
                    }
                    let start = (py - g.pad_h) * in_row + ix0 * g.in_c;
                    let x = input.get(start..start + (w1 - w0)).ok_or_else(err)?;
                    let (dot, padded) = W::split_dot(x, filt, base, (w0, w1), tap_row);
                    acc = acc.wrapping_add(dot).wrapping_add(zp.wrapping_mul(padded));
                }
                *y = stage.requantize(acc, ch);
            }
        }
    }
    Ok(())
}

/// The shape check shared by every implementation of [`conv2d`]; returns `(out_h, out_w)`.
pub(crate) fn check_conv2d(
    input: &[i8],
    g: &Conv2dGeometry,
    weights: &[u8],
    stage: &OutputStage,
    output: &[i8],
) -> Result<(usize, usize), Error> {
    check_conv2d_as::<Int8>(input, g, weights, stage, output, msg!("conv2d"))
}

/// [`check_conv2d`] for filters stored as `W`, reporting `kernel` in its error.
fn check_conv2d_as<W: FilterRow>(
    input: &[i8],
    g: &Conv2dGeometry,
    weights: &[u8],
    stage: &OutputStage,
    output: &[i8],
    kernel: &'static str,
) -> Result<(usize, usize), Error> {
    let err = || shape_error(kernel);
    let (out_h, out_w) = g.output_hw().ok_or_else(err)?;
    let in_len = g
        .in_h
        .checked_mul(g.in_w)
        .and_then(|n| n.checked_mul(g.in_c));
    let out_len = out_h
        .checked_mul(out_w)
        .and_then(|n| n.checked_mul(g.out_c));
    let tap_row = g.kernel_w.checked_mul(g.in_c).ok_or_else(err)?; // weights per (o, ky)
    let filter = g.kernel_h.checked_mul(tap_row).ok_or_else(err)?; // weights per o
    if g.in_c == 0
        || g.out_c == 0
        || in_len != Some(input.len())
        || out_len != Some(output.len())
        || g.out_c.checked_mul(W::row_bytes(filter)) != Some(weights.len())
        || !stage.fits(g.out_c)
    {
        return Err(err());
    }
    Ok((out_h, out_w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::pack_s4_row;
    use crate::rng::Rng;

    /// `conv2d_s4` on packed filters equals `conv2d` on the same values as int8, over random
    /// geometries (odd filter lengths, so tap rows start mid-byte; padding; strides).
    #[test]
    fn int4_conv_equals_int8_conv_on_unpacked_weights() {
        let mut rng = Rng::new(11);
        let mut x = [0i8; 8 * 8 * 3];
        let mut w4 = [0i8; 5 * 3 * 3 * 3];
        let mut w8 = [0u8; 5 * 3 * 3 * 3];
        let mut packed = [0u8; 5 * 14];
        let mut params = [0u8; 3 * 4 * 5];
        let (mut y4, mut y8) = ([0i8; 8 * 8 * 5], [0i8; 8 * 8 * 5]);
        for case in 0..200 {
            let u = |rng: &mut Rng, n: u32| 1 + rng.below(n) as usize;
            let (kh, kw) = (u(&mut rng, 3), u(&mut rng, 3));
            let g = Conv2dGeometry {
                in_h: u(&mut rng, 8).max(kh),
                in_w: u(&mut rng, 8).max(kw),
                in_c: u(&mut rng, 3),
                out_c: u(&mut rng, 5),
                kernel_h: kh,
                kernel_w: kw,
                stride_h: u(&mut rng, 2),
                stride_w: u(&mut rng, 2),
                pad_h: rng.below(kh as u32) as usize,
                pad_w: rng.below(kw as u32) as usize,
                input_zero_point: rng.next_u32() as i8,
            };
            let (oh, ow) = g.output_hw().unwrap();
            let filter = kh * kw * g.in_c;
            let n_in = g.in_h * g.in_w * g.in_c;
            let n_out = oh * ow * g.out_c;
            for v in &mut x[..n_in] {
                *v = rng.next_u32() as i8;
            }
            for (v, b) in w4.iter_mut().zip(w8.iter_mut()).take(g.out_c * filter) {
                *v = if case % 7 == 0 {
                    -8
                } else {
                    (rng.below(16) as i32 - 8) as i8
                };
                *b = *v as u8;
            }
            let rb = s4_row_bytes(filter);
            for o in 0..g.out_c {
                pack_s4_row(
                    &w4[o * filter..(o + 1) * filter],
                    &mut packed[o * rb..(o + 1) * rb],
                )
                .unwrap();
            }
            for o in 0..g.out_c {
                let m = (1u32 << 30) + rng.below(1 << 30);
                let fields = [rng.next_u32() >> 8, m, (-(rng.below(10) as i32)) as u32];
                for (f, v) in fields.into_iter().enumerate() {
                    params[20 * f + 4 * o..][..4].copy_from_slice(&v.to_le_bytes());
                }
            }
            let c = 4 * g.out_c;
            let stage = OutputStage {
                bias: &params[..c],
                multipliers: &params[20..20 + c],
                shifts: &params[40..40 + c],
                zero_point: rng.next_u32() as i8,
                act_min: -128,
                act_max: 127,
            };
            conv2d_s4(
                &x[..n_in],
                &g,
                &packed[..g.out_c * rb],
                &stage,
                &mut y4[..n_out],
            )
            .unwrap();
            conv2d(
                &x[..n_in],
                &g,
                &w8[..g.out_c * filter],
                &stage,
                &mut y8[..n_out],
            )
            .unwrap();
            assert_eq!(y4[..n_out], y8[..n_out], "case {case}: {g:?}");
        }
        // Shapes: the int8 length is not an int4 length.
        let g = Conv2dGeometry {
            in_h: 2,
            in_w: 2,
            in_c: 1,
            out_c: 1,
            kernel_h: 1,
            kernel_w: 3,
            stride_h: 1,
            stride_w: 1,
            pad_h: 0,
            pad_w: 1,
            input_zero_point: 0,
        };
        let stage = OutputStage {
            bias: &[0; 4],
            multipliers: &[0; 4],
            shifts: &[0; 4],
            zero_point: 0,
            act_min: -128,
            act_max: 127,
        };
        let err = Err(Error::KernelShape {
            kernel: msg!("conv2d_s4"),
        });
        assert_eq!(conv2d_s4(&[0; 4], &g, &[0; 3], &stage, &mut [0; 4]), err);
        assert_eq!(conv2d_s4(&[0; 4], &g, &[0; 2], &stage, &mut [0; 4]), Ok(()));
    }
}
