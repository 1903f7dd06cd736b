//! The quantizer and the exporter: determinism, metadata, the int8 parameters against the float
//! ones (per-channel weight scales, OIHW -> OHWI, the Flatten column permutation, bias folding,
//! fused ReLU clamps), dequantized outputs against float outputs, other layer sequences, and
//! clear errors for models aka-core cannot run.

use aka_core::format::{Body, Layer, Task};
use aka_core::rng::Rng;
use aka_core::SequentialModel;
use aka_tests::{decode, layers, mnist, quick, quick_unnormalized, Kind};
use aka_trainer::autograd::{no_grad, Tensor};
use aka_trainer::data::mnist::PixelNorm;
use aka_trainer::export::quantize::{
    activation_quant, input_quant, Calibration, INPUT_SCALE, INPUT_ZERO_POINT,
};
use aka_trainer::export::sequential::{
    encode, evaluate_float, evaluate_int8, quantize, QuantConfig,
};
use aka_trainer::export::ExportMetadata;
use aka_trainer::nn::{Conv2d, Ctx, Dropout, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential};

fn le_i32(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn small_config() -> QuantConfig {
    QuantConfig {
        samples: 300,
        ..QuantConfig::default()
    }
}

#[test]
fn export_is_deterministic() {
    for kind in [Kind::Mlp, Kind::Cnn] {
        let (trained, exported) = quick(kind);
        // A model rebuilt from the same parameters, quantized and exported again: same bytes.
        let model = trained.model();
        let again = aka_tests::export(&model, &mnist().test.head(1000), 7);
        assert_eq!(again.bytes, exported.bytes, "{}", kind.name());
        assert_eq!(again.quantized, exported.quantized);
        // Encoding the same quantized model with the same metadata twice: same bytes.
        let meta = ExportMetadata::digits(1, "x");
        assert_eq!(
            encode(&exported.quantized, &meta).expect("encodes"),
            encode(&exported.quantized, &meta).expect("encodes")
        );
    }
}

#[test]
fn metadata_is_filled_in() {
    for kind in [Kind::Mlp, Kind::Cnn] {
        let (_, exported) = quick(kind);
        let m = SequentialModel::load(&exported.bytes).expect("loads");
        let meta = m.metadata();
        assert_eq!(meta.task, Task::Classifier);
        let labels: Vec<&str> = meta.labels().collect();
        assert_eq!(labels, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        assert_eq!(meta.float_accuracy, exported.float.accuracy() as f32);
        assert_eq!(meta.int8_accuracy, exported.int8.accuracy() as f32);
        assert_eq!(meta.seed, 7);
        assert_eq!(meta.train_command, "aka-tests");
        assert_eq!(m.input_shape().to_string(), "28x28x1");
        // The training data's pixel normalization and the input quantization derived from it.
        let norm = mnist().norm();
        assert_eq!(m.pixel_normalization(), (norm.mean, norm.std));
        assert_eq!(m.input_quant(), input_quant(norm));
        // The recorded int8 accuracy is what aka-core gives on these bytes.
        let eval = evaluate_int8(&exported.bytes, &mnist().test.head(1000)).expect("runs");
        assert_eq!(eval, exported.int8);
    }
}

/// The input quantization: asymmetric over `[(0 - mean) / std, (1 - mean) / std]`; without
/// normalization exactly scale 1/255, zero point -128, i.e. `q = p - 128`.
#[test]
fn input_quantization_follows_the_pixel_normalization() {
    // No normalization (`--no-normalize`).
    let none = input_quant(PixelNorm::NONE);
    assert_eq!(none.scale, INPUT_SCALE);
    assert_eq!(none.scale, 1.0f32 / 255.0);
    assert_eq!(none.zero_point, INPUT_ZERO_POINT);
    assert_eq!(none.zero_point, -128);
    let (_, exported) = quick_unnormalized();
    let m = SequentialModel::load(&exported.bytes).expect("loads");
    assert_eq!(m.pixel_normalization(), (0.0, 1.0));
    assert_eq!(m.input_quant(), none);
    for p in 0..=255u8 {
        assert_eq!(m.quantize_pixel(p) as i32, p as i32 - 128, "pixel {p}");
    }
    assert_eq!(
        exported.quantized.input.quant,
        activation_quant(0.0, 1.0),
        "the same formula as the activations"
    );

    // MNIST's normalization (mean 0.1307, std 0.3081 from the training pixels), by hand: the
    // range is [-0.4242, 2.8215], 3.2457 wide, so scale = 3.2457 / 255 = 0.012728 and
    // zp = round(-128 + 0.4242 / 0.012728) = round(-94.67) = -95.
    let norm = mnist().norm();
    let q = input_quant(norm);
    assert!((q.scale - 0.012728).abs() < 2e-6, "{q:?}");
    assert_eq!(q.zero_point, -95);
    // Real 0 is exactly the zero point (a conv's zero padding is exact).
    assert_eq!(q.dequantize(q.zero_point), 0.0);
    let (_, exported) = quick(Kind::Cnn);
    let m = SequentialModel::load(&exported.bytes).expect("loads");
    assert_eq!(m.input_quant(), q);
    let Layer::Conv2d(c) = m.layers()[0] else {
        panic!("the CNN starts with a conv")
    };
    assert_eq!(c.input_zero_point, -95);
    // Black (0) is the lowest code, white (255) the highest; every pixel within half a step.
    assert_eq!(m.quantize_pixel(0), -128);
    assert_eq!(m.quantize_pixel(255), 127);
    for p in 0..=255u8 {
        let real = norm.apply(p);
        let err = (q.dequantize(m.quantize_pixel(p)) - real).abs();
        assert!(err <= q.scale / 2.0 * 1.0001, "pixel {p}: error {err}");
    }
}

/// Checks every Linear/Conv2d of the file against the float layer it came from.
fn check_parameters(kind: Kind) {
    let (trained, exported) = quick(kind);
    let model = trained.model();
    let file = decode(&exported.bytes);
    let ls = layers(&file);
    let Body::Sequential(desc) = &file.body else {
        panic!()
    };
    let mut s_in = desc.input.quant;
    let mut flatten_from: Option<(usize, usize, usize)> = None; // (c, h, w) before a Flatten
    let mut shape = (1usize, 28usize, 28usize);
    let mut reports = exported.quantized.reports.iter();
    for (k, layer) in ls.iter().enumerate() {
        let (weights, bias, requant, out, is_conv) = match layer {
            Layer::Linear(l) => (l.weights, l.bias, l.requant, l.out_features as usize, false),
            Layer::Conv2d(c) => (c.weights, c.bias, c.requant, c.out_channels as usize, true),
            Layer::MaxPool2d(p) => {
                let (c, h, w) = shape;
                shape = (
                    c,
                    (h - p.kernel_h as usize) / p.stride_h as usize + 1,
                    (w - p.kernel_w as usize) / p.stride_w as usize + 1,
                );
                continue;
            }
            Layer::Flatten => {
                flatten_from = Some(shape);
                continue;
            }
            _ => continue,
        };
        let report = reports.next().expect("one report per Linear/Conv2d");
        assert_eq!(report.export_index, k);
        let float_layer = &model.layers[report.float_index];
        let (fw, fb) = match float_layer {
            aka_trainer::nn::Layer::Linear(l) => (
                l.weight.value().clone(),
                l.bias.as_ref().map(|b| b.value().clone()),
            ),
            aka_trainer::nn::Layer::Conv2d(c) => (
                c.weight.value().clone(),
                c.bias.as_ref().map(|b| b.value().clone()),
            ),
            _ => panic!("report points at a layer without weights"),
        };
        let fb = fb.expect("bias");
        let fw_shape = fw.shape().to_vec();
        let fw: Vec<f32> = fw.iter().copied().collect();
        let k_per_out = fw.len() / out;
        let q: Vec<i32> = weights.iter().map(|&b| b as i8 as i32).collect();
        let mult = le_i32(requant.multipliers);
        let shift = le_i32(requant.shifts);
        let bias = le_i32(bias);
        let s_out = requant.output.scale as f64;
        let mut max_rel = 0.0f64;
        for o in 0..out {
            // s_w recovered from the requantization multiplier M = s_in * s_w / s_out.
            let m_real = mult[o] as f64 * 2f64.powi(shift[o] - 31);
            let s_w = m_real * s_out / s_in.scale as f64;
            let row_q = &q[o * k_per_out..(o + 1) * k_per_out];
            assert!(
                row_q.iter().all(|&v| (-127..=127).contains(&v)),
                "symmetric range"
            );
            let row_f = &fw[o * k_per_out..(o + 1) * k_per_out];
            let max_abs = row_f.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            assert_eq!(
                row_q.iter().map(|v| v.abs()).max(),
                Some(127),
                "full range per channel"
            );
            assert!(
                (s_w / (max_abs / 127.0) - 1.0).abs() < 1e-6,
                "per-channel scale"
            );
            // The file's weight at (file index j) is the float weight at the permuted index.
            for (j, &qv) in row_q.iter().enumerate() {
                let src = if is_conv {
                    // OHWI [o][ky][kx][i] <- OIHW [o][i][ky][kx]
                    let (ci, kh, kw) = (fw_shape[1], fw_shape[2], fw_shape[3]);
                    let (i, rest) = (j % ci, j / ci);
                    let (kx, ky) = (rest % kw, rest / kw);
                    (i * kh + ky) * kw + kx
                } else if let Some((c, h, w)) = flatten_from {
                    // NHWC-flattened column (y, x, ch) <- PyTorch column (ch, y, x)
                    let (ch, rest) = (j % c, j / c);
                    let (x, y) = (rest % w, rest / w);
                    (ch * h + y) * w + x
                } else {
                    j
                };
                let err = (qv as f64 * s_w - row_f[src] as f64).abs();
                assert!(
                    err <= s_w / 2.0 * (1.0 + 1e-5),
                    "{} layer {k} channel {o} weight {j}: {qv} * {s_w} vs {}",
                    kind.name(),
                    row_f[src]
                );
                max_rel = max_rel.max(err / max_abs);
            }
            // Bias: bias' + zp_in * Σ q = round(b / (s_in * s_w)).
            let unfolded = bias[o] as i64
                + s_in.zero_point as i64 * row_q.iter().map(|&v| v as i64).sum::<i64>();
            let ideal = fb[o] as f64 / (s_in.scale as f64 * s_w);
            assert!(
                (unfolded as f64 - ideal).abs() <= 0.5 + 1e-3 * ideal.abs().max(1.0),
                "bias {o}: {unfolded} vs {ideal}"
            );
        }
        assert!(max_rel <= 1.0 / 254.0 + 1e-6);
        assert!(
            (report.max_rel_error as f64 - max_rel).abs() < 1e-4,
            "reported error"
        );
        // Fused ReLU clamps at the output zero point; the classifier layer does not clamp.
        if report.relu_fused {
            assert_eq!(requant.act_min, requant.output.zero_point);
            assert_eq!(
                requant.output.zero_point, -128,
                "a ReLU output range starts at 0"
            );
        } else {
            assert_eq!(requant.act_min, -128);
        }
        assert_eq!(requant.act_max, 127);
        assert_eq!(report.input, s_in);
        assert_eq!(report.output, requant.output);
        if is_conv {
            let Layer::Conv2d(c) = layer else { panic!() };
            assert_eq!(c.input_zero_point, s_in.zero_point);
            let (_, h, w) = shape;
            shape = (
                out,
                (h + 2 * c.pad_h as usize - c.kernel_h as usize) / c.stride_h as usize + 1,
                (w + 2 * c.pad_w as usize - c.kernel_w as usize) / c.stride_w as usize + 1,
            );
        }
        flatten_from = None;
        s_in = requant.output;
    }
    assert!(reports.next().is_none());
}

aka_tests::test_each_kind!(
    check_parameters: mlp_parameters_match_the_float_model,
    cnn_parameters_match_the_float_model
);

/// Dequantized int8 scores against the float logits on test images.
fn score_error(model: &Sequential, bytes: &[u8], n: usize) -> (f64, f64) {
    let test = &mnist().test;
    let m = SequentialModel::load(bytes).expect("loads");
    let q = m.output_quant();
    let mut arena = vec![0i8; m.arena_size()];
    let indices: Vec<usize> = (0..n).collect();
    let logits = no_grad(|| {
        model
            .forward(
                &Tensor::new(test.batch_images(&indices).into_dyn()),
                &mut Ctx::eval(),
            )
            .value()
            .clone()
    });
    let (mut sum, mut max) = (0.0f64, 0.0f64);
    for i in 0..n {
        let (_, scores) = m.classify_u8(test.image(i), &mut arena).expect("runs");
        for (c, &s) in scores.iter().enumerate() {
            let e = (q.dequantize(s) as f64 - logits[[i, c]] as f64).abs() / q.scale as f64;
            sum += e;
            max = max.max(e);
        }
    }
    (sum / (n * 10) as f64, max)
}

#[test]
fn dequantized_scores_follow_the_float_logits() {
    for kind in [Kind::Mlp, Kind::Cnn] {
        let (trained, exported) = quick(kind);
        let (mean, max) = score_error(&trained.model(), &exported.bytes, 300);
        eprintln!(
            "{}: |int8 - float| in output steps: mean {mean:.2}, max {max:.2}",
            kind.name()
        );
        assert!(
            mean < 1.0 && max < 4.0,
            "{}: mean {mean}, max {max}",
            kind.name()
        );
    }
}

#[test]
fn percentile_calibration() {
    let (trained, exported) = quick(Kind::Cnn);
    let model = trained.model();
    let config = QuantConfig {
        method: Calibration::Percentile(99.99),
        ..small_config()
    };
    let q = quantize(&model, &mnist().train, &config).expect("quantizes");
    for (p, m) in q.reports.iter().zip(&exported.quantized.reports) {
        assert!(
            p.calibrated_max <= m.calibrated_max * 1.0001,
            "percentile range is narrower"
        );
    }
    let bytes = encode(&q, &ExportMetadata::digits(0, "")).expect("encodes");
    let test = mnist().test.head(1000);
    let int8 = evaluate_int8(&bytes, &test).expect("runs");
    let float = evaluate_float(&model, &test, 500);
    assert!(int8.agreement(&float) > 98.0);
    assert!(quantize(
        &model,
        &mnist().train,
        &QuantConfig {
            method: Calibration::Percentile(40.0),
            ..small_config()
        }
    )
    .is_err());
}

/// Another layer sequence: strided conv without padding, a pool then a standalone ReLU, dropouts
/// around a fused ReLU, no bias-free tricks. Untrained (random) weights.
#[test]
fn other_layer_sequences_export_and_run() {
    let mut rng = Rng::new(3);
    let model = Sequential::new([
        Conv2d::new(1, 4, 4, 2, 0, &mut rng).into(), // 28 -> 13
        MaxPool2d {
            kernel: 3,
            stride: 2,
        }
        .into(), // 13 -> 6
        ReLU.into(),                                 // not fusable: standalone
        Conv2d::new(4, 6, 3, 1, 2, &mut rng).into(), // 6 -> 8, then no ReLU
        Flatten.into(),
        Dropout { p: 0.5 }.into(),
        Linear::new(6 * 8 * 8, 20, &mut rng).into(),
        Dropout { p: 0.1 }.into(),
        ReLU.into(), // fused across the dropout
        Linear::new(20, 10, &mut rng).into(),
    ]);
    let q = quantize(&model, &mnist().train, &small_config()).expect("quantizes");
    let names: Vec<&str> = q.layers.iter().map(|l| l.name()).collect();
    assert_eq!(
        names,
        [
            "conv2d",
            "maxpool2d",
            "relu",
            "conv2d",
            "flatten",
            "linear",
            "linear"
        ]
    );
    assert!(q.reports[2].relu_fused && !q.reports[0].relu_fused && !q.reports[1].relu_fused);
    let bytes = encode(&q, &ExportMetadata::digits(0, "")).expect("encodes");
    let (mean, max) = score_error(&model, &bytes, 200);
    eprintln!("random model: mean {mean:.2}, max {max:.2} output steps");
    assert!(mean < 1.0 && max < 5.0, "mean {mean}, max {max}");
    let test = mnist().test.head(500);
    let agreement = evaluate_int8(&bytes, &test)
        .expect("runs")
        .agreement(&evaluate_float(&model, &test, 500));
    assert!(agreement > 90.0, "agreement {agreement}%");
}

#[test]
fn unsupported_models_are_clear_errors() {
    let mut rng = Rng::new(1);
    let err = |m: Sequential| {
        quantize(&m, &mnist().train.head(50), &small_config())
            .expect_err("must fail")
            .to_string()
    };
    let e = err(Sequential::new([Linear::new(784, 10, &mut rng).into()]));
    assert!(e.contains("Flatten"), "{e}");
    let e = err(Sequential::new([
        Conv2d::new(1, 2, 3, 1, 3, &mut rng).into()
    ]));
    assert!(e.contains("padding"), "{e}");
    let e = err(Sequential::new([
        Flatten.into(),
        Linear::new(700, 10, &mut rng).into(),
    ]));
    assert!(e.contains("784"), "{e}");

    // A bias that cannot be represented in int32 at scale s_in * s_w.
    let big = Linear::new(784, 10, &mut rng);
    big.bias.as_ref().expect("bias").value_mut()[[3]] = 1e9;
    let e = err(Sequential::new([Flatten.into(), big.into()]));
    assert!(e.contains("int32"), "{e}");
    // A non-finite weight.
    let nan = Linear::new(784, 10, &mut rng);
    nan.weight.value_mut()[[0, 0]] = f32::NAN;
    let e = err(Sequential::new([Flatten.into(), nan.into()]));
    assert!(e.contains("non-finite"), "{e}");
    // No calibration samples.
    let m = Sequential::new([Flatten.into(), Linear::new(784, 10, &mut rng).into()]);
    assert!(quantize(
        &m,
        &mnist().train,
        &QuantConfig {
            samples: 0,
            ..small_config()
        }
    )
    .is_err());
    // Bad bytes given to the evaluator: an error, not a panic.
    assert!(evaluate_int8(b"AKAM\x01", &mnist().test.head(2)).is_err());
}
