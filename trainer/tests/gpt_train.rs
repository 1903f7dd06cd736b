//! GPT training: it learns a tiny corpus, is bit-for-bit deterministic, resumes exactly, handles
//! non-ASCII text, writes a checkpoint that rebuilds the model, and the CLI runs end to end.

use std::path::PathBuf;
use std::process::Command;

use aka_core::rng::Rng;
use aka_trainer::autograd::no_grad;
use aka_trainer::data::text::TextDataset;
use aka_trainer::gpt::sample::{generate, Sampling};
use aka_trainer::gpt::{Gpt, GptConfig, GptMlp, GptNorm, GptPosition};
use aka_trainer::nn::Ctx;
use aka_trainer::train::Progress;
use aka_trainer::train::{load_trained, train_gpt, GptHistory, GptTrainConfig, SampleConfig};

mod common;
use common::{temp_dir, weights};

fn corpus() -> TextDataset {
    TextDataset::from_text(&"the cat sat on the mat. ".repeat(200), None)
}

fn tiny_model(data: &TextDataset, seed: u64) -> Gpt {
    let config = GptConfig::sized(2, 2, 16, 16, data.tokenizer().vocab_size());
    Gpt::new(config, &mut Rng::new(seed))
}

fn quick(steps: usize) -> GptTrainConfig {
    GptTrainConfig {
        steps,
        batch_size: 8,
        lr: 1e-2,
        warmup_steps: 10,
        eval_interval: 20,
        eval_batches: 4,
        progress: Progress::Quiet,
        sample: None,
        ..GptTrainConfig::default()
    }
}

fn losses(h: &GptHistory) -> (Vec<u32>, Vec<(usize, u32)>) {
    (
        h.train_loss.iter().map(|l| l.to_bits()).collect(),
        h.val_loss.iter().map(|&(s, l)| (s, l.to_bits())).collect(),
    )
}

#[test]
fn learns_a_repetitive_corpus() {
    let data = corpus();
    let model = tiny_model(&data, 0);
    let h = train_gpt(&model, &data, &quick(150)).unwrap();
    let first = h.val_loss.first().unwrap().1;
    let last = h.final_val_loss().unwrap();
    assert!(first > 2.0, "initial loss {first} ~ ln(vocab)");
    assert!(last < 0.3, "validation loss {first} -> {last}");
    assert_eq!(h.train_loss.len(), 150);
    assert_eq!(
        h.val_loss.iter().map(|&(s, _)| s).collect::<Vec<_>>(),
        [0, 20, 40, 60, 80, 100, 120, 140, 150]
    );
    // A trained model continues the pattern greedily.
    let text = generate(
        &model,
        data.tokenizer(),
        "the cat ",
        16,
        Sampling::GREEDY,
        0,
    );
    assert_eq!(text, "sat on the mat. ");
}

#[test]
fn same_seed_gives_bit_identical_history_and_weights() {
    let data = corpus();
    let run = || {
        let model = tiny_model(&data, 3);
        let config = GptTrainConfig {
            seed: 3,
            ..quick(40)
        };
        let h = train_gpt(&model, &data, &config).unwrap();
        (losses(&h), weights(&model))
    };
    let (a, wa) = run();
    let (b, wb) = run();
    assert_eq!(a, b);
    assert_eq!(wa, wb);
}

/// Interrupted at step 20 (checkpoint) and resumed to 40 equals 40 uninterrupted steps: same
/// losses, same weights, with dropout on so the random stream must be restored too.
#[test]
fn resume_equals_uninterrupted() {
    let data = corpus();
    let make = |seed| {
        let config = GptConfig {
            dropout: 0.1,
            mlp: GptMlp::SwiGlu,
            ..tiny_model(&data, 0).config().clone()
        };
        Gpt::new(config, &mut Rng::new(seed))
    };
    let config = |dir: &PathBuf| GptTrainConfig {
        eval_interval: 10,
        out_dir: Some(dir.clone()),
        seed: 5,
        ..quick(40)
    };

    let dir_a = temp_dir("resume-a");
    let model_a = make(5);
    let ha = train_gpt(&model_a, &data, &config(&dir_a)).unwrap();

    let dir_b = temp_dir("resume-b");
    let model_b = make(5);
    let first = train_gpt(
        &model_b,
        &data,
        &GptTrainConfig {
            stop_at: Some(20),
            ..config(&dir_b)
        },
    )
    .unwrap();
    assert_eq!(first.train_loss.len(), 20);
    // A fresh process: different initial weights, everything comes from the checkpoint.
    let model_c = make(99);
    let hc = train_gpt(
        &model_c,
        &data,
        &GptTrainConfig {
            resume: true,
            ..config(&dir_b)
        },
    )
    .unwrap();
    assert_eq!(losses(&ha), losses(&hc));
    assert_eq!(weights(&model_a), weights(&model_c));
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}

#[test]
fn checkpoint_rebuilds_model_and_tokenizer() {
    let data = corpus();
    let model = tiny_model(&data, 1);
    let dir = temp_dir("reload");
    let config = GptTrainConfig {
        out_dir: Some(dir.clone()),
        ..quick(25)
    };
    train_gpt(&model, &data, &config).unwrap();
    assert!(dir.join("chart.svg").exists());
    let (loaded, tokenizer, ck) = load_trained(&dir).unwrap();
    assert_eq!(ck.step, 25);
    assert_eq!(ck.gpt_config(), Some(model.config()));
    assert_eq!(tokenizer, *data.tokenizer());
    assert_eq!(weights(&loaded), weights(&model));
    let ids = [1usize, 2, 3, 4, 5, 6, 7, 8];
    let a = no_grad(|| model.forward(&ids, 1, 8, &mut Ctx::eval()));
    let b = no_grad(|| loaded.forward(&ids, 1, 8, &mut Ctx::eval()));
    assert_eq!(*a.value(), *b.value());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_ascii_corpus_trains_and_generates_known_chars() {
    let text = "héllo wörld — 日本語 🙂 … ".repeat(100);
    let data = TextDataset::from_text(&text, None);
    let vocab = data.tokenizer().vocab().to_vec();
    assert!(vocab.contains(&'🙂') && vocab.contains(&'語'));
    let config = GptConfig::sized(1, 2, 16, 12, vocab.len()).variant(
        GptPosition::Rope,
        GptNorm::RmsNorm,
        GptMlp::GeGlu,
        false,
    );
    let model = Gpt::new(config, &mut Rng::new(2));
    let h = train_gpt(
        &model,
        &data,
        &GptTrainConfig {
            sample: Some(SampleConfig {
                prompt: "日本".into(),
                tokens: 60,
                sampling: Sampling::new(0.8, 5),
                seed: 4,
            }),
            ..quick(80)
        },
    )
    .unwrap();
    assert!(h.final_val_loss().unwrap() < h.val_loss[0].1);
    let sample = h.sample.unwrap();
    assert_eq!(sample.chars().count(), 60);
    assert!(sample.chars().all(|c| vocab.contains(&c)), "{sample:?}");
    // Longer than the context: the sliding window keeps going.
    let long = generate(
        &model,
        data.tokenizer(),
        "wörld",
        40,
        Sampling::new(1.0, 0),
        1,
    );
    assert_eq!(long.chars().count(), 40);
    assert!(long.chars().all(|c| vocab.contains(&c)));
}

#[test]
fn cli_trains_and_writes_outputs() {
    let dir = temp_dir("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("corpus.txt");
    std::fs::write(
        &data,
        "to be or not to be, that is the question. ".repeat(60),
    )
    .unwrap();
    let out = dir.join("run");
    let status = Command::new(env!("CARGO_BIN_EXE_aka-trainer"))
        .args([
            "gpt", "--layers", "1", "--heads", "2", "--dim", "16", "--block", "16",
        ])
        .args(["--steps", "12", "--batch-size", "4", "--eval-interval", "6"])
        .args([
            "--eval-batches",
            "2",
            "--sample-chars",
            "30",
            "--threads",
            "1",
        ])
        .args([
            "--position",
            "rope",
            "--norm",
            "rmsnorm",
            "--mlp",
            "swiglu",
            "--untied",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for f in ["checkpoint.bin", "chart.svg", "summary.json", "model.aka"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 12);
    assert_eq!(summary["config"]["position"], "Rope");
    assert_eq!(summary["val_loss"].as_array().unwrap().len(), 3);
    assert!(summary["ms_per_step"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["sample"].as_str().unwrap().chars().count(), 30);
    let bytes = std::fs::read(out.join("model.aka")).unwrap();
    let gpt = aka_core::gpt::GptModel::load(&bytes).unwrap();
    // The export is an object: the keys MNIST has, plus the language model's, matching the file.
    let export = &summary["export"];
    let number = |key: &str| {
        export[key]
            .as_f64()
            .unwrap_or_else(|| panic!("export.{key} missing: {export}"))
    };
    assert_eq!(number("file_bytes"), bytes.len() as f64);
    assert_eq!(number("param_bytes"), gpt.param_bytes() as f64);
    assert_eq!(number("state_bytes"), gpt.state_size() as f64);
    let eval = gpt.eval();
    assert_eq!(number("val_tokens"), eval.val_tokens as f64);
    assert_eq!(number("float_val_loss") as f32, eval.val_loss_float);
    assert_eq!(number("quantized_val_loss") as f32, eval.val_loss_int8);
    assert_eq!(number("top1_agreement") as f32, eval.top1_agreement);
    let agreement = number("top1_agreement");
    assert!(
        (0.0..=100.0).contains(&agreement) && agreement > 1.0,
        "percent: {agreement}"
    );
    assert_eq!(
        number("float_accuracy") as f32,
        gpt.metadata().float_accuracy
    );
    assert_eq!(number("int8_accuracy") as f32, gpt.metadata().int8_accuracy);
    assert_eq!(export["calibration"], "minmax");
    assert!(export["file"].as_str().unwrap().ends_with("model.aka"));
    let (model, _, ck) = load_trained(&out).unwrap();
    assert_eq!(ck.step, 12);
    assert!(model.lm_head.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A diverging run stops with "training diverged" and keeps the last good checkpoint.
#[test]
fn divergence_keeps_the_last_good_checkpoint() {
    let data = corpus();
    let dir = temp_dir("diverged");
    let config = GptTrainConfig {
        out_dir: Some(dir.clone()),
        eval_interval: 5,
        ..quick(10)
    };
    train_gpt(&tiny_model(&data, 3), &data, &config).unwrap();
    let good = std::fs::read(dir.join("checkpoint.bin")).unwrap();
    let err = train_gpt(
        &tiny_model(&data, 3),
        &data,
        &GptTrainConfig {
            steps: 40,
            lr: 1e30,
            warmup_steps: 0,
            grad_clip: None,
            resume: true,
            ..config
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("training diverged"), "{err:#}");
    assert_eq!(std::fs::read(dir.join("checkpoint.bin")).unwrap(), good);
    let _ = std::fs::remove_dir_all(&dir);
}
