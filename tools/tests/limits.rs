//! Issue 11: tiny crafted files that declare absurd but well-formed shapes, and data sets that do
//! not go with the model. `aka inspect` and `aka run` must give a clean error (status 1, a message
//! naming the number and the flag that raises the limit) quickly: no hang, no allocation abort,
//! no panic, no overflowed number.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

mod common;
use common::{aka, p, stderr, stdout, TempDir};

use aka_core::format::{
    Body, Conv2d, InputDesc, Layer, LayerList, MaxPool2d, Metadata, ModelFile, QuantParams,
    Requant, SequentialDesc, Shape,
};
use aka_core::{SequentialModel, Task};

const GREY: QuantParams = QuantParams {
    scale: 1.0 / 255.0,
    zero_point: -128,
};

/// A sequential model file: `h x w x c` grey input, then `layers`.
fn file(h: u32, w: u32, c: u32, layers: &[Layer<'_>]) -> Vec<u8> {
    let f = ModelFile::new(
        Metadata {
            task: Task::Classifier,
            labels: "",
            float_accuracy: 0.0,
            int8_accuracy: 0.0,
            seed: 0,
            train_command: "crafted",
        },
        Body::Sequential(SequentialDesc {
            input: InputDesc::new(Shape::new(h, w, c), GREY),
            layers: LayerList::from_slice(layers).expect("few layers"),
        }),
    );
    aka_tests::encode(&f)
}

const ONE: [u8; 4] = (1i32 << 30).to_le_bytes();

/// A 1x1 conv with `c` input and output channels: `c*c` weight bytes, unit requantization.
fn conv1x1<'a>(c: u32, weights: &'a [u8], per_channel: &'a [u8], zeros: &'a [u8]) -> Layer<'a> {
    Layer::Conv2d(Conv2d {
        in_channels: c,
        out_channels: c,
        kernel_h: 1,
        kernel_w: 1,
        stride_h: 1,
        stride_w: 1,
        pad_h: 0,
        pad_w: 0,
        input_zero_point: GREY.zero_point,
        pad: &[],
        weight_type: aka_core::format::WeightType::Int8,
        weights,
        bias: zeros,
        requant: Requant {
            multipliers: per_channel,
            shifts: zeros,
            output: GREY,
            act_min: i8::MIN,
            act_max: i8::MAX,
        },
    })
}

/// Status 1, an `error: ` line containing every one of `messages`, no panic, within 30 s.
#[track_caller]
fn assert_refused(args: &[&str], messages: &[&str]) -> String {
    let t0 = Instant::now();
    let o: Output = aka(args);
    let elapsed = t0.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: stderr {err}");
    assert!(err.starts_with("error: "), "{err}");
    for m in messages {
        assert!(err.contains(m), "expected {m:?} in {err:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        elapsed < Duration::from_secs(30),
        "{args:?} took {elapsed:?}"
    );
    err
}

#[test]
fn a_pool_with_too_much_work_is_refused_before_running() {
    let dir = TempDir::new("pool");
    // 4096 x 4096 input, 2048 x 2048 max pool with stride 1: 2049^2 outputs of 2048^2 taps each.
    let pool = Layer::MaxPool2d(MaxPool2d {
        kernel_h: 2048,
        kernel_w: 2048,
        stride_h: 1,
        stride_w: 1,
    });
    let bytes = file(4096, 4096, 1, &[pool]);
    assert!(bytes.len() < 100, "{} bytes", bytes.len());
    let m = SequentialModel::load(&bytes).expect("well-formed");
    let work = 4096u64 * 4096 + 2049 * 2049 * 2048 * 2048;
    assert_eq!(m.work(), Some(work));
    let f = dir.file("pool.aka", &bytes);
    assert_refused(
        &["run", p(&f), "--mnist-index", "0"],
        &[&work.to_string(), "operations per inference", "--max-ops"],
    );
    // inspect describes it (it runs nothing) and states the work.
    let o = aka(&["inspect", p(&f)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("17,609,386,885,120 operations per inference"),
        "{}",
        stdout(&o)
    );
    // A lower arena limit is checked first.
    assert_refused(
        &["run", p(&f), "--mnist-index", "0", "--max-arena-mib", "1"],
        &[
            "an arena of 33554432 bytes",
            "limit of 1 MiB",
            "--max-arena-mib",
        ],
    );
}

#[test]
fn a_huge_input_is_refused_before_allocating() {
    let dir = TempDir::new("input");
    // 65536 x 65536 input: a 4 GiB activation, an 8 GiB arena.
    let relu = Layer::Relu {
        zero_point: GREY.zero_point,
    };
    let bytes = file(65536, 65536, 1, &[relu]);
    assert!(bytes.len() < 100, "{} bytes", bytes.len());
    let f = dir.file("input.aka", &bytes);
    assert_refused(
        &["run", p(&f), "--mnist-index", "0"],
        &[
            "an arena of 8589934592 bytes",
            "limit of 256 MiB",
            "--max-arena-mib",
        ],
    );
    let o = aka(&["inspect", p(&f)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("8,589,934,592 bytes"), "{}", stdout(&o));
}

#[test]
fn overflowing_counts_print_overflow() {
    let dir = TempDir::new("overflow");
    // 2^30 x 2^30 x 4 input, a 1x1 conv 4 -> 4: 2^62 outputs, 2^64 MACs (one more than u64).
    let (w, per_channel, zeros) = ([1u8; 16], ONE.repeat(4), [0u8; 16]);
    let bytes = file(1 << 30, 1 << 30, 4, &[conv1x1(4, &w, &per_channel, &zeros)]);
    assert!(bytes.len() < 200, "{} bytes", bytes.len());
    let m = SequentialModel::load(&bytes).expect("well-formed");
    assert_eq!(m.checked_macs(), None);
    assert_eq!(m.work(), None);
    let f = dir.file("conv.aka", &bytes);
    let o = aka(&["inspect", p(&f)]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(
        out.contains("compute       overflow MACs per inference"),
        "{out}"
    );
    assert!(out.contains("work          overflow operations"), "{out}");
    assert_refused(&["run", p(&f), "--mnist-index", "0"], &["--max-arena-mib"]);
    // With the arena allowed, the work is still refused, as an overflow.
    assert_refused(
        &[
            "run",
            p(&f),
            "--mnist-index",
            "0",
            "--max-arena-mib",
            &u64::MAX.to_string(),
        ],
        &["overflows a 64-bit count", "--max-ops"],
    );
}

#[test]
fn model_files_are_read_up_to_a_limit() {
    let dir = TempDir::new("file");
    // An endless device fails fast.
    if Path::new("/dev/zero").exists() {
        for cmd in ["inspect", "run"] {
            assert_refused(
                &[cmd, "/dev/zero"],
                &["/dev/zero", "limit of 64 MiB", "--max-file-mib"],
            );
        }
    }
    let big = dir.file("big.aka", &vec![0u8; (1 << 20) + 1]);
    assert_refused(
        &["inspect", p(&big), "--max-file-mib", "1"],
        &["limit of 1 MiB", "--max-file-mib"],
    );
    // Under the limit it is read, and rejected for what it is.
    assert_refused(&["inspect", p(&big), "--max-file-mib", "2"], &["magic"]);
}

/// An MNIST-format test set of `labels.len()` 2x2 images.
fn idx_set(dir: &TempDir, labels: &[u8]) -> PathBuf {
    let n = labels.len() as u32;
    let mut images = 0x0803u32.to_be_bytes().to_vec();
    for v in [n, 2, 2] {
        images.extend(v.to_be_bytes());
    }
    images.extend(std::iter::repeat_n(200u8, labels.len() * 4));
    let mut lab = 0x0801u32.to_be_bytes().to_vec();
    lab.extend(n.to_be_bytes());
    lab.extend(labels);
    dir.file("t10k-images-idx3-ubyte", &images);
    dir.file("t10k-labels-idx1-ubyte", &lab);
    dir.0.clone()
}

#[test]
fn a_label_outside_the_model_is_an_error() {
    let dir = TempDir::new("labels");
    // 2x2 input, flatten: 4 classes.
    let bytes = file(2, 2, 1, &[Layer::Flatten]);
    let f = dir.file("four.aka", &bytes);
    let data = idx_set(&dir, &[3, 113]);
    let o = aka(&["run", p(&f), "--mnist-index", "0", "--data", p(&data)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("true label: \"3\""), "{}", stdout(&o));
    assert_refused(
        &["run", p(&f), "--mnist-index", "1", "--data", p(&data)],
        &["test image 1 has label 113", "4 classes (0..=3)"],
    );
}

#[test]
fn a_gpt_is_checked_against_the_same_limits() {
    let gpt = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware/models/gpt.aka");
    let bytes = std::fs::read(gpt).expect("committed model");
    let m = aka_core::gpt::GptModel::load(&bytes).expect("loads");
    let work = m.work_per_token().expect("small");
    assert!(work > m.weight_macs(), "{work}");
    assert_refused(
        &["run", gpt, "--tokens", "1", "--max-ops", "1000"],
        &[
            &format!("declares {work} operations per token"),
            "limit of 1000",
            "--max-ops",
        ],
    );
    assert_refused(
        &["run", gpt, "--tokens", "1", "--max-arena-mib", "0"],
        &["a run state of", "limit of 0 MiB", "--max-arena-mib"],
    );
    let o = aka(&["run", gpt, "--tokens", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// CRC-32 (IEEE, reflected), as in a PNG chunk trailer.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A valid 1x1 grey PNG whose IHDR then says `w x h` (CRC fixed up): the pixel data is tiny, the
/// declared size is not.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::GrayImage::from_raw(1, 1, vec![200])
        .expect("1x1")
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("encode");
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ... CRC after 13 bytes.
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn image_sizes_are_checked_from_the_header_before_decoding() {
    let dir = TempDir::new("image");
    let model = dir.file("four.aka", &file(2, 2, 1, &[Layer::Flatten]));
    // The PNG builder makes a file the decoder accepts: at its real size it classifies.
    let small = dir.file("small.png", &png_declaring(1, 1));
    let o = aka(&["run", p(&model), "--image", p(&small)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // 100000 x 100000 grey: 10^10 pixels declared in a ~70-byte PNG.
    let png = dir.file("huge.png", &png_declaring(100_000, 100_000));
    assert_refused(
        &["run", p(&model), "--image", p(&png)],
        &[
            "huge.png",
            "100000x100000 = 10000000000 pixels",
            "limit of 64000000",
            "--max-image-mpix",
        ],
    );
    // The same for a netpbm header; a raised limit gets past the check to the decoder, which
    // finds the data missing.
    let pgm = dir.file("huge.pgm", b"P5\n20000 20000\n255\n\x00\x00");
    assert_refused(
        &["run", p(&model), "--image", p(&pgm)],
        &["20000x20000 = 400000000 pixels", "--max-image-mpix"],
    );
    assert_refused(
        &[
            "run",
            p(&model),
            "--image",
            p(&pgm),
            "--max-image-mpix",
            "400",
        ],
        &["huge.pgm: cannot decode the image"],
    );
}
