//! The `gaterouter` binary end to end: the README's demo (emulator + embedded collector),
//! and the offline subcommands.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gaterouter");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).env_remove("GATEROUTER_CONFIG").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn demo_runs_end_to_end_and_the_collector_counts_every_call() {
    let (ok, out, err) = run(&["demo", "--emulate-all"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("usage records delivered: true (0 pending)"), "{out}");
    assert!(out.contains("9 calls") && out.contains("(0 cost mismatches)"), "{out}");
    assert!(out.contains("[auto]") && out.contains("tier"), "{out}");
    assert!(out.contains("/dashboard (sign in with the demo admin token"), "{out}");
    // Not a terminal: the demo exits at once and says how to keep the dashboard up.
    assert!(out.contains("run `gaterouter demo --keep-running` to keep it up"), "{out}");
}

#[test]
fn offline_subcommands() {
    let (ok, out, _) = run(&["cost", "-m", "openai/gpt-4o", "--input", "1000000", "--output", "1000000"]);
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
    assert!(!ok && err.contains("exists"), "refuses to overwrite a key: {err}");
    let (ok, _, err) = run(&["chat", "-m", "gpt-4o", "x"]);
    assert!(!ok && err.contains("provider/model"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gaterouter-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
