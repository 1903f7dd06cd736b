//! The tiny GPT behind the board's serial port: type a line, get the continuation streamed back.
//! Commands `/tokens N`, `/temperature T`, `/top-k K`, `/seed S`, `/reset`; the protocol is in
//! `aka_core::chat` and the README. Never exits (the host stops QEMU).
//!
//! `aka chat --qemu` builds and runs it in QEMU with UART0 on a Unix socket; on a board, flash it
//! with `probe-rs run`/`download` and use `aka chat --serial PORT`. See `src/app/chat.rs`.
#![no_std]
#![no_main]

use aka_firmware::{self as fw, app, app::Aligned};
use cortex_m_rt::entry;

/// The model file (`AKA_GPT_MODEL`, default `gpt.aka`), 4-byte aligned, in flash.
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/",
    env!("AKA_GPT_MODEL")
)));

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    let board = fw::init(&mut cp);
    let mut serial = defmt::unwrap!(fw::Serial::take());
    app::chat::run(&board, &MODEL.0, &mut serial)
}
