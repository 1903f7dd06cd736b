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

    // Which files the `mnist` and `gpt` binaries embed (names inside AKA_MODEL_DIR). The CNN is
    // the default MNIST model because it fits every board; the MLP (`mnist-mlp.aka`, ~460 KB)
    // fits `qemu` and `nrf52840` but not `stm32f411`'s 512 KiB next to the test images.
    let mnist = model_file(&models, "AKA_MNIST_MODEL", "mnist-cnn.aka");
    let gpt = model_file(&models, "AKA_GPT_MODEL", "gpt.aka");
    println!("cargo:rustc-env=AKA_MNIST_MODEL={mnist}");
    println!("cargo:rustc-env=AKA_GPT_MODEL={gpt}");
    for data in ["mnist-test-images.u8", "mnist-test-labels.u8"] {
        require(&models, data);
    }
}

/// The file name in `$var` (default `default`), which must exist in `models`.
fn model_file(models: &std::path::Path, var: &str, default: &str) -> String {
    println!("cargo:rerun-if-env-changed={var}");
    let name = env::var(var).unwrap_or_else(|_| default.to_string());
    if name.is_empty() || name.contains('/') || name.contains('\\') {
        panic!("{var}={name:?}: give a file name inside AKA_MODEL_DIR");
    }
    require(models, &name);
    name
}

/// Warns (the `include_bytes!` of the binary that needs it then fails) if `models/name` is
/// missing; rebuilds when it changes. Only the `mnist` and `gpt` binaries embed these files, so
/// the other binaries build without them.
fn require(models: &std::path::Path, name: &str) {
    let path = models.join(name);
    println!("cargo:rerun-if-changed={}", path.display());
    if !path.is_file() {
        println!(
            "cargo:warning={} is missing: regenerate the model files with \
             `bash firmware/models/make-models.sh` (or set AKA_MODEL_DIR / AKA_MNIST_MODEL / \
             AKA_GPT_MODEL)",
            path.display()
        );
    }
}
