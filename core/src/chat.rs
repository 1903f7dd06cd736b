//! The chat protocol between the `chat` firmware (`firmware/src/app/chat.rs`) and `aka chat` on
//! the host (`tools/src/chat.rs`): line framing, the settings commands, and the marker byte
//! that starts the device's status lines. Both sides use this module, so the parser the device
//! runs is the one the host tests (feature `chat`; no allocation, fixed capacity with
//! [`heapless`]).
//!
//! # Host to device
//!
//! Lines of UTF-8, ended by `\n`, `\r` or `\r\n` (a `\n` right after a `\r` is not a second
//! line end). At most [`LINE_MAX`] bytes per line, terminator excluded. Each line is, by
//! [`parse_line`]:
//!
//! - `/tokens N` (`u32`), `/temperature T` (`f32`, finite, `>= 0`; 0 = greedy), `/top-k K`
//!   (`u32`; 0 = all), `/seed S` (`u64`), `/reset`: a [`Command`];
//! - `//TEXT`: the prompt `/TEXT` (a prompt starting with `/` is escaped by doubling it);
//! - anything else: a prompt, exactly the line's text (the line end is not part of it).
//!
//! # Device to host
//!
//! Generated text as raw UTF-8, and **status lines**: the byte [`MARKER`] (`0x04`, EOT), a word,
//! optionally a space and a message, `\n`. Every line the device receives gets exactly one
//! **final** status line, `0x04 ok …` ([`OK`]) or `0x04 error …` ([`ERROR`]); before it the
//! device may send `0x04 note …` lines ([`NOTE`]) and, for a prompt, the generated text. When
//! text was sent, the device sends one `\n` after it before the next status line (that `\n` is
//! not part of the text). The text never contains the marker byte (a vocabulary char U+0004 is
//! sent as U+FFFD). After reset the device sends `0x04 ready …` ([`READY`]), not a reply.

use core::fmt;

use heapless::Vec;

/// First byte of every status line from the device (ASCII EOT). Never part of generated text.
pub const MARKER: u8 = 0x04;
/// Final status word: the line was handled (the answer is complete).
pub const OK: &str = "ok";
/// Final status word: the line was refused (bad command, bad value, too long, ...).
pub const ERROR: &str = "error";
/// Status word of an informational line (more follows).
pub const NOTE: &str = "note";
/// Status word of the line the device sends once after reset.
pub const READY: &str = "ready";
/// The device's line buffer: the longest line it accepts, in bytes, terminator excluded.
pub const LINE_MAX: usize = 128;

/// A settings command (a line starting with one `/`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Command {
    /// `/tokens N`: generate N tokens per prompt.
    Tokens(u32),
    /// `/temperature T`: softmax temperature (finite, `>= 0`; 0 = greedy).
    Temperature(f32),
    /// `/top-k K`: sample among the K most likely tokens (0 = all).
    TopK(u32),
    /// `/seed S`: restart the sampling RNG from seed S (the context is kept).
    Seed(u64),
    /// `/reset`: forget the context and restart the RNG from the current seed.
    Reset,
}

impl fmt::Display for Command {
    /// The line that sends this command (without the line end). Floats print in Rust's
    /// shortest round-trip form, so the device parses back exactly the same `f32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Tokens(n) => write!(f, "/tokens {n}"),
            Command::Temperature(t) => write!(f, "/temperature {t}"),
            Command::TopK(k) => write!(f, "/top-k {k}"),
            Command::Seed(s) => write!(f, "/seed {s}"),
            Command::Reset => f.write_str("/reset"),
        }
    }
}

/// What a received line is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Line<'a> {
    /// A settings command.
    Command(Command),
    /// Text to feed to the model (may be empty: continue the text in the context).
    Prompt(&'a str),
}

/// Why a command line was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CommandError<'a> {
    /// `/name` is not a command.
    Unknown(&'a str),
    /// The command needs a value and got none.
    MissingValue(&'static str),
    /// The command takes no value (`/reset`) or one value, and got more.
    ExtraValue(&'static str),
    /// The value does not parse or is out of range.
    BadValue {
        /// The command.
        command: &'static str,
        /// The value given.
        value: &'a str,
        /// What it must be.
        expected: &'static str,
    },
}

impl fmt::Display for CommandError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(name) => write!(
                f,
                "unknown command {name:?}: /tokens N, /temperature T, /top-k K, /seed S, /reset (start a prompt with // to send a '/')"
            ),
            CommandError::MissingValue(cmd) => write!(f, "{cmd} needs a value"),
            CommandError::ExtraValue(cmd) => write!(f, "{cmd}: too many values"),
            CommandError::BadValue {
                command,
                value,
                expected,
            } => write!(f, "{command} {value:?}: expected {expected}"),
        }
    }
}

/// Classifies one received line (terminator removed): a [`Command`], or a prompt.
pub fn parse_line(line: &str) -> Result<Line<'_>, CommandError<'_>> {
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Line::Prompt(line));
    };
    if rest.starts_with('/') {
        return Ok(Line::Prompt(rest));
    }
    let mut words = rest.split_whitespace();
    let name = words.next().unwrap_or("");
    let value = words.next();
    let extra = words.next().is_some();
    let cmd = match name {
        "reset" => {
            if value.is_some() {
                return Err(CommandError::ExtraValue("/reset"));
            }
            return Ok(Line::Command(Command::Reset));
        }
        "tokens" => "/tokens",
        "temperature" => "/temperature",
        "top-k" => "/top-k",
        "seed" => "/seed",
        _ => {
            return Err(CommandError::Unknown(
                line.split_whitespace().next().unwrap_or(line),
            ))
        }
    };
    let Some(value) = value else {
        return Err(CommandError::MissingValue(cmd));
    };
    if extra {
        return Err(CommandError::ExtraValue(cmd));
    }
    let bad = |expected| CommandError::BadValue {
        command: cmd,
        value,
        expected,
    };
    let command = match cmd {
        "/tokens" => Command::Tokens(
            value
                .parse()
                .map_err(|_| bad("a whole number 0..=4294967295"))?,
        ),
        "/temperature" => {
            let t: f32 = value
                .parse()
                .map_err(|_| bad("a number >= 0 (0 = greedy)"))?;
            if !t.is_finite() || t < 0.0 {
                return Err(bad("a finite number >= 0 (0 = greedy)"));
            }
            Command::Temperature(t)
        }
        "/top-k" => Command::TopK(
            value
                .parse()
                .map_err(|_| bad("a whole number 0..=4294967295 (0 = all)"))?,
        ),
        _ => Command::Seed(
            value
                .parse()
                .map_err(|_| bad("a whole number 0..=18446744073709551615"))?,
        ),
    };
    Ok(Line::Command(command))
}

/// A line that could not be collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// Longer than the buffer: `len` bytes (terminator excluded) for a buffer of `max`.
    TooLong {
        /// Bytes received in the line.
        len: usize,
        /// The buffer's capacity.
        max: usize,
    },
    /// Not valid UTF-8.
    NotUtf8,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong { len, max } => {
                write!(
                    f,
                    "line of {len} bytes is longer than the {max}-byte buffer: ignored"
                )
            }
            LineError::NotUtf8 => f.write_str("line is not valid UTF-8: ignored"),
        }
    }
}

/// Collects bytes into lines in a fixed `heapless::Vec<u8, N>` (see the module documentation
/// for the line ends). A line longer than `N` is dropped whole: its bytes are counted, not
/// stored, and its end yields [`LineError::TooLong`]; the next line starts clean.
#[derive(Debug, Default)]
pub struct LineReader<const N: usize> {
    buf: Vec<u8, N>,
    /// Bytes of the current line (may exceed `N`).
    len: usize,
    /// The last byte was a `\r`.
    after_cr: bool,
    /// The last byte ended a line (clear the buffer on the next byte).
    done: bool,
}

impl<const N: usize> LineReader<N> {
    /// An empty reader.
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            len: 0,
            after_cr: false,
            done: false,
        }
    }

    /// Feeds one byte; at a line end returns the line (UTF-8, terminator removed) or why it was
    /// refused.
    pub fn push(&mut self, byte: u8) -> Option<Result<&str, LineError>> {
        if self.done {
            self.buf.clear();
            self.len = 0;
            self.done = false;
        }
        let after_cr = core::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => None,
            b'\n' | b'\r' => {
                self.done = true;
                if self.len > N {
                    return Some(Err(LineError::TooLong {
                        len: self.len,
                        max: N,
                    }));
                }
                Some(core::str::from_utf8(&self.buf).map_err(|_| LineError::NotUtf8))
            }
            _ => {
                self.len += 1;
                // Full: the line is too long; keep counting, stop storing.
                let _ = self.buf.push(byte);
                None
            }
        }
    }

    /// Bytes of the line in progress (0 right after a line end).
    pub fn pending(&self) -> usize {
        if self.done {
            0
        } else {
            self.len
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` and collects every completed line as an owned result.
    fn collect<const N: usize>(
        bytes: &[u8],
    ) -> heapless::Vec<Result<heapless::String<200>, LineError>, 16> {
        let mut r = LineReader::<N>::new();
        let mut out = heapless::Vec::new();
        for &b in bytes {
            if let Some(l) = r.push(b) {
                let l = l.map(|s| heapless::String::try_from(s).unwrap());
                out.push(l).unwrap();
            }
        }
        out
    }

    #[test]
    fn line_ends() {
        let got = collect::<16>(b"a\nb\r\nc\rd\n\n");
        let got: heapless::Vec<&str, 16> =
            got.iter().map(|l| l.as_ref().unwrap().as_str()).collect();
        assert_eq!(got.as_slice(), ["a", "b", "c", "d", ""]);
    }

    #[test]
    fn too_long_then_recovers() {
        let got = collect::<4>(b"abcd\nabcde\nok\n");
        assert_eq!(got[0].as_ref().unwrap().as_str(), "abcd");
        assert_eq!(got[1], Err(LineError::TooLong { len: 5, max: 4 }));
        assert_eq!(got[2].as_ref().unwrap().as_str(), "ok");
    }

    #[test]
    fn not_utf8() {
        let got = collect::<8>(b"\xff\xfe\nx\n");
        assert_eq!(got[0], Err(LineError::NotUtf8));
        assert_eq!(got[1].as_ref().unwrap().as_str(), "x");
    }

    #[test]
    fn commands_round_trip() {
        for c in [
            Command::Tokens(50),
            Command::Temperature(0.8),
            Command::Temperature(0.1 + 0.2),
            Command::TopK(0),
            Command::Seed(u64::MAX),
            Command::Reset,
        ] {
            let mut s = heapless::String::<64>::new();
            fmt::write(&mut s, format_args!("{c}")).unwrap();
            assert_eq!(parse_line(&s), Ok(Line::Command(c)), "{s}");
        }
    }
}
