//! Random corruptions of a model file for the "never panics" property tests, shared by
//! aka-core's fuzz tests and the GPT loader tests (`tests/tests/gpt_loader.rs`).

use proptest::sample::Index;

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
