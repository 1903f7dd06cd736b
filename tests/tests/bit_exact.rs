//! (b) aka-core's int8 outputs are bit-identical to an independent integer reference.
//!
//! The reference below is written from the definitions, straightforwardly, in `i64`/`i128`, from
//! the quantized parameters **decoded from the exported file**. It calls none of aka-core's
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

use aka_core::format::{Layer, ModelFile, QuantParams, Shape};
use aka_core::rng::Rng;
use aka_core::SequentialModel;
use aka_tests::{decode, layers, mnist, prefix_model, quick, quick_unnormalized, Kind, Trained};
use aka_trainer::export::sequential::Exported;

fn le_i32(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
        .collect()
}

fn weights(bytes: &[u8]) -> Vec<i64> {
    bytes.iter().map(|&b| b as i8 as i64).collect()
}

/// `round(a * b / 2^31)` with ties toward +infinity (`floor(a * b / 2^31 + 1/2)`), saturated to
/// i32 — gemmlowp's SaturatingRoundingDoublingHighMul, from its definition.
fn doubling_high_mul(a: i64, b: i64) -> i64 {
    let p = a as i128 * b as i128;
    let r = (p + (1i128 << 30)).div_euclid(1i128 << 31);
    r.clamp(i32::MIN as i128, i32::MAX as i128) as i64
}

/// `round(x / 2^e)` with ties away from zero — gemmlowp's RoundingDivideByPOT, from its definition.
fn divide_by_pot(x: i64, e: i64) -> i64 {
    if e == 0 {
        return x;
    }
    let d = 1i128 << e;
    let (mag, neg) = ((x as i128).abs(), x < 0);
    let q = (mag + d / 2) / d;
    (if neg { -q } else { q }) as i64
}

/// TFLite's double-rounding `MultiplyByQuantizedMultiplier(x, m, shift)`.
fn requantize(x: i64, m: i64, shift: i64) -> i64 {
    assert!(
        (i32::MIN as i64..=i32::MAX as i64).contains(&x),
        "accumulator {x} overflows int32"
    );
    let left = shift.max(0);
    let right = (-shift).max(0);
    let shifted = x << left;
    assert!(
        (i32::MIN as i64..=i32::MAX as i64).contains(&shifted),
        "left shift overflows"
    );
    divide_by_pot(doubling_high_mul(shifted, m), right)
}

/// Output stage: requantize, add the output zero point, clamp.
fn output(acc: i64, m: i64, s: i64, q: QuantParams, act_min: i8, act_max: i8) -> i8 {
    let y = requantize(acc, m, s) + q.zero_point as i64;
    y.clamp(act_min as i64, act_max as i64) as i8
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
    let mut x: Vec<i64> = pixels
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
            (r + iq.zero_point as i64).clamp(-128, 127)
        })
        .collect();
    let mut shape: Shape = desc.input.shape;
    let mut zp = iq.zero_point as i64;
    let mut outs = Vec::new();
    for layer in desc.layers.as_slice() {
        match layer {
            Layer::Linear(l) => {
                let (n_in, n_out) = (l.in_features as usize, l.out_features as usize);
                assert_eq!(x.len(), n_in);
                let w = weights(l.weights);
                let bias = le_i32(l.bias);
                let (m, s) = (le_i32(l.requant.multipliers), le_i32(l.requant.shifts));
                let mut y = Vec::with_capacity(n_out);
                for o in 0..n_out {
                    let row = &w[o * n_in..(o + 1) * n_in];
                    let bias_q = bias[o] + zp * row.iter().sum::<i64>();
                    let acc = bias_q
                        + x.iter()
                            .zip(row)
                            .map(|(&xi, &wi)| (xi - zp) * wi)
                            .sum::<i64>();
                    y.push(output(
                        acc,
                        m[o],
                        s[o],
                        l.requant.output,
                        l.requant.act_min,
                        l.requant.act_max,
                    ) as i64);
                }
                x = y;
                shape = Shape::flat(l.out_features);
                zp = l.requant.output.zero_point as i64;
            }
            Layer::Conv2d(c) => {
                let (h, w_, ci) = (shape.h as i64, shape.w as i64, shape.c as i64);
                let (co, kh, kw) = (c.out_channels as i64, c.kernel_h as i64, c.kernel_w as i64);
                let (sh, sw, ph, pw) = (
                    c.stride_h as i64,
                    c.stride_w as i64,
                    c.pad_h as i64,
                    c.pad_w as i64,
                );
                assert_eq!(c.input_zero_point as i64, zp);
                let oh = (h + 2 * ph - kh) / sh + 1;
                let ow = (w_ + 2 * pw - kw) / sw + 1;
                let wt = weights(c.weights);
                let bias = le_i32(c.bias);
                let (m, s) = (le_i32(c.requant.multipliers), le_i32(c.requant.shifts));
                let widx = |o: i64, ky: i64, kx: i64, i: i64| {
                    (((o * kh + ky) * kw + kx) * ci + i) as usize
                };
                let mut y = vec![0i64; (oh * ow * co) as usize];
                for oy in 0..oh {
                    for ox in 0..ow {
                        for o in 0..co {
                            let filter_sum: i64 = (0..kh)
                                .flat_map(|ky| {
                                    (0..kw).flat_map(move |kx| (0..ci).map(move |i| (ky, kx, i)))
                                })
                                .map(|(ky, kx, i)| wt[widx(o, ky, kx, i)])
                                .sum();
                            let mut acc = bias[o as usize] + zp * filter_sum;
                            for ky in 0..kh {
                                let iy = oy * sh + ky - ph;
                                if iy < 0 || iy >= h {
                                    continue;
                                }
                                for kx in 0..kw {
                                    let ix = ox * sw + kx - pw;
                                    if ix < 0 || ix >= w_ {
                                        continue;
                                    }
                                    for i in 0..ci {
                                        let xv = x[((iy * w_ + ix) * ci + i) as usize];
                                        acc += (xv - zp) * wt[widx(o, ky, kx, i)];
                                    }
                                }
                            }
                            y[((oy * ow + ox) * co + o) as usize] = output(
                                acc,
                                m[o as usize],
                                s[o as usize],
                                c.requant.output,
                                c.requant.act_min,
                                c.requant.act_max,
                            )
                                as i64;
                        }
                    }
                }
                x = y;
                shape = Shape::new(oh as u32, ow as u32, c.out_channels);
                zp = c.requant.output.zero_point as i64;
            }
            Layer::MaxPool2d(p) => {
                let (h, w_, ch) = (shape.h as usize, shape.w as usize, shape.c as usize);
                let (kh, kw, sh, sw) = (
                    p.kernel_h as usize,
                    p.kernel_w as usize,
                    p.stride_h as usize,
                    p.stride_w as usize,
                );
                let (oh, ow) = ((h - kh) / sh + 1, (w_ - kw) / sw + 1);
                let mut y = vec![i64::MIN; oh * ow * ch];
                for oy in 0..oh {
                    for ox in 0..ow {
                        for c in 0..ch {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let v = x[((oy * sh + ky) * w_ + ox * sw + kx) * ch + c];
                                    let o = &mut y[(oy * ow + ox) * ch + c];
                                    *o = (*o).max(v);
                                }
                            }
                        }
                    }
                }
                x = y;
                shape = Shape::new(oh as u32, ow as u32, shape.c);
            }
            Layer::Flatten => shape = Shape::flat(shape.h * shape.w * shape.c),
            Layer::Relu { zero_point } => {
                for v in &mut x {
                    *v = (*v).max(*zero_point as i64);
                }
            }
            other => panic!("layer {other:?} not covered by the reference"),
        }
        outs.push(x.iter().map(|&v| i8::try_from(v).expect("int8")).collect());
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
    // 2^30 * 2^30 / 2^31 = 2^29 exactly.
    assert_eq!(doubling_high_mul(1 << 30, 1 << 30), 1 << 29);
    // 3 * 2^30 / 2^31 = 1.5 -> 2 (ties up); -1.5 -> -1 (ties toward +inf).
    assert_eq!(doubling_high_mul(3, 1 << 30), 2);
    assert_eq!(doubling_high_mul(-3, 1 << 30), -1);
    assert_eq!(
        doubling_high_mul(i32::MIN as i64, i32::MIN as i64),
        i32::MAX as i64
    );
    assert_eq!(divide_by_pot(5, 1), 3); // 2.5 -> 3
    assert_eq!(divide_by_pot(-5, 1), -3); // -2.5 -> -3
    assert_eq!(divide_by_pot(-5, 2), -1); // -1.25 -> -1
    assert_eq!(divide_by_pot(6, 2), 2); // 1.5 -> 2
                                        // 1000 * 0.75 * 2^-3 = 93.75 -> 94 (multiplier 0.75 = 3 * 2^29, shift -3).
    assert_eq!(requantize(1000, 3 << 29, -3), 94);
    assert_eq!(requantize(-1000, 3 << 29, -3), -94);
}
