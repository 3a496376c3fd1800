//! The oracle: tiktoken-rs (tiktoken's own algorithm and regexes). Pieces, ids and counts
//! must be identical on the benchmark corpus, on edge cases, and on random texts drawn
//! from every character class the patterns distinguish.

use gaterouter_tokenizer::{Tokenizer, cl100k_base, o200k_base};
use proptest::prelude::*;

/// tiktoken's cl100k_base pattern (tiktoken 0.14 / tiktoken-rs 0.12).
const CL100K_PAT: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

fn regex(o200k: bool) -> &'static fancy_regex::Regex {
    use std::sync::OnceLock;
    static O: OnceLock<fancy_regex::Regex> = OnceLock::new();
    static C: OnceLock<fancy_regex::Regex> = OnceLock::new();
    if o200k {
        O.get_or_init(|| {
            fancy_regex::Regex::new(tiktoken_rs::O200K_BASE_PAT_STR).expect("o200k pattern")
        })
    } else {
        C.get_or_init(|| fancy_regex::Regex::new(CL100K_PAT).expect("cl100k pattern"))
    }
}

fn regex_pieces(o200k: bool, text: &str) -> Vec<&str> {
    regex(o200k)
        .find_iter(text)
        .map(|m| m.expect("regex match").as_str())
        .collect()
}

fn reference(o200k: bool) -> &'static tiktoken_rs::CoreBPE {
    if o200k {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    }
}

fn ours(o200k: bool) -> &'static Tokenizer {
    if o200k { o200k_base() } else { cl100k_base() }
}

fn check(text: &str) {
    for o200k in [true, false] {
        let ours_pieces: Vec<&str> = ours(o200k).pieces(text).collect();
        let want = regex_pieces(o200k, text);
        assert_eq!(
            ours_pieces, want,
            "pieces differ (o200k={o200k}) for {text:?}"
        );
        let ids = ours(o200k).encode(text);
        assert_eq!(
            ids,
            reference(o200k).encode_ordinary(text),
            "ids differ (o200k={o200k}) for {text:?}"
        );
        assert_eq!(ours(o200k).count(text), ids.len());
    }
}

#[test]
fn corpus_is_identical() {
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/corpus.txt"
    ))
    .expect("bench/corpus.txt");
    // Pieces over the whole corpus, ids over every line (keeps the reference quick).
    for o200k in [true, false] {
        let ours_pieces: Vec<&str> = ours(o200k).pieces(&corpus).collect();
        assert_eq!(ours_pieces, regex_pieces(o200k, &corpus), "o200k={o200k}");
        assert_eq!(
            ours(o200k).encode(&corpus),
            reference(o200k).encode_ordinary(&corpus),
            "o200k={o200k}"
        );
    }
    assert_eq!(o200k_base().count(&corpus), 232_265);
    assert_eq!(cl100k_base().count(&corpus), 245_690);
}

#[test]
fn edge_cases() {
    for text in [
        "",
        " ",
        "  ",
        "\n",
        "a",
        "Hello, world!",
        "it's I'M we'LL they'Ve 'd 'x 'ſ",
        "  \n  x",
        "\n\n  x  ",
        "x  \n  ",
        " \t\r\n\u{3000}y",
        "ABCdef GHI jkL ǅungla ʰa 中文 ÀÉÎ",
        "e\u{301}\u{301}x \u{301}abc \u{301}\u{301}",
        "12345 1,234.56 ٣٤٥٦ Ⅻ",
        "!!! ?? /path/to\n/x ...\n\n",
        "<|endoftext|> <|fim_prefix|>",
        "😀😀 👩‍👩‍👧 𝐀𝐁𝐂𝐝",
        "\u{0}\u{1}\u{7f}\u{80}\u{ff}",
        "don't STOP'S Mc'Donald's",
    ] {
        check(text);
    }
}

#[test]
fn long_pieces_use_the_heap_and_agree() {
    // One piece far longer than the heap threshold, with repeats that create rank ties.
    let base64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==".repeat(40);
    check(&base64);
    check(&"a".repeat(5000));
    check(&"ab".repeat(3000));
    check(&"字".repeat(700));
    check(&format!(" {}", "x".repeat(1000)));
}

fn class_char() -> impl Strategy<Value = char> {
    prop::sample::select(vec![
        'a',
        'z',
        'A',
        'Z',
        's',
        'S',
        't',
        'l',
        'L',
        'v',
        'e',
        'r',
        'd',
        'm',
        'ſ',
        '\'',
        ' ',
        ' ',
        '\t',
        '\n',
        '\r',
        '\u{b}',
        '\u{c}',
        '\u{85}',
        '\u{a0}',
        '\u{2028}',
        '\u{3000}',
        '0',
        '7',
        '٣',
        'Ⅻ',
        '½',
        '.',
        ',',
        '!',
        '/',
        '-',
        '_',
        '"',
        '$',
        '😀',
        '中',
        'ǅ',
        'ʰ',
        'é',
        '\u{301}',
        '\u{20dd}',
        'ß',
        'Я',
        'я',
        '𝐀',
        '𝐝',
        '\u{0}',
        '\u{7f}',
        '\u{ffff}',
        '\u{10ffff}',
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn random_texts_from_every_class(chars in prop::collection::vec(class_char(), 0..60)) {
        let text: String = chars.into_iter().collect();
        check(&text);
    }

    #[test]
    fn arbitrary_strings(text in "\\PC{0,40}") {
        check(&text);
    }
}
