//! `aka inspect` on the committed int4 files: the weight type and group of every layer or
//! matrix, and the flash int4 saves (the int8 files' weights at 1 byte each, minus the int4
//! files' packed bytes).

use std::path::PathBuf;
use std::process::Command;

fn inspect(model: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware/models")
        .join(model);
    let o = Command::new(env!("CARGO_BIN_EXE_aka"))
        .arg("inspect")
        .arg(&path)
        .output()
        .expect("aka runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn inspect_shows_weight_types_groups_and_flash_saved() {
    // MLP 784-576-10: 784·576 + 576·10 int4 weights save half a byte each.
    let mlp = inspect("mnist-mlp-int4.aka");
    assert!(
        mlp.contains("int4 weights (group: the whole row of 784)"),
        "{mlp}"
    );
    assert!(
        mlp.contains("int4 weights (group: the whole row of 576)"),
        "{mlp}"
    );
    let saved = (784 * 576 + 576 * 10) / 2;
    assert!(
        mlp.contains(&format!(
            "int4 in all 2 matrices (per-row scales): {},{:03} bytes of flash saved",
            saved / 1000,
            saved % 1000
        )),
        "{mlp}"
    );
    assert!(inspect("mnist-mlp.aka").contains("weights       int8 (2 matrices)"));

    // GPT: 2 blocks of wq wk wv wo (64x64) w1 (256x64) w2 (64x256) int4; tok_emb and pos_emb int8.
    let gpt = inspect("gpt-int4.aka");
    assert!(
        gpt.contains("int4 + f32 scale per row (group: 64)"),
        "{gpt}"
    );
    assert!(
        gpt.contains("int8 + f32 scale per row (group: 64), also the head"),
        "{gpt}"
    );
    let saved = 2 * (4 * 64 * 64 + 2 * 256 * 64) / 2;
    assert!(
        gpt.contains(&format!(
            "int4 in 12 of 14 matrices (per-row scales), int8 in the rest: {},{:03} bytes",
            saved / 1000,
            saved % 1000
        )),
        "{gpt}"
    );
}
