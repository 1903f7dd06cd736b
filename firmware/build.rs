//! Link setup for the firmware binaries, and the model buffers sized from the model files.
//!
//! Everything the link needs is given here rather than in `.cargo/config.toml` rustflags, so the
//! link is right however cargo is invoked (`.cargo/config.toml` is only read from the current
//! directory): the board's `memory.x`, `link.x` (cortex-m-rt) and `defmt.x` (defmt).
//!
//! The embedded model files are loaded here with aka-core (a build dependency, on the host): the
//! sizes of the apps' buffers are generated from them (`$OUT_DIR/gpt_sizes.rs`,
//! `$OUT_DIR/mnist_sizes.rs`), and a model that does not fit the board, next to the firmware's
//! runtime code, other statics and stack as recorded in `budgets.json` (by `ci.sh`), fails the
//! build here with the numbers, the same budget as `aka inspect --board`.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

const BOARDS: [&str; 3] = ["qemu", "nrf52840", "stm32f411"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=memory");

    // Bare-metal ARM only: on the host (e.g. `cargo build --manifest-path firmware/Cargo.toml` from
    // the repository root without `--target`) fail loudly instead of producing a useless binary.
    let target = env::var("TARGET").unwrap();
    if !target.starts_with("thumbv") || env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        panic!(
            "aka-firmware builds for Cortex-M only (target `{target}`). Run cargo from the \
             firmware/ directory, whose .cargo/config.toml selects thumbv7em-none-eabihf, or pass \
             `--target thumbv7em-none-eabihf`."
        );
    }

    // Exactly one board feature.
    let boards: Vec<&str> = BOARDS
        .iter()
        .copied()
        .filter(|b| env::var_os(format!("CARGO_FEATURE_{}", b.to_uppercase())).is_some())
        .collect();
    let board = match boards.as_slice() {
        [b] => *b,
        [] => panic!("select a board: --features one of {BOARDS:?} (default: qemu)"),
        many => panic!(
            "select exactly one board, got {many:?}; use --no-default-features --features BOARD"
        ),
    };

    // The board's memory layout becomes `memory.x`, which `link.x` INCLUDEs. For `qemu`,
    // `AKA_QEMU_LIMITS=nrf52840|stm32f411` keeps QEMU's addresses with that board's FLASH and
    // RAM lengths: the emulator then runs a firmware exactly as large as the board holds (a
    // stack that outgrows the board's RAM faults), and the budget below is that board's.
    println!("cargo:rerun-if-env-changed=AKA_QEMU_LIMITS");
    let memory = manifest_dir.join("memory").join(format!("{board}.x"));
    let limits_of = match env::var("AKA_QEMU_LIMITS") {
        Ok(b) if !b.is_empty() => {
            if board != "qemu" || !BOARDS[1..].contains(&b.as_str()) {
                fail(format!(
                    "AKA_QEMU_LIMITS={b:?}: give one of {:?}, with the qemu board",
                    &BOARDS[1..]
                ));
            }
            Some(b)
        }
        _ => None,
    };
    let limits = match &limits_of {
        Some(b) => {
            let l = Limits::of(&manifest_dir.join("memory").join(format!("{b}.x")));
            let text = format!(
                "/* QEMU `mps2-an386` addresses (memory/qemu.x) with the {b} board's lengths \
                 (memory/{b}.x), AKA_QEMU_LIMITS={b}; written by build.rs. */\n\
                 MEMORY\n{{\n  FLASH : ORIGIN = 0x00000000, LENGTH = {}\n  \
                 RAM : ORIGIN = 0x20000000, LENGTH = {}\n}}\n",
                l.flash, l.ram
            );
            fs::write(out.join("memory.x"), text).expect("write memory.x");
            l
        }
        None => {
            fs::copy(&memory, out.join("memory.x"))
                .unwrap_or_else(|e| panic!("copy {}: {e}", memory.display()));
            Limits::of(&memory)
        }
    };
    let board_name = match &limits_of {
        Some(b) => format!("qemu (with {b} limits)"),
        None => board.to_string(),
    };
    println!("cargo:rustc-link-search={}", out.display());
    // With cortex-m-rt's `device` feature (our `small-vector-table`), its `link.x` INCLUDEs a
    // `device.x` (a device crate's interrupt handler aliases): ours has none.
    fs::write(
        out.join("device.x"),
        "/* no device interrupt handlers (src/vectors.rs) */\n",
    )
    .expect("write device.x");

    // `--nmagic`: no page alignment of sections (cortex-m-rt's recommendation for LLD/flip-link).
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");

    // defmt's log filter is read at compile time; without DEFMT_LOG only `error` is kept. The
    // default is in .cargo/config.toml [env]; repeat it here for builds that don't read that file.
    println!("cargo:rerun-if-env-changed=DEFMT_LOG");
    if env::var_os("DEFMT_LOG").is_none() {
        println!("cargo:rustc-env=DEFMT_LOG=info");
    }

    // Model files embedded with `include_bytes!(concat!(env!("AKA_MODEL_DIR"), "/NAME"))`.
    println!("cargo:rerun-if-env-changed=AKA_MODEL_DIR");
    let models = match env::var_os("AKA_MODEL_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                manifest_dir.join(dir)
            }
        }
        None => manifest_dir.join("models"),
    };
    println!("cargo:rerun-if-changed={}", models.display());
    println!("cargo:rustc-env=AKA_MODEL_DIR={}", models.display());
    println!("cargo:rustc-env=AKA_BOARD={board}");

    // Which files the `mnist` and `gpt` binaries embed (names inside AKA_MODEL_DIR). The CNN is
    // the default MNIST model because it fits every board; the MLP (`mnist-mlp.aka`, ~460 KB)
    // fits `qemu` and `nrf52840` but not `stm32f411`'s 512 KiB next to the test images.
    let mnist = model_file(&models, "AKA_MNIST_MODEL", "mnist-cnn.aka");
    let gpt = model_file(&models, "AKA_GPT_MODEL", "gpt.aka");
    println!("cargo:rustc-env=AKA_MNIST_MODEL={mnist}");
    println!("cargo:rustc-env=AKA_GPT_MODEL={gpt}");
    for data in ["mnist-test-images.u8", "mnist-test-labels.u8"] {
        require(&models, data);
    }

    // The buffers, sized from the files, and the budget on this board.
    println!("cargo:rerun-if-changed=budgets.json");
    let budgets = fs::read_to_string(manifest_dir.join("budgets.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let gpt_path = models.join(&gpt);
    let gpt_buffers = gpt_sizes(&gpt_path, &out);
    let mnist_path = models.join(&mnist);
    let mnist_buffers = mnist_sizes(&mnist_path, &out);
    let data_bytes: u64 = ["mnist-test-images.u8", "mnist-test-labels.u8"]
        .iter()
        .filter_map(|f| fs::metadata(models.join(f)).ok())
        .map(|m| m.len())
        .sum();
    for (app, path, buffers, data) in [
        ("gpt", &gpt_path, gpt_buffers, 0),
        ("mnist", &mnist_path, mnist_buffers, data_bytes),
    ] {
        let (Some(buffers), Ok(meta)) = (buffers, fs::metadata(path)) else {
            continue;
        };
        let Some(rec) = budgets.as_ref().and_then(|b| Recorded::of(b, board, app)) else {
            println!(
                "cargo:warning=budgets.json has no figures for {board}/{app}: the fit of {} is not \
                 checked (run firmware/ci.sh to record them)",
                path.display()
            );
            continue;
        };
        let inspect_board = limits_of.as_deref().unwrap_or(board);
        check_fit(
            (&board_name, inspect_board),
            app,
            path,
            &limits,
            &rec,
            meta.len(),
            data,
            buffers,
        );
    }
}

/// The board's flash and RAM, from its `memory.x`.
struct Limits {
    flash: u64,
    ram: u64,
}

impl Limits {
    /// Reads the `LENGTH` of the `FLASH` and `RAM` regions (decimal or hex, `K`/`M` suffixes).
    fn of(memory_x: &Path) -> Self {
        let text = fs::read_to_string(memory_x)
            .unwrap_or_else(|e| panic!("read {}: {e}", memory_x.display()));
        let length = |region: &str| -> u64 {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(region) && l.contains("LENGTH"))
                .unwrap_or_else(|| panic!("{}: no {region} region", memory_x.display()));
            let v = line.split("LENGTH").nth(1).unwrap_or("");
            let v = v
                .trim_start_matches([' ', '='])
                .trim()
                .trim_end_matches(',');
            let (digits, unit) = match v.chars().last() {
                Some('K') => (&v[..v.len() - 1], 1024),
                Some('M') => (&v[..v.len() - 1], 1024 * 1024),
                _ => (v, 1),
            };
            let n = match digits.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => digits.parse(),
            };
            n.unwrap_or_else(|_| panic!("{}: LENGTH {v:?} of {region}", memory_x.display())) * unit
        };
        Self {
            flash: length("FLASH"),
            ram: length("RAM"),
        }
    }
}

/// What `ci.sh` measured for an app on a board (`budgets.json`).
struct Recorded {
    code: u64,
    other_statics: u64,
    stack: u64,
}

impl Recorded {
    fn of(budgets: &serde_json::Value, board: &str, app: &str) -> Option<Self> {
        let e = budgets.get("boards")?.get(board)?.get(app)?;
        let n = |k: &str| e.get(k).and_then(serde_json::Value::as_u64);
        Some(Self {
            code: n("code_bytes")?,
            other_statics: n("other_static_ram_bytes")?,
            stack: n("stack_high_water_bytes")?,
        })
    }
}

/// Fails the build, with the numbers, if `app` with the model at `path` (`model` bytes), `data`
/// bytes of embedded data and `buffers` bytes of model buffers does not fit `board` (as named
/// in the message; `inspect_board` is the `aka inspect --board` that checks the same limits).
#[allow(clippy::too_many_arguments)]
fn check_fit(
    (board, inspect_board): (&str, &str),
    app: &str,
    path: &Path,
    limits: &Limits,
    rec: &Recorded,
    model: u64,
    data: u64,
    buffers: u64,
) {
    let flash = rec.code + model + data;
    let ram = buffers + rec.other_statics + rec.stack;
    let mut over = Vec::new();
    if flash > limits.flash {
        over.push(format!(
            "flash: {flash} bytes (runtime code {} + model {model} + data {data}) > {} bytes, \
             over by {}",
            rec.code,
            limits.flash,
            flash - limits.flash
        ));
    }
    if ram > limits.ram {
        over.push(format!(
            "RAM: {ram} bytes (model buffers {buffers} + other statics {} + stack high-water {}) \
             > {} bytes, over by {}",
            rec.other_statics,
            rec.stack,
            limits.ram,
            ram - limits.ram
        ));
    }
    if !over.is_empty() {
        fail(format!(
            "the `{app}` firmware with {} does not fit the {board} board.\n  {}\n\
             (runtime code, other statics and stack as recorded in firmware/budgets.json.) \
             Check a model with `aka inspect --board {inspect_board} FILE`; choose another \
             with AKA_{}_MODEL=FILE, or another board.",
            path.display(),
            over.join("\n  "),
            app.to_uppercase()
        ));
    }
}

/// Ends the build script with `message` on stderr (cargo shows it), without a backtrace.
fn fail(message: String) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// Loads the GPT model file at `path` with aka-core and writes `gpt_sizes.rs`: the lengths of
/// the `gpt`/`chat` buffers for it. Returns the buffers' bytes, or `None` (and zero lengths) if
/// the file is missing (its `include_bytes!` then fails, in the binaries that embed it only).
fn gpt_sizes(path: &Path, out: &Path) -> Option<u64> {
    let name = path.display();
    let (f32_len, i8_len, window, vocab) = match fs::read(path) {
        Ok(bytes) => {
            // `offset-only` links the int8-offset kernel alone: name the matrix it cannot run
            // (checked on the decoded file first: the build script's aka-core has the firmware's
            // features too, so its loader would refuse such a model without naming it).
            if env::var_os("CARGO_FEATURE_OFFSET_ONLY").is_some() {
                use aka_core::format::{Body, ModelFile};
                if let Ok((
                    ModelFile {
                        body: Body::Gpt(desc),
                        ..
                    },
                    _,
                )) = ModelFile::take_from_bytes(&bytes)
                {
                    if let Some((block, what, wt)) = desc.first_non_offset_matrix() {
                        let at = block.map_or(String::new(), |b| format!(" of block {b}"));
                        fail(format!(
                            "{name}: the `offset-only` feature runs int8-offset matrices only, \
                             but {what}{at} is stored as {wt:?}. Build without `offset-only`, or \
                             re-export the model with int8 weights and without `--plain-int8` \
                             (column counts a multiple of 8)."
                        ))
                    }
                }
            }
            let m = aka_core::gpt::GptModel::load(&bytes).unwrap_or_else(|e| {
                fail(format!("{name}: aka-core cannot load this GPT model: {e}"))
            });
            (
                m.state_f32_len(),
                m.state_i8_len(),
                m.block_size(),
                m.vocab_size(),
            )
        }
        Err(_) => (0, 0, 0, 0),
    };
    // Tokens the `gpt` app generates (AKA_GPT_TOKENS, default 100).
    println!("cargo:rerun-if-env-changed=AKA_GPT_TOKENS");
    let tokens = match env::var("AKA_GPT_TOKENS") {
        Ok(t) => match t.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => fail(format!(
                "AKA_GPT_TOKENS={t:?}: give a number of tokens, at least 1"
            )),
        },
        Err(_) => 100,
    };
    let code = format!(
        "// Generated by build.rs from {name}.\n\
         /// Tokens the `gpt` app generates after the prompt (`AKA_GPT_TOKENS`, default 100).\n\
         pub const TOKENS: usize = {tokens};\n\
         /// f32 run state (`GptModel::state_f32_len` of the embedded model).\n\
         pub const F32_LEN: usize = {f32_len};\n\
         /// i8 run state: KV cache + scratch (`GptModel::state_i8_len`).\n\
         pub const I8_LEN: usize = {i8_len};\n\
         /// Token window (`GptModel::block_size`).\n\
         pub const WINDOW_LEN: usize = {window};\n\
         /// Sampling scratch (`GptModel::vocab_size`).\n\
         pub const VOCAB_MAX: usize = {vocab};\n"
    );
    fs::write(out.join("gpt_sizes.rs"), code).expect("write gpt_sizes.rs");
    path.is_file()
        .then_some((f32_len * 4 + i8_len + window * 4 + vocab * 4) as u64)
}

/// Loads the sequential model file at `path` and writes `mnist_sizes.rs` (the arena length);
/// like [`gpt_sizes`].
fn mnist_sizes(path: &Path, out: &Path) -> Option<u64> {
    let name = path.display();
    let arena = match fs::read(path) {
        Ok(bytes) => aka_core::SequentialModel::load(&bytes)
            .unwrap_or_else(|e| fail(format!("{name}: aka-core cannot load this model: {e}")))
            .arena_size(),
        Err(_) => 0,
    };
    let code = format!(
        "// Generated by build.rs from {name}.\n\
         /// Arena bytes (`SequentialModel::arena_size` of the embedded model).\n\
         pub const ARENA_LEN: usize = {arena};\n"
    );
    fs::write(out.join("mnist_sizes.rs"), code).expect("write mnist_sizes.rs");
    path.is_file().then_some(arena as u64)
}

/// The file name in `$var` (default `default`), which must exist in `models`.
fn model_file(models: &std::path::Path, var: &str, default: &str) -> String {
    println!("cargo:rerun-if-env-changed={var}");
    let name = env::var(var).unwrap_or_else(|_| default.to_string());
    if name.is_empty() || name.contains('/') || name.contains('\\') {
        panic!("{var}={name:?}: give a file name inside AKA_MODEL_DIR");
    }
    require(models, &name);
    name
}

/// Warns (the `include_bytes!` of the binary that needs it then fails) if `models/name` is
/// missing; rebuilds when it changes. Only the `mnist` and `gpt` binaries embed these files, so
/// the other binaries build without them.
fn require(models: &std::path::Path, name: &str) {
    let path = models.join(name);
    println!("cargo:rerun-if-changed={}", path.display());
    if !path.is_file() {
        println!(
            "cargo:warning={} is missing: regenerate the model files with \
             `bash firmware/models/make-models.sh` (or set AKA_MODEL_DIR / AKA_MNIST_MODEL / \
             AKA_GPT_MODEL)",
            path.display()
        );
    }
}
