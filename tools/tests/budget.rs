//! `aka inspect --board` / `--flash --ram` / `--elf` / `--json`: the budget of a model on a board
//! with the firmware, on the committed firmware model files and firmware/budgets.json.

use std::path::{Path, PathBuf};

mod common;
use common::{aka, p, stderr, stdout, TempDir};

use aka_core::gpt::GptModel;
use aka_core::SequentialModel;
use aka_tools::budget::{self, ElfSizes, BOARDS, RECORDED};
use aka_tools::inspect::thousands;
use serde_json::Value;

/// A committed firmware model file (firmware/models/NAME).
fn model_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware/models")
        .join(name)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// The recorded figure `field` of `board`/`app` in firmware/budgets.json.
fn recorded(board: &str, app: &str, field: &str) -> u64 {
    let v: Value = serde_json::from_str(RECORDED).unwrap();
    v["boards"][board][app][field].as_u64().unwrap()
}

/// Runs `aka inspect ARGS --json` and parses its standard output (one JSON object).
fn inspect_json(args: &[&str]) -> (Value, std::process::Output) {
    let mut all = vec!["inspect", "--json"];
    all.extend_from_slice(args);
    let o = aka(&all);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "one line of JSON: {out}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (v, o)
}

fn num(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a byte count: {v}"))
}

#[test]
fn gpt_fits_every_board_with_its_numbers() {
    let file = model_file("gpt.aka");
    let bytes = std::fs::read(&file).unwrap();
    let model = GptModel::load(&bytes).unwrap();
    for board in BOARDS {
        let (v, o) = inspect_json(&["--board", board.name, p(&file)]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(v["fits"], Value::Bool(true), "{v}");
        assert_eq!(v["board"], board.name);

        // Flash: the recorded runtime code + the file, nothing else for the gpt app.
        let flash = &v["flash"];
        assert_eq!(num(&flash["limit"]), board.flash);
        assert_eq!(
            num(&flash["parts"]["runtime_code"]),
            recorded(board.name, "gpt", "code_bytes")
        );
        assert_eq!(num(&flash["parts"]["model"]), size(&file));
        let parts: u64 = flash["parts"].as_object().unwrap().values().map(num).sum();
        assert_eq!(num(&flash["total"]), parts);

        // RAM: aka-core's state sizes for this file + the recorded statics and stack.
        let ram = &v["ram"];
        assert_eq!(num(&ram["limit"]), board.ram);
        assert_eq!(num(&ram["parts"]["kv_cache"]), model.kv_cache_size() as u64);
        assert_eq!(
            num(&ram["parts"]["model_state"]) + num(&ram["parts"]["kv_cache"]),
            model.state_size() as u64
        );
        assert_eq!(
            num(&ram["parts"]["window_and_scratch"]),
            4 * (model.block_size() + model.vocab_size()) as u64
        );
        assert_eq!(
            num(&ram["parts"]["stack"]),
            recorded(board.name, "gpt", "stack_high_water_bytes")
        );
        assert_eq!(
            num(&ram["parts"]["firmware_statics"]),
            recorded(board.name, "gpt", "other_static_ram_bytes")
        );
        let parts: u64 = ram["parts"].as_object().unwrap().values().map(num).sum();
        assert_eq!(num(&ram["total"]), parts);
        assert_eq!(
            ram["margin"].as_i64().unwrap(),
            board.ram as i64 - parts as i64
        );

        // The file's recorded validation losses.
        let ev = model.eval();
        let loss = |key: &str| v["eval"][key].as_f64().unwrap();
        assert!((loss("float_val_loss") - f64::from(ev.val_loss_float)).abs() < 1e-6);
        assert!((loss("quantized_val_loss") - f64::from(ev.val_loss_int8)).abs() < 1e-6);
    }
}

#[test]
fn text_report_has_parts_and_verdict() {
    let file = model_file("gpt.aka");
    let o = aka(&["inspect", "--board", "nrf52840", p(&file)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // The usual description first, then the budget.
    assert!(out.contains("GPT body"), "{out}");
    for part in [
        "runtime code of the gpt firmware",
        "model file",
        "KV cache",
        "stack high-water",
        "other statics of the gpt firmware",
    ] {
        assert!(out.contains(part), "{part:?} in {out}");
    }
    let verdict = out.lines().last().unwrap();
    assert!(
        verdict.starts_with("verdict: fits nrf52840: flash "),
        "{verdict}"
    );
    assert!(verdict.contains("to spare"), "{verdict}");
}

#[test]
fn classifier_over_flash_says_by_how_much() {
    // The MNIST MLP (~465 KB) with the mnist app's test images does not fit the STM32F411's
    // 512 KiB of flash (firmware/build.rs says so too).
    let file = model_file("mnist-mlp.aka");
    let bytes = std::fs::read(&file).unwrap();
    let model = SequentialModel::load(&bytes).unwrap();
    let (v, o) = inspect_json(&["--board", "stm32f411", p(&file)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(v["fits"], Value::Bool(false));
    assert_eq!(v["flash"]["fits"], Value::Bool(false));
    let expected_flash = recorded("stm32f411", "mnist", "code_bytes")
        + size(&file)
        + recorded("stm32f411", "mnist", "data_bytes");
    assert_eq!(num(&v["flash"]["total"]), expected_flash);
    let over = expected_flash - 512 * 1024;
    assert_eq!(v["flash"]["margin"].as_i64().unwrap(), -(over as i64));
    assert_eq!(
        num(&v["ram"]["parts"]["model_state"]),
        model.arena_size() as u64
    );
    // Accuracies of a classifier, not losses.
    let meta = model.metadata();
    let acc = v["eval"]["quantized_accuracy_percent"].as_f64().unwrap();
    assert!((acc - f64::from(meta.int8_accuracy)).abs() < 1e-4, "{v}");
    assert!(v["eval"]["float_accuracy_percent"].is_number());

    // The error names the numbers: total, limit and the excess.
    let err = stderr(&o);
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in [expected_flash, 512 * 1024, over] {
        assert!(err.contains(&thousands(n)), "{} in {err}", thousands(n));
    }
    assert!(err.contains("does NOT fit stm32f411"), "{err}");
    // It fits the nRF52840.
    let o = aka(&["inspect", "--board", "nrf52840", p(&file)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn custom_board_over_ram() {
    let file = model_file("gpt.aka");
    let (v, o) = inspect_json(&["--flash", "1M", "--ram", "32K", p(&file)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(v["board"], "custom");
    assert_eq!(num(&v["ram"]["limit"]), 32 * 1024);
    assert_eq!(num(&v["flash"]["limit"]), 1 << 20);
    assert_eq!(v["flash"]["fits"], Value::Bool(true));
    assert_eq!(v["ram"]["fits"], Value::Bool(false));
    let total = num(&v["ram"]["total"]);
    assert!(total > 32 * 1024);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "RAM {} of {} bytes, over by {} bytes",
            thousands(total),
            thousands(32 * 1024),
            thousands(total - 32 * 1024)
        )),
        "{err}"
    );
    // The firmware figures of a custom board are the nrf52840 build's.
    assert_eq!(
        num(&v["flash"]["parts"]["runtime_code"]),
        recorded(budget::CUSTOM_BOARD_FIRMWARE, "gpt", "code_bytes")
    );
}

#[test]
fn bad_sizes_and_flags_are_usage_errors() {
    let file = model_file("gpt.aka");
    for (args, message) in [
        (&["--flash", "lots", "--ram", "1M"][..], "not a byte count"),
        (&["--flash", "1M", "--ram", "0"][..], "cannot be 0"),
        (&["--flash", "-5", "--ram", "1M"][..], ""),
        (&["--flash", "1.5M", "--ram", "1M"][..], "unknown unit"),
        (&["--flash", "8G", "--ram", "1M"][..], "unknown unit"),
        (&["--flash", "99999999M", "--ram", "1M"][..], "4 GiB"),
        (&["--flash", "1M"][..], "--ram"),
        (
            &["--board", "nrf52840", "--flash", "1M", "--ram", "1M"][..],
            "cannot be used with",
        ),
        (&["--board", "esp32"][..], "invalid value"),
        (&["--json"][..], "--board"),
        (&["--elf", "x.elf"][..], "--board"),
    ] {
        let mut all = vec!["inspect"];
        all.extend_from_slice(args);
        all.push(p(&file));
        let o = aka(&all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {message:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
}

/// A minimal ELF32 little-endian file with the given sections (`name`, size, contents size:
/// 0 for NOBITS) and symbols (`name`, size), laid out as a linker would (only the tables are
/// read).
fn fake_elf(sections: &[(&str, u32)], symbols: &[(&str, u32)]) -> Vec<u8> {
    let mut shstrtab = vec![0u8];
    let mut strtab = vec![0u8];
    let name_at = |table: &mut Vec<u8>, name: &str| -> u32 {
        let at = table.len() as u32;
        table.extend_from_slice(name.as_bytes());
        table.push(0);
        at
    };
    let mut symtab = vec![0u8; 16]; // the null symbol
    for (name, size) in symbols {
        let n = name_at(&mut strtab, name);
        symtab.extend_from_slice(&n.to_le_bytes());
        symtab.extend_from_slice(&0u32.to_le_bytes()); // value
        symtab.extend_from_slice(&size.to_le_bytes());
        symtab.extend_from_slice(&[1, 0, 1, 0]); // OBJECT, section 1
    }
    let mut headers: Vec<[u32; 10]> = vec![[0; 10]];
    for (name, size) in sections {
        let n = name_at(&mut shstrtab, name);
        headers.push([n, 1, 2, 0, 0, *size, 0, 0, 4, 0]);
    }
    // Data after the 52-byte ELF header: symtab, strtab, shstrtab, then the section headers.
    let symtab_off = 52u32;
    let strtab_off = symtab_off + symtab.len() as u32;
    let shstr_name = name_at(&mut shstrtab, ".shstrtab");
    let symtab_name = name_at(&mut shstrtab, ".symtab");
    let strtab_name = name_at(&mut shstrtab, ".strtab");
    let shstrtab_off = strtab_off + strtab.len() as u32;
    let sh_off = shstrtab_off + shstrtab.len() as u32;
    let strtab_index = headers.len() as u32 + 1;
    headers.push([
        symtab_name,
        2,
        0,
        0,
        symtab_off,
        symtab.len() as u32,
        strtab_index,
        1,
        4,
        16,
    ]);
    headers.push([
        strtab_name,
        3,
        0,
        0,
        strtab_off,
        strtab.len() as u32,
        0,
        0,
        1,
        0,
    ]);
    let shstrndx = headers.len() as u16;
    headers.push([
        shstr_name,
        3,
        0,
        0,
        shstrtab_off,
        shstrtab.len() as u32,
        0,
        0,
        1,
        0,
    ]);

    let mut elf = vec![0u8; 52];
    elf[..6].copy_from_slice(b"\x7fELF\x01\x01");
    elf[6] = 1;
    elf[0x20..0x24].copy_from_slice(&sh_off.to_le_bytes());
    elf[0x2e..0x30].copy_from_slice(&40u16.to_le_bytes());
    elf[0x30..0x32].copy_from_slice(&(headers.len() as u16).to_le_bytes());
    elf[0x32..0x34].copy_from_slice(&shstrndx.to_le_bytes());
    elf.extend_from_slice(&symtab);
    elf.extend_from_slice(&strtab);
    elf.extend_from_slice(&shstrtab);
    for h in headers {
        for w in h {
            elf.extend_from_slice(&w.to_le_bytes());
        }
    }
    elf
}

#[test]
fn elf_sizes_replace_the_recorded_code() {
    let elf = fake_elf(
        &[
            (".vector_table", 1024),
            (".text", 20_000),
            (".rodata", 150_000),
            (".data", 100),
            (".bss", 30_000),
            (".uninit", 0),
            (".debug_info", 99_999),
        ],
        &[
            (
                "_ZN3gpt5MODEL27_$u7b$$u7b$nested$u7d$$u7d$17ha3e799c4e84954b1E",
                115_172,
            ),
            (
                "_ZN12aka_firmware3app3gpt7BUFFERS17h0123456789abcdefE",
                20_000,
            ),
            ("_ZN8aka_core3gpt7forward17h0123456789abcdefE", 5_000),
        ],
    );
    let sizes = ElfSizes::parse(&elf).unwrap();
    assert_eq!(
        sizes,
        ElfSizes {
            flash: 1024 + 20_000 + 150_000 + 100,
            static_ram: 100 + 30_000,
            embedded: 115_172,
            data: 0,
            buffers: 20_000,
        }
    );

    let dir = TempDir::new("budget-elf");
    let path = dir.file("gpt.elf", &elf);
    let file = model_file("gpt.aka");
    let (v, o) = inspect_json(&["--board", "nrf52840", "--elf", p(&path), p(&file)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        num(&v["flash"]["parts"]["runtime_code"]),
        1024 + 20_000 + 150_000 + 100 - 115_172
    );
    assert_eq!(
        num(&v["ram"]["parts"]["firmware_statics"]),
        100 + 30_000 - 20_000
    );
    assert!(v["firmware"]["source"]
        .as_str()
        .unwrap()
        .contains("gpt.elf"));

    // Not an ELF, or an ELF without the firmware's model: clean errors.
    let junk = dir.file("junk.elf", b"not an elf at all");
    let o = aka(&["inspect", "--board", "qemu", "--elf", p(&junk), p(&file)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a firmware ELF"), "{}", stderr(&o));
    for (what, message) in [(&dir.0, "not a regular file"), (&file, "no ELF magic")] {
        let o = aka(&["inspect", "--board", "qemu", "--elf", p(what), p(&file)]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(message), "{}", stderr(&o));
    }
    let bare = dir.file("bare.elf", &fake_elf(&[(".text", 100)], &[]));
    let o = aka(&["inspect", "--board", "qemu", "--elf", p(&bare), p(&file)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no embedded MODEL"), "{}", stderr(&o));
}
