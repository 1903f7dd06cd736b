//! `aka-trainer import nanogpt|sequential --weights int4`: the PyTorch fixtures exported with
//! int4 weights through the same exporter as the training commands; aka-core runs the files.

use std::path::{Path, PathBuf};
use std::process::Command;

use aka_core::format::{Layer, WeightType};
use aka_core::gpt::GptModel;
use aka_core::SequentialModel;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn import(args: &[&str], out: &Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_aka-trainer"))
        .arg("import")
        .args(args)
        .args(["--weights", "int4", "--out", out.to_str().unwrap()])
        .output()
        .expect("aka-trainer runs");
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(summary["export"]["weights"], "int4");
    summary["export"].clone()
}

#[test]
fn nanogpt_fixture_imports_with_int4_projections() {
    let out = std::env::temp_dir().join(format!("aka-interop-int4-gpt-{}", std::process::id()));
    let export = import(
        &[
            "nanogpt",
            "--safetensors",
            fixture("nanogpt/model.safetensors").to_str().unwrap(),
            "--vocab",
            fixture("nanogpt/vocab.json").to_str().unwrap(),
            "--heads",
            "4",
        ],
        &out,
    );
    let bytes = std::fs::read(out.join("model.aka")).unwrap();
    let model = GptModel::load(&bytes).unwrap();
    let desc = model.desc();
    // The token table stays int8: offset-binary rows when it is also the (tied) head.
    let tok = match desc.lm_head {
        None => WeightType::Int8Offset,
        Some(_) => WeightType::Int8,
    };
    assert_eq!(desc.tok_emb.weight_type, tok);
    for b in desc.blocks.as_slice() {
        for m in [b.wq, b.wk, b.wv, b.wo, b.w1, b.w2] {
            assert_eq!(m.weight_type, WeightType::Int4);
        }
    }
    // The goal for int4: within 3 % of the float validation loss.
    let float = export["float_val_loss"].as_f64().unwrap();
    let int4 = export["quantized_val_loss"].as_f64().unwrap();
    assert!(
        (int4 - float).abs() <= 0.03 * float,
        "int4 {int4} vs float {float}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn sequential_fixture_imports_with_int4_weights() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("mlp/reference.json")).unwrap())
            .unwrap();
    let out = std::env::temp_dir().join(format!("aka-interop-int4-mlp-{}", std::process::id()));
    let export = import(
        &[
            "sequential",
            "--safetensors",
            fixture("mlp/model.safetensors").to_str().unwrap(),
            "--layers",
            reference["layers"].as_str().unwrap(),
        ],
        &out,
    );
    let bytes = std::fs::read(out.join("model.aka")).unwrap();
    let model = SequentialModel::load(&bytes).unwrap();
    let types: Vec<WeightType> = model
        .layer_infos()
        .filter_map(|i| match i.layer {
            Layer::Linear(l) => Some(l.weight_type),
            _ => None,
        })
        .collect();
    assert_eq!(types, [WeightType::Int4, WeightType::Int4]);
    // The goal for int4: within 0.5 pt of float.
    let float = export["float_accuracy"].as_f64().unwrap();
    let int4 = export["quantized_accuracy"].as_f64().unwrap();
    assert!(float - int4 <= 0.5, "int4 {int4} % vs float {float} %");
    std::fs::remove_dir_all(out).unwrap();
}
