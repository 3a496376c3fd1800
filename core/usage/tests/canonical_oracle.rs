//! `usage::canonical` (our restricted RFC 8785 canonicalizer, kept for its refusals and
//! speed, see ARCHITECTURE.md) against an independent implementation,
//! `serde_json_canonicalizer`, as an oracle: on every value our canonicalizer accepts
//! (integers in the exact range, any strings and keys, nesting), both must write the same
//! bytes. Keys and strings are drawn to hit the JCS corners: control characters, `"`/`\`,
//! U+2028/U+2029, astral characters whose UTF-16 order differs from their UTF-8 order.

use gaterouter_usage::canonical::{MAX_SAFE_INTEGER, canonicalize};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Characters that exercise escaping and UTF-16 key ordering.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        (0u32..0x20).prop_map(|c| char::from_u32(c).expect("a control character is a char")),
        Just('"'),
        Just('\\'),
        Just('/'),
        Just('\u{7f}'),
        Just('\u{2028}'),
        Just('\u{2029}'),
        Just('\u{e000}'),
        Just('\u{ffff}'),
        Just('😀'),
        Just('\u{10ffff}'),
        Just('é'),
        proptest::char::range('a', 'e'),
        any::<char>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(tricky_char(), 0..8).prop_map(|c| c.into_iter().collect())
}

fn safe_int() -> impl Strategy<Value = i64> {
    let m = MAX_SAFE_INTEGER as i64;
    prop_oneof![-m..=m, Just(m), Just(-m), Just(0), -1000i64..1000]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        safe_int().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((text(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn agrees_with_an_independent_rfc8785_implementation(v in json()) {
        let ours = canonicalize(&v).expect("safe integers and strings are accepted");
        let oracle = serde_json_canonicalizer::to_string(&v).expect("oracle");
        prop_assert_eq!(ours, oracle);
    }
}

#[test]
fn utf16_key_order_and_escapes_match_the_oracle() {
    // U+E000 sorts after U+1F600 in UTF-16 code units but before it in UTF-8 bytes.
    let v: Value = serde_json::from_str(
        r#"{"\ue000":1,"😀":2,"a\u0001":"\u001f\b\t\n\f\r\"\\/\u2028","":[true,false,null,-9007199254740991]}"#,
    )
    .unwrap();
    let ours = canonicalize(&v).unwrap();
    assert_eq!(ours, serde_json_canonicalizer::to_string(&v).unwrap());
    assert!(
        ours.find("😀").unwrap() < ours.find('\u{e000}').unwrap(),
        "{ours}"
    );
}

#[test]
fn what_we_refuse_is_outside_the_exact_range() {
    // The oracle writes these; we refuse them rather than risk a formatting another
    // implementation would not reproduce (records hold integers only).
    for v in [
        serde_json::json!(0.5),
        serde_json::json!(MAX_SAFE_INTEGER + 1),
    ] {
        let err = canonicalize(&serde_json::json!({ "x": v })).unwrap_err();
        assert_eq!(err.path, "$.x");
        assert!(serde_json_canonicalizer::to_string(&v).is_ok());
    }
}
