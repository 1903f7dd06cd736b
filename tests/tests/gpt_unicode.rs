//! (f) A non-ASCII corpus trains, exports, and aka-core generates valid UTF-8 through the
//! stored vocabulary; the vocabulary and the unknown token agree with the trainer's tokenizer.

mod gpt_common;

use aka_core::rng::Rng;
use aka_core::sample::{sample, Sampling};
use aka_core::GptModel;
use aka_tests::GptBuffers;
use aka_trainer::data::text::{TextDataset, UNKNOWN_CHAR};
use aka_trainer::gpt::GptConfig;
use gpt_common::*;

const LINES: [&str; 6] = [
    "Grüße aus Köln, schöne Straße!\n",
    "日本語のテキストを書きます。\n",
    "Ελληνικά: καλημέρα κόσμε.\n",
    "Привет, мир! Ещё раз.\n",
    "Emoji 🙂 and 🦀 crabs, naïve café.\n",
    "مرحبا بالعالم\n",
];

fn corpus() -> String {
    let mut rng = Rng::new(4);
    (0..600)
        .map(|_| LINES[rng.below(LINES.len() as u32) as usize])
        .collect()
}

fn config() -> GptConfig {
    GptConfig {
        n_layer: 2,
        n_head: 4,
        d_model: 32,
        block_size: 32,
        ..GptConfig::default()
    }
}

fn generate(m: &GptModel, prompt: &str, n: usize, cfg: Sampling, seed: u64) -> String {
    let mut bufs = GptBuffers::new(m);
    let mut dec = bufs.decoder(m);
    let mut scratch = vec![0f32; m.vocab_size()];
    let mut ids = vec![0u32; prompt.chars().count()];
    let k = m.encode(prompt, &mut ids).unwrap();
    let mut rng = Rng::new(seed);
    let mut next = 0;
    for &t in &ids[..k] {
        next = sample(dec.push(t).unwrap(), &cfg, &mut rng, &mut scratch).unwrap();
    }
    let mut bytes: Vec<u8> = Vec::new();
    for _ in 0..n {
        bytes.extend_from_slice(m.decode_token(next).unwrap().as_bytes());
        next = sample(dec.push(next).unwrap(), &cfg, &mut rng, &mut scratch).unwrap();
    }
    String::from_utf8(bytes).expect("decoded tokens are valid UTF-8")
}

#[test]
fn non_ascii_corpus_trains_exports_and_generates_utf8() {
    let text = corpus();
    let data = TextDataset::from_text(&text, None);
    let tok = data.tokenizer();
    assert!(tok.vocab().iter().any(|c| !c.is_ascii()));
    let model = train(&data, config(), 250, 9);
    let e = export(&model, &data, 2);
    println!("{}", e.report());
    let m = GptModel::load(&e.bytes).unwrap();
    // Same vocabulary, same ids.
    let stored: Vec<char> = m.vocab_chars().chars().collect();
    assert_eq!(stored, tok.vocab());
    assert_eq!(m.unknown_id(), tok.unknown_id());
    let mut ids = vec![0u32; text.chars().count()];
    let n = m.encode(&text, &mut ids).unwrap();
    assert_eq!(&ids[..n], tok.encode(&text).as_slice());
    for id in 0..m.vocab_size() as u32 {
        assert_eq!(m.decode_token(id).unwrap(), tok.decode(&[id]));
    }

    let out = generate(
        &m,
        "Привет",
        300,
        Sampling {
            temperature: 0.8,
            top_k: 0,
        },
        1,
    );
    println!("sampled: {out:?}");
    assert_eq!(out.chars().count(), 300);
    assert!(out.chars().all(|c| tok.id(c).is_some()));
    assert!(!out.is_ascii());
    let greedy = generate(&m, "日本", 100, Sampling::GREEDY, 0);
    println!("greedy: {greedy:?}");
    assert!(e.int8.loss() / e.float.loss() - 1.0 < 0.03);
}

#[test]
fn unknown_token_round_trip() {
    // A capped vocabulary adds U+FFFD as the unknown token (it sorts before the emoji).
    let text = corpus();
    let data = TextDataset::from_text(&text, Some(40));
    let tok = data.tokenizer();
    let unk = tok
        .unknown_id()
        .expect("capped vocabulary has an unknown token");
    assert!(tok.vocab().last().is_some());
    let model = train(&data, config(), 30, 1);
    let e = export(&model, &data, 1);
    let m = GptModel::load(&e.bytes).unwrap();
    assert_eq!(m.unknown_id(), Some(unk));
    assert_eq!(m.decode_token(unk).unwrap(), UNKNOWN_CHAR.to_string());
    let probe = "Köln 🙂 ∑ مرحبا";
    let mut ids = [0u32; 32];
    let n = m.encode(probe, &mut ids).unwrap();
    assert_eq!(&ids[..n], tok.encode(probe).as_slice());
    assert!(ids[..n].contains(&unk));
    let out = generate(
        &m,
        "Kö",
        80,
        Sampling {
            temperature: 1.0,
            top_k: 10,
        },
        3,
    );
    assert_eq!(out.chars().count(), 80);
}
