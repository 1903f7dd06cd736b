//! Offset-binary int8 weights ([`crate::format::WeightType::Int8Offset`]): the one definition of
//! the byte order ([`to_offset_binary`]), the row constant ([`offset_row_const`]) and the exact
//! product ([`dot_i8_offset`], [`matvec_i32_offset`], the portable reference of the DSP kernel).
//!
//! A row stores weight `b_c` as `b_c ^ 0x80` (unsigned `b_c + 128`) at even `c` and as plain
//! int8 at odd `c`. Read as two signed halfwords, a weight word `[e0 b1 e2 b3]` is then
//! `(b0 + 128 + 256·b1, b2 + 128 + 256·b3)`, so the DSP kernel needs one `SXTB16` (for the odd
//! weights) and two `SMLAD` per word; its sums include `128·Σ_e x_e − 128·Σ_o b_o`, and the row
//! constant `128·Σ_o b_o` stored after the rows removes the second term (docs/RESULTS.md,
//! "Offset-binary weights"). The portable kernel decodes the bytes and ignores the constants:
//! the loader checks that each stored constant is [`offset_row_const`] of its row, so both give
//! the same exact sums.

use super::shape_error;
use crate::Error;

/// Converts a row between plain int8 and the offset-binary layout (the same operation both
/// ways: every even byte XOR 0x80). Rows of a multiple of 8 bytes keep the byte parity of the
/// whole matrix, so it can also be applied to all rows at once.
pub fn to_offset_binary(row: &mut [u8]) {
    for b in row.iter_mut().step_by(2) {
        *b ^= 0x80;
    }
}

/// Weight `c` of an offset-binary row (0 past the end).
pub fn offset_weight(row: &[u8], c: usize) -> i8 {
    match row.get(c) {
        None => 0,
        Some(&b) if c.is_multiple_of(2) => (b ^ 0x80) as i8,
        Some(&b) => b as i8,
    }
}

/// The row constant of an offset-binary row: `128 · Σ_{c odd} b_c` (the odd bytes are stored as
/// plain int8), with wrapping i32 arithmetic (it cannot wrap for rows of up to 2^17 bytes).
pub fn offset_row_const(row: &[u8]) -> i32 {
    let odd = row
        .iter()
        .skip(1)
        .step_by(2)
        .fold(0i32, |s, &b| s.wrapping_add(b as i8 as i32));
    odd.wrapping_mul(128)
}

/// `Σ x[c]·b_c` for an offset-binary `row` (the exact dot product of the original int8 weights;
/// wrapping i32, like every accumulator here). Lengths as in [`super::portable::dot_i8`]: the
/// shorter of the two. (Not inlined: one copy serves the kernel and the GPT's fallback.)
#[inline(never)]
pub fn dot_i8_offset(x: &[i8], row: &[u8]) -> i32 {
    x.chunks_exact(2)
        .zip(row.chunks_exact(2))
        .fold(0i32, |s, (x, w)| {
            let e = (x[0] as i32) * ((w[0] ^ 0x80) as i8 as i32);
            let o = (x[1] as i32) * (w[1] as i8 as i32);
            s.wrapping_add(e).wrapping_add(o)
        })
        .wrapping_add(match (x.len() % 2, row.len() % 2) {
            (1, 1) => {
                let (a, b) = (x[x.len() - 1], row[row.len() - 1]);
                (a as i32) * ((b ^ 0x80) as i8 as i32)
            }
            _ => 0,
        })
}

/// The shape check of every implementation of [`matvec_i32_offset`]: `n = input.len()` a
/// nonzero multiple of 8, `weights` = `output.len()` rows of `n` bytes, `consts` = one i32 LE
/// per row.
pub(crate) fn check_matvec_i32_offset(
    input: &[i8],
    weights: &[u8],
    consts: &[u8],
    output: &[i32],
) -> Result<(), Error> {
    let (n, n_out) = (input.len(), output.len());
    if n == 0
        || !n.is_multiple_of(8)
        || n_out.checked_mul(n) != Some(weights.len())
        || n_out.checked_mul(4) != Some(consts.len())
    {
        return Err(shape_error(msg!("matvec_i32_offset")));
    }
    Ok(())
}

/// `output[o] = Σ input·W[o]` (exact, wrapping i32) for `output.len()` offset-binary rows of
/// `n = input.len()` bytes (`n % 8 == 0`) and their row constants `consts` (i32 LE, one per
/// row). This portable reference decodes the weights and does not read `consts` (the DSP kernel
/// does; the loader checks them). [`Error::KernelShape`] on a shape mismatch.
pub fn matvec_i32_offset(
    input: &[i8],
    weights: &[u8],
    consts: &[u8],
    output: &mut [i32],
) -> Result<(), Error> {
    check_matvec_i32_offset(input, weights, consts, output)?;
    for (y, row) in output.iter_mut().zip(weights.chunks_exact(input.len())) {
        *y = dot_i8_offset(input, row);
    }
    Ok(())
}

/// The buffer of an [`OffsetInput`] (the DSP build pre-extends the input into it; here it holds
/// nothing).
#[cfg_attr(aka_dsp, allow(dead_code))]
#[derive(Default)]
pub struct OffsetBuf;

#[cfg_attr(aka_dsp, allow(dead_code))]
impl OffsetBuf {
    /// An unused buffer.
    #[inline(always)]
    pub const fn new() -> Self {
        Self
    }
}

/// One input vector for several [`matvec_i32_offset_pre`] calls (the DSP build pre-extends it
/// once; this portable one is the input alone).
#[cfg_attr(aka_dsp, allow(dead_code))]
pub struct OffsetInput<'x, 'b> {
    x: &'x [i8],
    _buf: &'b mut OffsetBuf,
}

#[cfg_attr(aka_dsp, allow(dead_code))]
impl<'x, 'b> OffsetInput<'x, 'b> {
    /// `x`.
    #[inline(always)]
    pub fn new(x: &'x [i8], buf: &'b mut OffsetBuf) -> Self {
        Self { x, _buf: buf }
    }

    /// The input vector.
    #[inline(always)]
    pub fn input(&self) -> &'x [i8] {
        self.x
    }
}

/// [`matvec_i32_offset`] of a prepared input (`x.input()`): the same results and shape errors.
#[cfg_attr(aka_dsp, allow(dead_code))]
pub fn matvec_i32_offset_pre(
    x: &mut OffsetInput<'_, '_>,
    weights: &[u8],
    consts: &[u8],
    output: &mut [i32],
) -> Result<(), Error> {
    matvec_i32_offset(x.input(), weights, consts, output)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::kernels::portable;
    use crate::rng::Rng;

    /// Offset-binary copy of `w` (rows of `n`) and its row constants.
    fn encode(w: &[u8], n: usize) -> (Vec<u8>, Vec<u8>) {
        let mut off = w.to_vec();
        to_offset_binary(&mut off);
        let consts = off
            .chunks_exact(n)
            .flat_map(|r| offset_row_const(r).to_le_bytes())
            .collect();
        (off, consts)
    }

    #[test]
    fn row_const_is_128_times_the_odd_weights() {
        let w: Vec<u8> = [1i8, -3, 5, 127, -128, -128, 0, 2]
            .iter()
            .map(|&v| v as u8)
            .collect();
        let (off, consts) = encode(&w, 8);
        assert_eq!(off[0], 0x81); // 1 + 128
        assert_eq!(off[4], 0x00); // -128 + 128
        assert_eq!(off[1], (-3i8) as u8); // odd bytes unchanged
        assert_eq!(consts, (128i32 * (-3 + 127 - 128 + 2)).to_le_bytes());
        for (c, &v) in [1i8, -3, 5, 127, -128, -128, 0, 2].iter().enumerate() {
            assert_eq!(offset_weight(&off, c), v);
        }
    }

    #[test]
    fn matches_plain_int8_on_edge_and_random_values() {
        let mut rng = Rng::new(7);
        for &(n, n_out) in &[(8, 1), (8, 5), (128, 65), (128, 128), (512, 3), (64, 7)] {
            for wk in 0..4 {
                let w: Vec<u8> = (0..n * n_out)
                    .map(|_| {
                        let u = rng.next_u32();
                        match wk {
                            0 => u as u8,
                            1 => 0x80,
                            2 => 0x7f,
                            _ => [0x80, 0x7f][(u >> 7) as usize & 1],
                        }
                    })
                    .collect();
                let (off, consts) = encode(&w, n);
                for xk in 0..5 {
                    let x: Vec<i8> = (0..n)
                        .map(|i| {
                            let u = rng.next_u32();
                            match xk {
                                0 => u as i8,
                                1 => -128,
                                2 => 127,
                                3 => [-128, 127][i & 1],
                                _ => [-128, 127][(u >> 9) as usize & 1],
                            }
                        })
                        .collect();
                    let mut want = vec![0i32; n_out];
                    portable::matvec_i32(&x, &w, &mut want).unwrap();
                    // Independent expectation: the plain i64 sum.
                    for (o, row) in w.chunks_exact(n).enumerate() {
                        let s: i64 = x
                            .iter()
                            .zip(row)
                            .map(|(&a, &b)| a as i64 * b as i8 as i64)
                            .sum();
                        assert_eq!(want[o] as i64, s);
                    }
                    let mut got = vec![0x5a5a_5a5a; n_out];
                    matvec_i32_offset(&x, &off, &consts, &mut got).unwrap();
                    assert_eq!(got, want, "{n}->{n_out} weights {wk} inputs {xk}");
                    let mut got = vec![0x5a5a_5a5a; n_out];
                    crate::kernels::matvec_i32_offset(&x, &off, &consts, &mut got).unwrap();
                    assert_eq!(got, want, "entry point {n}->{n_out}");
                    // A prepared input, used twice (pre-extended once on the DSP path).
                    let mut buf = crate::kernels::OffsetBuf::new();
                    let mut pre = crate::kernels::OffsetInput::new(&x, &mut buf);
                    for _ in 0..2 {
                        let mut got = vec![0x5a5a_5a5a; n_out];
                        crate::kernels::matvec_i32_offset_pre(&mut pre, &off, &consts, &mut got)
                            .unwrap();
                        assert_eq!(got, want, "prepared input {n}->{n_out}");
                    }
                }
            }
        }
    }

    #[test]
    fn shape_errors() {
        let x = [1i8; 8];
        let w = [0u8; 16];
        let c = [0u8; 8];
        let mut y = [0i32; 2];
        assert!(matvec_i32_offset(&x, &w, &c, &mut y).is_ok());
        assert!(matvec_i32_offset(&x[..4], &w[..8], &c, &mut y[..2]).is_err()); // n % 8
        assert!(matvec_i32_offset(&x, &w[..15], &c, &mut y).is_err());
        assert!(matvec_i32_offset(&x, &w, &c[..7], &mut y).is_err());
        assert!(matvec_i32_offset(&[], &[], &[], &mut []).is_err());
    }
}
