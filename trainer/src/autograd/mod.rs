//! Reverse-mode automatic differentiation over `ndarray` f32 arrays.
//!
//! A [`Tensor`] is a reference-counted node holding its value and, when it was produced by an
//! operation while gradients are enabled, the recipe to push gradients to its inputs. The graph is
//! the tape: it lives exactly as long as the tensors that reference it, and [`Tensor::backward`]
//! walks it once in reverse topological order from a scalar loss. Gradients accumulate in the leaf
//! tensors created with [`Tensor::param`].
//!
//! Evaluation mode ([`no_grad`]) records nothing: results are plain values with no parents, so no
//! graph is allocated at all.
//!
//! Operations are methods on [`Tensor`], one file per concept under [`ops`] (elementwise,
//! matmul, reduce, shape, conv, norm, embedding, rope, attention, loss; scalar math in
//! [`ops::math`]). Each has a finite-difference check ([`gradcheck`]).

mod tensor;

pub mod gradcheck;
pub mod ops;

pub use ops::GateAct;
pub use tensor::{is_grad_enabled, no_grad, Array, BackwardCtx, Tensor};
