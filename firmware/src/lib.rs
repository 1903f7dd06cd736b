//! aka firmware support: board selection, logging, exit codes, fault handlers and a counter for
//! measuring code (instructions under QEMU, cycles on hardware).
//!
//! A binary does:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use aka_firmware as fw;
//!
//! #[cortex_m_rt::entry]
//! fn main() -> ! {
//!     let mut cp = cortex_m::Peripherals::take().unwrap();
//!     let board = fw::init(&mut cp);
//!     let (_, span) = board.counter.measure(|| work());
//!     defmt::info!("work took {}", span); // "work took 1234 instructions"
//!     fw::exit(0)
//! }
//! ```
//!
//! The board is a cargo feature: `qemu` (default), `nrf52840`, `stm32f411`; see `board`.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod app;
mod board;
pub mod counter;
mod fault;
pub mod hal;
pub mod stack;
#[cfg(feature = "small-vector-table")]
mod vectors;

pub use counter::{Counter, Span, Unit};
pub use hal::{Delay, Led, Serial};

/// Exit codes the firmware reports to the host (QEMU's exit status, `probe-rs run`'s error).
pub mod exit_code {
    /// Normal end.
    pub const SUCCESS: i32 = 0;
    /// A Rust panic (including `defmt::panic!`, `unwrap`, failed asserts).
    pub const PANIC: i32 = 101;
    /// A HardFault (bad memory access, undefined instruction, stack overflow, ...).
    pub const HARD_FAULT: i32 = 102;
    /// An exception or interrupt without a handler.
    pub const UNHANDLED_EXCEPTION: i32 = 103;
}

/// Name of the board this firmware was built for (the cargo feature).
pub const BOARD: &str = env!("AKA_BOARD");

/// What [`init`] sets up and hands back.
#[derive(Debug)]
pub struct Board {
    /// The free-running counter (already started).
    pub counter: Counter,
    /// The board's user LED (configured as an output, off).
    pub led: Led,
}

impl Board {
    /// A busy-wait delay (`embedded_hal::delay::DelayNs`) on the board's counter.
    pub fn delay(&self) -> Delay {
        Delay::new(self.counter)
    }
}

/// Starts the counter and configures the LED. The logger needs no set-up.
///
/// Claims, from the core peripherals: on `qemu` SysTick (with its interrupt), on hardware the
/// DWT cycle counter (and DCB trace enable). Don't reconfigure those afterwards; everything else
/// in `cp` stays the app's (or its HAL's).
pub fn init(cp: &mut cortex_m::Peripherals) -> Board {
    board::init_counter(cp);
    Board {
        counter: Counter::new(),
        led: Led::new(),
    }
}

/// Ends the program with `code`: QEMU (and `probe-rs run`) exits with it. On hardware without a
/// debugger attached this parks the core (interrupts off, `wfi` loop) instead.
pub fn exit(code: i32) -> ! {
    board::exit(code)
}

// Timestamps on every log line, in the counter's unit (instructions under QEMU, cycles on
// hardware); 0 until `init` starts the counter.
defmt::timestamp!("{=u64}", board::now());
