//! Training behaviour on real MNIST data: determinism, resume, learning, and the CLI's handling
//! of bad data.

use std::path::{Path, PathBuf};
use std::process::Command;

use aka_core::rng::Rng;
use aka_trainer::data::mnist::Mnist;
use aka_trainer::nn::{mnist_cnn, mnist_mlp, Module};
use aka_trainer::train::{train, Checkpoint, Progress, Splits, Subset, TrainConfig};

fn mnist() -> Mnist {
    Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"))
        .expect("bundled MNIST loads")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aka-training-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn weights(model: &dyn Module) -> Vec<Vec<u32>> {
    model
        .parameters()
        .iter()
        .map(|(_, p)| p.value().iter().map(|v| v.to_bits()).collect())
        .collect()
}

fn quiet(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        seed,
        progress: Progress::Quiet,
        ..TrainConfig::default()
    }
}

#[test]
fn same_seed_gives_bit_identical_loss_history() {
    let data = mnist();
    let train_set = Subset::first(&data.train, 1024);
    let test_set = Subset::first(&data.test, 256);
    let run = || {
        let model = mnist_mlp(&mut Rng::new(7));
        let h = train(
            &model,
            &Splits {
                train: &train_set,
                test: &test_set,
            },
            &quiet(2, 7),
        )
        .unwrap();
        (h, weights(&model))
    };
    let (h1, w1) = run();
    let (h2, w2) = run();
    assert_eq!(h1.step_loss.len(), 2 * 16);
    let bits = |h: &aka_trainer::train::History| {
        h.step_loss.iter().map(|l| l.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(bits(&h1), bits(&h2));
    assert_eq!(w1, w2);
    // A different seed gives a different run (the seed is really used).
    let model = mnist_mlp(&mut Rng::new(8));
    let h3 = train(
        &model,
        &Splits {
            train: &train_set,
            test: &test_set,
        },
        &quiet(2, 8),
    )
    .unwrap();
    assert_ne!(bits(&h1), bits(&h3));
}

/// A run stopped after epoch 1 and resumed from its checkpoint ends with exactly the weights of an
/// uninterrupted run. The CNN has dropout, so this also checks that the RNG state is restored.
#[test]
fn resumed_training_equals_uninterrupted() {
    let data = mnist();
    let train_set = Subset::first(&data.train, 512);
    let test_set = Subset::first(&data.test, 128);
    let splits = Splits {
        train: &train_set,
        test: &test_set,
    };

    let dir_a = temp_dir("uninterrupted");
    let full = mnist_cnn(&mut Rng::new(3));
    let h_full = train(
        &full,
        &splits,
        &TrainConfig {
            out_dir: Some(dir_a.clone()),
            ..quiet(3, 3)
        },
    )
    .unwrap();

    let dir_b = temp_dir("resumed");
    let first = mnist_cnn(&mut Rng::new(3));
    train(
        &first,
        &splits,
        &TrainConfig {
            out_dir: Some(dir_b.clone()),
            ..quiet(1, 3)
        },
    )
    .unwrap();
    drop(first); // "killed": only the checkpoint survives

    let resumed = mnist_cnn(&mut Rng::new(99)); // different init: everything must come from the checkpoint
    let h_resumed = train(
        &resumed,
        &splits,
        &TrainConfig {
            out_dir: Some(dir_b.clone()),
            resume: true,
            ..quiet(3, 3)
        },
    )
    .unwrap();

    assert_eq!(weights(&full), weights(&resumed));
    assert_eq!(h_full.step_loss, h_resumed.step_loss);
    assert_eq!(h_full.epochs.len(), 3);
    let ck = Checkpoint::load(&dir_b.join(Checkpoint::FILE)).unwrap();
    assert_eq!(ck.epochs_done, 3);
    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}

#[test]
fn mlp_learns_mnist() {
    let data = mnist();
    let train_set = Subset::first(&data.train, 6000);
    let test_set = Subset::first(&data.test, 1000);
    let model = mnist_mlp(&mut Rng::new(0));
    let h = train(
        &model,
        &Splits {
            train: &train_set,
            test: &test_set,
        },
        &quiet(1, 0),
    )
    .unwrap();
    // Chance is 10 %; a working pipeline reaches ~90 % on 6k images in one epoch.
    assert!(
        h.epochs[0].test_accuracy > 0.85,
        "accuracy {}",
        h.epochs[0].test_accuracy
    );
    assert!(h.step_loss.last().unwrap() < &h.step_loss[0]);
}

#[test]
fn corrupt_checkpoint_is_a_clear_error() {
    let dir = temp_dir("corrupt-ck");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(Checkpoint::FILE), b"not a checkpoint").unwrap();
    let err = Checkpoint::load(&dir.join(Checkpoint::FILE)).unwrap_err();
    assert!(format!("{err:#}").contains("checkpoint.bin"), "{err:#}");
    let _ = std::fs::remove_dir_all(dir);
}

fn trainer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_aka-trainer"))
        .args(args)
        .output()
        .expect("runs")
}

/// Missing, truncated and corrupt data files: non-zero exit, a message naming the file, no panic.
#[test]
fn cli_reports_bad_data_without_panicking() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 3] = [
        ("missing", |d| {
            std::fs::remove_file(d.join("train-labels-idx1-ubyte.gz")).unwrap()
        }),
        ("truncated", |d| {
            let p = d.join("train-labels-idx1-ubyte.gz");
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("corrupt", |d| {
            std::fs::write(
                d.join("train-labels-idx1-ubyte.gz"),
                b"\x00\x00\x08\x03garbage",
            )
            .unwrap()
        }),
    ];
    for (name, damage) in cases {
        let dir = temp_dir(&format!("cli-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&src).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        damage(&dir);
        let out = trainer(&[
            "mnist",
            "--data",
            dir.to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: should fail");
        assert!(
            stderr.contains("train-labels-idx1-ubyte"),
            "{name}: message should name the file: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: panicked: {stderr}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
