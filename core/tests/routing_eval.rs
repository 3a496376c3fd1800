//! Quality gate on the bundled development data (not timed).
//!
//! Held-out figures come from refitting with the default options on the train part of
//! subject splits (no subject in both parts) — the same procedure that produced the
//! builtin weights, which were then fitted on the whole file.

use gaterouter::routing::calibrate::{self, FitOptions};
use gaterouter::routing::eval::{self, Comparison};
use gaterouter::routing::{LabeledPrompt, Scorer, load_jsonl, score_jsonl};

fn dev() -> Vec<LabeledPrompt> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/routing/dev.jsonl");
    load_jsonl(path).expect("tests/data/routing/dev.jsonl loads")
}

fn held_out(prompts: &[LabeledPrompt], seed: u64) -> Comparison {
    let (train, test) = eval::split_by_source(prompts, seed, 0.5);
    assert!(train.iter().all(|p| test.iter().all(|q| q.source != p.source)), "split leaks a subject");
    let w = calibrate::fit(&train, &FitOptions::default()).expect("fit");
    eval::compare(&test, &Scorer::new(w)).expect("eval")
}

#[test]
fn dev_file_matches_its_readme() {
    let ps = dev();
    assert_eq!(ps.len(), 8396);
    let all = eval::evaluate(&ps, &|_| 0.0).expect("eval");
    assert!((all.quality_weak - 0.700).abs() < 5e-4, "{}", all.quality_weak);
    assert!((all.quality_strong - 0.836).abs() < 5e-4, "{}", all.quality_strong);
}

#[test]
fn held_out_router_beats_length_and_random() {
    let ps = dev();
    let mut router = 0.0;
    let mut length = 0.0;
    for seed in 1..=3 {
        let c = held_out(&ps, seed);
        assert!((c.random.apgr - 0.5).abs() < 1e-9);
        assert!(c.router.apgr > c.random.apgr + 0.03, "seed {seed}: router APGR {} barely above random", c.router.apgr);
        router += c.router.apgr / 3.0;
        length += c.length.apgr / 3.0;
    }
    // Mean over three subject splits; the margin is small (see bench/RESULTS.md).
    assert!(router > length, "held-out router APGR {router:.3} <= length-only {length:.3}");
}

#[test]
fn builtin_beats_length_on_the_dev_file() {
    // In-sample for the builtin weights (they were fitted on this file); the held-out
    // test above is the generalization check.
    let ps = dev();
    let c = eval::compare(&ps, &Scorer::builtin().expect("builtin")).expect("eval");
    assert!(c.router.apgr > c.length.apgr, "builtin {} <= length {}", c.router.apgr, c.length.apgr);
    assert!(c.router.share_for_95pct_quality < c.length.share_for_95pct_quality);
}

#[test]
fn score_jsonl_on_dev_lines() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/routing/dev.jsonl");
    let text = std::fs::read_to_string(path).expect("dev file");
    let head: String = text.lines().take(20).map(|l| format!("{l}\n")).collect();
    let mut out = Vec::new();
    let n = score_jsonl(&Scorer::builtin().expect("builtin"), head.as_bytes(), "dev.jsonl", &mut out).expect("scores");
    assert_eq!(n, 20);
    let out = String::from_utf8(out).expect("utf8");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        assert!(v["id"].is_string() && v["score"].is_f64() && v["tier"].is_string(), "{line}");
    }
}
