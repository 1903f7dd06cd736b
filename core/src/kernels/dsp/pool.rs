//! Max pooling and ReLU on four int8 lanes per word (`SSUB8` + `SEL`: a byte-wise signed maximum
//! in two instructions). Activations may sit at any alignment: words are read and written with
//! plain (possibly unaligned) `LDR`/`STR`.

use super::max_i8x4;
use crate::kernels::pool::check_max_pool2d;
use crate::kernels::{portable, Pool2dGeometry};
use crate::Error;

#[inline(always)]
fn load(x: &[i8]) -> u32 {
    u32::from_le_bytes([x[0] as u8, x[1] as u8, x[2] as u8, x[3] as u8])
}

#[inline(always)]
fn store(y: &mut [i8], v: u32) {
    let b = v.to_le_bytes();
    y[0] = b[0] as i8;
    y[1] = b[1] as i8;
    y[2] = b[2] as i8;
    y[3] = b[3] as i8;
}

/// [`crate::kernels::max_pool2d`] for Armv7E-M: channels in groups of 4 (a multiple of 4
/// channels; otherwise the portable kernel).
pub fn max_pool2d(input: &[i8], g: &Pool2dGeometry, output: &mut [i8]) -> Result<(), Error> {
    let (_, out_w) = check_max_pool2d(input, g, output)?;
    let c = g.channels;
    if !c.is_multiple_of(4) {
        return portable::max_pool2d(input, g, output);
    }
    let row = g.in_w * c;
    if g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 {
        // The common case: two input rows of 2·out_w pixels make one output row.
        for (out_row, rows) in output
            .chunks_exact_mut(out_w * c)
            .zip(input.chunks_exact(2 * row))
        {
            let (a, b) = rows.split_at(row);
            for ((y, a), b) in out_row
                .chunks_exact_mut(c)
                .zip(a.chunks_exact(2 * c))
                .zip(b.chunks_exact(2 * c))
            {
                let (a0, a1) = a.split_at(c);
                let (b0, b1) = b.split_at(c);
                for ((((y, a0), a1), b0), b1) in y
                    .chunks_exact_mut(4)
                    .zip(a0.chunks_exact(4))
                    .zip(a1.chunks_exact(4))
                    .zip(b0.chunks_exact(4))
                    .zip(b1.chunks_exact(4))
                {
                    let m = max_i8x4(max_i8x4(load(a0), load(a1)), max_i8x4(load(b0), load(b1)));
                    store(y, m);
                }
            }
        }
        return Ok(());
    }
    for (oy, out_row) in output.chunks_exact_mut(out_w * c).enumerate() {
        for (ox, y) in out_row.chunks_exact_mut(c).enumerate() {
            let (y0, x0) = (oy * g.stride_h, ox * g.stride_w);
            for (c4, y) in y.chunks_exact_mut(4).enumerate() {
                let mut m = 0x8080_8080; // i8::MIN in every lane
                for iy in y0..y0 + g.kernel_h {
                    let start = iy * row + x0 * c + 4 * c4;
                    // (y0 + ky) < in_h and (x0 + kx) < in_w by `output_hw`.
                    let Some(win) = input.get(start..start + (g.kernel_w - 1) * c + 4) else {
                        return portable::max_pool2d(input, g, output);
                    };
                    for px in win.chunks(c) {
                        m = max_i8x4(m, load(px));
                    }
                }
                store(y, m);
            }
        }
    }
    Ok(())
}

/// [`crate::kernels::relu`] for Armv7E-M: 4 bytes at a time.
pub fn relu(x: &mut [i8], zero_point: i8) {
    let z = u32::from_ne_bytes([zero_point as u8; 4]);
    let mut words = x.chunks_exact_mut(4);
    for w in &mut words {
        store(w, max_i8x4(load(w), z));
    }
    for v in words.into_remainder() {
        *v = (*v).max(zero_point);
    }
}
