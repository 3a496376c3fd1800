//! The reporter: a background tokio task that ships spooled records to the collector.
//!
//! Protocol (see `core/data/usage-api.openapi.json`): `POST {collector_url}/v1/usage`
//! with `{"records":[{...record..., "signature":"..."}]}`; the collector answers 200 with
//! `{"accepted":[ids],"duplicate":[ids],"rejected":[{"id":..,"reason":..}]}`.
//!
//! - A batch is sent when `batch_max_records` are pending, when the oldest pending
//!   record has waited `batch_max_age`, or when a flush asks for it.
//! - Network errors, timeouts, 408, 429 and 5xx are retried with full-jitter
//!   exponential backoff (honouring `Retry-After`), for as long as it takes: the records
//!   are safe in the spool. 401/403/404/405 (a misconfigured collector URL or key) are
//!   retried the same way, with the status shown in [`super::SpoolStatus::last_error`].
//! - 413 halves the batch; a single record still too large is dead-lettered.
//! - Any other 4xx rejects the whole batch: it goes to the dead-letter file.
//! - Accepted and duplicate records are dropped from the spool; rejected ones go to the
//!   dead-letter file with the collector's reason. Records the answer does not mention
//!   are sent again (at least once); after [`MAX_UNACKNOWLEDGED_ROUNDS`] answers that
//!   still omit them they are dead-lettered too, so nothing is retried forever.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::spool::{Batch, Spool, SpooledRecord};

/// Answers that leave records unmentioned before those records are dead-lettered.
pub const MAX_UNACKNOWLEDGED_ROUNDS: u32 = 5;
/// Upper bound on the bytes of one request body.
pub const MAX_BATCH_BYTES: u64 = 8 << 20;

/// The collector's answer to one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// Ids stored now.
    #[serde(default)]
    pub accepted: Vec<String>,
    /// Ids the collector already had (a resend).
    #[serde(default)]
    pub duplicate: Vec<String>,
    /// Ids refused for good, with the reason.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

/// One refused record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Record id.
    pub id: String,
    /// Why (e.g. `bad signature`, `unknown api_key_id`).
    pub reason: String,
}

/// Reporter settings (resolved from [`super::ReportingConfig`]).
#[derive(Debug, Clone)]
pub struct ReporterOptions {
    /// Full endpoint URL, `{collector_url}/v1/usage`.
    pub endpoint: String,
    /// Records per batch.
    pub batch_max_records: usize,
    /// Longest a record waits for a fuller batch.
    pub batch_max_age: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// First retry backoff.
    pub initial_backoff: Duration,
    /// Backoff ceiling.
    pub max_backoff: Duration,
}

#[derive(Debug)]
pub(crate) struct Control {
    pub(crate) flush_requested: AtomicBool,
    pub(crate) flush: tokio::sync::Notify,
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
}

/// The running task.
#[derive(Debug)]
pub(crate) struct ReporterHandle {
    pub(crate) ctl: Arc<Control>,
    pub(crate) join: tokio::task::JoinHandle<()>,
}

enum Outcome {
    Answer(BatchResponse),
    Retry { message: String, retry_after: Option<Duration> },
    TooLarge,
    RejectAll(String),
}

pub(crate) fn spawn(spool: Arc<Spool>, opts: ReporterOptions, rt: &tokio::runtime::Handle) -> Result<ReporterHandle, reqwest::Error> {
    // Process-wide rustls provider for https collectors; an already installed one wins.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(opts.request_timeout)
        .user_agent(format!("{}/{}", crate::SDK_NAME, crate::SDK_VERSION))
        .build()?;
    let (stop, _) = tokio::sync::watch::channel(false);
    let ctl = Arc::new(Control { flush_requested: AtomicBool::new(false), flush: tokio::sync::Notify::new(), stop });
    let join = rt.spawn(run(spool, opts, http, ctl.clone()));
    Ok(ReporterHandle { ctl, join })
}

async fn run(spool: Arc<Spool>, opts: ReporterOptions, http: reqwest::Client, ctl: Arc<Control>) {
    let mut stop = ctl.stop.subscribe();
    let mut oldest: Option<Instant> = None;
    let mut max_records = opts.batch_max_records.max(1);
    loop {
        if *stop.borrow() {
            return;
        }
        let pending = spool.pending_records();
        if pending == 0 {
            oldest = None;
            ctl.flush_requested.store(false, Ordering::Release);
            tokio::select! {
                _ = spool.appended.notified() => {}
                _ = ctl.flush.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let first = *oldest.get_or_insert_with(Instant::now);
        let due = first + opts.batch_max_age;
        if (pending as usize) < max_records && !ctl.flush_requested.load(Ordering::Acquire) && Instant::now() < due {
            tokio::select! {
                _ = spool.appended.notified() => {}
                _ = ctl.flush.notified() => {}
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let sp = spool.clone();
        let n = max_records;
        let batch = match tokio::task::spawn_blocking(move || sp.read_batch(n, MAX_BATCH_BYTES)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                spool.set_last_error(Some(format!("reading the spool: {e}")));
                if sleep_or_stop(opts.max_backoff, &mut stop).await {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        if batch.records.is_empty() {
            // Only unreadable bytes were left: move past them.
            let _ = ack(&spool, batch).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        match deliver(&spool, &opts, &http, &batch, &mut stop).await {
            Delivered::Done => {
                if ack(&spool, batch).await.is_ok() {
                    oldest = None;
                    spool.set_last_error(None);
                    max_records = opts.batch_max_records.max(1);
                }
            }
            Delivered::Split => {
                max_records = (batch.records.len() / 2).max(1);
            }
            Delivered::Stopped => return,
        }
    }
}

enum Delivered {
    Done,
    Split,
    Stopped,
}

async fn ack(spool: &Arc<Spool>, batch: Batch) -> Result<(), ()> {
    let sp = spool.clone();
    match tokio::task::spawn_blocking(move || sp.ack(&batch)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            spool.set_last_error(Some(format!("saving the delivery cursor: {e}")));
            Err(())
        }
        Err(_) => Err(()),
    }
}

/// Sleep, unless asked to stop first (returns true then).
async fn sleep_or_stop(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

fn backoff(opts: &ReporterOptions, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(opts.max_backoff);
    }
    let base = opts.initial_backoff.as_millis() as u64;
    let step = base.saturating_mul(1u64 << attempt.min(20)).min(opts.max_backoff.as_millis() as u64).max(1);
    Duration::from_millis(rand::rng().random_range(step / 4..=step))
}

fn body_of(batch: &Batch) -> Vec<u8> {
    let mut body = Vec::with_capacity(batch.bytes as usize + 16);
    body.extend_from_slice(b"{\"records\":[");
    for (i, r) in batch.records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&r.payload);
    }
    body.extend_from_slice(b"]}");
    body
}

async fn post(opts: &ReporterOptions, http: &reqwest::Client, body: Vec<u8>) -> Outcome {
    let resp = match http.post(&opts.endpoint).header(http::header::CONTENT_TYPE, "application/json").body(body).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Retry { message: format!("cannot reach the collector: {e}"), retry_after: None },
    };
    let status = resp.status().as_u16();
    let retry_after = crate::providers::retry_after(resp.headers());
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Retry { message: format!("collector answer cut off: {e}"), retry_after: None },
    };
    match status {
        200..=299 => match serde_json::from_slice::<BatchResponse>(&bytes) {
            Ok(r) => Outcome::Answer(r),
            Err(e) => Outcome::Retry { message: format!("collector answered {status} with an unreadable body: {e}"), retry_after: None },
        },
        413 => Outcome::TooLarge,
        408 | 429 | 500..=599 | 401 | 403 | 404 | 405 => Outcome::Retry {
            message: format!("collector answered HTTP {status}: {}", crate::providers::body_excerpt(&bytes)),
            retry_after,
        },
        _ => Outcome::RejectAll(format!("collector rejected the batch with HTTP {status}: {}", crate::providers::body_excerpt(&bytes))),
    }
}

async fn deliver(
    spool: &Arc<Spool>,
    opts: &ReporterOptions,
    http: &reqwest::Client,
    batch: &Batch,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Delivered {
    let mut attempt = 0u32;
    let mut unacked_rounds = 0u32;
    loop {
        let outcome = tokio::select! {
            o = post(opts, http, body_of(batch)) => o,
            _ = stop.changed() => return Delivered::Stopped,
        };
        let wait = match outcome {
            Outcome::Answer(resp) => {
                let done: HashSet<&str> = resp.accepted.iter().chain(resp.duplicate.iter()).map(String::as_str).collect();
                let rejected: HashMap<&str, &str> = resp.rejected.iter().map(|r| (r.id.as_str(), r.reason.as_str())).collect();
                let missing: Vec<&SpooledRecord> = batch
                    .records
                    .iter()
                    .filter(|r| !done.contains(r.id.as_str()) && !rejected.contains_key(r.id.as_str()))
                    .collect();
                unacked_rounds += 1;
                if missing.is_empty() || unacked_rounds >= MAX_UNACKNOWLEDGED_ROUNDS {
                    let mut dead: Vec<(&SpooledRecord, String)> = batch
                        .records
                        .iter()
                        .filter(|r| !done.contains(r.id.as_str()))
                        .filter_map(|r| rejected.get(r.id.as_str()).map(|why| (r, (*why).to_owned())))
                        .collect();
                    dead.extend(missing.iter().map(|r| {
                        (*r, format!("not acknowledged by the collector after {MAX_UNACKNOWLEDGED_ROUNDS} answers"))
                    }));
                    return dead_letter_then(spool, &dead, stop).await;
                }
                spool.set_last_error(Some(format!("collector did not acknowledge {} of {} records; resending", missing.len(), batch.records.len())));
                backoff(opts, attempt, None)
            }
            Outcome::Retry { message, retry_after } => {
                spool.set_last_error(Some(message));
                backoff(opts, attempt, retry_after)
            }
            Outcome::TooLarge => {
                if batch.records.len() > 1 {
                    return Delivered::Split;
                }
                let dead: Vec<(&SpooledRecord, String)> =
                    batch.records.iter().map(|r| (r, "collector answered HTTP 413 for this single record".to_owned())).collect();
                return dead_letter_then(spool, &dead, stop).await;
            }
            Outcome::RejectAll(why) => {
                let dead: Vec<(&SpooledRecord, String)> = batch.records.iter().map(|r| (r, why.clone())).collect();
                return dead_letter_then(spool, &dead, stop).await;
            }
        };
        attempt = attempt.saturating_add(1);
        if sleep_or_stop(wait, stop).await {
            return Delivered::Stopped;
        }
    }
}

/// Write the dead letters; only then may the batch be acknowledged. If the dead-letter
/// file cannot be written the batch stays in the spool and is sent again later.
async fn dead_letter_then(
    spool: &Arc<Spool>,
    dead: &[(&SpooledRecord, String)],
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Delivered {
    loop {
        match spool.dead_letter(dead) {
            Ok(()) => return Delivered::Done,
            Err(e) => {
                spool.set_last_error(Some(format!("writing the dead-letter file: {e}")));
                if sleep_or_stop(Duration::from_secs(1), stop).await {
                    return Delivered::Stopped;
                }
            }
        }
    }
}
