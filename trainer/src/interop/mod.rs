//! PyTorch interop through `safetensors` files (read and written with Hugging Face's
//! `safetensors` crate, never parsed by hand):
//!
//! - [`gpt`]: a [`Gpt`](crate::gpt::Gpt) in the `state_dict` layout of nanoGPT's `GPT` class,
//!   plus a `vocab.json` ([`VocabFile`]);
//! - [`sequential`]: a [`Sequential`](crate::nn::Sequential) classifier in the layout of
//!   PyTorch's `nn.Sequential` (`{index}.weight` / `{index}.bias`).
//!
//! [`SafetensorsFile`] reads any float file into f32 tensors; [`write_safetensors`] writes one.

pub mod gpt;
pub mod sequential;

pub use self::gpt::{gpt_tensors, import_gpt, window_val_loss};
pub use self::sequential::{
    import_sequential, infer_layers, sequential_tensors, LayerSpec, SequentialImport,
};

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, ensure, Context as _};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::train::NamedArray;

/// Metadata key of aka's [`GptConfig`](crate::gpt::GptConfig) (JSON) in GPT files written by
/// `aka-trainer export-safetensors`.
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
    pub fn take(&self, name: &str, shape: &[usize]) -> anyhow::Result<&NamedArray> {
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
