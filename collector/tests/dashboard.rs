//! The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by
//! playwright-core from collector/dashboard-test): a collector seeded with a small org
//! (named departments, members, a budget, a policy denial) must show what a person
//! expects: names, axis labels in the data's year, per-capita tiles, the budget gauge,
//! the denial count; a department read token sees one department; no token lives in
//! the page (HttpOnly cookie session). Screenshots are saved to bench/screenshots/.
//! Skipped with a message when node, chromium or the npm package are absent, unless
//! GATEROUTER_TEST_REQUIRE_BROWSER=1 (run_all.sh).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

fn skip(msg: &str) {
    if std::env::var("GATEROUTER_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("dashboard test cannot run: {msg}");
    }
    eprintln!("SKIPPED dashboard browser test: {msg}");
}

/// The org of the browser test, with display names; returns the eng read token.
async fn seed(env: &Env) -> String {
    env.admin_ok("/v1/admin/orgs", json!({"id": "acme", "name": "Acme Corp"}))
        .await;
    env.admin_ok(
        "/v1/admin/departments",
        json!({"id": "eng", "org_id": "acme", "name": "Engineering"}),
    )
    .await;
    env.admin_ok(
        "/v1/admin/departments",
        json!({"id": "sales", "org_id": "acme", "name": "Sales and Marketing"}),
    )
    .await;
    for (id, dept, name) in [
        ("alice", "eng", "Alice Martin"),
        ("bob", "eng", "Bob Chen"),
        ("carol", "sales", "Carol Diaz"),
        ("dave", "sales", "Dave Okafor"),
    ] {
        env.admin_ok(
            "/v1/admin/users",
            json!({"id": id, "org_id": "acme", "department_id": dept, "name": name}),
        )
        .await;
    }
    let (eng, sales) = (signer(1), signer(2));
    env.admin_ok("/v1/admin/keys", json!({"id": "k_eng", "org_id": "acme", "department_id": "eng", "public_key": eng.public_key(), "description": "Engineering backend"})).await;
    env.admin_ok("/v1/admin/keys", json!({"id": "k_sales", "org_id": "acme", "department_id": "sales", "public_key": sales.public_key(), "description": "Sales assistant"})).await;
    env.admin_ok("/v1/admin/budgets", json!({"level": "department:eng", "metric": "usd", "period": "month", "limit": "1.00", "enforcement": "hard"})).await;
    let now = gaterouter::usage::unix_ms_now();
    let big = 35_000;
    let recs = [
        (
            Spec {
                ts: JAN15_1000,
                latency: 100,
                tier: Some("small"),
                tags: &[("scenario", "support-reply")],
                ..Spec::default()
            },
            &eng,
        ),
        (
            Spec {
                ts: JAN15_1030,
                latency: 300,
                model: "gpt-4o",
                client_cost: big,
                tier: Some("large"),
                tags: &[("scenario", "support-reply")],
                ..Spec::default()
            },
            &eng,
        ),
        (
            Spec {
                ts: JAN16_1100,
                latency: 200,
                user: "bob",
                status: gaterouter::usage::UsageStatus::parse("RATE_LIMITED").unwrap(),
                tier: Some("small"),
                ..Spec::default()
            },
            &eng,
        ),
        (
            Spec {
                key: "k_sales",
                dept: "sales",
                user: "carol",
                ts: FEB03_0900,
                latency: 400,
                model: "gpt-4o",
                client_cost: big,
                ..Spec::default()
            },
            &sales,
        ),
        (
            Spec {
                key: "k_sales",
                dept: "sales",
                user: "carol",
                ts: FEB03_0930,
                latency: 500,
                tier: Some("small"),
                ..Spec::default()
            },
            &sales,
        ),
        // This month's call: it counts against eng's monthly budget.
        (
            Spec {
                ts: now - 3_600_000,
                latency: 300,
                model: "gpt-4o",
                client_cost: big,
                ..Spec::default()
            },
            &eng,
        ),
    ];
    let built: Vec<_> = recs.iter().map(|(s, _)| record(s)).collect();
    let mut wires: Vec<String> = built
        .iter()
        .zip(&recs)
        .map(|(r, (_, k))| sign(r, k))
        .collect();
    // Feedback (issue 20): the two support-reply calls rated 1.0 and 0.5.
    wires.push(feedback("k_eng", &built[0].id, 1.0, &eng, |_| {}).1);
    wires.push(feedback("k_eng", &built[1].id, 0.5, &eng, |_| {}).1);
    let (_, v) = env.ingest(&wires).await;
    assert_eq!(ids(&v, "accepted").len(), 8, "{v}");
    // A policy denial (status `denied`), stored as the collector stores records.
    let denial = Spec {
        user: "bob",
        model: "gpt-4o",
        status: gaterouter::usage::UsageStatus::Denied,
        ts: JAN16_1100 + 60_000,
        ..Spec::default()
    };
    insert_raw_record(
        &env.handle.state().db,
        "0190a000-0000-7000-8000-000000000001",
        "acme",
        &denial,
        0,
    )
    .await;
    // Written behind ingest's back: recompute the rollups from the raw records.
    gaterouter_collector::rollup::rebuild(&env.handle.state().db)
        .await
        .unwrap();
    let (s, t) = env.post("/v1/admin/tokens", Some(ADMIN), &json!({"role": "read", "org_id": "acme", "department_id": "eng", "description": "eng lead"})).await;
    assert!(s == 200 || s == 201, "{t}");
    t["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_what_a_person_expects() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let test_dir = crate_dir.join("dashboard-test");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return skip(&format!("{chromium} not found (apt-get install chromium)"));
    }
    if !test_dir.join("node_modules/playwright-core").exists() {
        return skip("collector/dashboard-test/node_modules is missing (npm ci there)");
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return skip("node is not installed");
    }
    let env = Env::start(None, |_| {}).await;
    let read_token = seed(&env).await;
    let out_dir = crate_dir.parent().unwrap().join("bench/screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = tokio::process::Command::new("node")
        .arg("--test")
        .arg(test_dir.join("dashboard.test.mjs"))
        .env("COLLECTOR_URL", &env.base)
        .env("COLLECTOR_TOKEN", ADMIN)
        .env("COLLECTOR_READ_TOKEN", &read_token)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", &out_dir)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    for name in [
        "dashboard-admin.png",
        "dashboard-eng-read-token.png",
        "dashboard-login.png",
    ] {
        let p = out_dir.join(name);
        assert!(
            std::fs::metadata(&p)
                .map(|m| m.len() > 5_000)
                .unwrap_or(false),
            "no screenshot at {}",
            p.display()
        );
    }
    env.handle.shutdown().await;
}

/// Every analytics report has a place on the dashboard: the page fetches it or links its
/// CSV.
#[test]
fn every_report_is_on_the_dashboard() {
    let asset = |name: &str| {
        gaterouter_collector::api::dashboard::ASSETS
            .iter()
            .find(|a| a.0 == name)
            .unwrap()
            .2
    };
    let (html, js) = (asset("index.html"), asset("app.js"));
    for r in gaterouter_collector::analytics::REPORTS {
        assert!(
            js.contains(&format!("get(\"{r}\"")) || html.contains(&format!("data-report=\"{r}\"")),
            "report {r} is not on the dashboard"
        );
    }
    assert!(html.contains("<h2>Routing quality</h2>"));
}

/// The session cookie and security headers, without a browser.
#[tokio::test]
async fn login_sets_an_httponly_cookie_and_headers() {
    let env = Env::start(None, |_| {}).await;
    let read_token = seed(&env).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without a session: the login page, with the security headers.
    let r = http
        .get(format!("{}/dashboard", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("action=\"/dashboard/login\"")
    );
    // A wrong token: 401 and the reason on the login page, no cookie.
    let r = http
        .post(format!("{}/dashboard/login", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=nope-not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("unknown or revoked"));
    // The read token: a 303 with an HttpOnly SameSite=Strict cookie that is not the token.
    let r = http
        .post(format!("{}/dashboard/login", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}",
            url::form_urlencoded::byte_serialize(read_token.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("gr_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(&read_token));
    let session = cookie.split(';').next().unwrap().to_owned();
    let get = |path: &str| {
        http.get(format!("{}{path}", env.base))
            .header("cookie", session.clone())
            .send()
    };
    let who: serde_json::Value = get("/dashboard/session")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["department"], "eng");
    // The cookie reads analytics, scoped to eng...
    let v: serde_json::Value = get("/v1/analytics/breakdown?by=department")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["eng"]);
    assert_eq!(v["rows"][0]["name"], "Engineering");
    assert_eq!(v["rows"][0]["denials"], 1);
    assert_eq!(v["rows"][0]["members"], 2);
    // ...CSV too, but never the admin API.
    let r = get("/v1/analytics/denials?format=csv").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("eng,Engineering,bob,Bob Chen,k_eng,openai,gpt-4o,1,")
    );
    assert_eq!(get("/v1/admin/orgs").await.unwrap().status().as_u16(), 401);
    // The budgets report shows eng's budget with this month's spend.
    let v: serde_json::Value = get("/v1/analytics/budgets")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["rows"][0]["level_name"], "department Engineering", "{v}");
    assert_eq!(v["rows"][0]["limit"], 1_000_000);
    assert_eq!(v["rows"][0]["used"], 35_000);
    // Routing quality: eng's three auto calls, without the org's weights history.
    let v: serde_json::Value = get("/v1/analytics/routing_quality")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["rows"][0]["auto_calls"], 3, "{v}");
    assert!(v.get("weights").is_none(), "{v}");
    // Revoking the token ends the session.
    let (_, list) = env.get("/v1/admin/tokens", Some(ADMIN)).await;
    let id = list["items"].as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.admin_ok(&format!("/v1/admin/tokens/{id}/revoke"), json!({}))
        .await;
    assert_eq!(
        get("/v1/analytics/summary")
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    // Logout clears the cookie.
    let r = http
        .post(format!("{}/dashboard/logout", env.base))
        .header("cookie", session.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    env.handle.shutdown().await;
}
