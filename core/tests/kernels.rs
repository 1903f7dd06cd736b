//! Kernels against naive i64/i128 (TFLite-style, un-folded bias) and f64 references.

mod common;

use aka_core::format::MaxPool2d;
use aka_core::kernels::{self, Conv2dGeometry, OutputStage, Pool2dGeometry};
use aka_core::rng::Rng;
use aka_core::Error;
use common::*;

fn stage<'a>(e: &'a Encoded, q: &QOut) -> OutputStage<'a> {
    OutputStage {
        bias: &e.bias,
        multipliers: &e.mult,
        shifts: &e.shift,
        zero_point: q.out.zero_point,
        act_min: q.act_min,
        act_max: q.act_max,
    }
}

fn geometry(c: &QConv, h: usize, w: usize) -> Conv2dGeometry {
    Conv2dGeometry {
        in_h: h,
        in_w: w,
        in_c: c.in_c,
        out_c: c.out_c,
        kernel_h: c.kh,
        kernel_w: c.kw,
        stride_h: c.sh,
        stride_w: c.sw,
        pad_h: c.ph,
        pad_w: c.pw,
        input_zero_point: c.zp_in,
    }
}

/// f64 check of the output stage: within 1 of `round(acc * M) + zp` before clamping.
fn assert_close_to_real(acc: i64, m: i32, s: i32, q: &QOut, got: i8) {
    let real = acc as f64 * m as f64 * 2f64.powi(s - 31);
    let want = (real.round() + q.out.zero_point as f64).clamp(q.act_min as f64, q.act_max as f64);
    assert!(
        (got as f64 - want).abs() <= 1.0,
        "acc {acc}: got {got}, real {want}"
    );
}

#[test]
fn linear_matches_reference() {
    let mut rng = Rng::new(10);
    for case in 0..300 {
        let in_f = 1 + rng.below(70) as usize;
        let out_f = 1 + rng.below(12) as usize;
        let zp_in = if case % 3 == 0 {
            -128
        } else {
            rand_i8(&mut rng)
        };
        let l = rand_linear(&mut rng, in_f, out_f, zp_in, case % 2 == 0);
        let x: Vec<i8> = (0..in_f).map(|_| rand_i8(&mut rng)).collect();
        let e = encode(&QLayer::Linear(l.clone()));
        let mut y = vec![0i8; out_f];
        kernels::linear(&x, &e.w, &stage(&e, &l.q), &mut y).unwrap();
        assert_eq!(y, linear_ref(&x, &l), "case {case}");
        for (o, &got) in y.iter().enumerate() {
            let acc = l.q.bias[o] as i64
                + (0..in_f)
                    .map(|i| (x[i] as i64 - zp_in as i64) * l.w[o * in_f + i] as i64)
                    .sum::<i64>();
            assert_close_to_real(acc, l.q.mult[o], l.q.shift[o], &l.q, got);
        }
    }
}

#[test]
fn conv2d_matches_reference_with_padding_and_stride() {
    let mut rng = Rng::new(11);
    let (mut ran, mut values, mut clamped) = (0, 0, 0);
    for case in 0..400 {
        let kh = 1 + rng.below(4) as usize;
        let kw = 1 + rng.below(4) as usize;
        let ph = rng.below(kh as u32) as usize;
        let pw = rng.below(kw as u32) as usize;
        let sh = 1 + rng.below(3) as usize;
        let sw = 1 + rng.below(3) as usize;
        let h = (kh - 2 * ph.min(kh / 2)).max(1) + rng.below(7) as usize;
        let w = (kw - 2 * pw.min(kw / 2)).max(1) + rng.below(7) as usize;
        if h + 2 * ph < kh || w + 2 * pw < kw {
            continue;
        }
        let in_c = 1 + rng.below(5) as usize;
        let out_c = 1 + rng.below(5) as usize;
        // Extreme input zero points make padding errors visible.
        let zp_in = match case % 4 {
            0 => -128,
            1 => 127,
            _ => rand_i8(&mut rng),
        };
        let c = rand_conv(
            &mut rng,
            in_c,
            out_c,
            (kh, kw),
            (sh, sw),
            (ph, pw),
            zp_in,
            case % 2 == 1,
        );
        let x: Vec<i8> = (0..h * w * in_c).map(|_| rand_i8(&mut rng)).collect();
        let e = encode(&QLayer::Conv(c.clone()));
        let g = geometry(&c, h, w);
        let (oh, ow) = g.output_hw().unwrap();
        assert_eq!((oh, ow), conv_out_hw(h, w, &c));
        let mut y = vec![0i8; oh * ow * out_c];
        kernels::conv2d(&x, &g, &e.w, &stage(&e, &c.q), &mut y).unwrap();
        assert_eq!(y, conv_ref(&x, (h, w), &c), "case {case}: {g:?}");
        ran += 1;
        values += y.len();
        clamped += y
            .iter()
            .filter(|&&v| v == c.q.act_min || v == c.q.act_max)
            .count();
    }
    // The random cases must exercise the arithmetic, not just the clamps.
    assert!(ran > 300, "{ran}");
    assert!(
        clamped * 2 < values,
        "{clamped} of {values} outputs clamped"
    );
}

#[test]
fn conv2d_padding_contributes_zero_real_value() {
    // 1x1 input, 3x3 kernel, pad 1: only the centre tap is inside. With all-ones weights and
    // bias 0, acc must be (x - zp_in) * 1, whatever zp_in is.
    for zp_in in [-128i8, -3, 0, 5, 127] {
        for x in [-128i8, -1, 0, 1, 127] {
            let c = QConv {
                in_c: 1,
                out_c: 1,
                kh: 3,
                kw: 3,
                sh: 1,
                sw: 1,
                ph: 1,
                pw: 1,
                w: vec![1; 9],
                zp_in,
                q: QOut {
                    bias: vec![0],
                    mult: vec![1 << 30],
                    shift: vec![1], // M = 1
                    out: aka_core::QuantParams {
                        scale: 1.0,
                        zero_point: 0,
                    },
                    act_min: -128,
                    act_max: 127,
                },
            };
            let e = encode(&QLayer::Conv(c.clone()));
            let mut y = [0i8; 1];
            kernels::conv2d(&[x], &geometry(&c, 1, 1), &e.w, &stage(&e, &c.q), &mut y).unwrap();
            let want = (x as i32 - zp_in as i32).clamp(-128, 127) as i8;
            assert_eq!(y[0], want, "x {x} zp {zp_in}");
        }
    }
}

#[test]
fn max_pool_matches_reference() {
    let mut rng = Rng::new(12);
    for _ in 0..300 {
        let kh = 1 + rng.below(3);
        let kw = 1 + rng.below(3);
        let p = MaxPool2d {
            kernel_h: kh,
            kernel_w: kw,
            stride_h: 1 + rng.below(3),
            stride_w: 1 + rng.below(3),
        };
        let h = kh as usize + rng.below(6) as usize;
        let w = kw as usize + rng.below(6) as usize;
        let c = 1 + rng.below(4) as usize;
        let x: Vec<i8> = (0..h * w * c).map(|_| rand_i8(&mut rng)).collect();
        let g = Pool2dGeometry {
            in_h: h,
            in_w: w,
            channels: c,
            kernel_h: kh as usize,
            kernel_w: kw as usize,
            stride_h: p.stride_h as usize,
            stride_w: p.stride_w as usize,
        };
        let (want, (oh, ow)) = pool_ref(&x, (h, w, c), &p);
        assert_eq!(g.output_hw(), Some((oh, ow)));
        let mut y = vec![0i8; want.len()];
        kernels::max_pool2d(&x, &g, &mut y).unwrap();
        assert_eq!(y, want);
    }
}

#[test]
fn relu_and_argmax() {
    let mut x = [-128i8, -6, -5, -4, 0, 127];
    kernels::relu(&mut x, -5);
    assert_eq!(x, [-5, -5, -5, -4, 0, 127]);
    assert_eq!(kernels::argmax(&[]), None);
    assert_eq!(kernels::argmax(&[-128]), Some(0));
    assert_eq!(kernels::argmax(&[3, 7, 7, -1]), Some(1)); // first max wins
    assert_eq!(kernels::argmax(&[-128, -128, -128]), Some(0));
    assert_eq!(kernels::argmax(&[1, 2, 127]), Some(2));
}

#[test]
fn dot_and_sum_wrap_instead_of_panicking() {
    assert_eq!(
        kernels::dot_i8(&[-128, 127, 1], &[0x80, 0x7f, 0xff]),
        16384 + 16129 - 1
    );
    assert_eq!(kernels::sum_i8(&[0x80, 0x7f, 0x01]), -128 + 127 + 1);
}

#[test]
fn kernels_reject_inconsistent_lengths() {
    let b = [0u8; 8];
    let st = OutputStage {
        bias: &b,
        multipliers: &b,
        shifts: &b,
        zero_point: 0,
        act_min: -128,
        act_max: 127,
    };
    let mut y2 = [0i8; 2];
    let shape = |kernel| {
        Err(Error::KernelShape {
            kernel: msg(kernel),
        })
    };
    assert_eq!(kernels::linear(&[1, 2, 3], &[0; 6], &st, &mut y2), Ok(()));
    assert_eq!(
        kernels::linear(&[1, 2, 3], &[0; 5], &st, &mut y2),
        shape("linear")
    );
    assert_eq!(kernels::linear(&[], &[], &st, &mut y2), shape("linear"));
    assert_eq!(
        kernels::linear(&[1, 2, 3], &[0; 3], &st, &mut [0i8; 1]),
        shape("linear")
    );
    let g = Conv2dGeometry {
        in_h: 2,
        in_w: 2,
        in_c: 1,
        out_c: 2,
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 1,
        stride_w: 1,
        pad_h: 0,
        pad_w: 0,
        input_zero_point: 0,
    };
    assert_eq!(kernels::conv2d(&[0; 4], &g, &[0; 8], &st, &mut y2), Ok(()));
    assert_eq!(
        kernels::conv2d(&[0; 3], &g, &[0; 8], &st, &mut y2),
        shape("conv2d")
    );
    assert_eq!(
        kernels::conv2d(&[0; 4], &g, &[0; 7], &st, &mut y2),
        shape("conv2d")
    );
    assert_eq!(
        kernels::conv2d(&[0; 4], &g, &[0; 8], &st, &mut [0i8; 3]),
        shape("conv2d")
    );
    // Geometries the buffers do not fit (with a weight buffer of the right size).
    for (bad, n_weights) in [
        (Conv2dGeometry { kernel_h: 3, ..g }, 12),
        (Conv2dGeometry { stride_w: 0, ..g }, 8),
    ] {
        assert_eq!(
            kernels::conv2d(&[0; 4], &bad, &vec![0; n_weights], &st, &mut y2),
            shape("conv2d")
        );
    }
    let pg = Pool2dGeometry {
        in_h: 2,
        in_w: 2,
        channels: 1,
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 2,
        stride_w: 2,
    };
    assert_eq!(kernels::max_pool2d(&[0; 4], &pg, &mut [0i8; 1]), Ok(()));
    assert_eq!(
        kernels::max_pool2d(&[0; 4], &pg, &mut [0i8; 2]),
        shape("max_pool2d")
    );
    for (bad, n_out) in [
        (Pool2dGeometry { kernel_h: 3, ..pg }, 1),
        (Pool2dGeometry { channels: 0, ..pg }, 0),
    ] {
        assert_eq!(
            kernels::max_pool2d(&[0; 4], &bad, &mut vec![0i8; n_out]),
            shape("max_pool2d")
        );
    }
}
