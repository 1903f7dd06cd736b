//! Unit tests of the GPT runtime on small random models (every configuration).

extern crate std;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::format::{
    Body, GptBlock, GptBlockList, GptConfig, GptDesc, GptEval, GptMlp, GptNorm, GptPosition,
    GptVocab, Metadata, ModelFile, NormParams, QMatrix, RopeTables, Task, WeightType, ACT_LUT_LEN,
};
use crate::kernels::quantize::le_f32;
use crate::rng::Rng;
use crate::Error;

mod layouts;

/// Owned arrays of a random GPT (the test-side "exporter").
struct Owned {
    cfg: GptConfig,
    vocab: std::string::String,
    unknown: Option<u32>,
    tok: (Vec<u8>, Vec<u8>),
    pos: Option<(Vec<u8>, Vec<u8>)>,
    rope: Option<(Vec<u8>, Vec<u8>)>,
    blocks: Vec<OwnedBlock>,
    ln_f: (Vec<u8>, Option<Vec<u8>>),
    head: Option<(Vec<u8>, Vec<u8>)>,
}

struct OwnedBlock {
    ln1: (Vec<u8>, Option<Vec<u8>>),
    ln2: (Vec<u8>, Option<Vec<u8>>),
    m: Vec<(Vec<u8>, Vec<u8>)>, // wq wk wv wo w1 w2 [w3]
    lut: Vec<u8>,               // act_lut
}

fn f32s(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter().flat_map(f32::to_le_bytes).collect()
}

fn matrix(rng: &mut Rng, rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>) {
    let w = (0..rows * cols)
        .map(|_| rng.below(255) as u8 ^ 0x80)
        .collect();
    let s = f32s((0..rows).map(|_| 0.002 + 0.01 * rng.next_f32()));
    (w, s)
}

fn norm_p(rng: &mut Rng, d: usize, kind: GptNorm) -> (Vec<u8>, Option<Vec<u8>>) {
    let w = f32s((0..d).map(|_| 0.8 + 0.4 * rng.next_f32()));
    let b = (kind == GptNorm::LayerNorm).then(|| f32s((0..d).map(|_| 0.1 * rng.normal())));
    (w, b)
}

fn owned(cfg: GptConfig, seed: u64) -> Owned {
    let mut rng = Rng::new(seed);
    let (d, h, v, blk) = (
        cfg.d_model as usize,
        cfg.hidden as usize,
        cfg.vocab_size as usize,
        cfg.block_size as usize,
    );
    let hd = d / cfg.n_head as usize;
    let vocab: std::string::String = "\nabcdefghijklmnopqrstuvwxyzé日\u{FFFD}"
        .chars()
        .take(v)
        .collect();
    assert_eq!(vocab.chars().count(), v);
    let unknown = vocab
        .chars()
        .position(|c| c == UNKNOWN_CHAR)
        .map(|i| i as u32);
    let rope = (cfg.position == GptPosition::Rope).then(|| {
        let (mut c, mut s) = (Vec::new(), Vec::new());
        for p in 0..blk {
            for i in 0..hd / 2 {
                let a = p as f64 * libm::pow(10_000.0, -((2 * i) as f64) / hd as f64);
                c.push(libm::cos(a) as f32);
                s.push(libm::sin(a) as f32);
            }
        }
        (f32s(c), f32s(s))
    });
    let blocks = (0..cfg.n_layer)
        .map(|_| {
            let mut m = vec![
                matrix(&mut rng, d, d),
                matrix(&mut rng, d, d),
                matrix(&mut rng, d, d),
                matrix(&mut rng, d, d),
                matrix(&mut rng, h, d),
                matrix(&mut rng, d, h),
            ];
            if cfg.mlp.is_gated() {
                m.push(matrix(&mut rng, h, d));
            }
            OwnedBlock {
                ln1: norm_p(&mut rng, d, cfg.norm),
                ln2: norm_p(&mut rng, d, cfg.norm),
                m,
                lut: (0..ACT_LUT_LEN).map(|_| rng.below(256) as u8).collect(),
            }
        })
        .collect();
    Owned {
        cfg,
        vocab,
        unknown,
        tok: matrix(&mut rng, v, d),
        pos: (cfg.position == GptPosition::Learned).then(|| matrix(&mut rng, blk, d)),
        rope,
        blocks,
        ln_f: norm_p(&mut rng, d, cfg.norm),
        head: (!cfg.tied_head).then(|| matrix(&mut rng, v, d)),
    }
}

fn qm(m: &(Vec<u8>, Vec<u8>)) -> QMatrix<'_> {
    QMatrix {
        pad: &[],
        weight_type: WeightType::Int8,
        weights: &m.0,
        scales: &m.1,
    }
}

fn np(n: &(Vec<u8>, Option<Vec<u8>>)) -> NormParams<'_> {
    NormParams {
        weight: &n.0,
        bias: n.1.as_deref(),
    }
}

fn desc(o: &Owned) -> GptDesc<'_> {
    let blocks: Vec<GptBlock> = o
        .blocks
        .iter()
        .map(|b| GptBlock {
            ln1: np(&b.ln1),
            attn_in_scale: 0.03,
            wq: qm(&b.m[0]),
            wk: qm(&b.m[1]),
            wv: qm(&b.m[2]),
            q_scale: 0.02,
            k_scale: 0.02,
            v_scale: 0.01,
            attn_out_scale: 0.01,
            wo: qm(&b.m[3]),
            ln2: np(&b.ln2),
            mlp_in_scale: 0.03,
            w1: qm(&b.m[4]),
            w3: b.m.get(6).map(qm),
            mlp_gate_scale: 0.05,
            mlp_act_scale: if o.cfg.mlp.is_gated() { 0.02 } else { 0.005 },
            act_lut: &b.lut,
            mlp_hidden_scale: 0.005,
            w2: qm(&b.m[5]),
        })
        .collect();
    GptDesc {
        config: o.cfg,
        vocab: GptVocab {
            chars: &o.vocab,
            unknown: o.unknown,
        },
        tok_emb: qm(&o.tok),
        pos_emb: o.pos.as_ref().map(qm),
        rope: o.rope.as_ref().map(|r| RopeTables {
            cos: &r.0,
            sin: &r.1,
        }),
        blocks: GptBlockList::from_slice(&blocks).unwrap(),
        ln_f: np(&o.ln_f),
        head_in_scale: 0.03,
        lm_head: o.head.as_ref().map(qm),
        eval: GptEval::UNKNOWN,
    }
}

fn metadata() -> Metadata<'static> {
    Metadata {
        task: Task::LanguageModel,
        labels: "",
        float_accuracy: f32::NAN,
        int8_accuracy: f32::NAN,
        seed: 1,
        train_command: "test",
    }
}

fn bytes_of(desc: GptDesc) -> Vec<u8> {
    postcard::to_stdvec(&ModelFile::new(metadata(), Body::Gpt(desc))).unwrap()
}

fn config(position: GptPosition, norm: GptNorm, mlp: GptMlp, tied: bool) -> GptConfig {
    GptConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 8,
        hidden: 12,
        block_size: 6,
        vocab_size: 30,
        position,
        norm,
        mlp,
        tied_head: tied,
        norm_eps: 1e-5,
    }
}

fn all_configs() -> Vec<GptConfig> {
    let mut v = Vec::new();
    for p in [GptPosition::Learned, GptPosition::Rope] {
        for n in [GptNorm::LayerNorm, GptNorm::RmsNorm] {
            for m in [GptMlp::Gelu, GptMlp::SwiGlu, GptMlp::GeGlu] {
                for t in [false, true] {
                    v.push(config(p, n, m, t));
                }
            }
        }
    }
    v
}

struct Buffers {
    f: Vec<f32>,
    c: Vec<i8>,
}

/// The model of [`owned`]`(cfg, seed)`, loaded from its (leaked) file bytes.
fn model(cfg: GptConfig, seed: u64) -> GptModel<'static> {
    let o = owned(cfg, seed);
    GptModel::load(bytes_of(desc(&o)).leak()).unwrap()
}

fn buffers(m: &GptModel) -> Buffers {
    Buffers {
        f: vec![0.0; m.state_f32_len()],
        c: vec![0; m.state_i8_len()],
    }
}

#[test]
fn incremental_equals_recompute_for_every_config() {
    for (ci, cfg) in all_configs().into_iter().enumerate() {
        let m = model(cfg, ci as u64);
        assert_eq!(m.state_size(), 4 * m.state_f32_len() + m.state_i8_len());
        let toks = [3u32, 0, 27, 28, 5, 5];
        let mut b = buffers(&m);
        let mut st = m.new_state(&mut b.f, &mut b.c).unwrap();
        let inc: Vec<Vec<f32>> = toks
            .iter()
            .enumerate()
            .map(|(p, &t)| m.forward(&mut st, t, p).unwrap().to_vec())
            .collect();
        for p in 0..toks.len() {
            let mut b2 = buffers(&m);
            // Dirty buffers must not matter.
            b2.f.iter_mut().for_each(|v| *v = 7.5);
            b2.c.iter_mut().for_each(|v| *v = -3);
            let mut st2 = m.new_state(&mut b2.f, &mut b2.c).unwrap();
            let full = m.prefill(&mut st2, &toks[..=p], 0).unwrap();
            let same = full
                .iter()
                .zip(&inc[p])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "config {ci} pos {p}");
            assert!(full.iter().all(|v| v.is_finite()));
        }
    }
}

/// A context longer than the forward pass's sum buffer (512 keys: the two-pass softmax) with
/// `hd = 8` (the scores through `matvec_i32_offset`, keys rounded up to whole triples): every
/// step's logits are the same from clean and from dirty buffers (the stale cache rows past `pos`
/// that the rounding reads never reach the result).
#[test]
fn long_context_scores_ignore_stale_cache_rows() {
    let mut cfg = config(GptPosition::Rope, GptNorm::RmsNorm, GptMlp::Gelu, false);
    cfg.d_model = 16;
    cfg.block_size = 520;
    let m = model(cfg, 91);
    let (mut clean, mut dirty) = (buffers(&m), buffers(&m));
    dirty.f.iter_mut().for_each(|v| *v = -2.5);
    dirty
        .c
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = (i * 37) as i8);
    let mut a = m.new_state(&mut clean.f, &mut clean.c).unwrap();
    let mut b = m.new_state(&mut dirty.f, &mut dirty.c).unwrap();
    for p in 0..520 {
        let t = (p * 7 % 30) as u32;
        let la = m.forward(&mut a, t, p).unwrap().to_vec();
        let lb = m.forward(&mut b, t, p).unwrap();
        assert!(
            la.iter().zip(lb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "pos {p}"
        );
        assert!(la.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn bad_token_context_full_and_small_state() {
    let m = model(
        config(GptPosition::Rope, GptNorm::RmsNorm, GptMlp::SwiGlu, true),
        1,
    );
    let mut b = buffers(&m);
    let mut st = m.new_state(&mut b.f, &mut b.c).unwrap();
    assert_eq!(
        m.forward(&mut st, 30, 0).unwrap_err(),
        Error::BadToken {
            token: 30,
            vocab_size: 30
        }
    );
    assert_eq!(
        m.forward(&mut st, u32::MAX, 0).unwrap_err(),
        Error::BadToken {
            token: u32::MAX,
            vocab_size: 30
        }
    );
    assert_eq!(
        m.forward(&mut st, 1, 6).unwrap_err(),
        Error::ContextFull {
            pos: 6,
            block_size: 6
        }
    );
    assert_eq!(
        m.prefill(&mut st, &[1; 7], 0).unwrap_err(),
        Error::ContextFull {
            pos: 6,
            block_size: 6
        }
    );
    assert!(matches!(
        m.prefill(&mut st, &[], 0),
        Err(Error::BadArgument { .. })
    ));
    assert!(matches!(
        m.prefill(&mut st, &[1, 99], 0),
        Err(Error::BadToken { token: 99, .. })
    ));
    let mut f = vec![0f32; m.state_f32_len() - 1];
    let mut c = vec![0i8; m.state_i8_len()];
    assert_eq!(
        m.new_state(&mut f, &mut c).unwrap_err(),
        Error::ArenaTooSmall {
            need: m.state_f32_len(),
            have: m.state_f32_len() - 1
        }
    );
    let mut f = vec![0f32; m.state_f32_len()];
    let mut c = vec![0i8; m.state_i8_len() - 1];
    assert!(matches!(
        m.new_state(&mut f, &mut c),
        Err(Error::ArenaTooSmall { .. })
    ));
    // A state built for a smaller model is reported, not a panic.
    let small = GptConfig {
        n_layer: 1,
        ..config(GptPosition::Rope, GptNorm::RmsNorm, GptMlp::SwiGlu, true)
    };
    let o2 = owned(small, 2);
    let bytes2 = bytes_of(desc(&o2));
    let m2 = GptModel::load(&bytes2).unwrap();
    let mut b2 = buffers(&m2);
    let mut st2 = m2.new_state(&mut b2.f, &mut b2.c).unwrap();
    assert!(matches!(
        m.forward(&mut st2, 1, 0),
        Err(Error::ArenaTooSmall { .. })
    ));
}

#[test]
fn decoder_slides_its_window() {
    for (ci, cfg) in all_configs().into_iter().enumerate().step_by(5) {
        let o = owned(cfg, 100 + ci as u64);
        let bytes = bytes_of(desc(&o));
        let m = GptModel::load(&bytes).unwrap();
        let mut b = buffers(&m);
        let mut w = [0u32; 6];
        let st = m.new_state(&mut b.f, &mut b.c).unwrap();
        let mut dec = Decoder::new(&m, st, &mut w).unwrap();
        let toks: Vec<u32> = (0..20u32).map(|i| (i * 7 + 3) % 30).collect();
        for (i, &t) in toks.iter().enumerate() {
            let got = dec.push(t).unwrap().to_vec();
            // Expected window: block 6; a full window keeps 3, then the new token.
            let n = i + 1;
            let expect_len = if n <= 6 { n } else { 4 + (n - 7) % 3 };
            assert_eq!(dec.len(), expect_len, "step {i}");
            assert_eq!(dec.tokens(), &toks[n - expect_len..n]);
            let mut b2 = buffers(&m);
            let mut st2 = m.new_state(&mut b2.f, &mut b2.c).unwrap();
            let want = m.prefill(&mut st2, dec.tokens(), 0).unwrap();
            assert!(want
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        assert!(matches!(dec.push(30), Err(Error::BadToken { .. })));
        let len = dec.len();
        assert_eq!(dec.len(), len);
        dec.reset();
        assert!(dec.is_empty());
    }
    let m = model(
        config(
            GptPosition::Learned,
            GptNorm::LayerNorm,
            GptMlp::Gelu,
            false,
        ),
        3,
    );
    let mut b = buffers(&m);
    let st = m.new_state(&mut b.f, &mut b.c).unwrap();
    let mut w = [0u32; 5];
    assert_eq!(
        Decoder::new(&m, st, &mut w).unwrap_err(),
        Error::BufferTooSmall { need: 6, have: 5 }
    );
}

#[test]
fn vocabulary_encode_decode() {
    let o = owned(
        config(GptPosition::Rope, GptNorm::LayerNorm, GptMlp::GeGlu, false),
        4,
    );
    let bytes = bytes_of(desc(&o));
    let m = GptModel::load(&bytes).unwrap();
    assert_eq!(m.unknown_id(), Some(29));
    let mut out = [0u32; 16];
    let n = m.encode("ab日é?\n", &mut out).unwrap();
    assert_eq!(&out[..n], &[1, 2, 28, 27, 29, 0]);
    let text: std::string::String = out[..n]
        .iter()
        .map(|&t| m.decode_token(t).unwrap())
        .collect();
    assert_eq!(text, "ab日é\u{FFFD}\n");
    assert_eq!(
        m.encode("abcdef", &mut out[..3]).unwrap_err(),
        Error::BufferTooSmall { need: 6, have: 3 }
    );
    assert!(matches!(m.decode_token(30), Err(Error::BadToken { .. })));
    // Without an unknown token, unknown chars are dropped (as the trainer does).
    let cfg = GptConfig {
        vocab_size: 28,
        ..config(GptPosition::Rope, GptNorm::LayerNorm, GptMlp::GeGlu, false)
    };
    let m = model(cfg, 5);
    assert_eq!(m.unknown_id(), None);
    let n = m.encode("a日z?", &mut out).unwrap();
    assert_eq!(&out[..n], &[1, 26]);
}

/// Applies `edit` to block `i` of `d`.
fn edit_block<'a>(d: &mut GptDesc<'a>, i: usize, edit: impl Fn(&mut GptBlock<'a>)) {
    let mut blocks: Vec<GptBlock> = d.blocks.as_slice().to_vec();
    edit(&mut blocks[i]);
    d.blocks = GptBlockList::from_slice(&blocks).unwrap();
}

/// [`GptModel::load`] of `d` after `edit` (its error, or `Ok`).
fn load_edited(mut d: GptDesc, edit: &dyn Fn(&mut GptDesc)) -> Result<(), Error> {
    edit(&mut d);
    GptModel::load(&bytes_of(d)).map(|_| ())
}

#[test]
fn loader_rejects_inconsistent_descriptions() {
    let cfg = config(
        GptPosition::Learned,
        GptNorm::LayerNorm,
        GptMlp::SwiGlu,
        false,
    );
    let o = owned(cfg, 6);
    let check = |edit: &dyn Fn(&mut GptDesc)| load_edited(desc(&o), edit).unwrap_err();
    let zero: &'static [u8] = f32s([0.0; 8]).leak();
    let nan_w: &'static [u8] = f32s([f32::NAN; 8]).leak();
    // Each edit of a valid description, and the error the loader must give for it.
    macro_rules! rejects {
        ($($edit:expr => $expected:pat),+ $(,)?) => {$(
            let err = check(&$edit);
            assert!(matches!(err, $expected), "{}: {err:?}", stringify!($edit));
        )+};
    }
    rejects! {
        |d| d.config.n_head = 3 => Error::GptParameter { .. },
        |d| d.config.d_model = 10 => Error::GptParameter { .. } | Error::GptLength { .. },
        |d| d.config.hidden = 13 => Error::GptLength { block: Some(0), .. },
        |d| d.config.vocab_size = 29 => Error::BadVocab { .. },
        |d| d.vocab.unknown = None => Error::BadVocab { .. },
        |d| d.vocab.chars = "ba" => Error::BadVocab { .. },
        |d| d.config.n_layer = 3 => Error::GptParameter { .. },
        |d| d.config.position = GptPosition::Rope => Error::GptParameter { .. },
        |d| d.config.tied_head = true => Error::GptParameter { .. },
        |d| d.config.mlp = GptMlp::Gelu => Error::GptParameter { block: Some(0), .. },
        |d| d.config.norm = GptNorm::RmsNorm => Error::GptParameter { block: Some(0), .. },
        |d| d.config.norm_eps = 0.0 => Error::GptParameter { .. },
        |d| d.config.block_size = 0 => Error::GptParameter { .. },
        |d| d.config.d_model = u32::MAX => Error::GptParameter { .. },
        |d| d.head_in_scale = f32::NAN => Error::GptParameter { .. },
        |d| edit_block(d, 1, |b| b.v_scale = -1.0) => Error::GptParameter { block: Some(1), .. },
        |d| edit_block(d, 1, |b| b.wq.scales = zero) => Error::GptParameter { block: Some(1), .. },
        |d| d.ln_f.weight = nan_w => Error::GptParameter { block: None, .. },
        |d| d.tok_emb.weights = &[] => Error::GptLength { block: None, .. },
        |d| d.blocks = GptBlockList::new() => Error::NoLayers,
    }
    // Wrong task, wrong body.
    let bytes = postcard::to_stdvec(&ModelFile::new(
        Metadata {
            task: Task::Classifier,
            ..metadata()
        },
        Body::Gpt(desc(&o)),
    ))
    .unwrap();
    assert!(matches!(
        GptModel::load(&bytes),
        Err(Error::GptParameter { .. })
    ));
    let bytes = bytes_of(desc(&o));
    assert!(GptModel::load(&bytes).is_ok());
    assert_eq!(
        crate::SequentialModel::load(&bytes).unwrap_err(),
        Error::WrongBody
    );
}

/// `terse-errors`: a malformed GPT file and a bad sampling argument give the errors they give
/// without the feature (variant, block, lengths), with every text empty.
#[cfg(feature = "terse-errors")]
#[test]
fn terse_errors_keep_variants_and_numbers() {
    let cfg = config(
        GptPosition::Learned,
        GptNorm::LayerNorm,
        GptMlp::SwiGlu,
        false,
    );
    let o = owned(cfg, 6);
    let load = |edit: &dyn Fn(&mut GptDesc)| load_edited(desc(&o), edit).unwrap_err();
    let errors = [
        load(&|d| d.config.n_head = 3),
        load(&|d| edit_block(d, 1, |b| b.wq.scales = &[])),
        load(&|d| d.vocab.chars = "ba"),
    ];
    let rows = cfg.d_model as usize;
    assert!(
        matches!(
            errors,
            [
                Error::GptParameter {
                    block: None,
                    what: ""
                },
                Error::GptLength {
                    block: Some(1),
                    what: "",
                    expected,
                    found: 0,
                },
                Error::BadVocab { what: "" },
            ] if expected == 4 * rows
        ),
        "{errors:?}"
    );
    let nan_t = crate::sample::Sampling {
        temperature: f32::NAN,
        top_k: 0,
    };
    let e = crate::sample::sample(&[1.0], &nan_t, &mut Rng::new(0), &mut []);
    assert!(matches!(e, Err(Error::BadArgument { what: "" })), "{e:?}");
    let greedy = crate::sample::Sampling::GREEDY;
    let e = crate::sample::sample(&[], &greedy, &mut Rng::new(0), &mut []);
    assert!(matches!(e, Err(Error::BadArgument { what: "" })), "{e:?}");
    // `Display` still names the kind of error, without a dangling separator.
    for e in errors.into_iter().chain(e.err()) {
        let text = std::format!("{e}");
        assert!(
            !text.is_empty() && !text.contains(": :") && !text.ends_with(' '),
            "{text:?}"
        );
    }
}

#[test]
fn generation_is_the_push_sample_loop() {
    use crate::sample::{sample, Sampling};
    let m = model(
        config(GptPosition::Rope, GptNorm::RmsNorm, GptMlp::SwiGlu, false),
        7,
    );
    let cfg = Sampling {
        temperature: 0.8,
        top_k: 5,
    };
    let prompt = [1u32, 2, 3];
    let tokens = 15; // slides the 6-token window several times
                     // The loop written out: each prompt push followed by a sample, then push + sample per id
                     // after the first.
    let mut b = buffers(&m);
    let mut w = [0u32; 6];
    let mut scratch = [0f32; 30];
    let st = m.new_state(&mut b.f, &mut b.c).unwrap();
    let mut dec = Decoder::new(&m, st, &mut w).unwrap();
    let mut rng = Rng::new(9);
    let mut next = 0;
    for &t in &prompt {
        next = sample(dec.push(t).unwrap(), &cfg, &mut rng, &mut scratch).unwrap();
    }
    let mut want = vec![next];
    for _ in 1..tokens {
        next = sample(dec.push(next).unwrap(), &cfg, &mut rng, &mut scratch).unwrap();
        want.push(next);
    }
    let mut b = buffers(&m);
    let mut w = [0u32; 6];
    let mut scratch = [0f32; 30];
    let st = m.new_state(&mut b.f, &mut b.c).unwrap();
    let dec = Decoder::new(&m, st, &mut w).unwrap();
    let mut gen = Generation::new(dec, &prompt, cfg, Rng::new(9), &mut scratch, tokens).unwrap();
    assert!(!gen.will_step());
    let mut got = Vec::new();
    let mut slides = 0;
    while gen.will_step() || got.is_empty() {
        slides += usize::from(gen.will_slide());
        got.push(gen.next().unwrap().unwrap());
    }
    assert!(gen.next().is_none());
    assert_eq!(got, want);
    assert!(slides > 0);
    let dec = Decoder::new(&m, m.new_state(&mut b.f, &mut b.c).unwrap(), &mut w).unwrap();
    assert!(matches!(
        Generation::new(dec, &[], cfg, Rng::new(1), &mut scratch, 1),
        Err(Error::BadArgument { .. })
    ));
}

#[test]
fn mac_counts() {
    for (mlp, want) in [
        (GptMlp::Gelu, 2 * (4 * 64 + 2 * 12 * 8) + 30 * 8),
        (GptMlp::SwiGlu, 2 * (4 * 64 + 3 * 12 * 8) + 30 * 8),
    ] {
        let m = model(config(GptPosition::Rope, GptNorm::RmsNorm, mlp, true), 8);
        assert_eq!(m.weight_macs(), want);
        assert_eq!(m.attention_macs(0), 2 * 2 * 8);
        assert_eq!(m.attention_macs(5), 2 * 2 * 8 * 6);
        assert_eq!(m.attention_macs(usize::MAX), u64::MAX);
    }
}

/// `m` with its values moved into the int4 range (`q >> 4`) and its scales multiplied by 16;
/// as int8 bytes, and packed as int4 rows of `cols` (low nibble first, written here
/// independently of the kernels' packing).
/// The hand-written decoding agrees with serde's (value or error) on a file of every
/// configuration and on every copy of it with one byte set to 0, 1, 2, 0x80 or 0xFF.
#[test]
fn decoding_agrees_with_serde_on_every_config_and_byte() {
    for (i, cfg) in all_configs().into_iter().enumerate() {
        let o = owned(cfg, i as u64);
        let bytes = bytes_of(desc(&o));
        crate::format::tests::assert_agrees(&bytes);
        let mut b = bytes.clone();
        for at in 0..bytes.len() {
            for v in [0u8, 1, 2, 0x80, 0xFF] {
                b[at] = v;
                crate::format::tests::assert_agrees(&b);
            }
            b[at] = bytes[at];
        }
    }
}
