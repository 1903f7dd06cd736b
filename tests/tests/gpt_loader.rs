//! (e) Loader robustness of `aka_core::GptModel` on real exported files: truncation at every
//! offset, byte flips (proptest), wrong magic/version, inconsistent shapes, huge lengths —
//! always an `Err`, never a panic; whatever loads also runs without panicking.

#[path = "../../core/tests/common/corrupt.rs"]
mod corrupt;
mod gpt_common;

use aka_core::format::{MAGIC, VERSION};
use aka_core::rng::Rng;
use aka_core::{Error, GptModel};
use aka_tests::GptBuffers;
use aka_trainer::data::text::TextDataset;
use aka_trainer::export::gpt::{export_gpt, CalibConfig, EvalConfig};
use aka_trainer::export::ExportMetadata;
use aka_trainer::gpt::{Gpt, GptConfig, GptMlp, GptNorm, GptPosition};
use proptest::prelude::*;

const CMD: &str = "aka-tests";

fn corpus() -> String {
    "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
        .repeat(12)
}

/// A tiny untrained model (1 layer, 2 heads, d 16, hidden 64, context 8), exported.
fn tiny(position: GptPosition, norm: GptNorm, mlp: GptMlp, tied: bool) -> Vec<u8> {
    let data = TextDataset::from_text(&corpus(), None);
    let config = GptConfig::sized(1, 2, 16, 8, data.tokenizer().vocab_size())
        .variant(position, norm, mlp, tied);
    let model = Gpt::new(config, &mut Rng::new(3));
    export_gpt(
        &model,
        &data,
        &CalibConfig {
            batches: 2,
            batch_size: 4,
            ..CalibConfig::default()
        },
        &EvalConfig {
            batches: 1,
            batch_size: 2,
            seed: 0,
        },
        &ExportMetadata::language_model(0, CMD),
    )
    .unwrap()
    .bytes
}

fn files() -> &'static [Vec<u8>; 2] {
    static FILES: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        [
            tiny(GptPosition::Learned, GptNorm::LayerNorm, GptMlp::Gelu, true),
            tiny(GptPosition::Rope, GptNorm::RmsNorm, GptMlp::SwiGlu, false),
        ]
    })
}

/// Loads `bytes`; if that succeeds, decodes a few tokens (past the context) and the vocabulary.
fn load_and_maybe_run(bytes: &[u8]) -> Result<(), Error> {
    let m = GptModel::load(bytes)?;
    if m.state_size() > 1 << 22 {
        return Ok(());
    }
    let mut bufs = GptBuffers::new(&m);
    let mut dec = bufs.decoder(&m);
    let mut t = 0u32;
    for _ in 0..m.block_size() + 3 {
        let logits = dec.push(t).expect("a loaded model runs");
        assert_eq!(logits.len(), m.vocab_size());
        t = aka_core::sample::argmax(logits).unwrap_or(0) as u32;
    }
    for id in 0..m.vocab_size() as u32 {
        assert!(!m.decode_token(id).expect("valid id").is_empty());
    }
    let mut ids = [0u32; 64];
    let _ = m.encode("hello wörld", &mut ids);
    Ok(())
}

#[test]
fn valid_files_load_and_run() {
    for f in files() {
        load_and_maybe_run(f).unwrap();
        let m = GptModel::load(f).unwrap();
        println!(
            "{} bytes, {} parameter bytes, state {} bytes ({} KV cache)",
            m.file_size(),
            m.param_bytes(),
            m.state_size(),
            m.kv_cache_size()
        );
        assert_eq!(m.metadata().task, aka_core::Task::LanguageModel);
        assert_eq!(m.metadata().train_command, CMD);
    }
}

#[test]
fn exported_matrices_start_at_multiples_of_4_bytes() {
    for f in files() {
        let m = GptModel::load(f).unwrap();
        let mut desc = m.desc().clone();
        let mut n = 0;
        desc.for_each_matrix_mut(|q| {
            let off = q.weights.as_ptr() as usize - f.as_ptr() as usize;
            assert_eq!(off % 4, 0, "matrix {n} at file offset {off}");
            assert!(q.pad.len() <= 3 && q.pad.iter().all(|&b| b == 0));
            n += 1;
        });
        assert!(n >= 7, "{n} matrices");
    }
}

#[test]
fn every_truncation_is_an_error() {
    for f in files() {
        for n in 0..f.len() {
            let e = GptModel::load(&f[..n]).unwrap_err();
            assert!(
                matches!(e, Error::Truncated | Error::BadMagic | Error::Malformed),
                "cut at {n}: {e:?}"
            );
        }
        let mut longer = f.clone();
        longer.push(0);
        assert_eq!(
            GptModel::load(&longer).unwrap_err(),
            Error::TrailingBytes { count: 1 }
        );
    }
}

#[test]
fn wrong_magic_and_version() {
    let f = &files()[0];
    let mut b = f.clone();
    b[0] = b'X';
    assert_eq!(GptModel::load(&b).unwrap_err(), Error::BadMagic);
    assert_eq!(GptModel::load(b"AK").unwrap_err(), Error::Truncated);
    assert_eq!(GptModel::load(b"").unwrap_err(), Error::Truncated);
    let mut b = f.clone();
    assert_eq!(b[MAGIC.len()], VERSION as u8);
    b[MAGIC.len()] = VERSION as u8 + 1;
    assert_eq!(
        GptModel::load(&b).unwrap_err(),
        Error::UnsupportedVersion {
            found: VERSION + 1,
            supported: VERSION
        }
    );
}

/// Offset of the config (`n_layer`) in a file written by `tiny` (postcard layout: magic,
/// version, task, labels, 2 × f32, seed, train_command, body tag, config).
fn config_offset(f: &[u8]) -> usize {
    let at = 4 + 1 + 1 + 1 + 8 + 1 + 1 + CMD.len() + 1;
    assert_eq!(&f[at - 1 - CMD.len()..at - 1], CMD.as_bytes());
    assert_eq!(f[at - 1], 1, "Body::Gpt tag");
    // n_layer 1, n_head 2, d 16, hidden 64, block 8.
    assert_eq!(&f[at..at + 5], &[1, 2, 16, 64, 8]);
    at
}

#[test]
fn inconsistent_shapes_are_typed_errors() {
    let f = &files()[0];
    let at = config_offset(f);
    let patched = |i: usize, v: u8| {
        let mut b = f.clone();
        b[at + i] = v;
        GptModel::load(&b).unwrap_err()
    };
    assert!(matches!(patched(0, 2), Error::GptParameter { .. })); // n_layer
    assert!(matches!(patched(0, 0), Error::GptParameter { .. }));
    assert!(matches!(patched(1, 3), Error::GptParameter { .. })); // n_head
    assert!(matches!(patched(1, 0), Error::GptParameter { .. }));
    assert!(matches!(
        patched(2, 8), // d_model
        Error::GptLength { block: None, .. }
    ));
    assert!(matches!(
        patched(3, 32), // hidden
        Error::GptLength { block: Some(0), .. }
    ));
    assert!(matches!(patched(4, 9), Error::GptLength { .. })); // block: pos_emb rows
    assert!(matches!(patched(4, 0), Error::GptParameter { .. }));
    let vocab = f[at + 5];
    assert!(matches!(patched(5, vocab + 1), Error::BadVocab { .. }));
    assert!(matches!(patched(6, 1), Error::GptParameter { .. })); // position: rope
    assert!(matches!(patched(6, 9), Error::Malformed));
    assert!(matches!(patched(7, 1), Error::GptParameter { .. })); // norm: rms with biases
    assert!(matches!(patched(8, 1), Error::GptParameter { .. })); // mlp: swiglu without w3
    assert!(matches!(patched(9, 0), Error::GptParameter { .. })); // untied without lm_head
    assert!(matches!(patched(9, 2), Error::Malformed)); // bool
                                                        // norm_eps: NaN, 0.
    for eps in [f32::NAN, 0.0, -1e-5] {
        let mut b = f.clone();
        b[at + 10..at + 14].copy_from_slice(&eps.to_le_bytes());
        assert!(matches!(
            GptModel::load(&b).unwrap_err(),
            Error::GptParameter { .. }
        ));
    }
}

#[test]
fn huge_lengths_are_errors() {
    let f = &files()[0];
    let at = config_offset(f);
    // The train_command length, then the vocabulary length, as a huge varint.
    let cmd_len_at = at - 1 - CMD.len() - 1;
    assert_eq!(f[cmd_len_at] as usize, CMD.len());
    let vocab_len_at = at + 14;
    for (i, huge) in [
        (cmd_len_at, vec![0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        (vocab_len_at, vec![0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        (vocab_len_at, vec![0xFF; 12]),
        (at, vec![0xFF, 0xFF, 0xFF, 0xFF, 0x0F]), // n_layer = u32::MAX
        (at + 2, vec![0xFF, 0xFF, 0xFF, 0xFF, 0x0F]), // d_model = u32::MAX
    ] {
        let mut b = f.clone();
        b.splice(i..i + 1, huge);
        assert!(load_and_maybe_run(&b).is_err(), "at {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn byte_flips_never_panic(which in 0usize..2, flips in corrupt::flips(6)) {
        let mut bytes = files()[which].clone();
        corrupt::set_bytes(&mut bytes, flips);
        let _ = load_and_maybe_run(&bytes);
    }

    #[test]
    fn cuts_and_insertions_never_panic(which in 0usize..2, (cut, insert, at) in corrupt::splices()) {
        let mut bytes = files()[which].clone();
        let keep = cut.index(bytes.len() + 1).max(bytes.len() - 64);
        corrupt::cut_and_insert(&mut bytes, keep, insert, at);
        let _ = load_and_maybe_run(&bytes);
    }
}
