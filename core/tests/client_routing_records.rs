//! Through the public `Client` against the emulator: `auto` routing and its explanation,
//! fallbacks, the circuit breaker, cost on responses, and one signed usage record per
//! call delivered to a (fake) collector.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use futures_util::StreamExt;
use gaterouter::config::Identity;
use gaterouter::health::{BreakerConfig, BreakerState};
use gaterouter::pricing::{Catalog, CostOptions};
use gaterouter::routing::{AttemptOutcome, Policy, Tier};
use gaterouter::usage::RouteMode;
use gaterouter::usage::signing::verify_wire;
use gaterouter::usage::{BatchResponse, UsageRecord, UsageStatus, generate_key};
use gaterouter::{ChatRequest, Client, Config, ErrorKind, Message, Tool};
use gaterouter_emulator::EmulatorHandle;
use serde_json::{Value, json};

async fn emulator() -> EmulatorHandle {
    gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn config(base: &str) -> Config {
    let mut cfg = Config::for_emulator(base);
    cfg.retry.initial_backoff_ms = 5;
    cfg.retry.max_backoff_ms = 20;
    cfg
}

#[tokio::test]
async fn auto_routes_by_tier_and_explains() {
    let emu = emulator().await;
    let client = Client::new(config(&emu.base_url())).unwrap();
    let simple = ChatRequest::new(
        "auto",
        vec![Message::user("Translate 'thank you' to French.")],
    );
    // The built-in weights rank mostly by length (what carries to unseen subjects; see
    // bench/RESULTS.md "Routing"): a long, demanding request goes to the heavy tier.
    let hard = ChatRequest::new(
        "auto",
        vec![Message::user(
            "Prove step by step that the sum of the first n odd numbers is n^2, then derive a closed form for \
             sum_{k=1}^{n} k^3 and analyze the complexity of computing it. ```python\ndef f(n):\n    return sum(k**3 for k in range(n))\n```\n"
                .repeat(12),
        )],
    );
    let d_simple = client.route(&simple).unwrap();
    let d_hard = client.route(&hard).unwrap();
    assert_eq!(d_simple.mode, RouteMode::Auto);
    assert!(
        d_hard.score.unwrap() > d_simple.score.unwrap(),
        "{d_hard:?} vs {d_simple:?}"
    );
    assert_eq!(d_hard.tier, Some(Tier::Heavy), "{}", d_hard.reason);
    assert!(client.config().routing.heavy.contains(&d_hard.chosen));
    assert!(!d_hard.features.is_empty());
    // Mistral has no key in this config: excluded, with the reason.
    let all = [d_simple.excluded.clone(), d_hard.excluded.clone()].concat();
    assert!(
        all.iter()
            .any(|e| e.model.starts_with("mistral/") && e.reason.contains("MISTRAL_API_KEY")),
        "{all:?}"
    );
    // Ranked alternatives carry estimated costs.
    assert!(
        d_hard
            .candidates
            .iter()
            .all(|c| c.estimated_cost_micros.is_some())
    );

    let resp = client.chat(hard).await.unwrap();
    let route = resp.route.as_ref().unwrap();
    assert_eq!(resp.model, route.chosen);
    assert_eq!(route.attempts.len(), 1);
    assert_eq!(route.attempts[0].outcome, AttemptOutcome::Ok);
    // The cost is the catalog's price of the reported usage.
    let expected = Catalog::builtin()
        .cost(&resp.usage, &resp.model, CostOptions::default())
        .unwrap();
    assert_eq!(
        resp.cost.as_ref().unwrap().total_micros,
        expected.total_micros
    );
    assert!(expected.total_micros > 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn cheapest_policy_and_capabilities() {
    let emu = emulator().await;
    let mut cfg = config(&emu.base_url());
    cfg.routing.policy = Policy::Cheapest;
    let client = Client::new(cfg).unwrap();
    let mut req = ChatRequest::new("auto", vec![Message::user("hi")]);
    let d = client.route(&req).unwrap();
    let first = d.candidates[0].estimated_cost_micros.unwrap();
    let same_tier: Vec<_> = d
        .candidates
        .iter()
        .filter(|c| c.tier == d.candidates[0].tier)
        .collect();
    assert!(
        same_tier
            .iter()
            .all(|c| c.estimated_cost_micros.unwrap() >= first),
        "{same_tier:?}"
    );
    req.tools = vec![Tool::function("f", "f", json!({"type": "object"}))];
    let resp = client.chat(req).await.unwrap();
    assert_eq!(
        resp.finish_reason(),
        Some(gaterouter::FinishReason::ToolCalls)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn falls_back_to_the_next_model_on_outage() {
    let emu = emulator().await;
    let mut cfg = config(&emu.base_url());
    cfg.routing.fallbacks.insert(
        "openai/gpt-4o-mini".into(),
        vec![
            "anthropic/claude-haiku-4-5".into(),
            "gemini/gemini-2.5-flash".into(),
        ],
    );
    let client = Client::new(cfg).unwrap();
    // Every attempt at OpenAI fails (first try + 2 retries).
    emu.emulator()
        .queue_fault(&json!({"fault": "server_error", "times": 3, "provider": "openai"}))
        .unwrap();
    let (resp, stats) = client
        .chat_with_stats(ChatRequest::new(
            "openai/gpt-4o-mini",
            vec![Message::user("hello")],
        ))
        .await
        .unwrap();
    assert_eq!(resp.model, "anthropic/claude-haiku-4-5");
    let route = resp.route.unwrap();
    assert_eq!(route.mode, RouteMode::Explicit);
    assert_eq!(route.attempts[0].model, "openai/gpt-4o-mini");
    assert_eq!(
        route.attempts[0].outcome,
        AttemptOutcome::Failed(ErrorKind::ProviderUnavailable)
    );
    assert_eq!(route.attempts[0].retries, 2);
    assert_eq!(route.attempts[1].outcome, AttemptOutcome::Ok);
    assert_eq!(stats.attempts, 4);

    // A 400 is the caller's problem: no fallback.
    emu.emulator()
        .queue_fault(&json!({"fault": "bad_request", "times": 1, "provider": "openai"}))
        .unwrap();
    let e = client
        .chat(ChatRequest::new(
            "openai/gpt-4o-mini",
            vec![Message::user("hello")],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);

    // Streams fall back too, before the first byte.
    emu.emulator()
        .queue_fault(
            &json!({"fault": "rate_limit", "times": 3, "provider": "openai", "retry_after": 0.01}),
        )
        .unwrap();
    let stream = client
        .chat_stream(ChatRequest::new(
            "openai/gpt-4o-mini",
            vec![Message::user("hello")],
        ))
        .await
        .unwrap();
    assert_eq!(
        stream.route().unwrap().attempts.last().unwrap().model,
        "anthropic/claude-haiku-4-5"
    );
    let r = stream.collect_response().await.unwrap();
    assert_eq!(r.model, "anthropic/claude-haiku-4-5");
    assert!(r.cost.is_some());
    emu.shutdown().await;
}

#[tokio::test]
async fn context_overflow_falls_back_to_a_larger_window() {
    let emu = emulator().await;
    let mut cfg = config(&emu.base_url());
    cfg.routing.fallbacks.insert(
        "openai/gpt-4o-mini".into(),
        vec![
            "deepseek/deepseek-chat".into(),
            "gemini/gemini-2.5-flash".into(),
        ],
    );
    let client = Client::new(cfg).unwrap();
    emu.emulator()
        .queue_fault(&json!({"fault": "context_length", "times": 1, "provider": "openai"}))
        .unwrap();
    let resp = client
        .chat(ChatRequest::new(
            "openai/gpt-4o-mini",
            vec![Message::user("long")],
        ))
        .await
        .unwrap();
    // deepseek-chat's window is not larger than gpt-4o-mini's: skipped for gemini's 1M.
    assert_eq!(resp.model, "gemini/gemini-2.5-flash", "{:?}", resp.route);
    emu.shutdown().await;
}

#[tokio::test]
async fn circuit_breaker_opens_skips_and_recovers() {
    let emu = emulator().await;
    let mut cfg = config(&emu.base_url());
    cfg.retry.max_retries = 0;
    cfg.routing.circuit_breaker = BreakerConfig {
        failure_threshold: 2,
        cooldown_ms: 300,
    };
    cfg.routing.fallbacks.insert(
        "openai/gpt-4o-mini".into(),
        vec!["anthropic/claude-haiku-4-5".into()],
    );
    let client = Client::new(cfg).unwrap();
    emu.emulator()
        .queue_fault(&json!({"fault": "overloaded", "times": 2, "provider": "openai"}))
        .unwrap();
    let ask = || ChatRequest::new("openai/gpt-4o-mini", vec![Message::user("x")]);
    for _ in 0..2 {
        assert_eq!(
            client.chat(ask()).await.unwrap().model,
            "anthropic/claude-haiku-4-5"
        );
    }
    assert_eq!(client.breaker_state("openai"), BreakerState::Open);
    // While open, openai is skipped without a request.
    let before = emu.emulator().stats()["by_provider"]["openai"]
        .as_u64()
        .unwrap();
    let resp = client.chat(ask()).await.unwrap();
    assert_eq!(resp.model, "anthropic/claude-haiku-4-5");
    assert_eq!(
        emu.emulator().stats()["by_provider"]["openai"]
            .as_u64()
            .unwrap(),
        before
    );
    // auto leaves it out and says why.
    let d = client
        .route(&ChatRequest::new("auto", vec![Message::user("hi")]))
        .unwrap();
    assert!(
        d.excluded
            .iter()
            .any(|e| e.model.starts_with("openai/") && e.reason.contains("circuit open")),
        "{:?}",
        d.excluded
    );
    // After the cool-down one probe goes through and closes it.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(client.breaker_state("openai"), BreakerState::HalfOpen);
    assert_eq!(
        client.chat(ask()).await.unwrap().model,
        "openai/gpt-4o-mini"
    );
    assert_eq!(client.breaker_state("openai"), BreakerState::Closed);
    emu.shutdown().await;
}

#[tokio::test]
async fn explicit_models_are_checked_before_any_call() {
    let emu = emulator().await;
    let mut cfg = config(&emu.base_url());
    cfg.models = vec![
        gaterouter::config::ModelEntry {
            id: "openai/gpt-4o-mini".into(),
            provider_model: None,
        },
        gaterouter::config::ModelEntry {
            id: "anthropic/claude-3-5-haiku".into(),
            provider_model: None,
        },
    ];
    let client = Client::new(cfg).unwrap();
    let e = client
        .chat(ChatRequest::new("openai/gpt-4o", vec![Message::user("x")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
    let huge = ChatRequest::new(
        "openai/gpt-4o-mini",
        vec![Message::user("word ".repeat(140_000))],
    );
    assert_eq!(
        client.chat(huge).await.unwrap_err().kind(),
        ErrorKind::ContextLengthExceeded
    );
    assert_eq!(
        emu.emulator().stats()["total"].as_u64().unwrap(),
        0,
        "nothing reached a provider"
    );
    emu.shutdown().await;
}

/// A collector that verifies signatures and keeps what it stored.
#[derive(Default)]
struct FakeCollector {
    public_key: String,
    stored: Mutex<Vec<UsageRecord>>,
}

async fn ingest(State(c): State<Arc<FakeCollector>>, body: Bytes) -> axum::Json<BatchResponse> {
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut resp = BatchResponse::default();
    for r in v["records"].as_array().unwrap() {
        let rec = verify_wire(&r.to_string(), &c.public_key).expect("valid signature");
        resp.accepted.push(rec.id.as_str().to_owned());
        c.stored.lock().unwrap().push(rec);
    }
    axum::Json(resp)
}

#[tokio::test]
async fn every_call_yields_one_signed_record() {
    let emu = emulator().await;
    let (signer, public_key) = generate_key();
    let collector = Arc::new(FakeCollector {
        public_key,
        ..Default::default()
    });
    let app = Router::new()
        .route("/v1/usage", post(ingest))
        .with_state(collector.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, signer.seed_base64().expose()).unwrap();
    let mut cfg = config(&emu.base_url());
    cfg.retry.max_retries = 0;
    cfg.identity = Identity {
        org: Some("acme".into()),
        department: Some("research".into()),
        project: Some("search".into()),
        group: None,
        user: Some("alice".into()),
        api_key_id: Some("key_1".into()),
    };
    cfg.reporting.collector_url = Some(collector_url);
    cfg.reporting.spool_dir = Some(dir.path().join("spool"));
    cfg.reporting.signing_key_file = Some(key_file);
    cfg.reporting.batch_max_age_ms = 50;
    let client = Client::new(cfg).unwrap();

    // 1: chat; 2: auto; 3: stream to the end; 4: stream dropped early; 5: a failed call.
    let mut req = ChatRequest::new(
        "openai/gpt-4o-mini",
        vec![Message::user("secret-prompt-text-1")],
    );
    req.metadata.insert("feature".into(), "search".into());
    let r1 = client.chat(req).await.unwrap();
    let r2 = client
        .chat(ChatRequest::new("auto", vec![Message::user("two")]))
        .await
        .unwrap();
    let mut s = client
        .chat_stream(ChatRequest::new(
            "gemini/gemini-2.5-flash",
            vec![Message::user("three")],
        ))
        .await
        .unwrap();
    while let Some(c) = s.next().await {
        c.unwrap();
    }
    let mut s = client
        .chat_stream(ChatRequest::new(
            "anthropic/claude-haiku-4-5",
            vec![Message::user("four, a longer answer")],
        ))
        .await
        .unwrap();
    s.next().await.unwrap().unwrap();
    drop(s);
    emu.emulator()
        .queue_fault(&json!({"fault": "rate_limit", "times": 1, "provider": "deepseek"}))
        .unwrap();
    client
        .chat(ChatRequest::new(
            "deepseek/deepseek-chat",
            vec![Message::user("five")],
        ))
        .await
        .unwrap_err();
    // 6: a non-streaming call abandoned by its caller while the provider is still working.
    emu.emulator()
        .queue_fault(&json!({"fault": "slow", "delay_ms": 2000, "times": 1, "provider": "openai"}))
        .unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(200),
        client.chat(ChatRequest::new(
            "openai/gpt-4o",
            vec![Message::user("six, abandoned")],
        )),
    );
    assert!(abandoned.await.is_err(), "the caller's timeout fired");
    // Bad tags are refused before any call.
    let mut bad = ChatRequest::new("openai/gpt-4o-mini", vec![Message::user("x")]);
    bad.metadata.insert("k".repeat(100), "v".into());
    assert_eq!(
        client.chat(bad).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );

    let out = client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(out.drained, "{out:?}");
    let stored = collector.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 6, "{stored:#?}");
    let mut ids: Vec<_> = stored.iter().map(|r| r.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    let seqs: Vec<u64> = stored.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let first = &stored[0];
    assert_eq!(
        (
            first.org.as_deref(),
            first.user.as_deref(),
            first.api_key_id.as_str()
        ),
        (Some("acme"), Some("alice"), "key_1")
    );
    assert_eq!(first.provider, "openai");
    assert_eq!(first.model, "gpt-4o-mini");
    assert_eq!(first.prompt_tokens, r1.usage.prompt_tokens);
    assert_eq!(first.cost_micros, r1.cost.unwrap().total_micros);
    assert_eq!(
        first.tags.get("feature").map(String::as_str),
        Some("search")
    );
    assert_eq!(stored[1].route.as_ref().unwrap().mode, RouteMode::Auto);
    assert_eq!(stored[1].completion_tokens, r2.usage.completion_tokens);
    assert!(
        stored[2].stream && stored[2].status == UsageStatus::Ok && stored[2].completion_tokens > 0
    );
    assert!(stored[2].time_to_first_token_ms.is_some());
    assert_eq!(stored[3].status, UsageStatus::Cancelled);
    assert_eq!(stored[4].status, UsageStatus::Error(ErrorKind::RateLimited));
    assert_eq!(stored[4].prompt_tokens, 0);
    let six = &stored[5];
    assert_eq!(
        (six.status, six.stream, six.model.as_str()),
        (UsageStatus::Cancelled, false, "gpt-4o")
    );
    assert!(
        six.prompt_tokens > 0 && six.completion_tokens == 0 && six.cost_micros > 0,
        "{six:?}"
    );
    // No prompt or completion text, ever.
    let all = serde_json::to_string(&stored).unwrap();
    assert!(
        !all.contains("secret-prompt-text") && !all.contains("Emulated reply"),
        "{all}"
    );
    client.shutdown().await.unwrap();
    emu.shutdown().await;
}
