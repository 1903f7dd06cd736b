//! `aka-trainer`: train small networks on a laptop and export them, int8-quantized, for
//! `aka-core`.
//!
//! - [`autograd`]: reverse-mode automatic differentiation over `ndarray`.
pub mod autograd;
