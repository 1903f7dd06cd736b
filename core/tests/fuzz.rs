//! Random corruptions of valid model files never panic the loader or the runtime.

mod common;

use aka_core::SequentialModel;
use common::*;
use proptest::prelude::*;

/// Loads `bytes`; if that succeeds, runs the model on a fixed input and checks the output size.
fn load_and_maybe_run(bytes: &[u8]) {
    let Ok(model) = SequentialModel::load(bytes) else {
        return;
    };
    // A corrupted input shape can ask for a huge arena; that is legal but not worth allocating.
    if model.arena_size() > 1 << 20 {
        return;
    }
    let mut arena = vec![0i8; model.arena_size()];
    let input: Vec<i8> = (0..model.input_len()).map(|i| (i * 37) as i8).collect();
    let out = model
        .run(&input, &mut arena)
        .expect("a loaded model runs with arena_size bytes");
    assert_eq!(out.len(), model.output_len());
    let pixels: Vec<u8> = (0..model.input_len()).map(|i| (i * 11) as u8).collect();
    let (class, scores) = model
        .classify_u8(&pixels, &mut arena)
        .expect("classify runs");
    assert!(class < scores.len().max(1));
    let _ = model.layer_infos().count();
    let _ = model.metadata().labels().count();
}

fn valid_files() -> Vec<Vec<u8>> {
    let (i1, l1) = tiny_cnn(1);
    let (i2, l2) = tiny_mlp(2);
    vec![build(i1, &l1, TINY_LABELS), build(i2, &l2, "")]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn byte_flips_never_panic(which in 0usize..2, flips in corrupt::flips(8)) {
        let mut bytes = valid_files().swap_remove(which);
        corrupt::set_bytes(&mut bytes, flips);
        load_and_maybe_run(&bytes);
    }

    #[test]
    fn truncations_and_insertions_never_panic(which in 0usize..2, (cut, insert, at) in corrupt::splices()) {
        let mut bytes = valid_files().swap_remove(which);
        let keep = cut.index(bytes.len() + 1);
        corrupt::cut_and_insert(&mut bytes, keep, insert, at);
        load_and_maybe_run(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(tail in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = aka_core::format::MAGIC.to_vec();
        bytes.push(aka_core::format::VERSION as u8);
        bytes.extend(tail);
        load_and_maybe_run(&bytes);
    }
}

/// Every single-byte value at every offset of the MLP file (exhaustive, small file).
#[test]
fn every_byte_every_value_mlp() {
    let (i2, l2) = tiny_mlp(2);
    let valid = build(i2, &l2, "");
    let mut bytes = valid.clone();
    for i in 0..valid.len() {
        for v in 0..=255u8 {
            bytes[i] = v;
            load_and_maybe_run(&bytes);
        }
        bytes[i] = valid[i];
    }
}
