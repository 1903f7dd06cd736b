//! Kill during a checkpoint write (issue 11): `aka-trainer gpt` is killed with SIGKILL at
//! pseudo-random moments (seeded, so the delays are the same on every run; where they land
//! depends on the machine), many of them inside a checkpoint or chart write, because with
//! `--eval-interval 1` a tiny model spends most of its wall time writing and `fsync`ing them.
//!
//! After every kill, `OUT/checkpoint.bin` is either absent (no save yet) or a complete checkpoint
//! that is exactly the previous one (same bytes) or a newer one that continues it (later step,
//! the same loss history up to the previous step). Temporary files left by a kill are never
//! taken for the checkpoint, and a `--resume` run from whatever is on disk exits 0 and ends with
//! a valid checkpoint at its target step whose history continues the killed run's checkpoint.
//! No timing is asserted: timing only decides where the kills land.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aka_core::rng::Rng;
use aka_trainer::train::Checkpoint;

/// Kill/resume rounds.
const ROUNDS: usize = 24;
/// Kills land uniformly in `0..MAX_DELAY_MS` after the start (startup, data loading and the
/// first saves included).
const MAX_DELAY_MS: u32 = 400;
/// `--steps` of the killed runs: more than they can reach before the kill.
const LONG_RUN: usize = 100_000;
/// Steps each `--resume` run adds after a kill.
const RESUME_STEPS: usize = 3;

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

/// `aka-trainer gpt --resume` on a tiny model that evaluates, charts and checkpoints every step.
fn gpt(data: &Path, out: &Path, steps: usize) -> Command {
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

/// Loads `path` and checks it is a complete checkpoint of the run: format, a loss for every
/// step, the evaluation of `step` last, finite parameters.
fn load_complete(path: &Path, what: &str) -> Checkpoint {
    let ck = Checkpoint::load(path).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_eq!(ck.format, Checkpoint::FORMAT, "{what}");
    assert!(ck.step >= 1, "{what}: step {}", ck.step);
    assert_eq!(ck.log.step_loss.len(), ck.step, "{what}: losses");
    assert_eq!(ck.log.evals.last().map(|e| e.step), Some(ck.step), "{what}");
    assert!(ck.gpt_config().is_some(), "{what}: not a GPT");
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
    ck.gpt().unwrap_or_else(|e| panic!("{what}: {e:#}"));
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

#[test]
fn sigkill_never_loses_or_corrupts_the_checkpoint() {
    let t0 = Instant::now();
    let dir = temp_path("gpt");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("text.txt");
    write_text(&data);
    let out = dir.join("run");
    let ck_path = out.join(Checkpoint::FILE);

    let mut rng = Rng::new(2026);
    // The checkpoint on disk after the last round (None: none yet), and its bytes.
    let mut last: Option<(Checkpoint, Vec<u8>)> = None;
    let (mut saved_before_kill, mut unchanged, mut in_ck_write, mut in_other_write) = (0, 0, 0, 0);
    for round in 0..ROUNDS {
        let delay = rng.below(MAX_DELAY_MS);
        let what = format!("round {round} (kill after {delay} ms)");
        let temps_before = temp_files(&out);

        let mut child = gpt(&data, &out, LONG_RUN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aka-trainer starts");
        std::thread::sleep(Duration::from_millis(delay.into()));
        // SIGKILL on Unix; an error only if it already exited, which it cannot have here.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{what}: the run finished: {status}");

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
            let ck = load_complete(&ck_path, &what);
            match &last {
                Some((prev, prev_bytes)) if ck.step == prev.step => {
                    assert_eq!(&bytes, prev_bytes, "{what}: same step, other bytes");
                    unchanged += 1;
                }
                Some((prev, _)) => {
                    assert_continues(&ck, prev, &what);
                    saved_before_kill += 1;
                }
                None => saved_before_kill += 1,
            }
            Some((ck, bytes))
        } else {
            assert!(last.is_none(), "{what}: the checkpoint disappeared");
            None
        };

        // `--resume` continues from it (leftover temporary files present) to a few more steps.
        let target = on_disk.as_ref().map_or(0, |(ck, _)| ck.step) + RESUME_STEPS;
        let o = gpt(&data, &out, target).output().expect("aka-trainer runs");
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success(),
            "{what}: resume failed: {stdout}\n{stderr}"
        );
        let resumed = load_complete(&ck_path, &format!("{what}, resumed"));
        assert_eq!(resumed.step, target, "{what}: resumed to the wrong step");
        assert_eq!(resumed.total_steps, target, "{what}");
        if let Some((ck, _)) = &on_disk {
            assert!(
                stdout.contains(&format!(
                    "resumed from {} at step {}",
                    ck_path.display(),
                    ck.step
                )),
                "{what}: {stdout}"
            );
            assert_continues(&resumed, ck, &format!("{what}, resumed"));
        }
        let bytes = std::fs::read(&ck_path).unwrap();
        last = Some((resumed, bytes));
    }

    let leftovers = temp_files(&out);
    eprintln!(
        "{ROUNDS} kills in {:.1?}: {saved_before_kill} after a new save, {unchanged} with the \
         previous checkpoint unchanged, {in_ck_write} inside a checkpoint write, {in_other_write} \
         inside another write (chart); final step {}; leftover temp files: {leftovers:?}",
        t0.elapsed(),
        last.as_ref().map_or(0, |(ck, _)| ck.step),
    );
    // The leftovers never replaced the checkpoint (it loaded after every kill); they are not
    // reused either: every writer names its own.
    assert!(leftovers.iter().all(|t| t != Checkpoint::FILE));
    std::fs::remove_dir_all(&dir).unwrap();
}
