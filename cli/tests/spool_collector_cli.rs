//! `gaterouter spool status|flush` and `gaterouter collector serve` as a user runs them:
//! the spool directory comes from the config (as the client resolves it), a missing one
//! is a clear error with a non-zero exit, dead letters are shown per reason; the
//! collector logs its address, database, dashboard and refused batches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gaterouter");

fn run(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("GATEROUTER_CONFIG")
        .env_remove("RUST_LOG");
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Write a spool with `n` records in `dir` through the real recorder, and a dead-letter
/// file with two reasons.
fn seed_spool(dir: &std::path::Path, n: usize) {
    use gaterouter::config::{Identity, Secret};
    use gaterouter::usage::{Recorder, ReportingConfig, UsageRecordInput, generate_key};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (signer, _) = generate_key();
        let cfg = ReportingConfig {
            spool_dir: Some(dir.to_path_buf()),
            signing_key: Some(Secret::new(signer.seed_base64().expose())),
            ..Default::default()
        };
        let r = Recorder::start(
            &cfg,
            &Identity {
                api_key_id: Some("k_cli".into()),
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..n {
            r.record(UsageRecordInput {
                provider: "openai".into(),
                model: "gpt-4o-mini".into(),
                prompt_tokens: 3,
                ..Default::default()
            })
            .unwrap();
        }
        r.shutdown().await.unwrap();
    });
    let dead = [
        r#"{"dead_at_ms":1,"reason":"scope violation: department is `eng` but api_key_id `k_cli` is bound to department `legal`","record":{}}"#,
        r#"{"dead_at_ms":2,"reason":"scope violation: department is `eng` but api_key_id `k_cli` is bound to department `legal`","record":{}}"#,
        r#"{"dead_at_ms":3,"reason":"unknown api_key_id `k_cli`","record":{}}"#,
    ];
    std::fs::write(
        dir.join(gaterouter::usage::spool::DEAD_LETTER_FILE),
        dead.join("\n") + "\n",
    )
    .unwrap();
}

#[test]
fn spool_status_uses_the_configured_directory_and_shows_dead_letter_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    seed_spool(&spool, 2);
    let config = tmp.path().join("g.toml");
    std::fs::write(
        &config,
        format!(
            "[identity]\napi_key_id = \"k_cli\"\n\n[reporting]\nspool_dir = {:?}\n",
            spool.display().to_string()
        ),
    )
    .unwrap();
    let (ok, out, err) = run(
        &["--config", config.to_str().unwrap(), "spool", "status"],
        &[],
    );
    assert!(ok, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        (v["pending_records"].as_u64(), v["dead_letters"].as_u64()),
        (Some(2), Some(3)),
        "{v}"
    );
    let reasons = v["dead_letter_reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 2, "{v}");
    assert_eq!(reasons[0]["count"], 2);
    assert!(
        reasons[0]["reason"]
            .as_str()
            .unwrap()
            .contains("scope violation"),
        "{v}"
    );
    assert_eq!(
        v["last_error"], "dead-lettered: unknown api_key_id `k_cli`",
        "{v}"
    );

    // A directory that does not exist: a clear error, non-zero exit.
    let missing = tmp.path().join("nope");
    let (ok, out, err) = run(
        &["spool", "status", "--dir", missing.to_str().unwrap()],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("does not exist") && err.contains("nope"),
        "{err}"
    );
    let (ok, _, err) = run(
        &[
            "--config",
            config.to_str().unwrap(),
            "spool",
            "flush",
            "--dir",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && err.contains("does not exist"), "{err}");
}

#[test]
fn spool_status_finds_the_default_slots_of_the_key() {
    let data = tempfile::tempdir().unwrap();
    // The client's default: <data dir>/gaterouter/spool/<api_key_id>/p<N>.
    let slot = data
        .path()
        .join("gaterouter")
        .join("spool")
        .join("k_cli")
        .join("p0");
    seed_spool(&slot, 1);
    let config = data.path().join("g.toml");
    std::fs::write(&config, "[identity]\napi_key_id = \"k_cli\"\n").unwrap();
    let env = [
        ("XDG_DATA_HOME", data.path().to_str().unwrap()),
        ("HOME", data.path().to_str().unwrap()),
    ];
    let (ok, out, err) = run(
        &["--config", config.to_str().unwrap(), "spool", "status"],
        &env,
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("\"pending_records\": 1") && out.contains("p0"),
        "{out}"
    );
    // Another key has no spool yet: an error naming where it looked.
    std::fs::write(&config, "[identity]\napi_key_id = \"k_other\"\n").unwrap();
    let (ok, _, err) = run(
        &["--config", config.to_str().unwrap(), "spool", "status"],
        &env,
    );
    assert!(
        !ok && err.contains("no spool directory found") && err.contains("k_other"),
        "{err}"
    );
}

#[test]
fn collector_serve_logs_address_database_dashboard_and_refused_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("c.db").display());
    let mut child = Command::new(BIN)
        .args(["collector", "serve", "--listen", "127.0.0.1:0", "--db", &db])
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env(
            "GATEROUTER_COLLECTOR_ADMIN_TOKEN",
            "cli-test-admin-token-0123456789",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let wait_for = |log: &mut String, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !log.contains(what) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    log.push_str(&strip_ansi(&l));
                    log.push('\n');
                }
                Err(_) => return false,
            }
        }
        true
    };
    let listening = wait_for(&mut log, "dashboard");
    let addr = log
        .lines()
        .find(|l| l.contains("collector listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .map(|a| a.split_whitespace().next().unwrap().to_owned());
    // The child is killed whatever the checks say; a failed check is re-raised after.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(listening, "no startup log: {log}");
        assert!(
            log.contains("collector listening")
                && log.contains("collector database")
                && log.contains(&db),
            "{log}"
        );
        let addr = addr
            .clone()
            .unwrap_or_else(|| panic!("no address in: {log}"));
        assert!(log.contains(&format!("http://{addr}/dashboard")), "{log}");
        // A batch with a record from an unknown key: refused, and the reason is logged.
        let rec = serde_json::json!({"records": [{"id": "0192b3c4-d5e6-7f00-8a1b-2c3d4e5f6071", "api_key_id": "k_nobody", "signature": "x"}]});
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let status = rt.block_on(async {
            reqwest::Client::new()
                .post(format!("http://{addr}/v1/usage"))
                .json(&rec)
                .send()
                .await
                .map(|r| r.status())
        });
        assert!(status.is_ok(), "{status:?}");
        assert!(
            wait_for(&mut log, "usage records rejected"),
            "refused batch not logged: {log}"
        );
        assert!(log.contains("k_nobody"), "the reason names the key: {log}");
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The line without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
