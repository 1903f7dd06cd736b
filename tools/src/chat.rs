//! `aka chat`: talk to the `chat` firmware (`firmware/src/app/chat.rs`) over its serial line.
//!
//! ```text
//! aka chat --qemu [--model FILE | --elf ELF] [--log FILE]    # build + run in QEMU, UART0 on a Unix socket
//! aka chat --serial /dev/ttyACM0 [--baud 115200]              # a flashed board
//!          [--tokens N] [--temperature T] [--top-k K] [--seed S] [--timeout SECS]
//! ```
//!
//! Each line of standard input is sent as one line (a prompt or a `/command`, see
//! `aka_core::chat`); the answer is printed as it streams in. `--tokens`, `--temperature`,
//! `--top-k` and `--seed` are sent first, as the device commands. When standard input is not a
//! terminal, each prompt is echoed before its answer and a newline ends it, so the output for a
//! prompt is exactly `aka run`'s (`printf 'ROMEO:\n' | aka chat --qemu --tokens 50` prints what
//! `aka run firmware/models/gpt.aka --prompt ROMEO: --tokens 50` prints); on a terminal the typed
//! line is already on screen and a `> ` prompt is shown on stderr. Status lines (command
//! replies, notes, refusals) go to stderr. A line with a `\r` inside is not sent (the device
//! would take it as two lines) and counts as refused. The exit status is 0 at the end of input, 1 if the
//! device refused a line or on an error (QEMU that does not start, a port that does not open, a
//! device that closes the line or stays silent for `--timeout` seconds).
//!
//! With `--qemu`, QEMU (`mps2-an386`, `-icount shift=0`, as `firmware/run-qemu.sh`) gets UART0
//! on a Unix socket this command owns (`-chardev socket,server=on,wait=on`), so semihosting
//! stdout keeps the defmt log: with `--log FILE` it is decoded by `defmt-print` into FILE
//! (per-answer instruction counts), otherwise discarded. QEMU is stopped at the end of input.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aka_core::chat::{self as protocol, MARKER};
use anyhow::{bail, Context};

use crate::model::{self, Model};

/// The flags of `aka chat`.
#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// Run the `chat` firmware in QEMU (`mps2-an386`), built from firmware/ unless --elf.
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    pub qemu: bool,
    /// With --qemu: the GPT model to embed (built with AKA_MODEL_DIR / AKA_GPT_MODEL)
    /// [default: firmware/models/gpt.aka].
    #[arg(long, value_name = "FILE", requires = "qemu", conflicts_with = "elf")]
    pub model: Option<PathBuf>,
    /// With --qemu: a `chat` firmware ELF to run instead of building one.
    #[arg(long, value_name = "ELF", requires = "qemu")]
    pub elf: Option<PathBuf>,
    /// With --qemu: write the decoded defmt log (needs `defmt-print`) to FILE.
    #[arg(long, value_name = "FILE", requires = "qemu")]
    pub log: Option<PathBuf>,
    /// A board's serial port running the `chat` firmware (flashed with probe-rs).
    #[arg(long, value_name = "PORT")]
    pub serial: Option<String>,
    /// Baud rate of --serial.
    #[arg(
        long,
        value_name = "BAUD",
        default_value_t = 115_200,
        requires = "serial"
    )]
    pub baud: u32,
    /// Tokens (chars) generated per prompt: sent as `/tokens N` [device default: 100].
    #[arg(long, value_name = "N")]
    pub tokens: Option<u32>,
    /// Softmax temperature, >= 0, 0 = greedy: sent as `/temperature T` [device default: 0.8].
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Sample among the K most likely tokens, 0 = all: sent as `/top-k K` [device default: 40].
    #[arg(long, value_name = "K")]
    pub top_k: Option<u32>,
    /// Seed of the sampling RNG: sent as `/seed S` [device default: 1].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Give up when the device sends nothing for this many seconds while an answer is due.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
}

/// Runs `aka chat` (see the [module documentation](self)); `max_file_bytes` caps `--model`.
pub fn run(args: &ChatArgs, max_file_bytes: u64) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut qemu = None;
    let link: Box<dyn Link> = if args.qemu {
        let elf = match &args.elf {
            Some(elf) => {
                if !elf.is_file() {
                    bail!("--elf {}: no such file", elf.display());
                }
                let mut magic = [0u8; 4];
                let is_elf = std::fs::File::open(elf)
                    .and_then(|mut f| f.read_exact(&mut magic))
                    .is_ok()
                    && magic == *b"\x7fELF";
                if !is_elf {
                    bail!("--elf {}: not an ELF file", elf.display());
                }
                elf.clone()
            }
            None => build_firmware(args.model.as_deref(), max_file_bytes)?,
        };
        let mut q = Qemu::start(&elf, args.log.as_deref())?;
        match q.connect() {
            Ok(stream) => {
                qemu = Some(q);
                Box::new(stream)
            }
            Err(e) => {
                q.stop(false);
                return Err(e);
            }
        }
    } else {
        let port = args.serial.as_deref().unwrap_or_default();
        let p = serialport::new(port, args.baud)
            .timeout(Duration::from_millis(100))
            .open()
            .with_context(|| format!("cannot open serial port {port} at {} baud", args.baud))?;
        // Whatever the device sent before (its `ready` line, old output) is not a reply.
        let _ = p.clear(serialport::ClearBuffer::Input);
        Box::new(p)
    };
    let mut session = Session::new(link, timeout);
    let result = if qemu.is_some() {
        // The firmware announces itself once it runs: a QEMU that cannot run it fails here,
        // even with no input.
        session
            .wait_ready(&mut std::io::stderr())
            .and_then(|()| converse(&mut session, args))
    } else {
        converse(&mut session, args)
    };
    if let Some(q) = qemu {
        let ended = q.stop(result.is_err());
        if result.is_err() {
            if let Some(msg) = ended {
                return result.with_context(|| msg);
            }
        }
    }
    result
}

/// Sends the settings, then each line of stdin.
fn converse(session: &mut Session<Box<dyn Link>>, args: &ChatArgs) -> anyhow::Result<()> {
    use protocol::Command as C;
    let settings = [
        args.tokens.map(C::Tokens),
        args.temperature.map(C::Temperature),
        args.top_k.map(C::TopK),
        args.seed.map(C::Seed),
    ];
    let mut stderr = std::io::stderr();
    for cmd in settings.into_iter().flatten() {
        let line = cmd.to_string();
        let reply = session.exchange(line.as_bytes(), &mut std::io::sink(), &mut stderr)?;
        if let Reply::Error(e) = reply {
            bail!("the device refused `{line}`: {e}");
        }
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut refused = 0usize;
    let mut line = Vec::new();
    loop {
        if interactive {
            eprint!("> ");
        }
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.contains(&b'\r') {
            // The device ends a line at a `\r` too: this would be two lines, two replies.
            refused += 1;
            eprintln!("aka chat: a line with a carriage return inside is not sent");
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.starts_with('/') && !text.starts_with("//");
        let mut out = stdout.lock();
        let reply = if command || interactive {
            let mut sink = std::io::sink();
            let sink: &mut dyn Write = if command { &mut sink } else { &mut out };
            session.exchange(&line, sink, &mut stderr)?
        } else {
            // The prompt as the device takes it (`//x` is the prompt `/x`), echoed as `aka run`
            // prints it, before the first text or the final line.
            let prompt = text.strip_prefix('/').unwrap_or(&text).to_string();
            let mut echo = Echo {
                prefix: Some(prompt),
                out: &mut out,
            };
            let reply = session.exchange(&line, &mut echo, &mut stderr)?;
            if matches!(reply, Reply::Ok(_)) {
                echo.flush_prefix()?;
                writeln!(out)?;
            }
            reply
        };
        if interactive && !command && matches!(reply, Reply::Ok(_)) {
            writeln!(out)?;
        }
        out.flush()?;
        match reply {
            Reply::Ok(msg) if command => eprintln!("device: ok {msg}"),
            Reply::Ok(_) => {}
            Reply::Error(msg) => {
                refused += 1;
                eprintln!("device: error: {msg}");
            }
        }
    }
    if refused > 0 {
        bail!("{refused} line(s) refused (see above)");
    }
    Ok(())
}

/// Writes `prefix` before the first bytes (the prompt echo).
struct Echo<'o, W: Write> {
    prefix: Option<String>,
    out: &'o mut W,
}

impl<W: Write> Echo<'_, W> {
    fn flush_prefix(&mut self) -> std::io::Result<()> {
        if let Some(p) = self.prefix.take() {
            self.out.write_all(p.as_bytes())?;
        }
        Ok(())
    }
}

impl<W: Write> Write for Echo<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.flush_prefix()?;
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A byte link to the device: a Unix socket (QEMU) or a serial port.
pub trait Link: Read + Write + Send {}
impl<T: Read + Write + Send + ?Sized> Link for T {}

/// The final status line of one exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `0x04 ok MESSAGE`.
    Ok(String),
    /// `0x04 error MESSAGE`.
    Error(String),
}

/// The host end of the protocol over a [`Link`].
pub struct Session<L: Read + Write> {
    link: L,
    timeout: Duration,
    buf: Vec<u8>,
    at: usize,
}

impl<L: Read + Write> Session<L> {
    /// A session on `link`; `timeout`: longest silence while a reply is due.
    pub fn new(link: L, timeout: Duration) -> Self {
        Self {
            link,
            timeout,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// The next byte from the device (waits up to the timeout for one).
    fn byte(&mut self) -> anyhow::Result<u8> {
        if self.at < self.buf.len() {
            self.at += 1;
            return Ok(self.buf[self.at - 1]);
        }
        self.buf.resize(4096, 0);
        let start = Instant::now();
        loop {
            match self.link.read(&mut self.buf) {
                Ok(0) => {
                    self.buf.clear();
                    bail!("the device closed the connection")
                }
                Ok(n) => {
                    self.buf.truncate(n);
                    self.at = 1;
                    return Ok(self.buf[0]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    if start.elapsed() >= self.timeout {
                        self.buf.clear();
                        bail!(
                            "no answer from the device in {} s (is the `chat` firmware running?)",
                            self.timeout.as_secs()
                        );
                    }
                }
                Err(e) => {
                    self.buf.clear();
                    return Err(e).context("reading from the device");
                }
            }
        }
    }

    /// Sends `line` (a `\n` is added) and reads the reply up to its final status line: the
    /// generated text goes to `text` as it arrives (without the separator `\n` the device puts
    /// before a status line), notes and the `ready` line to `log` (as `device: …` lines).
    pub fn exchange(
        &mut self,
        line: &[u8],
        text: &mut dyn Write,
        log: &mut dyn Write,
    ) -> anyhow::Result<Reply> {
        let mut msg = line.to_vec();
        msg.push(b'\n');
        self.link
            .write_all(&msg)
            .and_then(|()| self.link.flush())
            .context("writing to the device")?;
        self.read_reply(text, log)
    }

    /// Waits for the `ready` line the firmware sends after reset (anything before it is
    /// dropped) and writes it to `log`.
    pub fn wait_ready(&mut self, log: &mut dyn Write) -> anyhow::Result<()> {
        let ready = [&[MARKER], protocol::READY.as_bytes()].concat();
        let mut line = Vec::new();
        loop {
            match self.byte()? {
                b'\n' => {
                    if let Some(rest) = line.strip_prefix(ready.as_slice()) {
                        let rest = String::from_utf8_lossy(rest);
                        writeln!(log, "device: ready{rest}")?;
                        return Ok(());
                    }
                    line.clear();
                }
                b => line.push(b),
            }
        }
    }

    /// Reads up to a final status line (see [`Session::exchange`]).
    pub fn read_reply(
        &mut self,
        text: &mut dyn Write,
        log: &mut dyn Write,
    ) -> anyhow::Result<Reply> {
        let mut held_newline = false;
        loop {
            let b = self.byte()?;
            if b == MARKER {
                held_newline = false;
                let mut status = Vec::new();
                loop {
                    match self.byte()? {
                        b'\n' => break,
                        c => status.push(c),
                    }
                }
                let status = String::from_utf8_lossy(&status);
                let (word, message) = status.split_once(' ').unwrap_or((&status, ""));
                match word {
                    protocol::OK => return Ok(Reply::Ok(message.into())),
                    protocol::ERROR => return Ok(Reply::Error(message.into())),
                    _ => writeln!(log, "device: {word} {message}")?,
                }
                continue;
            }
            if held_newline {
                text.write_all(b"\n")?;
            }
            held_newline = b == b'\n';
            if !held_newline {
                text.write_all(&[b])?;
                if self.at >= self.buf.len() {
                    text.flush()?;
                }
            }
        }
    }
}

/// The firmware/ directory of this checkout.
fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware")
}

/// `cargo build --release --bin chat` in firmware/ (with `model` embedded); returns the ELF.
fn build_firmware(model: Option<&Path>, max_file_bytes: u64) -> anyhow::Result<PathBuf> {
    let dir = firmware_dir();
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "{} not found: run from a checkout of the repository, or give --elf",
            dir.display()
        );
    }
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&dir)
        .args(["build", "--release", "--bin", "chat"]);
    // The variables of a surrounding cargo build/run would redirect the nested build (target
    // dir, flags, toolchain); firmware/ reads its own .cargo/config.toml.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTUP_TOOLCHAIN"
                    | "AKA_MODEL_DIR"
                    | "AKA_GPT_MODEL"
            )
        {
            cmd.env_remove(key);
        }
    }
    if let Some(model) = model {
        match model::open(model, max_file_bytes)? {
            Model::Gpt(_) => {}
            m => bail!(
                "{} is a {}: the chat firmware needs a GPT model",
                model.display(),
                m.kind()
            ),
        }
        let model = std::fs::canonicalize(model)?;
        let (Some(parent), Some(name)) = (model.parent(), model.file_name()) else {
            bail!("{}: not a file", model.display());
        };
        cmd.env("AKA_MODEL_DIR", parent).env("AKA_GPT_MODEL", name);
    }
    eprintln!("aka chat: building the chat firmware ({})", dir.display());
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .context("running cargo to build the firmware")?;
    if !status.success() {
        bail!(
            "building the chat firmware failed ({status}); needs the thumbv7em-none-eabihf target and flip-link (bash firmware/install-tools.sh)"
        );
    }
    Ok(dir.join("target/thumbv7em-none-eabihf/release/chat"))
}

/// QEMU running the chat firmware, UART0 on a Unix socket in a private temporary directory.
struct Qemu {
    child: Child,
    decoder: Option<Child>,
    dir: PathBuf,
}

impl Qemu {
    fn start(elf: &Path, log: Option<&Path>) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("aka-chat-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let sock = dir.join("uart0.sock");
        let stderr = std::fs::File::create(dir.join("qemu.stderr"))?;
        let mut cmd = Command::new("qemu-system-arm");
        cmd.args([
            "-machine",
            "mps2-an386",
            "-cpu",
            "cortex-m4",
            "-icount",
            "shift=0",
        ])
        .args(["-display", "none", "-monitor", "none"])
        .arg("-chardev")
        .arg(format!(
            "socket,id=uart0,path={},server=on,wait=on",
            sock.display()
        ))
        .args(["-serial", "chardev:uart0"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stderr(stderr)
        .stdout(if log.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                if e.kind() == std::io::ErrorKind::NotFound {
                    bail!("qemu-system-arm not found: install it (bash firmware/install-tools.sh, or apt-get install qemu-system-arm)");
                }
                return Err(e).context("starting qemu-system-arm");
            }
        };
        let mut decoder = None;
        if let (Some(log), Some(stdout)) = (log, child.stdout.take()) {
            let file = std::fs::File::create(log)
                .with_context(|| format!("creating the log {}", log.display()));
            let spawned = file.and_then(|file| {
                Command::new("defmt-print")
                    .arg("-e")
                    .arg(elf)
                    .stdin(stdout)
                    .stdout(file)
                    .spawn()
                    .context("starting defmt-print for --log (cargo install defmt-print)")
            });
            match spawned {
                Ok(d) => decoder = Some(d),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        }
        Ok(Self {
            child,
            decoder,
            dir,
        })
    }

    /// QEMU's stderr so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("qemu.stderr"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("QEMU waiting for connection") && !l.trim().is_empty())
            .take(1) // a CPU lockup adds a register dump
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Connects to UART0 (QEMU starts the firmware then).
    fn connect(&mut self) -> anyhow::Result<UnixStream> {
        let sock = self.dir.join("uart0.sock");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let err = self.stderr();
                bail!("qemu-system-arm exited ({status}) before the firmware started: {err}");
            }
            if let Ok(s) = UnixStream::connect(&sock) {
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                return Ok(s);
            }
            if start.elapsed() > Duration::from_secs(20) {
                let err = self.stderr();
                bail!("qemu-system-arm did not open its serial socket in 20 s: {err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops QEMU (and the log decoder); returns a description of how QEMU ended if it had
    /// exited by itself (e.g. a firmware panic). `failed`: the session failed, so give QEMU a
    /// moment to finish exiting (it closes the socket before it exits).
    fn stop(mut self, failed: bool) -> Option<String> {
        if failed {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2)
                && matches!(self.child.try_wait(), Ok(None))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let ended = match self.child.try_wait() {
            Ok(Some(status)) => {
                let meaning = match status.code() {
                    Some(101) => " (firmware panic)",
                    Some(102) => " (HardFault)",
                    Some(103) => " (unhandled exception)",
                    _ => "",
                };
                let err = self.stderr();
                let err = if err.is_empty() {
                    String::new()
                } else {
                    format!(": {err}")
                };
                Some(format!("QEMU exited with {status}{meaning}{err}"))
            }
            _ => None,
        };
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut d) = self.decoder.take() {
            let _ = d.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        ended
    }
}
