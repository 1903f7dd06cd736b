//! `aka inspect` / `aka run` on a GPT model file (`firmware/models/gpt.aka`), through the built
//! binary.

use std::path::PathBuf;

mod common;
use common::{aka, stderr, stdout};

use aka_core::gpt::GptModel;
use aka_core::rng::Rng;
use aka_core::sample::{argmax, sample, Sampling};
use aka_tests::GptBuffers;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware/models/gpt.aka");
const MNIST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../firmware/models/mnist-mlp.aka"
);

/// `aka run MODEL args...`: the text (stdout without its final newline).
fn run_text(args: &[&str]) -> String {
    let mut all = vec!["run", MODEL];
    all.extend_from_slice(args);
    let o = aka(&all);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    assert!(stderr(&o).contains("tokens/s"), "{}", stderr(&o));
    let out = stdout(&o);
    out.strip_suffix('\n')
        .unwrap_or_else(|| panic!("no final newline: {out:?}"))
        .to_string()
}

fn bytes() -> Vec<u8> {
    std::fs::read(MODEL).expect("firmware/models/gpt.aka")
}

/// An independent generation loop with aka-core's API (the firmware's order: one sample after
/// every push, prompt included); `pick` chooses the next id from the logits.
fn reference(prompt: &str, tokens: usize, mut pick: impl FnMut(&[f32]) -> u32) -> String {
    let bytes = bytes();
    let model = GptModel::load(&bytes).unwrap();
    let mut bufs = GptBuffers::new(&model);
    let mut dec = bufs.decoder(&model);
    let mut ids = vec![0u32; prompt.len()];
    let n = model.encode(prompt, &mut ids).unwrap();
    let mut next = 0;
    for &t in &ids[..n] {
        next = pick(dec.push(t).unwrap());
    }
    let mut text = prompt.to_string();
    for i in 0..tokens {
        text.push_str(model.decode_token(next).unwrap());
        if i + 1 < tokens {
            next = pick(dec.push(next).unwrap());
        }
    }
    text
}

fn sampled(prompt: &str, tokens: usize, seed: u64, temperature: f32, top_k: u32) -> String {
    let mut rng = Rng::new(seed);
    let cfg = Sampling { temperature, top_k };
    let mut scratch = vec![0f32; 256];
    reference(prompt, tokens, |l| {
        sample(l, &cfg, &mut rng, &mut scratch).unwrap()
    })
}

#[test]
fn inspect_shows_config_vocab_and_sizes() {
    let o = aka(&["inspect", MODEL]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let bytes = bytes();
    let m = GptModel::load(&bytes).unwrap();
    let c = m.config();
    let config = format!(
        "{} layers, {} heads of {} (d_model {}), MLP hidden {}, context {}, vocab {}",
        c.n_layer,
        c.n_head,
        c.d_model / c.n_head,
        c.d_model,
        c.hidden,
        c.block_size,
        c.vocab_size
    );
    let vocab = format!("{} chars", m.vocab_size());
    let escaped = format!("{:?}", m.vocab_chars());
    let t = aka_tools::inspect::thousands;
    for needle in [
        "GPT body",
        config.as_str(),
        vocab.as_str(),
        escaped.as_str(),
        "LanguageModel",
        "val loss",
        "trained with",
        "w1",
        "wq",
        "tok_emb",
        &t(m.file_size() as u64),
        &t(m.param_bytes() as u64),
        &t(m.state_size() as u64),
        &t(m.kv_cache_size() as u64),
        &t(m.weight_macs()),
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
}

#[test]
fn run_is_deterministic_and_generates_the_requested_chars() {
    let args = [
        "--prompt",
        "ROMEO:",
        "--tokens",
        "200",
        "--temperature",
        "0.8",
        "--top-k",
        "40",
        "--seed",
        "1",
    ];
    let a = run_text(&args);
    let b = run_text(&args);
    assert_eq!(a, b);
    let generated = a.strip_prefix("ROMEO:").expect("prompt first");
    assert_eq!(generated.chars().count(), 200, "{a:?}");
    // Another seed gives another text.
    let mut other = args;
    other[9] = "2";
    assert_ne!(run_text(&other), a);
}

#[test]
fn run_equals_an_independent_aka_core_loop() {
    for (prompt, tokens, seed, temperature, top_k) in [
        ("ROMEO:", 200, 1, 0.8, 40),
        ("First Citizen:\nWe are", 90, 7, 1.0, 0),
        ("a", 150, 3, 0.5, 5),
    ] {
        let host = run_text(&[
            "--prompt",
            prompt,
            "--tokens",
            &tokens.to_string(),
            "--temperature",
            &temperature.to_string(),
            "--top-k",
            &top_k.to_string(),
            "--seed",
            &seed.to_string(),
        ]);
        assert_eq!(host, sampled(prompt, tokens, seed, temperature, top_k));
    }
}

#[test]
fn defaults_are_the_firmwares() {
    // firmware/src/app/gpt.rs: "ROMEO:", 100 tokens, seed 1, temperature 0.8, top-k 40.
    assert_eq!(run_text(&[]), sampled("ROMEO:", 100, 1, 0.8, 40));
}

#[test]
fn temperature_zero_is_greedy_argmax() {
    let greedy = reference("ROMEO:", 120, |l| argmax(l).unwrap() as u32);
    assert_eq!(
        run_text(&["--temperature", "0", "--tokens", "120", "--seed", "5"]),
        greedy
    );
    assert_eq!(
        run_text(&["--temperature", "0", "--tokens", "120", "--seed", "9"]),
        greedy
    );
    assert_eq!(run_text(&["--top-k", "1", "--tokens", "120"]), greedy);
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = std::env::temp_dir().join(format!("aka-gpt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage: PathBuf = dir.join("garbage.aka");
    std::fs::write(&garbage, b"not a model").unwrap();
    let truncated = dir.join("truncated.aka");
    let b = bytes();
    std::fs::write(&truncated, &b[..b.len() / 2]).unwrap();
    let (g, t) = (garbage.to_str().unwrap(), truncated.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", MODEL, "--prompt", ""], "prompt is empty"),
        (
            vec!["run", MODEL, "--prompt", "héllo"],
            "outside the model's vocabulary",
        ),
        (vec!["run", MODEL, "--temperature", "-1"], "--temperature"),
        (vec!["run", MODEL, "--temperature", "nan"], "--temperature"),
        (vec!["run", MODEL, "--tokens", "-3"], ""),
        (vec!["run", MODEL, "--top-k", "x"], ""),
        (vec!["run", MODEL, "--mnist-index", "0"], "GPT model"),
        (vec!["run", MODEL, "--image", "x.png"], "GPT model"),
        (vec!["run", MNIST, "--prompt", "ROMEO:"], "sequential model"),
        (
            vec!["run", MNIST, "--mnist-index", "0", "--seed", "1"],
            "sequential model",
        ),
        (vec!["run", g], "bad magic"),
        (vec!["inspect", g], "bad magic"),
        (vec!["run", t], "truncated"),
        (vec!["inspect", t], "truncated"),
        (vec!["run", "/nonexistent/gpt.aka"], "cannot read"),
    ];
    for (args, message) in cases {
        let o = aka(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains("error:"), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: want {message:?} in {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}: printed {:?}", stdout(&o));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
