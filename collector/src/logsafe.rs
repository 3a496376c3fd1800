//! Values that came from a request and end up in a log line or an error message:
//! control characters (newline, carriage return, escape, NUL, DEL, C1 and the Unicode
//! line/paragraph separators) are escaped as `\n`, `\r`, `\t` or `\u{..}`, and
//! values are cut at [`MAX_LOGGED_CHARS`], so a client cannot forge log lines or
//! terminal escape sequences (issue 18, item 9).

use std::borrow::Cow;

/// Longest value written as is; longer ones end with `…(N bytes)`.
pub const MAX_LOGGED_CHARS: usize = 200;

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// The value with control characters escaped and cut to [`MAX_LOGGED_CHARS`].
pub fn escape(s: &str) -> Cow<'_, str> {
    if s.chars().count() <= MAX_LOGGED_CHARS && !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(MAX_LOGGED_CHARS * 2) + 16);
    for (n, c) in s.chars().enumerate() {
        if n == MAX_LOGGED_CHARS {
            out.push_str(&format!("…({} bytes)", s.len()));
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One RFC 4180 CSV cell, neutralised against formula injection (OWASP): a text cell
/// starting with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'` so a
/// spreadsheet shows it as text instead of running it. Numbers (`-12`, `0.5`) are kept
/// as they are.
pub fn csv_cell(s: &str) -> String {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err();
    let s: Cow<'_, str> = if risky {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls() {
        assert_eq!(escape("k_eng"), "k_eng");
        assert_eq!(
            escape("a\nINFO forged\r\x1b[31m\u{2028}"),
            "a\\nINFO forged\\r\\u{1b}[31m\\u{2028}"
        );
        let long = "x".repeat(500);
        assert!(escape(&long).ends_with("…(500 bytes)"));
    }

    #[test]
    fn csv_cells_are_neutralised() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1+cmd"), "'+1+cmd");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\rx"), "\"'\rx\"");
        assert_eq!(csv_cell("-12.5"), "-12.5");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("plain"), "plain");
    }
}
