//! `GptModel::load` on arbitrary bytes, then a `Decoder` with a few pushes (enough to slide a
//! small window) when the run state and the work per token are small.
#![no_main]

use aka_core::gpt::{Decoder, GptModel};
use libfuzzer_sys::fuzz_target;

/// Largest run state (bytes) the target allocates.
const MAX_STATE: usize = 4 << 20;
/// Largest declared work per token the target runs.
const MAX_WORK: u64 = 10_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = GptModel::load(data) else {
        return;
    };
    let _ = (model.param_bytes(), model.kv_cache_size(), model.weight_macs());
    let _ = (model.vocab_chars(), model.unknown_id(), model.file_size());
    let vocab = model.vocab_size();
    for id in 0..vocab.min(300) as u32 {
        let _ = model.decode_token(id);
    }
    let _ = model.decode_token(u32::MAX);
    let mut ids = [0u32; 16];
    let _ = model.encode("hello, world\u{e9}", &mut ids);
    if model.state_size() > MAX_STATE || model.block_size() > 4096 {
        return;
    }
    match model.work_per_token() {
        Some(w) if w <= MAX_WORK => {}
        _ => return,
    }
    let mut f = vec![0f32; model.state_f32_len()];
    let mut kv = vec![0i8; model.state_i8_len()];
    let mut window = vec![0u32; model.block_size()];
    let Ok(state) = model.new_state(&mut f, &mut kv) else {
        return;
    };
    let Ok(mut dec) = Decoder::new(&model, state, &mut window) else {
        return;
    };
    // Pushes: enough to fill and slide a window of up to 8 positions, plus a bad token.
    let pushes = model.block_size().min(8) + 2;
    for i in 0..pushes {
        let token = (i as u32).wrapping_mul(7) % (vocab.max(1) as u32);
        match dec.push(token) {
            Ok(logits) => assert_eq!(logits.len(), vocab),
            Err(_) => return,
        }
    }
    assert!(dec.push(vocab as u32).is_err());
});
