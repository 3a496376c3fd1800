//! RFC 8785 JSON Canonicalization Scheme (JCS), restricted to what usage records hold.
//!
//! Rules implemented (RFC 8785 section 3.2):
//! - no whitespace between tokens;
//! - object members sorted by their names compared as arrays of UTF-16 code units
//!   (not UTF-8 bytes: `"\u{e000}"` sorts after `"😀"` in UTF-16 but before it in UTF-8);
//! - strings serialized like ECMAScript `JSON.stringify`: `"` and `\` escaped as `\"` and
//!   `\\`; U+0008, U+0009, U+000A, U+000C, U+000D as `\b \t \n \f \r`; every other control
//!   character below U+0020 as `\u00xx` with lowercase hex; everything else (including
//!   non-ASCII, U+2028 and U+2029) as literal UTF-8;
//! - `true`, `false`, `null` literally.
//!
//! Numbers: usage records contain integers only, so this canonicalizer accepts integers
//! in the IEEE-754 exact range `-(2^53-1) ..= 2^53-1` and writes them in plain decimal
//! (which is what ECMAScript number formatting gives for them). Any other number
//! (a float, or an integer beyond 2^53-1) is refused with [`CanonicalError`] rather than
//! risk a formatting that another implementation would not reproduce.

use std::cmp::Ordering;

use serde_json::Value;

/// Largest integer JCS can carry exactly (2^53 - 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A value the restricted canonicalizer refuses; `path` names it (`$.tags.x`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot canonicalize {path}: {message}")]
pub struct CanonicalError {
    /// JSON path of the value.
    pub path: String,
    /// Why.
    pub message: String,
}

/// Canonical JCS text of `value`.
pub fn canonicalize(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(512);
    write_value(value, &mut out, &mut String::from("$"))?;
    Ok(out)
}

/// Compare two strings as sequences of UTF-16 code units (RFC 8785 3.2.3).
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_value(value: &Value, out: &mut String, path: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(CanonicalError {
                        path: path.clone(),
                        message: format!("{u} exceeds 2^53-1"),
                    });
                }
                out.push_str(&u.to_string());
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(CanonicalError {
                        path: path.clone(),
                        message: format!("{i} exceeds 2^53-1 in magnitude"),
                    });
                }
                out.push_str(&i.to_string());
            } else {
                return Err(CanonicalError {
                    path: path.clone(),
                    message: format!("{n} is not an integer (usage records carry integers only)"),
                });
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                write_value(item, out, path)?;
                path.truncate(len);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                let len = path.len();
                path.push('.');
                path.push_str(k);
                write_value(v, out, path)?;
                path.truncate(len);
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Write `s` as a JCS string literal.
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_by_utf16_not_utf8() {
        // U+E000 is one UTF-16 unit 0xE000; U+1F600 is the surrogate pair D83D DE00.
        // UTF-16 order: 😀 (0xD83D) < U+E000; UTF-8 order is the reverse.
        let v = json!({"\u{e000}": 1, "😀": 2, "a": 3, "B": 4});
        assert_eq!(
            canonicalize(&v).unwrap(),
            "{\"B\":4,\"a\":3,\"😀\":2,\"\u{e000}\":1}"
        );
    }

    #[test]
    fn escapes_like_json_stringify() {
        let v = json!("q\"b\\\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}\u{2028}é");
        assert_eq!(
            canonicalize(&v).unwrap(),
            "\"q\\\"b\\\\\\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}\u{2028}é\""
        );
    }

    #[test]
    fn nested_and_literals() {
        let v = json!({"z": [true, false, null, -5, 0], "a": {"y": "", "x": 9007199254740991u64}});
        assert_eq!(
            canonicalize(&v).unwrap(),
            r#"{"a":{"x":9007199254740991,"y":""},"z":[true,false,null,-5,0]}"#
        );
    }

    #[test]
    fn refuses_floats_and_huge_integers_naming_the_path() {
        let e = canonicalize(&json!({"a": {"b": 1.5}})).unwrap_err();
        assert_eq!(e.path, "$.a.b");
        let e = canonicalize(&json!({"n": [1, 9007199254740992u64]})).unwrap_err();
        assert_eq!(e.path, "$.n[1]");
    }
}
