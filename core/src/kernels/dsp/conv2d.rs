//! Convolutions.
//!
//! * **1 input channel, 3×3** (a first layer on a grayscale image; any stride and padding):
//!   direct. For each output row the three input rows are laid out once as halfword pairs,
//!   `B[x] = {V[x] = (r0[x], r1[x]), H[x] = (r2[x], r2[x+1])}` over the padded columns (padding =
//!   the input zero point), so one `LDM` of 5 words at `B[left]` gives the whole window as
//!   `V[l], H[l], V[l+1], H[l+1], V[l+2]`, and a channel is 5 multiply instructions
//!   (4 `SMLAD` + `SMLATB`) against its pre-extended weights, which sit with its bias and
//!   requantization constants in a small table on the stack (`LDM` ×2 per channel).
//! * **`in_c % 4 == 0`** (everything after the first layer): im2col of two output pixels at a time
//!   into a pre-extended interleaved buffer, then the 2×2 micro-kernel of [`super::gemm`] over
//!   pairs of filters, which are read in place.
//! * Anything else (e.g. 3 input channels, or a channel needing the generic requantization):
//!   the portable kernel.
//!
//! Output channels are processed in passes of 32 (direct) or 64 (im2col) so that the per-channel
//! tables stay small; stack frames are about 3 KB (direct) and 5.7 KB (im2col).

use core::mem::MaybeUninit;

use super::gemm::{extend_pair, gemm2x2_rq_full, gemm2x2_rq_sat, GemmArgs};
use super::{sxtb16, sxtb16_ror8, word_i8, FastRequant};
use crate::kernels::conv2d::check_conv2d;
use crate::kernels::{portable, s4_row_bytes, s4_weight, Conv2dGeometry, OutputStage};
use crate::Error;

/// Largest filter (`kernel_h · kernel_w · in_c`) of the im2col path (buffer: `4 · MAX_K` bytes).
const MAX_K: usize = 576;
/// Largest band (`kernel_h` padded input rows) of the im2col path, bytes.
const MAX_BAND: usize = 2048;
/// Output channels per pass of the im2col path (table: 16 bytes per channel).
const CHUNK: usize = 64;
/// Widest padded input row of the direct path (band: `8 · MAX_W` bytes, rows: `4 · MAX_W`).
const MAX_W: usize = 128;
/// Output channels per pass of the direct path (table: 40 bytes per channel).
const CHUNK1: usize = 32;

/// [`crate::kernels::conv2d()`] for Armv7E-M.
pub fn conv2d(
    input: &[i8],
    g: &Conv2dGeometry,
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
) -> Result<(), Error> {
    let (_, out_w) = check_conv2d(input, g, weights, stage, output)?;
    let done = if g.in_c == 1 && g.kernel_h == 3 && g.kernel_w == 3 {
        conv1_3x3(input, g, weights, stage, output, out_w)
    } else if g.in_c.is_multiple_of(4) {
        conv_im2col(input, g, weights, stage, output, out_w)
    } else {
        false
    };
    if done {
        Ok(())
    } else {
        portable::conv2d(input, g, weights, stage, output)
    }
}

/// Largest packed int4 layer (`out_c · kernel_h · kernel_w · in_c` weights) that
/// [`conv2d_s4`] unpacks on the stack (one byte per weight).
const MAX_S4_UNPACKED: usize = 2048;

/// [`crate::kernels::conv2d_s4()`] for Armv7E-M: a convolution's weights are few (the MNIST
/// CNN's largest has 1,152) and each is used once per output pixel, so the whole layer's int4
/// filters are unpacked **once per call** into an int8 buffer on the stack (2 KiB) and run
/// through [`conv2d`] (its `SMLAD` paths); that costs one pass over the weights against
/// `out_h · out_w` MACs per weight. Larger layers use the portable int4 kernel. Bit-identical
/// either way: int4 values unpacked to int8 are the same numbers. Not inlined, so that the
/// buffer is on the stack only while an int4 convolution runs.
#[inline(never)]
pub fn conv2d_s4(
    input: &[i8],
    g: &Conv2dGeometry,
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
) -> Result<(), Error> {
    let filter = g.kernel_h.saturating_mul(g.kernel_w).saturating_mul(g.in_c);
    let n = g.out_c.saturating_mul(filter);
    let row_bytes = s4_row_bytes(filter);
    if n == 0 || n > MAX_S4_UNPACKED || g.out_c.checked_mul(row_bytes) != Some(weights.len()) {
        // Shape errors (and large layers) from the portable kernel, with its checks.
        return portable::conv2d_s4(input, g, weights, stage, output);
    }
    let mut unpacked = [0u8; MAX_S4_UNPACKED];
    for (dst, row) in unpacked[..n]
        .chunks_exact_mut(filter)
        .zip(weights.chunks_exact(row_bytes))
    {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = s4_weight(row, i) as u8;
        }
    }
    conv2d(input, g, &unpacked[..n], stage, output)
}

/// The clamp variant: `act_min == -128` needs only `SSAT`.
fn saturating_only(stage: &OutputStage) -> bool {
    stage.act_min == i8::MIN
}

/// `FastRequant` for channel `o`, with `c` for the kernel's clamp variant.
fn fast_channel(stage: &OutputStage, o: usize) -> Option<(FastRequant, i32)> {
    let le = |a: &[u8]| i32::from_le_bytes([a[4 * o], a[4 * o + 1], a[4 * o + 2], a[4 * o + 3]]);
    let zp = stage.zero_point as i32;
    let zl = if saturating_only(stage) {
        zp
    } else {
        zp - stage.act_min as i32
    };
    let f = FastRequant::new(le(stage.multipliers), le(stage.shifts), zl, stage.act_max)?;
    Some((f, le(stage.bias)))
}

// ---------------------------------------------------------------------------------------------
// 1 input channel, 3x3.

/// Arguments of the row kernels (offsets hard-coded in the assembly).
#[repr(C)]
struct Conv1Args {
    /// `B[left of output pixel 0]`.
    band: *const u32, // 0
    /// Bytes between the windows of consecutive output pixels (`8 · stride_w`).
    step: usize, // 4
    out: *mut i8,     // 8
    out_end: *mut i8, // 12
    /// 10 words per channel: `bias, (w00,w10), (w20,w21), (w01,w11), (w22,_), (w02,w12), m2, c,
    /// e | more, lo` where `more` (bit 8 of the `e` word) says another group of channels
    /// follows.
    table: *const [i32; 10], // 16
    /// Added to the output pointer after each pixel: `out_c` minus the channels of this pass.
    out_skip: usize, // 20
}

/// One output channel (5 MACs, requantization, store); r0-r4 hold the window, r11 the table,
/// r12 the output. `$v` is the clamp variant.
#[rustfmt::skip]
macro_rules! conv1_channel {
    ($v:ident) => {
        concat!(
            "ldm r11!, {{r5, r6, r7, r8, r9, r10}}\n",  // bias, 5 weight pairs
            "smlad r5, r0, r6, r5\n",                   // V[l]   · (w00, w10)
            "smlad r5, r1, r7, r5\n",                   // H[l]   · (w20, w21)
            "smlad r5, r2, r8, r5\n",                   // V[l+1] · (w01, w11)
            "smlatb r5, r3, r9, r5\n",                  // top of H[l+1] = row 2 [l+2] · w22
            "smlad r5, r4, r10, r5\n",                  // V[l+2] · (w02, w12)
            "ldm r11!, {{r6, r7, r8, r9}}\n",           // m2, c, e | more, act_min
            conv1_rq!($v),
            "strb r5, [r12], #1\n",
        )
    };
}

/// Requantizes r5 with r6 = m2, r7 = c, r8 = e, r9 = act_min (r10 scratch).
#[rustfmt::skip]
macro_rules! conv1_rq {
    (full) => {
        concat!(
            conv1_rq!(common),
            "usat r5, #31, r5\n",
            "qadd r5, r5, r9\n",
            "ssat r5, #8, r5\n",
        )
    };
    (sat) => {
        concat!(conv1_rq!(common), "ssat r5, #8, r5\n")
    };
    (common) => {
        concat!(
            "and r10, r5, r6, asr #31\n",
            "smmlar r5, r5, r6, r10\n",
            "add r10, r7, r5, asr #31\n",
            "asr r10, r10, #1\n",
            "qadd r5, r5, r10\n",
            "asr r5, r5, r8\n",
        )
    };
}

/// A row kernel: `$per` channels per loop-flag test (the table's `more` bits are set every
/// `$per` channels).
macro_rules! conv1_kernel {
    ($v:ident, $($ch:tt)*) => {
        core::arch::naked_asm!(
            "push {{r4-r11, lr}}",
            "mov r12, r0",            // args, until the loop
            "ldr lr, [r12, #0]",      // band
            "ldr r11, [r12, #16]",    // table
            "push {{r12}}",
            "ldr r12, [r12, #8]",     // out
            "1:",                     // pixel loop
            "ldm lr, {{r0, r1, r2, r3, r4}}",
            "2:",                     // channel loop
            $($ch)*
            "tst r8, #256",
            "bne 2b",
            "ldr r5, [sp]",
            "ldr r11, [r5, #16]",
            "ldr r6, [r5, #4]",
            "add lr, lr, r6",
            "ldr r6, [r5, #20]",
            "add r12, r12, r6",
            "ldr r6, [r5, #12]",
            "cmp r12, r6",
            "bne 1b",
            "pop {{r12}}",
            "pop {{r4-r11, pc}}",
        )
    };
}

/// Row kernel, any `act_min`, channels one at a time.
///
/// # Safety
///
/// `args` valid: `band` holds the windows of all output pixels (`5` words at
/// `band + p · step` for `p < out_end - out`), 4-aligned; `table` holds the channels, the last
/// one with `more = 0`; `out..out_end` writable, a whole number of pixels.
#[unsafe(naked)]
unsafe extern "C" fn conv1_row_full_1(args: *const Conv1Args) {
    conv1_kernel!(full, conv1_channel!(full),)
}

/// Row kernel, any `act_min`, 4 channels per flag test.
///
/// # Safety
///
/// As [`conv1_row_full_1`], with `more` set only on every 4th channel (a multiple of 4 channels).
#[unsafe(naked)]
unsafe extern "C" fn conv1_row_full_4(args: *const Conv1Args) {
    conv1_kernel!(
        full,
        conv1_channel!(full),
        conv1_channel!(full),
        conv1_channel!(full),
        conv1_channel!(full),
    )
}

/// Row kernel, `act_min == -128`, channels one at a time.
///
/// # Safety
///
/// As [`conv1_row_full_1`].
#[unsafe(naked)]
unsafe extern "C" fn conv1_row_sat_1(args: *const Conv1Args) {
    conv1_kernel!(sat, conv1_channel!(sat),)
}

/// Row kernel, `act_min == -128`, 4 channels per flag test.
///
/// # Safety
///
/// As [`conv1_row_full_4`].
#[unsafe(naked)]
unsafe extern "C" fn conv1_row_sat_4(args: *const Conv1Args) {
    conv1_kernel!(
        sat,
        conv1_channel!(sat),
        conv1_channel!(sat),
        conv1_channel!(sat),
        conv1_channel!(sat),
    )
}

asm_op!(
    /// `(a.lo, b.lo)`: `PKHBT d, a, b, LSL #16`.
    fn pack_lo_lo(a, b) = "pkhbt {r}, {a}, {b}, lsl #16"
);

asm_op!(
    /// `(a.lo, b.hi)`: `PKHBT d, a, b`.
    fn pack_lo_hi(a, b) = "pkhbt {r}, {a}, {b}"
);

asm_op!(
    /// `(a.hi, b.hi)`: `PKHTB d, b, a, ASR #16`.
    fn pack_hi_hi(a, b) = "pkhtb {r}, {b}, {a}, asr #16"
);

/// Two int16 values as one word: `lo` in bits 0..16, `hi` in 16..32.
#[inline(always)]
fn pair(lo: i8, hi: i8) -> u32 {
    (lo as i16 as u16 as u32) | ((hi as i16 as u32) << 16)
}

#[inline(never)]
fn conv1_3x3(
    input: &[i8],
    g: &Conv2dGeometry,
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
    out_w: usize,
) -> bool {
    let oc = g.out_c;
    let padded_w = g.in_w + 2 * g.pad_w;
    let row_len = out_w * oc;
    if padded_w + 4 > MAX_W || row_len == 0 || (0..oc).any(|o| fast_channel(stage, o).is_none()) {
        return false;
    }
    let zp = g.input_zero_point;
    // 4 columns at a time: room for up to 3 columns past `padded_w`.
    let groups = padded_w.div_ceil(4);
    let mut band = [const { MaybeUninit::<u32>::uninit() }; 2 * MAX_W];
    let band = &mut band[..8 * groups];
    // Input rows padded with the zero point (plus 5 columns for H and the 4-column groups), in a
    // ring indexed by `iy % 3` (a window's rows are consecutive, so distinct mod 3) so that each
    // row is copied once for stride 1 (per pass); slot 3 is a row of padding.
    let row_bytes = 4 * groups + 4;
    let mut rows = [[0i8; MAX_W + 8]; 4];
    rows[3][..row_bytes].fill(zp);
    let mut table = [const { MaybeUninit::<[i32; 10]>::uninit() }; CHUNK1];
    for c0 in (0..oc).step_by(CHUNK1) {
        let n = CHUNK1.min(oc - c0);
        // The channel table of this pass: bias, pre-extended weights, requantization.
        let group = if n.is_multiple_of(4) { 4 } else { 1 };
        for (i, (slot, f)) in table
            .iter_mut()
            .zip(weights[9 * c0..].chunks_exact(9))
            .take(n)
            .enumerate()
        {
            let Some((rq, bias)) = fast_channel(stage, c0 + i) else {
                return false; // checked above
            };
            let w = |i: usize| f[i] as i8;
            let more = if i + 1 < n && (i + 1) % group == 0 {
                256
            } else {
                0
            };
            slot.write([
                bias,
                pair(w(0), w(3)) as i32,
                pair(w(6), w(7)) as i32,
                pair(w(1), w(4)) as i32,
                pair(w(8), 0) as i32,
                pair(w(2), w(5)) as i32,
                rq.m2,
                rq.c,
                rq.e | more,
                stage.act_min as i32,
            ]);
        }
        let kernel = match (saturating_only(stage), group) {
            (true, 4) => conv1_row_sat_4,
            (true, _) => conv1_row_sat_1,
            (false, 4) => conv1_row_full_4,
            (false, _) => conv1_row_full_1,
        };
        let mut held = [usize::MAX; 3];
        for (oy, out_row) in output.chunks_exact_mut(row_len).enumerate() {
            let mut slots = [3usize; 3];
            for (k, slot) in slots.iter_mut().enumerate() {
                let Some(iy) = (oy * g.stride_h + k)
                    .checked_sub(g.pad_h)
                    .filter(|&iy| iy < g.in_h)
                else {
                    continue;
                };
                *slot = iy % 3;
                if held[iy % 3] != iy {
                    held[iy % 3] = iy;
                    let (left, rest) = rows[iy % 3][..row_bytes].split_at_mut(g.pad_w);
                    let (mid, right) = rest.split_at_mut(g.in_w);
                    left.fill(zp);
                    mid.copy_from_slice(&input[iy * g.in_w..(iy + 1) * g.in_w]);
                    right.fill(zp);
                }
            }
            let (r0, r1, r2) = (&rows[slots[0]], &rows[slots[1]], &rows[slots[2]]);
            // B[x] = {V[x] = (r0[x], r1[x]), H[x] = (r2[x], r2[x+1])}, 4 columns per iteration.
            for (x, b) in band.chunks_exact_mut(8).enumerate() {
                let x = 4 * x;
                let (a, b0, c, cn) = (
                    word_i8(&r0[x..x + 4]),
                    word_i8(&r1[x..x + 4]),
                    word_i8(&r2[x..x + 4]),
                    word_i8(&r2[x + 1..x + 5]),
                );
                let (ae, ao, be, bo) = (sxtb16(a), sxtb16_ror8(a), sxtb16(b0), sxtb16_ror8(b0));
                let (ce, co, cno) = (sxtb16(c), sxtb16_ror8(c), sxtb16_ror8(cn));
                b[0].write(pack_lo_lo(ae, be)); // V[x]   = (r0[x], r1[x])
                b[1].write(pack_lo_lo(ce, co)); // H[x]   = (r2[x], r2[x+1])
                b[2].write(pack_lo_lo(ao, bo)); // V[x+1]
                b[3].write(pack_lo_hi(co, ce)); // H[x+1] = (r2[x+1], r2[x+2])
                b[4].write(pack_hi_hi(ae, be)); // V[x+2]
                b[5].write(pack_hi_hi(ce, co)); // H[x+2] = (r2[x+2], r2[x+3])
                b[6].write(pack_hi_hi(ao, bo)); // V[x+3]
                b[7].write(pack_hi_hi(co, cno)); // H[x+3] = (r2[x+3], r2[x+4])
            }
            let out = out_row[c0..].as_mut_ptr();
            let args = Conv1Args {
                band: band.as_ptr().cast(),
                step: 8 * g.stride_w,
                out,
                out_end: out.wrapping_add(row_len),
                table: table.as_ptr().cast(),
                out_skip: oc - n,
            };
            // SAFETY: `band` (8 · groups >= 2 · padded_w words, all written above, 4-aligned)
            // holds the window of every output pixel: pixel ox reads words 2·ox·stride_w .. +5,
            // and (out_w - 1)·stride_w + 2 < padded_w by `output_hw`. The table's first `n`
            // entries are written, `more` clear on the last one. The kernel writes channels
            // c0..c0 + n of each of the out_w pixels of `out_row` (`n` bytes then `out_skip`).
            unsafe { kernel(&args) };
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// in_c % 4 == 0: im2col + the 2x2 micro-kernel.

/// Writes the pre-extended patches of two output pixels whose windows start at `s0` and `s1` of
/// the padded band (`kernel_h` rows of `row` bytes) into `dst`, interleaved (4 words per 4 filter
/// elements, filter order `[ky][kx][c]`).
fn fill_patches(
    dst: &mut [MaybeUninit<u32>],
    band: &[i8],
    row: usize,
    seg: usize,
    s0: usize,
    s1: usize,
) {
    for (d, band_row) in dst.chunks_exact_mut(seg).zip(band.chunks_exact(row)) {
        let (Some(a), Some(b)) = (band_row.get(s0..s0 + seg), band_row.get(s1..s1 + seg)) else {
            return;
        };
        extend_pair(d, a, b);
    }
}

#[inline(never)]
fn conv_im2col(
    input: &[i8],
    g: &Conv2dGeometry,
    weights: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
    out_w: usize,
) -> bool {
    let oc = g.out_c;
    let c = g.in_c;
    let k = g.kernel_h * g.kernel_w * c;
    let seg = g.kernel_w * c; // one kernel row of a patch
    let row = (g.in_w + 2 * g.pad_w) * c; // one padded input row
    if k > MAX_K
        || out_w == 0
        || g.kernel_h * row > MAX_BAND
        || (0..oc).any(|o| fast_channel(stage, o).is_none())
    {
        return false;
    }
    let kernel = if saturating_only(stage) {
        gemm2x2_rq_sat
    } else {
        gemm2x2_rq_full
    };
    let zp = g.input_zero_point;
    let mut band = [0i8; MAX_BAND];
    let band = &mut band[..g.kernel_h * row];
    let mut abuf = [const { MaybeUninit::<u32>::uninit() }; MAX_K];
    let abuf = &mut abuf[..k];
    // [m2, c, e, bias] per channel of the pass, plus a copy of the last one for an odd count.
    let mut table = [const { MaybeUninit::<[i32; 4]>::uninit() }; CHUNK + 1];
    let table_ptr = table.as_ptr().cast::<[i32; 4]>();
    let (pad_l, in_row) = (g.pad_w * c, g.in_w * c);
    for c0 in (0..oc).step_by(CHUNK) {
        let n = CHUNK.min(oc - c0);
        for (i, slot) in table.iter_mut().take(n).enumerate() {
            let Some((rq, bias)) = fast_channel(stage, c0 + i) else {
                return false; // checked above
            };
            slot.write([rq.m2, rq.c, rq.e, bias]);
        }
        if n % 2 == 1 {
            let Some((rq, bias)) = fast_channel(stage, c0 + n - 1) else {
                return false;
            };
            table[n].write([rq.m2, rq.c, rq.e, bias]);
        }
        let pairs = n / 2;
        let filters = weights[c0 * k..].as_ptr();
        for (oy, out_row) in output.chunks_exact_mut(out_w * oc).enumerate() {
            // The window's input rows, padded with the zero point.
            for (ky, padded) in band.chunks_exact_mut(row).enumerate() {
                let src = (oy * g.stride_h + ky)
                    .checked_sub(g.pad_h)
                    .and_then(|iy| input.get(iy * in_row..(iy + 1) * in_row));
                match src {
                    Some(src) => {
                        let (left, rest) = padded.split_at_mut(pad_l);
                        let (mid, right) = rest.split_at_mut(in_row);
                        left.fill(zp);
                        mid.copy_from_slice(src);
                        right.fill(zp);
                    }
                    None => padded.fill(zp),
                }
            }
            let band: &[i8] = band;
            for ox in (0..out_w).step_by(2) {
                let ox1 = (ox + 1).min(out_w - 1);
                let step = g.stride_w * c;
                fill_patches(abuf, band, row, seg, ox * step, ox1 * step);
                let a = abuf.as_ptr().cast::<u32>();
                let out = out_row[ox * oc + c0..].as_mut_ptr().cast::<u8>();
                let mut args = GemmArgs {
                    a,
                    a_end: a.wrapping_add(k),
                    b: filters,
                    kreg: k as isize - 4,
                    b_adv: k as isize,
                    end: table_ptr.wrapping_add(2 * pairs).cast(),
                    duff: 0,
                    out,
                    out1: ((ox1 - ox) * oc) as isize,
                    table: table_ptr,
                    lo: stage.act_min as i32,
                    c1off: 1,
                };
                if pairs > 0 {
                    // SAFETY: abuf (k words = k/4 steps, all written by `fill_patches`: the
                    // windows lie inside the band by `output_hw`, kernel_h segments of
                    // kernel_w·in_c elements each) is 4-aligned; filter pair q reads filters
                    // c0 + 2q, c0 + 2q + 1 (k bytes each, `kreg = k - 4`, `b_adv = k`) inside
                    // `weights`; table entries 0..2·pairs are written; the outputs are channels
                    // c0..c0 + 2·pairs of output pixels ox and ox1 of this row.
                    unsafe { kernel(&args) };
                }
                if n % 2 == 1 {
                    args.b = filters.wrapping_add((n - 1) * k);
                    args.kreg = -4;
                    args.table = table_ptr.wrapping_add(n - 1);
                    args.end = table_ptr.wrapping_add(n + 1).cast();
                    args.out = out.wrapping_add(n - 1);
                    args.c1off = 0;
                    // SAFETY: as above for the pass's last filter used as both rows of the
                    // pair (table entries n - 1 and its copy n), writing channel c0 + n - 1 of
                    // both pixels.
                    unsafe { kernel(&args) };
                }
            }
        }
    }
    true
}
