//! A [`Sequential`] classifier in the `state_dict` layout of PyTorch's `nn.Sequential`:
//! `{index}.weight` / `{index}.bias`, with the indices PyTorch gives the layers (parameter-free
//! layers included), which are also the names of our [`Sequential::parameters`].
//!
//! The layer kinds are not in the tensors: they come from a list of [`LayerSpec`]s
//! (`--layers flatten,linear,relu,linear`), or from the metadata key [`LAYERS_KEY`] of a file
//! written by `aka-trainer export-safetensors`.
//!
//! | `--layers` item | PyTorch layer | tensors |
//! |---|---|---|
//! | `linear` | `nn.Linear(in, out)` | `{i}.weight` `[out, in]`, `{i}.bias` `[out]` (optional) |
//! | `conv2d:KxK:sS:pP` | `nn.Conv2d(c_in, c_out, K, stride=S, padding=P)` | `{i}.weight` `[c_out, c_in, K, K]` (OIHW), `{i}.bias` `[c_out]` (optional) |
//! | `maxpool2d:K` (`maxpool2d:K:sS`) | `nn.MaxPool2d(K)` (`stride=S`) | none |
//! | `relu` | `nn.ReLU()` | none |
//! | `flatten` | `nn.Flatten()` | none |
//! | `dropout` (`dropout:P`) | `nn.Dropout(P)` (the identity when evaluating) | none |
//!
//! The trainer's layers compute in PyTorch's own layouts (NCHW activations, OIHW kernels,
//! `[out, in]` linear weights), so every tensor is copied unchanged and a `Flatten` after a
//! convolution flattens in PyTorch's C·H·W order: the first `Linear`'s columns mean the same
//! thing in both. The int8 exporter (`export::sequential`) does the conversion to aka-core's NHWC
//! layout (OHWI kernels, the first `Linear`'s columns permuted to H·W·C order) for every model,
//! trained here or imported.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use anyhow::{bail, ensure, Context as _};
use ndarray::IxDyn;

use super::SafetensorsFile;
use crate::autograd::{Array, Tensor};
use crate::nn::{Conv2d, Dropout, Flatten, Layer, Linear, MaxPool2d, ReLU, Sequential};
use crate::train::NamedArray;

/// Metadata key of the `--layers` list (e.g. `flatten,linear,relu,linear`) in Sequential files
/// written by `aka-trainer export-safetensors`.
pub const LAYERS_KEY: &str = "aka.sequential_layers";
/// Metadata key of the input shape (`HxWxC`, e.g. `28x28x1`).
pub const INPUT_KEY: &str = "aka.input";
/// Metadata key of the pixel normalization (JSON `{"mean": M, "std": S}`: pixel `p` is fed as
/// `(p / 255 - M) / S`).
pub const PIXEL_NORM_KEY: &str = "aka.pixel_norm";

/// One layer of an `nn.Sequential`, as written in `--layers` (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerSpec {
    /// `linear`.
    Linear,
    /// `conv2d[:KxK][:sS][:pP]`: kernel side (checked against the weight's shape when given),
    /// stride (default 1) and zero padding (default 0), PyTorch's defaults.
    Conv2d {
        /// Kernel side, if given.
        kernel: Option<usize>,
        /// Stride.
        stride: usize,
        /// Zero padding on every side.
        padding: usize,
    },
    /// `maxpool2d:K[:sS]` (stride defaults to the window, as in PyTorch).
    MaxPool2d {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// `relu`.
    Relu,
    /// `flatten`.
    Flatten,
    /// `dropout[:P]` (default 0.5, as in PyTorch; the identity when evaluating).
    Dropout {
        /// Drop probability (only used if the model is trained further).
        p: f32,
    },
}

impl LayerSpec {
    /// Parses a comma-separated `--layers` list.
    pub fn parse_list(list: &str) -> anyhow::Result<Vec<LayerSpec>> {
        let layers = list
            .split(',')
            .enumerate()
            .map(|(i, item)| {
                LayerSpec::parse(item.trim()).with_context(|| format!("--layers item {i}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        ensure!(!layers.is_empty(), "--layers is empty");
        Ok(layers)
    }

    /// Parses one `--layers` item.
    pub fn parse(item: &str) -> anyhow::Result<LayerSpec> {
        const KNOWN: &str =
            "linear, conv2d[:KxK][:sS][:pP], maxpool2d:K[:sS], relu, flatten, dropout[:P]";
        let mut parts = item.split(':');
        let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
        let opts: Vec<&str> = parts.collect();
        let number = |s: &str, what: &str| -> anyhow::Result<usize> {
            s.parse::<usize>()
                .ok()
                .filter(|&n| n >= 1 || what == "padding")
                .with_context(|| format!("{item:?}: {what} {s:?} is not a whole number >= 1"))
        };
        let no_opts = |spec: LayerSpec| -> anyhow::Result<LayerSpec> {
            ensure!(opts.is_empty(), "{item:?}: {kind} takes no options");
            Ok(spec)
        };
        match kind.as_str() {
            "linear" => no_opts(LayerSpec::Linear),
            "relu" => no_opts(LayerSpec::Relu),
            "flatten" => no_opts(LayerSpec::Flatten),
            "dropout" => match opts[..] {
                [] => Ok(LayerSpec::Dropout { p: 0.5 }),
                [p] => {
                    let p: f32 = p
                        .parse()
                        .ok()
                        .filter(|p| (0.0..1.0).contains(p))
                        .with_context(|| format!("{item:?}: the probability must be in [0, 1)"))?;
                    Ok(LayerSpec::Dropout { p })
                }
                _ => bail!("{item:?}: expected dropout or dropout:P"),
            },
            "maxpool2d" => {
                let kernel = number(
                    opts.first()
                        .with_context(|| format!("{item:?}: expected maxpool2d:K[:sS]"))?,
                    "window",
                )?;
                let stride = match opts.get(1..) {
                    Some([]) | None => kernel,
                    Some([s]) if s.starts_with('s') => number(&s[1..], "stride")?,
                    _ => bail!("{item:?}: expected maxpool2d:K[:sS]"),
                };
                Ok(LayerSpec::MaxPool2d { kernel, stride })
            }
            "conv2d" => {
                let (mut kernel, mut stride, mut padding) = (None, 1, 0);
                for opt in opts {
                    if let Some(s) = opt.strip_prefix('s') {
                        stride = number(s, "stride")?;
                    } else if let Some(p) = opt.strip_prefix('p') {
                        padding = number(p, "padding")?;
                    } else if let Some((a, b)) = opt.split_once('x') {
                        let (a, b) = (number(a, "kernel")?, number(b, "kernel")?);
                        ensure!(a == b, "{item:?}: only square kernels are supported");
                        kernel = Some(a);
                    } else {
                        bail!("{item:?}: {opt:?} is not KxK, sS or pP");
                    }
                }
                Ok(LayerSpec::Conv2d {
                    kernel,
                    stride,
                    padding,
                })
            }
            "" => bail!("empty item (expected one of {KNOWN})"),
            other => bail!("{other:?} is not a supported layer (supported: {KNOWN})"),
        }
    }

    /// The spec of one of our layers (what `--layers` would say for it).
    pub fn of(layer: &Layer) -> LayerSpec {
        match layer {
            Layer::Linear(_) => LayerSpec::Linear,
            Layer::Conv2d(c) => LayerSpec::Conv2d {
                kernel: Some(c.weight.shape()[2]),
                stride: c.stride,
                padding: c.padding,
            },
            Layer::MaxPool2d(p) => LayerSpec::MaxPool2d {
                kernel: p.kernel,
                stride: p.stride,
            },
            Layer::ReLU(_) => LayerSpec::Relu,
            Layer::Flatten(_) => LayerSpec::Flatten,
            Layer::Dropout(d) => LayerSpec::Dropout { p: d.p },
        }
    }

    /// Whether the layer has tensors.
    fn has_parameters(&self) -> bool {
        matches!(self, LayerSpec::Linear | LayerSpec::Conv2d { .. })
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerSpec::Linear => write!(f, "linear"),
            LayerSpec::Relu => write!(f, "relu"),
            LayerSpec::Flatten => write!(f, "flatten"),
            LayerSpec::Dropout { p } => write!(f, "dropout:{p}"),
            LayerSpec::MaxPool2d { kernel, stride } if kernel == stride => {
                write!(f, "maxpool2d:{kernel}")
            }
            LayerSpec::MaxPool2d { kernel, stride } => write!(f, "maxpool2d:{kernel}:s{stride}"),
            LayerSpec::Conv2d {
                kernel,
                stride,
                padding,
            } => {
                write!(f, "conv2d")?;
                if let Some(k) = kernel {
                    write!(f, ":{k}x{k}")?;
                }
                write!(f, ":s{stride}:p{padding}")
            }
        }
    }
}

/// `layers` as a `--layers` list.
pub fn format_layers(layers: &[LayerSpec]) -> String {
    layers
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The `--layers` list of `model`.
pub fn infer_layers(model: &Sequential) -> Vec<LayerSpec> {
    model.layers.iter().map(LayerSpec::of).collect()
}

/// Parses an input shape `HxWxC` (e.g. `28x28x1`) into `[h, w, c]`.
pub fn parse_input(s: &str) -> anyhow::Result<[usize; 3]> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d >= 1))
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("input shape {s:?} is not HxWxC (e.g. 28x28x1)"))?;
    match dims[..] {
        [h, w, c] => Ok([h, w, c]),
        _ => bail!("input shape {s:?} is not HxWxC (e.g. 28x28x1)"),
    }
}

/// What [`import_sequential`] built.
pub struct SequentialImport {
    /// The model, with the file's values.
    pub model: Sequential,
    /// Features of the last layer's output (the number of classes).
    pub outputs: usize,
}

/// The activation shape while checking the layers.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `[c, h, w]` (NCHW without the batch).
    Image(usize, usize, usize),
    /// `[n]`.
    Flat(usize),
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Image(c, h, w) => write!(f, "{c} channels of {h}x{w}"),
            Shape::Flat(n) => write!(f, "{n} features"),
        }
    }
}

/// Builds a [`Sequential`] from an `nn.Sequential` file: `layers` say what each index is,
/// `input` is `[h, w, c]`. Every tensor's shape is checked against the activations flowing
/// through the layers, and every tensor of the file must belong to a layer; errors name the
/// tensor (or the `--layers` item).
pub fn import_sequential(
    file: &SafetensorsFile,
    layers: &[LayerSpec],
    input: [usize; 3],
) -> anyhow::Result<SequentialImport> {
    let [h, w, c] = input;
    let mut shape = Shape::Image(c, h, w);
    let mut used = BTreeSet::new();
    let mut out: Vec<Layer> = Vec::with_capacity(layers.len());
    let tensor = |name: String, shape: &[usize]| -> anyhow::Result<Tensor> {
        let t = file.take(&name, shape)?;
        Ok(Tensor::param(
            Array::from_shape_vec(IxDyn(shape), t.data.clone()).expect("shape checked"),
        ))
    };
    for (i, spec) in layers.iter().enumerate() {
        let (weight, bias) = (format!("{i}.weight"), format!("{i}.bias"));
        let bias_of = |n: usize| -> anyhow::Result<Option<Tensor>> {
            match file.tensors.contains_key(&bias) {
                true => Ok(Some(tensor(bias.clone(), &[n])?)),
                false => Ok(None),
            }
        };
        let layer: Layer =
            match (*spec, shape) {
                (LayerSpec::Linear, Shape::Flat(n)) => {
                    let t = file.tensors.get(&weight).with_context(|| {
                        format!("tensor {weight} (layer {i}, linear) is missing")
                    })?;
                    ensure!(
                        t.shape.len() == 2 && t.shape[1] == n,
                        "tensor {weight} has shape {:?}, expected [out, {n}] (layer {i}, linear, \
                     gets {shape})",
                        t.shape
                    );
                    let o = t.shape[0];
                    shape = Shape::Flat(o);
                    Linear {
                        weight: tensor(weight.clone(), &[o, n])?,
                        bias: bias_of(o)?,
                    }
                    .into()
                }
                (LayerSpec::Linear, Shape::Image(..)) => {
                    bail!("--layers item {i} (linear) gets {shape}: put a flatten before it")
                }
                (
                    LayerSpec::Conv2d {
                        kernel,
                        stride,
                        padding,
                    },
                    Shape::Image(c, h, w),
                ) => {
                    let t = file.tensors.get(&weight).with_context(|| {
                        format!("tensor {weight} (layer {i}, conv2d) is missing")
                    })?;
                    let k = kernel.unwrap_or(t.shape.get(2).copied().unwrap_or(0));
                    ensure!(
                    t.shape.len() == 4 && t.shape[1] == c && t.shape[2] == k && t.shape[3] == k,
                    "tensor {weight} has shape {:?}, expected [c_out, {c}, {k}, {k}] (layer {i}, \
                     conv2d, OIHW, gets {shape})",
                    t.shape
                );
                    ensure!(
                        h + 2 * padding >= k && w + 2 * padding >= k,
                        "--layers item {i} ({spec}): a {k}x{k} kernel does not fit {shape}"
                    );
                    let o = t.shape[0];
                    shape = Shape::Image(
                        o,
                        (h + 2 * padding - k) / stride + 1,
                        (w + 2 * padding - k) / stride + 1,
                    );
                    Conv2d {
                        weight: tensor(weight.clone(), &[o, c, k, k])?,
                        bias: bias_of(o)?,
                        stride,
                        padding,
                    }
                    .into()
                }
                (LayerSpec::MaxPool2d { kernel, stride }, Shape::Image(c, h, w)) => {
                    ensure!(
                        h >= kernel && w >= kernel,
                        "--layers item {i} ({spec}): the window does not fit {shape}"
                    );
                    shape = Shape::Image(c, (h - kernel) / stride + 1, (w - kernel) / stride + 1);
                    MaxPool2d { kernel, stride }.into()
                }
                (LayerSpec::Conv2d { .. } | LayerSpec::MaxPool2d { .. }, Shape::Flat(_)) => {
                    bail!("--layers item {i} ({spec}) gets {shape}, not an image")
                }
                (LayerSpec::Flatten, s) => {
                    shape = match s {
                        Shape::Image(c, h, w) => Shape::Flat(c * h * w),
                        flat => flat,
                    };
                    Flatten.into()
                }
                (LayerSpec::Relu, _) => ReLU.into(),
                (LayerSpec::Dropout { p }, _) => Dropout { p }.into(),
            };
        if spec.has_parameters() {
            used.insert(weight);
            used.insert(bias);
        }
        out.push(layer);
    }
    let mut extra: Vec<&String> = file.tensors.keys().filter(|k| !used.contains(*k)).collect();
    extra.sort();
    if let Some(name) = extra.first() {
        let index = name.split('.').next().and_then(|i| i.parse::<usize>().ok());
        match index.and_then(|i| layers.get(i).map(|l| (i, l))) {
            Some((i, l)) => bail!(
                "tensor {name} belongs to layer {i}, which --layers says is {l} (no parameters)"
            ),
            None => bail!(
                "tensor {name} does not belong to any of the {} layers of --layers",
                layers.len()
            ),
        }
    }
    let Shape::Flat(outputs) = shape else {
        bail!("the last layer gives {shape}: a classifier ends with features (add flatten/linear)");
    };
    Ok(SequentialImport {
        model: Sequential::new(out),
        outputs,
    })
}

/// `model`'s parameters under their `nn.Sequential` names (`{index}.weight` / `.bias`), for
/// [`write_safetensors`](super::write_safetensors).
/// (The checkpoint's capture: the trainer's parameter names are already PyTorch's.)
pub fn sequential_tensors(model: &Sequential) -> Vec<NamedArray> {
    crate::train::Checkpoint::capture_params(model)
}

/// The metadata of a Sequential file: the layers, the input shape and the pixel normalization.
pub fn sequential_metadata(
    layers: &[LayerSpec],
    input: [usize; 3],
    pixel_mean: f32,
    pixel_std: f32,
) -> HashMap<String, String> {
    let [h, w, c] = input;
    HashMap::from([
        (LAYERS_KEY.to_string(), format_layers(layers)),
        (INPUT_KEY.to_string(), format!("{h}x{w}x{c}")),
        (
            PIXEL_NORM_KEY.to_string(),
            serde_json::json!({ "mean": pixel_mean, "std": pixel_std }).to_string(),
        ),
        ("format".to_string(), "pt".to_string()),
    ])
}

/// The pixel normalization recorded in a file written by aka, as `(mean, std)`.
pub fn recorded_pixel_norm(file: &SafetensorsFile) -> anyhow::Result<Option<(f32, f32)>> {
    let Some(json) = file.metadata.get(PIXEL_NORM_KEY) else {
        return Ok(None);
    };
    #[derive(serde::Deserialize)]
    struct Norm {
        mean: f32,
        std: f32,
    }
    let n: Norm = serde_json::from_str(json)
        .with_context(|| format!("metadata {PIXEL_NORM_KEY} is not {{\"mean\": M, \"std\": S}}"))?;
    Ok(Some((n.mean, n.std)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_lists_parse_and_print_back() {
        let text = "conv2d:3x3:s1:p1,relu,maxpool2d:2,conv2d:5x5:s2:p0,maxpool2d:3:s1,flatten,\
                    dropout:0.25,linear";
        let layers = LayerSpec::parse_list(text).unwrap();
        assert_eq!(format_layers(&layers), text);
        assert_eq!(
            LayerSpec::parse("conv2d").unwrap(),
            LayerSpec::Conv2d {
                kernel: None,
                stride: 1,
                padding: 0
            }
        );
        assert_eq!(
            LayerSpec::parse("dropout").unwrap(),
            LayerSpec::Dropout { p: 0.5 }
        );
        for bad in [
            "lstm",
            "linear:3",
            "conv2d:3x5",
            "conv2d:q1",
            "maxpool2d",
            "maxpool2d:0",
            "dropout:1.5",
            "",
        ] {
            assert!(LayerSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_input("28x28x1").unwrap(), [28, 28, 1]);
        assert!(parse_input("28x28").is_err());
        assert!(parse_input("0x28x1").is_err());
    }
}
