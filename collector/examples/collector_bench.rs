//! Collector benchmark: ingest throughput (records/s, signatures verified) on SQLite or
//! PostgreSQL with 1..N collector processes, and analytics latency on a large table.
//!
//! ```text
//! cargo build --release -p gaterouter-collector --bin gaterouter-collector --example collector_bench
//! target/release/examples/collector_bench --db sqlite --records 200000
//! target/release/examples/collector_bench --db postgres --processes 2 --records 200000
//! target/release/examples/collector_bench --db sqlite --records 0 --seed-rows 10000000
//! ```
//! `--db postgres` starts a throwaway PostgreSQL (as the `postgres` user when root) on a
//! loopback port and stops it at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gaterouter::config::Identity;
use gaterouter::usage::signing::wire_json;
use gaterouter::usage::{
    RecordId, RouteInfo, RouteMode, SdkInfo, UsageRecord, UsageRecordInput, UsageSigner,
};
use serde_json::json;

const ADMIN: &str = "bench-admin-token-0123456789";

struct Args {
    db: String,
    processes: usize,
    records: usize,
    batch: usize,
    concurrency: usize,
    seed_rows: u64,
    bin: PathBuf,
}

fn parse_args() -> Args {
    let mut a = Args {
        db: "sqlite".into(),
        processes: 1,
        records: 100_000,
        batch: 1000,
        concurrency: 4,
        seed_rows: 0,
        bin: PathBuf::new(),
    };
    let exe = std::env::current_exe().unwrap();
    a.bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("gaterouter-collector");
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < v.len() + 1 && i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--db" => a.db = val,
            "--processes" => a.processes = val.parse().unwrap(),
            "--records" => a.records = val.parse().unwrap(),
            "--batch" => a.batch = val.parse().unwrap(),
            "--concurrency" => a.concurrency = val.parse().unwrap(),
            "--seed-rows" => a.seed_rows = val.parse().unwrap(),
            "--bin" => a.bin = PathBuf::from(val),
            o => panic!("unknown flag {o}"),
        }
        i += 2;
    }
    a
}

struct Pg {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    root: bool,
}

impl Pg {
    fn sh(&self, cmd: &str) -> bool {
        if self.root {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", cmd])
                .status()
                .unwrap()
                .success()
        } else {
            Command::new("sh")
                .args(["-c", cmd])
                .status()
                .unwrap()
                .success()
        }
    }
    fn start() -> Pg {
        let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL not installed")
            .flatten()
            .map(|e| e.path().join("bin"))
            .collect();
        bins.sort();
        let bin = bins.pop().unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::Builder::new()
            .prefix("collector-bench-pg")
            .tempdir_in("/tmp")
            .unwrap();
        if root {
            Command::new("chown")
                .args(["-R", "postgres:postgres", dir.path().to_str().unwrap()])
                .status()
                .unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg {
            dir,
            port,
            bin,
            root,
        };
        let d = pg.dir.path().display().to_string();
        assert!(pg.sh(&format!(
            "{}/initdb -D {d}/data -U postgres --auth=trust -E UTF8 --no-sync >/dev/null",
            pg.bin.display()
        )));
        // Durable commits (fsync on), as in production; shared_buffers sized for the bench.
        assert!(pg.sh(&format!(
            "{}/pg_ctl -D {d}/data -l {d}/pg.log -w -o '-p {port} -k {d} -c listen_addresses=127.0.0.1 -c max_connections=100 -c shared_buffers=512MB' start >/dev/null",
            pg.bin.display()
        )));
        pg
    }
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let d = self.dir.path().display().to_string();
        self.sh(&format!(
            "{}/pg_ctl -D {d}/data -m fast -w stop >/dev/null",
            self.bin.display()
        ));
    }
}

struct Proc(Child, String);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

async fn start_collector(bin: &Path, db: &str) -> Proc {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
            db,
            "--admin-token",
            ADMIN,
            "--rate-limit-records-per-sec",
            "0",
            "--strongest-model",
            "openai/gpt-4o",
        ])
        .env(
            "RUST_LOG",
            std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (build it with --release)",
                bin.display()
            )
        });
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Proc(child, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("collector did not become ready");
}

fn make_records(n: usize, signer: &UsageSigner) -> Vec<String> {
    let ident = Identity {
        org: Some("acme".into()),
        department: Some("eng".into()),
        user: Some("alice".into()),
        api_key_id: Some("k_bench".into()),
        ..Default::default()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads.max(1));
    // Recent call times: the collector refuses records older than max_record_age_days.
    let base = gaterouter::usage::unix_ms_now() - 86_400_000;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let ident = ident.clone();
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| {
                            let input = UsageRecordInput {
                                ts_start: base + i as u64,
                                ts_end: base + i as u64 + 250,
                                provider: "openai".into(),
                                model: if i % 3 == 0 {
                                    "gpt-4o".into()
                                } else {
                                    "gpt-4o-mini".into()
                                },
                                route: Some(RouteInfo {
                                    mode: RouteMode::Auto,
                                    tier: Some(if i % 3 == 0 { "large" } else { "small" }.into()),
                                    score: Some(500),
                                    ..Default::default()
                                }),
                                prompt_tokens: 1200,
                                completion_tokens: 300,
                                cached_prompt_tokens: 200,
                                cost_micros: 0,
                                latency_ms: 250,
                                attempts: 1,
                                ..Default::default()
                            };
                            let rec = UsageRecord::build(
                                input,
                                &ident,
                                &SdkInfo::rust(),
                                RecordId::new_v7(),
                                i as u64 + 1,
                            )
                            .unwrap();
                            let (c, sig) = signer.sign_record(&rec).unwrap();
                            wire_json(&c, &sig)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

async fn seed_rows(db_url: &str, n: u64) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(db_url).await.unwrap();
    let sqlite = db_url.starts_with("sqlite");
    // PostgreSQL partitions raw records by month: the seeded months need theirs.
    gaterouter_collector::db::Db::connect(db_url, Some(1))
        .await
        .unwrap()
        .ensure_partitions(&(202601..=202612).collect::<Vec<i64>>())
        .await
        .unwrap();
    // Bulk load: drop the secondary indexes, insert in id order, rebuild them after.
    let list = if sqlite {
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_records' AND sql IS NOT NULL"
    } else {
        "SELECT CAST(indexname AS TEXT), CAST(indexdef AS TEXT) FROM pg_indexes WHERE tablename = 'usage_records' AND indexname <> 'usage_records_pkey'"
    };
    let idx: Vec<(String, String)> = sqlx::query(list)
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| (sqlx::Row::get(r, 0), sqlx::Row::get(r, 1)))
        .collect();
    if sqlite {
        sqlx::query("PRAGMA cache_size = -2000000")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("PRAGMA synchronous = OFF")
            .execute(&mut c)
            .await
            .unwrap();
    }
    for (name, _) in &idx {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {name}")))
            .execute(&mut c)
            .await
            .unwrap();
    }
    let depts = 20;
    let users = 2000;
    // 2026-01-01 .. ~2026-07 spread, 12 months back from 2026-07.
    let t0 = Instant::now();
    let chunk = 500_000u64;
    let mut done = 0;
    while done < n {
        let m = chunk.min(n - done);
        let series = if db_url.starts_with("sqlite") {
            format!(
                "WITH RECURSIVE g(x) AS (SELECT {done} UNION ALL SELECT x + 1 FROM g WHERE x < {}) SELECT x FROM g",
                done + m - 1
            )
        } else {
            format!(
                "SELECT generate_series({done}::bigint, {}::bigint) AS x",
                done + m - 1
            )
        };
        let id = if sqlite {
            "printf('seed-%010d', x)"
        } else {
            "'seed-' || lpad(x::text, 10, '0')"
        };
        // Months 202601..202612 by x; ts within its calendar month (the first 28 days),
        // so `month` is the month of `ts_start`, as ingest stores it.
        let starts: Vec<String> = (0..12)
            .map(|k| {
                format!(
                    "WHEN {k} THEN {}",
                    gaterouter_collector::time::month_start_ms(202601 + k)
                )
            })
            .collect();
        let ts = format!(
            "(CASE x % 12 {} END) + ((x * 7919) % 2419200000)",
            starts.join(" ")
        );
        let sql = format!(
            "INSERT INTO usage_records (id, api_key_id, seq, ts_start, ts_end, month, org, department, project, grp, usr, provider, model, route_mode, route_tier, route_score,
              prompt_tokens, completion_tokens, cached_prompt_tokens, cache_write_tokens, reasoning_tokens, total_tokens, client_cost_micros, collector_cost_micros, priced_as,
              cost_mismatch, spend_micros, baseline_micros, latency_ms, ttft_ms, status, is_error, attempts, stream, tags, sdk_name, sdk_version, sdk_language, signature, received_ms)
             SELECT {id}, 'k' || CAST(x % 50 AS TEXT), x, {ts}, {ts} + 300,
              202601 + (x % 12), 'acme', 'd' || CAST((x / 12) % {depts} AS TEXT), 'p' || CAST(x % 100 AS TEXT), NULL, 'u' || CAST(x % {users} AS TEXT), 'openai', CASE WHEN x % 3 = 0 THEN 'gpt-4o' ELSE 'gpt-4o-mini' END,
              'auto', CASE WHEN x % 3 = 0 THEN 'large' ELSE 'small' END, 500, 1200, 300, 0, 0, 0, 1500, 100 + x % 7, 100 + x % 7, 'openai/gpt-4o-mini', 0, 100 + x % 7, 6000, 200 + x % 500, CASE WHEN x % 2 = 0 THEN 80 + x % 300 ELSE NULL END,
              CASE WHEN x % 50 = 0 THEN 'RATE_LIMITED' ELSE 'ok' END, CASE WHEN x % 50 = 0 THEN 1 ELSE 0 END, 1, 0, '{{}}', 'bench', '0', 'rust', 'sig', 0 FROM ({series}) s"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
        // Three records in four carry a `scenario` tag (three values).
        let tags = format!(
            "INSERT INTO usage_tags (org, record_id, k, v) SELECT 'acme', {id}, 'scenario', CASE x % 4 WHEN 1 THEN 'support-reply' WHEN 2 THEN 'triage' ELSE 'summarize' END
             FROM ({series}) s WHERE x % 4 <> 0"
        );
        sqlx::query(sqlx::AssertSqlSafe(tags))
            .execute(&mut c)
            .await
            .unwrap();
        done += m;
        eprintln!("  seeded {done} rows ({:.0} s)", t0.elapsed().as_secs_f64());
    }
    let t1 = Instant::now();
    for (_, sql) in &idx {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut c)
            .await
            .unwrap();
    }
    eprintln!(
        "  rebuilt {} indexes in {:.0} s",
        idx.len(),
        t1.elapsed().as_secs_f64()
    );
    // The rows went in behind the collector's back: compute their hourly rollups.
    let t2 = Instant::now();
    let db = gaterouter_collector::db::Db::connect(db_url, None)
        .await
        .unwrap();
    let n = gaterouter_collector::rollup::rebuild(&db).await.unwrap();
    db.close().await;
    eprintln!(
        "  rebuilt {n} rollup rows (every grain) in {:.0} s",
        t2.elapsed().as_secs_f64()
    );
    if db_url.starts_with("postgres") {
        sqlx::query("VACUUM ANALYZE usage_records")
            .execute(&mut c)
            .await
            .unwrap();
        for t in [
            "usage_rollup_hour",
            "usage_rollup_day",
            "usage_rollup_month",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {t}")))
                .execute(&mut c)
                .await
                .unwrap();
        }
    } else {
        sqlx::query("ANALYZE").execute(&mut c).await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = parse_args();
    let tmp = tempfile::tempdir().unwrap();
    let pg = (a.db == "postgres").then(Pg::start);
    let db_url = match &pg {
        Some(p) => p.url(),
        None if a.db == "sqlite" => format!("sqlite://{}", tmp.path().join("bench.db").display()),
        None => a.db.clone(),
    };
    let mut procs = Vec::new();
    for _ in 0..a.processes.max(1) {
        procs.push(start_collector(&a.bin, &db_url).await);
    }
    let http = reqwest::Client::new();
    let base = procs[0].1.clone();
    let signer = UsageSigner::from_seed(&[5; 32]);
    for (p, b) in [
        ("/v1/admin/orgs", json!({"id": "acme"})),
        (
            "/v1/admin/departments",
            json!({"id": "eng", "org_id": "acme"}),
        ),
        // Records name user alice: ingest refuses members that are not in the org tree.
        (
            "/v1/admin/users",
            json!({"id": "alice", "org_id": "acme", "department_id": "eng"}),
        ),
        (
            "/v1/admin/keys",
            json!({"id": "k_bench", "org_id": "acme", "department_id": "eng", "public_key": signer.public_key()}),
        ),
    ] {
        let r = http
            .post(format!("{base}{p}"))
            .bearer_auth(ADMIN)
            .json(&b)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{p}: {}", r.text().await.unwrap());
    }
    if a.records > 0 {
        let t = Instant::now();
        let recs = make_records(a.records, &signer);
        eprintln!(
            "signed {} records in {:.1} s (client side, not timed)",
            recs.len(),
            t.elapsed().as_secs_f64()
        );
        let bodies: Vec<String> = recs
            .chunks(a.batch)
            .map(|c| format!("{{\"records\":[{}]}}", c.join(",")))
            .collect();
        drop(recs);
        let bodies = Arc::new(bodies);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let urls: Vec<String> = procs.iter().map(|p| format!("{}/v1/usage", p.1)).collect();
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..a.concurrency * procs.len() {
            let (bodies, next, http, url) = (
                bodies.clone(),
                next.clone(),
                http.clone(),
                urls[w % urls.len()].clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut accepted = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(b) = bodies.get(i) else { break };
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(b.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                    let v: serde_json::Value = r.json().await.unwrap();
                    accepted += v["accepted"].as_array().map_or(0, Vec::len);
                    assert!(v["rejected"].as_array().is_none_or(Vec::is_empty), "{v}");
                }
                accepted
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            accepted += t.await.unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "ingest: db={} processes={} records={} batch={} concurrency/process={} accepted={} time={:.2}s rate={:.0} records/s",
            a.db,
            procs.len(),
            a.records,
            a.batch,
            a.concurrency,
            accepted,
            secs,
            accepted as f64 / secs
        );
        assert_eq!(accepted, a.records);
    }
    if a.seed_rows > 0 {
        eprintln!("seeding {} rows directly (bypassing ingest)", a.seed_rows);
        seed_rows(&db_url, a.seed_rows).await;
        for (label, q) in [
            (
                "one month, per department",
                "/v1/analytics/breakdown?by=department&from=2026-03-01&to=2026-04-01",
            ),
            (
                "all months x department",
                "/v1/analytics/breakdown?by=department&bucket=month&limit=1000",
            ),
            (
                "one department by member over a year",
                "/v1/analytics/breakdown?by=user&department=d3&from=2026-01-01&to=2027-01-01&limit=5000",
            ),
            (
                "a year by day x department (daily rollups)",
                "/v1/analytics/timeseries?bucket=day&by=department&from=2026-01-01&to=2027-01-01",
            ),
            (
                "30 days by hour (hourly rollups)",
                "/v1/analytics/timeseries?bucket=hour&from=2026-06-01&to=2026-07-01",
            ),
            (
                "a range on whole days, by department",
                "/v1/analytics/breakdown?by=department&from=2026-02-10&to=2026-05-20",
            ),
        ]
        .into_iter()
        .chain(DASHBOARD.iter().map(|q| ("dashboard panel (all time)", *q)))
        {
            let rows = std::cell::Cell::new(0);
            let times = ten_runs(|| async {
                let v = get_json(&http, &base, q).await;
                rows.set(v["rows"].as_array().map_or(0, Vec::len));
            })
            .await;
            let rows = rows.get();
            println!(
                "analytics: db={} rows_in_table={} query=\"{label}\" ({q}) result_rows={rows} median={:.0} ms min={:.0} ms p95(max of 10)={:.0} ms",
                a.db, a.seed_rows, times[4], times[0], times[9]
            );
        }
        // What the dashboard does on first render: every panel's request at once (all
        // time, no filter), until the last answer is in.
        let times = ten_runs(|| async {
            let reqs = DASHBOARD.iter().map(|q| {
                let (http, base) = (http.clone(), base.clone());
                tokio::spawn(async move { get_json(&http, &base, q).await })
            });
            for h in reqs.collect::<Vec<_>>() {
                h.await.unwrap();
            }
        })
        .await;
        println!(
            "dashboard: db={} rows_in_table={} first render ({} requests at once) median={:.0} ms min={:.0} ms p95(max of 10)={:.0} ms",
            a.db,
            a.seed_rows,
            DASHBOARD.len(),
            times[4],
            times[0],
            times[9]
        );
    }
    drop(procs);
    drop(pg);
}

/// GET `q` with the admin token; the JSON answer (panics unless 2xx).
async fn get_json(http: &reqwest::Client, base: &str, q: &str) -> serde_json::Value {
    let r = http
        .get(format!("{base}{q}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{q}: {}", r.status());
    r.json().await.unwrap()
}

/// Wall times of 10 runs of `f`, in ms, sorted.
async fn ten_runs<F: std::future::Future<Output = ()>>(mut f: impl FnMut() -> F) -> Vec<f64> {
    let mut times = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times
}

/// The requests of the dashboard's first render (collector/assets/app.js `load`), all
/// time, no filter.
const DASHBOARD: &[&str] = &[
    "/v1/analytics/summary",
    "/v1/analytics/timeseries?bucket=day",
    "/v1/analytics/breakdown?by=department",
    "/v1/analytics/breakdown?by=project",
    "/v1/analytics/users?limit=20",
    "/v1/analytics/models",
    "/v1/analytics/keys?limit=20",
    "/v1/analytics/routing",
    "/v1/analytics/latency",
    "/v1/analytics/errors",
    "/v1/analytics/denials",
    "/v1/analytics/budgets",
    "/v1/analytics/outcomes?by=tag:scenario",
    "/v1/analytics/outcomes?by=model",
];
