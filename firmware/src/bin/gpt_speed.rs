//! Decode speed of the embedded GPT (`AKA_MODEL_DIR/AKA_GPT_MODEL`, default `gpt.aka`) over one
//! full context, with a per-step profile; exits 0.
//!
//! From an empty cache, positions `0..block_size`: position 0 gets the first char of
//! [`PROMPT`], every later position the token sampled (temperature 0.8, top-k 40, seed 1) from
//! the previous logits. Each step is one `GptModel::forward_profiled` plus one
//! `aka_core::sample::sample`, so attention averages `(block_size + 1) / 2` cached tokens: the
//! issue's "averaged over a full context, including attention and sampling". Then the same
//! steps again with a counter read at every [`Step`] boundary, for the breakdown (each read's
//! measured overhead subtracted; under QEMU the counter ticks every 40 instructions, so a
//! bucket is exact only on average, while the total of the first pass is exact).
//!
//! Last, the projections' fully connected kernel alone (`matvec_i32` / `matvec_i32_s4`, the same
//! calls as one step, on a zero input, without the epilogues), to separate it from the rest.
//!
//! Log lines (`bash firmware/gpt-speed.sh` parses the `SPEED|` ones):
//!
//! ```text
//! SPEED|total|<weight_macs>|<instructions per step>|<steps>
//! SPEED|<step>|<instructions per step>
//! SPEED|fc_alone|<instructions per step>
//! ```
//!
//! Also logs an FNV-1a hash of every logit's bits over the context (`logits fnv1a 0x…`), to check
//! that a change of the runtime keeps the results bit-identical.
//!
//! `cargo run --release --bin gpt_speed` (QEMU; the buffers fit models up to 1 MiB of state).
#![no_std]
#![no_main]

use aka_core::format::{QMatrix, WeightType};
use aka_core::gpt::{GptModel, Step};
use aka_core::kernels;
use aka_core::rng::Rng;
use aka_core::sample::{sample, Sampling};
use aka_firmware::{self as fw, app::Aligned};
use cortex_m_rt::entry;
use defmt::unwrap;

/// The model file, 4-byte aligned, in flash.
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/",
    env!("AKA_GPT_MODEL")
)));

/// The first token is this text's first char.
const PROMPT: &str = "ROMEO:";
/// The `gpt` binary's sampling.
const SAMPLING: Sampling = Sampling {
    temperature: 0.8,
    top_k: 40,
};
/// f32 run state.
const F32_LEN: usize = 16 * 1024;
/// i8 run state (KV cache + scratch).
const I8_LEN: usize = 1024 * 1024;
/// Sampling scratch (`vocab_size`).
const VOCAB_MAX: usize = 1024;

struct Buffers {
    f: [f32; F32_LEN],
    kv: [i8; I8_LEN],
    scratch: [f32; VOCAB_MAX],
}

static mut BUFFERS: Buffers = Buffers {
    f: [0.0; F32_LEN],
    kv: [0; I8_LEN],
    scratch: [0.0; VOCAB_MAX],
};

/// Index of the sampling bucket (after the model's steps).
const SAMPLE: usize = Step::ALL.len();

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    let board = fw::init(&mut cp);
    let counter = board.counter;
    let model = unwrap!(GptModel::load(&MODEL.0));
    let cfg = model.config();
    let block = model.block_size();
    defmt::info!(
        "gpt_speed on {=str}: {=str}, {=u32} layers, {=u32} heads, {=u32} dims, context {=usize}, {=usize} chars, weights {=?}",
        fw::BOARD,
        env!("AKA_GPT_MODEL"),
        cfg.n_layer,
        cfg.n_head,
        cfg.d_model,
        block,
        model.vocab_size(),
        model.desc().blocks.as_slice().first().map(|b| b.wq.weight_type)
    );
    // SAFETY: the only reference to BUFFERS, taken once in a single-threaded program.
    let b = unsafe { &mut *core::ptr::addr_of_mut!(BUFFERS) };
    if model.vocab_size() > VOCAB_MAX {
        defmt::panic!("vocabulary larger than VOCAB_MAX");
    }
    let mut state = unwrap!(model.new_state(&mut b.f, &mut b.kv));
    let scratch = &mut b.scratch[..];
    let first = PROMPT
        .chars()
        .next()
        .and_then(|c| model.char_id(c))
        .unwrap_or(0);
    let overhead = counter.overhead().count;

    // Pass 1: the exact total.
    let mut rng = Rng::new(1);
    let mut token = first;
    let (_, span) = counter.measure(|| {
        for pos in 0..block {
            let logits = unwrap!(model.forward(&mut state, token, pos));
            token = unwrap!(sample(logits, &SAMPLING, &mut rng, scratch));
        }
    });
    // Pass 1b (not timed): the same steps, hashing every logit's bits (FNV-1a), so that a
    // change of the runtime can be checked for identical results.
    let mut rng = Rng::new(1);
    let mut t = first;
    let mut hash: u32 = 0x811c_9dc5;
    for pos in 0..block {
        let logits = unwrap!(model.forward(&mut state, t, pos));
        for l in logits.iter() {
            for byte in l.to_bits().to_le_bytes() {
                hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
            }
        }
        t = unwrap!(sample(logits, &SAMPLING, &mut rng, scratch));
    }
    defmt::info!("logits fnv1a {=u32:#010x}", hash);
    let total = span.count.saturating_sub(overhead);
    let steps = block as u64;
    let per_step = total / steps.max(1);
    let wm = model.weight_macs();
    let x100 = per_step * 100 / wm.max(1);
    defmt::info!(
        "per step: {=u64} instructions (mean of {=u64} steps: forward + sample), {=u64} weight-MACs: {=u64}.{=u64:02} per weight-MAC; last token {=u32}",
        per_step,
        steps,
        wm,
        x100 / 100,
        x100 % 100,
        token
    );
    defmt::info!("SPEED|total|{=u64}|{=u64}|{=u64}", wm, per_step, steps);

    // Pass 2: the same steps (same tokens), a counter read at every step boundary.
    let mut buckets = [0u64; SAMPLE + 1];
    let mut rng = Rng::new(1);
    let mut token2 = first;
    for pos in 0..block {
        let mut last = counter.now();
        let logits = unwrap!(model.forward_profiled(&mut state, token2, pos, |step| {
            let now = counter.now();
            buckets[step.index()] += (now - last).saturating_sub(overhead);
            last = counter.now();
        }));
        token2 = unwrap!(sample(logits, &SAMPLING, &mut rng, scratch));
        buckets[SAMPLE] += (counter.now() - last).saturating_sub(overhead);
    }
    if token2 != token {
        defmt::panic!("the profiled pass sampled different tokens");
    }
    let sum: u64 = buckets.iter().sum();
    for (i, &c) in buckets.iter().enumerate() {
        let name = Step::ALL.get(i).map_or("sample", |s| s.name());
        let per = c / steps.max(1);
        let pct = c * 1000 / sum.max(1);
        defmt::info!(
            "  {=str} {=u64} per step ({=u64}.{=u64} %)",
            name,
            per,
            pct / 10,
            pct % 10
        );
        defmt::info!("SPEED|{=str}|{=u64}", name, per);
    }
    defmt::info!(
        "profiled sum {=u64} per step (exact total {=u64})",
        sum / steps.max(1),
        per_step
    );

    // The projections' fully connected kernel alone: the same matvec calls as one decode step
    // (256 rows per call, as `forward` does), on a zero input, without the epilogues.
    let desc = model.desc();
    let d = cfg.d_model as usize;
    let hidden = cfg.hidden as usize;
    let x = [0i8; 4096];
    let mut acc = [0i32; 256];
    let mut fc = |m: &QMatrix, cols: usize, rows: usize| {
        let rb = m.weight_type.row_bytes(cols);
        let (ws, consts) = m.weight_type.split_matrix(m.weights, rows, cols);
        let mut r0 = 0;
        while r0 < rows {
            let n = (rows - r0).min(256);
            let w = &ws[r0 * rb..(r0 + n) * rb];
            let done = match m.weight_type {
                WeightType::Int8 => kernels::matvec_i32(&x[..cols], w, &mut acc[..n]),
                WeightType::Int4 => kernels::matvec_i32_s4(&x[..cols], w, &mut acc[..n]),
                WeightType::Int8Offset => kernels::matvec_i32_offset(
                    &x[..cols],
                    w,
                    &consts[r0 * 4..(r0 + n) * 4],
                    &mut acc[..n],
                ),
            };
            unwrap!(done);
            r0 += n;
        }
    };
    let head = desc.lm_head.as_ref().unwrap_or(&desc.tok_emb);
    let (_, span) = counter.measure(|| {
        for blk in desc.blocks.as_slice() {
            for m in [&blk.wq, &blk.wk, &blk.wv, &blk.wo] {
                fc(m, d, d);
            }
            fc(&blk.w1, d, hidden);
            if let Some(w3) = &blk.w3 {
                fc(w3, d, hidden);
            }
            fc(&blk.w2, hidden, d);
        }
        fc(head, d, model.vocab_size());
    });
    let fc_count = span.count.saturating_sub(overhead);
    let x100 = fc_count * 100 / wm.max(1);
    defmt::info!(
        "fully connected kernel alone: {=u64} instructions per step = {=u64}.{=u64:02} per weight-MAC (hidden {=usize})",
        fc_count,
        x100 / 100,
        x100 % 100,
        hidden
    );
    defmt::info!("SPEED|fc_alone|{=u64}", fc_count);
    fw::exit(fw::exit_code::SUCCESS)
}
