//! `aka inspect`: a readable description of a model file.

use std::fmt::Write as _;

use aka_core::format::{Layer, Metadata, QuantParams};
use aka_core::SequentialModel;
use aka_trainer::export::layer_macs;

use crate::model::Model;

/// `1234567` → `"1,234,567"`.
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
        "accuracy      float {}, int8 {} (test set, recorded at export)",
        percent(meta.float_accuracy),
        percent(meta.int8_accuracy)
    );
    let _ = writeln!(out, "seed          {}", meta.seed);
    let cmd = if meta.train_command.is_empty() {
        "(unknown)"
    } else {
        meta.train_command
    };
    let _ = writeln!(out, "trained with  {cmd}");
}

/// Describes any loaded model.
pub fn describe(model: &Model<'_>, file_name: &str) -> String {
    match model {
        Model::Sequential(m) => describe_sequential(m, file_name),
    }
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
        Layer::Linear(l) => requant_details(&l.requant),
        Layer::Conv2d(c) => format!(
            "{}x{} stride {} pad {}, {}",
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
    let _ = writeln!(
        out,
        "input         {} (HxWxC) int8, {} (pixel p -> p/255)",
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
    let (mut params, mut flash, mut macs) = (0u64, 0u64, 0u64);
    for info in m.layer_infos() {
        let mac = layer_macs(&info);
        params += info.params as u64;
        flash += info.param_bytes as u64;
        macs += mac;
        rows.push([
            info.index.to_string(),
            info.layer.name().to_string(),
            info.input.to_string(),
            info.output.to_string(),
            thousands(info.params as u64),
            thousands(info.param_bytes as u64),
            thousands(mac),
            details(info.layer),
        ]);
    }
    rows.push([
        String::new(),
        "total".into(),
        String::new(),
        String::new(),
        thousands(params),
        thousands(flash),
        thousands(macs),
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
    let _ = writeln!(
        out,
        "flash         {} bytes: {} parameter bytes (int8 weights, int32 bias/multipliers/shifts) + {} bytes of descriptors and metadata",
        thousands(m.file_size() as u64),
        thousands(m.param_bytes() as u64),
        thousands(m.file_size().saturating_sub(m.param_bytes()) as u64)
    );
    let _ = writeln!(
        out,
        "arena (RAM)   {} bytes (two ping-pong buffers of the largest activation)",
        thousands(m.arena_size() as u64)
    );
    let _ = writeln!(out, "compute       {} MACs per inference", thousands(macs));
    out
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
