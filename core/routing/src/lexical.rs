//! Hashed word n-gram features: the lexical half of the scorer.
//!
//! The structural features (length, code, math, cues) say little about whether the weak
//! model will fail on a given question; the *kind* of question does (a numeric word
//! problem, formal logic, a legal scenario, a recall question about geography). The words
//! carry that, so the request's text is turned into hashed unigrams and bigrams (lowercased
//! ASCII words, every number collapsed to one token, punctuation kept as one-character
//! tokens) in `2^bits` buckets, and a linear model gives each bucket a weight. The term
//! values are counts divided by the square root of the number of terms, so one long prompt
//! does not dwarf a short one.
//!
//! Cost: one pass over the text, no allocation; a table lookup per term. The scan reads at
//! most [`MAX_SCAN_BYTES`] of text (the last bytes of the conversation, where the question
//! is), so the lexical part costs the same for a 2k-token and a 200k-token request.

use gaterouter_types::types::{ChatRequest, Content, ContentPart};

/// Bytes of text the lexical scan reads at most (from the end of the conversation).
pub const MAX_SCAN_BYTES: usize = 4096;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;
/// Token hash of any number.
const NUMBER_TOKEN: u64 = 0x9e37_79b9_7f4a_7c15;
/// Seed of the (empty) previous word at the start of the text.
const START_TOKEN: u64 = 0x2545_f491_4f6c_dd1d;

#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Calls `f(bucket)` for every unigram and bigram of the text, in order.
struct TermScan<F: FnMut(u32)> {
    mask: u64,
    salt: u64,
    prev: u64,
    cur: u64,
    in_word: bool,
    is_number: bool,
    f: F,
}

impl<F: FnMut(u32)> TermScan<F> {
    #[inline]
    fn emit(&mut self, tok: u64) {
        let uni = mix(tok ^ self.salt);
        (self.f)((uni & self.mask) as u32);
        let bi = mix(self.prev.rotate_left(17) ^ tok ^ 0x5bd1_e995 ^ self.salt);
        (self.f)((bi & self.mask) as u32);
        self.prev = tok;
    }

    #[inline]
    fn end_word(&mut self) {
        if self.in_word {
            let tok = if self.is_number {
                NUMBER_TOKEN
            } else {
                self.cur
            };
            self.emit(tok);
            self.in_word = false;
        }
    }

    fn feed(&mut self, text: &[u8]) {
        for &c in text {
            let lower = c.to_ascii_lowercase();
            if lower.is_ascii_alphanumeric() || c >= 0x80 {
                if !self.in_word {
                    self.in_word = true;
                    self.is_number = true;
                    self.cur = FNV_OFFSET;
                }
                // "1,000" and "3.5" stay one number; letters make it a word.
                self.is_number &= lower.is_ascii_digit();
                self.cur = (self.cur ^ u64::from(lower)).wrapping_mul(FNV_PRIME);
            } else if self.in_word && self.is_number && (c == b'.' || c == b',') {
                // keep the number going
            } else {
                self.end_word();
                if c.is_ascii_punctuation() {
                    self.emit(u64::from(c).wrapping_mul(0x9e37_79b9) ^ 0xabcd);
                }
            }
        }
        self.end_word();
    }
}

/// The text the lexical scan reads: message texts in order, but only the last
/// [`MAX_SCAN_BYTES`] bytes in total.
fn for_each_text(req: &ChatRequest, mut f: impl FnMut(&[u8])) {
    // Walk backwards to find where the budget starts, then feed forwards.
    let mut budget = MAX_SCAN_BYTES;
    let mut start_msg = 0usize;
    let mut start_skip = 0usize;
    'outer: for (mi, m) in req.messages.iter().enumerate().rev() {
        let len = match &m.content {
            Some(Content::Text(t)) => t.len(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => text.len(),
                    ContentPart::ImageUrl { .. } => 0,
                })
                .sum(),
            None => 0,
        };
        start_msg = mi;
        if len >= budget {
            start_skip = len - budget;
            break 'outer;
        }
        budget -= len;
    }
    for m in req.messages.iter().skip(start_msg) {
        let mut skip = std::mem::take(&mut start_skip);
        let mut feed = |t: &str| {
            let b = t.as_bytes();
            if skip >= b.len() {
                skip -= b.len();
            } else {
                f(&b[skip..]);
                skip = 0;
            }
        };
        match &m.content {
            Some(Content::Text(t)) => feed(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    if let ContentPart::Text { text } = p {
                        feed(text);
                    }
                }
            }
            None => {}
        }
    }
}

/// Where terms land: `2^bits` buckets, and a salt mixed into every hash. Salt 0 is the
/// public hashing (builtin and file weights); an organization that learns from its own
/// traffic gets its own salt (served with its policy), so the bucket ids its usage
/// records carry cannot be matched against a dictionary hashed without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hashing {
    /// `2^bits` buckets.
    pub bits: u8,
    /// Mixed into every term hash.
    pub salt: u64,
}

impl Hashing {
    /// Unsalted hashing into `2^bits` buckets.
    pub const fn plain(bits: u8) -> Self {
        Hashing { bits, salt: 0 }
    }
}

impl From<u8> for Hashing {
    fn from(bits: u8) -> Self {
        Hashing::plain(bits)
    }
}

/// Calls `f(bucket)` for every hashed term of the request (buckets `< 2^bits`);
/// returns the number of terms.
pub fn for_each_term(req: &ChatRequest, h: impl Into<Hashing>, mut f: impl FnMut(u32)) -> usize {
    let Hashing { bits, salt } = h.into();
    let mut n = 0usize;
    let mut counted = |b: u32| {
        n += 1;
        f(b)
    };
    let mut scan = TermScan {
        mask: (1u64 << bits.min(31)) - 1,
        salt,
        prev: START_TOKEN,
        cur: FNV_OFFSET,
        in_word: false,
        is_number: false,
        f: &mut counted,
    };
    for_each_text(req, |t| scan.feed(t));
    n
}

/// The request's terms as a sparse vector: sorted `(bucket, value)` pairs, values
/// `count / sqrt(terms)`. For calibration; scoring sums weights without building it.
pub fn sparse_terms(req: &ChatRequest, h: impl Into<Hashing>) -> Vec<(u32, f32)> {
    let mut v = Vec::new();
    let n = for_each_term(req, h, |b| v.push(b));
    v.sort_unstable();
    let norm = 1.0 / (n.max(1) as f32).sqrt();
    let mut out: Vec<(u32, f32)> = Vec::with_capacity(v.len());
    for b in v {
        match out.last_mut() {
            Some((lb, c)) if *lb == b => *c += norm,
            _ => out.push((b, norm)),
        }
    }
    out
}

/// The request's distinct terms as a sparse vector: sorted `(bucket, 1 / sqrt(distinct
/// buckets))` pairs (binary term values, what `route calibrate` fits).
pub fn sparse_terms_binary(req: &ChatRequest, h: impl Into<Hashing>) -> Vec<(u32, f32)> {
    let mut v = sparse_terms(req, h);
    let k = 1.0 / (v.len().max(1) as f32).sqrt();
    v.iter_mut().for_each(|t| t.1 = k);
    v
}

/// The number of terms and the lexical logit, with counted (`binary == false`: as
/// [`lexical_logit_terms`]) or binary term values (`Σ weight[bucket] / sqrt(distinct
/// buckets)` over the distinct buckets, found with a bitset of `2^bits` bits).
pub fn lexical_logit_terms_with(
    req: &ChatRequest,
    h: impl Into<Hashing>,
    weights: &[f32],
    binary: bool,
) -> (usize, f64) {
    if !binary {
        return lexical_logit_terms(req, h, weights);
    }
    let h = h.into();
    let mut seen = vec![0u64; (1usize << h.bits.min(31)).div_ceil(64)];
    let mut sum = 0.0f32;
    let mut distinct = 0usize;
    let n = for_each_term(req, h, |b| {
        let (w, m) = ((b >> 6) as usize, 1u64 << (b & 63));
        if let Some(word) = seen.get_mut(w) {
            if *word & m == 0 {
                *word |= m;
                distinct += 1;
                sum += weights.get(b as usize).copied().unwrap_or(0.0);
            }
        }
    });
    (
        n,
        if distinct == 0 {
            0.0
        } else {
            f64::from(sum) / (distinct as f64).sqrt()
        },
    )
}

/// `Σ weight[term] / sqrt(terms)` over the request's terms: the lexical logit.
pub fn lexical_logit(req: &ChatRequest, h: impl Into<Hashing>, weights: &[f32]) -> f64 {
    lexical_logit_terms(req, h, weights).1
}

/// The number of terms and the lexical logit.
pub fn lexical_logit_terms(
    req: &ChatRequest,
    h: impl Into<Hashing>,
    weights: &[f32],
) -> (usize, f64) {
    let mut sum = 0.0f32;
    let n = for_each_term(req, h, |b| {
        sum += weights.get(b as usize).copied().unwrap_or(0.0)
    });
    (
        n,
        if n == 0 {
            0.0
        } else {
            f64::from(sum) / (n as f64).sqrt()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaterouter_types::types::Message;

    fn req(t: &str) -> ChatRequest {
        ChatRequest::new("auto", vec![Message::user(t)])
    }

    #[test]
    fn numbers_collapse_and_case_is_ignored() {
        assert_eq!(
            sparse_terms(&req("Pay 12 dollars"), 16),
            sparse_terms(&req("pay 3,500.25 DOLLARS"), 16)
        );
        assert_ne!(
            sparse_terms(&req("pay twelve dollars"), 16),
            sparse_terms(&req("pay 12 dollars"), 16)
        );
    }

    #[test]
    fn counts_unigrams_and_bigrams() {
        let mut n = 0;
        assert_eq!(
            for_each_term(&req("a b, c"), 10, |b| {
                assert!(b < 1024);
                n += 1;
            }),
            8
        );
        assert_eq!(n, 8);
        assert_eq!(for_each_term(&req(""), 10, |_| {}), 0);
    }

    #[test]
    fn scan_is_capped_to_the_end_of_the_text() {
        let long = format!(
            "{}{}",
            "filler words here ".repeat(2000),
            "what is the capital"
        );
        let tail = &long[long.len() - MAX_SCAN_BYTES..];
        assert_eq!(sparse_terms(&req(&long), 12), sparse_terms(&req(tail), 12));
        let two = ChatRequest::new(
            "auto",
            vec![
                Message::user("x ".repeat(5000)),
                Message::user("final question"),
            ],
        );
        let n = for_each_term(&two, 12, |_| {});
        assert!(n > 2 && n <= 2 * MAX_SCAN_BYTES, "{n}");
    }

    #[test]
    fn a_salt_moves_every_term() {
        let r = req("what is the capital of france");
        let plain = sparse_terms(&r, 14);
        assert_eq!(plain, sparse_terms(&r, Hashing { bits: 14, salt: 0 }));
        let salted = sparse_terms(
            &r,
            Hashing {
                bits: 14,
                salt: 0x1234_5678_9abc_def0,
            },
        );
        let count = |salt| for_each_term(&r, Hashing { bits: 14, salt }, |_| {});
        assert_eq!(count(0), count(0x1234_5678_9abc_def0));
        assert_ne!(plain, salted);
        let other = sparse_terms(&r, Hashing { bits: 14, salt: 7 });
        assert_ne!(salted, other);
    }

    #[test]
    fn binary_values_count_each_bucket_once() {
        let bits = 8;
        let w: Vec<f32> = (0..256).map(|i| i as f32 / 256.0).collect();
        let r = req("the cat the cat the cat");
        let v = sparse_terms_binary(&r, bits);
        let k = 1.0 / (v.len() as f32).sqrt();
        assert!(v.iter().all(|t| (t.1 - k).abs() < 1e-7));
        let direct: f64 = v.iter().map(|(b, x)| f64::from(w[*b as usize] * x)).sum();
        let (n, z) = lexical_logit_terms_with(&r, bits, &w, true);
        assert_eq!(n, 12);
        assert!((z - direct).abs() < 1e-5, "{z} {direct}");
        assert_eq!(
            lexical_logit_terms_with(&r, bits, &w, false),
            lexical_logit_terms(&r, bits, &w)
        );
        assert_eq!(lexical_logit_terms_with(&req(""), bits, &w, true).1, 0.0);
    }

    #[test]
    fn logit_sums_weights() {
        let bits = 8;
        let w = vec![1.0f32; 256];
        let r = req("one two three");
        // 6 terms, each weight 1 -> 6 / sqrt(6)
        assert!((lexical_logit(&r, bits, &w) - 6f64.sqrt()).abs() < 1e-6);
        assert_eq!(lexical_logit(&r, bits, &[]), 0.0);
    }
}
