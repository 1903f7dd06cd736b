//! aka-core int8 inference on the host: time per image and MAC throughput of the exported MNIST
//! MLP and CNN, single thread, with a per-layer breakdown. Prints markdown tables.
//!
//! `cargo bench -p aka-tests --bench inference`
//!
//! The models are trained briefly in memory (1 epoch on 6000 images: the kernels are dense, so
//! the time does not depend on how well the weights are trained), exported exactly like
//! `aka-trainer mnist` does, and run through `SequentialModel::classify_u8` on the test images.
//! Per-layer times come from running the model truncated after each layer (same bytes, fewer
//! layers) and taking differences.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aka_core::SequentialModel;
use aka_tests::{export, mnist, prefix_model, train_model, Kind};
use aka_trainer::export::{layer_macs, model_macs};

/// Measurement rounds per timing; the fastest round counts (robust to other load on the machine).
const ROUNDS: usize = 7;
/// Duration of one round.
const ROUND: Duration = Duration::from_millis(250);

/// Time per image of `classify_u8` over the test images: the fastest of [`ROUNDS`] rounds.
fn time_per_image(bytes: &[u8]) -> Duration {
    let model = SequentialModel::load(bytes).expect("valid model");
    let test = &mnist().test;
    let mut arena = vec![0i8; model.arena_size()];
    // Warm-up.
    for i in 0..200 {
        black_box(model.classify_u8(test.image(i), &mut arena).expect("runs"));
    }
    let mut best = Duration::MAX;
    let mut next = 0usize;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < ROUND {
            for _ in 0..100 {
                let img = test.image(next % test.len());
                next += 1;
                black_box(model.classify_u8(black_box(img), &mut arena).expect("runs"));
            }
            n += 100;
        }
        best = best.min(start.elapsed() / n);
    }
    best
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that names neither model skips both.
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
        let macs = model_macs(&loaded);
        let t = time_per_image(bytes);
        let us = t.as_secs_f64() * 1e6;
        summary.push(format!(
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0} |",
            kind.name(),
            bytes.len(),
            loaded.arena_size(),
            macs,
            us,
            1e6 / us,
            macs as f64 / t.as_secs_f64() / 1e6
        ));

        details.push_str(&format!(
            "\n{} per layer (model truncated after each layer, differences):\n\n| # | layer | output | MACs | µs | MMAC/s |\n|---|---|---|---|---|---|\n",
            kind.name()
        ));
        let mut previous = 0.0f64;
        for info in loaded.layer_infos() {
            let us_prefix = time_per_image(&prefix_model(bytes, info.index)).as_secs_f64() * 1e6;
            let layer_us = (us_prefix - previous).max(0.0);
            previous = us_prefix;
            let m = layer_macs(&info);
            let rate = if m > 0 && layer_us > 0.0 {
                format!("{:.0}", m as f64 / layer_us)
            } else {
                "-".into()
            };
            details.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} | {} |\n",
                info.index,
                info.layer.name(),
                info.output,
                m,
                layer_us,
                rate
            ));
        }
    }
    println!("\naka-core int8 inference on the host (single thread, classify_u8 including input quantization; best of 7 rounds)\n");
    println!("| model | file bytes | arena bytes | MACs/image | µs/image | images/s | MMAC/s |");
    println!("|---|---|---|---|---|---|---|");
    for row in summary {
        println!("{row}");
    }
    println!("{details}");
}
