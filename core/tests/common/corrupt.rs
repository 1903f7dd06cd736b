//! Random corruptions of a model file for the "never panics" property tests, shared by
//! aka-core's fuzz tests and the GPT loader tests (`tests/tests/gpt_loader.rs`).

use proptest::prelude::*;
use proptest::sample::Index;

/// Byte changes for [`set_bytes`]: `1..max` (position, value) pairs.
pub fn flips(max: usize) -> impl Strategy<Value = Vec<(Index, u8)>> {
    prop::collection::vec((any::<Index>(), any::<u8>()), 1..max)
}

/// A cut and an insertion for [`cut_and_insert`]: the cut position (scaled to the length, end
/// included), `0..6` bytes to insert, and where.
pub fn splices() -> impl Strategy<Value = (Index, Vec<u8>, Index)> {
    (
        any::<Index>(),
        prop::collection::vec(any::<u8>(), 0..6),
        any::<Index>(),
    )
}

/// Sets the byte at each `at` (scaled to the length) to its `value`, in order.
pub fn set_bytes(bytes: &mut [u8], flips: Vec<(Index, u8)>) {
    for (at, value) in flips {
        let i = at.index(bytes.len());
        bytes[i] = value;
    }
}

/// Truncates `bytes` to `keep` bytes, then inserts `insert` at `at` (scaled to the new length,
/// end included).
pub fn cut_and_insert(bytes: &mut Vec<u8>, keep: usize, insert: Vec<u8>, at: Index) {
    bytes.truncate(keep);
    let pos = at.index(bytes.len() + 1);
    bytes.splice(pos..pos, insert);
}
