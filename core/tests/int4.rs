//! Sequential models with packed int4 weights (format v3): they run exactly like the naive
//! reference on the unpacked values, and every malformed int4 array is a typed error.

mod common;

use aka_core::format::{Header, Layer, WeightType};
use aka_core::rng::Rng;
use aka_core::{Error, SequentialModel};
use common::*;

/// The layer with its weights moved into the int4 range (`w >> 4`, in `-8..=7`) and its
/// bias divided and requantization shifts raised by 4 bits so that the outputs keep spreading
/// over the int8 range.
fn to_int4(layer: &QLayer) -> QLayer {
    let shrink = |w: &mut Vec<i8>, q: &mut QOut| {
        w.iter_mut().for_each(|v| *v >>= 4);
        q.bias.iter_mut().for_each(|b| *b >>= 4);
        q.shift.iter_mut().for_each(|s| *s += 4);
    };
    let mut l = layer.clone();
    match &mut l {
        QLayer::Linear(l) => shrink(&mut l.w, &mut l.q),
        QLayer::Conv(c) => shrink(&mut c.w, &mut c.q),
        _ => {}
    }
    l
}

/// An MLP with odd row lengths (15 and 7 inputs), so every row has a padding nibble.
fn odd_mlp(seed: u64) -> (aka_core::format::InputDesc, Vec<QLayer>) {
    let mut rng = Rng::new(seed);
    let input = grey_input(3, 5);
    let l1 = rand_linear(&mut rng, 15, 7, -128, true);
    let z1 = l1.q.out.zero_point;
    let l2 = rand_linear(&mut rng, 7, 4, z1, false);
    (
        input,
        vec![QLayer::Flatten, QLayer::Linear(l1), QLayer::Linear(l2)],
    )
}

fn build_as(input: aka_core::format::InputDesc, qlayers: &[QLayer], wt: WeightType) -> Vec<u8> {
    with_layers_as(qlayers, wt, |layers| {
        file_bytes(Header::CURRENT, input, layers, "")
    })
}

#[test]
fn int4_models_run_like_the_reference_and_like_int8_files_of_the_same_values() {
    // Distinct outputs per model kind, over all seeds: the test does not compare constants.
    let mut distinct = vec![std::collections::BTreeSet::new(); 3];
    for seed in 0..6 {
        for (kind, (input, layers)) in [tiny_cnn(seed), tiny_mlp(seed), odd_mlp(seed)]
            .into_iter()
            .enumerate()
        {
            let layers: Vec<QLayer> = layers.iter().map(to_int4).collect();
            let int4 = build_as(input, &layers, WeightType::Int4);
            let int8 = build_as(input, &layers, WeightType::Int8);
            assert!(int4.len() < int8.len());
            let m4 = SequentialModel::load(&int4).unwrap();
            let m8 = SequentialModel::load(&int8).unwrap();
            assert!(m4.param_bytes() < m8.param_bytes());
            assert_eq!(m4.param_count(), m8.param_count());
            let mut a4 = vec![0i8; m4.arena_size()];
            let mut a8 = vec![0i8; m8.arena_size()];
            let mut rng = Rng::new(100 + seed);
            for _ in 0..100 {
                let x: Vec<i8> = (0..m4.input_len()).map(|_| rand_i8(&mut rng)).collect();
                let want = forward_ref(input.shape, &x, &layers);
                assert_eq!(m4.run(&x, &mut a4).unwrap(), &want[..], "seed {seed}");
                assert_eq!(m8.run(&x, &mut a8).unwrap(), &want[..]);
                distinct[kind].insert(want);
            }
        }
    }
    for (kind, d) in distinct.iter().enumerate() {
        assert!(d.len() > 100, "model {kind}: {} distinct outputs", d.len());
    }
}

/// The int4 version of the tiny CNN, edited by `edit` before encoding.
fn int4_cnn_error(edit: impl FnOnce(&mut Vec<Layer>)) -> Error {
    let (input, layers) = tiny_cnn(3);
    let layers: Vec<QLayer> = layers.iter().map(to_int4).collect();
    let bytes = with_layers_as(&layers, WeightType::Int4, |l| {
        edit(l);
        file_bytes(Header::CURRENT, input, l, "")
    });
    SequentialModel::load(&bytes).unwrap_err()
}

#[test]
fn malformed_int4_arrays_are_typed_errors() {
    static W: [u8; 200] = [0x11; 200];
    // The tiny CNN: conv 3x3x1 → 4 (filters of 9 nibbles: 5 bytes), conv 3x3x4 → 3 (36 nibbles:
    // 18 bytes), linear 12 → 5 (6 bytes per row).
    let weights = |l: &mut Vec<Layer>, i: usize, w: &'static [u8]| match &mut l[i] {
        Layer::Conv2d(c) => c.weights = w,
        Layer::Linear(lin) => lin.weights = w,
        _ => unreachable!(),
    };
    // The int8 length of an int4 layer, and one byte short.
    let e = int4_cnn_error(|l| weights(l, 0, &W[..36]));
    assert_eq!(
        e,
        Error::LengthMismatch {
            layer: 0,
            what: msg("weights"),
            expected: 20,
            found: 36
        }
    );
    let e = int4_cnn_error(|l| weights(l, 5, &W[..29]));
    assert_eq!(
        e,
        Error::LengthMismatch {
            layer: 5,
            what: msg("weights"),
            expected: 30,
            found: 29
        }
    );
    // A non-zero padding nibble in an odd-length row (the first conv's filters: 9 values).
    let e = int4_cnn_error(|l| weights(l, 0, &W[..20]));
    assert_eq!(
        e,
        Error::BadParameter {
            layer: 0,
            what: msg("an int4 row's padding nibble is not 0")
        }
    );
    // Even rows have no padding nibble: the same bytes are fine there.
    let (input, layers) = tiny_cnn(3);
    let layers: Vec<QLayer> = layers.iter().map(to_int4).collect();
    let ok = with_layers_as(&layers, WeightType::Int4, |l| {
        weights(l, 2, &W[..54]);
        file_bytes(Header::CURRENT, input, l, "")
    });
    assert!(SequentialModel::load(&ok).is_ok());
    // An int8 file whose layer claims int4 (and the reverse) is a length error, never a panic.
    let e = int4_cnn_error(|l| {
        if let Layer::Linear(lin) = &mut l[5] {
            lin.weight_type = WeightType::Int8;
        }
    });
    assert!(matches!(e, Error::LengthMismatch { layer: 5, .. }), "{e:?}");
}

/// `int8-offset` (the GPT projections' layout) is refused by the Sequential loader, for a Linear
/// and for a Conv2d, with a typed error (never run by the wrong kernel).
#[test]
fn sequential_models_refuse_int8_offset_weights() {
    let (input, layers) = tiny_cnn(3);
    for i in [0, 5] {
        let bytes = with_layers_as(&layers, WeightType::Int8, |l| {
            match &mut l[i] {
                Layer::Conv2d(c) => c.weight_type = WeightType::Int8Offset,
                Layer::Linear(lin) => lin.weight_type = WeightType::Int8Offset,
                other => panic!("layer {i} is {other:?}"),
            }
            file_bytes(Header::CURRENT, input, l, "")
        });
        assert_eq!(
            SequentialModel::load(&bytes).map(|_| ()),
            Err(Error::BadParameter {
                layer: i,
                what: msg("int8-offset weights are for GPT matrices only")
            })
        );
    }
}
