//! 2-D convolution and max pooling over NCHW images.

use aka_core::rng::Rng;

use super::uniform;
use crate::autograd::Tensor;

/// 2-D convolution over NCHW images: weight `[c_out, c_in, k, k]`, bias `[c_out]`;
/// `x: [n, c_in, h, w] -> [n, c_out, oh, ow]`.
pub struct Conv2d {
    /// `[c_out, c_in, k, k]`
    pub weight: Tensor,
    /// `[c_out]`
    pub bias: Option<Tensor>,
    /// Step between output positions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Conv2d {
    /// PyTorch's default initialisation: uniform in `±1/sqrt(c_in * k * k)`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        rng: &mut Rng,
    ) -> Self {
        let bound = 1.0 / ((c_in * kernel * kernel) as f32).sqrt();
        let weight = Tensor::param(uniform(&[c_out, c_in, kernel, kernel], bound, rng));
        let bias = Some(Tensor::param(uniform(&[c_out], bound, rng)));
        Self {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// `x: [n, c_in, h, w] -> [n, c_out, oh, ow]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &super::qat::weight(&self.weight),
            self.bias.as_ref(),
            self.stride,
            self.padding,
        )
    }
}

/// Max pooling over NCHW images with a square window: `[n, c, h, w] -> [n, c, oh, ow]`.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
}

impl MaxPool2d {
    /// `x: [n, c, h, w] -> [n, c, oh, ow]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool2d(self.kernel, self.stride)
    }
}
