//! A [`Gpt`] in the `state_dict` layout of nanoGPT's `GPT` class, plus a `vocab.json`
//! (`{"itos": ["\n", " ", "!", ...]}`, the characters in token-id order, see
//! [`VocabFile`](super::VocabFile)).
//!
//! | aka parameter | nanoGPT tensor |
//! |---|---|
//! | `tok_emb` `[V, C]` | `transformer.wte.weight` |
//! | `pos_emb` `[block, C]` (learned positions) | `transformer.wpe.weight` |
//! | `blocks.{i}.ln1.weight` / `.bias` | `transformer.h.{i}.ln_1.weight` / `.bias` |
//! | `blocks.{i}.attn.wq`, `wk`, `wv` `[C, C]` | rows `0..C`, `C..2C`, `2C..3C` of `transformer.h.{i}.attn.c_attn.weight` `[3C, C]` |
//! | `blocks.{i}.attn.wo` | `transformer.h.{i}.attn.c_proj.weight` |
//! | `blocks.{i}.ln2.weight` / `.bias` | `transformer.h.{i}.ln_2.weight` / `.bias` |
//! | `blocks.{i}.mlp.w1` `[4C, C]` | `transformer.h.{i}.mlp.c_fc.weight` |
//! | `blocks.{i}.mlp.w2` `[C, 4C]` | `transformer.h.{i}.mlp.c_proj.weight` |
//! | `blocks.{i}.mlp.w3` (gated MLPs, aka only) | `transformer.h.{i}.mlp.c_gate.weight` |
//! | `ln_f.weight` / `.bias` | `transformer.ln_f.weight` / `.bias` |
//! | `lm_head` (untied head) | `lm_head.weight` (absent when tied: `safetensors` drops shared tensors) |
//!
//! Both use PyTorch's `Linear` layout (`[out, in]`), so no tensor is transposed. A file written
//! here records aka's [`GptConfig`] as JSON under the metadata key [`CONFIG_KEY`]; [`import_gpt`]
//! honours it. A file without it (from PyTorch) has nanoGPT's semantics: learned positions,
//! LayerNorm (a missing bias is `bias=False`: zeros), an MLP of width `4C` with the exact (erf)
//! GELU ([`GptMlp::GeluErf`]).

use std::collections::HashMap;

use anyhow::{bail, ensure, Context as _};

use super::{SafetensorsFile, CONFIG_KEY};
use crate::autograd::{Array, Tensor};
use crate::data::text::{Split, TextDataset};
use crate::export::gpt::evaluate_float;
use crate::gpt::{Gpt, GptConfig, GptMlp, GptNorm, GptPosition};
use crate::nn::Module;
use crate::train::NamedArray;

/// nanoGPT's token embedding.
const WTE: &str = "transformer.wte.weight";
/// nanoGPT's output head (tied to [`WTE`]).
const LM_HEAD: &str = "lm_head.weight";

/// The nanoGPT names of `model`'s parameters with their values (see the module docs), for
/// [`write_safetensors`](super::write_safetensors).
pub fn gpt_tensors(model: &Gpt) -> Vec<NamedArray> {
    let params: HashMap<String, Tensor> = model.parameters().into_iter().collect();
    let get = |name: &str| -> (Vec<usize>, Vec<f32>) {
        let v = params[name].value();
        (v.shape().to_vec(), v.iter().copied().collect())
    };
    let mut out = Vec::new();
    let mut put = |name: String, (shape, data): (Vec<usize>, Vec<f32>)| {
        out.push(NamedArray { name, shape, data });
    };
    let config = model.config();
    put("transformer.wte.weight".into(), get("tok_emb"));
    if config.position == GptPosition::Learned {
        put("transformer.wpe.weight".into(), get("pos_emb"));
    }
    for i in 0..config.n_layer {
        let (b, h) = (format!("blocks.{i}"), format!("transformer.h.{i}"));
        for (ours, theirs) in [("ln1", "ln_1"), ("ln2", "ln_2")] {
            put(
                format!("{h}.{theirs}.weight"),
                get(&format!("{b}.{ours}.weight")),
            );
            if config.norm == GptNorm::LayerNorm {
                put(
                    format!("{h}.{theirs}.bias"),
                    get(&format!("{b}.{ours}.bias")),
                );
            }
        }
        let d = config.d_model;
        let mut qkv = Vec::with_capacity(3 * d * d);
        for w in ["wq", "wk", "wv"] {
            qkv.extend(get(&format!("{b}.attn.{w}")).1);
        }
        put(format!("{h}.attn.c_attn.weight"), (vec![3 * d, d], qkv));
        put(
            format!("{h}.attn.c_proj.weight"),
            get(&format!("{b}.attn.wo")),
        );
        put(format!("{h}.mlp.c_fc.weight"), get(&format!("{b}.mlp.w1")));
        put(
            format!("{h}.mlp.c_proj.weight"),
            get(&format!("{b}.mlp.w2")),
        );
        if config.mlp.is_gated() {
            put(
                format!("{h}.mlp.c_gate.weight"),
                get(&format!("{b}.mlp.w3")),
            );
        }
    }
    put("transformer.ln_f.weight".into(), get("ln_f.weight"));
    if config.norm == GptNorm::LayerNorm {
        put("transformer.ln_f.bias".into(), get("ln_f.bias"));
    }
    if !config.tied_head {
        put("lm_head.weight".into(), get("lm_head"));
    }
    out
}

/// The [`GptConfig`] recorded in an aka file, if any.
fn recorded_config(file: &SafetensorsFile) -> anyhow::Result<Option<GptConfig>> {
    file.metadata
        .get(CONFIG_KEY)
        .map(|json| {
            serde_json::from_str(json)
                .with_context(|| format!("metadata {CONFIG_KEY} is not an aka GPT configuration"))
        })
        .transpose()
}

/// Builds a [`Gpt`] from a nanoGPT-layout file (see the module docs): the sizes come from the
/// shapes, the head count from `heads` (or the recorded configuration), the vocabulary size
/// must be `vocab_size`.
pub fn import_gpt(
    file: &SafetensorsFile,
    vocab_size: usize,
    heads: Option<usize>,
) -> anyhow::Result<Gpt> {
    // `safetensors.torch.save_model` keeps one name of a shared tensor, and of nanoGPT's tied
    // `lm_head.weight` / `transformer.wte.weight` it keeps the first in sorted order: the head.
    let wte_key = if !file.tensors.contains_key(WTE) && file.tensors.contains_key(LM_HEAD) {
        LM_HEAD
    } else {
        WTE
    };
    let wte = file
        .tensors
        .get(wte_key)
        .context("tensor transformer.wte.weight is missing (not a nanoGPT-layout file?)")?;
    ensure!(
        wte.shape.len() == 2,
        "tensor {wte_key} has shape {:?}, expected [vocab, C]",
        wte.shape
    );
    let (v, d) = (wte.shape[0], wte.shape[1]);
    ensure!(
        v == vocab_size,
        "tensor {wte_key} has {v} rows but the vocabulary has {vocab_size} characters"
    );
    let n_layer = (0..)
        .take_while(|i| {
            file.tensors
                .contains_key(&format!("transformer.h.{i}.attn.c_attn.weight"))
        })
        .count();
    ensure!(
        n_layer >= 1,
        "tensor transformer.h.0.attn.c_attn.weight is missing"
    );
    for i in 0..n_layer {
        for p in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"] {
            let bias = format!("transformer.h.{i}.{p}.bias");
            ensure!(
                !file.tensors.contains_key(&bias),
                "tensor {bias}: projections with biases (nanoGPT's bias=True) are not supported; \
                 train with bias=False"
            );
        }
    }
    let config = match recorded_config(file)? {
        Some(c) => {
            if let Some(h) = heads {
                ensure!(
                    h == c.n_head,
                    "--heads {h}, but the file was written with {} heads",
                    c.n_head
                );
            }
            ensure!(
                c.d_model == d && c.vocab_size == v && c.n_layer == n_layer,
                "the recorded configuration ({} layers, {} dims, vocab {}) does not match the \
                 tensors ({n_layer} layers, {d} dims, vocab {v})",
                c.n_layer,
                c.d_model,
                c.vocab_size
            );
            c
        }
        None => {
            let n_head = heads.context("--heads is needed: the file does not record it")?;
            let wpe = file
                .tensors
                .get("transformer.wpe.weight")
                .context("tensor transformer.wpe.weight is missing")?;
            ensure!(
                wpe.shape.len() == 2 && wpe.shape[1] == d,
                "tensor transformer.wpe.weight has shape {:?}, expected [block, {d}]",
                wpe.shape
            );
            GptConfig::sized(n_layer, n_head, d, wpe.shape[0], v).variant(
                GptPosition::Learned,
                GptNorm::LayerNorm,
                GptMlp::GeluErf,
                wte_key == LM_HEAD || !file.tensors.contains_key(LM_HEAD),
            )
        }
    };
    ensure!(
        d % config.n_head == 0,
        "--heads {} does not divide the width {d}",
        config.n_head
    );
    config.validate()?;
    let hidden = config.hidden();
    let mut tensors = Vec::new();
    for (name, shape) in config.parameter_shapes() {
        let values: Vec<f32> = match name.as_str() {
            "tok_emb" => file.take(wte_key, &shape)?.data.clone(),
            "pos_emb" => file.take("transformer.wpe.weight", &shape)?.data.clone(),
            "lm_head" => file.take(LM_HEAD, &shape)?.data.clone(),
            "ln_f.weight" => file.take("transformer.ln_f.weight", &shape)?.data.clone(),
            "ln_f.bias" => norm_bias(file, "transformer.ln_f.bias", &shape)?,
            _ => block_tensor(file, &name, &shape, d, hidden)?,
        };
        tensors.push(Tensor::param(
            Array::from_shape_vec(ndarray::IxDyn(&shape), values).expect("shape checked"),
        ));
    }
    Gpt::from_tensors(config, tensors)
}

/// A LayerNorm bias, or zeros if the file has none (nanoGPT's `bias=False`).
fn norm_bias(file: &SafetensorsFile, name: &str, shape: &[usize]) -> anyhow::Result<Vec<f32>> {
    match file.tensors.get(name) {
        Some(_) => Ok(file.take(name, shape)?.data.clone()),
        None => Ok(vec![0.0; shape.iter().product()]),
    }
}

/// `blocks.{i}.…` from the file's `transformer.h.{i}.…` tensors.
fn block_tensor(
    file: &SafetensorsFile,
    name: &str,
    shape: &[usize],
    d: usize,
    hidden: usize,
) -> anyhow::Result<Vec<f32>> {
    let rest = name
        .strip_prefix("blocks.")
        .context("unexpected parameter")?;
    let (i, what) = rest.split_once('.').context("unexpected parameter")?;
    let h = format!("transformer.h.{i}");
    let qkv = |part: usize| -> anyhow::Result<Vec<f32>> {
        let t = file.take(&format!("{h}.attn.c_attn.weight"), &[3 * d, d])?;
        Ok(t.data[part * d * d..(part + 1) * d * d].to_vec())
    };
    Ok(match what {
        "ln1.weight" => file.take(&format!("{h}.ln_1.weight"), shape)?.data.clone(),
        "ln1.bias" => norm_bias(file, &format!("{h}.ln_1.bias"), shape)?,
        "ln2.weight" => file.take(&format!("{h}.ln_2.weight"), shape)?.data.clone(),
        "ln2.bias" => norm_bias(file, &format!("{h}.ln_2.bias"), shape)?,
        "attn.wq" => qkv(0)?,
        "attn.wk" => qkv(1)?,
        "attn.wv" => qkv(2)?,
        "attn.wo" => file
            .take(&format!("{h}.attn.c_proj.weight"), shape)?
            .data
            .clone(),
        "mlp.w1" => file
            .take(&format!("{h}.mlp.c_fc.weight"), &[hidden, d])?
            .data
            .clone(),
        "mlp.w2" => file
            .take(&format!("{h}.mlp.c_proj.weight"), &[d, hidden])?
            .data
            .clone(),
        "mlp.w3" => file
            .take(&format!("{h}.mlp.c_gate.weight"), shape)?
            .data
            .clone(),
        _ => bail!("unexpected parameter {name}"),
    })
}

/// The float model's mean loss (nats per token) over **all** non-overlapping windows of
/// `block` tokens of `data`'s validation split (window `k`: tokens `k·block .. (k+1)·block`,
/// predicting the next token at each position), and the number of windows. This is the
/// comparison PyTorch's fixtures record next to the sampled validation batches.
pub fn window_val_loss(model: &Gpt, data: &TextDataset, block: usize) -> (f64, usize) {
    let val = data.split(Split::Val);
    let block = block.min(val.len().saturating_sub(1));
    if block == 0 {
        return (f64::NAN, 0);
    }
    let windows = (val.len() - 1) / block;
    let ids = |r: std::ops::Range<usize>| val[r].iter().map(|&t| t as usize).collect::<Vec<_>>();
    let (mut sum, mut tokens) = (0.0f64, 0usize);
    for first in (0..windows).step_by(64) {
        let n = 64.min(windows - first);
        let (x, y) = (
            ids(first * block..(first + n) * block),
            ids(first * block + 1..(first + n) * block + 1),
        );
        let eval = evaluate_float(model, &vec![(x, y)], n, block);
        sum += eval.loss() * (n * block) as f64;
        tokens += n * block;
    }
    (sum / tokens as f64, windows)
}
