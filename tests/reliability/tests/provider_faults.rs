//! Provider-faults suite (issue 11): the SDK against the emulator injecting 429 storms
//! (with `retry-after`), 500/502/503, 529 (Anthropic overloaded), slow answers beyond
//! the timeout, streams cut mid-way, mid-stream error events, malformed JSON and HTML
//! error pages. Every call ends as a correct answer or a typed error of the expected
//! [`ErrorKind`]; fallbacks go where configured; and the usage records stored by a real
//! collector account for every call and every attempt the emulator billed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

#[path = "../../../collector/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Env;
use gaterouter::config::{EnforceMode, Identity};
use gaterouter::{ChatRequest, Client, Config, ErrorKind, Message};
use gaterouter_reliability::scale;
use serde_json::{Value, json};
use sqlx::Row as _;

/// What a scenario must end with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A correct answer from this model.
    Answer(&'static str),
    /// A typed error of this kind.
    Fails(ErrorKind),
}

/// One injected fault and the outcome it must produce.
#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    /// Body of `POST /_emulator/faults` (provider and model set there).
    fault: Value,
    model: &'static str,
    stream: bool,
    expect: Expect,
}

fn scenarios() -> Vec<Scenario> {
    use Expect::{Answer, Fails};
    let q = |fault: &str, provider: &str, times: u64, extra: Value| {
        let mut v = json!({"fault": fault, "provider": provider, "times": times});
        if let Value::Object(m) = extra {
            for (k, x) in m {
                v[k] = x;
            }
        }
        v
    };
    let s = |name, fault, model, stream, expect| Scenario {
        name,
        fault,
        model,
        stream,
        expect,
    };
    vec![
        // 429: one, then recovered by a retry that honours retry-after.
        s(
            "429 once",
            q("rate_limit", "deepseek", 1, json!({"retry_after": 0.02})),
            "deepseek/deepseek-chat",
            false,
            Answer("deepseek/deepseek-chat"),
        ),
        // 429 storm longer than the retries, no fallback: RateLimited.
        s(
            "429 storm",
            q("rate_limit", "deepseek", 3, json!({"retry_after": 0.01})),
            "deepseek/deepseek-chat",
            false,
            Fails(ErrorKind::RateLimited),
        ),
        // 429 storm with a fallback chain: the next provider answers.
        s(
            "429 storm, fallback",
            q("rate_limit", "openai", 3, json!({"retry_after": 0.01})),
            "openai/gpt-4o-mini",
            false,
            Answer("anthropic/claude-haiku-4-5"),
        ),
        s(
            "429 storm, stream fallback",
            q("rate_limit", "openai", 3, json!({"retry_after": 0.01})),
            "openai/gpt-4o-mini",
            true,
            Answer("anthropic/claude-haiku-4-5"),
        ),
        // 5xx.
        s(
            "500 storm, fallback",
            q("server_error", "openai", 3, json!({})),
            "openai/gpt-4o-mini",
            false,
            Answer("anthropic/claude-haiku-4-5"),
        ),
        s(
            "502 once",
            q("server_error", "deepseek", 1, json!({"status": 502})),
            "deepseek/deepseek-chat",
            false,
            Answer("deepseek/deepseek-chat"),
        ),
        s(
            "503 storm",
            q("server_error", "deepseek", 3, json!({"status": 503})),
            "deepseek/deepseek-chat",
            false,
            Fails(ErrorKind::ProviderUnavailable),
        ),
        // 529 overloaded (Anthropic).
        s(
            "529 storm, fallback",
            q("overloaded", "anthropic", 3, json!({})),
            "anthropic/claude-haiku-4-5",
            false,
            Answer("gemini/gemini-2.5-flash"),
        ),
        s(
            "529 storm",
            q("overloaded", "anthropic", 3, json!({})),
            "anthropic/claude-sonnet-4-5",
            false,
            Fails(ErrorKind::ProviderUnavailable),
        ),
        s(
            "529 once, stream",
            q("overloaded", "anthropic", 1, json!({})),
            "anthropic/claude-sonnet-4-5",
            true,
            Answer("anthropic/claude-sonnet-4-5"),
        ),
        // Slower than the request timeout once: the retry answers.
        s(
            "slow once",
            q("slow", "deepseek", 1, json!({"delay_ms": 900})),
            "deepseek/deepseek-chat",
            false,
            Answer("deepseek/deepseek-chat"),
        ),
        // Streams cut mid-way, or broken by an error event: no retry after the first byte.
        s(
            "cut stream",
            q("cut_stream", "openai", 1, json!({"after_events": 2})),
            "openai/gpt-4o-mini",
            true,
            Fails(ErrorKind::StreamInterrupted),
        ),
        s(
            "cut stream (anthropic)",
            q("cut_stream", "anthropic", 1, json!({"after_events": 3})),
            "anthropic/claude-sonnet-4-5",
            true,
            Fails(ErrorKind::StreamInterrupted),
        ),
        s(
            "mid-stream 529",
            q("overloaded", "anthropic", 1, json!({"after_events": 2})),
            "anthropic/claude-sonnet-4-5",
            true,
            Fails(ErrorKind::ProviderUnavailable),
        ),
        // Answers that cannot be used.
        s(
            "malformed JSON",
            q("malformed_json", "deepseek", 1, json!({})),
            "deepseek/deepseek-chat",
            false,
            Fails(ErrorKind::InvalidResponse),
        ),
        s(
            "malformed JSON (gemini)",
            q("malformed_json", "gemini", 1, json!({})),
            "gemini/gemini-2.5-flash",
            false,
            Fails(ErrorKind::InvalidResponse),
        ),
        s(
            "HTML 502 storm",
            q("html_error", "deepseek", 3, json!({})),
            "deepseek/deepseek-chat",
            false,
            Fails(ErrorKind::ProviderUnavailable),
        ),
        s(
            "HTML 503 once",
            q("html_error", "deepseek", 1, json!({"status": 503})),
            "deepseek/deepseek-chat",
            false,
            Answer("deepseek/deepseek-chat"),
        ),
        s(
            "HTML page with 200",
            q("html_error", "deepseek", 1, json!({"status": 200})),
            "deepseek/deepseek-chat",
            false,
            Fails(ErrorKind::InvalidResponse),
        ),
    ]
}

fn is_mid_stream_kind(k: ErrorKind) -> bool {
    matches!(
        k,
        ErrorKind::StreamInterrupted | ErrorKind::ProviderUnavailable
    )
}

#[tokio::test]
async fn every_call_answers_or_fails_typed_and_every_billed_attempt_is_recorded() {
    let env = Env::start(None, |_| {}).await;
    env.seed_org().await;
    let (key, public) = gaterouter::usage::generate_key();
    env.admin_ok(
        "/v1/admin/keys",
        json!({"id": "k_faults", "org_id": "acme", "department_id": "eng", "public_key": public}),
    )
    .await;
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let mut cfg = Config::for_emulator(&emu.base_url());
    cfg.retry.initial_backoff_ms = 5;
    cfg.retry.max_backoff_ms = 20;
    cfg.timeouts.request_ms = 400;
    cfg.routing.circuit_breaker.failure_threshold = 1_000_000;
    cfg.routing.fallbacks.insert(
        "openai/gpt-4o-mini".into(),
        vec!["anthropic/claude-haiku-4-5".into()],
    );
    cfg.routing.fallbacks.insert(
        "anthropic/claude-haiku-4-5".into(),
        vec!["gemini/gemini-2.5-flash".into()],
    );
    cfg.identity = Identity {
        org: Some("acme".into()),
        department: Some("eng".into()),
        user: Some("alice".into()),
        api_key_id: Some("k_faults".into()),
        ..Default::default()
    };
    cfg.reporting.collector_url = Some(env.base.clone());
    cfg.reporting.spool_dir = Some(dir.path().join("spool"));
    cfg.reporting.signing_key = Some(key.seed_base64());
    cfg.reporting.batch_max_age_ms = 20;
    cfg.policy.enforce = EnforceMode::Off;
    let client = Client::new(cfg).unwrap();

    let rounds = scale(2, 20);
    let mut calls = 0u64;
    let mut answered_by: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered_tokens = 0u64;
    let mut injected = 0u64;
    let mut timed_out = 0u64;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for round in 0..rounds {
        for sc in scenarios() {
            let mut fault = sc.fault.clone();
            // Only this scenario's first model consumes the queued fault.
            fault["model"] = json!(sc.model.split_once('/').unwrap().1);
            injected += fault["times"].as_u64().unwrap();
            if fault["fault"] == "slow" {
                timed_out += fault["times"].as_u64().unwrap();
            }
            emu.emulator().queue_fault(&fault).unwrap();
            let req = ChatRequest::new(
                sc.model,
                vec![Message::user(format!("round {round}: {}", sc.name))],
            );
            calls += 1;
            let outcome = if sc.stream {
                match client.chat_stream(req).await {
                    Ok(s) => s.collect_response().await,
                    Err(e) => Err(e),
                }
            } else {
                client.chat(req).await
            };
            let code = outcome
                .as_ref()
                .map_or_else(|e| e.kind().code().to_owned(), |_| "ok".to_owned());
            *seen.entry(code).or_default() += 1;
            match (sc.expect, outcome) {
                (Expect::Answer(model), Ok(resp)) => {
                    assert_eq!(
                        resp.model, model,
                        "{}: answered by the wrong model ({:?})",
                        sc.name, resp.route
                    );
                    assert!(
                        resp.text().contains("Emulated") || !resp.text().is_empty(),
                        "{}: empty answer",
                        sc.name
                    );
                    assert!(
                        resp.usage.prompt_tokens > 0 && resp.usage.completion_tokens > 0,
                        "{}: {:?}",
                        sc.name,
                        resp.usage
                    );
                    assert!(
                        resp.cost.as_ref().is_some_and(|c| c.total_micros > 0),
                        "{}: no cost",
                        sc.name
                    );
                    *answered_by
                        .entry(model.split_once('/').unwrap().0.to_owned())
                        .or_default() += 1;
                    answered_tokens += resp.usage.prompt_tokens + resp.usage.completion_tokens;
                }
                (Expect::Fails(kind), Err(e)) => {
                    let ok = e.kind() == kind
                        || (sc.stream && is_mid_stream_kind(kind) && is_mid_stream_kind(e.kind()));
                    assert!(ok, "{}: expected {kind}, got {} ({e})", sc.name, e.kind());
                    assert!(!e.to_string().is_empty());
                }
                (want, got) => panic!(
                    "{}: expected {want:?}, got {:?}",
                    sc.name,
                    got.map(|r| r.model)
                ),
            }
            // The queued fault was used up exactly.
            assert_eq!(
                emu.emulator().stats()["faults_queued"].as_u64(),
                Some(0),
                "{}: faults left in the queue",
                sc.name
            );
        }
    }
    let out = client.flush(Duration::from_secs(20)).await.unwrap();
    assert!(out.drained, "{out:?}");
    client.shutdown().await.unwrap();
    // Slow attempts the client gave up on finish on the emulator side.
    tokio::time::sleep(Duration::from_millis(700)).await;

    let db = &env.handle.state().db;
    let rows = db.fetch("SELECT provider, status, attempts, prompt_tokens, completion_tokens, id FROM usage_records WHERE api_key_id = 'k_faults'", &[], "records").await.unwrap();
    let stats = emu.emulator().stats();
    // One record per call, never two.
    assert_eq!(rows.len() as u64, calls, "records vs calls");
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>(5).unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, calls, "duplicate record ids");
    // Every attempt is counted in its record's `attempts`: the ones the emulator served,
    // plus the slow ones the client timed out (the emulator drops those unserved).
    let attempts: i64 = rows.iter().map(|r| r.try_get::<i64, _>(2).unwrap()).sum();
    assert_eq!(
        attempts as u64,
        stats["total"].as_u64().unwrap() + timed_out,
        "attempts in records vs requests served: {stats}"
    );
    // Every billed attempt (a full answer) has its ok record, per provider, with the
    // tokens the caller saw.
    let mut ok_records: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok_tokens = 0u64;
    for r in &rows {
        if r.try_get::<String, _>(1).unwrap() == "ok" {
            *ok_records
                .entry(r.try_get::<String, _>(0).unwrap())
                .or_default() += 1;
            ok_tokens += (r.try_get::<i64, _>(3).unwrap() + r.try_get::<i64, _>(4).unwrap()) as u64;
        }
    }
    assert_eq!(
        ok_records, answered_by,
        "ok records per provider vs answers"
    );
    assert_eq!(ok_tokens, answered_tokens);
    let billed: BTreeMap<String, u64> = stats["by_provider_outcome"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(p, o)| o["ok"].as_u64().map(|n| (p.clone(), n)))
        .collect();
    assert_eq!(
        billed, answered_by,
        "emulator's billed answers vs ok records: {stats}"
    );
    // Each record carries the outcome its caller saw (billed but unusable answers, such
    // as cut streams and malformed bodies, included).
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *stored
            .entry(r.try_get::<String, _>(1).unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        stored, seen,
        "record statuses vs outcomes seen by the callers"
    );
    eprintln!(
        "provider faults: {calls} calls, {injected} faults injected, {} requests served, {} records, 0 lost, 0 duplicated",
        stats["total"],
        rows.len()
    );
    emu.shutdown().await;
}
