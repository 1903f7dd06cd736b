//! Device equals host: the firmware's `mnist` and `gpt` binaries, run in QEMU (`mps2-an386`,
//! Cortex-M4F, aka-core's DSP kernels), give exactly what aka-core gives on the host for the
//! same model files (`firmware/models/`):
//!
//! * `mnist` (CNN, the default, the MLP via `AKA_MNIST_MODEL=mnist-mlp.aka`, and the int4 MLP
//!   `mnist-mlp-int4.aka`): for every
//!   embedded test image the same predicted class and the same int8 scores (FNV-1a of the score
//!   bytes), and the same accuracy;
//! * `gpt` (`gpt.aka`, and `gpt-int4.aka` via `AKA_GPT_MODEL`; the nRF52840 flagship
//!   `gpt-nrf52840.aka` linked with that board's memory lengths, 300 tokens): the same generated
//!   text (prompt "ROMEO:", 100 tokens unless said, temperature 0.8, top-k 40,
//!   `Rng::new(1)`: `aka_core::sample::sample` after every `Decoder::push`), byte for byte, and
//!   its FNV-1a.
//!
//! The tests build the firmware (`cargo build --release --bin mnist --bin gpt` in `firmware/`,
//! with cargo's variables for this host build removed from the environment) and run it with
//! `firmware/run-qemu.sh`, which decodes the defmt log with `defmt-print`. They need
//! `qemu-system-arm`, `defmt-print` and `flip-link` (`bash firmware/install-tools.sh`) and the
//! `thumbv7em-none-eabihf` target, so they are `#[ignore]`d: run them with
//!
//! ```sh
//! cargo test -p aka-tests --test device -- --ignored
//! ```
//!
//! With `--ignored` a missing tool is a test **failure**, never a silent pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use aka_core::gpt::GptModel;
use aka_core::rng::Rng;
use aka_core::sample::{sample, Sampling};
use aka_core::SequentialModel;
use aka_tests::GptBuffers;

/// Must match `firmware/src/app/gpt.rs` (the token count is the build's `AKA_GPT_TOKENS`).
const PROMPT: &str = "ROMEO:";
/// The `gpt` app's default token count.
const TOKENS: usize = 100;
const SEED: u64 = 1;
const SAMPLING: Sampling = Sampling {
    temperature: 0.8,
    top_k: 40,
};

/// Builds and QEMU runs share `firmware/target`: one at a time.
static FIRMWARE: Mutex<()> = Mutex::new(());

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware")
}

fn models_dir() -> PathBuf {
    firmware_dir().join("models")
}

/// Fails (never skips) if a tool the firmware run needs is missing.
fn require_tools() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = ["qemu-system-arm", "defmt-print", "flip-link"]
        .into_iter()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: install with `bash firmware/install-tools.sh`"
    );
}

/// A `cargo` command for the firmware's own cargo root, without the variables cargo set for
/// this host test (target dir, rustflags, wrappers, package metadata, ...), so the nested build
/// reads `firmware/.cargo/config.toml` (target, flip-link, runner) like a build from a shell.
fn firmware_cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(firmware_dir());
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let host_build_var = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTUP_TOOLCHAIN"
                    | "AKA_MODEL_DIR"
                    | "AKA_MNIST_MODEL"
                    | "AKA_GPT_MODEL"
                    | "AKA_GPT_TOKENS"
                    | "AKA_QEMU_LIMITS"
            );
        if host_build_var {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Builds `bin` (with extra build-time environment `env`) and runs it in QEMU; returns the
/// decoded defmt log. Panics unless both succeed (exit code 0).
fn run_firmware(bin: &str, env: &[(&str, &str)]) -> String {
    require_tools();
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let mut build = firmware_cargo();
    build.args(["build", "--release", "--bin", "mnist", "--bin", "gpt"]);
    build.envs(env.iter().copied());
    let status = build.status().expect("running cargo for the firmware");
    assert!(status.success(), "firmware build failed: {status}");

    let elf = firmware_dir()
        .join("target/thumbv7em-none-eabihf/release")
        .join(bin);
    let mut run = Command::new(firmware_dir().join("run-qemu.sh"));
    run.arg(&elf)
        .current_dir(firmware_dir())
        .env("QEMU_TIMEOUT", "300");
    let out = run.output().expect("running firmware/run-qemu.sh");
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "---- {bin} {env:?} ----\n{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{bin} in QEMU: {} (101 panic, 102 HardFault, 124 timeout)",
        out.status
    );
    log
}

/// The message of each decoded log line (after the timestamp and the level).
fn messages(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(" INFO ")?;
            Some(rest.trim_start_matches(' '))
        })
        .collect()
}

/// 32-bit FNV-1a (as in `firmware/src/app/mod.rs`).
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[derive(Debug, PartialEq)]
struct Prediction {
    index: usize,
    label: u8,
    class: usize,
    fnv1a: u32,
}

/// `img 0: label 7, predicted 7, fnv1a 0x80ec903e, 527568 instructions`
fn parse_prediction(msg: &str) -> Option<Prediction> {
    let rest = msg.strip_prefix("img ")?;
    let t: Vec<&str> = rest
        .split([' ', ',', ':'])
        .filter(|s| !s.is_empty())
        .collect();
    match t.as_slice() {
        [index, "label", label, "predicted", class, "fnv1a", hash, ..] => Some(Prediction {
            index: index.parse().ok()?,
            label: label.parse().ok()?,
            class: class.parse().ok()?,
            fnv1a: u32::from_str_radix(hash.strip_prefix("0x")?, 16).ok()?,
        }),
        _ => None,
    }
}

fn check_mnist(model_file: &str) {
    let log = run_firmware("mnist", &[("AKA_MNIST_MODEL", model_file)]);
    let msgs = messages(&log);
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("mnist on qemu: model ") && m.contains(model_file)),
        "the firmware did not run {model_file}"
    );

    // Host: the same files through aka-core.
    let dir = models_dir();
    let bytes = std::fs::read(dir.join(model_file)).unwrap();
    let images = std::fs::read(dir.join("mnist-test-images.u8")).unwrap();
    let labels = std::fs::read(dir.join("mnist-test-labels.u8")).unwrap();
    let model = SequentialModel::load(&bytes).unwrap();
    let mut arena = vec![0i8; model.arena_size()];
    let n_in = model.input_len();
    assert_eq!(images.len(), labels.len() * n_in);
    let mut correct = 0;
    let host: Vec<Prediction> = images
        .chunks_exact(n_in)
        .zip(&labels)
        .enumerate()
        .map(|(index, (pixels, &label))| {
            let (class, scores) = model.classify_u8(pixels, &mut arena).unwrap();
            correct += usize::from(class == usize::from(label));
            Prediction {
                index,
                label,
                class,
                fnv1a: fnv1a(scores.iter().map(|&s| s as u8)),
            }
        })
        .collect();

    let device: Vec<Prediction> = msgs.iter().filter_map(|m| parse_prediction(m)).collect();
    assert_eq!(device.len(), labels.len(), "one line per image");
    for (d, h) in device.iter().zip(&host) {
        assert_eq!(d, h, "{model_file}: device vs host");
    }
    let accuracy = format!("accuracy: {correct}/{} correct", labels.len());
    assert!(
        msgs.iter().any(|m| m.starts_with(&accuracy)),
        "{model_file}: device accuracy differs from the host's `{accuracy}`"
    );
    eprintln!(
        "{model_file}: {} images identical on device and host, {accuracy}",
        host.len()
    );
}

#[test]
#[ignore = "needs qemu-system-arm and defmt-print (bash firmware/install-tools.sh); run with --ignored"]
fn mnist_cnn_device_equals_host() {
    check_mnist("mnist-cnn.aka");
}

#[test]
#[ignore = "needs qemu-system-arm and defmt-print (bash firmware/install-tools.sh); run with --ignored"]
fn mnist_mlp_device_equals_host() {
    check_mnist("mnist-mlp.aka");
}

/// The host's text: prompt + `tokens` sampled chars, exactly the firmware's loop.
fn host_generate(bytes: &[u8], tokens: usize) -> (String, String) {
    let model = GptModel::load(bytes).unwrap();
    let mut bufs = GptBuffers::new(&model);
    let mut dec = bufs.decoder(&model);
    let mut scratch = vec![0f32; model.vocab_size()];
    let mut ids = [0u32; 32];
    let n = model.encode(PROMPT, &mut ids).unwrap();
    let mut rng = Rng::new(SEED);
    let mut next = 0;
    for &t in &ids[..n] {
        next = sample(dec.push(t).unwrap(), &SAMPLING, &mut rng, &mut scratch).unwrap();
    }
    let mut generated = String::new();
    for i in 0..tokens {
        generated.push_str(model.decode_token(next).unwrap());
        if i + 1 == tokens {
            break;
        }
        next = sample(dec.push(next).unwrap(), &SAMPLING, &mut rng, &mut scratch).unwrap();
    }
    (format!("{PROMPT}{generated}"), generated)
}

#[test]
#[ignore = "needs qemu-system-arm and defmt-print (bash firmware/install-tools.sh); run with --ignored"]
fn mnist_mlp_int4_device_equals_host() {
    check_mnist("mnist-mlp-int4.aka");
}

#[test]
#[ignore = "needs qemu-system-arm and defmt-print (bash firmware/install-tools.sh); run with --ignored"]
fn gpt_device_equals_host() {
    check_gpt("gpt.aka", TOKENS, None);
}

#[test]
#[ignore = "needs qemu-system-arm and defmt-print (bash firmware/install-tools.sh); run with --ignored"]
fn gpt_int4_device_equals_host() {
    check_gpt("gpt-int4.aka", TOKENS, None);
}

/// The nRF52840 flagship (issue 13), linked with that board's flash and RAM lengths
/// (`AKA_QEMU_LIMITS=nrf52840`), 300 tokens.
#[test]
#[ignore = "needs qemu-system-arm and defmt-print (bash firmware/install-tools.sh); run with --ignored"]
fn gpt_nrf52840_flagship_device_equals_host() {
    check_gpt("gpt-nrf52840.aka", 300, Some("nrf52840"));
}

/// Runs the `gpt` app with `model_file`, generating `tokens` tokens, linked with the memory
/// lengths of `limits` (a board) if given, and compares its text with the host's.
fn check_gpt(model_file: &str, tokens: usize, limits: Option<&str>) {
    let tokens_env = tokens.to_string();
    let mut env = vec![
        ("AKA_GPT_MODEL", model_file),
        ("AKA_GPT_TOKENS", tokens_env.as_str()),
    ];
    if let Some(board) = limits {
        env.push(("AKA_QEMU_LIMITS", board));
    }
    let log = run_firmware("gpt", &env);
    let msgs = messages(&log);
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("gpt on ") && m.contains(&format!("model {model_file}"))),
        "the firmware did not run {model_file}"
    );
    let setup = format!(
        "prompt {PROMPT:?} ({} tokens), {tokens} tokens, seed {SEED}, temperature 0.8, top-k {}",
        PROMPT.chars().count(),
        SAMPLING.top_k
    );
    assert!(
        msgs.iter().any(|m| *m == setup),
        "the firmware's settings differ from the test's: want `{setup}`"
    );

    // `text| LINE` ended with a newline, `text+ PART` did not.
    let mut device = String::new();
    for m in &msgs {
        // (An empty payload may lose its separating space in the decoded log.)
        let payload = |p: &str| m.strip_prefix(p).map(|r| r.strip_prefix(' ').unwrap_or(r));
        if let Some(line) = payload("text|") {
            device.push_str(line);
            device.push('\n');
        } else if let Some(part) = payload("text+") {
            device.push_str(part);
        }
    }

    let bytes = std::fs::read(models_dir().join(model_file)).unwrap();
    let (host, generated) = host_generate(&bytes, tokens);
    assert_eq!(device, host, "{model_file}: generated text: device vs host");
    let summary = format!(
        "generated: {tokens} tokens, {} bytes, fnv1a {:#010x}",
        generated.len(),
        fnv1a(generated.bytes())
    );
    assert!(
        msgs.iter().any(|m| *m == summary),
        "device summary differs from the host's `{summary}`"
    );
    eprintln!("{model_file}: identical on device and host:\n{host}");
}
