//! Self-test of the board counter: exact counts of straight-line code, monotonicity across
//! counter wraps (with interrupts enabled and with them masked over a wrap), and the `now()`
//! overhead. Exits 0 if every check passes, 1 otherwise.
//!
//! Under QEMU this executes about 1.6 G instructions (over two SysTick wraps).
#![no_std]
#![no_main]

use aka_firmware::{self as fw, Counter, Unit};
use cortex_m_rt::entry;

/// Exactly 10,000 `nop`s.
#[inline(never)]
fn nops_10k() {
    // SAFETY: nops only.
    unsafe { core::arch::asm!(".rept 10000", "nop", ".endr", options(nomem, nostack)) };
}

/// Reads the counter until it has advanced by `span`, checking it never goes backwards; returns
/// the number of reads.
fn spin_monotonic(counter: Counter, span: u64, ok: &mut bool) -> u32 {
    let start = counter.now();
    let mut last = start;
    let mut reads = 0;
    while last - start < span {
        nops_10k(); // keep the reads sparse: each SysTick read is slow under QEMU -icount
        let t = counter.now();
        reads += 1;
        if t < last {
            defmt::error!("counter went backwards: {=u64} after {=u64}", t, last);
            *ok = false;
            break;
        }
        last = t;
    }
    reads
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    let board = fw::init(&mut cp);
    let c = board.counter;
    let mut ok = true;

    let overhead = c.overhead();
    defmt::info!("now() overhead {}", overhead);

    // Straight-line code: 10,000 instructions (+ call/return), measured 8 times.
    let mut min = u64::MAX;
    let mut max = 0;
    for _ in 0..8 {
        let (_, span) = c.measure(nops_10k);
        min = min.min(span.count);
        max = max.max(span.count);
    }
    defmt::info!("10,000 nops: {=u64}..{=u64} {}", min, max, Counter::UNIT);
    let (lo, hi) = match Counter::UNIT {
        // exact up to the 40-instruction tick and the ~31-instruction overhead
        Unit::Instructions => (10_000 - 40, 10_000 + 2 * overhead.count + 80),
        // a nop takes 1 cycle on a Cortex-M4 (or may be folded away), flash wait states add some
        Unit::Cycles => (5_000, 20_000),
    };
    if min < lo || max > hi {
        defmt::error!("10,000 nops outside {=u64}..{=u64}", lo, hi);
        ok = false;
    }

    // Monotonic across wraps. QEMU: SysTick wraps every 2^24 ticks = 671,088,640 instructions.
    let wrap: u64 = (1 << 24) * 40;
    let reads = spin_monotonic(c, wrap + wrap / 4, &mut ok);
    defmt::info!(
        "monotonic over {=u64} {}: {=u32} reads",
        wrap + wrap / 4,
        Counter::UNIT,
        reads
    );

    // With interrupts masked across a wrap the wrap stays pending; now() must still count it.
    cortex_m::interrupt::free(|_| {
        let reads = spin_monotonic(c, wrap + wrap / 8, &mut ok);
        defmt::info!(
            "monotonic with interrupts masked over a wrap: {=u32} reads",
            reads
        );
    });
    let before = c.now();
    let after = c.now(); // the pending SysTick has run in between
    if after < before {
        defmt::error!(
            "counter went backwards after unmasking: {=u64} < {=u64}",
            after,
            before
        );
        ok = false;
    }

    if ok {
        defmt::info!("counter self-test passed");
        fw::exit(0)
    } else {
        defmt::error!("counter self-test FAILED");
        fw::exit(1)
    }
}
