//! Cheap text features of a [`ChatRequest`], computed in one pass over its bytes.
//!
//! Routing sits in front of every `auto` call, so the scan must cost microseconds:
//! no regex, no allocation, no lookbehind beyond a two-word window. Each feature has
//! a raw value (a count or share a human can check) and a normalized value, a fixed
//! transform of the raw value to roughly `[0, 1]`, which the weights multiply. The
//! transforms are fixed in code (not fitted) so that a feature the calibration data
//! never exercises (tools, CJK text, code) still has a meaningful scale.

use gaterouter_types::types::{ChatRequest, Content, ContentPart, Role};
use serde_json::Value;

/// Number of features.
pub const N_FEATURES: usize = <Feature as strum::EnumCount>::COUNT;

/// The features, in the order of [`FEATURE_NAMES`] and of every feature array. Their
/// names (`snake_case`, as in weights files and score reports) come from `strum`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumCount,
    strum::VariantArray,
    strum::VariantNames,
)]
#[strum(serialize_all = "snake_case")]
#[repr(usize)]
pub enum Feature {
    /// Estimated prompt tokens (log-scaled).
    Tokens,
    /// Conversation depth: assistant turns so far.
    Depth,
    /// Code fences, code keywords and code punctuation.
    Code,
    /// Math and formal notation density (operators, LaTeX, logic symbols).
    Math,
    /// Count of numeric literals.
    Numbers,
    /// Reasoning cues: "prove", "derive", "step by step", "explain why"...
    Reasoning,
    /// Multi-part instructions and constraints: list items, "must", "at least", "and then"...
    Constraints,
    /// Tool definitions offered to the model.
    Tools,
    /// Requested output length: `max_tokens`, "in 500 words", "detailed".
    OutputLength,
    /// Share of letters outside ASCII (CJK and other scripts).
    NonEnglish,
    /// A multiple-choice question with options A, B, C (D...).
    MultipleChoice,
    /// Share of the text taken by multiple-choice options (recall questions have long options, short stems).
    OptionShare,
    /// A short question (at most 30 words, ends in `?`), typically factual.
    ShortQuestion,
    /// An arithmetic word problem: a question with three or more numbers.
    WordProblem,
    /// Narrative style: share of personal pronouns (stories, scenarios, cases).
    Narrative,
    /// Share of long words (9+ letters): terminology-heavy recall text.
    LongWords,
    /// Commas per word: clause-heavy sentences.
    Commas,
    /// Negation and exception cues: "not", "except", "incorrect", "least".
    Negation,
}

/// Feature names as they appear in the weights file and in score reports.
pub const FEATURE_NAMES: &[&str] = <Feature as strum::VariantNames>::VARIANTS;

impl Feature {
    /// All features in order.
    pub const ALL: &'static [Feature] = <Feature as strum::VariantArray>::VARIANTS;

    /// The name used in files and reports.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Look a feature up by name.
    pub fn from_name(name: &str) -> Option<Feature> {
        name.parse().ok()
    }
}

/// Raw and normalized values of every feature of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    /// Human-checkable values (counts, shares, token estimates).
    pub raw: [f64; N_FEATURES],
    /// Fixed transforms of `raw` to roughly `[0, 1]`; the weights apply to these.
    pub norm: [f64; N_FEATURES],
}

impl Features {
    /// Raw value of one feature.
    pub fn raw(&self, f: Feature) -> f64 {
        self.raw[f as usize]
    }

    /// Normalized value of one feature.
    pub fn norm(&self, f: Feature) -> f64 {
        self.norm[f as usize]
    }
}

/// Estimated prompt tokens of a request, from the same scan (chars/4 for ASCII,
/// one token per CJK character), without computing the other features' transforms.
pub fn estimate_tokens(req: &ChatRequest) -> f64 {
    extract(req).raw(Feature::Tokens)
}

/// Compute the features of a request in one pass over its text.
pub fn extract(req: &ChatRequest) -> Features {
    let mut s = Scan::default();
    let mut assistant_turns = 0u32;
    for m in &req.messages {
        if m.role == Role::Assistant {
            assistant_turns += 1;
        }
        s.overhead_tokens += 4;
        match &m.content {
            Some(Content::Text(t)) => s.feed(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match p {
                        ContentPart::Text { text } => s.feed(text),
                        // An image costs tokens but carries no text cues; count a low-detail tile.
                        ContentPart::ImageUrl { .. } => s.overhead_tokens += 85,
                    }
                }
            }
            None => {}
        }
        for tc in &m.tool_calls {
            s.overhead_tokens +=
                (tc.function.name.len() + tc.function.arguments.len()) as u64 / 4 + 3;
        }
    }
    let mut tool_bytes = 0usize;
    for t in &req.tools {
        tool_bytes +=
            t.function.name.len() + t.function.description.as_ref().map_or(0, String::len);
        if let Some(p) = &t.function.parameters {
            tool_bytes += json_text_len(p, 0);
        }
    }
    s.overhead_tokens += tool_bytes as u64 / 4;
    s.finish(assistant_turns, req.tools.len(), req.max_tokens)
}

/// Approximate serialized length of a JSON value (no allocation; depth-limited so a
/// hostile, deeply nested schema cannot blow the stack).
fn json_text_len(v: &Value, depth: u32) -> usize {
    if depth > 32 {
        return 0;
    }
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 4,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => {
            2 + a
                .iter()
                .map(|x| json_text_len(x, depth + 1) + 1)
                .sum::<usize>()
        }
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() + 4 + json_text_len(x, depth + 1))
                .sum::<usize>()
        }
    }
}

// Word classes for the two-word window. Single words that are cues on their own
// are counted directly; the ones below also take part in phrases.
const W_OTHER: u8 = 0;
const W_STEP: u8 = 1;
const W_BY: u8 = 2;
const W_EXPLAIN: u8 = 3;
const W_WHY: u8 = 4;
const W_AND: u8 = 5;
const W_THEN: u8 = 6;
const W_AT: u8 = 7;
const W_LEAST: u8 = 8;
const W_MOST: u8 = 9;
const W_HOW: u8 = 10;
const W_MANY: u8 = 11;
const W_NO: u8 = 12;
const W_MORE: u8 = 13;
const W_THAN: u8 = 14;
const W_SHOW: u8 = 15;
const W_THAT: u8 = 16;
const W_WORDS: u8 = 17;
const W_NUMBER: u8 = 18;
const W_PAGES: u8 = 19;
const W_PARAGRAPHS: u8 = 20;
// Categories of single-word cues (never used as phrase classes).
const C_REASONING: u8 = 101;
const C_CONSTRAINT: u8 = 102;
const C_NEGATION: u8 = 103;
const C_PRONOUN: u8 = 104;
const C_DETAIL: u8 = 105;
const C_CODE: u8 = 106;

/// Cue words by category. Words are lowercase ASCII, at most 16 bytes.
const CUE_WORDS: &[(u8, &[&str])] = &[
    (
        C_REASONING,
        &[
            "prove",
            "proof",
            "derive",
            "derivation",
            "analyze",
            "analyse",
            "analysis",
            "justify",
            "deduce",
            "infer",
            "calculate",
            "compute",
            "solve",
            "evaluate",
            "compare",
            "reasoning",
            "rigorous",
            "implies",
            "therefore",
            "optimize",
            "tradeoffs",
            "critique",
        ],
    ),
    (
        C_CONSTRAINT,
        &[
            "must",
            "ensure",
            "exactly",
            "require",
            "required",
            "requirements",
            "constraint",
            "constraints",
            "include",
            "avoid",
            "without",
            "format",
            "additionally",
            "finally",
            "firstly",
            "secondly",
        ],
    ),
    (
        C_NEGATION,
        &[
            "not",
            "except",
            "incorrect",
            "false",
            "never",
            "cannot",
            "neither",
            "nor",
            "unlikely",
        ],
    ),
    (
        C_PRONOUN,
        &[
            "he", "she", "his", "her", "him", "they", "them", "their", "i", "me", "my", "you",
            "your", "we", "our",
        ],
    ),
    (
        C_DETAIL,
        &[
            "detailed",
            "comprehensive",
            "thorough",
            "elaborate",
            "essay",
            "indepth",
            "report",
            "article",
            "story",
            "blog",
        ],
    ),
    (
        C_CODE,
        &[
            "def",
            "function",
            "return",
            "import",
            "const",
            "let",
            "var",
            "fn",
            "void",
            "public",
            "static",
            "println",
            "printf",
            "elif",
            "lambda",
            "async",
            "await",
            "struct",
            "impl",
            "int",
            "str",
            "null",
            "nil",
            "bool",
            "python",
            "javascript",
            "typescript",
            "rust",
            "java",
            "sql",
            "regex",
            "api",
            "json",
        ],
    ),
    (W_STEP, &["step"]),
    (W_BY, &["by"]),
    (W_EXPLAIN, &["explain"]),
    (W_WHY, &["why"]),
    (W_SHOW, &["show"]),
    (W_THAT, &["that"]),
    (W_AND, &["and"]),
    (W_THEN, &["then"]),
    (W_AT, &["at"]),
    (W_LEAST, &["least"]),
    (W_MOST, &["most"]),
    (W_NO, &["no"]),
    (W_MORE, &["more"]),
    (W_THAN, &["than"]),
    (W_HOW, &["how"]),
    (W_MANY, &["many", "much"]),
    (W_WORDS, &["words"]),
    (W_PAGES, &["pages"]),
    (W_PARAGRAPHS, &["paragraphs"]),
];

/// An ASCII-letter word of at most 16 bytes, lowercased and packed into an integer
/// (little-endian bytes, zero padded), so the lookup compares integers, not strings.
fn word_key(word: &[u8]) -> u128 {
    let mut key = 0u128;
    for (i, &c) in word.iter().take(16).enumerate() {
        key |= u128::from(c | 0x20) << (8 * i);
    }
    key
}

/// [`word_key`] of `text[start..start + len]` (`len <= 16`, ASCII letters), read as one
/// 16-byte load where the text has room for it: building the key in a stack buffer
/// cost a store-forwarding stall per cue-like word.
#[inline]
fn word_key_at(text: &[u8], start: usize, len: usize) -> u128 {
    match text.get(start..start + 16).map(<[u8; 16]>::try_from) {
        Some(Ok(wide)) => {
            let keep = if len >= 16 {
                u128::MAX
            } else {
                (1u128 << (8 * len)) - 1
            };
            (u128::from_le_bytes(wide) | 0x2020_2020_2020_2020_2020_2020_2020_2020) & keep
        }
        _ => word_key(&text[start..start + len]),
    }
}

/// The end of the run of ASCII letters at `b[i..]`: eight bytes per step (a word
/// usually ends within one), then byte by byte near the end of the text.
#[inline(always)]
fn letters_end(b: &[u8], mut i: usize) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(Ok(chunk)) = b.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let w = u64::from_le_bytes(chunk);
        // Per byte, with the case bit set and the top bit cleared (no carries): the top
        // bit of `l + 0x1f` says `l >= 'a'`, of `l + 0x05` says `l > 'z'`; a byte with
        // its own top bit set is not an ASCII letter.
        let l = (w | 0x2020_2020_2020_2020) & LOW7;
        let letter = (l + 0x1f1f_1f1f_1f1f_1f1f) & !(l + 0x0505_0505_0505_0505) & !w & HIGH;
        let other = !letter & HIGH;
        if other != 0 {
            return i + (other.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i].is_ascii_alphabetic() {
        i += 1;
    }
    i
}

/// Open-addressing hash table of the cue words, built at compile time: one or two
/// probes per word, where a binary search took eight (the word lookup dominated the
/// scan's profile). Key 0 (the empty word) marks a free slot; words are never empty.
const TABLE_BITS: u32 = 8;
const TABLE_SIZE: usize = 1 << TABLE_BITS;

const fn slot(key: u128) -> usize {
    let folded = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - TABLE_BITS)) as usize
}

const fn const_key(w: &str) -> u128 {
    let b = w.as_bytes();
    let mut key = 0u128;
    let mut i = 0;
    while i < b.len() && i < 16 {
        key |= (b[i] as u128) << (8 * i);
        i += 1;
    }
    key
}

const fn build_table() -> ([u128; TABLE_SIZE], [u8; TABLE_SIZE]) {
    let mut keys = [0u128; TABLE_SIZE];
    let mut classes = [W_OTHER; TABLE_SIZE];
    let mut c = 0;
    while c < CUE_WORDS.len() {
        let (class, words) = CUE_WORDS[c];
        let mut w = 0;
        while w < words.len() {
            let key = const_key(words[w]);
            let mut i = slot(key);
            while keys[i] != 0 && keys[i] != key {
                i = (i + 1) & (TABLE_SIZE - 1);
            }
            // First category wins for a word listed twice.
            if keys[i] == 0 {
                keys[i] = key;
                classes[i] = class;
            }
            w += 1;
        }
        c += 1;
    }
    (keys, classes)
}

static CUE_TABLE: ([u128; TABLE_SIZE], [u8; TABLE_SIZE]) = build_table();

/// For each word length 0..=16, a bit per first letter (`a` = bit 0) that some cue word
/// of that length starts with. Most words of a text fail this test, so they skip the
/// hash probe and the cue dispatch (half the scan's time went there).
const fn build_filter() -> [u32; 17] {
    let mut f = [0u32; 17];
    let mut c = 0;
    while c < CUE_WORDS.len() {
        let words = CUE_WORDS[c].1;
        let mut w = 0;
        while w < words.len() {
            let b = words[w].as_bytes();
            let len = if b.len() > 16 { 16 } else { b.len() };
            if !b.is_empty() && b[0].is_ascii_lowercase() {
                f[len] |= 1 << (b[0] - b'a');
            } else {
                // A cue word not starting with a lowercase letter: never filter that length.
                f[len] = u32::MAX;
            }
            w += 1;
        }
        c += 1;
    }
    f
}

static CUE_FILTER: [u32; 17] = build_filter();

/// Could the ASCII-letter word be a cue word? Cue words have at most 16 letters, and
/// the filter knows which first letters occur at each length.
#[inline]
fn maybe_cue(word: &[u8]) -> bool {
    match word.first() {
        Some(c) if word.len() <= 16 => {
            let first = (c | 0x20).wrapping_sub(b'a');
            first < 26 && CUE_FILTER[word.len()] & (1 << first) != 0
        }
        _ => false,
    }
}

fn lookup(key: u128) -> u8 {
    let (keys, classes) = &CUE_TABLE;
    let mut i = slot(key);
    // The table is at most half full, so a free slot always ends the probe.
    for _ in 0..TABLE_SIZE {
        let k = keys[i];
        if k == key {
            return classes[i];
        }
        if k == 0 {
            return W_OTHER;
        }
        i = (i + 1) & (TABLE_SIZE - 1);
    }
    W_OTHER
}

/// The word being read: ASCII letter runs joined by non-ASCII letters. Only a single
/// ASCII run can be a cue word; its bytes are read back from the text when the word ends
/// (most words fail the length/first-letter filter first, so nothing is copied per
/// letter).
#[derive(Debug, Default, Clone, Copy)]
struct Word {
    /// Letters so far (a non-ASCII letter counts one).
    len: usize,
    /// Where the word starts in the segment being fed.
    start: usize,
    non_ascii: bool,
}

/// Running counts of one scan.
#[derive(Debug, Default)]
struct Scan {
    ascii_chars: u64,
    other_chars: u64,
    cjk_chars: u64,
    non_ascii_letters: u64,
    ascii_letters: u64,
    overhead_tokens: u64,
    words: u64,
    long_words: u64,
    pronouns: u64,
    commas: u64,
    numbers: u64,
    math_symbols: u64,
    code_tokens: u64,
    fences: u64,
    reasoning: u64,
    constraints: u64,
    list_items: u64,
    negations: u64,
    question_marks: u64,
    how_many: u64,
    detail_cues: u64,
    requested_words: f64,
    option_mask: u8,
    option_bytes: u64,
    total_bytes: u64,
    prev: u8,
    prev2: u8,
    last_number: f64,
}

impl Scan {
    /// Scan one text segment (a message or a text part); segments start new lines.
    fn feed(&mut self, text: &str) {
        let b = text.as_bytes();
        let n = b.len();
        self.total_bytes += n as u64;
        let mut multibyte = 0usize;
        let mut i = 0;
        // The word being read, in locals (not fields) so that the scan keeps it in
        // registers; a segment always ends its last word.
        let mut word = Word::default();
        // The number being read (its value so far), likewise.
        let mut number: Option<f64> = None;
        // Start of the current line if it is a multiple-choice option.
        let mut option_from = if n > 0 && self.line_start(b) {
            Some(0)
        } else {
            None
        };
        while i < n {
            let c = b[i];
            if c.is_ascii_alphabetic() {
                // Fast path: a run of ASCII letters.
                self.end_number(&mut number);
                let start = i;
                i = letters_end(b, i + 1);
                self.ascii_letters += (i - start) as u64;
                if word.len == 0 {
                    word.start = start;
                }
                word.len += i - start;
                continue;
            }
            if c == b' ' {
                // The most common separator: it only ends a word or a number.
                self.end_word(b, &mut word);
                self.end_number(&mut number);
                i += 1;
                continue;
            }
            if c < 0x80 {
                if c.is_ascii_digit() {
                    self.end_word(b, &mut word);
                    // The integer part's value, digit by digit (`None`: not in a number).
                    number = Some(number.unwrap_or(0.0) * 10.0 + f64::from(c - b'0'));
                } else if (c == b'.' || c == b',')
                    && number.is_some()
                    && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                {
                    // "3.14" and "80,000" are one number; keep the integer part's value.
                    if c == b'.' {
                        number = number.map(f64::floor);
                    }
                } else {
                    self.end_word(b, &mut word);
                    self.end_number(&mut number);
                    if c == b'\n' {
                        if let Some(from) = option_from.take() {
                            self.option_bytes += (i + 1 - from) as u64; // with its newline
                        }
                        if i + 1 < n && self.line_start(&b[i + 1..]) {
                            option_from = Some(i + 1);
                        }
                    } else if c != b' ' {
                        self.punct(c, b, i);
                    }
                }
                i += 1;
            } else {
                // Multi-byte UTF-8 character: classify by its code point.
                let len = utf8_len(c);
                let cp = decode(b, i, len);
                multibyte += len;
                self.end_number(&mut number);
                if is_math_symbol(cp) {
                    self.end_word(b, &mut word);
                    self.math_symbols += 1;
                    self.other_chars += 1;
                } else if is_cjk(cp) {
                    self.end_word(b, &mut word);
                    self.cjk_chars += 1;
                    self.non_ascii_letters += 1;
                } else if is_letter_like(cp) {
                    self.other_chars += 1;
                    self.non_ascii_letters += 1;
                    word.non_ascii = true;
                    word.len += 1;
                } else {
                    // Typographic punctuation (curly quotes, dashes, bullets).
                    self.end_word(b, &mut word);
                    self.other_chars += 1;
                }
                i += len.max(1);
            }
        }
        if let Some(from) = option_from {
            self.option_bytes += (n - from) as u64;
        }
        self.ascii_chars += (n - multibyte.min(n)) as u64;
        self.end_word(b, &mut word);
        self.end_number(&mut number);
        self.prev = W_OTHER;
        self.prev2 = W_OTHER;
    }

    /// Look at the first bytes of a line: fences, list items, multiple-choice options.
    /// Returns whether the line is a multiple-choice option.
    fn line_start(&mut self, rest: &[u8]) -> bool {
        let mut j = 0;
        while j < rest.len() && j < 8 && (rest[j] == b' ' || rest[j] == b'\t') {
            j += 1;
        }
        let r = &rest[j..];
        if r.starts_with(b"```") || r.starts_with(b"~~~") {
            self.fences += 1;
            return false;
        }
        // "A. ", "A) ", "(A) ", "A: "
        let (letter, after) = match r {
            [b'(', l, b')', rest @ ..] => (Some(*l), rest),
            [l, b'.' | b')' | b':', rest @ ..] => (Some(*l), rest),
            _ => (None, r),
        };
        if let Some(l) = letter {
            if (b'A'..=b'F').contains(&l) && after.first().is_none_or(|c| *c == b' ' || *c == b'\t')
            {
                self.option_mask |= 1 << (l - b'A');
                return true;
            }
        }
        let digits = r.iter().take_while(|c| c.is_ascii_digit()).count();
        let numbered = (1..=2).contains(&digits)
            && matches!(r.get(digits), Some(b'.' | b')'))
            && matches!(r.get(digits + 1), Some(b' ' | b'\t'));
        let bullet = matches!(r, [b'-' | b'*' | b'+', b' ', ..]) || r.starts_with("• ".as_bytes());
        if numbered || bullet {
            self.list_items += 1;
        }
        false
    }

    fn punct(&mut self, c: u8, b: &[u8], i: usize) {
        match c {
            b',' => self.commas += 1,
            b'?' => self.question_marks += 1,
            b'=' | b'+' | b'*' | b'^' | b'<' | b'>' | b'\\' | b'$' | b'%' => {
                self.math_symbols += 1;
                // "==" and "=>" also count as code.
                if c == b'=' && matches!(b.get(i + 1), Some(b'=' | b'>')) {
                    self.code_tokens += 1;
                }
            }
            b'/' => {
                // a/b next to a digit is math; "and/or" and URLs are not.
                let prev_digit = i > 0 && b[i - 1].is_ascii_digit();
                let next_digit = b.get(i + 1).is_some_and(u8::is_ascii_digit);
                if prev_digit || next_digit {
                    self.math_symbols += 1;
                }
            }
            b'{' | b'}' | b';' => self.code_tokens += 1,
            // snake_case identifiers
            b'_' if i > 0
                && b[i - 1].is_ascii_alphanumeric()
                && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) =>
            {
                self.code_tokens += 1;
            }
            _ => {}
        }
    }

    #[inline(always)]
    fn end_number(&mut self, number: &mut Option<f64>) {
        if let Some(value) = number.take() {
            self.numbers += 1;
            self.last_number = value;
            self.shift(W_NUMBER);
        }
    }

    fn shift(&mut self, w: u8) {
        self.prev2 = self.prev;
        self.prev = w;
    }

    #[inline(always)]
    fn end_word(&mut self, text: &[u8], word: &mut Word) {
        if word.len == 0 {
            return;
        }
        self.finish_word(text, *word);
        *word = Word::default();
    }

    /// The word just ended: count it, classify it.
    #[inline(always)]
    fn finish_word(&mut self, text: &[u8], w: Word) {
        self.words += 1;
        let len = w.len;
        if len >= 9 {
            self.long_words += 1;
        }
        let class = match text.get(w.start..w.start + len) {
            // Of the one-letter words only "I" takes part in phrases.
            Some(word)
                if !w.non_ascii && (len > 1 || word[0] | 0x20 == b'i') && maybe_cue(word) =>
            {
                self.classify(word_key_at(text, w.start, len))
            }
            _ => W_OTHER,
        };
        self.shift(class);
    }

    /// Count cues of one lowercase ASCII word (packed as a [`word_key`]); return its
    /// class for phrase matching. One binary search in a static table per word.
    fn classify(&mut self, key: u128) -> u8 {
        let (p1, p2) = (self.prev, self.prev2);
        match lookup(key) {
            C_REASONING => {
                self.reasoning += 1;
                W_OTHER
            }
            C_CONSTRAINT => {
                self.constraints += 1;
                W_OTHER
            }
            C_NEGATION => {
                self.negations += 1;
                W_OTHER
            }
            C_PRONOUN => {
                self.pronouns += 1;
                W_OTHER
            }
            C_DETAIL => {
                self.detail_cues += 1;
                W_OTHER
            }
            C_CODE => {
                self.code_tokens += 1;
                W_OTHER
            }
            W_STEP => {
                if p1 == W_BY && p2 == W_STEP {
                    self.reasoning += 2;
                }
                W_STEP
            }
            W_WHY => {
                self.reasoning += if p1 == W_EXPLAIN { 2 } else { 1 };
                W_WHY
            }
            W_THAT => {
                if p1 == W_SHOW {
                    self.reasoning += 2;
                }
                W_THAT
            }
            W_THEN => {
                if p1 == W_AND {
                    self.constraints += 1;
                }
                W_THEN
            }
            W_LEAST => {
                if p1 == W_AT {
                    self.constraints += 1;
                } else {
                    self.negations += 1;
                }
                W_LEAST
            }
            W_MOST => {
                if p1 == W_AT {
                    self.constraints += 1;
                }
                W_MOST
            }
            W_THAN => {
                if p1 == W_MORE && p2 == W_NO {
                    self.constraints += 1;
                }
                W_THAN
            }
            W_MANY => {
                if p1 == W_HOW {
                    self.how_many += 1;
                }
                W_MANY
            }
            class @ (W_WORDS | W_PAGES | W_PARAGRAPHS) => {
                if p1 == W_NUMBER {
                    let per = match class {
                        W_PAGES => 400.0,
                        W_PARAGRAPHS => 100.0,
                        _ => 1.0,
                    };
                    self.requested_words = self.requested_words.max(self.last_number * per);
                }
                W_WORDS
            }
            other => other,
        }
    }

    fn finish(self, assistant_turns: u32, tools: usize, max_tokens: Option<u32>) -> Features {
        let mut raw = [0.0; N_FEATURES];
        let mut norm = [0.0; N_FEATURES];
        let tokens = self.ascii_chars as f64 / 4.0
            + self.other_chars as f64 / 2.0
            + self.cjk_chars as f64
            + self.overhead_tokens as f64;
        // Word-like units for densities: CJK text has no spaces, count each character.
        let units = (self.words + self.cjk_chars).max(1) as f64;
        let letters = (self.ascii_letters + self.non_ascii_letters).max(1) as f64;
        let mc = self.option_mask & 0b111 == 0b111;

        let mut set = |f: Feature, r: f64, n: f64| {
            raw[f as usize] = r;
            norm[f as usize] = if n.is_finite() { n } else { 0.0 };
        };
        set(Feature::Tokens, tokens, (1.0 + tokens).ln() / 4097f64.ln());
        let depth = f64::from(assistant_turns);
        set(
            Feature::Depth,
            depth,
            ((1.0 + depth).ln() / 9f64.ln()).min(1.0),
        );
        let code_density = self.code_tokens as f64 / units;
        let fence = if self.fences > 0 { 0.5 } else { 0.0 };
        set(
            Feature::Code,
            self.code_tokens as f64 + 3.0 * self.fences as f64,
            (fence + (5.0 * code_density).min(0.5)).min(1.0),
        );
        let math_density = self.math_symbols as f64 / units;
        set(
            Feature::Math,
            self.math_symbols as f64,
            (5.0 * math_density).min(1.0),
        );
        let numbers = self.numbers as f64;
        set(
            Feature::Numbers,
            numbers,
            ((1.0 + numbers).ln() / 21f64.ln()).min(1.0),
        );
        set(
            Feature::Reasoning,
            self.reasoning as f64,
            (self.reasoning as f64 / 3.0).min(1.0),
        );
        let constraints = (self.constraints + self.list_items) as f64;
        set(
            Feature::Constraints,
            constraints,
            (constraints / 6.0).min(1.0),
        );
        let t = tools as f64;
        set(Feature::Tools, t, ((1.0 + t).ln() / 9f64.ln()).min(1.0));
        let requested = f64::from(max_tokens.unwrap_or(0)).max(self.requested_words * 1.3);
        let detail = if self.detail_cues > 0 { 0.3 } else { 0.0 };
        set(
            Feature::OutputLength,
            requested,
            ((1.0 + requested).ln() / 4097f64.ln() + detail).min(1.0),
        );
        let non_en = self.non_ascii_letters as f64 / letters;
        set(Feature::NonEnglish, non_en, non_en);
        set(
            Feature::MultipleChoice,
            f64::from(self.option_mask.count_ones()),
            if mc { 1.0 } else { 0.0 },
        );
        let opt_share = if mc {
            self.option_bytes as f64 / self.total_bytes.max(1) as f64
        } else {
            0.0
        };
        set(Feature::OptionShare, opt_share, opt_share);
        let short_q = !mc && self.question_marks > 0 && units <= 30.0;
        set(
            Feature::ShortQuestion,
            units,
            if short_q { 1.0 } else { 0.0 },
        );
        let word_problem =
            !mc && self.numbers >= 3 && (self.how_many > 0 || self.question_marks > 0);
        set(
            Feature::WordProblem,
            numbers,
            if word_problem { 1.0 } else { 0.0 },
        );
        let pron = self.pronouns as f64 / units;
        set(Feature::Narrative, pron, (10.0 * pron).min(1.0));
        let long = self.long_words as f64 / units;
        set(Feature::LongWords, long, (4.0 * long).min(1.0));
        let commas = self.commas as f64 / units;
        set(Feature::Commas, commas, (10.0 * commas).min(1.0));
        set(
            Feature::Negation,
            self.negations as f64,
            (self.negations as f64 / 3.0).min(1.0),
        );
        Features { raw, norm }
    }
}

fn utf8_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1, // stray continuation byte (cannot happen in a &str, but stay total)
    }
}

fn decode(b: &[u8], i: usize, len: usize) -> u32 {
    let lead = u32::from(b[i]);
    let mut cp = match len {
        2 => lead & 0x1F,
        3 => lead & 0x0F,
        4 => lead & 0x07,
        _ => return lead,
    };
    for k in 1..len {
        cp = (cp << 6) | (u32::from(b.get(i + k).copied().unwrap_or(0x80)) & 0x3F);
    }
    cp
}

/// Mathematical operators, arrows, Greek letters used as symbols, super/subscripts.
fn is_math_symbol(cp: u32) -> bool {
    matches!(cp,
        0x00B1 | 0x00D7 | 0x00F7 | 0x00B2 | 0x00B3 | 0x00B9 // ± × ÷ ² ³ ¹
        | 0x0391..=0x03C9 // Greek
        | 0x2070..=0x209F // super/subscripts
        | 0x2190..=0x21FF // arrows
        | 0x2200..=0x22FF // mathematical operators (∑ ∫ √ ≤ ≡ ⊃ ...)
        | 0x27C0..=0x27EF | 0x2980..=0x2AFF)
}

/// Chinese, Japanese and Korean scripts (about one token per character).
fn is_cjk(cp: u32) -> bool {
    matches!(cp, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

/// Letters of other scripts (Latin-1 accents, Cyrillic, Arabic, Devanagari...).
fn is_letter_like(cp: u32) -> bool {
    matches!(cp, 0x00C0..=0x024F | 0x0370..=0x1FFF) && !is_math_symbol(cp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaterouter_types::types::{Message, Tool};

    fn feats(text: &str) -> Features {
        extract(&ChatRequest::new("auto", vec![Message::user(text)]))
    }

    #[test]
    fn every_cue_word_is_found_and_others_are_not() {
        for (class, words) in CUE_WORDS {
            for w in *words {
                let got = lookup(word_key(w.as_bytes()));
                // The pre-filter never drops a cue word, in any case.
                assert!(maybe_cue(w.as_bytes()), "{w} filtered out");
                assert_eq!(
                    word_key(w.to_uppercase().as_bytes()),
                    word_key(w.as_bytes())
                );
                // The wide read (text continues) and the byte loop (text ends) agree.
                let text = format!("{w} and more text after it");
                assert_eq!(
                    word_key_at(text.as_bytes(), 0, w.len()),
                    word_key(w.as_bytes())
                );
                assert_eq!(
                    word_key_at(w.as_bytes(), 0, w.len()),
                    word_key(w.as_bytes())
                );
                // "include" is listed as a constraint and as code: the first listing wins.
                assert!(got == *class || *w == "include", "{w}: {got} != {class}");
            }
        }
        // Most words fail the pre-filter (no cue word of that length and first letter).
        assert!(!maybe_cue(b"zebra"));
        assert!(!maybe_cue(b"abcdefghijklmnopq"), "longer than any cue word");
        for w in ["the", "proves", "a", "stepp", "zzzzzzzzzzzzzzzz"] {
            assert_eq!(lookup(word_key(w.as_bytes())), W_OTHER, "{w}");
        }
    }

    #[test]
    fn letter_runs_end_where_the_bytewise_test_says() {
        let bytewise = |b: &[u8], mut i: usize| {
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            i
        };
        // Every byte value at every position of a run, runs of every length around 8.
        for len in 0..20 {
            for stop in 0..=255u8 {
                let mut text = vec![b'q'; len];
                text.push(stop);
                text.extend_from_slice(b"zzzzzzzzzz");
                for start in 0..=len {
                    assert_eq!(
                        letters_end(&text, start),
                        bytewise(&text, start),
                        "len {len} stop {stop} start {start}"
                    );
                }
            }
        }
        let mixed = "Zebra[42]`at@ÉtéAZaz{|}~ end".as_bytes();
        for i in 0..mixed.len() {
            assert_eq!(letters_end(mixed, i), bytewise(mixed, i), "at {i}");
        }
    }

    #[test]
    fn names_round_trip() {
        for &f in Feature::ALL {
            assert_eq!(Feature::from_name(f.name()), Some(f));
        }
        assert_eq!(Feature::from_name("nope"), None);
    }

    #[test]
    fn tokens_grow_with_length_and_count_cjk_per_char() {
        let short = feats("hello there");
        let long = feats(&"hello there ".repeat(100));
        assert!(long.raw(Feature::Tokens) > 50.0 * short.raw(Feature::Tokens) / 10.0);
        assert!(long.norm(Feature::Tokens) > short.norm(Feature::Tokens));
        // 400 ASCII chars ~ 100 tokens (+4 message overhead)
        let t = feats(&"abcd".repeat(100)).raw(Feature::Tokens);
        assert!((t - 104.0).abs() < 1e-9, "{t}");
        let cjk = feats("你好世界你好世界你好"); // 10 chars
        assert!((cjk.raw(Feature::Tokens) - 14.0).abs() < 1e-9);
        assert!(cjk.raw(Feature::NonEnglish) > 0.99);
        assert_eq!(feats("plain english").raw(Feature::NonEnglish), 0.0);
        let fr = feats("où est la bibliothèque");
        assert!(fr.raw(Feature::NonEnglish) > 0.0 && fr.raw(Feature::NonEnglish) < 0.2);
    }

    #[test]
    fn depth_counts_assistant_turns() {
        let req = ChatRequest::new(
            "auto",
            vec![
                Message::user("a"),
                Message::assistant("b"),
                Message::user("c"),
                Message::assistant("d"),
                Message::user("e"),
            ],
        );
        let f = extract(&req);
        assert_eq!(f.raw(Feature::Depth), 2.0);
        assert!(f.norm(Feature::Depth) > 0.4 && f.norm(Feature::Depth) <= 1.0);
        assert_eq!(feats("a").raw(Feature::Depth), 0.0);
    }

    #[test]
    fn code_detects_fences_and_syntax() {
        let f = feats("Fix this:\n```python\ndef f(x):\n    return x_y + 1;\n```\n");
        assert_eq!(f.raw(Feature::Code), 3.0 * 2.0 + 5.0); // 2 fences; python, def, return, snake_case, `;`
        assert!(f.norm(Feature::Code) >= 0.5);
        assert_eq!(
            feats("What a lovely day in the park.").norm(Feature::Code),
            0.0
        );
    }

    #[test]
    fn math_counts_operators_and_unicode() {
        let f = feats("Let x^2 + y^2 = 1 and x ≤ y. Compute ∑ a_i / 2.");
        assert!(f.raw(Feature::Math) >= 6.0, "{}", f.raw(Feature::Math));
        assert!(f.norm(Feature::Math) > 0.5);
        assert_eq!(feats("and/or is not math").raw(Feature::Math), 0.0);
    }

    #[test]
    fn numbers_are_whole_literals() {
        let f = feats("He paid $80,000 and 3.5% more, then 12 apples.");
        assert_eq!(f.raw(Feature::Numbers), 3.0);
        assert_eq!(feats("no digits here").raw(Feature::Numbers), 0.0);
    }

    #[test]
    fn reasoning_cues_and_phrases() {
        assert_eq!(feats("Think step by step.").raw(Feature::Reasoning), 2.0);
        assert_eq!(
            feats("Explain why the sky is blue").raw(Feature::Reasoning),
            2.0
        );
        assert_eq!(
            feats("Prove it and derive the bound").raw(Feature::Reasoning),
            2.0
        );
        assert_eq!(feats("Show that n is even").raw(Feature::Reasoning), 2.0);
        assert_eq!(feats("Tell me a joke").raw(Feature::Reasoning), 0.0);
    }

    #[test]
    fn constraints_lists_and_phrases() {
        let f = feats(
            "Write a plan.\n1. Gather data\n2. Clean it\n- review\nYou must use at least 3 sources and then summarize in no more than 200 words.",
        );
        // 3 list items + must + at least + and then + no more than
        assert_eq!(f.raw(Feature::Constraints), 7.0);
        assert!(f.norm(Feature::Constraints) > 0.99);
        assert_eq!(feats("Hello").raw(Feature::Constraints), 0.0);
    }

    #[test]
    fn tools_are_counted() {
        let mut req = ChatRequest::new("auto", vec![Message::user("weather?")]);
        let base = extract(&req);
        req.tools.push(Tool::function(
            "get_weather",
            "Weather for a city",
            serde_json::json!({"type":"object","properties":{"city":{"type":"string"}}}),
        ));
        let f = extract(&req);
        assert_eq!(f.raw(Feature::Tools), 1.0);
        assert!(f.norm(Feature::Tools) > 0.0);
        assert!(f.raw(Feature::Tokens) > base.raw(Feature::Tokens));
    }

    #[test]
    fn output_length_from_max_tokens_and_words() {
        let mut req = ChatRequest::new("auto", vec![Message::user("Write about cats.")]);
        assert_eq!(extract(&req).raw(Feature::OutputLength), 0.0);
        req.max_tokens = Some(4000);
        assert!(extract(&req).norm(Feature::OutputLength) > 0.99);
        let f = feats("Describe Rome in 500 words.");
        assert!((f.raw(Feature::OutputLength) - 650.0).abs() < 1e-9);
        let d = feats("Give a detailed answer.");
        assert!((d.norm(Feature::OutputLength) - 0.3).abs() < 1e-9);
    }

    #[test]
    fn multiple_choice_and_option_share() {
        let q = "Which gas is most abundant in air?\nA. Oxygen\nB. Nitrogen\nC. Argon\nD. Carbon dioxide\nAnswer:";
        let f = feats(q);
        assert_eq!(f.raw(Feature::MultipleChoice), 4.0);
        assert_eq!(f.norm(Feature::MultipleChoice), 1.0);
        let share = f.raw(Feature::OptionShare);
        assert!(share > 0.3 && share < 0.7, "{share}");
        assert_eq!(f.norm(Feature::ShortQuestion), 0.0); // MC is not a short free question
        let two = feats("A. yes\nB. no");
        assert_eq!(two.norm(Feature::MultipleChoice), 0.0);
        assert_eq!(two.raw(Feature::OptionShare), 0.0);
    }

    #[test]
    fn short_question_and_word_problem() {
        assert_eq!(
            feats("What is the capital of Peru?").norm(Feature::ShortQuestion),
            1.0
        );
        assert_eq!(
            feats("What is the capital of Peru").norm(Feature::ShortQuestion),
            0.0
        );
        let long = format!("{} why?", "word ".repeat(40));
        assert_eq!(feats(&long).norm(Feature::ShortQuestion), 0.0);
        let wp = feats("Tom has 3 apples, buys 12 more and gives 4 away. How many are left?");
        assert_eq!(wp.norm(Feature::WordProblem), 1.0);
        assert_eq!(
            feats("Tom has 3 apples and 4 pears.").norm(Feature::WordProblem),
            0.0
        );
    }

    #[test]
    fn style_features() {
        let f = feats("She told him that they would go, but he said no, and she left.");
        assert!(f.raw(Feature::Narrative) > 0.3);
        assert!(f.raw(Feature::Commas) > 0.1);
        let j = feats("Photosynthesis transforms electromagnetic radiation chemically");
        assert!(j.raw(Feature::LongWords) > 0.8);
        assert_eq!(
            feats("Which is NOT true, except one?").raw(Feature::Negation),
            2.0
        );
        assert_eq!(feats("at least").raw(Feature::Negation), 0.0);
        assert_eq!(feats("the least likely").raw(Feature::Negation), 1.0);
    }

    #[test]
    fn empty_and_odd_input_do_not_panic() {
        let f = extract(&ChatRequest::new("auto", vec![]));
        assert!(f.norm.iter().all(|v| v.is_finite()));
        let f = feats("\u{FFFF}\u{10FFFF}é\n(A)\n1.\n- \n```");
        assert!(f.norm.iter().all(|v| v.is_finite()));
        let f = feats(&"9".repeat(400));
        assert!(f.norm.iter().all(|v| v.is_finite()));
    }
}
