//! A nanoGPT-style character-level transformer: [`GptConfig`] and [`Gpt`], built from
//! [`Norm`], [`Attention`](super::Attention), [`Mlp`](super::Mlp) and [`Block`].
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

use aka_core::rng::Rng;
use anyhow::{bail, ensure};
use ndarray::{Axis, IxDyn};
use serde::{Deserialize, Serialize};

pub use super::mlp::GptMlp;
pub use super::norm::GptNorm;
pub use aka_core::format::GptPosition;

use super::{Block, Ctx, Init, Module, Norm, ParamSource};
use crate::autograd::{no_grad, Array, Tensor};

/// Standard deviation of the normal init of every projection and embedding (nanoGPT's 0.02).
pub(crate) const INIT_STD: f32 = 0.02;

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
    /// The default model ([`GptConfig::default`]) with these sizes: `n_layer` blocks of `n_head`
    /// heads, width `d_model`, context `block_size` tokens and `vocab_size` tokens.
    pub fn sized(
        n_layer: usize,
        n_head: usize,
        d_model: usize,
        block_size: usize,
        vocab_size: usize,
    ) -> Self {
        Self {
            n_layer,
            n_head,
            d_model,
            block_size,
            vocab_size,
            ..Self::default()
        }
    }

    /// This configuration with another architecture variant: position encoding, norm, MLP and
    /// whether the output head is tied to the token embedding.
    pub fn variant(
        self,
        position: GptPosition,
        norm: GptNorm,
        mlp: GptMlp,
        tied_head: bool,
    ) -> Self {
        Self {
            position,
            norm,
            mlp,
            tied_head,
            ..self
        }
    }

    /// `d_model / n_head`.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head.max(1)
    }

    /// The MLP hidden width, `4 · d_model` for every [`GptMlp`].
    pub fn hidden(&self) -> usize {
        4 * self.d_model
    }

    /// Init standard deviation of the residual projections (`attn.wo`, `mlp.w2`):
    /// `INIT_STD / √(2·n_layer)`.
    pub(crate) fn resid_std(&self) -> f32 {
        INIT_STD / ((2 * self.n_layer) as f32).sqrt()
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

    /// Names and shapes of every parameter, in [`Module::parameters`] order (the order
    /// [`Gpt::new`] and [`Gpt::from_tensors`] use: the one walk in `Gpt::build`).
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        // Only names and shapes are wanted: every parameter is an empty placeholder.
        let mut shapes = Vec::new();
        let mut record = |name: &str, shape: &[usize], _: Init| {
            shapes.push((name.to_string(), shape.to_vec()));
            Tensor::new(Array::zeros(IxDyn(&[0])))
        };
        Gpt::build(self.clone(), &mut ParamSource::new(&mut record));
        shapes
    }
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
    /// Every parameter with its name, in the order `build` took them.
    params: Vec<(String, Tensor)>,
}

/// A calibration tap: called with a name and a (detached) activation tensor.
pub type Tap<'a> = &'a mut dyn FnMut(&str, &Tensor);

/// The state of one forward pass shared by the layers: batch shape, training context, dropout
/// probability, the calibration tap (if any) and the block being run (for tap names).
pub(crate) struct Pass<'a, 'c> {
    /// Batch size.
    pub b: usize,
    /// Sequence length.
    pub t: usize,
    ctx: &'c mut Ctx,
    dropout: f32,
    tap: Option<Tap<'a>>,
    /// The block being run (`None` outside the blocks).
    layer: Option<usize>,
}

impl Pass<'_, '_> {
    /// Whether a tap is listening (then the layers keep what it needs).
    pub fn tapping(&self) -> bool {
        self.tap.is_some()
    }

    /// Calls the tap, if any, with `blocks.{layer}.{name}` (or just `name` outside the blocks)
    /// and the activation built by `make` (only built when there is a tap).
    pub fn emit(&mut self, name: &str, make: impl FnOnce(&Self) -> Tensor) {
        if self.tap.is_none() {
            return;
        }
        let value = make(self);
        let full = match self.layer {
            Some(i) => format!("blocks.{i}.{name}"),
            None => name.to_string(),
        };
        if let Some(tap) = self.tap.as_mut() {
            tap(&full, &value);
        }
    }

    /// Inverted dropout with the model's probability while training; the identity otherwise.
    pub fn dropout(&mut self, x: Tensor) -> Tensor {
        if self.ctx.training && self.dropout > 0.0 {
            x.dropout(self.dropout, &mut self.ctx.rng)
        } else {
            x
        }
    }

    /// The attention-probability dropout argument of [`Tensor::causal_attention`].
    pub fn attn_dropout(&mut self) -> Option<(f32, &mut Rng)> {
        (self.ctx.training && self.dropout > 0.0).then_some((self.dropout, &mut self.ctx.rng))
    }

    /// The `[b·t, cols]` value of `x` as `[b, t, cols]` (a detached copy for a tap).
    pub fn rows(&self, x: &Tensor) -> Tensor {
        let v = x.value();
        let cols = v.shape()[1];
        Tensor::new(
            v.as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(&[self.b, self.t, cols]))
                .expect("b*t rows"),
        )
    }

    /// Part `part` (0 = q, 1 = k, 2 = v) of a fused `[b·t, 3d]` projection (row `[q | k | v]`,
    /// each `[h, hd]`) as `[b, h, t, hd]` (a detached copy for a tap).
    pub fn heads(&self, qkv: &Tensor, part: usize, h: usize) -> Tensor {
        let v = qkv.value();
        let d = v.shape()[1] / 3;
        let hd = d / h;
        let v = v
            .slice(ndarray::s![.., part * d..(part + 1) * d])
            .to_owned()
            .into_shape_with_order(IxDyn(&[self.b, self.t, h, hd]))
            .expect("b*t rows");
        Tensor::new(
            v.permuted_axes(IxDyn(&[0, 2, 1, 3]))
                .as_standard_layout()
                .into_owned(),
        )
    }
}

/// Normal(0, std²) init, one `rng.normal()` per element in row-major order.
fn normal(shape: &[usize], std: f32, rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.normal() * std).collect();
    Tensor::param(Array::from_shape_vec(IxDyn(shape), data).expect("shape"))
}

impl Gpt {
    /// Builds the model taking every parameter from `params`, in the one fixed order:
    /// `tok_emb`, `pos_emb` (learned positions), then per block `ln1`, `attn.{wq,wk,wv,wo}`,
    /// `ln2`, `mlp.{w1,w2,w3}`, then `ln_f` and `lm_head` (untied).
    fn build(config: GptConfig, params: &mut ParamSource) -> Gpt {
        let (d, v) = (config.d_model, config.vocab_size);
        let tok_emb = params.take("tok_emb".into(), &[v, d], Init::Normal(INIT_STD));
        let pos_emb = (config.position == GptPosition::Learned).then(|| {
            params.take(
                "pos_emb".into(),
                &[config.block_size, d],
                Init::Normal(INIT_STD),
            )
        });
        let blocks = (0..config.n_layer)
            .map(|i| Block::build(&format!("blocks.{i}"), &config, params))
            .collect();
        let ln_f = Norm::build("ln_f", config.norm, d, config.norm_eps, params);
        let lm_head = (!config.tied_head)
            .then(|| params.take("lm_head".into(), &[v, d], Init::Normal(INIT_STD)));
        Gpt {
            config,
            tok_emb,
            pos_emb,
            blocks,
            ln_f,
            lm_head,
            params: std::mem::take(&mut params.taken),
        }
    }

    /// A freshly initialised model, as nanoGPT: every projection and embedding ~ N(0, 0.02²),
    /// the residual projections `wo` and `mlp.w2` ~ N(0, (0.02/√(2·n_layer))²), norm weights 1
    /// and biases 0. Draws from `rng` in [`Module::parameters`] order (norms draw nothing).
    /// Panics if the config does not [`GptConfig::validate`].
    pub fn new(config: GptConfig, rng: &mut Rng) -> Gpt {
        if let Err(e) = config.validate() {
            panic!("invalid GptConfig: {e}");
        }
        let mut fresh = |_: &str, shape: &[usize], init: Init| match init {
            Init::Normal(std) => normal(shape, std, rng),
            Init::Ones => Tensor::param(Array::ones(IxDyn(shape))),
            Init::Zeros => Tensor::param(Array::zeros(IxDyn(shape))),
        };
        Gpt::build(config, &mut ParamSource::new(&mut fresh))
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
        let mut given = |_: &str, _: &[usize], _: Init| it.next().expect("count checked");
        Ok(Gpt::build(config, &mut ParamSource::new(&mut given)))
    }

    /// The same model with a shorter context of `block` tokens (`1 <= block <= block_size`):
    /// what a board whose RAM holds a smaller KV cache runs. Every tensor is shared, except the
    /// learned position embedding, whose first `block` rows are kept. Positions `0..block` are
    /// the ones the model was trained on, so nothing else changes (with RoPE, nothing at all).
    pub fn with_context(&self, block: usize) -> anyhow::Result<Gpt> {
        ensure!(
            block >= 1 && block <= self.config.block_size,
            "a context of {block} tokens: the model was trained with {}, give 1..={0}",
            self.config.block_size
        );
        let config = GptConfig {
            block_size: block,
            ..self.config.clone()
        };
        let tensors = self
            .params
            .iter()
            .map(|(name, t)| match name.as_str() {
                "pos_emb" => {
                    let rows = t.value().slice_axis(Axis(0), (0..block).into()).to_owned();
                    Tensor::param(rows)
                }
                _ => t.clone(),
            })
            .collect();
        Gpt::from_tensors(config, tensors)
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
        tap: Option<Tap<'_>>,
    ) -> Tensor {
        let cfg = &self.config;
        assert_eq!(ids.len(), b * t, "ids must be [b, t]");
        assert!(
            t >= 1 && t <= cfg.block_size,
            "sequence length {t} not in 1..={}",
            cfg.block_size
        );
        let mut pass = Pass {
            b,
            t,
            ctx,
            dropout: cfg.dropout,
            tap,
            layer: None,
        };
        let x = self
            .tok_emb
            .embedding_with_positions(self.pos_emb.as_ref(), ids, t); // [b·t, d]
        let mut x = pass.dropout(x); // [b·t, d]
        for (i, block) in self.blocks.iter().enumerate() {
            pass.layer = Some(i);
            x = block.forward(&x, &mut pass); // [b·t, d]
        }
        pass.layer = None;
        let hf = self.ln_f.forward(&x); // [b·t, d]
        pass.emit("head_in", |p| p.rows(&hf)); // [b, t, d]
        hf.linear(&super::qat::weight(self.head()), None) // [b·t, vocab]
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
        self.params.clone()
    }
}
