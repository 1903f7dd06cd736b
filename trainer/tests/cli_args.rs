//! Every `aka-trainer` argument is checked before any data is read, memory allocated or training
//! started (issue 11, "Arguments first"): each refusal exits non-zero without a panic, names the
//! flag and the value, and writes nothing to `--out`.
//!
//! Clap's own value parsers refuse out-of-range integers (exit code 2, "invalid value 'V' for
//! '--flag …'"); the commands' `validate()` refuses the rest (exit code 1, "--flag V: rule").

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Exit code of clap's argument errors.
const CLAP: i32 = 2;
/// Exit code of the commands' own errors (`anyhow` from `main`).
const REFUSED: i32 = 1;

/// A fresh (absent) path under the temp dir for `name`.
fn temp_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("aka-cli-args-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// Runs `aka-trainer SUBCOMMAND --out OUT ARGS`.
fn trainer(subcommand: &str, out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aka-trainer"))
        .arg(subcommand)
        .args(["--out", out.to_str().unwrap()])
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .expect("aka-trainer runs")
}

/// Runs each case and checks the refusal: exit `code`, every `needle` in stderr, no panic, and
/// nothing written to `--out`.
/// `name` keeps the `--out` paths of tests running in parallel apart.
fn refuses(name: &str, subcommand: &str, cases: &[(&[&str], i32, &[&str])]) {
    for (i, (args, code, needles)) in cases.iter().enumerate() {
        let out = temp_path(&format!("{name}-{i}"));
        let o = trainer(subcommand, &out, args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let what = format!("aka-trainer {subcommand} {}", args.join(" "));
        assert_eq!(o.status.code(), Some(*code), "{what}: {stderr}");
        for needle in *needles {
            assert!(
                stderr.contains(needle),
                "{what}: {needle:?} not in {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(!out.exists(), "{what}: wrote {}", out.display());
    }
}

#[test]
fn gpt_refuses_zero_sizes_counts_and_threads() {
    let mut cases: Vec<(&[&str], i32, &[&str])> = vec![
        (&["--layers", "0"], CLAP, &["'0'", "--layers"]),
        (&["--heads", "0"], CLAP, &["'0'", "--heads"]),
        (&["--dim", "0"], CLAP, &["'0'", "--dim"]),
        (&["--block", "0"], CLAP, &["'0'", "--block"]),
        (&["--steps", "0"], CLAP, &["'0'", "--steps"]),
        (&["--batch-size", "0"], CLAP, &["'0'", "--batch-size"]),
        (&["--eval-interval", "0"], CLAP, &["'0'", "--eval-interval"]),
        (&["--threads", "0"], CLAP, &["'0'", "--threads"]),
        (
            &["--threads", "100000"],
            CLAP,
            &["'100000'", "--threads", "1..=1024"],
        ),
        (&["--max-vocab", "1"], CLAP, &["'1'", "--max-vocab"]),
        (
            &["--max-memory-gib", "0"],
            CLAP,
            &["'0'", "--max-memory-gib"],
        ),
    ];
    // `--eval-only` used to print "val loss NaN over 20 batches of 0 x 64".
    cases.push((
        &["--eval-only", "--batch-size", "0"],
        CLAP,
        &["'0'", "--batch-size"],
    ));
    cases.push((
        &["--eval-only", "--eval-batches", "0"],
        REFUSED,
        &["--eval-batches 0: --eval-only needs at least 1 validation batch"],
    ));
    refuses("zero", "gpt", &cases);
}

#[test]
fn gpt_refuses_heads_that_do_not_divide_dim() {
    refuses(
        "heads",
        "gpt",
        &[
            (
                &["--heads", "3"],
                REFUSED,
                &["--heads 3: must divide --dim 64"],
            ),
            (
                &["--dim", "48", "--heads", "48", "--position", "rope"],
                REFUSED,
                &["--dim 48: --position rope needs an even head width"],
            ),
        ],
    );
}

#[test]
fn gpt_refuses_bad_rates_and_sampling() {
    let lr = "--lr NaN: the learning rate must be a finite number greater than 0";
    refuses(
        "rates",
        "gpt",
        &[
            (&["--lr", "nan"], REFUSED, &[lr]),
            (&["--lr=inf"], REFUSED, &["--lr inf: "]),
            (&["--lr=0"], REFUSED, &["--lr 0: "]),
            (&["--lr=-1e-3"], REFUSED, &["--lr -0.001: "]),
            (&["--lr", "nan", "--resume"], REFUSED, &[lr]),
            (
                &["--min-lr-ratio", "2"],
                REFUSED,
                &["--min-lr-ratio 2: must be in [0, 1]"],
            ),
            (
                &["--weight-decay", "nan"],
                REFUSED,
                &["--weight-decay NaN: "],
            ),
            (
                &["--beta2", "1"],
                REFUSED,
                &["--beta2 1: must be in [0, 1)"],
            ),
            (
                &["--dropout", "1"],
                REFUSED,
                &["--dropout 1: must be in [0, 1)"],
            ),
            (
                &["--export-block", "65"],
                REFUSED,
                &["--export-block 65: must be at most --block 64"],
            ),
            (
                &["--dropout=-0.1"],
                REFUSED,
                &["--dropout -0.1: must be in [0, 1)"],
            ),
            (
                &["--temperature=-1"],
                REFUSED,
                &["--temperature -1: must be a finite"],
            ),
            (&["--temperature", "inf"], REFUSED, &["--temperature inf: "]),
            (
                &["--eval-only", "--temperature", "nan"],
                REFUSED,
                &["--temperature NaN: "],
            ),
        ],
    );
}

/// `gpt --block 1000000000` used to build the model and abort on a 256 GB allocation (exit 134).
/// It is now refused by the memory estimate before the data is read (or, where the machine's
/// memory is unknown, by the data's length before the model is built).
#[test]
fn gpt_refuses_sizes_that_do_not_fit_memory_or_data() {
    refuses(
        "memory",
        "gpt",
        &[
            (&["--block", "1000000000"], REFUSED, &["--block 1000000000"]),
            (
                &[
                    "--max-memory-gib",
                    "1",
                    "--layers",
                    "8",
                    "--dim",
                    "512",
                    "--block",
                    "256",
                    "--batch-size",
                    "64",
                ],
                REFUSED,
                &[
                    "--layers 8 --heads 4 --dim 512 --block 256 --batch-size 64",
                    "of memory, more than the 1.0 GiB allowed",
                    "--max-memory-gib",
                ],
            ),
        ],
    );
    // Blocks longer than the training split: refused after reading the data, before building the
    // model.
    let data = temp_path("tiny.txt");
    std::fs::write(&data, "hello world, a tiny corpus.\n".repeat(4)).unwrap();
    let data_arg = data.to_str().unwrap();
    refuses(
        "data",
        "gpt",
        &[(
            &["--data", data_arg, "--block", "200"],
            REFUSED,
            &[
                "--block 200: the training split of",
                "has 100 tokens",
                "(at most 99)",
            ],
        )],
    );
    let _ = std::fs::remove_file(data);
}

#[test]
fn mnist_refuses_bad_arguments_before_training() {
    refuses(
        "mnist",
        "mnist",
        &[
            (&["--epochs", "0"], CLAP, &["'0'", "--epochs"]),
            (&["--batch-size", "0"], CLAP, &["'0'", "--batch-size"]),
            (&["--threads", "0"], CLAP, &["'0'", "--threads"]),
            (&["--threads", "1025"], CLAP, &["'1025'", "--threads"]),
            // These two used to fail only after a whole epoch and a checkpoint.
            (&["--calibration", "0"], CLAP, &["'0'", "--calibration"]),
            (
                &["--calibration-percentile", "20"],
                REFUSED,
                &["--calibration-percentile 20: must be in (50, 100]"],
            ),
            (
                &["--calibration-percentile", "nan"],
                REFUSED,
                &["--calibration-percentile NaN: "],
            ),
            (
                &["--calibration-percentile", "100.5"],
                REFUSED,
                &["--calibration-percentile 100.5: "],
            ),
            (
                &["--lr", "nan"],
                REFUSED,
                &["--lr NaN: the learning rate must be a finite number greater than 0"],
            ),
            (&["--lr=0", "--optimizer", "sgd"], REFUSED, &["--lr 0: "]),
        ],
    );
}

/// `mnist --resume --lr nan` used to train on NaN and save the NaN checkpoint over the good one;
/// it is now refused as an argument and the checkpoint is not touched.
#[test]
fn mnist_resume_with_nan_lr_leaves_the_checkpoint() {
    let out = temp_path("mnist-resume-nan");
    std::fs::create_dir_all(&out).unwrap();
    let ck = out.join("checkpoint.bin");
    std::fs::write(&ck, b"the previous checkpoint").unwrap();
    let o = trainer("mnist", &out, &["--resume", "--lr", "nan"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(REFUSED), "{stderr}");
    assert!(stderr.contains("--lr NaN: "), "{stderr}");
    assert_eq!(std::fs::read(&ck).unwrap(), b"the previous checkpoint");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    let _ = std::fs::remove_dir_all(out);
}

/// `gpt --eval-only --batch-size 100000000` used to abort on allocation (exit 134); the batch is
/// now checked against the memory estimate with the checkpoint's sizes before any is drawn.
#[test]
fn gpt_eval_only_refuses_a_batch_that_does_not_fit() {
    let out = temp_path("eval-only-batch");
    let quick = [
        "--steps",
        "1",
        "--eval-batches",
        "1",
        "--sample-chars",
        "0",
        "--no-export",
    ];
    let o = trainer("gpt", &out, &quick);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = std::fs::read(out.join("checkpoint.bin")).unwrap();
    let o = trainer(
        "gpt",
        &out,
        &[
            "--eval-only",
            "--batch-size",
            "100000000",
            "--max-memory-gib",
            "64",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(REFUSED), "{stderr}");
    for needle in [
        "the checkpoint's model, --layers 2 --heads 4 --dim 64 --block 64 --batch-size 100000000",
        "more than the 64.0 GiB allowed: reduce --batch-size",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert_eq!(std::fs::read(out.join("checkpoint.bin")).unwrap(), before);
    let _ = std::fs::remove_dir_all(out);
}
