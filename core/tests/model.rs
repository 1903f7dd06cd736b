//! A hand-built model file: load, run against the reference forward pass, and every load/run
//! error.

mod common;

use aka_core::format::{
    Body, Conv2d, Header, InputDesc, Layer, LayerList, Linear, MaxPool2d, ModelFile, QuantParams,
    SequentialDesc, Shape, MAGIC, MAX_LAYERS, VERSION,
};
use aka_core::rng::Rng;
use aka_core::{Error, SequentialModel};
use common::*;
use serde::Serialize;

fn cnn_bytes() -> (InputDesc, Vec<QLayer>, Vec<u8>) {
    let (input, layers) = tiny_cnn(1);
    let bytes = build(input, &layers, TINY_LABELS);
    (input, layers, bytes)
}

#[test]
fn cnn_loads_and_runs_like_the_reference() {
    let (input, qlayers, bytes) = cnn_bytes();
    let model = SequentialModel::load(&bytes).unwrap();
    assert_eq!(model.input_shape(), Shape::new(8, 8, 1));
    assert_eq!(model.input_len(), 64);
    assert_eq!(model.output_shape(), Shape::flat(5));
    assert_eq!(model.output_len(), 5);
    // Largest activation: conv1 output 8x8x4 = 256.
    assert_eq!(model.arena_size(), 2 * 256);
    assert_eq!(model.layers().len(), 6);
    let shapes: Vec<(Shape, Shape)> = model.layer_infos().map(|i| (i.input, i.output)).collect();
    assert_eq!(
        shapes,
        [
            (Shape::new(8, 8, 1), Shape::new(8, 8, 4)),
            (Shape::new(8, 8, 4), Shape::new(4, 4, 4)),
            (Shape::new(4, 4, 4), Shape::new(2, 2, 3)),
            (Shape::new(2, 2, 3), Shape::new(2, 2, 3)),
            (Shape::new(2, 2, 3), Shape::flat(12)),
            (Shape::flat(12), Shape::flat(5)),
        ]
    );
    let names: Vec<&str> = model.layers().iter().map(|l| l.name()).collect();
    assert_eq!(
        names,
        ["conv2d", "maxpool2d", "conv2d", "relu", "flatten", "linear"]
    );
    let params = (9 * 4 + 4) + (3 * 9 * 4 + 3) + (12 * 5 + 5);
    assert_eq!(model.param_count(), params);
    let param_bytes = (9 * 4 + 3 * 4 * 4) + (3 * 9 * 4 + 3 * 3 * 4) + (12 * 5 + 3 * 5 * 4);
    assert_eq!(model.param_bytes(), param_bytes);
    assert_eq!(model.file_size(), bytes.len());
    let meta = model.metadata();
    assert_eq!(meta.label_count(), 5);
    assert_eq!(meta.label(2), Some("two"));
    assert_eq!(meta.label(5), None);
    assert_eq!(meta.seed, 42);
    assert_eq!(meta.train_command, "aka-trainer mnist --seed 42");
    assert_eq!(meta.float_accuracy, 98.5);
    let QLayer::Linear(fc) = &qlayers[5] else {
        unreachable!()
    };
    assert_eq!(model.output_quant(), fc.q.out);
    assert_eq!(model.input_quant(), input.quant);

    let mut rng = Rng::new(99);
    let mut arena = vec![0i8; model.arena_size()];
    let mut classes = [0usize; 5];
    let mut distinct = std::collections::HashSet::new();
    for _ in 0..200 {
        let pixels: Vec<u8> = (0..64).map(|_| rng.next_u32() as u8).collect();
        let x: Vec<i8> = pixels
            .iter()
            .map(|&p| aka_core::quant::quantize_pixel(p, 0.0, 1.0, 1.0 / 255.0, -128))
            .collect();
        assert_eq!(
            x,
            pixels
                .iter()
                .map(|&p| (p as i32 - 128) as i8)
                .collect::<Vec<_>>()
        );
        let want = forward_ref(input.shape, &x, &qlayers);
        let got = model.run(&x, &mut arena).unwrap().to_vec();
        assert_eq!(got, want);
        let (class, scores) = model.classify_u8(&pixels, &mut arena).unwrap();
        assert_eq!(scores, &want[..]);
        let max = *want.iter().max().unwrap();
        assert_eq!(class, want.iter().position(|&v| v == max).unwrap());
        classes[class] += 1;
        distinct.insert(want);
    }
    // The random model is not degenerate: scores depend on the input.
    assert!(
        distinct.len() > 100,
        "{} distinct score vectors",
        distinct.len()
    );
    assert_eq!(classes.iter().sum::<usize>(), 200);
    // A bigger arena is fine too.
    let mut big = vec![0i8; 4096];
    let x = vec![0i8; 64];
    assert_eq!(
        model.run(&x, &mut big).unwrap(),
        &forward_ref(input.shape, &x, &qlayers)[..]
    );
}

/// The pixel's int8 value under normalization `(mean, std)` and quantization `q`, written from the
/// format's definition with plain `f32` operations (not aka-core's helpers):
/// `clamp(round((p / 255 - mean) / std / scale) + zp)`, rounding half away from zero.
fn pixel_ref(p: u8, mean: f32, std: f32, q: QuantParams) -> i8 {
    let real = (p as f32 / 255.0 - mean) / std;
    let r = (real / q.scale).round();
    // The same in f64 can only differ by one step (an f32 rounding at a .5 boundary).
    let r64 = ((p as f64 / 255.0 - mean as f64) / std as f64 / q.scale as f64).round();
    assert!((r as f64 - r64).abs() <= 1.0, "pixel {p}: {r} vs {r64}");
    (r as i32 + q.zero_point as i32).clamp(-128, 127) as i8
}

/// The tiny CNN with MNIST's pixel normalization and the input quantization the trainer derives
/// for it (asymmetric over `[(0 - mean) / std, (1 - mean) / std]`: scale 3.2457 / 255, zp -95).
fn normalized_cnn() -> (InputDesc, Vec<QLayer>) {
    let (mut input, mut layers) = tiny_cnn(1);
    input.pixel_mean = 0.1307;
    input.pixel_std = 0.3081;
    input.quant = QuantParams {
        scale: 0.012728,
        zero_point: -95,
    };
    let QLayer::Conv(c) = &mut layers[0] else {
        unreachable!()
    };
    c.zp_in = -95;
    (input, layers)
}

#[test]
fn pixel_lut_equals_the_formula() {
    let cases = [
        (0.0, 1.0, 1.0 / 255.0, -128),
        (0.1307, 0.3081, 0.012728, -95),
        (0.5, 0.25, 4.0 / 255.0, 0),
        (-3.0, 7.5, 0.001, 100),
        (0.9, 0.01, 0.5, -1),
    ];
    for (mean, std, scale, zero_point) in cases {
        let (mut input, layers) = tiny_cnn(1);
        input.pixel_mean = mean;
        input.pixel_std = std;
        input.quant = QuantParams { scale, zero_point };
        let QLayer::Conv(mut c) = layers[0].clone() else {
            unreachable!()
        };
        c.zp_in = zero_point;
        let mut layers = layers;
        layers[0] = QLayer::Conv(c);
        let bytes = build(input, &layers, TINY_LABELS);
        let model = SequentialModel::load(&bytes).unwrap();
        assert_eq!(model.pixel_normalization(), (mean, std));
        assert_eq!(model.input().pixel_mean, mean);
        for p in 0..=255u8 {
            let want = pixel_ref(p, mean, std, input.quant);
            assert_eq!(model.quantize_pixel(p), want, "{mean} {std}: pixel {p}");
            assert_eq!(
                aka_core::quant::quantize_pixel(p, mean, std, scale, zero_point),
                want
            );
            assert_eq!(input.pixel_value(p), (p as f32 / 255.0 - mean) / std);
        }
    }
    // MNIST's normalization by hand: pixel 0 is -0.1307 / 0.3081 = -0.42421 = -33.33 steps of
    // 0.012728 -> -33 - 95 = -128; pixel 255 is 2.82149 = 221.67 steps -> 222 - 95 = 127 (the
    // clamp); pixel 33 is -0.00418 = -0.33 steps -> the zero point; pixel 34 is 0.00855 = 0.67
    // steps -> zp + 1.
    let (input, layers) = normalized_cnn();
    let bytes = build(input, &layers, TINY_LABELS);
    let model = SequentialModel::load(&bytes).unwrap();
    assert_eq!(model.quantize_pixel(0), -128);
    assert_eq!(model.quantize_pixel(255), 127);
    assert_eq!(model.quantize_pixel(33), -95);
    assert_eq!(model.quantize_pixel(34), -94);
}

#[test]
fn normalized_cnn_runs_like_the_reference() {
    let (input, qlayers) = normalized_cnn();
    let bytes = build(input, &qlayers, TINY_LABELS);
    let model = SequentialModel::load(&bytes).unwrap();
    let mut rng = Rng::new(17);
    let mut arena = vec![0i8; model.arena_size()];
    let mut distinct = std::collections::HashSet::new();
    for _ in 0..200 {
        let pixels: Vec<u8> = (0..64).map(|_| rng.next_u32() as u8).collect();
        let x: Vec<i8> = pixels
            .iter()
            .map(|&p| pixel_ref(p, 0.1307, 0.3081, input.quant))
            .collect();
        let want = forward_ref(input.shape, &x, &qlayers);
        let (class, scores) = model.classify_u8(&pixels, &mut arena).unwrap();
        assert_eq!(scores, &want[..]);
        let max = *want.iter().max().unwrap();
        assert_eq!(class, want.iter().position(|&v| v == max).unwrap());
        distinct.insert(want);
    }
    assert!(distinct.len() > 100, "{}", distinct.len());
}

#[test]
fn bad_pixel_normalization_is_a_typed_error() {
    let bad_mean = Error::BadInput {
        what: msg("pixel mean must be finite"),
    };
    let bad_std = Error::BadInput {
        what: msg("pixel std must be finite and > 0"),
    };
    for mean in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(cnn_error(|i, _| i.pixel_mean = mean), bad_mean);
    }
    for std in [0.0, -0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(cnn_error(|i, _| i.pixel_std = std), bad_std, "std {std}");
    }
    // The input scale is checked first.
    assert_eq!(
        cnn_error(|i, _| {
            i.quant.scale = 0.0;
            i.pixel_std = 0.0;
        }),
        Error::BadInput {
            what: msg("scale must be finite and > 0")
        }
    );
    // Extreme but valid values load, and their table saturates instead of overflowing.
    let (mut input, layers) = tiny_cnn(1);
    input.pixel_mean = -1e30;
    input.pixel_std = f32::MIN_POSITIVE;
    let bytes = build(input, &layers, TINY_LABELS);
    let model = SequentialModel::load(&bytes).unwrap();
    assert!((0..=255u8).all(|p| model.quantize_pixel(p) == 127));
    assert_eq!(InputDesc::new(input.shape, input.quant).pixel_std, 1.0);
}

#[test]
fn mlp_loads_and_runs_like_the_reference() {
    let (input, qlayers) = tiny_mlp(2);
    let bytes = build(input, &qlayers, "");
    let model = SequentialModel::load(&bytes).unwrap();
    assert_eq!(model.arena_size(), 2 * 16);
    assert_eq!(model.metadata().label_count(), 0);
    let mut rng = Rng::new(5);
    let mut arena = [0i8; 32];
    for _ in 0..200 {
        let x: Vec<i8> = (0..16).map(|_| rand_i8(&mut rng)).collect();
        assert_eq!(
            model.run(&x, &mut arena).unwrap(),
            &forward_ref(input.shape, &x, &qlayers)[..]
        );
    }
}

#[test]
fn forward_observed_sees_every_layer_output() {
    let (input, qlayers, bytes) = cnn_bytes();
    let model = SequentialModel::load(&bytes).unwrap();
    let mut rng = Rng::new(11);
    let mut arena = vec![0i8; model.arena_size()];
    for _ in 0..20 {
        let x: Vec<i8> = (0..64).map(|_| rand_i8(&mut rng)).collect();
        let mut seen: Vec<(usize, Vec<i8>)> = Vec::new();
        let out = model
            .forward_observed(&x, &mut arena, |i, y| seen.push((i, y.to_vec())))
            .unwrap()
            .to_vec();
        assert_eq!(seen.len(), qlayers.len());
        for (k, (i, y)) in seen.iter().enumerate() {
            assert_eq!(*i, k);
            assert_eq!(
                y,
                &forward_ref(input.shape, &x, &qlayers[..=k]),
                "layer {k}"
            );
        }
        assert_eq!(out, seen.last().unwrap().1);
        assert_eq!(out, model.run(&x, &mut arena).unwrap());
    }
    assert!(matches!(
        model.forward_observed(&[0; 3], &mut arena, |_, _| {}),
        Err(Error::InputLength { .. })
    ));
}

#[test]
fn mac_counts() {
    let (_, _, bytes) = cnn_bytes();
    let model = SequentialModel::load(&bytes).unwrap();
    // conv 8x8x1 -> 8x8x4 (3x3), pool, conv 4x4x4 -> 2x2x3 (3x3), relu, flatten, linear 12 -> 5.
    let per_layer: Vec<u64> = model.layer_infos().map(|i| i.macs()).collect();
    assert_eq!(
        per_layer,
        [8 * 8 * 4 * 9, 0, 2 * 2 * 3 * 9 * 4, 0, 0, 12 * 5]
    );
    assert_eq!(model.macs(), per_layer.iter().sum::<u64>());
    let (input, qlayers) = tiny_mlp(2);
    let bytes = build(input, &qlayers, "");
    let model = SequentialModel::load(&bytes).unwrap();
    let linear: u64 = model
        .layer_infos()
        .map(|i| match i.layer {
            Layer::Linear(l) => u64::from(l.in_features) * u64::from(l.out_features),
            _ => 0,
        })
        .sum();
    assert_eq!(model.macs(), linear);
}

#[test]
fn file_roundtrips_through_postcard() {
    let (_, _, bytes) = cnn_bytes();
    assert_eq!(&bytes[..4], &MAGIC);
    assert_eq!(bytes[4], VERSION as u8);
    let (file, rest) = ModelFile::take_from_bytes(&bytes).unwrap();
    assert!(rest.is_empty());
    assert_eq!(file.header, Header::CURRENT);
    assert_eq!(postcard::to_stdvec(&file).unwrap(), bytes);
}

// ---- errors -------------------------------------------------------------------------------

#[test]
fn bad_magic_and_version() {
    let (_, _, bytes) = cnn_bytes();
    for i in 0..4 {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        assert_eq!(SequentialModel::load(&b).unwrap_err(), Error::BadMagic);
    }
    assert_eq!(SequentialModel::load(b"XY").unwrap_err(), Error::BadMagic);
    assert_eq!(SequentialModel::load(b"").unwrap_err(), Error::Truncated);
    let (input, qlayers) = tiny_mlp(3);
    for version in [0u16, VERSION - 1, VERSION + 1, 300, u16::MAX] {
        let header = Header {
            magic: MAGIC,
            version,
        };
        let b = with_layers(&qlayers, |layers| file_bytes(header, input, layers, ""));
        assert_eq!(
            SequentialModel::load(&b).unwrap_err(),
            Error::UnsupportedVersion {
                found: version,
                supported: VERSION
            }
        );
    }
    // The version is checked before the body: a garbage body after a wrong version still
    // reports the version.
    let mut b = MAGIC.to_vec();
    b.extend([7, 0xff, 0xff]);
    assert_eq!(
        SequentialModel::load(&b).unwrap_err(),
        Error::UnsupportedVersion {
            found: 7,
            supported: VERSION
        }
    );
}

#[test]
fn truncation_at_every_offset_and_trailing_bytes() {
    let (_, _, bytes) = cnn_bytes();
    for n in 0..bytes.len() {
        assert_eq!(
            SequentialModel::load(&bytes[..n]).unwrap_err(),
            Error::Truncated,
            "length {n}"
        );
    }
    let mut b = bytes.clone();
    b.extend([0, 0, 0]);
    assert_eq!(
        SequentialModel::load(&b).unwrap_err(),
        Error::TrailingBytes { count: 3 }
    );
}

#[test]
fn malformed_enum_tag() {
    let (input, _) = tiny_mlp(3);
    let b = file_bytes(Header::CURRENT, input, &[Layer::Flatten], "");
    // The last byte is the Flatten layer's variant tag (3); 100 is no variant.
    let mut bad = b.clone();
    *bad.last_mut().unwrap() = 100;
    assert_eq!(SequentialModel::load(&bad).unwrap_err(), Error::Malformed);
}

/// Same encoding as `ModelFile`, but with a `Vec` of layers (no capacity limit).
#[derive(Serialize)]
struct VecFile<'a> {
    header: Header,
    metadata: aka_core::Metadata<'a>,
    body: VecBody<'a>,
}
#[derive(Serialize)]
enum VecBody<'a> {
    Sequential {
        input: InputDesc,
        layers: Vec<Layer<'a>>,
    },
}

/// A current-version file with empty metadata whose layers are a plain `Vec` (no
/// `MAX_LAYERS` bound), encoded.
fn vec_file_bytes(input: InputDesc, layers: Vec<Layer<'_>>) -> Vec<u8> {
    let file = VecFile {
        header: Header::CURRENT,
        metadata: metadata(""),
        body: VecBody::Sequential { input, layers },
    };
    postcard::to_stdvec(&file).unwrap()
}

#[test]
fn too_many_and_no_layers() {
    let input = InputDesc::new(
        Shape::new(2, 2, 1),
        QuantParams {
            scale: 0.1,
            zero_point: 0,
        },
    );
    let relus = |n| vec![Layer::Relu { zero_point: 0 }; n];
    let ok_bytes = vec_file_bytes(input, relus(MAX_LAYERS));
    // Vec and LayerList encode identically.
    assert_eq!(
        ok_bytes,
        file_bytes(
            Header::CURRENT,
            input,
            &[Layer::Relu { zero_point: 0 }; MAX_LAYERS],
            ""
        )
    );
    assert!(SequentialModel::load(&ok_bytes).is_ok());
    for n in [MAX_LAYERS + 1, 200] {
        let b = vec_file_bytes(input, relus(n));
        assert_eq!(
            SequentialModel::load(&b).unwrap_err(),
            Error::TooManyLayers {
                found: n,
                max: MAX_LAYERS
            }
        );
    }
    let b = file_bytes(Header::CURRENT, input, &[], "");
    assert_eq!(SequentialModel::load(&b).unwrap_err(), Error::NoLayers);
}

/// Loads the tiny CNN after `edit` changed its layers (or input); returns the error.
fn cnn_error(edit: impl FnOnce(&mut InputDesc, &mut Vec<Layer>)) -> Error {
    let (mut input, qlayers) = tiny_cnn(1);
    let b = with_layers(&qlayers, |layers| {
        edit(&mut input, layers);
        file_bytes(Header::CURRENT, input, layers, TINY_LABELS)
    });
    SequentialModel::load(&b).unwrap_err()
}

fn conv<'l, 'a>(layers: &'l mut [Layer<'a>], i: usize) -> &'l mut Conv2d<'a> {
    match &mut layers[i] {
        Layer::Conv2d(c) => c,
        _ => panic!("layer {i} is not conv2d"),
    }
}

fn lin<'l, 'a>(layers: &'l mut [Layer<'a>], i: usize) -> &'l mut Linear<'a> {
    match &mut layers[i] {
        Layer::Linear(l) => l,
        _ => panic!("layer {i} is not linear"),
    }
}

const SHIFT_31: [u8; 12] = [31, 0, 0, 0, 31, 0, 0, 0, 31, 0, 0, 0];
const SHIFT_M32: [u8; 12] = [0xe0, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
const NEG_MULT: [u8; 12] = [0, 0, 0, 0x80, 0, 0, 0, 0x40, 0, 0, 0, 0x40];

#[test]
fn inconsistent_shapes() {
    // Linear without Flatten.
    let e = cnn_error(|_, l| {
        l.remove(4);
    });
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                layer: 4,
                expected: 1,
                found: 4,
                ..
            }
        ),
        "{e:?}"
    );
    // in_features.
    let e = cnn_error(|_, l| lin(l, 5).in_features = 13);
    assert_eq!(
        e,
        Error::ShapeMismatch {
            layer: 5,
            what: msg("linear in_features"),
            expected: 12,
            found: 13
        }
    );
    // in_channels (input is 1 channel).
    let e = cnn_error(|_, l| conv(l, 0).in_channels = 2);
    assert_eq!(
        e,
        Error::ShapeMismatch {
            layer: 0,
            what: msg("conv2d in_channels"),
            expected: 1,
            found: 2
        }
    );
    // Changing the input shape breaks the chain further down (flatten of 3x3x3 = 27 != 12).
    let e = cnn_error(|i, _| i.shape = Shape::new(12, 12, 1));
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                layer: 5,
                expected: 27,
                found: 12,
                ..
            }
        ),
        "{e:?}"
    );
    // Zero-sized input.
    let e = cnn_error(|i, _| i.shape = Shape::new(8, 0, 1));
    assert_eq!(
        e,
        Error::BadInput {
            what: msg("zero dimension")
        }
    );
    // Label count must match the outputs.
    let (input, qlayers) = tiny_cnn(1);
    let b = build(input, &qlayers, "a\nb");
    assert_eq!(
        SequentialModel::load(&b).unwrap_err(),
        Error::LabelCount {
            labels: 2,
            outputs: 5
        }
    );
}

#[test]
fn wrong_lengths() {
    static W: [u8; 200] = [0; 200];
    let w = &W;
    let e = cnn_error(|_, l| conv(l, 0).weights = &w[..35]);
    assert_eq!(
        e,
        Error::LengthMismatch {
            layer: 0,
            what: msg("weights"),
            expected: 36,
            found: 35
        }
    );
    let e = cnn_error(|_, l| conv(l, 2).bias = &w[..11]);
    assert_eq!(
        e,
        Error::LengthMismatch {
            layer: 2,
            what: msg("bias"),
            expected: 12,
            found: 11
        }
    );
    let e = cnn_error(|_, l| lin(l, 5).weights = &w[..61]);
    assert_eq!(
        e,
        Error::LengthMismatch {
            layer: 5,
            what: msg("weights"),
            expected: 60,
            found: 61
        }
    );
    let e = cnn_error(|_, l| lin(l, 5).requant.multipliers = &w[..16]);
    assert_eq!(
        e,
        Error::LengthMismatch {
            layer: 5,
            what: msg("multipliers"),
            expected: 20,
            found: 16
        }
    );
    let e = cnn_error(|_, l| lin(l, 5).requant.shifts = &w[..24]);
    assert_eq!(
        e,
        Error::LengthMismatch {
            layer: 5,
            what: msg("shifts"),
            expected: 20,
            found: 24
        }
    );
}

#[test]
fn bad_parameters() {
    let bad = |layer, what| Error::BadParameter {
        layer,
        what: msg(what),
    };
    type Edit = fn(&mut InputDesc, &mut Vec<Layer<'_>>);
    let conv_cases: [(Edit, usize, &str); 9] = [
        (|_, l| conv(l, 0).stride_w = 0, 0, "stride is 0"),
        (|_, l| conv(l, 0).kernel_h = 0, 0, "kernel size is 0"),
        (
            |_, l| conv(l, 0).pad_h = 3,
            0,
            "padding must be smaller than the kernel",
        ),
        (|_, l| conv(l, 0).out_channels = 0, 0, "out_channels is 0"),
        (
            |_, l| conv(l, 0).input_zero_point = 0,
            0,
            "conv2d input_zero_point differs from the previous output's zero point",
        ),
        (
            |_, l| conv(l, 2).requant.shifts = &SHIFT_31,
            2,
            "shift outside -31..=30",
        ),
        (
            |_, l| conv(l, 2).requant.shifts = &SHIFT_M32,
            2,
            "shift outside -31..=30",
        ),
        (
            |_, l| conv(l, 2).requant.multipliers = &NEG_MULT,
            2,
            "negative multiplier",
        ),
        (
            |_, l| {
                let c = conv(l, 2);
                c.requant.act_min = 10;
                c.requant.act_max = 9;
            },
            2,
            "act_min > act_max",
        ),
    ];
    for (edit, layer, what) in conv_cases {
        assert_eq!(cnn_error(edit), bad(layer, what), "{what}");
    }
    for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert_eq!(
            cnn_error(|_, l| lin(l, 5).requant.output.scale = scale),
            bad(5, "output scale must be finite and > 0")
        );
        assert_eq!(
            cnn_error(|i, _| i.quant.scale = scale),
            Error::BadInput {
                what: msg("scale must be finite and > 0")
            }
        );
    }
    assert_eq!(
        cnn_error(|_, l| l[3] = Layer::Relu { zero_point: 99 }),
        bad(3, "relu zero_point differs from its input's zero point")
    );
    assert_eq!(
        cnn_error(|_, l| l[1] = Layer::MaxPool2d(MaxPool2d {
            kernel_h: 9,
            kernel_w: 2,
            stride_h: 1,
            stride_w: 1
        })),
        bad(1, "pool kernel larger than the input")
    );
    assert_eq!(
        cnn_error(|_, l| l[1] = Layer::MaxPool2d(MaxPool2d {
            kernel_h: 2,
            kernel_w: 2,
            stride_h: 0,
            stride_w: 1
        })),
        bad(1, "stride is 0")
    );
    assert_eq!(
        cnn_error(|_, l| l[1] = Layer::MaxPool2d(MaxPool2d {
            kernel_h: 0,
            kernel_w: 2,
            stride_h: 1,
            stride_w: 1
        })),
        bad(1, "kernel size is 0")
    );
    // Kernel larger than the padded input: 8x8 → pool 4 → 2x2, then 3x3 conv with pad 0... use a
    // 1x1 input to the first conv.
    assert_eq!(
        cnn_error(|i, l| {
            i.shape = Shape::new(1, 1, 1);
            conv(l, 0).pad_h = 0;
        }),
        bad(0, "kernel larger than the padded input")
    );
}

#[test]
fn size_overflow_is_an_error() {
    let unit_input = |shape| {
        InputDesc::new(
            shape,
            QuantParams {
                scale: 1.0,
                zero_point: 0,
            },
        )
    };
    // Inputs too large to flatten.
    for (shape, error) in [
        (
            Shape::new(u32::MAX, u32::MAX, u32::MAX),
            Error::BadInput {
                what: msg("size overflows"),
            },
        ),
        (
            Shape::new(65_536, 65_536, 2),
            Error::SizeOverflow { layer: 0 },
        ),
    ] {
        let b = file_bytes(Header::CURRENT, unit_input(shape), &[Layer::Flatten], "");
        assert_eq!(SequentialModel::load(&b).unwrap_err(), error);
    }
    // Linear claiming a huge weight matrix backed by a few bytes.
    let input = unit_input(Shape::flat(u32::MAX));
    let four = [0u8; 4];
    let l = Layer::Linear(Linear {
        in_features: u32::MAX,
        out_features: u32::MAX,
        pad: &[],
        weight_type: aka_core::format::WeightType::Int8,
        weights: &four,
        bias: &four,
        requant: aka_core::format::Requant {
            multipliers: &four,
            shifts: &four,
            output: QuantParams {
                scale: 1.0,
                zero_point: 0,
            },
            act_min: -128,
            act_max: 127,
        },
    });
    let b = file_bytes(Header::CURRENT, input, &[l], "");
    let e = SequentialModel::load(&b).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LengthMismatch { layer: 0, .. } | Error::SizeOverflow { layer: 0 }
        ),
        "{e:?}"
    );
}

#[test]
fn run_errors() {
    let (_, _, bytes) = cnn_bytes();
    let model = SequentialModel::load(&bytes).unwrap();
    let need = model.arena_size();
    let mut arena = vec![0i8; need - 1];
    assert_eq!(
        model.run(&[0; 64], &mut arena).unwrap_err(),
        Error::ArenaTooSmall {
            need,
            have: need - 1
        }
    );
    assert_eq!(
        model.classify_u8(&[0; 64], &mut arena).unwrap_err(),
        Error::ArenaTooSmall {
            need,
            have: need - 1
        }
    );
    let mut arena = vec![0i8; need];
    assert_eq!(
        model.run(&[0; 63], &mut arena).unwrap_err(),
        Error::InputLength {
            expected: 64,
            found: 63
        }
    );
    assert_eq!(
        model.run(&[0; 65], &mut arena).unwrap_err(),
        Error::InputLength {
            expected: 64,
            found: 65
        }
    );
    assert_eq!(
        model.classify_u8(&[0; 10], &mut arena).unwrap_err(),
        Error::InputLength {
            expected: 64,
            found: 10
        }
    );
    assert!(model.run(&[0; 64], &mut arena).is_ok());
}

#[test]
fn errors_display() {
    let errors = [
        Error::BadMagic,
        Error::UnsupportedVersion {
            found: 2,
            supported: 1,
        },
        Error::Truncated,
        Error::Malformed,
        Error::TrailingBytes { count: 1 },
        Error::WrongBody,
        Error::TooManyLayers { found: 17, max: 16 },
        Error::NoLayers,
        Error::BadInput { what: "x" },
        Error::ShapeMismatch {
            layer: 1,
            what: "x",
            expected: 1,
            found: 2,
        },
        Error::LengthMismatch {
            layer: 1,
            what: "x",
            expected: 1,
            found: 2,
        },
        Error::BadParameter {
            layer: 1,
            what: "x",
        },
        Error::SizeOverflow { layer: 1 },
        Error::LabelCount {
            labels: 1,
            outputs: 2,
        },
        Error::InputLength {
            expected: 1,
            found: 2,
        },
        Error::ArenaTooSmall { need: 1, have: 0 },
        Error::KernelShape { kernel: "linear" },
    ];
    for e in errors {
        assert!(e.to_string().len() > 5);
    }
    assert_eq!(
        Error::UnsupportedVersion {
            found: 2,
            supported: 1
        }
        .to_string(),
        "model format version 2 is not supported (this runtime reads version 1; re-export the model from its checkpoint with the matching aka-trainer)"
    );
}

#[test]
fn layer_list_capacity() {
    let mut list = LayerList::new();
    for _ in 0..MAX_LAYERS {
        list.push(Layer::Flatten).unwrap();
    }
    assert_eq!(list.push(Layer::Flatten), Err(Layer::Flatten));
    assert_eq!(list.len(), MAX_LAYERS);
    assert!(LayerList::from_slice(&[Layer::Flatten; MAX_LAYERS + 1]).is_none());
    let desc = SequentialDesc {
        input: InputDesc::new(
            Shape::new(1, 1, 1),
            QuantParams {
                scale: 1.0,
                zero_point: 0,
            },
        ),
        layers: list,
    };
    let f = ModelFile::new(metadata(""), Body::Sequential(desc));
    let b = postcard::to_stdvec(&f).unwrap();
    assert_eq!(ModelFile::take_from_bytes(&b).unwrap().0, f);
}
