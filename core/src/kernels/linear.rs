//! Fully connected int8 layer: the portable reference implementation.

use super::{dot_i8, shape_error, OutputStage};
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
