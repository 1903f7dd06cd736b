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

// UART0 of the MPS2 (CMSDK APB UART at 0x4000_4000 on AN385/AN386): QEMU connects it to its
// first `-serial` backend. Registers: DATA (+0x00), STATE (+0x04: bit 0 TX full, bit 1 RX full),
// CTRL (+0x08: bit 0 TX enable, bit 1 RX enable), BAUDDIV (+0x10, >= 16).
const UART0: usize = 0x4000_4000;
const UART_DATA: *mut u32 = UART0 as *mut u32;
const UART_STATE: *mut u32 = (UART0 + 0x04) as *mut u32;
const UART_CTRL: *mut u32 = (UART0 + 0x08) as *mut u32;
const UART_BAUDDIV: *mut u32 = (UART0 + 0x10) as *mut u32;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;

pub(crate) fn uart_init() {
    // SAFETY: CMSDK UART0 registers of mps2-an386; `hal::Serial::take` (the only caller) runs
    // this once and its `Serial` is then the only user. 25 MHz / 16 (QEMU ignores the rate).
    unsafe {
        UART_BAUDDIV.write_volatile(16);
        UART_CTRL.write_volatile(0b11);
    }
}

/// A received byte, if one is waiting.
pub(crate) fn uart_read() -> Option<u8> {
    // SAFETY: as in `uart_init`; reading DATA takes the byte and clears RX full.
    unsafe {
        if UART_STATE.read_volatile() & STATE_RX_FULL == 0 {
            return None;
        }
        Some(UART_DATA.read_volatile() as u8)
    }
}

/// Sends one byte (waits while the transmit buffer is full).
pub(crate) fn uart_write(byte: u8) {
    uart_flush();
    // SAFETY: as in `uart_init`.
    unsafe { UART_DATA.write_volatile(u32::from(byte)) }
}

/// Waits until the transmit buffer is empty.
pub(crate) fn uart_flush() {
    // SAFETY: as in `uart_init`; STATE is read-only here.
    while unsafe { UART_STATE.read_volatile() } & STATE_TX_FULL != 0 {}
}
