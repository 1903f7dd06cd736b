//! A monotonic 64-bit counter for measuring code, labelled with its unit.
//!
//! | board | source | unit | resolution |
//! |---|---|---|---|
//! | `qemu` | SysTick at 25 MHz, run with `-icount shift=0` (1 instruction = 1 ns virtual) | instructions | 40 instructions |
//! | `nrf52840`, `stm32f411` | DWT `CYCCNT` | cycles | 1 cycle |
//!
//! Under QEMU the count is exact and deterministic (same binary, same count), but it counts
//! *instructions*, not cycles: a multiply-accumulate and a load cost the same. Without
//! `-icount shift=0` (see `run-qemu.sh`) the QEMU numbers are meaningless.
//!
//! Two back-to-back [`Counter::now`] calls cost [`Counter::overhead`]-ish; subtract it from short
//! measurements, or better, measure many repetitions.

use crate::board;

/// What a [`Counter`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Retired instructions (QEMU with `-icount shift=0`).
    Instructions,
    /// Core clock cycles (DWT `CYCCNT` on hardware).
    Cycles,
}

impl Unit {
    /// `"instructions"` or `"cycles"`.
    pub const fn name(self) -> &'static str {
        match self {
            Unit::Instructions => "instructions",
            Unit::Cycles => "cycles",
        }
    }
}

impl defmt::Format for Unit {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=str}", self.name())
    }
}

/// Handle to the board's free-running counter. Get it from [`crate::init`] (which starts it).
#[derive(Clone, Copy, Debug)]
pub struct Counter {
    hz: u32,
}

impl Counter {
    /// The unit of this board's counter.
    pub const UNIT: Unit = board::COUNTER_UNIT;

    pub(crate) const fn new() -> Self {
        Self {
            hz: board::COUNTER_HZ,
        }
    }

    /// Counts since [`crate::init`]: monotonic, never wraps in practice.
    ///
    /// On hardware the 32-bit `CYCCNT` is extended in software, which needs a call at least
    /// once per 2^32 cycles (43 s at 100 MHz); the QEMU counter has no such limit.
    #[inline]
    pub fn now(&self) -> u64 {
        board::now()
    }

    /// The unit of [`Counter::now`].
    pub const fn unit(&self) -> Unit {
        Self::UNIT
    }

    /// Counts per second: the core clock on hardware, 10^9 instructions per virtual second
    /// under QEMU `-icount shift=0`. Used by [`crate::Delay`].
    pub const fn hz(&self) -> u32 {
        self.hz
    }

    /// The same counter with a different rate, for when a HAL changed the core clock (the
    /// STM32F411 starts at 16 MHz from HSI; `nrf52840` is 64 MHz).
    pub const fn with_hz(self, hz: u32) -> Self {
        Self { hz }
    }

    /// Runs `f` and returns its result with the counts it took (including the measurement
    /// overhead of about one [`Counter::now`] call).
    #[inline(always)]
    pub fn measure<R>(&self, f: impl FnOnce() -> R) -> (R, Span) {
        let start = self.now();
        let r = f();
        let end = self.now();
        (r, Span::new(end - start))
    }

    /// The cost of one [`Counter::now`] call, which is also what [`Counter::measure`] adds to
    /// what it measures (from the counter read in the first call to the one in the second), to
    /// subtract from short measurements. Averaged over 256 calls, because under QEMU two single
    /// calls usually fall into the same 40-instruction tick (difference 0 or 40).
    pub fn overhead(&self) -> Span {
        const ROUNDS: u64 = 32;
        let start = self.now();
        for _ in 0..ROUNDS {
            // Unrolled so the loop adds < 1 count per call; `now()` is never inlined and reads
            // volatile registers, so none of these calls is optimised away.
            for _ in 0..8 {
                self.now();
            }
        }
        let end = self.now();
        // Between the reads of `start` and `end` lie 8 * ROUNDS whole calls plus one call split
        // in two.
        Span::new((end - start) / (8 * ROUNDS + 1))
    }
}

/// A number of counts, printed with its unit ("1234 instructions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    /// The count, in [`Span::unit`].
    pub count: u64,
}

impl Span {
    /// A span of `count` counts of this board's unit.
    pub const fn new(count: u64) -> Self {
        Self { count }
    }

    /// The unit (the board's).
    pub const fn unit(&self) -> Unit {
        Counter::UNIT
    }

    /// `self - other`, saturating at 0 (for subtracting an overhead).
    pub const fn saturating_sub(self, other: Span) -> Span {
        Span::new(self.count.saturating_sub(other.count))
    }
}

impl defmt::Format for Span {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=u64} {=str}", self.count, Counter::UNIT.name())
    }
}
