//! A one-pass token estimate that needs no BPE: about 20x faster than an exact cold
//! count, for callers that estimate many requests (pre-call cost, budget checks on
//! large prompts) and can accept a few percent of error.
//!
//! The text is scanned once and reduced to twelve counts that track how the `o200k_base`
//! and `cl100k_base` pre-tokenizers split text (words, the extra length of long words,
//! 3-digit number groups, punctuation runs and their length, whitespace runs, and
//! non-ASCII characters by UTF-8 width). The estimate is a linear model over those counts whose coefficients were
//! fitted by least squares against exact counts (`cargo run -p gaterouter --example
//! fit_fast_estimate`, which prints the coefficients and the error, recorded in
//! `bench/RESULTS.md`).

use crate::count::Encoding;

/// Number of features.
pub const FEATURES: usize = 12;
/// Index of the CJK character count, which the estimator families scale separately.
pub const CJK: usize = 9;

// Byte classes.
const LETTER: u8 = 0;
const DIGIT: u8 = 1;
const SPACE: u8 = 2;
const WS: u8 = 3;
const PUNCT: u8 = 4;
const CJK3: u8 = 5;
const L2: u8 = 6;
const L4: u8 = 7;
const O3: u8 = 8;
const CONT: u8 = 9;
const CLASSES: usize = 10;

const fn class_of(b: u8) -> u8 {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => LETTER,
        b'0'..=b'9' => DIGIT,
        b' ' => SPACE,
        b'\t' | b'\n' | b'\r' | 0x0B | 0x0C => WS,
        0x00..=0x7F => PUNCT,
        0xC2..=0xDF => L2,
        0xE3..=0xED => CJK3,
        0xE0..=0xEF => O3,
        0xF0..=0xF4 => L4,
        _ => CONT,
    }
}

const fn is_word(x: u8) -> bool {
    x == LETTER || x == L2
}

/// The feature increments of a byte of class `c` after a byte of class `p`, packed as
/// 8-bit lanes (lane k = feature k, see [`features`]). Depending only on the pair (not
/// on a running state) keeps the loop free of a serial dependency.
const fn increments(p: u8, c: u8) -> u128 {
    let mut lanes = [0u8; FEATURES];
    // After a continuation byte the previous character was non-ASCII: in a word it was
    // a 2-byte letter (same word), elsewhere CJK or emoji, rarely followed by a letter.
    if is_word(c) && !is_word(p) && p != CONT {
        lanes[0] = 1;
    }
    if c == L2 {
        lanes[1] = 1;
    }
    if c == DIGIT {
        lanes[2] = 1;
        if p != DIGIT {
            lanes[3] = 1;
        }
    }
    if c == PUNCT {
        lanes[5] = 1;
        if p != PUNCT {
            lanes[4] = 1;
        }
    }
    if c == WS && p != WS {
        lanes[6] = 1;
    }
    if p == SPACE && c == SPACE {
        lanes[7] = 1;
    }
    if p == SPACE && c != SPACE && !is_word(c) {
        lanes[8] = 1;
    }
    if c == CJK3 {
        lanes[9] = 1;
    }
    if c == L4 {
        lanes[10] = 1;
    }
    if c == O3 {
        lanes[11] = 1;
    }
    let mut v: u128 = 0;
    let mut k = 0;
    while k < FEATURES {
        v |= (lanes[k] as u128) << (8 * k);
        k += 1;
    }
    v
}

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

/// Increments for every (previous class, class), indexed `previous * CLASSES + class`.
const INC: [u128; CLASSES * CLASSES] = {
    let mut t = [0u128; CLASSES * CLASSES];
    let mut p = 0;
    while p < CLASSES {
        let mut c = 0;
        while c < CLASSES {
            // A continuation byte belongs to the character before it: no increment.
            t[p * CLASSES + c] = if c == CONT as usize {
                0
            } else {
                increments(p as u8, c as u8)
            };
            c += 1;
        }
        p += 1;
    }
    t
};

/// Feature counts of a text, in one pass over byte pairs (lookups and one add per
/// byte, no serial dependency but the sum): 0 words (runs of ASCII letters and 2-byte
/// characters), 1 2-byte characters (accented Latin, Cyrillic...), 2 digits, 3 digit
/// runs, 4 punctuation runs, 5 punctuation characters, 6 runs of other whitespace
/// (newlines, tabs), 7 repeated spaces, 8 a space before a non-word, 9 CJK (3-byte,
/// U+3000..U+D7FF) characters, 10 4-byte characters (emoji...), 11 other 3-byte
/// characters (symbols, dashes).
pub fn features(text: &str) -> [u64; FEATURES] {
    let bytes = text.as_bytes();
    let mut out = [0u64; FEATURES];
    let mut prev = SPACE as usize;
    for block in bytes.chunks(255) {
        // Each byte adds at most 1 to a lane, so 255 bytes cannot overflow 8 bits.
        let mut acc: u128 = 0;
        for &b in block {
            let c = CLASS[b as usize] as usize;
            acc += INC[prev * CLASSES + c];
            prev = c;
        }
        for (k, o) in out.iter_mut().enumerate() {
            *o += ((acc >> (8 * k)) & 0xFF) as u64;
        }
    }
    out
}

/// Fitted coefficients in thousandths of a token per feature.
fn coefficients(enc: Encoding) -> &'static [u64; FEATURES] {
    match enc {
        Encoding::O200kBase => &O200K,
        Encoding::Cl100kBase => &CL100K,
    }
}

// Fitted by `examples/fit_fast_estimate.rs` on bench/corpus.txt plus accented, Cyrillic,
// Greek and emoji samples. Held-out error (bench/RESULTS.md): o200k median 4.0%, p90 12.3%,
// total +0.7%; cl100k median 3.6%, p90 14.1%, total +1.8%.
const O200K: [u64; FEATURES] = [1037, 173, 864, 0, 749, 45, 550, 0, 1403, 655, 330, 3857];
const CL100K: [u64; FEATURES] = [1026, 853, 885, 0, 738, 38, 587, 0, 1536, 1078, 1511, 3650];

/// Estimated tokens of `text` in `enc`, in thousandths (before rounding), split into
/// (non-CJK part, CJK part).
pub fn estimate_milli(text: &str, enc: Encoding) -> (u64, u64) {
    let f = features(text);
    let c = coefficients(enc);
    let mut other = 0u64;
    for k in 0..FEATURES {
        if k != CJK {
            other = other.saturating_add(f[k].saturating_mul(c[k]));
        }
    }
    (other, f[CJK].saturating_mul(c[CJK]))
}

/// Estimated tokens of `text` in `enc`.
pub fn estimate(text: &str, enc: Encoding) -> u64 {
    let (a, b) = estimate_milli(text, enc);
    a.saturating_add(b).div_ceil(1000)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn close_to_exact_on_ordinary_text() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/vectors/tokens.json")).unwrap();
        for t in v["texts"].as_array().unwrap() {
            let text = t["text"].as_str().unwrap();
            let name = t["name"].as_str().unwrap();
            for (enc, key) in [
                (Encoding::O200kBase, "o200k_base"),
                (Encoding::Cl100kBase, "cl100k_base"),
            ] {
                let exact = t[key].as_u64().unwrap();
                let est = estimate(text, enc);
                if exact == 0 {
                    assert_eq!(est, 0, "{name}");
                } else if exact >= 200 && name.starts_with("english") {
                    let err = (est as f64 - exact as f64).abs() / exact as f64;
                    assert!(err < 0.10, "{name} {key}: fast {est} vs exact {exact}");
                }
            }
        }
    }

    #[test]
    fn words_numbers_and_punctuation_count() {
        assert_eq!(estimate("", Encoding::O200kBase), 0);
        assert!(estimate("hello world", Encoding::O200kBase) >= 2);
        assert!(estimate("123456789", Encoding::O200kBase) >= 3);
        let cjk = "这是一个测试句子，用来估计中文的标记数量。".repeat(20);
        let exact = Encoding::O200kBase.count_uncached(&cjk) as f64;
        let est = estimate(&cjk, Encoding::O200kBase) as f64;
        assert!(
            (est - exact).abs() / exact < 0.35,
            "cjk fast {est} vs exact {exact}"
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_grows_with_text(s in ".{0,300}") {
            let a = estimate(&s, Encoding::O200kBase);
            let doubled = format!("{s}\n{s}");
            prop_assert!(estimate(&doubled, Encoding::O200kBase) >= a);
            let _ = estimate(&s, Encoding::Cl100kBase);
        }
    }
}
