//! The board's LED and a delay behind `embedded-hal` 1.0 traits, so app code written against
//! `OutputPin` / `DelayNs` runs unchanged with a real HAL's pins and timers instead.

use core::convert::Infallible;

use embedded_hal::{
    delay::DelayNs,
    digital::{ErrorType, OutputPin, StatefulOutputPin},
};

use crate::{board, Counter};

/// The board's user LED: QEMU MPS2 FPGAIO LED0, nRF52840-DK LED1 (P0.13), NUCLEO-F411RE LD2
/// (PA5). `set_high` = on, whatever the pin polarity.
#[derive(Debug)]
pub struct Led {
    on: bool,
}

impl Led {
    pub(crate) fn new() -> Self {
        board::led_init();
        Self { on: false }
    }
}

impl ErrorType for Led {
    type Error = Infallible;
}

impl OutputPin for Led {
    fn set_low(&mut self) -> Result<(), Infallible> {
        board::led_set(false);
        self.on = false;
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        board::led_set(true);
        self.on = true;
        Ok(())
    }
}

impl StatefulOutputPin for Led {
    fn is_set_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.on)
    }

    fn is_set_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.on)
    }
}

/// Busy-wait delay on the board's [`Counter`]: exact in virtual time under QEMU
/// (1 instruction = 1 ns), in core cycles on hardware (set the clock with [`Counter::with_hz`]).
#[derive(Clone, Copy, Debug)]
pub struct Delay {
    counter: Counter,
}

impl Delay {
    /// A delay counting on `counter`.
    pub const fn new(counter: Counter) -> Self {
        Self { counter }
    }
}

impl DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        let counts = u64::from(ns) * u64::from(self.counter.hz()) / 1_000_000_000;
        let start = self.counter.now();
        while self.counter.now() - start < counts {}
    }
}
