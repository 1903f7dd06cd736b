//! Issue 11: a head wider than the 256 rows of one accumulator pass (d = 512, one head). Every
//! output dim of the head must be computed: aka-core's int8 GPT agrees with the trainer's float
//! GPT as closely as for narrow heads (it was 64.8 % when dims 256.. of a head were never written).

mod gpt_common;

use aka_trainer::gpt::GptConfig;
use gpt_common::*;

#[test]
fn head_of_512_matches_the_float_model() {
    let data = shakespeare();
    let config = GptConfig {
        n_layer: 1,
        n_head: 1,
        d_model: 512,
        block_size: 16,
        ..GptConfig::default()
    };
    let model = train(data, config, 40, 3);
    let e = export(&model, data, 2);
    let m = aka_core::GptModel::load(&e.bytes).unwrap();
    assert_eq!(
        m.config().d_model as usize / m.config().n_head as usize,
        512
    );
    let rel = e.int8.loss() / e.float.loss() - 1.0;
    let agree = e.int8.agreement(&e.float);
    println!(
        "head 512: float loss {:.4}, int8 loss {:.4} ({:+.2}%), top-1 agreement {agree:.2}% over {} positions",
        e.float.loss(),
        e.int8.loss(),
        100.0 * rel,
        e.val_tokens
    );
    assert!(rel.abs() < 0.03, "int8 loss off by {:.2}%", 100.0 * rel);
    assert!(agree >= 95.0, "top-1 agreement {agree:.2}%");
}
