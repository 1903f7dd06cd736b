//! int4 weights in the trainer (issue 12): the exporter's int4 quantization and packing, the
//! fake-quantization op with its straight-through gradient, quantization-aware training in
//! `fit`, and int4 files run by aka-core.

mod common;

use std::path::Path;

use aka_core::rng::Rng;
use aka_trainer::autograd::gradcheck::{check, randn};
use aka_trainer::autograd::Tensor;
use aka_trainer::data::mnist::{ImageSet, Mnist};
use aka_trainer::data::text::TextDataset;
use aka_trainer::export::gpt::GptWeights;
use aka_trainer::export::quantize::{dequantize, quantize_rows_as, WeightBits};
use aka_trainer::export::sequential::quantize::weight_plan;
use aka_trainer::export::sequential::{export_classifier, ExportConfig, QuantConfig};
use aka_trainer::export::{weight_bytes, ExportMetadata};
use aka_trainer::gpt::GptConfig;
use aka_trainer::nn::qat::{fake_quantize, with_fake_quant};
use aka_trainer::nn::{mnist_mlp, Linear, Module};
use aka_trainer::train::{evaluate, train, Loss, Progress, QatSteps, Splits, TrainConfig};

/// The first `n` images of `set`.
fn first(set: &ImageSet, n: usize) -> ImageSet {
    let px = set.rows * set.cols;
    ImageSet {
        images: set.images[..n * px].to_vec(),
        labels: set.labels[..n].to_vec(),
        n,
        rows: set.rows,
        cols: set.cols,
        norm: set.norm,
    }
}

fn mnist_subsets(n_train: usize, n_test: usize) -> (ImageSet, ImageSet) {
    let data = Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"))
        .expect("bundled MNIST loads");
    (first(&data.train, n_train), first(&data.test, n_test))
}

/// The forward value is the quantizer's; the gradient is the identity's. With the identity as
/// the quantizer the op must pass the finite-difference check (here inside `x · fq(x)`, whose
/// derivative is `2x` only if both paths carry the gradient).
#[test]
fn fake_quant_gradcheck() {
    let mut rng = Rng::new(3);
    let x = randn(&[3, 5], 1.0, &mut rng);
    check(&[x], |t| t[0].mul(&t[0].fake_quant(|v| v.to_vec()))).unwrap();
}

#[test]
fn fake_quant_is_the_exporters_rounding_with_a_straight_through_gradient() {
    let mut rng = Rng::new(5);
    for bits in [WeightBits::Int8, WeightBits::Int4] {
        let w = Tensor::param(randn(&[4, 9], 0.3, &mut rng));
        let y = fake_quantize(&w, bits);
        let values: Vec<f32> = w.value().iter().copied().collect();
        let expected = dequantize(&quantize_rows_as(&values, 4, bits));
        assert_eq!(y.value().iter().copied().collect::<Vec<_>>(), expected);
        let r = randn(&[4, 9], 1.0, &mut rng);
        y.mul(&Tensor::new(r.clone())).sum().backward();
        assert_eq!(*w.grad().expect("a gradient"), r, "{bits:?}");
    }
    // int4: every row takes at most 16 distinct values, all on its scale's grid.
    let w: Vec<f32> = randn(&[3, 40], 1.0, &mut rng).iter().copied().collect();
    let qw = quantize_rows_as(&w, 3, WeightBits::Int4);
    assert!(qw.q.iter().all(|&q| (-8..=7).contains(&q)));
}

#[test]
fn int4_bytes_are_packed_low_nibble_first() {
    let mut rng = Rng::new(9);
    for cols in [1usize, 2, 7, 8, 33] {
        let rows = 3;
        let q: Vec<i8> = (0..rows * cols).map(|_| rng.below(16) as i8 - 8).collect();
        let bytes = weight_bytes(&q, rows, WeightBits::Int4);
        let per_row = cols.div_ceil(2);
        assert_eq!(bytes.len(), rows * per_row);
        for (r, row) in bytes.chunks_exact(per_row).enumerate() {
            for c in 0..cols {
                assert_eq!(aka_core::kernels::s4_weight(row, c), q[r * cols + c]);
            }
            if cols % 2 == 1 {
                assert_eq!(row[per_row - 1] >> 4, 0, "padding nibble");
            }
        }
        // Explicit order: value 0 in the low nibble.
        let b = weight_bytes(&[1, -2], 1, WeightBits::Int4);
        assert_eq!(b, [0xE1]);
    }
}

/// Only the weights registered by `with_fake_quant` are replaced, and only inside it.
#[test]
fn the_hook_fake_quantizes_registered_weights_only() {
    let mut rng = Rng::new(1);
    let layer = Linear::new(6, 4, &mut rng);
    let x = Tensor::new(randn(&[2, 6], 1.0, &mut rng));
    let float = layer.forward(&x).value().clone();
    let wq = fake_quantize(&layer.weight, WeightBits::Int4);
    let expected = x.linear(&wq, layer.bias.as_ref()).value().clone();
    let inside = with_fake_quant(&[(layer.weight.clone(), WeightBits::Int4)], || {
        layer.forward(&x).value().clone()
    });
    assert_eq!(inside, expected);
    assert_ne!(inside, float);
    assert_eq!(layer.forward(&x).value().clone(), float);
}

/// QAT in `fit`: the evaluation after the QAT steps is of the fake-quantized model, the
/// weights stay float, and the int4 file aka-core runs is close to that evaluation.
#[test]
fn qat_trains_float_weights_through_the_exporters_quantization() {
    let (train_set, test_set) = mnist_subsets(2048, 1000);
    let model = mnist_mlp(&mut Rng::new(0));
    let quant = QuantConfig {
        weights: WeightBits::Int4,
        ..QuantConfig::default()
    };
    let plan = weight_plan(&model, &quant).unwrap();
    let splits = Splits {
        train: &train_set,
        test: &test_set,
    };
    let config = TrainConfig {
        epochs: 1,
        progress: Progress::Quiet,
        qat: Some(QatSteps {
            steps: 16,
            weights: plan.clone(),
            lr_scale: 0.1,
        }),
        ..TrainConfig::default()
    };
    let history = train(&model, &splits, &config).unwrap();
    let last = history.epochs.last().expect("an evaluation").test_accuracy;
    let (_, fq_acc) = with_fake_quant(&plan, || {
        evaluate(&model, &test_set, Loss::CrossEntropy, 1000)
    });
    assert_eq!(
        last, fq_acc,
        "the last evaluation is of the fake-quantized model"
    );
    // The checkpointed weights are float: not on their int4 grid.
    let w: Vec<f32> = model.parameters()[0].1.value().iter().copied().collect();
    let on_grid = dequantize(&quantize_rows_as(&w, 576, WeightBits::Int4));
    assert_ne!(w, on_grid);

    let exported = export_classifier(
        &model,
        &train_set,
        &test_set,
        &ExportConfig {
            quant,
            metadata: ExportMetadata::digits(0, "test"),
            eval_batch_size: 1000,
        },
    )
    .unwrap();
    let file = exported.int8.accuracy();
    assert!(
        (file - 100.0 * fq_acc as f64).abs() < 1.5,
        "aka-core int4 {file}% vs fake-quantized {}%",
        100.0 * fq_acc
    );
}

#[test]
fn int4_mlp_file_is_about_half_and_runs_in_aka_core() {
    let (train_set, test_set) = mnist_subsets(2048, 1000);
    let model = mnist_mlp(&mut Rng::new(1));
    let splits = Splits {
        train: &train_set,
        test: &test_set,
    };
    let config = TrainConfig {
        progress: Progress::Quiet,
        ..TrainConfig::default()
    };
    train(&model, &splits, &config).unwrap();
    let export = |weights, int8_layers: Vec<usize>| {
        export_classifier(
            &model,
            &train_set,
            &test_set,
            &ExportConfig {
                quant: QuantConfig {
                    weights,
                    int8_layers,
                    ..QuantConfig::default()
                },
                metadata: ExportMetadata::digits(1, "test"),
                eval_batch_size: 1000,
            },
        )
        .unwrap()
    };
    let int8 = export(WeightBits::Int8, vec![]);
    let int4 = export(WeightBits::Int4, vec![]);
    let ratio = int4.bytes.len() as f64 / int8.bytes.len() as f64;
    assert!(ratio <= 0.56, "int4 file is {ratio:.3} of the int8 file");
    assert!(
        int4.int8.accuracy() > int4.float.accuracy() - 2.0,
        "int4 {} vs float {}",
        int4.int8.accuracy(),
        int4.float.accuracy()
    );
    let summary = int4.summary(Path::new("m.aka"));
    assert_eq!(summary.weights, WeightBits::Int4);
    assert_eq!(summary.quantized_accuracy, int4.int8.accuracy());
    // Layer 3 (the head) kept int8: a little larger, the report says so.
    let mixed = export(WeightBits::Int4, vec![3]);
    assert!(mixed.bytes.len() > int4.bytes.len());
    let kinds: Vec<WeightBits> = mixed.quantized.reports.iter().map(|r| r.weights).collect();
    assert_eq!(kinds, [WeightBits::Int4, WeightBits::Int8]);
    // Only Linear/Conv2d indices are accepted.
    let bad = QuantConfig {
        int8_layers: vec![2],
        ..QuantConfig::default()
    };
    assert!(weight_plan(&model, &bad).is_err());
}

#[test]
fn int4_gpt_exports_and_runs_in_aka_core() {
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(60);
    let data = TextDataset::from_text(&text, None);
    let mut cfg = GptConfig::sized(1, 2, 32, 16, data.tokenizer().vocab_size());
    cfg.tied_head = false;
    let model = common::trained_gpt(cfg, 0, 60, &data);
    let export = |weights: GptWeights| common::export_gpt_with(&model, &data, &weights);
    let int8 = export(GptWeights::default());
    let int4 = export(GptWeights {
        weights: WeightBits::Int4,
        int8: vec![],
        ..Default::default()
    });
    let keep_wk = export(GptWeights {
        weights: WeightBits::Int4,
        int8: vec!["wk".into()],
        ..Default::default()
    });
    assert!(int4.bytes.len() < int8.bytes.len());
    assert!(keep_wk.bytes.len() > int4.bytes.len());
    let (f, q) = (int4.float.loss(), int4.int8.loss());
    assert!(
        q.is_finite() && (q / f - 1.0).abs() < 0.15,
        "float {f}, int4 {q}"
    );
    assert!(GptWeights {
        weights: WeightBits::Int4,
        int8: vec!["wx".into()],
        ..Default::default()
    }
    .validate()
    .is_err());
    // The QAT plan covers every projection and the untied head.
    assert_eq!(int4.weights.plan(&model).len(), 4 + 2 + 1);
}
