//! The `aka` command line on real exported files: `inspect` describes the layers, `run` classifies
//! MNIST test images and image files, and bad input gives a message and a non-zero exit status,
//! never a panic.

use std::process::Output;

mod common;
use common::{aka, p, stderr, stdout, TempDir};

use aka_core::SequentialModel;
use aka_tests::{mnist, quick, Kind};

/// Fails with a message and status 1, without panicking.
#[track_caller]
fn assert_fails(o: &Output, message: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(message), "expected {message:?} in {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn inspect_lists_layers_sizes_and_metadata() {
    let dir = TempDir::new("inspect");
    for (kind, names, params) in [
        (Kind::Mlp, &["flatten", "linear"][..], "457,930"),
        (
            Kind::Cnn,
            &["conv2d", "maxpool2d", "flatten", "linear"][..],
            "52,138",
        ),
    ] {
        let bytes = &quick(kind).1.bytes;
        let file = dir.file(&format!("{}.aka", kind.name()), bytes);
        let o = aka(&["inspect", p(&file)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        eprintln!("{out}");
        for name in names {
            assert!(out.contains(name), "{name} in {out}");
        }
        let m = SequentialModel::load(bytes).expect("loads");
        for needle in [
            "28x28x1",
            "1x1x10",
            params,
            "Classifier",
            "0 1 2 3 4 5 6 7 8 9",
            "aka-tests",
            "arena",
            "MACs",
        ] {
            assert!(out.contains(needle), "{needle:?} in {out}");
        }
        // The pixel normalization the model was trained with (the data's mean and std).
        let (mean, std) = m.pixel_normalization();
        assert!((mean - 0.1307).abs() < 1e-4 && (std - 0.3081).abs() < 1e-4);
        let pixel = format!("(pixel p -> (p/255 - {mean}) / {std})");
        assert!(out.contains(&pixel), "{pixel:?} in {out}");
        assert!(out.contains(&aka_tools::inspect::thousands(m.arena_size() as u64)));
        assert!(out.contains(&aka_tools::inspect::thousands(bytes.len() as u64)));
        // One table row per layer.
        for info in m.layer_infos() {
            let row = format!("{}  {}", info.index, info.layer.name());
            assert!(out.contains(&row), "{row:?} in {out}");
        }
    }
}

#[test]
fn run_classifies_mnist_test_images() {
    let dir = TempDir::new("run-mnist");
    let test = &mnist().test;
    for kind in [Kind::Mlp, Kind::Cnn] {
        let bytes = &quick(kind).1.bytes;
        let file = dir.file("model.aka", bytes);
        let m = SequentialModel::load(bytes).expect("loads");
        let mut arena = vec![0i8; m.arena_size()];
        for index in [0usize, 1, 2] {
            let o = aka(&["run", p(&file), "--mnist-index", &index.to_string()]);
            assert!(o.status.success(), "{}", stderr(&o));
            let out = stdout(&o);
            let (class, _) = m.classify_u8(test.image(index), &mut arena).expect("runs");
            assert!(
                out.contains(&format!("class: {class} (label \"{class}\")")),
                "{out}"
            );
            let label = test.labels[index];
            assert!(out.contains(&format!("true label: \"{label}\"")), "{out}");
            // One score line per class.
            assert_eq!(out.lines().filter(|l| l.contains('%')).count(), 10, "{out}");
        }
        // Test image 0 is an easy 7.
        let o = aka(&["run", p(&file), "--mnist-index", "0"]);
        let out = stdout(&o);
        assert!(
            out.contains("class: 7 (label \"7\"); true label: \"7\" (correct)"),
            "{out}"
        );
    }
}

/// A binary PGM (P5) of `pixels` (`w x h`).
fn pgm(w: usize, h: usize, pixels: &[u8]) -> Vec<u8> {
    let mut b = format!("P5\n{w} {h}\n255\n").into_bytes();
    b.extend_from_slice(pixels);
    b
}

#[test]
fn run_classifies_image_files() {
    let dir = TempDir::new("run-image");
    let bytes = &quick(Kind::Cnn).1.bytes;
    let model = dir.file("cnn.aka", bytes);
    let digit = mnist().test.image(0); // a 7

    // The image itself as PGM.
    let f = dir.file("seven.pgm", &pgm(28, 28, digit));
    let o = aka(&["run", p(&model), "--image", p(&f)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("class: 7"), "{}", stdout(&o));

    // Upscaled 3x (84x84): the area-averaging resize gives back exactly the 28x28 pixels.
    let mut big = vec![0u8; 84 * 84];
    for y in 0..84 {
        for x in 0..84 {
            big[y * 84 + x] = digit[(y / 3) * 28 + x / 3];
        }
    }
    let f = dir.file("seven-84.pgm", &pgm(84, 84, &big));
    let o = aka(&["run", p(&model), "--image", p(&f)]);
    let same = aka(&["run", p(&model), "--mnist-index", "0"]);
    let scores = |s: String| -> Vec<String> {
        s.lines()
            .filter(|l| l.contains('%'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(scores(stdout(&o)), scores(stdout(&same)));

    // Dark on light, as a PNG (grey + alpha, fully opaque): needs --invert.
    let inverted: Vec<u8> = digit.iter().flat_map(|&v| [255 - v, 255]).collect();
    let img = image::GrayAlphaImage::from_raw(28, 28, inverted).expect("image");
    let f = dir.0.join("seven-inverted.png");
    img.save(&f).expect("png");
    let o = aka(&["run", p(&model), "--image", p(&f), "--invert"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(scores(stdout(&o)), scores(stdout(&same)));
    // Without --invert: runs, with a hint.
    let o = aka(&["run", p(&model), "--image", p(&f)]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("--invert"), "{}", stderr(&o));
}

#[test]
fn bad_files_and_arguments_fail_cleanly() {
    let dir = TempDir::new("bad");
    let good = &quick(Kind::Mlp).1.bytes;
    let model = dir.file("good.aka", good);

    let missing = dir.0.join("missing.aka");
    assert_fails(&aka(&["inspect", p(&missing)]), "cannot read");
    assert_fails(&aka(&["inspect", p(&dir.0)]), "cannot read");
    let empty = dir.file("empty.aka", b"");
    assert_fails(&aka(&["inspect", p(&empty)]), "truncated");
    let garbage = dir.file("garbage.aka", b"this is not a model at all");
    assert_fails(&aka(&["inspect", p(&garbage)]), "bad magic");
    assert_fails(
        &aka(&["run", p(&garbage), "--mnist-index", "0"]),
        "bad magic",
    );
    let truncated = dir.file("truncated.aka", &good[..good.len() / 2]);
    assert_fails(&aka(&["inspect", p(&truncated)]), "truncated");
    assert_fails(
        &aka(&["run", p(&truncated), "--mnist-index", "0"]),
        "truncated",
    );
    // A format-2 header (before the weight types were added) is refused by version, with the
    // way out; so is a future version.
    let mut v2 = good.clone();
    assert_eq!(v2[4], 3);
    v2[4] = 2;
    let v2 = dir.file("v2.aka", &v2);
    assert_fails(&aka(&["inspect", p(&v2)]), "version 2 is not supported");
    assert_fails(&aka(&["inspect", p(&v2)]), "re-export the model");
    let mut v4 = good.clone();
    v4[4] = 4;
    let v4 = dir.file("v4.aka", &v4);
    assert_fails(&aka(&["inspect", p(&v4)]), "version 4 is not supported");
    let mut trailing = good.clone();
    trailing.push(0);
    let trailing = dir.file("trailing.aka", &trailing);
    assert_fails(&aka(&["inspect", p(&trailing)]), "unexpected bytes");
    // Every 997th truncation and a few byte flips: error or success, never a panic.
    for cut in (0..good.len()).step_by(997) {
        let f = dir.file("cut.aka", &good[..cut]);
        let o = aka(&["inspect", p(&f)]);
        assert_fails(&o, "");
    }

    // Bad run arguments.
    assert_fails(
        &aka(&["run", p(&model), "--mnist-index", "10000"]),
        "out of range",
    );
    assert_fails(
        &aka(&["run", p(&model), "--mnist-index", "0", "--data", p(&dir.0)]),
        "not found",
    );
    let not_image = dir.file("not-image.png", b"definitely not a png");
    assert_fails(
        &aka(&["run", p(&model), "--image", p(&not_image)]),
        "not-image.png",
    );
    let bad_pgm = dir.file("bad.pgm", b"P5\n28 28\n255\nshort");
    assert_fails(&aka(&["run", p(&model), "--image", p(&bad_pgm)]), "bad.pgm");
    assert_fails(
        &aka(&["run", p(&model), "--image", p(&dir.0.join("nope.png"))]),
        "cannot open",
    );
    // Usage errors are clap's: status 2, no panic.
    for args in [
        &["run", p(&model)][..],
        &["run", p(&model), "--mnist-index", "x"],
        &["frobnicate"],
    ] {
        let o = aka(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!stderr(&o).contains("panicked"));
    }
    assert!(aka(&["--help"]).status.success());
}
