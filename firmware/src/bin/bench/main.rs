//! Kernel benchmark: each kernel at the shapes of the issue "Speed on the microcontroller", on
//! random int8 data with realistic per-channel quantization (what the exporter writes: Q31
//! multipliers from real-ish scales, folded biases, fused-ReLU clamps), repeated until the
//! 40-instruction counter tick is negligible, minus the measurement overhead.
//!
//! `cargo run --release --bin bench` (QEMU, `-icount shift=0`: counts are **instructions**), or
//! `bash bench.sh`, which also writes the table to `BENCH.md`. Each result is one defmt line
//! `BENCH|name|work|unit|cmsis|ours|portable|goal_x100` (`ours`/`portable`: instructions per call
//! of `aka_core::kernels::X` / `aka_core::kernels::portable::X`; `goal_x100`: the goal per
//! unit of work × 100; `cmsis`: CMSIS-NN's count measured the same way, from the issue).
//!
//! Whole-model rows (MNIST MLP/CNN, GPT decode) go in [`models::whole_models`]: print them with
//! [`report`] (unit "inference" or "token") and `bench.sh` adds them to the table.
#![no_std]
#![no_main]

mod models;

use core::hint::black_box;

use aka_core::kernels::{self, portable, Conv2dGeometry, OutputStage, Pool2dGeometry};
use aka_core::quant::quantize_multiplier;
use aka_core::rng::Rng;
use aka_firmware::{self as fw, Counter, Span};
use cortex_m_rt::entry;

/// Weights of the largest layer (784 x 576) plus alignment slack.
const W_CAP: usize = 784 * 576 + 8;
const C_CAP: usize = 576;
const X_CAP: usize = 28 * 28 * 8;

#[repr(C, align(4))]
struct Bufs {
    w: [u8; W_CAP],
    x: [i8; X_CAP + 4],
    y: [i8; X_CAP + 4],
    bias: [u8; 4 * C_CAP],
    mult: [u8; 4 * C_CAP],
    shift: [u8; 4 * C_CAP],
    scores: [i32; 64 * 64],
    q: [i8; 64 * 32],
    k: [i8; 64 * 32],
    logits: [f32; 65],
    probs: [f32; 65],
}

static mut BUFS: Bufs = Bufs {
    w: [0; W_CAP],
    x: [0; X_CAP + 4],
    y: [0; X_CAP + 4],
    bias: [0; 4 * C_CAP],
    mult: [0; 4 * C_CAP],
    shift: [0; 4 * C_CAP],
    scores: [0; 64 * 64],
    q: [0; 64 * 32],
    k: [0; 64 * 32],
    logits: [0.0; 65],
    probs: [0.0; 65],
};

/// One line of the table.
struct Row<'a> {
    name: &'a str,
    /// MACs (or elements, or inferences).
    work: u64,
    unit: &'a str,
    /// CMSIS-NN's instructions (0: none).
    cmsis: u64,
    /// The goal per unit of work, × 100 (0: none).
    goal_x100: u64,
}

/// Instructions per call of `f`, over `reps` calls, minus the measurement overhead.
fn measure(counter: Counter, overhead: Span, reps: u32, mut f: impl FnMut()) -> u64 {
    let (_, span) = counter.measure(|| {
        for _ in 0..reps {
            f();
        }
    });
    span.saturating_sub(overhead).count / u64::from(reps)
}

/// Enough repetitions for ~4 M instructions (the tick is 40).
fn reps_for(estimate: u64) -> u32 {
    (4_000_000 / estimate.max(1)).clamp(1, 1000) as u32
}

fn report(row: &Row, ours: u64, portable: u64) {
    let per = ours * 100 / row.work.max(1);
    defmt::info!(
        "{=str}: {=u64} {=str}s, {=u64} instructions = {=u64}.{=u64:02} per {=str} (CMSIS-NN {=u64}, portable {=u64})",
        row.name,
        row.work,
        row.unit,
        ours,
        per / 100,
        per % 100,
        row.unit,
        row.cmsis,
        portable
    );
    defmt::info!(
        "BENCH|{=str}|{=u64}|{=str}|{=u64}|{=u64}|{=u64}|{=u64}",
        row.name,
        row.work,
        row.unit,
        row.cmsis,
        ours,
        portable,
        row.goal_x100
    );
}

/// Approximately normal int8 weights (sum of four uniform bytes), each row scaled to use the
/// full int8 range like a per-channel symmetric quantizer; returns each row's weight scale
/// (assuming real weights of standard deviation 0.05).
fn fill_weights(rng: &mut Rng, w: &mut [u8], row_len: usize, scales: &mut [f32]) {
    for (row, scale) in w.chunks_exact_mut(row_len).zip(scales.iter_mut()) {
        let mut max = 1i32;
        for v in row.iter_mut() {
            let r = rng.next_u32();
            let s = (r as i8 as i32)
                + ((r >> 8) as i8 as i32)
                + ((r >> 16) as i8 as i32)
                + ((r >> 24) as i8 as i32);
            *v = (s / 4) as i8 as u8;
            max = max.max((s / 4).abs());
        }
        for v in row.iter_mut() {
            *v = ((*v as i8 as i32) * 127 / max) as i8 as u8;
        }
        // real = 0.05 * s / 73 (std of the sum of 4 uniform bytes / 4 is ~37; max ~ 2.7 std)
        *scale = 0.05 * max as f32 / 37.0 / 127.0;
    }
}

/// Per-channel bias (input zero point folded in), multiplier and shift, as the exporter writes
/// them for an input of scale `s_in`, zero point `zp_in`, and an output scale chosen so that
/// ±3 standard deviations of the accumulator span the int8 range.
#[allow(clippy::too_many_arguments)]
fn fill_stage(
    rng: &mut Rng,
    w: &[u8],
    row_len: usize,
    scales: &[f32],
    s_in: f32,
    zp_in: i8,
    bias: &mut [u8],
    mult: &mut [u8],
    shift: &mut [u8],
) {
    // Accumulator std ≈ sqrt(n) * std(x - zp) * std(w_q), with std(x - zp) ~ 60 and std(w_q) ~ 47.
    let acc_std = {
        let mut r = 1.0f32;
        while r * r < row_len as f32 {
            r += 1.0;
        }
        r * 60.0 * 47.0
    };
    for (o, (((row, &sw), b), (m, s))) in w
        .chunks_exact(row_len)
        .zip(scales)
        .zip(bias.chunks_exact_mut(4))
        .zip(mult.chunks_exact_mut(4).zip(shift.chunks_exact_mut(4)))
        .enumerate()
    {
        let s_acc = s_in * sw;
        let s_out = 6.0 * acc_std * s_acc / 255.0 * (0.8 + 0.4 * rng.next_f32());
        let (mv, sv) = quantize_multiplier((s_acc / s_out) as f64).unwrap();
        let sum: i32 = row.iter().map(|&v| v as i8 as i32).sum();
        let bq = (rng.normal() * acc_std * 0.3) as i32 + o as i32 % 7;
        let folded = bq - zp_in as i32 * sum;
        b.copy_from_slice(&folded.to_le_bytes());
        m.copy_from_slice(&mv.to_le_bytes());
        s.copy_from_slice(&sv.to_le_bytes());
    }
}

fn fill_i8(rng: &mut Rng, x: &mut [i8]) {
    for v in x {
        *v = rng.next_u32() as i8;
    }
}

struct Ctx {
    counter: Counter,
    overhead: Span,
    rng: Rng,
}

/// A fully connected layer `n_in -> n_out`, weights at address % 4 == `align`.
#[allow(clippy::too_many_arguments)]
fn bench_linear(
    c: &mut Ctx,
    b: &mut Bufs,
    row: Row,
    n_in: usize,
    n_out: usize,
    last: bool,
    align: usize,
) {
    let mut scales = [0f32; C_CAP];
    let w = &mut b.w[align..align + n_in * n_out];
    fill_weights(&mut c.rng, w, n_in, &mut scales[..n_out]);
    let zp_in = -128; // after a ReLU
    fill_stage(
        &mut c.rng,
        w,
        n_in,
        &scales[..n_out],
        0.02,
        zp_in,
        &mut b.bias[..4 * n_out],
        &mut b.mult[..4 * n_out],
        &mut b.shift[..4 * n_out],
    );
    fill_i8(&mut c.rng, &mut b.x[..n_in]);
    // Hidden layers have a fused ReLU (zp -128 after calibration); the last one is plain.
    let zp = if last { 5 } else { -128 };
    let stage = OutputStage {
        bias: &b.bias[..4 * n_out],
        multipliers: &b.mult[..4 * n_out],
        shifts: &b.shift[..4 * n_out],
        zero_point: zp,
        act_min: -128,
        act_max: 127,
    };
    let (x, w, y) = (
        &b.x[..n_in],
        &b.w[align..align + n_in * n_out],
        &mut b.y[..n_out],
    );
    let reps = reps_for(2 * row.work);
    let ours = measure(c.counter, c.overhead, reps, || {
        kernels::linear(black_box(x), black_box(w), &stage, black_box(&mut *y)).unwrap();
    });
    let port = measure(c.counter, c.overhead, reps_for(8 * row.work), || {
        portable::linear(black_box(x), black_box(w), &stage, black_box(&mut *y)).unwrap();
    });
    report(&row, ours, port);
}

/// A fully connected layer `n_in -> n_out` with packed int4 weights (`n_in / 2` bytes per row).
/// The weight values do not change the instruction count; the output stage is realistic.
fn bench_linear_s4(c: &mut Ctx, b: &mut Bufs, row: Row, n_in: usize, n_out: usize) {
    let row_bytes = n_in / 2;
    let w = &mut b.w[..row_bytes * n_out];
    for v in w.iter_mut() {
        *v = c.rng.next_u32() as u8;
    }
    let scales = [0.05 / 8.0; C_CAP];
    let zp_in = -128;
    fill_stage(
        &mut c.rng,
        w,
        row_bytes,
        &scales[..n_out],
        0.02,
        zp_in,
        &mut b.bias[..4 * n_out],
        &mut b.mult[..4 * n_out],
        &mut b.shift[..4 * n_out],
    );
    fill_i8(&mut c.rng, &mut b.x[..n_in]);
    let stage = OutputStage {
        bias: &b.bias[..4 * n_out],
        multipliers: &b.mult[..4 * n_out],
        shifts: &b.shift[..4 * n_out],
        zero_point: -128,
        act_min: -128,
        act_max: 127,
    };
    let (x, w, y) = (&b.x[..n_in], &b.w[..row_bytes * n_out], &mut b.y[..n_out]);
    let ours = measure(c.counter, c.overhead, reps_for(2 * row.work), || {
        kernels::linear_s4(black_box(x), black_box(w), &stage, black_box(&mut *y)).unwrap();
    });
    let port = measure(c.counter, c.overhead, reps_for(8 * row.work), || {
        portable::linear_s4(black_box(x), black_box(w), &stage, black_box(&mut *y)).unwrap();
    });
    report(&row, ours, port);
}

#[allow(clippy::too_many_arguments)]
fn bench_conv(
    c: &mut Ctx,
    b: &mut Bufs,
    row: Row,
    hw: usize,
    in_c: usize,
    out_c: usize,
    zp_in: i8,
    s_in: f32,
) {
    let g = Conv2dGeometry {
        in_h: hw,
        in_w: hw,
        in_c,
        out_c,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 1,
        pad_w: 1,
        input_zero_point: zp_in,
    };
    let filter = 9 * in_c;
    let mut scales = [0f32; C_CAP];
    let w = &mut b.w[..filter * out_c];
    fill_weights(&mut c.rng, w, filter, &mut scales[..out_c]);
    fill_stage(
        &mut c.rng,
        w,
        filter,
        &scales[..out_c],
        s_in,
        zp_in,
        &mut b.bias[..4 * out_c],
        &mut b.mult[..4 * out_c],
        &mut b.shift[..4 * out_c],
    );
    let n_in = hw * hw * in_c;
    fill_i8(&mut c.rng, &mut b.x[..n_in]);
    let stage = OutputStage {
        bias: &b.bias[..4 * out_c],
        multipliers: &b.mult[..4 * out_c],
        shifts: &b.shift[..4 * out_c],
        zero_point: -128,
        act_min: -128, // fused ReLU
        act_max: 127,
    };
    let n_out = hw * hw * out_c;
    let (x, w, y) = (&b.x[..n_in], &b.w[..filter * out_c], &mut b.y[..n_out]);
    let ours = measure(c.counter, c.overhead, reps_for(3 * row.work), || {
        kernels::conv2d(black_box(x), &g, black_box(w), &stage, black_box(&mut *y)).unwrap();
    });
    let port = measure(c.counter, c.overhead, reps_for(20 * row.work), || {
        portable::conv2d(black_box(x), &g, black_box(w), &stage, black_box(&mut *y)).unwrap();
    });
    report(&row, ours, port);
}

fn bench_pool(c: &mut Ctx, b: &mut Bufs, row: Row) {
    let g = Pool2dGeometry {
        in_h: 28,
        in_w: 28,
        channels: 8,
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 2,
        stride_w: 2,
    };
    let n_in = 28 * 28 * 8;
    fill_i8(&mut c.rng, &mut b.x[..n_in]);
    let (x, y) = (&b.x[..n_in], &mut b.y[..n_in / 4]);
    let ours = measure(c.counter, c.overhead, reps_for(row.work), || {
        kernels::max_pool2d(black_box(x), &g, black_box(&mut *y)).unwrap();
    });
    let port = measure(c.counter, c.overhead, reps_for(10 * row.work), || {
        portable::max_pool2d(black_box(x), &g, black_box(&mut *y)).unwrap();
    });
    report(&row, ours, port);
}

fn bench_softmax(c: &mut Ctx, b: &mut Bufs, row: Row) {
    for v in b.logits.iter_mut() {
        *v = c.rng.normal() * 3.0;
    }
    let (logits, probs) = (&b.logits, &mut b.probs);
    let ours = measure(c.counter, c.overhead, reps_for(60 * row.work), || {
        probs.copy_from_slice(black_box(logits));
        kernels::softmax_f32(black_box(&mut probs[..]));
    });
    let copy = measure(c.counter, c.overhead, reps_for(60 * row.work), || {
        probs.copy_from_slice(black_box(logits));
        black_box(&mut probs[..]);
    });
    let port = measure(c.counter, c.overhead, reps_for(60 * row.work), || {
        probs.copy_from_slice(black_box(logits));
        portable::softmax_f32(black_box(&mut probs[..]));
    });
    report(&row, ours.saturating_sub(copy), port.saturating_sub(copy));
}

fn bench_qk(c: &mut Ctx, b: &mut Bufs, row: Row) {
    fill_i8(&mut c.rng, &mut b.q);
    fill_i8(&mut c.rng, &mut b.k);
    let (q, k, s) = (&b.q, &b.k, &mut b.scores);
    let ours = measure(c.counter, c.overhead, reps_for(2 * row.work), || {
        kernels::qk_scores(black_box(q), black_box(k), 32, black_box(&mut s[..])).unwrap();
    });
    let port = measure(c.counter, c.overhead, reps_for(8 * row.work), || {
        portable::qk_scores(black_box(q), black_box(k), 32, black_box(&mut s[..])).unwrap();
    });
    report(&row, ours, port);
}

/// GPT-decode building blocks (no CMSIS-NN figure or goal in the issue): `matvec_i32` for the
/// projections and one `dot_i8` per row (what a row-by-row implementation calls), at the
/// shapes of the committed 64-dim model's MLP.
fn bench_gpt_blocks(c: &mut Ctx, b: &mut Bufs) {
    let (n_in, n_out) = (64, 256);
    fill_i8(&mut c.rng, &mut b.x[..n_in]);
    for v in b.w[..n_in * n_out].iter_mut() {
        *v = c.rng.next_u32() as u8;
    }
    let (x, w, s) = (&b.x[..n_in], &b.w[..n_in * n_out], &mut b.scores[..n_out]);
    let row = Row {
        name: "matvec_i32 64->256 (GPT MLP up-projection)",
        work: (n_in * n_out) as u64,
        unit: "MAC",
        cmsis: 0,
        goal_x100: 0,
    };
    let ours = measure(c.counter, c.overhead, reps_for(2 * row.work), || {
        kernels::matvec_i32(black_box(x), black_box(w), black_box(&mut s[..])).unwrap();
    });
    let port = measure(c.counter, c.overhead, reps_for(6 * row.work), || {
        portable::matvec_i32(black_box(x), black_box(w), black_box(&mut s[..])).unwrap();
    });
    report(&row, ours, port);
    let row = Row {
        name: "256 x dot_i8 of 64 (the same, row by row)",
        ..row
    };
    let ours = measure(c.counter, c.overhead, reps_for(3 * row.work), || {
        for (y, r) in s.iter_mut().zip(w.chunks_exact(n_in)) {
            *y = kernels::dot_i8(black_box(x), black_box(r));
        }
    });
    let port = measure(c.counter, c.overhead, reps_for(6 * row.work), || {
        for (y, r) in s.iter_mut().zip(w.chunks_exact(n_in)) {
            *y = portable::dot_i8(black_box(x), black_box(r));
        }
    });
    report(&row, ours, port);
}

/// Pieces of a GPT decode step besides the projections (for the notes): the activation of one
/// hidden vector (the up-projection's i32 sums quantized, then looked up in the block's 256-entry
/// table, as `core/src/gpt/forward.rs` does) and one head's attention scores at 32 cached
/// tokens (what it calls per head).
fn bench_gpt_pieces(c: &mut Ctx, b: &mut Bufs) {
    let mut sums = [0i32; 256];
    for v in sums.iter_mut() {
        *v = (c.rng.normal() * 20_000.0) as i32;
    }
    let mut lut = [0u8; 256];
    for v in lut.iter_mut() {
        *v = c.rng.next_u32() as u8;
    }
    let row = Row {
        name: "GPT MLP activation (quantize + 256-entry table) over 256 values",
        work: 256,
        unit: "element",
        cmsis: 0,
        goal_x100: 0,
    };
    let mut out = [0i8; 256];
    let ours = measure(c.counter, c.overhead, 20, || {
        let lut = black_box(&lut);
        for (o, &v) in out.iter_mut().zip(black_box(&sums).iter()) {
            *o = lut[aka_core::kernels::quantize(v as f32, 0.004) as u8 as usize] as i8;
        }
        black_box(&out);
    });
    report(&row, ours, ours);
    fill_i8(&mut c.rng, &mut b.q[..16]);
    fill_i8(&mut c.rng, &mut b.k[..32 * 16]);
    let (q, k, sc) = (&b.q[..16], &b.k[..32 * 16], &mut b.scores[..32]);
    let row = Row {
        name: "GPT one head's scores: qk_scores 1x16 by 32x16",
        work: 32 * 16,
        unit: "MAC",
        cmsis: 0,
        goal_x100: 0,
    };
    let ours = measure(c.counter, c.overhead, 200, || {
        kernels::qk_scores(black_box(q), black_box(k), 16, black_box(&mut sc[..])).unwrap();
    });
    let port = measure(c.counter, c.overhead, 200, || {
        portable::qk_scores(black_box(q), black_box(k), 16, black_box(&mut sc[..])).unwrap();
    });
    report(&row, ours, port);
}

/// aka-core's offset-binary fully connected kernel (`kernels::matvec_i32_offset`, the
/// `int8-offset` weight type: docs/RESULTS.md, "Offset-binary weights in aka-core") next to
/// `kernels::matvec_i32` (the three-row kernel) on the same random weights, converted with
/// `kernels::to_offset_binary` and `kernels::offset_row_const` (the exporter's definition); the
/// run panics if the two give different sums (`dsp_check` covers the edge cases).
fn bench_offset(c: &mut Ctx, b: &mut Bufs) {
    let mut rng = Rng::new(4242);
    // (n, n_out, the plain kernel's row name, the offset-binary kernel's row name).
    macro_rules! shape {
        ($n:literal, $n_out:literal) => {
            (
                $n,
                $n_out,
                concat!("matvec_i32 ", $n, "->", $n_out, ", three-row (aka-core)"),
                concat!(
                    "matvec_i32_offset ",
                    $n,
                    "->",
                    $n_out,
                    ", offset-binary weights (aka-core, int8-offset)"
                ),
            )
        };
    }
    let shapes: [(usize, usize, &str, &str); 7] = [
        shape!(784, 576),
        shape!(128, 384),
        shape!(128, 128),
        shape!(128, 256),
        shape!(128, 512),
        shape!(512, 128),
        shape!(128, 65),
    ];
    /// The row constants as the model file stores them (i32 LE bytes, word-aligned).
    #[repr(align(4))]
    struct Consts([u8; 4 * C_CAP]);
    let mut consts = Consts([0; 4 * C_CAP]);
    for (n, n_out, plain_name, offset_name) in shapes {
        let (r, y) = b.scores.split_at_mut(2048);
        fill_i8(&mut rng, &mut b.x[..n]);
        for v in b.w[..n * n_out].iter_mut() {
            *v = rng.next_u32() as u8;
        }
        let row = Row {
            name: plain_name,
            work: (n * n_out) as u64,
            unit: "MAC",
            cmsis: 0,
            goal_x100: 0,
        };
        let (x, s) = (&b.x[..n], &mut r[..n_out]);
        let reps = reps_for(2 * row.work);
        let plain = measure(c.counter, c.overhead, reps, || {
            kernels::matvec_i32(
                black_box(x),
                black_box(&b.w[..n * n_out]),
                black_box(&mut *s),
            )
            .unwrap();
        });
        let port = measure(c.counter, c.overhead, reps_for(6 * row.work), || {
            portable::matvec_i32(
                black_box(x),
                black_box(&b.w[..n * n_out]),
                black_box(&mut *s),
            )
            .unwrap();
        });
        report(&row, plain, port);
        // The same weights in the offset-binary layout, with their row constants as bytes.
        for (o, k) in consts.0[..4 * n_out].chunks_exact_mut(4).enumerate() {
            let row = &mut b.w[o * n..(o + 1) * n];
            k.copy_from_slice(&kernels::offset_row_const(row).to_le_bytes());
            kernels::to_offset_binary(row);
        }
        let (wo, cb) = (&b.w[..n * n_out], &consts.0[..4 * n_out]);
        let ys = &mut y[..n_out];
        ys.fill(0x5a5a_5a5a);
        let offset = measure(c.counter, c.overhead, reps, || {
            kernels::matvec_i32_offset(
                black_box(x),
                black_box(wo),
                black_box(cb),
                black_box(&mut *ys),
            )
            .unwrap();
        });
        if ys != s {
            defmt::panic!(
                "aka-core matvec_i32_offset {=usize}->{=usize} differs from matvec_i32",
                n,
                n_out
            );
        }
        report(
            &Row {
                name: offset_name,
                ..row
            },
            offset,
            port,
        );
    }
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    let board = fw::init(&mut cp);
    // SAFETY: the only reference to BUFS, taken once in a single-threaded program.
    let b = unsafe { &mut *core::ptr::addr_of_mut!(BUFS) };
    let overhead = board.counter.overhead();
    defmt::info!(
        "bench on {=str}: counts in {}, DSP kernels {=bool}, measurement overhead {} subtracted",
        fw::BOARD,
        Counter::UNIT,
        kernels::DSP,
        overhead
    );
    let mut c = Ctx {
        counter: board.counter,
        overhead,
        rng: Rng::new(2024),
    };
    let fc = |name, n_in: usize, n_out: usize, cmsis, goal| Row {
        name,
        work: (n_in * n_out) as u64,
        unit: "MAC",
        cmsis,
        goal_x100: goal,
    };
    bench_linear(
        &mut c,
        b,
        fc("fully connected 784->576", 784, 576, 879_977, 130),
        784,
        576,
        false,
        0,
    );
    bench_linear(
        &mut c,
        b,
        fc("fully connected 576->10", 576, 10, 11_512, 160),
        576,
        10,
        true,
        0,
    );
    bench_linear(
        &mut c,
        b,
        fc("fully connected 128->384", 128, 384, 114_377, 150),
        128,
        384,
        false,
        0,
    );
    bench_linear(
        &mut c,
        b,
        fc("fully connected 512->128", 512, 128, 130_377, 140),
        512,
        128,
        false,
        0,
    );
    bench_linear(
        &mut c,
        b,
        fc("fully connected 128->65", 128, 65, 19_549, 160),
        128,
        65,
        true,
        0,
    );
    bench_linear(
        &mut c,
        b,
        fc(
            "fully connected 784->576, weights at addr%4=1",
            784,
            576,
            0,
            0,
        ),
        784,
        576,
        false,
        1,
    );
    // int4 weights. CMSIS-NN: `arm_fully_connected_s4` at 4.94 and 5.26 instructions per MAC
    // (the int4 issue's measurement: commit 99f736a, gcc 12.2 -Ofast, the same QEMU method).
    bench_linear_s4(
        &mut c,
        b,
        fc("fully connected 784->576 int4", 784, 576, 2_230_825, 150),
        784,
        576,
    );
    bench_linear_s4(
        &mut c,
        b,
        fc("fully connected 128->384 int4", 128, 384, 258_540, 0),
        128,
        384,
    );
    let conv = |name, hw: usize, in_c: usize, out_c: usize, cmsis, goal| Row {
        name,
        work: (hw * hw * out_c * 9 * in_c) as u64,
        unit: "MAC",
        cmsis,
        goal_x100: goal,
    };
    bench_conv(
        &mut c,
        b,
        conv("conv 3x3 pad 1, 28x28x1->8", 28, 1, 8, 794_444, 300),
        28,
        1,
        8,
        -128,
        1.0 / 255.0,
    );
    bench_conv(
        &mut c,
        b,
        conv("conv 3x3 pad 1, 14x14x8->16", 14, 8, 16, 648_403, 180),
        14,
        8,
        16,
        -128,
        0.02,
    );
    bench_pool(
        &mut c,
        b,
        Row {
            name: "max pool 2x2 stride 2, 28x28x8",
            work: 28 * 28 * 8,
            unit: "input element",
            cmsis: 83_074,
            goal_x100: 400,
        },
    );
    bench_softmax(
        &mut c,
        b,
        Row {
            name: "softmax over 65 values (f32)",
            work: 65,
            unit: "element",
            cmsis: 34_173,
            goal_x100: 10_000,
        },
    );
    bench_qk(
        &mut c,
        b,
        Row {
            name: "int8 Q.K^T, 64x32 by 64x32",
            work: 64 * 64 * 32,
            unit: "MAC",
            cmsis: 454_308,
            goal_x100: 200,
        },
    );
    bench_gpt_blocks(&mut c, b);
    bench_gpt_pieces(&mut c, b);
    models::whole_models(&mut c);
    bench_offset(&mut c, b);
    defmt::info!("bench done");
    fw::exit(0)
}
