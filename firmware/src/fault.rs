//! Panic, HardFault and unhandled-exception handlers: log through defmt, then exit with
//! [`crate::exit_code`] (QEMU exits; `probe-rs run` reports an error).

#[cfg(not(feature = "quiet-panic"))]
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::exception;

use crate::{board, exit_code};

#[cfg(not(feature = "quiet-panic"))]
static PANICKING: AtomicBool = AtomicBool::new(false);

#[cfg(not(feature = "quiet-panic"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    // A panic inside the logger (or while logging this one) must not recurse.
    if !PANICKING.swap(true, Ordering::Relaxed) {
        match info.location() {
            Some(l) => defmt::error!(
                "panicked at {=str}:{=u32}: {}",
                l.file(),
                l.line(),
                defmt::Display2Format(&info.message())
            ),
            None => defmt::error!("panicked: {}", defmt::Display2Format(&info.message())),
        }
    }
    board::exit(exit_code::PANIC)
}

/// Feature `quiet-panic` (docs/SIZE.md): a core panic (bounds check, `Option::unwrap`, ...) exits
/// with [`exit_code::PANIC`] without logging its message or location. The handler then never
/// reads its argument, so LTO drops the message and location arguments at every panic site:
/// 3.6-3.8 KB less code in the `size` profile. `defmt::panic!` / `unwrap!` still log their
/// messages.
#[cfg(feature = "quiet-panic")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    board::exit(exit_code::PANIC)
}

/// `defmt::panic!`, `defmt::unwrap!`, `defmt::assert!`: the message is already logged.
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    cortex_m::interrupt::disable();
    board::exit(exit_code::PANIC)
}

// The HardFault vector. cortex-m-rt's trampoline would run the Rust handler on the faulting stack,
// which after a stack overflow (flip-link: the stack ran off the bottom of RAM) is unusable: the
// handler's first push would fault again and lock the core up (QEMU then hangs instead of
// exiting). So: if the faulting SP leaves less than HANDLER_STACK bytes above RAM_START (or is
// outside [RAM_START, stack top)), restart MSP at the top of the stack (the initial SP from the
// vector table; the handler never returns). Otherwise keep MSP, which lies below the exception
// frame, so the handler's pushes do not overwrite the frame it reports.
core::arch::global_asm!(
    ".section .HardFault.aka, \"ax\", %progbits",
    ".global HardFault",
    ".type HardFault, %function",
    ".thumb_func",
    "HardFault:",
    "  mov r0, lr",
    "  tst r0, #4",
    "  ite eq",
    "  mrseq r1, msp",
    "  mrsne r1, psp",
    "  ldr r2, =__vector_table",
    "  ldr r2, [r2]",
    "  ldr r3, ={min_sp}",
    "  cmp r1, r3",
    "  blo 1f",
    "  cmp r1, r2",
    "  bhs 1f",
    "  b {handler}",
    "1:",
    "  msr msp, r2",
    "  b {handler}",
    ".ltorg",
    min_sp = const board::RAM_START + HANDLER_STACK,
    handler = sym hard_fault,
);

/// Stack the HardFault handler (logging included) needs.
const HANDLER_STACK: u32 = 1024;

/// `exc_return`: LR on entry; `sp`: the stack pointer the exception frame was pushed to;
/// `stack_top`: the initial SP.
extern "C" fn hard_fault(exc_return: u32, sp: u32, stack_top: u32) -> ! {
    // SAFETY: SCB fault status registers, read-only use.
    let (cfsr, hfsr, bfar) = unsafe {
        let scb = &*cortex_m::peripheral::SCB::PTR;
        (scb.cfsr.read(), scb.hfsr.read(), scb.bfar.read())
    };
    if sp >= board::RAM_START && sp.saturating_add(32) <= stack_top {
        // SAFETY: the 8-word exception frame lies within the stack, checked just above.
        let frame = unsafe { core::slice::from_raw_parts(sp as *const u32, 8) };
        defmt::error!(
            "HardFault at pc={=u32:#010x} lr={=u32:#010x} xpsr={=u32:#010x} (CFSR={=u32:#010x} HFSR={=u32:#010x} BFAR={=u32:#010x} EXC_RETURN={=u32:#010x})",
            frame[6],
            frame[5],
            frame[7],
            cfsr,
            hfsr,
            bfar,
            exc_return
        );
    } else {
        defmt::error!(
            "HardFault with SP={=u32:#010x} outside the stack (top {=u32:#010x}): stack overflow (CFSR={=u32:#010x} HFSR={=u32:#010x})",
            sp,
            stack_top,
            cfsr,
            hfsr
        );
    }
    board::exit(exit_code::HARD_FAULT)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    defmt::error!("unhandled exception or interrupt, IRQn {=i16}", irqn);
    board::exit(exit_code::UNHANDLED_EXCEPTION)
}
