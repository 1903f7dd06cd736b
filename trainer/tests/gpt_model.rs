//! The GPT model: gradients of the whole loss for every variant, agreement of the fused ops with
//! the reference composition of basic autograd ops, causality, parameter names and calibration
//! taps.

use aka_core::rng::Rng;
use aka_trainer::autograd::gradcheck::{check, randn};
use aka_trainer::autograd::ops::math::{exp_fast, tanh_fast};
use aka_trainer::autograd::{no_grad, Array, GateAct, Tensor};
use aka_trainer::gpt::{Gpt, GptConfig, GptMlp, GptNorm, GptPosition};
use aka_trainer::nn::{Ctx, Module};
use ndarray::IxDyn;

mod reference;

fn tiny(position: GptPosition, norm: GptNorm, mlp: GptMlp, tied_head: bool) -> GptConfig {
    GptConfig::sized(2, 2, 8, 6, 7).variant(position, norm, mlp, tied_head)
}

fn all_variants() -> Vec<GptConfig> {
    let mut out = Vec::new();
    for &position in GptPosition::ALL {
        for &norm in GptNorm::ALL {
            for &mlp in GptMlp::ALL {
                for tied in [true, false] {
                    out.push(tiny(position, norm, mlp, tied));
                }
            }
        }
    }
    out
}

/// Random parameter values with a large enough spread that every gradient is far from zero
/// (norm weights around 1).
fn random_params(config: &GptConfig, rng: &mut Rng) -> Vec<Array> {
    config
        .parameter_shapes()
        .iter()
        .map(|(name, shape)| {
            let mut a = randn(shape, 0.5, rng);
            if name.ends_with(".weight") && shape.len() == 1 {
                a.mapv_inplace(|x| 1.0 + 0.3 * x);
            }
            a
        })
        .collect()
}

/// Checks the analytic gradient of `loss(params)` against central differences with Richardson
/// extrapolation, `(4·D(h/2) - D(h)) / 3` with `h = 1e-2` (truncation error O(h⁴), which
/// matters here: layer/RMS norms of short rows are strongly curved). Every element of every
/// parameter is checked; passes when `|analytic - numeric| <= 1e-3 + 1e-2·|numeric|`.
fn check_loss(params: &[Array], loss: impl Fn(&[Tensor]) -> Tensor) -> Result<(), String> {
    let ts: Vec<Tensor> = params.iter().map(|a| Tensor::param(a.clone())).collect();
    loss(&ts).backward();
    let eval = |xs: &[Array]| -> f64 {
        let ts: Vec<Tensor> = xs.iter().map(|a| Tensor::new(a.clone())).collect();
        no_grad(|| loss(&ts).item()) as f64
    };
    let h = 1e-2f32;
    let mut xs = params.to_vec();
    for (i, t) in ts.iter().enumerate() {
        let analytic = t
            .grad()
            .map(|g| g.clone())
            .unwrap_or_else(|| Array::zeros(IxDyn(&t.shape())));
        for j in 0..params[i].len() {
            let orig = params[i].as_slice().unwrap()[j];
            let mut d = |h: f32| {
                xs[i].as_slice_mut().unwrap()[j] = orig + h;
                let plus = eval(&xs);
                xs[i].as_slice_mut().unwrap()[j] = orig - h;
                let minus = eval(&xs);
                xs[i].as_slice_mut().unwrap()[j] = orig;
                (plus - minus) / (2.0 * h as f64)
            };
            let numeric = (4.0 * d(h / 2.0) - d(h)) / 3.0;
            let a = analytic.as_slice().unwrap()[j] as f64;
            if (a - numeric).abs() > 1e-3 + 1e-2 * numeric.abs() {
                return Err(format!(
                    "parameter {i} element {j}: analytic {a:.6} vs numeric {numeric:.6}"
                ));
            }
        }
    }
    Ok(())
}

/// Finite differences of the full cross-entropy loss w.r.t. every parameter element, for all 24
/// variant combinations (position × norm × mlp × head), b = 2, t = 4.
#[test]
fn whole_model_gradients_every_variant() {
    let (b, t) = (2, 4);
    let ids = [0, 3, 6, 2, 5, 5, 1, 4];
    let targets = [3, 6, 2, 1, 5, 1, 4, 0];
    for (n, config) in all_variants().into_iter().enumerate() {
        let mut rng = Rng::new(100 + n as u64);
        let params = random_params(&config, &mut rng);
        let cfg = config.clone();
        check_loss(&params, move |ts| {
            let model = Gpt::from_tensors(cfg.clone(), ts.to_vec()).unwrap();
            model.loss(&ids, &targets, b, t, &mut Ctx::eval())
        })
        .unwrap_or_else(|e| panic!("{config:?}: {e}"));
    }
}

/// Dropout inside the model (embeddings, attention probabilities, residuals) with a fixed mask
/// stream is still differentiated exactly.
#[test]
fn gradients_with_dropout() {
    let config = GptConfig {
        dropout: 0.2,
        ..tiny(GptPosition::Rope, GptNorm::LayerNorm, GptMlp::SwiGlu, true)
    };
    let params = random_params(&config, &mut Rng::new(5));
    let ids = [1, 2, 3, 4, 5, 6];
    let targets = [2, 3, 4, 5, 6, 0];
    check_loss(&params, move |ts| {
        let model = Gpt::from_tensors(config.clone(), ts.to_vec()).unwrap();
        model.loss(&ids, &targets, 2, 3, &mut Ctx::train(Rng::new(9)))
    })
    .unwrap();
}

#[test]
fn fused_attention_matches_reference_values_and_gradients() {
    let (b, t, h, hd) = (3, 5, 2, 4);
    let d = h * hd;
    let mut rng = Rng::new(1);
    let inputs: Vec<Array> = (0..3).map(|_| randn(&[b * t, d], 1.0, &mut rng)).collect();
    for rope in [false, true] {
        let fused = |ts: &[Tensor]| {
            let mut qkv = reference::concat(&[ts[0].clone(), ts[1].clone(), ts[2].clone()], 1);
            if rope {
                qkv = qkv.rope_rows(t, hd, 2 * d, 0);
            }
            qkv.causal_attention(t, h, None, false).0
        };
        let reference = |ts: &[Tensor]| reference::attention(&ts[0], &ts[1], &ts[2], b, t, h, rope);
        let ts: Vec<Tensor> = inputs.iter().map(|a| Tensor::new(a.clone())).collect();
        let (a, r) = no_grad(|| (fused(&ts), reference(&ts)));
        for (x, y) in a.value().iter().zip(r.value().iter()) {
            assert!((x - y).abs() < 1e-5, "rope {rope}: {x} vs {y}");
        }
        check(&inputs, fused).unwrap();
    }
}

/// Longer sequences and head sizes that are not multiples of the kernel's 4 × 16 tiles.
#[test]
fn fused_attention_odd_sizes() {
    for (b, t, h, hd) in [(2, 19, 3, 6), (1, 1, 1, 2), (2, 33, 2, 20)] {
        let d = h * hd;
        let qkv = randn(&[b * t, 3 * d], 1.0, &mut Rng::new(t as u64));
        let x = Tensor::new(qkv.clone());
        let fused = no_grad(|| x.causal_attention(t, h, None, false).0);
        let q = reference::narrow(&x, 1, 0, d);
        let k = reference::narrow(&x, 1, d, d);
        let v = reference::narrow(&x, 1, 2 * d, d);
        let reference = no_grad(|| reference::attention(&q, &k, &v, b, t, h, false));
        for (x, y) in fused.value().iter().zip(reference.value().iter()) {
            assert!(
                (x - y).abs() < 1e-5,
                "b {b} t {t} h {h} hd {hd}: {x} vs {y}"
            );
        }
    }
    let (t, h) = (7, 2);
    let qkv = randn(&[2 * t, 3 * 2 * h * 3], 1.0, &mut Rng::new(77));
    check(&[qkv], |ts| ts[0].causal_attention(t, h, None, false).0).unwrap();
}

#[test]
fn linear_cat_matches_separate_linears() {
    let mut rng = Rng::new(6);
    let x = randn(&[5, 4], 1.0, &mut rng);
    let w1 = randn(&[3, 4], 1.0, &mut rng);
    let w2 = randn(&[2, 4], 1.0, &mut rng);
    let xt = Tensor::new(x.clone());
    let (t1, t2) = (Tensor::new(w1.clone()), Tensor::new(w2.clone()));
    let fused = xt.linear_cat(&[&t1, &t2]);
    let separate = reference::concat(&[xt.linear(&t1, None), xt.linear(&t2, None)], 1);
    for (a, b) in fused.value().iter().zip(separate.value().iter()) {
        assert!((a - b).abs() < 1e-5);
    }
    check(&[x, w1, w2], |t| t[0].linear_cat(&[&t[1], &t[2]])).unwrap();
}

/// The one cross-entropy (used by the GPT's loss) against its definition from basic ops,
/// `-mean_i log_softmax(x_i)[target_i]`.
#[test]
fn cross_entropy_matches_log_softmax_reference() {
    let logits = randn(&[6, 9], 2.0, &mut Rng::new(12));
    let targets = [0, 8, 3, 3, 5, 1];
    let mut onehot = Array::zeros(IxDyn(&[6, 9]));
    for (i, &t) in targets.iter().enumerate() {
        onehot[[i, t]] = 1.0;
    }
    let a = Tensor::new(logits.clone()).cross_entropy(&targets).item();
    let b = Tensor::new(logits.clone())
        .log_softmax(1)
        .mul(&Tensor::new(onehot))
        .sum()
        .mul_scalar(-1.0 / 6.0)
        .item();
    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    check(&[logits], |t| t[0].cross_entropy(&targets)).unwrap();
}

#[test]
fn rope_rows_is_bit_identical_to_tensor_rope() {
    let (b, t, h, hd) = (2, 7, 3, 6);
    let x = randn(&[b * t, h * hd], 1.0, &mut Rng::new(3));
    for start in [0, 5] {
        let fused = Tensor::new(x.clone()).rope_rows(t, hd, h * hd, start);
        let reference = Tensor::new(x.clone())
            .reshape(&[b, t, h, hd])
            .permute(&[0, 2, 1, 3])
            .rope(start)
            .permute(&[0, 2, 1, 3])
            .reshape(&[b * t, h * hd]);
        let (f, r) = (fused.value(), reference.value());
        assert!(f
            .iter()
            .zip(r.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn fused_activations_match_tensor_ops() {
    let x = randn(&[4, 50], 3.0, &mut Rng::new(4));
    let g = randn(&[4, 50], 1.0, &mut Rng::new(5));
    let xt = Tensor::new(x.clone());
    let gt = Tensor::new(g.clone());
    let close = |a: &Tensor, b: &Tensor| {
        for (x, y) in a.value().iter().zip(b.value().iter()) {
            assert!((x - y).abs() <= 2e-6 * (1.0 + y.abs()), "{x} vs {y}");
        }
    };
    close(&xt.gelu(), &reference::gelu(&xt));
    close(&xt.silu(), &reference::silu(&xt));
    let ug = reference::concat(&[xt.clone(), gt.clone()], 1);
    close(&ug.gated(GateAct::Silu), &reference::silu(&xt).mul(&gt));
    close(&ug.gated(GateAct::Gelu), &reference::gelu(&xt).mul(&gt));
    check(std::slice::from_ref(&x), |t| t[0].gelu()).unwrap();
    check(std::slice::from_ref(&x), |t| t[0].silu()).unwrap();
    let packed = ug.value().clone();
    check(std::slice::from_ref(&packed), |t| t[0].gated(GateAct::Silu)).unwrap();
    check(&[packed], |t| t[0].gated(GateAct::Gelu)).unwrap();
}

#[test]
fn fast_exp_and_tanh_are_accurate() {
    let mut worst_exp = 0.0f64;
    let mut worst_tanh = 0.0f64;
    let mut x = -100.0f32;
    while x < 100.0 {
        let e = exp_fast(x) as f64;
        let want = (x as f64).exp();
        if want > 1e-37 && want < 1e38 {
            worst_exp = worst_exp.max((e - want).abs() / want);
        }
        let th = tanh_fast(x) as f64;
        worst_tanh = worst_tanh.max((th - (x as f64).tanh()).abs());
        x += 0.001_37;
    }
    assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
    assert!(worst_tanh < 1e-6, "tanh absolute error {worst_tanh}");
    assert_eq!(exp_fast(-200.0), 0.0);
    assert_eq!(exp_fast(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_fast(0.0), 1.0);
    assert_eq!(exp_fast(200.0), f32::INFINITY);
    assert_eq!(tanh_fast(0.0), 0.0);
    assert!((tanh_fast(20.0) - 1.0).abs() < 1e-7);
}

/// Changing a token at position p never changes the logits at positions < p.
#[test]
fn causality() {
    let (b, t) = (2, 6);
    for config in all_variants() {
        let model = Gpt::new(config.clone(), &mut Rng::new(11));
        let ids: Vec<usize> = (0..b * t).map(|i| (i * 5 + 1) % 7).collect();
        let base = no_grad(|| model.forward(&ids, b, t, &mut Ctx::eval()));
        for p in 0..t {
            let mut changed = ids.clone();
            changed[p] = (changed[p] + 3) % 7; // first sequence only
            let out = no_grad(|| model.forward(&changed, b, t, &mut Ctx::eval()));
            let (a, c) = (base.value(), out.value());
            for row in 0..b * t {
                let same = (0..7).all(|j| a[[row, j]] == c[[row, j]]);
                let affected = row < t && row >= p;
                if !affected {
                    assert!(same, "{config:?}: position {p} changed row {row}");
                }
            }
            // The changed position itself must matter.
            assert!((0..7).any(|j| a[[p, j]] != c[[p, j]]));
        }
    }
}

#[test]
fn parameter_names_shapes_and_count() {
    let config = GptConfig::default();
    let model = Gpt::new(config.clone(), &mut Rng::new(0));
    let names: Vec<String> = model.parameters().into_iter().map(|(n, _)| n).collect();
    let mut want = vec!["tok_emb".to_string(), "pos_emb".into()];
    for i in 0..2 {
        for s in [
            "ln1.weight",
            "ln1.bias",
            "attn.wq",
            "attn.wk",
            "attn.wv",
            "attn.wo",
            "ln2.weight",
            "ln2.bias",
            "mlp.w1",
            "mlp.w2",
        ] {
            want.push(format!("blocks.{i}.{s}"));
        }
    }
    want.extend(["ln_f.weight".to_string(), "ln_f.bias".into()]);
    assert_eq!(names, want);
    let shapes: Vec<(String, Vec<usize>)> = model
        .parameters()
        .into_iter()
        .map(|(n, p)| (n, p.shape()))
        .collect();
    assert_eq!(shapes, config.parameter_shapes());
    // 65·64 + 64·64 + 2·(4·64² + 8·64² + 4·64) + 2·64 = 107,200
    assert_eq!(model.parameter_count(), 107_200);

    let rope = GptConfig {
        position: GptPosition::Rope,
        norm: GptNorm::RmsNorm,
        mlp: GptMlp::SwiGlu,
        tied_head: false,
        ..GptConfig::default()
    };
    let names: Vec<String> = Gpt::new(rope, &mut Rng::new(0))
        .parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!names.iter().any(|n| n == "pos_emb" || n.ends_with(".bias")));
    assert!(names.contains(&"blocks.1.mlp.w3".to_string()));
    assert_eq!(names.last().unwrap(), "lm_head");
}

#[test]
fn init_statistics() {
    let config = GptConfig {
        n_layer: 4,
        d_model: 128,
        ..GptConfig::default()
    };
    let model = Gpt::new(config, &mut Rng::new(0));
    for (name, p) in model.parameters() {
        let v = p.value();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        if name.ends_with(".weight") && v.ndim() == 1 {
            assert!(v.iter().all(|&x| x == 1.0), "{name}");
        } else if name.ends_with(".bias") {
            assert!(v.iter().all(|&x| x == 0.0), "{name}");
        } else {
            let want = if name.ends_with("attn.wo") || name.ends_with("mlp.w2") {
                0.02 / 8f64.sqrt()
            } else {
                0.02
            };
            assert!(
                (std / want - 1.0).abs() < 0.05,
                "{name}: std {std}, want {want}"
            );
        }
    }
}

#[test]
fn taps_names_shapes_and_values() {
    let config = GptConfig {
        mlp: GptMlp::GeGlu,
        position: GptPosition::Rope,
        ..tiny(GptPosition::Rope, GptNorm::LayerNorm, GptMlp::GeGlu, true)
    };
    let model = Gpt::new(config.clone(), &mut Rng::new(2));
    let (b, t) = (2, 5);
    let ids: Vec<usize> = (0..b * t).map(|i| i % 7).collect();
    let mut seen: Vec<(String, Vec<usize>)> = Vec::new();
    let mut probs_ok = true;
    let traced = no_grad(|| {
        model.forward_traced(&ids, b, t, &mut Ctx::eval(), &mut |name, x| {
            if name.ends_with("attn_probs") {
                let v = x.value();
                for row in v.as_slice().unwrap().chunks(t).enumerate() {
                    let (r, row) = row;
                    let i = r % t;
                    let s: f32 = row.iter().sum();
                    probs_ok &= (s - 1.0).abs() < 1e-5 && row[i + 1..].iter().all(|&p| p == 0.0);
                }
            }
            seen.push((name.to_string(), x.shape()));
        })
    });
    assert!(probs_ok, "attention probabilities are causal and sum to 1");
    let (d, h, hd, hid) = (8, 2, 4, 32);
    let mut want = Vec::new();
    for i in 0..2 {
        let p = |s: &str| format!("blocks.{i}.{s}");
        want.push((p("attn_in"), vec![b, t, d]));
        want.push((p("q"), vec![b, h, t, hd]));
        want.push((p("k"), vec![b, h, t, hd]));
        want.push((p("v"), vec![b, h, t, hd]));
        want.push((p("attn_probs"), vec![b, h, t, t]));
        want.push((p("attn_out"), vec![b, t, d]));
        want.push((p("mlp_in"), vec![b, t, d]));
        want.push((p("mlp_gate"), vec![b, t, hid]));
        want.push((p("mlp_act"), vec![b, t, hid]));
        want.push((p("mlp_hidden"), vec![b, t, hid]));
    }
    want.push(("head_in".into(), vec![b, t, d]));
    assert_eq!(seen, want);
    let plain = no_grad(|| model.forward(&ids, b, t, &mut Ctx::eval()));
    assert_eq!(*plain.value(), *traced.value());

    // mlp_act is GELU (tanh approximation, GeGLU's gate activation) of mlp_gate, elementwise.
    let (mut gate, mut act) = (None, None);
    no_grad(|| {
        model.forward_traced(&ids, b, t, &mut Ctx::eval(), &mut |name, x| match name {
            "blocks.1.mlp_gate" => gate = Some(x.value().clone()),
            "blocks.1.mlp_act" => act = Some(x.value().clone()),
            _ => {}
        })
    });
    let (gate, act) = (gate.unwrap(), act.unwrap());
    assert!(gate.iter().any(|&g| g.abs() > 0.1));
    for (&g, &a) in gate.iter().zip(act.iter()) {
        let g = g as f64;
        let want = 0.5
            * g
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)).tanh());
        assert!(
            (a as f64 - want).abs() < 1e-5,
            "gelu({g}) = {a}, want {want}"
        );
    }

    // The head input tap reproduces the logits through the (tied) head.
    let mut head_in = None;
    no_grad(|| {
        model.forward_traced(&ids, b, t, &mut Ctx::eval(), &mut |name, x| {
            if name == "head_in" {
                head_in = Some(x.value().clone());
            }
        })
    });
    let hi = head_in
        .unwrap()
        .into_shape_with_order(IxDyn(&[b * t, d]))
        .unwrap();
    let logits = no_grad(|| Tensor::new(hi).linear(&model.tok_emb, None));
    assert_eq!(*logits.value(), *plain.value());
}

#[test]
fn module_forward_reads_ids_and_logits_last_matches() {
    let config = tiny(GptPosition::Learned, GptNorm::LayerNorm, GptMlp::Gelu, true);
    let model = Gpt::new(config, &mut Rng::new(8));
    let ids = [1usize, 2, 3, 4, 5, 6];
    let x = Tensor::from_vec(&[1, 6], ids.iter().map(|&i| i as f32).collect());
    let a = no_grad(|| Module::forward(&model, &x, &mut Ctx::eval()));
    let b = no_grad(|| model.forward(&ids, 1, 6, &mut Ctx::eval()));
    assert_eq!(*a.value(), *b.value());
    let last = model.logits_last(&ids);
    assert_eq!(last.as_slice(), &b.value().as_slice().unwrap()[5 * 7..]);
    // Longer than block_size: the window keeps the last 6 tokens.
    let long = [0usize, 0, 1, 2, 3, 4, 5, 6];
    assert_eq!(model.logits_last(&long), last);
}

#[test]
fn from_tensors_rejects_wrong_shapes() {
    let config = tiny(GptPosition::Learned, GptNorm::LayerNorm, GptMlp::Gelu, true);
    let mut tensors: Vec<Tensor> = config
        .parameter_shapes()
        .iter()
        .map(|(_, s)| Tensor::param(Array::zeros(IxDyn(s))))
        .collect();
    assert!(Gpt::from_tensors(config.clone(), tensors.clone()).is_ok());
    tensors[0] = Tensor::param(Array::zeros(IxDyn(&[3, 3])));
    let err = Gpt::from_tensors(config.clone(), tensors.clone())
        .err()
        .unwrap();
    assert!(err.to_string().contains("tok_emb"), "{err}");
    tensors.pop();
    assert!(Gpt::from_tensors(config, tensors).is_err());
}

/// A shorter context (`with_context`, what `--export-block` exports) is the same function on
/// sequences that fit it: every variant's logits equal the full model's, bit for bit; the
/// learned position table keeps its first rows; 0 and more than `block_size` are refused.
#[test]
fn with_context_is_the_same_model_on_shorter_sequences() {
    let (b, t) = (2, 4);
    for config in all_variants() {
        let model = Gpt::new(config.clone(), &mut Rng::new(5));
        let short = model.with_context(t).unwrap();
        assert_eq!(short.config().block_size, t);
        assert_eq!(
            short.parameter_count(),
            model.parameter_count() - model.pos_emb.as_ref().map_or(0, |_| (6 - t) * 8)
        );
        let ids: Vec<usize> = (0..b * t).map(|i| (i * 3 + 2) % 7).collect();
        let full = no_grad(|| model.forward(&ids, b, t, &mut Ctx::eval()));
        let cut = no_grad(|| short.forward(&ids, b, t, &mut Ctx::eval()));
        assert_eq!(*full.value(), *cut.value(), "{config:?}");
        if let (Some(p), Some(q)) = (&model.pos_emb, &short.pos_emb) {
            assert_eq!(q.shape(), vec![t, 8]);
            assert_eq!(
                q.value().as_slice().unwrap(),
                &p.value().as_slice().unwrap()[..t * 8]
            );
        }
        for bad in [0, 7] {
            let err = model.with_context(bad).err().expect("refused");
            assert!(err.to_string().contains("trained with 6"), "{err}");
        }
    }
}
