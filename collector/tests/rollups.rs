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
                UsageStatus::parse("RATE_LIMITED").unwrap(),
            ]);
            Spec {
                key,
                dept,
                user,
                model: r.pick(&["gpt-4o", "gpt-4o-mini"]),
                ts: JAN15_1000 + (r.next() % (60 * 86_400_000)),
                latency: 50 + r.next() % 2000,
                status,
                tier: r.pick(&[None, Some("small"), Some("large")]),
                prompt: 1 + r.next() % 50_000,
                completion: r.next() % 5_000,
                client_cost: r.next() % 100_000,
                ..Spec::default()
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

/// Compare rollup and raw for every grouping; returns the rollup table.
async fn check_agreement(db: &Db, expect_calls: usize) -> Vec<Vec<String>> {
    let sums_raw = "COUNT(*), CAST(SUM(is_error) AS BIGINT), CAST(SUM(total_tokens) AS BIGINT), CAST(SUM(spend_micros) AS BIGINT), CAST(SUM(client_cost_micros) AS BIGINT), CAST(SUM(latency_ms) AS BIGINT)";
    let sums_roll = "CAST(SUM(calls) AS BIGINT), CAST(SUM(errors) AS BIGINT), CAST(SUM(total_tokens) AS BIGINT), CAST(SUM(spend_micros) AS BIGINT), CAST(SUM(client_cost_micros) AS BIGINT), CAST(SUM(latency_ms_sum) AS BIGINT)";
    let raw_expr = |k: &str| match k {
        "hour_ms" => "(ts_start / 3600000) * 3600000".to_owned(),
        "api_key_id" | "provider" | "model" | "status" | "org" => k.to_owned(),
        other => format!("COALESCE({other}, '')"),
    };
    let mut groupings: Vec<Vec<&str>> = gaterouter_collector::rollup::KEYS
        .iter()
        .map(|k| vec![*k])
        .collect();
    groupings.push(gaterouter_collector::rollup::KEYS.to_vec());
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
                "SELECT {}, {sums_roll} FROM usage_rollup_hour GROUP BY {order} ORDER BY {order}",
                g.join(", ")
            ),
        )
        .await;
        assert_eq!(raw, roll, "grouping {g:?}");
        let total: i64 = raw.iter().map(|r| r[n].parse::<i64>().unwrap()).sum();
        assert_eq!(total as usize, expect_calls, "grouping {g:?}");
    }
    rows(
        db,
        &format!(
            "SELECT * FROM usage_rollup_hour ORDER BY {}",
            gaterouter_collector::rollup::KEYS.join(", ")
        ),
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
