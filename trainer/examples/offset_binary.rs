//! Rewrites a GPT model file's int8 projections (and an untied head) in the offset-binary layout
//! (`WeightType::Int8Offset`: even bytes `^ 0x80`, one i32 row constant per row; matrices whose
//! column count is a multiple of 8), without the checkpoint: the same values, so aka-core gives
//! bit-identical results. (`aka-trainer gpt` writes this layout by default; this converts files
//! exported before it, e.g. the committed `firmware/models/gpt.aka`.)
//!
//! ```text
//! cargo run --release -p aka-trainer --example offset_binary -- IN.aka OUT.aka
//! ```
//! The metadata (including the recorded command) is kept as it was.

use aka_core::format::{Body, ModelFile, QMatrix, WeightType};
use aka_core::gpt::GptModel;
use aka_core::kernels::{offset_row_const, to_offset_binary};
use anyhow::{bail, ensure, Context};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: offset_binary IN.aka OUT.aka");
    };
    let bytes = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    GptModel::load(&bytes).map_err(|e| anyhow::anyhow!("{input}: {e}"))?;
    let (mut file, _) =
        ModelFile::take_from_bytes(&bytes).map_err(|e| anyhow::anyhow!("decoding {input}: {e}"))?;
    let Body::Gpt(desc) = &mut file.body else {
        bail!("{input} is not a GPT");
    };
    // Owned new weight arrays, leaked: the file borrows them until it is written.
    let mut converted = 0;
    let mut convert = |m: &mut QMatrix| {
        let rows = m.scales.len() / 4;
        if m.weight_type != WeightType::Int8 || rows == 0 {
            return;
        }
        let cols = m.weights.len() / rows;
        if cols == 0 || !cols.is_multiple_of(8) {
            return;
        }
        let mut w = m.weights.to_vec();
        to_offset_binary(&mut w);
        let consts: Vec<u8> = w
            .chunks_exact(cols)
            .flat_map(|r| offset_row_const(r).to_le_bytes())
            .collect();
        w.extend_from_slice(&consts);
        m.weights = Vec::leak(w);
        m.weight_type = WeightType::Int8Offset;
        converted += 1;
    };
    for b in desc.blocks.as_mut_slice() {
        for m in [
            &mut b.wq, &mut b.wk, &mut b.wv, &mut b.wo, &mut b.w1, &mut b.w2,
        ] {
            convert(m);
        }
        if let Some(w3) = &mut b.w3 {
            convert(w3);
        }
    }
    if let Some(h) = &mut desc.lm_head {
        convert(h);
    }
    let out = aka_trainer::export::encode_aligned(file)?;
    let model = GptModel::load(&out).map_err(|e| anyhow::anyhow!("the converted file: {e}"))?;
    ensure!(model.file_size() == out.len());
    std::fs::write(output, &out).with_context(|| format!("writing {output}"))?;
    println!(
        "{output}: {converted} matrices converted, {} -> {} bytes",
        bytes.len(),
        out.len()
    );
    Ok(())
}
