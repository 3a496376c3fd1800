//! Byte-pair merging over a rank table, as tiktoken does it: repeatedly merge the adjacent
//! pair whose concatenation has the lowest rank (the leftmost on ties) until no pair is a
//! token. Short pieces use tiktoken's vector scan; long ones a binary heap over a linked
//! list, so a 1 MB piece without spaces (a base64 image, a minified file) costs
//! O(n log n) instead of O(n²). Both give the same tokens; tests check it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Pieces at least this long use the heap.
const HEAP_MIN_BYTES: usize = 96;

/// A token id (tiktoken's rank).
pub type Rank = u32;

/// The vocabulary: each token's bytes and its rank.
pub struct Vocab {
    ranks: HashMap<&'static [u8], Rank, foldhash::fast::FixedState>,
}

impl std::fmt::Debug for Vocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab")
            .field("len", &self.ranks.len())
            .finish()
    }
}

impl Vocab {
    /// Reads the compact form: for each rank in order, a length byte then the token's
    /// bytes (`data/make_vocab.py` writes it).
    pub fn from_compact(data: &'static [u8]) -> Vocab {
        let mut ranks = HashMap::with_capacity_and_hasher(
            data.len() / 7,
            foldhash::fast::FixedState::with_seed(0x5eed_7a61),
        );
        let mut i = 0;
        let mut rank: Rank = 0;
        while let Some(&len) = data.get(i) {
            let Some(token) = data.get(i + 1..i + 1 + usize::from(len)) else {
                break;
            };
            ranks.insert(token, rank);
            rank += 1;
            i += 1 + usize::from(len);
        }
        Vocab { ranks }
    }

    /// Number of tokens.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    /// Whether the vocabulary is empty (never, for the embedded ones).
    pub fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }

    /// The rank of `bytes` if they are one token.
    #[inline(always)]
    pub fn rank(&self, bytes: &[u8]) -> Option<Rank> {
        self.ranks.get(bytes).copied()
    }

    /// Number of tokens of one pre-tokenizer piece. `scratch` is reused between calls.
    #[inline]
    pub fn count_piece(&self, piece: &[u8], scratch: &mut Vec<(usize, Rank)>) -> usize {
        if piece.len() <= 1 || self.ranks.contains_key(piece) {
            return piece.len().min(1);
        }
        if piece.len() >= HEAP_MIN_BYTES {
            return self.merge_heap(piece).len() - 1;
        }
        self.merge_scan(piece, scratch);
        scratch.len() - 1
    }

    /// Appends the token ids of one piece to `out`.
    pub fn encode_piece(&self, piece: &[u8], out: &mut Vec<Rank>) {
        if piece.is_empty() {
            return;
        }
        if let Some(r) = self.rank(piece) {
            out.push(r);
            return;
        }
        let bounds: Vec<usize> = if piece.len() >= HEAP_MIN_BYTES {
            self.merge_heap(piece)
        } else {
            let mut scratch = Vec::new();
            self.merge_scan(piece, &mut scratch);
            scratch.iter().map(|&(start, _)| start).collect()
        };
        for w in bounds.windows(2) {
            // Every part left by the merge is a token: single bytes are, and merges only
            // form tokens. `unwrap_or` keeps a corrupt table from panicking.
            out.push(self.rank(&piece[w[0]..w[1]]).unwrap_or(Rank::MAX));
        }
    }

    #[inline(always)]
    fn pair_rank(&self, piece: &[u8], start: usize, end: usize) -> Rank {
        self.rank(&piece[start..end]).unwrap_or(Rank::MAX)
    }

    /// tiktoken's `byte_pair_merge`: leaves in `parts` the start of each final token, plus
    /// `piece.len()` last.
    fn merge_scan(&self, piece: &[u8], parts: &mut Vec<(usize, Rank)>) {
        parts.clear();
        let mut min = (Rank::MAX, usize::MAX);
        for i in 0..piece.len() - 1 {
            let r = self.pair_rank(piece, i, i + 2);
            if r < min.0 {
                min = (r, i);
            }
            parts.push((i, r));
        }
        parts.push((piece.len() - 1, Rank::MAX));
        parts.push((piece.len(), Rank::MAX));
        let rank_at = |parts: &Vec<(usize, Rank)>, i: usize| {
            if i + 3 < parts.len() {
                self.pair_rank(piece, parts[i].0, parts[i + 3].0)
            } else {
                Rank::MAX
            }
        };
        while min.0 != Rank::MAX {
            let i = min.1;
            if i > 0 {
                parts[i - 1].1 = rank_at(parts, i - 1);
            }
            parts[i].1 = rank_at(parts, i);
            parts.remove(i + 1);
            min = (Rank::MAX, usize::MAX);
            for (k, &(_, r)) in parts[..parts.len() - 1].iter().enumerate() {
                if r < min.0 {
                    min = (r, k);
                }
            }
        }
    }

    /// The same merge order with a heap keyed by (rank, start): the lowest rank first,
    /// the leftmost among equal ranks, exactly as the scan. Returns the token starts
    /// followed by `piece.len()`.
    fn merge_heap(&self, piece: &[u8]) -> Vec<usize> {
        let n = piece.len();
        // Node k is the part starting at byte `start[k]`; parts are linked left to right.
        let start: Vec<usize> = (0..n).collect();
        let mut next: Vec<usize> = (1..=n).collect(); // n = none
        let mut prev: Vec<usize> = (0..n).map(|k| k.wrapping_sub(1)).collect(); // usize::MAX = none
        let mut alive = vec![true; n];
        let end_of = |next: &Vec<usize>, start: &Vec<usize>, k: usize| {
            if next[k] < n { start[next[k]] } else { n }
        };
        // Pair (k, next[k]) spans start[k]..end_of(next[k]).
        let mut heap: BinaryHeap<Reverse<(Rank, usize, usize)>> = BinaryHeap::with_capacity(n);
        for k in 0..n - 1 {
            let r = self.pair_rank(piece, k, k + 2);
            if r != Rank::MAX {
                heap.push(Reverse((r, k, k + 2)));
            }
        }
        while let Some(Reverse((r, s, e))) = heap.pop() {
            // Stale unless node `s` still starts a pair ending exactly at `e`.
            let k = s; // node ids equal their initial start offsets
            if !alive[k] || next[k] >= n {
                continue;
            }
            let j = next[k];
            if end_of(&next, &start, j) != e {
                continue;
            }
            // Merge j into k.
            alive[j] = false;
            next[k] = next[j];
            if next[k] < n {
                prev[next[k]] = k;
            }
            let _ = r;
            // New pairs: (prev, k) and (k, next).
            let p = prev[k];
            if p != usize::MAX {
                let pe = end_of(&next, &start, k);
                let pr = self.pair_rank(piece, start[p], pe);
                if pr != Rank::MAX {
                    heap.push(Reverse((pr, start[p], pe)));
                }
            }
            if next[k] < n {
                let ne = end_of(&next, &start, next[k]);
                let nr = self.pair_rank(piece, start[k], ne);
                if nr != Rank::MAX {
                    heap.push(Reverse((nr, start[k], ne)));
                }
            }
        }
        let mut bounds = Vec::new();
        let mut k = 0;
        while k < n {
            bounds.push(start[k]);
            k = next[k];
        }
        bounds.push(n);
        bounds
    }
}
