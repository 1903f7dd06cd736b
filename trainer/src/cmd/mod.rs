//! The trainer's subcommands.
//!
//! Every argument is checked before any data is read, memory allocated or training started:
//! single-value ranges by clap's value parsers ([`at_least_1`]), everything else by each
//! command's `validate()`, called first thing. Refusals name the flag and the value.
pub mod gpt;
pub mod interop;
pub mod mnist;

use std::fmt::Display;

/// A clap value parser for a `usize` of at least 1 (refuses 0 with the flag and the value).
pub fn at_least_1() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// Most worker threads `--threads` accepts (100,000 made rayon's pool set-up hang).
pub const MAX_THREADS: u64 = 1024;

/// A clap value parser for `--threads`: 1 to [`MAX_THREADS`].
pub fn threads() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_THREADS)
}

/// Errors with "`flag` `value`: `rule`" unless `ok`.
pub fn check(ok: bool, flag: &str, value: impl Display, rule: &str) -> anyhow::Result<()> {
    anyhow::ensure!(ok, "{flag} {value}: {rule}");
    Ok(())
}

/// A finite learning rate above 0.
pub fn check_lr(lr: f32) -> anyhow::Result<()> {
    check(
        lr.is_finite() && lr > 0.0,
        "--lr",
        lr,
        "the learning rate must be a finite number greater than 0",
    )
}

/// Bytes as GiB with one decimal (for messages).
pub fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// Total physical memory from `/proc/meminfo` (`None` where that is not readable).
pub fn physical_memory() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}
