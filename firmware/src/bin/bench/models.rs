//! The whole-model rows of the benchmark: the committed models of `models/` (int8 and int4)
//! through the public API, one line each (`MODEL|...`, see [`report_model`]).

use core::hint::black_box;

use aka_core::gpt::GptModel;
use aka_core::SequentialModel;

use super::{measure, Ctx};

/// One whole-model line: `MODEL|name|unit|weight_macs|ours|cmsis|goal|goal_per_mac_x100`
/// (`ours`: instructions per unit; `weight_macs`: int8 weight multiply-accumulates per unit;
/// `cmsis`: CMSIS-NN's count for the same work, `goal`: the goal in instructions per
/// unit, `goal_per_mac_x100`: its goal per weight-MAC × 100; 0: none).
struct ModelRow<'a> {
    name: &'a str,
    unit: &'a str,
    weight_macs: u64,
    cmsis: u64,
    goal: u64,
    goal_per_mac_x100: u64,
}

fn report_model(row: &ModelRow, ours: u64) {
    let per = ours * 100 / row.weight_macs.max(1);
    defmt::info!(
        "{=str}: {=u64} instructions per {=str}, {=u64} weight-MACs = {=u64}.{=u64:02} per weight-MAC",
        row.name,
        ours,
        row.unit,
        row.weight_macs,
        per / 100,
        per % 100
    );
    defmt::info!(
        "MODEL|{=str}|{=str}|{=u64}|{=u64}|{=u64}|{=u64}|{=u64}",
        row.name,
        row.unit,
        row.weight_macs,
        ours,
        row.cmsis,
        row.goal,
        row.goal_per_mac_x100
    );
}

/// Model files, 4-byte aligned like the `mnist`/`gpt` binaries embed them.
#[repr(C, align(4))]
struct Aligned<B: ?Sized>(B);
static MLP: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/mnist-mlp.aka"
)));
static CNN: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/mnist-cnn.aka"
)));
static MLP_INT4: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/mnist-mlp-int4.aka"
)));
static GPT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("AKA_MODEL_DIR"), "/gpt.aka")));
static GPT_INT4: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("AKA_MODEL_DIR"),
    "/gpt-int4.aka"
)));
static IMAGES: &[u8] = include_bytes!(concat!(env!("AKA_MODEL_DIR"), "/mnist-test-images.u8"));

/// Text decoded by the GPT row: one full context of the committed model (64 chars).
const GPT_TEXT: &str = "ROMEO:\nBut soft, what light through yonder window breaks? It is t";

/// `kv` holds the GPT rows' i8 run state: 18,880 B for `gpt.aka` and `gpt-int4.aka` since the K
/// cache keeps its row constants (`GptModel::state_i8_len`; a smaller buffer fails with
/// `ArenaTooSmall`). `repr(C)`: every buffer starts on a word (the DSP paths need it).
#[repr(C)]
struct ModelBufs {
    arena: [i8; 16 * 1024],
    f: [f32; 1024],
    kv: [i8; 19 * 1024],
}

static mut MODEL_BUFS: ModelBufs = ModelBufs {
    arena: [0; 16 * 1024],
    f: [0.0; 1024],
    kv: [0; 19 * 1024],
};

/// One `classify_u8` (pixel quantization, every layer, argmax) of the first test image.
fn bench_sequential(c: &mut Ctx, arena: &mut [i8], bytes: &[u8], row: ModelRow) {
    let model = SequentialModel::load(bytes).unwrap();
    let pixels = &IMAGES[..model.input_len()];
    let row = ModelRow {
        weight_macs: model.macs(),
        ..row
    };
    let ours = measure(c.counter, c.overhead, 4, || {
        black_box(model.classify_u8(black_box(pixels), &mut *arena).unwrap());
    });
    report_model(&row, ours);
}

/// GPT decoding: the mean of `forward` (the model only, no sampling) over one full context
/// (positions 0..block_size, so attention spans 1 to block_size cached tokens).
/// `goal_per_mac_x100`: the row's goal in hundredths of an instruction per weight-MAC (0: none).
fn bench_gpt(
    c: &mut Ctx,
    (f, kv): (&mut [f32], &mut [i8]),
    bytes: &[u8],
    name: &'static str,
    goal_per_mac_x100: u64,
) {
    let model = GptModel::load(bytes).unwrap();
    let weight_macs = model.weight_macs();
    let mut ids = [0u32; 256];
    let n = model
        .encode(GPT_TEXT, &mut ids)
        .unwrap()
        .min(model.block_size());
    let mut state = model.new_state(f, kv).unwrap();
    let (_, span) = c.counter.measure(|| {
        for (pos, &t) in ids[..n].iter().enumerate() {
            black_box(model.forward(&mut state, black_box(t), pos).unwrap());
        }
    });
    let ours = span.saturating_sub(c.overhead).count / n.max(1) as u64;
    report_model(
        &ModelRow {
            name,
            unit: "token",
            weight_macs,
            cmsis: 0,
            goal: 0,
            goal_per_mac_x100,
        },
        ours,
    );
}

/// Whole-model rows: the MNIST MLP and CNN (one inference) and GPT decoding (per token).
pub(crate) fn whole_models(c: &mut Ctx) {
    // SAFETY: the only reference to MODEL_BUFS, taken once in a single-threaded program.
    let mb = unsafe { &mut *core::ptr::addr_of_mut!(MODEL_BUFS) };
    bench_sequential(
        c,
        &mut mb.arena,
        &MLP.0,
        ModelRow {
            name: "MNIST MLP 784-576-10, one inference incl. input quantization",
            unit: "inference",
            weight_macs: 0,
            cmsis: 891_000,
            goal: 620_000,
            goal_per_mac_x100: 0,
        },
    );
    bench_sequential(
        c,
        &mut mb.arena,
        &CNN.0,
        ModelRow {
            name: "MNIST CNN, one inference incl. input quantization",
            unit: "inference",
            weight_macs: 0,
            cmsis: 0,
            goal: 0,
            goal_per_mac_x100: 0,
        },
    );
    bench_sequential(
        c,
        &mut mb.arena,
        &MLP_INT4.0,
        ModelRow {
            name: "MNIST MLP 784-576-10, int4 weights (mnist-mlp-int4.aka), one inference",
            unit: "inference",
            weight_macs: 0,
            cmsis: 0,
            goal: 0,
            goal_per_mac_x100: 0,
        },
    );
    bench_gpt(
        c,
        (&mut mb.f, &mut mb.kv),
        &GPT.0,
        "GPT decode (2 layers, 64 dims, context 64), mean over positions 0..63",
        200,
    );
    bench_gpt(
        c,
        (&mut mb.f, &mut mb.kv),
        &GPT_INT4.0,
        "GPT decode, int4 projections (gpt-int4.aka), mean over positions 0..63",
        0,
    );
}
