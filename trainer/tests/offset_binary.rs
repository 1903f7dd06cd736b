//! The offset-binary int8 layout (`WeightType::Int8Offset`, issue 13 part 4): exporting the same
//! checkpoint with it (the default) and as plain int8 rows gives the same values in a different
//! layout, so aka-core computes bit-identical logits and the same quantized loss from both.

mod common;

use aka_core::format::WeightType;
use aka_core::gpt::GptModel;
use aka_trainer::data::text::TextDataset;
use aka_trainer::export::gpt::GptWeights;
use aka_trainer::export::quantize::WeightBits;
use aka_trainer::gpt::GptConfig;

/// Every matrix's weight type, in file order.
fn types(m: &GptModel) -> Vec<WeightType> {
    let mut d = m.desc().clone();
    let mut v = Vec::new();
    d.for_each_matrix_mut(|q| v.push(q.weight_type));
    v
}

#[test]
fn offset_binary_and_plain_int8_exports_give_bit_identical_logits() {
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(60);
    let data = TextDataset::from_text(&text, None);
    for tied in [false, true] {
        let mut cfg = GptConfig::sized(2, 2, 32, 16, data.tokenizer().vocab_size());
        cfg.tied_head = tied;
        let model = common::trained_gpt(cfg.clone(), 3, 20, &data);
        let export = |weights: GptWeights| common::export_gpt_with(&model, &data, &weights);
        let off = export(GptWeights::default());
        let plain = export(GptWeights {
            plain_int8: true,
            ..GptWeights::default()
        });
        // int4 ignores the flag's layout (int4 rows are never offset-binary).
        let int4 = export(GptWeights {
            weights: WeightBits::Int4,
            ..GptWeights::default()
        });
        let (mo, mp) = (
            GptModel::load(&off.bytes).unwrap(),
            GptModel::load(&plain.bytes).unwrap(),
        );
        // Every projection and the head offset-binary (an untied `lm_head`, or the token table
        // of a tied one); the embedding tables otherwise plain int8.
        let (to, tp) = (types(&mo), types(&mp));
        let n_emb = 1 + usize::from(mo.desc().pos_emb.is_some());
        let tok = if tied {
            WeightType::Int8Offset
        } else {
            WeightType::Int8
        };
        assert_eq!(to[0], tok);
        assert!(to[1..n_emb].iter().all(|&t| t == WeightType::Int8));
        assert!(to[n_emb..].iter().all(|&t| t == WeightType::Int8Offset));
        assert_eq!(to.len(), n_emb + 2 * 6 + usize::from(!tied));
        assert!(tp.iter().all(|&t| t == WeightType::Int8));
        assert!(types(&GptModel::load(&int4.bytes).unwrap())[n_emb..]
            .iter()
            .all(|&t| t == WeightType::Int4));
        // The file grows by one i32 per converted row (give or take the alignment padding and
        // a varint length byte per matrix).
        let rows: usize = 2 * (4 * 32 + cfg.hidden() + 32) + cfg.vocab_size;
        let grew = off.bytes.len() as i64 - plain.bytes.len() as i64;
        assert!(
            (grew - 4 * rows as i64).abs() <= 64,
            "grew {grew}, rows {rows}"
        );
        // The same arithmetic: identical quantized evaluation and logits, bit for bit.
        assert_eq!(off.int8.loss().to_bits(), plain.int8.loss().to_bits());
        let (mut fo, mut co) = (vec![0f32; mo.state_f32_len()], vec![0i8; mo.state_i8_len()]);
        let (mut fp, mut cp) = (vec![0f32; mp.state_f32_len()], vec![0i8; mp.state_i8_len()]);
        let mut so = mo.new_state(&mut fo, &mut co).unwrap();
        let mut sp = mp.new_state(&mut fp, &mut cp).unwrap();
        let toks: Vec<u32> = "the lazy fox jum"
            .chars()
            .map(|c| mo.char_id(c).unwrap())
            .collect();
        for (p, &t) in toks.iter().enumerate() {
            let lo = mo.forward(&mut so, t, p).unwrap().to_vec();
            let lp = mp.forward(&mut sp, t, p).unwrap();
            assert!(
                lo.iter().zip(lp).all(|(a, b)| a.to_bits() == b.to_bits()),
                "tied {tied} position {p}"
            );
        }
    }
}
