//! Issue 16 against a real collector (SQLite) and the provider emulator:
//! - a minimal config (`identity.api_key_id`, a signing key, `collector_url`) loses no
//!   record: the SDK learns the key's binding from the policy and stamps it;
//! - a wrong `[identity]` value is a typed config error naming the field;
//! - a record the collector refuses is counted, reported with its reason, and releases
//!   the reservation of its call (budgets count each call once);
//! - a call the policy denies yields a `denied` record, counted as a denial per
//!   department and model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gaterouter::config::{Config, Identity};
use gaterouter::{ChatRequest, Client, ErrorKind, Message};
use gaterouter_collector::CollectorConfig;
use serde_json::{Value, json};

const ADMIN: &str = "e2e-admin-token-0123456789abcdef";

struct Env {
    emu: gaterouter_emulator::EmulatorHandle,
    collector: gaterouter_collector::CollectorHandle,
    http: reqwest::Client,
    cfg: Config,
    public_key: String,
    _dir: tempfile::TempDir,
}

fn tree(public_key: &str, key_department: &str, key_user: Option<&str>) -> Value {
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
async fn env() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
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
    let e = Env { emu, collector, http, cfg: Config::default(), public_key, _dir: dir };
    e.apply(&tree(&e.public_key, "eng", Some("alice"))).await;
    let key_file = e._dir.path().join("signing.key");
    std::fs::write(&key_file, signer.seed_base64().expose()).unwrap();
    let mut cfg = Config::for_emulator(&e.emu.base_url());
    cfg.retry.max_retries = 0;
    cfg.identity = Identity { api_key_id: Some("k_alice".into()), ..Default::default() };
    cfg.reporting.collector_url = Some(e.collector.url());
    cfg.reporting.spool_dir = Some(e._dir.path().join("spool"));
    cfg.reporting.signing_key_file = Some(key_file);
    cfg.reporting.batch_max_age_ms = 50;
    Env { cfg, ..e }
}

impl Env {
    async fn apply(&self, tree: &Value) {
        let r = self.http.put(format!("{}/v1/admin/org-tree", self.collector.url())).bearer_auth(ADMIN).json(tree).send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_success(), "org-tree: {status} {body}");
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.collector.url())).bearer_auth(ADMIN).send().await.unwrap();
        r.json().await.unwrap()
    }

    /// (used, reserved) of department eng's budget (the admin view: it stays readable
    /// after the key moves elsewhere).
    async fn eng_budget(&self) -> (u64, u64) {
        let v = self.get("/v1/admin/budgets?org_id=acme").await;
        let items = v["items"].as_array().unwrap_or_else(|| panic!("budgets: {v}"));
        let eng = items.iter().map(|i| &i["status"]).find(|b| b["level"] == "department:eng").unwrap_or_else(|| panic!("no eng budget: {v}"));
        (eng["used"].as_u64().unwrap(), eng["reserved"].as_u64().unwrap())
    }

    /// Spend of the records stored under department eng (what the records justify).
    async fn stored_eng_spend(&self) -> u64 {
        let v = self.get("/v1/analytics/breakdown?by=department").await;
        v["rows"].as_array().unwrap().iter().filter(|r| r["group"] == "eng").map(|r| r["spend_micros"].as_u64().unwrap()).sum()
    }
}

fn ask(model: &str) -> ChatRequest {
    let mut r = ChatRequest::new(model, vec![Message::user("Say hello in one word.")]);
    r.max_tokens = Some(20);
    r
}

/// Poll until `f` holds (records and settles travel asynchronously).
async fn eventually<F, Fut>(what: &str, mut f: F)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minimal_config_records_carry_the_keys_binding_and_none_is_refused() {
    let e = env().await;
    let client = Client::start(e.cfg.clone()).await.unwrap();
    let id = client.identity();
    assert_eq!((id.org.as_deref(), id.department.as_deref(), id.user.as_deref()), (Some("acme"), Some("eng"), Some("alice")), "{id:?}");
    let mut cost = 0;
    for _ in 0..3 {
        cost += client.chat(ask("openai/gpt-4o-mini")).await.unwrap().cost.unwrap().total_micros;
    }
    let report = client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!((report.delivered, report.refused, report.pending, report.last_refusal.as_deref()), (3, 0, 0, None), "{report:?}");
    let v = e.get("/v1/analytics/breakdown?by=department").await;
    let eng = v["rows"].as_array().unwrap().iter().find(|r| r["group"] == "eng").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(eng["calls"], 3, "{v}");
    eventually("budget counts each call once", || async {
        let (used, reserved) = e.eng_budget().await;
        if (used, reserved) == (cost, 0) { Ok(()) } else { Err(format!("used {used} reserved {reserved}, calls cost {cost}")) }
    })
    .await;
    println!("RELIABILITY minimal-config: 3 calls, {} delivered, {} refused, used {cost} == cost", report.delivered, report.refused);
    client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_identity_value_is_a_config_error_naming_the_field() {
    let e = env().await;
    let mut cfg = e.cfg.clone();
    cfg.identity.department = Some("legal".into());
    let err = Client::start(cfg.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let text = err.to_string();
    assert!(text.contains("identity.department") && text.contains("`legal`") && text.contains("department `eng`"), "{text}");
    // Without waiting at start (or offline at start): the first call fails the same way,
    // before any provider is called.
    // (Client::start released the spool it had opened: the same directory works again.)
    let client = Client::new(cfg).unwrap();
    let err = client.chat(ask("openai/gpt-4o-mini")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("identity.department"), "{err}");
    assert_eq!(e.emu.emulator().stats()["total"].as_u64().unwrap(), 0);
    client.shutdown().await.unwrap();
    // A configured value equal to the binding is fine.
    let mut ok = e.cfg.clone();
    ok.identity.department = Some("eng".into());
    Client::start(ok).await.unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_record_is_reported_and_releases_its_reservation() {
    let e = env().await;
    let client = Client::start(e.cfg.clone()).await.unwrap();
    let kept = client.chat(ask("openai/gpt-4o-mini")).await.unwrap().cost.unwrap().total_micros;
    assert!(client.flush(Duration::from_secs(10)).await.unwrap().all_delivered());
    // The next record waits in the spool while the admin moves the key to another
    // department: the collector then refuses it (scope), although its call was settled.
    client.suspend_reporting();
    let lost = client.chat(ask("openai/gpt-4o-mini")).await.unwrap().cost.unwrap().total_micros;
    eventually("the second call's settled hold", || async {
        let (used, reserved) = e.eng_budget().await;
        if (used, reserved) == (kept, lost) { Ok(()) } else { Err(format!("used {used} reserved {reserved}")) }
    })
    .await;
    e.apply(&tree(&e.public_key, "legal", None)).await;
    client.resume_reporting();
    let report = client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(report.drained && !report.all_delivered(), "{report:?}");
    assert_eq!((report.delivered, report.refused, report.dead_letters), (1, 1, 1), "{report:?}");
    let reason = report.last_refusal.clone().unwrap();
    assert!(reason.contains("scope violation") && reason.contains("department"), "{reason}");
    assert_eq!(report.refusals.len(), 1);
    assert_eq!(client.take_refusal_warnings(), vec![reason.clone()], "each reason once");
    assert!(client.take_refusal_warnings().is_empty());
    assert_eq!(client.usage_status().refused, 1);
    // Reconciliation: used + reserved = what the stored records justify (no call is open).
    eventually("the refused record's reservation is released", || async {
        let (used, reserved) = e.eng_budget().await;
        let stored = e.stored_eng_spend().await;
        if used + reserved == stored && reserved == 0 && used == kept {
            Ok(())
        } else {
            Err(format!("used {used} + reserved {reserved} != stored {stored} (kept {kept}, lost {lost})"))
        }
    })
    .await;
    println!("RELIABILITY refused-record: refused {} ({reason}); eng budget used {kept} reserved 0 = stored records; double counts 0", report.refused);
    client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_denied_call_yields_a_denied_record_counted_per_department_and_model() {
    let e = env().await;
    let client = Client::start(e.cfg.clone()).await.unwrap();
    let err = client.chat(ask("gemini/gemini-2.5-flash")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permission, "{err}");
    // estimate_cost applies the same policy to an explicit model.
    let est = client.estimate_cost(&ask("gemini/gemini-2.5-flash")).unwrap_err();
    assert_eq!((est.kind(), est.permission_rule().map(|r| r.0)), (ErrorKind::Permission, Some("allow_models")), "{est}");
    let err = client.chat(ask("openai/o3")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permission, "{err}");
    client.chat(ask("openai/gpt-4o-mini")).await.unwrap();
    assert_eq!(e.emu.emulator().stats()["total"].as_u64().unwrap(), 1, "denied calls never reach a provider");
    let report = client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(report.delivered, 3);
    let s = e.get("/v1/analytics/summary").await;
    assert_eq!((s["rows"][0]["calls"].as_u64(), s["rows"][0]["denials"].as_u64(), s["rows"][0]["errors"].as_u64()), (Some(3), Some(2), Some(0)), "{s}");
    let d = e.get("/v1/analytics/breakdown?by=department").await;
    let eng = d["rows"].as_array().unwrap().iter().find(|r| r["group"] == "eng").unwrap_or_else(|| panic!("{d}"));
    assert_eq!(eng["denials"], 2, "{d}");
    let m = e.get("/v1/analytics/breakdown?by=model").await;
    let denials = |model: &str| m["rows"].as_array().unwrap().iter().find(|r| r["group"] == model).map(|r| r["denials"].clone());
    assert_eq!((denials("gemini-2.5-flash"), denials("o3"), denials("gpt-4o-mini")), (Some(json!(1)), Some(json!(1)), Some(json!(0))), "{m}");
    client.shutdown().await.unwrap();
}
