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

// UARTE0 on the DK's virtual COM port (J-Link VCOM): TXD P0.06, RXD P0.08, 115200 8N1, no flow
// control. EasyDMA moves the bytes, so both buffers are in RAM: one byte of reception at a time
// (ENDRX, then STARTRX again; the UARTE's 4-byte RX FIFO holds bytes that arrive in between),
// transmission in chunks copied to a RAM buffer.
const UARTE0: usize = 0x4000_2000;
const TASKS_STARTRX: *mut u32 = UARTE0 as *mut u32;
const TASKS_STARTTX: *mut u32 = (UARTE0 + 0x008) as *mut u32;
const EVENTS_ENDRX: *mut u32 = (UARTE0 + 0x110) as *mut u32;
const EVENTS_ENDTX: *mut u32 = (UARTE0 + 0x120) as *mut u32;
const ENABLE: *mut u32 = (UARTE0 + 0x500) as *mut u32;
const PSEL_RTS: *mut u32 = (UARTE0 + 0x508) as *mut u32;
const PSEL_TXD: *mut u32 = (UARTE0 + 0x50C) as *mut u32;
const PSEL_CTS: *mut u32 = (UARTE0 + 0x510) as *mut u32;
const PSEL_RXD: *mut u32 = (UARTE0 + 0x514) as *mut u32;
const BAUDRATE: *mut u32 = (UARTE0 + 0x524) as *mut u32;
const RXD_PTR: *mut u32 = (UARTE0 + 0x534) as *mut u32;
const RXD_MAXCNT: *mut u32 = (UARTE0 + 0x538) as *mut u32;
const TXD_PTR: *mut u32 = (UARTE0 + 0x544) as *mut u32;
const TXD_MAXCNT: *mut u32 = (UARTE0 + 0x548) as *mut u32;
const CONFIG: *mut u32 = (UARTE0 + 0x56C) as *mut u32;
const TX_PIN: u32 = 6;
const RX_PIN: u32 = 8;
const BAUD_115200: u32 = 0x01D7_E000;
const PSEL_DISCONNECTED: u32 = 1 << 31;

/// EasyDMA target of reception (one byte).
static mut RX_BYTE: u8 = 0;

pub(crate) fn uart_init() {
    // SAFETY: GPIO P0 and UARTE0 registers of the nRF52840, used only through `hal::Serial`
    // (whose `take` calls this once). RX_BYTE is only touched by the UARTE's DMA and by
    // `uart_read`, after ENDRX.
    unsafe {
        P0_OUTSET.write_volatile(1 << TX_PIN); // TX idles high
        ((0x5000_0700 + 4 * TX_PIN) as *mut u32).write_volatile(0b11); // output, input off
        ((0x5000_0700 + 4 * RX_PIN) as *mut u32).write_volatile(0b00); // input, connected
        PSEL_TXD.write_volatile(TX_PIN);
        PSEL_RXD.write_volatile(RX_PIN);
        PSEL_RTS.write_volatile(PSEL_DISCONNECTED);
        PSEL_CTS.write_volatile(PSEL_DISCONNECTED);
        BAUDRATE.write_volatile(BAUD_115200);
        CONFIG.write_volatile(0); // no parity, one stop bit, no flow control
        ENABLE.write_volatile(8);
        RXD_PTR.write_volatile(core::ptr::addr_of_mut!(RX_BYTE) as u32);
        RXD_MAXCNT.write_volatile(1);
        EVENTS_ENDRX.write_volatile(0);
        TASKS_STARTRX.write_volatile(1);
    }
}

/// A received byte, if one is waiting.
pub(crate) fn uart_read() -> Option<u8> {
    // SAFETY: as in `uart_init`; after ENDRX the DMA has written RX_BYTE and is idle until the
    // next STARTRX.
    unsafe {
        if EVENTS_ENDRX.read_volatile() == 0 {
            return None;
        }
        EVENTS_ENDRX.write_volatile(0);
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        let byte = core::ptr::addr_of!(RX_BYTE).read_volatile();
        TASKS_STARTRX.write_volatile(1);
        Some(byte)
    }
}

/// Sends one byte (EasyDMA from a RAM copy; waits for ENDTX).
pub(crate) fn uart_write(byte: u8) {
    let buf = [byte];
    // SAFETY: as in `uart_init`; `buf` is on the stack (RAM, as EasyDMA needs) and outlives the
    // transfer, which ends (ENDTX) before this returns.
    unsafe {
        EVENTS_ENDTX.write_volatile(0);
        TXD_PTR.write_volatile(buf.as_ptr() as u32);
        TXD_MAXCNT.write_volatile(1);
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        TASKS_STARTTX.write_volatile(1);
        while EVENTS_ENDTX.read_volatile() == 0 {}
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// Transmission is synchronous (`uart_write` waits for ENDTX): nothing to wait for.
pub(crate) fn uart_flush() {}
