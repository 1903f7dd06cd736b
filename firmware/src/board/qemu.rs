//! QEMU `mps2-an386` (Cortex-M4F): defmt over semihosting, exit through semihosting, and an
//! instruction counter built on SysTick.
//!
//! # The instruction counter
//!
//! `run-qemu.sh` runs QEMU with `-icount shift=0`: every instruction advances virtual time by
//! exactly 1 ns, and SysTick (on the 25 MHz processor clock of the MPS2 board) ticks every 40 ns,
//! i.e. every 40 instructions. SysTick counts down from `RELOAD` = 2^24 - 1 and wraps every 2^24
//! ticks (0.67 s virtual); its exception counts the wraps. `now()` combines both without a
//! critical section (see there). Resolution: 40 instructions; deterministic run to run.
//! QEMU implements no DWT cycle counter (it reads 0), hence SysTick.

use core::sync::atomic::{compiler_fence, AtomicU32, Ordering};

use cortex_m::peripheral::{syst::SystClkSource, SCB, SYST};
use cortex_m_rt::exception;
use defmt_semihosting as _;

use crate::counter::Unit;

pub(crate) const COUNTER_UNIT: Unit = Unit::Instructions;
/// Instructions per second of virtual time under `-icount shift=0`.
pub(crate) const COUNTER_HZ: u32 = 1_000_000_000;

/// 1 GHz virtual instruction rate / 25 MHz SysTick clock.
const INSTRUCTIONS_PER_TICK: u64 = 40;
const RELOAD: u32 = 0x00FF_FFFF;
const TICKS_PER_WRAP: u64 = RELOAD as u64 + 1;

/// SysTick wraps since `init_counter` (incremented by the SysTick exception only).
static WRAPS: AtomicU32 = AtomicU32::new(0);

pub(crate) fn init_counter(cp: &mut cortex_m::Peripherals) {
    let syst = &mut cp.SYST;
    syst.disable_counter();
    syst.disable_interrupt();
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    SCB::clear_pendst();
    WRAPS.store(0, Ordering::Relaxed);
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    // Single core, and this handler is the only writer.
    WRAPS.store(
        WRAPS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Instructions since `init_counter`, in steps of 40.
///
/// A tick period starts when SysTick reaches 0 (that is when the wrap is pended); the phase within
/// it is `(2^24 - VAL) mod 2^24`. If the wrap is pending but its exception has not run yet
/// (interrupts masked, or we are in a higher-priority handler), the wrap is counted here and the
/// counter value read *after* seeing the pending bit is used, which is certainly post-wrap. If
/// the exception runs anywhere in between, `WRAPS` changes and we read again.
// Never inlined, so that its cost, and the overhead it adds to a measurement, is the same
// wherever it is called (inlined, the compiler moves parts of it across the measured code).
#[inline(never)]
pub(crate) fn now() -> u64 {
    loop {
        let w1 = WRAPS.load(Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        let v1 = SYST::get_current();
        let pending = SCB::is_pendst_pending();
        let v2 = SYST::get_current();
        compiler_fence(Ordering::SeqCst);
        let w2 = WRAPS.load(Ordering::Relaxed);
        if w1 == w2 {
            let (wraps, val) = if pending {
                (w1 as u64 + 1, v2)
            } else {
                (w1 as u64, v1)
            };
            let phase = (TICKS_PER_WRAP as u32).wrapping_sub(val) & RELOAD;
            return (wraps * TICKS_PER_WRAP + phase as u64) * INSTRUCTIONS_PER_TICK;
        }
    }
}

/// Ends QEMU with exit status `code` (semihosting `SYS_EXIT_EXTENDED`).
pub(crate) fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

// LED0 of the MPS2 FPGA IO block (FPGAIO `LED0` register, bit 0). QEMU keeps the state but shows
// it only in its trace output (`-trace 'mps2_fpgaio*'`).
const FPGAIO_LED0: *mut u32 = 0x4002_8000 as *mut u32;

pub(crate) fn led_init() {
    led_set(false);
}

pub(crate) fn led_set(on: bool) {
    // SAFETY: FPGAIO LED0 is a plain read/write device register on mps2-an386; this module is
    // its only user.
    unsafe {
        let v = FPGAIO_LED0.read_volatile();
        FPGAIO_LED0.write_volatile(if on { v | 1 } else { v & !1 });
    }
}
