//! (b) aka-core's int8 outputs are bit-identical to an independent integer reference.
//!
//! The reference (`aka_tests::reference`, shared with aka-core's own tests, driven below layer by
//! layer) is written from the definitions, straightforwardly, in `i64`/`i128`, and fed the
//! quantized parameters **decoded from the exported file**. It calls none of aka-core's
//! kernels or quantization helpers, and it computes the accumulator the way TFLite's reference
//! kernels do — `bias_q + Σ (x - zp_in) * w` over the **in-bounds** taps, with
//! `bias_q = bias' + zp_in * Σ w` un-folded from the file — rather than aka-core's folded form, so
//! the test also checks that folding the input zero point into the bias (and reading padded taps
//! as `zp_in`) changes nothing.
//!
//! Every layer's output is compared (aka-core runs the model truncated after each layer) for
//! hundreds of test images and random-noise images, for the MLP and the CNN, and the final scores
//! for thousands more. These models are trained on standardized pixels (the file's
//! `pixel_mean`/`pixel_std`, which the reference applies from the format's definition); one more
//! MLP is trained and checked without normalization.

use aka_core::format::{Layer, ModelFile, Requant, Shape};
use aka_core::rng::Rng;
use aka_core::SequentialModel;
use aka_tests::reference::{self, ConvShape, Stage};
use aka_tests::{decode, layers, mnist, prefix_model, quick, quick_unnormalized, Kind, Trained};
use aka_trainer::export::sequential::Exported;

fn le_i32(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn weights(bytes: &[u8]) -> Vec<i8> {
    bytes.iter().map(|&b| b as i8).collect()
}

/// TFLite's un-folded bias from the file's folded one: `bias_q[o] = bias'[o] + zp_in * Σ w[o]`
/// (over the whole filter of output channel `o`).
fn unfold_bias(folded: &[i32], w: &[i8], zp_in: i8) -> Vec<i32> {
    let per = w.len() / folded.len();
    folded
        .iter()
        .zip(w.chunks_exact(per))
        .map(|(&b, row)| {
            let sum: i64 = row.iter().map(|&x| x as i64).sum();
            i32::try_from(b as i64 + zp_in as i64 * sum).expect("bias fits i32")
        })
        .collect()
}

/// Lends `f` the reference's output stage of one layer: its file bias (folded, little-endian
/// i32) unfolded for input zero point `zp_in` over weights `w` (`[out][per]`), and `r`'s
/// multipliers, shifts, zero point and clamp.
fn with_stage<R>(
    bias: &[u8],
    w: &[i8],
    zp_in: i8,
    r: &Requant<'_>,
    f: impl FnOnce(&Stage) -> R,
) -> R {
    let bias = unfold_bias(&le_i32(bias), w, zp_in);
    let (m, s) = (le_i32(r.multipliers), le_i32(r.shifts));
    f(&Stage {
        bias: &bias,
        multipliers: &m,
        shifts: &s,
        zero_point: r.output.zero_point,
        act_min: r.act_min,
        act_max: r.act_max,
    })
}

/// The reference forward pass: the output of every layer (NHWC) for one image of pixels.
fn reference(file: &ModelFile<'_>, pixels: &[u8]) -> Vec<Vec<i8>> {
    let aka_core::format::Body::Sequential(desc) = &file.body else {
        panic!("sequential")
    };
    let iq = desc.input.quant;
    let (mean, std) = (desc.input.pixel_mean, desc.input.pixel_std);
    // Input: the format defines the real value of pixel p in f32 as (p / 255 - mean) / std, and
    // q = round(real / scale) + zp (ties away from zero, f32), clamped.
    let mut x: Vec<i8> = pixels
        .iter()
        .map(|&p| {
            let real = (p as f32 / 255.0 - mean) / std;
            let r = (real / iq.scale).round() as i64;
            // Sanity of the reference itself: exact arithmetic lands within one step.
            let exact = ((p as f64 / 255.0 - mean as f64) / std as f64) / iq.scale as f64;
            assert!(
                (r as f64 - exact).abs() <= 0.5 + 1e-3,
                "pixel {p}: {r} vs {exact}"
            );
            (r + iq.zero_point as i64).clamp(-128, 127) as i8
        })
        .collect();
    let mut shape: Shape = desc.input.shape;
    let mut zp = iq.zero_point;
    let mut outs = Vec::new();
    for layer in desc.layers.as_slice() {
        match layer {
            Layer::Linear(l) => {
                assert_eq!(x.len(), l.in_features as usize);
                let w = weights(l.weights);
                x = with_stage(l.bias, &w, zp, &l.requant, |stage| {
                    reference::linear(&x, &w, zp, stage)
                });
                shape = Shape::flat(l.out_features);
                zp = l.requant.output.zero_point;
            }
            Layer::Conv2d(c) => {
                assert_eq!(c.input_zero_point, zp);
                let g = ConvShape {
                    h: shape.h as usize,
                    w: shape.w as usize,
                    in_c: shape.c as usize,
                    out_c: c.out_channels as usize,
                    kernel: (c.kernel_h as usize, c.kernel_w as usize),
                    stride: (c.stride_h as usize, c.stride_w as usize),
                    pad: (c.pad_h as usize, c.pad_w as usize),
                };
                let w = weights(c.weights);
                x = with_stage(c.bias, &w, zp, &c.requant, |stage| {
                    reference::conv2d(&x, &g, &w, zp, stage)
                });
                let (oh, ow) = g.out_hw();
                shape = Shape::new(oh as u32, ow as u32, c.out_channels);
                zp = c.requant.output.zero_point;
            }
            Layer::MaxPool2d(p) => {
                let (y, (oh, ow)) = reference::max_pool2d(
                    &x,
                    (shape.h as usize, shape.w as usize, shape.c as usize),
                    (p.kernel_h as usize, p.kernel_w as usize),
                    (p.stride_h as usize, p.stride_w as usize),
                );
                x = y;
                shape = Shape::new(oh as u32, ow as u32, shape.c);
            }
            Layer::Flatten => shape = Shape::flat(shape.h * shape.w * shape.c),
            Layer::Relu { zero_point } => reference::relu(&mut x, *zero_point),
            other => panic!("layer {other:?} not covered by the reference"),
        }
        outs.push(x.clone());
    }
    outs
}

/// Test images followed by random-noise images (which drive activations to their clamps).
fn images(test_images: usize, noise_images: usize) -> Vec<Vec<u8>> {
    let test = &mnist().test;
    let mut rng = Rng::new(99);
    let mut out: Vec<Vec<u8>> = (0..test_images).map(|i| test.image(i).to_vec()).collect();
    for k in 0..noise_images {
        // Alternate plain noise and sparse bright strokes.
        out.push(
            (0..28 * 28)
                .map(|_| {
                    if k % 2 == 0 {
                        rng.below(256) as u8
                    } else if rng.below(5) == 0 {
                        255
                    } else {
                        0
                    }
                })
                .collect(),
        );
    }
    out
}

fn check_every_layer(kind: Kind, test_images: usize, noise_images: usize) {
    let (_, exported) = quick(kind);
    // These models are trained on standardized pixels: the file carries MNIST's mean and std.
    let m = SequentialModel::load(&exported.bytes).expect("loads");
    let (mean, std) = m.pixel_normalization();
    assert!((mean - 0.1307).abs() < 1e-4 && (std - 0.3081).abs() < 1e-4);
    let bytes = &exported.bytes;
    let file = decode(bytes);
    let n_layers = layers(&file).len();
    let prefixes: Vec<Vec<u8>> = (0..n_layers).map(|k| prefix_model(bytes, k)).collect();
    let models: Vec<SequentialModel> = prefixes
        .iter()
        .map(|b| SequentialModel::load(b).expect("prefix model loads"))
        .collect();
    let mut arenas: Vec<Vec<i8>> = models.iter().map(|m| vec![0; m.arena_size()]).collect();
    let imgs = images(test_images, noise_images);
    let mut compared = 0usize;
    for (n, img) in imgs.iter().enumerate() {
        let expected = reference(&file, img);
        for (k, (model, arena)) in models.iter().zip(&mut arenas).enumerate() {
            let (_, got) = model.classify_u8(img, arena).expect("runs");
            assert_eq!(
                got,
                &expected[k][..],
                "{}: image {n}, layer {k} ({}) differs",
                kind.name(),
                layers(&file)[k].name()
            );
            compared += got.len();
        }
    }
    eprintln!(
        "{}: {} images x {n_layers} layers, {compared} int8 values bit-identical",
        kind.name(),
        imgs.len()
    );
}

fn check_final_scores(kind: Kind, n: usize) {
    check_final_scores_of(kind, quick(kind), n);
}

fn check_final_scores_of(kind: Kind, quick: &(Trained, Exported), n: usize) {
    let (_, exported) = quick;
    let file = decode(&exported.bytes);
    let model = SequentialModel::load(&exported.bytes).expect("loads");
    let mut arena = vec![0i8; model.arena_size()];
    let test = &mnist().test;
    for i in 0..n {
        let img = test.image(test.len() - 1 - i);
        let expected = reference(&file, img);
        let (class, got) = model.classify_u8(img, &mut arena).expect("runs");
        let last = expected.last().expect("layers");
        assert_eq!(
            got,
            &last[..],
            "{}: test image {} scores",
            kind.name(),
            test.len() - 1 - i
        );
        // argmax, first index on ties.
        let best = last
            .iter()
            .enumerate()
            .fold(0, |b, (j, &v)| if v > last[b] { j } else { b });
        assert_eq!(class, best);
    }
}

#[test]
fn mlp_every_layer_bit_identical() {
    check_every_layer(Kind::Mlp, 300, 100);
}

#[test]
fn cnn_every_layer_bit_identical() {
    check_every_layer(Kind::Cnn, 200, 60);
}

#[test]
fn mlp_final_scores_bit_identical() {
    check_final_scores(Kind::Mlp, 1500);
}

#[test]
fn cnn_final_scores_bit_identical() {
    check_final_scores(Kind::Cnn, 1000);
}

/// A model trained and exported without pixel normalization (`--no-normalize`): pixel `p` is
/// `p / 255`, stored as `p - 128`.
#[test]
fn unnormalized_mlp_final_scores_bit_identical() {
    let q = quick_unnormalized();
    let m = SequentialModel::load(&q.1.bytes).expect("loads");
    assert_eq!(m.pixel_normalization(), (0.0, 1.0));
    check_final_scores_of(Kind::Mlp, q, 500);
}

/// The reference's rounding helpers against hand-computed values (so that a bug in the reference
/// cannot hide a bug in aka-core by making the same mistake).
#[test]
fn reference_rounding_by_hand() {
    reference::check_by_hand();
}
