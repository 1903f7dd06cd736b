//! The hand-written decoding ([`super::read::Reader`]) against serde's derived postcard
//! decoding (the `Deserialize` derives of the GPT body, the metadata and the file exist in test
//! builds only): on the trainer-written model files, and on randomly mutated copies of them,
//! both give the same value or the same error.

extern crate std;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::Error;

/// serde's decoding of a whole file for the loader of body kind `T`, as the loaders did before
/// [`Reader`]: the header, the whole [`ModelFile`] (either body kind), no trailing bytes, then
/// the body kind. With `compact`, the other kind is refused as soon as its index is read.
fn serde_decode_file<'a, T: BodyKind<'a>>(
    bytes: &'a [u8],
    pick: impl Fn(Body<'a>) -> Option<T>,
) -> Result<(Metadata<'a>, T), Error> {
    check_header(bytes)?;
    #[cfg(feature = "compact")]
    {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Head<'a> {
            header: Header,
            #[serde(borrow)]
            metadata: Metadata<'a>,
        }
        let (_, rest) = postcard::take_from_bytes::<Head<'a>>(bytes)?;
        let (found, _) = postcard::take_from_bytes::<u32>(rest)?;
        if found != T::VARIANT {
            return Err(if found < BODY_VARIANTS {
                Error::WrongBody
            } else {
                Error::Malformed
            });
        }
    }
    let (file, rest) = postcard::take_from_bytes::<ModelFile<'a>>(bytes)?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes { count: rest.len() });
    }
    let body = pick(file.body).ok_or(Error::WrongBody)?;
    Ok((file.metadata, body))
}

/// A decoded value as bytes (NaN-safe equality), with the declared block / layer counts.
fn encoded<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).unwrap()
}

fn gpt(body: Body<'_>) -> Option<GptDesc<'_>> {
    match body {
        Body::Gpt(d) => Some(d),
        _ => None,
    }
}

fn seq(body: Body<'_>) -> Option<SequentialDesc<'_>> {
    match body {
        Body::Sequential(d) => Some(d),
        _ => None,
    }
}

/// Both decodings of `bytes` agree, for both loaders and for [`ModelFile::take_from_bytes`].
pub(crate) fn assert_agrees(bytes: &[u8]) {
    let ours = decode_file::<GptDesc>(bytes)
        .map(|(m, d)| (encoded(&m), encoded(&d), d.blocks.declared_len()));
    let theirs = serde_decode_file::<GptDesc>(bytes, gpt)
        .map(|(m, d)| (encoded(&m), encoded(&d), d.blocks.declared_len()));
    assert_eq!(ours, theirs, "GPT loader");

    let ours = decode_file::<SequentialDesc>(bytes)
        .map(|(m, d)| (encoded(&m), encoded(&d), d.layers.declared_len()));
    let theirs = serde_decode_file::<SequentialDesc>(bytes, seq)
        .map(|(m, d)| (encoded(&m), encoded(&d), d.layers.declared_len()));
    assert_eq!(ours, theirs, "Sequential loader");

    let declared = |f: &ModelFile| match &f.body {
        Body::Gpt(d) => d.blocks.declared_len(),
        Body::Sequential(d) => d.layers.declared_len(),
    };
    let ours = ModelFile::take_from_bytes(bytes).map(|(f, rest)| (encoded(&f), declared(&f), rest));
    let theirs = postcard::take_from_bytes::<ModelFile>(bytes)
        .map(|(f, rest)| (encoded(&f), declared(&f), rest))
        .map_err(Error::from);
    assert_eq!(ours, theirs, "ModelFile::take_from_bytes");
}

fn model_file(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read(dir.join("tests/models").join(name))
        .or_else(|_| std::fs::read(dir.join("../firmware/models").join(name)))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The trainer-written files: the `gpt` firmware's model (learned positions, LayerNorm, GELU),
/// the int4 one, and a CNN (a Sequential body).
fn files() -> Vec<Vec<u8>> {
    ["gpt.aka", "gpt-int4.aka", "mnist-cnn.aka"]
        .iter()
        .map(|n| model_file(n))
        .collect()
}

#[test]
fn trainer_files_decode_the_same() {
    for bytes in files() {
        assert_agrees(&bytes);
        assert!(ModelFile::take_from_bytes(&bytes).is_ok());
        // Every truncation: Truncated (or a header error) from both, at every length.
        for len in (0..bytes.len())
            .step_by(97)
            .chain(bytes.len().saturating_sub(64)..bytes.len())
        {
            assert_agrees(&bytes[..len]);
        }
        // Trailing bytes.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0, 1, 2]);
        assert_agrees(&longer);
    }
}

/// One mutation of a file: overwrite a byte, insert one, remove one, or cut the file.
#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Cut(usize),
}

/// A byte, often one that decides something (a tag past 1, a varint continuation).
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..4, Just(0x7F), Just(0x80), Just(0xFF), any::<u8>()]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<usize>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => any::<usize>().prop_map(Mutation::Cut),
    ]
}

/// Mutates `bytes`; positions are taken modulo the length, and 3 times in 4 within the first
/// 400 bytes (the header, metadata, configuration and first structures, where most of the
/// decoding decisions are).
fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| {
        let len = len.max(1);
        if i.is_multiple_of(4) {
            i / 4 % len
        } else {
            i / 4 % len.min(400)
        }
    };
    match *m {
        Mutation::Set(i, b) => {
            let i = at(i, bytes.len());
            if let Some(x) = bytes.get_mut(i) {
                *x = b;
            }
        }
        Mutation::Insert(i, b) => {
            let i = at(i, bytes.len() + 1).min(bytes.len());
            bytes.insert(i, b);
        }
        Mutation::Remove(i) => {
            let i = at(i, bytes.len());
            if i < bytes.len() {
                bytes.remove(i);
            }
        }
        Mutation::Cut(i) => {
            let i = at(i, bytes.len());
            bytes.truncate(i);
        }
    }
}

#[test]
fn valid_scale_is_finite_and_positive() {
    let old = |s: f32| s.is_finite() && s > 0.0;
    for s in [
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        -f32::from_bits(1),
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7FC0_0001),
        1.0,
        -1.0,
    ] {
        assert_eq!(valid_scale(s), old(s), "{s:?} ({:#x})", s.to_bits());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_scale_agrees_on_any_bits(bits in any::<u32>()) {
        let s = f32::from_bits(bits);
        prop_assert_eq!(valid_scale(s), s.is_finite() && s > 0.0);
    }

    /// Mutated trainer-written files: both decodings agree (value or error).
    #[test]
    fn mutated_files_decode_the_same(
        file in 0usize..3,
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let mut bytes = files().swap_remove(file);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        assert_agrees(&bytes);
    }
}
