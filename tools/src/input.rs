//! Input images for `aka run`.
//!
//! **Image files** (PNG, or PGM/PPM/PBM "netpbm", any size, any bit depth; the format is
//! detected from the content, not the name) are converted like this:
//!
//! 1. to 8-bit grey: luma `0.2126 R + 0.7152 G + 0.0722 B` (image crate's `to_luma_alpha8`),
//!    and an alpha channel is composited **over black** (transparent = background);
//! 2. resized to the model's input size (28 x 28 for MNIST) by **area averaging** ("box"
//!    filter): each output pixel is the mean of the source area it covers, with fractional
//!    coverage at the edges. The aspect ratio is not kept (the image is stretched), and the digit
//!    is not re-centred;
//! 3. optionally inverted (`255 - p`).
//!
//! MNIST digits are **white on black**. A scan or drawing of a dark digit on white paper needs
//! `--invert`; [`looks_inverted`] detects the common case (a bright border) so the CLI can hint.
//!
//! **MNIST-format test sets**: `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]`
//! from a directory (default: this checkout's `data/mnist`), read with aka-trainer's IDX reader.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// An 8-bit grey image, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreyImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl GreyImage {
    /// Mean brightness of the outermost rows and columns (0..=255).
    pub fn border_mean(&self) -> f64 {
        let (w, h) = (self.width, self.height);
        let mut sum = 0u64;
        let mut n = 0u64;
        for y in 0..h {
            for x in 0..w {
                if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                    sum += self.pixels[y * w + x] as u64;
                    n += 1;
                }
            }
        }
        if n == 0 {
            0.0
        } else {
            sum as f64 / n as f64
        }
    }

    /// `255 - p` for every pixel.
    pub fn invert(&mut self) {
        for p in &mut self.pixels {
            *p = 255 - *p;
        }
    }
}

/// True if the image looks dark-on-light (bright border), i.e. probably needs `--invert`.
pub fn looks_inverted(img: &GreyImage) -> bool {
    img.border_mean() > 127.0
}

/// Reads a PNG or netpbm (PGM/PPM/PBM) file as 8-bit grey, alpha composited over black.
///
/// The size in the file's header is checked against `max_pixels` before anything is decoded
/// (a 100-byte PNG can declare 4 billion pixels; `--max-image-mpix` raises the cap).
pub fn read_image(path: &Path, max_pixels: u64) -> anyhow::Result<GreyImage> {
    let open = || -> anyhow::Result<image::ImageReader<_>> {
        let reader = image::ImageReader::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?
            .with_guessed_format()
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if reader.format().is_none() {
            bail!(
                "{}: not a PNG or PGM/PPM/PBM image (unrecognised content)",
                path.display()
            );
        }
        Ok(reader)
    };
    let (w, h) = open()?
        .into_dimensions()
        .with_context(|| format!("{}: cannot read the image header", path.display()))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        bail!(
            "{}: the image is {w}x{h} = {pixels} pixels, above the limit of {max_pixels} \
             (raise it with --max-image-mpix)",
            path.display()
        );
    }
    let img = open()?
        .decode()
        .with_context(|| format!("{}: cannot decode the image", path.display()))?;
    let la = img.to_luma_alpha8();
    let (width, height) = (la.width() as usize, la.height() as usize);
    if width == 0 || height == 0 {
        bail!("{}: the image is empty", path.display());
    }
    let pixels = la
        .pixels()
        .map(|p| {
            let [l, a] = p.0;
            ((l as u32 * a as u32 + 127) / 255) as u8
        })
        .collect();
    Ok(GreyImage {
        width,
        height,
        pixels,
    })
}

/// Area-averaging resize to `width x height` (see the [module documentation](self)).
pub fn resize_area(img: &GreyImage, width: usize, height: usize) -> GreyImage {
    if (img.width, img.height) == (width, height) {
        return img.clone();
    }
    // Horizontal pass then vertical pass; both in f64, rounded once at the end.
    let wx = area_weights(img.width, width);
    let wy = area_weights(img.height, height);
    let mut rows = vec![0.0f64; img.height * width];
    for y in 0..img.height {
        let src = &img.pixels[y * img.width..(y + 1) * img.width];
        for (x, taps) in wx.iter().enumerate() {
            rows[y * width + x] = taps.iter().map(|&(i, w)| src[i] as f64 * w).sum();
        }
    }
    let mut pixels = vec![0u8; width * height];
    for (y, taps) in wy.iter().enumerate() {
        for x in 0..width {
            let v: f64 = taps.iter().map(|&(i, w)| rows[i * width + x] * w).sum();
            pixels[y * width + x] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    GreyImage {
        width,
        height,
        pixels,
    }
}

/// For each of `n_out` output pixels, the source pixels it covers and their weights (summing to 1):
/// output `o` covers the source interval `[o * s, (o + 1) * s)` with `s = n_in / n_out`.
fn area_weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f64)>> {
    let s = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let (a, b) = (o as f64 * s, (o + 1) as f64 * s);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(n_in);
            (first..last)
                .filter_map(|i| {
                    let overlap = (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0);
                    (overlap > 0.0).then_some((i, overlap / s))
                })
                .collect()
        })
        .collect()
}

/// `data/mnist` of this checkout.
pub fn default_mnist_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

/// An MNIST-format test set.
#[derive(Clone, Debug)]
pub struct TestSet {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
}

impl TestSet {
    /// Image `index` and its label, or an error naming the valid range.
    pub fn get(&self, index: usize) -> anyhow::Result<(GreyImage, u8)> {
        if index >= self.n {
            bail!(
                "image index {index} is out of range: the test set has {} images (0..={})",
                self.n,
                self.n - 1
            );
        }
        let p = self.rows * self.cols;
        Ok((
            GreyImage {
                width: self.cols,
                height: self.rows,
                pixels: self.images[index * p..(index + 1) * p].to_vec(),
            },
            self.labels[index],
        ))
    }
}

/// Loads the MNIST-format **test** set of `dir` (`t10k-*` files, gzip or raw).
pub fn load_test_set(dir: &Path) -> anyhow::Result<TestSet> {
    use aka_trainer::data::mnist::{
        find_file, read_idx_images, read_idx_labels, TEST_IMAGES, TEST_LABELS,
    };
    let images_path = find_file(dir, TEST_IMAGES)?;
    let labels_path = find_file(dir, TEST_LABELS)?;
    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != images.n {
        bail!(
            "{}: {} labels for {} images",
            labels_path.display(),
            labels.len(),
            images.n
        );
    }
    Ok(TestSet {
        images: images.pixels,
        labels,
        n: images.n,
        rows: images.rows,
        cols: images.cols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_of_a_replicated_image_is_exact() {
        let small = GreyImage {
            width: 3,
            height: 2,
            pixels: vec![0, 100, 255, 7, 8, 9],
        };
        let mut big = GreyImage {
            width: 6,
            height: 4,
            pixels: vec![0; 24],
        };
        for y in 0..4 {
            for x in 0..6 {
                big.pixels[y * 6 + x] = small.pixels[(y / 2) * 3 + x / 2];
            }
        }
        assert_eq!(resize_area(&big, 3, 2), small);
        // Upscaling by an integer factor replicates pixels.
        assert_eq!(resize_area(&small, 6, 4), big);
    }

    #[test]
    fn area_resize_averages() {
        let img = GreyImage {
            width: 3,
            height: 1,
            pixels: vec![0, 90, 180],
        };
        // Two outputs of 1.5 source pixels each: (0 + 0.5*90)/1.5 = 30, (0.5*90 + 180)/1.5 = 150.
        assert_eq!(resize_area(&img, 2, 1).pixels, vec![30, 150]);
        let one = resize_area(&img, 1, 1);
        assert_eq!(one.pixels, vec![90]);
    }

    #[test]
    fn inversion_hint() {
        let mut img = GreyImage {
            width: 3,
            height: 3,
            pixels: vec![255, 255, 255, 255, 0, 255, 255, 255, 255],
        };
        assert!(looks_inverted(&img));
        img.invert();
        assert!(!looks_inverted(&img));
        assert_eq!(img.pixels[4], 255);
    }
}
