//! Security hardening of ingest (issue 18, and the collector half of issue 16's
//! "identity comes from the key"), on SQLite (one test per scenario) and on a real
//! PostgreSQL (one test running every scenario on a fresh database).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use gaterouter::config::Identity;
use gaterouter::usage::{FeedbackSource, RecordId, SdkInfo, UsageRecord, UsageRecordInput};
use serde_json::{Value, json};

type Db = Option<String>;

/// A record carrying no unit at all: only `api_key_id`.
fn minimal(key: &str, model: &str, prompt: u64, completion: u64, ts: u64) -> UsageRecord {
    let ident = Identity {
        api_key_id: Some(key.into()),
        ..Default::default()
    };
    let input = UsageRecordInput {
        ts_start: ts,
        ts_end: ts + 100,
        provider: "openai".into(),
        model: model.into(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_micros: 0,
        latency_ms: 100,
        attempts: 1,
        ..Default::default()
    };
    UsageRecord::build(input, &ident, &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap()
}

fn reason(v: &Value, i: usize) -> String {
    v["rejected"][i]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Issue 16 (collector half) and issue 18 item 4.
async fn identity_from_key(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, _) = env.seed_org().await;
    env.admin_ok(
        "/v1/admin/projects",
        json!({"id": "search", "org_id": "acme", "department_id": "sales"}),
    )
    .await;
    env.admin_ok(
        "/v1/admin/projects",
        json!({"id": "infra", "org_id": "acme", "department_id": "eng"}),
    )
    .await;

    // A minimal record is attributed to the key's binding (acme/eng).
    let rec = minimal("k_eng", "gpt-4o-mini", 10_000, 1_000, JAN15_1000);
    assert!(rec.org.is_none() && rec.department.is_none());
    let (s, v) = env.ingest(&[sign(&rec, &eng)]).await;
    assert_eq!((s, ids(&v, "accepted").len()), (200, 1), "{v}");
    let stored = env
        .handle
        .state()
        .db
        .fetch(
            "SELECT org, department, signature FROM usage_records",
            &[],
            "test",
        )
        .await
        .unwrap();
    use sqlx::Row as _;
    assert_eq!(
        (
            stored[0].try_get::<String, _>(0).unwrap(),
            stored[0].try_get::<String, _>(1).unwrap()
        ),
        ("acme".into(), "eng".into())
    );
    let (_, sig) = eng.sign_record(&rec).unwrap();
    assert_eq!(
        stored[0].try_get::<String, _>(2).unwrap(),
        sig,
        "the signature is stored as signed"
    );
    let (_, v) = env
        .get("/v1/analytics/breakdown?by=department", Some(ADMIN))
        .await;
    let got: Vec<(String, i64)> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"].as_str().unwrap().into(),
                r["spend_micros"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![("eng".into(), 2_100)], "{v}");
    let (s, bill) = env
        .get(
            "/v1/admin/bills?org=acme&month=2026-01&department=eng",
            Some(ADMIN),
        )
        .await;
    assert_eq!(
        (
            s,
            bill["totals"]["calls"].as_i64(),
            bill["totals"]["spend_micros"].as_i64()
        ),
        (200, Some(1), Some(2_100)),
        "{bill}"
    );

    // A unit that differs from the binding: refused naming the field, the value and the binding.
    let (_, v) = env
        .ingest(&[wire(
            &Spec {
                dept: "sales",
                user: "carol",
                ..Spec::default()
            },
            &eng,
        )])
        .await;
    let r = reason(&v, 0);
    assert!(
        r.contains("department is `sales`")
            && r.contains("bound to department `eng`")
            && r.contains("binding: org=`acme`, department=`eng`"),
        "{v}"
    );

    // Item 4: a key of eng cannot charge a project of sales (with or without naming its department).
    let mut rec = minimal("k_eng", "gpt-4o-mini", 10, 1, JAN15_1000);
    rec.project = Some("search".into());
    let mut named = record(&Spec::default());
    named.project = Some("search".into());
    let mut own = minimal("k_eng", "gpt-4o-mini", 10, 1, JAN15_1000);
    own.project = Some("infra".into());
    let (_, v) = env
        .ingest(&[sign(&rec, &eng), sign(&named, &eng), sign(&own, &eng)])
        .await;
    assert_eq!(ids(&v, "accepted"), vec![own.id.0.clone()], "{v}");
    for i in 0..2 {
        assert!(
            reason(&v, i).contains("project `search` is in department `sales`, not `eng`"),
            "{v}"
        );
    }
    let (_, bill) = env
        .get(
            "/v1/admin/bills?org=acme&month=2026-01&project=search",
            Some(ADMIN),
        )
        .await;
    assert_eq!(bill["totals"]["calls"].as_i64(), Some(0), "{bill}");
    env.handle.shutdown().await;
}

/// Item 1: per-record bounds, and budget counters that cannot overflow.
async fn overflow(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, _) = env.seed_org().await;
    let (s, v) = env.post("/v1/admin/budgets", Some(ADMIN), &json!({"level": "org:acme", "metric": "usd", "period": "month", "limit": 100, "enforcement": "hard"})).await;
    assert_eq!(s, 201, "{v}");
    let budget_id = v["id"].as_str().unwrap().to_owned();
    let now = gaterouter::usage::unix_ms_now();
    let huge = Spec {
        model: "gpt-4o",
        prompt: (1 << 53) - 1,
        completion: 0,
        client_cost: 0,
        ts: now,
        ..Spec::default()
    };
    let unknown = Spec {
        model: "my-local-model",
        prompt: 20_000_000,
        completion: 0,
        client_cost: 0,
        ts: now,
        ..Spec::default()
    };
    let costly = Spec {
        model: "my-local-model",
        client_cost: 5_000_000_000,
        ts: now,
        ..Spec::default()
    };
    let honest = Spec {
        ts: now,
        ..Spec::default()
    };
    let (s, v) = env
        .ingest(&[
            wire(&huge, &eng),
            wire(&unknown, &eng),
            wire(&costly, &eng),
            wire(&honest, &eng),
        ])
        .await;
    assert_eq!((s, ids(&v, "accepted").len()), (200, 1), "{v}");
    assert!(
        reason(&v, 0).contains("exceeds the per-record bound")
            && reason(&v, 0).contains("context window"),
        "{v}"
    );
    assert!(reason(&v, 1).contains("max_record_tokens"), "{v}");
    assert!(reason(&v, 2).contains("max_record_cost_micros"), "{v}");
    // A counter at the 64-bit edge saturates instead of failing every later record.
    let db = &env.handle.state().db;
    db.fetch(
        "UPDATE budget_usage SET used = 9223372036854775000",
        &[],
        "test",
    )
    .await
    .unwrap();
    let (s, v) = env
        .ingest(&[wire(
            &Spec {
                ts: now,
                ..Spec::default()
            },
            &eng,
        )])
        .await;
    assert_eq!((s, ids(&v, "accepted").len()), (200, 1), "{v}");
    use sqlx::Row as _;
    let rows = db
        .fetch("SELECT used FROM budget_usage", &[], "test")
        .await
        .unwrap();
    assert_eq!(
        rows[0].try_get::<i64, _>(0).unwrap(),
        i64::MAX,
        "saturated, still an integer"
    );
    for path in [
        "/v1/admin/budgets?org_id=acme",
        "/v1/analytics/summary",
        "/v1/admin/bills?org=acme&month=2026-01",
    ] {
        let (s, v) = env.get(path, Some(ADMIN)).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    let (_, list) = env.get("/v1/admin/budgets?org_id=acme", Some(ADMIN)).await;
    assert!(list.to_string().contains(&budget_id), "{list}");
    env.handle.shutdown().await;
}

/// Item 2: forged batches cost the named key nothing.
async fn rate_limit_after_auth(db: Db) {
    let env = Env::start(db, |c| {
        c.rate_limit_records_per_sec = 1;
        c.rate_limit_burst = Some(3);
    })
    .await;
    let (eng, _) = env.seed_org().await;
    let forger = signer(99);
    for _ in 0..5 {
        let forged: Vec<String> = (0..3).map(|_| wire(&Spec::default(), &forger)).collect();
        let (s, v) = env.ingest(&forged).await;
        assert_eq!(
            s, 200,
            "forged batches are refused per record, not charged: {v}"
        );
        assert!(reason(&v, 0).contains("signature does not verify"), "{v}");
        let unsigned = r#"{"records":[{"id":"x","api_key_id":"k_eng"}]}"#;
        let r = env
            .http
            .post(format!("{}/v1/usage", env.base))
            .header("content-type", "application/json")
            .body(unsigned)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let honest: Vec<String> = (0..3).map(|_| wire(&Spec::default(), &eng)).collect();
    let (s, v) = env.ingest(&honest).await;
    assert_eq!((s, ids(&v, "accepted").len()), (200, 3), "{v}");
    // The honest key's own excess is still limited.
    let (s, _) = env.ingest(&[wire(&Spec::default(), &eng)]).await;
    assert_eq!(s, 429);
    env.handle.shutdown().await;
}

/// Item 3: idle and slow connections are capped and closed; /healthz and ingest stay up.
async fn slow_connections(db: Db) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::start(db, |c| {
        c.max_connections = 64;
        c.header_read_timeout_secs = 2;
        c.request_timeout_secs = 3;
    })
    .await;
    let (eng, _) = env.seed_org().await;
    let addr = env.handle.addr();
    let mut idle = Vec::new();
    for i in 0..500 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            // A slowloris: headers started, never finished.
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(c);
    }
    let t = std::time::Instant::now();
    let health = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    let r = health
        .get(format!("{}/healthz", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    let (s, v) = env.ingest(&[wire(&Spec::default(), &eng)]).await;
    assert_eq!((s, ids(&v, "accepted").len()), (200, 1), "{v}");
    assert!(
        env.handle.open_connections() <= 64 + 2,
        "{}",
        env.handle.open_connections()
    );
    // A slow body is cut by request_timeout_secs.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /v1/usage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"rec").await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(8),
        slow.read_to_end(&mut buf),
    )
    .await
    .expect("the slow body is cut");
    assert!(
        n.is_ok() && String::from_utf8_lossy(&buf).contains("408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    // Every idle connection gets closed (EOF or reset) by the header timeout or eviction.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for c in &mut idle {
        let mut b = [0u8; 256];
        let r = tokio::time::timeout(std::time::Duration::from_secs(2), c.read(&mut b))
            .await
            .expect("idle connection closed");
        assert!(matches!(r, Ok(_) | Err(_)));
    }
    assert!(
        env.handle.open_connections() <= 1,
        "{}",
        env.handle.open_connections()
    );
    let (_, m) = env.get_text("/metrics", None).await;
    assert!(m.contains("collector_connections_evicted_total"), "{m}");
    env.handle.shutdown().await;
}

/// Items 8, 9, 10: CSV and log injection, schema_version, generic 5xx, security headers.
async fn injection_and_headers(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, _) = env.seed_org().await;
    let evil = Spec {
        model: "=HYPERLINK(\"http://evil\",\"x\")",
        client_cost: 5,
        ..Spec::default()
    };
    let (_, v) = env.ingest(&[wire(&evil, &eng)]).await;
    assert_eq!(ids(&v, "accepted").len(), 1, "{v}");
    let (s, csv) = env
        .get_text("/v1/analytics/models?format=csv", Some(ADMIN))
        .await;
    assert_eq!(s, 200);
    assert!(csv.contains("\"'=HYPERLINK("), "{csv}");
    for line in csv.lines() {
        for cell in line.split(',') {
            assert!(
                !cell.trim_start_matches('"').starts_with(['=', '+', '@']),
                "{csv}"
            );
        }
    }
    let (s, bill) = env
        .get_text(
            "/v1/admin/bills?org=acme&month=2026-01&format=csv",
            Some(ADMIN),
        )
        .await;
    assert_eq!(s, 200);
    for line in bill.lines() {
        for cell in line.split(',') {
            assert!(
                !cell.trim_start_matches('"').starts_with(['=', '+', '@']),
                "{bill}"
            );
        }
    }
    // Log injection: the key id comes back escaped.
    let mut r = record(&Spec::default());
    r.api_key_id = "k\nINFO forged line\u{1b}[31m".into();
    let (_, v) = env.ingest(&[sign(&r, &eng)]).await;
    let why = reason(&v, 0);
    assert!(
        why.contains("k\\nINFO forged line\\u{1b}[31m")
            && !why.contains('\n')
            && !why.contains('\u{1b}'),
        "{why}"
    );
    // schema_version 2 is refused.
    let mut r = record(&Spec::default());
    r.schema_version = 2;
    let (_, v) = env.ingest(&[sign(&r, &eng)]).await;
    assert!(
        reason(&v, 0).contains("schema_version 2 is not supported"),
        "{v}"
    );
    // Security headers on API answers.
    let r = env
        .http
        .get(format!("{}/healthz", env.base))
        .send()
        .await
        .unwrap();
    let h = r.headers();
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
    assert!(
        h.get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    // A database failure answers a generic 503 with an error id.
    env.handle
        .state()
        .db
        .fetch("DROP TABLE budget_alerts", &[], "test")
        .await
        .unwrap();
    let (s, v) = env.get("/v1/admin/alerts?org_id=acme", Some(ADMIN)).await;
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(s, 503, "{v}");
    assert!(
        msg.contains("error id")
            && !msg.contains("budget_alerts")
            && !msg.to_lowercase().contains("relation")
            && !msg.contains("no such table"),
        "{v}"
    );
    env.handle.shutdown().await;
}

/// Item 6: unknown models are priced by the fallback rule and flagged; back-dating is refused.
async fn budget_dodging(db: Db) {
    let env = Env::start(db.clone(), |c| c.max_record_age_days = 35).await;
    let (eng, _) = env.seed_org().await;
    let now = gaterouter::usage::unix_ms_now();
    let old = Spec {
        ts: now - 40 * 86_400_000,
        ..Spec::default()
    };
    let unknown = Spec {
        model: "totally-free-model",
        client_cost: 0,
        ts: now,
        ..Spec::default()
    };
    let (_, v) = env.ingest(&[wire(&old, &eng), wire(&unknown, &eng)]).await;
    assert_eq!(ids(&v, "accepted").len(), 1, "{v}");
    assert!(
        reason(&v, 0).contains("ts_start") && reason(&v, 0).contains("35 days"),
        "{v}"
    );
    let (_, s) = env.get("/v1/analytics/summary", Some(ADMIN)).await;
    let row = &s["rows"][0];
    assert_eq!(
        (
            row["cost_mismatches"].as_i64(),
            row["spend_micros"].as_i64()
        ),
        (Some(1), Some(330_000)),
        "{s}"
    );
    env.handle.shutdown().await;
    if db.is_some() {
        return;
    }
    let env = Env::start(None, |c| {
        c.unknown_model = gaterouter_collector::config::UnknownModel::Refuse
    })
    .await;
    let (eng, _) = env.seed_org().await;
    let (_, v) = env
        .ingest(&[wire(
            &Spec {
                model: "totally-free-model",
                ..Spec::default()
            },
            &eng,
        )])
        .await;
    assert!(
        reason(&v, 0).contains("no price") && reason(&v, 0).contains("unknown_model = refuse"),
        "{v}"
    );
    env.handle.shutdown().await;
}

/// Item 7: ids are UUIDs and deduplicated per (org, id). Another org's key that learns
/// an acme record's id and sends it first gets its own record (stored in its own org);
/// the real record is still accepted for acme, settles acme's reservation only, and each
/// org's analytics, tag filters, bills and budget counters show only its own record,
/// counted once however often either is replayed.
async fn cross_tenant_ids(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, _) = env.seed_org().await;
    env.admin_ok("/v1/admin/orgs", json!({"id": "globex", "name": "Globex"}))
        .await;
    let mallory = signer(7);
    env.admin_ok(
        "/v1/admin/keys",
        json!({"id": "k_glob", "org_id": "globex", "public_key": mallory.public_key()}),
    )
    .await;
    for org in ["acme", "globex"] {
        let (s, v) = env.post("/v1/admin/budgets", Some(ADMIN), &json!({"level": format!("org:{org}"), "metric": "usd", "period": "month", "limit": 1000, "enforcement": "hard"})).await;
        assert_eq!(s, 201, "{v}");
    }
    let real = record(&Spec::default()); // acme/eng, 2 100 micro-dollars, no tags
    // acme reserves and settles with the id before its record arrives.
    let (s, v) = signed(&env, &eng, "k_eng", "POST", "/v1/reservations", Some(&json!({"reservation_id": "r1", "model": "openai/gpt-4o-mini", "amount_micros": 50_000, "amount_tokens": 11_000}))).await;
    assert_eq!(s, 201, "{v}");
    let settle = json!({"actual_micros": 2_100, "actual_tokens": 11_000, "record_id": real.id.0});
    let (_, v) = signed(
        &env,
        &eng,
        "k_eng",
        "POST",
        "/v1/reservations/r1/settle",
        Some(&settle),
    )
    .await;
    assert_eq!(v["state"], "settled", "{v}");

    // The claim: same id, another org's key, no org in the record (attributed from the key), a tag.
    let mut claim = minimal("k_glob", "gpt-4o", 100_000, 10_000, JAN15_1000);
    claim.id = real.id.clone();
    claim.tags.insert("team".into(), "a".into());
    let (_, v) = env.ingest(&[sign(&claim, &mallory)]).await;
    assert_eq!(ids(&v, "accepted"), vec![real.id.0.clone()], "{v}");
    let state = |id: &'static str| {
        let db = env.handle.state().db.clone();
        async move {
            use sqlx::Row as _;
            let rows = db
                .fetch(
                    "SELECT state FROM reservations WHERE id = $1",
                    &[gaterouter_collector::db::Param::Text(id.into())],
                    "test",
                )
                .await
                .unwrap();
            rows[0].try_get::<String, _>(0).unwrap()
        }
    };
    assert_eq!(
        state("r1").await,
        "settled",
        "another org's record does not consume acme's reservation"
    );
    // A settlement naming the id now: globex's record does not count as acme's.
    let (s, v) = signed(&env, &eng, "k_eng", "POST", "/v1/reservations", Some(&json!({"reservation_id": "r2", "model": "openai/gpt-4o-mini", "amount_micros": 50_000, "amount_tokens": 11_000}))).await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = signed(
        &env,
        &eng,
        "k_eng",
        "POST",
        "/v1/reservations/r2/settle",
        Some(&settle),
    )
    .await;
    assert_eq!(v["state"], "settled", "{v}");

    // The real record is accepted for acme (not `duplicate`, not refused) and consumes both.
    let (_, v) = env.ingest(&[sign(&real, &eng)]).await;
    assert_eq!(
        (
            ids(&v, "accepted"),
            ids(&v, "duplicate").len(),
            v["rejected"].as_array().map(Vec::len)
        ),
        (vec![real.id.0.clone()], 0, Some(0)),
        "{v}"
    );
    assert_eq!(
        (state("r1").await, state("r2").await),
        ("consumed".into(), "consumed".into())
    );
    // Replays within each org are duplicates, however often.
    for _ in 0..2 {
        for (w, what) in [
            (sign(&real, &eng), "acme"),
            (sign(&claim, &mallory), "globex"),
        ] {
            let (_, v) = env.ingest(&[w]).await;
            assert_eq!(
                (ids(&v, "accepted").len(), ids(&v, "duplicate").len()),
                (0, 1),
                "{what} replay: {v}"
            );
        }
    }
    let db = &env.handle.state().db;
    use sqlx::Row as _;
    let rows = db
        .fetch(
            "SELECT org, api_key_id, department FROM usage_records WHERE id = $1 ORDER BY org",
            &[gaterouter_collector::db::Param::Text(real.id.0.clone())],
            "test",
        )
        .await
        .unwrap();
    let got: Vec<(String, String, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get(0).unwrap(),
                r.try_get(1).unwrap(),
                r.try_get(2).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("acme".into(), "k_eng".into(), Some("eng".into())),
            ("globex".into(), "k_glob".into(), None)
        ]
    );
    // Each org sees only its own record: raw and rollup analytics, tag filter, bills.
    let glob_spend = 100_000 * 250 / 100 + 10_000 * 1_000 / 100; // gpt-4o: $2.50 / $10 per M
    for (org, spend, tagged) in [("acme", 2_100, 0), ("globex", glob_spend, 1)] {
        let (_, v) = env
            .get(&format!("/v1/analytics/summary?org={org}"), Some(ADMIN))
            .await;
        assert_eq!(
            (
                v["rows"][0]["calls"].as_i64(),
                v["rows"][0]["spend_micros"].as_i64()
            ),
            (Some(1), Some(spend)),
            "{org}: {v}"
        );
        let (_, v) = env
            .get(
                &format!(
                    "/v1/analytics/breakdown?by=model&org={org}&from=2026-01-01&to=2026-02-01"
                ),
                Some(ADMIN),
            )
            .await;
        let calls: i64 = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["calls"].as_i64().unwrap())
            .sum();
        assert_eq!(calls, 1, "{org} rollups: {v}");
        let (_, v) = env
            .get(
                &format!("/v1/analytics/summary?org={org}&tag=team:a"),
                Some(ADMIN),
            )
            .await;
        assert_eq!(
            v["rows"][0]["calls"].as_i64().unwrap_or(0),
            tagged,
            "{org} tagged: {v}"
        );
        let (_, bill) = env
            .get(
                &format!("/v1/admin/bills?org={org}&month=2026-01"),
                Some(ADMIN),
            )
            .await;
        assert_eq!(
            (
                bill["totals"]["calls"].as_i64(),
                bill["totals"]["spend_micros"].as_i64()
            ),
            (Some(1), Some(spend)),
            "{org}: {bill}"
        );
        // The budget counter counted the org's own record, once.
        let rows = db
            .fetch("SELECT u.used FROM budget_usage u JOIN budgets b ON b.id = u.budget_id WHERE b.org_id = $1", &[gaterouter_collector::db::Param::Text(org.into())], "test")
            .await
            .unwrap();
        let used: Vec<i64> = rows.iter().map(|r| r.try_get(0).unwrap()).collect();
        assert_eq!(used, vec![spend], "{org} budget counter");
    }
    // Ids must be UUIDs.
    let mut r = record(&Spec::default());
    r.id = gaterouter::usage::RecordId("not-a-uuid".into());
    let (_, v) = env.ingest(&[sign(&r, &eng)]).await;
    assert!(reason(&v, 0).contains("is not a UUID"), "{v}");
    env.handle.shutdown().await;
}

/// Feedback records ride the usage batches: verified with the key, deduplicated per
/// (org, id), refused when forged, out of bounds or naming another org, and joined to
/// their call per org in the `outcomes` report.
async fn feedback_records(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, sales) = env.seed_org().await;
    env.admin_ok("/v1/admin/orgs", json!({"id": "globex", "name": "Globex"}))
        .await;
    let mallory = signer(7);
    env.admin_ok(
        "/v1/admin/keys",
        json!({"id": "k_glob", "org_id": "globex", "public_key": mallory.public_key()}),
    )
    .await;
    let call = record(&Spec {
        tags: &[("scenario", "support-reply")],
        ..Spec::default()
    });
    let other = record(&Spec {
        tags: &[("scenario", "triage")],
        ..Spec::default()
    });
    // A call and its feedback in one batch; a server-side evaluator (another key of the
    // org) rates the second call.
    let (fb, fb_wire) = feedback("k_eng", &call.id, 0.8, &eng, |_| {});
    let (_, eval_wire) = feedback("k_sales", &other.id, 0.2, &sales, |f| {
        f.source = FeedbackSource::Evaluator
    });
    let (s, v) = env
        .ingest(&[
            sign(&call, &eng),
            fb_wire.clone(),
            sign(&other, &eng),
            eval_wire,
        ])
        .await;
    assert_eq!((s, ids(&v, "accepted").len()), (200, 4), "{v}");
    // A replay is a duplicate, stored once.
    let (_, v) = env.ingest(std::slice::from_ref(&fb_wire)).await;
    assert_eq!(ids(&v, "duplicate"), vec![fb.id.0.clone()], "{v}");
    // Forged, out of bounds, another org named, an unknown field: refused with a reason.
    let (_, forged) = feedback("k_eng", &call.id, 1.0, &mallory, |_| {});
    let (_, too_high) = feedback("k_eng", &call.id, 1.0, &eng, |f| f.score_milli = 1001);
    let (_, other_org) = feedback("k_eng", &call.id, 1.0, &eng, |f| {
        f.org = Some("globex".into())
    });
    let (_, v) = env.ingest(&[forged, too_high, other_org]).await;
    assert_eq!(ids(&v, "accepted").len(), 0, "{v}");
    assert!(reason(&v, 0).contains("signature does not verify"), "{v}");
    assert!(reason(&v, 1).contains("score_milli"), "{v}");
    assert!(
        reason(&v, 2).contains("scope violation: org is `globex`"),
        "{v}"
    );
    // Another org's key rating acme's call id: stored under globex, acme's figures unchanged.
    let (_, claim) = feedback("k_glob", &call.id, 0.0, &mallory, |_| {});
    let (_, v) = env.ingest(&[claim]).await;
    assert_eq!(ids(&v, "accepted").len(), 1, "{v}");

    let (s, v) = env
        .get(
            "/v1/analytics/outcomes?by=tag:scenario&org=acme",
            Some(ADMIN),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let row = |g: &str| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == g)
            .cloned()
            .unwrap_or_else(|| panic!("{g}: {v}"))
    };
    assert_eq!(
        (
            row("support-reply")["rated_calls"].as_i64(),
            row("support-reply")["mean_score"].as_f64()
        ),
        (Some(1), Some(0.8)),
        "{v}"
    );
    assert_eq!(
        (
            row("triage")["rated_calls"].as_i64(),
            row("triage")["mean_score"].as_f64()
        ),
        (Some(1), Some(0.2)),
        "{v}"
    );
    assert_eq!(
        row("support-reply")["spend_micros"].as_i64(),
        Some(2_100),
        "{v}"
    );
    let (_, v) = env
        .get("/v1/analytics/outcomes?by=department", Some(ADMIN))
        .await;
    assert_eq!(
        (
            v["rows"][0]["group"].as_str(),
            v["rows"][0]["calls"].as_i64(),
            v["rows"][0]["rated_calls"].as_i64()
        ),
        (Some("eng"), Some(2), Some(2)),
        "{v}"
    );
    let (s, v) = env.get("/v1/analytics/outcomes?by=tag:", Some(ADMIN)).await;
    assert_eq!(s, 400, "{v}");
    env.handle.shutdown().await;
}

macro_rules! scenarios {
    ($m:ident) => {
        $m!(
            identity_from_key,
            overflow,
            rate_limit_after_auth,
            slow_connections,
            injection_and_headers,
            budget_dodging,
            cross_tenant_ids,
            feedback_records
        );
    };
}

mod sqlite {
    macro_rules! t {
        ($($name:ident),*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(None).await }
        )*};
    }
    scenarios!(t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_all_scenarios() {
    let Some(pg) = Pg::start() else { return };
    macro_rules! run {
        ($($name:ident),*) => {$(
            eprintln!("postgres: {}", stringify!($name));
            $name(Some(pg.new_db().await)).await;
        )*};
    }
    scenarios!(run);
}
