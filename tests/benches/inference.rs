//! aka-core int8 inference on the host: time per image and MAC throughput of the exported MNIST
//! MLP and CNN, single thread, with a per-layer breakdown. Prints markdown tables.
//!
//! `cargo bench -p aka-tests --bench inference` (or `cargo bench`; a filter argument `mlp` or
//! `cnn` runs one model).
//!
//! The models are trained briefly in memory (1 epoch on 6000 images: the kernels are dense, so
//! the time does not depend on how well the weights are trained), exported exactly like
//! `aka-trainer mnist` does, and run through `SequentialModel::classify_u8` on the test images.
//!
//! Per layer: each layer is cut out into a one-layer model file (same parameter bytes, the
//! layer's input shape and quantization as the model input) and timed with
//! `SequentialModel::run` on that layer's real input activations (computed by the model
//! truncated before it). `run` copies its input into the arena first, so a layer's time includes
//! one copy of its input.
//!
//! Every timing is the fastest of several rounds, which keeps the numbers usable on a machine
//! with other load.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aka_core::format::{Body, InputDesc, Layer, LayerList, ModelFile, SequentialDesc};
use aka_core::SequentialModel;
use aka_tests::{decode, encode, export, mnist, prefix_model, train_model, Kind};

/// Measurement rounds per timing; the fastest round counts.
const ROUNDS: usize = 15;
/// Duration of one round.
const ROUND: Duration = Duration::from_millis(100);
/// Distinct inputs cycled through.
const INPUTS: usize = 200;

/// Fastest mean time per call of `f(i)` (i cycling over `0..INPUTS`) over [`ROUNDS`] rounds.
fn time(mut f: impl FnMut(usize)) -> Duration {
    for i in 0..INPUTS {
        f(i); // warm-up
    }
    let mut best = Duration::MAX;
    let mut next = 0usize;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < ROUND {
            for _ in 0..50 {
                f(next % INPUTS);
                next += 1;
            }
            n += 50;
        }
        best = best.min(start.elapsed() / n);
    }
    best
}

/// Whole model: `classify_u8` on test images (input quantization included).
fn time_model(bytes: &[u8]) -> Duration {
    let model = SequentialModel::load(bytes).expect("valid model");
    let test = &mnist().test;
    let mut arena = vec![0i8; model.arena_size()];
    time(|i| {
        black_box(
            model
                .classify_u8(black_box(test.image(i)), &mut arena)
                .expect("runs"),
        );
    })
}

/// Layer `k` of `bytes` alone, as a one-layer model file.
fn single_layer(bytes: &[u8], k: usize) -> Vec<u8> {
    let file = decode(bytes);
    let loaded = SequentialModel::load(bytes).expect("valid");
    let Body::Sequential(desc) = &file.body else {
        panic!("sequential")
    };
    let layers = desc.layers.as_slice();
    let mut quant = desc.input.quant;
    for layer in &layers[..k] {
        if let Some(r) = layer.requant() {
            quant = r.output;
        }
    }
    let mut metadata = file.metadata;
    metadata.labels = "";
    encode(&ModelFile::new(
        metadata,
        Body::Sequential(SequentialDesc {
            input: InputDesc {
                shape: loaded.layer_info(k).expect("layer").input,
                quant,
                ..desc.input
            },
            layers: LayerList::from_slice(&layers[k..=k]).expect("one layer"),
        }),
    ))
}

/// The real inputs of layer `k` for the first [`INPUTS`] test images.
fn layer_inputs(bytes: &[u8], k: usize) -> Vec<Vec<i8>> {
    let test = &mnist().test;
    let full = SequentialModel::load(bytes).expect("valid");
    if k == 0 {
        return (0..INPUTS)
            .map(|i| {
                test.image(i)
                    .iter()
                    .map(|&p| full.quantize_pixel(p))
                    .collect()
            })
            .collect();
    }
    let prefix = prefix_model(bytes, k - 1);
    let model = SequentialModel::load(&prefix).expect("valid");
    let mut arena = vec![0i8; model.arena_size()];
    (0..INPUTS)
        .map(|i| {
            model
                .classify_u8(test.image(i), &mut arena)
                .expect("runs")
                .1
                .to_vec()
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; other arguments filter by model name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut summary = Vec::new();
    let mut details = String::new();
    for kind in [Kind::Mlp, Kind::Cnn] {
        if !filter.is_empty() && !filter.iter().any(|f| kind.name().contains(f.as_str())) {
            continue;
        }
        eprintln!("training and exporting the {} ...", kind.name());
        let model = train_model(kind, 6000, 1, 0);
        let exported = export(&model, &mnist().test.head(1000), 0);
        let bytes = &exported.bytes;
        let loaded = SequentialModel::load(bytes).expect("valid");
        let macs = loaded.macs();
        let t = time_model(bytes).as_secs_f64();
        summary.push(format!(
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0} |",
            kind.name(),
            bytes.len(),
            loaded.arena_size(),
            macs,
            t * 1e6,
            1.0 / t,
            macs as f64 / t / 1e6
        ));

        details.push_str(&format!(
            "\n{} per layer (each layer alone, on its real inputs):\n\n| # | layer | input | output | MACs | µs | MMAC/s |\n|---|---|---|---|---|---|---|\n",
            kind.name()
        ));
        let mut sum = 0.0;
        for info in loaded.layer_infos() {
            let one = single_layer(bytes, info.index);
            let m = SequentialModel::load(&one).expect("one-layer model loads");
            let inputs = layer_inputs(bytes, info.index);
            let mut arena = vec![0i8; m.arena_size()];
            let us = time(|i| {
                black_box(m.run(black_box(&inputs[i]), &mut arena).expect("runs"));
            })
            .as_secs_f64()
                * 1e6;
            sum += us;
            let mac = info.macs();
            let rate = if mac > 0 {
                format!("{:.0}", mac as f64 / us)
            } else {
                "-".into()
            };
            let name = match info.layer {
                Layer::Conv2d(c) => format!("conv2d {}x{}", c.kernel_h, c.kernel_w),
                other => other.name().to_string(),
            };
            details.push_str(&format!(
                "| {} | {name} | {} | {} | {mac} | {us:.2} | {rate} |\n",
                info.index, info.input, info.output
            ));
        }
        details.push_str(&format!(
            "\nsum of the layers {sum:.1} µs; whole model {:.1} µs\n",
            t * 1e6
        ));
    }
    println!(
        "\naka-core int8 inference on the host (single thread; classify_u8 including input quantization; fastest of {ROUNDS} rounds)\n"
    );
    println!("| model | file bytes | arena bytes | MACs/image | µs/image | images/s | MMAC/s |");
    println!("|---|---|---|---|---|---|---|");
    for row in summary {
        println!("{row}");
    }
    println!("{details}");
}
