//! Rollups agree with the raw records: random signed records (some resent as
//! duplicates) are ingested, then for every grouping (each rollup key alone, and the
//! whole key) the rollup's calls, errors, tokens and spend equal the raw records' to the
//! micro-dollar; `rollup::rebuild` reproduces the table exactly. On PostgreSQL (when
//! installed) two collectors on one database ingest concurrently and nothing is lost.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use gaterouter::usage::UsageStatus;
use gaterouter_collector::db::Db;
use serde_json::Value;
use sqlx::Row;

/// Deterministic pseudo-random numbers (xorshift), so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
}

fn random_specs(seed: u64, n: usize) -> Vec<Spec> {
    let mut r = Rng(seed);
    (0..n)
        .map(|_| {
            let sales = r.next() % 3 == 0;
            let (key, dept, user) = if sales {
                ("k_sales", "sales", "carol")
            } else {
                ("k_eng", "eng", r.pick(&["alice", "bob"]))
            };
            let status = r.pick(&[
                UsageStatus::Ok,
                UsageStatus::Ok,
                UsageStatus::Ok,
                UsageStatus::Cancelled,
                UsageStatus::Denied,
                UsageStatus::parse("RATE_LIMITED").unwrap(),
            ]);
            Spec {
                key,
                dept,
                user,
                model: r.pick(&["gpt-4o", "gpt-4o-mini"]),
                ts: JAN15_1000 + (r.next() % (60 * 86_400_000)),
                latency: 50 + r.next() % 20_000,
                ttft: r
                    .pick(&[None, Some(40), Some(2_345)])
                    .map(|t: u64| t + r.next() % 1_500),
                tags: r.pick(&[
                    &[][..],
                    &[("scenario", "support-reply")][..],
                    &[("scenario", "triage"), ("team", "blue")][..],
                    &[("team", "red")][..],
                ]),
                status,
                tier: r.pick(&[None, Some("small"), Some("large")]),
                prompt: 1 + r.next() % 50_000,
                completion: r.next() % 5_000,
                client_cost: r.next() % 100_000,
            }
        })
        .collect()
}

async fn rows(db: &Db, sql: &str) -> Vec<Vec<String>> {
    let rows = db.fetch(sql, &[], "test query").await.unwrap();
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get::<Option<String>, _>(i)
                        .map(|v| v.unwrap_or_default())
                        .or_else(|_| {
                            r.try_get::<Option<i64>, _>(i)
                                .map(|v| v.unwrap_or(0).to_string())
                        })
                        .unwrap()
                })
                .collect()
        })
        .collect()
}

/// Compare every rollup grain with the raw records for every grouping; returns the
/// rollup tables' rows.
async fn check_agreement(db: &Db, expect_calls: usize) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for grain in gaterouter_collector::rollup::GRAINS {
        all.extend(check_grain(db, grain, expect_calls).await);
    }
    // Latency histograms: every record once per metric it has, in its bucket.
    let hist = rows(
        db,
        "SELECT * FROM usage_latency_month ORDER BY month, org, department, provider, model, route_tier, metric, le_ms",
    )
    .await;
    let calls = |metric: &str| -> i64 {
        hist.iter()
            .filter(|r| r[6] == metric)
            .map(|r| r[8].parse::<i64>().unwrap())
            .sum()
    };
    assert_eq!(calls("latency") as usize, expect_calls);
    let streamed = rows(
        db,
        "SELECT COUNT(*) FROM usage_records WHERE ttft_ms IS NOT NULL",
    )
    .await;
    assert_eq!(calls("ttft").to_string(), streamed[0][0]);
    assert!(calls("ttft") > 0);
    for r in &hist {
        let le: i64 = r[7].parse().unwrap();
        assert_eq!(
            gaterouter_collector::rollup::latency_bucket(le),
            le,
            "{r:?}"
        );
    }
    all.extend(hist);
    // Tag rollups: each (month, units, tag) sums the records carrying that tag.
    let tags_raw = rows(
        db,
        "SELECT r.month, r.org, COALESCE(r.department, ''), COALESCE(r.project, ''), r.provider, r.model, t.k, t.v, COUNT(*),
         CAST(SUM(r.is_error) AS BIGINT), CAST(SUM(r.total_tokens) AS BIGINT), CAST(SUM(r.spend_micros) AS BIGINT)
         FROM usage_records r JOIN usage_tags t ON t.org = r.org AND t.record_id = r.id GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8",
    )
    .await;
    let tags = rows(
        db,
        "SELECT month, org, department, project, provider, model, k, v, calls, errors, total_tokens, spend_micros
         FROM usage_tag_rollup_month ORDER BY 1, 2, 3, 4, 5, 6, 7, 8",
    )
    .await;
    assert!(!tags.is_empty());
    assert_eq!(tags, tags_raw, "tag rollups vs raw records");
    all.extend(tags);
    all
}

async fn check_grain(
    db: &Db,
    grain: gaterouter_collector::rollup::Grain,
    expect_calls: usize,
) -> Vec<Vec<String>> {
    let sums_raw = "COUNT(*), CAST(SUM(is_error) AS BIGINT), CAST(SUM(total_tokens) AS BIGINT), CAST(SUM(spend_micros) AS BIGINT), CAST(SUM(client_cost_micros) AS BIGINT), CAST(SUM(latency_ms) AS BIGINT), CAST(SUM(cost_mismatch) AS BIGINT), CAST(MAX(ts_start) AS BIGINT), CAST(MAX(ts_end) AS BIGINT)";
    let sums_roll = "CAST(SUM(calls) AS BIGINT), CAST(SUM(errors) AS BIGINT), CAST(SUM(total_tokens) AS BIGINT), CAST(SUM(spend_micros) AS BIGINT), CAST(SUM(client_cost_micros) AS BIGINT), CAST(SUM(latency_ms_sum) AS BIGINT), CAST(SUM(cost_mismatches) AS BIGINT), CAST(MAX(last_start_ms) AS BIGINT), CAST(MAX(last_end_ms) AS BIGINT)";
    let raw_expr = |k: &str| match k {
        p if p == grain.period => grain.period_of_record.to_owned(),
        "api_key_id" | "provider" | "model" | "status" | "org" => k.to_owned(),
        other => format!("COALESCE({other}, '')"),
    };
    let keys: Vec<&str> = std::iter::once(grain.period)
        .chain(gaterouter_collector::rollup::UNIT_KEYS.iter().copied())
        .collect();
    let mut groupings: Vec<Vec<&str>> = keys.iter().map(|k| vec![*k]).collect();
    groupings.push(keys.clone());
    groupings.push(vec!["department", "usr", "model"]);
    for g in groupings {
        let n = g.len();
        let order = (1..=n)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let raw_sel = g.iter().map(|k| raw_expr(k)).collect::<Vec<_>>().join(", ");
        let raw = rows(
            db,
            &format!(
                "SELECT {raw_sel}, {sums_raw} FROM usage_records GROUP BY {order} ORDER BY {order}"
            ),
        )
        .await;
        let roll = rows(
            db,
            &format!(
                "SELECT {}, {sums_roll} FROM {} GROUP BY {order} ORDER BY {order}",
                g.join(", "),
                grain.table
            ),
        )
        .await;
        assert_eq!(raw, roll, "{}: grouping {g:?}", grain.table);
        let total: i64 = raw.iter().map(|r| r[n].parse::<i64>().unwrap()).sum();
        assert_eq!(total as usize, expect_calls, "grouping {g:?}");
    }
    rows(
        db,
        &format!("SELECT * FROM {} ORDER BY {}", grain.table, keys.join(", ")),
    )
    .await
}

/// The analytics answers read from the rollups (every bucket, months included) equal
/// the same queries answered from the raw records (`from=1`: not on a whole hour, so the
/// raw records answer).
async fn answers_agree(env: &Env) {
    for q in [
        "/v1/analytics/breakdown?by=department&bucket=month&limit=1000",
        "/v1/analytics/breakdown?by=model&bucket=month&limit=1000",
        "/v1/analytics/timeseries?bucket=month&by=department",
        "/v1/analytics/timeseries?bucket=month",
        "/v1/analytics/breakdown?by=department&bucket=day&limit=1000",
        "/v1/analytics/breakdown?by=user",
        "/v1/analytics/breakdown?by=tier",
        "/v1/analytics/summary?",
        "/v1/analytics/users?limit=1000",
        "/v1/analytics/models?",
        "/v1/analytics/keys?",
        "/v1/analytics/routing?",
        "/v1/analytics/errors?",
        "/v1/analytics/denials?",
        "/v1/analytics/latency?",
        "/v1/analytics/outcomes?by=department",
        "/v1/analytics/outcomes?by=tag:scenario",
        "/v1/analytics/outcomes?by=tag:team&department=eng",
        "/v1/analytics/latency?by=department",
        "/v1/analytics/latency?by=tier&model=gpt-4o",
    ] {
        let (s1, rollup) = env.get(q, Some(ADMIN)).await;
        let (s2, raw) = env.get(&format!("{q}&from=1"), Some(ADMIN)).await;
        assert_eq!((s1, s2), (200, 200), "{q}: {rollup} {raw}");
        assert!(
            rollup["rows"].as_array().is_some_and(|r| !r.is_empty()),
            "{q}: {rollup}"
        );
        assert_eq!(rollup["rows"], raw["rows"], "{q}: rollups vs raw records");
    }
    let (_, months) = env
        .get("/v1/analytics/timeseries?bucket=month", Some(ADMIN))
        .await;
    let labels: Vec<&str> = months["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["2026-01", "2026-02", "2026-03"], "{months}");

    // Whole months (read from the monthly rollups) against the raw records (a `from` one
    // millisecond earlier is not on a whole hour, so the raw records answer).
    // Whole days (daily rollups), likewise.
    let feb = "from=2026-02-01&to=2026-03-01";
    let feb_raw = "from=1769903999999&to=2026-03-01";
    let days = "from=2026-01-20&to=2026-02-10";
    let days_raw = "from=1768867199999&to=2026-02-10";
    let feb_queries = [
        "/v1/analytics/breakdown?by=department&limit=1000",
        "/v1/analytics/breakdown?by=user&bucket=month&limit=1000",
        "/v1/analytics/per-capita?by=department",
        "/v1/analytics/timeseries?bucket=month&by=model",
        "/v1/analytics/summary?",
        "/v1/analytics/keys?",
        "/v1/analytics/latency?by=provider",
        "/v1/analytics/outcomes?by=tag:scenario",
    ]
    .map(|q| (q, feb, feb_raw));
    let day_queries = [
        "/v1/analytics/breakdown?by=department&limit=1000",
        "/v1/analytics/timeseries?bucket=day&by=department",
        "/v1/analytics/timeseries?bucket=month",
        "/v1/analytics/summary?",
        "/v1/analytics/errors?",
        "/v1/analytics/routing?",
    ]
    .map(|q| (q, days, days_raw));
    for (q, range, raw_range) in feb_queries.into_iter().chain(day_queries) {
        let (s1, rollup) = env.get(&format!("{q}&{range}"), Some(ADMIN)).await;
        let (s2, raw) = env.get(&format!("{q}&{raw_range}"), Some(ADMIN)).await;
        assert_eq!((s1, s2), (200, 200), "{q}: {rollup} {raw}");
        assert!(
            rollup["rows"].as_array().is_some_and(|r| !r.is_empty()),
            "{q}: {rollup}"
        );
        assert_eq!(
            rollup["rows"], raw["rows"],
            "{q}&{range}: rollups vs raw records"
        );
    }
}

/// Month buckets and whole months are answered from `usage_rollup_month`, days from
/// `usage_rollup_day`, hours from `usage_rollup_hour`: a change to one table shows in
/// exactly those answers, and a rebuild undoes it.
async fn grains_answer_their_queries(env: &Env) {
    let db = &env.handle.state().db;
    let total = |v: &Value| -> i64 {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["calls"].as_i64().unwrap())
            .sum()
    };
    let queries = [
        "/v1/analytics/timeseries?bucket=month",
        "/v1/analytics/timeseries?bucket=day",
        "/v1/analytics/timeseries?bucket=hour",
    ];
    let mut before = Vec::new();
    for q in queries {
        before.push(env.get(q, Some(ADMIN)).await.1);
    }
    for (i, table) in [
        "usage_rollup_month",
        "usage_rollup_day",
        "usage_rollup_hour",
    ]
    .into_iter()
    .enumerate()
    {
        let sql = format!(
            "UPDATE {table} SET calls = calls + 1000 WHERE last_start_ms = (SELECT MAX(last_start_ms) FROM {table})"
        );
        db.exec(&sql, &[], "test").await.unwrap();
        for (j, q) in queries.into_iter().enumerate() {
            let (_, now) = env.get(q, Some(ADMIN)).await;
            if i == j {
                assert!(total(&now) >= total(&before[j]) + 1000, "{q} reads {table}");
            } else {
                assert_eq!(total(&now), total(&before[j]), "{q} does not read {table}");
            }
        }
        gaterouter_collector::rollup::rebuild(db).await.unwrap();
        for (j, q) in queries.into_iter().enumerate() {
            let (_, now) = env.get(q, Some(ADMIN)).await;
            assert_eq!(now["rows"], before[j]["rows"], "rebuild restores {table}");
        }
    }
    // Spend by tag over whole months reads the tag rollups.
    let triage = |v: &Value| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == "triage")
            .map(|r| r["calls"].as_i64().unwrap())
            .unwrap()
    };
    reads_table(
        env,
        "/v1/analytics/outcomes?by=tag:scenario",
        "UPDATE usage_tag_rollup_month SET calls = calls + 1000 WHERE k = 'scenario' AND v = 'triage'",
        triage,
    )
    .await;
    // Latency percentiles over whole months read the monthly histograms, and the raw
    // records answer alike.
    let (_, l0) = env.get("/v1/analytics/latency", Some(ADMIN)).await;
    let (_, raw) = env.get("/v1/analytics/latency?from=1", Some(ADMIN)).await;
    assert_eq!(raw["rows"], l0["rows"], "the raw records answer alike");
    reads_table(
        env,
        "/v1/analytics/latency",
        "UPDATE usage_latency_month SET calls = calls + 1000 WHERE metric = 'latency' AND le_ms = (SELECT MAX(le_ms) FROM usage_latency_month)",
        total,
    )
    .await;
}

/// `q` reads the table `bump` adds 1000 calls to (its `calls(answer)` grows by at least
/// that), and a rebuild restores its answer.
async fn reads_table(env: &Env, q: &str, bump: &str, calls: impl Fn(&Value) -> i64) {
    let db = &env.handle.state().db;
    let (_, before) = env.get(q, Some(ADMIN)).await;
    db.exec(bump, &[], "test").await.unwrap();
    let (_, bumped) = env.get(q, Some(ADMIN)).await;
    assert!(
        calls(&bumped) >= calls(&before) + 1000,
        "{q} reads the table of `{bump}`"
    );
    gaterouter_collector::rollup::rebuild(db).await.unwrap();
    let (_, rebuilt) = env.get(q, Some(ADMIN)).await;
    assert_eq!(rebuilt["rows"], before["rows"], "rebuild restores {q}");
}

async fn ingest_all(env: &Env, wires: &[String]) {
    for chunk in wires.chunks(97) {
        let (s, v) = env.ingest(chunk).await;
        assert_eq!(s, 200, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_agree_with_raw_records_sqlite() {
    let env = Env::start(None, |_| {}).await;
    let (eng, sales) = env.seed_org().await;
    let specs = random_specs(0x5eed_1234, 1_500);
    let wires: Vec<String> = specs
        .iter()
        .map(|s| wire(s, if s.key == "k_eng" { &eng } else { &sales }))
        .collect();
    ingest_all(&env, &wires).await;
    // Resent records are duplicates and must not count twice.
    ingest_all(&env, &wires[..300]).await;
    let db = &env.handle.state().db;
    let before = check_agreement(db, 1_500).await;
    let n = gaterouter_collector::rollup::rebuild(db).await.unwrap();
    assert_eq!(n as usize, before.len());
    assert_eq!(
        check_agreement(db, 1_500).await,
        before,
        "rebuild reproduces the maintained rollups"
    );
    answers_agree(&env).await;
    grains_answer_their_queries(&env).await;
    env.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_agree_with_two_collectors_on_postgres() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.new_db().await;
    let a = Env::start(Some(url.clone()), |_| {}).await;
    let b = Env::start(Some(url), |_| {}).await;
    let (eng, sales) = a.seed_org().await;
    let specs = random_specs(0xfeed_beef, 1_200);
    let wires: Vec<String> = specs
        .iter()
        .map(|s| wire(s, if s.key == "k_eng" { &eng } else { &sales }))
        .collect();
    // Both collectors ingest interleaved halves at once, plus overlapping resends: the
    // same rollup rows are upserted concurrently.
    let (w1, w2) = wires.split_at(600);
    let (x, y) = (w1.to_vec(), w2.to_vec());
    let (a_ref, b_ref) = (&a, &b);
    tokio::join!(
        async {
            ingest_all(a_ref, &x).await;
            ingest_all(a_ref, &y[..100]).await
        },
        async {
            ingest_all(b_ref, &y).await;
            ingest_all(b_ref, &x[..100]).await
        }
    );
    let db = &a.handle.state().db;
    let before = check_agreement(db, 1_200).await;
    gaterouter_collector::rollup::rebuild(db).await.unwrap();
    assert_eq!(check_agreement(db, 1_200).await, before);
    answers_agree(&a).await;
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}
