//! MNIST-format datasets: IDX image and label files, gzip-compressed or raw.
//!
//! [`Mnist::load`] reads the four canonical files from a directory:
//!
//! | set   | images                    | labels                    |
//! |-------|---------------------------|---------------------------|
//! | train | `train-images-idx3-ubyte` | `train-labels-idx1-ubyte` |
//! | test  | `t10k-images-idx3-ubyte`  | `t10k-labels-idx1-ubyte`  |
//!
//! each either as the plain name or with a `.gz` suffix (the plain name is preferred when both
//! exist). Whether a file is gzip-compressed is decided by its first two bytes (`1f 8b`), not by
//! its name. Any data set in this format works (e.g. Fashion-MNIST): the number of images and
//! their size come from the headers, and only the labels are required to be class indices
//! `0..`[`NUM_CLASSES`].
//!
//! # Pixel scaling
//!
//! Batches are `f32` arrays in which pixel `p` (a `u8`) becomes, in exactly these `f32`
//! operations,
//!
//! ```text
//! x = (f32::from(p) / 255.0 - mean) / std
//! ```
//!
//! with the set's [`PixelNorm`] `{ mean, std }`. [`Mnist::load`] computes `mean` and `std` **from
//! the training images** (all their pixels as `p / 255`, accumulated in `f64`, population std,
//! then rounded to `f32`; see [`PixelNorm::of_pixels`]) and gives the test set the same values, so
//! every MNIST-format data set gets its own (MNIST: mean 0.1307, std 0.3081). [`PixelNorm::NONE`]
//! (`mean 0, std 1`, what `aka-trainer mnist --no-normalize` uses) is plain `p / 255` in `[0, 1]`,
//! bit for bit.
//!
//! The int8 deployment path relies on this expression: the exported model file stores `mean` and
//! `std` (`aka_core::format::InputDesc::pixel_mean` / `pixel_std`), and aka-core computes the real
//! value of a raw `u8` pixel with the same `f32` operations before quantizing it
//! (`aka_core::quant::quantize_pixel`), so the device takes raw pixels.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use ndarray::Array4;
use serde::{Deserialize, Serialize};

use super::DataError;

/// IDX magic number of an image file: unsigned bytes, 3 dimensions (n, rows, cols).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic number of a label file: unsigned bytes, 1 dimension (n).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Number of classes; every label must be smaller.
pub const NUM_CLASSES: usize = 10;

/// Base names of the four files in an MNIST directory (each also accepted with `.gz`).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Input normalization of pixels: pixel `p` becomes `(f32::from(p) / 255.0 - mean) / std` (see
/// the [module documentation](self#pixel-scaling)).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PixelNorm {
    /// Mean of the pixels as `p / 255`.
    pub mean: f32,
    /// Standard deviation of the pixels as `p / 255`; finite and > 0.
    pub std: f32,
}

impl PixelNorm {
    /// No normalization: `p / 255`, in `[0, 1]`.
    pub const NONE: PixelNorm = PixelNorm {
        mean: 0.0,
        std: 1.0,
    };

    /// Mean and population standard deviation of `pixels` as `p / 255`, computed in `f64` (from a
    /// histogram of the 256 values, two passes) and then rounded to `f32`. An empty slice gives
    /// [`PixelNorm::NONE`]; if all pixels are equal (std 0) the std is 1, so that the result can
    /// always be applied.
    pub fn of_pixels(pixels: &[u8]) -> PixelNorm {
        if pixels.is_empty() {
            return PixelNorm::NONE;
        }
        let mut counts = [0u64; 256];
        for &p in pixels {
            counts[p as usize] += 1;
        }
        let n = pixels.len() as f64;
        let value = |p: usize| p as f64 / 255.0;
        let mean = counts
            .iter()
            .enumerate()
            .map(|(p, &c)| c as f64 * value(p))
            .sum::<f64>()
            / n;
        let var = counts
            .iter()
            .enumerate()
            .map(|(p, &c)| c as f64 * (value(p) - mean) * (value(p) - mean))
            .sum::<f64>()
            / n;
        let std = var.sqrt() as f32;
        PixelNorm {
            mean: mean as f32,
            std: if std > 0.0 { std } else { 1.0 },
        }
    }

    /// The normalized value of pixel `p`: `(f32::from(p) / 255.0 - mean) / std`.
    #[inline]
    pub fn apply(&self, p: u8) -> f32 {
        (f32::from(p) / 255.0 - self.mean) / self.std
    }

    /// [`PixelNorm::apply`] for all 256 pixel values.
    pub fn table(&self) -> [f32; 256] {
        let mut t = [0.0; 256];
        for (p, v) in t.iter_mut().enumerate() {
            *v = self.apply(p as u8);
        }
        t
    }

    /// Whether this is [`PixelNorm::NONE`].
    pub fn is_none(&self) -> bool {
        *self == PixelNorm::NONE
    }
}

impl std::fmt::Display for PixelNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_none() {
            write!(f, "none (p / 255)")
        } else {
            write!(f, "(p / 255 - {}) / {}", self.mean, self.std)
        }
    }
}

/// A labelled set of single-channel `u8` images.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// `n * rows * cols` pixels, image after image, row-major.
    pub images: Vec<u8>,
    /// `n` labels, each `< NUM_CLASSES`.
    pub labels: Vec<u8>,
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    /// How batches scale the pixels ([`PixelNorm::NONE`] unless set; [`Mnist::load`] sets the
    /// training set's statistics on both sets).
    pub norm: PixelNorm,
}

/// The training and test sets of an MNIST-format data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Mnist {
    pub train: ImageSet,
    pub test: ImageSet,
}

impl Mnist {
    /// Loads the four IDX files from `dir` (see the [module documentation](self) for the
    /// accepted names). The files are read and decompressed in parallel.
    ///
    /// Both sets get the pixel normalization of the **training** images
    /// ([`PixelNorm::of_pixels`]); [`Mnist::set_norm`] replaces it (e.g. with
    /// [`PixelNorm::NONE`]).
    ///
    /// Errors name the file at fault: missing, unreadable, not gzip-decodable, wrong IDX magic,
    /// truncated or over-long, zero-sized, mismatched image/label counts, labels
    /// `>= NUM_CLASSES`, or test images of a different size than the training images.
    pub fn load(dir: &Path) -> Result<Mnist, DataError> {
        if !dir.is_dir() {
            return Err(DataError::NotFound {
                path: dir.to_path_buf(),
                also_tried: Vec::new(),
            });
        }
        let train_images = find_file(dir, TRAIN_IMAGES)?;
        let train_labels = find_file(dir, TRAIN_LABELS)?;
        let test_images = find_file(dir, TEST_IMAGES)?;
        let test_labels = find_file(dir, TEST_LABELS)?;

        let (train_i, train_l, test_i, test_l) = std::thread::scope(|s| {
            let a = s.spawn(|| read_idx_images(&train_images));
            let b = s.spawn(|| read_idx_labels(&train_labels));
            let c = s.spawn(|| read_idx_images(&test_images));
            let d = s.spawn(|| read_idx_labels(&test_labels));
            (join(a), join(b), join(c), join(d))
        });
        let train = ImageSet::from_parts(train_i?, &train_images, train_l?, &train_labels)?;
        let test = ImageSet::from_parts(test_i?, &test_images, test_l?, &test_labels)?;
        if (test.rows, test.cols) != (train.rows, train.cols) {
            return Err(DataError::ShapeMismatch {
                path: test_images,
                expected: (train.rows, train.cols),
                found: (test.rows, test.cols),
            });
        }
        let mut mnist = Mnist { train, test };
        mnist.set_norm(PixelNorm::of_pixels(&mnist.train.images));
        Ok(mnist)
    }

    /// Sets the pixel normalization of both sets.
    pub fn set_norm(&mut self, norm: PixelNorm) {
        self.train.norm = norm;
        self.test.norm = norm;
    }

    /// The pixel normalization of the training set (the test set has the same unless changed).
    pub fn norm(&self) -> PixelNorm {
        self.train.norm
    }
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// `dir/name` if it exists, else `dir/name.gz` if it exists, else a `NotFound` error naming
/// `dir/name.gz` (and that `dir/name` was tried too).
pub fn find_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(DataError::NotFound {
            path: gz,
            also_tried: vec![plain],
        })
    }
}

/// The pixels of an IDX image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    pub pixels: Vec<u8>,
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
}

/// Reads an IDX image file (magic `0x00000803`), gzip or raw.
pub fn read_idx_images(path: &Path) -> Result<IdxImages, DataError> {
    let mut r = IdxReader::open(path)?;
    r.magic(IMAGES_MAGIC, "image")?;
    let [n, rows, cols] = r.dims::<3>()?;
    if n == 0 {
        return Err(r.bad_header("contains no images (n = 0)".into()));
    }
    if rows == 0 || cols == 0 {
        return Err(r.bad_header(format!("zero-sized images ({rows}x{cols})")));
    }
    let len = n
        .checked_mul(rows)
        .and_then(|x| x.checked_mul(cols))
        .ok_or_else(|| r.bad_header(format!("{n} images of {rows}x{cols} is too large")))?;
    let pixels = r.payload(len)?;
    Ok(IdxImages {
        pixels,
        n,
        rows,
        cols,
    })
}

/// Reads an IDX label file (magic `0x00000801`), gzip or raw. Label values are not checked
/// here (see [`ImageSet::from_parts`]).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut r = IdxReader::open(path)?;
    r.magic(LABELS_MAGIC, "label")?;
    let [n] = r.dims::<1>()?;
    if n == 0 {
        return Err(r.bad_header("contains no labels (n = 0)".into()));
    }
    r.payload(n)
}

/// Streams an IDX file, transparently gunzipping, and tracks how many bytes were consumed.
struct IdxReader<'p> {
    path: &'p Path,
    src: Box<dyn Read + Send>,
    gzip: bool,
    /// Bytes read so far (decompressed).
    pos: u64,
    /// Size of the file on disk, used to bound the first allocation for raw files.
    file_len: u64,
}

impl<'p> IdxReader<'p> {
    fn open(path: &'p Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let mut buf = BufReader::with_capacity(1 << 16, file);
        let gzip = buf
            .fill_buf()
            .map_err(|e| DataError::io(path, e))?
            .starts_with(&[0x1f, 0x8b]);
        let src: Box<dyn Read + Send> = if gzip {
            Box::new(MultiGzDecoder::new(buf))
        } else {
            Box::new(buf)
        };
        Ok(IdxReader {
            path,
            src,
            gzip,
            pos: 0,
            file_len,
        })
    }

    fn read_err(&self, e: io::Error) -> DataError {
        // A decoder reports bad compressed data as InvalidInput/InvalidData, and a cut-off
        // stream as UnexpectedEof; genuine I/O errors keep their kind.
        let bad_stream = matches!(
            e.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        );
        if self.gzip && bad_stream {
            DataError::Gzip {
                path: self.path.to_path_buf(),
                source: e,
            }
        } else {
            DataError::io(self.path, e)
        }
    }

    fn bad_header(&self, reason: String) -> DataError {
        DataError::BadHeader {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// Reads as much of `buf` as the stream holds; returns the number of bytes read.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut got = 0;
        while got < buf.len() {
            match self.src.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_err(e)),
            }
        }
        self.pos += got as u64;
        Ok(got)
    }

    fn u32_be(&mut self, header_len: u64) -> Result<u32, DataError> {
        let mut b = [0u8; 4];
        if self.read_full(&mut b)? < 4 {
            return Err(DataError::TruncatedHeader {
                path: self.path.to_path_buf(),
                expected: header_len,
                got: self.pos,
            });
        }
        Ok(u32::from_be_bytes(b))
    }

    fn magic(&mut self, expected: u32, kind: &'static str) -> Result<(), DataError> {
        let header_len = 4 + 4 * (expected & 0xff) as u64;
        let found = self.u32_be(header_len)?;
        if found != expected {
            return Err(DataError::BadMagic {
                path: self.path.to_path_buf(),
                kind,
                expected,
                found,
            });
        }
        Ok(())
    }

    fn dims<const D: usize>(&mut self) -> Result<[usize; D], DataError> {
        let header_len = 4 + 4 * D as u64;
        let mut dims = [0usize; D];
        for d in &mut dims {
            *d = self.u32_be(header_len)? as usize;
        }
        Ok(dims)
    }

    /// Reads exactly `len` more bytes, then checks that the stream ends there.
    fn payload(&mut self, len: usize) -> Result<Vec<u8>, DataError> {
        let expected = self.pos + len as u64;
        // Bound the up-front allocation by what the file can hold, so a corrupt header cannot
        // make us allocate gigabytes before noticing the file is short.
        // (Deflate expands at most ~1032:1.)
        let bound = if self.gzip {
            self.file_len.saturating_mul(1032)
        } else {
            self.file_len.saturating_sub(self.pos)
        };
        let mut data = Vec::with_capacity((len as u64).min(bound) as usize);
        let got = (&mut self.src)
            .take(len as u64)
            .read_to_end(&mut data)
            .map_err(|e| self.read_err(e))?;
        self.pos += got as u64;
        if got < len {
            return Err(DataError::Truncated {
                path: self.path.to_path_buf(),
                expected,
                got: self.pos,
                gzip: self.gzip,
            });
        }
        // Anything after the payload is an error; reading to the end also makes the gzip
        // decoder verify the stream's CRC and length.
        let mut probe = [0u8; 1];
        if self.read_full(&mut probe)? > 0 {
            let rest = io::copy(&mut self.src, &mut io::sink()).map_err(|e| self.read_err(e))?;
            return Err(DataError::TrailingData {
                path: self.path.to_path_buf(),
                expected,
                got: self.pos + rest,
                gzip: self.gzip,
            });
        }
        Ok(data)
    }
}

impl ImageSet {
    /// Loads an image file and its label file (each gzip or raw) and validates them together.
    pub fn load(images: &Path, labels: &Path) -> Result<ImageSet, DataError> {
        let imgs = read_idx_images(images)?;
        let lbls = read_idx_labels(labels)?;
        ImageSet::from_parts(imgs, images, lbls, labels)
    }

    /// Combines parsed files, checking that there is one label per image and that every
    /// label is `< NUM_CLASSES`. The paths are only used in error messages. The set has no
    /// pixel normalization ([`PixelNorm::NONE`]; see [`ImageSet::with_norm`]).
    pub fn from_parts(
        images: IdxImages,
        images_path: &Path,
        labels: Vec<u8>,
        labels_path: &Path,
    ) -> Result<ImageSet, DataError> {
        if images.n != labels.len() {
            return Err(DataError::CountMismatch {
                images: images_path.to_path_buf(),
                labels: labels_path.to_path_buf(),
                n_images: images.n,
                n_labels: labels.len(),
            });
        }
        if let Some(index) = labels.iter().position(|&l| l as usize >= NUM_CLASSES) {
            return Err(DataError::BadLabel {
                path: labels_path.to_path_buf(),
                index,
                label: labels[index],
                num_classes: NUM_CLASSES,
            });
        }
        Ok(ImageSet {
            images: images.pixels,
            labels,
            n: images.n,
            rows: images.rows,
            cols: images.cols,
            norm: PixelNorm::NONE,
        })
    }

    /// The same set with pixel normalization `norm`.
    pub fn with_norm(mut self, norm: PixelNorm) -> ImageSet {
        self.norm = norm;
        self
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Pixels per image (`rows * cols`).
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// The raw pixels of image `i` (`rows * cols` bytes, row-major).
    ///
    /// # Panics
    /// If `i >= n`.
    pub fn image(&self, i: usize) -> &[u8] {
        let p = self.pixels_per_image();
        &self.images[i * p..(i + 1) * p]
    }

    /// How many images carry each label.
    pub fn label_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The first `min(n, self.n)` images and labels (e.g. for quick runs).
    pub fn head(&self, n: usize) -> ImageSet {
        let n = n.min(self.n);
        ImageSet {
            images: self.images[..n * self.pixels_per_image()].to_vec(),
            labels: self.labels[..n].to_vec(),
            n,
            rows: self.rows,
            cols: self.cols,
            norm: self.norm,
        }
    }

    /// Gathers the images at `indices` into a `[indices.len(), 1, rows, cols]` array, pixel `p`
    /// as [`PixelNorm::apply`]`(p)` with the set's normalization (`p / 255` for
    /// [`PixelNorm::NONE`]).
    ///
    /// # Panics
    /// If an index is `>= n`.
    pub fn batch_images(&self, indices: &[usize]) -> Array4<f32> {
        let p = self.pixels_per_image();
        let mut out = vec![0.0f32; indices.len() * p];
        self.gather_into(indices, &mut out);
        Array4::from_shape_vec((indices.len(), 1, self.rows, self.cols), out)
            .expect("buffer length matches the batch shape")
    }

    /// Like [`ImageSet::batch_images`], but writes into `out` (length
    /// `indices.len() * rows * cols`), reusing the caller's buffer.
    ///
    /// # Panics
    /// If an index is `>= n` or `out` has the wrong length.
    pub fn gather_into(&self, indices: &[usize], out: &mut [f32]) {
        let p = self.pixels_per_image();
        assert_eq!(
            out.len(),
            indices.len() * p,
            "output buffer must hold {} images of {p} pixels",
            indices.len()
        );
        // The same values as `self.norm.apply(s)`, looked up.
        let table = self.norm.table();
        for (dst, &i) in out.chunks_exact_mut(p).zip(indices) {
            let src = self.image(i);
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = table[s as usize];
            }
        }
    }

    /// The labels at `indices`, as class indices.
    ///
    /// # Panics
    /// If an index is `>= n`.
    pub fn batch_labels(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.labels[i] as usize).collect()
    }

    /// [`ImageSet::batch_images`] and [`ImageSet::batch_labels`] together.
    pub fn batch(&self, indices: &[usize]) -> (Array4<f32>, Vec<usize>) {
        (self.batch_images(indices), self.batch_labels(indices))
    }
}
