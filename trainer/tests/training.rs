//! Training behaviour on real MNIST data: determinism, resume, learning, and the CLI's handling
//! of bad data.

use std::path::Path;
use std::process::Command;

use aka_core::rng::Rng;
use aka_trainer::data::mnist::{Mnist, PixelNorm};
use aka_trainer::nn::{mnist_cnn, mnist_mlp, Module};
use aka_trainer::train::{train, Checkpoint, History, Progress, Splits, Subset, TrainConfig};

mod common;
use common::{temp_dir, weights, write_random_mnist};

fn mnist() -> Mnist {
    Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"))
        .expect("bundled MNIST loads")
}

/// Trains `model` on the first `n_train` training and `n_test` test images of `data`.
fn train_first(
    model: &(dyn Module + 'static),
    data: &Mnist,
    (n_train, n_test): (usize, usize),
    config: &TrainConfig,
) -> anyhow::Result<History> {
    let train_set = Subset::first(&data.train, n_train);
    let test_set = Subset::first(&data.test, n_test);
    let splits = Splits {
        train: &train_set,
        test: &test_set,
    };
    train(model, &splits, config)
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
    let run = || {
        let model = mnist_mlp(&mut Rng::new(7));
        let h = train_first(&model, &data, (1024, 256), &quiet(2, 7)).unwrap();
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
    let h3 = train_first(&model, &data, (1024, 256), &quiet(2, 8)).unwrap();
    assert_ne!(bits(&h1), bits(&h3));
}

/// A run stopped after epoch 1 and resumed from its checkpoint ends with exactly the weights of an
/// uninterrupted run. The CNN has dropout, so this also checks that the RNG state is restored.
#[test]
fn resumed_training_equals_uninterrupted() {
    let data = mnist();
    // `epochs` epochs of the CNN, checkpointing into `dir`.
    let run = |model: &(dyn Module + 'static), dir: &Path, epochs, resume| {
        let config = TrainConfig {
            out_dir: Some(dir.to_path_buf()),
            resume,
            ..quiet(epochs, 3)
        };
        train_first(model, &data, (512, 128), &config).unwrap()
    };

    let dir_a = temp_dir("uninterrupted");
    let full = mnist_cnn(&mut Rng::new(3));
    let h_full = run(&full, &dir_a, 3, false);

    let dir_b = temp_dir("resumed");
    let first = mnist_cnn(&mut Rng::new(3));
    run(&first, &dir_b, 1, false);
    drop(first); // "killed": only the checkpoint survives

    let resumed = mnist_cnn(&mut Rng::new(99)); // different init: everything must come from the checkpoint
    let h_resumed = run(&resumed, &dir_b, 3, true);

    assert_eq!(weights(&full), weights(&resumed));
    assert_eq!(h_full.step_loss, h_resumed.step_loss);
    assert_eq!(h_full.epochs.len(), 3);
    let ck = Checkpoint::load(&dir_b.join(Checkpoint::FILE)).unwrap();
    assert_eq!(ck.step, 3 * 8, "3 epochs of 512 / 64 steps");
    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}

#[test]
fn mlp_learns_mnist() {
    let data = mnist();
    let model = mnist_mlp(&mut Rng::new(0));
    let h = train_first(&model, &data, (6000, 1000), &quiet(1, 0)).unwrap();
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

/// `aka-trainer mnist --data data --out out`, then `extra`.
fn trainer_mnist(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_aka-trainer"))
        .args(["mnist", "--data", data.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(extra)
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
        let out = trainer_mnist(&dir, &dir.join("out"), &[]);
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

/// Resuming with a different pixel normalization than the checkpoint's is an error, not a silent
/// change of the inputs mid-run; the same one resumes.
#[test]
fn resume_checks_the_pixel_normalization() {
    let data = mnist();
    let mut raw = data.clone();
    raw.set_norm(PixelNorm::NONE);
    let dir = temp_dir("resume-norm");
    let run = |d: &Mnist, epochs: usize, resume: bool| {
        train_first(
            &mnist_mlp(&mut Rng::new(1)),
            d,
            (256, 64),
            &TrainConfig {
                out_dir: Some(dir.clone()),
                resume,
                ..quiet(epochs, 1)
            },
        )
    };
    run(&data, 1, false).unwrap();
    let ck = Checkpoint::load(&dir.join(Checkpoint::FILE)).unwrap();
    assert_eq!(ck.pixel_norm(), Some(data.norm()));
    let err = run(&raw, 2, true).unwrap_err();
    assert!(
        format!("{err:#}").contains("pixel normalization"),
        "{err:#}"
    );
    let h = run(&data, 2, true).unwrap();
    assert_eq!(h.epochs.len(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

/// `aka-trainer mnist` standardizes with the data set's own training-pixel statistics and records
/// them in summary.json and the model file; `--no-normalize` records mean 0 / std 1 and exports
/// pixel p as p - 128; resuming with the other setting fails with a message.
#[test]
fn cli_normalization_and_no_normalize() {
    let dir = temp_dir("cli-norm");
    let data = dir.join("data");
    let train_pixels = write_random_mnist(&data, 200, 40);
    let expected = PixelNorm::of_pixels(&train_pixels);
    assert!(expected.mean > 0.2 && expected.mean < 0.5, "{expected:?}");
    for (name, extra, norm) in [
        ("normalized", &[][..], expected),
        ("raw", &["--no-normalize"][..], PixelNorm::NONE),
    ] {
        let out = dir.join(name);
        let mut args = vec!["--no-chart", "--calibration", "100"];
        args.extend_from_slice(extra);
        let o = trainer_mnist(&data, &out, &args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {stderr}");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        let recorded = &summary["pixel_normalization"];
        assert_eq!(
            recorded["mean"].as_f64().unwrap() as f32,
            norm.mean,
            "{name}"
        );
        assert_eq!(recorded["std"].as_f64().unwrap() as f32, norm.std, "{name}");
        let input = &summary["export"]["input"];
        assert_eq!(input["pixel_mean"].as_f64().unwrap() as f32, norm.mean);
        assert_eq!(input["pixel_std"].as_f64().unwrap() as f32, norm.std);

        let bytes = std::fs::read(out.join("model.aka")).unwrap();
        let m = aka_core::SequentialModel::load(&bytes).unwrap();
        assert_eq!(m.pixel_normalization(), (norm.mean, norm.std), "{name}");
        assert_eq!(
            m.input_quant(),
            aka_trainer::export::quantize::input_quant(norm)
        );
        assert_eq!(
            input["zero_point"].as_i64().unwrap(),
            m.input_quant().zero_point as i64
        );
        if norm == PixelNorm::NONE {
            for p in 0..=255u8 {
                assert_eq!(m.quantize_pixel(p) as i32, p as i32 - 128, "pixel {p}");
            }
        } else {
            assert_ne!(m.input_quant().zero_point, -128);
        }
        let ck = Checkpoint::load(&out.join(Checkpoint::FILE)).unwrap();
        assert_eq!(ck.pixel_norm(), Some(norm));

        // Resuming with the other setting.
        let mut args = vec!["--no-chart", "--no-export", "--epochs", "2", "--resume"];
        if norm != PixelNorm::NONE {
            args.push("--no-normalize");
        }
        let o = trainer_mnist(&data, &out, &args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: resume should fail");
        assert!(stderr.contains("pixel normalization"), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A loss that turns non-finite stops the run with "training diverged", and the last good
/// checkpoint is left as it was (it used to be overwritten with NaN weights).
#[test]
fn divergence_stops_without_overwriting_the_checkpoint() {
    let data = mnist();
    let dir = temp_dir("diverged");
    let run = |epochs, optimizer, resume| {
        let config = TrainConfig {
            out_dir: Some(dir.clone()),
            optimizer,
            resume,
            ..quiet(epochs, 2)
        };
        train_first(&mnist_mlp(&mut Rng::new(2)), &data, (256, 64), &config)
    };
    let adam = aka_trainer::optim::OptimizerConfig::adam(1e-3);
    run(1, adam, false).unwrap();
    let good = std::fs::read(dir.join(Checkpoint::FILE)).unwrap();
    let wild = aka_trainer::optim::OptimizerConfig::adam(1e30);
    let err = run(2, wild, true).unwrap_err();
    assert!(format!("{err:#}").contains("training diverged"), "{err:#}");
    assert_eq!(std::fs::read(dir.join(Checkpoint::FILE)).unwrap(), good);
    let _ = std::fs::remove_dir_all(dir);
}

/// Checkpoints of older formats (the separate MNIST and GPT ones) are refused with a message
/// saying so; a checkpoint of another model is refused on resume.
#[test]
fn old_and_foreign_checkpoints_are_clear_errors() {
    let dir = temp_dir("old-ck");
    std::fs::create_dir_all(&dir).unwrap();
    for old_format in [1u8, 2] {
        // postcard: the format tag is the first field, a varint.
        std::fs::write(dir.join(Checkpoint::FILE), [old_format, 0, 0, 0]).unwrap();
        let err = Checkpoint::load(&dir.join(Checkpoint::FILE)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("older version") && msg.contains("retrain"),
            "{msg}"
        );
    }

    let text = aka_trainer::data::text::TextDataset::from_text(&"abc abd ".repeat(50), None);
    let config = aka_trainer::gpt::GptConfig::sized(1, 1, 8, 8, text.tokenizer().vocab_size());
    let gpt = aka_trainer::gpt::Gpt::new(config, &mut Rng::new(0));
    aka_trainer::train::train_gpt(
        &gpt,
        &text,
        &aka_trainer::train::GptTrainConfig {
            steps: 2,
            batch_size: 2,
            eval_batches: 1,
            out_dir: Some(dir.clone()),
            progress: Progress::Quiet,
            sample: None,
            ..Default::default()
        },
    )
    .unwrap();
    let data = mnist();
    let train_set = Subset::first(&data.train, 64);
    let err = train(
        &mnist_mlp(&mut Rng::new(0)),
        &Splits {
            train: &train_set,
            test: &train_set,
        },
        &TrainConfig {
            out_dir: Some(dir.clone()),
            resume: true,
            ..quiet(1, 0)
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("holds a GPT"), "{err:#}");
    let _ = std::fs::remove_dir_all(dir);
}
