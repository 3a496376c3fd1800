//! Usage-record benchmarks.
//!
//! - `record/build_sign_append`: the hot path of `Recorder::record` (build, JCS, Ed25519
//!   sign, spool append; grouped fsync runs on its own thread). Goal: < 20 us median.
//! - `record/build_canonical`, `record/sign`: its parts.
//! - `reporter/throughput`: records per second shipped to a local collector stub.
//!
//! Run: `cargo bench -p gaterouter --bench usage`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gaterouter::config::Identity;
use gaterouter::usage::{
    BatchResponse, RecordId, Recorder, ReportingConfig, RouteInfo, RouteMode, SdkInfo, UsageRecord,
    UsageRecordInput, UsageSigner, UsageStatus,
};

fn identity() -> Identity {
    Identity {
        org: Some("org_acme".into()),
        department: Some("research".into()),
        project: Some("proj-42".into()),
        group: None,
        user: Some("u_123".into()),
        api_key_id: Some("key_bench".into()),
    }
}

fn input() -> UsageRecordInput {
    let mut tags = BTreeMap::new();
    tags.insert("feature".to_owned(), "summarize".to_owned());
    tags.insert("env".to_owned(), "prod".to_owned());
    UsageRecordInput {
        ts_start: 1_732_500_000_000,
        ts_end: 1_732_500_001_234,
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        route: Some(RouteInfo {
            mode: RouteMode::Auto,
            tier: Some("small".into()),
            score: Some(731),
            ..Default::default()
        }),
        prompt_tokens: 1200,
        completion_tokens: 300,
        cached_prompt_tokens: 512,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        cost_micros: 360,
        latency_ms: 1234,
        time_to_first_token_ms: Some(210),
        status: Some(UsageStatus::Ok),
        attempts: 1,
        stream: true,
        tags,
        ..Default::default()
    }
}

fn bench_record(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _g = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ReportingConfig {
        spool_dir: Some(dir.path().to_path_buf()),
        max_spool_bytes: 1 << 34,
        ..Default::default()
    };
    let signer = UsageSigner::from_seed(&[9u8; 32]);
    let rec = Recorder::start_with(&cfg, &identity(), SdkInfo::rust(), Some(signer.clone()))
        .expect("recorder");
    let mut g = c.benchmark_group("record");
    g.bench_function("build_sign_append", |b| {
        b.iter(|| rec.record(input()).expect("record"))
    });
    g.bench_function("build_canonical_generic", |b| {
        b.iter(|| {
            let r = UsageRecord::build(
                input(),
                &identity(),
                &SdkInfo::rust(),
                RecordId::new_v7(),
                1,
            )
            .expect("build");
            r.canonical_json_generic().expect("canonical")
        })
    });
    g.bench_function("build_canonical", |b| {
        b.iter(|| {
            let r = UsageRecord::build(
                input(),
                &identity(),
                &SdkInfo::rust(),
                RecordId::new_v7(),
                1,
            )
            .expect("build");
            r.canonical_json().expect("canonical")
        })
    });
    let canonical = UsageRecord::build(
        input(),
        &identity(),
        &SdkInfo::rust(),
        RecordId::new_v7(),
        1,
    )
    .expect("build")
    .canonical_json()
    .expect("canonical");
    g.bench_function("sign", |b| b.iter(|| signer.sign(canonical.as_bytes())));
    g.finish();
}

async fn stub(body: Bytes) -> axum::Json<BatchResponse> {
    // Accept everything: pull the ids out like a collector would.
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let accepted = v["records"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    axum::Json(BatchResponse {
        accepted,
        ..Default::default()
    })
}

fn bench_reporter(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, Router::new().route("/v1/usage", post(stub))).await
        });
        format!("http://{addr}")
    });
    const N: u64 = 20_000;
    let mut g = c.benchmark_group("reporter");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("throughput", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Spool N records with no collector, then time a recorder that starts on
                // that spool with a collector and drains it: pure shipping throughput.
                let dir = tempfile::tempdir().expect("tempdir");
                let mut cfg = ReportingConfig {
                    spool_dir: Some(dir.path().to_path_buf()),
                    batch_max_records: 1000,
                    batch_max_age_ms: 5,
                    max_spool_bytes: 1 << 34,
                    ..Default::default()
                };
                let _g = rt.enter();
                let signer = UsageSigner::from_seed(&[9u8; 32]);
                let writer =
                    Recorder::start_with(&cfg, &identity(), SdkInfo::rust(), Some(signer.clone()))
                        .expect("recorder");
                for _ in 0..N {
                    writer.record(input()).expect("record");
                }
                rt.block_on(writer.shutdown()).expect("shutdown");
                drop(writer);
                cfg.collector_url = Some(url.clone());
                let t = Instant::now();
                let rec = Recorder::start_with(&cfg, &identity(), SdkInfo::rust(), Some(signer))
                    .expect("recorder");
                let out = rt
                    .block_on(rec.flush(Duration::from_secs(120)))
                    .expect("flush");
                total += t.elapsed();
                assert!(out.drained && out.pending_records == 0);
                rt.block_on(rec.shutdown()).expect("shutdown");
            }
            total
        })
    });
    g.finish();
}

/// On-CPU nanoseconds of this thread (Linux `schedstat`), to report per-record cost
/// independent of how busy a shared machine is; `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A named operation to time.
type Op<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Prints median on-CPU time per operation over 21 rounds of 2 000 operations.
fn cpu_time_report(_c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _g = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ReportingConfig {
        spool_dir: Some(dir.path().to_path_buf()),
        max_spool_bytes: 1 << 34,
        ..Default::default()
    };
    let signer = UsageSigner::from_seed(&[9u8; 32]);
    let rec = Recorder::start_with(&cfg, &identity(), SdkInfo::rust(), Some(signer.clone()))
        .expect("recorder");
    let canonical = UsageRecord::build(
        input(),
        &identity(),
        &SdkInfo::rust(),
        RecordId::new_v7(),
        1,
    )
    .expect("build")
    .canonical_json()
    .expect("canonical");
    let mut ops: Vec<Op<'_>> = vec![
        (
            "record/build_sign_append",
            Box::new(|| drop(rec.record(input()).expect("record"))),
        ),
        (
            "record/sign",
            Box::new(|| drop(signer.sign(canonical.as_bytes()))),
        ),
    ];
    for (name, op) in ops.iter_mut() {
        let mut per_op = Vec::new();
        for _ in 0..21 {
            let Some(a) = thread_cpu_ns() else { return };
            for _ in 0..2000 {
                op();
            }
            let b = thread_cpu_ns().unwrap_or(a);
            per_op.push((b - a) as f64 / 2000.0 / 1000.0);
        }
        per_op.sort_by(f64::total_cmp);
        println!(
            "{name}: median on-CPU time {:.2} us/op (min {:.2})",
            per_op[10], per_op[0]
        );
    }
}

criterion_group!(benches, cpu_time_report, bench_record, bench_reporter);
criterion_main!(benches);
