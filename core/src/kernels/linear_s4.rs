//! Fully connected layer with **int4 weights** (int8 activations): the portable reference.
//!
//! # Packed int4 weights
//!
//! Signed 4-bit weights in `-8..=7`, symmetric (zero point 0), two per byte, **low nibble
//! first**: weight `2j` of a row is bits 0–3 of the row's byte `j`, weight `2j + 1` bits 4–7,
//! each a two's-complement nibble. A row of `n` weights takes `n.div_ceil(2)` bytes and starts on
//! a byte boundary; with `n` odd the last byte's high nibble is padding (ignored here; the model
//! loader requires it to be 0). `[out][in]` weights are `out · in.div_ceil(2)` bytes.
//!
//! The kernels compute exactly what [`crate::kernels::linear()`] and
//! [`crate::kernels::matvec_i32`] compute on the unpacked int8 weights (same accumulator, same
//! output stage), so an int4 layer is an int8 layer whose weights happen to lie in `-8..=7`.

use super::{shape_error, OutputStage};
use crate::Error;

/// Bytes of one packed int4 row of `n` weights.
pub const fn s4_row_bytes(n: usize) -> usize {
    n.div_ceil(2)
}

/// Weight `i` of a packed int4 row (see the [module documentation](self)); `row` must hold
/// `i / 2 + 1` bytes.
#[inline(always)]
pub fn s4_weight(row: &[u8], i: usize) -> i8 {
    let b = row[i / 2];
    let nibble = if i.is_multiple_of(2) {
        b << 4
    } else {
        b & 0xF0
    };
    (nibble as i8) >> 4
}

/// Packs int4 `values` (each in `-8..=7`; only the low 4 bits of each are kept) into one row of
/// [`s4_row_bytes`]`(values.len())` bytes, low nibble first, the padding nibble of an odd-length
/// row 0 (the format's only packing, see [`crate::format::WeightType`]).
///
/// [`Error::KernelShape`] if `out` is not exactly that long.
pub fn pack_s4_row(values: &[i8], out: &mut [u8]) -> Result<(), Error> {
    if out.len() != s4_row_bytes(values.len()) {
        return Err(shape_error(msg!("pack_s4_row")));
    }
    let pairs = values.chunks(2);
    for (b, pair) in out.iter_mut().zip(pairs) {
        let lo = pair.first().map_or(0, |&v| v as u8 & 0x0F);
        let hi = pair.get(1).map_or(0, |&v| v as u8 & 0x0F);
        *b = lo | (hi << 4);
    }
    Ok(())
}

/// `Σ x[i] * w[start + i]` for `i < x.len()`, the weights read from a packed int4 row at any
/// nibble offset `start` (a convolution's in-bounds taps start mid-filter); `0` for the terms
/// past the row's end.
#[inline]
pub(crate) fn dot_s4_at(x: &[i8], row: &[u8], start: usize) -> i32 {
    if start.is_multiple_of(2) {
        return dot_s4(x, row.get(start / 2..).unwrap_or(&[]));
    }
    // Odd start: the first weight is the high nibble of byte `start / 2`, then whole bytes.
    let Some((&x0, rest)) = x.split_first() else {
        return 0;
    };
    let Some(&b) = row.get(start / 2) else {
        return 0;
    };
    let first = x0 as i32 * ((b & 0xF0) as i8 >> 4) as i32;
    first.wrapping_add(dot_s4(rest, row.get(start / 2 + 1..).unwrap_or(&[])))
}

/// `Σ w[start + i]` for `i < len` of a packed int4 row (terms past its end count 0).
#[inline]
pub(crate) fn sum_s4_at(row: &[u8], start: usize, len: usize) -> i32 {
    (start..start.saturating_add(len))
        .take_while(|&i| i / 2 < row.len())
        .fold(0i32, |acc, i| acc.wrapping_add(s4_weight(row, i) as i32))
}

/// `output[o] = requant(bias'[o] + Σ_i input[i] * w[o][i])` for every output `o`, with int4
/// weights.
///
/// Shapes (`in = input.len()`, `out = output.len()`):
/// * `input`: int8 `[in]`, `in >= 1`;
/// * `weights`: packed int4 `[out][in]`, `out · in.div_ceil(2)` bytes (see the module docs);
/// * `stage`: `out` channels (bias with the input zero point folded in, see [`OutputStage`]);
/// * `output`: int8 `[out]`.
///
/// [`Error::KernelShape`] on any other length.
pub fn linear_s4(
    input: &[i8],
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
) -> Result<(), Error> {
    check_linear_s4(input, weights, stage, output)?;
    let row_bytes = s4_row_bytes(input.len());
    for ((y, row), ch) in output
        .iter_mut()
        .zip(weights.chunks_exact(row_bytes))
        .zip(stage.channels())
    {
        let acc = ch.bias.wrapping_add(dot_s4(input, row));
        *y = stage.requantize(acc, ch);
    }
    Ok(())
}

/// The accumulators alone, `output[o] = Σ_i input[i] * w[o][i]` (wrapping int32), int4 weights:
/// the int4 twin of [`crate::kernels::matvec_i32`] (e.g. the GPT's projections, rescaled in
/// floating point by the caller).
///
/// Shapes: `input` int8 `[in]`, `in >= 1`; `weights` packed int4 `[out][in]`
/// (`out · in.div_ceil(2)` bytes); `output` int32 `[out]`. [`Error::KernelShape`] otherwise.
pub fn matvec_i32_s4(input: &[i8], weights: &[u8], output: &mut [i32]) -> Result<(), Error> {
    check_matvec_i32_s4(input, weights, output)?;
    let row_bytes = s4_row_bytes(input.len());
    for (y, row) in output.iter_mut().zip(weights.chunks_exact(row_bytes)) {
        *y = dot_s4(input, row);
    }
    Ok(())
}

/// `Σ x[i] * w[i]` of an int8 vector and one packed int4 row (wrapping int32), over
/// `min(x.len(), 2 · row.len())` elements.
#[inline]
pub fn dot_s4(x: &[i8], row: &[u8]) -> i32 {
    let pairs = x.chunks_exact(2);
    let odd = pairs.remainder().first().copied();
    let mut acc = pairs.zip(row).fold(0i32, |acc, (x, &b)| {
        let lo = ((b << 4) as i8 >> 4) as i32;
        let hi = ((b & 0xF0) as i8 >> 4) as i32;
        acc.wrapping_add(x[0] as i32 * lo)
            .wrapping_add(x[1] as i32 * hi)
    });
    if let (Some(x), Some(&b)) = (odd, row.get(x.len() / 2)) {
        acc = acc.wrapping_add(x as i32 * ((b << 4) as i8 >> 4) as i32);
    }
    acc
}

/// `out · in.div_ceil(2)`, `None` on overflow or `in == 0`.
fn s4_matrix_bytes(n_in: usize, n_out: usize) -> Option<usize> {
    (n_in > 0).then_some(())?;
    n_out.checked_mul(s4_row_bytes(n_in))
}

/// The shape check shared by every implementation of [`linear_s4`].
pub(crate) fn check_linear_s4(
    input: &[i8],
    weights: &[u8],
    stage: &OutputStage,
    output: &[i8],
) -> Result<(), Error> {
    if s4_matrix_bytes(input.len(), output.len()) != Some(weights.len())
        || !stage.fits(output.len())
    {
        return Err(shape_error(msg!("linear_s4")));
    }
    Ok(())
}

/// The shape check shared by every implementation of [`matvec_i32_s4`].
pub(crate) fn check_matvec_i32_s4(
    input: &[i8],
    weights: &[u8],
    output: &[i32],
) -> Result<(), Error> {
    if s4_matrix_bytes(input.len(), output.len()) != Some(weights.len()) {
        return Err(shape_error(msg!("matvec_i32_s4")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Packs int4 values (each in `-8..=7`) into rows of `n`, low nibble first, padding 0.
    fn pack(w: &[i8], n: usize) -> ([u8; 64 * 40], usize) {
        let mut out = [0u8; 64 * 40];
        let rb = s4_row_bytes(n);
        let rows = w.len() / n;
        for o in 0..rows {
            for i in 0..n {
                let nib = (w[o * n + i] as u8) & 0x0F;
                out[o * rb + i / 2] |= if i.is_multiple_of(2) { nib } else { nib << 4 };
            }
        }
        (out, rows * rb)
    }

    #[test]
    fn pack_s4_row_is_the_inverse_of_s4_weight() {
        let mut rng = Rng::new(7);
        for n in 1..40 {
            let v: [i8; 40] = core::array::from_fn(|_| (rng.below(16) as i32 - 8) as i8);
            let mut row = [0xAAu8; 20];
            pack_s4_row(&v[..n], &mut row[..s4_row_bytes(n)]).unwrap();
            let (reference, _) = pack(&v[..n], n);
            assert_eq!(
                row[..s4_row_bytes(n)],
                reference[..s4_row_bytes(n)],
                "n {n}"
            );
            for (i, &want) in v[..n].iter().enumerate() {
                assert_eq!(s4_weight(&row, i), want);
            }
            // Every offset and length against the unpacked definition.
            for start in 0..n {
                let len = n - start;
                let x: [i8; 40] = core::array::from_fn(|_| rng.next_u32() as i8);
                let want: i32 = (0..len).map(|i| x[i] as i32 * v[start + i] as i32).sum();
                assert_eq!(
                    dot_s4_at(&x[..len], &row, start),
                    want,
                    "n {n} start {start}"
                );
                let sum: i32 = v[start..n].iter().map(|&w| w as i32).sum();
                assert_eq!(sum_s4_at(&row, start, len), sum);
            }
        }
        assert_eq!(
            pack_s4_row(&[1, 2, 3], &mut [0; 1]),
            Err(Error::KernelShape {
                kernel: msg!("pack_s4_row")
            })
        );
    }

    #[test]
    fn nibbles_are_low_first_and_signed() {
        // 0x8F: low nibble 0xF = -1, high nibble 0x8 = -8; 0x70: 0, 7.
        let row = [0x8F, 0x70];
        let got: [i8; 4] = core::array::from_fn(|i| s4_weight(&row, i));
        assert_eq!(got, [-1, -8, 0, 7]);
        assert_eq!(dot_s4(&[1, 2, 3, 4], &row), -1 - 16 + 28);
        // Odd length: the padding nibble is not used.
        assert_eq!(dot_s4(&[1, 2, 3], &row), -1 - 16);
        assert_eq!(dot_s4(&[5], &[0xF3]), 15);
    }

    #[test]
    fn int4_kernels_equal_the_int8_kernels_on_unpacked_weights() {
        let mut rng = Rng::new(44);
        let mut w = [0i8; 64 * 40];
        let mut w8 = [0u8; 64 * 40];
        let mut x = [0i8; 64];
        let (mut y4, mut y8) = ([0i32; 40], [0i32; 40]);
        let (mut q4, mut q8) = ([0i8; 40], [0i8; 40]);
        let mut params = [0u8; 3 * 4 * 40];
        for case in 0..300 {
            let n = 1 + rng.below(64) as usize;
            let out = rng.below(40) as usize;
            for v in w[..n * out].iter_mut() {
                *v = match case % 5 {
                    0 => -8,
                    1 => 7,
                    _ => (rng.below(16) as i32 - 8) as i8,
                };
            }
            for v in x[..n].iter_mut() {
                *v = if case % 5 == 0 {
                    -128
                } else {
                    rng.next_u32() as i8
                };
            }
            for (b, &v) in w8.iter_mut().zip(&w[..n * out]) {
                *b = v as u8;
            }
            let (packed, len) = pack(&w[..n * out], n);
            matvec_i32_s4(&x[..n], &packed[..len], &mut y4[..out]).unwrap();
            crate::kernels::portable::matvec_i32(&x[..n], &w8[..n * out], &mut y8[..out]).unwrap();
            assert_eq!(y4[..out], y8[..out], "case {case}: n {n} out {out}");

            // Per channel: any bias, a multiplier in [2^30, 2^31), a shift in -12..=0.
            for o in 0..40 {
                let m = (1u32 << 30) + rng.below(1 << 30);
                let fields = [rng.next_u32(), m, (-(rng.below(13) as i32)) as u32];
                for (f, v) in fields.into_iter().enumerate() {
                    params[160 * f + 4 * o..][..4].copy_from_slice(&v.to_le_bytes());
                }
            }
            let stage = OutputStage {
                bias: &params[..4 * out],
                multipliers: &params[160..160 + 4 * out],
                shifts: &params[320..320 + 4 * out],
                zero_point: rng.next_u32() as i8,
                act_min: if case % 2 == 0 { -128 } else { -3 },
                act_max: 127,
            };
            linear_s4(&x[..n], &packed[..len], &stage, &mut q4[..out]).unwrap();
            crate::kernels::portable::linear(&x[..n], &w8[..n * out], &stage, &mut q8[..out])
                .unwrap();
            assert_eq!(q4[..out], q8[..out], "case {case}");
        }
    }

    #[test]
    fn shapes_are_checked() {
        let stage = OutputStage {
            bias: &[0; 8],
            multipliers: &[0; 8],
            shifts: &[0; 8],
            zero_point: 0,
            act_min: -128,
            act_max: 127,
        };
        let err = |k| Err(Error::KernelShape { kernel: k });
        // 3 inputs: 2 bytes per row; 2 rows = 4 bytes.
        assert_eq!(linear_s4(&[1, 2, 3], &[0; 4], &stage, &mut [0; 2]), Ok(()));
        assert_eq!(
            linear_s4(&[1, 2, 3], &[0; 3], &stage, &mut [0; 2]),
            err(msg!("linear_s4"))
        );
        assert_eq!(
            linear_s4(&[1, 2, 3], &[0; 6], &stage, &mut [0; 2]),
            err(msg!("linear_s4"))
        );
        assert_eq!(
            linear_s4(&[], &[], &stage, &mut [0; 2]),
            err(msg!("linear_s4"))
        );
        assert_eq!(
            linear_s4(&[1, 2], &[0; 3], &stage, &mut [0; 3]),
            err(msg!("linear_s4"))
        );
        assert_eq!(matvec_i32_s4(&[1, 2, 3, 4], &[0; 4], &mut [0; 2]), Ok(()));
        assert_eq!(
            matvec_i32_s4(&[1, 2, 3, 4], &[0; 5], &mut [0; 2]),
            err(msg!("matvec_i32_s4"))
        );
        assert_eq!(matvec_i32_s4(&[], &[], &mut []), err(msg!("matvec_i32_s4")));
        assert_eq!(matvec_i32_s4(&[1], &[], &mut []), Ok(()));
    }
}
