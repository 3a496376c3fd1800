//! The reporter against a fake collector (axum on 127.0.0.1:0): retries through 500s
//! and timeouts, exactly-once storage, partial rejection to the dead-letter file,
//! restart from the spool.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use gaterouter_usage::Identity;
use gaterouter_usage::signing::verify_wire;
use gaterouter_usage::spool::DEAD_LETTER_FILE;
use gaterouter_usage::{
    BatchResponse, Recorder, Rejected, ReportingConfig, UsageRecordInput, UsageSigner, generate_key,
};
use serde_json::Value;

/// What the fake collector does with request number n (0-based).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Ok,
    Fail500,
    Hang,
    StoreThenHang,
    Down503,
    /// Store and answer, but leave the first id of each batch out of the answer.
    OmitFirst,
    /// 413 for batches of more than 5 records.
    LimitFive,
    /// 400 for the whole batch.
    BadRequest,
}

struct Collector {
    public_key: String,
    script: Vec<Act>,
    always: Act,
    requests: AtomicUsize,
    stored: std::sync::Mutex<HashMap<String, u64>>,
    seen: AtomicUsize,
}

async fn handle(State(c): State<Arc<Collector>>, body: Bytes) -> Response {
    let n = c.requests.fetch_add(1, Ordering::SeqCst);
    let act = c.script.get(n).copied().unwrap_or(c.always);
    match act {
        Act::Fail500 => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Act::Down503 => return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        Act::Hang => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Act::BadRequest => return (StatusCode::BAD_REQUEST, "schema mismatch").into_response(),
        Act::Ok | Act::StoreThenHang | Act::OmitFirst | Act::LimitFive => {}
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    if act == Act::LimitFive && v["records"].as_array().unwrap().len() > 5 {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let mut resp = BatchResponse::default();
    {
        let mut stored = c.stored.lock().unwrap();
        for r in v["records"].as_array().unwrap() {
            c.seen.fetch_add(1, Ordering::SeqCst);
            let id = r["id"].as_str().unwrap().to_owned();
            let rec = match verify_wire(&r.to_string(), &c.public_key) {
                Ok(rec) => rec,
                Err(e) => {
                    resp.rejected.push(Rejected {
                        id,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if rec.tags.get("bad").is_some_and(|b| b == "1") {
                resp.rejected.push(Rejected {
                    id,
                    reason: "policy: bad tag".into(),
                });
            } else if stored.contains_key(&id) {
                resp.duplicate.push(id);
            } else {
                stored.insert(id.clone(), rec.seq);
                resp.accepted.push(id);
            }
        }
    }
    if act == Act::OmitFirst {
        let first = v["records"][0]["id"].as_str().unwrap().to_owned();
        resp.accepted.retain(|id| *id != first);
        resp.duplicate.retain(|id| *id != first);
    }
    if act == Act::StoreThenHang {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    axum::Json(resp).into_response()
}

async fn collector(public_key: &str, script: Vec<Act>, always: Act) -> (String, Arc<Collector>) {
    let c = Arc::new(Collector {
        public_key: public_key.to_owned(),
        script,
        always,
        requests: AtomicUsize::new(0),
        stored: Default::default(),
        seen: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/v1/usage", post(handle))
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), c)
}

fn identity() -> Identity {
    Identity {
        org: Some("org".into()),
        project: Some("p".into()),
        api_key_id: Some("key_1".into()),
        ..Default::default()
    }
}

fn input(i: u64, bad: bool) -> UsageRecordInput {
    let mut tags = BTreeMap::new();
    tags.insert("i".to_owned(), i.to_string());
    if bad {
        tags.insert("bad".to_owned(), "1".to_owned());
    }
    UsageRecordInput {
        ts_start: 1_000 + i,
        ts_end: 2_000 + i,
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        prompt_tokens: 10,
        completion_tokens: 2,
        tags,
        ..Default::default()
    }
}

fn cfg(dir: &Path, url: Option<String>) -> ReportingConfig {
    ReportingConfig {
        spool_dir: Some(dir.to_path_buf()),
        collector_url: url,
        batch_max_records: 20,
        batch_max_age_ms: 50,
        fsync_interval_ms: 20,
        request_timeout_ms: 400,
        retry_initial_backoff_ms: 20,
        retry_max_backoff_ms: 200,
        shutdown_timeout_ms: 500,
        ..Default::default()
    }
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_500s_and_timeouts_then_delivers_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, pk) = generate_key();
    let script = vec![Act::Fail500, Act::Hang, Act::Fail500, Act::StoreThenHang];
    let (url, c) = collector(&pk, script, Act::Ok).await;
    let rec = Recorder::start_with(
        &cfg(dir.path(), Some(url)),
        &identity(),
        Default::default(),
        Some(signer),
    )
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..75 {
        ids.push(rec.record(input(i, false)).unwrap().0);
    }
    let out = rec.flush(Duration::from_secs(30)).await.unwrap();
    assert!(out.drained, "{out:?} {:?}", rec.status());
    let stored = c.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 75);
    for id in &ids {
        assert!(stored.contains_key(id), "{id} not delivered");
    }
    // The store-then-timeout batch was sent again and reported as duplicate.
    assert!(c.seen.load(Ordering::SeqCst) > 75, "no resend happened");
    assert!(c.requests.load(Ordering::SeqCst) >= 5);
    let st = rec.status();
    assert_eq!(
        (st.pending_records, st.dead_letters, st.delivered_records),
        (0, 0, 75),
        "{st:?}"
    );
    assert_eq!(st.last_error, None);
    rec.shutdown().await.unwrap();
    assert!(segments(dir.path()) <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_go_to_the_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, pk) = generate_key();
    let (url, c) = collector(&pk, vec![], Act::Ok).await;
    let rec = Recorder::start_with(
        &cfg(dir.path(), Some(url)),
        &identity(),
        Default::default(),
        Some(signer),
    )
    .unwrap();
    let mut bad_ids = Vec::new();
    let mut good_ids = Vec::new();
    for i in 0..30 {
        let bad = i % 3 == 0;
        let id = rec.record(input(i, bad)).unwrap().0;
        if bad {
            bad_ids.push(id)
        } else {
            good_ids.push(id)
        }
    }
    let out = rec.flush(Duration::from_secs(10)).await.unwrap();
    assert!(out.drained && out.pending_records == 0, "{out:?}");
    let stored = c.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 20);
    assert!(good_ids.iter().all(|id| stored.contains_key(id)));
    let dl = std::fs::read_to_string(dir.path().join(DEAD_LETTER_FILE)).unwrap();
    let lines: Vec<Value> = dl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    for (l, id) in lines.iter().zip(&bad_ids) {
        assert_eq!(l["record"]["id"].as_str().unwrap(), id);
        assert_eq!(l["reason"], "policy: bad tag");
        // The dead letter keeps the signed record intact.
        verify_wire(&l["record"].to_string(), &pk).unwrap();
    }
    assert_eq!(rec.status().dead_letters, 10);
    // Nothing is retried afterwards.
    let before = c.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.requests.load(Ordering::SeqCst), before);
    rec.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, pk) = generate_key();
    let seed = signer.seed_base64();
    let (down_url, _down) = collector(&pk, vec![], Act::Down503).await;
    let rec = Recorder::start_with(
        &cfg(dir.path(), Some(down_url)),
        &identity(),
        Default::default(),
        Some(signer),
    )
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(rec.record(input(i, false)).unwrap().0);
    }
    let out = rec.shutdown().await.unwrap();
    assert!(!out.drained && out.pending_records == 25, "{out:?}");
    assert!(
        rec.record(input(99, false)).is_err(),
        "closed recorder refuses records"
    );
    let last_error = rec.status().last_error.unwrap_or_default();
    assert!(last_error.contains("503"), "{last_error}");
    drop(rec);

    let (url, c) = collector(&pk, vec![], Act::Ok).await;
    let signer = UsageSigner::from_key_text(seed.expose(), "test").unwrap();
    let rec = Recorder::start_with(
        &cfg(dir.path(), Some(url)),
        &identity(),
        Default::default(),
        Some(signer),
    )
    .unwrap();
    // The new reporter may already have sent a full batch (20) by the time we look:
    // what it found is pending plus what it delivered since it opened the spool.
    let st = rec.status();
    assert_eq!(st.pending_records + st.delivered_records, 25, "{st:?}");
    ids.push(rec.record(input(25, false)).unwrap().0);
    let out = rec.flush(Duration::from_secs(10)).await.unwrap();
    assert!(out.drained, "{out:?}");
    let stored = c.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 26);
    for id in &ids {
        assert!(stored.contains_key(id));
    }
    // seq continued across the restart.
    let mut seqs: Vec<u64> = stored.values().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=26).collect::<Vec<_>>());
    rec.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_collector_records_stay_in_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = generate_key();
    let rec = Recorder::start_with(
        &cfg(dir.path(), None),
        &identity(),
        Default::default(),
        Some(signer),
    )
    .unwrap();
    for i in 0..5 {
        rec.record(input(i, false)).unwrap();
    }
    let out = rec.flush(Duration::from_millis(100)).await.unwrap();
    assert_eq!((out.drained, out.pending_records), (false, 5));
    rec.shutdown().await.unwrap();
    assert_eq!(
        gaterouter_usage::Spool::inspect(dir.path(), 1 << 30)
            .unwrap()
            .pending_records,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_are_split_on_413() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, pk) = generate_key();
    let (url, c) = collector(&pk, vec![], Act::LimitFive).await;
    let rec = Recorder::start_with(
        &cfg(dir.path(), Some(url)),
        &identity(),
        Default::default(),
        Some(signer),
    )
    .unwrap();
    for i in 0..40 {
        rec.record(input(i, false)).unwrap();
    }
    let out = rec.flush(Duration::from_secs(10)).await.unwrap();
    assert!(out.drained, "{out:?}");
    assert_eq!(c.stored.lock().unwrap().len(), 40);
    assert_eq!(rec.status().dead_letters, 0);
    rec.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_acknowledged_records_are_dead_lettered_not_retried_forever() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, pk) = generate_key();
    let (url, c) = collector(&pk, vec![], Act::OmitFirst).await;
    // One batch, sent by the flush: the age threshold never fires first.
    let c2 = ReportingConfig {
        batch_max_age_ms: 600_000,
        ..cfg(dir.path(), Some(url))
    };
    let rec = Recorder::start_with(&c2, &identity(), Default::default(), Some(signer)).unwrap();
    let first = rec.record(input(0, false)).unwrap().0;
    for i in 1..10 {
        rec.record(input(i, false)).unwrap();
    }
    let out = rec.flush(Duration::from_secs(10)).await.unwrap();
    assert!(out.drained, "{out:?}");
    assert_eq!(
        c.requests.load(Ordering::SeqCst),
        gaterouter_usage::reporter::MAX_UNACKNOWLEDGED_ROUNDS as usize
    );
    let dl = std::fs::read_to_string(dir.path().join(DEAD_LETTER_FILE)).unwrap();
    assert_eq!(dl.lines().count(), 1);
    assert!(
        dl.contains(&first) && dl.contains("not acknowledged"),
        "{dl}"
    );
    rec.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_dead_letters_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, pk) = generate_key();
    let (url, _c) = collector(&pk, vec![], Act::BadRequest).await;
    let rec = Recorder::start_with(
        &cfg(dir.path(), Some(url)),
        &identity(),
        Default::default(),
        Some(signer),
    )
    .unwrap();
    for i in 0..3 {
        rec.record(input(i, false)).unwrap();
    }
    let out = rec.flush(Duration::from_secs(10)).await.unwrap();
    assert!(out.drained, "{out:?}");
    let dl = std::fs::read_to_string(dir.path().join(DEAD_LETTER_FILE)).unwrap();
    assert_eq!(dl.lines().count(), 3);
    assert!(
        dl.contains("HTTP 400") && dl.contains("schema mismatch"),
        "{dl}"
    );
    rec.shutdown().await.unwrap();
}
