//! The run state of a [`GptModel`](super::GptModel), like llama2.c's `RunState`: named buffers,
//! carved **once** from two caller-provided slices (one `f32`, one `i8`) by
//! [`GptModel::new_state`](super::GptModel::new_state).
//!
//! [`StateLayout`] is the only place that lists the buffers, their order and their lengths:
//! the size queries (`state_f32_len`, `state_i8_len`, `state_size`) and the carving both read it.

use crate::Error;

/// The buffers of a [`GptState`], in carving order, with their lengths in elements. Computed
/// (overflow-checked) once at load from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StateLayout {
    /// `d_model`.
    d: usize,
    /// `block_size`.
    block: usize,
    /// MLP width.
    hidden: usize,
    /// Width of the gated MLP's `W3·a` buffer: `hidden` if gated, else 0.
    up: usize,
    /// `vocab_size`.
    vocab: usize,
    /// One cache (K or V) over all layers: `n_layer · block_size · d`.
    cache: usize,
    /// `n_layer · block_size` (the cached key rows per head).
    key_rows: usize,
    /// Bytes of the K cache's row constants: `4 · n_layer · n_head · block_size` (one i32 per
    /// cached key row; 0 until [`Self::with_heads`]).
    k_consts: usize,
}

impl StateLayout {
    /// The layout for a model of these sizes; `None` if a length (or the total byte size,
    /// `4 · f32_len + i8_len`) overflows `usize`.
    pub(crate) fn new(
        d: usize,
        block: usize,
        hidden: usize,
        gated: bool,
        vocab: usize,
        n_layer: usize,
    ) -> Option<Self> {
        let layout = Self {
            d,
            block,
            hidden,
            up: if gated { hidden } else { 0 },
            vocab,
            cache: block.checked_mul(d)?.checked_mul(n_layer)?,
            key_rows: block.checked_mul(n_layer)?,
            k_consts: 0,
        };
        let f32_len = checked_sum(&layout.f32_parts())?;
        let i8_len = checked_sum(&layout.i8_parts())?;
        f32_len.checked_mul(4)?.checked_add(i8_len)?;
        Some(layout)
    }

    /// This layout with the K cache's row constants of `n_head` heads (one i32 per layer,
    /// head and position, `4 · n_layer · n_head · block_size` bytes at the front of the `i8`
    /// buffer). Saturating: a layout whose size overflows `usize` cannot be carved (every
    /// buffer is too small).
    pub(crate) fn with_heads(self, n_head: usize) -> Self {
        Self {
            k_consts: self.key_rows.saturating_mul(n_head).saturating_mul(4),
            ..self
        }
    }

    /// Bytes of the K cache and its row constants (the KV cache is this plus the V cache).
    pub(crate) fn kv_bytes(&self) -> usize {
        self.cache.saturating_mul(2).saturating_add(self.k_consts)
    }

    /// The `f32` buffers in order: `x, q, k, up, logits` (see [`GptState`]).
    fn f32_parts(&self) -> [usize; 5] {
        let (d, up, vocab) = (self.d, self.up, self.vocab);
        [d, d, d, up, vocab]
    }

    /// The `i8` buffers in order: `k_consts, k_cache, v_cache, a, qq, hq, pq` (see
    /// [`GptState`]; the row constants first, so that they and the K cache are word-aligned
    /// when the buffer is).
    fn i8_parts(&self) -> [usize; 7] {
        let (d, block, hidden, cache) = (self.d, self.block, self.hidden, self.cache);
        [self.k_consts, cache, cache, d, d, hidden, block]
    }

    /// Number of `f32` values: `3·d + (hidden if gated) + vocab_size`.
    pub(crate) fn f32_len(&self) -> usize {
        self.f32_parts().iter().fold(0, |s, &n| s.saturating_add(n))
    }

    /// Number of `i8` values: `4 · n_layer · n_head · block_size + 2 · n_layer · block_size · d
    /// + 2·d + hidden + block_size`.
    pub(crate) fn i8_len(&self) -> usize {
        self.i8_parts().iter().fold(0, |s, &n| s.saturating_add(n))
    }

    /// Bytes: `4 · f32_len + i8_len`.
    pub(crate) fn bytes(&self) -> usize {
        self.f32_len()
            .saturating_mul(4)
            .saturating_add(self.i8_len())
    }

    /// Carves the buffers out of the front of `f32s` and `i8s` (extra length is ignored).
    /// Errors with [`Error::ArenaTooSmall`] (`need`/`have` in elements of the short buffer).
    pub(crate) fn carve<'s>(
        &self,
        f32s: &'s mut [f32],
        i8s: &'s mut [i8],
    ) -> Result<GptState<'s>, Error> {
        let (nf, nc) = (self.f32_len(), self.i8_len());
        let (hf, hc) = (f32s.len(), i8s.len());
        let f = f32s
            .get_mut(..nf)
            .ok_or(Error::ArenaTooSmall { need: nf, have: hf })?;
        let c = i8s
            .get_mut(..nc)
            .ok_or(Error::ArenaTooSmall { need: nc, have: hc })?;
        let [x, q, k, up, logits] = split(f, self.f32_parts());
        let [k_consts, k_cache, v_cache, a, qq, hq, pq] = split(c, self.i8_parts());
        Ok(GptState {
            layout: *self,
            x,
            q,
            k,
            up,
            logits,
            k_consts,
            k_cache,
            v_cache,
            a,
            qq,
            hq,
            pq,
        })
    }
}

fn checked_sum(parts: &[usize]) -> Option<usize> {
    parts.iter().try_fold(0usize, |s, &n| s.checked_add(n))
}

/// Splits `buf` into consecutive slices of the given lengths (callers check that they fit; a
/// part that does not is empty).
fn split<T, const N: usize>(buf: &mut [T], lens: [usize; N]) -> [&mut [T]; N] {
    let mut rest = buf;
    core::array::from_fn(|i| {
        let (head, tail) = core::mem::take(&mut rest)
            .split_at_mut_checked(lens[i])
            .unwrap_or_default();
        rest = tail;
        head
    })
}

/// The mutable run state of a [`GptModel`](super::GptModel): named f32 scratch and the int8 KV
/// cache, borrowed from the caller and carved once by
/// [`GptModel::new_state`](super::GptModel::new_state). Shapes (`d = d_model`,
/// `hd = d / n_head`, `block = block_size`):
#[derive(Debug)]
pub struct GptState<'s> {
    /// The layout this state was carved with (checked against the model by `forward`).
    pub(super) layout: StateLayout,
    /// `[d]` the residual stream.
    pub(super) x: &'s mut [f32],
    /// `[d]` the queries before RoPE (RoPE models only).
    pub(super) q: &'s mut [f32],
    /// `[d]` the keys before RoPE (RoPE models only).
    pub(super) k: &'s mut [f32],
    /// `[hidden]` the gated MLP's `W3·a` (empty for GELU).
    pub(super) up: &'s mut [f32],
    /// `[vocab]` the logits.
    pub(super) logits: &'s mut [f32],
    /// `[n_layer][n_head][block]` i32 LE (as bytes): the row constant of each cached key row,
    /// `kernels::offset_row_const` of its `hd` bytes (for `matvec_i32_offset`).
    pub(super) k_consts: &'s mut [i8],
    /// `[n_layer][n_head][block][hd]` the key cache (head-major), each row of `hd` keys in the
    /// offset-binary layout of `kernels::to_offset_binary` (even bytes XOR 0x80), so that the
    /// scores `q·k` run through `matvec_i32_offset`.
    pub(super) k_cache: &'s mut [i8],
    /// `[n_layer][d][block]` the int8 value cache (transposed, so that P·V reads rows).
    pub(super) v_cache: &'s mut [i8],
    /// `[d]` the quantized norm output, then the quantized attention output.
    pub(super) a: &'s mut [i8],
    /// `[d]` the quantized queries.
    pub(super) qq: &'s mut [i8],
    /// `[hidden]` the quantized MLP activation.
    pub(super) hq: &'s mut [i8],
    /// `[block]` one head's u8 attention weights (unnormalized softmax, as i8 bytes).
    pub(super) pq: &'s mut [i8],
}
