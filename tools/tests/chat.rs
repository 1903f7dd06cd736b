//! `aka chat` and the chat protocol (`aka_core::chat`).
//!
//! - the line/command parser and the line reader the firmware runs (host-built: the same code);
//! - the host's reply reader (`aka_tools::chat::Session`) against scripted device bytes;
//! - errors without a device: a serial port that does not open, a missing ELF;
//! - `#[ignore]`d, needs QEMU + the thumbv7em build (like tests/tests/device.rs):
//!   `aka chat --qemu` builds and runs the `chat` firmware and must print exactly `aka run`'s
//!   text for two prompts with `/reset` between them, carry the context over without `/reset`,
//!   and keep serving after a too-long line and a bad command:
//!
//! ```sh
//! cargo test -p aka-tools --test chat -- --ignored
//! ```

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{aka, stderr};

use aka_core::chat::{parse_line, Command as C, CommandError, Line, LineError, LineReader};
use aka_tools::chat::{Reply, Session};
use aka_tools::generate::{generate_string, Settings};

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware/models/gpt.aka");

#[test]
fn prompts_and_escapes() {
    assert_eq!(parse_line("ROMEO:"), Ok(Line::Prompt("ROMEO:")));
    assert_eq!(parse_line(""), Ok(Line::Prompt("")));
    assert_eq!(parse_line(" /tokens 3"), Ok(Line::Prompt(" /tokens 3")));
    assert_eq!(parse_line("//tokens 3"), Ok(Line::Prompt("/tokens 3")));
    assert_eq!(parse_line("//"), Ok(Line::Prompt("/")));
}

#[test]
fn commands() {
    assert_eq!(parse_line("/tokens 50"), Ok(Line::Command(C::Tokens(50))));
    assert_eq!(parse_line("/tokens   7  "), Ok(Line::Command(C::Tokens(7))));
    assert_eq!(parse_line("/tokens 0"), Ok(Line::Command(C::Tokens(0))));
    assert_eq!(
        parse_line("/temperature 0.8"),
        Ok(Line::Command(C::Temperature(0.8)))
    );
    assert_eq!(
        parse_line("/temperature 0"),
        Ok(Line::Command(C::Temperature(0.0)))
    );
    assert_eq!(parse_line("/top-k 0"), Ok(Line::Command(C::TopK(0))));
    assert_eq!(
        parse_line("/seed 18446744073709551615"),
        Ok(Line::Command(C::Seed(u64::MAX)))
    );
    assert_eq!(parse_line("/reset"), Ok(Line::Command(C::Reset)));
    assert_eq!(parse_line("/reset "), Ok(Line::Command(C::Reset)));
}

#[test]
fn bad_commands() {
    assert_eq!(parse_line("/"), Err(CommandError::Unknown("/")));
    assert_eq!(parse_line("/bogus 1"), Err(CommandError::Unknown("/bogus")));
    assert_eq!(
        parse_line("/Tokens 1"),
        Err(CommandError::Unknown("/Tokens"))
    );
    assert_eq!(
        parse_line("/tokens"),
        Err(CommandError::MissingValue("/tokens"))
    );
    assert_eq!(
        parse_line("/seed 1 2"),
        Err(CommandError::ExtraValue("/seed"))
    );
    assert_eq!(
        parse_line("/reset now"),
        Err(CommandError::ExtraValue("/reset"))
    );
    for (line, cmd, value) in [
        ("/tokens -1", "/tokens", "-1"),
        ("/tokens 4294967296", "/tokens", "4294967296"),
        ("/tokens 1.5", "/tokens", "1.5"),
        ("/top-k x", "/top-k", "x"),
        ("/seed -3", "/seed", "-3"),
        ("/temperature -0.5", "/temperature", "-0.5"),
        ("/temperature nan", "/temperature", "nan"),
        ("/temperature inf", "/temperature", "inf"),
        ("/temperature warm", "/temperature", "warm"),
    ] {
        match parse_line(line) {
            Err(CommandError::BadValue {
                command, value: v, ..
            }) => {
                assert_eq!((command, v), (cmd, value), "{line}");
            }
            other => panic!("{line}: {other:?}"),
        }
    }
    // Messages name the command and say what is expected.
    let e = parse_line("/temperature -0.5").unwrap_err().to_string();
    assert!(e.contains("/temperature") && e.contains(">= 0"), "{e}");
}

/// Every command prints as the line that parses back to it (floats bit for bit).
#[test]
fn commands_round_trip() {
    for t in [0.8f32, 0.1 + 0.2, 1e-7, 3.4e38, 0.0, 1.0 / 3.0] {
        let line = C::Temperature(t).to_string();
        match parse_line(&line) {
            Ok(Line::Command(C::Temperature(back))) => {
                assert_eq!(back.to_bits(), t.to_bits(), "{line}")
            }
            other => panic!("{line}: {other:?}"),
        }
    }
    for c in [C::Tokens(u32::MAX), C::TopK(40), C::Seed(1), C::Reset] {
        assert_eq!(parse_line(&c.to_string()), Ok(Line::Command(c)));
    }
}

/// Feeds `bytes` to a reader of capacity N; the completed lines.
fn lines<const N: usize>(bytes: &[u8]) -> Vec<Result<String, LineError>> {
    let mut r = LineReader::<N>::new();
    bytes
        .iter()
        .filter_map(|&b| r.push(b).map(|l| l.map(str::to_string)))
        .collect()
}

#[test]
fn line_reader() {
    let ok = |s: &str| Ok(s.to_string());
    assert_eq!(
        lines::<8>(b"a\r\nb\rc\n\nd"),
        [ok("a"), ok("b"), ok("c"), ok("")]
    );
    // Exactly the capacity fits; one more byte is too long, and the next line is served.
    assert_eq!(
        lines::<4>(b"abcd\nabcde\r\nxy\n"),
        [
            ok("abcd"),
            Err(LineError::TooLong { len: 5, max: 4 }),
            ok("xy")
        ]
    );
    assert_eq!(
        lines::<8>(b"\xc3\n\xc3\xa9\n"),
        [Err(LineError::NotUtf8), ok("é")]
    );
    let mut r = LineReader::<8>::new();
    r.push(b'a');
    assert_eq!(r.pending(), 1);
}

/// A scripted device: answers each line written with the next canned reply.
struct Fake {
    replies: Vec<Vec<u8>>,
    out: Vec<u8>,
    written: Vec<u8>,
}

impl Read for Fake {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.out.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        // Two bytes at a time, to exercise the byte-level reassembly.
        let n = buf.len().min(self.out.len()).min(2);
        buf[..n].copy_from_slice(&self.out[..n]);
        self.out.drain(..n);
        Ok(n)
    }
}

impl Write for Fake {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written.extend_from_slice(buf);
        if buf.ends_with(b"\n") && !self.replies.is_empty() {
            let r = self.replies.remove(0);
            self.out.extend(r);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn session_reads_replies() {
    let fake = Fake {
        replies: vec![
            b"\x04ready aka chat\n\x04ok /tokens 5\n".to_vec(),
            // Text ending in its own newline: the device adds one separator before the status.
            b"\x04note '~' unknown\nab\n\n\x04ok 3 tokens\n".to_vec(),
            b"\ncd\n\x04ok 3 tokens\n".to_vec(),
            b"\x04error line too long\n".to_vec(),
        ],
        out: Vec::new(),
        written: Vec::new(),
    };
    let mut s = Session::new(fake, Duration::from_secs(2));
    let (mut text, mut log) = (Vec::new(), Vec::new());
    let r = s.exchange(b"/tokens 5", &mut text, &mut log).unwrap();
    assert_eq!(r, Reply::Ok("/tokens 5".into()));
    assert!(text.is_empty());
    let r = s.exchange(b"x", &mut text, &mut log).unwrap();
    assert_eq!(r, Reply::Ok("3 tokens".into()));
    assert_eq!(text, b"ab\n");
    text.clear();
    let r = s.exchange(b"", &mut text, &mut log).unwrap();
    assert_eq!(r, Reply::Ok("3 tokens".into()));
    assert_eq!(text, b"\ncd");
    text.clear();
    let r = s.exchange(&[b'y'; 300], &mut text, &mut log).unwrap();
    assert_eq!(r, Reply::Error("line too long".into()));
    assert!(text.is_empty());
    let log = String::from_utf8(log).unwrap();
    assert_eq!(
        log, "device: ready aka chat\ndevice: note '~' unknown\n",
        "{log}"
    );
    // A silent device is an error after the timeout, not a hang.
    let mut s = Session::new(
        Fake {
            replies: vec![],
            out: vec![],
            written: vec![],
        },
        Duration::from_millis(200),
    );
    let e = s
        .exchange(b"hello", &mut text, &mut Vec::new())
        .unwrap_err();
    assert!(e.to_string().contains("no answer"), "{e}");
}

#[test]
fn serial_port_that_does_not_open() {
    let o = aka(&["chat", "--serial", "/nonexistent/ttyACM9"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: cannot open serial port /nonexistent/ttyACM9"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn qemu_flag_errors() {
    let o = aka(&["chat", "--qemu", "--elf", "/nonexistent/chat.elf"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    // One of --qemu / --serial, not both.
    assert_eq!(aka(&["chat"]).status.code(), Some(2));
    assert_eq!(
        aka(&["chat", "--qemu", "--serial", "/dev/null"])
            .status
            .code(),
        Some(2)
    );
    // The model must be a GPT (checked before building anything).
    let mnist = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../firmware/models/mnist-cnn.aka"
    );
    let o = aka(&["chat", "--qemu", "--model", mnist]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("needs a GPT model"), "{}", stderr(&o));
}

/// A file QEMU cannot run: a clear error and exit status 1, even with no input (the host waits
/// for the firmware's `ready` line), never a hang or a panic. Without QEMU installed the error
/// says so instead.
#[test]
fn qemu_that_cannot_run_the_firmware() {
    let dir = common::TempDir::new("chat-bad-elf");
    let not_elf = dir.file("not.elf", b"not an ELF file");
    let o = aka(&["chat", "--qemu", "--elf", not_elf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not an ELF file"), "{}", stderr(&o));
    // ELF magic, then garbage: QEMU loads it as a raw image and locks up at once.
    let elf = dir.file("bad.elf", b"\x7fELFgarbage-garbage-garbage");
    let o = Command::new(env!("CARGO_BIN_EXE_aka"))
        .args(["chat", "--qemu", "--timeout", "10", "--elf"])
        .arg(&elf)
        .stdin(Stdio::null())
        .output()
        .expect("runs aka");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: QEMU exited with")
            || err.contains("qemu-system-arm not found")
            || err.contains("no answer from the device"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `aka run MODEL --prompt P --tokens 50 --seed 1` as a string (prompt included, no newline).
fn reference(prompt: &str) -> String {
    let model = aka_tools::model::open(MODEL.as_ref(), 1 << 30).unwrap();
    let aka_tools::model::Model::Gpt(m) = model else {
        panic!("gpt.aka is a GPT")
    };
    let settings = Settings {
        prompt: prompt.into(),
        tokens: 50,
        seed: 1,
        ..Settings::default()
    };
    generate_string(&m, &settings).unwrap()
}

/// The QEMU session: builds the `chat` firmware (as `aka chat --qemu` does) and runs it.
#[test]
#[ignore = "needs qemu-system-arm, flip-link and the thumbv7em-none-eabihf target (bash firmware/install-tools.sh)"]
fn qemu_session_equals_aka_run() {
    let long = "z".repeat(aka_core::chat::LINE_MAX + 1);
    let input = format!("/top-k many\n{long}\nbad\rline\nROMEO:\n/reset\nJULIET:\nROMEO:\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_aka"))
        .args(["chat", "--qemu", "--tokens", "50", "--seed", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs aka");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    eprintln!("{err}");
    let out = String::from_utf8(o.stdout.clone()).unwrap();

    let romeo = reference("ROMEO:");
    let juliet = reference("JULIET:");
    // No /reset after JULIET: the context (and RNG) carry over, so the third answer is what
    // `aka run` generates after the whole history as one prompt.
    let history = format!("{juliet}ROMEO:");
    let carried = reference(&history);
    let third = format!("ROMEO:{}", &carried[history.len()..]);
    assert_eq!(out, format!("{romeo}\n{juliet}\n{third}\n"), "{err}");
    assert_eq!(romeo.chars().count(), "ROMEO:".len() + 50);

    // The bad lines were refused with a message each (the one with a `\r` by the host), and
    // the session went on.
    assert!(err.contains("device: error: /top-k \"many\""), "{err}");
    assert!(
        err.contains("129 bytes is longer than the 128-byte buffer"),
        "{err}"
    );
    assert!(err.contains("device: ok reset"), "{err}");
    assert!(err.contains("carriage return inside is not sent"), "{err}");
    assert!(err.contains("3 line(s) refused"), "{err}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "refused lines make the exit status 1"
    );
}

/// `printf 'ROMEO:\n' | aka chat --qemu --tokens 50 --seed 1` prints `aka run`'s output.
#[test]
#[ignore = "needs qemu-system-arm, flip-link and the thumbv7em-none-eabihf target (bash firmware/install-tools.sh)"]
fn qemu_one_prompt() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aka"))
        .args(["chat", "--qemu", "--tokens", "50", "--seed", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs aka");
    child.stdin.take().unwrap().write_all(b"ROMEO:\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let run = aka(&[
        "run", MODEL, "--prompt", "ROMEO:", "--tokens", "50", "--seed", "1",
    ]);
    assert_eq!(o.stdout, run.stdout);
}

/// The context contract the firmware relies on, on the host: continuing a finished
/// `Generation` through `into_parts` with `[last token, next prompt…]` gives what one
/// generation over the whole history gives (same seed), window slides included.
#[test]
fn continuing_a_generation_equals_one_over_the_history() {
    use aka_core::gpt::{Decoder, Generation};
    use aka_core::rng::Rng;
    let model = aka_tools::model::open(MODEL.as_ref(), 1 << 30).unwrap();
    let aka_tools::model::Model::Gpt(m) = model else {
        panic!("gpt.aka is a GPT")
    };
    let sampling = Settings::default().sampling;
    let mut f = vec![0f32; m.state_f32_len()];
    let mut kv = vec![0i8; m.state_i8_len()];
    let mut window = vec![0u32; m.block_size()];
    let mut scratch = vec![0f32; m.vocab_size()];
    let state = m.new_state(&mut f, &mut kv).unwrap();
    let dec = Decoder::new(&m, state, &mut window).unwrap();
    let encode = |s: &str| -> Vec<u32> { s.chars().map(|c| m.char_id(c).unwrap()).collect() };
    let decode =
        |ids: &[u32]| -> String { ids.iter().map(|&t| m.decode_token(t).unwrap()).collect() };

    let mut g = Generation::new(
        dec,
        &encode("JULIET:"),
        sampling,
        Rng::new(1),
        &mut scratch,
        50,
    )
    .unwrap();
    let first: Vec<u32> = g.by_ref().map(Result::unwrap).collect();
    let (dec, rng, scratch, last) = g.into_parts();
    assert_eq!(last, first.last().copied());
    let mut ids = vec![last.unwrap()];
    ids.extend(encode("ROMEO:"));
    let g = Generation::new(dec, &ids, sampling, rng, scratch, 80).unwrap();
    let second: Vec<u32> = g.map(Result::unwrap).collect();

    let history = format!("JULIET:{}ROMEO:", decode(&first));
    let settings = Settings {
        prompt: history.clone(),
        tokens: 80,
        seed: 1,
        ..Settings::default()
    };
    let whole = generate_string(&m, &settings).unwrap();
    assert_eq!(decode(&second), whole[history.len()..]);
}
