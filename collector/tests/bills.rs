//! Monthly bills (`GET /v1/admin/bills`): totals reconcile to the stored records to the
//! micro-dollar (by model == by member == by department == by project == total ==
//! SUM(spend_micros) of the month's records), on the org, a department and a project,
//! in JSON and CSV; records just before and after the month are left out; budget versus
//! actual; read-token scoping; HTML escaping. SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use gaterouter::config::Identity;
use gaterouter::usage::{
    RecordId, RouteInfo, RouteMode, SdkInfo, UsageRecord, UsageRecordInput, UsageSigner,
    UsageStatus,
};
use serde_json::{Value, json};
use sqlx::Row;

type Db = Option<String>;

/// 2026-01-01T00:00:00Z and 2026-02-01T00:00:00Z.
const JAN: u64 = 1_767_225_600_000;
const FEB: u64 = 1_769_904_000_000;

fn key_signer(key: &str) -> UsageSigner {
    signer(match key {
        "k_eng" => 31,
        "k_search" => 32,
        "k_sales" => 33,
        _ => 34,
    })
}

fn org_doc() -> Value {
    let pk = |k: &str| key_signer(k).public_key().to_string();
    json!({
        "org": {"id": "acme", "name": "Acme <Corp> & Sons",
                "budgets": [{"metric": "usd", "period": "month", "limit": "100", "enforcement": "hard"},
                            {"metric": "usd", "period": "day", "limit": "50", "enforcement": "hard"}]},
        "departments": [
            {"id": "eng", "budgets": [{"metric": "usd", "period": "month", "limit": "0.05", "enforcement": "hard"},
                                      {"metric": "tokens", "period": "month", "limit": 1000000000, "enforcement": "soft"}]},
            {"id": "sales", "budgets": [{"metric": "usd", "period": "month", "limit": "10.5", "enforcement": "soft"}]},
            {"id": "ops"}
        ],
        "projects": [{"id": "search", "department": "eng", "budgets": [{"metric": "usd", "period": "month", "limit": "3", "enforcement": "hard"}]}],
        "groups": [{"id": "oncall", "department": "eng", "budgets": [{"metric": "usd", "period": "month", "limit": "7", "enforcement": "soft"}]}],
        "members": [
            {"id": "alice", "department": "eng", "groups": ["oncall"], "budgets": [{"metric": "usd", "period": "month", "limit": "2", "enforcement": "hard"}]},
            {"id": "bob", "department": "eng"},
            {"id": "carol", "department": "sales", "budgets": [{"metric": "usd", "period": "month", "limit": "1", "enforcement": "soft"}]},
            {"id": "dave", "department": "ops"}
        ],
        "keys": [
            {"id": "k_eng", "department": "eng", "public_key": pk("k_eng")},
            {"id": "k_search", "department": "eng", "project": "search", "public_key": pk("k_search")},
            {"id": "k_sales", "department": "sales", "public_key": pk("k_sales")},
            {"id": "k_ops", "department": "ops", "public_key": pk("k_ops")}
        ]
    })
}

/// One record: key, department, project, user, model, start time, tokens, client cost.
#[allow(clippy::too_many_arguments)]
fn rec(
    key: &str,
    dept: &str,
    project: Option<&str>,
    user: Option<&str>,
    model: &str,
    ts: u64,
    prompt: u64,
    completion: u64,
    cost: u64,
) -> String {
    let ident = Identity {
        org: Some("acme".into()),
        department: Some(dept.into()),
        project: project.map(Into::into),
        user: user.map(Into::into),
        api_key_id: Some(key.into()),
        ..Default::default()
    };
    let input = UsageRecordInput {
        ts_start: ts,
        ts_end: ts + 50,
        provider: "openai".into(),
        model: model.into(),
        route: Some(RouteInfo {
            mode: RouteMode::Explicit,
            tier: None,
            score: None,
            ..Default::default()
        }),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_micros: cost,
        latency_ms: 50,
        status: Some(if ts % 7 == 0 {
            UsageStatus::parse("RATE_LIMITED").unwrap()
        } else {
            UsageStatus::Ok
        }),
        attempts: 1,
        tags: BTreeMap::new(),
        ..Default::default()
    };
    let r: UsageRecord =
        UsageRecord::build(input, &ident, &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap();
    sign(&r, &key_signer(key))
}

/// Records over several departments, members, models (one the catalog does not know,
/// priced by the client at odd micro-dollar amounts), the month's first and last
/// millisecond, and the milliseconds just outside it.
fn records() -> Vec<String> {
    let who: [(&str, &str, Option<&str>, Option<&str>); 7] = [
        ("k_eng", "eng", None, Some("alice")),
        ("k_eng", "eng", None, Some("bob")),
        ("k_eng", "eng", None, None),
        ("k_search", "eng", Some("search"), Some("alice")),
        ("k_search", "eng", Some("search"), Some("bob")),
        ("k_sales", "sales", None, Some("carol")),
        ("k_ops", "ops", None, Some("dave")),
    ];
    let models = ["gpt-4o-mini", "gpt-4o", "acme-finetune-7"];
    let mut times = vec![
        JAN - 1,
        JAN,
        FEB - 1,
        FEB,
        JAN - 86_400_000,
        FEB + 3_600_000,
    ];
    for i in 0..40u64 {
        times.push(JAN + 1 + i * 66_666_667 + i * i * 13);
    }
    let mut out = Vec::new();
    for (i, ts) in times.into_iter().enumerate() {
        let (k, d, p, u) = who[i % who.len()];
        let m = models[(i / 2) % models.len()];
        let i = i as u64;
        out.push(rec(
            k,
            d,
            p,
            u,
            m,
            ts,
            1_000 + i * 37,
            100 + i * 11,
            1_234 + i * 7_919,
        ));
    }
    out
}

async fn get_ok(env: &Env, path: &str, token: &str) -> Value {
    let (s, v) = env.get(path, Some(token)).await;
    assert_eq!(s, 200, "{path}: {v}");
    v
}

/// (calls, SUM(spend_micros)) of the stored records straight from the table, by start time.
async fn stored(env: &Env, cond: &str) -> (i64, i64) {
    let sql = format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(spend_micros), 0) AS BIGINT) FROM usage_records WHERE org = 'acme' AND ts_start >= {JAN} AND ts_start < {FEB}{}",
        if cond.is_empty() {
            String::new()
        } else {
            format!(" AND {cond}")
        }
    );
    let rows = env
        .handle
        .state()
        .db
        .fetch(&sql, &[], "test")
        .await
        .unwrap();
    (
        rows[0].try_get::<i64, _>(0).unwrap(),
        rows[0].try_get::<i64, _>(1).unwrap(),
    )
}

fn sum(v: &Value, field: &str, what: &str) -> i64 {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[what].as_i64().unwrap())
        .sum()
}

fn micros_of_usd(s: &str) -> i64 {
    let (w, f) = s.split_once('.').unwrap();
    assert!(f.len() >= 2 && f.len() <= 6, "{s}");
    w.parse::<i64>().unwrap() * 1_000_000 + format!("{f:0<6}").parse::<i64>().unwrap()
}

/// Every breakdown and the dollar texts agree with the totals and with the table.
fn check_reconciles(bill: &Value, expect: (i64, i64), breakdowns: &[&str]) {
    let total = bill["totals"]["spend_micros"].as_i64().unwrap();
    assert_eq!(
        (bill["totals"]["calls"].as_i64().unwrap(), total),
        expect,
        "{bill}"
    );
    assert_eq!(
        micros_of_usd(bill["totals"]["spend_usd"].as_str().unwrap()),
        total
    );
    for b in breakdowns {
        assert_eq!(
            sum(bill, b, "spend_micros"),
            total,
            "{b} does not sum to the total: {bill}"
        );
        assert_eq!(sum(bill, b, "calls"), expect.0, "{b} calls");
        assert_eq!(
            sum(bill, b, "total_tokens"),
            bill["totals"]["total_tokens"].as_i64().unwrap(),
            "{b} tokens"
        );
        for l in bill[b].as_array().unwrap() {
            assert_eq!(
                micros_of_usd(l["spend_usd"].as_str().unwrap()),
                l["spend_micros"].as_i64().unwrap()
            );
        }
    }
}

/// Sum of `spend_micros` per CSV section, and the total row.
fn csv_sections(csv: &str) -> (BTreeMap<String, i64>, i64) {
    let mut lines = csv.split("\r\n");
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header, gaterouter_collector::bills::CSV_COLUMNS);
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let mut sums = BTreeMap::new();
    let mut total = -1;
    for l in lines.filter(|l| !l.is_empty()) {
        // Items in these tests hold no comma or quote.
        let cells: Vec<&str> = l.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{l}");
        let spend: i64 = cells[col("spend_micros")].parse().unwrap_or(0);
        match cells[0] {
            "total" => total = spend,
            "statement" | "budget" => {}
            s => *sums.entry(s.to_owned()).or_default() += spend,
        }
    }
    (sums, total)
}

async fn bills_reconcile(db: Db) {
    let env = Env::start(db, |_| {}).await;
    let (s, v) = env
        .http
        .put(format!("{}/v1/admin/org-tree", env.base))
        .bearer_auth(ADMIN)
        .json(&org_doc())
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(s, 200, "{:?}", v.text().await);
    let wires = records();
    let (_, v) = env.ingest(&wires).await;
    assert_eq!(ids(&v, "accepted").len(), wires.len(), "{v}");

    // The org bill.
    let bill = get_ok(&env, "/v1/admin/bills?org=acme&month=2026-01", ADMIN).await;
    let all = stored(&env, "").await;
    assert_eq!(all.0, 42, "4 of the 46 records are outside January");
    check_reconciles(
        &bill,
        all,
        &["by_model", "by_member", "by_department", "by_project"],
    );
    assert_eq!(bill["scope"], "org:acme");
    assert_eq!(
        (
            bill["period_start"].as_str().unwrap(),
            bill["period_end"].as_str().unwrap()
        ),
        ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    );
    let models: Vec<&str> = bill["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["item"].as_str().unwrap())
        .collect();
    assert_eq!(models.len(), 3, "{models:?}");
    assert!(models.contains(&"openai/acme-finetune-7"), "{models:?}");
    let none_member = bill["by_member"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["item"].is_null())
        .unwrap();
    assert_eq!(
        none_member["spend_micros"].as_i64().unwrap(),
        stored(&env, "usr IS NULL").await.1
    );
    for d in ["eng", "sales", "ops"] {
        let line = bill["by_department"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["item"] == d)
            .unwrap();
        assert_eq!(
            (
                line["calls"].as_i64().unwrap(),
                line["spend_micros"].as_i64().unwrap()
            ),
            stored(&env, &format!("department = '{d}'")).await
        );
    }
    // Every month of the table adds up: the records outside January are in December or February.
    let dec = get_ok(&env, "/v1/admin/bills?org=acme&month=2025-12", ADMIN).await;
    let feb = get_ok(&env, "/v1/admin/bills?org=acme&month=2026-02", ADMIN).await;
    assert_eq!(
        (
            dec["totals"]["calls"].as_i64().unwrap(),
            feb["totals"]["calls"].as_i64().unwrap()
        ),
        (2, 2)
    );
    let rows = env
        .handle
        .state()
        .db
        .fetch(
            "SELECT CAST(SUM(spend_micros) AS BIGINT) FROM usage_records",
            &[],
            "test",
        )
        .await
        .unwrap();
    assert_eq!(
        rows[0].try_get::<i64, _>(0).unwrap(),
        all.1
            + dec["totals"]["spend_micros"].as_i64().unwrap()
            + feb["totals"]["spend_micros"].as_i64().unwrap()
    );

    // Budget versus actual: monthly USD budgets only, actuals from the month's records.
    let levels: Vec<&str> = bill["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["level"].as_str().unwrap())
        .collect();
    assert_eq!(
        levels,
        [
            "org:acme",
            "department:eng",
            "department:sales",
            "project:search",
            "group:oncall",
            "user:alice",
            "user:carol"
        ]
    );
    let budget = |bill: &Value, level: &str| {
        bill["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["level"] == level)
            .unwrap()
            .clone()
    };
    let org_b = budget(&bill, "org:acme");
    assert_eq!(org_b["actual_micros"].as_i64().unwrap(), all.1);
    assert_eq!(
        (
            org_b["limit_micros"].as_i64().unwrap(),
            org_b["limit_usd"].as_str().unwrap()
        ),
        (100_000_000, "100.00")
    );
    let expect_pct = all.1 * 10_000 / 100_000_000;
    assert_eq!(
        org_b["percent_used"].as_str().unwrap(),
        format!("{}.{:02}", expect_pct / 100, expect_pct % 100)
    );
    assert_eq!(
        budget(&bill, "user:alice")["actual_micros"]
            .as_i64()
            .unwrap(),
        stored(&env, "usr = 'alice'").await.1
    );
    assert_eq!(
        budget(&bill, "group:oncall")["actual_micros"]
            .as_i64()
            .unwrap(),
        stored(&env, "usr = 'alice'").await.1,
        "alice is oncall's only member"
    );
    let eng_b = budget(&bill, "department:eng");
    assert!(
        eng_b["actual_micros"].as_i64().unwrap() > 50_000,
        "eng is over its $0.05: {eng_b}"
    );
    assert_eq!(eng_b["limit_usd"], "0.05");

    // A department bill: by member and by project, no by-department; its budgets only.
    let eng = get_ok(
        &env,
        "/v1/admin/bills?org=acme&month=2026-01&department=eng",
        ADMIN,
    )
    .await;
    check_reconciles(
        &eng,
        stored(&env, "department = 'eng'").await,
        &["by_model", "by_member", "by_project"],
    );
    assert!(eng["by_department"].as_array().unwrap().is_empty());
    let levels: Vec<&str> = eng["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["level"].as_str().unwrap())
        .collect();
    assert_eq!(
        levels,
        [
            "department:eng",
            "project:search",
            "group:oncall",
            "user:alice"
        ]
    );

    // A project bill.
    let search = get_ok(
        &env,
        "/v1/admin/bills?org=acme&month=2026-01&project=search",
        ADMIN,
    )
    .await;
    let expect = stored(&env, "project = 'search'").await;
    assert!(expect.0 > 0);
    check_reconciles(&search, expect, &["by_model", "by_member"]);
    assert_eq!(search["scope"], "project:search");
    let levels: Vec<&str> = search["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["project:search"]);

    // CSV: one long table whose sections each sum to the total row.
    for (q, expect) in [
        ("", all.1),
        (
            "&department=eng",
            stored(&env, "department = 'eng'").await.1,
        ),
    ] {
        let (s, csv) = env
            .get_text(
                &format!("/v1/admin/bills?org=acme&month=2026-01{q}&format=csv"),
                Some(ADMIN),
            )
            .await;
        assert_eq!(s, 200, "{csv}");
        let (sums, total) = csv_sections(&csv);
        assert_eq!(total, expect, "{csv}");
        assert!(
            sums.contains_key("model") && sums.contains_key("member"),
            "{csv}"
        );
        for (section, v) in &sums {
            assert_eq!(*v, expect, "CSV section {section}: {csv}");
        }
        assert!(
            csv.contains("\r\nstatement,month,") && csv.contains("2026-01"),
            "{csv}"
        );
    }

    // HTML: standalone, printable, escaped.
    let (s, html) = env
        .get_text(
            "/v1/admin/bills?org=acme&month=2026-01&format=html",
            Some(ADMIN),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("@media print"),
        "{html}"
    );
    assert!(
        html.contains("Acme &lt;Corp&gt; &amp; Sons") && !html.contains("Acme <Corp>"),
        "names are escaped"
    );
    assert!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("<link"),
        "no external assets or script"
    );
    assert!(html.contains(&format!(
        "${}",
        bill["totals"]["spend_usd"].as_str().unwrap()
    )));

    // Read tokens: a sales token reads the sales bill only.
    let tok = env
        .admin_ok(
            "/v1/admin/tokens",
            json!({"role": "read", "org_id": "acme", "department_id": "sales"}),
        )
        .await;
    let tok = tok["token"].as_str().unwrap();
    let sales = get_ok(
        &env,
        "/v1/admin/bills?org=acme&month=2026-01&department=sales",
        tok,
    )
    .await;
    check_reconciles(
        &sales,
        stored(&env, "department = 'sales'").await,
        &["by_model", "by_member"],
    );
    for q in ["", "&department=eng", "&project=search"] {
        let (s, v) = env
            .get(
                &format!("/v1/admin/bills?org=acme&month=2026-01{q}"),
                Some(tok),
            )
            .await;
        assert_eq!(s, 403, "{q}: {v}");
    }
    let org_tok = env
        .admin_ok(
            "/v1/admin/tokens",
            json!({"role": "read", "org_id": "acme"}),
        )
        .await;
    get_ok(
        &env,
        "/v1/admin/bills?org=acme&month=2026-01",
        org_tok["token"].as_str().unwrap(),
    )
    .await;
    let eng_tok = env
        .admin_ok(
            "/v1/admin/tokens",
            json!({"role": "read", "org_id": "acme", "department_id": "eng"}),
        )
        .await;
    get_ok(
        &env,
        "/v1/admin/bills?org=acme&month=2026-01&project=search",
        eng_tok["token"].as_str().unwrap(),
    )
    .await;

    // Errors name the fix.
    for (q, status) in [
        ("org=acme&month=2026-13", 400),
        ("org=acme&month=2026-01&department=eng&project=search", 400),
        ("org=acme&month=2026-01&format=pdf", 400),
        ("org=nope&month=2026-01", 404),
        ("org=acme&month=2026-01&department=nope", 404),
        ("org=acme", 400),
    ] {
        let (s, v) = env.get(&format!("/v1/admin/bills?{q}"), Some(ADMIN)).await;
        assert_eq!(s, status, "{q}: {v}");
    }
    let (s, _) = env
        .get("/v1/admin/bills?org=acme&month=2026-01", None)
        .await;
    assert_eq!(s, 401);
    env.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bills_reconcile() {
    bills_reconcile(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bills_reconcile() {
    let Some(pg) = Pg::start() else { return };
    bills_reconcile(Some(pg.new_db().await)).await
}
