//! Link setup (memory.x, cortex-m-rt's link.x, defmt.x) and the model: loads the MNIST model
//! with aka-core on the host, so a bad file fails the build and the arena is sized from it.

use std::{env, fs, path::PathBuf};

/// The embedded model and test set (the committed files of the aka repository's firmware/).
const MODEL: &str = "../../firmware/models/mnist-cnn.aka";
const IMAGES: &str = "../../firmware/models/mnist-test-images.u8";
const LABELS: &str = "../../firmware/models/mnist-test-labels.u8";

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    fs::copy(dir.join("memory.x"), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    for arg in ["--nmagic", "-Tlink.x", "-Tdefmt.x"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=memory.x");

    for (var, file) in [("MODEL", MODEL), ("IMAGES", IMAGES), ("LABELS", LABELS)] {
        let path = dir.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        println!("cargo:rustc-env=AKA_{var}={}", path.display());
    }
    let bytes = fs::read(dir.join(MODEL)).unwrap_or_else(|e| panic!("{MODEL}: {e}"));
    let model = aka_core::SequentialModel::load(&bytes)
        .unwrap_or_else(|e| panic!("{MODEL} is not a valid aka-core model: {e}"));
    // `ARENA_LEN`: the arena the model needs, the same number `arena_size()` gives on the device.
    let arena = format!("const ARENA_LEN: usize = {};\n", model.arena_size());
    fs::write(out.join("arena.rs"), arena).unwrap();
}
