//! Smoke test for a board: logs, measures a known loop with the board's counter, and exits 0.
//!
//! `cargo run --release --bin hello` (QEMU). The failure paths are exercised by the `fault` binary.
#![no_std]
#![no_main]

use aka_firmware::{self as fw, Counter};
use cortex_m_rt::entry;
use embedded_hal::{delay::DelayNs, digital::OutputPin};

/// The measured loop: `n` rounds of a xorshift32 step plus an accumulate (6 data-processing
/// instructions), which the compiler can neither fold into a closed form nor vectorise.
#[inline(never)]
fn xorshift_loop(n: u32) -> u32 {
    let mut x: u32 = 0x2545_f491;
    let mut acc: u32 = 0;
    for _ in 0..core::hint::black_box(n) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        acc = acc.wrapping_add(x);
    }
    acc
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    let mut board = fw::init(&mut cp);
    let counter = board.counter;
    defmt::info!("aka firmware on {=str}: hello", fw::BOARD);
    defmt::info!(
        "counter unit: {}, {=u32} per second",
        Counter::UNIT,
        counter.hz()
    );

    let overhead = counter.overhead();
    let (a, b) = (counter.now(), counter.now());
    defmt::info!(
        "now() overhead: {} per call (256-call average); one back-to-back pair: {=u64}",
        overhead,
        b - a
    );

    for n in [1000u32, 10_000] {
        let (acc, span) = counter.measure(|| xorshift_loop(n));
        let net = span.saturating_sub(overhead);
        defmt::info!(
            "xorshift_loop({=u32}) = {=u32:#010x}: {} ({=u64}.{=u64:02} per iteration, overhead subtracted)",
            n,
            acc,
            span,
            net.count / u64::from(n),
            net.count * 100 / u64::from(n) % 100
        );
    }

    board.led.set_high().unwrap();
    let mut delay = board.delay();
    let (_, span) = counter.measure(|| delay.delay_us(100));
    board.led.set_low().unwrap();
    defmt::info!("delay_us(100) took {}", span);

    defmt::info!("bye");
    fw::exit(fw::exit_code::SUCCESS)
}
