//! The `chat` app: the embedded GPT behind a serial line. Reads lines from any
//! `embedded_io::Read + Write` port, treats each as a settings command or a prompt, and streams
//! the generated characters back as they are sampled. The protocol (line ends, commands, status
//! lines starting with the byte 0x04) is `aka_core::chat`, shared with `aka chat` on the host;
//! see also `firmware/README.md`.
//!
//! Generation is `aka_core::gpt::Generation`, the loop `aka run` runs, with `aka run`'s defaults
//! (100 tokens, temperature 0.8, top-k 40, seed 1; the `gpt` app's constants), so a prompt after
//! reset (or `/reset`) gives exactly `aka run --prompt LINE`'s text.
//!
//! **Context:** one `Decoder` (sliding window of `block_size` tokens) and one RNG live for the
//! whole session. A prompt continues the context: the last generated token, then the prompt's
//! chars, are fed (each followed by one sample, as `Generation::new` does) and the answer is
//! sampled after them. So a session without `/reset` gives the text `aka run` would give for the
//! whole history as one prompt; old tokens leave only through the window slide (when the window
//! is full, the last half is kept). `/reset` empties the window and restarts the RNG from the
//! seed; `/seed S` restarts the RNG from S and keeps the context. An empty line continues the
//! text (an error on an empty context).
//!
//! defmt (semihosting on QEMU, RTT on hardware) logs each line received and, per answer, the
//! count per decode step (model + sampling) and per token sent on the serial port.

use aka_core::chat::{self, Command, Line, LineReader, LINE_MAX, MARKER};
use aka_core::gpt::{Decoder, Generation};
use aka_core::rng::Rng;
use aka_core::sample::Sampling;
use core::fmt;
use defmt::unwrap;
use embedded_io::{Read, Write};
use heapless::Vec;

use super::gpt::{Buffers, F32_LEN, I8_LEN, SAMPLING, SEED, TOKENS, VOCAB_MAX, WINDOW_LEN};
use crate::{Board, Counter, Unit};

/// Prompt ids: a full line of one-byte chars plus the carried-over last token.
const IDS_MAX: usize = LINE_MAX + 1;
/// Bytes taken from the port per `read`.
const READ_CHUNK: usize = 32;

static mut BUFFERS: Buffers = Buffers::new();

/// The current settings (changed by the commands).
#[derive(Clone, Copy)]
struct Settings {
    tokens: u32,
    sampling: Sampling,
    seed: u64,
}

/// The serial port plus whether generated text was sent since the last status line (then one
/// `\n` separates them).
struct Port<'p, S> {
    serial: &'p mut S,
    in_text: bool,
}

impl<S: Write> Port<'_, S> {
    fn text(&mut self, s: &str) {
        // The marker byte never appears in text.
        let s = if s.as_bytes() == [MARKER] {
            "\u{FFFD}"
        } else {
            s
        };
        unwrap!(self.serial.write_all(s.as_bytes()).ok());
        self.in_text = true;
    }

    /// A status line: `0x04 WORD MESSAGE\n`.
    fn status(&mut self, word: &str, message: fmt::Arguments<'_>) {
        if core::mem::take(&mut self.in_text) {
            unwrap!(self.serial.write_all(b"\n").ok());
        }
        unwrap!(self.serial.write_all(&[MARKER]).ok());
        unwrap!(self.serial.write_all(word.as_bytes()).ok());
        unwrap!(self.serial.write_all(b" ").ok());
        unwrap!(self.serial.write_fmt(message).ok());
        unwrap!(self.serial.write_all(b"\n").ok());
        unwrap!(self.serial.flush().ok());
    }
}

/// Serves the chat on `serial` with the GPT model file `bytes`, forever.
pub fn run<S: Read + Write>(board: &Board, bytes: &[u8], serial: &mut S) -> ! {
    let counter = board.counter;
    let model = unwrap!(super::load_gpt(bytes));
    let cfg = model.config();
    defmt::info!(
        "chat on {=str}: model {=str}, {=usize} bytes, {=u32} layers, {=u32} dims, context {=usize}, {=usize} chars; line buffer {=usize} bytes",
        crate::BOARD,
        super::gpt::MODEL_NAME,
        bytes.len(),
        cfg.n_layer,
        cfg.d_model,
        model.block_size(),
        model.vocab_size(),
        LINE_MAX
    );
    if model.state_f32_len() > F32_LEN
        || model.state_i8_len() > I8_LEN
        || model.block_size() > WINDOW_LEN
        || model.vocab_size() > VOCAB_MAX
    {
        defmt::panic!(
            "state buffers too small for this model: they are sized by build.rs from AKA_GPT_MODEL"
        );
    }
    // SAFETY: the only reference to BUFFERS, taken once in a single-threaded program.
    let b = unsafe { &mut *core::ptr::addr_of_mut!(BUFFERS) };
    let state = unwrap!(model.new_state(&mut b.f, &mut b.kv));
    let mut dec = unwrap!(Decoder::new(&model, state, &mut b.window));
    let mut scratch: &mut [f32] = &mut b.scratch;
    let mut settings = Settings {
        tokens: TOKENS as u32,
        sampling: SAMPLING,
        seed: SEED,
    };
    let mut rng = Rng::new(settings.seed);
    // The last generated token, not yet in the window (see `Generation::into_parts`).
    let mut pending: Option<u32> = None;

    let mut port = Port {
        serial,
        in_text: false,
    };
    port.status(
        chat::READY,
        format_args!(
            "aka chat on {}: model {}, {} chars, context {}, lines up to {} bytes; /tokens {} /temperature {} /top-k {} /seed {}",
            crate::BOARD,
            super::gpt::MODEL_NAME,
            model.vocab_size(),
            model.block_size(),
            LINE_MAX,
            settings.tokens,
            settings.sampling.temperature,
            settings.sampling.top_k,
            settings.seed
        ),
    );

    let overhead = counter.overhead();
    let mut reader = LineReader::<LINE_MAX>::new();
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let n = unwrap!(port.serial.read(&mut chunk).ok());
        for &byte in &chunk[..n] {
            let Some(line) = reader.push(byte) else {
                continue;
            };
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    defmt::warn!("line refused: {}", defmt::Display2Format(&e));
                    port.status(chat::ERROR, format_args!("{e}"));
                    continue;
                }
            };
            let prompt = match chat::parse_line(line) {
                Ok(Line::Prompt(p)) => p,
                Ok(Line::Command(c)) => {
                    match c {
                        Command::Tokens(n) => settings.tokens = n,
                        Command::Temperature(t) => settings.sampling.temperature = t,
                        Command::TopK(k) => settings.sampling.top_k = k,
                        Command::Seed(s) => {
                            settings.seed = s;
                            rng = Rng::new(s);
                        }
                        Command::Reset => {
                            dec.reset();
                            pending = None;
                            rng = Rng::new(settings.seed);
                        }
                    }
                    defmt::info!("command {=str}", line);
                    match c {
                        Command::Reset => port.status(
                            chat::OK,
                            format_args!("reset: context empty, seed {}", settings.seed),
                        ),
                        Command::Seed(s) => {
                            port.status(chat::OK, format_args!("seed {s}, context kept"))
                        }
                        _ => port.status(chat::OK, format_args!("{c}")),
                    }
                    continue;
                }
                Err(e) => {
                    defmt::warn!("bad command {=str}", line);
                    port.status(chat::ERROR, format_args!("{e}"));
                    continue;
                }
            };

            // The prompt: chars outside the vocabulary as `aka run` treats them.
            let unknown = prompt.chars().filter(|&c| model.char_id(c).is_none());
            if unknown.clone().next().is_some() {
                let mut list: heapless::String<64> = heapless::String::new();
                for c in unknown {
                    if list.push(c).is_err() {
                        break;
                    }
                }
                if model.unknown_id().is_none() {
                    port.status(
                        chat::ERROR,
                        format_args!(
                            "the prompt has chars outside the model's vocabulary ({:?}), and the vocabulary has no unknown token",
                            list.as_str()
                        ),
                    );
                    continue;
                }
                port.status(
                    chat::NOTE,
                    format_args!(
                        "{:?} not in the vocabulary: fed as the unknown token",
                        list.as_str()
                    ),
                );
            }
            let mut ids: Vec<u32, IDS_MAX> = Vec::new();
            if let Some(last) = pending {
                unwrap!(ids.push(last).ok());
            }
            let start = ids.len();
            unwrap!(ids.resize(IDS_MAX, 0).ok());
            let n = unwrap!(model.encode(prompt, &mut ids[start..]));
            ids.truncate(start + n);
            if ids.is_empty() {
                port.status(
                    chat::ERROR,
                    format_args!("empty prompt: the model needs at least one char to start from"),
                );
                continue;
            }
            defmt::info!(
                "prompt {=str:?}: {=usize} ids fed after {=usize} in the window; {=u32} tokens, seed {=u64}, temperature {=f32}, top-k {=u32}",
                prompt,
                ids.len(),
                dec.len(),
                settings.tokens,
                settings.seed,
                settings.sampling.temperature,
                settings.sampling.top_k
            );

            // Prefill, then one decode step + one serial write per token (timed apart).
            let (generation, span) = counter.measure(|| {
                Generation::new(
                    dec,
                    &ids,
                    settings.sampling,
                    rng,
                    scratch,
                    settings.tokens as usize,
                )
            });
            let mut generation = unwrap!(generation);
            let prefill = span.saturating_sub(overhead).count;
            let mut stats = super::DecodeStats::default();
            let (mut send_total, mut sent) = (0u64, 0u64);
            loop {
                let (stepping, sliding) = (generation.will_step(), generation.will_slide());
                let (next, span) = counter.measure(|| generation.next());
                let Some(next) = next else { break };
                let next = unwrap!(next);
                if stepping {
                    stats.record(span.saturating_sub(overhead).count, sliding);
                }
                let s = unwrap!(model.decode_token(next));
                let ((), span) = counter.measure(|| port.text(s));
                send_total += span.saturating_sub(overhead).count;
                sent += 1;
            }
            // Tokens in the window (the last generated one is pushed by the next prompt).
            let window = generation.decoder().len();
            let (d, r, s, last) = generation.into_parts();
            (dec, rng, scratch, pending) = (d, r, s, last);
            let per_step = stats.plain_mean();
            let unit = Counter::UNIT.name();
            defmt::info!(
                "answer: {=u64} tokens; prompt {=u64} {=str}; per decode step {=u64} {=str} (mean of {=u64} steps without a slide: model + sampling; min {=u64}, max {=u64}); {=u64} slides, {=u64} {=str} each",
                sent,
                prefill,
                unit,
                per_step,
                unit,
                stats.plain(),
                stats.plain_min(),
                stats.max,
                stats.slides,
                stats.slide_total / stats.slides.max(1),
                unit
            );
            defmt::info!(
                "serial: {=u64} {=str} per token sent (mean of {=u64}); per token with the serial write: {=u64} {=str}",
                send_total / sent.max(1),
                unit,
                sent,
                per_step + send_total / sent.max(1),
                unit
            );
            if Counter::UNIT == Unit::Cycles {
                let per_token = per_step + send_total / sent.max(1);
                let tps_x10 = u64::from(counter.hz()) * 10 / per_token.max(1);
                defmt::info!(
                    "{=u64}.{=u64} tokens/s at {=u32} MHz (without slides)",
                    tps_x10 / 10,
                    tps_x10 % 10,
                    counter.hz() / 1_000_000
                );
            }
            // The deepest the stack has been so far (prefill, decode and sampling included).
            crate::stack::log_high_water();
            port.status(
                chat::OK,
                format_args!(
                    "{sent} tokens; window {window} of {} tokens",
                    model.block_size()
                ),
            );
        }
    }
}
