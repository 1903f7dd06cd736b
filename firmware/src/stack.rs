//! The stack high-water mark, by stack painting.
//!
//! cortex-m-rt's `paint-stack` feature (enabled in Cargo.toml) makes the reset handler fill the
//! whole stack region, `_stack_end..._stack_start`, with [`PAINT`] before `main` runs. The stack
//! grows down from `_stack_start`; whatever the program pushed scrubbed the paint off. [`usage`]
//! scans up from the bottom (`_stack_end`) to the first word that is not paint: everything above
//! it has been used at some point, so `_stack_start` minus that address is the deepest the stack
//! has been (the high-water mark).
//!
//! With flip-link (the linker in `.cargo/config.toml`) the stack sits at the bottom of RAM, below
//! `.data`/`.bss`; flip-link sets `_stack_start`/`_stack_end` to that region, so the same scan
//! works. The figure is a lower bound by at most a word: a frame that happened to store the paint
//! value itself at its very deepest word would be missed.

/// The 32-bit paint value: cortex-m-rt's `STACK_PAINT_VALUE`.
pub const PAINT: u32 = cortex_m_rt::STACK_PAINT_VALUE;

unsafe extern "C" {
    /// Top of the stack (highest address, exclusive): the initial stack pointer.
    static _stack_start: u32;
    /// Bottom of the stack (lowest address): the stack may grow down to here.
    static _stack_end: u32;
}

/// How much of the stack has been used since reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct StackUsage {
    /// The high-water mark: the most bytes the stack has held at once.
    pub used: usize,
    /// The size of the stack region (`_stack_start - _stack_end`).
    pub size: usize,
}

/// Measures the stack high-water mark (see the module docs). Scans at most the unused part of
/// the stack, up to the current stack pointer: a few instructions per unused word.
#[inline(never)]
pub fn usage() -> StackUsage {
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    // Everything at or above the stack pointer is in use now; the scan stops there at the latest.
    let sp = cortex_m::register::msp::read() as usize;
    let limit = sp.clamp(bottom, top);
    let mut addr = bottom;
    while addr < limit {
        // SAFETY: `addr` is word-aligned (cortex-m-rt asserts `_stack_end % 4 == 0` and we step
        // by 4) and inside the stack region `_stack_end.._stack_start` of RAM, which the linker
        // reserves for the stack and no static or reference covers; being below the stack
        // pointer it belongs to no live frame, so a volatile read of it races with nothing
        // (interrupt handlers push below the stack pointer, and a changed word only means the
        // stack went deeper, which is what is measured).
        let word = unsafe { core::ptr::read_volatile(addr as *const u32) };
        if word != PAINT {
            break;
        }
        addr += 4;
    }
    StackUsage {
        used: top - addr,
        size: top - bottom,
    }
}

/// Logs the high-water mark: `stack high-water: N bytes of M (P.PP%)` (the line `firmware/ci.sh`
/// records in `budgets.json`).
pub fn log_high_water() {
    let u = usage();
    let (whole, frac) = crate::app::percent(u.used as u64, u.size as u64);
    defmt::info!(
        "stack high-water: {=usize} bytes of {=usize} ({=u64}.{=u64:02}%)",
        u.used,
        u.size,
        whole,
        frac
    );
}
