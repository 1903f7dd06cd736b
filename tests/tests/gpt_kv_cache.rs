//! (c) The KV-cached incremental forward of aka-core's int8 GPT equals a full recompute over the
//! prefix, bit for bit, and the sliding window equals a fresh run over the kept tokens.

mod gpt_common;

use aka_core::GptModel;
use aka_tests::GptBuffers;
use aka_trainer::data::text::Split;
use aka_trainer::gpt::{GptConfig, GptMlp, GptNorm, GptPosition};
use gpt_common::*;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn check(config: GptConfig) {
    let data = shakespeare();
    let model = train(data, config, 60, 5);
    let e = export(&model, data, 1);
    let m = GptModel::load(&e.bytes).unwrap();
    let block = m.block_size();
    let tokens: Vec<u32> = data.split(Split::Val)[100..100 + 2 * block + 7].to_vec();

    // One incremental pass over the first block.
    let mut bufs = GptBuffers::new(&m);
    let mut st = bufs.state(&m);
    let inc: Vec<Vec<u32>> = tokens[..block]
        .iter()
        .enumerate()
        .map(|(p, &t)| bits(m.forward(&mut st, t, p).unwrap()))
        .collect();
    // Fresh state (dirty buffers), full recompute of tokens 0..=p.
    for p in 0..block {
        let mut bufs = GptBuffers::filled(&m, f32::NAN, 99);
        let mut st = bufs.state(&m);
        let full = bits(m.prefill(&mut st, &tokens[..=p], 0).unwrap());
        assert_eq!(full, inc[p], "position {p}");
    }
    assert!(matches!(
        m.forward(&mut st, tokens[0], block),
        Err(aka_core::Error::ContextFull { .. })
    ));

    // Sliding window: every step equals a fresh prefill over the decoder's window.
    let mut dec_bufs = GptBuffers::new(&m);
    let mut dec = dec_bufs.decoder(&m);
    let mut slides = 0;
    for (i, &t) in tokens.iter().enumerate() {
        let before = dec.len();
        let got = bits(dec.push(t).unwrap());
        if dec.len() <= before {
            slides += 1;
        }
        if i < block {
            assert_eq!(got, inc[i]);
        }
        if i % 5 == 0 || dec.len() == block / 2 + 1 {
            let mut bufs = GptBuffers::new(&m);
            let mut st = bufs.state(&m);
            let want = bits(m.prefill(&mut st, dec.tokens(), 0).unwrap());
            assert_eq!(got, want, "step {i}");
        }
    }
    assert!(slides >= 2, "{slides} slides");
}

#[test]
fn incremental_equals_recompute_learned_layernorm_gelu() {
    check(GptConfig {
        d_model: 32,
        block_size: 32,
        ..small_config()
    });
}

#[test]
fn incremental_equals_recompute_rope_rmsnorm_swiglu_untied() {
    check(GptConfig {
        d_model: 32,
        block_size: 32,
        position: GptPosition::Rope,
        norm: GptNorm::RmsNorm,
        mlp: GptMlp::SwiGlu,
        tied_head: false,
        ..small_config()
    });
}
