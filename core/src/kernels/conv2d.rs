//! 2-D convolution, NHWC activations, OHWI weights: geometry and the portable reference.

use super::linear::dot_i8;
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
    let err = || shape_error("conv2d");
    let (_, out_w) = check_conv2d(input, g, weights, stage, output)?;
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
                .zip(weights.chunks_exact(filter))
                .zip(stage.channels())
            {
                let mut acc = ch.bias;
                for (ky, w_row) in filt.chunks_exact(tap_row).enumerate() {
                    let py = top + ky;
                    if py < g.pad_h || py >= g.pad_h + g.in_h {
                        // Whole row of padded taps: each reads zp_in.
                        acc = acc.wrapping_add(zp.wrapping_mul(sum_i8(w_row)));
                        continue;
                    }
                    let (w_pad_left, w_rest) = w_row.split_at_checked(w0).ok_or_else(err)?;
                    let (w_in, w_pad_right) = w_rest.split_at_checked(w1 - w0).ok_or_else(err)?;
                    let start = (py - g.pad_h) * in_row + ix0 * g.in_c;
                    let x = input.get(start..start + w_in.len()).ok_or_else(err)?;
                    let padded = sum_i8(w_pad_left).wrapping_add(sum_i8(w_pad_right));
                    acc = acc
                        .wrapping_add(dot_i8(x, w_in))
                        .wrapping_add(zp.wrapping_mul(padded));
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
    let err = || shape_error("conv2d");
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
        || g.out_c.checked_mul(filter) != Some(weights.len())
        || !stage.fits(g.out_c)
    {
        return Err(err());
    }
    Ok((out_h, out_w))
}
