//! The `small-vector-table` feature: the device interrupt part of the vector table with one
//! vector (the least cortex-m-rt's `link.x` accepts) instead of the 240 that cortex-m-rt fills
//! with `DefaultHandler` when no device crate provides them: 956 bytes less flash
//! (docs/SIZE.md).
//!
//! Only for binaries that enable no device interrupt, which is all of this crate's: SysTick (the
//! QEMU counter) is a system exception, whose vectors cortex-m-rt still provides. An interrupt
//! past the table would read its vector from the code after it.

unsafe extern "C" {
    // cortex-m-rt's handler for every unhandled exception or interrupt.
    fn DefaultHandler();
}

// SAFETY: the symbol name and section are the ones cortex-m-rt's `link.x` expects for the device
// interrupt vectors (with its `device` feature, which this crate's `small-vector-table` enables,
// cortex-m-rt defines no `__INTERRUPTS` of its own, so there is exactly one); the entry is
// cortex-m-rt's `DefaultHandler`.
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
static __INTERRUPTS: [unsafe extern "C" fn(); 1] = [DefaultHandler];
