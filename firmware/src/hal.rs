//! The board's LED and a delay behind `embedded-hal` 1.0 traits, so app code written against
//! `OutputPin` / `DelayNs` runs unchanged with a real HAL's pins and timers instead.

use core::convert::Infallible;
use core::sync::atomic::{AtomicBool, Ordering};

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

/// The board's serial port behind the `embedded-io` 0.7 traits (`Read`, `Write`),
/// so app code written against them (the `chat` app) runs on any HAL's UART as well.
///
/// - `qemu`: UART0 of mps2-an386 (CMSDK APB UART at 0x4000_4000), QEMU's first `-serial`;
/// - `nrf52840`: UARTE0 on the DK's virtual COM port (TXD P0.06, RXD P0.08), 115200 8N1;
/// - `stm32f411`: USART2 on the NUCLEO's ST-LINK virtual COM port (PA2 TX, PA3 RX, AF7),
///   115200 8N1 at the 16 MHz reset clock.
///
/// Polled (no interrupts, no buffering beyond the hardware's): `read` blocks until a byte is
/// there, `write` until each byte is handed to the hardware. Infallible (framing and overrun
/// errors are not reported). The hardware boards are untested (no board was attached).
#[derive(Debug)]
pub struct Serial {
    _private: (),
}

impl Serial {
    /// Configures the port and hands it out, once: `None` on later calls.
    pub fn take() -> Option<Self> {
        static TAKEN: AtomicBool = AtomicBool::new(false);
        if TAKEN.swap(true, Ordering::Relaxed) {
            return None;
        }
        board::uart_init();
        Some(Self { _private: () })
    }
}

impl embedded_io::ErrorType for Serial {
    type Error = Infallible;
}

impl embedded_io::Read for Serial {
    /// Waits for the first byte, then takes whatever else has already arrived (up to
    /// `buf.len()`).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let Some((first, rest)) = buf.split_first_mut() else {
            return Ok(0);
        };
        *first = loop {
            if let Some(b) = board::uart_read() {
                break b;
            }
        };
        let mut n = 1;
        for slot in rest {
            let Some(b) = board::uart_read() else { break };
            *slot = b;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::Write for Serial {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            board::uart_write(b);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        board::uart_flush();
        Ok(())
    }
}
