//! The `linear-only` build (`cargo test -p aka-core --features linear-only --test linear_only`):
//! an int8 MLP loads and runs like the reference; a model with any other layer is refused at
//! load time with a typed error, not at its first inference.
#![cfg(feature = "linear-only")]

mod common;

use aka_core::{Error, SequentialModel};
use common::*;

#[test]
fn mlp_runs_and_other_layers_are_refused_at_load() {
    let (input, layers) = tiny_mlp(4);
    let model = SequentialModel::load(build(input, &layers, "").leak()).unwrap();
    let mut arena = vec![0i8; model.arena_size()];
    let mut rng = aka_core::rng::Rng::new(2);
    for _ in 0..50 {
        let x: Vec<i8> = (0..model.input_len()).map(|_| rand_i8(&mut rng)).collect();
        let want = forward_ref(input.shape, &x, &layers);
        assert_eq!(model.run(&x, &mut arena).unwrap(), &want[..]);
    }
    let (input, layers) = tiny_cnn(4);
    assert_eq!(
        SequentialModel::load(build(input, &layers, TINY_LABELS).leak()).unwrap_err(),
        Error::BadParameter {
            layer: 0,
            what:
                "this aka-core is built with the linear-only feature (int8 Linear, ReLU, Flatten)"
        }
    );
}
