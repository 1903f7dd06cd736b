//! `SequentialModel::load` on arbitrary bytes, then one forward pass on a zero input when the
//! declared arena and work are small enough to run many times a second.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Largest arena (bytes) the target allocates for a forward pass.
const MAX_ARENA: usize = 1 << 20;
/// Largest declared work (operations per inference) the target runs.
const MAX_WORK: u64 = 100_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = aka_core::SequentialModel::load(data) else {
        return;
    };
    // Every accessor must be total on a model that loaded.
    let _ = (model.checked_macs(), model.param_count(), model.param_bytes());
    let _ = (model.input_shape(), model.output_shape(), model.file_size());
    let _ = model.layer_infos().map(|l| l.work()).count();
    if model.arena_size() > MAX_ARENA || model.input_len() > MAX_ARENA {
        return;
    }
    match model.work() {
        Some(w) if w <= MAX_WORK => {}
        _ => return,
    }
    let input = vec![0i8; model.input_len()];
    let mut arena = vec![0i8; model.arena_size()];
    if let Ok(out) = model.run(&input, &mut arena) {
        assert_eq!(out.len(), model.output_len());
    }
});
