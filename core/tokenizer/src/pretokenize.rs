//! Pre-tokenizers: the pieces tiktoken's split regexes cut a text into, without a regex.
//!
//! Each function returns where the piece starting at byte `i` ends, following the regex's
//! alternatives in order with the backtracking a leftmost-first engine (fancy-regex, as in
//! tiktoken) would do. The patterns, as tiktoken 0.14 and tiktoken-rs 0.12 write them:
//!
//! ```text
//! o200k_base:  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//!             |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//!             |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! cl100k_base: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+
//!             |\s++$|\s*[\r\n]|\s+(?!\S)|\s
//! ```
//!
//! Tests compare every piece with tiktoken-rs's regexes on the benchmark corpus and on
//! random texts drawn from every class (`tests/oracle.rs`).

use crate::classes::{self, L, LOWER, N, UPPER, WS};

/// `[^\s\p{L}\p{N}]`: punctuation, symbols and everything else that is not a letter,
/// number or space.
#[inline(always)]
fn is_other(bits: u8) -> bool {
    bits & (L | N | WS) == 0
}

/// `[^\r\n\p{L}\p{N}]`: the optional character before a word.
#[inline(always)]
fn is_prefix(bits: u8, byte: u8) -> bool {
    bits & (L | N) == 0 && byte != b'\r' && byte != b'\n'
}

#[inline(always)]
fn is_newline(byte: u8) -> bool {
    byte == b'\r' || byte == b'\n'
}

/// End of the run of characters whose class intersects `set`, from `i`.
#[inline(always)]
fn run(s: &[u8], mut i: usize, set: u8) -> usize {
    loop {
        let (bits, len) = classes::at(s, i);
        if len == 0 || bits & set == 0 {
            return i;
        }
        i += len;
    }
}

/// End of the run of [`is_other`] characters from `i`.
#[inline(always)]
fn other_run(s: &[u8], mut i: usize) -> usize {
    loop {
        let (bits, len) = classes::at(s, i);
        if len == 0 || !is_other(bits) {
            return i;
        }
        i += len;
    }
}

/// Length of `'s|'t|'re|'ve|'m|'ll|'d` (case-insensitive, with Unicode simple folding:
/// `ſ` matches `s`) at `i`, or 0. With `cl100k`'s set the same letters apply.
#[inline]
fn contraction(s: &[u8], i: usize) -> usize {
    if s.get(i) != Some(&b'\'') {
        return 0;
    }
    let lower = |k: usize| s.get(i + k).map(u8::to_ascii_lowercase);
    match lower(1) {
        Some(b's' | b't' | b'm' | b'd') => 2,
        Some(b'r') if lower(2) == Some(b'e') => 3,
        Some(b'v') if lower(2) == Some(b'e') => 3,
        Some(b'l') if lower(2) == Some(b'l') => 3,
        // U+017F LATIN SMALL LETTER LONG S folds to `s`.
        Some(0xc5) if s.get(i + 2) == Some(&0xbf) => 3,
        _ => 0,
    }
}

/// Whitespace pieces, shared by both encodings: scans the run of `\s` from `i` and
/// returns (run end, end of the last `\r`/`\n` in it if any, start of its last character).
#[inline]
fn whitespace_run(s: &[u8], i: usize) -> (usize, Option<usize>, usize) {
    let mut j = i;
    let mut last_newline_end = None;
    let mut last_start = i;
    loop {
        let (bits, len) = classes::at(s, j);
        if len == 0 || bits & WS == 0 {
            return (j, last_newline_end, last_start);
        }
        if is_newline(s[j]) {
            last_newline_end = Some(j + 1);
        }
        last_start = j;
        j += len;
    }
}

/// `A? B* C+ D?` of o200k's first alternative, from `p` (after the optional prefix).
/// `B` = [`UPPER`], `C` = [`LOWER`]: the greedy `B*` gives back characters until `C+` can
/// start, so the match ends after the last `LOWER` character reachable.
#[inline]
fn o200k_word_lower(s: &[u8], p: usize) -> Option<usize> {
    let mut q = p;
    let mut last_lower_end = None;
    loop {
        let (bits, len) = classes::at(s, q);
        if len == 0 || bits & UPPER == 0 {
            break;
        }
        if bits & LOWER != 0 {
            last_lower_end = Some(q + len);
        }
        q += len;
    }
    let (bits, len) = classes::at(s, q);
    let end = if len > 0 && bits & LOWER != 0 {
        run(s, q + len, LOWER)
    } else {
        last_lower_end?
    };
    Some(end + contraction(s, end))
}

/// `A? B+ C* D?` of o200k's second alternative, from `p`.
#[inline]
fn o200k_word_upper(s: &[u8], p: usize) -> Option<usize> {
    let (bits, len) = classes::at(s, p);
    if len == 0 || bits & UPPER == 0 {
        return None;
    }
    let end = run(s, run(s, p + len, UPPER), LOWER);
    Some(end + contraction(s, end))
}

/// End of the `o200k_base` piece that starts at `i` (`i < s.len()`).
pub fn o200k_next(s: &[u8], i: usize) -> usize {
    let (bits, len) = classes::at(s, i);
    let byte = s[i];
    // Letters: the two word alternatives, each first with the optional prefix character.
    let prefix = is_prefix(bits, byte);
    if prefix || bits & (UPPER | LOWER) != 0 {
        let starts = [(prefix, i + len), (bits & (UPPER | LOWER) != 0, i)];
        for (ok, p) in starts {
            if ok && let Some(end) = o200k_word_lower(s, p) {
                return end;
            }
        }
        for (ok, p) in starts {
            if ok && let Some(end) = o200k_word_upper(s, p) {
                return end;
            }
        }
    }
    if bits & N != 0 {
        return digits(s, i + len);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    let other_from = if byte == b' ' && is_other(classes::at(s, i + 1).0) {
        Some(i + 1)
    } else if is_other(bits) {
        Some(i)
    } else {
        None
    };
    if let Some(o) = other_from {
        let mut end = other_run(s, o);
        while matches!(s.get(end), Some(b'\r' | b'\n' | b'/')) {
            end += 1;
        }
        return end;
    }
    // Whitespace: `\s*[\r\n]+`, then `\s+(?!\S)`, then `\s+`.
    let (j, last_newline_end, last_start) = whitespace_run(s, i);
    if let Some(end) = last_newline_end {
        return end;
    }
    if j == s.len() || last_start == i {
        return j;
    }
    last_start
}

/// `\p{N}{1,3}`: up to two more numbers after the first (which ends at `from`).
#[inline]
fn digits(s: &[u8], from: usize) -> usize {
    let mut end = from;
    for _ in 0..2 {
        let (bits, len) = classes::at(s, end);
        if len == 0 || bits & N == 0 {
            break;
        }
        end += len;
    }
    end
}

/// End of the `cl100k_base` piece that starts at `i` (`i < s.len()`).
pub fn cl100k_next(s: &[u8], i: usize) -> usize {
    let contraction_len = contraction(s, i);
    if contraction_len > 0 {
        return i + contraction_len;
    }
    let (bits, len) = classes::at(s, i);
    let byte = s[i];
    // `[^\r\n\p{L}\p{N}]?+\p{L}++`
    if bits & L != 0 {
        return run(s, i + len, L);
    }
    if is_prefix(bits, byte) {
        let (next, next_len) = classes::at(s, i + len);
        if next_len > 0 && next & L != 0 {
            return run(s, i + len + next_len, L);
        }
    }
    if bits & N != 0 {
        return digits(s, i + len);
    }
    // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
    let other_from = if byte == b' ' && is_other(classes::at(s, i + 1).0) {
        Some(i + 1)
    } else if is_other(bits) {
        Some(i)
    } else {
        None
    };
    if let Some(o) = other_from {
        let mut end = other_run(s, o);
        while matches!(s.get(end), Some(b'\r' | b'\n')) {
            end += 1;
        }
        return end;
    }
    // Whitespace: `\s++$`, then `\s*[\r\n]`, then `\s+(?!\S)`, then `\s`.
    let (j, last_newline_end, last_start) = whitespace_run(s, i);
    if j == s.len() {
        return j;
    }
    if let Some(end) = last_newline_end {
        return end;
    }
    if last_start > i {
        return last_start;
    }
    i + len
}

/// The pieces of `text` under `next` (one of the functions above).
pub fn pieces<'a>(
    text: &'a str,
    next: fn(&[u8], usize) -> usize,
) -> impl Iterator<Item = &'a str> + 'a {
    let s = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= s.len() {
            return None;
        }
        let start = i;
        i = next(s, i).max(start + 1);
        // Every end is a character boundary; `get` keeps a bug from becoming a panic.
        text.get(start..i)
    })
}
