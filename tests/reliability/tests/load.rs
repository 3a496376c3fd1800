//! Load suite (issue 11): N clients x M concurrent calls against the emulator and one
//! collector (both separate processes) for a fixed time. Reports calls/s, p50/p99 SDK
//! overhead (SDK call latency minus the latency of the same request sent raw to the
//! emulator at the same concurrency), ingest lag (record `ts_end` to the collector's
//! `received_ms`), RSS of the client and the collector over the run, and asserts zero
//! lost or duplicated records and bounded memory growth after warm-up (RSS at the end
//! vs at one third of the run).
//!
//! Short by default; `GATEROUTER_RELIABILITY=full` or `GATEROUTER_LOAD_SECS`,
//! `GATEROUTER_LOAD_CLIENTS`, `GATEROUTER_LOAD_CONCURRENCY` for longer runs
//! (`bench/load.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gaterouter::config::{EnforceMode, Identity};
use gaterouter::usage::UsageSigner;
use gaterouter::{ChatRequest, Client, Config, Message};
use gaterouter_reliability::load::{RssSampler, bin_dir, cpu_ms, percentile, rss_at, rss_peak};
use gaterouter_reliability::scale;
use serde_json::json;
use sqlx::{Connection as _, Row as _};

const ADMIN: &str = "load-admin-token-0123456789";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The emulator and collector binaries of this test's profile (`cargo test
/// --workspace`, `tests/reliability/run.sh` and `bench/load.sh` build them). Built here
/// only when missing: a `cargo build` of just these packages unifies features
/// differently and would rebuild their dependencies on every run.
fn binaries() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = bin_dir().unwrap();
    let (emu, col) = (
        dir.join("gaterouter-emulator"),
        dir.join("gaterouter-collector"),
    );
    if !emu.exists() || !col.exists() {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "gaterouter-emulator",
            "-p",
            "gaterouter-collector",
            "--bins",
        ]);
        if release {
            cmd.arg("--release");
        }
        let st = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(
            st.success(),
            "building the emulator and collector binaries failed"
        );
    }
    (emu, col)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn request(i: u64) -> ChatRequest {
    // A realistic small prompt; each call distinct so no cache makes them trivial.
    ChatRequest::new(
        "openai/gpt-4o-mini",
        vec![
            Message::system("You are a helpful assistant."),
            Message::user(format!(
                "Summarize item {i} of the quarterly report in two sentences."
            )),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_times_concurrency_for_a_fixed_time() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs = env_num("GATEROUTER_LOAD_SECS", scale(4, 30));
    let clients = env_num("GATEROUTER_LOAD_CLIENTS", scale(4, 8));
    let conc = env_num("GATEROUTER_LOAD_CONCURRENCY", scale(8, 16));
    let t_start = Instant::now();
    let (emu_bin, col_bin) = binaries();
    let t_built = t_start.elapsed();
    let tmp = tempfile::tempdir().unwrap();

    // Emulator: prints its URL on the first line.
    let mut emu = Command::new(&emu_bin)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(emu.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let emu_url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("emulator announces its URL")
        .to_owned();
    let emu = Proc(emu);
    // Collector on SQLite.
    let port = free_port();
    let db_path = tmp.path().join("load.db");
    let col = Proc(
        Command::new(&col_bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--db",
                &format!("sqlite://{}", db_path.display()),
                "--admin-token",
                ADMIN,
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let col_url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    while !http
        .get(format!("{col_url}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "collector did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = |path: &str, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{col_url}{path}");
        async move {
            let r = http
                .post(url)
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_success(),
                "{body}: {}",
                r.text().await.unwrap()
            );
        }
    };
    admin("/v1/admin/orgs", json!({"id": "acme", "name": "Acme"})).await;
    admin(
        "/v1/admin/departments",
        json!({"id": "eng", "org_id": "acme"}),
    )
    .await;

    // N clients, each with its own key and spool.
    let mut sdk = Vec::new();
    for c in 0..clients {
        let signer = UsageSigner::from_seed(&[c as u8 + 1; 32]);
        admin("/v1/admin/keys", json!({"id": format!("k_load_{c}"), "org_id": "acme", "department_id": "eng", "public_key": signer.public_key()})).await;
        let mut cfg = Config::for_emulator(&emu_url);
        cfg.identity = Identity {
            org: Some("acme".into()),
            department: Some("eng".into()),
            api_key_id: Some(format!("k_load_{c}")),
            ..Default::default()
        };
        cfg.reporting.collector_url = Some(col_url.clone());
        cfg.reporting.spool_dir = Some(tmp.path().join(format!("spool{c}")));
        cfg.reporting.signing_key = Some(signer.seed_base64());
        cfg.reporting.batch_max_age_ms = 200;
        cfg.policy.enforce = EnforceMode::Off;
        sdk.push(Arc::new(Client::new(cfg).unwrap()));
    }

    // Baseline: the same requests sent raw to the emulator at the same concurrency.
    let raw_url = format!("{emu_url}/openai/v1/chat/completions");
    let base_n = (clients * conc * 20).min(2_000);
    let base_lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(base_n)));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients * conc {
        let (http, url, lat, next) = (
            http.clone(),
            raw_url.clone(),
            base_lat.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < base_n as u64 {
                let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Summarize item 1 of the quarterly report in two sentences."}]});
                let t = Instant::now();
                let r = http.post(&url).bearer_auth("emulator-key").json(&body).send().await.unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
                lat.lock().unwrap().push(t.elapsed().as_micros() as u64);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut base = std::mem::take(&mut *base_lat.lock().unwrap());
    let (base_p50, base_p99) = (percentile(&mut base, 50.0), percentile(&mut base, 99.0));

    // The run.
    let sampler = RssSampler::start(
        vec![std::process::id(), col.0.id(), emu.0.id()],
        Duration::from_millis(100),
    );
    let (cpu_client0, cpu_col0) = (
        cpu_ms(std::process::id()).unwrap_or(0),
        cpu_ms(col.0.id()).unwrap_or(0),
    );
    let deadline = Instant::now() + Duration::from_secs(secs as u64);
    let started = Instant::now();
    let calls = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in &sdk {
        for _ in 0..conc {
            let (c, calls, failures, lat) =
                (c.clone(), calls.clone(), failures.clone(), lat.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while Instant::now() < deadline {
                    let i = calls.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    match c.chat(request(i)).await {
                        Ok(r) => {
                            assert!(r.usage.total_tokens > 0);
                            mine.push(t.elapsed().as_micros() as u64);
                        }
                        Err(e) => {
                            eprintln!("load: call failed: {e}");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat.lock().unwrap().extend(mine);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = calls.load(Ordering::Relaxed);
    // Drain every spool, then stop sampling.
    let t_flush = Instant::now();
    for c in &sdk {
        let out = c.flush(Duration::from_secs(60)).await.unwrap();
        assert!(out.drained, "{out:?}");
    }
    let flush_ms = t_flush.elapsed().as_millis();
    let cpu_client = cpu_ms(std::process::id())
        .unwrap_or(0)
        .saturating_sub(cpu_client0);
    let cpu_col = cpu_ms(col.0.id()).unwrap_or(0).saturating_sub(cpu_col0);
    let samples = sampler.stop();
    for c in &sdk {
        c.shutdown().await.unwrap();
    }

    // What the collector stored.
    let t_db = Instant::now();
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db_path.display()))
            .await
            .unwrap();
    let row = sqlx::query("SELECT COUNT(*), COUNT(DISTINCT id) FROM usage_records")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let (stored, distinct): (i64, i64) = (row.get(0), row.get(1));
    let mut lags: Vec<u64> = sqlx::query("SELECT received_ms - ts_end FROM usage_records")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>(0).max(0) as u64)
        .collect();
    db.close().await.unwrap();
    let db_ms = t_db.elapsed().as_millis();

    let mut sdk_lat = std::mem::take(&mut *lat.lock().unwrap());
    let (p50, p99) = (
        percentile(&mut sdk_lat, 50.0),
        percentile(&mut sdk_lat, 99.0),
    );
    let (lag50, lag99, lag_max) = (
        percentile(&mut lags, 50.0),
        percentile(&mut lags, 99.0),
        percentile(&mut lags, 100.0),
    );
    let mib = |k: u64| k as f64 / 1024.0;
    let (cl_third, cl_end, cl_peak) = (
        rss_at(&samples, 0, 1.0 / 3.0),
        rss_at(&samples, 0, 1.0),
        rss_peak(&samples, 0),
    );
    let (co_third, co_end, co_peak) = (
        rss_at(&samples, 1, 1.0 / 3.0),
        rss_at(&samples, 1, 1.0),
        rss_peak(&samples, 1),
    );
    let fails = failures.load(Ordering::Relaxed);
    println!(
        "load: {clients} clients x {conc} concurrent calls for {:.1} s",
        elapsed.as_secs_f64()
    );
    println!(
        "load: calls {total} ({:.0} calls/s), failed {fails}",
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "load: call latency p50 {:.2} ms p99 {:.2} ms; raw emulator p50 {:.2} ms p99 {:.2} ms",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        base_p50 as f64 / 1e3,
        base_p99 as f64 / 1e3
    );
    println!(
        "load: SDK overhead p50 {:.2} ms p99 {:.2} ms",
        p50.saturating_sub(base_p50) as f64 / 1e3,
        p99.saturating_sub(base_p99) as f64 / 1e3
    );
    println!(
        "load: CPU per call: client {:.0} us (SDK: request, response, record, sign, spool, upload), collector {:.0} us per record",
        cpu_client as f64 * 1e3 / total.max(1) as f64,
        cpu_col as f64 * 1e3 / total.max(1) as f64
    );
    println!(
        "load: ingest lag (ts_end -> stored) p50 {lag50} ms p99 {lag99} ms max {lag_max} ms; final flush {flush_ms} ms"
    );
    println!(
        "load: client RSS {:.1} MiB at 1/3, {:.1} MiB at end, peak {:.1} MiB",
        mib(cl_third),
        mib(cl_end),
        mib(cl_peak)
    );
    println!(
        "load: collector RSS {:.1} MiB at 1/3, {:.1} MiB at end, peak {:.1} MiB",
        mib(co_third),
        mib(co_end),
        mib(co_peak)
    );
    let db_mib = ["", "-wal"]
        .iter()
        .filter_map(|x| std::fs::metadata(format!("{}{x}", db_path.display())).ok())
        .map(|m| m.len() as f64 / 1_048_576.0)
        .sum::<f64>();
    println!("load: collector database {db_mib:.1} MiB (SQLite, WAL included)");
    println!(
        "load: phases: finding the binaries {:.1} s, reading the database {db_ms} ms, whole test {:.1} s",
        t_built.as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
    println!(
        "load: records stored {stored} (distinct {distinct}) for {total} calls: lost {}, duplicated {}",
        total as i64 - distinct,
        stored - distinct
    );

    assert!(total > 0 && fails == 0, "{fails} of {total} calls failed");
    assert_eq!(distinct as u64, total, "records lost");
    assert_eq!(stored, distinct, "records duplicated");
    // Bounded memory: after warm-up, growth stays under half plus 32 MiB (allocator
    // arenas and SQLite's page cache still fill in a short run); a leak of a record or
    // buffer per call grows with the run and fails the longer `bench/load.sh` run.
    // The collector's SQLite page cache (cache_size 64 MiB per pooled connection) fills
    // as the database grows: allowed on top, up to the database's size.
    let db_kib = ["", "-wal"]
        .iter()
        .filter_map(|x| std::fs::metadata(format!("{}{x}", db_path.display())).ok())
        .map(|m| m.len() / 1024)
        .sum::<u64>();
    for (what, third, end, cache) in [
        ("client", cl_third, cl_end, 0),
        ("collector", co_third, co_end, db_kib.min(4 * 65_536)),
    ] {
        assert!(third > 0 && end > 0, "{what} RSS not sampled");
        assert!(
            end <= third + third / 2 + 32 * 1024 + cache,
            "{what} RSS grew from {:.1} MiB to {:.1} MiB after warm-up (database {:.1} MiB)",
            mib(third),
            mib(end),
            mib(db_kib)
        );
    }
}
