//! Character-level text data for language models.
//!
//! - [`CharTokenizer`]: one token per Unicode scalar value (`char`), not per byte, so
//!   `"日本語"` is three tokens.
//! - [`TextDataset`]: a UTF-8 corpus encoded once, split by token position into the first 90%
//!   (training) and the last 10% (validation), as nanoGPT's `shakespeare_char` does, with
//!   random contiguous blocks for next-token training.
//!
//! # Vocabulary and the unknown token
//!
//! The vocabulary is a list of distinct `char`s **sorted by char value**; a char's token id is
//! its position in that list. The unknown token is the char [`UNKNOWN_CHAR`] (U+FFFD, the
//! Unicode replacement character): a vocabulary *has* an unknown token exactly when it contains
//! U+FFFD, and its id is wherever U+FFFD sorts (near the end: only chars above U+FFFD, such as
//! emoji, come after it). This keeps [`CharTokenizer::vocab`] self-describing: storing the
//! list of chars in a model file and rebuilding with [`CharTokenizer::from_vocab`] gives the
//! same tokenizer, unknown token included.
//!
//! With `max_vocab: Some(k)` and more than `k` distinct chars in the corpus, the `k - 1` most
//! frequent chars are kept (ties: the smaller char value wins; a literal U+FFFD in the corpus
//! is never kept on its own merits) and U+FFFD is added as the unknown token, for exactly `k`
//! ids. Every other char encodes to the unknown id. With `None`, or with at most `k` distinct
//! chars, every corpus char is kept and there is no unknown token (unless the corpus itself
//! contains U+FFFD).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use aka_core::rng::Rng;

use super::DataError;

/// The char that stands for the unknown token (U+FFFD REPLACEMENT CHARACTER).
pub const UNKNOWN_CHAR: char = '\u{FFFD}';

/// Marks an ASCII char that is not in the vocabulary in the lookup table.
const ABSENT: u32 = u32::MAX;

/// Maps chars to token ids and back. See the [module documentation](self) for the vocabulary
/// order and the unknown token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharTokenizer {
    vocab: Vec<char>,
    ids: HashMap<char, u32>,
    /// Fast path for ASCII: id or [`ABSENT`].
    ascii: [u32; 128],
    unknown: Option<u32>,
}

/// Error from [`CharTokenizer::from_vocab`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VocabError {
    /// The char appears more than once.
    Duplicate(char),
    /// More chars than token ids fit in a `u32`.
    TooLarge(usize),
}

impl fmt::Display for VocabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VocabError::Duplicate(c) => write!(f, "vocabulary lists {c:?} more than once"),
            VocabError::TooLarge(n) => write!(f, "vocabulary of {n} chars is too large"),
        }
    }
}

impl std::error::Error for VocabError {}

impl CharTokenizer {
    /// Builds the vocabulary of `corpus`. `max_vocab` caps the number of token ids (including
    /// the unknown token); `Some(0)` is treated as `Some(1)` (only the unknown token).
    pub fn from_corpus(corpus: &str, max_vocab: Option<usize>) -> CharTokenizer {
        let mut ascii_counts = [0u64; 128];
        let mut other: HashMap<char, u64> = HashMap::new();
        for c in corpus.chars() {
            if c.is_ascii() {
                ascii_counts[c as usize] += 1;
            } else {
                *other.entry(c).or_insert(0) += 1;
            }
        }
        let mut counts: Vec<(char, u64)> = (0u8..128)
            .filter(|&b| ascii_counts[b as usize] > 0)
            .map(|b| (b as char, ascii_counts[b as usize]))
            .chain(other)
            .collect();

        let mut vocab: Vec<char> = match max_vocab {
            Some(k) if counts.len() > k.max(1) => {
                let keep = k.max(1) - 1;
                counts.retain(|&(c, _)| c != UNKNOWN_CHAR);
                // Most frequent first; ties by char value.
                counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                counts.truncate(keep);
                let mut v: Vec<char> = counts.into_iter().map(|(c, _)| c).collect();
                v.push(UNKNOWN_CHAR);
                v
            }
            _ => counts.into_iter().map(|(c, _)| c).collect(),
        };
        vocab.sort_unstable();
        Self::from_vocab(vocab).expect("distinct chars, far fewer than 2^32")
    }

    /// Rebuilds a tokenizer from a stored [`CharTokenizer::vocab`]: token id `i` is
    /// `vocab[i]`, in the given order (which need not be sorted). U+FFFD, if present, is the
    /// unknown token.
    pub fn from_vocab(vocab: Vec<char>) -> Result<CharTokenizer, VocabError> {
        if u32::try_from(vocab.len()).is_err() {
            return Err(VocabError::TooLarge(vocab.len()));
        }
        let mut ids = HashMap::with_capacity(vocab.len());
        let mut ascii = [ABSENT; 128];
        for (i, &c) in vocab.iter().enumerate() {
            if ids.insert(c, i as u32).is_some() {
                return Err(VocabError::Duplicate(c));
            }
            if c.is_ascii() {
                ascii[c as usize] = i as u32;
            }
        }
        let unknown = ids.get(&UNKNOWN_CHAR).copied();
        Ok(CharTokenizer {
            vocab,
            ids,
            ascii,
            unknown,
        })
    }

    /// The chars of the vocabulary; token id `i` is `vocab()[i]`. Store this in a model file.
    pub fn vocab(&self) -> &[char] {
        &self.vocab
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The id of the unknown token ([`UNKNOWN_CHAR`]), if the vocabulary has one.
    pub fn unknown_id(&self) -> Option<u32> {
        self.unknown
    }

    /// The id of `c` if it is in the vocabulary (no unknown-token fallback).
    pub fn id(&self, c: char) -> Option<u32> {
        if c.is_ascii() {
            let id = self.ascii[c as usize];
            (id != ABSENT).then_some(id)
        } else {
            self.ids.get(&c).copied()
        }
    }

    /// Encodes `text`, one id per char. Chars outside the vocabulary become the unknown id;
    /// if the vocabulary has no unknown token they are **dropped** (use
    /// [`CharTokenizer::try_encode`] to detect this).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            if let Some(id) = self.id(c).or(self.unknown) {
                out.push(id);
            }
        }
        out
    }

    /// Encodes `text`, failing with the first char that has no id of its own and cannot be
    /// mapped to an unknown token.
    pub fn try_encode(&self, text: &str) -> Result<Vec<u32>, char> {
        text.chars()
            .map(|c| self.id(c).or(self.unknown).ok_or(c))
            .collect()
    }

    /// Decodes ids back to text. Ids `>= vocab_size()` decode to [`UNKNOWN_CHAR`].
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| self.vocab.get(i as usize).copied().unwrap_or(UNKNOWN_CHAR))
            .collect()
    }
}

/// Which part of a [`TextDataset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The first 90% of the tokens.
    Train,
    /// The last 10% of the tokens.
    Val,
}

/// A tokenized corpus split into training and validation tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextDataset {
    tokenizer: CharTokenizer,
    tokens: Vec<u32>,
    split_at: usize,
}

impl TextDataset {
    /// Loads a UTF-8 text file with a full vocabulary (`max_vocab: None`).
    pub fn load(path: &Path) -> Result<TextDataset, DataError> {
        Self::load_with_max_vocab(path, None)
    }

    /// Loads a UTF-8 text file, building the vocabulary with
    /// [`CharTokenizer::from_corpus`]`(text, max_vocab)`. Errors (naming the file) if it is
    /// missing, unreadable, empty, or not valid UTF-8. The text is used as is (no newline
    /// normalisation).
    pub fn load_with_max_vocab(
        path: &Path,
        max_vocab: Option<usize>,
    ) -> Result<TextDataset, DataError> {
        let text = read_text(path)?;
        Ok(Self::from_text(&text, max_vocab))
    }

    /// Tokenizes `text` with a vocabulary built from all of it (training and validation
    /// parts alike, as nanoGPT does).
    pub fn from_text(text: &str, max_vocab: Option<usize>) -> TextDataset {
        let tokenizer = CharTokenizer::from_corpus(text, max_vocab);
        Self::with_tokenizer(text, tokenizer)
    }

    /// Tokenizes `text` with an existing tokenizer (e.g. one stored in a model file);
    /// see [`CharTokenizer::encode`] for chars outside its vocabulary.
    pub fn with_tokenizer(text: &str, tokenizer: CharTokenizer) -> TextDataset {
        let tokens = tokenizer.encode(text);
        // floor(0.9 n), computed exactly.
        let n = tokens.len();
        let split_at = n / 10 * 9 + n % 10 * 9 / 10;
        TextDataset {
            tokenizer,
            tokens,
            split_at,
        }
    }

    pub fn tokenizer(&self) -> &CharTokenizer {
        &self.tokenizer
    }

    /// All tokens, training then validation.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The tokens of one split: `tokens[..floor(0.9 n)]` or `tokens[floor(0.9 n)..]`.
    pub fn split(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.tokens[..self.split_at],
            Split::Val => &self.tokens[self.split_at..],
        }
    }

    /// The largest `block` that [`TextDataset::sample_batch`] accepts for `split`
    /// (`split length - 1`, since targets need one extra token).
    pub fn max_block(&self, split: Split) -> usize {
        self.split(split).len().saturating_sub(1)
    }

    /// Samples `batch` random contiguous blocks of `block` tokens from `split`.
    ///
    /// Returns `(x, y)`, each `batch * block` ids, row-major (`x[b * block + t]`), where
    /// `y[b * block + t]` is the token following `x[b * block + t]` in the corpus. Each block
    /// start is uniform over `0..len - block` (as nanoGPT's `get_batch`), drawn from `rng` in
    /// order, so the same seed gives the same batches.
    ///
    /// # Panics
    /// If `block == 0` or `block > max_block(split)`.
    pub fn sample_batch(
        &self,
        split: Split,
        batch: usize,
        block: usize,
        rng: &mut Rng,
    ) -> (Vec<u32>, Vec<u32>) {
        let data = self.split(split);
        assert!(
            block > 0 && block < data.len(),
            "block size {block} needs 1..={} for the {split:?} split of {} tokens",
            self.max_block(split),
            data.len()
        );
        let starts = (data.len() - block) as u64;
        let mut x = Vec::with_capacity(batch * block);
        let mut y = Vec::with_capacity(batch * block);
        for _ in 0..batch {
            let i = ((u128::from(rng.next_u64()) * u128::from(starts)) >> 64) as usize;
            x.extend_from_slice(&data[i..i + block]);
            y.extend_from_slice(&data[i + 1..i + 1 + block]);
        }
        (x, y)
    }
}

/// Reads a whole file as UTF-8, with errors that name the file.
pub fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| DataError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}
