//! Routing that learns, end to end (issue 20): SDK calls through the provider emulator
//! to a real collector (SQLite), feedback from the app, the collector refits the org's
//! router, signs the weights and serves them with the policy, the SDK picks them up and
//! its decisions change as expected. Also: an org that does not learn sends no features,
//! and weights signed by another key than the pinned one are refused (with a warning);
//! and per-model learning: exploration inside a tier, per-model success models learned
//! and served, the SDK then choosing the model of a tier that does each kind of request.
//! An admin's rollback (`admin routing activate --to none`) puts the SDK back on its own
//! weights at its next policy fetch, and `--to VERSION` serves the learned ones again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gaterouter::config::{Config, Identity};
use gaterouter::routing::Tier;
use gaterouter::usage::FeedbackInput;
use gaterouter::{ChatRequest, Client, Message};
use gaterouter_collector::CollectorConfig;
use serde_json::{Value, json};

const ADMIN: &str = "e2e-admin-token-learning-0123456789";

struct Env {
    _emu: gaterouter_emulator::EmulatorHandle,
    collector: gaterouter_collector::CollectorHandle,
    http: reqwest::Client,
    cfg: Config,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
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
        learn_interval_secs: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let (signer, public_key) = gaterouter::usage::signing::generate_key();
    let tree = json!({
        "org": {"id": "acme", "name": "Acme"},
        "departments": [{"id": "eng", "name": "Engineering"}],
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
    assert!(
        r.status().is_success(),
        "org-tree: {}",
        r.text().await.unwrap()
    );
    let key_file = dir.path().join("signing.key");
    std::fs::write(&key_file, signer.seed_base64().expose()).unwrap();
    let mut cfg = Config::for_emulator(&emu.base_url());
    cfg.retry.max_retries = 0;
    cfg.identity = Identity {
        api_key_id: Some("k_alice".into()),
        ..Default::default()
    };
    cfg.reporting.collector_url = Some(collector.url());
    cfg.reporting.spool_dir = Some(dir.path().join("spool"));
    cfg.reporting.signing_key_file = Some(key_file);
    cfg.reporting.batch_max_age_ms = 50;
    cfg.policy.enforce = gaterouter::config::EnforceMode::Required;
    // Pick up a changed policy (new weights) quickly.
    cfg.policy.cache_ttl_ms = Some(100);
    Env {
        _emu: emu,
        collector,
        http,
        cfg,
        _dir: dir,
    }
}

impl Env {
    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.collector.url()))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn routing(&self) -> Value {
        self.admin(reqwest::Method::GET, "/v1/admin/orgs/acme/routing", None)
            .await
    }

    /// `PUT …/routing`: the org's learning settings; returns the collector's answer.
    async fn set_routing(&self, settings: Value) -> Value {
        self.admin(
            reqwest::Method::PUT,
            "/v1/admin/orgs/acme/routing",
            Some(settings),
        )
        .await
    }

    /// `POST …/routing/learn`: the collector refits now; returns its answer.
    async fn learn(&self) -> Value {
        self.admin(
            reqwest::Method::POST,
            "/v1/admin/orgs/acme/routing/learn",
            None,
        )
        .await
    }
}

/// Two kinds of requests of the same length: "ledger" ones need the strong model,
/// "garden" ones do not.
fn prompt(hard: bool, i: usize) -> ChatRequest {
    let names = ["alpha", "beta", "gamma", "delta", "omega", "sigma"];
    let n = names[i % names.len()];
    let text = if hard {
        format!("audit the ledger of {n} unit {i}")
    } else {
        format!("water the garden of {n} home {i}")
    };
    let mut r = ChatRequest::new("auto", vec![Message::user(text)]);
    r.max_tokens = Some(16);
    r
}

/// The app's evaluator: a ledger answer is right only from the heavy tier; a garden
/// answer is right from any tier.
fn judge(hard: bool, tier: Tier) -> f64 {
    if !hard || tier == Tier::Heavy {
        1.0
    } else {
        0.0
    }
}

/// Decisions on fresh prompts (exploration and shadow sampling off) use the learned
/// weights `version`: ledger prompts go heavy, garden ones stay lighter.
fn routes_by_the_learned_weights(client: &Client, version: &str) {
    let (mut hard_heavy, mut easy_heavy) = (0, 0);
    for i in 1000..1040 {
        let hard = i % 2 == 0;
        let d = client.route(&prompt(hard, i)).unwrap();
        assert_eq!(d.weights_version.as_deref(), Some(version));
        assert!(!d.learning.as_ref().unwrap().explored && d.shadow.is_none());
        if d.tier == Some(Tier::Heavy) {
            if hard {
                hard_heavy += 1;
            } else {
                easy_heavy += 1;
            }
        }
    }
    assert!(hard_heavy >= 18, "ledger prompts go heavy: {hard_heavy}/20");
    assert!(
        easy_heavy <= 2,
        "garden prompts stay lighter: {easy_heavy}/20"
    );
}

/// Deliver every record and feedback of `client` (none refused or dead-lettered) and wait
/// until the collector holds the features of `calls` calls; returns its routing view.
async fn deliver(client: &Client, e: &Env, calls: i64) -> Value {
    let report = client.flush(Duration::from_secs(30)).await.unwrap();
    assert!(
        report.dead_letters == 0 && report.refused == 0,
        "{report:?}"
    );
    wait_features(e, calls).await
}

async fn wait_features(e: &Env, at_least: i64) -> Value {
    for _ in 0..200 {
        let v = e.routing().await;
        if v["calls_with_features"].as_i64().unwrap_or(0) >= at_least {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "features of {at_least} calls never arrived: {}",
        e.routing().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_learns_from_the_orgs_outcomes_through_the_collector() {
    let e = env().await;

    // 1. Learning off: auto records carry the weights version but no features.
    let client = Client::new(e.cfg.clone()).unwrap();
    client.refresh_policy().await.unwrap();
    let builtin = gaterouter::routing::Weights::builtin()
        .unwrap()
        .fingerprint();
    for i in 0..4 {
        let resp = client.chat(prompt(i % 2 == 0, i)).await.unwrap();
        let d = resp.route.as_ref().unwrap();
        assert_eq!(d.weights_version.as_deref(), Some(builtin.as_str()));
        assert!(d.learning.is_none());
    }
    let report = client.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(report.delivered, 4, "{report:?}");
    // (the org never set learning up: the admin view answers with no settings)
    let v = e.routing().await;
    assert_eq!(v["calls_with_features"], 0, "{v}");
    assert!(v["settings"].is_null(), "{v}");

    // 2. Learning on with 50 % exploration (so the learner sees both tiers often).
    let v = e
        .set_routing(json!({"learning": true, "explore_permille": 500}))
        .await;
    assert_eq!(v["settings"]["learning"], true, "{v}");
    let public_key = v["public_key"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(150)).await;
    client.refresh_policy().await.unwrap();

    let n = 400;
    let mut explored = 0;
    for i in 0..n {
        let hard = i % 2 == 0;
        let resp = client.chat(prompt(hard, i)).await.unwrap();
        let d = resp.route.as_ref().unwrap();
        let l = d
            .learning
            .as_ref()
            .expect("learning orgs log their decisions");
        assert!(l.propensity > 0.0 && l.propensity <= 1.0);
        explored += usize::from(l.explored);
        let tier = d.tier.unwrap();
        client
            .feedback(FeedbackInput {
                record_id: resp.usage_record_id.clone().unwrap(),
                score: judge(hard, tier),
                ..Default::default()
            })
            .unwrap();
    }
    assert!(
        (120..=280).contains(&explored),
        "about half explore: {explored}"
    );
    let v = deliver(&client, &e, n as i64).await;
    assert_eq!(v["explored_calls"], explored as i64, "{v}");

    // 3. The collector learns (on demand here; periodically in production).
    let learned = e.learn().await;
    let version = learned["promoted"]
        .as_str()
        .unwrap_or_else(|| panic!("new weights promoted: {learned}"))
        .to_owned();
    let r = &learned["report"];
    assert!(
        r["new_apgr"].as_f64().unwrap() > r["current_apgr"].as_f64().unwrap(),
        "{learned}"
    );
    let v = e.routing().await;
    assert_eq!(v["active_version"], version.as_str(), "{v}");
    assert_eq!(v["weights"][0]["version"], version.as_str(), "{v}");

    // The CLI shows it, and `route learn` asks the collector again (nothing new to learn
    // from: it keeps the weights and says why).
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gaterouter"))
            .args(args)
            .env("GATEROUTER_COLLECTOR_URL", e.collector.url())
            .env("GATEROUTER_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let shown = cli(&["admin", "routing", "show", "--org", "acme"]);
    assert!(
        shown.contains(&format!("served weights: {version}")) && shown.contains("learning on"),
        "{shown}"
    );
    let again = cli(&["route", "learn", "--org", "acme"]);
    assert!(again.contains("kept the current weights"), "{again}");
    assert_eq!(e.routing().await["active_version"], version.as_str());

    // 4. The SDK picks the signed weights up with the policy. Exploration off to see the
    //    learned decisions alone.
    let set = cli(&[
        "admin",
        "routing",
        "set",
        "--org",
        "acme",
        "--learning",
        "on",
        "--explore-permille",
        "0",
    ]);
    assert!(set.contains("learning on, exploration 0‰"), "{set}");
    tokio::time::sleep(Duration::from_millis(150)).await;
    client.refresh_policy().await.unwrap();
    routes_by_the_learned_weights(&client, &version);
    // A real call names the version in its record too (checked through explain here;
    // the record's route.weights is the same field).
    let resp = client.chat(prompt(true, 2000)).await.unwrap();
    assert_eq!(
        resp.route.as_ref().unwrap().weights_version.as_deref(),
        Some(version.as_str())
    );
    client.flush(Duration::from_secs(10)).await.unwrap();

    // A rollback: the admin serves no learned weights, the SDK routes with its own at the
    // next policy fetch; then the learned version again.
    let off = cli(&[
        "admin", "routing", "activate", "--org", "acme", "--to", "none",
    ]);
    assert!(
        off.contains("served weights: none (clients use their own)"),
        "{off}"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    client.refresh_policy().await.unwrap();
    let d = client.route(&prompt(true, 2001)).unwrap();
    assert_eq!(d.weights_version.as_deref(), Some(builtin.as_str()));
    let nope = std::process::Command::new(env!("CARGO_BIN_EXE_gaterouter"))
        .args([
            "admin", "routing", "activate", "--org", "acme", "--to", "w-nope",
        ])
        .env("GATEROUTER_COLLECTOR_URL", e.collector.url())
        .env("GATEROUTER_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&nope.stderr);
    assert!(
        !nope.status.success() && err.contains("w-nope") && err.contains("routing"),
        "{err}"
    );
    let back = cli(&[
        "admin", "routing", "activate", "--org", "acme", "--to", &version,
    ]);
    assert!(
        back.contains(&format!("served weights: {version}")),
        "{back}"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    client.refresh_policy().await.unwrap();
    routes_by_the_learned_weights(&client, &version);

    // 5. A client that pins another weights key refuses the weights, says so, and
    //    routes with its own.
    let mut pinned = e.cfg.clone();
    pinned.reporting.spool_dir = Some(e._dir.path().join("spool-other"));
    pinned.policy.weights_public_key = Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
    let other = Client::new(pinned).unwrap();
    other.refresh_policy().await.unwrap();
    let d = other.route(&prompt(true, 3000)).unwrap();
    assert_eq!(d.weights_version.as_deref(), Some(builtin.as_str()));
    let warnings = other.policy_warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&version) && w.contains("pins")),
        "{warnings:?}"
    );
    // ...and pinning the collector's real key accepts them.
    let mut pinned = e.cfg.clone();
    pinned.reporting.spool_dir = Some(e._dir.path().join("spool-ok"));
    pinned.policy.weights_public_key = Some(public_key);
    let ok = Client::new(pinned).unwrap();
    ok.refresh_policy().await.unwrap();
    let d = ok.route(&prompt(true, 3001)).unwrap();
    assert_eq!(d.weights_version.as_deref(), Some(version.as_str()));

    e.collector.shutdown().await;
}

/// Shadow sampling end to end: every plain `auto` call also goes to the other arm, both
/// answers come back (the shadow's record names the call it shadows), the app rates both,
/// the collector learns from both arms of every request, and the SDK's decisions change.
/// A stream is never shadowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_sampling_sends_both_arms_and_learns_from_both() {
    let e = env().await;
    let v = e
        .set_routing(json!({"learning": true, "explore_permille": 0, "shadow_permille": 1000}))
        .await;
    assert_eq!(v["settings"]["shadow_permille"], 1000, "{v}");
    let client = Client::new(e.cfg.clone()).unwrap();
    client.refresh_policy().await.unwrap();

    let n = 200;
    let mut rated = 0;
    for i in 0..n {
        let hard = i % 2 == 0;
        let resp = client.chat(prompt(hard, i)).await.unwrap();
        let d = resp.route.as_ref().unwrap();
        let shadow = resp
            .shadow
            .as_deref()
            .expect("every plain call is shadowed");
        let sd = shadow.route.as_ref().unwrap();
        // The other arm, named as the shadow of this call's record.
        assert_eq!(
            sd.shadow_of.as_deref(),
            resp.usage_record_id.as_deref(),
            "{sd:?}"
        );
        assert!(d.shadow.is_none() && d.shadow_of.is_none() && resp.shadow_error.is_none());
        let (t, st) = (d.tier.unwrap(), sd.tier.unwrap());
        assert_ne!(t == Tier::Heavy, st == Tier::Heavy, "{t} / {st}");
        assert_ne!(resp.model, shadow.model);
        assert!(shadow.cost.is_some() && shadow.usage_record_id.is_some());
        // No exploration, everything shadowed: both arms are always observed.
        for l in [d.learning.as_ref().unwrap(), sd.learning.as_ref().unwrap()] {
            assert!((l.propensity - 1.0).abs() < 1e-9, "{l:?}");
        }
        for (r, tier) in [(&resp, t), (shadow, st)] {
            client
                .feedback(FeedbackInput {
                    record_id: r.usage_record_id.clone().unwrap(),
                    score: judge(hard, tier),
                    ..Default::default()
                })
                .unwrap();
            rated += 1;
        }
    }
    // A stream is never shadowed: one decision, its arm's own propensity. (Delivered: the
    // 2n usage records of the calls and their shadows, their 2n feedback records, the
    // stream's record.)
    {
        use futures_util::StreamExt;
        let mut s = client.chat_stream(prompt(true, 999)).await.unwrap();
        let d = s.route().unwrap().clone();
        assert!(d.shadow.is_none(), "{d:?}");
        assert!((d.learning.as_ref().unwrap().propensity - 1.0).abs() < 1e-9);
        while let Some(c) = s.next().await {
            c.unwrap();
        }
    }
    let report = client.flush(Duration::from_secs(30)).await.unwrap();
    assert!(
        report.dead_letters == 0 && report.refused == 0 && report.delivered == 4 * n as u64 + 1,
        "{report:?}"
    );
    wait_features(&e, 2 * n as i64 + 1).await;
    // The dashboard's report counts the shadow calls (also auto calls: they were paid for).
    let q = e
        .admin(reqwest::Method::GET, "/v1/analytics/routing_quality", None)
        .await;
    let row = &q["rows"][0];
    assert_eq!(
        (&row["shadow_calls"], &row["auto_calls"]),
        (&json!(n), &json!(2 * n + 1)),
        "{q}"
    );
    // One of each call and its shadow is heavy; the stream may be too.
    let strong = row["strong_calls"].as_u64().unwrap();
    assert!(strong == n as u64 || strong == n as u64 + 1, "{q}");

    let learned = e.learn().await;
    assert_eq!(learned["report"]["outcomes"], rated, "{learned}");
    let version = learned["promoted"]
        .as_str()
        .unwrap_or_else(|| panic!("new weights promoted: {learned}"))
        .to_owned();

    // `gaterouter chat` shows the shadow's answer on stderr, with its record to rate.
    {
        let cfg_file = e._dir.path().join("shadow.toml");
        let mut cfg = e.cfg.clone();
        cfg.reporting.spool_dir = Some(e._dir.path().join("spool-cli"));
        std::fs::write(&cfg_file, toml::to_string(&cfg).unwrap()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gaterouter"))
            .args(["chat", "--model", "auto", "audit the ledger of cli unit 1"])
            .env("GATEROUTER_CONFIG", &cfg_file)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(
            !stdout.contains("shadow"),
            "stdout is the answer alone: {stdout}"
        );
        assert!(
            stderr.contains("-- shadow sampling: the other arm also answered"),
            "{stderr}"
        );
        assert_eq!(stderr.matches(" | record ").count(), 2, "{stderr}");
    }
    // A shadow that fails leaves the call's answer alone and says why on the response.
    client.refresh_policy().await.unwrap();
    let req = prompt(true, 5000);
    let planned = client.route(&req).unwrap();
    let shadow_model = planned.shadow.as_ref().expect("planned").chosen.clone();
    let (provider, model) = shadow_model.split_once('/').unwrap();
    e._emu
        .emulator()
        .queue_fault(&json!({"fault": "bad_request", "provider": provider, "model": model}))
        .unwrap();
    let resp = client.chat(req).await.unwrap();
    assert!(resp.shadow.is_none(), "{resp:?}");
    let err = resp
        .shadow_error
        .as_ref()
        .expect("the shadow's failure is on the response");
    assert!(!err.code.is_empty() && !err.message.is_empty(), "{err:?}");
    assert!(
        resp.usage_record_id.is_some() && !resp.choices.is_empty(),
        "{resp:?}"
    );
    // Shadow sampling off: the learned weights route ledger prompts heavy, garden ones not.
    e.set_routing(json!({"learning": true, "explore_permille": 0}))
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    client.refresh_policy().await.unwrap();
    routes_by_the_learned_weights(&client, &version);
    e.collector.shutdown().await;
}

/// Per-model learning: every tier offers the same two models, the first preferred by the
/// policy. The app's evaluator finds that it does garden work and not ledger work, the
/// second the reverse. With exploration inside the tier, both are observed; the collector
/// learns a success model per model, serves them with the weights, and the SDK then
/// sends ledger prompts to the second model and garden prompts to the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_learns_which_model_of_a_tier_does_which_request() {
    let (x, y) = ("openai/gpt-4.1-mini", "gemini/gemini-2.5-flash");
    let mut e = env().await;
    let both = vec![x.to_owned(), y.to_owned()];
    e.cfg.routing.light = both.clone();
    e.cfg.routing.standard = both.clone();
    e.cfg.routing.heavy = both;
    e.cfg.routing.policy = gaterouter::routing::Policy::Quality;
    e.set_routing(json!({"learning": true, "explore_permille": 500}))
        .await;
    let client = Client::new(e.cfg.clone()).unwrap();
    client.refresh_policy().await.unwrap();

    let n = 320;
    let mut by_model = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..n {
        let hard = i % 2 == 0;
        let resp = client.chat(prompt(hard, i)).await.unwrap();
        let d = resp.route.as_ref().unwrap();
        let l = d.learning.as_ref().unwrap();
        assert!(l.model_propensity > 0.0 && l.model_propensity <= 1.0);
        if l.model_explored {
            assert_eq!(d.chosen, y, "the policy's pick is x: {}", d.reason);
        }
        *by_model.entry(d.chosen.clone()).or_default() += 1;
        let right = if d.chosen == x { !hard } else { hard };
        client
            .feedback(FeedbackInput {
                record_id: resp.usage_record_id.clone().unwrap(),
                score: f64::from(u8::from(right)),
                ..Default::default()
            })
            .unwrap();
    }
    // Half explore, half of those draw y: about a quarter of the calls.
    assert!(
        (45..=120).contains(&by_model.get(y).copied().unwrap_or(0)),
        "y explored about n/4 times: {by_model:?}"
    );
    deliver(&client, &e, n as i64).await;

    let learned = e.learn().await;
    let version = learned["promoted"]
        .as_str()
        .unwrap_or_else(|| panic!("success models promoted: {learned}"))
        .to_owned();
    let kept: Vec<&str> = learned["report"]["models"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kept"] == true)
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [y, x], "{learned}");

    // Exploration off: decisions by the served success models alone.
    e.set_routing(json!({"learning": true, "explore_permille": 0}))
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    client.refresh_policy().await.unwrap();
    for i in 5000..5020 {
        let hard = i % 2 == 0;
        let d = client.route(&prompt(hard, i)).unwrap();
        assert_eq!(d.weights_version.as_deref(), Some(version.as_str()));
        let want = if hard { y } else { x };
        assert_eq!(d.chosen, want, "{}", d.reason);
        assert!(d.candidates[0].predicted_success.is_some(), "{d:?}");
        if hard {
            assert!(d.reason.contains("predicted success"), "{}", d.reason);
        }
    }
    client.shutdown().await.unwrap();
    e.collector.shutdown().await;
}
