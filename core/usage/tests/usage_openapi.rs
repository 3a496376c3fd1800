//! `core/usage/data/usage-api.openapi.json` agrees with the record type and the reporter.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::path::PathBuf;

use gaterouter_usage::{BatchResponse, UsageStatus};
use serde_json::Value;

fn doc() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/usage-api.openapi.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn vectors() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/records.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn schema_matches_the_records() {
    let d = doc();
    assert_eq!(d["openapi"], "3.1.0");
    assert!(d["paths"]["/v1/usage"]["post"].is_object());
    let s = &d["components"]["schemas"]["SignedUsageRecord"];
    let props: BTreeSet<&str> = s["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let required: BTreeSet<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.is_subset(&props));
    // The full vector has every optional field: its keys (plus signature) are exactly the properties.
    let v = vectors();
    for t in v["vectors"].as_array().unwrap() {
        let keys: BTreeSet<&str> = t["record"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .chain(["signature"])
            .collect();
        assert!(
            keys.is_subset(&props),
            "{:?}",
            keys.difference(&props).collect::<Vec<_>>()
        );
        assert!(
            required.is_subset(&keys),
            "{:?}",
            required.difference(&keys).collect::<Vec<_>>()
        );
        if t["name"].as_str().unwrap().starts_with("full") {
            // Every optional field but the two that only `denied` records carry.
            let denial: BTreeSet<&str> = ["denied_rule", "denied_level"].into();
            assert_eq!(keys, props.difference(&denial).copied().collect());
        }
        // Route: every key a vector's route carries is in the schema; the learning
        // vector carries every one but `shadow_of` (a shadow call's only).
        let route_props: BTreeSet<&str> = d["components"]["schemas"]["Route"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        if let Some(route) = t["record"]["route"].as_object() {
            let rk: BTreeSet<&str> = route.keys().map(String::as_str).collect();
            assert!(rk.is_subset(&route_props), "{rk:?} vs {route_props:?}");
            if t["name"].as_str().unwrap().starts_with("learning") {
                let shadow: BTreeSet<&str> = ["shadow_of"].into();
                assert_eq!(rk, route_props.difference(&shadow).copied().collect());
            }
        }
        if t["record"]["status"] == "denied" {
            assert!(
                keys.contains("denied_rule") && keys.contains("denied_level"),
                "{keys:?}"
            );
        }
    }
    for code in s["properties"]["status"]["enum"].as_array().unwrap() {
        assert!(
            UsageStatus::parse(code.as_str().unwrap()).is_some(),
            "{code}"
        );
    }
}

#[test]
fn result_schema_parses_as_the_reporter_expects() {
    let d = doc();
    let r = &d["components"]["schemas"]["UsageBatchResult"]["properties"];
    assert!(r["accepted"].is_object() && r["duplicate"].is_object() && r["rejected"].is_object());
    let sample = serde_json::json!({"accepted": ["a"], "duplicate": ["b"], "rejected": [{"id": "c", "reason": "bad signature"}]});
    let parsed: BatchResponse = serde_json::from_value(sample).unwrap();
    assert_eq!(parsed.rejected[0].reason, "bad signature");
}

#[test]
fn feedback_schema_matches_the_feedback_record() {
    use gaterouter_usage::Identity;
    use gaterouter_usage::{FeedbackInput, FeedbackRecord, RecordId, SdkInfo};
    let d = doc();
    let s = &d["components"]["schemas"]["SignedFeedbackRecord"];
    let props: BTreeSet<&str> = s["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let required: BTreeSet<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ident = Identity {
        org: Some("acme".into()),
        api_key_id: Some("k".into()),
        ..Default::default()
    };
    let input = FeedbackInput {
        record_id: RecordId::new_v7().0,
        score: 0.5,
        label: Some("ok".into()),
        ..Default::default()
    };
    let fb =
        FeedbackRecord::build(input, &ident, &SdkInfo::rust(), RecordId::new_v7(), 1, 1).unwrap();
    let v = serde_json::to_value(&fb).unwrap();
    // With every optional field set, its keys (plus signature) are exactly the properties.
    let keys: BTreeSet<&str> = v
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .chain(["signature"])
        .collect();
    assert_eq!(keys, props);
    assert!(
        required.is_subset(&keys),
        "{:?}",
        required.difference(&keys).collect::<Vec<_>>()
    );
    let items =
        &d["components"]["schemas"]["UsageBatch"]["properties"]["records"]["items"]["oneOf"];
    assert_eq!(
        items[1]["$ref"],
        "#/components/schemas/SignedFeedbackRecord"
    );
}
