//! The `mnist` demo: classify the embedded MNIST test images with the embedded int8 model.
//!
//! `bin/mnist.rs` embeds (see `build.rs`) the model `AKA_MODEL_DIR/AKA_MNIST_MODEL` (default
//! `mnist-cnn.aka`) and the test set `AKA_MODEL_DIR/mnist-test-images.u8` (N × 784 pixels, row
//! major, 0 = background) with `mnist-test-labels.u8` (N labels, one byte each): the first N
//! images of the MNIST test set (`models/make-models.sh` writes them).
//!
//! Log lines (parsed by `tests/tests/device.rs`):
//!
//! ```text
//! img 0: label 7, predicted 7, fnv1a 0x1c8ee4a9, 123456 instructions
//! accuracy: 99/100 correct (99.00%)
//! ```
//!
//! `fnv1a` is the 32-bit FNV-1a hash of the model's int8 output scores taken as bytes
//! ([`super::fnv1a_i8`]): equal hashes mean equal scores. The count is the inference
//! (`classify_u8`: pixel quantization, all layers, argmax) minus the measurement overhead.

#[cfg(feature = "profile")]
use aka_core::Error;
use aka_core::SequentialModel;
use defmt::unwrap;

use super::{fnv1a_i8, percent};
#[cfg(feature = "profile")]
use crate::Span;
use crate::{Board, Counter, Unit};

/// File name of the model `bin/mnist.rs` embeds (build-time `AKA_MNIST_MODEL`).
pub const MODEL_NAME: &str = env!("AKA_MNIST_MODEL");

/// Arena bytes: the CNN needs 12,544 (2 × 28·28·8), the MLP 1,568 (2 × 784).
pub const ARENA_LEN: usize = 16 * 1024;

static mut ARENA: [i8; ARENA_LEN] = [0; ARENA_LEN];

/// The whole demo on `model` (a model file), `images` (`count × input_len` pixels) and
/// `labels` (`count` bytes); returns the number of correct predictions.
pub fn run(board: &Board, bytes: &[u8], images: &[u8], labels: &[u8]) -> usize {
    let counter = board.counter;
    let model = unwrap!(SequentialModel::load(bytes));
    let input = model.input_shape();
    let n_layers = model.layers().len();
    defmt::info!(
        "mnist on {=str}: model {=str}, {=usize} bytes, {=usize} layers, {=usize} parameters, input {=u32}x{=u32}x{=u32}, {=usize} classes",
        crate::BOARD,
        MODEL_NAME,
        bytes.len(),
        n_layers,
        model.param_count(),
        input.h,
        input.w,
        input.c,
        model.output_len()
    );

    let need = model.arena_size();
    defmt::info!(
        "arena: need {=usize} bytes, have {=usize} (static)",
        need,
        ARENA_LEN
    );
    if need > ARENA_LEN {
        defmt::panic!(
            "arena too small: the model needs {=usize} bytes, ARENA_LEN is {=usize}",
            need,
            ARENA_LEN
        );
    }
    // SAFETY: the only reference to ARENA, taken once in a single-threaded program.
    let arena: &mut [i8] = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };

    let n_in = model.input_len();
    let count = labels.len();
    if n_in == 0 || images.len() != count * n_in {
        defmt::panic!(
            "test set: {=usize} image bytes for {=usize} labels of {=usize} pixels",
            images.len(),
            count,
            n_in
        );
    }
    defmt::info!("test set: {=usize} images", count);

    let overhead = counter.overhead();
    let mut correct = 0usize;
    let (mut total, mut min, mut max) = (0u64, u64::MAX, 0u64);
    for (i, (pixels, &label)) in images.chunks_exact(n_in).zip(labels).enumerate() {
        let (m, a) = (&model, &mut *arena);
        let (result, span) = counter.measure(move || m.classify_u8(pixels, a));
        let (class, scores) = unwrap!(result);
        let n = span.saturating_sub(overhead).count;
        total += n;
        min = min.min(n);
        max = max.max(n);
        let ok = class == usize::from(label);
        correct += usize::from(ok);
        defmt::info!(
            "img {=usize}: label {=u8}, predicted {=usize}, fnv1a {=u32:#010x}, {=u64} {=str}{=str}",
            i,
            label,
            class,
            fnv1a_i8(scores),
            n,
            Counter::UNIT.name(),
            if ok { "" } else { " WRONG" }
        );
    }

    let (whole, frac) = percent(correct as u64, count as u64);
    defmt::info!(
        "accuracy: {=usize}/{=usize} correct ({=u64}.{=u64:02}%)",
        correct,
        count,
        whole,
        frac
    );
    let mean = total / count.max(1) as u64;
    defmt::info!(
        "per inference: {=u64} {=str} (mean of {=usize}; min {=u64}, max {=u64}; overhead {=u64} subtracted)",
        mean,
        Counter::UNIT.name(),
        count,
        min,
        max,
        overhead.count
    );
    if Counter::UNIT == Unit::Cycles {
        let us = mean * 1_000_000 / u64::from(counter.hz().max(1));
        defmt::info!(
            "per inference: {=u64}.{=u64:03} ms at {=u32} MHz",
            us / 1000,
            us % 1000,
            counter.hz() / 1_000_000
        );
    }

    // Per-layer profile of image 0 (feature `profile`): `SequentialModel::forward_observed`
    // timestamps each layer's end, checked against `classify_u8`'s scores.
    #[cfg(feature = "profile")]
    if let Some(pixels) = images.get(..n_in) {
        let (class, expected) = unwrap!(model.classify_u8(pixels, &mut *arena));
        let want = fnv1a_i8(expected);
        let mut spans = [0u64; aka_core::format::MAX_LAYERS];
        let scores = unwrap!(profile(
            &model, pixels, arena, counter, overhead, &mut spans
        ));
        let got = fnv1a_i8(scores);
        let sum: u64 = spans.iter().sum();
        for (i, info) in model.layer_infos().enumerate() {
            let n = spans.get(i).copied().unwrap_or(0);
            let (w, f) = percent(n, sum);
            defmt::info!(
                "layer {=usize} {=str}: {=u32}x{=u32}x{=u32} -> {=u32}x{=u32}x{=u32}, {=u64} {=str} ({=u64}.{=u64:02}%)",
                i,
                info.layer.name(),
                info.input.h,
                info.input.w,
                info.input.c,
                info.output.h,
                info.output.w,
                info.output.c,
                n,
                Counter::UNIT.name(),
                w,
                f
            );
        }
        defmt::info!(
            "layers total: {=u64} {=str} (image 0; the rest of an inference is pixel quantization and argmax); scores {=str} classify_u8 (class {=usize})",
            sum,
            Counter::UNIT.name(),
            if got == want { "match" } else { "DIFFER from" },
            class
        );
        if got != want {
            defmt::panic!("per-layer run differs from classify_u8");
        }
    }
    correct
}

/// Largest input the profiler quantizes (on the stack).
#[cfg(feature = "profile")]
const PROFILE_INPUT_MAX: usize = 1024;

#[cfg(feature = "profile")]
/// Runs the model with [`SequentialModel::forward_observed`], timing each layer (from the end of
/// the previous one, or the start) into `spans`; the pixels are quantized as `classify_u8` does.
fn profile<'b>(
    model: &SequentialModel<'_>,
    pixels: &[u8],
    arena: &'b mut [i8],
    counter: Counter,
    overhead: Span,
    spans: &mut [u64],
) -> Result<&'b [i8], Error> {
    let mut input = [0i8; PROFILE_INPUT_MAX];
    let input = input.get_mut(..pixels.len()).ok_or(Error::BadArgument {
        what: "input larger than PROFILE_INPUT_MAX",
    })?;
    for (q, &p) in input.iter_mut().zip(pixels) {
        *q = model.quantize_pixel(p);
    }
    let mut last = counter.now();
    model.forward_observed(input, arena, |i, _| {
        let now = counter.now();
        if let Some(span) = spans.get_mut(i) {
            *span = now.saturating_sub(last).saturating_sub(overhead.count);
        }
        last = counter.now();
    })
}
