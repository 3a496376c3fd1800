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

/// A CSV text cell neutralised against formula injection (OWASP): a cell starting with
/// `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'` so a spreadsheet shows
/// it as text instead of running it. Numbers (`-12`, `0.5`) are kept as they are.
/// Quoting is the `csv` crate's ([`csv_table`]).
pub fn csv_text(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err() {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// An RFC 4180 table (CRLF line ends, a cell quoted only when it holds a comma, quote or
/// line break), written by the `csv` crate: the header as is (none if empty), then each row with every
/// cell passed through [`csv_text`].
pub fn csv_table<R, C>(header: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator,
    C::Item: AsRef<str>,
{
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .flexible(true)
        .from_writer(Vec::new());
    // Writing to a `Vec` cannot fail (no I/O, and `flexible` accepts any row length).
    if !header.is_empty() {
        let _ = w.write_record(header);
    }
    for r in rows {
        let cells: Vec<String> = r
            .into_iter()
            .map(|c| csv_text(c.as_ref()).into_owned())
            .collect();
        let _ = w.write_record(&cells);
    }
    let bytes = w
        .into_inner()
        .unwrap_or_else(|e| e.into_inner().get_ref().clone());
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// One cell as [`csv_table`] writes it (tests, and callers writing one value).
pub fn csv_cell(s: &str) -> String {
    let t = csv_table(&[], [[s]]);
    t.strip_suffix("\r\n").unwrap_or(&t).to_owned()
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
