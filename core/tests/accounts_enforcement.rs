//! The SDK side of organization policies and budgets, through the public `Client`,
//! against a stub collector that speaks `collector/ACCOUNTS.md` (signed requests
//! verified, hard budgets held by reservations) and the provider emulator.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use futures_util::StreamExt;
use gaterouter::accounts::enforce::max_cost;
use gaterouter::accounts::request_auth::{parse_authorization, verify_request};
use gaterouter::accounts::{
    AccountsErrorBody, BudgetStatus, EffectivePolicy, EffectiveRules, Enforcement, KeyScope, Level,
    LevelKind, Metric, Period, PolicyRules, ReservationRequest, ReservationResponse, SettleRequest,
};
use gaterouter::config::{Identity, WhenUnreachable};
use gaterouter::pricing::Catalog;
use gaterouter::usage::{BatchResponse, ManualClock, generate_key, unix_ms_now};
use gaterouter::{ChatRequest, Client, Config, ErrorKind, Message};
use gaterouter_emulator::EmulatorHandle;
use serde_json::{Value, json};

const KEY_ID: &str = "k_search_prod";

/// A collector stub: serves a policy, holds reservations against its hard budgets,
/// records settles and ingested usage record ids.
struct Stub {
    public_key: String,
    policy: Mutex<EffectivePolicy>,
    gets: AtomicU64,
    get_delay_ms: AtomicU64,
    down: AtomicBool,
    reservations: Mutex<Vec<ReservationRequest>>,
    settles: Mutex<Vec<(String, SettleRequest)>>,
    records: Mutex<Vec<String>>,
    warnings: Mutex<Vec<String>>,
    /// Every reservation id that arrived, including refused and failed attempts.
    reservation_attempts: Mutex<Vec<String>>,
    /// Answer this many reservation requests with 503 first.
    fail_reservations: AtomicU64,
    /// Answer as a newer collector would: every JSON object of the policy and of a granted
    /// reservation gains a field this SDK does not know.
    future_fields: AtomicBool,
    /// Wait this long after granting a reservation before answering.
    reserve_answer_delay_ms: AtomicU64,
}

/// `v` with a field no SDK knows added to every object in it.
fn with_future_fields(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.values_mut().for_each(walk);
                o.insert("added_by_a_newer_collector".into(), json!({"x": [1, 2]}));
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

type Reply = (StatusCode, axum::Json<Value>);

fn error(status: StatusCode, body: AccountsErrorBody) -> Reply {
    (status, axum::Json(json!({ "error": body })))
}

impl Stub {
    fn check(
        &self,
        method: &str,
        headers: &HeaderMap,
        uri: &Uri,
        body: &[u8],
    ) -> Result<(), Reply> {
        if self.down.load(Ordering::SeqCst) {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": {"code": "down", "message": "down"}})),
            ));
        }
        let h = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let parsed = parse_authorization(h)
            .map_err(|m| error(StatusCode::UNAUTHORIZED, body_of("unauthorized", &m)))?;
        assert_eq!(parsed.key_id, KEY_ID);
        let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        verify_request(
            &parsed,
            std::slice::from_ref(&self.public_key),
            method,
            pq,
            body,
            unix_ms_now(),
        )
        .map_err(|m| error(StatusCode::UNAUTHORIZED, body_of("unauthorized", &m)))
    }
}

fn body_of(code: &str, message: &str) -> AccountsErrorBody {
    AccountsErrorBody {
        code: code.into(),
        message: message.into(),
        rule: None,
        level: None,
        budget: None,
    }
}

async fn get_policy(State(s): State<Arc<Stub>>, headers: HeaderMap, uri: Uri) -> Reply {
    if let Err(r) = s.check("GET", &headers, &uri, b"") {
        return r;
    }
    s.gets.fetch_add(1, Ordering::SeqCst);
    let delay = s.get_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let p = s.policy.lock().unwrap().clone();
    let mut v = serde_json::to_value(p).unwrap();
    if s.future_fields.load(Ordering::SeqCst) {
        v = with_future_fields(v);
    }
    (StatusCode::OK, axum::Json(v))
}

async fn reserve(State(s): State<Arc<Stub>>, headers: HeaderMap, uri: Uri, body: Bytes) -> Reply {
    if let Err(r) = s.check("POST", &headers, &uri, &body) {
        return r;
    }
    let req: ReservationRequest = serde_json::from_slice(&body).unwrap();
    s.reservation_attempts
        .lock()
        .unwrap()
        .push(req.reservation_id.clone());
    if s.fail_reservations.load(Ordering::SeqCst) > 0 {
        s.fail_reservations.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": {"code": "busy", "message": "try again"}})),
        );
    }
    let v = {
        let mut policy = s.policy.lock().unwrap();
        if let Err(d) = policy.rules.check_model(&req.model, false) {
            return error(StatusCode::FORBIDDEN, AccountsErrorBody::denied(d));
        }
        let amount = req.amount_micros;
        if let Some(b) = policy.exceeded_budget(amount, req.amount_tokens) {
            let amount = if b.metric == Metric::Usd {
                amount
            } else {
                req.amount_tokens
            };
            return error(
                StatusCode::PAYMENT_REQUIRED,
                AccountsErrorBody::budget_exceeded(b.clone(), amount),
            );
        }
        for b in policy
            .budgets
            .iter_mut()
            .filter(|b| b.enforcement == Enforcement::Hard)
        {
            let amount = if b.metric == Metric::Usd {
                req.amount_micros
            } else {
                req.amount_tokens
            };
            b.reserved += amount;
            b.remaining -= amount;
        }
        let resp = ReservationResponse {
            reservation_id: req.reservation_id.clone(),
            expires_at_ms: unix_ms_now() + 120_000,
            budgets: policy.budgets.clone(),
            warnings: s.warnings.lock().unwrap().clone(),
        };
        s.reservations.lock().unwrap().push(req);
        let mut v = serde_json::to_value(resp).unwrap();
        if s.future_fields.load(Ordering::SeqCst) {
            v = with_future_fields(v);
        }
        v
    };
    // Granted, then slow to answer (a slow network on the way back).
    let delay = s.reserve_answer_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    (StatusCode::CREATED, axum::Json(v))
}

async fn settle(
    State(s): State<Arc<Stub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Reply {
    if let Err(r) = s.check("POST", &headers, &uri, &body) {
        return r;
    }
    let req: SettleRequest = serde_json::from_slice(&body).unwrap();
    let held = s
        .reservations
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.reservation_id == id)
        .cloned();
    // As the collector: a reservation it does not hold is 404.
    let Some(held) = held else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"code": "not_found", "message": "no such reservation"}})),
        );
    };
    let mut policy = s.policy.lock().unwrap();
    for b in policy
        .budgets
        .iter_mut()
        .filter(|b| b.enforcement == Enforcement::Hard)
    {
        let (amount, actual) = if b.metric == Metric::Usd {
            (held.amount_micros, req.actual_micros)
        } else {
            (held.amount_tokens, req.actual_tokens)
        };
        b.reserved = b.reserved - amount + actual;
        b.remaining = b.remaining + amount - actual;
    }
    s.settles.lock().unwrap().push((id, req));
    (StatusCode::OK, axum::Json(json!({"settled": true})))
}

async fn ingest(State(s): State<Arc<Stub>>, body: Bytes) -> axum::Json<BatchResponse> {
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut resp = BatchResponse::default();
    for r in v["records"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap().to_owned();
        resp.accepted.push(id.clone());
        s.records.lock().unwrap().push(id);
    }
    axum::Json(resp)
}

fn eng() -> Level {
    Level::new(LevelKind::Department, "eng")
}

fn budget(
    id: &str,
    metric: Metric,
    limit: u64,
    remaining: u64,
    enforcement: Enforcement,
) -> BudgetStatus {
    let now = unix_ms_now();
    let (start, end) = Period::Day.window(now);
    BudgetStatus {
        id: id.into(),
        level: eng(),
        metric,
        period: Period::Day,
        limit,
        used: limit - remaining,
        reserved: 0,
        remaining,
        period_start_ms: start,
        resets_at_ms: end,
        enforcement,
        notify_at: vec![50, 80, 100],
    }
}

fn policy(rules: PolicyRules, budgets: Vec<BudgetStatus>) -> EffectivePolicy {
    let org = Level::new(LevelKind::Org, "acme");
    EffectivePolicy {
        api_key_id: KEY_ID.into(),
        scope: KeyScope {
            org: "acme".into(),
            department: Some("eng".into()),
            ..Default::default()
        },
        issued_at_ms: unix_ms_now(),
        ttl_ms: 60_000,
        rules: EffectiveRules::resolve([(&org, &PolicyRules::default()), (&eng(), &rules)]),
        budgets,
        routing: None,
    }
}

struct Env {
    emu: EmulatorHandle,
    stub: Arc<Stub>,
    cfg: Config,
    _dir: tempfile::TempDir,
}

async fn env(p: EffectivePolicy) -> Env {
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (signer, public_key) = generate_key();
    let stub = Arc::new(Stub {
        public_key,
        policy: Mutex::new(p),
        gets: AtomicU64::new(0),
        get_delay_ms: AtomicU64::new(0),
        down: AtomicBool::new(false),
        reservations: Mutex::new(Vec::new()),
        settles: Mutex::new(Vec::new()),
        records: Mutex::new(Vec::new()),
        warnings: Mutex::new(Vec::new()),
        reservation_attempts: Mutex::new(Vec::new()),
        fail_reservations: AtomicU64::new(0),
        future_fields: AtomicBool::new(false),
        reserve_answer_delay_ms: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1/policy", get(get_policy))
        .route("/v1/reservations", post(reserve))
        .route("/v1/reservations/{id}/settle", post(settle))
        .route("/v1/usage", post(ingest))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, signer.seed_base64().expose()).unwrap();
    let mut cfg = Config::for_emulator(&emu.base_url());
    cfg.retry.max_retries = 0;
    cfg.identity = Identity {
        org: Some("acme".into()),
        department: Some("eng".into()),
        api_key_id: Some(KEY_ID.into()),
        ..Default::default()
    };
    cfg.reporting.collector_url = Some(collector_url);
    cfg.reporting.spool_dir = Some(dir.path().join("spool"));
    cfg.reporting.signing_key_file = Some(key_file);
    cfg.reporting.batch_max_age_ms = 50;
    Env {
        emu,
        stub,
        cfg,
        _dir: dir,
    }
}

/// A stub collector whose policy holds one hard daily USD budget of `limit` micros,
/// all of it remaining.
async fn hard_usd_env(limit: u64) -> Env {
    let hard = budget("eng-daily", Metric::Usd, limit, limit, Enforcement::Hard);
    env(policy(PolicyRules::default(), vec![hard])).await
}

fn provider_calls(emu: &EmulatorHandle) -> u64 {
    emu.emulator().stats()["total"].as_u64().unwrap()
}

fn ask(model: &str) -> ChatRequest {
    ChatRequest::new(model, vec![Message::user("hello")])
}

#[tokio::test]
async fn denied_model_is_refused_before_any_provider_call() {
    let rules = PolicyRules {
        deny_models: Some(vec!["openai/gpt-4o*".into()]),
        max_tokens_per_request: Some(1000),
        zero_retention_only: Some(true),
        ..Default::default()
    };
    let mut e = env(policy(rules, vec![])).await;
    // The catalog flags this one zero-retention for the test.
    e.cfg.prices.insert(
        "anthropic/claude-haiku-4-5".into(),
        serde_json::from_value(json!({"zero_retention": true})).unwrap(),
    );
    let client = Client::new(e.cfg.clone()).unwrap();

    let err = client.chat(ask("openai/gpt-4o-mini")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permission);
    assert_eq!(err.kind().code(), "PERMISSION_DENIED");
    let (rule, level) = err.permission_rule().unwrap();
    assert_eq!((rule, level), ("deny_models", Some(&eng())), "{err}");
    assert!(err.to_string().contains("department:eng"), "{err}");
    // Streams too.
    let err = client
        .chat_stream(ask("openai/gpt-4o-mini"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.permission_rule().unwrap().0, "deny_models");
    // Not flagged zero-retention in the catalog.
    let err = client
        .chat(ask("gemini/gemini-2.5-flash"))
        .await
        .unwrap_err();
    assert_eq!(
        err.permission_rule().unwrap(),
        ("zero_retention_only", Some(&eng()))
    );
    // max_tokens above the limit.
    let mut big = ask("anthropic/claude-haiku-4-5");
    big.max_tokens = Some(1001);
    let err = client.chat(big).await.unwrap_err();
    assert_eq!(err.permission_rule().unwrap().0, "max_tokens_per_request");
    assert_eq!(provider_calls(&e.emu), 0, "nothing reached a provider");

    // The permitted one works, and no reservation is made without a hard budget.
    let resp = client
        .chat(ask("anthropic/claude-haiku-4-5"))
        .await
        .unwrap();
    assert_eq!(resp.model, "anthropic/claude-haiku-4-5");
    assert_eq!(provider_calls(&e.emu), 1);
    assert!(e.stub.reservations.lock().unwrap().is_empty());
    assert_eq!(
        e.stub.gets.load(Ordering::SeqCst),
        1,
        "the policy is cached"
    );
    e.emu.shutdown().await;
}

#[tokio::test]
async fn budget_refusal_is_a_budget_error_with_its_fields() {
    let hard = budget("eng-daily", Metric::Usd, 5_000_000, 10, Enforcement::Hard);
    let e = env(policy(PolicyRules::default(), vec![hard.clone()])).await;
    let client = Client::new(e.cfg.clone()).unwrap();
    let err = client.chat(ask("openai/gpt-4o-mini")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Budget, "{err}");
    assert_eq!(err.kind().code(), "BUDGET_EXCEEDED");
    let b = err.budget_status().unwrap();
    assert_eq!(
        (
            b.id.as_str(),
            &b.level,
            b.metric,
            b.period,
            b.limit,
            b.remaining,
            b.resets_at_ms
        ),
        (
            "eng-daily",
            &eng(),
            Metric::Usd,
            Period::Day,
            5_000_000,
            10,
            hard.resets_at_ms
        )
    );
    let text = err.to_string();
    assert!(
        text.contains("day spend budget `eng-daily`")
            && text.contains("$0.000010 left")
            && text.contains("resets at"),
        "{text}"
    );
    assert_eq!(provider_calls(&e.emu), 0, "nothing reached a provider");
    assert!(
        e.stub.reservations.lock().unwrap().is_empty(),
        "refused reservations hold nothing"
    );
    e.emu.shutdown().await;
}

#[tokio::test]
async fn a_call_given_up_while_its_reservation_is_in_flight_releases_it() {
    // The collector grants the reservation but its answer is slow; the caller gives up
    // before it arrives. Nobody holds the reservation's id but the request: the client
    // releases it anyway (a zero settle), instead of leaving it held until it lapses.
    let e = hard_usd_env(50_000_000).await;
    let client = Client::new(e.cfg.clone()).unwrap();
    client.refresh_policy().await.unwrap().unwrap();
    e.stub.reserve_answer_delay_ms.store(1500, Ordering::SeqCst);
    let c = client.clone();
    let call = tokio::spawn(async move { c.chat(ask("openai/gpt-4o-mini")).await });
    wait_for(|| e.stub.reservations.lock().unwrap().len() == 1).await;
    assert!(
        e.stub.policy.lock().unwrap().budgets[0].reserved > 0,
        "granted"
    );
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    wait_for(|| e.stub.settles.lock().unwrap().len() == 1).await;
    let (id, s) = e.stub.settles.lock().unwrap()[0].clone();
    assert_eq!(id, e.stub.reservations.lock().unwrap()[0].reservation_id);
    assert_eq!(
        (s.actual_micros, s.actual_tokens, s.record_id),
        (0, 0, None)
    );
    assert_eq!(e.stub.policy.lock().unwrap().budgets[0].reserved, 0);
    assert_eq!(provider_calls(&e.emu), 0, "nothing reached a provider");
    e.emu.shutdown().await;
}

#[tokio::test]
async fn a_newer_collectors_extra_fields_are_ignored_and_its_rules_enforced() {
    // A collector upgraded before the SDKs (mobile apps update late) adds fields to the
    // policy at every level and to reservation answers: this SDK ignores them and
    // enforces what it knows.
    let rules = PolicyRules {
        deny_models: Some(vec!["openai/gpt-4o*".into()]),
        ..Default::default()
    };
    let hard = budget(
        "eng-daily",
        Metric::Usd,
        5_000_000,
        4_000_000,
        Enforcement::Hard,
    );
    let mut p = policy(rules, vec![hard]);
    p.routing = Some(gaterouter::accounts::RoutingPolicy {
        learning: true,
        explore_permille: 0,
        shadow_permille: 0,
        salt: "00000000000000aa".into(),
        bits: 14,
        weights: None,
    });
    let e = env(p).await;
    e.stub.future_fields.store(true, Ordering::SeqCst);
    let client = Client::new(e.cfg.clone()).unwrap();
    let err = client.chat(ask("openai/gpt-4o-mini")).await.unwrap_err();
    assert_eq!(err.permission_rule().unwrap().0, "deny_models", "{err}");
    let resp = client
        .chat(ask("anthropic/claude-haiku-4-5"))
        .await
        .unwrap();
    assert_eq!(resp.model, "anthropic/claude-haiku-4-5");
    assert_eq!(e.stub.reservations.lock().unwrap().len(), 1, "held first");
    // The org's routing policy was read too: auto records carry features.
    let auto = client.route(&ask("auto")).unwrap();
    assert!(auto.learning.is_some(), "{auto:?}");
    e.emu.shutdown().await;
}

async fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 2 s");
}

#[tokio::test]
async fn reserves_the_maximum_and_settles_the_actual_cost_with_the_record_id() {
    let e = hard_usd_env(50_000_000).await;
    e.stub
        .warnings
        .lock()
        .unwrap()
        .push("soft budget `eng-tokens` reached 80%".into());
    let client = Client::new(e.cfg.clone()).unwrap();

    // max_tokens set: prompt + max_tokens.
    let mut req = ask("openai/gpt-4o-mini");
    req.max_tokens = Some(300);
    let expected_max = max_cost(Catalog::builtin(), &req, "openai/gpt-4o-mini");
    let resp = client.chat(req).await.unwrap();
    let cost = resp.cost.as_ref().unwrap().total_micros;
    // max_tokens unset: the catalog's max output.
    let unbounded = ask("openai/gpt-4o-mini");
    let unbounded_max = max_cost(Catalog::builtin(), &unbounded, "openai/gpt-4o-mini");
    let est = Catalog::builtin()
        .estimate_cost(&unbounded, "openai/gpt-4o-mini")
        .unwrap();
    assert_eq!(
        est.max_completion_tokens,
        Catalog::builtin()
            .lookup("openai/gpt-4o-mini")
            .unwrap()
            .1
            .max_output
            .unwrap()
    );
    client.chat(unbounded).await.unwrap();

    let res = e.stub.reservations.lock().unwrap().clone();
    assert_eq!(res.len(), 2);
    assert_eq!(
        (
            res[0].model.as_str(),
            res[0].amount_micros,
            res[0].amount_tokens
        ),
        ("openai/gpt-4o-mini", expected_max.0, expected_max.1)
    );
    assert!(
        expected_max.0 > cost,
        "the hold is the maximum, not the actual"
    );
    assert_eq!(res[1].amount_micros, unbounded_max.0);
    assert_eq!(
        uuid::Uuid::parse_str(&res[0].reservation_id)
            .unwrap()
            .get_version_num(),
        7
    );
    let settles = e.stub.settles.lock().unwrap().clone();
    assert_eq!(settles.len(), 2);
    let (id, s) = &settles[0];
    assert_eq!(id, &res[0].reservation_id);
    assert_eq!(s.actual_micros, cost);
    assert_eq!(
        s.actual_tokens,
        resp.usage.prompt_tokens + resp.usage.completion_tokens
    );
    let record_id = s
        .record_id
        .clone()
        .expect("settled with the usage record id");
    // The collector's budget now holds exactly the actual costs.
    let b = e.stub.policy.lock().unwrap().budgets[0].clone();
    assert_eq!(b.reserved, cost + settles[1].1.actual_micros);

    // A stream settles when it ends; a failed call releases its hold (0, no record).
    let mut s = client
        .chat_stream(ask("anthropic/claude-haiku-4-5"))
        .await
        .unwrap();
    while let Some(c) = s.next().await {
        c.unwrap();
    }
    wait_for(|| e.stub.settles.lock().unwrap().len() == 3).await;
    let (_, st) = e.stub.settles.lock().unwrap()[2].clone();
    assert!(st.actual_micros > 0 && st.record_id.is_some(), "{st:?}");
    e.emu
        .emulator()
        .queue_fault(&json!({"fault": "bad_request", "times": 1, "provider": "openai"}))
        .unwrap();
    assert_eq!(
        client
            .chat(ask("openai/gpt-4o-mini"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidRequest
    );
    let (_, failed) = e.stub.settles.lock().unwrap()[3].clone();
    assert_eq!(
        (
            failed.actual_micros,
            failed.actual_tokens,
            failed.record_id.clone()
        ),
        (0, 0, None)
    );

    // Collector warnings reach the app.
    let warnings = client.policy_warnings();
    assert!(
        warnings.iter().any(|w| w.contains("eng-tokens")),
        "{warnings:?}"
    );

    // The settled record id is the id of the record the collector ingests.
    client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(e.stub.records.lock().unwrap().contains(&record_id));
    client.shutdown().await.unwrap();
    e.emu.shutdown().await;
}

#[tokio::test]
async fn soft_budgets_need_no_reservation_and_warn_once_per_threshold() {
    // A soft token budget of 30 tokens: one call (~19 tokens) crosses 50%, two 100%.
    let soft = budget("eng-tokens", Metric::Tokens, 30, 30, Enforcement::Soft);
    let e = env(policy(PolicyRules::default(), vec![soft])).await;
    let client = Client::new(e.cfg.clone()).unwrap();
    let r1 = client.chat(ask("openai/gpt-4o-mini")).await.unwrap();
    let used = r1.usage.prompt_tokens + r1.usage.completion_tokens;
    assert!(
        (15..24).contains(&used),
        "test assumes one call uses 15..24 tokens, got {used}"
    );
    let w1 = client.policy_warnings();
    assert!(
        w1.iter()
            .any(|w| w.contains("50%") && w.contains("eng-tokens")),
        "{w1:?}"
    );
    client.chat(ask("openai/gpt-4o-mini")).await.unwrap();
    client.chat(ask("openai/gpt-4o-mini")).await.unwrap();
    let w2 = client.policy_warnings();
    assert_eq!(
        w2.iter().filter(|w| w.contains("100%")).count(),
        1,
        "{w2:?}"
    );
    assert!(
        !w2.iter().any(|w| w.contains("50%")),
        "each threshold fires once: {w2:?}"
    );
    assert!(
        e.stub.reservations.lock().unwrap().is_empty(),
        "soft budgets need no reservation"
    );
    assert!(e.stub.settles.lock().unwrap().is_empty());
    e.emu.shutdown().await;
}

#[tokio::test]
async fn offline_keeps_enforcing_the_last_known_policy() {
    let rules = PolicyRules {
        deny_models: Some(vec!["openai/gpt-4o".into()]),
        ..Default::default()
    };
    let limit = 20_000;
    let e = env(policy(
        rules,
        vec![budget(
            "eng-daily",
            Metric::Usd,
            limit,
            limit,
            Enforcement::Hard,
        )],
    ))
    .await;
    let mut cfg = e.cfg.clone();
    cfg.policy.cache_ttl_ms = Some(50);
    let client = Client::new(cfg).unwrap();
    let fetched = client.refresh_policy().await.unwrap().unwrap();
    // The collector goes away.
    e.stub.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(80)).await;

    // Cached rules still apply.
    let err = client.chat(ask("openai/gpt-4o")).await.unwrap_err();
    assert_eq!(
        err.permission_rule().unwrap(),
        ("deny_models", Some(&eng()))
    );
    // A permitted call goes through, checked locally; its spend comes off what is left.
    let model = "anthropic/claude-haiku-4-5";
    let mut first = ask(model);
    first.max_tokens = Some(100);
    let resp = client.chat(first).await.unwrap();
    let spent = resp.cost.unwrap().total_micros;
    assert!(spent > 0);
    let pc = client.policy_client().unwrap();
    let local = pc.local_budgets(&fetched);
    assert_eq!(local[0].remaining, limit - spent);
    // A request whose maximum cost fits the fetched budget but not what is left now.
    let mut req = ask(model);
    let (mut lo, mut hi) = (1u32, 16_000u32);
    while lo < hi {
        let mid = (lo + hi) / 2;
        req.max_tokens = Some(mid);
        if max_cost(Catalog::builtin(), &req, model).0 > limit - spent {
            hi = mid
        } else {
            lo = mid + 1
        }
    }
    req.max_tokens = Some(lo);
    let need = max_cost(Catalog::builtin(), &req, model).0;
    assert!(
        need > limit - spent && need <= limit,
        "need {need}, limit {limit}, spent {spent}"
    );
    let before = provider_calls(&e.emu);
    let err = client.chat(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Budget, "{err}");
    assert_eq!(err.budget_status().unwrap().remaining, limit - spent);
    assert_eq!(
        provider_calls(&e.emu),
        before,
        "refused before the provider"
    );
    assert!(
        e.stub.reservations.lock().unwrap().is_empty(),
        "nothing reached the collector while down"
    );

    // Too old: refused once the last known policy is older than max_stale_ms.
    let mut cfg = e.cfg.clone();
    cfg.policy.cache_ttl_ms = Some(20);
    cfg.policy.max_stale_ms = 30;
    cfg.reporting.spool_dir = Some(e._dir.path().join("spool-strict"));
    let strict = Client::new(cfg).unwrap();
    e.stub.down.store(false, Ordering::SeqCst);
    strict.refresh_policy().await.unwrap().unwrap();
    e.stub.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let err = strict.chat(ask("openai/gpt-4o-mini")).await.unwrap_err();
    assert_eq!(err.permission_rule().unwrap(), ("policy_unavailable", None));
    e.emu.shutdown().await;
}

#[tokio::test]
async fn offline_a_budget_spent_in_a_window_that_has_ended_is_full_again() {
    // The last known policy says the daily budget is spent, but its window ended since
    // (fetched just before midnight UTC, say): offline, the SDK counts the new window
    // from zero instead of refusing every call until the collector answers again.
    let limit = 1_000_000;
    let mut spent_yesterday = budget("eng-daily", Metric::Usd, limit, 0, Enforcement::Hard);
    let (start, end) = Period::Day.window(unix_ms_now() - 86_400_000);
    spent_yesterday.period_start_ms = start;
    spent_yesterday.resets_at_ms = end;
    let e = env(policy(PolicyRules::default(), vec![spent_yesterday])).await;
    let mut cfg = e.cfg.clone();
    cfg.policy.cache_ttl_ms = Some(60_000);
    cfg.policy.when_unreachable = WhenUnreachable::LastKnown;
    let client = Client::new(cfg).unwrap();
    let fetched = client.refresh_policy().await.unwrap().unwrap();
    e.stub.down.store(true, Ordering::SeqCst);
    let local = client.policy_client().unwrap().local_budgets(&fetched);
    assert_eq!((local[0].used, local[0].remaining), (0, limit));
    assert_eq!(local[0].resets_at_ms, end + 86_400_000, "{:?}", local[0]);
    let resp = client
        .chat(ask("anthropic/claude-haiku-4-5"))
        .await
        .unwrap();
    assert!(resp.cost.unwrap().total_micros > 0);
    assert!(
        e.stub.reservations.lock().unwrap().is_empty(),
        "checked locally"
    );
    assert_eq!(provider_calls(&e.emu), 1);
    e.emu.shutdown().await;
}

#[tokio::test]
async fn the_policy_cache_and_budget_windows_follow_the_policy_clients_clock() {
    use gaterouter::accounts::policy_client::{PolicyClient, PolicyState};
    let limit = 1_000_000;
    let e = env(policy(
        PolicyRules::default(),
        vec![budget(
            "eng-daily",
            Metric::Usd,
            limit,
            limit / 2,
            Enforcement::Hard,
        )],
    ))
    .await;
    let clock = Arc::new(ManualClock::new());
    let mut pcfg = e.cfg.policy.clone();
    pcfg.cache_ttl_ms = Some(60_000);
    let signer = gaterouter::usage::UsageSigner::from_file(
        e.cfg.reporting.signing_key_file.as_ref().unwrap(),
    )
    .unwrap();
    let url = e.cfg.reporting.collector_url.clone().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pc = PolicyClient::new(
        reqwest::Client::new(),
        &url,
        KEY_ID,
        signer,
        pcfg,
        clock.clone(),
    )
    .unwrap();
    let PolicyState::Current(p) = pc.current().await.unwrap() else {
        panic!("fetched")
    };
    // Cached for its TTL on this clock, fetched again after it (no sleeping).
    clock.advance(Duration::from_secs(59));
    assert!(matches!(
        pc.current().await.unwrap(),
        PolicyState::Current(_)
    ));
    assert_eq!(pc.fetch_count(), 1);
    clock.advance(Duration::from_secs(2));
    assert!(matches!(
        pc.current().await.unwrap(),
        PolicyState::Current(_)
    ));
    assert_eq!(pc.fetch_count(), 2);
    // Half the day's budget is spent; once the window ends on this clock, the new one
    // counts from zero (the collector is away: the last known policy is all there is).
    assert_eq!(pc.local_budgets(&p)[0].remaining, limit / 2);
    e.stub.down.store(true, Ordering::SeqCst);
    let to_reset = p.budgets[0].resets_at_ms - gaterouter::usage::uploader::Clock::unix_ms(&*clock);
    clock.advance(Duration::from_millis(to_reset + 1));
    let b = &pc.local_budgets(&p)[0];
    assert_eq!(
        (b.remaining, b.period_start_ms),
        (limit, p.budgets[0].resets_at_ms)
    );
    match pc.current().await.unwrap() {
        PolicyState::Offline { policy, age_ms, .. } => {
            assert!(policy.is_some());
            assert_eq!(age_ms, to_reset + 1, "the age is this clock's");
        }
        other => panic!("offline expected: {other:?}"),
    }
    e.emu.shutdown().await;
}

#[tokio::test]
async fn never_fetched_policy_fails_open_by_default_and_closed_on_deny() {
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // A port nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = generate_key();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, signer.seed_base64().expose()).unwrap();
    let mut cfg = Config::for_emulator(&emu.base_url());
    cfg.identity.api_key_id = Some(KEY_ID.into());
    cfg.reporting.collector_url = Some(format!("http://{closed}"));
    cfg.reporting.spool_dir = Some(dir.path().join("spool"));
    cfg.reporting.signing_key_file = Some(key_file);
    let open = Client::new(cfg.clone()).unwrap();
    assert!(
        open.policy_client().is_some(),
        "auto: on with collector, key id and signing key"
    );
    open.chat(ask("openai/gpt-4o-mini")).await.unwrap();
    cfg.reporting.spool_dir = Some(dir.path().join("spool2"));
    cfg.policy.when_unreachable = WhenUnreachable::Deny;
    let closed_client = Client::new(cfg.clone()).unwrap();
    let err = closed_client
        .chat(ask("openai/gpt-4o-mini"))
        .await
        .unwrap_err();
    assert_eq!(err.permission_rule().unwrap(), ("policy_unavailable", None));
    assert_eq!(provider_calls(&emu), 1);
    // `required` without a collector is a config error; `auto` just stays off.
    let mut bare = Config::for_emulator(&emu.base_url());
    assert!(Client::new(bare.clone()).unwrap().policy_client().is_none());
    bare.policy.enforce = gaterouter::config::EnforceMode::Required;
    let err = Client::new(bare).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("reporting.collector_url"), "{err}");
    emu.shutdown().await;
}

#[tokio::test]
async fn concurrent_calls_share_one_policy_fetch() {
    let e = env(policy(
        PolicyRules::default(),
        vec![budget(
            "soft",
            Metric::Usd,
            1_000_000_000,
            1_000_000_000,
            Enforcement::Soft,
        )],
    ))
    .await;
    e.stub.get_delay_ms.store(200, Ordering::SeqCst);
    let client = Client::new(e.cfg.clone()).unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.chat(ChatRequest::new(
                    "openai/gpt-4o-mini",
                    vec![Message::user(format!("hi {i}"))],
                ))
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        e.stub.gets.load(Ordering::SeqCst),
        1,
        "single-flight: one GET for 50 concurrent calls"
    );
    assert_eq!(client.policy_client().unwrap().fetch_count(), 1);
    assert_eq!(provider_calls(&e.emu), 50);
    e.emu.shutdown().await;
}

#[tokio::test]
async fn auto_picks_a_cheaper_permitted_model_when_the_budget_is_low() {
    let hard_prompt = "Prove step by step that the sum of the first n odd numbers is n^2, then derive a closed form for \
                       sum_{k=1}^{n} k^3 and analyze the complexity of computing it. ```python\ndef f(n):\n    return sum(k**3 for k in range(n))\n```";
    let mut req = ChatRequest::new("auto", vec![Message::user(hard_prompt)]);
    req.max_tokens = Some(4000);
    // What auto prefers with no policy.
    let emu0 = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let free = Client::new(Config::for_emulator(&emu0.base_url())).unwrap();
    let preferred = free.route(&req).unwrap().chosen;
    emu0.shutdown().await;
    let preferred_max = max_cost(Catalog::builtin(), &req, &preferred).0;
    // The budget has 70% of that left.
    let remaining = preferred_max * 7 / 10;
    let e = env(policy(
        PolicyRules::default(),
        vec![budget(
            "eng-daily",
            Metric::Usd,
            100_000_000,
            remaining,
            Enforcement::Hard,
        )],
    ))
    .await;
    let client = Client::new(e.cfg.clone()).unwrap();
    let resp = client.chat(req.clone()).await.unwrap();
    let route = resp.route.as_ref().unwrap();
    assert_ne!(resp.model, preferred, "{}", route.reason);
    assert!(
        route.reason.contains("budget `eng-daily`")
            && route.reason.contains(&preferred)
            && route.reason.contains("which fits"),
        "{}",
        route.reason
    );
    assert!(
        route
            .excluded
            .iter()
            .any(|x| x.model == preferred && x.reason.contains("more than")),
        "{:?}",
        route.excluded
    );
    let res = e.stub.reservations.lock().unwrap().clone();
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].model, resp.model);
    assert!(res[0].amount_micros <= remaining);

    // A denied model is left out with the rule and level that denied it.
    let deny = PolicyRules {
        deny_models: Some(vec![resp.model.clone()]),
        ..Default::default()
    };
    *e.stub.policy.lock().unwrap() = policy(deny, vec![]);
    let mut cfg = e.cfg.clone();
    cfg.reporting.spool_dir = Some(e._dir.path().join("spool2"));
    let client2 = Client::new(cfg).unwrap();
    client2.refresh_policy().await.unwrap();
    let d = client2.route(&req).unwrap();
    assert_ne!(d.chosen, resp.model);
    let x = d.excluded.iter().find(|x| x.model == resp.model).unwrap();
    assert!(
        x.reason.contains("deny_models") && x.reason.contains("department:eng"),
        "{}",
        x.reason
    );
    e.emu.shutdown().await;
}

#[tokio::test]
async fn a_failed_reservation_is_retried_once_with_the_same_id() {
    let e = hard_usd_env(50_000_000).await;
    let client = Client::new(e.cfg.clone()).unwrap();
    e.stub.fail_reservations.store(1, Ordering::SeqCst);
    client.chat(ask("openai/gpt-4o-mini")).await.unwrap();
    let attempts = e.stub.reservation_attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts[0], attempts[1],
        "the retry reuses the reservation id"
    );
    assert_eq!(e.stub.reservations.lock().unwrap().len(), 1);
    e.emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_cannot_all_pass_a_nearly_empty_budget() {
    let model = "anthropic/claude-haiku-4-5";
    let mut req = ask(model);
    req.max_tokens = Some(200);
    let (max_micros, _) = max_cost(Catalog::builtin(), &req, model);
    // Room for 10 calls at their maximum cost (the actual cost is far lower).
    let limit = max_micros * 10;
    let e = hard_usd_env(limit).await;
    let client = Client::new(e.cfg.clone()).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let c = client.clone();
            let r = req.clone();
            tokio::spawn(async move { c.chat(r).await })
        })
        .collect();
    let (mut ok, mut refused, mut spent) = (0u64, 0u64, 0u64);
    for t in tasks {
        match t.await.unwrap() {
            Ok(resp) => {
                ok += 1;
                spent += resp.cost.unwrap().total_micros;
            }
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Budget, "{err}");
                refused += 1;
            }
        }
    }
    // Every call held its maximum until settled: at least 10 pass (settles free room
    // for more), the rest are refused with `Budget` before any provider call, and the
    // spend never exceeds the limit.
    eprintln!("admitted {ok}, refused {refused}, spent {spent} of {limit}");
    assert!(ok >= 10 && refused > 0, "admitted {ok}, refused {refused}");
    assert_eq!(provider_calls(&e.emu), ok);
    assert!(spent <= limit, "spent {spent} > limit {limit}");
    let b = e.stub.policy.lock().unwrap().budgets[0].clone();
    assert_eq!(b.reserved, spent, "every hold settled to its actual cost");
    e.emu.shutdown().await;
}

#[tokio::test]
async fn a_call_given_up_by_its_caller_releases_its_hold() {
    let e = hard_usd_env(50_000_000).await;
    let client = Client::new(e.cfg.clone()).unwrap();
    let fetched = client.refresh_policy().await.unwrap().unwrap();
    e.emu
        .emulator()
        .queue_fault(&json!({"fault": "slow", "delay_ms": 2000, "provider": "openai"}))
        .unwrap();
    // Given up once its reservation is granted, while the provider is slow.
    let c = client.clone();
    let call = tokio::spawn(async move { c.chat(ask("openai/gpt-4o-mini")).await });
    wait_for(|| e.stub.reservations.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    call.abort();
    assert!(
        call.await.unwrap_err().is_cancelled(),
        "the slow call is abandoned"
    );
    // Released locally at once, and on the collector by a zero settle.
    assert_eq!(
        client.policy_client().unwrap().local_budgets(&fetched)[0].remaining,
        50_000_000
    );
    wait_for(|| e.stub.settles.lock().unwrap().len() == 1).await;
    let (_, s) = e.stub.settles.lock().unwrap()[0].clone();
    assert_eq!((s.actual_micros, s.record_id), (0, None));
    assert_eq!(e.stub.policy.lock().unwrap().budgets[0].reserved, 0);
    e.emu.shutdown().await;
}
