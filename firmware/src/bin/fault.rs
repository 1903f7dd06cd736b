//! Checks that failures end the program with the right exit code. Which failure is chosen at build
//! time by `AKA_FAULT`:
//!
//! | `AKA_FAULT` | what | exit code |
//! |---|---|---|
//! | `panic` (default) | `Option::expect` on `None` | 101 |
//! | `defmt-panic` | `defmt::panic!` | 101 |
//! | `udf` | undefined instruction (UsageFault, escalated) | 102 |
//! | `bus` | load from an unmapped address | 102 |
//! | `overflow` | unbounded recursion (caught thanks to flip-link) | 102 |
//!
//! `AKA_FAULT=overflow cargo run --release --bin fault; echo $?`
#![no_std]
#![no_main]

use aka_firmware as fw;
use cortex_m_rt::entry;

/// Recurses until the stack runs out; the array keeps each frame big and the result alive.
#[inline(never)]
#[allow(unconditional_recursion)] // the point
fn recurse(depth: u32) -> u32 {
    let mut buf = [0u32; 64];
    buf[(depth as usize) % 64] = depth;
    let buf = core::hint::black_box(buf);
    buf[0].wrapping_add(recurse(depth + 1))
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    let _board = fw::init(&mut cp);
    let fault = option_env!("AKA_FAULT").unwrap_or("panic");
    defmt::info!("triggering fault {=str}", fault);
    match fault {
        "panic" => {
            core::hint::black_box(None::<u32>).expect("deliberate panic");
        }
        "defmt-panic" => defmt::panic!("deliberate defmt panic"),
        "udf" => cortex_m::asm::udf(),
        "bus" => {
            // Nothing is mapped here on any of the boards.
            let p = core::hint::black_box(0xF000_0000 as *const u32);
            // SAFETY: not safe at all; the fault is the point.
            let v = unsafe { p.read_volatile() };
            defmt::info!("read {=u32}", v);
        }
        "overflow" => {
            let r = recurse(0);
            defmt::info!("recursion returned {=u32}", r);
        }
        other => defmt::error!("unknown AKA_FAULT {=str}", other),
    }
    defmt::error!("fault {=str} did not end the program", fault);
    fw::exit(1)
}
