//! Nordic nRF52840 (nRF52840-DK, PCA10056): defmt over RTT, DWT cycle counter at 64 MHz, LED1.
//!
//! Run: `cargo run --release --no-default-features --features nrf52840 --bin hello` with the
//! runner `probe-rs run --chip nRF52840_xxAA` (see `.cargo/config.toml`).

/// The nRF52840 CPU always runs at 64 MHz.
pub(crate) const COUNTER_HZ: u32 = 64_000_000;

// LED1 of the DK is P0.13, active low.
const LED_PIN: u32 = 13;
const P0_OUTSET: *mut u32 = 0x5000_0508 as *mut u32;
const P0_OUTCLR: *mut u32 = 0x5000_050C as *mut u32;
const P0_PIN_CNF: *mut u32 = (0x5000_0700 + 4 * LED_PIN) as *mut u32;

pub(crate) fn led_init() {
    led_set(false);
    // SAFETY: GPIO P0 registers of the nRF52840; PIN_CNF = output, input buffer disconnected.
    unsafe { P0_PIN_CNF.write_volatile(0b11) };
}

pub(crate) fn led_set(on: bool) {
    // SAFETY: OUTSET/OUTCLR are write-1-to-act registers touching only this pin.
    unsafe {
        if on {
            P0_OUTCLR.write_volatile(1 << LED_PIN)
        } else {
            P0_OUTSET.write_volatile(1 << LED_PIN)
        }
    }
}
