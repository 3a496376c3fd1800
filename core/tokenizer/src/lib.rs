//! Exact token counts for OpenAI's `o200k_base` and `cl100k_base` byte-pair encodings, in a
//! small binary and fast from the first call.
//!
//! The map of this crate, in the order a text flows through it:
//!
//! - [`classes`]: the Unicode classes tiktoken's patterns use (letters by case, marks,
//!   numbers, white space), as tables generated at build time from `regex-syntax`.
//! - [`pretokenize`]: the pieces each encoding's split pattern cuts a text into,
//!   hand-written (no regex engine, no backtracking at run time) and checked against
//!   the regexes.
//! - [`bpe`]: tiktoken's lowest-rank-first merge of one piece over the rank table.
//! - [`Tokenizer`]: the two together, with the vocabularies embedded compactly (2.3 MB for
//!   both, one length byte per token) and hashed on first use.
//!
//! Why not `bpe-openai` or `tiktoken-rs` (measured in `bench/RESULTS.md`): the first adds
//! about 48 MB of precomputed tables to every binary, the second counts at about 1.2x
//! Python tiktoken; this crate adds about 3 MB and counts faster than either on one thread,
//! with identical counts (`tests/oracle.rs` compares pieces, ids and counts with
//! tiktoken-rs).
//!
//! ```
//! let tok = gaterouter_tokenizer::o200k_base();
//! assert_eq!(tok.count("Hello, world!"), 4);
//! assert_eq!(tok.encode("Hello, world!"), vec![13225, 11, 2375, 0]);
//! ```

pub mod bpe;
pub mod classes;
pub mod pretokenize;

use std::sync::OnceLock;

use bpe::{Rank, Vocab};

/// The split rules of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `o200k_base`'s pattern (gpt-4o, gpt-4.1, gpt-5, o-series).
    O200k,
    /// `cl100k_base`'s pattern (gpt-4, gpt-3.5-turbo, text-embedding-3).
    Cl100k,
}

impl Split {
    fn next_fn(self) -> fn(&[u8], usize) -> usize {
        match self {
            Split::O200k => pretokenize::o200k_next,
            Split::Cl100k => pretokenize::cl100k_next,
        }
    }
}

/// A byte-pair tokenizer: split rules and a vocabulary. Special tokens
/// (`<|endoftext|>`...) are not recognised: such text counts as ordinary text, as
/// tiktoken's `encode_ordinary` does.
pub struct Tokenizer {
    split: Split,
    vocab: Vocab,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("split", &self.split)
            .field("vocab_size", &self.vocab.len())
            .finish()
    }
}

impl Tokenizer {
    /// A tokenizer from split rules and a compact vocabulary (see `data/make_vocab.py`).
    pub fn new(split: Split, compact_vocab: &'static [u8]) -> Tokenizer {
        Tokenizer {
            split,
            vocab: Vocab::from_compact(compact_vocab),
        }
    }

    /// Number of tokens in the vocabulary (special tokens excluded).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The pre-tokenizer pieces of `text`.
    pub fn pieces<'a>(&self, text: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        pretokenize::pieces(text, self.split.next_fn())
    }

    /// Number of tokens of `text`.
    pub fn count(&self, text: &str) -> usize {
        let mut scratch = Vec::new();
        self.pieces(text)
            .map(|p| self.vocab.count_piece(p.as_bytes(), &mut scratch))
            .sum()
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<Rank> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        for p in self.pieces(text) {
            self.vocab.encode_piece(p.as_bytes(), &mut out);
        }
        out
    }
}

static O200K_VOCAB: &[u8] = include_bytes!("../data/o200k_base.vocab");
static CL100K_VOCAB: &[u8] = include_bytes!("../data/cl100k_base.vocab");

/// `o200k_base`, built on first use (a few milliseconds) and shared.
pub fn o200k_base() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::new(Split::O200k, O200K_VOCAB))
}

/// `cl100k_base`, built on first use and shared.
pub fn cl100k_base() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::new(Split::Cl100k, CL100K_VOCAB))
}
