//! Character-level tokenizer and text dataset.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aka_core::rng::Rng;
use aka_trainer::data::text::{CharTokenizer, Split, TextDataset, VocabError, UNKNOWN_CHAR};
use aka_trainer::data::DataError;

fn shakespeare_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tinyshakespeare/input.txt")
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "aka-text-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn tinyshakespeare_vocab_size_and_split() {
    let ds = TextDataset::load(&shakespeare_path()).unwrap();
    let tok = ds.tokenizer();
    assert_eq!(tok.vocab_size(), 65);
    assert_eq!(ds.tokens().len(), 1_115_394);
    assert_eq!(tok.unknown_id(), None);
    // Sorted by char value: '\n', ' ', '!', ... 'z' (as nanoGPT's `sorted(set(data))`).
    assert!(tok.vocab().windows(2).all(|w| w[0] < w[1]));
    assert_eq!(tok.vocab()[0], '\n');
    assert_eq!(tok.vocab()[1], ' ');
    assert_eq!(*tok.vocab().last().unwrap(), 'z');
    // nanoGPT's shakespeare_char: 1,003,854 train and 111,540 val tokens.
    assert_eq!(ds.split(Split::Train).len(), 1_003_854);
    assert_eq!(ds.split(Split::Val).len(), 111_540);
    assert_eq!(
        [ds.split(Split::Train), ds.split(Split::Val)].concat(),
        ds.tokens()
    );
    assert_eq!(tok.decode(&ds.tokens()[..14]), "First Citizen:");
    // nanoGPT's ids for "hii there".
    assert_eq!(
        tok.encode("hii there"),
        vec![46, 47, 47, 1, 58, 46, 43, 56, 43]
    );
}

#[test]
fn tinyshakespeare_round_trips() {
    let text = fs::read_to_string(shakespeare_path()).unwrap();
    let tok = CharTokenizer::from_corpus(&text, None);
    let ids = tok.encode(&text);
    assert_eq!(ids.len(), text.chars().count());
    assert_eq!(tok.decode(&ids), text);
    assert_eq!(tok.try_encode(&text).unwrap(), ids);
    // The vocabulary alone rebuilds the same tokenizer.
    assert_eq!(
        CharTokenizer::from_vocab(tok.vocab().to_vec()).unwrap(),
        tok
    );
}

#[test]
fn non_ascii_round_trips_and_counts_scalar_values() {
    let corpus = "héllo wörld — 日本語 🙂";
    let path = temp_file("unicode.txt", corpus.as_bytes());
    let ds = TextDataset::load(&path).unwrap();
    let tok = ds.tokenizer();
    let distinct: BTreeSet<char> = corpus.chars().collect();
    assert_eq!(tok.vocab_size(), distinct.len());
    assert_eq!(
        tok.vocab(),
        distinct.into_iter().collect::<Vec<_>>().as_slice()
    );
    assert_eq!(ds.tokens().len(), corpus.chars().count());
    assert_eq!(tok.decode(ds.tokens()), corpus);
    assert_eq!(tok.encode("🙂").len(), 1);
    assert_eq!(tok.decode(&tok.encode("日本")), "日本");
    assert_eq!(*tok.vocab().last().unwrap(), '🙂');
    // An id beyond the vocabulary decodes to the replacement char.
    assert_eq!(
        tok.decode(&[tok.vocab_size() as u32]),
        UNKNOWN_CHAR.to_string()
    );
    fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn max_vocab_maps_rare_chars_to_unknown() {
    let corpus = "aaaaabbbbccd";
    let tok = CharTokenizer::from_corpus(corpus, Some(3));
    // Two most frequent chars plus the unknown token, sorted by char value.
    assert_eq!(tok.vocab(), &['a', 'b', UNKNOWN_CHAR]);
    assert_eq!(tok.unknown_id(), Some(2));
    assert_eq!(tok.encode("abcdz"), vec![0, 1, 2, 2, 2]);
    assert_eq!(tok.decode(&tok.encode("abcd")), "ab\u{FFFD}\u{FFFD}");
    assert_eq!(tok.id('c'), None);
    assert_eq!(
        CharTokenizer::from_vocab(tok.vocab().to_vec()).unwrap(),
        tok
    );

    // Ties go to the smaller char.
    let tok = CharTokenizer::from_corpus("ccbbaad", Some(3));
    assert_eq!(tok.vocab(), &['a', 'b', UNKNOWN_CHAR]);
    // Emoji sort after U+FFFD.
    let tok = CharTokenizer::from_corpus("🙂🙂🙂xx日本", Some(3));
    assert_eq!(tok.vocab(), &['x', UNKNOWN_CHAR, '🙂']);
    assert_eq!(tok.encode("日x🙂"), vec![1, 0, 2]);

    // Enough room: everything kept, no unknown token.
    let tok = CharTokenizer::from_corpus(corpus, Some(4));
    assert_eq!(tok.vocab(), &['a', 'b', 'c', 'd']);
    assert_eq!(tok.unknown_id(), None);
    // Without an unknown token, unseen chars are dropped by `encode`, reported by `try_encode`.
    assert_eq!(tok.encode("azb"), vec![0, 1]);
    assert_eq!(tok.try_encode("azb"), Err('z'));

    // Degenerate caps.
    assert_eq!(
        CharTokenizer::from_corpus(corpus, Some(1)).vocab(),
        &[UNKNOWN_CHAR]
    );
    assert_eq!(
        CharTokenizer::from_corpus(corpus, Some(0)).vocab(),
        &[UNKNOWN_CHAR]
    );
    assert_eq!(CharTokenizer::from_corpus("", None).vocab_size(), 0);

    // On Shakespeare: 40 ids, the rarest chars (e.g. 'Z', '$', '&') become unknown.
    let ds = TextDataset::load_with_max_vocab(&shakespeare_path(), Some(40)).unwrap();
    let tok = ds.tokenizer();
    assert_eq!(tok.vocab_size(), 40);
    let unk = tok.unknown_id().unwrap();
    assert_eq!(tok.encode("$&Z"), vec![unk; 3]);
    assert_eq!(tok.decode(&tok.encode("the ")), "the ");
    assert_eq!(ds.tokens().len(), 1_115_394);
}

#[test]
fn from_vocab_rejects_duplicates() {
    assert_eq!(
        CharTokenizer::from_vocab(vec!['a', 'b', 'a']),
        Err(VocabError::Duplicate('a'))
    );
    // Any order is accepted; U+FFFD marks the unknown token.
    let tok = CharTokenizer::from_vocab(vec!['z', UNKNOWN_CHAR, 'a']).unwrap();
    assert_eq!(tok.encode("aqz"), vec![2, 1, 0]);
}

#[test]
fn load_errors_name_the_file() {
    let missing = std::env::temp_dir().join("aka-no-such-corpus-3f9a.txt");
    let err = TextDataset::load(&missing).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }));
    assert_eq!(err.to_string(), format!("{}: not found", missing.display()));

    let bad = temp_file("latin1.txt", b"caf\xe9 au lait");
    let err = TextDataset::load(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not valid UTF-8 (invalid byte at offset 3)",
            bad.display()
        )
    );

    let empty = temp_file("empty.txt", b"");
    let err = TextDataset::load(&empty).unwrap_err();
    assert!(
        err.to_string().starts_with(&empty.display().to_string()),
        "{err}"
    );

    // A directory is not a text file.
    let dir = bad.parent().unwrap();
    let err = TextDataset::load(dir).unwrap_err();
    assert!(
        err.to_string().starts_with(&dir.display().to_string()),
        "{err}"
    );
    for p in [bad, empty] {
        fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}

#[test]
fn batches_are_seeded_contiguous_and_shifted() {
    let ds = TextDataset::load(&shakespeare_path()).unwrap();
    let (batch, block) = (4, 32);
    let (x, y) = ds.sample_batch(Split::Train, batch, block, &mut Rng::new(1337));
    assert_eq!((x.len(), y.len()), (batch * block, batch * block));
    let (x2, y2) = ds.sample_batch(Split::Train, batch, block, &mut Rng::new(1337));
    assert_eq!((&x, &y), (&x2, &y2), "same seed, same batch");
    let (x3, _) = ds.sample_batch(Split::Train, batch, block, &mut Rng::new(1338));
    assert_ne!(x, x3);

    // Consecutive calls on one generator continue the stream.
    let mut rng = Rng::new(7);
    let a = ds.sample_batch(Split::Val, 2, 8, &mut rng);
    let b = ds.sample_batch(Split::Val, 2, 8, &mut rng);
    assert_ne!(a, b);

    let train = ds.split(Split::Train);
    for b in 0..batch {
        let xr = &x[b * block..(b + 1) * block];
        let yr = &y[b * block..(b + 1) * block];
        assert_eq!(&xr[1..], &yr[..block - 1], "y is x shifted by one");
        let start = train
            .windows(block + 1)
            .position(|w| &w[..block] == xr && w[block] == yr[block - 1])
            .expect("each row is a contiguous block of the training split");
        assert_eq!(&train[start + 1..start + 1 + block], yr);
    }
}

#[test]
fn splits_stay_separate_and_blocks_are_bounded() {
    // 90 'a's then 10 'b's: train is all 'a', validation all 'b'.
    let text = format!("{}{}", "a".repeat(90), "b".repeat(10));
    let ds = TextDataset::from_text(&text, None);
    let (a, b) = (ds.tokenizer().encode("a")[0], ds.tokenizer().encode("b")[0]);
    assert_eq!(ds.split(Split::Train), &[a; 90][..]);
    assert_eq!(ds.split(Split::Val), &[b; 10][..]);
    assert_eq!(ds.max_block(Split::Val), 9);
    let mut rng = Rng::new(0);
    for _ in 0..100 {
        let (x, y) = ds.sample_batch(Split::Val, 3, 9, &mut rng);
        assert!(x.iter().chain(&y).all(|&t| t == b));
        let (x, y) = ds.sample_batch(Split::Train, 3, 89, &mut rng);
        assert!(x.iter().chain(&y).all(|&t| t == a));
    }
    // Every start position is reachable: block 1 on a counting sequence.
    let text: String = ('A'..='Z').collect();
    let ds = TextDataset::from_text(&text, None);
    let mut seen = BTreeSet::new();
    for _ in 0..2000 {
        let (x, y) = ds.sample_batch(Split::Train, 1, 1, &mut rng);
        assert_eq!(y[0], x[0] + 1);
        seen.insert(x[0]);
    }
    // floor(0.9 * 26) = 23 train tokens, so starts 0..22.
    assert_eq!(seen, (0..22).collect());
    assert!(ds.sample_batch(Split::Train, 0, 5, &mut rng).0.is_empty());
}

#[test]
#[should_panic(expected = "block size 10")]
fn too_long_block_panics_with_a_message() {
    let ds = TextDataset::from_text(&"x".repeat(100), None);
    ds.sample_batch(Split::Val, 1, 10, &mut Rng::new(0));
}
