//! The `gaterouter` binary end to end: the README's demo (emulator + embedded collector),
//! and the offline subcommands.
#![allow(clippy::unwrap_used)]

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

#[test]
fn demo_runs_end_to_end_and_the_collector_counts_every_call() {
    let (ok, out, err) = run(&["demo", "--emulate-all"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("usage records delivered: true (0 pending)"),
        "{out}"
    );
    assert!(
        out.contains("9 calls") && out.contains("(0 cost mismatches)"),
        "{out}"
    );
    assert!(out.contains("[auto]") && out.contains("tier"), "{out}");
    assert!(
        out.contains("/dashboard (sign in with the demo admin token"),
        "{out}"
    );
    // Not a terminal: the demo exits at once and says how to keep the dashboard up.
    assert!(
        out.contains("run `gaterouter demo --keep-running` to keep it up"),
        "{out}"
    );
}

#[test]
fn offline_subcommands() {
    let (ok, out, _) = run(&[
        "cost",
        "-m",
        "openai/gpt-4o",
        "--input",
        "1000000",
        "--output",
        "1000000",
    ]);
    assert!(ok && out.contains("$12.500000"), "{out}");
    let (ok, out, _) = run(&["cost", "-m", "nope/x", "--input", "1"]);
    assert!(!ok, "{out}");
    let dir = tempfile_dir();
    let text = dir.join("t.txt");
    std::fs::write(&text, "hello world").unwrap();
    let (ok, out, _) = run(&["tokens", "-m", "openai/gpt-4o", text.to_str().unwrap()]);
    assert!(ok && out.starts_with("2 tokens (exact"), "{out}");
    let key = dir.join("k.key");
    let (ok, out, _) = run(&["keys", "new", "--out", key.to_str().unwrap()]);
    assert!(ok && out.contains("public key"), "{out}");
    let (ok, _, err) = run(&["keys", "new", "--out", key.to_str().unwrap()]);
    assert!(
        !ok && err.contains("exists"),
        "refuses to overwrite a key: {err}"
    );
    let (ok, _, err) = run(&["chat", "-m", "gpt-4o", "x"]);
    assert!(!ok && err.contains("provider/model"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gaterouter-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The binary with no provider key in its environment (and no config file).
fn run_without_keys(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("GATEROUTER_CONFIG")
        .env_remove("GATEROUTER_EMULATOR_URL")
        .current_dir(std::env::temp_dir());
    for (k, _) in std::env::vars() {
        if k.ends_with("_API_KEY") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn route_explains_without_keys_and_calls_nothing() {
    let (ok, out, err) =
        run_without_keys(&["route", "Prove that sqrt(2) is irrational, step by step"]);
    assert!(ok, "exit 0 with the explanation: {out}\n{err}");
    assert!(out.contains("no model is usable now"), "{out}");
    assert!(out.contains("score ") && out.contains(", tier "), "{out}");
    assert!(out.contains("candidates"), "{out}");
    assert!(
        out.contains("no API key for provider openai ($OPENAI_API_KEY is not set)"),
        "{out}"
    );
    assert!(out.contains("no API key for provider anthropic"), "{out}");
    // Each candidate once, even when a model is listed in several tiers.
    let cands: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("candidates"))
        .skip(1)
        .take_while(|l| l.starts_with("  ") && !l.trim_start().starts_with("excluded"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<_> = cands.iter().collect();
    assert!(
        !cands.is_empty() && unique.len() == cands.len(),
        "{cands:?}"
    );
    let (ok, out, _) = run_without_keys(&["route", "--json", "2+2?"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        ok && v["usable_now"] == false
            && v["unusable_now"].as_array().is_some_and(|a| !a.is_empty())
            && v["tier"].is_string(),
        "{out}"
    );
    // With the emulator, keys exist: the normal explanation.
    let (ok, out, err) = run_without_keys(&["--emulate", "route", "2+2?"]);
    assert!(
        ok && !out.contains("no model is usable now") && out.contains("candidates"),
        "{out}\n{err}"
    );
}

#[test]
fn chat_with_emulate_prints_model_and_cost_on_stderr() {
    let (ok, out, err) =
        run_without_keys(&["--emulate", "chat", "-m", "openai/gpt-4o-mini", "Say hi"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        !out.contains("-- ") && !out.trim().is_empty(),
        "stdout is the answer alone: {out}"
    );
    assert!(
        err.contains("-- openai/gpt-4o-mini") && err.contains("cost $0.0"),
        "{err}"
    );
    let (ok, out, err) = run_without_keys(&[
        "--emulate",
        "chat",
        "-m",
        "auto",
        "--stream",
        "Write a haiku",
    ]);
    assert!(
        ok && !out.trim().is_empty() && !out.contains("-- "),
        "{out}\n{err}"
    );
    let summary = err
        .lines()
        .find(|l| l.starts_with("-- "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        summary.contains('/')
            && summary.contains("completion tokens")
            && summary.contains("cost $"),
        "streamed too, with the routed model: {summary}"
    );
    // --emulator-url with a dead emulator: a clear error, not a hang.
    let (ok, _, err) = run_without_keys(&[
        "--emulator-url",
        "http://127.0.0.1:1",
        "chat",
        "-m",
        "openai/gpt-4o-mini",
        "x",
    ]);
    assert!(!ok && err.contains("error ["), "{err}");
}

#[test]
fn empty_config_values_are_refused_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("gaterouter-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gr.toml");
    std::fs::write(&cfg, "[providers.anthropic]\napi_version = \"\"\n").unwrap();
    let (ok, _, err) = run_without_keys(&[
        "--config",
        cfg.to_str().unwrap(),
        "--emulate",
        "chat",
        "-m",
        "anthropic/claude-haiku-4-5",
        "x",
    ]);
    assert!(
        !ok && err.contains("providers.anthropic.api_version") && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn a_closed_output_pipe_ends_every_command_quietly() {
    // The reader is gone before the first byte is written, so every write fails with
    // EPIPE: the command must exit 0 without a panic message, every time.
    // Its own directory: offline_subcommands removes tempfile_dir() while this runs.
    let dir = std::env::temp_dir().join(format!("gaterouter-cli-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("pipe.txt");
    std::fs::write(&text, "hello world ".repeat(1000)).unwrap();
    let prompts = dir.join("prompts.jsonl");
    let line = |i: usize| {
        format!(
            "{{\"id\":\"p{i}\",\"messages\":[{{\"role\":\"user\",\"content\":\"question {i}\"}}]}}\n"
        )
    };
    std::fs::write(&prompts, (0..2000).map(line).collect::<String>()).unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["route", "2+2?"],
        vec!["route", "score", prompts.to_str().unwrap()],
        vec!["route", "--json", "2+2?"],
        vec!["models"],
        vec!["cost", "-m", "openai/gpt-4o", "--input", "1000"],
        vec!["tokens", "-m", "openai/gpt-4o", text.to_str().unwrap()],
        vec!["--emulate", "chat", "-m", "openai/gpt-4o-mini", "hi"],
        vec![
            "--emulate",
            "chat",
            "--stream",
            "-m",
            "openai/gpt-4o-mini",
            "hi",
        ],
        vec!["--help"],
    ];
    for round in 0..8 {
        for args in &cases {
            let mut child = Command::new(BIN)
                .args(args)
                .env_remove("GATEROUTER_CONFIG")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !err.contains("panicked") && !err.contains("Broken pipe"),
                "round {round} {args:?}: {:?} {err}",
                out.status
            );
        }
    }
}
