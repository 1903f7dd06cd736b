//! Board support, one file per board, chosen by cargo feature.
//!
//! Each board provides the same items:
//! - the defmt global logger (by linking its transport crate; no init needed),
//! - `exit(code) -> !`,
//! - the counter: `COUNTER_UNIT`, `COUNTER_HZ`, `init_counter(&mut Peripherals)`, `now() -> u64`,
//! - the user LED: `led_init()`, `led_set(on)`.
//!
//! The hardware boards share `hw.rs` (RTT logger, DWT counter, exit); all share `RAM_START`
//! (for telling a stack overflow from other HardFaults).

#[cfg(any(
    all(feature = "qemu", feature = "nrf52840"),
    all(feature = "qemu", feature = "stm32f411"),
    all(feature = "nrf52840", feature = "stm32f411"),
))]
compile_error!("select exactly one board feature: --no-default-features --features BOARD");

#[cfg(not(any(feature = "qemu", feature = "nrf52840", feature = "stm32f411")))]
compile_error!("select a board feature: qemu (default), nrf52840 or stm32f411");

#[cfg(feature = "qemu")]
mod qemu;
#[cfg(feature = "qemu")]
pub(crate) use qemu::*;

#[cfg(feature = "nrf52840")]
mod nrf52840;
#[cfg(feature = "nrf52840")]
pub(crate) use nrf52840::*;

#[cfg(feature = "stm32f411")]
mod stm32f411;
#[cfg(feature = "stm32f411")]
pub(crate) use stm32f411::*;

// Shared by the hardware boards.
#[cfg(any(feature = "nrf52840", feature = "stm32f411"))]
mod hw;
#[cfg(any(feature = "nrf52840", feature = "stm32f411"))]
pub(crate) use hw::{exit, init_counter, now, COUNTER_UNIT};

/// Start of RAM: the Cortex-M SRAM region, where all three boards' RAM begins.
pub(crate) const RAM_START: u32 = 0x2000_0000;
