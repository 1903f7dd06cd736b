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

/// Counts of the GPT's decode steps (`gpt` and `chat`): steps that slide the window (re-run the
/// last half of the context) are kept apart from plain ones, whose mean is the per-token figure.
#[derive(Clone, Copy, Debug)]
pub struct DecodeStats {
    /// Sum over every step.
    pub total: u64,
    /// Number of steps.
    pub steps: u64,
    /// Sum over the steps that slid the window.
    pub slide_total: u64,
    /// Number of those.
    pub slides: u64,
    /// Fewest and most counts of a plain step (`u64::MAX`, 0 before any).
    pub min: u64,
    pub max: u64,
}

impl Default for DecodeStats {
    fn default() -> Self {
        Self {
            total: 0,
            steps: 0,
            slide_total: 0,
            slides: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl DecodeStats {
    /// Adds one step of `count` (instructions or cycles); `slid`: it slid the window.
    pub fn record(&mut self, count: u64, slid: bool) {
        self.total += count;
        self.steps += 1;
        if slid {
            self.slide_total += count;
            self.slides += 1;
        } else {
            self.min = self.min.min(count);
            self.max = self.max.max(count);
        }
    }

    /// Steps without a slide.
    pub fn plain(&self) -> u64 {
        self.steps - self.slides
    }

    /// Mean count of a step without a slide (0 without any).
    pub fn plain_mean(&self) -> u64 {
        (self.total - self.slide_total) / self.plain().max(1)
    }

    /// Fewest count of a plain step (0 without any).
    pub fn plain_min(&self) -> u64 {
        if self.plain() > 0 {
            self.min
        } else {
            0
        }
    }
}

/// [`GptModel::load`](aka_core::gpt::GptModel::load) in a frame of its own: the loader's
/// temporaries (the descriptors it decodes and validates; a 14,848-byte frame in the release
/// build) are then live only while it runs, instead of staying in the frame of the app that
/// would otherwise inline it, under every decode step. Measured in QEMU with
/// `stack::log_high_water`: the `gpt` app's stack high-water went from 28,804 to 20,284 bytes.
#[inline(never)]
pub fn load_gpt(bytes: &[u8]) -> Result<aka_core::gpt::GptModel<'_>, aka_core::Error> {
    aka_core::gpt::GptModel::load(bytes)
}

/// [`SequentialModel::load`](aka_core::SequentialModel::load) in a frame of its own, for the
/// same reason as [`load_gpt`]: inlined into the `mnist` app, its temporaries made the app's
/// frame 18,304 bytes for the whole run (stack high-water 24,868 bytes with the CNN in QEMU).
#[inline(never)]
pub fn load_sequential(bytes: &[u8]) -> Result<aka_core::SequentialModel<'_>, aka_core::Error> {
    aka_core::SequentialModel::load(bytes)
}

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
