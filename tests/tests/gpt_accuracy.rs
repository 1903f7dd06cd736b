//! aka-core's int8 GPT against the trainer's float GPT on the same validation batches:
//! (a) mean loss within 3 %, (b) top-1 next-token agreement >= 95 %, for several variants.

mod gpt_common;

use std::time::Instant;

use aka_trainer::gpt::{GptConfig, GptMlp, GptNorm, GptPosition};
use gpt_common::*;

fn check(name: &str, config: GptConfig, steps: usize) {
    let t0 = Instant::now();
    let data = shakespeare();
    let model = train(data, config, steps, 3);
    let t1 = Instant::now();
    let e = export(&model, data, 4);
    let rel = e.int8.loss() / e.float.loss() - 1.0;
    let agree = e.int8.agreement(&e.float);
    println!(
        "{name}: float loss {:.4}, int8 loss {:.4} ({:+.2}%), top-1 agreement {agree:.2}% \
         over {} positions, accuracy float {:.2}% int8 {:.2}% (train {:.1}s, export+eval {:.1}s)",
        e.float.loss(),
        e.int8.loss(),
        100.0 * rel,
        e.val_tokens,
        e.float.accuracy(),
        e.int8.accuracy(),
        (t1 - t0).as_secs_f64(),
        t1.elapsed().as_secs_f64(),
    );
    assert!(
        e.float.loss() < 2.8,
        "{name}: the model did not learn ({})",
        e.float.loss()
    );
    assert!(
        rel.abs() < 0.03,
        "{name}: int8 loss off by {:.2}%",
        100.0 * rel
    );
    assert!(agree >= 95.0, "{name}: top-1 agreement {agree:.2}%");
    // The figures are in the file.
    let m = aka_core::GptModel::load(&e.bytes).unwrap();
    assert_eq!(m.eval().val_loss_int8, e.int8.loss() as f32);
    assert_eq!(m.eval().val_loss_float, e.float.loss() as f32);
    assert_eq!(m.eval().val_tokens, e.val_tokens as u64);
}

#[test]
fn learned_layernorm_gelu_tied() {
    let (_, e) = trained_default();
    let e = &e;
    let rel = e.int8.loss() / e.float.loss() - 1.0;
    let agree = e.int8.agreement(&e.float);
    println!(
        "default: float loss {:.4}, int8 loss {:.4} ({:+.2}%), top-1 agreement {agree:.2}% over {} positions",
        e.float.loss(),
        e.int8.loss(),
        100.0 * rel,
        e.val_tokens
    );
    assert!(rel.abs() < 0.03);
    assert!(agree >= 95.0);
}

#[test]
fn rope_rmsnorm_swiglu_untied() {
    check(
        "rope/rmsnorm/swiglu/untied",
        GptConfig {
            position: GptPosition::Rope,
            norm: GptNorm::RmsNorm,
            mlp: GptMlp::SwiGlu,
            tied_head: false,
            ..small_config()
        },
        300,
    );
}

#[test]
fn rope_layernorm_geglu_tied() {
    check(
        "rope/layernorm/geglu/tied",
        GptConfig {
            position: GptPosition::Rope,
            mlp: GptMlp::GeGlu,
            ..small_config()
        },
        300,
    );
}
