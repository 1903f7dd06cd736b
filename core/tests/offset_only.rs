//! The `offset-only` build (`cargo test -p aka-core --features offset-only --test offset_only`):
//! a GPT whose every product runs through the int8-offset kernel (the exporter's default) loads
//! and runs; any other is refused at load time with a typed error, exactly when
//! `GptDesc::first_non_offset_matrix` (which the firmware's build script calls) names a matrix.
#![cfg(feature = "offset-only")]

use aka_core::format::{Body, GptDesc, ModelFile, WeightType};
use aka_core::gpt::GptModel;
use aka_core::Error;

/// Does every matrix the forward pass multiplies (projections, and the head: `lm_head`, or the
/// tied token table) use the int8-offset layout? Read from the decoded file, independently of
/// the loader.
fn all_offset(desc: &GptDesc) -> bool {
    let off = |t: WeightType| t == WeightType::Int8Offset;
    let blocks = desc.blocks.as_slice().iter().all(|b| {
        [&b.wq, &b.wk, &b.wv, &b.wo, &b.w1, &b.w2]
            .into_iter()
            .chain(b.w3.as_ref())
            .all(|m| off(m.weight_type))
    });
    blocks && off(desc.lm_head.as_ref().unwrap_or(&desc.tok_emb).weight_type)
}

#[test]
fn committed_gpt_models_load_exactly_when_every_product_is_int8_offset() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware/models/");
    let mut seen = [0, 0]; // refused, loaded
    for name in [
        "gpt.aka",
        "gpt-int4.aka",
        "gpt-nrf52840.aka",
        "gpt-stm32f411.aka",
    ] {
        let bytes = std::fs::read(format!("{dir}{name}")).unwrap();
        let (file, _) = ModelFile::take_from_bytes(&bytes).unwrap();
        let Body::Gpt(desc) = file.body else {
            panic!("{name}: not a GPT")
        };
        match GptModel::load(&bytes) {
            Ok(m) => {
                assert!(all_offset(&desc), "{name} loaded");
                assert_eq!(m.desc().first_non_offset_matrix(), None, "{name}");
                // It runs: logits of the first token are finite and not all equal.
                let mut f = vec![0f32; m.state_f32_len()];
                let mut c = vec![0i8; m.state_i8_len()];
                let mut s = m.new_state(&mut f, &mut c).unwrap();
                let l = m.forward(&mut s, 1, 0).unwrap();
                assert!(l.iter().all(|v| v.is_finite()) && l.iter().any(|&v| v != l[0]));
                seen[1] += 1;
            }
            Err(e) => {
                assert!(!all_offset(&desc), "{name} refused: {e}");
                assert!(
                    matches!(e, Error::GptParameter { what, .. } if what.contains("offset-only")),
                    "{name}: {e:?}"
                );
                seen[0] += 1;
            }
        }
    }
    // gpt.aka and the nRF52840 flagship are all int8-offset; the int4 files are not.
    assert_eq!(seen, [2, 2]);
}

/// `gpt.aka` with its tied head's token table written back as plain int8 rows (the same values):
/// refused, though every projection is int8-offset.
#[test]
fn a_plain_tied_head_is_refused() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware/models/");
    let bytes = std::fs::read(format!("{dir}gpt.aka")).unwrap();
    assert!(GptModel::load(&bytes).is_ok());
    let (mut file, _) = ModelFile::take_from_bytes(&bytes).unwrap();
    let Body::Gpt(desc) = &mut file.body else {
        panic!("not a GPT")
    };
    let (d, v) = (
        desc.config.d_model as usize,
        desc.config.vocab_size as usize,
    );
    assert!(desc.lm_head.is_none() && desc.tok_emb.weight_type == WeightType::Int8Offset);
    // Even bytes flipped back, the row constants dropped.
    let plain: Vec<u8> = desc.tok_emb.weights[..v * d]
        .iter()
        .enumerate()
        .map(|(i, &b)| if i % 2 == 0 { b ^ 0x80 } else { b })
        .collect();
    desc.tok_emb.weights = &plain;
    desc.tok_emb.weight_type = WeightType::Int8;
    let edited = postcard::to_stdvec(&file).unwrap();
    assert!(matches!(
        GptModel::load(&edited),
        Err(Error::GptParameter { block: None, what }) if what.contains("offset-only")
    ));
}
