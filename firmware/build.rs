//! Link setup for the firmware binaries.
//!
//! Everything the link needs is given here rather than in `.cargo/config.toml` rustflags, so the
//! link is right however cargo is invoked (`.cargo/config.toml` is only read from the current
//! directory): the board's `memory.x`, `link.x` (cortex-m-rt) and `defmt.x` (defmt).

use std::{env, fs, path::PathBuf};

const BOARDS: [&str; 3] = ["qemu", "nrf52840", "stm32f411"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=memory");

    // Bare-metal ARM only: on the host (e.g. `cargo build --manifest-path firmware/Cargo.toml` from
    // the repository root without `--target`) fail loudly instead of producing a useless binary.
    let target = env::var("TARGET").unwrap();
    if !target.starts_with("thumbv") || env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        panic!(
            "aka-firmware builds for Cortex-M only (target `{target}`). Run cargo from the \
             firmware/ directory, whose .cargo/config.toml selects thumbv7em-none-eabihf, or pass \
             `--target thumbv7em-none-eabihf`."
        );
    }

    // Exactly one board feature.
    let boards: Vec<&str> = BOARDS
        .iter()
        .copied()
        .filter(|b| env::var_os(format!("CARGO_FEATURE_{}", b.to_uppercase())).is_some())
        .collect();
    let board = match boards.as_slice() {
        [b] => *b,
        [] => panic!("select a board: --features one of {BOARDS:?} (default: qemu)"),
        many => panic!(
            "select exactly one board, got {many:?}; use --no-default-features --features BOARD"
        ),
    };

    // The board's memory layout becomes `memory.x`, which `link.x` INCLUDEs.
    let memory = manifest_dir.join("memory").join(format!("{board}.x"));
    fs::copy(&memory, out.join("memory.x"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", memory.display()));
    println!("cargo:rustc-link-search={}", out.display());

    // `--nmagic`: no page alignment of sections (cortex-m-rt's recommendation for LLD/flip-link).
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");

    // defmt's log filter is read at compile time; without DEFMT_LOG only `error` is kept. The
    // default is in .cargo/config.toml [env]; repeat it here for builds that don't read that file.
    println!("cargo:rerun-if-env-changed=DEFMT_LOG");
    if env::var_os("DEFMT_LOG").is_none() {
        println!("cargo:rustc-env=DEFMT_LOG=info");
    }

    // Model files embedded with `include_bytes!(concat!(env!("AKA_MODEL_DIR"), "/NAME"))`.
    println!("cargo:rerun-if-env-changed=AKA_MODEL_DIR");
    let models = match env::var_os("AKA_MODEL_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                manifest_dir.join(dir)
            }
        }
        None => manifest_dir.join("models"),
    };
    println!("cargo:rerun-if-changed={}", models.display());
    println!("cargo:rustc-env=AKA_MODEL_DIR={}", models.display());
    println!("cargo:rustc-env=AKA_BOARD={board}");
}
