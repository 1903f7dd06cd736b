//! `aka inspect`: a readable description of a model file.

use std::fmt::Write as _;

use aka_core::format::{
    GptMlp, GptNorm, GptPosition, Layer, Metadata, NormParams, QMatrix, QuantParams, WeightType,
};
use aka_core::gpt::GptModel;
use aka_core::SequentialModel;

use crate::model::Model;

/// `1234567` → `"1,234,567"`.
/// [`thousands`] of a checked count, or `"overflow"` when it does not fit in a `u64`.
pub fn count(n: Option<u64>) -> String {
    n.map_or_else(|| "overflow".to_string(), thousands)
}

/// `1234567` -> `"1,234,567"`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn quant(q: QuantParams) -> String {
    format!("scale {:.6} zp {}", q.scale, q.zero_point)
}

fn percent(v: f32) -> String {
    if v.is_nan() {
        "unknown".into()
    } else {
        format!("{v:.2}%")
    }
}

/// The metadata block shared by all body kinds.
pub fn metadata(out: &mut String, meta: &Metadata<'_>) {
    let labels: Vec<&str> = meta.labels().collect();
    let _ = writeln!(out, "task          {:?}", meta.task);
    if labels.is_empty() {
        let _ = writeln!(out, "labels        (none)");
    } else {
        let _ = writeln!(out, "labels        {} : {}", labels.len(), labels.join(" "));
    }
    let _ = writeln!(
        out,
        "accuracy      float {}, quantized {} (test set, recorded at export)",
        percent(meta.float_accuracy),
        percent(meta.int8_accuracy)
    );
    write_provenance(out, meta);
}

/// Describes any loaded model.
pub fn describe(model: &Model<'_>, file_name: &str) -> String {
    match model {
        Model::Sequential(m) => describe_sequential(m, file_name),
        Model::Gpt(m) => describe_gpt(m, file_name),
    }
}

/// Prints `rows` as a table: column `i` right-aligned if `right[i]`, the last column unpadded;
/// a rule under the header, and a rule before the last row if `total_row`.
fn table(
    out: &mut String,
    headers: &[&str],
    right: &[bool],
    rows: &[Vec<String>],
    total_row: bool,
) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, (c, &w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else if right.get(i).copied().unwrap_or(false) {
                let _ = write!(s, "{c:>w$}  ");
            } else {
                let _ = write!(s, "{c:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    line(out, &header);
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    line(out, &rule);
    for (i, r) in rows.iter().enumerate() {
        if total_row && i + 1 == rows.len() {
            line(out, &rule);
        }
        line(out, r);
    }
}

fn loss(v: f32) -> String {
    if v.is_nan() {
        "unknown".into()
    } else {
        format!("{v:.4}")
    }
}

/// One parameter tensor of a GPT: name, shape, parameter count, int8 bytes, f32 bytes.
struct Tensor {
    block: String,
    name: String,
    shape: String,
    params: u64,
    int8: u64,
    f32s: u64,
    note: String,
    /// A weight matrix's type, rows and columns (`None` for the other tensors).
    matrix: Option<(WeightType, u64, u64)>,
}

fn qmatrix(block: &str, name: &str, rows: u32, cols: u32, m: &QMatrix<'_>, note: &str) -> Tensor {
    let wt = m.weight_type;
    // `int8-offset + i32 row constant + f32 scale per row`.
    let wt_text = match wt {
        WeightType::Int8Offset => format!("{wt} (offset-binary) + i32 constant"),
        _ => wt.to_string(),
    };
    Tensor {
        block: block.into(),
        name: name.into(),
        shape: format!("{rows}x{cols}"),
        params: rows as u64 * cols as u64,
        int8: m.weights.len() as u64,
        f32s: m.scales.len() as u64,
        note: if note.is_empty() {
            format!("{wt_text} + f32 scale per row (group: {cols})")
        } else {
            format!("{wt_text} + f32 scale per row (group: {cols}), {note}")
        },
        matrix: Some((wt, rows as u64, cols as u64)),
    }
}

/// The `weights` line: which weight types the file uses, and the flash that its int4 matrices
/// save against the same matrices in int8 (`(type, rows, cols)` per weight matrix); int8 in the
/// offset-binary layout is counted as int8, with its row constants' bytes.
fn weights_line(out: &mut String, matrices: impl IntoIterator<Item = (WeightType, u64, u64)>) {
    let (mut int4, mut total, mut saved) = (0usize, 0usize, 0u64);
    let (mut offset, mut consts) = (0usize, 0u64);
    for (wt, rows, cols) in matrices {
        total += 1;
        if wt == WeightType::Int4 {
            int4 += 1;
            saved = saved.saturating_add(rows.saturating_mul(cols / 2));
        }
        if wt == WeightType::Int8Offset {
            offset += 1;
            consts = consts.saturating_add(rows.saturating_mul(wt.row_const_bytes() as u64));
        }
    }
    let offset_note = if offset == 0 {
        String::new()
    } else {
        format!(
            "; {offset} int8 matrices in the offset-binary layout (int8-offset: +{} bytes of row constants)",
            thousands(consts)
        )
    };
    let _ = if int4 == 0 {
        writeln!(out, "weights       int8 ({total} matrices{offset_note})")
    } else if int4 == total {
        writeln!(
            out,
            "weights       int4 in all {total} matrices (per-row scales): {} bytes of flash saved against int8",
            thousands(saved)
        )
    } else {
        writeln!(
            out,
            "weights       int4 in {int4} of {total} matrices (per-row scales), int8 in the rest: {} bytes of flash saved against int8{offset_note}",
            thousands(saved)
        )
    };
}

fn norm(block: &str, name: &str, d: u32, n: &NormParams<'_>) -> Tensor {
    let bytes = n.param_bytes() as u64;
    Tensor {
        matrix: None,
        block: block.into(),
        name: name.into(),
        shape: if n.bias.is_some() {
            format!("2x{d}")
        } else {
            d.to_string()
        },
        params: bytes / 4,
        int8: 0,
        f32s: bytes,
        note: if n.bias.is_some() {
            "f32 weight + bias".into()
        } else {
            "f32 weight".into()
        },
    }
}

fn position_name(p: GptPosition) -> &'static str {
    match p {
        GptPosition::Learned => "learned table",
        GptPosition::Rope => "RoPE (rotary, tables in the file)",
    }
}

fn norm_name(n: GptNorm) -> &'static str {
    match n {
        GptNorm::LayerNorm => "LayerNorm",
        GptNorm::RmsNorm => "RMSNorm",
    }
}

fn mlp_name(m: GptMlp) -> &'static str {
    match m {
        GptMlp::Gelu => "GELU (tanh approximation)",
        GptMlp::GeluErf => "GELU (exact, erf)",
        GptMlp::SwiGlu => "SwiGLU (gated)",
        GptMlp::GeGlu => "GeGLU (gated)",
    }
}

/// Describes a GPT model: configuration, vocabulary, metadata, one row per parameter tensor,
/// totals, flash, run-state RAM and compute.
pub fn describe_gpt(m: &GptModel<'_>, file_name: &str) -> String {
    let mut out = String::new();
    let c = *m.config();
    let desc = m.desc();
    let meta = m.metadata();
    let _ = writeln!(
        out,
        "{file_name}: aka model (format v{}), GPT body, {} bytes",
        aka_core::format::VERSION,
        thousands(m.file_size() as u64)
    );
    let _ = writeln!(out, "task          {:?}", meta.task);
    let _ = writeln!(
        out,
        "config        {} layers, {} heads of {} (d_model {}), MLP hidden {}, context {}, vocab {}",
        c.n_layer,
        c.n_head,
        c.d_model / c.n_head.max(1),
        c.d_model,
        c.hidden,
        c.block_size,
        c.vocab_size
    );
    let _ = writeln!(
        out,
        "architecture  positions: {}; norm: {} (eps {:e}); MLP: {}; head: {}",
        position_name(c.position),
        norm_name(c.norm),
        c.norm_eps,
        mlp_name(c.mlp),
        if c.tied_head {
            "tied (reuses the token embedding)"
        } else {
            "separate lm_head"
        }
    );
    let unknown = match m.unknown_id() {
        Some(id) => format!("unknown token id {id} (U+FFFD)"),
        None => "no unknown token (chars outside it cannot be encoded)".into(),
    };
    let _ = writeln!(
        out,
        "vocab         {} chars, {unknown}: {}",
        m.vocab_size(),
        escape_vocab(m.vocab_chars())
    );
    let ev = m.eval();
    let _ = writeln!(
        out,
        "val loss      float {}, quantized {} nats/token ({} validation tokens, recorded at export)",
        loss(ev.val_loss_float),
        loss(ev.val_loss_int8),
        thousands(ev.val_tokens)
    );
    let _ = writeln!(
        out,
        "top-1         quantized agrees with float on {} of positions; next-token accuracy float {}, quantized {}",
        percent(ev.top1_agreement),
        percent(meta.float_accuracy),
        percent(meta.int8_accuracy)
    );
    write_provenance(&mut out, meta);
    let _ = writeln!(out);

    let (d, h, v, b) = (c.d_model, c.hidden, c.vocab_size, c.block_size);
    let mut tensors = vec![qmatrix(
        "",
        "tok_emb",
        v,
        d,
        &desc.tok_emb,
        if c.tied_head { "also the head" } else { "" },
    )];
    if let Some(p) = &desc.pos_emb {
        tensors.push(qmatrix("", "pos_emb", b, d, p, ""));
    }
    if let Some(r) = &desc.rope {
        let hd2 = d / c.n_head.max(1) / 2;
        tensors.push(Tensor {
            matrix: None,
            block: String::new(),
            name: "rope cos, sin".into(),
            shape: format!("2x{b}x{hd2}"),
            params: 0,
            int8: 0,
            f32s: (r.cos.len() + r.sin.len()) as u64,
            note: "f32 tables (not trained)".into(),
        });
    }
    for (i, blk) in desc.blocks.as_slice().iter().enumerate() {
        let n = i.to_string();
        tensors.push(norm(&n, "ln1", d, &blk.ln1));
        for (name, w) in [
            ("wq", &blk.wq),
            ("wk", &blk.wk),
            ("wv", &blk.wv),
            ("wo", &blk.wo),
        ] {
            tensors.push(qmatrix(&n, name, d, d, w, ""));
        }
        tensors.push(norm(&n, "ln2", d, &blk.ln2));
        tensors.push(qmatrix(&n, "w1", h, d, &blk.w1, ""));
        if let Some(w3) = &blk.w3 {
            tensors.push(qmatrix(&n, "w3", h, d, w3, ""));
        }
        tensors.push(Tensor {
            matrix: None,
            block: n.clone(),
            name: "act_lut".into(),
            shape: blk.act_lut.len().to_string(),
            params: 0,
            int8: blk.act_lut.len() as u64,
            f32s: 0,
            note: format!(
                "{} of the int8 up-projection (scale {:.5}), values at scale {:.5}",
                if c.mlp == aka_core::format::GptMlp::SwiGlu {
                    "SiLU"
                } else {
                    "GELU"
                },
                blk.mlp_gate_scale,
                blk.mlp_act_scale
            ),
        });
        tensors.push(qmatrix(&n, "w2", d, h, &blk.w2, ""));
    }
    tensors.push(norm("", "ln_f", d, &desc.ln_f));
    if let Some(head) = &desc.lm_head {
        tensors.push(qmatrix("", "lm_head", v, d, head, ""));
    }
    let vocab_bytes = m.vocab_chars().len() as u64;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let (mut params, mut int8, mut f32s) = (0u64, 0u64, 0u64);
    let mut weights = 0u64; // weights of the matrices (not the norms or the activation tables)
    for t in &tensors {
        params += t.params;
        int8 += t.int8;
        if t.matrix.is_some() {
            weights += t.params;
        }
        f32s += t.f32s;
        rows.push(vec![
            t.block.clone(),
            t.name.clone(),
            t.shape.clone(),
            thousands(t.params),
            thousands(t.int8),
            thousands(t.f32s),
            thousands(t.int8 + t.f32s),
            t.note.clone(),
        ]);
    }
    rows.push(vec![
        String::new(),
        "vocab".into(),
        m.vocab_size().to_string(),
        String::new(),
        String::new(),
        String::new(),
        thousands(vocab_bytes),
        "UTF-8 chars".into(),
    ]);
    rows.push(vec![
        String::new(),
        "total".into(),
        String::new(),
        thousands(params),
        thousands(int8),
        thousands(f32s),
        thousands(int8 + f32s + vocab_bytes),
        String::new(),
    ]);
    table(
        &mut out,
        &[
            "block",
            "tensor",
            "shape",
            "params",
            "int B",
            "f32 B",
            "flash B",
            "stored as",
        ],
        &[false, false, false, true, true, true, true, false],
        &rows,
        true,
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "parameters    {} ({} weights + {} f32 norm values)",
        thousands(params),
        thousands(weights),
        thousands(params.saturating_sub(weights))
    );
    weights_line(&mut out, tensors.iter().filter_map(|t| t.matrix));
    flash_line(
        &mut out,
        m.file_size(),
        m.param_bytes(),
        "int8/int4 weights, f32 scales/norms/tables, vocab",
    );
    let kv = m.kv_cache_size();
    let _ = writeln!(
        out,
        "run state     {} bytes (RAM): KV cache {} (int8, 2 x {} layers x {} positions x {}, + {} layers x {} heads x {} positions x 4 B of K row constants) + scratch {} ({} f32 + {} i8)",
        thousands(m.state_size() as u64),
        thousands(kv as u64),
        c.n_layer,
        b,
        d,
        c.n_layer,
        c.n_head,
        b,
        thousands(m.state_size().saturating_sub(kv) as u64),
        thousands(m.state_f32_len() as u64),
        thousands(m.state_i8_len().saturating_sub(kv) as u64)
    );
    let _ = writeln!(
        out,
        "              plus {} bytes of token window (u32 x context) and {} of sampling scratch (f32 x vocab)",
        thousands(4 * b as u64),
        thousands(4 * v as u64)
    );
    let macs = m.weight_macs();
    let per_pos = 2u64
        .checked_mul(u64::from(c.n_layer))
        .and_then(|n| n.checked_mul(u64::from(d)));
    let _ = writeln!(
        out,
        "compute       {} weight MACs per token (q, k, v, o, MLP, head); attention adds {} per position attended (up to {} at full context)",
        thousands(macs),
        count(per_pos),
        thousands(m.attention_macs(m.block_size().saturating_sub(1)))
    );
    let _ = writeln!(
        out,
        "work          {} operations per token at full context (MACs + element operations; `aka run` refuses more than --max-ops)",
        count(m.work_per_token())
    );
    out
}

/// The vocabulary as one quoted string, escaped (`\n`, `\t`, `\u{..}` for unprintables).
pub fn escape_vocab(chars: &str) -> String {
    format!("{chars:?}")
}

/// Output stage: fused ReLU (the lower clamp is real 0) and output quantization.
fn requant_details(r: &aka_core::format::Requant<'_>) -> String {
    let relu = if r.act_min == r.output.zero_point {
        "relu, "
    } else {
        ""
    };
    let clamp =
        if r.act_max != i8::MAX || (r.act_min != i8::MIN && r.act_min != r.output.zero_point) {
            format!("clamp [{}, {}], ", r.act_min, r.act_max)
        } else {
            String::new()
        };
    format!("{relu}{clamp}out {}", quant(r.output))
}

fn dims(a: u32, b: u32) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}x{b}")
    }
}

/// Layer-specific details for the table's last column.
fn details(layer: &Layer<'_>) -> String {
    match layer {
        Layer::Linear(l) => format!(
            "{} weights (group: the whole row of {}), {}",
            l.weight_type,
            l.in_features,
            requant_details(&l.requant)
        ),
        Layer::Conv2d(c) => format!(
            "{} weights (group: the whole filter of {}), {}x{} stride {} pad {}, {}",
            c.weight_type,
            (c.kernel_h as u64) * (c.kernel_w as u64) * (c.in_channels as u64),
            c.kernel_h,
            c.kernel_w,
            dims(c.stride_h, c.stride_w),
            dims(c.pad_h, c.pad_w),
            requant_details(&c.requant)
        ),
        Layer::MaxPool2d(p) => format!(
            "{}x{} stride {}, keeps quantization",
            p.kernel_h,
            p.kernel_w,
            dims(p.stride_h, p.stride_w)
        ),
        Layer::Flatten => "HWC order, no-op on the bytes".into(),
        Layer::Relu { zero_point } => format!("max(x, {zero_point})"),
        _ => String::new(),
    }
}

/// Describes a sequential model: metadata, input, one row per layer, totals.
pub fn describe_sequential(m: &SequentialModel<'_>, file_name: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{file_name}: aka model (format v{}), sequential body, {} bytes",
        aka_core::format::VERSION,
        thousands(m.file_size() as u64)
    );
    metadata(&mut out, m.metadata());
    let iq = m.input_quant();
    let (mean, std) = m.pixel_normalization();
    let pixel = if (mean, std) == (0.0, 1.0) {
        "p/255".to_string()
    } else {
        format!("(p/255 - {mean}) / {std}")
    };
    let _ = writeln!(
        out,
        "input         {} (HxWxC) int8, {} (pixel p -> {pixel})",
        m.input_shape(),
        quant(iq)
    );
    let _ = writeln!(
        out,
        "output        {} int8, {} (dequantized = scores)",
        m.output_shape(),
        quant(m.output_quant())
    );
    let _ = writeln!(out);
    let headers = [
        "#", "layer", "input", "output", "params", "flash B", "MACs", "details",
    ];
    let mut rows: Vec<[String; 8]> = Vec::new();
    // Checked sums (`None`: overflow); the shapes come from an untrusted file.
    let (mut params, mut flash, mut macs) = (Some(0u64), Some(0u64), Some(0u64));
    let add = |s: Option<u64>, v: Option<u64>| s?.checked_add(v?);
    for info in m.layer_infos() {
        let mac = info.checked_macs();
        let (p, b) = (
            u64::try_from(info.params).ok(),
            u64::try_from(info.param_bytes).ok(),
        );
        params = add(params, p);
        flash = add(flash, b);
        macs = add(macs, mac);
        rows.push([
            info.index.to_string(),
            info.layer.name().to_string(),
            info.input.to_string(),
            info.output.to_string(),
            count(p),
            count(b),
            count(mac),
            details(info.layer),
        ]);
    }
    rows.push([
        String::new(),
        "total".into(),
        String::new(),
        String::new(),
        count(params),
        count(flash),
        count(macs),
        String::new(),
    ]);
    let mut widths = headers.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            // Numbers right-aligned, text left-aligned; the last column is not padded.
            if i + 1 == cells.len() {
                s.push_str(c);
            } else if (4..=6).contains(&i) || i == 0 {
                let _ = write!(s, "{c:>w$}  ");
            } else {
                let _ = write!(s, "{c:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(&mut out, &headers.map(String::from));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    line(&mut out, &rule);
    let total = rows.pop();
    for r in &rows {
        line(&mut out, r);
    }
    line(&mut out, &rule);
    if let Some(t) = total {
        line(&mut out, &t);
    }
    let _ = writeln!(out);
    weights_line(
        &mut out,
        m.layer_infos().filter_map(|info| {
            let wt = info.layer.weight_type()?;
            // `params` = rows x cols weights + one bias per row (output channel).
            let rows = info.output.c as u64;
            let cols = (info.params as u64).saturating_sub(rows) / rows.max(1);
            Some((wt, rows, cols))
        }),
    );
    flash_line(
        &mut out,
        m.file_size(),
        m.param_bytes(),
        "int8/int4 weights, int32 bias/multipliers/shifts",
    );
    let _ = writeln!(
        out,
        "arena (RAM)   {} bytes (two ping-pong buffers of the largest activation)",
        count(u64::try_from(m.arena_size()).ok())
    );
    let _ = writeln!(out, "compute       {} MACs per inference", count(macs));
    let _ = writeln!(
        out,
        "work          {} operations per inference (MACs + element operations; `aka run` refuses more than --max-ops)",
        count(m.work())
    );
    out
}

/// The seed and training command recorded in a model file's metadata.
fn write_provenance(out: &mut String, meta: &Metadata<'_>) {
    let _ = writeln!(out, "seed          {}", meta.seed);
    let cmd = if meta.train_command.is_empty() {
        "(unknown)"
    } else {
        meta.train_command
    };
    let _ = writeln!(out, "trained with  {cmd}");
}

/// The `flash` line: the file size, split into parameter bytes (made of `params`) and the rest
/// (descriptors and metadata).
fn flash_line(out: &mut String, file_size: usize, param_bytes: usize, params: &str) {
    let _ = writeln!(
        out,
        "flash         {} bytes: {} parameter bytes ({params}) + {} bytes of descriptors and metadata",
        thousands(file_size as u64),
        thousands(param_bytes as u64),
        thousands(file_size.saturating_sub(param_bytes) as u64)
    );
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
