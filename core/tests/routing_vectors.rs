//! The shared routing vectors (`tests/vectors/routing.json`): every binding must
//! reproduce these scores and tiers with the builtin weights.
//! Regenerate after refitting: `UPDATE_ROUTING_VECTORS=1 cargo test -p gaterouter --test routing_vectors`.

use gaterouter::ChatRequest;
use gaterouter::routing::{Scorer, Tier};
use serde_json::Value;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/routing.json");

#[test]
fn builtin_scorer_matches_vectors() {
    let text = std::fs::read_to_string(PATH).expect("vectors file");
    let mut doc: Value = serde_json::from_str(&text).expect("vectors json");
    let scorer = Scorer::builtin().expect("builtin weights");
    let update = std::env::var_os("UPDATE_ROUTING_VECTORS").is_some();
    let cases = doc["cases"].as_array_mut().expect("cases");
    assert!(cases.len() >= 12, "a dozen cases at least");
    let mut tiers = std::collections::BTreeSet::new();
    for case in cases.iter_mut() {
        let name = case["name"].as_str().expect("name").to_owned();
        let req = ChatRequest::from_json(&case["request"].to_string())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = scorer.score(&req);
        let rounded = (r.score * 1e6).round() / 1e6;
        tiers.insert(r.tier);
        if update {
            case["score"] = serde_json::json!(rounded);
            case["tier"] = serde_json::json!(r.tier);
            continue;
        }
        let want = case["score"].as_f64().expect("score");
        assert!(
            (rounded - want).abs() <= 1e-6 + 1e-12,
            "{name}: score {rounded} != {want}"
        );
        let want_tier: Tier = serde_json::from_value(case["tier"].clone()).expect("tier");
        assert_eq!(r.tier, want_tier, "{name}");
    }
    if update {
        std::fs::write(
            PATH,
            serde_json::to_string_pretty(&doc).expect("json") + "\n",
        )
        .expect("write vectors");
    }
    assert_eq!(
        tiers.len(),
        3,
        "the vectors should exercise all three tiers: {tiers:?}"
    );
}
