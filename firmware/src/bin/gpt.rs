//! The tiny GPT on the microcontroller: generates text from a prompt with the embedded int8
//! model (`AKA_GPT_MODEL`, default `gpt.aka`) and a fixed seed, streaming it through defmt, and
//! reports the count per token; exits 0.
//!
//! `cargo run --release --bin gpt` (QEMU); see `src/app/gpt.rs` and the README.
#![no_std]
#![no_main]

use aka_firmware::{self as fw, app, app::Aligned};
use cortex_m_rt::entry;

/// The model file, 4-byte aligned, in flash.
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/",
    env!("AKA_GPT_MODEL")
)));

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    let board = fw::init(&mut cp);
    app::gpt::run(&board, &MODEL.0);
    fw::stack::log_high_water();
    defmt::info!("done");
    fw::exit(fw::exit_code::SUCCESS)
}
