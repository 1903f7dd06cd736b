//! Shared by the hardware boards: defmt over RTT, the DWT cycle counter and a debugger-aware
//! exit.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::peripheral::{DCB, DWT};
use defmt_rtt as _;

use crate::counter::Unit;

pub(crate) const COUNTER_UNIT: Unit = Unit::Cycles;

/// High word of the 64-bit count, and the last `CYCCNT` seen (to detect its wrap).
static HIGH: AtomicU32 = AtomicU32::new(0);
static LAST: AtomicU32 = AtomicU32::new(0);

pub(crate) fn init_counter(cp: &mut cortex_m::Peripherals) {
    cp.DCB.enable_trace(); // DEMCR.TRCENA: powers the DWT
    cp.DWT.set_cycle_count(0);
    cp.DWT.enable_cycle_counter();
    cortex_m::interrupt::free(|_| {
        HIGH.store(0, Ordering::Relaxed);
        LAST.store(0, Ordering::Relaxed);
    });
}

/// Cycles since `init_counter`: `CYCCNT` extended to 64 bits in software, so it must be called at
/// least once per 2^32 cycles (67 s at 64 MHz, 43 s at 100 MHz) to notice every wrap.
// Never inlined, so that its cost, and the overhead it adds to a measurement, is the same
// wherever it is called (inlined, the compiler moves parts of it across the measured code).
#[inline(never)]
pub(crate) fn now() -> u64 {
    cortex_m::interrupt::free(|_| {
        let c = DWT::cycle_count();
        let mut high = HIGH.load(Ordering::Relaxed);
        if c < LAST.load(Ordering::Relaxed) {
            high = high.wrapping_add(1);
            HIGH.store(high, Ordering::Relaxed);
        }
        LAST.store(c, Ordering::Relaxed);
        (u64::from(high) << 32) | u64::from(c)
    })
}

/// With a debugger attached (`probe-rs run`): semihosting exit, which probe-rs turns into its
/// own exit status (0 = success, anything else = error; a plain `bkpt` would be reported as
/// "CPU halted unexpectedly"). Without one, a semihosting call would fault, so park the core.
pub(crate) fn exit(code: i32) -> ! {
    static EXITING: AtomicBool = AtomicBool::new(false);
    if DCB::is_debugger_attached() {
        // Let the host drain the RTT buffer first (returns at once unless probe-rs put the
        // channel in blocking mode). Once only: if flushing itself panics, exit without it.
        if !EXITING.swap(true, Ordering::Relaxed) {
            defmt::flush();
        }
        semihosting::process::exit(code)
    }
    cortex_m::interrupt::disable();
    loop {
        cortex_m::asm::wfi();
    }
}
