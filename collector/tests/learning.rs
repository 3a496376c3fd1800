//! Routing that learns, the collector's side (issue 20), on SQLite and PostgreSQL:
//! settings served with the policy, learning features stored from signed records, a
//! learning run (periodic on SQLite, on demand on PostgreSQL) that promotes and signs
//! weights which the policy then serves and which verify; malformed features refused
//! with the field named; an org that never turned learning on gets no `routing`; a
//! project with enough rated calls of its own gets weights of its own (its signal is the
//! opposite of the org's), served to its keys while the org's keys keep the org's; and
//! per-model learning: calls explored among a tier's models, each with its model's
//! propensity, give served weights whose success models rank the models per request.
//! An admin can serve an earlier version again, or none (a rollback), per org or project.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use gaterouter::accounts::RoutingPolicy;
use gaterouter::routing::Weights;
use gaterouter::routing::learning::features_of;
use gaterouter::routing::lexical::Hashing;
use gaterouter::usage::{RouteFeatures, UsageSigner};
use gaterouter::{ChatRequest, Message};
use serde_json::{Value, json};

async fn put_routing(env: &Env, body: Value) -> (u16, Value) {
    let r = env
        .http
        .put(format!("{}/v1/admin/orgs/acme/routing", env.base))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn policy_routing(env: &Env, eng: &UsageSigner) -> Option<RoutingPolicy> {
    policy_routing_of(env, eng, "k_eng").await
}

async fn policy_routing_of(env: &Env, signer: &UsageSigner, key: &str) -> Option<RoutingPolicy> {
    let (s, v) = signed(env, signer, key, "GET", "/v1/policy", None).await;
    assert_eq!(s, 200, "{v}");
    serde_json::from_value(v["routing"].clone()).ok()
}

/// One `auto` call of a learning org, as an SDK records it: ledger prompts need the
/// heavy tier (score 1 there, 0 elsewhere), garden prompts do not (1 everywhere).
fn call(i: usize, h: Hashing, eng: &UsageSigner) -> (String, String) {
    call_in(i, h, eng, "k_eng", false)
}

/// [`call`], made with `key`; `inverted`: the opposite signal (garden prompts need the
/// heavy tier, ledger prompts do not). The record names no project: the collector fills it
/// from the key's binding, as for an SDK that takes its identity from its key.
fn call_in(
    i: usize,
    h: Hashing,
    signer: &UsageSigner,
    key: &'static str,
    inverted: bool,
) -> (String, String) {
    let ledger = i % 2 == 0;
    let hard = ledger != inverted;
    let strong = (i / 2) % 2 == 0; // both arms for both kinds, propensity 0.5
    let text = if ledger {
        format!("audit the ledger of unit {i}")
    } else {
        format!("water the garden of home {i}")
    };
    let req = ChatRequest::new("auto", vec![Message::user(text)]);
    let mut rec = record(&Spec {
        key,
        tier: Some(if strong { "heavy" } else { "light" }),
        ts: gaterouter::usage::unix_ms_now() - 60_000,
        ..Spec::default()
    });
    let route = rec.route.as_mut().unwrap();
    route.weights = Some("0123456789abcdef".into());
    route.propensity_ppm = Some(500_000);
    route.explored = Some(i % 3 == 0);
    route.features = Some(features_of(&req, h));
    let score = if !hard || strong { 1.0 } else { 0.0 };
    let (_, fb) = feedback(key, &rec.id, score, signer, |_| {});
    (sign(&rec, signer), fb)
}

async fn learns(env: &Env, periodic: bool) {
    let (eng, _) = env.seed_org().await;
    // Never set up: no routing section, and the admin view says so.
    assert!(policy_routing(env, &eng).await.is_none());
    let (s, v) = put_routing(env, json!({"learning": true, "explore_permille": 600})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("explore_permille"), "{v}");
    let (s, v) = put_routing(env, json!({"learning": true, "explore": 0.1})).await;
    assert_eq!(s, 400, "unknown field refused: {v}");
    let (s, v) = put_routing(env, json!({"learning": true, "explore_permille": 100})).await;
    assert_eq!(s, 200, "{v}");
    let rp = policy_routing(env, &eng).await.expect("routing served");
    assert!(rp.learning && rp.explore_permille == 100 && rp.weights.is_none());
    rp.validate().unwrap();
    let h = Hashing {
        bits: rp.bits,
        salt: rp.salt_u64().unwrap(),
    };
    // The salt stays when settings change (learned weights depend on it).
    put_routing(env, json!({"learning": true, "explore_permille": 50})).await;
    assert_eq!(policy_routing(env, &eng).await.unwrap().salt, rp.salt);

    // Malformed features: refused, naming the field.
    let mut bad = record(&Spec {
        tier: Some("light"),
        ts: gaterouter::usage::unix_ms_now() - 60_000,
        ..Spec::default()
    });
    bad.route.as_mut().unwrap().features = Some(RouteFeatures {
        bits: 14,
        structural: vec![],
        terms: vec![[5, 1], [3, 1]],
    });
    bad.route.as_mut().unwrap().propensity_ppm = Some(500_000);
    let (s, v) = env.ingest(&[sign(&bad, &eng)]).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["rejected"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("route.features.terms"),
        "{v}"
    );

    let n = 360;
    let (wires, fbs): (Vec<String>, Vec<String>) = (0..n).map(|i| call(i, h, &eng)).unzip();
    for chunk in wires.chunks(90) {
        let (s, v) = env.ingest(chunk).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["accepted"].as_array().unwrap().len(), chunk.len(), "{v}");
    }
    for chunk in fbs.chunks(90) {
        let (s, v) = env.ingest(chunk).await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, v) = env.get("/v1/admin/orgs/acme/routing", Some(ADMIN)).await;
    assert_eq!(v["calls_with_features"], n as i64, "{v}");
    assert_eq!(v["explored_calls"], (n / 3) as i64, "{v}");

    let version = if periodic {
        // learn_interval_secs = 1: the collector's own loop learns.
        let mut active = Value::Null;
        for _ in 0..100 {
            let (_, v) = env.get("/v1/admin/orgs/acme/routing", Some(ADMIN)).await;
            active = v["active_version"].clone();
            if active.is_string() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        active
            .as_str()
            .expect("the periodic run promoted")
            .to_owned()
    } else {
        let (s, v) = env
            .post("/v1/admin/orgs/acme/routing/learn", Some(ADMIN), &json!({}))
            .await;
        assert_eq!(s, 200, "{v}");
        v["promoted"]
            .as_str()
            .unwrap_or_else(|| panic!("promoted: {v}"))
            .to_owned()
    };
    let (_, v) = env.get("/v1/admin/orgs/acme/routing", Some(ADMIN)).await;
    assert_eq!(v["weights"][0]["version"], version.as_str(), "{v}");
    assert_eq!(v["weights"][0]["active"], true, "{v}");
    let r = &v["weights"][0]["report"];
    assert!(
        r["new_apgr"].as_f64().unwrap() > r["length_apgr"].as_f64().unwrap(),
        "{v}"
    );
    assert!(!v["runs"].as_array().unwrap().is_empty(), "{v}");

    // Served with the policy, signed by the collector's key, with the org's salt.
    let rp = policy_routing(env, &eng).await.unwrap();
    let sw = rp.weights.expect("weights served");
    assert_eq!(sw.version, version);
    sw.verify("acme", None).unwrap();
    sw.verify("acme", v["public_key"].as_str()).unwrap();
    assert!(sw.verify("other-org", None).is_err(), "bound to the org");
    let w = Weights::from_json(&sw.weights_json).unwrap();
    assert_eq!(w.fingerprint(), version);
    assert_eq!(w.lexical.as_ref().unwrap().salt, h.salt);
    let mut tampered = sw.clone();
    tampered.weights_json = tampered.weights_json.replace("\"bias\"", "\"bias\" ");
    assert!(tampered.verify("acme", None).is_err());

    project_weights(env, &eng, h, &version).await;
    if !periodic {
        // (With the periodic loop running every second, a run could promote again
        // between a rollback and the check of it.)
        rollback(env, &eng).await;
    }

    // Learning off: still served (the weights), no exploration, no features asked.
    put_routing(env, json!({"learning": false})).await;
    let rp = policy_routing(env, &eng).await.unwrap();
    assert!(!rp.learning && rp.weights.is_some());
}

/// Project `atlas` (its key `k_atlas` makes the calls; their records name no project, the
/// collector attributes them) rates 360 calls with the opposite signal: a run refits
/// it apart, its keys are served its weights, which score the other way round, and the
/// org's keys keep the org's weights.
async fn project_weights(env: &Env, eng: &UsageSigner, h: Hashing, org_version: &str) {
    env.admin_ok(
        "/v1/admin/projects",
        json!({"id": "atlas", "org_id": "acme", "department_id": "eng"}),
    )
    .await;
    let atlas = signer(3);
    env.admin_ok("/v1/admin/keys", json!({"id": "k_atlas", "org_id": "acme", "department_id": "eng", "project_id": "atlas", "public_key": atlas.public_key()})).await;
    // Before its own weights: the org's.
    let rp = policy_routing_of(env, &atlas, "k_atlas").await.unwrap();
    assert_eq!(rp.weights.unwrap().version, org_version);

    let (wires, fbs): (Vec<String>, Vec<String>) = (1000..1360)
        .map(|i| call_in(i, h, &atlas, "k_atlas", true))
        .unzip();
    for chunk in wires.chunks(90).chain(fbs.chunks(90)) {
        let (s, v) = env.ingest(chunk).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["rejected"].as_array().is_none_or(Vec::is_empty), "{v}");
    }
    let (s, v) = env
        .post("/v1/admin/orgs/acme/routing/learn", Some(ADMIN), &json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["projects"][0]["project"], "atlas", "{v}");
    // The periodic loop may have promoted atlas first: read what is served.
    let (_, d) = env.get("/v1/admin/orgs/acme/routing", Some(ADMIN)).await;
    let project_version = d["project_versions"]["atlas"]
        .as_str()
        .unwrap_or_else(|| panic!("atlas promoted: {v} {d}"))
        .to_owned();
    let org_now = d["active_version"].as_str().unwrap().to_owned();
    assert_ne!(project_version, org_now, "{d}");
    assert!(
        d["weights"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["version"] == project_version.as_str() && w["project"] == "atlas"),
        "{d}"
    );

    // The dashboard's report names the same served versions.
    let (s, q) = env
        .get("/v1/analytics/routing_quality?org=acme", Some(ADMIN))
        .await;
    assert_eq!(s, 200, "{q}");
    let w = q["weights"]
        .as_array()
        .and_then(|a| a.iter().find(|w| w["org"] == "acme"))
        .unwrap_or_else(|| panic!("acme's weights in {q}"));
    assert_eq!(w["active_version"], org_now.as_str(), "{w}");
    assert_eq!(
        w["project_versions"]["atlas"],
        project_version.as_str(),
        "{w}"
    );

    let served = policy_routing_of(env, &atlas, "k_atlas")
        .await
        .unwrap()
        .weights
        .unwrap();
    assert_eq!(served.version, project_version);
    served.verify("acme", d["public_key"].as_str()).unwrap();
    let org_served = policy_routing(env, eng).await.unwrap().weights.unwrap();
    assert_eq!(org_served.version, org_now);

    let score = |w: &Weights, text: &str| {
        gaterouter::routing::Scorer::new(w.clone())
            .score(&ChatRequest::new("auto", vec![Message::user(text)]))
            .score
    };
    let pw = Weights::from_json(&served.weights_json).unwrap();
    let ow = Weights::from_json(&org_served.weights_json).unwrap();
    let (ledger, garden) = (
        "audit the ledger of unit 7777",
        "water the garden of home 7777",
    );
    assert!(
        score(&pw, garden) > score(&pw, ledger),
        "the project's signal"
    );
    // The org's refit reads all its calls (atlas's too, where the signal cancels out), so
    // it may have kept or replaced its weights; the first ones carry the org's signal.
    if org_now == org_version {
        assert!(score(&ow, ledger) > score(&ow, garden), "the org's signal");
    }
}

/// `POST …/routing/activate`: the org's weights off (its keys route with their own), a
/// project's off (its keys get the org's), earlier versions served again and still
/// verifying; a version of another scope, an unknown one, a body without `version` or
/// with an unknown field refused, naming what to fix, and changing nothing.
async fn rollback(env: &Env, eng: &UsageSigner) {
    let (_, d) = env.get("/v1/admin/orgs/acme/routing", Some(ADMIN)).await;
    let org_now = d["active_version"].as_str().unwrap().to_owned();
    let atlas_now = d["project_versions"]["atlas"].as_str().unwrap().to_owned();
    let atlas = signer(3);
    let served = |env, signer, key| async move {
        policy_routing_of(env, signer, key)
            .await
            .and_then(|r| r.weights)
            .map(|w| w.version)
    };
    let activate = |body: Value| async move {
        env.post("/v1/admin/orgs/acme/routing/activate", Some(ADMIN), &body)
            .await
    };

    let (s, v) = activate(json!({"version": "w-nope"})).await;
    assert_eq!(s, 404, "{v}");
    let msg = v.to_string();
    assert!(
        msg.contains("version") && msg.contains("GET /v1/admin/orgs/acme/routing"),
        "{v}"
    );
    let (s, v) = activate(json!({"version": atlas_now})).await;
    assert_eq!(s, 404, "atlas's version is not the org's: {v}");
    let (s, v) = activate(json!({"version": org_now, "project": "atlas"})).await;
    assert_eq!(s, 404, "the org's version is not atlas's: {v}");
    let (s, v) = activate(json!({})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("version"), "{v}");
    let (s, v) = activate(json!({"version": null, "projekt": "atlas"})).await;
    assert_eq!(s, 400, "unknown field refused: {v}");
    let (s, v) = activate(json!({"version": null, "project": "atlsa"})).await;
    assert_eq!(s, 404, "{v}");
    assert!(v.to_string().contains("project: `atlsa`"), "{v}");
    assert_eq!(served(env, eng, "k_eng").await.as_deref(), Some(&*org_now));

    // The org's weights off: its keys route with their own; atlas keeps its weights.
    let (s, v) = activate(json!({"version": null})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["active_version"].is_null(), "{v}");
    assert_eq!(v["project_versions"]["atlas"], atlas_now.as_str(), "{v}");
    let rp = policy_routing(env, eng).await.expect("learning still on");
    assert!(rp.learning && rp.weights.is_none(), "{rp:?}");
    assert_eq!(
        served(env, &atlas, "k_atlas").await.as_deref(),
        Some(&*atlas_now)
    );
    // Atlas's off too: its keys get the org's, none now.
    let (s, v) = activate(json!({"version": null, "project": "atlas"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(served(env, &atlas, "k_atlas").await, None);

    // Both back: the same signed versions, still verifying.
    let (s, v) = activate(json!({"version": org_now})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["active_version"], org_now.as_str(), "{v}");
    let (s, _) = activate(json!({"version": atlas_now, "project": "atlas"})).await;
    assert_eq!(s, 200);
    let w = policy_routing(env, eng).await.unwrap().weights.unwrap();
    assert_eq!(w.version, org_now);
    w.verify("acme", v["public_key"].as_str()).unwrap();
    assert_eq!(
        served(env, &atlas, "k_atlas").await.as_deref(),
        Some(&*atlas_now)
    );
    // The history marks one served version per scope.
    let (_, d) = env.get("/v1/admin/orgs/acme/routing", Some(ADMIN)).await;
    let active = |project: Value| -> Vec<String> {
        d["weights"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["active"] == true && w["project"] == project)
            .map(|w| w["version"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(active(Value::Null), std::slice::from_ref(&org_now), "{d}");
    assert_eq!(
        active(json!("atlas")),
        std::slice::from_ref(&atlas_now),
        "{d}"
    );
    // Every change is audited: 4 above, none for the refused bodies.
    let (_, a) = env.get("/v1/admin/audit?limit=50", Some(ADMIN)).await;
    let changes: Vec<&Value> = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "activate_routing_weights")
        .collect();
    assert_eq!(changes.len(), 4, "{a}");
    assert_eq!(changes[0]["target"], "org:acme/project:atlas", "{a}");
    assert_eq!(changes[0]["detail"]["version"], atlas_now.as_str(), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_on_sqlite_on_demand_and_rollback() {
    let env = Env::start(None, |c| c.learn_interval_secs = 0).await;
    learns(&env, false).await;
    env.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_on_sqlite_with_the_periodic_run() {
    let env = Env::start(None, |c| c.learn_interval_secs = 1).await;
    learns(&env, true).await;
    env.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_on_postgres_on_demand() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.new_db().await;
    let env = Env::start(Some(url), |c| c.learn_interval_secs = 0).await;
    learns(&env, false).await;
    env.handle.shutdown().await;
}

/// One `auto` call of the standard tier explored among three models: the tier's policy
/// picks `gpt-4o-mini` (logged propensity 0.8), exploration the others (0.1 each).
/// `gpt-4o-mini` does ledger work and not garden work; `gpt-4.1-nano` the reverse;
/// `o4-mini` half of each.
fn model_call(i: usize, h: Hashing, signer: &UsageSigner) -> (String, String) {
    let ledger = i % 2 == 0;
    // Each kind of prompt meets every model (i / 2 runs through all residues).
    let (model, ppm) = match (i / 2 * 3) % 10 {
        8 => ("gpt-4.1-nano", 100_000),
        9 => ("o4-mini", 100_000),
        _ => ("gpt-4o-mini", 800_000),
    };
    let text = if ledger {
        format!("audit the ledger of unit {i}")
    } else {
        format!("water the garden of home {i}")
    };
    let req = ChatRequest::new("auto", vec![Message::user(text)]);
    let mut rec = record(&Spec {
        tier: Some("standard"),
        model,
        ts: gaterouter::usage::unix_ms_now() - 60_000,
        ..Spec::default()
    });
    let route = rec.route.as_mut().unwrap();
    route.weights = Some("0123456789abcdef".into());
    route.propensity_ppm = Some(950_000);
    route.model_propensity_ppm = Some(ppm);
    route.explored = Some(false);
    route.features = Some(features_of(&req, h));
    let score = match model {
        "gpt-4o-mini" => f64::from(u8::from(ledger)),
        "gpt-4.1-nano" => f64::from(u8::from(!ledger)),
        _ => f64::from(u8::from(i % 4 < 2)),
    };
    let (_, fb) = feedback("k_eng", &rec.id, score, signer, |_| {});
    (sign(&rec, signer), fb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_model_learning_ranks_a_tiers_models_per_request() {
    let env = Env::start(None, |c| c.learn_interval_secs = 0).await;
    let (eng, _) = env.seed_org().await;
    let (s, v) = put_routing(&env, json!({"learning": true, "explore_permille": 200})).await;
    assert_eq!(s, 200, "{v}");
    let rp = policy_routing(&env, &eng).await.unwrap();
    let h = Hashing {
        bits: rp.bits,
        salt: rp.salt_u64().unwrap(),
    };
    let (wires, fbs): (Vec<String>, Vec<String>) = (0..600).map(|i| model_call(i, h, &eng)).unzip();
    for chunk in wires.chunks(100).chain(fbs.chunks(100)) {
        let (s, v) = env.ingest(chunk).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["rejected"].as_array().is_none_or(|r| r.is_empty()), "{v}");
    }
    let (s, v) = env
        .post("/v1/admin/orgs/acme/routing/learn", Some(ADMIN), &json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    // No heavy-tier outcomes: the tier weights stay, the success models are added.
    let version = v["promoted"]
        .as_str()
        .unwrap_or_else(|| panic!("promoted: {v}"))
        .to_owned();
    let models = v["report"]["models"]["models"].as_array().unwrap();
    assert_eq!(models.len(), 3, "{v}");
    assert!(
        v["report"]["reason"]
            .as_str()
            .unwrap()
            .contains("per-model success models"),
        "{v}"
    );
    let rp = policy_routing(&env, &eng).await.unwrap();
    let sw = rp.weights.expect("weights served");
    assert_eq!(sw.version, version);
    sw.verify("acme", None).unwrap();
    let w = Weights::from_json(&sw.weights_json).unwrap();
    let success = w.success.as_ref().expect("success models served");
    let (mini, nano) = ("openai/gpt-4o-mini", "openai/gpt-4.1-nano");
    assert!(
        success.models.contains_key(mini) && success.models.contains_key(nano),
        "{:?}",
        success.models.keys()
    );
    let scorer = gaterouter::routing::Scorer::new(w.clone());
    let predict = |text: &str, model: &str| {
        let req = ChatRequest::new("auto", vec![Message::user(text)]);
        let r = scorer.score(&req);
        r.success.as_ref().and_then(|s| s.of(model)).unwrap()
    };
    let (ledger, garden) = (
        "audit the ledger of unit 9001",
        "water the garden of home 9001",
    );
    assert!(
        predict(ledger, mini) > predict(ledger, nano) + 0.3,
        "{} vs {}",
        predict(ledger, mini),
        predict(ledger, nano)
    );
    assert!(
        predict(garden, nano) > predict(garden, mini) + 0.3,
        "{} vs {}",
        predict(garden, nano),
        predict(garden, mini)
    );
    // The weights history names the models the version ranks (the dashboard shows it).
    let names: Vec<&str> = success.models.keys().map(String::as_str).collect();
    let (s, q) = env
        .get("/v1/analytics/routing_quality?org=acme", Some(ADMIN))
        .await;
    assert_eq!(s, 200, "{q}");
    let shown = &q["weights"][0]["versions"][0];
    assert_eq!(shown["version"], version.as_str(), "{q}");
    assert_eq!(shown["success_models"], json!(names), "{q}");
    // A second run finds the same models: nothing new is served.
    let (_, v) = env
        .post("/v1/admin/orgs/acme/routing/learn", Some(ADMIN), &json!({}))
        .await;
    assert!(v["promoted"].is_null(), "{v}");
    env.handle.shutdown().await;
}
