//! `gaterouter route score | eval | calibrate | simulate` end to end on a sample of the
//! bundled labeled data (offline: no provider, no emulator).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gaterouter");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("GATEROUTER_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "gaterouter-route-test-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every 12th line of the dev file: ~700 prompts of every family.
fn sample(d: &std::path::Path) -> String {
    let dev = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/routing/dev.jsonl"
    ))
    .unwrap();
    let text: String = dev.lines().step_by(12).map(|l| format!("{l}\n")).collect();
    let p = d.join("sample.jsonl");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn help_documents_the_input_format() {
    for sub in ["score", "eval", "calibrate", "simulate"] {
        let (ok, out, err) = run(&["route", sub, "--help"]);
        assert!(ok, "{err}");
        for needle in [
            "INPUT FORMAT",
            "messages",
            "weak_score",
            "strong_score",
            "source",
        ] {
            assert!(
                out.contains(needle),
                "route {sub} --help lacks {needle}: {out}"
            );
        }
    }
}

#[test]
fn calibrate_eval_score_round_trip() {
    let d = dir("cal");
    let data = sample(&d);
    let w = d.join("w.json");
    let w = w.to_str().unwrap();
    let args = [
        "route",
        "calibrate",
        &data,
        "--out",
        w,
        "--train-frac",
        "0.5",
        "--seed",
        "2",
        "--bits",
        "10",
        "--lambdas",
        "1,10",
    ];
    let (ok, out, err) = run(&args);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("cross-validated on this file (mean over the folds): APGR")
            && out.contains("builtin weights")
            && out.contains("length-only"),
        "{out}"
    );
    // No harm: the fit is written only when it beats both on the same folds, and the
    // output says which was written.
    assert!(
        out.contains("writing it")
            || out.contains("writing the builtin weights instead")
            || out.contains("writing a length-only rule instead"),
        "{out}"
    );
    assert!(out.contains("held-out part"), "{out}");
    assert!(std::fs::metadata(w).unwrap().len() < 100_000);
    // deterministic: the same command writes the same file
    let first = std::fs::read_to_string(w).unwrap();
    assert!(run(&args).0);
    assert_eq!(std::fs::read_to_string(w).unwrap(), first);

    let forced = d.join("forced.json");
    let forced = forced.to_str().unwrap();
    let mut fargs = args.to_vec();
    fargs[4] = forced;
    fargs.push("--force");
    let (ok, out, err) = run(&fargs);
    assert!(ok, "{out}\n{err}");
    let fw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(forced).unwrap()).unwrap();
    assert_eq!(fw["link"], "gain", "--force writes the fit: {out}");

    let (ok, out, err) = run(&[
        "route",
        "eval",
        &data,
        "--weights",
        w,
        "--train-frac",
        "0.5",
        "--seed",
        "2",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("held-out part"), "{out}");
    for metric in ["APGR", "CPT50", "CPT80", "strong share for 95% Q"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(metric))
            .unwrap_or_else(|| panic!("no {metric} row: {out}"));
        assert!(
            line.split_whitespace()
                .filter(|t| t.parse::<f64>().is_ok() || t.ends_with('%'))
                .count()
                >= 3,
            "{line}"
        );
    }
    assert!(out.contains("length-only"), "{out}");
    let (ok, out, _) = run(&["route", "eval", &data, "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["router"]["apgr"].is_f64() && v["length_only"]["apgr"].is_f64(),
        "{v}"
    );

    let (ok, out, err) = run(&["route", "score", &data, "--weights", w]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), data_lines(&data));
    let _ = std::fs::remove_dir_all(d);
}

fn data_lines(p: &str) -> usize {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// `route simulate DATA --explore 0.2 --bits 10 --out OUT` and `extra`.
fn simulate(data: &str, out: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "route",
        "simulate",
        data,
        "--explore",
        "0.2",
        "--bits",
        "10",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn json_line(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn simulate_prints_one_json_line_and_is_deterministic() {
    let d = dir("sim");
    let data = sample(&d);
    let w = d.join("s.json");
    let w = w.to_str().unwrap();
    let split = ["--seed", "3", "--train-frac", "0.5"];
    let (ok, out, err) = simulate(&data, w, &split);
    assert!(ok, "{out}\n{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let v = json_line(&out);
    for k in [
        "realized_quality",
        "strong_share",
        "explored_share",
        "refits",
        "weights_version",
    ] {
        assert!(!v[k].is_null(), "{k} missing: {v}");
    }
    assert!(v["refits"].as_u64().unwrap() >= 1, "{v}");
    let (ok, again, _) = simulate(&data, w, &split);
    assert!(ok);
    assert_eq!(again, out, "same seed, same replay");
    assert_eq!(
        v["shadowed_share"], 0.0,
        "no shadow sampling unless asked: {v}"
    );
    // the written weights score a file
    let (ok, _, err) = run(&["route", "score", &data, "--weights", w]);
    assert!(ok, "{err}");
    // Shadow sampling: about that share of calls also reveals the other arm.
    let mut shadowed = split.to_vec();
    shadowed.extend(["--shadow", "0.4"]);
    let (ok, out, err) = simulate(&data, w, &shadowed);
    assert!(ok, "{out}\n{err}");
    let v = json_line(&out);
    let share = v["shadowed_share"].as_f64().unwrap();
    assert!((0.2..=0.6).contains(&share), "{v}");
    assert!(v["shadow_strong_share"].as_f64().unwrap() <= share, "{v}");
    let _ = std::fs::remove_dir_all(d);
}

/// The sample keeps the dev file's order, sorted by `source`: replayed as it is, the
/// command says so on standard error and in the JSON line; `--shuffle` replays it mixed.
#[test]
fn simulate_warns_when_the_file_is_grouped_by_source_and_shuffle_mixes_it() {
    let d = dir("simorder");
    let data = sample(&d);
    let w = d.join("s.json");
    let w = w.to_str().unwrap();
    let (ok, out, err) = simulate(&data, w, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains("warning: the prompts arrive grouped by source") && err.contains("--shuffle"),
        "{err}"
    );
    let v = json_line(&out);
    let warning = &v["warnings"][0];
    assert_eq!(warning["kind"], "grouped_by_source", "{v}");
    let (runs, sources) = (
        warning["runs"].as_u64().unwrap(),
        warning["sources"].as_u64().unwrap(),
    );
    assert_eq!(runs, sources, "sorted: one run per source: {v}");
    assert!(
        warning["expected_runs"].as_f64().unwrap() > 10.0 * runs as f64,
        "{v}"
    );
    assert!(
        std::path::Path::new(w).exists(),
        "the weights are written all the same"
    );
    let (ok, out, err) = simulate(&data, w, &["--shuffle"]);
    assert!(ok, "{out}\n{err}");
    assert!(!err.contains("warning"), "{err}");
    let v = json_line(&out);
    assert!(v.get("warnings").is_none(), "{v}");
    assert_eq!(v["rows"], 700, "the same prompts, in another order: {v}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn bad_options_are_clear_errors() {
    let d = dir("bad");
    let data = sample(&d);
    let w = d.join("w.json");
    let w = w.to_str().unwrap();
    let (ok, _, err) = run(&["route", "eval", &data, "--train-frac", "1.5"]);
    assert!(!ok && err.contains("--train-frac"), "{err}");
    let (ok, _, err) = run(&[
        "route",
        "eval",
        &data,
        "--train-frac",
        "0.5",
        "--holdout",
        "nope",
    ]);
    assert!(!ok && err.contains("holdout"), "{err}");
    let (ok, _, err) = run(&["route", "simulate", &data, "--explore", "2", "--out", w]);
    assert!(!ok && err.contains("explore"), "{err}");
    let (ok, _, err) = run(&["route", "simulate", &data, "--shadow", "1.5", "--out", w]);
    assert!(!ok && err.contains("shadow"), "{err}");
    let (ok, _, err) = run(&["route", "calibrate", &data, "--out", w, "--folds", "1"]);
    assert!(!ok && err.contains("folds"), "{err}");
    let unlabeled = d.join("u.jsonl");
    std::fs::write(
        &unlabeled,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n".repeat(30),
    )
    .unwrap();
    let (ok, _, err) = run(&[
        "route",
        "calibrate",
        unlabeled.to_str().unwrap(),
        "--out",
        w,
    ]);
    assert!(!ok && err.contains("weak_score"), "{err}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn builtin_tiers_of_short_prompts() {
    // Issue 20: "2+2?" and "Hello from python" went heavy; short prompts are light now.
    let d = dir("tiers");
    let p = d.join("p.jsonl");
    let prompts = ["2+2?", "Hello from python", "Hi", "What color is the sky?"];
    let text: String = prompts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!("{{\"id\":\"{i}\",\"messages\":[{{\"role\":\"user\",\"content\":\"{t}\"}}]}}\n")
        })
        .collect();
    std::fs::write(&p, text).unwrap();
    let (ok, out, err) = run(&["route", "score", p.to_str().unwrap()]);
    assert!(ok, "{err}");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["tier"], "light", "{line}");
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn calibrate_with_several_models_ranks_inside_a_tier_by_predicted_success() {
    // Outcomes of three models named as the default tiers name them: gpt-4o-mini fails
    // every question about torts and answers the others; flash-lite answers 90 % of
    // everything; gpt-5 answers everything. Only the light tier has models here (the
    // tier the gain model picks does not matter): the success models decide inside it.
    let d = dir("multi");
    let p = d.join("multi.jsonl");
    let mut text = String::new();
    for i in 0..400 {
        let hard = i % 2 == 0;
        let topic = if hard { "tort" } else { "lake" };
        let mini = if hard { 0.0 } else { 1.0 };
        let lite = if i % 10 == 3 { 0.0 } else { 1.0 };
        text.push_str(&format!(
            "{{\"id\":\"m{i}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Which {topic} rule applies to case {}?\"}}],\
             \"weak_model\":\"gemini/gemini-2.5-flash-lite\",\"strong_model\":\"openai/gpt-5\",\
             \"scores\":{{\"openai/gpt-4o-mini\":{mini},\"gemini/gemini-2.5-flash-lite\":{lite},\"openai/gpt-5\":1.0}}}}\n",
            i % 97
        ));
    }
    std::fs::write(&p, text).unwrap();
    let w = d.join("w.json");
    let (ok, out, err) = run(&[
        "route",
        "calibrate",
        p.to_str().unwrap(),
        "--out",
        w.to_str().unwrap(),
        "--bits",
        "10",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("model openai/gpt-4o-mini: 400 prompts")
            && out.contains("writing its fitted success model"),
        "{out}"
    );
    assert!(
        out.contains("model openai/gpt-5: 400 prompts, mean score 1.000")
            && out.contains("writing its mean score"),
        "{out}"
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w).unwrap()).unwrap();
    assert_eq!(file["success"]["margin"], 0.05, "{file}");
    assert_eq!(
        file["success"]["models"].as_object().map(|m| m.len()),
        Some(3)
    );

    let cfg = d.join("gaterouter.toml");
    std::fs::write(
        &cfg,
        format!(
            "[routing]\npolicy = \"quality\"\nstandard = []\nheavy = []\nscorer_weights_file = {:?}\n",
            w.to_str().unwrap()
        ),
    )
    .unwrap();
    let route = |prompt: &str| {
        let (ok, out, err) = run(&["--config", cfg.to_str().unwrap(), "route", prompt, "--json"]);
        assert!(ok, "{out}\n{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    // A tort question: gpt-4o-mini (first by preference) is predicted to fail, so the
    // next model predicted to do it serves, and the reason says why.
    let v = route("Which tort rule applies to case 12?");
    assert_eq!(v["chosen"], "gemini/gemini-2.5-flash-lite", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("openai/gpt-4o-mini (predicted success 0.")
            && reason.contains("goes after the models predicted within 0.05 of the best"),
        "{reason}"
    );
    let mini = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "openai/gpt-4o-mini")
        .unwrap();
    assert!(mini["predicted_success"].as_f64().unwrap() < 0.3, "{mini}");
    // A lake question: gpt-4o-mini is predicted to do it: the preference order stands.
    let v = route("Which lake rule applies to case 12?");
    assert_eq!(v["chosen"], "openai/gpt-4o-mini", "{v}");
    // The text explanation shows the predictions.
    let (ok, out, err) = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "route",
        "Which tort rule applies to case 12?",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("predicted success"), "{out}");
    let _ = std::fs::remove_dir_all(d);
}
