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

// USART2 on PA2 (TX) / PA3 (RX), AF7: the NUCLEO's ST-LINK virtual COM port. 115200 8N1 on the
// 16 MHz HSI (APB1 = 16 MHz after reset): USARTDIV = 16e6 / (16 * 115200) = 8.68 -> mantissa 8,
// fraction 11/16 (0.5 % off). Registers: SR (+0x00: RXNE bit 5, TC bit 6, TXE bit 7), DR (+0x04),
// BRR (+0x08), CR1 (+0x0C: UE bit 13, TE bit 3, RE bit 2).
const RCC_APB1ENR: *mut u32 = 0x4002_3840 as *mut u32;
const GPIOA_AFRL: *mut u32 = 0x4002_0020 as *mut u32;
const USART2: usize = 0x4000_4400;
const USART_SR: *mut u32 = USART2 as *mut u32;
const USART_DR: *mut u32 = (USART2 + 0x04) as *mut u32;
const USART_BRR: *mut u32 = (USART2 + 0x08) as *mut u32;
const USART_CR1: *mut u32 = (USART2 + 0x0C) as *mut u32;
const SR_RXNE: u32 = 1 << 5;
const SR_TC: u32 = 1 << 6;
const SR_TXE: u32 = 1 << 7;

pub(crate) fn uart_init() {
    // SAFETY: RCC, GPIOA and USART2 registers of the STM32F411; read-modify-write of the clock
    // enable bits and of PA2/PA3's mode and alternate-function fields only. Called once, by
    // `hal::Serial::take`.
    unsafe {
        RCC_AHB1ENR.write_volatile(RCC_AHB1ENR.read_volatile() | 1); // GPIOA
        RCC_APB1ENR.write_volatile(RCC_APB1ENR.read_volatile() | (1 << 17)); // USART2
        cortex_m::asm::dsb();
        let moder = GPIOA_MODER.read_volatile() & !(0b1111 << 4);
        GPIOA_MODER.write_volatile(moder | (0b1010 << 4)); // PA2, PA3: alternate function
        let afrl = GPIOA_AFRL.read_volatile() & !(0xFF << 8);
        GPIOA_AFRL.write_volatile(afrl | (0x77 << 8)); // AF7 = USART2
        USART_BRR.write_volatile((8 << 4) | 11);
        USART_CR1.write_volatile((1 << 13) | (1 << 3) | (1 << 2));
    }
}

/// A received byte, if one is waiting (reading SR then DR also clears an overrun).
pub(crate) fn uart_read() -> Option<u8> {
    // SAFETY: USART2 registers, used only through `hal::Serial`.
    unsafe {
        if USART_SR.read_volatile() & SR_RXNE == 0 {
            return None;
        }
        Some(USART_DR.read_volatile() as u8)
    }
}

/// Sends one byte (waits for the transmit data register to be empty).
pub(crate) fn uart_write(byte: u8) {
    // SAFETY: as in `uart_read`.
    unsafe {
        while USART_SR.read_volatile() & SR_TXE == 0 {}
        USART_DR.write_volatile(u32::from(byte));
    }
}

/// Waits until the last byte has left the shift register.
pub(crate) fn uart_flush() {
    // SAFETY: as in `uart_read`.
    while unsafe { USART_SR.read_volatile() } & SR_TC == 0 {}
}
