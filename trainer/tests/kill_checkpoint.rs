//! Kill during a checkpoint write (issue 11): `aka-trainer gpt` and `aka-trainer mnist` are
//! killed with SIGKILL at pseudo-random moments (seeded, so the delays are the same on every run;
//! where they land depends on the machine), many of them inside a checkpoint or chart write: with
//! an evaluation and a checkpoint every step (GPT) or every 2-step epoch (MNIST), tiny jobs spend
//! most of their wall time writing and `fsync`ing them.
//!
//! After every kill, `OUT/checkpoint.bin` is either absent (no save yet) or a complete checkpoint
//! that is exactly the previous one (same bytes) or a newer one that continues it (later step,
//! the same loss and evaluation history up to the previous step). Temporary files left by a kill
//! are never taken for the checkpoint, and a `--resume` run from whatever is on disk (leftovers
//! present) exits 0, says where it resumed, and ends with a valid checkpoint at its target whose
//! history continues the killed run's checkpoint. On Linux, that resumed run also removes the
//! temporary files of the killed writer: none are left after it.
//! No timing is asserted: timing only decides where the kills land.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aka_core::rng::Rng;
use aka_trainer::train::Checkpoint;

mod common;
use common::write_random_mnist;

/// Kill/resume rounds per job.
const ROUNDS: usize = 24;
/// Odd rounds kill within `0..SHORT_DELAY_MS` of the start (startup, data loading, the first
/// saves), even ones within `0..MAX_DELAY_MS`.
const SHORT_DELAY_MS: u32 = 60;
/// See [`SHORT_DELAY_MS`].
const MAX_DELAY_MS: u32 = 400;
/// Length (`--steps` / `--epochs`) of the killed runs: more than they can reach before the kill.
const LONG_RUN: usize = 100_000;
/// Steps / epochs each `--resume` run adds after a kill.
const RESUME_MORE: usize = 2;
/// MNIST training images (a batch of 32, so 2 steps per epoch).
const MNIST_TRAIN: u32 = 64;
/// MNIST optimizer steps per epoch.
const MNIST_STEPS_PER_EPOCH: usize = 2;

/// A fresh (absent) path under the temp dir for `name`.
fn temp_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("aka-kill-ck-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// A small text of words (vocabulary of a dozen characters).
fn write_text(path: &Path) {
    let words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"];
    let mut rng = Rng::new(11);
    let text: Vec<&str> = (0..2000)
        .map(|_| words[rng.below(words.len() as u32) as usize])
        .collect();
    std::fs::write(path, text.join(" ")).unwrap();
}

/// One trainer job under test.
struct Job {
    /// For messages.
    name: &'static str,
    /// The data set (text file or IDX directory).
    data: PathBuf,
    /// `aka-trainer ... --data DATA --out OUT --resume` running to `target` (steps or epochs),
    /// as `command(DATA, OUT, target)`.
    command: fn(&Path, &Path, usize) -> Command,
    /// Progress of a checkpoint in the unit of `target`.
    units: fn(&Checkpoint) -> usize,
    /// What the resumed run prints about the checkpoint `PATH` it continued from at `units`.
    resumed: fn(&Path, usize) -> String,
    /// Whether the checkpoint holds a GPT (else a Sequential model).
    gpt: bool,
}

/// Names of the temporary files in `dir` (`.NAME.PID.N.tmp`, left by killed writers).
fn temp_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect();
    v.sort();
    v
}

/// Loads `path` and checks it is a complete checkpoint of `job`: format, a loss for every step,
/// the evaluation of `step` last, the right model kind, finite parameters of the stated shapes.
fn load_complete(path: &Path, job: &Job, what: &str) -> Checkpoint {
    let ck = Checkpoint::load(path).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_eq!(ck.format, Checkpoint::FORMAT, "{what}");
    assert!(ck.step >= 1, "{what}: step {}", ck.step);
    assert_eq!(ck.log.step_loss.len(), ck.step, "{what}: losses");
    assert_eq!(ck.log.evals.last().map(|e| e.step), Some(ck.step), "{what}");
    assert!(!ck.params.is_empty(), "{what}: no parameters");
    for p in &ck.params {
        assert_eq!(
            p.data.len(),
            p.shape.iter().product::<usize>(),
            "{what}: {}",
            p.name
        );
        assert!(p.data.iter().all(|v| v.is_finite()), "{what}: {}", p.name);
    }
    if job.gpt {
        ck.gpt().unwrap_or_else(|e| panic!("{what}: {e:#}"));
    } else {
        assert!(ck.gpt_config().is_none(), "{what}: a GPT");
        assert!(ck.pixel_norm().is_some(), "{what}: no pixel normalization");
    }
    ck
}

/// `new` continues `old`: a later (or the same) step and the same history up to `old.step`.
fn assert_continues(new: &Checkpoint, old: &Checkpoint, what: &str) {
    assert!(
        new.step >= old.step,
        "{what}: step {} < {}",
        new.step,
        old.step
    );
    let bits = |l: &[f32]| l.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&new.log.step_loss[..old.step]),
        bits(&old.log.step_loss),
        "{what}: loss history differs"
    );
    // Debug text: exact for floats (shortest round trip), and NaN (step 0's train loss) equal.
    assert_eq!(
        format!("{:?}", &new.log.evals[..old.log.evals.len()]),
        format!("{:?}", old.log.evals),
        "{what}: evaluations differ"
    );
}

/// Runs the kill/resume rounds of `job` with data already in `dir`.
fn kill_and_resume(job: &Job, dir: &Path) {
    let t0 = Instant::now();
    let out = dir.join("run");
    let ck_path = out.join(Checkpoint::FILE);
    let mut rng = Rng::new(2026);
    // The checkpoint on disk after the last round (None: none yet), and its bytes.
    let mut last: Option<(Checkpoint, Vec<u8>)> = None;
    let (mut newer, mut unchanged, mut in_ck_write, mut in_other_write) = (0, 0, 0, 0);
    for round in 0..ROUNDS {
        let max = if round % 2 == 1 {
            SHORT_DELAY_MS
        } else {
            MAX_DELAY_MS
        };
        let delay = rng.below(max);
        let what = format!("{} round {round} (kill after {delay} ms)", job.name);
        let temps_before = temp_files(&out);

        let mut child = (job.command)(&job.data, &out, LONG_RUN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aka-trainer starts");
        std::thread::sleep(Duration::from_millis(delay.into()));
        // SIGKILL on Unix.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{what}: the run finished: {status}");

        // A temporary file the kill left behind tells which write it interrupted.
        let new_temps: Vec<String> = temp_files(&out)
            .into_iter()
            .filter(|t| !temps_before.contains(t))
            .collect();
        assert!(new_temps.len() <= 1, "{what}: {new_temps:?}");
        if new_temps.iter().any(|t| t.starts_with(".checkpoint.bin.")) {
            in_ck_write += 1;
        } else if !new_temps.is_empty() {
            in_other_write += 1;
        }

        // What is on disk is the previous checkpoint or a complete newer one that continues it.
        let on_disk = if ck_path.exists() {
            let bytes = std::fs::read(&ck_path).unwrap();
            let ck = load_complete(&ck_path, job, &what);
            match &last {
                Some((prev, prev_bytes)) if ck.step == prev.step => {
                    assert_eq!(&bytes, prev_bytes, "{what}: same step, other bytes");
                    unchanged += 1;
                }
                Some((prev, _)) => {
                    assert_continues(&ck, prev, &what);
                    newer += 1;
                }
                None => newer += 1,
            }
            Some((ck, bytes))
        } else {
            assert!(last.is_none(), "{what}: the checkpoint disappeared");
            None
        };

        // `--resume` continues from it (leftover temporary files present) a little further.
        let from = on_disk.as_ref().map_or(0, |(ck, _)| (job.units)(ck));
        let target = from + RESUME_MORE;
        let o = (job.command)(&job.data, &out, target)
            .output()
            .expect("aka-trainer runs");
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success(),
            "{what}: resume failed: {stdout}\n{stderr}"
        );
        let resumed = load_complete(&ck_path, job, &format!("{what}, resumed"));
        assert_eq!(
            (job.units)(&resumed),
            target,
            "{what}: resumed to the wrong point"
        );
        if let Some((ck, _)) = &on_disk {
            let said = (job.resumed)(&ck_path, from);
            assert!(stdout.contains(&said), "{what}: {said:?} not in {stdout}");
            assert_continues(&resumed, ck, &format!("{what}, resumed"));
        }
        // The resumed run removed what the killed writer left (its pid is gone).
        if cfg!(target_os = "linux") {
            let temps = temp_files(&out);
            assert!(temps.is_empty(), "{what}: left after the resume: {temps:?}");
        }
        let bytes = std::fs::read(&ck_path).unwrap();
        last = Some((resumed, bytes));
    }

    let leftovers = temp_files(&out);
    eprintln!(
        "{}: {ROUNDS} kills in {:.1?}: {newer} found a newer checkpoint, {unchanged} the previous \
         one unchanged; {in_ck_write} landed inside a checkpoint write, {in_other_write} inside \
         another write (chart); final step {}; {} leftover temp files",
        job.name,
        t0.elapsed(),
        last.as_ref().map_or(0, |(ck, _)| ck.step),
        leftovers.len()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gpt_sigkill_never_loses_or_corrupts_the_checkpoint() {
    let dir = temp_path("gpt");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("text.txt");
    write_text(&data);
    let job = Job {
        name: "gpt",
        data,
        command: |data, out, steps| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_aka-trainer"));
            c.arg("gpt")
                .args(["--data", data.to_str().unwrap()])
                .args(["--out", out.to_str().unwrap()])
                .args([
                    "--layers", "1", "--heads", "1", "--dim", "16", "--block", "16",
                ])
                .args([
                    "--batch-size",
                    "4",
                    "--eval-interval",
                    "1",
                    "--eval-batches",
                    "1",
                ])
                .args(["--warmup", "2", "--steps", &steps.to_string()])
                .args([
                    "--no-export",
                    "--sample-chars",
                    "0",
                    "--threads",
                    "1",
                    "--resume",
                ])
                .env("RUST_BACKTRACE", "0");
            c
        },
        units: |ck| ck.step,
        resumed: |path, step| format!("resumed from {} at step {step}", path.display()),
        gpt: true,
    };
    kill_and_resume(&job, &dir);
}

#[test]
fn mnist_sigkill_never_loses_or_corrupts_the_checkpoint() {
    let dir = temp_path("mnist");
    let data = dir.join("data");
    write_random_mnist(&data, MNIST_TRAIN, 16);
    let job = Job {
        name: "mnist",
        data,
        command: |data, out, epochs| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_aka-trainer"));
            c.arg("mnist")
                .args(["--data", data.to_str().unwrap()])
                .args(["--out", out.to_str().unwrap()])
                .args(["--batch-size", "32", "--epochs", &epochs.to_string()])
                .args(["--no-export", "--threads", "1", "--resume"])
                .env("RUST_BACKTRACE", "0");
            c
        },
        units: |ck| ck.step / MNIST_STEPS_PER_EPOCH,
        resumed: |path, epoch| format!("resumed from {} after epoch {epoch}", path.display()),
        gpt: false,
    };
    kill_and_resume(&job, &dir);
}
