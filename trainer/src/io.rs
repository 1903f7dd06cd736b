//! Atomic file writes.
//!
//! Checkpoints, model files and charts are rewritten while a run is in progress; a crash or a
//! full disk in the middle of a write must never leave a half-written file where a good one
//! used to be. [`write_atomic`] writes to a temporary file in the destination's directory
//! (so the final `rename` does not cross file systems), flushes it to disk with `fsync`, and
//! then renames it over the destination. Readers therefore see either the complete old file or
//! the complete new one. On any error the temporary file is removed and the destination is left
//! untouched.
//!
//! Notes:
//! - The temporary file is named `.<file name>.<pid>.<counter>.tmp`, unique per process and per
//!   call, so concurrent writers (threads or processes) never share a temporary file. If two
//!   writers target the same destination, the last rename wins.
//! - If `path` is a symbolic link, the link itself is replaced by a regular file.
//! - The new file gets default permissions (those of `File::create`), not the old file's.
//! - A process killed in the middle of a write (SIGKILL, power loss) leaves its temporary file
//!   behind. After each successful write, temporary files in the same directory whose writer
//!   process is gone are removed ([`remove_dead_temps`]; on Linux, where `/proc` tells which
//!   processes are alive; elsewhere they are left alone).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Atomically replaces (or creates) `path` with `bytes`.
///
/// See the [module documentation](self) for the guarantees.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Atomically replaces (or creates) `path` with whatever `write` writes.
///
/// `write` receives a buffered writer onto the temporary file. If it returns an error (or the
/// flush, `fsync` or rename fails) the temporary file is deleted, the destination keeps its
/// previous contents, and the error is returned.
pub fn write_atomic_with<F>(path: impl AsRef<Path>, write: F) -> io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let path = path.as_ref();
    let tmp = temp_path(path)?;
    let result = write_to_temp_and_rename(&tmp, path, write);
    if result.is_err() {
        // Best effort: the temp file may not exist (e.g. the directory is missing).
        let _ = fs::remove_file(&tmp);
    } else {
        remove_dead_temps(path.parent().unwrap_or(Path::new("")));
    }
    result
}

/// Removes the temporary files (`.<name>.<pid>.<counter>.tmp`) in `dir` that were left by
/// writers that no longer run, and returns their names. Best effort: errors are ignored.
/// Only on Linux (`/proc/<pid>` tells whether a process is alive); elsewhere nothing is removed.
pub fn remove_dead_temps(dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let proc_fs = Path::new("/proc/self");
    if !cfg!(target_os = "linux") || !proc_fs.exists() {
        return removed;
    }
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_writer_pid(&name) else {
            continue;
        };
        let dead = pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists();
        if dead && fs::remove_file(entry.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// The writer's pid if `name` is one of our temporary files: `.<name>.<pid>.<counter>.tmp`.
fn temp_writer_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = rest.rsplitn(3, '.');
    let counter = parts.next()?;
    let pid = parts.next()?;
    let stem = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (!stem.is_empty() && digits(counter) && digits(pid))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Atomically writes `value` as pretty-printed JSON (a run's `summary.json`).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn write_to_temp_and_rename<F>(tmp: &Path, path: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    // The name is unique to this process and call; a leftover with the same name can only
    // come from a dead process whose pid was reused, so truncating it is safe.
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let mut w = BufWriter::new(file);
    write(&mut w)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)?;
    sync_parent_dir(path);
    Ok(())
}

/// `.<name>.<pid>.<counter>.tmp` next to `path`.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// Makes the rename itself durable (Unix only; best effort, errors are ignored because the
/// data is already safely in place).
fn sync_parent_dir(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a fresh, empty directory under the system temp dir, removed afterwards.
    fn in_temp_dir(tag: &str, f: impl FnOnce(&Path)) {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("aka-io-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        f(&dir);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn creates_and_replaces() {
        in_temp_dir("replace", |dir| {
            let p = dir.join("out.bin");
            write_atomic(&p, b"first").unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"first");
            write_atomic(&p, b"second, longer").unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"second, longer");
            write_atomic_with(&p, |w| {
                w.write_all(b"third")?;
                write!(w, " {}", 3)
            })
            .unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"third 3");
            assert_eq!(entries(dir), vec!["out.bin"]);
        });
    }

    #[test]
    fn failed_write_keeps_old_file_and_removes_temp() {
        in_temp_dir("fail", |dir| {
            let p = dir.join("model.json");
            write_atomic(&p, b"old contents").unwrap();
            let err = write_atomic_with(&p, |w| {
                w.write_all(b"partial new contents")?;
                Err(io::Error::other("simulated failure"))
            })
            .unwrap_err();
            assert_eq!(err.to_string(), "simulated failure");
            assert_eq!(fs::read(&p).unwrap(), b"old contents");
            assert_eq!(entries(dir), vec!["model.json"], "temp file left behind");

            // A failure on a file that did not exist yet creates nothing.
            let q = dir.join("new.json");
            assert!(write_atomic_with(&q, |_| Err(io::Error::other("nope"))).is_err());
            assert!(!q.exists());
            assert_eq!(entries(dir), vec!["model.json"]);
        });
    }

    #[test]
    fn missing_directory_is_an_error() {
        in_temp_dir("missing", |dir| {
            let p = dir.join("no/such/dir/file.bin");
            assert!(write_atomic(&p, b"x").is_err());
            assert_eq!(entries(dir), Vec::<String>::new());
        });
    }

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_path(Path::new("dir/checkpoint.bin")).unwrap();
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(temp_writer_pid(&name), Some(std::process::id()));
        assert_eq!(temp_writer_pid(".a.b.c.12.3.tmp"), Some(12));
        for other in [
            "checkpoint.bin",
            ".checkpoint.bin.tmp",
            ".12.3.tmp",
            ".x.12.tmp",
            ".x.12.3",
            "x.12.3.tmp",
            ".x.1a.3.tmp",
            ".x.12..tmp",
        ] {
            assert_eq!(temp_writer_pid(other), None, "{other}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn temps_of_dead_writers_are_removed_by_the_next_write() {
        in_temp_dir("dead", |dir| {
            // A process that has exited: its pid is no longer in /proc.
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let dead = child.id();
            child.wait().unwrap();
            assert!(!Path::new("/proc").join(dead.to_string()).exists());
            let ours = format!(".chart.svg.{}.7.tmp", std::process::id());
            let left = [
                format!(".checkpoint.bin.{dead}.0.tmp"),
                format!(".chart.svg.{dead}.3.tmp"),
            ];
            let keep = [
                ours.clone(),
                "notes.tmp".to_string(),
                ".x.1.tmp".to_string(),
            ];
            for n in left.iter().chain(&keep) {
                fs::write(dir.join(n), b"partial").unwrap();
            }
            write_atomic(dir.join("checkpoint.bin"), b"complete").unwrap();
            let mut expected: Vec<String> = keep.to_vec();
            expected.push("checkpoint.bin".into());
            expected.sort();
            assert_eq!(entries(dir), expected);
        });
    }

    #[test]
    fn relative_path_in_current_dir_has_a_parent() {
        // `Path::new("file").parent()` is `Some("")`: the temp file must go next to it.
        let t = temp_path(Path::new("file.bin")).unwrap();
        assert_eq!(t.parent(), Some(Path::new("")));
        assert!(t.to_string_lossy().starts_with(".file.bin."));
        assert!(temp_path(Path::new("/")).is_err());
    }
}
