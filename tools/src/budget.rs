//! `aka inspect --board`: does a model fit a board, with the firmware, before flashing?
//!
//! **Flash** = the firmware's runtime code + the model file + the app's embedded data (the `mnist`
//! app's test images; none for `gpt`).
//! **RAM** = the model's run state (the sequential arena, or the GPT's f32/i8 state with its KV
//! cache, the decoder window and the sampling scratch, as aka-core computes them for this file)
//! + the firmware's other statics + the stack high-water mark.
//!
//! The firmware figures (runtime code, other statics, stack high-water) are measured by
//! `firmware/ci.sh` per board and app and recorded in `firmware/budgets.json`, which is compiled
//! into the tool ([`RECORDED`]); or they are read from a built firmware ELF (`--elf`, see
//! [`ElfSizes`]). GPT models are budgeted against the `gpt` app, classifiers against `mnist`.
//!
//! The board sizes are [`BOARDS`], the same as `firmware/memory/BOARD.x`.

use std::fmt::Write as _;
use std::path::Path;

use aka_core::gpt::GptModel;
use aka_core::SequentialModel;
use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::inspect::thousands;
use crate::model::Model;

/// A board's memory: what the firmware's linker script gives the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// The name `--board` takes (and the firmware's cargo feature).
    pub name: &'static str,
    /// Flash bytes.
    pub flash: u64,
    /// RAM bytes.
    pub ram: u64,
}

/// The boards the firmware supports, with the sizes of `firmware/memory/NAME.x`.
pub const BOARDS: [Board; 3] = [
    Board {
        name: "nrf52840",
        flash: 1024 * 1024,
        ram: 256 * 1024,
    },
    Board {
        name: "stm32f411",
        flash: 512 * 1024,
        ram: 128 * 1024,
    },
    // QEMU mps2-an386: code memory 4 MiB, data memory 4 MiB (see firmware/memory/qemu.x).
    Board {
        name: "qemu",
        flash: 4096 * 1024,
        ram: 4096 * 1024,
    },
];

/// The board called `name` in [`BOARDS`].
pub fn board(name: &str) -> anyhow::Result<Board> {
    BOARDS
        .iter()
        .copied()
        .find(|b| b.name == name)
        .with_context(|| {
            let names: Vec<&str> = BOARDS.iter().map(|b| b.name).collect();
            format!(
                "unknown board {name:?}: one of {} (or give --flash BYTES --ram BYTES)",
                names.join(", ")
            )
        })
}

/// The board whose recorded firmware figures stand for a custom (`--flash`/`--ram`) board: a
/// hardware build (RTT logging), the larger of the two.
pub const CUSTOM_BOARD_FIRMWARE: &str = "nrf52840";

/// Parses a byte count for `--flash` / `--ram`: a positive integer, optionally with a binary
/// suffix `K`/`KiB` (×1024) or `M`/`MiB` (×1024²): `262144`, `256K`, `256KiB`, `1M`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "{s:?} is not a byte count: give a positive integer, optionally with K, KiB, M or MiB \
             (e.g. 262144, 256K, 1M)"
        ));
    }
    let unit: u64 = match suffix {
        "" => 1,
        "K" | "KiB" | "k" => 1024,
        "M" | "MiB" => 1024 * 1024,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {suffix:?}; use none (bytes), K/KiB or M/MiB"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is too large a byte count"))?;
    let bytes = n
        .checked_mul(unit)
        .ok_or_else(|| format!("{s:?} is too large a byte count"))?;
    if bytes == 0 {
        return Err(format!("{s:?}: a board's memory cannot be 0 bytes"));
    }
    if bytes > 1 << 32 {
        return Err(format!(
            "{s:?} is more than the 4 GiB a 32-bit microcontroller can address"
        ));
    }
    Ok(bytes)
}

/// The firmware around the model: what `firmware/ci.sh` records per board and app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firmware {
    /// The app whose figures these are (`gpt` or `mnist`).
    pub app: String,
    /// Where the figures come from, for the report (`firmware/budgets.json: nrf52840/gpt`).
    pub source: String,
    /// Flash bytes of the runtime: the firmware's flash image minus the model and data files.
    pub code_bytes: u64,
    /// Flash bytes of data the app embeds next to the model (the `mnist` test images).
    pub data_bytes: u64,
    /// Static RAM other than the buffers sized for the model.
    pub other_static_ram_bytes: u64,
    /// The deepest the stack went in the app's run (stack painting, in QEMU).
    pub stack_high_water_bytes: u64,
}

/// `firmware/budgets.json` as of this build of the tool.
pub const RECORDED: &str = include_str!("../../firmware/budgets.json");

/// The app that runs a model of this kind.
pub fn app_for(model: &Model<'_>) -> &'static str {
    match model {
        Model::Sequential(_) => "mnist",
        Model::Gpt(_) => "gpt",
    }
}

/// The recorded figures of `app` on `board` from `budgets_json` (the text of a budgets.json).
pub fn recorded(budgets_json: &str, board: &str, app: &str) -> anyhow::Result<Firmware> {
    let v: Value = serde_json::from_str(budgets_json).context("budgets.json is not JSON")?;
    let entry = v
        .get("boards")
        .and_then(|b| b.get(board))
        .and_then(|b| b.get(app))
        .with_context(|| format!("budgets.json has no figures for {board}/{app}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        entry
            .get(name)
            .and_then(Value::as_u64)
            .with_context(|| format!("budgets.json: {board}/{app} has no number {name:?}"))
    };
    Ok(Firmware {
        app: app.to_string(),
        source: format!("firmware/budgets.json: {board}/{app}"),
        code_bytes: field("code_bytes")?,
        data_bytes: field("data_bytes")?,
        other_static_ram_bytes: field("other_static_ram_bytes")?,
        stack_high_water_bytes: field("stack_high_water_bytes")?,
    })
}

/// Sizes read from a built firmware ELF (32-bit little-endian, as every Cortex-M build is).
///
/// Flash is the loaded sections `.vector_table`, `.text`, `.rodata` and `.data` (its initial
/// values); static RAM is `.data`, `.bss` and `.uninit` (the sections cortex-m-rt's `link.x`
/// defines, as `firmware/ci.sh` counts them). The embedded files are the objects the firmware's
/// binaries name `MODEL`, `IMAGES` and `LABELS`; the model buffers are the app's `ARENA` /
/// `BUFFERS` statics (found by their symbol names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfSizes {
    /// Flash image bytes.
    pub flash: u64,
    /// Static RAM bytes.
    pub static_ram: u64,
    /// Bytes of the embedded model and data files.
    pub embedded: u64,
    /// Of which the data files (`IMAGES`, `LABELS`).
    pub data: u64,
    /// Bytes of the statics sized for the model (`ARENA`, `BUFFERS`).
    pub buffers: u64,
}

/// Largest ELF `--elf` reads (a release firmware with debug info is 1-2 MB).
const MAX_ELF_BYTES: u64 = 256 << 20;

fn u16_at(b: &[u8], at: usize) -> anyhow::Result<u64> {
    let s = b.get(at..at + 2).context("ELF truncated")?;
    Ok(u64::from(u16::from_le_bytes([s[0], s[1]])))
}

fn u32_at(b: &[u8], at: usize) -> anyhow::Result<u64> {
    let s = b.get(at..at + 4).context("ELF truncated")?;
    Ok(u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])))
}

/// The NUL-terminated string at `at` in `b`.
fn c_str(b: &[u8], at: usize) -> &str {
    let s = b.get(at..).unwrap_or(&[]);
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    std::str::from_utf8(&s[..end]).unwrap_or("")
}

/// The path of a legacy-mangled Rust symbol (`_ZN3gpt5MODEL17h…E` → `["gpt", "MODEL",
/// "h…"]`, components as mangled); empty for other symbols.
fn legacy_path(sym: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let Some(mut rest) = sym.strip_prefix("_ZN") else {
        return parts;
    };
    while let Some(c) = rest.chars().next() {
        if !c.is_ascii_digit() {
            break;
        }
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Ok(len) = rest[..digits].parse::<usize>() else {
            break;
        };
        let Some(part) = rest.get(digits..digits + len) else {
            break;
        };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    parts
}

impl ElfSizes {
    /// Reads the section and symbol tables of the ELF at `path`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        use std::io::Read as _;
        let name = path.display();
        let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read"))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            bail!("{name}: not a regular file (give the ELF cargo built)");
        }
        let mut bytes = Vec::new();
        file.take(MAX_ELF_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("{name}: cannot read"))?;
        if bytes.len() as u64 > MAX_ELF_BYTES {
            bail!(
                "{name}: larger than {} MiB, not a firmware ELF",
                MAX_ELF_BYTES >> 20
            );
        }
        Self::parse(&bytes).with_context(|| format!("{}: not a firmware ELF", path.display()))
    }

    /// [`read`](Self::read) on the bytes of an ELF file.
    pub fn parse(b: &[u8]) -> anyhow::Result<Self> {
        if b.get(..4) != Some(b"\x7fELF") {
            bail!("no ELF magic");
        }
        if b.get(4) != Some(&1) || b.get(5) != Some(&1) {
            bail!("not a 32-bit little-endian ELF (Cortex-M firmware is)");
        }
        let shoff = u32_at(b, 0x20)? as usize;
        let shentsize = u16_at(b, 0x2e)? as usize;
        let shnum = u16_at(b, 0x30)? as usize;
        let shstrndx = u16_at(b, 0x32)? as usize;
        if shentsize < 40 || shnum == 0 {
            bail!("no section headers");
        }
        struct Section {
            name: u64,
            kind: u64,
            offset: u64,
            size: u64,
            link: u64,
            entsize: u64,
        }
        let mut sections = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let h = shoff + i * shentsize;
            sections.push(Section {
                name: u32_at(b, h)?,
                kind: u32_at(b, h + 4)?,
                offset: u32_at(b, h + 16)?,
                size: u32_at(b, h + 20)?,
                link: u32_at(b, h + 24)?,
                entsize: u32_at(b, h + 36)?,
            });
        }
        let shstr = sections.get(shstrndx).context("bad section name table")?;
        let name_of = |s: &Section| c_str(b, (shstr.offset + s.name) as usize).to_string();
        let mut out = ElfSizes::default();
        for s in &sections {
            let name = name_of(s);
            if matches!(
                name.as_str(),
                ".vector_table" | ".text" | ".rodata" | ".data"
            ) {
                out.flash += s.size;
            }
            if matches!(name.as_str(), ".data" | ".bss" | ".uninit") {
                out.static_ram += s.size;
            }
        }
        if out.flash == 0 {
            bail!("no .text/.rodata sections (not a cortex-m-rt firmware?)");
        }
        // SHT_SYMTAB: the symbols, with their sizes.
        const SHT_SYMTAB: u64 = 2;
        let symtab = sections
            .iter()
            .find(|s| s.kind == SHT_SYMTAB)
            .context("no symbol table (a stripped ELF: give the one cargo built)")?;
        let strtab = sections
            .get(symtab.link as usize)
            .context("bad symbol string table")?;
        let entsize = if symtab.entsize == 0 {
            16
        } else {
            symtab.entsize
        };
        for i in 0..symtab.size / entsize {
            let e = (symtab.offset + i * entsize) as usize;
            let name = c_str(b, (strtab.offset + u32_at(b, e)?) as usize);
            let size = u32_at(b, e + 8)?;
            let path = legacy_path(name);
            // `bin::MODEL::{{nested}}` (the bytes behind `static MODEL: &… = &…`).
            let nested = path.len() >= 3 && path[2].contains("nested");
            match path.as_slice() {
                [_, "MODEL", ..] if nested => out.embedded += size,
                [_, "IMAGES" | "LABELS", ..] if nested => {
                    out.embedded += size;
                    out.data += size;
                }
                ["aka_firmware", "app", _, "ARENA" | "BUFFERS", ..] => out.buffers += size,
                _ => {}
            }
        }
        if out.embedded == 0 {
            bail!(
                "no embedded MODEL found in the symbol table (build one of the firmware's model \
                 binaries: mnist, gpt, chat)"
            );
        }
        Ok(out)
    }
}

/// The firmware figures for `model` on `board` (`custom`: [`CUSTOM_BOARD_FIRMWARE`]'s): the
/// recorded ones, or with `elf` the code, data and statics of that ELF and the recorded stack
/// high-water of the app.
pub fn firmware_for(
    model: &Model<'_>,
    board: &str,
    elf: Option<&Path>,
) -> anyhow::Result<Firmware> {
    let app = app_for(model);
    let recorded_board = if BOARDS.iter().any(|b| b.name == board) {
        board
    } else {
        CUSTOM_BOARD_FIRMWARE
    };
    let rec = recorded(RECORDED, recorded_board, app)?;
    let Some(elf) = elf else {
        return Ok(rec);
    };
    let e = ElfSizes::read(elf)?;
    Ok(Firmware {
        app: app.to_string(),
        source: format!("{} (stack high-water: {})", elf.display(), rec.source),
        code_bytes: e.flash.saturating_sub(e.embedded),
        data_bytes: e.data,
        other_static_ram_bytes: e.static_ram.saturating_sub(e.buffers),
        stack_high_water_bytes: rec.stack_high_water_bytes,
    })
}

/// The RAM a model needs in the firmware: what the app's buffers hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRam {
    /// The sequential arena, or the GPT's f32 + i8 state without the KV cache.
    pub state: u64,
    /// The GPT's KV cache (part of its i8 state); 0 for sequential models.
    pub kv_cache: u64,
    /// The GPT decoder's token window (u32 per position) and the sampling scratch (f32 per
    /// vocabulary entry); 0 for sequential models.
    pub window_and_scratch: u64,
}

impl ModelRam {
    /// Computes it with aka-core's sizes for `model`.
    pub fn of(model: &Model<'_>) -> Self {
        match model {
            Model::Sequential(m) => Self::sequential(m),
            Model::Gpt(m) => Self::gpt(m),
        }
    }

    fn sequential(m: &SequentialModel<'_>) -> Self {
        Self {
            state: m.arena_size() as u64,
            kv_cache: 0,
            window_and_scratch: 0,
        }
    }

    fn gpt(m: &GptModel<'_>) -> Self {
        let state = (m.state_f32_len() * 4 + m.state_i8_len()) as u64;
        let kv = m.kv_cache_size() as u64;
        Self {
            state: state.saturating_sub(kv),
            kv_cache: kv,
            window_and_scratch: (m.block_size() * 4 + m.vocab_size() * 4) as u64,
        }
    }

    /// All of it.
    pub fn total(&self) -> u64 {
        self.state + self.kv_cache + self.window_and_scratch
    }
}

/// One memory (flash or RAM): named parts, their total and the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memory {
    /// `(json key, description, bytes)`.
    pub parts: Vec<(&'static str, String, u64)>,
    /// The board's size.
    pub limit: u64,
}

impl Memory {
    /// The sum of the parts.
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|p| p.2).sum()
    }

    /// Whether the total is within the limit.
    pub fn fits(&self) -> bool {
        self.total() <= self.limit
    }

    fn json(&self) -> Value {
        let parts: serde_json::Map<String, Value> = self
            .parts
            .iter()
            .map(|(k, _, v)| (k.to_string(), json!(v)))
            .collect();
        let (total, limit) = (self.total(), self.limit);
        json!({
            "parts": parts,
            "total": total,
            "limit": limit,
            "fits": total <= limit,
            // Negative when it does not fit.
            "margin": limit as i64 - total as i64,
        })
    }
}

/// The budget of one model on one board.
#[derive(Clone, Debug)]
pub struct Budget {
    /// The board's name (or `custom`).
    pub board: String,
    /// The firmware figures used.
    pub firmware: Firmware,
    /// Flash: runtime code, model, data.
    pub flash: Memory,
    /// RAM: model state, KV cache, window and scratch, other statics, stack.
    pub ram: Memory,
}

impl Budget {
    /// The budget of `model` (a file of `file_bytes` bytes) on `board` with `firmware`.
    pub fn new(model: &Model<'_>, file_bytes: u64, board: Board, firmware: Firmware) -> Self {
        let m = ModelRam::of(model);
        let mut ram = vec![(
            "model_state",
            match model {
                Model::Sequential(_) => "arena (2 x the largest activation)".to_string(),
                Model::Gpt(_) => "run state (f32 + i8 scratch, without the KV cache)".to_string(),
            },
            m.state,
        )];
        if let Model::Gpt(g) = model {
            ram.push((
                "kv_cache",
                format!(
                    "KV cache ({} layers x 2 x {} positions, with the K row constants)",
                    g.config().n_layer,
                    g.block_size()
                ),
                m.kv_cache,
            ));
            ram.push((
                "window_and_scratch",
                "token window + sampling scratch".to_string(),
                m.window_and_scratch,
            ));
        }
        ram.push((
            "firmware_statics",
            format!("other statics of the {} firmware", firmware.app),
            firmware.other_static_ram_bytes,
        ));
        ram.push((
            "stack",
            "stack high-water (measured in QEMU)".to_string(),
            firmware.stack_high_water_bytes,
        ));
        let mut flash = vec![
            (
                "runtime_code",
                format!("runtime code of the {} firmware", firmware.app),
                firmware.code_bytes,
            ),
            ("model", "model file".to_string(), file_bytes),
        ];
        if firmware.data_bytes > 0 {
            flash.push((
                "data",
                "embedded data (the mnist app's test images and labels)".to_string(),
                firmware.data_bytes,
            ));
        }
        Self {
            board: board.name.to_string(),
            firmware,
            flash: Memory {
                parts: flash,
                limit: board.flash,
            },
            ram: Memory {
                parts: ram,
                limit: board.ram,
            },
        }
    }

    /// Flash and RAM both within the board's.
    pub fn fits(&self) -> bool {
        self.flash.fits() && self.ram.fits()
    }

    /// One line: `fits nrf52840: flash margin …, RAM margin …` or `does not fit …: RAM over by …`.
    pub fn verdict(&self) -> String {
        let over = |name: &str, m: &Memory| {
            let (t, l) = (m.total(), m.limit);
            if t <= l {
                format!(
                    "{name} {} of {} bytes, {} to spare ({:.1}%)",
                    thousands(t),
                    thousands(l),
                    thousands(l - t),
                    100.0 * (l - t) as f64 / l as f64
                )
            } else {
                format!(
                    "{name} {} of {} bytes, over by {} bytes",
                    thousands(t),
                    thousands(l),
                    thousands(t - l)
                )
            }
        };
        let (f, r) = (over("flash", &self.flash), over("RAM", &self.ram));
        if self.fits() {
            format!("fits {}: {f}; {r}", self.board)
        } else {
            let mut what = Vec::new();
            if !self.flash.fits() {
                what.push(f);
            }
            if !self.ram.fits() {
                what.push(r);
            }
            format!("does NOT fit {}: {}", self.board, what.join("; "))
        }
    }

    /// The human report: a table per memory and the verdict.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "budget on {} ({} bytes flash, {} bytes RAM); firmware figures from {}",
            self.board,
            thousands(self.flash.limit),
            thousands(self.ram.limit),
            self.firmware.source
        );
        for (name, m) in [("flash", &self.flash), ("RAM", &self.ram)] {
            for (_, what, bytes) in &m.parts {
                let _ = writeln!(out, "  {name:<5} {:>11}  {what}", thousands(*bytes));
            }
            let _ = writeln!(
                out,
                "  {name:<5} {:>11}  total, of {} ({})",
                thousands(m.total()),
                thousands(m.limit),
                if m.fits() { "fits" } else { "DOES NOT FIT" }
            );
        }
        let _ = writeln!(out, "verdict: {}", self.verdict());
        out
    }

    /// The JSON object of `--json` (`eval` from [`eval_json`]).
    pub fn json(&self, file: &str, eval: Value) -> Value {
        json!({
            "file": file,
            "board": self.board,
            "fits": self.fits(),
            "verdict": self.verdict(),
            "flash": self.flash.json(),
            "ram": self.ram.json(),
            "firmware": {
                "app": self.firmware.app,
                "source": self.firmware.source,
            },
            "eval": eval,
        })
    }
}

/// A recorded metric as JSON: `null` when unknown (NaN).
fn metric(v: f32) -> Value {
    if v.is_finite() {
        // Through the shortest decimal of the f32, so 1.8 prints as 1.8, not 1.7999999523.
        json!(v.to_string().parse::<f64>().unwrap_or(f64::from(v)))
    } else {
        Value::Null
    }
}

/// What the file records about its quality: validation losses for a GPT (nats/token), test
/// accuracies (percent) for a classifier; `null` where not recorded.
pub fn eval_json(model: &Model<'_>) -> Value {
    match model {
        Model::Gpt(m) => {
            let ev = m.eval();
            json!({
                "float_val_loss": metric(ev.val_loss_float),
                "quantized_val_loss": metric(ev.val_loss_int8),
                "val_tokens": ev.val_tokens,
                "top1_agreement_percent": metric(ev.top1_agreement),
            })
        }
        Model::Sequential(m) => {
            let meta = m.metadata();
            json!({
                "float_accuracy_percent": metric(meta.float_accuracy),
                "quantized_accuracy_percent": metric(meta.int8_accuracy),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("262144"), Ok(262_144));
        assert_eq!(parse_bytes("256K"), Ok(262_144));
        assert_eq!(parse_bytes("256KiB"), Ok(262_144));
        assert_eq!(parse_bytes("1M"), Ok(1 << 20));
        for bad in [
            "",
            "K",
            "-1",
            "0",
            "1.5M",
            "12 apples",
            "99999999999999999999",
            "8M8",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
        assert!(parse_bytes("5000M").unwrap_err().contains("4 GiB"));
    }

    #[test]
    fn legacy_symbol_paths() {
        assert_eq!(
            legacy_path("_ZN3gpt5MODEL27_$u7b$$u7b$nested$u7d$$u7d$17ha3e799c4e84954b1E"),
            [
                "gpt",
                "MODEL",
                "_$u7b$$u7b$nested$u7d$$u7d$",
                "ha3e799c4e84954b1"
            ]
        );
        assert!(legacy_path("memcpy").is_empty());
    }

    /// The table agrees with the firmware's linker scripts.
    #[test]
    fn boards_match_memory_x() {
        for b in BOARDS {
            let path = format!(
                "{}/../firmware/memory/{}.x",
                env!("CARGO_MANIFEST_DIR"),
                b.name
            );
            let text = std::fs::read_to_string(&path).unwrap();
            let length = |region: &str| -> u64 {
                let line = text
                    .lines()
                    .find(|l| l.trim_start().starts_with(region))
                    .unwrap_or_else(|| panic!("{path}: no {region}"));
                let v = line.split("LENGTH =").nth(1).unwrap().trim();
                let k: u64 = v.trim_end_matches('K').parse().unwrap();
                assert!(v.ends_with('K'), "{path}: {v}");
                k * 1024
            };
            assert_eq!(length("FLASH"), b.flash, "{}", b.name);
            assert_eq!(length("RAM"), b.ram, "{}", b.name);
        }
    }

    #[test]
    fn recorded_has_every_board_and_app() {
        for b in BOARDS {
            for app in ["mnist", "gpt"] {
                let f = recorded(RECORDED, b.name, app).unwrap();
                assert!(f.code_bytes > 1000 && f.stack_high_water_bytes > 0, "{f:?}");
            }
        }
    }
}
