//! The `routing_quality` report (issue 20), on SQLite and PostgreSQL: an org's `auto`
//! calls (two departments, one project), the learner's log of them (`route_features`),
//! feedback on some, promoted weights versions and learning runs written as the
//! collector writes them; the report's figures are checked exactly (strong and explored
//! shares, mean scores per tier and per tier and model, savings against the reference
//! model, the versions newest first with the active one, the last run), over the
//! rollups and over the raw records, per org and per project, as JSON and CSV. A
//! department read token sees only its department's calls and no weights history; an
//! org-wide token sees its own org's history only.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use gaterouter_collector::db::Param;
use serde_json::{Value, json};

/// Seed acme: eng (k_eng) calls r1 light, r2 heavy (both in project `support`), r3
/// light, r4 explicit; sales (k_sales) calls r5 heavy, r6 light. Feedback: r1 1.0 and
/// 0.5 (mean 0.75), r2 0.9, r3 0.4, r5 0.8, r4 0.1 (not an auto call). The learner
/// logged r1, r2 (explored), r3, r5 (explored). Weights v1 (retired) then v2 (active),
/// three runs, the last not promoted; another org, globex, has a version too.
async fn seed(env: &Env) {
    let (eng, sales) = env.seed_org().await;
    env.admin_ok(
        "/v1/admin/projects",
        json!({"id": "support", "org_id": "acme", "department_id": "eng", "name": "Support bot"}),
    )
    .await;
    let big = 35_000;
    let eng_spec = |ts, tier: Option<&'static str>| Spec {
        ts,
        tier,
        model: if tier == Some("light") {
            "gpt-4o-mini"
        } else {
            "gpt-4o"
        },
        client_cost: if tier == Some("light") { 2_100 } else { big },
        ..Spec::default()
    };
    let sales_spec = |ts, tier: Option<&'static str>| Spec {
        key: "k_sales",
        dept: "sales",
        user: "carol",
        ..eng_spec(ts, tier)
    };
    let specs = [
        (eng_spec(JAN15_1000, Some("light")), Some("support")),
        (eng_spec(JAN15_1030, Some("heavy")), Some("support")),
        (eng_spec(JAN16_1100, Some("light")), None),
        (eng_spec(JAN16_1100 + 60_000, None), None),
        (sales_spec(FEB03_0900, Some("heavy")), None),
        (sales_spec(FEB03_0930, Some("light")), None),
    ];
    let recs: Vec<_> = specs
        .iter()
        .map(|(s, p)| {
            let mut r = record(s);
            r.project = p.map(str::to_owned);
            r
        })
        .collect();
    let mut wires: Vec<String> = recs
        .iter()
        .zip(&specs)
        .map(|(r, (s, _))| sign(r, if s.key == "k_eng" { &eng } else { &sales }))
        .collect();
    for (i, score) in [(0, 1.0), (0, 0.5), (1, 0.9), (2, 0.4), (3, 0.1)] {
        wires.push(feedback("k_eng", &recs[i].id, score, &eng, |_| {}).1);
    }
    wires.push(feedback("k_sales", &recs[4].id, 0.8, &sales, |_| {}).1);
    let (_, v) = env.ingest(&wires).await;
    assert_eq!(ids(&v, "accepted").len(), 12, "{v}");

    let db = &env.handle.state().db;
    let t = |s: &str| Param::Text(s.to_owned());
    for (i, explored) in [(0, 0), (1, 1), (2, 0), (4, 1)] {
        let r = &recs[i];
        let tier = r.route.as_ref().unwrap().tier.clone().unwrap();
        db.exec(
            "INSERT INTO route_features (org, record_id, ts_start, project, tier, model, strong, propensity_ppm, explored, weights, features)
             VALUES ('acme', $1, $2, $3, $4, $5, $6, 500000, $7, 'v1', '{}')",
            &[
                t(&r.id.0),
                Param::I64(r.ts_start as i64),
                Param::OptText(r.project.clone()),
                t(&tier),
                t(&format!("openai/{}", r.model)),
                Param::I64(i64::from(tier == "heavy")),
                Param::I64(explored),
            ],
            "test: route features",
        )
        .await
        .unwrap();
    }
    for (org, version, created, active, new_apgr) in [
        ("acme", "v1", 1_000, 0, 0.5),
        ("acme", "v2", 2_000, 1, 0.62),
        ("globex", "g1", 1_500, 1, 0.4),
    ] {
        let report = json!({"outcomes": 40, "strong_outcomes": 20, "new_apgr": new_apgr, "current_apgr": 0.3,
            "length_apgr": 0.25, "quality_weak": 0.6, "quality_strong": 0.8, "promote": true,
            "reason": format!("{version} beats the current weights"), "previous_version": null});
        db.exec(
            "INSERT INTO routing_weights (org, version, created_ms, weights_json, signature, public_key, report, active) VALUES ($1, $2, $3, '{}', 'sig', 'pk', $4, $5)",
            &[t(org), t(version), Param::I64(created), t(&report.to_string()), Param::I64(active)],
            "test: routing weights",
        )
        .await
        .unwrap();
    }
    for (at, promoted, version, reason) in [
        (1_000, 1, Some("v1"), "v1 beats the current weights"),
        (3_000, 0, None, "not better than the current weights"),
        (2_000, 1, Some("v2"), "v2 beats the current weights"),
    ] {
        db.exec(
            "INSERT INTO routing_learn_runs (org, at_ms, outcomes, promoted, version, report) VALUES ('acme', $1, 40, $2, $3, $4)",
            &[
                Param::I64(at),
                Param::I64(promoted),
                Param::OptText(version.map(str::to_owned)),
                t(&json!({"promote": promoted == 1, "reason": reason}).to_string()),
            ],
            "test: learning runs",
        )
        .await
        .unwrap();
    }
}

async fn read_token(env: &Env, department: Option<&str>) -> String {
    let mut body = json!({"role": "read", "org_id": "acme"});
    if let Some(d) = department {
        body["department_id"] = json!(d);
    }
    let (s, v) = env.post("/v1/admin/tokens", Some(ADMIN), &body).await;
    assert!(s == 200 || s == 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

async fn report(env: &Env, query: &str, token: &str) -> Value {
    let (s, v) = env
        .get(
            &format!("/v1/analytics/routing_quality{query}"),
            Some(token),
        )
        .await;
    assert_eq!(s, 200, "{query}: {v}");
    v
}

/// The figures of one row, by column name.
fn pick(row: &Value, cols: &[&str]) -> Vec<Value> {
    cols.iter().map(|c| row[*c].clone()).collect()
}

const FIGURES: &[&str] = &[
    "auto_calls",
    "strong_calls",
    "strong_share",
    "learning_calls",
    "explored_calls",
    "explored_share",
    "shadow_calls",
    "rated_calls",
    "mean_score",
    "light_rated_calls",
    "light_mean_score",
    "standard_rated_calls",
    "standard_mean_score",
    "heavy_rated_calls",
    "heavy_mean_score",
    "spend_micros",
    "baseline_micros",
    "savings_micros",
    "savings_share",
];

async fn quality(db: Option<String>) {
    let env = Env::start(db, |_| {}).await;
    seed(&env).await;

    // Admin, whole range (monthly rollups): r1, r2, r3, r5, r6 are the auto calls.
    let v = report(&env, "", ADMIN).await;
    assert_eq!(v["by"], "org");
    assert_eq!(v["strongest_model"], "openai/gpt-4o");
    assert_eq!(v["rows"].as_array().unwrap().len(), 1, "{v}");
    let row = &v["rows"][0];
    assert_eq!(
        (&row["org"], &row["name"]),
        (&json!("acme"), &json!("Acme"))
    );
    // Spend: 3 light calls at $0.0021, 2 heavy at $0.035; baseline 5 x $0.035.
    assert_eq!(
        pick(row, FIGURES),
        pick(
            &json!({"auto_calls": 5, "strong_calls": 2, "strong_share": 0.4, "learning_calls": 4,
                "explored_calls": 2, "explored_share": 0.5, "shadow_calls": 0, "rated_calls": 4, "mean_score": 0.7125,
                "light_rated_calls": 2, "light_mean_score": 0.575, "standard_rated_calls": 0,
                "standard_mean_score": null, "heavy_rated_calls": 2, "heavy_mean_score": 0.85,
                "spend_micros": 76_300, "baseline_micros": 175_000, "savings_micros": 98_700,
                "savings_share": 0.564}),
            FIGURES
        ),
        "{v}"
    );
    assert_eq!(
        v["by_tier_model"],
        json!([
            {"org": "acme", "tier": "heavy", "model": "openai/gpt-4o", "calls": 2, "spend_micros": 70_000, "rated_calls": 2, "mean_score": 0.85},
            {"org": "acme", "tier": "light", "model": "openai/gpt-4o-mini", "calls": 3, "spend_micros": 6_300, "rated_calls": 2, "mean_score": 0.575},
        ])
    );
    // The weights history of every learning org, versions newest first.
    let w = v["weights"].as_array().unwrap();
    assert_eq!(
        w.iter().map(|o| o["org"].clone()).collect::<Vec<_>>(),
        [json!("acme"), json!("globex")]
    );
    let acme = &w[0];
    assert_eq!(acme["name"], "Acme");
    assert_eq!(acme["active_version"], "v2");
    let versions: Vec<_> = acme["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            pick(
                x,
                &[
                    "version",
                    "created_ms",
                    "active",
                    "new_apgr",
                    "current_apgr",
                    "length_apgr",
                ],
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            vec![
                json!("v2"),
                json!(2_000),
                json!(true),
                json!(0.62),
                json!(0.3),
                json!(0.25)
            ],
            vec![
                json!("v1"),
                json!(1_000),
                json!(false),
                json!(0.5),
                json!(0.3),
                json!(0.25)
            ],
        ]
    );
    assert_eq!(
        acme["versions"][0]["reason"],
        "v2 beats the current weights"
    );
    assert_eq!(
        acme["last_run"],
        json!({"at_ms": 3_000, "outcomes": 40, "promoted": false, "version": null, "reason": "not better than the current weights"})
    );
    assert_eq!(w[1]["active_version"], "g1");
    assert_eq!(w[1]["last_run"], Value::Null);

    // The same as CSV (the rows; the JSON extras are not in it).
    let (s, csv) = env
        .get_text("/v1/analytics/routing_quality?format=csv", Some(ADMIN))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        csv,
        format!(
            "org,name,{}\r\nacme,Acme,5,2,0.4,4,2,0.5,0,4,0.7125,2,0.575,0,,2,0.85,76300,175000,98700,0.564\r\n",
            FIGURES.join(",")
        )
    );

    // February only (monthly rollups): r5 heavy (explored, rated 0.8), r6 light.
    let v = report(&env, "?from=2026-02-01", ADMIN).await;
    assert_eq!(
        pick(&v["rows"][0], FIGURES),
        vec![
            json!(2),
            json!(1),
            json!(0.5),
            json!(1),
            json!(1),
            json!(1.0),
            json!(0),
            json!(1),
            json!(0.8),
            json!(0),
            Value::Null,
            json!(0),
            Value::Null,
            json!(1),
            json!(0.8),
            json!(37_100),
            json!(70_000),
            json!(32_900),
            json!(0.47),
        ],
        "{v}"
    );
    // A range not on whole hours (raw records): r2 heavy (explored) and r3 light.
    let v = report(&env, "?from=2026-01-15T10:15:00Z&to=2026-02-01", ADMIN).await;
    assert_eq!(
        pick(
            &v["rows"][0],
            &[
                "auto_calls",
                "strong_share",
                "learning_calls",
                "explored_share",
                "light_mean_score",
                "heavy_mean_score",
                "savings_micros"
            ]
        ),
        vec![
            json!(2),
            json!(0.5),
            json!(2),
            json!(0.5),
            json!(0.4),
            json!(0.9),
            json!(32_900)
        ],
        "{v}"
    );

    // Per project: the support bot's r1 and r2, and the calls without a project.
    let v = report(&env, "?by=project", ADMIN).await;
    let rows: Vec<_> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            pick(
                r,
                &[
                    "org",
                    "project",
                    "name",
                    "auto_calls",
                    "strong_share",
                    "explored_share",
                    "light_mean_score",
                    "heavy_mean_score",
                ],
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            vec![
                json!("acme"),
                Value::Null,
                Value::Null,
                json!(3),
                json!(0.333333),
                json!(0.5),
                json!(0.4),
                json!(0.8)
            ],
            vec![
                json!("acme"),
                json!("support"),
                json!("Support bot"),
                json!(2),
                json!(0.5),
                json!(0.5),
                json!(0.75),
                json!(0.9)
            ],
        ],
        "{v}"
    );
    assert_eq!(v["by_tier_model"][0]["project"], Value::Null);
    // Filters: on the learner's own columns (project) and through its records (member).
    for (q, calls, learning, explored) in [("?project=support", 2, 2, 1), ("?user=carol", 2, 1, 1)]
    {
        let v = report(&env, q, ADMIN).await;
        assert_eq!(
            pick(
                &v["rows"][0],
                &["auto_calls", "learning_calls", "explored_calls"]
            ),
            vec![json!(calls), json!(learning), json!(explored)],
            "{q}: {v}"
        );
    }
    let (s, e) = env
        .get("/v1/analytics/routing_quality?by=department", Some(ADMIN))
        .await;
    assert_eq!(s, 400, "{e}");

    // A department token: its department's calls only, and no weights history.
    let eng = read_token(&env, Some("eng")).await;
    let v = report(&env, "", &eng).await;
    assert_eq!(v["rows"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        pick(&v["rows"][0], FIGURES),
        vec![
            json!(3),
            json!(1),
            json!(0.333333),
            json!(3),
            json!(1),
            json!(0.333333),
            json!(0),
            json!(3),
            json!(0.6833),
            json!(2),
            json!(0.575),
            json!(0),
            Value::Null,
            json!(1),
            json!(0.9),
            json!(39_200),
            json!(105_000),
            json!(65_800),
            json!(0.626667),
        ],
        "{v}"
    );
    assert_eq!(
        v["by_tier_model"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| pick(r, &["tier", "calls", "rated_calls"]))
            .collect::<Vec<_>>(),
        [
            vec![json!("heavy"), json!(1), json!(1)],
            vec![json!("light"), json!(2), json!(2)]
        ]
    );
    assert!(v.get("weights").is_none(), "{v}");
    for q in ["?department=sales", "?org=globex"] {
        let (s, e) = env
            .get(&format!("/v1/analytics/routing_quality{q}"), Some(&eng))
            .await;
        assert_eq!(s, 403, "{q}: {e}");
    }
    // An org-wide token: the whole org, and its own org's weights only.
    let org = read_token(&env, None).await;
    let v = report(&env, "", &org).await;
    assert_eq!(v["rows"][0]["auto_calls"], 5);
    let w = v["weights"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{v}");
    assert_eq!(w[0]["org"], "acme");
    assert_eq!(w[0]["versions"].as_array().unwrap().len(), 2);
    env.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_quality_on_sqlite() {
    quality(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_quality_on_postgres() {
    let Some(pg) = Pg::start() else { return };
    quality(Some(pg.new_db().await)).await;
}
