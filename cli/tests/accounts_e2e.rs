//! The SDK against a real collector (SQLite) and the provider emulator: an org tree
//! applied through the admin API, then policies and a hard budget enforced by the SDK
//! with the collector as the authority. (The collector's own suite checks the server
//! side; core's suite checks the SDK against a stub. This checks that they agree.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gaterouter::config::{Config, Identity};
use gaterouter::{ChatRequest, Client, ErrorKind, Message};
use gaterouter_collector::CollectorConfig;
use serde_json::{Value, json};

const ADMIN: &str = "e2e-admin-token-0123456789abcdef";
/// $0.01 a month for department eng.
const ENG_BUDGET_MICROS: u64 = 10_000;

struct Env {
    emu: gaterouter_emulator::EmulatorHandle,
    collector: gaterouter_collector::CollectorHandle,
    http: reqwest::Client,
    cfg: Config,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    env_with_budget("0.01").await
}

async fn env_with_budget(eng_monthly_usd: &str) -> Env {
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
    let tree = json!({
        "org": {"id": "acme", "name": "Acme", "policy": {"deny_models": ["openai/o3*"]}},
        "departments": [
            {"id": "eng", "name": "Engineering",
             "policy": {"allow_models": ["openai/*", "anthropic/*"]},
             "budgets": [{"metric": "usd", "period": "month", "limit": eng_monthly_usd, "enforcement": "hard"}]},
            {"id": "legal", "name": "Legal", "policy": {"zero_retention_only": true}}
        ],
        "members": [{"id": "alice", "name": "Alice", "department": "eng"}],
        "keys": [{"id": "k_alice", "department": "eng", "user": "alice", "public_key": public_key}]
    });
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/v1/admin/org-tree", collector.url()))
        .bearer_auth(ADMIN)
        .json(&tree)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "org-tree: {status} {body}");

    let key_file = dir.path().join("signing.key");
    std::fs::write(&key_file, signer.seed_base64().expose()).unwrap();
    let mut cfg = Config::for_emulator(&emu.base_url());
    cfg.retry.max_retries = 0;
    cfg.identity = Identity {
        org: Some("acme".into()),
        department: Some("eng".into()),
        user: Some("alice".into()),
        api_key_id: Some("k_alice".into()),
        ..Default::default()
    };
    cfg.reporting.collector_url = Some(collector.url());
    cfg.reporting.spool_dir = Some(dir.path().join("spool"));
    cfg.reporting.signing_key_file = Some(key_file);
    cfg.reporting.batch_max_age_ms = 50;
    cfg.policy.enforce = gaterouter::config::EnforceMode::Required;
    Env {
        emu,
        collector,
        http,
        cfg,
        _dir: dir,
    }
}

fn provider_calls(e: &Env) -> u64 {
    e.emu.emulator().stats()["total"].as_u64().unwrap()
}

fn ask(model: &str, max_tokens: u32) -> ChatRequest {
    let mut r = ChatRequest::new(model, vec![Message::user("Say hello in one word.")]);
    r.max_tokens = Some(max_tokens);
    r
}

async fn spend_in_collector(e: &Env) -> u64 {
    spend_after_flush(e, 0).await
}

/// The department budget's `used` once it reaches `at_least` (records arrive async).
async fn spend_after_flush(e: &Env, at_least: u64) -> u64 {
    let mut used = 0;
    for _ in 0..100 {
        used = spend_now(e).await;
        if used >= at_least.max(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    used
}

async fn spend_now(e: &Env) -> u64 {
    let r = e
        .http
        .get(format!(
            "{}/v1/admin/effective-policy?api_key_id=k_alice",
            e.collector.url()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let b = v["budgets"]
        .as_array()
        .unwrap_or_else(|| panic!("effective policy: {v}"));
    let eng = b.iter().find(|b| b["level"] == "department:eng").unwrap();
    assert_eq!(
        eng["reserved"], 0,
        "every reservation settled and consumed: {eng}"
    );
    eng["used"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collector_policy_is_enforced_by_the_sdk_before_any_provider_call() {
    let e = env().await;
    let client = Client::new(e.cfg.clone()).unwrap();

    let err = client
        .chat(ask("gemini/gemini-2.5-flash", 20))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permission, "{err}");
    let (rule, level) = err.permission_rule().unwrap();
    assert_eq!(
        (rule, level.map(|l| l.to_string())),
        ("allow_models", Some("department:eng".into())),
        "{err}"
    );

    let err = client.chat(ask("openai/o3", 20)).await.unwrap_err();
    let (rule, level) = err.permission_rule().unwrap();
    assert_eq!(
        (rule, level.map(|l| l.to_string())),
        ("deny_models", Some("org:acme".into())),
        "{err}"
    );
    assert_eq!(provider_calls(&e), 0, "denied calls never reach a provider");

    let resp = client.chat(ask("openai/gpt-4o-mini", 20)).await.unwrap();
    let cost = resp.cost.as_ref().unwrap().total_micros;
    assert!(cost > 0);
    assert_eq!(provider_calls(&e), 1);
    assert!(client.flush(Duration::from_secs(10)).await.unwrap().drained);
    // The record is stored and counted once: the settled reservation was consumed.
    let mut used = 0;
    for _ in 0..50 {
        used = spend_in_collector(&e).await;
        if used > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(used, cost, "collector counts exactly the call's cost");
    client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_cannot_overshoot_a_hard_budget() {
    let e = env().await;
    let client = Client::new(e.cfg.clone()).unwrap();
    // Hold every admitted call at the provider for a while, so that they are all in
    // flight together and the budget is decided by the reservations alone.
    e.emu
        .emulator()
        .queue_fault(&json!({"fault": "slow", "delay_ms": 400, "times": 40}))
        .unwrap();
    // gpt-4o-mini: $0.60 per million output tokens, so max_tokens 1000 reserves about
    // $0.0006 a call: the $0.01 budget admits at most ~16 calls in flight at once.
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.chat(ask("openai/gpt-4o-mini", 1000)).await })
        })
        .collect();
    let (mut ok, mut refused, mut max_cost) = (0u64, 0u64, 0u64);
    for c in calls {
        match c.await.unwrap() {
            Ok(r) => {
                ok += 1;
                max_cost = max_cost.max(r.cost.unwrap().total_micros);
            }
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Budget, "{err}");
                let b = err.budget_status().unwrap();
                assert_eq!(b.level.to_string(), "department:eng");
                assert_eq!(b.period, gaterouter::accounts::Period::Month);
                assert!(err.to_string().contains("resets at"), "{err}");
                refused += 1;
            }
        }
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert_eq!(
        provider_calls(&e),
        ok,
        "refused calls never reached a provider"
    );
    assert!(client.flush(Duration::from_secs(10)).await.unwrap().drained);
    let mut used = 0;
    for _ in 0..50 {
        used = spend_in_collector(&e).await;
        if used > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        used <= ENG_BUDGET_MICROS,
        "spent {used} of {ENG_BUDGET_MICROS}"
    );
    eprintln!(
        "admitted {ok}, refused {refused}, spent {used} of {ENG_BUDGET_MICROS} micro-dollars (largest call {max_cost})"
    );
    client.shutdown().await.unwrap();
}

/// The proof: 200 concurrent calls through the SDK against a budget that fits 50
/// of them. Each call asks for exactly the completion the emulator gives, so its maximum
/// cost (what it reserves) equals its actual cost and the budget fits exactly 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_calls_against_a_budget_for_fifty() {
    // Learn the call's exact cost from an unmanaged client on its own emulator.
    let probe_emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let probe = Client::new(Config::for_emulator(&probe_emu.base_url())).unwrap();
    let first = probe.chat(ask("openai/gpt-4o", 4000)).await.unwrap();
    let completion = u32::try_from(first.usage.completion_tokens).unwrap();
    let exact = probe.chat(ask("openai/gpt-4o", completion)).await.unwrap();
    assert_eq!(exact.usage.completion_tokens, first.usage.completion_tokens);
    let per_call = exact.cost.unwrap().total_micros;
    let budget = 50 * per_call;
    let e = env_with_budget(&format!("{}.{:06}", budget / 1_000_000, budget % 1_000_000)).await;
    let client = Client::new(e.cfg.clone()).unwrap();
    e.emu
        .emulator()
        .queue_fault(&json!({"fault": "slow", "delay_ms": 200, "times": 200}))
        .unwrap();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.chat(ask("openai/gpt-4o", completion)).await })
        })
        .collect();
    let (mut ok, mut refused) = (0u64, 0u64);
    for c in calls {
        match c.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.cost.unwrap().total_micros, per_call);
                ok += 1;
            }
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Budget, "{err}");
                refused += 1;
            }
        }
    }
    assert!(client.flush(Duration::from_secs(20)).await.unwrap().drained);
    let spent = spend_after_flush(&e, ok * per_call).await;
    eprintln!(
        "budget {budget} micros = 50 calls of {per_call}: admitted {ok}, refused {refused}, spent {spent}"
    );
    assert!(ok <= 50, "admitted {ok} calls, the budget fits 50");
    assert!(ok >= 1 && ok + refused == 200);
    assert_eq!(
        spent,
        ok * per_call,
        "the collector counts each admitted call once"
    );
    assert!(
        spent <= budget + per_call,
        "overshoot beyond one request: spent {spent} of {budget}"
    );
    assert_eq!(
        provider_calls(&e),
        ok,
        "refused calls never reached a provider"
    );
    client.shutdown().await.unwrap();
}
