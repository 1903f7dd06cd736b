//! Finite-difference gradient checks for every autograd op (tolerances: `autograd::gradcheck`).

use aka_core::rng::Rng;
use aka_trainer::autograd::gradcheck::{check, randn};

fn rng() -> Rng {
    Rng::new(1234)
}

#[test]
fn add_sub_mul_div_broadcast() {
    let mut r = rng();
    let a = randn(&[3, 4], 1.0, &mut r);
    let b = randn(&[4], 1.0, &mut r);
    let c = randn(&[3, 1], 1.0, &mut r).mapv(|x| x.abs() + 0.5);
    check(&[a.clone(), b.clone()], |t| t[0].add(&t[1])).unwrap();
    check(&[a.clone(), b.clone()], |t| t[0].sub(&t[1])).unwrap();
    check(&[a.clone(), b.clone()], |t| t[0].mul(&t[1])).unwrap();
    check(&[a.clone(), c.clone()], |t| t[0].div(&t[1])).unwrap();
}

#[test]
fn matmul_linear_and_reductions() {
    let mut r = rng();
    let a = randn(&[3, 5], 1.0, &mut r);
    let b = randn(&[5, 2], 1.0, &mut r);
    check(&[a.clone(), b.clone()], |t| t[0].matmul(&t[1])).unwrap();
    let w = randn(&[4, 5], 1.0, &mut r);
    let bias = randn(&[4], 1.0, &mut r);
    check(&[a.clone(), w, bias], |t| t[0].linear(&t[1], Some(&t[2]))).unwrap();
    let ba = randn(&[2, 3, 4], 1.0, &mut r);
    let bb = randn(&[2, 4, 3], 1.0, &mut r);
    check(&[ba.clone(), bb], |t| t[0].matmul(&t[1])).unwrap();
    let shared = randn(&[4, 2], 1.0, &mut r);
    check(&[ba.clone(), shared], |t| t[0].matmul(&t[1])).unwrap();
    check(&[ba.clone()], |t| t[0].sum_axis(1, false)).unwrap();
    check(&[ba.clone()], |t| t[0].mean_axis(2, true)).unwrap();
    check(&[ba.clone()], |t| t[0].mean()).unwrap();
}

#[test]
fn losses() {
    let mut r = rng();
    let logits = randn(&[4, 6], 2.0, &mut r);
    check(&[logits.clone()], |t| t[0].cross_entropy(&[0, 5, 2, 2])).unwrap();
    check(&[logits.clone()], |t| t[0].log_softmax(1)).unwrap();
    let target = randn(&[4, 6], 1.0, &mut r);
    check(&[logits, target], |t| t[0].mse(&t[1])).unwrap();
}
