//! Max pooling: geometry and the portable reference.

use super::shape_error;
use crate::Error;

/// Geometry of a max-pool: input `in_h x in_w x channels` (NHWC), windows of
/// `kernel_h x kernel_w` every `stride_h`/`stride_w` pixels, no padding, output
/// `out_h x out_w x channels` with `out = (in - kernel) / stride + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
}

impl Pool2dGeometry {
    /// `(out_h, out_w)`, or `None` if a dimension is 0 or the kernel is larger than the input.
    pub fn output_hw(&self) -> Option<(usize, usize)> {
        if self.kernel_h == 0 || self.kernel_w == 0 || self.stride_h == 0 || self.stride_w == 0 {
            return None;
        }
        let out_h = self.in_h.checked_sub(self.kernel_h)? / self.stride_h + 1;
        let out_w = self.in_w.checked_sub(self.kernel_w)? / self.stride_w + 1;
        Some((out_h, out_w))
    }
}

/// NHWC max pooling: `output[oy][ox][c] = max over the window of input[iy][ix][c]`.
///
/// Shapes: `input` `[in_h][in_w][channels]`, `output` `[out_h][out_w][channels]` (see
/// [`Pool2dGeometry::output_hw`]). The output keeps the input's quantization, so no
/// requantization happens (TFLite's int8 `MaxPool` with no fused activation).
pub fn max_pool2d(input: &[i8], g: &Pool2dGeometry, output: &mut [i8]) -> Result<(), Error> {
    let err = || shape_error(msg!("max_pool2d"));
    let (_, out_w) = check_max_pool2d(input, g, output)?;
    let c = g.channels;
    let row = g.in_w * c; // input bytes per image row
    for (oy, out_row) in output.chunks_exact_mut(out_w * c).enumerate() {
        for (ox, out_px) in out_row.chunks_exact_mut(c).enumerate() {
            out_px.fill(i8::MIN);
            // (oy * stride + ky) < in_h and (ox * stride + kx) < in_w by `output_hw`.
            let (y0, x0) = (oy * g.stride_h, ox * g.stride_w);
            for iy in y0..y0 + g.kernel_h {
                let start = iy * row + x0 * c;
                let window = input.get(start..start + g.kernel_w * c).ok_or_else(err)?;
                for px in window.chunks_exact(c) {
                    for (o, &x) in out_px.iter_mut().zip(px) {
                        *o = (*o).max(x);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The shape check shared by every implementation of [`max_pool2d`]; returns `(out_h, out_w)`.
pub(crate) fn check_max_pool2d(
    input: &[i8],
    g: &Pool2dGeometry,
    output: &[i8],
) -> Result<(usize, usize), Error> {
    let err = || shape_error(msg!("max_pool2d"));
    let (out_h, out_w) = g.output_hw().ok_or_else(err)?;
    let in_len = g
        .in_h
        .checked_mul(g.in_w)
        .and_then(|n| n.checked_mul(g.channels));
    let out_len = out_h
        .checked_mul(out_w)
        .and_then(|n| n.checked_mul(g.channels));
    if g.channels == 0 || in_len != Some(input.len()) || out_len != Some(output.len()) {
        return Err(err());
    }
    Ok((out_h, out_w))
}
