//! MNIST IDX loading: the vendored files, raw vs gzip, and every kind of bad input giving an
//! error that names the file (never a panic).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aka_trainer::data::mnist::{
    read_idx_images, read_idx_labels, ImageSet, Mnist, PixelNorm, TEST_IMAGES, TEST_LABELS,
    TRAIN_IMAGES, TRAIN_LABELS,
};
use aka_trainer::data::DataError;
use flate2::write::GzEncoder;
use flate2::Compression;

fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

/// A fresh, empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "aka-mnist-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0803u32.to_be_bytes());
    for d in [n, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..n * rows * cols).map(|i| (i * 7 % 256) as u8));
    v
}

fn idx_labels(n: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0801u32.to_be_bytes());
    v.extend_from_slice(&n.to_be_bytes());
    v.extend((0..n).map(|i| (i % 10) as u8));
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A valid synthetic data set: 12 train and 5 test images of 4x3.
fn write_synthetic(dir: &TempDir, gz: bool) {
    let files = [
        (TRAIN_IMAGES, idx_images(12, 4, 3)),
        (TRAIN_LABELS, idx_labels(12)),
        (TEST_IMAGES, idx_images(5, 4, 3)),
        (TEST_LABELS, idx_labels(5)),
    ];
    for (name, bytes) in files {
        if gz {
            dir.write(&format!("{name}.gz"), &gzip(&bytes));
        } else {
            dir.write(name, &bytes);
        }
    }
}

/// Asserts `Mnist::load` fails, the message names `file` and contains `what`.
fn expect_err(dir: &Path, file: &str, what: &str) -> DataError {
    let err = Mnist::load(dir).expect_err("loading should fail");
    let msg = err.to_string();
    let path = dir.join(file);
    assert!(
        msg.contains(&path.display().to_string()),
        "message {msg:?} does not name {}",
        path.display()
    );
    assert!(msg.contains(what), "message {msg:?} does not say {what:?}");
    assert_eq!(err.path(), path, "{msg}");
    err
}

/// [`expect_err`] on a synthetic data set (gzipped if `gz`) whose `file` is replaced by `bytes`.
fn expect_damaged(tag: &str, gz: bool, file: &str, bytes: &[u8], what: &str) -> DataError {
    let dir = TempDir::new(tag);
    write_synthetic(&dir, gz);
    dir.write(file, bytes);
    expect_err(dir.path(), file, what)
}

#[test]
fn vendored_mnist_loads() {
    let t = Instant::now();
    let m = Mnist::load(&vendored_dir()).unwrap();
    let elapsed = t.elapsed();
    eprintln!("loaded MNIST (gzip) in {elapsed:?}");
    assert!(elapsed.as_secs_f32() < 10.0, "loading took {elapsed:?}");

    assert_eq!((m.train.n, m.train.rows, m.train.cols), (60_000, 28, 28));
    assert_eq!((m.test.n, m.test.rows, m.test.cols), (10_000, 28, 28));
    assert_eq!(m.train.images.len(), 60_000 * 784);
    assert_eq!(m.test.labels.len(), 10_000);
    assert_eq!(m.train.len(), 60_000);
    // The well-known first digits: a 5 in train, a 7 in t10k.
    assert_eq!(m.train.labels[0], 5);
    assert_eq!(m.test.labels[0], 7);
    // The published class histograms.
    assert_eq!(
        m.train.label_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        m.test.label_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // Pixels use the whole range with mostly-black backgrounds.
    let img = m.test.image(0);
    assert_eq!(img.len(), 784);
    assert_eq!(img[0], 0);
    assert_eq!(*img.iter().max().unwrap(), 255);
}

#[test]
fn batches_are_scaled_pixels_and_labels() {
    let m = Mnist::load(&vendored_dir()).unwrap();
    let idx = [9999, 0, 17, 0];
    let (x, y) = m.test.batch(&idx);
    assert_eq!(x.shape(), &[4, 1, 28, 28]);
    assert_eq!(
        y,
        vec![
            m.test.labels[9999] as usize,
            7,
            m.test.labels[17] as usize,
            7
        ]
    );
    // Standardized with the training pixels' mean and std, in f32, exactly this expression.
    let norm = m.train.norm;
    assert_eq!(m.test.norm, norm);
    for (b, &i) in idx.iter().enumerate() {
        for r in 0..28 {
            for c in 0..28 {
                let raw = m.test.image(i)[r * 28 + c];
                assert_eq!(
                    x[[b, 0, r, c]].to_bits(),
                    ((raw as f32 / 255.0 - norm.mean) / norm.std).to_bits()
                );
            }
        }
    }
    let (lo, hi) = (-norm.mean / norm.std, (1.0 - norm.mean) / norm.std);
    assert!(x.iter().all(|&v| (lo..=hi).contains(&v)));
    assert!(x.iter().any(|&v| v == hi) && x.iter().any(|&v| v == lo));

    // Without normalization: exactly p / 255, in [0, 1].
    let mut raw_set = m.test.clone();
    raw_set.norm = PixelNorm::NONE;
    let x = raw_set.batch_images(&idx);
    for (b, &i) in idx.iter().enumerate() {
        for r in 0..28 {
            for c in 0..28 {
                let raw = m.test.image(i)[r * 28 + c];
                assert_eq!(x[[b, 0, r, c]].to_bits(), (raw as f32 / 255.0).to_bits());
            }
        }
    }
    assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(x.iter().any(|&v| v == 1.0));

    let mut buf = vec![0.0; 2 * 784];
    m.train.gather_into(&[1, 2], &mut buf);
    assert_eq!(&buf[..], m.train.batch_images(&[1, 2]).as_slice().unwrap());
    assert_eq!(m.train.batch_labels(&[]), Vec::<usize>::new());
    assert_eq!(m.train.batch_images(&[]).shape(), &[0, 1, 28, 28]);

    // A full epoch of gathers (938 batches of 64) is cheap.
    let t = Instant::now();
    let order: Vec<usize> = (0..60_000).map(|i| (i * 7919) % 60_000).collect();
    let mut total = 0.0f32;
    for chunk in order.chunks(64) {
        let (x, _) = m.train.batch(chunk);
        total += x[[0, 0, 14, 14]];
    }
    eprintln!("938 batch gathers in {:?} ({total})", t.elapsed());

    let head = m.test.head(3);
    assert_eq!(
        (head.n, head.labels.len(), head.images.len()),
        (3, 3, 3 * 784)
    );
    assert_eq!(head.image(2), m.test.image(2));
    assert_eq!(head.norm, m.test.norm);
}

/// MNIST's training pixels: mean 0.1307 and std 0.3081 (the values torchvision publishes), and
/// the loader's f64 statistics against a direct f64 sum over all 47 million pixels.
#[test]
fn mnist_normalization_is_the_training_pixels_mean_and_std() {
    let m = Mnist::load(&vendored_dir()).unwrap();
    let norm = m.norm();
    assert_eq!(m.test.norm, norm);
    assert!((norm.mean - 0.1307).abs() < 5e-5, "{norm:?}");
    assert!((norm.std - 0.3081).abs() < 5e-5, "{norm:?}");
    let n = m.train.images.len() as f64;
    let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
    for &p in &m.train.images {
        let v = p as f64 / 255.0;
        sum += v;
        sum_sq += v * v;
    }
    let mean = sum / n;
    let std = (sum_sq / n - mean * mean).sqrt();
    assert!(
        (norm.mean as f64 - mean).abs() < 1e-7,
        "{} vs {mean}",
        norm.mean
    );
    assert!(
        (norm.std as f64 - std).abs() < 1e-7,
        "{} vs {std}",
        norm.std
    );
    // Computed from the training set only: the test set's own statistics differ.
    assert_ne!(PixelNorm::of_pixels(&m.test.images), norm);
    // set_norm replaces it on both sets.
    let mut raw = m.clone();
    raw.set_norm(PixelNorm::NONE);
    assert_eq!(
        (raw.train.norm, raw.test.norm),
        (PixelNorm::NONE, PixelNorm::NONE)
    );
}

#[test]
fn pixel_norm_by_hand() {
    // Pixels 0 and 255 in equal numbers: mean 0.5, population std 0.5.
    let n = PixelNorm::of_pixels(&[0, 255, 255, 0]);
    assert_eq!((n.mean, n.std), (0.5, 0.5));
    assert_eq!(n.apply(0), -1.0);
    assert_eq!(n.apply(255), 1.0);
    // 0, 51, 102 (0, 0.2, 0.4): mean 0.2, std sqrt(0.08 / 3) = 0.163299.
    let n = PixelNorm::of_pixels(&[0, 51, 102]);
    assert!(
        (n.mean - 0.2).abs() < 1e-7 && (n.std - 0.163_299_32).abs() < 1e-7,
        "{n:?}"
    );
    // No pixels, or all equal: still applicable (std 1).
    assert_eq!(PixelNorm::of_pixels(&[]), PixelNorm::NONE);
    let flat = PixelNorm::of_pixels(&[51; 10]);
    assert!(
        (flat.mean - 0.2).abs() < 1e-7 && flat.std == 1.0,
        "{flat:?}"
    );
    // The table is apply(), bit for bit; NONE is p / 255.
    let t = n.table();
    for p in 0..=255u8 {
        assert_eq!(t[p as usize].to_bits(), n.apply(p).to_bits());
        assert_eq!(
            PixelNorm::NONE.apply(p).to_bits(),
            (p as f32 / 255.0).to_bits()
        );
    }
    assert!(PixelNorm::NONE.is_none() && !n.is_none());
}

/// The synthetic set's normalization is its own training pixels' (any MNIST-format data set gets
/// its own, e.g. Fashion-MNIST); a standalone ImageSet has none.
#[test]
fn each_dataset_gets_its_own_normalization() {
    let dir = TempDir::new("norm");
    write_synthetic(&dir, false);
    let m = Mnist::load(dir.path()).unwrap();
    let pixels = &idx_images(12, 4, 3)[16..];
    assert_eq!(m.norm(), PixelNorm::of_pixels(pixels));
    let n = pixels.len() as f64;
    let mean = pixels.iter().map(|&p| p as f64 / 255.0).sum::<f64>() / n;
    assert!((m.norm().mean as f64 - mean).abs() < 1e-7);
    assert_ne!(m.norm(), Mnist::load(&vendored_dir()).unwrap().norm());
    let set = ImageSet::load(
        &dir.path().join(TRAIN_IMAGES),
        &dir.path().join(TRAIN_LABELS),
    )
    .unwrap();
    assert_eq!(set.norm, PixelNorm::NONE);
    assert_eq!(set.clone().with_norm(m.norm()).norm, m.norm());
}

#[test]
fn raw_files_load_identically_to_gzip() {
    let gz = Mnist::load(&vendored_dir()).unwrap();
    let dir = TempDir::new("raw");
    for name in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(
            fs::File::open(vendored_dir().join(format!("{name}.gz"))).unwrap(),
        )
        .read_to_end(&mut raw)
        .unwrap();
        dir.write(name, &raw);
    }
    let t = Instant::now();
    let raw = Mnist::load(dir.path()).unwrap();
    eprintln!("loaded raw MNIST in {:?}", t.elapsed());
    assert!(raw == gz, "raw and gzip loads differ");
}

#[test]
fn gzip_is_detected_by_magic_not_name() {
    let dir = TempDir::new("magic");
    // gzip content under the plain name, raw content under the .gz name.
    dir.write(TRAIN_IMAGES, &gzip(&idx_images(12, 4, 3)));
    dir.write(&format!("{TRAIN_LABELS}.gz"), &idx_labels(12));
    dir.write(TEST_IMAGES, &idx_images(5, 4, 3));
    dir.write(&format!("{TEST_LABELS}.gz"), &gzip(&idx_labels(5)));
    let m = Mnist::load(dir.path()).unwrap();
    assert_eq!((m.train.n, m.train.rows, m.train.cols), (12, 4, 3));
    assert_eq!(m.test.n, 5);
    assert_eq!(m.train.images, idx_images(12, 4, 3)[16..]);

    // Non-28x28 images are fine; batches take their shape.
    assert_eq!(m.test.batch_images(&[0, 4]).shape(), &[2, 1, 4, 3]);
}

#[test]
fn synthetic_raw_and_gzip_agree_and_plain_name_wins() {
    let a = TempDir::new("syn-raw");
    write_synthetic(&a, false);
    let b = TempDir::new("syn-gz");
    write_synthetic(&b, true);
    let ma = Mnist::load(a.path()).unwrap();
    assert_eq!(ma, Mnist::load(b.path()).unwrap());
    // With both names present, the plain one is read.
    let mut threes = idx_labels(5);
    threes[8..].fill(3);
    b.write(TEST_LABELS, &threes);
    assert_eq!(Mnist::load(b.path()).unwrap().test.labels, vec![3; 5]);
    // Multi-member gzip (concatenated streams) is one file.
    let lbl = idx_labels(12);
    let mut two = gzip(&lbl[..7]);
    two.extend(gzip(&lbl[7..]));
    a.write(TRAIN_LABELS, &two);
    assert_eq!(Mnist::load(a.path()).unwrap(), ma);
}

#[test]
fn missing_files_are_named() {
    for (k, name) in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
        .iter()
        .enumerate()
    {
        let dir = TempDir::new("missing");
        write_synthetic(&dir, k % 2 == 0);
        let _ = fs::remove_file(dir.path().join(name));
        let _ = fs::remove_file(dir.path().join(format!("{name}.gz")));
        let err = expect_err(dir.path(), &format!("{name}.gz"), "not found");
        assert!(matches!(err, DataError::NotFound { .. }));
        assert!(err
            .to_string()
            .contains(&dir.path().join(name).display().to_string()));
    }
    let nowhere = std::env::temp_dir().join("aka-definitely-not-a-dir-7c1e");
    let err = Mnist::load(&nowhere).unwrap_err();
    assert!(
        err.to_string().contains("aka-definitely-not-a-dir-7c1e"),
        "{err}"
    );
    let err = read_idx_images(&nowhere.join("x.gz")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: not found", nowhere.join("x.gz").display())
    );
}

#[test]
fn truncated_files_are_named() {
    for gz in [false, true] {
        let ext = if gz { ".gz" } else { "" };
        let enc = |b: &[u8]| if gz { gzip(b) } else { b.to_vec() };

        let img = idx_images(12, 4, 3);
        let mut long = idx_labels(12);
        long.extend_from_slice(&[1, 2, 3]);
        let cases: [(&str, &str, &[u8], &str); 5] = [
            (
                "trunc-img",
                TRAIN_IMAGES,
                &img[..100],
                "truncated: expected 160 bytes, got 100",
            ),
            (
                "trunc-lbl",
                TEST_LABELS,
                &idx_labels(5)[..10],
                "truncated: expected 13 bytes, got 10",
            ),
            (
                "trunc-hdr",
                TEST_IMAGES,
                &img[..6],
                "header needs 16 bytes, got 6",
            ),
            ("empty", TRAIN_LABELS, &[], "header needs 8 bytes, got 0"),
            (
                "trailing",
                TRAIN_LABELS,
                &long,
                "trailing data: expected 20 bytes, got 23",
            ),
        ];
        for (tag, file, bytes, what) in cases {
            let file = format!("{file}{ext}");
            let err = expect_damaged(tag, gz, &file, &enc(bytes), what);
            if tag == "trunc-img" {
                assert!(matches!(err, DataError::Truncated { .. }));
            }
        }
    }
}

#[test]
fn wrong_magic_is_named() {
    // A label file where the images should be.
    let err = expect_damaged(
        "magic-swap",
        true,
        &format!("{TRAIN_IMAGES}.gz"),
        &gzip(&idx_labels(12)),
        "not an IDX image file (magic 0x00000801, expected 0x00000803)",
    );
    assert!(err.to_string().contains("looks like an IDX label file"));

    let mut bad = idx_labels(5);
    bad[..4].copy_from_slice(b"PK\x03\x04");
    let what = "not an IDX label file (magic 0x504b0304";
    expect_damaged("magic-junk", false, TEST_LABELS, &bad, what);

    // A text file is neither gzip nor IDX.
    let html = b"<html>404 Not Found</html>";
    expect_damaged(
        "magic-text",
        false,
        TEST_IMAGES,
        html,
        "not an IDX image file",
    );
}

#[test]
fn mismatched_counts_and_shapes_are_named() {
    let dir = TempDir::new("count");
    write_synthetic(&dir, false);
    dir.write(TRAIN_LABELS, &idx_labels(11));
    let err = expect_err(dir.path(), TRAIN_LABELS, "11 labels, but");
    assert!(err
        .to_string()
        .contains(&dir.path().join(TRAIN_IMAGES).display().to_string()));
    assert!(err.to_string().contains("has 12 images"), "{err}");

    let what = "images are 3x4, but the training images are 4x3";
    expect_damaged("shape", false, TEST_IMAGES, &idx_images(5, 3, 4), what);

    let mut lbl = idx_labels(5);
    lbl[8 + 3] = 10;
    let what = "label 10 at index 3 is out of range (must be < 10)";
    expect_damaged("label-range", false, TEST_LABELS, &lbl, what);

    let dir = TempDir::new("zero");
    write_synthetic(&dir, false);
    dir.write(TEST_IMAGES, &idx_images(0, 4, 3));
    expect_err(dir.path(), TEST_IMAGES, "no images");
    dir.write(TEST_IMAGES, &idx_images(5, 0, 3));
    expect_err(dir.path(), TEST_IMAGES, "zero-sized images (0x3)");

    // A header promising far more than the file holds (no giant allocation, no panic).
    let dir = TempDir::new("huge");
    write_synthetic(&dir, false);
    let mut huge = idx_images(1, 1, 1);
    huge[4..16].copy_from_slice(&[0xff; 12]);
    dir.write(TRAIN_IMAGES, &huge);
    let err = Mnist::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains(TRAIN_IMAGES), "{err}");
}

#[test]
fn bad_gzip_streams_are_named() {
    let good = gzip(&idx_images(12, 4, 3));

    let file = format!("{TRAIN_IMAGES}.gz");

    // gzip magic followed by garbage.
    let mut garbage = vec![0x1f, 0x8b];
    garbage.extend((0..200u32).map(|i| (i * 37 % 251) as u8));
    let err = expect_damaged("gz-garbage", true, &file, &garbage, "gzip");
    assert!(matches!(err, DataError::Gzip { .. }), "{err}");

    // A gzip stream cut in the middle.
    expect_damaged("gz-cut", true, &file, &good[..good.len() / 2], "gzip");

    // Flipped CRC in the trailer.
    let mut crc = good.clone();
    let n = crc.len();
    crc[n - 8] ^= 0xff;
    expect_damaged("gz-crc", true, &file, &crc, "gzip");

    // Corrupted deflate data.
    let dir = TempDir::new("gz-body");
    write_synthetic(&dir, true);
    let mut body = gzip(&idx_labels(5));
    for b in &mut body[10..14] {
        *b ^= 0x55;
    }
    dir.write(&format!("{TEST_LABELS}.gz"), &body);
    let err = Mnist::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains(TEST_LABELS), "{err}");
}

#[test]
fn image_set_and_readers_work_standalone() {
    let dir = TempDir::new("standalone");
    let ip = dir.write("imgs", &idx_images(3, 2, 2));
    let lp = dir.write("lbls.gz", &gzip(&idx_labels(3)));
    let set = ImageSet::load(&ip, &lp).unwrap();
    assert_eq!((set.n, set.rows, set.cols), (3, 2, 2));
    assert_eq!(set.labels, vec![0, 1, 2]);
    assert_eq!(read_idx_labels(&lp).unwrap(), vec![0, 1, 2]);
    let imgs = read_idx_images(&ip).unwrap();
    assert_eq!(imgs.pixels, set.images);
    // Swapped arguments: the "image" file is a label file.
    let err = ImageSet::load(&lp, &ip).unwrap_err();
    assert!(
        err.to_string().starts_with(&lp.display().to_string()),
        "{err}"
    );
}
