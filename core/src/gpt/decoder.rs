//! Token-by-token decoding: [`Decoder`] (a sliding context window over [`GptModel::forward`])
//! and [`Generation`], **the** text generation loop (prompt, then sampled tokens) that both
//! `aka run` on the host and the firmware's `gpt` demo run, so that they print the same text.

use super::state::GptState;
use super::GptModel;
use crate::rng::Rng;
use crate::sample::{sample, Sampling};
use crate::Error;

/// Incremental decoding with a **sliding window** over a caller-provided token history.
///
/// [`Decoder::push`] feeds one token and returns the next-token logits. While fewer than
/// `block_size` tokens are in the window, the token runs at the next position. When the window
/// is full, the decoder first keeps only the last `block_size / 2` tokens, re-runs them at
/// positions `0..block_size / 2` (rebuilding the KV cache; this is also what makes learned
/// position embeddings and RoPE consistent), then runs the new token after them. So after a
/// slide the logits equal those of a fresh decoder fed the kept tokens and the new one.
#[derive(Debug)]
pub struct Decoder<'m, 'a, 's> {
    model: &'m GptModel<'a>,
    state: GptState<'s>,
    window: &'s mut [u32],
    len: usize,
}

impl<'m, 'a, 's> Decoder<'m, 'a, 's> {
    /// A decoder with an empty window. `window` needs at least `block_size` slots
    /// ([`Error::BufferTooSmall`] otherwise).
    pub fn new(
        model: &'m GptModel<'a>,
        state: GptState<'s>,
        window: &'s mut [u32],
    ) -> Result<Self, Error> {
        let block = model.block_size();
        let have = window.len();
        let window = window
            .get_mut(..block)
            .ok_or(Error::BufferTooSmall { need: block, have })?;
        Ok(Self {
            model,
            state,
            window,
            len: 0,
        })
    }

    /// Feeds `token` (sliding the window first if it is full) and returns the next-token
    /// logits. A bad token is rejected before anything changes.
    pub fn push(&mut self, token: u32) -> Result<&[f32], Error> {
        self.model.check_token(token)?;
        let block = self.window.len();
        if self.len >= block {
            let keep = block / 2;
            self.len = 0;
            for p in 0..keep {
                // Each kept token moves down as it is replayed (the slots read,
                // `block - keep + p >= keep`, are never ones already written): no `copy_within`,
                // whose `memmove` is 1.6 KB on Cortex-M for this one call.
                if let Some(t) = self.window.get(block - keep + p).copied() {
                    if let Some(slot) = self.window.get_mut(p) {
                        *slot = t;
                    }
                }
                let t = self.window.get(p).copied().unwrap_or(0);
                self.model.forward(&mut self.state, t, p)?;
                self.len = p + 1;
            }
        }
        let pos = self.len;
        if let Some(slot) = self.window.get_mut(pos) {
            *slot = token;
        }
        let logits = self.model.forward(&mut self.state, token, pos)?;
        self.len = pos + 1;
        Ok(logits)
    }

    /// The tokens currently in the window (their positions are their indices).
    pub fn tokens(&self) -> &[u32] {
        self.window.get(..self.len).unwrap_or(&[])
    }

    /// Number of tokens in the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first [`Decoder::push`] (or after [`Decoder::reset`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the window (the cache is overwritten as new tokens arrive).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// The model.
    pub fn model(&self) -> &'m GptModel<'a> {
        self.model
    }

    /// Gives the state and the window back.
    pub fn into_inner(self) -> (GptState<'s>, &'s mut [u32]) {
        (self.state, self.window)
    }
}

/// Text generation as an iterator of token ids: feeds a prompt, then yields `tokens` sampled
/// ids. The one definition of the generation loop (`aka run` and the firmware both iterate it):
///
/// 1. [`Generation::new`] feeds every prompt id with [`Decoder::push`], and **each** push is
///    followed by one [`sample`]`(logits, sampling, rng, scratch)` (so a prompt of `n` ids
///    makes `n` sample calls; only the last pick is used);
/// 2. then each [`Iterator::next`] yields the current pick; from the second on, it first pushes
///    the previous pick (the decoder slides its window when the context is full) and samples
///    again. So `tokens` ids cost `tokens - 1` decode steps: nothing is computed after the last.
///
/// An error ends the iteration (it is yielded once, then `None`).
#[derive(Debug)]
pub struct Generation<'m, 'a, 's> {
    dec: Decoder<'m, 'a, 's>,
    sampling: Sampling,
    rng: Rng,
    /// `[vocab_size]` sampling scratch.
    scratch: &'s mut [f32],
    /// The current pick (yielded by the next `next`).
    next: u32,
    /// Ids still to yield.
    remaining: usize,
    /// True once an id has been yielded: the next `next` pushes it first.
    stepping: bool,
}

impl<'m, 'a, 's> Generation<'m, 'a, 's> {
    /// Feeds `prompt` (each push followed by one sample) and prepares to yield `tokens` ids.
    /// `scratch` needs `vocab_size` slots. Errors: an empty prompt ([`Error::BadArgument`]),
    /// and those of [`Decoder::push`] and [`sample`].
    pub fn new(
        mut dec: Decoder<'m, 'a, 's>,
        prompt: &[u32],
        sampling: Sampling,
        mut rng: Rng,
        scratch: &'s mut [f32],
        tokens: usize,
    ) -> Result<Self, Error> {
        if prompt.is_empty() {
            return Err(Error::BadArgument {
                what: msg!("empty prompt"),
            });
        }
        let mut next = 0;
        for &t in prompt {
            next = push_and_sample(&mut dec, t, &sampling, &mut rng, scratch)?;
        }
        Ok(Self {
            dec,
            sampling,
            rng,
            scratch,
            next,
            remaining: tokens,
            stepping: false,
        })
    }

    /// True if the next [`Iterator::next`] runs a decode step that first slides the window
    /// (re-running the last `block_size / 2` tokens).
    pub fn will_slide(&self) -> bool {
        self.stepping && self.remaining > 0 && self.dec.len() == self.dec.model().block_size()
    }

    /// True if the next [`Iterator::next`] runs a decode step (every call but the first).
    pub fn will_step(&self) -> bool {
        self.stepping && self.remaining > 0
    }

    /// The decoder (its window holds the prompt and the ids generated so far, up to the last
    /// one yielded, which is pushed by the next step).
    pub fn decoder(&self) -> &Decoder<'m, 'a, 's> {
        &self.dec
    }

    /// Ends the generation and gives back what it holds, so that a caller can continue the same
    /// text (the `chat` firmware feeds the next prompt into the same decoder): the decoder, the
    /// RNG in its current state, the scratch, and the last id yielded, which is **not yet in the
    /// decoder's window** (the next decode step would have pushed it first); `None` if nothing
    /// was yielded (then every prompt id is in the window). Feeding `[last, next prompt…]` to a
    /// new [`Generation`] with this decoder and RNG gives the text that one generation over the
    /// whole history (each push followed by one sample) would give.
    pub fn into_parts(self) -> (Decoder<'m, 'a, 's>, Rng, &'s mut [f32], Option<u32>) {
        let last = self.stepping.then_some(self.next);
        (self.dec, self.rng, self.scratch, last)
    }

    fn step(&mut self) -> Result<u32, Error> {
        if self.stepping {
            let (dec, rng) = (&mut self.dec, &mut self.rng);
            self.next = push_and_sample(dec, self.next, &self.sampling, rng, self.scratch)?;
        }
        self.stepping = true;
        Ok(self.next)
    }
}

/// `token` through the model ([`Decoder::push`]), then the next token [`sample`]d from its
/// logits: the one step of [`Generation`]'s prefill and decode (one copy of the code for both).
#[inline(never)]
fn push_and_sample(
    dec: &mut Decoder<'_, '_, '_>,
    token: u32,
    sampling: &Sampling,
    rng: &mut Rng,
    scratch: &mut [f32],
) -> Result<u32, Error> {
    let logits = dec.push(token)?;
    sample(logits, sampling, rng, scratch)
}

impl Iterator for Generation<'_, '_, '_> {
    type Item = Result<u32, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let r = self.step();
        self.remaining = if r.is_ok() { self.remaining - 1 } else { 0 };
        Some(r)
    }
}
