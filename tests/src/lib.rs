//! Host tests that check `aka-core` against `aka-trainer` live in `tests/tests/`; this library
//! holds what they share: the bundled MNIST data, training a model in memory, exporting it.
//!
//! [`reference`] holds the independent integer references (requantization, naive layers) that
//! aka-core's own tests include too.
//!
//! Nothing is cached on disk: each test binary trains what it needs (small subsets where the
//! assertion allows it) and keeps it in memory.

pub mod reference;

use std::path::Path;
use std::sync::OnceLock;

use aka_core::rng::Rng;
use aka_trainer::data::mnist::{ImageSet, Mnist, PixelNorm};
use aka_trainer::export::sequential::{export_classifier, ExportConfig, Exported, QuantConfig};
use aka_trainer::export::ExportMetadata;
use aka_trainer::nn::{mnist_cnn, mnist_mlp, Sequential};
use aka_trainer::train::{train, Checkpoint, NamedArray, Progress, Splits, Subset, TrainConfig};

/// The bundled MNIST data (loaded once per test binary), with its default pixel normalization:
/// the training pixels' mean and std, as `aka-trainer mnist` uses it.
pub fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
        Mnist::load(&dir).expect("the bundled MNIST data in data/mnist")
    })
}

/// The same data without pixel normalization (`p / 255`, `aka-trainer mnist --no-normalize`).
pub fn mnist_unnormalized() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut data = mnist().clone();
        data.set_norm(PixelNorm::NONE);
        data
    })
}

/// Which network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Mlp,
    Cnn,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mlp => "mlp",
            Kind::Cnn => "cnn",
        }
    }

    /// A freshly initialised model.
    pub fn build(self, seed: u64) -> Sequential {
        let mut rng = Rng::new(seed);
        match self {
            Kind::Mlp => mnist_mlp(&mut rng),
            Kind::Cnn => mnist_cnn(&mut rng),
        }
    }
}

/// Defines two `#[test]`s, `$mlp` and `$cnn`, that call `$check(Kind::Mlp)` and
/// `$check(Kind::Cnn)`: one check run on each network, as separate tests.
#[macro_export]
macro_rules! test_each_kind {
    ($check:ident: $mlp:ident, $cnn:ident) => {
        #[test]
        fn $mlp() {
            $check($crate::Kind::Mlp);
        }

        #[test]
        fn $cnn() {
            $check($crate::Kind::Cnn);
        }
    };
}

/// Trains `kind` for `epochs` on the first `train_images` training images (Adam 1e-3, batch 64,
/// like `aka-trainer mnist`), evaluating on the first 1000 test images, writing nothing.
pub fn train_model(kind: Kind, train_images: usize, epochs: usize, seed: u64) -> Sequential {
    train_model_on(mnist(), kind, train_images, epochs, seed)
}

/// [`train_model`] on `data` (e.g. [`mnist_unnormalized`]).
pub fn train_model_on(
    data: &Mnist,
    kind: Kind,
    train_images: usize,
    epochs: usize,
    seed: u64,
) -> Sequential {
    let model = kind.build(seed);
    let train_set = Subset::first(&data.train, train_images);
    let test_set = Subset::first(&data.test, 1000);
    let config = TrainConfig {
        epochs,
        seed,
        progress: Progress::Quiet,
        ..TrainConfig::default()
    };
    train(
        &model,
        &Splits {
            train: &train_set,
            test: &test_set,
        },
        &config,
    )
    .expect("training");
    model
}

/// `aka-trainer mnist`'s export (min/max calibration on 1000 training images) of `model`,
/// evaluated on `test`.
pub fn export(model: &Sequential, test: &ImageSet, seed: u64) -> Exported {
    export_on(mnist(), model, test, seed)
}

/// [`export`] calibrating on `data.train` (whose pixel normalization goes into the file).
pub fn export_on(data: &Mnist, model: &Sequential, test: &ImageSet, seed: u64) -> Exported {
    let config = ExportConfig {
        quant: QuantConfig {
            seed,
            ..QuantConfig::default()
        },
        metadata: ExportMetadata::digits(seed, "aka-tests"),
        eval_batch_size: 1000,
    };
    export_classifier(model, &data.train, test, &config).expect("export")
}

/// A trained model kept as plain data, so that test threads can share it (a `Sequential` holds
/// `Rc`-based tensors, which are neither `Send` nor `Sync`): rebuild it with [`Trained::model`].
pub struct Trained {
    pub kind: Kind,
    pub params: Vec<NamedArray>,
}

impl Trained {
    pub fn new(kind: Kind, model: &Sequential) -> Self {
        Self {
            kind,
            params: Checkpoint::capture_params(model),
        }
    }

    /// A `Sequential` with these parameters.
    pub fn model(&self) -> Sequential {
        let model = self.kind.build(0);
        Checkpoint::restore_params(&self.params, &model).expect("same architecture");
        model
    }
}

/// A quickly trained (1 epoch on 6000 images, seed 7) model and its export evaluated on the
/// first 1000 test images: real weights and ranges, for tests that check the file and the
/// arithmetic rather than the accuracy. Trained once per test binary.
pub fn quick(kind: Kind) -> &'static (Trained, Exported) {
    static MLP: OnceLock<(Trained, Exported)> = OnceLock::new();
    static CNN: OnceLock<(Trained, Exported)> = OnceLock::new();
    let cell = match kind {
        Kind::Mlp => &MLP,
        Kind::Cnn => &CNN,
    };
    cell.get_or_init(|| {
        let model = train_model(kind, 6000, 1, 7);
        let exported = export(&model, &mnist().test.head(1000), 7);
        (Trained::new(kind, &model), exported)
    })
}

/// Like [`quick`] (the MLP), trained and exported **without** pixel normalization
/// ([`mnist_unnormalized`], `--no-normalize`).
pub fn quick_unnormalized() -> &'static (Trained, Exported) {
    static MLP: OnceLock<(Trained, Exported)> = OnceLock::new();
    MLP.get_or_init(|| {
        let data = mnist_unnormalized();
        let model = train_model_on(data, Kind::Mlp, 6000, 1, 7);
        let exported = export_on(data, &model, &data.test.head(1000), 7);
        (Trained::new(Kind::Mlp, &model), exported)
    })
}

/// Decodes a model file's bytes into aka-core's format types (zero-copy).
pub fn decode(bytes: &[u8]) -> aka_core::format::ModelFile<'_> {
    aka_core::format::ModelFile::take_from_bytes(bytes)
        .expect("a valid model file decodes")
        .0
}

/// Encodes format types back into a file.
pub fn encode(file: &aka_core::format::ModelFile<'_>) -> Vec<u8> {
    postcard::to_stdvec(file).expect("encodes")
}

/// The layers of a sequential model file.
pub fn layers<'a>(file: &aka_core::format::ModelFile<'a>) -> Vec<aka_core::format::Layer<'a>> {
    match &file.body {
        aka_core::format::Body::Sequential(desc) => desc.layers.as_slice().to_vec(),
        _ => panic!("not a sequential model"),
    }
}

/// The same model truncated after layer `last` (its output is that layer's output); labels are
/// dropped since the output size changes.
pub fn prefix_model(bytes: &[u8], last: usize) -> Vec<u8> {
    let mut file = decode(bytes);
    file.metadata.labels = "";
    if let aka_core::format::Body::Sequential(desc) = &mut file.body {
        let kept = desc.layers.as_slice()[..=last].to_vec();
        desc.layers = aka_core::format::LayerList::from_slice(&kept).expect("fits");
    }
    encode(&file)
}

/// Owned buffers for one GPT run state and decoder: `f32s` (`[state_f32_len]`), `i8s`
/// (`[state_i8_len]`) and the token `window` (`[block_size]`).
pub struct GptBuffers {
    pub f32s: Vec<f32>,
    pub i8s: Vec<i8>,
    pub window: Vec<u32>,
}

impl GptBuffers {
    /// Zeroed buffers sized for `m`.
    pub fn new(m: &aka_core::gpt::GptModel) -> Self {
        Self::filled(m, 0.0, 0)
    }

    /// Buffers sized for `m`, the state filled with `f` and `i` (dirty buffers for tests that
    /// must not depend on zeroed memory); the window is zeroed.
    pub fn filled(m: &aka_core::gpt::GptModel, f: f32, i: i8) -> Self {
        Self {
            f32s: vec![f; m.state_f32_len()],
            i8s: vec![i; m.state_i8_len()],
            window: vec![0; m.block_size()],
        }
    }

    /// The run state carved from these buffers.
    pub fn state(&mut self, m: &aka_core::gpt::GptModel) -> aka_core::gpt::GptState<'_> {
        m.new_state(&mut self.f32s, &mut self.i8s)
            .expect("state of the right size")
    }

    /// A decoder over `m` with an empty window, on these buffers.
    pub fn decoder<'m, 'a, 's>(
        &'s mut self,
        m: &'m aka_core::gpt::GptModel<'a>,
    ) -> aka_core::gpt::Decoder<'m, 'a, 's> {
        let state = m
            .new_state(&mut self.f32s, &mut self.i8s)
            .expect("state of the right size");
        aka_core::gpt::Decoder::new(m, state, &mut self.window).expect("window of the right size")
    }
}
