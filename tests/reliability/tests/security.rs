//! Security suite (issue 11) against a real collector on SQLite: forged and misused
//! keys, replays, tampered and out-of-range records, hostile bodies, injection-shaped
//! query values, missing or wrong-scope tokens, and badly signed SDK requests. Each is
//! refused with the right status and a message naming the problem, and the database is
//! the same before and after (row counts of every table plus the contents of the
//! tables that matter). The last test runs the SDK and the collector with tracing at
//! `debug` into a buffer, triggers errors, and greps every output for the secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

#[path = "../../../collector/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{ADMIN, Env, Spec, record, sign, signer, wire};
use gaterouter::accounts::request_auth;
use gaterouter::config::{Identity, Secret};
use gaterouter::usage::{UsageSigner, unix_ms_now};
use gaterouter::{ChatRequest, Client, Config, ErrorKind, Message};
use serde_json::{Value, json};
use sqlx::Row as _;

// ---------------------------------------------------------------- log capture

/// Everything every test of this binary logged (tracing at `debug`, all targets).
fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || BufWriter(w.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(sub);
        buf
    })
}

struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for BufWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------- database snapshots

/// Row count of every table, plus the full contents of the tables an attack could
/// change (records, their tags, budget counters, keys, tokens, reservations, audit).
async fn snapshot(env: &Env) -> BTreeMap<String, Vec<String>> {
    let db = &env.handle.state().db;
    let mut out = BTreeMap::new();
    let list = match db.backend() {
        gaterouter_collector::db::Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        }
        _ => {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        }
    };
    let tables = db.fetch(list, &[], "listing tables").await.unwrap();
    for t in tables {
        let name: String = t.try_get(0).unwrap();
        let n = db
            .fetch(&format!("SELECT COUNT(*) FROM \"{name}\""), &[], "counting")
            .await
            .unwrap();
        let n: i64 = n[0].try_get(0).unwrap();
        out.insert(format!("count:{name}"), vec![n.to_string()]);
    }
    for (name, sql) in [
        (
            "usage_records",
            "SELECT org || '|' || id || '|' || api_key_id || '|' || COALESCE(department, '') || '|' || COALESCE(usr, '') || '|' || prompt_tokens || '|' || completion_tokens || '|' || client_cost_micros || '|' || spend_micros || '|' || ts_start FROM usage_records ORDER BY org, id",
        ),
        (
            "usage_record_keys",
            "SELECT org || '|' || id FROM usage_record_keys ORDER BY org, id",
        ),
        (
            "usage_tags",
            "SELECT org || '|' || record_id || '|' || k || '|' || v FROM usage_tags ORDER BY org, record_id, k",
        ),
        (
            "budget_usage",
            "SELECT budget_id || '|' || period_start_ms || '|' || used FROM budget_usage ORDER BY budget_id, period_start_ms",
        ),
        (
            "api_keys",
            "SELECT id || '|' || status FROM api_keys ORDER BY id",
        ),
        (
            "access_tokens",
            "SELECT id || '|' || role || '|' || COALESCE(revoked_ms, 0) FROM access_tokens ORDER BY id",
        ),
        (
            "reservations",
            "SELECT id || '|' || state FROM reservations ORDER BY id",
        ),
        ("audit", "SELECT COUNT(*) || '' FROM audit_log"),
    ] {
        let rows = db.fetch(sql, &[], "snapshot").await.unwrap();
        out.insert(
            name.to_owned(),
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
                .collect(),
        );
    }
    out
}

fn assert_same(
    before: &BTreeMap<String, Vec<String>>,
    after: &BTreeMap<String, Vec<String>>,
    what: &str,
) {
    for (k, v) in before {
        assert_eq!(after.get(k), Some(v), "{what}: `{k}` changed");
    }
    assert_eq!(
        before.len(),
        after.len(),
        "{what}: tables appeared or vanished"
    );
}

// ---------------------------------------------------------------- helpers

/// Sign an arbitrary JSON record (canonical form without `signature`), as a client
/// holding the key could, and return the wire text.
fn sign_value(v: &Value, s: &UsageSigner) -> String {
    let canonical = gaterouter::usage::canonical::canonicalize(v).unwrap();
    let mut w = v.clone();
    w["signature"] = Value::String(s.sign(canonical.as_bytes()));
    w.to_string()
}

/// A fresh record as a JSON value (signed later), from a spec.
fn value_of(s: &Spec) -> Value {
    serde_json::to_value(record(s)).unwrap()
}

/// The single rejection reason of a one-record batch answered 200.
fn only_rejection(status: u16, v: &Value, what: &str) -> String {
    assert_eq!(status, 200, "{what}: {v}");
    assert_eq!(
        v["accepted"].as_array().map(Vec::len),
        Some(0),
        "{what} was accepted: {v}"
    );
    assert_eq!(
        v["duplicate"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{what}: {v}"
    );
    let rej = v["rejected"].as_array().unwrap();
    assert_eq!(rej.len(), 1, "{what}: {v}");
    rej[0]["reason"].as_str().unwrap().to_owned()
}

fn err_message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn raw_post(
    env: &Env,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut r = env
        .http
        .post(format!("{}{path}", env.base))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

async fn request(
    env: &Env,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = env.http.request(m, format!("{}{path}", env.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

/// Org acme (eng, sales; alice, bob in eng, carol in sales), keys k_eng, k_sales,
/// k_alice (bound to user alice), k_old (revoked), an org `evil` with key k_evil, a
/// read token scoped to acme/eng, and two stored records.
struct World {
    env: Env,
    eng: UsageSigner,
    sales: UsageSigner,
    alice: UsageSigner,
    old: UsageSigner,
    evil: UsageSigner,
    reader: String,
    stored: Vec<String>,
}

async fn world(tweak: impl FnOnce(&mut gaterouter_collector::CollectorConfig)) -> World {
    world_on(None, tweak).await
}

/// [`world`] on a given database URL (`None`: a fresh SQLite file).
async fn world_on(
    db: Option<String>,
    tweak: impl FnOnce(&mut gaterouter_collector::CollectorConfig),
) -> World {
    let _ = log_buffer();
    let env = Env::start(db, tweak).await;
    let (eng, sales) = env.seed_org().await;
    let alice = signer(3);
    let old = signer(4);
    let evil = signer(5);
    env.admin_ok("/v1/admin/keys", json!({"id": "k_alice", "org_id": "acme", "department_id": "eng", "user_id": "alice", "public_key": alice.public_key()})).await;
    env.admin_ok("/v1/admin/keys", json!({"id": "k_old", "org_id": "acme", "department_id": "eng", "public_key": old.public_key()})).await;
    env.admin_ok("/v1/admin/keys/k_old/revoke", json!({})).await;
    env.admin_ok("/v1/admin/orgs", json!({"id": "evil", "name": "Evil"}))
        .await;
    env.admin_ok(
        "/v1/admin/departments",
        json!({"id": "evil_dept", "org_id": "evil"}),
    )
    .await;
    env.admin_ok(
        "/v1/admin/keys",
        json!({"id": "k_evil", "org_id": "evil", "public_key": evil.public_key()}),
    )
    .await;
    env.admin_ok("/v1/admin/budgets", json!({"level": "department:eng", "metric": "usd", "period": "month", "limit": "100", "enforcement": "hard"})).await;
    let t = env
        .admin_ok(
            "/v1/admin/tokens",
            json!({"role": "read", "org_id": "acme", "department_id": "eng"}),
        )
        .await;
    let reader = t["token"].as_str().unwrap().to_owned();
    let now = unix_ms_now();
    let wires = vec![
        wire(
            &Spec {
                ts: now - 60_000,
                ..Spec::default()
            },
            &eng,
        ),
        wire(
            &Spec {
                key: "k_sales",
                dept: "sales",
                user: "carol",
                ts: now - 30_000,
                ..Spec::default()
            },
            &sales,
        ),
    ];
    let (s, v) = env.ingest(&wires).await;
    assert_eq!(
        (s, v["accepted"].as_array().unwrap().len()),
        (200, 2),
        "{v}"
    );
    World {
        env,
        eng,
        sales,
        alice,
        old,
        evil,
        reader,
        stored: wires,
    }
}

// ---------------------------------------------------------------- ingest

#[tokio::test]
async fn forged_misused_revoked_tampered_and_out_of_range_records_are_refused() {
    bad_records(world(|_| {}).await).await;
}

/// The record and query suites again on PostgreSQL (skipped with a message when it is
/// not installed, unless `GATEROUTER_TEST_REQUIRE_POSTGRES=1`).
#[tokio::test]
async fn bad_records_and_injection_on_postgres() {
    let Some(pg) = common::Pg::start() else {
        return;
    };
    bad_records(world_on(Some(pg.new_db().await), |_| {}).await).await;
    injection(world_on(Some(pg.new_db().await), |_| {}).await).await;
}

async fn bad_records(w: World) {
    let env = &w.env;
    let before = snapshot(env).await;
    let now = unix_ms_now();
    let fresh = |s: Spec| Spec {
        ts: now - 1_000,
        ..s
    };
    let mut tried = 0;

    // (what, wire, expected words in the reason)
    // Forged: signed with another key than the one named.
    let mut cases: Vec<(&str, String, &str)> = vec![
        (
            "signed with k_sales's key but naming k_eng",
            sign(&record(&fresh(Spec::default())), &w.sales),
            "signature does not verify",
        ),
        (
            "signed with an unregistered key",
            sign(&record(&fresh(Spec::default())), &signer(99)),
            "signature does not verify",
        ),
    ];
    let mut v: Value = serde_json::from_str(&wire(&fresh(Spec::default()), &w.eng)).unwrap();
    v["signature"] = json!("AAAA");
    cases.push((
        "a garbage signature",
        v.to_string(),
        "signature does not verify",
    ));
    v.as_object_mut().unwrap().remove("signature");
    cases.push(("no signature", v.to_string(), "no string `signature`"));
    // Tampered after signing: cost lowered, tokens lowered, user changed.
    for (field, value) in [
        ("cost_micros", json!(1)),
        ("prompt_tokens", json!(1)),
        ("user", json!("bob")),
        ("ts_start", json!(now - 2_000)),
    ] {
        let mut v: Value = serde_json::from_str(&wire(&fresh(Spec::default()), &w.eng)).unwrap();
        v[field] = value;
        cases.push((
            "tampered after signing",
            v.to_string(),
            "signature does not verify",
        ));
    }
    // A valid key used for another department, user or org.
    cases.push((
        "k_eng used for department sales",
        wire(
            &fresh(Spec {
                dept: "sales",
                user: "carol",
                ..Spec::default()
            }),
            &w.eng,
        ),
        "scope violation: department",
    ));
    cases.push((
        "k_alice used for user bob",
        wire(
            &fresh(Spec {
                key: "k_alice",
                user: "bob",
                ..Spec::default()
            }),
            &w.alice,
        ),
        "scope violation: user",
    ));
    let mut v = value_of(&fresh(Spec::default()));
    v["org"] = json!("evil");
    cases.push((
        "k_eng used for org evil",
        sign_value(&v, &w.eng),
        "scope violation: org",
    ));
    let mut v = value_of(&fresh(Spec {
        key: "k_evil",
        ..Spec::default()
    }));
    v["org"] = json!("evil");
    cases.push((
        "k_evil naming acme's department eng",
        sign_value(&v, &w.evil),
        "eng",
    ));
    cases.push((
        "k_eng for carol, a sales user",
        wire(
            &fresh(Spec {
                user: "carol",
                ..Spec::default()
            }),
            &w.eng,
        ),
        "carol",
    ));
    // Revoked and unknown keys.
    cases.push((
        "a revoked key",
        wire(
            &fresh(Spec {
                key: "k_old",
                ..Spec::default()
            }),
            &w.old,
        ),
        "is revoked",
    ));
    cases.push((
        "an unknown key",
        wire(
            &fresh(Spec {
                key: "k_nobody",
                ..Spec::default()
            }),
            &signer(42),
        ),
        "unknown api_key_id",
    ));
    // Validly signed but out of range.
    for (field, value, words) in [
        ("prompt_tokens", json!(-5), "does not match the schema"),
        ("completion_tokens", json!(-1), "does not match the schema"),
        ("cost_micros", json!(-100), "does not match the schema"),
        ("cached_prompt_tokens", json!(1_000_000), "cached"),
        ("status", json!("PWNED"), "schema"),
        ("admin", json!(true), "unknown field"),
    ] {
        let mut v = value_of(&fresh(Spec::default()));
        v[field] = value;
        cases.push(("out-of-range field", sign_value(&v, &w.eng), words));
    }
    // A NUL character (PostgreSQL text cannot hold it: it would fail the whole batch).
    for (field, value) in [
        ("tags", json!({"team": "a\u{0}b"})),
        ("user", json!("ali\u{0}ce")),
        ("model", json!("gpt-4o-mini\u{0}")),
    ] {
        let mut v = value_of(&fresh(Spec::default()));
        v[field] = value;
        cases.push(("a NUL character", sign_value(&v, &w.eng), "NUL character"));
    }
    // A float cannot even be canonicalized (so never validly signed).
    let mut v = value_of(&fresh(Spec::default()));
    v["cost_micros"] = json!(1.5);
    v["signature"] = json!("AAAA");
    cases.push(("a fractional cost", v.to_string(), "not an integer"));
    let mut v = value_of(&fresh(Spec::default()));
    v["prompt_tokens"] = json!(9_007_199_254_740_993u64);
    v["signature"] = json!("AAAA");
    cases.push(("a count beyond 2^53-1", v.to_string(), "2^53-1"));
    // Timestamps: ten years ahead, a day ahead, end before start.
    for (ahead, words) in [
        (10 * 365 * 86_400_000u64, "fix the client's clock"),
        (86_400_000, "fix the client's clock"),
    ] {
        cases.push((
            "a timestamp in the future",
            wire(
                &Spec {
                    ts: now + ahead,
                    ..Spec::default()
                },
                &w.eng,
            ),
            words,
        ));
    }
    let mut v = value_of(&fresh(Spec::default()));
    v["ts_end"] = json!(now - 10_000);
    cases.push((
        "ts_end before ts_start",
        sign_value(&v, &w.eng),
        "before ts_start",
    ));
    // Deeply nested JSON inside a record (a tag value), validly signed is impossible
    // past serde's depth limit, so sent as is.
    let deep = format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000));
    let mut v: Value = serde_json::from_str(&wire(&fresh(Spec::default()), &w.eng)).unwrap();
    v["tags"] = json!({"a": "PLACEHOLDER"});
    cases.push((
        "a 5000-deep tag value",
        v.to_string().replace("\"PLACEHOLDER\"", &deep),
        "recursion limit",
    ));

    for (what, wire, words) in &cases {
        let (s, v) = env.ingest(std::slice::from_ref(wire)).await;
        let reason = only_rejection(s, &v, what);
        assert!(
            reason.contains(words),
            "{what}: reason `{reason}` lacks `{words}`"
        );
        tried += 1;
    }
    assert_same(&before, &snapshot(env).await, "after refused records");
    eprintln!("security: {tried} bad records refused, database unchanged");
}

#[tokio::test]
async fn replayed_batches_are_accepted_once() {
    let w = world(|_| {}).await;
    let env = &w.env;
    let before = snapshot(env).await;
    // The seeded batch again, three times: duplicates, nothing stored.
    for _ in 0..3 {
        let (s, v) = env.ingest(&w.stored).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["accepted"].as_array().unwrap().is_empty(), "{v}");
        assert_eq!(v["duplicate"].as_array().unwrap().len(), 2, "{v}");
    }
    assert_same(&before, &snapshot(env).await, "after replays");
    // A new record sent twice in one batch and then again: stored and counted once.
    let r = wire(
        &Spec {
            ts: unix_ms_now() - 500,
            ..Spec::default()
        },
        &w.eng,
    );
    let (_, v) = env.ingest(&[r.clone(), r.clone()]).await;
    assert_eq!(
        (
            v["accepted"].as_array().unwrap().len(),
            v["duplicate"].as_array().unwrap().len()
        ),
        (1, 1),
        "{v}"
    );
    let once = snapshot(env).await;
    let (_, v) = env.ingest(&[r]).await;
    assert_eq!(v["duplicate"].as_array().unwrap().len(), 1, "{v}");
    assert_same(&once, &snapshot(env).await, "after replaying one record");
    assert_eq!(
        once["usage_records"].len(),
        before["usage_records"].len() + 1
    );
    // The budget counter grew by this record's spend exactly once.
    let used = |s: &BTreeMap<String, Vec<String>>| {
        s["budget_usage"]
            .iter()
            .map(|r| r.rsplit('|').next().unwrap().parse::<i64>().unwrap())
            .sum::<i64>()
    };
    assert_eq!(
        used(&once) - used(&before),
        2_100,
        "{:?} -> {:?}",
        before["budget_usage"],
        once["budget_usage"]
    );
}

/// Issue 18 item 7: record ids are deduplicated per (org, id). A key of org `evil` that
/// learns the id of an acme record and sends it first stores a record of its own org;
/// the real record is still accepted for acme (before: answered `duplicate`, which the
/// SDK counts as delivered, so it was lost), and replays of either change nothing.
#[tokio::test]
async fn an_id_sent_first_by_another_org_does_not_take_it_from_acme() {
    let w = world(|_| {}).await;
    let env = &w.env;
    let real = record(&Spec {
        ts: unix_ms_now() - 500,
        ..Spec::default()
    });
    let mut claim = value_of(&Spec {
        key: "k_evil",
        ts: unix_ms_now() - 500,
        ..Spec::default()
    });
    let o = claim.as_object_mut().unwrap();
    for unit in ["org", "department", "user"] {
        o.remove(unit);
    }
    o.insert("id".into(), json!(real.id.0));
    let (_, v) = env.ingest(&[sign_value(&claim, &w.evil)]).await;
    assert_eq!(v["accepted"], json!([real.id.0]), "{v}");
    let (_, v) = env.ingest(&[sign(&real, &w.eng)]).await;
    assert_eq!(
        (&v["accepted"], v["duplicate"].as_array().unwrap().len()),
        (&json!([real.id.0]), 0),
        "{v}"
    );
    let once = snapshot(env).await;
    let owners: Vec<&str> = once["usage_records"]
        .iter()
        .filter(|r| r.contains(&real.id.0))
        .map(|r| r.split('|').next().unwrap())
        .collect();
    assert_eq!(owners, vec!["acme", "evil"]);
    for _ in 0..2 {
        let (_, v) = env.ingest(&[sign_value(&claim, &w.evil)]).await;
        assert_eq!(v["duplicate"].as_array().unwrap().len(), 1, "{v}");
        let (_, v) = env.ingest(&[sign(&real, &w.eng)]).await;
        assert_eq!(v["duplicate"].as_array().unwrap().len(), 1, "{v}");
    }
    assert_same(&once, &snapshot(env).await, "after replaying both records");
}

/// A key holder who signs a record with a lowered cost does not lower its spend: the
/// collector prices the tokens itself, charges its price and flags the difference.
#[tokio::test]
async fn a_validly_signed_low_cost_is_repriced() {
    let w = world(|_| {}).await;
    let env = &w.env;
    let r = record(&Spec {
        ts: unix_ms_now() - 1_000,
        client_cost: 1,
        ..Spec::default()
    });
    let (_, v) = env.ingest(&[sign(&r, &w.eng)]).await;
    assert_eq!(v["accepted"].as_array().unwrap().len(), 1, "{v}");
    let rows = env
        .handle
        .state()
        .db
        .fetch("SELECT client_cost_micros, spend_micros, cost_mismatch FROM usage_records WHERE id = $1", &[gaterouter_collector::db::Param::Text(r.id.0.clone())], "r")
        .await
        .unwrap();
    let (client, spend, mismatch): (i64, i64, i64) = (
        rows[0].try_get(0).unwrap(),
        rows[0].try_get(1).unwrap(),
        rows[0].try_get(2).unwrap(),
    );
    assert_eq!(
        (client, spend, mismatch),
        (1, 2_100, 1),
        "10k/1k tokens of gpt-4o-mini cost 2100 micro-dollars"
    );
}

#[tokio::test]
async fn hostile_bodies_are_refused() {
    let w = world(|c| {
        c.max_body_bytes = 256 * 1024;
        c.max_batch_records = 50;
    })
    .await;
    let env = &w.env;
    let before = snapshot(env).await;
    let good = wire(
        &Spec {
            ts: unix_ms_now() - 1_000,
            ..Spec::default()
        },
        &w.eng,
    );
    let big = format!("{{\"records\":[{}]}}", vec![good.as_str(); 1000].join(","));
    assert!(big.len() > 256 * 1024);
    let many = format!("{{\"records\":[{}]}}", vec![good.as_str(); 51].join(","));
    let deep_body = format!(
        "{{\"records\":[{}{}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_obj = format!(
        "{{\"records\":[{}1{}]}}",
        "{\"a\":".repeat(30_000),
        "}".repeat(30_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("an oversized body", big.into_bytes(), 413, "max_body_bytes"),
        ("too many records", many.into_bytes(), 413, "at most 50"),
        (
            "an unknown top-level field",
            format!("{{\"records\":[{good}],\"admin\":true}}").into_bytes(),
            400,
            "unknown field",
        ),
        ("not JSON", b"records=1".to_vec(), 400, "body is not"),
        (
            "invalid UTF-8",
            b"{\"records\":[\"\xff\xfe\"]}".to_vec(),
            400,
            "body is not",
        ),
        (
            "records not an array",
            b"{\"records\":{\"id\":1}}".to_vec(),
            400,
            "body is not",
        ),
        ("an empty body", Vec::new(), 400, "body is not"),
    ];
    for (what, body, status, words) in cases {
        let (s, v) = raw_post(env, "/v1/usage", &[], body).await;
        assert_eq!(s, status, "{what}: {v}");
        let m = err_message(&v);
        assert!(m.contains(words), "{what}: message `{m}` lacks `{words}`");
    }
    // Deep nesting: refused as a body (400) or as a record (200, rejected), never a
    // crash or a stored row.
    for (what, body) in [
        ("100 000 nested arrays", deep_body),
        ("30 000 nested objects", deep_obj),
    ] {
        let (s, v) = raw_post(env, "/v1/usage", &[], body.into_bytes()).await;
        let refused_body = s == 400 && !err_message(&v).is_empty();
        let refused_record = s == 200
            && v["accepted"].as_array().is_some_and(Vec::is_empty)
            && v["rejected"].as_array().is_some_and(|r| r.len() == 1);
        assert!(refused_body || refused_record, "{what}: {s} {v}");
    }
    // Records that are not objects or lack ids: refused one by one, the good one kept
    // (then deleted from the comparison: it is the only change).
    let (s, v) = raw_post(
        env,
        "/v1/usage",
        &[],
        br#"{"records":[1,"x",null,{"id":5},{"id":"r1"},[]]}"#.to_vec(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rejected"].as_array().unwrap().len(), 6, "{v}");
    assert!(v["accepted"].as_array().unwrap().is_empty());
    assert_same(&before, &snapshot(env).await, "after hostile bodies");
    eprintln!(
        "security: 9 hostile bodies and a batch of 6 malformed records refused, database unchanged"
    );
    // The collector still works.
    let (_, v) = env.ingest(&[good]).await;
    assert_eq!(v["accepted"].as_array().unwrap().len(), 1, "{v}");
}

// ---------------------------------------------------------------- queries and tokens

#[tokio::test]
async fn injection_shaped_filter_values_change_nothing_and_match_nothing() {
    injection(world(|_| {}).await).await;
}

async fn injection(w: World) {
    let env = &w.env;
    let before = snapshot(env).await;
    let payloads = [
        "' OR '1'='1",
        "x' OR 1=1 --",
        "eng'; DROP TABLE usage_records; --",
        "\" OR \"\"=\"",
        "1; DELETE FROM api_keys",
        "' UNION SELECT id, token_sha256 FROM access_tokens --",
        "%' OR model LIKE '%",
        "eng\0",
    ];
    let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let mut tried = 0;
    for p in payloads {
        let e = enc(p);
        // Value filters: a 200 with nothing matched (the payload is a value, not SQL),
        // or a 400 naming the parameter.
        for param in [
            "model",
            "provider",
            "department",
            "project",
            "group",
            "user",
            "key",
            "org",
            "tag",
        ] {
            let (s, v) = env
                .get(&format!("/v1/analytics/summary?{param}={e}"), Some(ADMIN))
                .await;
            assert!(s == 200 || s == 400, "{param}={p}: {s} {v}");
            if s == 200 {
                assert_eq!(
                    v["rows"][0]["calls"].as_i64().unwrap_or(0),
                    0,
                    "{param}={p} matched rows: {v}"
                );
            } else {
                assert!(!err_message(&v).is_empty(), "{v}");
            }
            tried += 1;
        }
        // Enumerations and dates: 400 naming the value.
        for param in ["by", "bucket", "from", "to", "format"] {
            let (s, v) = env
                .get(&format!("/v1/analytics/breakdown?{param}={e}"), Some(ADMIN))
                .await;
            assert_eq!(s, 400, "{param}={p}: {v}");
            assert!(!err_message(&v).is_empty(), "{v}");
            tried += 1;
        }
        // Report names and admin lookups.
        let (s, _) = env.get(&format!("/v1/analytics/{e}"), Some(ADMIN)).await;
        assert!(s == 404 || s == 400, "report {p}: {s}");
        let (s, v) = env
            .get(&format!("/v1/admin/departments?org_id={e}"), Some(ADMIN))
            .await;
        assert!(
            s == 200 || (s == 400 && p.contains('\0')),
            "org_id={p}: {s} {v}"
        );
        assert!(
            v.to_string().len() < 200 && !v.to_string().contains("\"eng\""),
            "org_id={p} listed rows: {v}"
        );
        let (s, v) = env
            .get(
                &format!("/v1/admin/effective-policy?api_key_id={e}"),
                Some(ADMIN),
            )
            .await;
        assert!(s == 404 || s == 400, "effective-policy {p}: {s} {v}");
        let (s, v) = env
            .get(
                &format!("/v1/admin/policies/{}", enc(&format!("department:{p}"))),
                Some(ADMIN),
            )
            .await;
        assert!(
            s == 404 || s == 400 || (s == 200 && v["rules"].is_null()),
            "policy {p}: {s} {v}"
        );
        // A read token cannot widen its scope with a payload.
        let (s, v) = env
            .get(
                &format!("/v1/analytics/summary?department={e}"),
                Some(&w.reader),
            )
            .await;
        assert_eq!(s, 403, "reader department={p}: {v}");
        tried += 5;
    }
    // The real data is still there and still answers.
    let (s, v) = env.get("/v1/analytics/summary", Some(ADMIN)).await;
    assert_eq!(s, 200);
    assert_eq!(v["rows"][0]["calls"].as_i64(), Some(2), "{v}");
    assert_same(
        &before,
        &snapshot(env).await,
        "after injection-shaped queries",
    );
    eprintln!("security: {tried} injection-shaped query values tried, database unchanged");
}

#[tokio::test]
async fn admin_endpoints_need_an_admin_token() {
    let w = world(|_| {}).await;
    let env = &w.env;
    let before = snapshot(env).await;
    let endpoints: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/v1/admin/orgs", None),
        (
            "POST",
            "/v1/admin/orgs",
            Some(json!({"id": "x", "name": "X"})),
        ),
        (
            "POST",
            "/v1/admin/departments",
            Some(json!({"id": "x", "org_id": "acme"})),
        ),
        (
            "POST",
            "/v1/admin/users",
            Some(json!({"id": "mallory", "org_id": "acme", "department_id": "eng"})),
        ),
        ("GET", "/v1/admin/keys", None),
        (
            "POST",
            "/v1/admin/keys",
            Some(json!({"id": "k_x", "org_id": "acme", "public_key": signer(77).public_key()})),
        ),
        (
            "POST",
            "/v1/admin/keys/k_eng/rotate",
            Some(json!({"public_key": signer(78).public_key()})),
        ),
        ("POST", "/v1/admin/keys/k_eng/revoke", Some(json!({}))),
        ("GET", "/v1/admin/tokens", None),
        ("POST", "/v1/admin/tokens", Some(json!({"role": "admin"}))),
        ("POST", "/v1/admin/tokens/x/revoke", Some(json!({}))),
        ("GET", "/v1/admin/audit", None),
        ("GET", "/v1/admin/org-tree?org=acme", None),
        (
            "PUT",
            "/v1/admin/org-tree",
            Some(json!({"org": {"id": "acme", "name": "Pwned"}})),
        ),
        ("GET", "/v1/admin/policies/org:acme", None),
        (
            "PUT",
            "/v1/admin/policies/org:acme",
            Some(json!({"allow_models": ["*"]})),
        ),
        ("DELETE", "/v1/admin/policies/org:acme", None),
        ("GET", "/v1/admin/budgets", None),
        (
            "POST",
            "/v1/admin/budgets",
            Some(
                json!({"level": "org:acme", "metric": "usd", "period": "day", "limit": "1", "enforcement": "hard"}),
            ),
        ),
        ("DELETE", "/v1/admin/budgets/b_x", None),
        ("GET", "/v1/admin/alerts", None),
        ("GET", "/v1/admin/groups/g/members", None),
        (
            "POST",
            "/v1/admin/groups/g/members",
            Some(json!({"user_id": "alice"})),
        ),
        ("DELETE", "/v1/admin/groups/g/members/alice", None),
        ("GET", "/v1/admin/effective-policy?api_key_id=k_eng", None),
    ];
    let mut tried = 0;
    for (m, path, body) in &endpoints {
        let (s, v) = request(env, m, path, None, body.clone()).await;
        assert_eq!(s, 401, "{m} {path} without a token: {v}");
        assert!(err_message(&v).contains("Authorization"), "{v}");
        let (s, v) = request(env, m, path, Some("grc_not-a-real-token"), body.clone()).await;
        assert_eq!(s, 401, "{m} {path} with an unknown token: {v}");
        assert!(err_message(&v).contains("unknown or revoked token"), "{v}");
        let (s, v) = request(env, m, path, Some(&w.reader), body.clone()).await;
        assert_eq!(s, 403, "{m} {path} with a read token: {v}");
        assert!(err_message(&v).contains("admin token"), "{v}");
        // A signed SDK header is no admin credential either.
        let auth = request_auth::authorization(&w.eng, "k_eng", m, path, unix_ms_now(), b"");
        let mut r = env
            .http
            .request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                format!("{}{path}", env.base),
            )
            .header("authorization", auth);
        if let Some(b) = body {
            r = r.json(b);
        }
        assert_eq!(
            r.send().await.unwrap().status().as_u16(),
            401,
            "{m} {path} with an SDK signature"
        );
        tried += 4;
    }
    // Analytics: no token 401; a read token for another department 403.
    assert_eq!(env.get("/v1/analytics/summary", None).await.0, 401);
    let (s, v) = env
        .get("/v1/analytics/summary?department=sales", Some(&w.reader))
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = env
        .get("/v1/analytics/summary?org=evil", Some(&w.reader))
        .await;
    assert_eq!(s, 403, "{v}");
    // A revoked admin token stops working.
    let t = env
        .admin_ok("/v1/admin/tokens", json!({"role": "admin"}))
        .await;
    let (tok, id) = (
        t["token"].as_str().unwrap().to_owned(),
        t["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(env.get("/v1/admin/orgs", Some(&tok)).await.0, 200);
    env.admin_ok(&format!("/v1/admin/tokens/{id}/revoke"), json!({}))
        .await;
    assert_eq!(env.get("/v1/admin/orgs", Some(&tok)).await.0, 401);
    // Only the token made and revoked above changed anything.
    let mut after = snapshot(env).await;
    for k in [
        "access_tokens",
        "count:access_tokens",
        "audit",
        "count:audit_log",
    ] {
        after.insert(k.into(), before[k].clone());
    }
    assert_same(&before, &after, "after unauthorized admin calls");
    eprintln!("security: {tried} unauthorized admin calls refused, database unchanged");
}

/// (what, method, path, Authorization header, body, words expected in the message).
type SignedCase<'a> = (&'a str, &'a str, &'a str, Option<String>, &'a [u8], &'a str);

#[tokio::test]
async fn signed_endpoints_refuse_bad_or_expired_signatures() {
    let w = world(|_| {}).await;
    let env = &w.env;
    let before = snapshot(env).await;
    let body = serde_json::to_vec(&json!({"reservation_id": "r_sec_1", "model": "openai/gpt-4o-mini", "amount_micros": 1000, "amount_tokens": 100})).unwrap();
    let now = unix_ms_now();
    let a = request_auth::authorization;
    let cases: Vec<SignedCase<'_>> = vec![
        (
            "no header",
            "GET",
            "/v1/policy",
            None,
            b"",
            "missing Authorization",
        ),
        (
            "a bearer token",
            "GET",
            "/v1/policy",
            Some(format!("Bearer {ADMIN}")),
            b"",
            "",
        ),
        (
            "garbage",
            "GET",
            "/v1/policy",
            Some("GateRouter-Ed25519 nonsense".into()),
            b"",
            "",
        ),
        (
            "another key's signature",
            "GET",
            "/v1/policy",
            Some(a(&w.sales, "k_eng", "GET", "/v1/policy", now, b"")),
            b"",
            "",
        ),
        (
            "expired (10 min old)",
            "GET",
            "/v1/policy",
            Some(a(&w.eng, "k_eng", "GET", "/v1/policy", now - 600_000, b"")),
            b"",
            "",
        ),
        (
            "10 min in the future",
            "GET",
            "/v1/policy",
            Some(a(&w.eng, "k_eng", "GET", "/v1/policy", now + 600_000, b"")),
            b"",
            "",
        ),
        (
            "signed for another path",
            "GET",
            "/v1/policy",
            Some(a(&w.eng, "k_eng", "GET", "/v1/policy?x=1", now, b"")),
            b"",
            "",
        ),
        (
            "signed for another method",
            "POST",
            "/v1/reservations",
            Some(a(&w.eng, "k_eng", "GET", "/v1/reservations", now, &body)),
            &body,
            "",
        ),
        (
            "signed for another body",
            "POST",
            "/v1/reservations",
            Some(a(&w.eng, "k_eng", "POST", "/v1/reservations", now, b"{}")),
            &body,
            "",
        ),
        (
            "a revoked key",
            "POST",
            "/v1/reservations",
            Some(a(&w.old, "k_old", "POST", "/v1/reservations", now, &body)),
            &body,
            "revoked",
        ),
        (
            "an unknown key",
            "POST",
            "/v1/reservations",
            Some(a(
                &signer(50),
                "k_none",
                "POST",
                "/v1/reservations",
                now,
                &body,
            )),
            &body,
            "unknown api_key_id",
        ),
        (
            "settle of another key",
            "POST",
            "/v1/reservations/r_sec_1/settle",
            Some(a(
                &w.sales,
                "k_eng",
                "POST",
                "/v1/reservations/r_sec_1/settle",
                now,
                b"{}",
            )),
            b"{}",
            "",
        ),
    ];
    for (what, m, path, auth, body, words) in &cases {
        let mut r = env
            .http
            .request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                format!("{}{path}", env.base),
            )
            .body(body.to_vec());
        if let Some(h) = auth {
            r = r.header("authorization", h);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(s, 401, "{what}: {v}");
        let msg = err_message(&v);
        assert!(
            !msg.is_empty() && msg.contains(words),
            "{what}: `{msg}` lacks `{words}`"
        );
    }
    assert_same(&before, &snapshot(env).await, "after badly signed requests");
    eprintln!(
        "security: {} badly signed /v1/policy and /v1/reservations requests refused (401), database unchanged",
        cases.len()
    );
    // The same requests signed correctly work (the refusals were about the signature).
    let ok = a(&w.eng, "k_eng", "GET", "/v1/policy", unix_ms_now(), b"");
    let r = env
        .http
        .get(format!("{}/v1/policy", env.base))
        .header("authorization", ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ok = a(
        &w.eng,
        "k_eng",
        "POST",
        "/v1/reservations",
        unix_ms_now(),
        &body,
    );
    let r = env
        .http
        .post(format!("{}/v1/reservations", env.base))
        .header("authorization", ok)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    // A replayed signed request does not double-reserve.
    let ok = a(
        &w.eng,
        "k_eng",
        "POST",
        "/v1/reservations",
        unix_ms_now(),
        &body,
    );
    let r = env
        .http
        .post(format!("{}/v1/reservations", env.base))
        .header("authorization", ok)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let s = snapshot(env).await;
    assert_eq!(s["reservations"].len(), 1, "{:?}", s["reservations"]);
}

// ---------------------------------------------------------------- secrets

const PROVIDER_KEY: &str = "sk-proj-SECRETPROVIDERKEY0123456789abcdef";

#[tokio::test]
async fn secrets_never_appear_in_logs_errors_or_records() {
    let _ = log_buffer();
    let env = Env::start(None, |_| {}).await;
    let (_, _) = env.seed_org().await;
    let (key, public) = gaterouter::usage::generate_key();
    let seed = key.seed_base64().expose().to_owned();
    env.admin_ok(
        "/v1/admin/keys",
        json!({"id": "k_sdk", "org_id": "acme", "department_id": "eng", "public_key": public}),
    )
    .await;
    let (st, v) = request(
        &env,
        "PUT",
        "/v1/admin/policies/key:k_sdk",
        Some(ADMIN),
        Some(json!({"deny_models": ["openai/gpt-4o"]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let reader = env
        .admin_ok(
            "/v1/admin/tokens",
            json!({"role": "read", "org_id": "acme"}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("signing.key");
    std::fs::File::create(&key_file)
        .unwrap()
        .write_all(seed.as_bytes())
        .unwrap();

    let mut cfg = Config::for_emulator(&emu.base_url());
    for p in cfg.providers.values_mut() {
        p.api_key = Some(Secret::new(PROVIDER_KEY));
    }
    cfg.retry.initial_backoff_ms = 1;
    cfg.retry.max_backoff_ms = 5;
    // Keep calling anthropic: an open breaker refuses calls before any attempt (no record).
    cfg.routing.circuit_breaker.failure_threshold = 1000;
    cfg.identity = Identity {
        org: Some("acme".into()),
        department: Some("eng".into()),
        user: Some("alice".into()),
        api_key_id: Some("k_sdk".into()),
        ..Default::default()
    };
    cfg.reporting.collector_url = Some(env.base.clone());
    cfg.reporting.spool_dir = Some(dir.path().join("spool"));
    cfg.reporting.signing_key_file = Some(key_file.clone());
    cfg.reporting.batch_max_age_ms = 20;
    let client = Client::new(cfg.clone()).unwrap();
    let mut errors = Vec::new();
    let ask = |m: &str, text: &str| ChatRequest::new(m, vec![Message::user(text)]);
    // A success, a provider auth error, a rate limit, a 5xx with an HTML page, a
    // malformed body, a policy denial, and a stream cut.
    client
        .chat(ask("openai/gpt-4o-mini", "hello"))
        .await
        .unwrap();
    for spec in [
        "auth",
        "rate_limit;retry_after=0",
        "html_error",
        "malformed_json",
        "bad_request",
        "server_error;status=503",
    ] {
        let e = client
            .chat(ask(
                "anthropic/claude-haiku-4-5",
                &format!("x [[emulator:{spec}]]"),
            ))
            .await
            .unwrap_err();
        errors.push(format!("{e} {e:?}"));
    }
    let e = client
        .chat(ask("openai/gpt-4o", "denied"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
    errors.push(format!("{e} {e:?}"));
    let s = client
        .chat_stream(ask(
            "openai/gpt-4o-mini",
            "cut [[emulator:cut_stream;after_events=2]]",
        ))
        .await
        .unwrap();
    if let Err(e) = s.collect_response().await {
        errors.push(format!("{e} {e:?}"));
    }
    // Config errors that name the key's location.
    let mut bad = cfg.clone();
    bad.reporting.signing_key_file = Some(dir.path().join("missing.key"));
    if let Err(e) = Client::new(bad) {
        errors.push(format!("{e} {e:?}"));
    }
    let mut bad = cfg.clone();
    std::fs::write(dir.path().join("bad.key"), format!("{seed}garbage")).unwrap();
    bad.reporting.signing_key_file = Some(dir.path().join("bad.key"));
    if let Err(e) = Client::new(bad) {
        errors.push(format!("{e} {e:?}"));
    }
    errors.push(format!("{cfg:?} {:?}", client.config()));
    let out = client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(out.drained, "{out:?}");
    client.shutdown().await.unwrap();
    // Collector-side errors with the tokens.
    env.get("/v1/admin/orgs", Some(&reader)).await;
    env.get("/v1/admin/orgs", Some(&format!("{ADMIN}x"))).await;
    env.get(
        "/v1/analytics/summary?department=sales",
        Some(&format!("{reader} ")),
    )
    .await;
    let (_, audit) = env.get("/v1/admin/audit", Some(ADMIN)).await;
    let (_, tokens) = env.get("/v1/admin/tokens", Some(ADMIN)).await;
    let (_, keys) = env.get("/v1/admin/keys", Some(ADMIN)).await;
    let (_, csv) = env
        .get_text("/v1/analytics/users?format=csv", Some(ADMIN))
        .await;
    errors.push(format!("{audit} {tokens} {keys} {csv}"));

    // Everything the records hold, as stored.
    let db = &env.handle.state().db;
    let rows = db
        .fetch("SELECT * FROM usage_records", &[], "reading records")
        .await
        .unwrap();
    let statuses: Vec<String> = db
        .fetch("SELECT status FROM usage_records", &[], "r")
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>(0).unwrap())
        .collect();
    // One record per call: 1 ok, 6 faults, 1 cut stream, and the policy denial (a
    // `denied` record: it never reached a provider, but it is counted).
    assert_eq!(statuses.len(), 9, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| *s == "denied").count(),
        1,
        "{statuses:?}"
    );
    let mut stored = String::new();
    for r in &rows {
        for i in 0..r.len() {
            if let Ok(s) = r.try_get::<String, _>(i) {
                stored.push_str(&s);
                stored.push('|');
            }
        }
    }
    // The spool's files.
    let mut spool = String::new();
    for e in walk(&dir.path().join("spool")) {
        spool.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap()));
    }
    // The emulator saw the key (it plays the provider) but the SDK never logged it.
    let all_logs = logs();
    assert!(
        all_logs.len() > 1000 && all_logs.contains("DEBUG"),
        "debug logging was captured ({} bytes)",
        all_logs.len()
    );
    let secrets = [
        ("provider API key", PROVIDER_KEY.to_owned()),
        ("signing key seed", seed.clone()),
        ("admin token", ADMIN.to_owned()),
        ("read token", reader.clone()),
    ];
    for (what, secret) in &secrets {
        for (place, text) in [
            ("logs", &all_logs),
            ("errors", &errors.join("\n")),
            ("stored records", &stored),
            ("spool", &spool),
        ] {
            assert!(!text.contains(secret.as_str()), "{what} found in {place}");
        }
        // Also no recognizable prefix of it (a logged excerpt).
        let head = &secret[..secret.len().min(16)];
        assert!(
            !all_logs.contains(head),
            "a prefix of the {what} found in logs"
        );
    }
    eprintln!(
        "security: secrets absent from {} bytes of debug logs, {} error texts, {} stored records and {} spool bytes",
        all_logs.len(),
        errors.len(),
        rows.len(),
        spool.len()
    );
    emu.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

// ---------------------------------------------------------------- issue 18 probe

/// The issue-18 probe's ingest attacks replayed against one collector: every attack is
/// refused per record (never a 429, 503 or hang for the honest keys), nothing of theirs
/// is stored, and the honest keys' records that follow are all stored.
#[tokio::test]
async fn issue18_probe_attacks_are_refused_and_honest_keys_keep_working() {
    use tokio::io::AsyncWriteExt as _;
    let w = world(|c| {
        // 40 forged or unsigned records below would exhaust this if they were charged;
        // the 5 authenticated-but-invalid and 4 honest records fit.
        c.rate_limit_records_per_sec = 2;
        c.rate_limit_burst = Some(12);
        c.max_connections = 64;
        c.header_read_timeout_secs = 2;
        c.max_record_age_days = 35;
    })
    .await;
    let env = &w.env;
    env.admin_ok(
        "/v1/admin/projects",
        json!({"id": "support_desk", "org_id": "acme", "department_id": "sales"}),
    )
    .await;
    let before = snapshot(env).await;
    let now = unix_ms_now();
    let fresh = |s: Spec| Spec {
        ts: now - 1_000,
        ..s
    };
    let mut tried = 0;
    // Rate-limit abuse: 20 forged and 20 unsigned batches naming k_eng (limit 2/s, burst 12).
    for i in 0..20 {
        let (s, v) = env
            .ingest(&[wire(&fresh(Spec::default()), &signer(99))])
            .await;
        assert!(only_rejection(s, &v, "forged").contains("signature does not verify"));
        let unsigned = format!(
            r#"{{"records":[{{"id":"{}","api_key_id":"k_eng"}}]}}"#,
            gaterouter::usage::RecordId::new_v7().0
        );
        let (s, v) = raw_post(
            env,
            "/v1/usage",
            &[("content-type", "application/json".into())],
            unsigned.into_bytes(),
        )
        .await;
        assert_eq!(s, 200, "unsigned batch {i}: {v}");
        tried += 2;
    }
    // Overflow: 2^53-1 tokens on an expensive model; a cost of $5 000.
    let huge = fresh(Spec {
        model: "gpt-4o",
        prompt: (1 << 53) - 1,
        completion: 0,
        client_cost: 0,
        ..Spec::default()
    });
    let (s, v) = env.ingest(&[wire(&huge, &w.eng)]).await;
    assert!(only_rejection(s, &v, "2^53-1 tokens").contains("per-record bound"));
    let costly = fresh(Spec {
        client_cost: 5_000_000_000,
        ..Spec::default()
    });
    let (s, v) = env.ingest(&[wire(&costly, &w.eng)]).await;
    assert!(only_rejection(s, &v, "$5000 record").contains("max_record_cost_micros"));
    // Another department's project; back-dating; a non-UUID id; schema_version 2.
    let mut v = value_of(&fresh(Spec::default()));
    v["project"] = json!("support_desk");
    let (s, r) = env.ingest(&[sign_value(&v, &w.eng)]).await;
    assert!(only_rejection(s, &r, "sales project").contains("is in department `sales`"));
    let (s, r) = env
        .ingest(&[wire(
            &Spec {
                ts: now - 40 * 86_400_000,
                ..Spec::default()
            },
            &w.eng,
        )])
        .await;
    assert!(only_rejection(s, &r, "back-dated").contains("max_record_age_days"));
    let mut v = value_of(&fresh(Spec::default()));
    v["id"] = json!("not-a-uuid");
    let (s, r) = env.ingest(&[sign_value(&v, &w.eng)]).await;
    assert!(only_rejection(s, &r, "non-UUID id").contains("not a UUID"));
    let mut v = value_of(&fresh(Spec::default()));
    v["schema_version"] = json!(2);
    let (s, r) = env.ingest(&[sign_value(&v, &w.eng)]).await;
    assert!(only_rejection(s, &r, "schema_version 2").contains("schema_version 2"));
    // Log injection through api_key_id: the reason comes back escaped.
    let mut v = value_of(&fresh(Spec::default()));
    v["api_key_id"] = json!("k\nERROR forged\u{1b}[2J");
    let (s, r) = env.ingest(&[sign_value(&v, &w.eng)]).await;
    let why = only_rejection(s, &r, "log injection");
    assert!(!why.contains('\n') && !why.contains('\u{1b}'), "{why}");
    tried += 7;
    // Slow connections: 300 idle or half-sent connections.
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut c = tokio::net::TcpStream::connect(env.handle.addr())
            .await
            .unwrap();
        if i % 2 == 0 {
            c.write_all(b"POST /v1/usage HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(c);
    }
    tried += 1;
    assert_same(&before, &snapshot(env).await, "after the issue-18 attacks");
    // Honest keys: not rate limited by the forgeries, served despite the idle connections.
    let t = std::time::Instant::now();
    let honest: Vec<String> = (0..4)
        .map(|_| wire(&fresh(Spec::default()), &w.eng))
        .collect();
    let (s, v) = env.ingest(&honest).await;
    assert_eq!(
        (s, v["accepted"].as_array().unwrap().len()),
        (200, 4),
        "{v}"
    );
    let (s, v) = env
        .ingest(&[wire(
            &fresh(Spec {
                key: "k_sales",
                dept: "sales",
                user: "carol",
                ..Spec::default()
            }),
            &w.sales,
        )])
        .await;
    assert_eq!(
        (s, v["accepted"].as_array().unwrap().len()),
        (200, 1),
        "{v}"
    );
    let honest_ms = t.elapsed().as_millis();
    assert!(
        env.handle.open_connections() <= 64 + 2,
        "{}",
        env.handle.open_connections()
    );
    drop(idle);
    eprintln!(
        "SECURITY issue18: {tried} attacks refused, database unchanged by them; 5 honest records stored in {honest_ms} ms with 300 idle connections open"
    );
}
