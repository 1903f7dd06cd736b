//! `aka run` on a GPT model: generate text with aka-core on the host.
//!
//! [`generate`] runs `aka_core::gpt::Generation`, **the same loop as the firmware**
//! (`firmware/src/app/gpt.rs`, checked against QEMU by `tests/tests/device.rs`), so the host
//! prints the same text as a device for the same model, prompt, seed, temperature and top-k.
//! The prompt is encoded with `GptModel::encode` (one id per char; a char outside the
//! vocabulary becomes the unknown id; without an unknown id it is an error here, where the
//! firmware's `encode` would drop it). The defaults below are the firmware's constants.

use std::time::{Duration, Instant};

use aka_core::gpt::{Decoder, Generation, GptModel};
use aka_core::rng::Rng;
use aka_core::sample::Sampling;
use anyhow::{anyhow, bail};

/// The firmware's prompt (`firmware/src/app/gpt.rs` `PROMPT`).
pub const DEFAULT_PROMPT: &str = "ROMEO:";
/// The firmware's number of generated tokens (`TOKENS`).
pub const DEFAULT_TOKENS: usize = 100;
/// The firmware's temperature (`SAMPLING.temperature`).
pub const DEFAULT_TEMPERATURE: f32 = 0.8;
/// The firmware's top-k (`SAMPLING.top_k`).
pub const DEFAULT_TOP_K: u32 = 40;
/// The firmware's seed (`SEED`).
pub const DEFAULT_SEED: u64 = 1;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub prompt: String,
    /// Tokens (chars) generated after the prompt.
    pub tokens: usize,
    /// `temperature` 0 is greedy (argmax); `top_k` 0 is no limit.
    pub sampling: Sampling,
    pub seed: u64,
}

impl Default for Settings {
    /// The firmware's settings.
    fn default() -> Self {
        Self {
            prompt: DEFAULT_PROMPT.into(),
            tokens: DEFAULT_TOKENS,
            sampling: Sampling {
                temperature: DEFAULT_TEMPERATURE,
                top_k: DEFAULT_TOP_K,
            },
            seed: DEFAULT_SEED,
        }
    }
}

/// Timing of one [`generate`] call.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Prompt ids fed.
    pub prompt_tokens: usize,
    /// Tokens generated (emitted).
    pub tokens: usize,
    /// Feeding the prompt (and its samples).
    pub prefill: Duration,
    /// The decode steps after the prompt (model + sampling + emitting).
    pub decode: Duration,
}

impl Stats {
    /// Generated tokens per second over prefill and decode (the whole generation).
    pub fn tokens_per_second(&self) -> f64 {
        let s = (self.prefill + self.decode).as_secs_f64();
        if s > 0.0 {
            self.tokens as f64 / s
        } else {
            f64::INFINITY
        }
    }
}

/// Checks the settings and encodes the prompt: errors for an empty prompt, chars outside the
/// vocabulary when it has no unknown token, and a temperature that is negative or not finite.
pub fn encode_prompt(model: &GptModel<'_>, settings: &Settings) -> anyhow::Result<Vec<u32>> {
    let t = settings.sampling.temperature;
    if !t.is_finite() || t < 0.0 {
        bail!("--temperature must be a finite number >= 0 (0 = greedy), not {t}");
    }
    if settings.prompt.is_empty() {
        bail!("the prompt is empty: the model needs at least one char to start from");
    }
    if model.unknown_id().is_none() {
        let mut unknown: Vec<char> = settings
            .prompt
            .chars()
            .filter(|&c| model.char_id(c).is_none())
            .collect();
        unknown.dedup();
        if !unknown.is_empty() {
            let list: String = unknown.iter().collect();
            bail!(
                "the prompt has chars outside the model's vocabulary ({list:?}), and the vocabulary has no unknown token; `aka inspect` lists the {} chars",
                model.vocab_size()
            );
        }
    }
    let mut ids = vec![0u32; settings.prompt.chars().count()];
    let n = model
        .encode(&settings.prompt, &mut ids)
        .map_err(|e| anyhow!("encoding the prompt: {e}"))?;
    ids.truncate(n);
    if ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    Ok(ids)
}

/// Generates `settings.tokens` chars after the prompt (see the [module documentation](self)),
/// calling `emit` with the prompt (as given) and then with each generated char as soon as it is
/// picked. `emit` returning `false` stops early (e.g. a closed pipe).
pub fn generate(
    model: &GptModel<'_>,
    settings: &Settings,
    mut emit: impl FnMut(&str) -> bool,
) -> anyhow::Result<Stats> {
    let ids = encode_prompt(model, settings)?;
    let err = |e: aka_core::Error| anyhow!("running the model: {e}");
    let mut f = vec![0f32; model.state_f32_len()];
    let mut kv = vec![0i8; model.state_i8_len()];
    let mut window = vec![0u32; model.block_size()];
    let mut scratch = vec![0f32; model.vocab_size()];
    let state = model.new_state(&mut f, &mut kv).map_err(err)?;
    let dec = Decoder::new(model, state, &mut window).map_err(err)?;
    let rng = Rng::new(settings.seed);

    let start = Instant::now();
    let tokens = settings.tokens;
    let generation = Generation::new(dec, &ids, settings.sampling, rng, &mut scratch, tokens);
    let generation = generation.map_err(err)?;
    let prefill = start.elapsed();
    let mut stats = Stats {
        prompt_tokens: ids.len(),
        tokens: 0,
        prefill,
        decode: Duration::ZERO,
    };
    if !emit(&settings.prompt) {
        return Ok(stats);
    }
    let start = Instant::now();
    for next in generation {
        let s = model.decode_token(next.map_err(err)?).map_err(err)?;
        stats.tokens += 1;
        if !emit(s) {
            break;
        }
    }
    stats.decode = start.elapsed();
    Ok(stats)
}

/// [`generate`] into a `String` (prompt included).
pub fn generate_string(model: &GptModel<'_>, settings: &Settings) -> anyhow::Result<String> {
    let mut text = String::new();
    generate(model, settings, |s| {
        text.push_str(s);
        true
    })?;
    Ok(text)
}
