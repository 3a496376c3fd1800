//! The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by
//! playwright-core from collector/dashboard-test): a collector seeded with the analytics
//! data set must show the seeded numbers; a screenshot is saved to
//! target/test-output/dashboard.png. Skipped with a message when node, chromium or the
//! npm package are absent, unless GATEROUTER_TEST_REQUIRE_BROWSER=1 (run_all.sh).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn skip(msg: &str) {
    if std::env::var("GATEROUTER_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("dashboard test cannot run: {msg}");
    }
    eprintln!("SKIPPED dashboard browser test: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_seeded_numbers() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let test_dir = crate_dir.join("dashboard-test");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return skip(&format!("{chromium} not found (apt-get install chromium)"));
    }
    if !test_dir.join("node_modules/playwright-core").exists() {
        return skip("collector/dashboard-test/node_modules is missing (npm ci there)");
    }
    if std::process::Command::new("node").arg("--version").output().is_err() {
        return skip("node is not installed");
    }
    let env = Env::start(None, |_| {}).await;
    seed_analytics(&env).await;
    let out_dir = crate_dir.parent().unwrap().join("target/test-output");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let base = env.base.clone();
    let out = tokio::process::Command::new("node")
        .arg("--test")
        .arg(test_dir.join("dashboard.test.mjs"))
        .env("COLLECTOR_URL", &base)
        .env("COLLECTOR_TOKEN", ADMIN)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT", &shot)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{stderr}");
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "no screenshot at {}", shot.display());
    env.handle.shutdown().await;
}
