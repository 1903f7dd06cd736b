//! (c) A malformed **real exported** model file never panics aka-core and always gives an error:
//! truncation at every offset, random byte flips and splices (proptest, aimed at the descriptor
//! bytes as well as uniformly), wrong magic or version, inconsistent shapes and parameters,
//! huge lengths and counts.
//!
//! The files are a quickly trained MLP and CNN exported exactly like `aka-trainer mnist` does.

use std::ops::Range;

use aka_core::format::{Body, Layer, LayerList, ModelFile, QuantParams, Shape, MAGIC, VERSION};
use aka_core::{Error, SequentialModel};
use aka_tests::{decode, encode, layers, mnist, quick, Kind};
use proptest::prelude::*;

fn file_bytes(kind: Kind) -> &'static [u8] {
    &quick(kind).1.bytes
}

/// Loads `bytes`; if that succeeds, runs the model on a few inputs (with an arena of exactly
/// `arena_size`) and checks the output size. Returns the load result.
fn load_and_maybe_run(bytes: &[u8]) -> Result<(), Error> {
    let model = SequentialModel::load(bytes)?;
    if model.arena_size() > 1 << 22 {
        return Ok(()); // legal, but not worth allocating
    }
    let mut arena = vec![0i8; model.arena_size()];
    let test = &mnist().test;
    for i in 0..2 {
        let n = model.input_len();
        let pixels: Vec<u8> = if n == test.pixels_per_image() {
            test.image(i).to_vec()
        } else {
            (0..n).map(|j| (j * 31 + i) as u8).collect()
        };
        let (class, scores) = model
            .classify_u8(&pixels, &mut arena)
            .expect("a loaded model runs with arena_size bytes");
        assert_eq!(scores.len(), model.output_len());
        assert!(class < scores.len());
    }
    // Too small an arena and a wrong input length are errors, not panics.
    if model.arena_size() > 0 {
        let mut small = vec![0i8; model.arena_size() - 1];
        assert!(matches!(
            model.run(&vec![0; model.input_len()], &mut small),
            Err(Error::ArenaTooSmall { .. })
        ));
    }
    assert!(matches!(
        model.run(&vec![0; model.input_len() + 1], &mut arena),
        Err(Error::InputLength { .. })
    ));
    let _ = model.layer_infos().count();
    let _ = model.metadata().labels().count();
    Ok(())
}

/// Byte ranges of the parameter arrays (weights, bias, multipliers, shifts) inside the file.
fn array_ranges(bytes: &[u8]) -> Vec<Range<usize>> {
    let file = decode(bytes);
    let base = bytes.as_ptr() as usize;
    let mut out = Vec::new();
    let mut push = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        out.push(start..start + s.len());
    };
    for layer in layers(&file) {
        match layer {
            Layer::Linear(l) => {
                for s in [l.weights, l.bias, l.requant.multipliers, l.requant.shifts] {
                    push(s);
                }
            }
            Layer::Conv2d(c) => {
                for s in [c.weights, c.bias, c.requant.multipliers, c.requant.shifts] {
                    push(s);
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|r| r.start);
    out
}

/// Offsets of every byte that is not inside a parameter array: header, metadata, descriptors,
/// varint lengths, quantization parameters.
fn structural_offsets(bytes: &[u8]) -> Vec<usize> {
    let ranges = array_ranges(bytes);
    (0..bytes.len())
        .filter(|i| !ranges.iter().any(|r| r.contains(i)))
        .collect()
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

#[test]
fn the_exported_files_load_and_run() {
    for kind in [Kind::Mlp, Kind::Cnn] {
        load_and_maybe_run(file_bytes(kind)).expect("valid");
        let s = structural_offsets(file_bytes(kind));
        eprintln!(
            "{}: {} bytes, {} structural",
            kind.name(),
            file_bytes(kind).len(),
            s.len()
        );
    }
}

#[test]
fn exported_weights_start_at_multiples_of_4_bytes() {
    for kind in [Kind::Mlp, Kind::Cnn] {
        let bytes = file_bytes(kind);
        let mut file = decode(bytes);
        let mut n = 0;
        file.body.for_each_weights_mut(|pad, w| {
            let off = w.as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(off % 4, 0, "{}: weights {n} at offset {off}", kind.name());
            assert!(pad.len() <= 3 && pad.iter().all(|&b| b == 0));
            n += 1;
        });
        assert_eq!(n, if kind == Kind::Mlp { 2 } else { 4 });
    }
    // More than 3 padding bytes is a typed error.
    let b = edited(Kind::Mlp, |_, ls| {
        let i = first_linear(ls);
        if let Layer::Linear(l) = &mut ls[i] {
            l.pad = &[0; 4];
        }
    });
    assert!(
        matches!(load_err(&b), Error::BadParameter { .. }),
        "{:?}",
        load_err(&b)
    );
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    for kind in [Kind::Mlp, Kind::Cnn] {
        let bytes = file_bytes(kind);
        for len in 0..bytes.len() {
            match SequentialModel::load(&bytes[..len]) {
                Err(Error::Truncated) => {}
                // A cut inside the 4 magic bytes of a prefix is still "truncated"; nothing else.
                other => panic!("{}: truncated to {len} bytes: {other:?}", kind.name()),
            }
        }
    }
}

#[test]
fn wrong_magic_or_version() {
    let bytes = file_bytes(Kind::Cnn);
    for i in 0..MAGIC.len() {
        for delta in [1u8, 0x20, 0x80] {
            let mut b = bytes.to_vec();
            b[i] = b[i].wrapping_add(delta);
            assert_eq!(SequentialModel::load(&b).unwrap_err(), Error::BadMagic);
        }
    }
    assert_eq!(
        bytes[4], VERSION as u8,
        "version varint right after the magic"
    );
    for v in [0u16, VERSION - 1, VERSION + 1, 127, 128, 300, u16::MAX] {
        let mut b = bytes[..4].to_vec();
        b.extend(varint(v as u64));
        b.extend(&bytes[5..]);
        assert_eq!(
            SequentialModel::load(&b).unwrap_err(),
            Error::UnsupportedVersion {
                found: v,
                supported: VERSION
            }
        );
    }
    // A version varint that overflows u16, and an empty / tiny file.
    let mut b = bytes[..4].to_vec();
    b.extend(varint(1 << 20));
    b.extend(&bytes[5..]);
    assert!(SequentialModel::load(&b).is_err());
    assert_eq!(SequentialModel::load(&[]).unwrap_err(), Error::Truncated);
    assert_eq!(SequentialModel::load(b"AK").unwrap_err(), Error::Truncated);
    assert_eq!(
        SequentialModel::load(b"XYZW\x01").unwrap_err(),
        Error::BadMagic
    );
    // Trailing bytes.
    let mut b = bytes.to_vec();
    b.extend([0, 0, 0]);
    assert_eq!(
        SequentialModel::load(&b).unwrap_err(),
        Error::TrailingBytes { count: 3 }
    );
}

/// Replaces the varint length prefix of the parameter array at `range` with `len`.
fn with_array_length(bytes: &[u8], range: &Range<usize>, len: u64) -> Vec<u8> {
    let old = varint(range.len() as u64);
    let start = range.start - old.len();
    assert_eq!(&bytes[start..range.start], &old[..], "length prefix found");
    let mut b = bytes[..start].to_vec();
    b.extend(varint(len));
    b.extend(&bytes[range.start..]);
    b
}

#[test]
fn huge_or_wrong_array_lengths() {
    for kind in [Kind::Mlp, Kind::Cnn] {
        let bytes = file_bytes(kind);
        for range in array_ranges(bytes) {
            for len in [
                range.len() as u64 + 1,
                bytes.len() as u64,
                u32::MAX as u64,
                u64::MAX,
                1 << 62,
            ] {
                let b = with_array_length(bytes, &range, len);
                let err = SequentialModel::load(&b).unwrap_err();
                // A huge length runs out of bytes; a length one too long shifts the rest of the
                // file by a byte, which can decode to a shorter body and leave bytes over.
                assert!(
                    matches!(err, Error::Truncated | Error::Malformed)
                        || (len == range.len() as u64 + 1
                            && matches!(err, Error::TrailingBytes { .. })),
                    "{}: array at {range:?} with length {len}: {err:?}",
                    kind.name()
                );
            }
            // Shorter: the bytes shift, so decoding fails or a length check catches it.
            if !range.is_empty() {
                let b = with_array_length(bytes, &range, range.len() as u64 - 1);
                assert!(SequentialModel::load(&b).is_err());
            }
        }
    }
}

#[test]
fn huge_counts_and_string_lengths() {
    let bytes = file_bytes(Kind::Mlp);
    let file = decode(bytes);
    let base = bytes.as_ptr() as usize;
    // The labels and the training command are borrowed strings: patch their length prefixes.
    for s in [file.metadata.labels, file.metadata.train_command] {
        let range = (s.as_ptr() as usize - base)..(s.as_ptr() as usize - base + s.len());
        for len in [u32::MAX as u64, u64::MAX, bytes.len() as u64] {
            let b = with_array_length(bytes, &range, len);
            assert!(matches!(
                SequentialModel::load(&b).unwrap_err(),
                Error::Truncated | Error::Malformed
            ));
        }
    }
    // The layer count: the varint right before the first layer's enum tag. Find it by
    // re-encoding the file with a different number of layers and comparing.
    let n = layers(&file).len() as u64;
    let prefix_len = encode(&ModelFile {
        body: match &file.body {
            Body::Sequential(d) => {
                let mut d = d.clone();
                d.layers = LayerList::new();
                Body::Sequential(d)
            }
            _ => unreachable!(),
        },
        ..file.clone()
    })
    .len()
        - 1; // the empty list encodes its count (0) as one byte at the very end
    assert_eq!(bytes[prefix_len], n as u8, "layer count found");
    for count in [n + 1, 17, 1000, u32::MAX as u64, u64::MAX] {
        let mut b = bytes[..prefix_len].to_vec();
        b.extend(varint(count));
        b.extend(&bytes[prefix_len + 1..]);
        let err = SequentialModel::load(&b).unwrap_err();
        assert!(
            matches!(err, Error::Truncated | Error::Malformed),
            "count {count}: {err:?}"
        );
    }
}

/// Re-encodes the MLP or CNN file with `edit` applied to its (decoded) description.
fn edited(kind: Kind, edit: impl FnOnce(&mut ModelFile<'_>, &mut Vec<Layer<'_>>)) -> Vec<u8> {
    let bytes = file_bytes(kind);
    let mut file = decode(bytes);
    let mut ls = layers(&file);
    edit(&mut file, &mut ls);
    if let Body::Sequential(d) = &mut file.body {
        d.layers = LayerList::new();
        for l in ls {
            let _ = d.layers.push(l);
        }
    }
    encode(&file)
}

fn first_linear(ls: &mut [Layer<'_>]) -> usize {
    ls.iter()
        .position(|l| matches!(l, Layer::Linear(_)))
        .expect("linear")
}

fn first_conv(ls: &mut [Layer<'_>]) -> usize {
    ls.iter()
        .position(|l| matches!(l, Layer::Conv2d(_)))
        .expect("conv")
}

#[track_caller]
/// Asserts that each file fails to load with an error `expected` accepts.
fn all_fail<const N: usize>(files: [Vec<u8>; N], expected: fn(&Error) -> bool) {
    for (i, b) in files.iter().enumerate() {
        let e = load_err(b);
        assert!(expected(&e), "file {i}: {e:?}");
    }
}

fn load_err(bytes: &[u8]) -> Error {
    match SequentialModel::load(bytes) {
        Ok(_) => panic!("an invalid model was accepted"),
        Err(e) => e,
    }
}

#[test]
fn inconsistent_shapes_and_parameters_are_rejected() {
    // A re-encoded unmodified file is byte-identical (the edits below change only what they say).
    assert_eq!(edited(Kind::Cnn, |_, _| {}), file_bytes(Kind::Cnn));

    let linear = |kind, f: fn(&mut aka_core::format::Linear<'_>)| {
        edited(kind, |_, ls| {
            let i = first_linear(ls);
            if let Layer::Linear(l) = &mut ls[i] {
                f(l);
            }
        })
    };
    let conv = |f: fn(&mut aka_core::format::Conv2d<'_>)| {
        edited(Kind::Cnn, |_, ls| {
            let i = first_conv(ls);
            if let Layer::Conv2d(c) = &mut ls[i] {
                f(c);
            }
        })
    };

    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.in_features += 1)),
        Error::ShapeMismatch { layer: 1, .. }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.out_features += 1)),
        Error::LengthMismatch {
            layer: 1,
            what: "weights",
            ..
        }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.out_features = 0)),
        Error::BadParameter { layer: 1, .. }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.in_features = u32::MAX)),
        Error::ShapeMismatch { .. }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.weights = &l.weights[1..])),
        Error::LengthMismatch {
            what: "weights",
            ..
        }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.bias = &l.bias[4..])),
        Error::LengthMismatch { what: "bias", .. }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.requant.multipliers =
            &l.requant.multipliers[..3])),
        Error::LengthMismatch {
            what: "multipliers",
            ..
        }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.requant.shifts = &[])),
        Error::LengthMismatch { what: "shifts", .. }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.requant.output.scale = f32::NAN)),
        Error::BadParameter { .. }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.requant.output.scale = 0.0)),
        Error::BadParameter { .. }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.requant.output.scale = f32::INFINITY)),
        Error::BadParameter { .. }
    ));
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| {
            l.requant.act_min = 10;
            l.requant.act_max = 9;
        })),
        Error::BadParameter { .. }
    ));
    // Negative multipliers and out-of-range shifts (arrays replaced by static ones).
    static NEG: [u8; 576 * 4] = [0xff; 576 * 4];
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.requant.multipliers = &NEG)),
        Error::BadParameter {
            what: "negative multiplier",
            ..
        }
    ));
    static BIG_SHIFT: [u8; 576 * 4] = {
        let mut a = [0u8; 576 * 4];
        a[0] = 31;
        a
    };
    assert!(matches!(
        load_err(&linear(Kind::Mlp, |l| l.requant.shifts = &BIG_SHIFT)),
        Error::BadParameter { .. }
    ));

    // The MLP without its Flatten: a Linear on a 28x28x1 input.
    let no_flatten = edited(Kind::Mlp, |_, ls| {
        ls.remove(0);
    });
    assert!(matches!(
        load_err(&no_flatten),
        Error::ShapeMismatch { layer: 0, .. }
    ));
    // The CNN without its Flatten.
    let no_flatten = edited(Kind::Cnn, |_, ls| {
        ls.retain(|l| !matches!(l, Layer::Flatten));
    });
    assert!(matches!(load_err(&no_flatten), Error::ShapeMismatch { .. }));

    assert!(matches!(
        load_err(&conv(|c| c.in_channels = 3)),
        Error::ShapeMismatch { layer: 0, .. }
    ));
    assert!(matches!(
        load_err(&conv(
            |c| c.input_zero_point = c.input_zero_point.wrapping_add(1)
        )),
        Error::BadParameter { layer: 0, .. }
    ));
    // Zero or inconsistent geometry.
    let bad_geometry: [fn(&mut aka_core::format::Conv2d<'_>); 4] = [
        |c| c.kernel_h = 0,
        |c| c.stride_w = 0,
        |c| c.pad_h = c.kernel_h,
        |c| {
            c.kernel_h = 40;
            c.pad_h = 1;
        },
    ];
    all_fail(bad_geometry.map(&conv), |e| {
        matches!(e, Error::BadParameter { .. })
    });
    assert!(matches!(
        load_err(&conv(|c| c.out_channels = u32::MAX)),
        Error::LengthMismatch { .. } | Error::SizeOverflow { .. }
    ));
    assert!(matches!(
        load_err(&conv(|c| {
            c.kernel_h = u32::MAX;
            c.kernel_w = u32::MAX;
            c.pad_h = 0;
        })),
        Error::BadParameter { .. } | Error::SizeOverflow { .. } | Error::LengthMismatch { .. }
    ));
    // Pooling: zero or oversized windows.
    let pool = |f: fn(&mut aka_core::format::MaxPool2d)| {
        edited(Kind::Cnn, |_, ls| {
            let i = ls
                .iter()
                .position(|l| matches!(l, Layer::MaxPool2d(_)))
                .expect("pool");
            if let Layer::MaxPool2d(p) = &mut ls[i] {
                f(p);
            }
        })
    };
    let bad_windows: [fn(&mut aka_core::format::MaxPool2d); 3] =
        [|p| p.kernel_w = 0, |p| p.stride_h = 0, |p| p.kernel_h = 29];
    all_fail(bad_windows.map(&pool), |e| {
        matches!(e, Error::BadParameter { .. })
    });
    // A pool that changes the spatial size makes the Linear's in_features wrong.
    assert!(matches!(
        load_err(&pool(|p| p.stride_h = 1)),
        Error::ShapeMismatch { .. }
    ));
    // A standalone ReLU with the wrong zero point.
    let relu = edited(Kind::Mlp, |_, ls| {
        ls.insert(1, Layer::Relu { zero_point: 5 });
    });
    assert!(matches!(
        load_err(&relu),
        Error::BadParameter { layer: 1, .. }
    ));

    // Input description.
    let input = |f: fn(&mut Shape, &mut QuantParams)| {
        edited(Kind::Cnn, |file, _| {
            if let Body::Sequential(d) = &mut file.body {
                f(&mut d.input.shape, &mut d.input.quant);
            }
        })
    };
    let bad_inputs: [fn(&mut Shape, &mut QuantParams); 3] = [
        |s, _| s.h = 0,
        |_, q| q.scale = f32::NAN,
        |_, q| q.scale = -1.0,
    ];
    all_fail(bad_inputs.map(&input), |e| {
        matches!(e, Error::BadInput { .. })
    });
    assert!(matches!(
        load_err(&input(|s, _| s.c = 2)),
        Error::ShapeMismatch { layer: 0, .. }
    ));
    assert!(
        load_err(&input(|s, _| *s = Shape::new(u32::MAX, u32::MAX, u32::MAX))) != Error::Truncated
    );
    assert!(matches!(
        load_err(&input(|s, _| s.w = 32)), // 28x32 -> ... -> 7x8x16 = 896 features
        Error::ShapeMismatch { .. }
    ));
    // Pixel normalization: a non-finite mean, a non-finite or non-positive std.
    let pixel = |mean: f32, std: f32| {
        edited(Kind::Cnn, |file, _| {
            if let Body::Sequential(d) = &mut file.body {
                d.input.pixel_mean = mean;
                d.input.pixel_std = std;
            }
        })
    };
    let bad_mean = Error::BadInput {
        what: "pixel mean must be finite",
    };
    let bad_std = Error::BadInput {
        what: "pixel std must be finite and > 0",
    };
    for mean in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(load_err(&pixel(mean, 0.3)), bad_mean);
    }
    for std in [0.0, -0.0, -0.3, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(load_err(&pixel(0.1, std)), bad_std, "std {std}");
    }
    // Unusual but valid values load, and every pixel still quantizes into int8 without panicking.
    for (mean, std) in [
        (-5.0, 1e-30),
        (1e30, 2.0),
        (0.0, f32::MIN_POSITIVE),
        (0.5, 1e30),
    ] {
        let b = pixel(mean, std);
        let m = SequentialModel::load(&b).expect("valid normalization loads");
        assert_eq!(m.pixel_normalization(), (mean, std));
        let mut arena = vec![0i8; m.arena_size()];
        m.classify_u8(&[255; 784], &mut arena).expect("runs");
    }
    // Labels that do not match the outputs.
    let labels = edited(Kind::Mlp, |file, _| file.metadata.labels = "0\n1\n2");
    assert_eq!(
        load_err(&labels),
        Error::LabelCount {
            labels: 3,
            outputs: 10
        }
    );
    // No layers, too many layers.
    assert_eq!(
        load_err(&edited(Kind::Mlp, |_, ls| ls.clear())),
        Error::NoLayers
    );
    let mut file = decode(file_bytes(Kind::Mlp));
    if let Body::Sequential(d) = &mut file.body {
        // 17 layers cannot be built with LayerList::push: encode the list by hand.
        let mut list: Vec<Layer<'_>> = d.layers.as_slice().to_vec();
        list.splice(0..0, std::iter::repeat_n(Layer::Flatten, 15));
        let mut tail = postcard::to_stdvec(&list).expect("encodes");
        let head_file = ModelFile {
            body: Body::Sequential(aka_core::format::SequentialDesc {
                input: d.input,
                layers: LayerList::new(),
            }),
            ..file.clone()
        };
        let mut b = encode(&head_file);
        b.pop(); // the empty list's count
        b.append(&mut tail);
        assert_eq!(
            SequentialModel::load(&b).unwrap_err(),
            Error::TooManyLayers { found: 18, max: 16 }
        );
    }
}

#[test]
fn a_body_tag_out_of_range_is_malformed() {
    // The body's enum tag is the varint right before the input description; find it by
    // encoding the metadata alone.
    let bytes = file_bytes(Kind::Mlp);
    let file = decode(bytes);
    let mut head = postcard::to_stdvec(&file.header).expect("encodes");
    head.extend(postcard::to_stdvec(&file.metadata).expect("encodes"));
    assert_eq!(&bytes[..head.len()], &head[..]);
    for tag in [7u64, 200, u32::MAX as u64] {
        let mut b = head.clone();
        b.extend(varint(tag));
        b.extend(&bytes[head.len() + 1..]);
        assert_eq!(SequentialModel::load(&b).unwrap_err(), Error::Malformed);
    }
}

fn kind_of(which: bool) -> Kind {
    if which {
        Kind::Cnn
    } else {
        Kind::Mlp
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random byte changes anywhere (mostly inside weights: the model still loads and runs).
    #[test]
    fn byte_flips_anywhere_never_panic(
        which in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..10),
    ) {
        let mut bytes = file_bytes(kind_of(which)).to_vec();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        let _ = load_and_maybe_run(&bytes);
    }

    /// Random byte changes in the header, metadata and descriptors.
    #[test]
    fn structural_byte_flips_never_panic(
        which in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let original = file_bytes(kind_of(which));
        let offsets = structural_offsets(original);
        let mut bytes = original.to_vec();
        for (at, x) in flips {
            bytes[offsets[at.index(offsets.len())]] ^= x;
        }
        let _ = load_and_maybe_run(&bytes);
    }

    /// Deletions and insertions at structural offsets, then a truncation.
    #[test]
    fn splices_and_truncations_never_panic(
        which in any::<bool>(),
        at in any::<prop::sample::Index>(),
        delete in 0usize..8,
        insert in prop::collection::vec(any::<u8>(), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let original = file_bytes(kind_of(which));
        let offsets = structural_offsets(original);
        let mut bytes = original.to_vec();
        let pos = offsets[at.index(offsets.len())];
        let end = (pos + delete).min(bytes.len());
        bytes.splice(pos..end, insert);
        let _ = load_and_maybe_run(&bytes);
        let n = cut.index(bytes.len() + 1);
        if n < bytes.len() {
            prop_assert!(SequentialModel::load(&bytes[..n]).is_err());
        }
    }

    /// Corrupted parameter values in the descriptors (via re-encoding): always an error or a
    /// model that runs.
    #[test]
    fn random_descriptor_values_never_panic(
        which in any::<bool>(),
        layer in any::<prop::sample::Index>(),
        field in 0usize..12,
        value in prop_oneof![Just(0u32), Just(1), Just(2), Just(u32::MAX), Just(1 << 16), 0u32..64],
        zp in any::<i8>(),
        scale in prop_oneof![Just(f32::NAN), Just(0.0f32), Just(-1.0), Just(f32::INFINITY), Just(1e-30), Just(1e30), 0.001f32..10.0],
    ) {
        let bytes = edited(kind_of(which), |file, ls| {
            let i = layer.index(ls.len());
            match &mut ls[i] {
                Layer::Linear(l) => match field {
                    0 => l.in_features = value,
                    1 => l.out_features = value,
                    2 => l.requant.output.scale = scale,
                    3 => l.requant.output.zero_point = zp,
                    4 => l.requant.act_min = zp,
                    5 => l.requant.act_max = zp,
                    _ => {}
                },
                Layer::Conv2d(c) => match field {
                    0 => c.in_channels = value,
                    1 => c.out_channels = value,
                    2 => c.kernel_h = value,
                    3 => c.kernel_w = value,
                    4 => c.stride_h = value,
                    5 => c.stride_w = value,
                    6 => c.pad_h = value,
                    7 => c.pad_w = value,
                    8 => c.input_zero_point = zp,
                    9 => c.requant.output.scale = scale,
                    10 => c.requant.act_min = zp,
                    _ => c.requant.act_max = zp,
                },
                Layer::MaxPool2d(p) => match field % 4 {
                    0 => p.kernel_h = value,
                    1 => p.kernel_w = value,
                    2 => p.stride_h = value,
                    _ => p.stride_w = value,
                },
                Layer::Relu { zero_point } => *zero_point = zp,
                _ => {
                    if let Body::Sequential(d) = &mut file.body {
                        match field % 7 {
                            0 => d.input.shape.h = value,
                            1 => d.input.shape.w = value,
                            2 => d.input.shape.c = value,
                            3 => d.input.quant.scale = scale,
                            4 => d.input.pixel_mean = scale,
                            5 => d.input.pixel_std = scale,
                            _ => d.input.quant.zero_point = zp,
                        }
                    }
                }
            }
        });
        let _ = load_and_maybe_run(&bytes);
    }
}
