//! A real collector (SQLite) with an org tree applied and the provider emulator, and an
//! SDK config with only what the README's "Set up your organization" names: shared by
//! the end-to-end tests of this directory.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use gaterouter::config::{Config, Identity};
use gaterouter::{ChatRequest, Message};
use gaterouter_collector::CollectorConfig;
use serde_json::{Value, json};

pub const ADMIN: &str = "e2e-admin-token-0123456789abcdef";

pub struct Env {
    pub emu: gaterouter_emulator::EmulatorHandle,
    pub collector: gaterouter_collector::CollectorHandle,
    pub http: reqwest::Client,
    pub cfg: Config,
    pub public_key: String,
    pub _dir: tempfile::TempDir,
}

pub fn tree(public_key: &str, key_department: &str, key_user: Option<&str>) -> Value {
    let mut key = json!({"id": "k_alice", "department": key_department, "public_key": public_key});
    if let Some(u) = key_user {
        key["user"] = json!(u);
    }
    json!({
        "org": {"id": "acme", "name": "Acme", "policy": {"deny_models": ["openai/o3*"]}},
        "departments": [
            {"id": "eng", "name": "Engineering",
             "policy": {"allow_models": ["openai/*", "anthropic/*"]},
             "budgets": [{"metric": "usd", "period": "month", "limit": "1.00", "enforcement": "hard"}]},
            {"id": "legal", "name": "Legal"}
        ],
        "members": [{"id": "alice", "name": "Alice", "department": "eng"}],
        "keys": [key]
    })
}

/// A collector with the tree applied and an SDK config with only what the README's
/// "Set up your organization" names: `identity.api_key_id`, a signing key file and the
/// collector URL.
pub async fn env() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let collector = gaterouter_collector::spawn(CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: Some(format!("sqlite://{}", dir.path().join("c.db").display())),
        admin_token: Some(ADMIN.into()),
        shutdown_timeout_secs: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let (signer, public_key) = gaterouter::usage::signing::generate_key();
    let http = reqwest::Client::new();
    let e = Env {
        emu,
        collector,
        http,
        cfg: Config::default(),
        public_key,
        _dir: dir,
    };
    e.apply(&tree(&e.public_key, "eng", Some("alice"))).await;
    let key_file = e._dir.path().join("signing.key");
    std::fs::write(&key_file, signer.seed_base64().expose()).unwrap();
    let mut cfg = Config::for_emulator(&e.emu.base_url());
    cfg.retry.max_retries = 0;
    cfg.identity = Identity {
        api_key_id: Some("k_alice".into()),
        ..Default::default()
    };
    cfg.reporting.collector_url = Some(e.collector.url());
    cfg.reporting.spool_dir = Some(e._dir.path().join("spool"));
    cfg.reporting.signing_key_file = Some(key_file);
    cfg.reporting.batch_max_age_ms = 50;
    Env { cfg, ..e }
}

impl Env {
    pub async fn apply(&self, tree: &Value) {
        let r = self
            .http
            .put(format!("{}/v1/admin/org-tree", self.collector.url()))
            .bearer_auth(ADMIN)
            .json(tree)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_success(), "org-tree: {status} {body}");
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.collector.url()))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    /// (used, reserved) of department eng's budget (the admin view: it stays readable
    /// after the key moves elsewhere).
    pub async fn eng_budget(&self) -> (u64, u64) {
        let v = self.get("/v1/admin/budgets?org_id=acme").await;
        let items = v["items"]
            .as_array()
            .unwrap_or_else(|| panic!("budgets: {v}"));
        let eng = items
            .iter()
            .map(|i| &i["status"])
            .find(|b| b["level"] == "department:eng")
            .unwrap_or_else(|| panic!("no eng budget: {v}"));
        (
            eng["used"].as_u64().unwrap(),
            eng["reserved"].as_u64().unwrap(),
        )
    }

    /// Spend of the records stored under department eng (what the records justify).
    pub async fn stored_eng_spend(&self) -> u64 {
        let v = self.get("/v1/analytics/breakdown?by=department").await;
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["group"] == "eng")
            .map(|r| r["spend_micros"].as_u64().unwrap())
            .sum()
    }
}

pub fn ask(model: &str) -> ChatRequest {
    let mut r = ChatRequest::new(model, vec![Message::user("Say hello in one word.")]);
    r.max_tokens = Some(20);
    r
}

/// Poll until `f` holds (records and settles travel asynchronously).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for _ in 0..100 {
        match f().await {
            Ok(()) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: {last}");
}
