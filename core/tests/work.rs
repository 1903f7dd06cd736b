//! Issue 11: a layer's declared geometry must fit its input (typed errors at load), and the work
//! a model declares is exposed with checked arithmetic, so that a caller can refuse a tiny file
//! that declares an absurd amount of work before running it.

mod common;

use aka_core::format::{Header, InputDesc, Layer, MaxPool2d, Shape};
use aka_core::{Error, SequentialModel};
use common::*;

/// Loads the tiny CNN after `edit` changed its layers (or input).
fn cnn_with(edit: impl FnOnce(&mut InputDesc, &mut Vec<Layer>)) -> Result<u64, Error> {
    let (mut input, qlayers) = tiny_cnn(1);
    let b = with_layers(&qlayers, |layers| {
        edit(&mut input, layers);
        file_bytes(Header::CURRENT, input, layers, TINY_LABELS)
    });
    SequentialModel::load(&b).map(|m| m.work().expect("small"))
}

fn conv_mut<'l, 'a>(l: &'l mut [Layer<'a>], i: usize) -> &'l mut aka_core::format::Conv2d<'a> {
    match &mut l[i] {
        Layer::Conv2d(c) => c,
        _ => panic!("layer {i} is not conv2d"),
    }
}

#[test]
fn geometry_outside_the_input_is_a_typed_error() {
    let bad = |layer, what| {
        Err(Error::BadParameter {
            layer,
            what: msg(what),
        })
    };
    // Layer 1 pools the 8x8x4 output of layer 0.
    let pool = |k: u32, s: u32| {
        move |_: &mut InputDesc, l: &mut Vec<Layer>| {
            l[1] = Layer::MaxPool2d(MaxPool2d {
                kernel_h: k,
                kernel_w: k,
                stride_h: s,
                stride_w: s,
            })
        }
    };
    assert_eq!(
        cnn_with(pool(9, 1)),
        bad(1, "pool kernel larger than the input")
    );
    assert_eq!(
        cnn_with(pool(2, 9)),
        bad(1, "pool stride larger than the input")
    );
    // Conv 0 (3x3, padding 1) on an 8x8 input: padded 10x10.
    assert_eq!(
        cnn_with(|_, l| conv_mut(l, 0).stride_w = 11),
        bad(0, "stride larger than the padded input")
    );
    // Padding 2 (< kernel 3) around a 1x1 input.
    assert_eq!(
        cnn_with(|i, l| {
            i.shape = Shape::new(1, 1, 1);
            conv_mut(l, 0).pad_h = 2;
        }),
        bad(0, "padding larger than the input")
    );
    // A stride of the whole padded input is allowed (one output column, which the 2x2 pool
    // after it then refuses).
    assert_eq!(
        cnn_with(|_, l| conv_mut(l, 0).stride_w = 10),
        bad(1, "pool kernel larger than the input")
    );
}

#[test]
fn declared_work_is_counted_and_checked() {
    let (input, qlayers) = tiny_cnn(1);
    let bytes = build(input, &qlayers, TINY_LABELS);
    let m = SequentialModel::load(&bytes).unwrap();
    // conv 8x8x1 -> 8x8x4 (3x3), pool 2 -> 4x4x4, conv -> 2x2x3 (3x3 over 4), relu, flatten,
    // linear 12 -> 5: MACs plus one operation per output (per window tap for the pool).
    let per_layer: Vec<u64> = m.layer_infos().map(|i| i.work().unwrap()).collect();
    assert_eq!(
        per_layer,
        [
            8 * 8 * 4 * 9 + 256,
            4 * 4 * 4 * 4,
            2 * 2 * 3 * 9 * 4 + 12,
            12,
            0,
            12 * 5 + 5
        ]
    );
    assert_eq!(m.work(), Some(64 + per_layer.iter().sum::<u64>()));
    assert_eq!(m.checked_macs(), Some(m.macs()));
    for info in m.layer_infos() {
        assert_eq!(info.checked_macs(), Some(info.macs()));
    }
}
