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

/// The input element of [`matvec_i32_strided`]: `i8` (activations) or `u8` (e.g. attention
/// probabilities `0..=255`). Sealed: exactly these two.
pub trait StridedInput: Copy + Into<i32> + sealed::Sealed {}

impl StridedInput for i8 {}
impl StridedInput for u8 {}

mod sealed {
    /// On Armv7E-M also how the DSP loop extends a word of inputs.
    #[cfg(aka_dsp)]
    pub trait Sealed: crate::kernels::dsp::FcInput {}
    #[cfg(not(aka_dsp))]
    pub trait Sealed {}
    impl Sealed for i8 {}
    impl Sealed for u8 {}
}

/// [`matvec_i32`] over rows that are `stride` bytes apart, with int8 or u8 inputs:
/// `output[o] = Σ_i input[i] * weights[o·stride + i]` (int8/u8 × int8 → wrapping int32), e.g.
/// the first `n` columns of a wider matrix.
///
/// Shapes: `input` `[n]`, `n >= 1`; `stride >= n`; `weights` at least `(out − 1)·stride + n`
/// bytes (extra bytes are ignored); `output` `[out]`. Errors ([`Error::KernelShape`]) otherwise.
pub fn matvec_i32_strided<T: StridedInput>(
    input: &[T],
    weights: &[u8],
    stride: usize,
    output: &mut [i32],
) -> Result<(), Error> {
    check_matvec_i32_strided(input.len(), weights, stride, output)?;
    strided_rows(input, weights, stride, output);
    Ok(())
}

/// [`matvec_i32_strided`] by the name it had when it took only u8 inputs.
pub use matvec_i32_strided as matvec_i32_strided_u8;

/// The rows of [`matvec_i32_strided`] (int8 or u8 inputs), shapes
/// already checked; a row the weights do not cover (impossible after the check) gives 0. A
/// zipped fold, which vectorizes on the host; also the DSP kernel's fallback.
pub(crate) fn strided_rows<T: Copy + Into<i32>>(
    input: &[T],
    weights: &[u8],
    stride: usize,
    output: &mut [i32],
) {
    let n = input.len();
    for (o, y) in output.iter_mut().enumerate() {
        let row = weights.get(o * stride..o * stride + n).unwrap_or(&[]);
        *y = input.iter().zip(row).fold(0i32, |acc, (&x, &w)| {
            acc.wrapping_add(x.into() * (w as i8) as i32)
        });
    }
}

/// The shape check shared by every implementation of [`matvec_i32_strided`] (`n` inputs).
pub(crate) fn check_matvec_i32_strided(
    n: usize,
    weights: &[u8],
    stride: usize,
    output: &[i32],
) -> Result<(), Error> {
    let n_out = output.len();
    let need = match n_out {
        0 => Some(0),
        _ => (n_out - 1)
            .checked_mul(stride)
            .and_then(|v| v.checked_add(n)),
    };
    if n == 0 || stride < n || need.is_none_or(|need| weights.len() < need) {
        return Err(shape_error(msg!("matvec_i32_strided")));
    }
    Ok(())
}

/// The shape check shared by every implementation of [`matvec_i32`].
pub(crate) fn check_matvec_i32(input: &[i8], weights: &[u8], output: &[i32]) -> Result<(), Error> {
    let (n_in, n_out) = (input.len(), output.len());
    if n_in == 0 || n_out.checked_mul(n_in) != Some(weights.len()) {
        return Err(shape_error(msg!("matvec_i32")));
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
        return Err(shape_error(msg!("linear")));
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

    /// `cases` random shapes of [`matvec_i32_strided`] (weights with 0 to 2 extra bytes) with
    /// inputs from `input(rng, case)`, against a naive sum; and its two shape errors.
    fn check_strided<T: StridedInput>(
        rng: &mut Rng,
        cases: u32,
        input: impl Fn(&mut Rng, u32) -> T,
    ) {
        let mut buf = [0u8; 20 * 24];
        let mut y = [0i32; 20];
        for case in 0..cases {
            let n = 1 + rng.below(20) as usize;
            let stride = n + rng.below(5) as usize;
            let n_out = rng.below(20) as usize;
            for v in buf.iter_mut() {
                *v = rng.next_u32() as u8;
            }
            let x: [T; 20] = core::array::from_fn(|_| input(rng, case));
            let x = &x[..n];
            let len = match n_out {
                0 => 0,
                _ => (n_out - 1) * stride + n,
            };
            let w = &buf[..len + rng.below(3) as usize];
            matvec_i32_strided(x, w, stride, &mut y[..n_out]).unwrap();
            for o in 0..n_out {
                let want: i64 = (0..n)
                    .map(|i| Into::<i32>::into(x[i]) as i64 * (buf[o * stride + i] as i8) as i64)
                    .sum();
                assert_eq!(y[o] as i64, want, "case {case} row {o}");
            }
            if n_out > 0 {
                let err = Err(shape_error(msg!("matvec_i32_strided")));
                assert_eq!(
                    matvec_i32_strided(x, &w[..len - 1], stride, &mut y[..n_out]),
                    err
                );
                assert_eq!(matvec_i32_strided(x, w, n - 1, &mut y[..n_out]), err);
            }
        }
    }

    #[test]
    fn matvec_i32_strided_reads_the_first_n_bytes_of_each_row() {
        let mut rng = Rng::new(6);
        check_strided(&mut rng, 300, |rng, _| rng.next_u32() as i8);
        // u8 inputs: the same rows, inputs read as 0..=255 (every fifth case all 255).
        check_strided(&mut rng, 200, |rng, case| match case % 5 {
            0 => 255u8,
            _ => rng.next_u32() as u8,
        });
        assert_eq!(
            matvec_i32_strided::<i8>(&[], &[0; 4], 1, &mut [0; 1]),
            Err(shape_error(msg!("matvec_i32_strided")))
        );
        assert_eq!(
            crate::kernels::i8_as_bytes(&[-128, -1, 0, 1, 127]),
            &[0x80, 0xFF, 0, 1, 0x7F]
        );
    }

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
            kernel: msg!("matvec_i32"),
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
