//! Honest ingest under sustained abuse (issue 18, "Proof: honest ingest throughput and
//! p99 under each abuse"). One collector process (SQLite, default settings: the rate
//! limit, connection cap and timeouts a user gets), honest senders posting signed
//! batches as fast as they are answered, one phase per abuse running alongside them the
//! whole phase:
//!
//! - `none`: the baseline;
//! - `forged`: batches naming the honest keys, signed with another key;
//! - `unknown-key`: batches naming keys that are not registered;
//! - `overflow`: a registered key of another org sending records beyond every bound
//!   (2^53-1 tokens, back-dated, unknown model) — refused per record;
//! - `malformed`: bodies that are not JSON, not `{"records":[...]}`, or a 3 MB string as a
//!   record;
//! - `slow-connections`: 2 000 connections (500 in the short run) opened and left idle
//!   or half-sent (headers started, never finished), renewed as the collector closes them.
//!
//! Per phase it prints honest records/s, the p50/p99 latency of an honest batch, the
//! attack requests made, and asserts that no honest batch was refused (every record
//! `accepted`, never 429 or 5xx) and that the database holds exactly the honest records
//! (nothing lost, nothing of the attacker's stored). Short by default (2 s per phase);
//! `GATEROUTER_ABUSE_SECS` sets the phase length (`bench/abuse.sh`, release build).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gaterouter::config::Identity;
use gaterouter::usage::signing::wire_json;
use gaterouter::usage::{
    RecordId, SdkInfo, UsageRecord, UsageRecordInput, UsageSigner, unix_ms_now,
};
use gaterouter_reliability::load::{bin_dir, cpu_ms, percentile, rss_kib};
use gaterouter_reliability::procs::{Admin, CollectorProc, free_port};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

const HONEST_KEYS: usize = 4;
const BATCH: usize = 100;

fn record(key: &str, model: &str, tokens: u64, ts: u64) -> UsageRecord {
    let ident = Identity {
        api_key_id: Some(key.into()),
        ..Default::default()
    };
    let input = UsageRecordInput {
        ts_start: ts,
        ts_end: ts + 40,
        provider: "openai".into(),
        model: model.into(),
        prompt_tokens: tokens,
        completion_tokens: 10,
        cost_micros: 0,
        latency_ms: 40,
        attempts: 1,
        ..Default::default()
    };
    UsageRecord::build(input, &ident, &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap()
}

fn batch(
    key: &str,
    signer: &UsageSigner,
    tweak: impl Fn(&mut UsageRecord),
) -> (Vec<String>, String) {
    let now = unix_ms_now();
    let mut ids = Vec::with_capacity(BATCH);
    let mut wires = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        let mut r = record(key, "gpt-4o-mini", 1_000, now);
        tweak(&mut r);
        let (c, sig) = signer.sign_record(&r).unwrap();
        ids.push(r.id.0.clone());
        wires.push(wire_json(&c, &sig));
    }
    (ids, format!("{{\"records\":[{}]}}", wires.join(",")))
}

#[derive(Default)]
struct Honest {
    accepted: AtomicU64,
    refused_batches: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u64>>,
    failures: std::sync::Mutex<Vec<String>>,
}

/// Honest senders: one task per key, batches back to back until `stop`.
async fn honest_load(
    url: String,
    keys: Arc<Vec<(String, UsageSigner)>>,
    stop: Arc<AtomicBool>,
    out: Arc<Honest>,
) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..keys.len() {
        let (http, url, keys, stop, out) = (
            http.clone(),
            url.clone(),
            keys.clone(),
            stop.clone(),
            out.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (id, signer) = &keys[i];
            while !stop.load(Ordering::Relaxed) {
                let (ids, body) = batch(id, signer, |_| {});
                let t = Instant::now();
                let resp = http
                    .post(format!("{url}/v1/usage"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let us = t.elapsed().as_micros() as u64;
                match resp {
                    Ok(r) if r.status().as_u16() == 200 => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        let n = v["accepted"].as_array().map_or(0, Vec::len);
                        if n != ids.len() {
                            out.refused_batches.fetch_add(1, Ordering::Relaxed);
                            out.failures
                                .lock()
                                .unwrap()
                                .push(format!("honest batch partly refused: {v}"));
                        }
                        out.accepted.fetch_add(n as u64, Ordering::Relaxed);
                        out.latencies_us.lock().unwrap().push(us);
                    }
                    Ok(r) => {
                        out.refused_batches.fetch_add(1, Ordering::Relaxed);
                        let s = r.status();
                        let text = r.text().await.unwrap_or_default();
                        out.failures
                            .lock()
                            .unwrap()
                            .push(format!("honest batch: {s} {text}"));
                    }
                    Err(e) => {
                        out.refused_batches.fetch_add(1, Ordering::Relaxed);
                        out.failures
                            .lock()
                            .unwrap()
                            .push(format!("honest batch: {e}"));
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Abuse {
    None,
    Forged,
    UnknownKey,
    Overflow,
    Malformed,
    SlowConnections,
}

impl Abuse {
    fn name(self) -> &'static str {
        match self {
            Abuse::None => "none",
            Abuse::Forged => "forged",
            Abuse::UnknownKey => "unknown-key",
            Abuse::Overflow => "overflow",
            Abuse::Malformed => "malformed",
            Abuse::SlowConnections => "slow-connections",
        }
    }
}

/// Posts attack bodies to `/v1/usage`, counting them.
#[derive(Clone)]
struct Poster {
    http: reqwest::Client,
    url: String,
    made: Arc<AtomicU64>,
}

impl Poster {
    async fn post(&self, body: String) {
        self.made.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .http
            .post(format!("{}/v1/usage", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
    }
}

/// The attacker: runs `abuse` until `stop`, counting the requests (or connections) made.
async fn attack(
    abuse: Abuse,
    url: String,
    port: u16,
    victim: String,
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
    held_target: usize,
) {
    let post = Poster {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(8)
            .build()
            .unwrap(),
        url,
        made: made.clone(),
    };
    let mallory = UsageSigner::from_seed(&[7; 32]);
    match abuse {
        Abuse::None => {}
        Abuse::Forged | Abuse::UnknownKey | Abuse::Overflow | Abuse::Malformed => {
            // Two concurrent attack loops (as many as the machine's cores).
            let mut loops = Vec::new();
            for n in 0..2 {
                let (stop, post, victim, mallory) =
                    (stop.clone(), post.clone(), victim.clone(), mallory.clone());
                loops.push(tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let body = match abuse {
                            Abuse::Forged => batch(&victim, &mallory, |_| {}).1,
                            Abuse::UnknownKey => {
                                batch(&format!("k_nobody_{n}_{}", i % 50), &mallory, |_| {}).1
                            }
                            Abuse::Overflow => {
                                batch("k_mallory", &mallory, |r| match i % 3 {
                                    0 => r.prompt_tokens = (1 << 53) - 11,
                                    1 => {
                                        r.ts_start -= 40 * 86_400_000;
                                        r.ts_end = r.ts_start + 40;
                                    }
                                    _ => {
                                        r.model = "no-such-model".into();
                                        r.prompt_tokens = 20_000_000;
                                    }
                                })
                                .1
                            }
                            _ => match i % 3 {
                                0 => "{\"records\": [".repeat(50),
                                1 => "{\"rows\":[1,2,3]}".to_owned(),
                                _ => format!("{{\"records\":[\"{}\"]}}", "x".repeat(3 << 20)),
                            },
                        };
                        post.post(body).await;
                    }
                }));
            }
            for l in loops {
                l.await.unwrap();
            }
        }
        Abuse::SlowConnections => {
            let mut held: Vec<tokio::net::TcpStream> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // Keep `held_target` open: idle ones and ones that started their headers.
                while held.len() < held_target && !stop.load(Ordering::Relaxed) {
                    match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        Ok(mut c) => {
                            made.fetch_add(1, Ordering::Relaxed);
                            if held.len() % 2 == 0 {
                                let _ = c
                                    .write_all(b"POST /v1/usage HTTP/1.1\r\nHost: x\r\nContent-Le")
                                    .await;
                            }
                            held.push(c);
                        }
                        Err(_) => break,
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                // Drop the ones the collector closed (a read returns 0), to renew them.
                let mut alive = Vec::with_capacity(held.len());
                for c in held.drain(..) {
                    let mut buf = [0u8; 64];
                    match c.try_read(&mut buf) {
                        Ok(0) => {}
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {}
                        _ => alive.push(c),
                    }
                }
                held = alive;
            }
        }
    }
}

async fn stored_calls(admin: &Admin) -> u64 {
    let (s, v) = admin
        .send(reqwest::Method::GET, "/v1/analytics/summary", None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    v["rows"][0]["calls"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_ingest_keeps_going_under_each_abuse() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs: u64 = std::env::var("GATEROUTER_ABUSE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // Slow connections held open: 2 000 in a bench run, 500 in the test suite.
    let held_target = if secs > 2 { 2_000 } else { 500 };
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir().unwrap().join("gaterouter-collector");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = bin_dir()
            .unwrap()
            .file_name()
            .is_some_and(|n| n == "release");
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "gaterouter-collector",
            "--bin",
            "gaterouter-collector",
        ]);
        if release {
            cmd.arg("--release");
        }
        assert!(
            cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap()
                .success()
        );
    }
    let port = free_port();
    let db = format!("sqlite://{}", dir.path().join("abuse.db").display());
    let mut collector =
        CollectorProc::start(&bin, port, &db, &dir.path().join("collector.log")).unwrap();
    let url = collector.url();
    let admin = Admin::new(&url);
    let keys: Vec<(String, UsageSigner)> = (0..HONEST_KEYS)
        .map(|i| {
            (
                format!("k_honest_{i}"),
                UsageSigner::from_seed(&[10 + i as u8; 32]),
            )
        })
        .collect();
    let refs: Vec<(String, &UsageSigner)> = keys.iter().map(|(k, s)| (k.clone(), s)).collect();
    admin.seed(&refs).await.unwrap();
    admin
        .post_ok("/v1/admin/orgs", json!({"id": "globex", "name": "Globex"}))
        .await
        .unwrap();
    let mallory = UsageSigner::from_seed(&[7; 32]);
    admin
        .post_ok(
            "/v1/admin/keys",
            json!({"id": "k_mallory", "org_id": "globex", "public_key": mallory.public_key()}),
        )
        .await
        .unwrap();
    let keys = Arc::new(keys);
    let pid = collector.pid().unwrap();

    let mut honest_total = 0u64;
    let mut lines = Vec::new();
    for abuse in [
        Abuse::None,
        Abuse::Forged,
        Abuse::UnknownKey,
        Abuse::Overflow,
        Abuse::Malformed,
        Abuse::SlowConnections,
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicU64::new(0));
        let honest = Arc::new(Honest::default());
        let attacker = tokio::spawn(attack(
            abuse,
            url.clone(),
            collector.port,
            keys[0].0.clone(),
            stop.clone(),
            made.clone(),
            held_target,
        ));
        // Let the attack get going before measuring.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cpu0 = cpu_ms(pid).unwrap_or(0);
        let t = Instant::now();
        let load = tokio::spawn(honest_load(
            url.clone(),
            keys.clone(),
            stop.clone(),
            honest.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        load.await.unwrap();
        let elapsed = t.elapsed().as_secs_f64();
        attacker.await.unwrap();
        let cpu = cpu_ms(pid).unwrap_or(0).saturating_sub(cpu0);
        let failures = honest.failures.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "{}: {} honest batches refused, first: {}",
            abuse.name(),
            failures.len(),
            failures[0]
        );
        let accepted = honest.accepted.load(Ordering::Relaxed);
        assert!(
            accepted > 0,
            "{}: no honest record got through",
            abuse.name()
        );
        honest_total += accepted;
        let mut lat = honest.latencies_us.lock().unwrap().clone();
        let (p50, p99) = (percentile(&mut lat, 50.0), percentile(&mut lat, 99.0));
        let line = format!(
            "ABUSE {:<17} honest {:>8.0} rec/s  batch({BATCH}) p50 {:>6.1} ms  p99 {:>6.1} ms  attack requests {:>7}  collector CPU {:>3.0}%  RSS {} MiB",
            abuse.name(),
            accepted as f64 / elapsed,
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0,
            made.load(Ordering::Relaxed),
            cpu as f64 / (elapsed * 1000.0) * 100.0,
            rss_kib(pid).unwrap_or(0) / 1024,
        );
        println!("{line}");
        lines.push(line);
    }
    // Nothing lost, nothing of the attacker's stored.
    let stored = stored_calls(&admin).await;
    assert_eq!(
        stored, honest_total,
        "stored records vs honest records accepted"
    );
    println!(
        "ABUSE total: {honest_total} honest records accepted and stored, 0 refused, 0 attacker records stored ({secs} s per phase)"
    );
    collector.kill();
}
