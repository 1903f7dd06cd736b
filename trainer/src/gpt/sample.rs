//! Picking the next token: greedy, temperature, top-k, seeded with [`aka_core::rng::Rng`].
//!
//! The arithmetic is [`aka_core::sample::sample`] (`no_std`, no allocation, `aka_core::kernels::exp_f32`, one
//! `Rng::next_f32` draw per sampled token), so the trainer and the int8 runtime pick the same
//! id from the same logits and seed; [`sample_token`] is a thin wrapper with the trainer's
//! argument style. [`generate`] runs a float [`Gpt`] autoregressively.

use aka_core::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::data::text::CharTokenizer;
use crate::nn::gpt::Gpt;

/// How to pick a token from logits (serializable; converts to [`aka_core::sample::Sampling`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Softmax temperature; `<= 0` means greedy (argmax, no random draw).
    pub temperature: f32,
    /// Sample only among the `top_k` largest logits (ties: lower id first); 0 = all, 1 = greedy.
    pub top_k: usize,
}

impl Sampling {
    /// Always the most likely token (first one on ties).
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_k: 1,
    };

    /// Temperature and top-k sampling.
    pub fn new(temperature: f32, top_k: usize) -> Sampling {
        Sampling { temperature, top_k }
    }

    /// The runtime's equivalent (`top_k` saturates at `u32::MAX`, i.e. no limit).
    pub fn to_core(self) -> aka_core::sample::Sampling {
        aka_core::sample::Sampling {
            temperature: self.temperature,
            top_k: u32::try_from(self.top_k).unwrap_or(u32::MAX),
        }
    }
}

/// Index of the largest logit; the first one wins ties; NaNs are skipped
/// ([`aka_core::sample::argmax`]). 0 for empty or all-NaN logits.
pub fn argmax(logits: &[f32]) -> usize {
    aka_core::sample::argmax(logits).unwrap_or(0)
}

/// Picks a token id from `logits` exactly as [`aka_core::sample::sample`] does:
///
/// - `temperature <= 0` or `top_k == 1`: [`argmax`] (first max wins); draws nothing.
/// - otherwise: keeps the `top_k` largest logits (all when `top_k == 0` or `>= len`; ties at
///   the cut are kept in id order, so exactly `top_k` survive), weights them
///   `w_i = exp_f32((l_i - max) / temperature)` (`aka_core::kernels::exp_f32`, f32; `-inf` logits weigh 0), draws
///   `r = rng.next_f32() · Σw` (one draw) and returns the first kept id whose running sum of
///   weights (in id order) exceeds `r`.
///
/// `scratch` must hold at least `logits.len()` values (used for the top-k cut). Empty, all-NaN
/// logits or a NaN temperature give 0 (the runtime returns an error instead).
pub fn sample_token(
    logits: &[f32],
    temperature: f32,
    top_k: usize,
    rng: &mut Rng,
    scratch: &mut [f32],
) -> usize {
    let cfg = Sampling::new(temperature, top_k).to_core();
    aka_core::sample::sample(logits, &cfg, rng, scratch).map_or(0, |id| id as usize)
}

/// Generates `n_tokens` tokens after `prompt` and returns them decoded (the continuation only,
/// without the prompt). The prompt is encoded with `tokenizer` (chars outside the vocabulary
/// become the unknown token, or are dropped if there is none); an empty encoded prompt starts
/// from token id 0. The model sees the last `block_size` tokens, re-run at positions
/// `0..block_size` for every new token (nanoGPT's crop; note that the runtime's
/// `aka_core::gpt::Decoder` slides differently: when full it keeps the last `block_size / 2`
/// tokens, so continuations longer than the context differ from this function's). Sampling is
/// [`sample_token`] with a fresh `Rng::new(seed)`, so the same seed gives the same text.
pub fn generate(
    model: &Gpt,
    tokenizer: &CharTokenizer,
    prompt: &str,
    n_tokens: usize,
    sampling: Sampling,
    seed: u64,
) -> String {
    let mut ids: Vec<usize> = tokenizer
        .encode(prompt)
        .into_iter()
        .map(|i| i as usize)
        .collect();
    if ids.is_empty() {
        ids.push(0);
    }
    let start = ids.len();
    let mut rng = Rng::new(seed);
    let mut scratch = vec![0.0f32; model.config().vocab_size];
    for _ in 0..n_tokens {
        let logits = model.logits_last(&ids);
        let next = sample_token(
            &logits,
            sampling.temperature,
            sampling.top_k,
            &mut rng,
            &mut scratch,
        );
        ids.push(next);
    }
    let out: Vec<u32> = ids[start..].iter().map(|&i| i as u32).collect();
    tokenizer.decode(&out)
}
