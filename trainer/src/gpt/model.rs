//! A nanoGPT-style character-level transformer: [`GptConfig`], [`Attention`], [`Mlp`], [`Block`],
//! [`Gpt`].
//!
//! ```text
//! x = tok_emb[ids] (+ pos_emb[0..t] when position = Learned)         [b·t, d]
//! for each block:  x = x + attn(ln1(x));  x = x + mlp(ln2(x))          (pre-norm residual)
//! logits = ln_f(x) · headᵀ   (head = tok_emb when tied, else lm_head)   [b·t, vocab]
//! ```
//!
//! Conventions the int8 exporter relies on:
//!
//! - **No biases in projections** (`wq wk wv wo w1 w2 w3` and the head), llama-style; only
//!   LayerNorm has a bias. Weights are PyTorch-shaped `[out, in]`: `y = x · Wᵀ`.
//! - **Heads**: `q = x·wqᵀ` is `[b·t, d]` whose row is `[n_head, head_dim]`: head `h` owns columns
//!   `h·hd .. (h+1)·hd` (PyTorch's `view(b, t, h, hd)`). Attention output rows are the heads
//!   concatenated in the same order, the input of `wo`.
//! - **Attention**: causal softmax of `q·kᵀ / √head_dim` (scale applied to the dot product).
//! - **RoPE** (`position = Rope`): rotate-half convention (GPT-NeoX / HF Llama), base 10000,
//!   applied to q and k of every head at positions `0..t` (see [`Tensor::rope`]); no position
//!   embedding table.
//! - **Norms**: `LayerNorm` = PyTorch `LayerNorm(d, eps)` (biased variance, weight and bias);
//!   `RmsNorm` = `x / sqrt(mean(x²) + eps) · weight` (no bias). `eps` = [`GptConfig::norm_eps`].
//! - **MLP**: `Gelu`: `w2 · gelu(w1 · x)`; gated (`SwiGlu`, `GeGlu`):
//!   `w2 · (act(w1 · x) ⊙ (w3 · x))`, act = SiLU / GELU. GELU is the tanh approximation.
//!   The hidden width is `4·d_model` for every kind.
//! - **Sliding window**: sequences longer than `block_size` are not supported by `forward`;
//!   [`Gpt::logits_last`] keeps the last `block_size` tokens and restarts positions at 0.

pub use aka_core::format::{GptMlp, GptNorm, GptPosition};
use aka_core::rng::Rng;
use anyhow::{bail, ensure};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};

use crate::autograd::{no_grad, Array, GateAct, Tensor};
use crate::nn::{Ctx, Module};

/// The shape and variant of a [`Gpt`]. Stored in checkpoints; everything needed (with the
/// parameters and the vocabulary) to rebuild the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Number of transformer blocks (default 2).
    pub n_layer: usize,
    /// Attention heads per block (default 4); must divide `d_model`.
    pub n_head: usize,
    /// Model width `d` (default 64).
    pub d_model: usize,
    /// Longest context in tokens (default 64): the size of `pos_emb` and of a training block.
    pub block_size: usize,
    /// Number of token ids (default 65, tinyshakespeare's; set it from the tokenizer).
    pub vocab_size: usize,
    /// Learned table or RoPE (default `Learned`).
    pub position: GptPosition,
    /// LayerNorm or RMSNorm (default `LayerNorm`).
    pub norm: GptNorm,
    /// Epsilon inside every norm's square root (default 1e-5, PyTorch's).
    pub norm_eps: f32,
    /// Feed-forward variant (default `Gelu`); the hidden width is always `4 · d_model`.
    pub mlp: GptMlp,
    /// Share the token embedding as the output head (default true); false adds `lm_head`.
    pub tied_head: bool,
    /// Dropout probability on the embeddings, attention probabilities and both residual
    /// branches while training (default 0).
    pub dropout: f32,
}

impl Default for GptConfig {
    fn default() -> Self {
        Self {
            n_layer: 2,
            n_head: 4,
            d_model: 64,
            block_size: 64,
            vocab_size: 65,
            position: GptPosition::Learned,
            norm: GptNorm::LayerNorm,
            norm_eps: 1e-5,
            mlp: GptMlp::Gelu,
            tied_head: true,
            dropout: 0.0,
        }
    }
}

impl GptConfig {
    /// `d_model / n_head`.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head.max(1)
    }

    /// The MLP hidden width, `4 · d_model` for every [`GptMlp`].
    pub fn hidden(&self) -> usize {
        4 * self.d_model
    }

    /// Checks that the sizes are usable.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.n_layer >= 1, "n_layer must be at least 1");
        ensure!(self.n_head >= 1, "n_head must be at least 1");
        ensure!(self.d_model >= 1, "d_model must be at least 1");
        ensure!(
            self.d_model.is_multiple_of(self.n_head),
            "d_model {} must be a multiple of n_head {}",
            self.d_model,
            self.n_head
        );
        ensure!(
            self.position != GptPosition::Rope || self.head_dim().is_multiple_of(2),
            "RoPE needs an even head dimension, got {}",
            self.head_dim()
        );
        ensure!(self.block_size >= 1, "block_size must be at least 1");
        ensure!(self.vocab_size >= 1, "vocab_size must be at least 1");
        ensure!(
            (0.0..1.0).contains(&self.dropout),
            "dropout {} not in [0, 1)",
            self.dropout
        );
        ensure!(self.norm_eps > 0.0, "norm_eps must be positive");
        Ok(())
    }

    /// Names and shapes of every parameter, in [`Module::parameters`] order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, v, h) = (self.d_model, self.vocab_size, self.hidden());
        let mut out = vec![("tok_emb".to_string(), vec![v, d])];
        if self.position == GptPosition::Learned {
            out.push(("pos_emb".into(), vec![self.block_size, d]));
        }
        let norm = |out: &mut Vec<(String, Vec<usize>)>, name: &str| {
            out.push((format!("{name}.weight"), vec![d]));
            if self.norm == GptNorm::LayerNorm {
                out.push((format!("{name}.bias"), vec![d]));
            }
        };
        for i in 0..self.n_layer {
            let p = format!("blocks.{i}");
            norm(&mut out, &format!("{p}.ln1"));
            for w in ["wq", "wk", "wv", "wo"] {
                out.push((format!("{p}.attn.{w}"), vec![d, d]));
            }
            norm(&mut out, &format!("{p}.ln2"));
            out.push((format!("{p}.mlp.w1"), vec![h, d]));
            out.push((format!("{p}.mlp.w2"), vec![d, h]));
            if self.mlp != GptMlp::Gelu {
                out.push((format!("{p}.mlp.w3"), vec![h, d]));
            }
        }
        norm(&mut out, "ln_f");
        if !self.tied_head {
            out.push(("lm_head".into(), vec![v, d]));
        }
        out
    }
}

/// A LayerNorm or RMSNorm over the last axis.
pub struct Norm {
    /// `[d]`, initialised to 1.
    pub weight: Tensor,
    /// `[d]`, initialised to 0; `Some` exactly for LayerNorm.
    pub bias: Option<Tensor>,
    /// Added to the variance (mean square) under the square root.
    pub eps: f32,
}

impl Norm {
    fn new(kind: GptNorm, d: usize, eps: f32) -> Self {
        Self {
            weight: Tensor::param(Array::ones(IxDyn(&[d]))),
            bias: (kind == GptNorm::LayerNorm).then(|| Tensor::param(Array::zeros(IxDyn(&[d])))),
            eps,
        }
    }

    /// `x: [.., d] -> [.., d]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match &self.bias {
            Some(b) => x.layer_norm(&self.weight, Some(b), self.eps),
            None => x.rms_norm(&self.weight, self.eps),
        }
    }

    fn parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((format!("{prefix}.weight"), self.weight.clone()));
        if let Some(b) = &self.bias {
            out.push((format!("{prefix}.bias"), b.clone()));
        }
    }
}

/// Causal multi-head self-attention with separate bias-free projections, all `[d, d]`.
pub struct Attention {
    /// Query projection `[d, d]`.
    pub wq: Tensor,
    /// Key projection `[d, d]`.
    pub wk: Tensor,
    /// Value projection `[d, d]`.
    pub wv: Tensor,
    /// Output projection `[d, d]` (a residual projection: init scaled by `1/√(2·n_layer)`).
    pub wo: Tensor,
}

/// The feed-forward network: `w1 [hidden, d]`, `w2 [d, hidden]`, and `w3 [hidden, d]` when
/// gated.
pub struct Mlp {
    /// Which variant.
    pub kind: GptMlp,
    /// Up projection `[hidden, d]` (the activated branch when gated).
    pub w1: Tensor,
    /// Down projection `[d, hidden]` (a residual projection: init scaled by `1/√(2·n_layer)`).
    pub w2: Tensor,
    /// Gate's linear branch `[hidden, d]`; `Some` exactly for SwiGLU/GeGLU.
    pub w3: Option<Tensor>,
}

/// One pre-norm transformer block.
pub struct Block {
    /// Norm before attention.
    pub ln1: Norm,
    /// Self-attention.
    pub attn: Attention,
    /// Norm before the MLP.
    pub ln2: Norm,
    /// Feed-forward network.
    pub mlp: Mlp,
}

/// The whole model. See the [module documentation](self) for the architecture and conventions.
pub struct Gpt {
    config: GptConfig,
    /// Token embedding `[vocab, d]` (also the head when tied).
    pub tok_emb: Tensor,
    /// Learned position embedding `[block_size, d]` (`GptPosition::Learned` only).
    pub pos_emb: Option<Tensor>,
    /// The transformer blocks.
    pub blocks: Vec<Block>,
    /// Final norm.
    pub ln_f: Norm,
    /// Output head `[vocab, d]` when untied.
    pub lm_head: Option<Tensor>,
}

/// A calibration tap: called with a name and a (detached) activation tensor.
pub type Tap<'a> = &'a mut dyn FnMut(&str, &Tensor);

/// Views the `[b·t, cols]` value of `x` as `[b, t, cols]` (a detached copy for a tap).
fn bt(x: &Tensor, b: usize, t: usize) -> Tensor {
    let v = x.value();
    let cols = v.shape()[1];
    Tensor::new(
        v.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[b, t, cols]))
            .expect("b*t rows"),
    )
}

/// Part `part` (0 = q, 1 = k, 2 = v) of a fused `[b·t, 3d]` projection (row `[q | k | v]`,
/// each `[h, hd]`) as `[b, h, t, hd]` (a detached copy for a tap).
fn heads(qkv: &Tensor, part: usize, b: usize, t: usize, h: usize) -> Tensor {
    let v = qkv.value();
    let d = v.shape()[1] / 3;
    let hd = d / h;
    let v = v
        .slice(ndarray::s![.., part * d..(part + 1) * d])
        .to_owned()
        .into_shape_with_order(IxDyn(&[b, t, h, hd]))
        .expect("b*t rows");
    Tensor::new(
        v.permuted_axes(IxDyn(&[0, 2, 1, 3]))
            .as_standard_layout()
            .into_owned(),
    )
}

/// Calls the tap, if any, with `blocks.{layer}.{name}` (or just `name` outside the blocks) and
/// the activation built by `make` (only built when there is a tap).
fn emit(
    tap: &mut Option<Tap<'_>>,
    layer: Option<usize>,
    name: &str,
    make: impl FnOnce() -> Tensor,
) {
    if let Some(tap) = tap.as_mut() {
        let full = match layer {
            Some(i) => format!("blocks.{i}.{name}"),
            None => name.to_string(),
        };
        tap(&full, &make());
    }
}

/// Normal(0, std) init.
fn normal(shape: &[usize], std: f32, rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.normal() * std).collect();
    Tensor::param(Array::from_shape_vec(IxDyn(shape), data).expect("shape"))
}

impl Gpt {
    /// A freshly initialised model, as nanoGPT: every projection and embedding ~ N(0, 0.02²),
    /// the residual projections `wo` and `mlp.w2` ~ N(0, (0.02/√(2·n_layer))²), norm weights 1
    /// and biases 0. Draws from `rng` in [`Module::parameters`] order (norms draw nothing).
    /// Panics if the config does not [`GptConfig::validate`].
    pub fn new(config: GptConfig, rng: &mut Rng) -> Gpt {
        if let Err(e) = config.validate() {
            panic!("invalid GptConfig: {e}");
        }
        let (d, v, h) = (config.d_model, config.vocab_size, config.hidden());
        let std = 0.02f32;
        let resid_std = std / ((2 * config.n_layer) as f32).sqrt();
        let tok_emb = normal(&[v, d], std, rng);
        let pos_emb = (config.position == GptPosition::Learned)
            .then(|| normal(&[config.block_size, d], std, rng));
        let blocks = (0..config.n_layer)
            .map(|_| {
                let ln1 = Norm::new(config.norm, d, config.norm_eps);
                let attn = Attention {
                    wq: normal(&[d, d], std, rng),
                    wk: normal(&[d, d], std, rng),
                    wv: normal(&[d, d], std, rng),
                    wo: normal(&[d, d], resid_std, rng),
                };
                let ln2 = Norm::new(config.norm, d, config.norm_eps);
                let w1 = normal(&[h, d], std, rng);
                let w2 = normal(&[d, h], resid_std, rng);
                let w3 = (config.mlp != GptMlp::Gelu).then(|| normal(&[h, d], std, rng));
                Block {
                    ln1,
                    attn,
                    ln2,
                    mlp: Mlp {
                        kind: config.mlp,
                        w1,
                        w2,
                        w3,
                    },
                }
            })
            .collect();
        let ln_f = Norm::new(config.norm, d, config.norm_eps);
        let lm_head = (!config.tied_head).then(|| normal(&[v, d], std, rng));
        Gpt {
            config,
            tok_emb,
            pos_emb,
            blocks,
            ln_f,
            lm_head,
        }
    }

    /// Builds a model around existing tensors, given in [`Module::parameters`] order (names
    /// and shapes from [`GptConfig::parameter_shapes`]). The tensors are used as they are
    /// (shared, not copied), so gradients flow to them.
    pub fn from_tensors(config: GptConfig, tensors: Vec<Tensor>) -> anyhow::Result<Gpt> {
        config.validate()?;
        let shapes = config.parameter_shapes();
        if shapes.len() != tensors.len() {
            bail!(
                "the config needs {} parameters, got {}",
                shapes.len(),
                tensors.len()
            );
        }
        for ((name, shape), t) in shapes.iter().zip(&tensors) {
            if t.shape() != *shape {
                bail!(
                    "parameter {name}: expected shape {shape:?}, got {:?}",
                    t.shape()
                );
            }
        }
        let mut it = tensors.into_iter();
        let mut next = || it.next().expect("count checked");
        let ln = config.norm == GptNorm::LayerNorm;
        let eps = config.norm_eps;
        let norm = |next: &mut dyn FnMut() -> Tensor| Norm {
            weight: next(),
            bias: ln.then(&mut *next),
            eps,
        };
        let tok_emb = next();
        let pos_emb = (config.position == GptPosition::Learned).then(&mut next);
        let mut blocks = Vec::with_capacity(config.n_layer);
        for _ in 0..config.n_layer {
            let ln1 = norm(&mut next);
            let attn = Attention {
                wq: next(),
                wk: next(),
                wv: next(),
                wo: next(),
            };
            let ln2 = norm(&mut next);
            let w1 = next();
            let w2 = next();
            let w3 = (config.mlp != GptMlp::Gelu).then(&mut next);
            blocks.push(Block {
                ln1,
                attn,
                ln2,
                mlp: Mlp {
                    kind: config.mlp,
                    w1,
                    w2,
                    w3,
                },
            });
        }
        let ln_f = norm(&mut next);
        let lm_head = (!config.tied_head).then(&mut next);
        Ok(Gpt {
            config,
            tok_emb,
            pos_emb,
            blocks,
            ln_f,
            lm_head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// The output head `[vocab, d]`: `lm_head`, or `tok_emb` when tied.
    pub fn head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.tok_emb)
    }

    /// Logits `[b·t, vocab]` for token ids `[b, t]` (row-major, `ids.len() == b·t`,
    /// `1 <= t <= block_size`). Row `bi·t + p` predicts the token after `ids[bi·t + p]`.
    /// In training mode (`ctx.training`) dropout is active and draws from `ctx.rng`.
    pub fn forward(&self, ids: &[usize], b: usize, t: usize, ctx: &mut Ctx) -> Tensor {
        self.run(ids, b, t, ctx, None)
    }

    /// [`Gpt::forward`], calling `tap(name, activation)` at every point where the int8 runtime
    /// quantizes an activation (values detached from the graph), in execution order:
    ///
    /// | name | shape | what |
    /// |---|---|---|
    /// | `blocks.{i}.attn_in` | `[b, t, d]` | `ln1(x)`, input of wq/wk/wv |
    /// | `blocks.{i}.q`, `blocks.{i}.k` | `[b, h, t, hd]` | projections, after RoPE if any |
    /// | `blocks.{i}.v` | `[b, h, t, hd]` | value projection |
    /// | `blocks.{i}.attn_probs` | `[b, h, t, t]` | causal softmax output (0 above the diagonal) |
    /// | `blocks.{i}.attn_out` | `[b, t, d]` | heads concatenated, input of wo |
    /// | `blocks.{i}.mlp_in` | `[b, t, d]` | `ln2(x)`, input of w1 (and w3) |
    /// | `blocks.{i}.mlp_hidden` | `[b, t, hidden]` | input of w2 (after activation / gating) |
    /// | `head_in` | `[b, t, d]` | `ln_f(x)`, input of the head |
    pub fn forward_traced(
        &self,
        ids: &[usize],
        b: usize,
        t: usize,
        ctx: &mut Ctx,
        tap: Tap<'_>,
    ) -> Tensor {
        self.run(ids, b, t, ctx, Some(tap))
    }

    /// Mean cross-entropy of the next-token predictions over all `b·t` positions.
    pub fn loss(
        &self,
        ids: &[usize],
        targets: &[usize],
        b: usize,
        t: usize,
        ctx: &mut Ctx,
    ) -> Tensor {
        self.forward(ids, b, t, ctx).cross_entropy(targets)
    }

    /// Next-token logits `[vocab]` after the prefix `ids` (evaluation mode, no graph). Only the
    /// last `block_size` tokens are seen (a sliding window; their positions start at 0). Panics
    /// on an empty prefix.
    pub fn logits_last(&self, ids: &[usize]) -> Vec<f32> {
        assert!(!ids.is_empty(), "logits_last needs at least one token");
        let ctx_ids = &ids[ids.len().saturating_sub(self.config.block_size)..];
        let t = ctx_ids.len();
        let logits = no_grad(|| self.forward(ctx_ids, 1, t, &mut Ctx::eval()));
        let v = logits.value();
        let vocab = v.shape()[1];
        v.as_slice().expect("standard layout")[(t - 1) * vocab..].to_vec()
    }

    fn run(
        &self,
        ids: &[usize],
        b: usize,
        t: usize,
        ctx: &mut Ctx,
        mut tap: Option<Tap<'_>>,
    ) -> Tensor {
        let cfg = &self.config;
        assert_eq!(ids.len(), b * t, "ids must be [b, t]");
        assert!(
            t >= 1 && t <= cfg.block_size,
            "sequence length {t} not in 1..={}",
            cfg.block_size
        );
        let (h, p, d) = (cfg.n_head, cfg.dropout, cfg.d_model);
        let dropout = |x: Tensor, ctx: &mut Ctx| {
            if ctx.training && p > 0.0 {
                x.dropout(p, &mut ctx.rng)
            } else {
                x
            }
        };

        let x = self
            .tok_emb
            .embedding_with_positions(self.pos_emb.as_ref(), ids, t); // [b·t, d]
        let mut x = dropout(x, ctx); // [b·t, d]
        for (i, blk) in self.blocks.iter().enumerate() {
            let l = Some(i);
            // Attention branch.
            let a_in = blk.ln1.forward(&x); // [b·t, d]
            emit(&mut tap, l, "attn_in", || bt(&a_in, b, t)); // [b, t, d]
            let a = &blk.attn;
            let mut qkv = a_in.linear_cat(&[&a.wq, &a.wk, &a.wv]); // [b·t, 3d] = [q | k | v], each [h, hd]
            if cfg.position == GptPosition::Rope {
                qkv = qkv.rope_rows(t, cfg.head_dim(), 2 * d, 0); // [b·t, 3d], q and k rotated
            }
            emit(&mut tap, l, "q", || heads(&qkv, 0, b, t, h)); // [b, h, t, hd]
            emit(&mut tap, l, "k", || heads(&qkv, 1, b, t, h)); // [b, h, t, hd]
            emit(&mut tap, l, "v", || heads(&qkv, 2, b, t, h)); // [b, h, t, hd]
            let attn_drop = (ctx.training && p > 0.0).then_some((p, &mut ctx.rng));
            let (att, probs) = qkv.causal_attention(t, h, attn_drop, tap.is_some()); // [b·t, d]
            if let Some(probs) = probs {
                emit(&mut tap, l, "attn_probs", || Tensor::new(probs)); // [b, h, t, t]
            }
            emit(&mut tap, l, "attn_out", || bt(&att, b, t)); // [b, t, d]
            let y = att.linear(&a.wo, None); // [b·t, d]
            x = x.add(&dropout(y, ctx)); // [b·t, d]

            // MLP branch.
            let m_in = blk.ln2.forward(&x); // [b·t, d]
            emit(&mut tap, l, "mlp_in", || bt(&m_in, b, t)); // [b, t, d]
            let mlp = &blk.mlp;
            let hidden = match &mlp.w3 {
                None => m_in.linear(&mlp.w1, None).gelu(), // [b·t, hidden]
                Some(w3) => {
                    let ug = m_in.linear_cat(&[&mlp.w1, w3]); // [b·t, 2·hidden] = [w1·x | w3·x]
                    let act = if mlp.kind == GptMlp::SwiGlu {
                        GateAct::Silu
                    } else {
                        GateAct::Gelu
                    };
                    ug.gated(act) // [b·t, hidden]
                }
            };
            if tap.is_some() {
                // What the int8 runtime quantizes inside the MLP: the up-projection (the index of
                // its activation table) and the activation (the table's values).
                let gate = m_in.linear(&mlp.w1, None); // [b·t, hidden]
                let act = match mlp.kind {
                    GptMlp::SwiGlu => gate.mul(&gate.sigmoid()), // [b·t, hidden]
                    GptMlp::Gelu | GptMlp::GeGlu => gate.gelu(), // [b·t, hidden]
                };
                emit(&mut tap, l, "mlp_gate", || bt(&gate, b, t)); // [b, t, hidden]
                emit(&mut tap, l, "mlp_act", || bt(&act, b, t)); // [b, t, hidden]
            }
            emit(&mut tap, l, "mlp_hidden", || bt(&hidden, b, t)); // [b, t, hidden]
            let y = hidden.linear(&blk.mlp.w2, None); // [b·t, d]
            x = x.add(&dropout(y, ctx)); // [b·t, d]
        }
        let hf = self.ln_f.forward(&x); // [b·t, d]
        emit(&mut tap, None, "head_in", || bt(&hf, b, t)); // [b, t, d]
        hf.linear(self.head(), None) // [b·t, vocab]
    }

    /// A one-line description: sizes, variants and parameter count.
    pub fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "GPT: {} layers, {} heads, {} dims (head {}), context {}, vocab {}, {:?} positions, \
             {:?}, {:?} MLP (hidden {}), {} head, dropout {}: {} parameters",
            c.n_layer,
            c.n_head,
            c.d_model,
            c.head_dim(),
            c.block_size,
            c.vocab_size,
            c.position,
            c.norm,
            c.mlp,
            c.hidden(),
            if c.tied_head { "tied" } else { "untied" },
            c.dropout,
            self.parameter_count()
        )
    }
}

impl Module for Gpt {
    /// `x`: token ids as an f32 tensor `[b, t]` (each value an exact integer id); returns
    /// logits `[b·t, vocab]`. Same as [`Gpt::forward`].
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let v = x.value();
        assert_eq!(v.ndim(), 2, "Gpt expects token ids [b, t]");
        let (b, t) = (v.shape()[0], v.shape()[1]);
        let ids: Vec<usize> = v.iter().map(|&f| f as usize).collect();
        drop(v);
        Gpt::forward(self, &ids, b, t, ctx)
    }

    /// Parameters in this fixed order (names as the int8 exporter expects): `tok_emb`,
    /// `pos_emb` (learned positions), then per block `blocks.{i}.ln1.weight`,
    /// `blocks.{i}.ln1.bias` (LayerNorm), `blocks.{i}.attn.{wq,wk,wv,wo}`,
    /// `blocks.{i}.ln2.weight`, `blocks.{i}.ln2.bias`, `blocks.{i}.mlp.w1`, `blocks.{i}.mlp.w2`,
    /// `blocks.{i}.mlp.w3` (gated), then `ln_f.weight`, `ln_f.bias`, and `lm_head` (untied).
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("tok_emb".to_string(), self.tok_emb.clone())];
        if let Some(p) = &self.pos_emb {
            out.push(("pos_emb".into(), p.clone()));
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            blk.ln1.parameters(&format!("{p}.ln1"), &mut out);
            out.push((format!("{p}.attn.wq"), blk.attn.wq.clone()));
            out.push((format!("{p}.attn.wk"), blk.attn.wk.clone()));
            out.push((format!("{p}.attn.wv"), blk.attn.wv.clone()));
            out.push((format!("{p}.attn.wo"), blk.attn.wo.clone()));
            blk.ln2.parameters(&format!("{p}.ln2"), &mut out);
            out.push((format!("{p}.mlp.w1"), blk.mlp.w1.clone()));
            out.push((format!("{p}.mlp.w2"), blk.mlp.w2.clone()));
            if let Some(w3) = &blk.mlp.w3 {
                out.push((format!("{p}.mlp.w3"), w3.clone()));
            }
        }
        self.ln_f.parameters("ln_f", &mut out);
        if let Some(h) = &self.lm_head {
            out.push(("lm_head".into(), h.clone()));
        }
        out
    }
}
