//! What the host tools agree to read, allocate and run for one model file: files are untrusted,
//! and a 50-byte file can declare shapes whose arena or work has no practical bound. Each limit
//! has a flag that raises it; the messages name the number and the flag.

use anyhow::bail;

use crate::model::Model;

/// Default `--max-file-mib`: model files up to 64 MiB.
pub const DEFAULT_MAX_FILE_MIB: u64 = 64;
/// Default `--max-arena-mib`: arena (sequential) or run state (GPT) up to 256 MiB.
pub const DEFAULT_MAX_ARENA_MIB: u64 = 256;
/// Default `--max-ops`: at most 10^11 declared operations per inference (or per GPT token).
pub const DEFAULT_MAX_OPS: u64 = 100_000_000_000;
/// Default `--max-image-mpix`: `--image` files up to 64 million pixels (8000 x 8000), checked
/// from the header before decoding.
pub const DEFAULT_MAX_IMAGE_MPIX: u64 = 64;

const MIB: u64 = 1 << 20;

/// The caps of one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest model file read, in MiB (`--max-file-mib`).
    pub max_file_mib: u64,
    /// Largest arena / run state allocated, in MiB (`--max-arena-mib`).
    pub max_arena_mib: u64,
    /// Most declared operations per inference or token (`--max-ops`).
    pub max_ops: u64,
    /// Largest `--image` decoded, in millions of pixels (`--max-image-mpix`).
    pub max_image_mpix: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_mib: DEFAULT_MAX_FILE_MIB,
            max_arena_mib: DEFAULT_MAX_ARENA_MIB,
            max_ops: DEFAULT_MAX_OPS,
            max_image_mpix: DEFAULT_MAX_IMAGE_MPIX,
        }
    }
}

impl Limits {
    /// The file cap in bytes (saturating).
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_mib.saturating_mul(MIB)
    }

    /// The image cap in pixels (saturating).
    pub fn max_image_pixels(&self) -> u64 {
        self.max_image_mpix.saturating_mul(1_000_000)
    }

    /// Refuses a model whose arena/state or declared work is above the caps, before anything is
    /// allocated or run. `name` is the file, for the message.
    pub fn check_run(&self, model: &Model<'_>, name: &str) -> anyhow::Result<()> {
        let (what, bytes, work, unit) = match model {
            Model::Sequential(m) => {
                // The input image at the model's size is allocated too (<= half the arena).
                let arena = u64::try_from(m.arena_size()).ok();
                ("an arena", arena, m.work(), "inference")
            }
            Model::Gpt(m) => (
                "a run state",
                u64::try_from(m.state_size()).ok(),
                m.work_per_token(),
                "token",
            ),
        };
        let max_bytes = self.max_arena_mib.saturating_mul(MIB);
        match bytes {
            Some(b) if b <= max_bytes => {}
            Some(b) => bail!(
                "{name}: the model needs {what} of {b} bytes ({} MiB), above the limit of {} MiB \
                 (raise it with --max-arena-mib)",
                b.div_ceil(MIB),
                self.max_arena_mib
            ),
            None => bail!("{name}: the size of {what} overflows"),
        }
        match work {
            Some(w) if w <= self.max_ops => Ok(()),
            Some(w) => bail!(
                "{name}: the model declares {w} operations per {unit}, above the limit of {} \
                 (raise it with --max-ops)",
                self.max_ops
            ),
            None => bail!(
                "{name}: the model's declared work per {unit} overflows a 64-bit count \
                 (above any --max-ops)"
            ),
        }
    }
}
