//! Application code shared by the model-running binaries (`mnist`, `gpt`, `chat`): embedding
//! model files, checksums, and the apps themselves.
//!
//! The binaries are thin: they embed the files (so the library and the other binaries build
//! without them) and call [`mnist::run`] / [`gpt::run`].
//! Both print machine-readable lines (prefixed `MNIST|` / `GPT|`) next to the human ones; the
//! host test `tests/tests/device.rs` parses them and compares with aka-core on the host.

pub mod chat;
pub mod gpt;
pub mod mnist;

/// Bytes with 4-byte alignment, for `include_bytes!` data:
/// `static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("…"));` then `&MODEL.0` (aka-core reads model files at any
/// alignment, but word-aligned weights let the DSP kernels use aligned loads where the file's
/// own layout allows it, and the alignment is then the same on every build).
#[repr(C, align(4))]
pub struct Aligned<B: ?Sized>(pub B);

/// 32-bit FNV-1a over bytes: `h = 0x811c9dc5; for b: h = (h ^ b) * 0x01000193` (wrapping).
/// The MNIST output checksum is this over the int8 scores taken as bytes (`q as u8`).
pub const fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

/// [`fnv1a`] of int8 values (each as its two's-complement byte).
pub fn fnv1a_i8(values: &[i8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &v in values {
        h ^= u32::from(v as u8);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `count * 100 / total` as `(whole, hundredths)` for printing percentages without floats.
pub fn percent(count: u64, total: u64) -> (u64, u64) {
    let x = count * 10_000 / total.max(1);
    (x / 100, x % 100)
}
