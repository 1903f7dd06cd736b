//! MNIST on the microcontroller: classifies the embedded test images with the embedded int8
//! model (`AKA_MNIST_MODEL`, default `mnist-cnn.aka`), logs each prediction with a checksum of
//! its scores, the accuracy, the count per inference and a per-layer profile; exits 0.
//!
//! `cargo run --release --bin mnist` (QEMU); see `src/app/mnist.rs` and the README.
#![no_std]
#![no_main]

use aka_firmware::{self as fw, app, app::Aligned};
use cortex_m_rt::entry;

/// The model file, 4-byte aligned, in flash.
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/",
    env!("AKA_MNIST_MODEL")
)));
/// The first N MNIST test images (N × 784 bytes) and their labels (N bytes). Wrapped like
/// `MODEL` so that each is a named object in the ELF (`mnist::IMAGES::{{nested}}`), which
/// `aka inspect --elf` subtracts from the flash to get the runtime code.
static IMAGES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/mnist-test-images.u8"
)));
static LABELS: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/mnist-test-labels.u8"
)));

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    let board = fw::init(&mut cp);
    app::mnist::run(&board, &MODEL.0, &IMAGES.0, &LABELS.0);
    fw::stack::log_high_water();
    defmt::info!("done");
    fw::exit(fw::exit_code::SUCCESS)
}
