//! PyTorch interop through `safetensors` files (read and written with Hugging Face's
//! `safetensors` crate): a [`Gpt`] in the `state_dict` layout of nanoGPT's `GPT` class, plus a
//! `vocab.json` (`{"itos": ["\n", " ", "!", ...]}`, the characters in token-id order).
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
use std::path::Path;

use anyhow::{bail, ensure, Context as _};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::autograd::{Array, Tensor};
use crate::gpt::{Gpt, GptConfig, GptMlp, GptNorm, GptPosition};
use crate::nn::Module;
use crate::train::NamedArray;

/// Metadata key of aka's [`GptConfig`] (JSON) in files written by [`gpt_tensors`].
pub const CONFIG_KEY: &str = "aka.gpt_config";

/// Largest safetensors file read (bytes): far above any model a microcontroller holds.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// `vocab.json`: the characters in token-id order (nanoGPT's `meta.pkl` `itos`).
#[derive(Debug, Serialize, Deserialize)]
pub struct VocabFile {
    pub itos: Vec<String>,
}

impl VocabFile {
    /// The vocabulary of `chars`.
    pub fn new(chars: &[char]) -> Self {
        Self {
            itos: chars.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// Reads `path`; every entry must be exactly one character.
    pub fn read(path: &Path) -> anyhow::Result<Vec<char>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let file: VocabFile = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}: not a vocabulary file ({{\"itos\": [\"\\n\", \" \", ...]}}, UTF-8 JSON)",
                path.display()
            )
        })?;
        file.itos
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Ok(c),
                    _ => bail!("{}: itos[{i}] is {s:?}, not one character", path.display()),
                }
            })
            .collect()
    }
}

/// The nanoGPT names of `model`'s parameters with their values (see the module docs), for
/// [`write_safetensors`].
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

/// Writes `tensors` (f32) and `metadata` as a safetensors file, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedArray],
    metadata: HashMap<String, String>,
) -> anyhow::Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            let view = safetensors::tensor::TensorView::new(Dtype::F32, t.shape.clone(), b)?;
            Ok((t.name.clone(), view))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .context("preparing the tensors")?;
    let file = safetensors::serialize(views, Some(metadata)).context("encoding safetensors")?;
    crate::io::write_atomic(path, &file).with_context(|| format!("writing {}", path.display()))
}

/// A safetensors file read into f32 tensors (F32, F64, F16 and BF16 are converted), with its
/// metadata.
pub struct SafetensorsFile {
    /// Tensors by name.
    pub tensors: HashMap<String, NamedArray>,
    /// The `__metadata__` map (empty if none).
    pub metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    /// Reads and decodes `path` (at most [`MAX_FILE_BYTES`]).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let name = path.display();
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {name}"))?
            .len();
        ensure!(
            len <= MAX_FILE_BYTES,
            "{name}: {len} bytes, more than the {MAX_FILE_BYTES} this importer reads"
        );
        let bytes = std::fs::read(path).with_context(|| format!("reading {name}"))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{name}: not a valid safetensors file"))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("{name}: not a valid safetensors file"))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let mut tensors = HashMap::new();
        for (tname, view) in st.tensors() {
            let data = to_f32(view.dtype(), view.data())
                .with_context(|| format!("{name}: tensor {tname}"))?;
            let t = NamedArray {
                name: tname.clone(),
                shape: view.shape().to_vec(),
                data,
            };
            tensors.insert(tname, t);
        }
        Ok(Self { tensors, metadata })
    }

    /// The tensor `name`, which must have `shape`.
    fn take(&self, name: &str, shape: &[usize]) -> anyhow::Result<&NamedArray> {
        let t = self
            .tensors
            .get(name)
            .with_context(|| format!("tensor {name} is missing"))?;
        ensure!(
            t.shape == shape,
            "tensor {name} has shape {:?}, expected {shape:?}",
            t.shape
        );
        Ok(t)
    }
}

/// Little-endian `dtype` values as f32.
fn to_f32(dtype: Dtype, data: &[u8]) -> anyhow::Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        other => bail!("dtype {other:?} is not a float type (F32, F64, F16, BF16)"),
    })
}

/// IEEE binary16 to f32 (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1F);
    let frac = f32::from(h & 0x3FF);
    match exp {
        0 => sign * frac * (2f32).powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * (2f32).powi(e - 15),
    }
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
    let wte = file
        .tensors
        .get("transformer.wte.weight")
        .context("tensor transformer.wte.weight is missing (not a nanoGPT-layout file?)")?;
    ensure!(
        wte.shape.len() == 2,
        "tensor transformer.wte.weight has shape {:?}, expected [vocab, C]",
        wte.shape
    );
    let (v, d) = (wte.shape[0], wte.shape[1]);
    ensure!(
        v == vocab_size,
        "transformer.wte.weight has {v} rows but the vocabulary has {vocab_size} characters"
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
                !file.tensors.contains_key("lm_head.weight"),
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
            "tok_emb" => file.take("transformer.wte.weight", &shape)?.data.clone(),
            "pos_emb" => file.take("transformer.wpe.weight", &shape)?.data.clone(),
            "lm_head" => file.take("lm_head.weight", &shape)?.data.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_values() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
        assert_eq!(f16_to_f32(0x7C00), f32::INFINITY);
        assert!(f16_to_f32(0x7E00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    }
}
