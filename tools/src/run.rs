//! `aka run`: classify one image with aka-core on the host.

use std::fmt::Write as _;

use aka_core::SequentialModel;
use anyhow::bail;

use crate::input::{resize_area, GreyImage};

/// The result of classifying one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    /// Predicted class (argmax of the int8 scores; ties go to the lowest index).
    pub class: usize,
    /// The class's label from the file, if any.
    pub label: Option<String>,
    /// Raw int8 output scores.
    pub scores: Vec<i8>,
    /// Dequantized scores (`scale * (q - zero_point)`, the logits).
    pub logits: Vec<f32>,
}

/// Converts `img` to the model's input size (area-averaging resize if needed) and classifies it.
pub fn classify(model: &SequentialModel<'_>, img: &GreyImage) -> anyhow::Result<Classification> {
    let shape = model.input_shape();
    if shape.c != 1 {
        bail!("the model expects {shape} inputs (HxWxC); `aka run` feeds single-channel images");
    }
    let img = resize_area(img, shape.w as usize, shape.h as usize);
    let mut arena = vec![0i8; model.arena_size()];
    let (class, scores) = model
        .classify_u8(&img.pixels, &mut arena)
        .map_err(|e| anyhow::anyhow!("running the model: {e}"))?;
    let q = model.output_quant();
    Ok(Classification {
        class,
        label: model.metadata().label(class).map(str::to_string),
        scores: scores.to_vec(),
        logits: scores.iter().map(|&s| q.dequantize(s)).collect(),
    })
}

/// Softmax of the dequantized scores (probabilities if the scores are logits).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// `class: 7 (label "7")` and a table of scores.
pub fn format(model: &SequentialModel<'_>, c: &Classification, truth: Option<u8>) -> String {
    let mut out = String::new();
    let label = c.label.clone().unwrap_or_else(|| c.class.to_string());
    let _ = write!(out, "class: {} (label \"{label}\")", c.class);
    if let Some(t) = truth {
        let truth_label = model
            .metadata()
            .label(t as usize)
            .map_or_else(|| t.to_string(), str::to_string);
        let verdict = if t as usize == c.class {
            "correct"
        } else {
            "WRONG"
        };
        let _ = write!(out, "; true label: \"{truth_label}\" ({verdict})");
    }
    let _ = writeln!(out);
    let probs = softmax(&c.logits);
    let _ = writeln!(out, "scores (dequantized logits, int8 output, softmax):");
    for (i, ((&q, &l), &p)) in c.scores.iter().zip(&c.logits).zip(&probs).enumerate() {
        let name = model
            .metadata()
            .label(i)
            .map_or_else(|| i.to_string(), str::to_string);
        let mark = if i == c.class { "  <-" } else { "" };
        let _ = writeln!(
            out,
            "  {name:>5}  {l:>9.4}  {q:>5}  {:>6.2}%{mark}",
            p * 100.0
        );
    }
    out
}
