//! PyTorch interop through safetensors (issue 14): a GPT trained here, written with
//! `export-safetensors` and read back with `import nanogpt`, has the same float validation loss
//! and the same int8 results; a nanoGPT-layout file without aka's metadata (as PyTorch writes
//! it: `bias=False`, tied head, exact GELU) builds the same model; bad files and vocabularies are
//! refused with a message naming the tensor or the file, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aka_core::rng::Rng;
use aka_trainer::autograd::no_grad;
use aka_trainer::gpt::{Gpt, GptConfig, GptMlp, GptNorm, GptPosition};
use aka_trainer::interop::{self, SafetensorsFile, VocabFile};
use aka_trainer::train::NamedArray;

mod common;
use common::temp_dir;

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aka-trainer"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("aka-trainer runs")
}

#[track_caller]
fn ok(o: &Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}\n{err}");
    out.into_owned()
}

/// `OUT/summary.json`'s `export` object.
fn export_of(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["export"].clone()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn trained_export_import_round_trip_is_exact() {
    let dir = temp_dir("interop-round-trip");
    for (i, variant) in [
        &[][..],
        &[
            "--position",
            "rope",
            "--norm",
            "rmsnorm",
            "--mlp",
            "swiglu",
            "--untied",
        ][..],
        &["--mlp", "gelu-erf"][..],
    ]
    .into_iter()
    .enumerate()
    {
        let (orig, st, imp) = (
            dir.join(format!("orig{i}")),
            dir.join(format!("st{i}")),
            dir.join(format!("imp{i}")),
        );
        let mut args = vec![
            "gpt",
            "--steps",
            "6",
            "--layers",
            "2",
            "--dim",
            "32",
            "--heads",
            "4",
            "--block",
            "16",
            "--eval-interval",
            "6",
            "--sample-chars",
            "0",
            "--out",
            p(&orig),
        ];
        args.extend_from_slice(variant);
        ok(&trainer(&args));
        let ck = orig.join("checkpoint.bin");
        ok(&trainer(&[
            "export-safetensors",
            "--checkpoint",
            p(&ck),
            "--out",
            p(&st),
        ]));
        let model = st.join("model.safetensors");
        let vocab = st.join("vocab.json");
        // Heads come from the recorded configuration: no --heads needed.
        let said = ok(&trainer(&[
            "import",
            "nanogpt",
            "--safetensors",
            p(&model),
            "--vocab",
            p(&vocab),
            "--out",
            p(&imp),
        ]));
        assert!(said.contains("int8 model:"), "{said}");
        let (a, b) = (export_of(&orig), export_of(&imp));
        for key in [
            "float_val_loss",
            "quantized_val_loss",
            "top1_agreement",
            "param_bytes",
        ] {
            assert_eq!(a[key], b[key], "variant {variant:?}: {key}");
            assert!(a[key].is_number(), "{key}: {a}");
        }
        // The import's checkpoint continues with `gpt --resume` (same sizes).
        let mut resume = vec![
            "gpt",
            "--resume",
            "--steps",
            "2",
            "--layers",
            "2",
            "--dim",
            "32",
            "--heads",
            "4",
            "--block",
            "16",
            "--eval-interval",
            "2",
            "--sample-chars",
            "0",
            "--no-export",
            "--out",
            p(&imp),
        ];
        resume.extend_from_slice(variant);
        let said = ok(&trainer(&resume));
        assert!(said.contains("at step 0"), "{said}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A model of `config`, its tensors in nanoGPT names, and its logits on a fixed sequence.
fn reference(config: &GptConfig) -> (Gpt, Vec<NamedArray>, Vec<f32>) {
    let model = Gpt::new(config.clone(), &mut Rng::new(7));
    let tensors = interop::gpt_tensors(&model);
    let ids: Vec<usize> = (0..config.block_size)
        .map(|i| i * 7 % config.vocab_size)
        .collect();
    let logits = no_grad(|| model.logits_last(&ids));
    (model, tensors, logits)
}

#[test]
fn a_pytorch_layout_file_without_metadata_has_nanogpt_semantics() {
    let dir = temp_dir("interop-nanogpt");
    std::fs::create_dir_all(&dir).unwrap();
    // nanoGPT: learned positions, LayerNorm with bias=False, exact GELU, tied head.
    let config = GptConfig::sized(2, 4, 32, 16, 11).variant(
        GptPosition::Learned,
        GptNorm::LayerNorm,
        GptMlp::GeluErf,
        true,
    );
    let (model, tensors, want) = reference(&config);
    // Drop the LayerNorm biases (they are 0 at initialisation, so bias=False is the same model).
    let pytorch: Vec<NamedArray> = tensors
        .into_iter()
        .filter(|t| !t.name.ends_with(".bias"))
        .collect();
    let path = dir.join("nanogpt.safetensors");
    interop::write_safetensors(&path, &pytorch, HashMap::new()).unwrap();
    let file = SafetensorsFile::read(&path).unwrap();
    let imported = interop::import_gpt(&file, 11, Some(4)).unwrap();
    assert_eq!(imported.config(), model.config());
    let ids: Vec<usize> = (0..16).map(|i| i * 7 % 11).collect();
    let got = no_grad(|| imported.logits_last(&ids));
    assert_eq!(got, want, "same parameters, same logits");
    // Without metadata the head count must be given.
    match interop::import_gpt(&file, 11, None) {
        Ok(_) => panic!("imported without a head count"),
        Err(err) => assert!(format!("{err:#}").contains("--heads"), "{err:#}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes `tensors` as `NAME.safetensors` in `dir` and a vocabulary of `vocab` chars.
fn files(dir: &Path, name: &str, tensors: &[NamedArray], vocab: usize) -> (PathBuf, PathBuf) {
    let path = dir.join(format!("{name}.safetensors"));
    interop::write_safetensors(&path, tensors, HashMap::new()).unwrap();
    let chars: Vec<char> = "abcdefghijklmnopqrstuvwxyz".chars().take(vocab).collect();
    let vocab_path = dir.join(format!("{name}.json"));
    std::fs::write(
        &vocab_path,
        serde_json::to_string(&VocabFile::new(&chars)).unwrap(),
    )
    .unwrap();
    (path, vocab_path)
}

/// `import nanogpt` exits 1 with every needle in its error, no panic, and writes no model.
#[track_caller]
fn refused(dir: &Path, model: &Path, vocab: &Path, heads: &str, needles: &[&str]) {
    let out = dir.join("out");
    let data = dir.join("text.txt");
    std::fs::write(&data, "abcdefghijk".repeat(40)).unwrap();
    let o = trainer(&[
        "import",
        "nanogpt",
        "--safetensors",
        p(model),
        "--vocab",
        p(vocab),
        "--heads",
        heads,
        "--data",
        p(&data),
        "--out",
        p(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in {err}");
    }
    assert!(!out.join("model.aka").exists());
}

#[test]
fn bad_files_are_refused_with_the_tensor_or_file_named() {
    let dir = temp_dir("interop-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let config = GptConfig::sized(1, 2, 8, 8, 11).variant(
        GptPosition::Learned,
        GptNorm::LayerNorm,
        GptMlp::GeluErf,
        true,
    );
    let (_, tensors, _) = reference(&config);
    let (good, vocab) = files(&dir, "good", &tensors, 11);
    // The good pair imports (calibrated on a text of its 11 characters).
    let out = dir.join("good-out");
    let data = dir.join("good.txt");
    std::fs::write(&data, "abcdefghijk".repeat(40)).unwrap();
    ok(&trainer(&[
        "import",
        "nanogpt",
        "--safetensors",
        p(&good),
        "--vocab",
        p(&vocab),
        "--heads",
        "2",
        "--data",
        p(&data),
        "--out",
        p(&out),
    ]));

    let without = |name: &str| -> Vec<NamedArray> {
        tensors.iter().filter(|t| t.name != name).cloned().collect()
    };
    let (missing, _) = files(
        &dir,
        "missing",
        &without("transformer.h.0.mlp.c_fc.weight"),
        11,
    );
    refused(
        &dir,
        &missing,
        &vocab,
        "2",
        &["transformer.h.0.mlp.c_fc.weight", "missing"],
    );

    let mut reshaped = tensors.clone();
    let t = reshaped
        .iter_mut()
        .find(|t| t.name == "transformer.h.0.attn.c_proj.weight")
        .unwrap();
    t.shape = vec![4, 16];
    let (wrong, _) = files(&dir, "shape", &reshaped, 11);
    refused(
        &dir,
        &wrong,
        &vocab,
        "2",
        &["transformer.h.0.attn.c_proj.weight", "[4, 16]"],
    );

    refused(&dir, &good, &vocab, "3", &["--heads 3", "does not divide"]);

    let mut biased = tensors.clone();
    biased.push(NamedArray {
        name: "transformer.h.0.attn.c_attn.bias".into(),
        shape: vec![24],
        data: vec![0.0; 24],
    });
    let (bias, _) = files(&dir, "bias", &biased, 11);
    refused(&dir, &bias, &vocab, "2", &["c_attn.bias", "bias=True"]);

    let (_, small_vocab) = files(&dir, "vocab10", &tensors, 10);
    refused(
        &dir,
        &good,
        &small_vocab,
        "2",
        &["11 rows", "10 characters"],
    );

    let not_utf8 = dir.join("latin1.json");
    std::fs::write(&not_utf8, b"{\"itos\": [\"\xe9\"]}").unwrap();
    refused(
        &dir,
        &good,
        &not_utf8,
        "2",
        &["latin1.json", "not a vocabulary file"],
    );

    let bytes = std::fs::read(&good).unwrap();
    for cut in [4, 12, bytes.len() / 2, bytes.len() - 1] {
        let truncated = dir.join(format!("cut{cut}.safetensors"));
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        refused(
            &dir,
            &truncated,
            &vocab,
            "2",
            &[
                &format!("cut{cut}.safetensors"),
                "not a valid safetensors file",
            ],
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
