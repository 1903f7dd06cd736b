//! aka-core in an embassy app (nRF52840-DK): one task classifies the embedded MNIST test images
//! with the embedded int8 CNN and logs each result with defmt; another blinks LED1 on a
//! `Ticker`. Both share the core through the async executor.
#![no_std]
#![no_main]

use aka_core::SequentialModel;
use defmt::{error, info, unwrap};
use embassy_executor::Spawner;
use embassy_nrf::gpio::{Level, Output, OutputDrive};
use embassy_time::{Duration, Instant, Ticker, Timer};
use {defmt_rtt as _, panic_probe as _};

// `const ARENA_LEN: usize`: the model's `arena_size()`, computed by build.rs at build time.
include!(concat!(env!("OUT_DIR"), "/arena.rs"));

/// A byte array at a 4-byte aligned address: aka-core reads model files at any alignment, but
/// word-aligned weights let the Cortex-M4 DSP kernels use aligned loads.
#[repr(C, align(4))]
struct Aligned<B: ?Sized>(B);

/// The int8 model file, in flash: the loader borrows the weights, nothing is copied to RAM.
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("AKA_MODEL")));
/// The first MNIST test images (784 pixels each, row-major) and their labels.
static IMAGES: &[u8] = include_bytes!(env!("AKA_IMAGES"));
static LABELS: &[u8] = include_bytes!(env!("AKA_LABELS"));

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_nrf::init(Default::default());
    // LED1 of the nRF52840-DK is P0.13, active low: start off.
    let led = Output::new(p.P0_13, Level::High, OutputDrive::Standard);
    spawner.spawn(unwrap!(blink(led)));
    spawner.spawn(unwrap!(classify()));
}

/// Toggles the LED every 250 ms. A `Ticker` keeps the period even when a wake-up comes late
/// (here: while an inference is running, at most one inference late).
#[embassy_executor::task]
async fn blink(mut led: Output<'static>) {
    let mut ticker = Ticker::every(Duration::from_millis(250));
    loop {
        led.toggle();
        ticker.next().await;
    }
}

/// Loads the model, then classifies every embedded image, yielding to the other tasks between
/// images.
#[embassy_executor::task]
async fn classify() {
    let model = match SequentialModel::load(&MODEL.0) {
        Ok(model) => model,
        Err(e) => return error!("model rejected: {}", e),
    };
    let need = model.arena_size();
    if need > ARENA_LEN {
        // Only if the model changed after the build: build.rs sizes ARENA_LEN from this file.
        return error!(
            "arena too small: the model needs {=usize} bytes, ARENA_LEN is {=usize}; rebuild",
            need, ARENA_LEN
        );
    }
    info!(
        "model: {=usize} bytes, {=usize} layers, {=usize} parameters; arena {=usize} bytes",
        MODEL.0.len(),
        model.layers().len(),
        model.param_count(),
        ARENA_LEN
    );

    // The arena lives in this task's future, which the executor allocates statically (.bss).
    let mut arena = [0i8; ARENA_LEN];
    let n_in = model.input_len();
    let mut correct = 0;
    for (i, (pixels, &label)) in IMAGES.chunks_exact(n_in).zip(LABELS).enumerate() {
        let start = Instant::now();
        // Blocking: one inference runs to completion; other tasks wait until the next await.
        let (class, _scores) = match model.classify_u8(pixels, &mut arena) {
            Ok(result) => result,
            Err(e) => return error!("image {=usize}: {}", i, e),
        };
        let us = start.elapsed().as_micros();
        correct += usize::from(class == usize::from(label));
        info!(
            "image {=usize}: label {=u8}, predicted {=usize}, {=u64} us",
            i, label, class, us
        );
        Timer::after_millis(100).await; // let the LED task (and anything else) run
    }
    info!("accuracy: {=usize}/{=usize}", correct, LABELS.len());
}
