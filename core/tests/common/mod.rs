//! Test helpers: an owned description of a quantized model, an encoder to the file format
//! (folding the input zero point into the bias, as the exporter must), and a forward pass through
//! the shared naive TFLite-style references (`tests/src/reference.rs`, in i64/i128), which do
//! **not** fold (they skip padded taps instead).
#![allow(dead_code)]

use aka_core::format::{
    Body, Conv2d, Header, InputDesc, Layer, LayerList, Linear, MaxPool2d, Metadata, ModelFile,
    QuantParams, Requant, SequentialDesc, Shape, WeightType,
};
use aka_core::quant::quantize_multiplier;
use aka_core::rng::Rng;
use aka_core::Task;

/// The shared references (requantization, naive layers), also used by `aka_tests::reference`
/// and aka-core's unit tests.
#[path = "../../../tests/src/reference.rs"]
pub mod reference;

pub mod corrupt;

/// An expected error text: `text`, or `""` when aka-core is built with `terse-errors` (which
/// empties every error text and keeps the variant and numbers).
pub fn msg(text: &'static str) -> &'static str {
    if cfg!(feature = "terse-errors") {
        ""
    } else {
        text
    }
}

#[derive(Clone, Debug)]
pub struct QOut {
    /// Raw int32 bias (scale s_in * s_w), NOT folded.
    pub bias: Vec<i32>,
    pub mult: Vec<i32>,
    pub shift: Vec<i32>,
    pub out: QuantParams,
    pub act_min: i8,
    pub act_max: i8,
}

#[derive(Clone, Debug)]
pub struct QLinear {
    pub in_f: usize,
    pub out_f: usize,
    /// `[out][in]`
    pub w: Vec<i8>,
    pub zp_in: i8,
    pub q: QOut,
}

#[derive(Clone, Debug)]
pub struct QConv {
    pub in_c: usize,
    pub out_c: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    /// OHWI
    pub w: Vec<i8>,
    pub zp_in: i8,
    pub q: QOut,
}

#[derive(Clone, Debug)]
pub enum QLayer {
    Linear(QLinear),
    Conv(QConv),
    Pool(MaxPool2d),
    Flatten,
    Relu(i8),
}

/// Byte arrays of one layer, as stored in the file.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    pub weight_type: WeightType,
    pub w: Vec<u8>,
    pub bias: Vec<u8>,
    pub mult: Vec<u8>,
    pub shift: Vec<u8>,
}

pub fn le_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

/// Exporter-side bias folding: `bias'[o] = bias[o] - zp_in * Σ w[o]`, over the whole filter.
pub fn fold_bias(bias: &[i32], w: &[i8], zp_in: i8) -> Vec<i32> {
    let per = w.len() / bias.len();
    bias.iter()
        .zip(w.chunks_exact(per))
        .map(|(&b, row)| {
            let s: i64 = row.iter().map(|&x| x as i64).sum();
            i32::try_from(b as i64 - zp_in as i64 * s).expect("folded bias fits i32")
        })
        .collect()
}

pub fn encode(l: &QLayer) -> Encoded {
    encode_as(l, WeightType::Int8)
}

/// Packs `[rows][cols]` int4 values (each in `-8..=7`) row by row, low nibble first, padding 0:
/// written here independently of aka-core's `pack_s4_row`.
pub fn pack_int4(w: &[i8], cols: usize) -> Vec<u8> {
    w.chunks_exact(cols)
        .flat_map(|row| {
            assert!(row.iter().all(|v| (-8..=7).contains(v)), "int4 range");
            row.chunks(2)
                .map(|p| (p[0] as u8 & 0xF) | (p.get(1).map_or(0, |&h| h as u8 & 0xF) << 4))
                .collect::<Vec<u8>>()
        })
        .collect()
}

/// [`encode`] with the weights stored as `weight_type` (int4: packed by [`pack_int4`], one row
/// per output channel).
pub fn encode_as(l: &QLayer, weight_type: WeightType) -> Encoded {
    let (w, zp, q) = match l {
        QLayer::Linear(l) => (&l.w, l.zp_in, &l.q),
        QLayer::Conv(c) => (&c.w, c.zp_in, &c.q),
        _ => return Encoded::default(),
    };
    let cols = w.len() / q.bias.len();
    Encoded {
        weight_type,
        w: match weight_type {
            // Int8Offset: GPT matrices only (the Sequential loader refuses it): plain bytes.
            WeightType::Int8 | WeightType::Int8Offset => i8_bytes(w),
            WeightType::Int4 => pack_int4(w, cols),
        },
        bias: le_bytes(&fold_bias(&q.bias, w, zp)),
        mult: le_bytes(&q.mult),
        shift: le_bytes(&q.shift),
    }
}

fn requant<'a>(q: &QOut, e: &'a Encoded) -> Requant<'a> {
    Requant {
        multipliers: &e.mult,
        shifts: &e.shift,
        output: q.out,
        act_min: q.act_min,
        act_max: q.act_max,
    }
}

pub fn to_layer<'a>(l: &QLayer, e: &'a Encoded) -> Layer<'a> {
    match l {
        QLayer::Linear(l) => Layer::Linear(Linear {
            in_features: l.in_f as u32,
            out_features: l.out_f as u32,
            pad: &[],
            weight_type: e.weight_type,
            weights: &e.w,
            bias: &e.bias,
            requant: requant(&l.q, e),
        }),
        QLayer::Conv(c) => Layer::Conv2d(Conv2d {
            in_channels: c.in_c as u32,
            out_channels: c.out_c as u32,
            kernel_h: c.kh as u32,
            kernel_w: c.kw as u32,
            stride_h: c.sh as u32,
            stride_w: c.sw as u32,
            pad_h: c.ph as u32,
            pad_w: c.pw as u32,
            input_zero_point: c.zp_in,
            pad: &[],
            weight_type: e.weight_type,
            weights: &e.w,
            bias: &e.bias,
            requant: requant(&c.q, e),
        }),
        QLayer::Pool(p) => Layer::MaxPool2d(*p),
        QLayer::Flatten => Layer::Flatten,
        QLayer::Relu(zp) => Layer::Relu { zero_point: *zp },
    }
}

pub fn metadata(labels: &str) -> Metadata<'_> {
    Metadata {
        task: Task::Classifier,
        labels,
        float_accuracy: 98.5,
        int8_accuracy: 98.25,
        seed: 42,
        train_command: "aka-trainer mnist --seed 42",
    }
}

/// Encodes a whole file from a list of `Layer`s (any header).
pub fn file_bytes(header: Header, input: InputDesc, layers: &[Layer], labels: &str) -> Vec<u8> {
    let file = ModelFile {
        header,
        metadata: metadata(labels),
        body: Body::Sequential(SequentialDesc {
            input,
            layers: LayerList::from_slice(layers).expect("<= MAX_LAYERS"),
        }),
    };
    postcard::to_stdvec(&file).expect("serialize")
}

/// Encodes owned quantized layers and lends `f` their format views (which borrow the
/// encodings), one per layer.
pub fn with_layers<R>(qlayers: &[QLayer], f: impl FnOnce(&mut Vec<Layer<'_>>) -> R) -> R {
    with_layers_as(qlayers, WeightType::Int8, f)
}

/// [`with_layers`] with every Linear and Conv2d stored as `weight_type`.
pub fn with_layers_as<R>(
    qlayers: &[QLayer],
    weight_type: WeightType,
    f: impl FnOnce(&mut Vec<Layer<'_>>) -> R,
) -> R {
    let enc: Vec<Encoded> = qlayers.iter().map(|l| encode_as(l, weight_type)).collect();
    let mut layers: Vec<Layer> = qlayers
        .iter()
        .zip(&enc)
        .map(|(l, e)| to_layer(l, e))
        .collect();
    f(&mut layers)
}

/// Encodes a whole file from owned quantized layers, with the current header.
pub fn build(input: InputDesc, qlayers: &[QLayer], labels: &str) -> Vec<u8> {
    with_layers(qlayers, |layers| {
        file_bytes(Header::CURRENT, input, layers, labels)
    })
}

impl QOut {
    /// The reference's view of this output stage.
    pub fn stage(&self) -> reference::Stage<'_> {
        reference::Stage {
            bias: &self.bias,
            multipliers: &self.mult,
            shifts: &self.shift,
            zero_point: self.out.zero_point,
            act_min: self.act_min,
            act_max: self.act_max,
        }
    }
}

/// Naive TFLite-style linear: `Σ (x - zp_in) * w + bias`, then requant ([`reference::linear`]).
pub fn linear_ref(x: &[i8], l: &QLinear) -> Vec<i8> {
    assert_eq!(x.len(), l.in_f);
    reference::linear(x, &l.w, l.zp_in, &l.q.stage())
}

/// The reference's geometry of `c` on an `h x w` input.
pub fn conv_shape(h: usize, w: usize, c: &QConv) -> reference::ConvShape {
    reference::ConvShape {
        h,
        w,
        in_c: c.in_c,
        out_c: c.out_c,
        kernel: (c.kh, c.kw),
        stride: (c.sh, c.sw),
        pad: (c.ph, c.pw),
    }
}

pub fn conv_out_hw(h: usize, w: usize, c: &QConv) -> (usize, usize) {
    conv_shape(h, w, c).out_hw()
}

/// Naive TFLite reference conv: skips out-of-bounds taps, un-folded bias
/// ([`reference::conv2d`]).
pub fn conv_ref(x: &[i8], (h, w): (usize, usize), c: &QConv) -> Vec<i8> {
    reference::conv2d(x, &conv_shape(h, w, c), &c.w, c.zp_in, &c.q.stage())
}

/// Naive max pooling ([`reference::max_pool2d`]).
pub fn pool_ref(
    x: &[i8],
    (h, w, ch): (usize, usize, usize),
    p: &MaxPool2d,
) -> (Vec<i8>, (usize, usize)) {
    reference::max_pool2d(
        x,
        (h, w, ch),
        (p.kernel_h as usize, p.kernel_w as usize),
        (p.stride_h as usize, p.stride_w as usize),
    )
}

/// Reference forward pass of the whole model.
pub fn forward_ref(input: Shape, x: &[i8], qlayers: &[QLayer]) -> Vec<i8> {
    let (mut h, mut w, mut c) = (input.h as usize, input.w as usize, input.c as usize);
    let mut x = x.to_vec();
    for l in qlayers {
        match l {
            QLayer::Linear(l) => {
                x = linear_ref(&x, l);
                (h, w, c) = (1, 1, l.out_f);
            }
            QLayer::Conv(cv) => {
                let (oh, ow) = conv_out_hw(h, w, cv);
                x = conv_ref(&x, (h, w), cv);
                (h, w, c) = (oh, ow, cv.out_c);
            }
            QLayer::Pool(p) => {
                let (y, (oh, ow)) = pool_ref(&x, (h, w, c), p);
                x = y;
                (h, w) = (oh, ow);
            }
            QLayer::Flatten => (h, w, c) = (1, 1, h * w * c),
            QLayer::Relu(zp) => reference::relu(&mut x, *zp),
        }
    }
    x
}

pub fn rand_i8(rng: &mut Rng) -> i8 {
    rng.next_u32() as i8
}

/// Symmetric int8 weight in [-127, 127].
pub fn rand_w(rng: &mut Rng) -> i8 {
    (rng.below(255) as i32 - 127) as i8
}

/// Random output stage for `n` channels over dot products of length `k`, scaled so that outputs
/// spread over the int8 range (some saturate).
pub fn rand_qout(rng: &mut Rng, n: usize, k: usize, fused_relu: bool) -> QOut {
    let zp = rand_i8(rng);
    let mut mult = Vec::new();
    let mut shift = Vec::new();
    for _ in 0..n {
        let real = 0.012 / (k as f64).sqrt() * libm_exp2(rng.next_f64() * 2.0 - 1.0);
        let (m, s) = quantize_multiplier(real).unwrap();
        mult.push(m);
        shift.push(s);
    }
    QOut {
        bias: (0..n).map(|_| rng.below(20_001) as i32 - 10_000).collect(),
        mult,
        shift,
        out: QuantParams {
            scale: 0.05 + rng.next_f32(),
            zero_point: zp,
        },
        act_min: if fused_relu { zp } else { -128 },
        act_max: 127,
    }
}

fn libm_exp2(x: f64) -> f64 {
    2f64.powf(x)
}

pub fn rand_linear(
    rng: &mut Rng,
    in_f: usize,
    out_f: usize,
    zp_in: i8,
    fused_relu: bool,
) -> QLinear {
    QLinear {
        in_f,
        out_f,
        w: (0..in_f * out_f).map(|_| rand_w(rng)).collect(),
        zp_in,
        q: rand_qout(rng, out_f, in_f, fused_relu),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn rand_conv(
    rng: &mut Rng,
    in_c: usize,
    out_c: usize,
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
    zp_in: i8,
    fused_relu: bool,
) -> QConv {
    QConv {
        in_c,
        out_c,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        w: (0..out_c * kh * kw * in_c).map(|_| rand_w(rng)).collect(),
        zp_in,
        q: rand_qout(rng, out_c, kh * kw * in_c, fused_relu),
    }
}

/// A `h x w x 1` input quantized as the raw pixel `p` (scale 1/255, zero point -128).
pub fn grey_input(h: u32, w: u32) -> InputDesc {
    InputDesc::new(
        Shape::new(h, w, 1),
        QuantParams {
            scale: 1.0 / 255.0,
            zero_point: -128,
        },
    )
}

/// The tiny CNN used by several tests: 8x8x1 → conv3x3/p1 (4, fused ReLU) → maxpool 2 →
/// conv3x3/s2/p1 (3) → ReLU → flatten → linear 12→5.
pub fn tiny_cnn(seed: u64) -> (InputDesc, Vec<QLayer>) {
    let mut rng = Rng::new(seed);
    let input = grey_input(8, 8);
    let c1 = rand_conv(&mut rng, 1, 4, (3, 3), (1, 1), (1, 1), -128, true);
    let z1 = c1.q.out.zero_point;
    let c2 = rand_conv(&mut rng, 4, 3, (3, 3), (2, 2), (1, 1), z1, false);
    let z2 = c2.q.out.zero_point;
    let mut fc = rand_linear(&mut rng, 12, 5, z2, false);
    // Smaller scores so that the classifier's outputs do not all saturate.
    fc.q.shift.iter_mut().for_each(|s| *s -= 2);
    fc.q.out.zero_point = 0;
    fc.q.bias.iter_mut().for_each(|b| *b = 0);
    let layers = vec![
        QLayer::Conv(c1),
        QLayer::Pool(MaxPool2d {
            kernel_h: 2,
            kernel_w: 2,
            stride_h: 2,
            stride_w: 2,
        }),
        QLayer::Conv(c2),
        QLayer::Relu(z2),
        QLayer::Flatten,
        QLayer::Linear(fc),
    ];
    (input, layers)
}

pub const TINY_LABELS: &str = "zero\none\ntwo\nthree\nfour";

/// The tiny MLP: 4x4x1 → flatten → linear 16→8 (fused ReLU) → linear 8→3.
pub fn tiny_mlp(seed: u64) -> (InputDesc, Vec<QLayer>) {
    let mut rng = Rng::new(seed);
    let input = grey_input(4, 4);
    let l1 = rand_linear(&mut rng, 16, 8, -128, true);
    let z1 = l1.q.out.zero_point;
    let l2 = rand_linear(&mut rng, 8, 3, z1, false);
    (
        input,
        vec![QLayer::Flatten, QLayer::Linear(l1), QLayer::Linear(l2)],
    )
}
