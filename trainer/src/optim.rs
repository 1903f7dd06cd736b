//! Optimizers (SGD with momentum, Adam, AdamW), global-norm gradient clipping and learning-rate
//! schedules.
//!
//! An [`Optimizer`] owns the list of named parameters it updates and their per-parameter state
//! (momentum or Adam moments). Its state serializes for checkpoints ([`OptimizerState`]).

use ndarray::Zip;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::autograd::{Array, Tensor};

/// Which update rule to use, with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerConfig {
    /// `v = momentum * v + g; p -= lr * v` (PyTorch's SGD; `momentum = 0` is plain SGD).
    Sgd { lr: f32, momentum: f32 },
    /// Adam (Kingma & Ba), bias-corrected.
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
    },
    /// Adam with decoupled weight decay (Loshchilov & Hutter): `p -= lr * wd * p` applied only to
    /// parameters with two or more dimensions (weights and embeddings, not biases or norm gains).
    AdamW {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// Adam with PyTorch's defaults (betas 0.9/0.999, eps 1e-8) and the given learning rate.
    pub fn adam(lr: f32) -> Self {
        Self::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// AdamW as nanoGPT trains (betas 0.9/0.95, eps 1e-8) with the given rate and weight decay.
    pub fn adamw(lr: f32, weight_decay: f32) -> Self {
        Self::AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// SGD with momentum.
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        Self::Sgd { lr, momentum }
    }

    /// The base learning rate (a schedule scales it).
    pub fn lr(&self) -> f32 {
        match *self {
            Self::Sgd { lr, .. } | Self::Adam { lr, .. } | Self::AdamW { lr, .. } => lr,
        }
    }
}

/// An optimizer's mutable state, for checkpoints.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Number of steps taken.
    pub step: u64,
    /// First moment (or momentum buffer) per parameter, flattened; empty until the first step.
    pub m: Vec<Vec<f32>>,
    /// Second moment per parameter (Adam/AdamW), flattened.
    pub v: Vec<Vec<f32>>,
}

/// Updates a fixed list of parameters from their accumulated gradients.
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<(String, Tensor)>,
    m: Vec<Array>,
    v: Vec<Array>,
    step: u64,
}

impl Optimizer {
    /// An optimizer for `params` (named, as from `Module::parameters`).
    pub fn new(config: OptimizerConfig, params: Vec<(String, Tensor)>) -> Self {
        let zeros = |p: &Tensor| Array::zeros(p.shape());
        let m = params.iter().map(|(_, p)| zeros(p)).collect();
        let v = match config {
            OptimizerConfig::Sgd { .. } => Vec::new(),
            _ => params.iter().map(|(_, p)| zeros(p)).collect(),
        };
        Self {
            config,
            params,
            m,
            v,
            step: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// The parameters this optimizer updates.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        for (_, p) in &self.params {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr` (from a schedule, or `config().lr()`). Parameters
    /// without a gradient are left alone.
    pub fn step(&mut self, lr: f32) {
        self.step += 1;
        let t = self.step as i32;
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = p.grad() else { continue };
            let mut w = p.value_mut();
            // (beta1, beta2, eps, weight decay of this parameter) for the Adam family.
            let (beta1, beta2, eps, wd) = match self.config {
                OptimizerConfig::Sgd { momentum, .. } => {
                    let buf = &mut self.m[i];
                    Zip::from(&mut *w).and(buf).and(&*g).for_each(|w, b, &g| {
                        *b = momentum * *b + g;
                        *w -= lr * *b;
                    });
                    continue;
                }
                OptimizerConfig::Adam {
                    beta1, beta2, eps, ..
                } => (beta1, beta2, eps, 0.0),
                OptimizerConfig::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    ..
                } => {
                    let wd = if w.ndim() >= 2 { weight_decay } else { 0.0 };
                    (beta1, beta2, eps, wd)
                }
            };
            adam_update(
                &mut w,
                &g,
                &mut self.m[i],
                &mut self.v[i],
                lr,
                beta1,
                beta2,
                eps,
                t,
                wd,
            );
        }
    }

    /// A copy of the state, for a checkpoint.
    pub fn state(&self) -> OptimizerState {
        let flat = |a: &Array| a.iter().copied().collect();
        OptimizerState {
            step: self.step,
            m: self.m.iter().map(flat).collect(),
            v: self.v.iter().map(flat).collect(),
        }
    }

    /// Restores a state saved by [`Optimizer::state`] for the same parameter list.
    pub fn load_state(&mut self, state: OptimizerState) -> Result<(), String> {
        let restore =
            |dst: &mut Vec<Array>, src: Vec<Vec<f32>>, what: &str| -> Result<(), String> {
                if src.len() != dst.len() {
                    return Err(format!(
                        "optimizer state has {} {what} buffers, model has {}",
                        src.len(),
                        dst.len()
                    ));
                }
                for (d, s) in dst.iter_mut().zip(src) {
                    if s.len() != d.len() {
                        return Err(format!(
                            "optimizer {what} buffer has {} values, parameter has {}",
                            s.len(),
                            d.len()
                        ));
                    }
                    *d = Array::from_shape_vec(d.raw_dim(), s).map_err(|e| e.to_string())?;
                }
                Ok(())
            };
        restore(&mut self.m, state.m, "first-moment")?;
        restore(&mut self.v, state.v, "second-moment")?;
        self.step = state.step;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn adam_update(
    w: &mut Array,
    g: &Array,
    m: &mut Array,
    v: &mut Array,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    t: i32,
    weight_decay: f32,
) {
    let bc1 = 1.0 - beta1.powi(t);
    let bc2 = 1.0 - beta2.powi(t);
    let step_size = lr / bc1;
    let bc2_sqrt = bc2.sqrt();
    let decay = 1.0 - lr * weight_decay;
    let update = |(((w, m), v), &g): (((&mut f32, &mut f32), &mut f32), &f32)| {
        *m = beta1 * *m + (1.0 - beta1) * g;
        *v = beta2 * *v + (1.0 - beta2) * g * g;
        *w = *w * decay - step_size * *m / (v.sqrt() / bc2_sqrt + eps);
    };
    match (
        w.as_slice_mut(),
        m.as_slice_mut(),
        v.as_slice_mut(),
        g.as_slice(),
    ) {
        // Contiguous (always, for parameters): a flat loop the compiler vectorises, split in
        // fixed-size chunks across threads (elementwise, so the result is thread-independent).
        (Some(w), Some(m), Some(v), Some(g)) => {
            const CHUNK: usize = 1 << 14;
            w.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((w, m), v), g)| w.iter_mut().zip(m).zip(v).zip(g).for_each(update));
        }
        _ => Zip::from(w)
            .and(m)
            .and(v)
            .and(g)
            .for_each(|w, m, v, g| update((((w, m), v), g))),
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`. Returns the norm
/// before clipping.
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f32) -> f32 {
    let total: f64 = params
        .iter()
        .filter_map(|(_, p)| {
            p.grad()
                .map(|g| g.iter().map(|&x| x as f64 * x as f64).sum::<f64>())
        })
        .sum();
    let norm = total.sqrt() as f32;
    if norm > max_norm && norm > 0.0 {
        let scale = max_norm / (norm + 1e-6);
        for (_, p) in params {
            if let Some(g) = p.grad_mut().as_mut() {
                g.mapv_inplace(|x| x * scale);
            }
        }
    }
    norm
}

/// How the learning rate changes over training steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Linear warmup from 0 over `warmup_steps`, then cosine decay to `min_ratio * base` at
    /// `total_steps` (and flat after), as in nanoGPT.
    WarmupCosine {
        warmup_steps: u64,
        total_steps: u64,
        min_ratio: f32,
    },
}

impl LrSchedule {
    /// The learning rate for (0-based) `step`, given the base rate.
    pub fn lr(&self, base: f32, step: u64) -> f32 {
        match *self {
            Self::Constant => base,
            Self::WarmupCosine {
                warmup_steps,
                total_steps,
                min_ratio,
            } => {
                let min_lr = base * min_ratio;
                if step < warmup_steps {
                    return base * (step + 1) as f32 / warmup_steps as f32;
                }
                if step >= total_steps {
                    return min_lr;
                }
                let span = (total_steps - warmup_steps).max(1) as f32;
                let progress = (step - warmup_steps) as f32 / span;
                let coeff = 0.5 * (1.0 + (std::f32::consts::PI * progress).cos());
                min_lr + coeff * (base - min_lr)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    fn param(v: &[f32]) -> Tensor {
        Tensor::param(Array::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap())
    }

    /// Minimises (x - 3)^2 with each optimizer; all must get close to 3.
    #[test]
    fn optimizers_minimise_a_quadratic() {
        for cfg in [
            OptimizerConfig::sgd(0.1, 0.9),
            OptimizerConfig::adam(0.1),
            OptimizerConfig::adamw(0.1, 0.0),
        ] {
            let x = param(&[0.0, 10.0]);
            let mut opt = Optimizer::new(cfg, vec![("x".into(), x.clone())]);
            let target = Tensor::from_vec(&[2], vec![3.0, 3.0]);
            for _ in 0..500 {
                opt.zero_grad();
                x.mse(&target).backward();
                opt.step(cfg.lr());
            }
            for &v in x.value().iter() {
                assert!((v - 3.0).abs() < 1e-2, "{cfg:?}: {v}");
            }
        }
    }

    /// First Adam step moves every coordinate by exactly lr (bias correction), against sign(g).
    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let x = param(&[1.0, -2.0, 0.5]);
        let mut opt = Optimizer::new(OptimizerConfig::adam(0.01), vec![("x".into(), x.clone())]);
        x.mul(&x).sum().backward();
        opt.step(0.01);
        let got: Vec<f32> = x.value().iter().copied().collect();
        let want = [0.99, -1.99, 0.49];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    /// AdamW decays 2-D weights but not 1-D biases.
    #[test]
    fn adamw_decays_only_matrices() {
        let w = Tensor::param(Array::from_elem(IxDyn(&[2, 2]), 1.0));
        let b = param(&[1.0, 1.0]);
        let mut opt = Optimizer::new(
            OptimizerConfig::adamw(0.1, 0.5),
            vec![("w".into(), w.clone()), ("b".into(), b.clone())],
        );
        // Zero gradients: only the decay acts.
        *w.grad_mut() = Some(Array::zeros(IxDyn(&[2, 2])));
        *b.grad_mut() = Some(Array::zeros(IxDyn(&[2])));
        opt.step(0.1);
        assert!(w.value().iter().all(|&v| (v - 0.95).abs() < 1e-6));
        assert!(b.value().iter().all(|&v| v == 1.0));
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let a = param(&[0.0, 0.0]);
        let b = param(&[0.0]);
        *a.grad_mut() = Some(Array::from_shape_vec(IxDyn(&[2]), vec![3.0, 0.0]).unwrap());
        *b.grad_mut() = Some(Array::from_shape_vec(IxDyn(&[1]), vec![4.0]).unwrap());
        let params = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
        let norm = clip_grad_norm(&params, 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let ga = a.grad().unwrap()[0];
        let gb = b.grad().unwrap()[0];
        assert!(((ga * ga + gb * gb).sqrt() - 1.0).abs() < 1e-4);
        assert!((ga / gb - 0.75).abs() < 1e-5);
    }

    #[test]
    fn warmup_cosine_schedule_shape() {
        let s = LrSchedule::WarmupCosine {
            warmup_steps: 10,
            total_steps: 110,
            min_ratio: 0.1,
        };
        assert!((s.lr(1.0, 0) - 0.1).abs() < 1e-6);
        assert!((s.lr(1.0, 9) - 1.0).abs() < 1e-6);
        assert!((s.lr(1.0, 10) - 1.0).abs() < 1e-6);
        assert!((s.lr(1.0, 60) - 0.55).abs() < 1e-5);
        assert!((s.lr(1.0, 110) - 0.1).abs() < 1e-6);
        assert!((s.lr(1.0, 5000) - 0.1).abs() < 1e-6);
        assert_eq!(LrSchedule::Constant.lr(0.3, 77), 0.3);
    }
}
