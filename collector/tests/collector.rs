//! Collector behaviour, on SQLite (one test per scenario) and on a real PostgreSQL (one
//! test that starts a server and runs every scenario on a fresh database each).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use gaterouter::usage::ReportingConfig;
use serde_json::{Value, json};

type Db = Option<String>;

async fn signatures(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, _) = env.seed_org().await;
    let good = record(&Spec::default());
    // Forged: signed, then a field changed.
    let mut forged: Value = serde_json::from_str(&sign(&record(&Spec::default()), &eng)).unwrap();
    forged["cost_micros"] = json!(1);
    let forged = forged.to_string();
    // Signed with a key that is not k_eng's.
    let wrong = sign(&record(&Spec::default()), &signer(9));
    let unknown = sign(
        &record(&Spec {
            key: "k_nope",
            ..Spec::default()
        }),
        &eng,
    );
    let (s, v) = env
        .ingest(&[sign(&good, &eng), forged, wrong, unknown])
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v, "accepted"), vec![good.id.0.clone()], "{v}");
    let reasons: Vec<&str> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 3, "{v}");
    assert!(reasons[0].contains("signature does not verify"), "{v}");
    assert!(reasons[1].contains("signature does not verify"), "{v}");
    assert!(reasons[2].contains("unknown api_key_id `k_nope`"), "{v}");
    // A large batch (batch-verified) with one forged record in the middle: only that
    // one is refused.
    let mut wires: Vec<String> = (0..300)
        .map(|i| {
            wire(
                &Spec {
                    ts: JAN15_1000 + i,
                    ..Spec::default()
                },
                &eng,
            )
        })
        .collect();
    let mut bad: Value = serde_json::from_str(&wires[150]).unwrap();
    bad["prompt_tokens"] = json!(9);
    let bad_id = bad["id"].as_str().unwrap().to_owned();
    wires[150] = bad.to_string();
    let (_, v) = env.ingest(&wires).await;
    assert_eq!(ids(&v, "accepted").len(), 299, "{v}");
    assert_eq!(v["rejected"][0]["id"], json!(bad_id));
    // Revoked key: refused afterwards.
    env.admin_ok("/v1/admin/keys/k_eng/revoke", json!({})).await;
    let (s, v) = env.ingest(&[wire(&Spec::default(), &eng)]).await;
    assert_eq!(s, 200);
    assert!(
        v["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{v}"
    );
    assert!(ids(&v, "accepted").is_empty());
    let (_, m) = env.get_text("/metrics", None).await;
    assert!(
        m.contains("collector_records_rejected_total{reason=\"revoked_key\"}"),
        "{m}"
    );
    env.handle.shutdown().await;
}

async fn rotation(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, _) = env.seed_org().await;
    let new = signer(7);
    // Grace 0: the old key stops verifying at once.
    env.admin_ok(
        "/v1/admin/keys/k_eng/rotate",
        json!({"public_key": new.public_key(), "grace_secs": 0}),
    )
    .await;
    let (_, v) = env
        .ingest(&[wire(&Spec::default(), &eng), wire(&Spec::default(), &new)])
        .await;
    assert_eq!(ids(&v, "accepted").len(), 1, "{v}");
    assert!(
        v["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{v}"
    );
    // Default grace: the previous key still verifies.
    let newer = signer(8);
    env.admin_ok(
        "/v1/admin/keys/k_eng/rotate",
        json!({"public_key": newer.public_key()}),
    )
    .await;
    let (_, v) = env
        .ingest(&[wire(&Spec::default(), &new), wire(&Spec::default(), &newer)])
        .await;
    assert_eq!(ids(&v, "accepted").len(), 2, "{v}");
    let (_, keys) = env.get("/v1/admin/keys", Some(ADMIN)).await;
    assert_eq!(
        keys["items"][0]["versions"].as_array().unwrap().len(),
        3,
        "{keys}"
    );
    env.handle.shutdown().await;
}

async fn scope(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, _) = env.seed_org().await;
    let (_, v) = env
        .ingest(&[wire(
            &Spec {
                dept: "sales",
                ..Spec::default()
            },
            &eng,
        )])
        .await;
    let reason = v["rejected"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("scope violation")
            && reason.contains("department")
            && reason.contains("`eng`"),
        "{v}"
    );
    env.handle.shutdown().await;
}

async fn cost_and_mismatch(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, _) = env.seed_org().await;
    // gpt-4o-mini: 10k prompt x $0.15/M + 1k completion x $0.60/M = 1500 + 600 = 2100 micros.
    let right = Spec::default();
    let wrong = Spec {
        client_cost: 999,
        ..Spec::default()
    };
    let unpriced = Spec {
        model: "my-local-model",
        client_cost: 42,
        ..Spec::default()
    };
    let (_, v) = env
        .ingest(&[
            wire(&right, &eng),
            wire(&wrong, &eng),
            wire(&unpriced, &eng),
        ])
        .await;
    assert_eq!(ids(&v, "accepted").len(), 3, "{v}");
    let (_, s) = env.get("/v1/analytics/summary", Some(ADMIN)).await;
    let row = &s["rows"][0];
    // The unknown model is always flagged (issue 18, item 6).
    assert_eq!(row["cost_mismatches"], 2, "{s}");
    // Spend uses the collector's figure when priced, else the larger of the client's and
    // the fallback price (11 000 tokens x $30/M = 330 000 micros).
    assert_eq!(row["spend_micros"], 2100 + 2100 + 330_000, "{s}");
    assert_eq!(row["client_cost_micros"], 2100 + 999 + 42, "{s}");
    env.handle.shutdown().await;
}

async fn duplicates(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (eng, _) = env.seed_org().await;
    let a = wire(&Spec::default(), &eng);
    let b = wire(
        &Spec {
            user: "bob",
            ..Spec::default()
        },
        &eng,
    );
    let (_, v) = env.ingest(&[a.clone(), b.clone(), a.clone()]).await;
    assert_eq!(ids(&v, "accepted").len(), 2, "{v}");
    assert_eq!(ids(&v, "duplicate").len(), 1, "{v}");
    // Replay of the whole batch.
    let (_, v) = env.ingest(&[a.clone(), b.clone()]).await;
    assert!(ids(&v, "accepted").is_empty(), "{v}");
    assert_eq!(ids(&v, "duplicate").len(), 2, "{v}");
    let (_, s) = env.get("/v1/analytics/summary", Some(ADMIN)).await;
    assert_eq!(s["rows"][0]["calls"], 2, "{s}");
    let (_, m) = env.get_text("/metrics", None).await;
    assert!(m.contains("collector_records_duplicate_total"), "{m}");
    env.handle.shutdown().await;
}

fn rows(v: &Value) -> &Vec<Value> {
    v["rows"].as_array().unwrap()
}

async fn analytics(db: Db) {
    let env = Env::start(db, |_| {}).await;
    seed_analytics(&env).await;
    let a = Some(ADMIN);
    // Totals: 2 x 35 000 + 3 x 2 100 = 76 300 micros; 5 x 11 000 tokens; 3 users.
    let (s, v) = env.get("/v1/analytics/summary", a).await;
    assert_eq!(s, 200, "{v}");
    let r = &rows(&v)[0];
    assert_eq!(
        (
            r["calls"].clone(),
            r["errors"].clone(),
            r["spend_micros"].clone(),
            r["total_tokens"].clone()
        ),
        (json!(5), json!(1), json!(76_300), json!(55_000))
    );
    assert_eq!(
        (
            r["active_users"].clone(),
            r["spend_per_active_user_micros"].clone()
        ),
        (json!(3), json!(25_433))
    );

    // Per-capita by department: eng 39 200 / 2 users, sales 37 100 / 1 user.
    let (_, v) = env.get("/v1/analytics/per-capita?by=department", a).await;
    let r = rows(&v);
    assert_eq!(r[0]["group"], "eng");
    assert_eq!(
        (
            r[0]["spend_micros"].clone(),
            r[0]["active_users"].clone(),
            r[0]["spend_per_active_user_micros"].clone()
        ),
        (json!(39_200), json!(2), json!(19_600))
    );
    assert_eq!(
        (
            r[1]["group"].clone(),
            r[1]["spend_per_active_user_micros"].clone()
        ),
        (json!("sales"), json!(37_100))
    );

    // Month buckets per department.
    let (_, v) = env
        .get("/v1/analytics/breakdown?by=department&bucket=month", a)
        .await;
    let got: Vec<(String, String, i64)> = rows(&v)
        .iter()
        .map(|r| {
            (
                r["bucket"].as_str().unwrap().into(),
                r["group"].as_str().unwrap().into(),
                r["spend_micros"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("2026-01".into(), "eng".into(), 39_200),
            ("2026-02".into(), "sales".into(), 37_100)
        ],
        "{v}"
    );

    // Ranking: alice and carol tie on 37 100 (by name), bob 2 100.
    let (_, v) = env.get("/v1/analytics/users", a).await;
    let got: Vec<(String, i64)> = rows(&v)
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().into(),
                r["spend_micros"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("alice".into(), 37_100),
            ("carol".into(), 37_100),
            ("bob".into(), 2_100)
        ]
    );

    // Model distribution.
    let (_, v) = env.get("/v1/analytics/models", a).await;
    let r = rows(&v);
    assert_eq!(
        (
            r[0]["model"].clone(),
            r[0]["calls"].clone(),
            r[0]["spend_micros"].clone(),
            r[0]["spend_share"].clone()
        ),
        (json!("gpt-4o"), json!(2), json!(70_000), json!(0.917431))
    );
    assert_eq!(
        (
            r[1]["model"].clone(),
            r[1]["calls"].clone(),
            r[1]["call_share"].clone(),
            r[1]["token_share"].clone()
        ),
        (json!("gpt-4o-mini"), json!(3), json!(0.6), json!(0.6))
    );

    // Key activity.
    let (_, v) = env.get("/v1/analytics/keys", a).await;
    let r = rows(&v);
    assert_eq!(
        (
            r[0]["api_key_id"].clone(),
            r[0]["calls"].clone(),
            r[0]["errors"].clone(),
            r[0]["spend_micros"].clone()
        ),
        (json!("k_eng"), json!(3), json!(1), json!(39_200))
    );
    assert_eq!(
        (r[1]["api_key_id"].clone(), r[1]["last_seen_ms"].clone()),
        (json!("k_sales"), json!(FEB03_0930 + 500))
    );
    assert_eq!(r.len(), 2, "{v}");
    // Idle keys: an active key never used shows with no calls; in a range after the
    // last call, a used key is idle and shows when it was last used.
    let idle_signer = signer(77);
    env.admin_ok(
        "/v1/admin/keys",
        json!({"id": "k_idle", "org_id": "acme", "department_id": "eng", "public_key": idle_signer.public_key()}),
    )
    .await;
    let (_, v) = env.get("/v1/analytics/keys", a).await;
    let r = rows(&v);
    assert_eq!(
        (
            r[2]["api_key_id"].clone(),
            r[2]["calls"].clone(),
            r[2]["idle"].clone(),
            r[2]["last_seen_ms"].clone()
        ),
        (json!("k_idle"), json!(0), json!(true), Value::Null),
        "{v}"
    );
    assert_eq!(r[0]["idle"], json!(false));
    let (_, v) = env
        .get("/v1/analytics/keys?from=2030-01-01&department=sales", a)
        .await;
    assert_eq!(
        rows(&v)
            .iter()
            .map(|r| (
                r["api_key_id"].clone(),
                r["idle"].clone(),
                r["last_seen_ms"].clone()
            ))
            .collect::<Vec<_>>(),
        vec![(json!("k_sales"), json!(true), json!(FEB03_0930 + 500))],
        "{v}"
    );

    // Routing: small 3, large 1, explicit 1; baseline = 5 x 35 000; savings 175 000 - 76 300.
    let (_, v) = env.get("/v1/analytics/routing", a).await;
    let tiers: Vec<(String, i64)> = rows(&v)
        .iter()
        .map(|r| {
            (
                r["tier"].as_str().unwrap().into(),
                r["calls"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tiers,
        vec![
            ("small".into(), 3),
            ("explicit".into(), 1),
            ("large".into(), 1)
        ],
        "{v}"
    );
    assert_eq!(
        (
            v["baseline_micros"].clone(),
            v["savings_micros"].clone(),
            v["savings_share"].clone()
        ),
        (json!(175_000), json!(98_700), json!(0.564))
    );

    // Errors and latency: gpt-4o-mini latencies 100, 200 (error), 500.
    let (_, v) = env.get("/v1/analytics/latency", a).await;
    let r = rows(&v);
    assert_eq!(
        (
            r[0]["model"].clone(),
            r[0]["p50_ms"].clone(),
            r[0]["p99_ms"].clone()
        ),
        (json!("gpt-4o"), json!(300), json!(400))
    );
    assert_eq!(
        (
            r[1]["model"].clone(),
            r[1]["error_rate"].clone(),
            r[1]["p50_ms"].clone(),
            r[1]["p90_ms"].clone()
        ),
        (
            json!("gpt-4o-mini"),
            json!(0.333333),
            json!(200),
            json!(500)
        )
    );

    // Time series by day, filters, tags.
    let (_, v) = env.get("/v1/analytics/timeseries?bucket=day", a).await;
    let got: Vec<(String, i64, i64)> = rows(&v)
        .iter()
        .map(|r| {
            (
                r["bucket"].as_str().unwrap().into(),
                r["calls"].as_i64().unwrap(),
                r["spend_micros"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("2026-01-15".into(), 2, 37_100),
            ("2026-01-16".into(), 1, 2_100),
            ("2026-02-03".into(), 2, 37_100)
        ]
    );
    let (_, v) = env
        .get("/v1/analytics/summary?from=2026-02-01&to=2026-03-01", a)
        .await;
    assert_eq!(rows(&v)[0]["calls"], 2);
    let (_, v) = env.get("/v1/analytics/summary?tag=team:a", a).await;
    assert_eq!(
        (
            rows(&v)[0]["calls"].clone(),
            rows(&v)[0]["spend_micros"].clone()
        ),
        (json!(2), json!(37_100))
    );
    let (_, v) = env
        .get("/v1/analytics/summary?model=gpt-4o&user=carol", a)
        .await;
    assert_eq!(rows(&v)[0]["spend_micros"], 35_000);
    let (_, v) = env
        .get("/v1/analytics/timeseries?bucket=hour&by=user&key=k_eng", a)
        .await;
    assert_eq!(rows(&v).len(), 2, "{v}");
    assert_eq!(rows(&v)[0]["bucket"], "2026-01-15T10:00:00Z");

    // CSV export.
    let (s, csv) = env.get_text("/v1/analytics/users?format=csv", a).await;
    assert_eq!(s, 200);
    // `name` is the org tree's display name (the id when the tree gives none).
    assert_eq!(
        csv,
        "rank,user,calls,total_tokens,spend_micros,name\r\n1,alice,2,22000,37100,alice\r\n2,carol,2,22000,37100,carol\r\n3,bob,1,11000,2100,bob\r\n"
    );
    // Bad parameters are 400 with the parameter named.
    let (s, v) = env.get("/v1/analytics/breakdown?by=planet", a).await;
    assert!(
        s == 400
            && v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("by=planet"),
        "{v}"
    );
    let (s, v) = env.get("/v1/analytics/summary?from=yesterday", a).await;
    assert!(
        s == 400 && v["error"]["message"].as_str().unwrap().contains("from"),
        "{v}"
    );
    env.handle.shutdown().await;
}

async fn auth(db: Db) {
    let env = Env::start(db, |_| {}).await;
    seed_analytics(&env).await;
    let (s, _) = env.get("/v1/analytics/summary", None).await;
    assert_eq!(s, 401);
    let (s, _) = env.get("/v1/admin/orgs", Some("wrong-token")).await;
    assert_eq!(s, 401);
    let (s, _) = env.post("/v1/admin/orgs", None, &json!({"id": "x"})).await;
    assert_eq!(s, 401);
    // A read token for acme/eng.
    let t = env.admin_ok("/v1/admin/tokens", json!({"role": "read", "org_id": "acme", "department_id": "eng", "description": "eng head"})).await;
    let tok = t["token"].as_str().unwrap().to_owned();
    let (s, v) = env.get("/v1/analytics/summary", Some(&tok)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            rows(&v)[0]["calls"].clone(),
            rows(&v)[0]["spend_micros"].clone()
        ),
        (json!(3), json!(39_200))
    );
    let (s, _) = env
        .get("/v1/analytics/summary?department=sales", Some(&tok))
        .await;
    assert_eq!(s, 403);
    let (s, _) = env.get("/v1/analytics/summary?org=other", Some(&tok)).await;
    assert_eq!(s, 403);
    let (_, v) = env
        .get("/v1/analytics/breakdown?by=department", Some(&tok))
        .await;
    assert_eq!(rows(&v).len(), 1, "{v}");
    let (s, _) = env
        .post("/v1/admin/orgs", Some(&tok), &json!({"id": "evil"}))
        .await;
    assert_eq!(s, 403);
    let (s, _) = env.get("/v1/admin/keys", Some(&tok)).await;
    assert_eq!(s, 403);
    // Revoked tokens stop working; the token is stored hashed only.
    let id = t["id"].as_str().unwrap();
    env.admin_ok(&format!("/v1/admin/tokens/{id}/revoke"), json!({}))
        .await;
    let (s, _) = env.get("/v1/analytics/summary", Some(&tok)).await;
    assert_eq!(s, 401);
    let (_, list) = env.get("/v1/admin/tokens", Some(ADMIN)).await;
    assert!(!list.to_string().contains(&tok), "{list}");
    // Audit trail, newest first.
    let (_, audit) = env.get("/v1/admin/audit", Some(ADMIN)).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "revoke_token");
    assert_eq!(actions[1], "create_token");
    assert!(
        actions.contains(&"register_key") && actions.contains(&"create_org"),
        "{actions:?}"
    );
    // Admin validation: bad public key, unknown field, duplicate id.
    let (s, v) = env
        .post(
            "/v1/admin/keys",
            Some(ADMIN),
            &json!({"id": "k2", "org_id": "acme", "public_key": "abc"}),
        )
        .await;
    assert!(
        s == 400
            && v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("public_key"),
        "{v}"
    );
    let (s, _) = env
        .post(
            "/v1/admin/orgs",
            Some(ADMIN),
            &json!({"id": "o2", "colour": "red"}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = env
        .post("/v1/admin/orgs", Some(ADMIN), &json!({"id": "acme"}))
        .await;
    assert_eq!(s, 409);
    let (s, _) = env
        .post(
            "/v1/admin/departments",
            Some(ADMIN),
            &json!({"id": "d9", "org_id": "missing-org"}),
        )
        .await;
    assert_eq!(s, 400);
    env.handle.shutdown().await;
}

async fn bad_bodies(db: Db) {
    let env = Env::start(db, |c| {
        c.max_body_bytes = 64 * 1024;
        c.max_batch_records = 10;
    })
    .await;
    let (eng, _) = env.seed_org().await;
    let url = format!("{}/v1/usage", env.base);
    let big = format!("{{\"records\":[\"{}\"]}}", "x".repeat(100 * 1024));
    let r = env
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_body_bytes"),
        "{v}"
    );
    let r = env.http.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("records"),
        "{v}"
    );
    let many: Vec<String> = (0..11).map(|_| wire(&Spec::default(), &eng)).collect();
    let (s, v) = env.ingest(&many).await;
    assert!(
        s == 413
            && v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 10"),
        "{v}"
    );
    // Records that are not objects or lack an id are rejected individually.
    let (s, v) = env
        .ingest(&[
            "42".into(),
            "{\"api_key_id\":\"k_eng\"}".into(),
            wire(&Spec::default(), &eng),
        ])
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            ids(&v, "accepted").len(),
            v["rejected"].as_array().unwrap().len()
        ),
        (1, 2),
        "{v}"
    );
    // Still serving.
    let (s, _) = env.get("/healthz", None).await;
    assert_eq!(s, 200);
    let (s, _) = env.get("/readyz", None).await;
    assert_eq!(s, 200);
    env.handle.shutdown().await;
}

async fn rate_limit(db: Db) {
    let env = Env::start(db, |c| {
        c.rate_limit_records_per_sec = 1;
        c.rate_limit_burst = Some(3);
    })
    .await;
    let (eng, _) = env.seed_org().await;
    let three: Vec<String> = (0..3).map(|_| wire(&Spec::default(), &eng)).collect();
    let (s, _) = env.ingest(&three).await;
    assert_eq!(s, 200);
    let r = env
        .http
        .post(format!("{}/v1/usage", env.base))
        .body(format!(
            "{{\"records\":[{}]}}",
            wire(&Spec::default(), &eng)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    env.handle.shutdown().await;
}

async fn audit_is_append_only(db: Db) {
    let env = Env::start(db, |_| {}).await;
    env.seed_org().await;
    let st = env.handle.state().clone();
    let e = st
        .db
        .exec("UPDATE audit_log SET actor = 'x'", &[], "tamper")
        .await;
    assert!(e.is_err(), "update must fail");
    let e = st.db.exec("DELETE FROM audit_log", &[], "tamper").await;
    assert!(e.is_err(), "delete must fail");
    env.handle.shutdown().await;
}

/// The real reporter (`gaterouter::usage::Recorder`) shipping to a spawned collector.
async fn end_to_end(db: Db) {
    let env = Env::start(db, |_| {}).await;
    env.seed_org().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    let eng = signer(1);
    std::fs::write(&key_file, eng.seed_base64().expose()).unwrap();
    let cfg = ReportingConfig {
        collector_url: Some(env.base.clone()),
        spool_dir: Some(dir.path().join("spool")),
        signing_key_file: Some(key_file),
        batch_max_records: 7,
        batch_max_age_ms: 20,
        ..Default::default()
    };
    let ident = gaterouter::config::Identity {
        org: Some("acme".into()),
        department: Some("eng".into()),
        user: Some("alice".into()),
        api_key_id: Some("k_eng".into()),
        ..Default::default()
    };
    let rec = gaterouter::usage::Recorder::start(&cfg, &ident).unwrap();
    let mut sent = std::collections::HashSet::new();
    for i in 0..50u64 {
        let id = rec
            .record(gaterouter::usage::UsageRecordInput {
                ts_start: JAN15_1000 + i,
                ts_end: JAN15_1000 + i + 10,
                provider: "openai".into(),
                model: "gpt-4o-mini".into(),
                prompt_tokens: 10_000,
                completion_tokens: 1_000,
                cost_micros: 2_100,
                latency_ms: 10,
                ..Default::default()
            })
            .unwrap();
        sent.insert(id.0);
    }
    let out = rec.flush(Duration::from_secs(30)).await.unwrap();
    assert!(out.drained, "{out:?}");
    rec.shutdown().await.unwrap();
    let (_, v) = env.get("/v1/analytics/summary", Some(ADMIN)).await;
    assert_eq!(
        (
            rows(&v)[0]["calls"].clone(),
            rows(&v)[0]["spend_micros"].clone(),
            rows(&v)[0]["cost_mismatches"].clone()
        ),
        (json!(50), json!(50 * 2_100), json!(0))
    );
    let st = env.handle.state().clone();
    let r = st
        .db
        .fetch("SELECT id FROM usage_records", &[], "t")
        .await
        .unwrap();
    let stored: std::collections::HashSet<String> = r
        .iter()
        .map(|row| sqlx::Row::get::<String, _>(row, 0))
        .collect();
    assert_eq!(stored, sent);
    env.handle.shutdown().await;
}

/// Two collectors on one database, racing on the same records: each stored once.
async fn shared_database(db: Db, second_url: String) {
    let a = Env::start(db, |_| {}).await;
    let b = Env::start(Some(second_url), |_| {}).await;
    let (eng, _) = a.seed_org().await;
    let wires: Vec<String> = (0..200)
        .map(|i| {
            wire(
                &Spec {
                    ts: JAN15_1000 + i,
                    ..Spec::default()
                },
                &eng,
            )
        })
        .collect();
    let (ra, rb) = tokio::join!(a.ingest(&wires), b.ingest(&wires));
    let acc = ids(&ra.1, "accepted").len() + ids(&rb.1, "accepted").len();
    let dup = ids(&ra.1, "duplicate").len() + ids(&rb.1, "duplicate").len();
    assert_eq!((acc, dup), (200, 200), "{} {}", ra.1, rb.1);
    let (_, v) = b.get("/v1/analytics/summary", Some(ADMIN)).await;
    assert_eq!(rows(&v)[0]["calls"], 200);
    // Each collector counts its own batches: the two /metrics add up to this test's
    // records, whatever other collectors in this process are doing.
    let accepted = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("collector_records_accepted_total "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (ma, mb) = (
        a.get_text("/metrics", None).await.1,
        b.get_text("/metrics", None).await.1,
    );
    assert_eq!(accepted(&ma) + accepted(&mb), 200, "{ma}\n{mb}");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

async fn openapi_and_ops(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (s, doc) = env.get("/openapi.json", None).await;
    assert_eq!(s, 200);
    for (method, path) in gaterouter_collector::api::paths() {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not in openapi.json"
        );
    }
    let documented = doc["paths"].as_object().unwrap();
    for (path, ops) in documented {
        for m in ops.as_object().unwrap().keys() {
            assert!(
                gaterouter_collector::api::paths().contains(&(m.as_str(), path.as_str())),
                "openapi.json documents {m} {path}, which is not served"
            );
        }
    }
    let reports = doc["paths"]["/v1/analytics/{report}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "report")
        .unwrap()["schema"]["enum"]
        .clone();
    assert_eq!(reports, json!(gaterouter_collector::analytics::REPORTS));
    let (s, m) = env.get_text("/metrics", None).await;
    assert!(s == 200 && m.contains("collector_db_seconds_count"), "{m}");
    let (s, html) = env.get_text("/dashboard", None).await;
    // Without a session cookie the dashboard is its login form.
    assert!(
        s == 200 && html.contains("action=\"/dashboard/login\""),
        "{html}"
    );
    let (s, _) = env.get_text("/dashboard/uplot.min.js", None).await;
    assert_eq!(s, 200);
    let (s, _) = env.get("/nope", None).await;
    assert_eq!(s, 404);
    env.handle.shutdown().await;
}

/// Shutdown while a batch is in flight: the batch is answered and stored.
async fn graceful_shutdown(db: Db) {
    let env = Env::start(db.clone(), |_| {}).await;
    let (eng, _) = env.seed_org().await;
    let wires: Vec<String> = (0..2000)
        .map(|i| {
            wire(
                &Spec {
                    ts: JAN15_1000 + i,
                    ..Spec::default()
                },
                &eng,
            )
        })
        .collect();
    let body = format!("{{\"records\":[{}]}}", wires.join(","));
    let req = env
        .http
        .post(format!("{}/v1/usage", env.base))
        .body(body)
        .send();
    let Env { handle, _tmp, .. } = env;
    let (resp, ()) = tokio::join!(req, async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        handle.shutdown().await;
    });
    let resp = resp.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(ids(&v, "accepted").len(), 2000);
    // A new collector on the same database sees them.
    let url = db.unwrap_or_else(|| format!("sqlite://{}", _tmp.path().join("c.db").display()));
    let env = Env::start(Some(url), |_| {}).await;
    let (_, s) = env.get("/v1/analytics/summary", Some(ADMIN)).await;
    assert_eq!(rows(&s)[0]["calls"], 2000);
    env.handle.shutdown().await;
}

macro_rules! sqlite_tests {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() { super::$name(None).await }
    )*};
}

mod sqlite {
    sqlite_tests!(
        signatures,
        rotation,
        scope,
        cost_and_mismatch,
        duplicates,
        analytics,
        auth,
        bad_bodies,
        rate_limit,
        audit_is_append_only,
        end_to_end,
        openapi_and_ops,
        graceful_shutdown
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("shared.db").display());
        super::shared_database(Some(url.clone()), url).await
    }
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
    run!(
        signatures,
        rotation,
        scope,
        cost_and_mismatch,
        duplicates,
        analytics,
        auth,
        bad_bodies,
        rate_limit,
        audit_is_append_only,
        end_to_end,
        openapi_and_ops,
        graceful_shutdown
    );
    eprintln!("postgres: shared_database");
    let url = pg.new_db().await;
    shared_database(Some(url.clone()), url).await;
}
