//! Sets `cfg(aka_dsp)` when compiling for a Cortex-M with the DSP extension (Armv7E-M: M4, M7),
//! which selects the hand-written kernels in `src/kernels/dsp/`.
//!
//! Why not `cfg(target_feature = "dsp")`: on stable Rust (checked with 1.95) Arm target features
//! are unstable, and unstable features are not visible to `cfg` — `rustc --print cfg --target
//! thumbv7em-none-eabihf` lists no `target_feature` at all (nightly lists `dsp`, `v7`,
//! `thumb2`, ...). And `target_arch = "arm"` alone would also match Armv6-M/Armv7-M (M0, M3),
//! which lack SMLAD/SXTB16. So the target name decides: every `thumbv7em-*` target has the DSP
//! extension. If a toolchain exposes `target_feature = "dsp"` on an M-profile Thumb-2 target
//! (nightly does; or an Armv8-M Mainline core built with `+dsp`), that is honoured too.
//!
//! `AKA_PORTABLE_KERNELS=1` at build time forces the portable kernels on every target.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(aka_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=AKA_PORTABLE_KERNELS");
    let target = env::var("TARGET").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let forced_portable = env::var_os("AKA_PORTABLE_KERNELS").is_some_and(|v| v == "1");
    let armv7em = target.starts_with("thumbv7em-");
    let has = |name: &str| features.split(',').any(|f| f == name);
    // The kernels are Thumb-2 assembly for M-profile cores.
    let dsp_feature = arch == "arm" && has("dsp") && has("mclass") && has("thumb2");
    if (armv7em || dsp_feature) && !forced_portable {
        println!("cargo::rustc-cfg=aka_dsp");
    }
}
