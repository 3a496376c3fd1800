//! Enterprise accounts (ACCOUNTS.md): org-tree import, inheritance through
//! `GET /v1/policy`, permission and budget refusals, the reservation race, settle →
//! ingest → consumed, lapses and soft-budget alerts. Each scenario runs on SQLite and
//! (in one test that starts a server) on PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use gaterouter::accounts::request_auth;
use gaterouter::usage::{UsageSigner, unix_ms_now};
use serde_json::{Value, json};

type Db = Option<String>;

fn alice_signer() -> UsageSigner {
    signer(11)
}
fn legal_signer() -> UsageSigner {
    signer(12)
}

/// A two-department org: eng (alice in groups oncall and sre, bob), legal (zero
/// retention only, light/standard tiers); keys k_alice (eng/alice, own allow-list) and
/// k_legal (legal).
fn org_doc() -> Value {
    json!({
        "org": {"id": "acme", "name": "Acme Corp",
                "policy": {"allow_models": ["openai/*", "anthropic/*"], "deny_models": ["openai/o1*"]},
                "budgets": [{"metric": "usd", "period": "month", "limit": "20000.00", "enforcement": "hard"}]},
        "departments": [
            {"id": "eng", "name": "Engineering", "policy": {"max_tokens_per_request": 8192},
             "budgets": [{"metric": "tokens", "period": "day", "limit": 50000000, "enforcement": "soft", "notify_at": [50, 80, 100]}]},
            {"id": "legal", "name": "Legal", "policy": {"zero_retention_only": true, "allowed_tiers": ["light", "standard"]}}
        ],
        "projects": [{"id": "search", "department": "eng"}],
        "groups": [
            {"id": "oncall", "department": "eng", "budgets": [{"metric": "usd", "period": "day", "limit": "30", "enforcement": "hard"}]},
            {"id": "sre", "department": "eng", "budgets": [{"metric": "usd", "period": "day", "limit": "20", "enforcement": "hard"}]}
        ],
        "members": [
            {"id": "alice", "department": "eng", "groups": ["oncall", "sre"]},
            {"id": "bob", "department": "eng"},
            {"id": "carol", "department": "legal"}
        ],
        "keys": [
            {"id": "k_alice", "department": "eng", "user": "alice", "public_key": alice_signer().public_key(),
             "policy": {"allow_models": ["openai/gpt-4o-mini", "anthropic/claude-haiku-*"], "max_tokens_per_request": 4096}},
            {"id": "k_legal", "department": "legal", "public_key": legal_signer().public_key()}
        ]
    })
}

async fn send(env: &Env, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut r = match method {
        "PUT" => env.http.put(format!("{}{path}", env.base)),
        "DELETE" => env.http.delete(format!("{}{path}", env.base)),
        "GET" => env.http.get(format!("{}{path}", env.base)),
        _ => env.http.post(format!("{}{path}", env.base)),
    }
    .bearer_auth(ADMIN);
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

async fn apply(env: &Env, doc: &Value) -> Value {
    let (s, v) = send(env, "PUT", "/v1/admin/org-tree", Some(doc)).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn reserve(env: &Env, id: &str, model: &str, micros: u64, tokens: u64) -> (u16, Value) {
    let body = json!({"reservation_id": id, "model": model, "amount_micros": micros, "amount_tokens": tokens});
    signed(
        env,
        &alice_signer(),
        "k_alice",
        "POST",
        "/v1/reservations",
        Some(&body),
    )
    .await
}

fn budget<'a>(v: &'a Value, level: &str, metric: &str) -> &'a Value {
    v["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["level"] == level && b["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} budget at {level} in {v}"))
}

/// A record of alice through k_alice, now.
fn alice_record(prompt: u64, completion: u64) -> gaterouter::usage::UsageRecord {
    record(&Spec {
        key: "k_alice",
        ts: unix_ms_now(),
        prompt,
        completion,
        client_cost: prompt * 15 / 100 + completion * 60 / 100,
        ..Spec::default()
    })
}

async fn import_is_idempotent(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let doc = org_doc();
    // Dry run: reports, writes nothing.
    let (s, v) = send(&env, "PUT", "/v1/admin/org-tree?dry_run=true", Some(&doc)).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["dry_run"] == json!(true) && v["created"].as_array().unwrap().len() > 10,
        "{v}"
    );
    let (s, _) = send(&env, "GET", "/v1/admin/org-tree?org=acme", None).await;
    assert_eq!(s, 404);
    let first = apply(&env, &doc).await;
    let created: Vec<&str> = first["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for want in [
        "org:acme",
        "department:eng",
        "group:sre",
        "user:alice",
        "key:k_alice",
        "policy:department:legal",
        "budget:group:oncall/usd/day",
    ] {
        assert!(created.contains(&want), "{want} not in {first}");
    }
    // Applied twice: nothing changes.
    let second = apply(&env, &doc).await;
    assert_eq!(
        (
            second["created"].clone(),
            second["updated"].clone(),
            second["removed_not_deleted"].clone()
        ),
        (json!([]), json!([]), json!([])),
        "{second}"
    );
    assert_eq!(
        second["unchanged"],
        json!(first["created"].as_array().unwrap().len()),
        "{second}"
    );
    // Export → apply is a no-op, and the export parses as the file format.
    let (s, exported) = send(&env, "GET", "/v1/admin/org-tree?org=acme", None).await;
    assert_eq!(s, 200, "{exported}");
    let parsed = gaterouter_collector::orgfile::parse(
        &exported.to_string(),
        gaterouter_collector::orgfile::Format::Json,
    )
    .unwrap();
    assert_eq!(
        parsed
            .members
            .iter()
            .find(|m| m.id == "alice")
            .unwrap()
            .groups,
        vec!["oncall".to_owned(), "sre".to_owned()]
    );
    let third = apply(&env, &exported).await;
    assert!(
        third["created"] == json!([]) && third["updated"] == json!([]),
        "{third}"
    );
    // Change one limit, drop a member and a policy: updated and reported, not deleted.
    let mut changed = doc.clone();
    changed["groups"][1]["budgets"][0]["limit"] = json!("25");
    changed["members"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["id"] != "bob");
    changed["departments"][1]
        .as_object_mut()
        .unwrap()
        .remove("policy");
    let v = apply(&env, &changed).await;
    assert_eq!(v["updated"], json!(["budget:group:sre/usd/day"]), "{v}");
    assert_eq!(
        v["removed_not_deleted"],
        json!(["user:bob", "policy:department:legal"]),
        "{v}"
    );
    let (_, users) = env.get("/v1/admin/users?org_id=acme", Some(ADMIN)).await;
    assert!(
        users["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == "bob"),
        "{users}"
    );
    // Validation names the entry and the field.
    let mut bad = doc.clone();
    bad["departments"][1]["budgets"] =
        json!([{"metric": "usd", "period": "day", "limit": "1.0000001", "enforcement": "hard"}]);
    let (s, v) = send(&env, "PUT", "/v1/admin/org-tree", Some(&bad)).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("departments[1].budgets[0].limit:"),
        "{v}"
    );
    let mut bad = doc.clone();
    bad["keys"][0]["user"] = json!("zed");
    let (s, v) = send(&env, "PUT", "/v1/admin/org-tree", Some(&bad)).await;
    assert!(
        s == 400
            && v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("keys[0].user: unknown member `zed`"),
        "{v}"
    );
    // Ids are global: another org cannot take `eng`.
    let other = json!({"org": {"id": "globex"}, "departments": [{"id": "eng"}]});
    let (s, v) = send(&env, "PUT", "/v1/admin/org-tree", Some(&other)).await;
    assert!(
        s == 409
            && v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("departments[0].id: `eng` already belongs to org `acme`"),
        "{v}"
    );
    // A new public key rotates the key (previous one kept for its grace period).
    let mut rotated = doc.clone();
    rotated["keys"][1]["public_key"] = json!(signer(13).public_key());
    let v = apply(&env, &rotated).await;
    assert!(
        v["updated"]
            .as_array()
            .unwrap()
            .contains(&json!("key:k_legal")),
        "{v}"
    );
    let (_, keys) = env.get("/v1/admin/keys?org_id=acme", Some(ADMIN)).await;
    let k = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "k_legal")
        .unwrap();
    assert_eq!(k["versions"].as_array().unwrap().len(), 2, "{k}");
    // Admin policy and budget endpoints.
    let (s, v) = send(
        &env,
        "PUT",
        "/v1/admin/policies/project:search",
        Some(&json!({"deny_models": ["anthropic/*"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = send(&env, "GET", "/v1/admin/policies/project:search", None).await;
    assert!(
        s == 200 && v["rules"]["deny_models"] == json!(["anthropic/*"]),
        "{v}"
    );
    let (s, _) = send(
        &env,
        "PUT",
        "/v1/admin/policies/project:nope",
        Some(&json!({})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = send(&env, "DELETE", "/v1/admin/policies/project:search", None).await;
    assert_eq!(s, 200);
    let (s, v) = send(&env, "POST", "/v1/admin/budgets", Some(&json!({"level": "user:bob", "metric": "usd", "period": "hour", "limit": 2.5, "enforcement": "hard"}))).await;
    assert!(s == 201 && v["limit"] == json!(2_500_000), "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (_, list) = send(&env, "GET", "/v1/admin/budgets?org_id=acme", None).await;
    assert!(list["items"].as_array().unwrap().iter().any(|b| b["status"]["id"] == json!(id) && b["status"]["remaining"] == json!(2_500_000)), "{list}");
    let (s, _) = send(&env, "DELETE", &format!("/v1/admin/budgets/{id}"), None).await;
    assert_eq!(s, 200);
    assert!(list["items"][0]["projected_at_reset"].is_u64(), "{list}");
    // Memberships through the admin API (a member in several groups).
    let (s, v) = send(
        &env,
        "POST",
        "/v1/admin/groups/oncall/members",
        Some(&json!({"user_id": "bob"})),
    )
    .await;
    assert!(s == 200 && v["added"] == json!(true), "{v}");
    let (_, v) = send(
        &env,
        "POST",
        "/v1/admin/groups/oncall/members",
        Some(&json!({"user_id": "bob"})),
    )
    .await;
    assert_eq!(v["added"], json!(false), "{v}");
    let (_, v) = send(&env, "GET", "/v1/admin/groups/oncall/members", None).await;
    assert_eq!(v["members"], json!(["alice", "bob"]), "{v}");
    let (s, _) = send(
        &env,
        "POST",
        "/v1/admin/groups/oncall/members",
        Some(&json!({"user_id": "nobody"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = send(&env, "DELETE", "/v1/admin/groups/oncall/members/bob", None).await;
    assert_eq!(s, 200);
    let (s, _) = send(&env, "DELETE", "/v1/admin/groups/oncall/members/bob", None).await;
    assert_eq!(s, 404);
    let (_, audit) = env.get("/v1/admin/audit", Some(ADMIN)).await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "apply_org_tree"),
        "{audit}"
    );
    env.handle.shutdown().await;
}

async fn inheritance_and_permissions(db: Db) {
    let env = Env::start(db, |_| {}).await;
    apply(&env, &org_doc()).await;
    let (s, p) = signed(&env, &alice_signer(), "k_alice", "GET", "/v1/policy", None).await;
    assert_eq!(s, 200, "{p}");
    let rules = &p["rules"];
    // The key's allow-list overrides the org's; the org's deny stays; the key's
    // max_tokens overrides the department's.
    assert_eq!(rules["allow_models"]["level"], "key:k_alice", "{p}");
    assert_eq!(
        rules["deny_models"][0],
        json!({"value": "openai/o1*", "level": "org:acme"})
    );
    assert_eq!(
        rules["max_tokens_per_request"],
        json!({"value": 4096, "level": "key:k_alice"})
    );
    assert_eq!(
        p["scope"],
        json!({"org": "acme", "department": "eng", "project": null, "group": null, "user": "alice"})
    );
    // Budgets of every level above the key, both of alice's groups included.
    let levels: Vec<&str> = p["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["level"].as_str().unwrap())
        .collect();
    for l in ["org:acme", "department:eng", "group:oncall", "group:sre"] {
        assert!(levels.contains(&l), "{l} missing from {p}");
    }
    assert_eq!(p["ttl_ms"], 30_000);
    // The admin view is the same.
    let (_, a) = env
        .get("/v1/admin/effective-policy?api_key_id=k_alice", Some(ADMIN))
        .await;
    assert_eq!(a["rules"], p["rules"]);
    // Permission refusals name the rule and the level.
    let (s, v) = reserve(&env, "r-deny-1", "anthropic/claude-sonnet-4-5", 1000, 100).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        (
            v["error"]["code"].as_str(),
            v["error"]["rule"].as_str(),
            v["error"]["level"].as_str()
        ),
        (
            Some("permission_denied"),
            Some("allow_models"),
            Some("key:k_alice")
        ),
        "{v}"
    );
    // Legal: zero-retention only (no built-in model is flagged).
    let body = json!({"reservation_id": "r-legal", "model": "openai/gpt-4o-mini", "amount_micros": 10, "amount_tokens": 10});
    let (s, v) = signed(
        &env,
        &legal_signer(),
        "k_legal",
        "POST",
        "/v1/reservations",
        Some(&body),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        (v["error"]["rule"].as_str(), v["error"]["level"].as_str()),
        (Some("zero_retention_only"), Some("department:legal")),
        "{v}"
    );
    let (_, lp) = signed(&env, &legal_signer(), "k_legal", "GET", "/v1/policy", None).await;
    assert_eq!(
        lp["rules"]["allowed_tiers"],
        json!({"value": ["light", "standard"], "level": "department:legal"})
    );
    assert_eq!(lp["rules"]["allow_models"]["level"], "org:acme");
    // The org's deny reaches everyone.
    let body = json!({"reservation_id": "r-o1", "model": "openai/o1-mini", "amount_micros": 10, "amount_tokens": 10});
    let (s, v) = signed(
        &env,
        &legal_signer(),
        "k_legal",
        "POST",
        "/v1/reservations",
        Some(&body),
    )
    .await;
    assert!(
        s == 403 && v["error"]["rule"] == "deny_models" && v["error"]["level"] == "org:acme",
        "{v}"
    );
    // Signatures: wrong key, stale clock, revoked key are 401.
    let (s, _) = signed(&env, &legal_signer(), "k_alice", "GET", "/v1/policy", None).await;
    assert_eq!(s, 401);
    let auth = request_auth::authorization(
        &alice_signer(),
        "k_alice",
        "GET",
        "/v1/policy",
        unix_ms_now() - 600_000,
        b"",
    );
    let r = env
        .http
        .get(format!("{}/v1/policy", env.base))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, _) = env.get("/v1/policy", None).await;
    assert_eq!(s, 401);
    env.admin_ok("/v1/admin/keys/k_legal/revoke", json!({}))
        .await;
    let (s, v) = signed(&env, &legal_signer(), "k_legal", "GET", "/v1/policy", None).await;
    assert!(
        s == 401 && v["error"]["message"].as_str().unwrap().contains("revoked"),
        "{v}"
    );
    env.handle.shutdown().await;
}

/// Org with one hard $1.00 daily budget on alice's key.
fn race_doc() -> Value {
    let mut doc = org_doc();
    doc["keys"][0]["budgets"] =
        json!([{"metric": "usd", "period": "day", "limit": "1.00", "enforcement": "hard"}]);
    doc
}

async fn budget_refusal(db: Db) {
    let env = Env::start(db, |_| {}).await;
    apply(&env, &race_doc()).await;
    let (s, v) = reserve(&env, "r1", "openai/gpt-4o-mini", 900_000, 1000).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(budget(&v, "key:k_alice", "usd")["remaining"], 100_000);
    // Same id again: the same reservation, nothing more held.
    let (s, again) = reserve(&env, "r1", "openai/gpt-4o-mini", 900_000, 1000).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["expires_at_ms"], v["expires_at_ms"]);
    assert_eq!(budget(&again, "key:k_alice", "usd")["reserved"], 900_000);
    let (s, v) = reserve(&env, "r2", "openai/gpt-4o-mini", 100_001, 1000).await;
    assert_eq!(s, 402, "{v}");
    let e = &v["error"];
    assert_eq!(e["code"], "budget_exceeded");
    assert_eq!(
        (
            e["budget"]["level"].as_str(),
            e["budget"]["period"].as_str(),
            e["budget"]["remaining"].as_u64()
        ),
        (Some("key:k_alice"), Some("day"), Some(100_000)),
        "{v}"
    );
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("day spend budget")
            && msg.contains("$0.100000 left")
            && msg.contains("resets at")
            && msg.contains("T00:00:00Z"),
        "{msg}"
    );
    // Groups: alice is in oncall ($30) and sre ($20): the tighter one refuses.
    let (_, list) = send(&env, "GET", "/v1/admin/budgets?org_id=acme", None).await;
    let key_budget = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["status"]["level"] == "key:k_alice")
        .unwrap()["status"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = send(
        &env,
        "DELETE",
        &format!("/v1/admin/budgets/{key_budget}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = reserve(&env, "r3", "openai/gpt-4o-mini", 21_000_000, 1000).await;
    assert!(
        s == 402 && v["error"]["budget"]["level"] == "group:sre",
        "{v}"
    );
    env.handle.shutdown().await;
}

/// 50 concurrent reservations of $0.05 against $1.00: exactly 20 pass, never more.
async fn reservation_race(db: Db) {
    let env = Env::start(db, |_| {}).await;
    apply(&env, &race_doc()).await;
    let env = std::sync::Arc::new(env);
    let t0 = std::time::Instant::now();
    let mut tasks = Vec::new();
    for n in 0..50 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            reserve(
                &env,
                &format!("race-{n}"),
                "openai/gpt-4o-mini",
                50_000,
                500,
            )
            .await
        }));
    }
    let mut granted = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            201 => {
                granted += 1;
                let b = budget(&v, "key:k_alice", "usd");
                assert!(
                    b["used"].as_u64().unwrap() + b["reserved"].as_u64().unwrap() <= 1_000_000,
                    "{v}"
                );
            }
            402 => assert_eq!(v["error"]["code"], "budget_exceeded", "{v}"),
            _ => panic!("unexpected {s} {v}"),
        }
    }
    assert_eq!(granted, 20);
    eprintln!(
        "50 concurrent reservations (debug build) in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    let (_, p) = signed(&env, &alice_signer(), "k_alice", "GET", "/v1/policy", None).await;
    let b = budget(&p, "key:k_alice", "usd");
    assert_eq!(
        (b["reserved"].as_u64(), b["remaining"].as_u64()),
        (Some(1_000_000), Some(0)),
        "{p}"
    );
    // The org budget saw exactly the same holds.
    assert_eq!(budget(&p, "org:acme", "usd")["reserved"], 1_000_000);
    let env = std::sync::Arc::try_unwrap(env).ok().unwrap();
    env.handle.shutdown().await;
}

/// Two collectors on one database (two processes in production): still exactly 20.
async fn shared_database_race(url: String) {
    let a = Env::start(Some(url.clone()), |_| {}).await;
    let b = Env::start(Some(url), |_| {}).await;
    apply(&a, &race_doc()).await;
    let envs = [std::sync::Arc::new(a), std::sync::Arc::new(b)];
    let mut tasks = Vec::new();
    for n in 0..50 {
        let env = envs[n % 2].clone();
        tasks.push(tokio::spawn(async move {
            reserve(
                &env,
                &format!("shared-{n}"),
                "openai/gpt-4o-mini",
                50_000,
                500,
            )
            .await
        }));
    }
    let mut granted = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert!(
            s == 201 || (s == 402 && v["error"]["code"] == "budget_exceeded"),
            "{s} {v}"
        );
        granted += usize::from(s == 201);
    }
    assert_eq!(granted, 20);
    for env in envs {
        let env = std::sync::Arc::try_unwrap(env).ok().unwrap();
        env.handle.shutdown().await;
    }
}

async fn settle_ingest_lapse(db: Db) {
    let env = Env::start(db, |_| {}).await;
    apply(&env, &race_doc()).await;
    let rec = alice_record(10_000, 1_000); // gpt-4o-mini: 2 100 micro-dollars
    let (s, _) = reserve(&env, "s1", "openai/gpt-4o-mini", 50_000, 11_000).await;
    assert_eq!(s, 201);
    let body = json!({"actual_micros": 2_100, "actual_tokens": 11_000, "record_id": rec.id.0});
    let (s, v) = signed(
        &env,
        &alice_signer(),
        "k_alice",
        "POST",
        "/v1/reservations/s1/settle",
        Some(&body),
    )
    .await;
    assert_eq!(
        (s, v["state"].as_str(), v["hold_micros"].as_u64()),
        (200, Some("settled"), Some(2_100)),
        "{v}"
    );
    // Idempotent.
    let (s, v) = signed(
        &env,
        &alice_signer(),
        "k_alice",
        "POST",
        "/v1/reservations/s1/settle",
        Some(&body),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("settled")), "{v}");
    let (_, p) = signed(&env, &alice_signer(), "k_alice", "GET", "/v1/policy", None).await;
    let b = budget(&p, "key:k_alice", "usd");
    assert_eq!(
        (b["used"].as_u64(), b["reserved"].as_u64()),
        (Some(0), Some(2_100)),
        "{p}"
    );
    // The record arrives: it counts instead of the hold, once.
    let (_, v) = env.ingest(&[sign(&rec, &alice_signer())]).await;
    assert_eq!(ids(&v, "accepted").len(), 1, "{v}");
    let (_, v) = env.ingest(&[sign(&rec, &alice_signer())]).await;
    assert_eq!(ids(&v, "duplicate").len(), 1, "{v}");
    let (_, p) = signed(&env, &alice_signer(), "k_alice", "GET", "/v1/policy", None).await;
    for (level, metric, used) in [
        ("key:k_alice", "usd", 2_100),
        ("org:acme", "usd", 2_100),
        ("group:sre", "usd", 2_100),
        ("department:eng", "tokens", 11_000),
    ] {
        let b = budget(&p, level, metric);
        assert_eq!(
            (b["used"].as_u64(), b["reserved"].as_u64()),
            (Some(used), Some(0)),
            "{level} {p}"
        );
    }
    let (_, v) = signed(
        &env,
        &alice_signer(),
        "k_alice",
        "POST",
        "/v1/reservations/s1/settle",
        Some(&body),
    )
    .await;
    assert_eq!(v["state"], "consumed", "{v}");
    // Settled after its record was stored: consumed at once.
    let rec2 = alice_record(1_000, 100);
    env.ingest(&[sign(&rec2, &alice_signer())]).await;
    reserve(&env, "s2", "openai/gpt-4o-mini", 50_000, 1_100).await;
    let (_, v) = signed(
        &env,
        &alice_signer(),
        "k_alice",
        "POST",
        "/v1/reservations/s2/settle",
        Some(&json!({"actual_micros": 210, "actual_tokens": 1100, "record_id": rec2.id.0})),
    )
    .await;
    assert_eq!(v["state"], "consumed", "{v}");
    // Zero cost, no record: released.
    reserve(&env, "s3", "openai/gpt-4o-mini", 50_000, 1_100).await;
    let (_, v) = signed(
        &env,
        &alice_signer(),
        "k_alice",
        "POST",
        "/v1/reservations/s3/settle",
        Some(&json!({"actual_micros": 0, "actual_tokens": 0})),
    )
    .await;
    assert_eq!(v["state"], "released", "{v}");
    // Another key cannot settle it.
    let (s, _) = signed(
        &env,
        &legal_signer(),
        "k_legal",
        "POST",
        "/v1/reservations/s1/settle",
        Some(&body),
    )
    .await;
    assert_eq!(s, 404);
    // Lapse: an unsettled hold stops counting once its ttl has passed on the
    // collector's clock (moved forward: no sleeping).
    let left = 1_000_000 - 2_100 - 210;
    let (s, v) = signed(&env, &alice_signer(), "k_alice", "POST", "/v1/reservations", Some(&json!({"reservation_id": "s4", "model": "openai/gpt-4o-mini", "amount_micros": left, "amount_tokens": 1, "ttl_ms": 60_000}))).await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = reserve(&env, "s5", "openai/gpt-4o-mini", 1, 1).await;
    assert_eq!(s, 402);
    env.handle
        .state()
        .db
        .clock()
        .advance(Duration::from_millis(59_000));
    let (s, _) = reserve(&env, "s5b", "openai/gpt-4o-mini", 1, 1).await;
    assert_eq!(s, 402, "still held 59 s in");
    env.handle
        .state()
        .db
        .clock()
        .advance(Duration::from_millis(1_500));
    let (s, v) = reserve(&env, "s6", "openai/gpt-4o-mini", left, 1).await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = signed(
        &env,
        &alice_signer(),
        "k_alice",
        "POST",
        "/v1/reservations/s4/settle",
        Some(&json!({"actual_micros": 5, "actual_tokens": 1})),
    )
    .await;
    assert_eq!(v["state"], "lapsed", "{v}");
    env.handle.shutdown().await;
}

async fn soft_alerts_and_tree_check(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let mut doc = org_doc();
    doc["members"][0]["budgets"] =
        json!([{"metric": "tokens", "period": "month", "limit": 10000, "enforcement": "soft"}]);
    apply(&env, &doc).await;
    // 6 000 of 10 000 tokens: the 50% alert fires once.
    let (s, v) = reserve(&env, "a1", "openai/gpt-4o-mini", 100, 6_000).await;
    assert_eq!(s, 201, "{v}");
    let w = v["warnings"].as_array().unwrap();
    assert!(
        w.len() == 1
            && w[0].as_str().unwrap().contains("reached 50%")
            && w[0].as_str().unwrap().contains("user:alice"),
        "{v}"
    );
    let (_, v) = reserve(&env, "a2", "openai/gpt-4o-mini", 100, 100).await;
    assert_eq!(v["warnings"], json!([]), "{v}");
    // Soft: over the limit is allowed, 80 and 100 fire (once).
    let (s, v) = reserve(&env, "a3", "openai/gpt-4o-mini", 100, 5_000).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2, "{v}");
    // Ingest also raises alerts (here none left to raise).
    env.ingest(&[sign(&alice_record(1_000, 100), &alice_signer())])
        .await;
    let (_, alerts) = env.get("/v1/admin/alerts?org_id=acme", Some(ADMIN)).await;
    let th: Vec<i64> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["threshold"].as_i64().unwrap())
        .collect();
    assert_eq!(th, vec![100, 80, 50], "{alerts}");
    // Records naming units outside the org tree are refused.
    let (_, v) = env
        .ingest(&[sign(
            &record(&Spec {
                key: "k_alice",
                user: "alice",
                ts: unix_ms_now(),
                ..Spec::default()
            }),
            &alice_signer(),
        )])
        .await;
    assert_eq!(ids(&v, "accepted").len(), 1, "{v}");
    let mut r = record(&Spec {
        key: "k_legal",
        dept: "legal",
        user: "mallory",
        ts: unix_ms_now(),
        ..Spec::default()
    });
    let (_, v) = env.ingest(&[sign(&r, &legal_signer())]).await;
    assert!(
        v["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("user `mallory` is not in org `acme`"),
        "{v}"
    );
    r = record(&Spec {
        key: "k_legal",
        dept: "legal",
        user: "alice",
        ts: unix_ms_now(),
        ..Spec::default()
    });
    let (_, v) = env.ingest(&[sign(&r, &legal_signer())]).await;
    assert!(
        v["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("user `alice` is in department `eng`, not `legal`"),
        "{v}"
    );
    r = record(&Spec {
        key: "k_legal",
        dept: "legal",
        user: "carol",
        ts: unix_ms_now(),
        ..Spec::default()
    });
    r.project = Some("moonshot".into());
    let (_, v) = env.ingest(&[sign(&r, &legal_signer())]).await;
    assert!(
        v["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("project `moonshot`"),
        "{v}"
    );
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
        import_is_idempotent,
        inheritance_and_permissions,
        budget_refusal,
        reservation_race,
        settle_ingest_lapse,
        soft_alerts_and_tree_check
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_database_race() {
        let dir = tempfile::tempdir().unwrap();
        super::shared_database_race(format!(
            "sqlite://{}",
            dir.path().join("shared.db").display()
        ))
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_accounts() {
    let Some(pg) = Pg::start() else { return };
    macro_rules! run {
        ($($name:ident),*) => {$(
            eprintln!("postgres: {}", stringify!($name));
            $name(Some(pg.new_db().await)).await;
        )*};
    }
    run!(
        import_is_idempotent,
        inheritance_and_permissions,
        budget_refusal,
        reservation_race,
        settle_ingest_lapse,
        soft_alerts_and_tree_check
    );
    eprintln!("postgres: shared_database_race");
    shared_database_race(pg.new_db().await).await;
}
