//! Fully connected int8 layer: the portable reference implementation.

use super::{shape_error, OutputStage};
use crate::Error;

/// `output[o] = requant(bias'[o] + Σ_i input[i] * weights[o][i])` for every output `o`.
///
/// Shapes (`in = input.len()`, `out = output.len()`):
/// * `input`: int8 `[in]`, `in >= 1`;
/// * `weights`: int8 bytes `[out][in]` row-major, `out * in` bytes;
/// * `stage`: `out` channels (bias with the input zero point folded in, see [`OutputStage`]);
/// * `output`: int8 `[out]`.
///
/// Bit-exact with TFLite's reference `FullyConnected` (per-channel) for int8 with weight zero
/// point 0, given `bias' = bias - zp_in * Σ_i w[o][i]`.
pub fn linear(
    input: &[i8],
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
) -> Result<(), Error> {
    check_linear(input, weights, stage, output)?;
    let n_in = input.len();
    for ((y, row), ch) in output
        .iter_mut()
        .zip(weights.chunks_exact(n_in))
        .zip(stage.channels())
    {
        let acc = ch.bias.wrapping_add(dot_i8(input, row));
        *y = stage.requantize(acc, ch);
    }
    Ok(())
}

/// The accumulators of a fully connected layer without bias or requantization:
/// `output[o] = Σ_i input[i] * weights[o][i]` (wrapping int32), for callers that rescale in
/// floating point (e.g. the GPT runtime's projections).
///
/// Shapes: `input` int8 `[in]`, `in >= 1`; `weights` int8 bytes `[out][in]` row-major; `output`
/// int32 `[out]`. Errors ([`Error::KernelShape`]) like [`linear`].
pub fn matvec_i32(input: &[i8], weights: &[u8], output: &mut [i32]) -> Result<(), Error> {
    check_matvec_i32(input, weights, output)?;
    let n_in = input.len();
    for (y, row) in output.iter_mut().zip(weights.chunks_exact(n_in)) {
        *y = dot_i8(input, row);
    }
    Ok(())
}

/// The shape check shared by every implementation of [`matvec_i32`].
pub(crate) fn check_matvec_i32(input: &[i8], weights: &[u8], output: &[i32]) -> Result<(), Error> {
    let (n_in, n_out) = (input.len(), output.len());
    if n_in == 0 || n_out.checked_mul(n_in) != Some(weights.len()) {
        return Err(shape_error("matvec_i32"));
    }
    Ok(())
}

/// The shape check shared by every implementation of [`linear`].
pub(crate) fn check_linear(
    input: &[i8],
    weights: &[u8],
    stage: &OutputStage,
    output: &[i8],
) -> Result<(), Error> {
    let (n_in, n_out) = (input.len(), output.len());
    if n_in == 0 || n_out.checked_mul(n_in) != Some(weights.len()) || !stage.fits(n_out) {
        return Err(shape_error("linear"));
    }
    Ok(())
}

/// `Σ x[i] * w[i]` over the common length, int8 × int8 (weights as bytes) → wrapping int32: the
/// portable reference of [`crate::kernels::dot_i8`], used by the portable kernels. A plain zipped
/// fold, which LLVM vectorizes on the host.
#[inline]
pub fn dot_i8(x: &[i8], w: &[u8]) -> i32 {
    x.iter().zip(w).fold(0i32, |acc, (&x, &w)| {
        acc.wrapping_add(x as i32 * (w as i8) as i32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn matvec_i32_is_the_sum_of_products() {
        let mut rng = Rng::new(5);
        let mut w = [0u8; 40 * 37];
        let mut x = [0i8; 40];
        let mut y = [0i32; 37];
        for case in 0..200 {
            let n_in = 1 + rng.below(40) as usize;
            let n_out = rng.below(38) as usize;
            for v in w[..n_in * n_out].iter_mut() {
                *v = if case % 7 == 0 {
                    0x80
                } else {
                    rng.next_u32() as u8
                };
            }
            for v in x[..n_in].iter_mut() {
                *v = if case % 7 == 0 {
                    -128
                } else {
                    rng.next_u32() as i8
                };
            }
            let (w, x, y) = (&w[..n_in * n_out], &x[..n_in], &mut y[..n_out]);
            matvec_i32(x, w, y).unwrap();
            for (o, &got) in y.iter().enumerate() {
                let want: i64 = (0..n_in)
                    .map(|i| x[i] as i64 * w[o * n_in + i] as i8 as i64)
                    .sum();
                assert_eq!(got as i64, want, "case {case} row {o}");
            }
        }
        let err = Err(Error::KernelShape {
            kernel: "matvec_i32",
        });
        assert_eq!(matvec_i32(&[], &[], &mut []), err);
        assert_eq!(matvec_i32(&[1, 2], &[0; 3], &mut [0; 2]), err);
        assert_eq!(matvec_i32(&[1, 2], &[], &mut []), Ok(()));
        // The entry point agrees (on the host it is this function).
        let mut a = [0i32; 2];
        crate::kernels::matvec_i32(&[1, -2, 3, 4], &[1, 2, 3, 4, 255, 254, 253, 252], &mut a)
            .unwrap();
        assert_eq!(a, [1 - 4 + 9 + 16, -1 + 4 - 9 - 16]);
    }
}
