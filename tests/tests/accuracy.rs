//! (a) The exported MLP and CNN, run through aka-core on all 10,000 test images, keep the float
//! model's accuracy (int8 >= float - 0.2 points) and agree with it on >= 99.5 % of the images.
//!
//! Both models are trained for 1 epoch on the full 60,000 training images (the README's
//! `aka-trainer mnist` job for the MLP, and the CNN the same way), seed 0, in memory.

use aka_core::SequentialModel;
use aka_tests::{export, mnist, train_model, Kind};
use aka_trainer::export::sequential::evaluate_int8;
use aka_trainer::train::{evaluate, Loss};

fn check(kind: Kind) {
    let data = mnist();
    let model = train_model(kind, data.train.len(), 1, 0);
    let exported = export(&model, &data.test, 0);
    let (float, int8) = (exported.float.accuracy(), exported.int8.accuracy());
    let agreement = exported.int8.agreement(&exported.float);
    eprintln!(
        "{}: float {float:.2}%, int8 {int8:.2}%, agreement {agreement:.2}% on {} test images; {} bytes, arena {}",
        kind.name(),
        exported.int8.total(),
        exported.bytes.len(),
        exported.arena_size
    );
    for r in &exported.quantized.reports {
        eprintln!("  {r}");
    }
    assert_eq!(exported.int8.total(), 10_000);
    assert!(
        int8 >= float - 0.2,
        "{}: int8 accuracy {int8:.2}% is more than 0.2 points below float {float:.2}%",
        kind.name()
    );
    assert!(
        agreement >= 99.5,
        "{}: top-1 agreement {agreement:.2}% < 99.5%",
        kind.name()
    );

    // The float accuracy is the trainer's own evaluation, and the int8 one is what aka-core
    // gives on the final bytes; both are recorded in the file.
    let (_, trainer_accuracy) = evaluate(&model, &data.test, Loss::CrossEntropy, 1000);
    assert!((trainer_accuracy as f64 * 100.0 - float).abs() < 1e-3);
    let again = evaluate_int8(&exported.bytes, &data.test).expect("runs");
    assert_eq!(again, exported.int8);
    let loaded = SequentialModel::load(&exported.bytes).expect("loads");
    assert_eq!(loaded.metadata().float_accuracy, float as f32);
    assert_eq!(loaded.metadata().int8_accuracy, int8 as f32);
    // Sanity: a trained model, not a degenerate one.
    assert!(float > 94.0, "{}: float accuracy {float:.2}%", kind.name());
}

aka_tests::test_each_kind!(check: mlp_int8_keeps_the_float_accuracy, cnn_int8_keeps_the_float_accuracy);
