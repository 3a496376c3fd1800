//! The `gaterouter-collector` binary: config precedence errors and a real start/stop
//! (SIGTERM -> graceful exit 0).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_gaterouter-collector");

#[test]
fn unknown_config_key_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "listen = \"127.0.0.1:0\"\nadmin_tokn = \"x\"\n").unwrap();
    let out = Command::new(BIN).arg("--config").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin_tokn"), "{err}");
    let out = Command::new(BIN)
        .args(["--db", "mysql://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sqlite://"));
    let out = Command::new(BIN)
        .env("GATEROUTER_COLLECTOR_LISTN", "x")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("GATEROUTER_COLLECTOR_LISTN"));
}

#[test]
fn bad_otlp_settings_are_refused_with_the_fix() {
    let out = Command::new(BIN)
        .args(["--otlp-endpoint", "otel:4318"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("otlp_endpoint")
            && err.contains("Fix:")
            && err.contains("http://otel-collector:4318"),
        "{err}"
    );
    let out = Command::new(BIN)
        .env("GATEROUTER_COLLECTOR_OTLP_SIGNALS", "logs")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GATEROUTER_COLLECTOR_OTLP_SIGNALS") && err.contains("traces"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args([
            "--otlp-endpoint",
            "http://otel:4318",
            "--otlp-headers",
            "x-key",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name=value"));
}

#[test]
fn serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        format!("listen = \"127.0.0.1:{port}\"\nlog_format = \"json\"\n"),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&f)
        .arg("--data-dir")
        .arg(dir.path())
        .env(
            "GATEROUTER_COLLECTOR_ADMIN_TOKEN",
            "cli-admin-token-0123456789",
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "collector did not listen on {port}");
    assert!(
        dir.path().join("collector.db").exists(),
        "default SQLite file under --data-dir"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("\"collector listening\"") && err.contains("shutting down"),
        "{err}"
    );
}
