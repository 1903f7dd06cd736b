//! ST STM32F411RE (NUCLEO-F411RE): defmt over RTT, DWT cycle counter, LED LD2.
//!
//! Run: `cargo run --release --no-default-features --features stm32f411 --bin hello` with the
//! runner `probe-rs run --chip STM32F411RETx` (see `.cargo/config.toml`).

/// Core clock after reset (16 MHz HSI). A HAL that raises it (up to 100 MHz) should pass the new
/// rate to `Counter::with_hz` so that `Delay` stays right; cycle counts are unaffected.
pub(crate) const COUNTER_HZ: u32 = 16_000_000;

// LD2 of the Nucleo-64 is PA5, active high.
const LED_PIN: u32 = 5;
const RCC_AHB1ENR: *mut u32 = 0x4002_3830 as *mut u32;
const GPIOA_MODER: *mut u32 = 0x4002_0000 as *mut u32;
const GPIOA_BSRR: *mut u32 = 0x4002_0018 as *mut u32;

pub(crate) fn led_init() {
    // SAFETY: RCC and GPIOA registers of the STM32F411; read-modify-write of the GPIOA clock
    // enable bit and of PA5's mode bits (01 = general purpose output) only.
    unsafe {
        RCC_AHB1ENR.write_volatile(RCC_AHB1ENR.read_volatile() | 1);
        cortex_m::asm::dsb(); // the clock must be on before GPIOA is touched
        let moder = GPIOA_MODER.read_volatile() & !(0b11 << (2 * LED_PIN));
        GPIOA_MODER.write_volatile(moder | (0b01 << (2 * LED_PIN)));
    }
    led_set(false);
}

pub(crate) fn led_set(on: bool) {
    // SAFETY: BSRR is write-only set/reset; touches only PA5.
    unsafe {
        GPIOA_BSRR.write_volatile(if on {
            1 << LED_PIN
        } else {
            1 << (LED_PIN + 16)
        });
    }
}
