//! Issue 12's group-size experiment: how much accuracy int4 weights keep with one scale per
//! output row versus one per group of 32 or 64 inputs, with the float trainer (no file format
//! involved). Each variant replaces the trained weights by their fake-quantized values
//! (`export::quantize::fake_quantize_groups`), evaluates, and restores them.
//!
//! ```text
//! cargo run --release -p aka-trainer --example int4_groups -- mnist mlp runs/mnist-mlp
//! cargo run --release -p aka-trainer --example int4_groups -- mnist cnn runs/mnist-cnn
//! cargo run --release -p aka-trainer --example int4_groups -- gpt runs/gpt [data/tinyshakespeare/input.txt]
//! ```
//!
//! The directory holds the `checkpoint.bin` of `aka-trainer mnist --model M` / `aka-trainer gpt`
//! (default flags). Prints one line per variant: MNIST test accuracy (percent) or GPT validation
//! loss (20 batches of 32, seed 0), and the relative squared weight error `Σ(w-ŵ)²/Σw²`.

use std::path::{Path, PathBuf};

use aka_core::rng::Rng;
use aka_trainer::autograd::Tensor;
use aka_trainer::data::mnist::Mnist;
use aka_trainer::data::text::TextDataset;
use aka_trainer::export::quantize::{
    dequantize, fake_quantize_groups, quantize_rows_int4, Int4Scale, WeightBits,
};
use aka_trainer::nn::{mnist_cnn, mnist_mlp, Layer, Module, Sequential};
use aka_trainer::train::language_model::{evaluate as gpt_eval, load_trained, validation_batches};
use aka_trainer::train::{evaluate, Checkpoint, Loss};
use anyhow::{bail, Context as _};

/// One way of quantizing the weights.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    bits: Option<WeightBits>,
    group: Option<usize>,
    /// int4 with max scaling instead of the clipping search (whole rows only).
    max_scale: bool,
}

const VARIANTS: [Variant; 7] = [
    Variant {
        name: "float",
        bits: None,
        group: None,
        max_scale: false,
    },
    Variant {
        name: "int8 rows",
        bits: Some(WeightBits::Int8),
        group: None,
        max_scale: false,
    },
    Variant {
        name: "int4 rows, max scale",
        bits: Some(WeightBits::Int4),
        group: None,
        max_scale: true,
    },
    Variant {
        name: "int4 rows, clip search",
        bits: Some(WeightBits::Int4),
        group: None,
        max_scale: false,
    },
    Variant {
        name: "int4 groups of 64",
        bits: Some(WeightBits::Int4),
        group: Some(64),
        max_scale: false,
    },
    Variant {
        name: "int4 groups of 32",
        bits: Some(WeightBits::Int4),
        group: Some(32),
        max_scale: false,
    },
    Variant {
        name: "int4 groups of 32, max",
        bits: Some(WeightBits::Int4),
        group: Some(32),
        max_scale: true,
    },
];

/// Fake-quantizes `weights` by `v` in place; returns the float values to restore and the
/// relative squared error.
fn apply(weights: &[Tensor], v: Variant) -> (Vec<Vec<f32>>, f64) {
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    let mut saved = Vec::new();
    for t in weights {
        let rows = t.shape()[0];
        let w: Vec<f32> = t.value().iter().copied().collect();
        let q = match v.bits {
            None => w.clone(),
            Some(bits) if !v.max_scale => fake_quantize_groups(&w, rows, v.group, bits),
            Some(_) => {
                let k = w.len() / rows;
                let g = v.group.unwrap_or(k).min(k);
                let mut out = Vec::with_capacity(w.len());
                for row in w.chunks_exact(k) {
                    for chunk in row.chunks(g) {
                        out.extend(dequantize(&quantize_rows_int4(chunk, 1, Int4Scale::Max)));
                    }
                }
                out
            }
        };
        for (&a, &b) in w.iter().zip(&q) {
            err += ((a - b) as f64).powi(2);
            norm += (a as f64).powi(2);
        }
        t.value_mut().iter_mut().zip(&q).for_each(|(d, &s)| *d = s);
        saved.push(w);
    }
    (saved, err / norm.max(f64::MIN_POSITIVE))
}

fn restore(weights: &[Tensor], saved: Vec<Vec<f32>>) {
    for (t, w) in weights.iter().zip(saved) {
        t.value_mut().iter_mut().zip(w).for_each(|(d, s)| *d = s);
    }
}

fn mnist(kind: &str, dir: &Path) -> anyhow::Result<()> {
    let mut rng = Rng::new(0);
    let model: Sequential = match kind {
        "mlp" => mnist_mlp(&mut rng),
        "cnn" => mnist_cnn(&mut rng),
        _ => bail!("model must be mlp or cnn"),
    };
    let ck = Checkpoint::load(&dir.join(Checkpoint::FILE))?;
    Checkpoint::restore_params(&ck.params, &model)?;
    let mut data = Mnist::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"))?;
    if let Some(norm) = ck.pixel_norm() {
        data.set_norm(norm);
    }
    let weights: Vec<Tensor> = model
        .layers
        .iter()
        .filter_map(|l| match l {
            Layer::Linear(l) => Some(l.weight.clone()),
            Layer::Conv2d(c) => Some(c.weight.clone()),
            _ => None,
        })
        .collect();
    for v in VARIANTS {
        let (saved, rel) = apply(&weights, v);
        let (_, acc) = evaluate(&model, &data.test, Loss::CrossEntropy, 1000);
        restore(&weights, saved);
        println!(
            "{:<26} accuracy {:6.2}%  weight error {rel:.2e}",
            v.name,
            acc * 100.0
        );
    }
    Ok(())
}

fn gpt(dir: &Path, data: &Path) -> anyhow::Result<()> {
    let (model, tokenizer, _) = load_trained(dir)?;
    let text = std::fs::read_to_string(data).with_context(|| data.display().to_string())?;
    let data = TextDataset::with_tokenizer(&text, tokenizer);
    let (batches, block) = validation_batches(&data, 32, model.config().block_size, 20, 0);
    // The matrices the int4 format covers (not the embeddings, nor a tied head).
    let weights: Vec<Tensor> = model
        .parameters()
        .into_iter()
        .filter(|(n, _)| {
            ["wq", "wk", "wv", "wo", "w1", "w2", "w3"]
                .iter()
                .any(|m| n.ends_with(&format!(".{m}")))
                || n == "lm_head"
        })
        .map(|(_, t)| t)
        .collect();
    for v in VARIANTS {
        let (saved, rel) = apply(&weights, v);
        let loss = gpt_eval(&model, &batches, 32, block);
        restore(&weights, saved);
        println!("{:<26} val loss {loss:.4}  weight error {rel:.2e}", v.name);
    }
    // Sensitivity: int4 rows (the exporter's quantization) everywhere but one role kept int8.
    let int4 = VARIANTS[3];
    for role in ["wq", "wk", "wv", "wo", "w1", "w2", "w3", "lm_head"] {
        let keep = |n: &str| n.ends_with(&format!(".{role}")) || n == role;
        let (int8_w, int4_w): (Vec<_>, Vec<_>) = model
            .parameters()
            .into_iter()
            .filter(|(n, _)| weights.iter().any(|w| w.same(&model_param(&model, n))))
            .partition(|(n, _)| keep(n));
        if int8_w.is_empty() {
            continue;
        }
        let int8_w: Vec<Tensor> = int8_w.into_iter().map(|(_, t)| t).collect();
        let int4_w: Vec<Tensor> = int4_w.into_iter().map(|(_, t)| t).collect();
        let (s8, _) = apply(&int8_w, VARIANTS[1]);
        let (s4, _) = apply(&int4_w, int4);
        let loss = gpt_eval(&model, &batches, 32, block);
        restore(&int8_w, s8);
        restore(&int4_w, s4);
        println!("int4 rows, {role:<7} int8      val loss {loss:.4}");
    }
    Ok(())
}

/// The parameter of `model` named `name`.
fn model_param(model: &impl Module, name: &str) -> Tensor {
    model
        .parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .expect("a parameter of the model")
}

fn main() -> anyhow::Result<()> {
    aka_trainer::set_threads(Some(2))?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["mnist", kind, dir] => mnist(kind, Path::new(dir)),
        ["gpt", dir] => gpt(
            Path::new(dir),
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/tinyshakespeare/input.txt"),
        ),
        ["gpt", dir, data] => gpt(Path::new(dir), Path::new(data)),
        _ => bail!("usage: int4_groups mnist mlp|cnn DIR | gpt DIR [TEXT]"),
    }
}
