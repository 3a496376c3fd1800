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
//!
//! Mobile apps steer it through a [`LinkState`] (see `Recorder::suspend`, `resume`,
//! `set_network_class`):
//! - suspended or [`NetworkClass::Offline`]: nothing is sent. Records keep being
//!   spooled; the spool is fsynced once on entering this state (the OS may freeze or kill
//!   a backgrounded app); an upload in flight or a retry wait is abandoned (the batch
//!   stays in the spool and goes again later; the collector drops duplicates).
//! - leaving that state sends everything that waited at once (one upload, not one per
//!   record), whatever the batching policy.
//! - [`NetworkClass::Cellular`]: batches of `cellular_batch_max_records`, waiting up to
//!   `cellular_batch_max_age`: fewer, bigger uploads wake the radio less often.
//! - a network change during a retry wait retries at once, from the first backoff step.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::delivery::{Delivery, DeliveryEvent};
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

/// The kind of network the device is on, as the app reports it (the SDK does not probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkClass {
    /// Unmetered (Wi-Fi, Ethernet): the normal batching policy. The default.
    #[default]
    Wifi,
    /// Metered mobile data: bigger batches and longer waits.
    Cellular,
    /// No network: records are held in the spool, nothing is sent.
    Offline,
}

impl NetworkClass {
    /// The lowercase name (`wifi`, `cellular`, `offline`).
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkClass::Wifi => "wifi",
            NetworkClass::Cellular => "cellular",
            NetworkClass::Offline => "offline",
        }
    }
}

/// What the app told the reporter about its situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LinkState {
    /// The app is in the background (`Recorder::suspend`).
    pub suspended: bool,
    /// The network class (`Recorder::set_network_class`).
    pub network: NetworkClass,
}

impl LinkState {
    /// True when nothing may be sent: suspended or offline.
    pub fn holds(&self) -> bool {
        self.suspended || self.network == NetworkClass::Offline
    }
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
    /// Records per batch on cellular.
    pub cellular_batch_max_records: usize,
    /// Longest a record waits for a fuller batch on cellular.
    pub cellular_batch_max_age: Duration,
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

impl ReporterOptions {
    /// `(records per batch, longest wait)` on this network.
    fn batching(&self, network: NetworkClass) -> (usize, Duration) {
        match network {
            NetworkClass::Cellular => (
                self.cellular_batch_max_records.max(1),
                self.cellular_batch_max_age,
            ),
            NetworkClass::Wifi | NetworkClass::Offline => {
                (self.batch_max_records.max(1), self.batch_max_age)
            }
        }
    }
}

type Link = tokio::sync::watch::Receiver<LinkState>;

enum Outcome {
    Answer(BatchResponse),
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
    TooLarge,
    RejectAll(String),
}

pub(crate) fn spawn(
    spool: Arc<Spool>,
    opts: ReporterOptions,
    link: Link,
    delivery: Arc<Delivery>,
    rt: &tokio::runtime::Handle,
) -> Result<ReporterHandle, reqwest::Error> {
    // Process-wide rustls provider for https collectors; an already installed one wins.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(opts.request_timeout)
        .user_agent(format!("{}/{}", crate::SDK_NAME, crate::SDK_VERSION))
        .build()?;
    let (stop, _) = tokio::sync::watch::channel(false);
    let ctl = Arc::new(Control {
        flush_requested: AtomicBool::new(false),
        flush: tokio::sync::Notify::new(),
        stop,
    });
    let join = rt.spawn(run(spool, opts, http, ctl.clone(), link, delivery));
    Ok(ReporterHandle { ctl, join })
}

async fn run(
    spool: Arc<Spool>,
    opts: ReporterOptions,
    http: reqwest::Client,
    ctl: Arc<Control>,
    mut link: Link,
    delivery: Arc<Delivery>,
) {
    let mut stop = ctl.stop.subscribe();
    let mut oldest: Option<Instant> = None;
    // Set after a 413: the batch size that the collector may accept.
    let mut split: Option<usize> = None;
    let mut was_held = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let state = *link.borrow_and_update();
        if state.holds() {
            if !was_held {
                was_held = true;
                // Make what is spooled durable before the OS may freeze or kill the app.
                let sp = spool.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || sp.sync()).await {
                    spool.set_last_error(Some(format!("syncing the spool on suspend: {e}")));
                }
            }
            tokio::select! {
                r = link.changed() => if r.is_err() { return },
                _ = stop.changed() => {}
            }
            continue;
        }
        if was_held {
            // Resumed or back online: what waited goes now, in full batches.
            was_held = false;
            ctl.flush_requested.store(true, Ordering::Release);
        }
        let (batch_records, batch_age) = opts.batching(state.network);
        let max_records = split.unwrap_or(batch_records).max(1);
        let pending = spool.pending_records();
        if pending == 0 {
            oldest = None;
            ctl.flush_requested.store(false, Ordering::Release);
            tokio::select! {
                _ = spool.appended.notified() => {}
                _ = ctl.flush.notified() => {}
                r = link.changed() => if r.is_err() { return },
                _ = stop.changed() => {}
            }
            continue;
        }
        let first = *oldest.get_or_insert_with(Instant::now);
        let due = first + batch_age;
        if (pending as usize) < max_records
            && !ctl.flush_requested.load(Ordering::Acquire)
            && Instant::now() < due
        {
            tokio::select! {
                _ = spool.appended.notified() => {}
                _ = ctl.flush.notified() => {}
                _ = tokio::time::sleep_until(due.into()) => {}
                r = link.changed() => if r.is_err() { return },
                _ = stop.changed() => {}
            }
            continue;
        }
        let sp = spool.clone();
        let n = max_records;
        let batch =
            match tokio::task::spawn_blocking(move || sp.read_batch(n, MAX_BATCH_BYTES)).await {
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
        match deliver(
            &spool, &opts, &http, &batch, &mut stop, &mut link, &delivery,
        )
        .await
        {
            Delivered::Done => {
                if ack(&spool, batch).await.is_ok() {
                    oldest = None;
                    spool.set_last_error(None);
                    split = None;
                }
            }
            Delivered::Split => {
                split = Some((batch.records.len() / 2).max(1));
            }
            // The loop top sees the held state and waits.
            Delivered::Held => {}
            Delivered::Stopped => return,
        }
    }
}

enum Delivered {
    Done,
    Split,
    /// Suspended or offline meanwhile: the batch stays in the spool.
    Held,
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
    crate::retry::ExponentialBackoff {
        initial: opts.initial_backoff,
        max: opts.max_backoff,
    }
    .delay(attempt, &mut crate::retry::ThreadJitter)
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
    let resp = match http
        .post(&opts.endpoint)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                message: format!("cannot reach the collector: {e}"),
                retry_after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    let retry_after = crate::http_reply::retry_after(resp.headers());
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Retry {
                message: format!("collector answer cut off: {e}"),
                retry_after: None,
            };
        }
    };
    match status {
        200..=299 => match serde_json::from_slice::<BatchResponse>(&bytes) {
            Ok(r) => Outcome::Answer(r),
            Err(e) => Outcome::Retry {
                message: format!("collector answered {status} with an unreadable body: {e}"),
                retry_after: None,
            },
        },
        413 => Outcome::TooLarge,
        408 | 429 | 500..=599 | 401 | 403 | 404 | 405 => Outcome::Retry {
            message: format!(
                "collector answered HTTP {status}: {}",
                crate::http_reply::body_excerpt(&bytes)
            ),
            retry_after,
        },
        _ => Outcome::RejectAll(format!(
            "collector rejected the batch with HTTP {status}: {}",
            crate::http_reply::body_excerpt(&bytes)
        )),
    }
}

async fn deliver(
    spool: &Arc<Spool>,
    opts: &ReporterOptions,
    http: &reqwest::Client,
    batch: &Batch,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    link: &mut Link,
    delivery: &Delivery,
) -> Delivered {
    let mut attempt = 0u32;
    let mut unacked_rounds = 0u32;
    loop {
        let outcome = tokio::select! {
            o = post(opts, http, body_of(batch)) => o,
            _ = stop.changed() => return Delivered::Stopped,
            _ = link.wait_for(LinkState::holds) => return Delivered::Held,
        };
        let wait = match outcome {
            Outcome::Answer(resp) => {
                let done: HashSet<&str> = resp
                    .accepted
                    .iter()
                    .chain(resp.duplicate.iter())
                    .map(String::as_str)
                    .collect();
                let rejected: HashMap<&str, &str> = resp
                    .rejected
                    .iter()
                    .map(|r| (r.id.as_str(), r.reason.as_str()))
                    .collect();
                let missing: Vec<&SpooledRecord> = batch
                    .records
                    .iter()
                    .filter(|r| {
                        !done.contains(r.id.as_str()) && !rejected.contains_key(r.id.as_str())
                    })
                    .collect();
                unacked_rounds += 1;
                if missing.is_empty() || unacked_rounds >= MAX_UNACKNOWLEDGED_ROUNDS {
                    let mut dead: Vec<(&SpooledRecord, String)> = batch
                        .records
                        .iter()
                        .filter(|r| !done.contains(r.id.as_str()))
                        .filter_map(|r| {
                            rejected
                                .get(r.id.as_str())
                                .map(|why| (r, (*why).to_owned()))
                        })
                        .collect();
                    dead.extend(missing.iter().map(|r| {
                        (*r, format!("not acknowledged by the collector after {MAX_UNACKNOWLEDGED_ROUNDS} answers"))
                    }));
                    let delivered: Vec<String> = batch
                        .records
                        .iter()
                        .filter(|r| done.contains(r.id.as_str()))
                        .map(|r| r.id.clone())
                        .collect();
                    return dead_letter_then(spool, &dead, delivered, delivery, stop).await;
                }
                spool.set_last_error(Some(format!(
                    "collector did not acknowledge {} of {} records; resending",
                    missing.len(),
                    batch.records.len()
                )));
                backoff(opts, attempt, None)
            }
            Outcome::Retry {
                message,
                retry_after,
            } => {
                spool.set_last_error(Some(message));
                backoff(opts, attempt, retry_after)
            }
            Outcome::TooLarge => {
                if batch.records.len() > 1 {
                    return Delivered::Split;
                }
                let dead: Vec<(&SpooledRecord, String)> = batch
                    .records
                    .iter()
                    .map(|r| {
                        (
                            r,
                            "collector answered HTTP 413 for this single record".to_owned(),
                        )
                    })
                    .collect();
                return dead_letter_then(spool, &dead, Vec::new(), delivery, stop).await;
            }
            Outcome::RejectAll(why) => {
                let dead: Vec<(&SpooledRecord, String)> =
                    batch.records.iter().map(|r| (r, why.clone())).collect();
                return dead_letter_then(spool, &dead, Vec::new(), delivery, stop).await;
            }
        };
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                if *stop.borrow() {
                    return Delivered::Stopped;
                }
            }
            _ = stop.changed() => return Delivered::Stopped,
            r = link.changed() => {
                if r.is_err() || link.borrow().holds() {
                    return Delivered::Held;
                }
                // Another network: worth trying at once, from the first backoff step.
                attempt = 0;
            }
        }
    }
}

/// Write the dead letters; only then may the batch be acknowledged (and the outcome
/// counted: `delivered` ids, refusals with their reasons). If the dead-letter file cannot
/// be written the batch stays in the spool and is sent again later.
async fn dead_letter_then(
    spool: &Arc<Spool>,
    dead: &[(&SpooledRecord, String)],
    delivered: Vec<String>,
    delivery: &Delivery,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Delivered {
    loop {
        match spool.dead_letter(dead) {
            Ok(()) => {
                let refused = dead
                    .iter()
                    .map(|(r, why)| (r.id.clone(), why.clone()))
                    .collect();
                delivery.note(&DeliveryEvent { delivered, refused });
                return Delivered::Done;
            }
            Err(e) => {
                spool.set_last_error(Some(format!("writing the dead-letter file: {e}")));
                if sleep_or_stop(Duration::from_secs(1), stop).await {
                    return Delivered::Stopped;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};

    use super::*;
    use crate::config::{Identity, Secret};
    use crate::usage::{Recorder, ReportingConfig, UsageRecordInput, generate_key};

    /// Accepts every record; answers 500 to the first `fail_first` requests. Keeps the
    /// size of every batch it stored and when it arrived.
    #[derive(Default)]
    struct Fake {
        fail_first: usize,
        requests: AtomicUsize,
        batches: Mutex<Vec<(usize, Instant)>>,
    }

    impl Fake {
        fn stored(&self) -> usize {
            self.batches.lock().unwrap().iter().map(|b| b.0).sum()
        }
        fn sizes(&self) -> Vec<usize> {
            self.batches.lock().unwrap().iter().map(|b| b.0).collect()
        }
    }

    async fn handle(State(f): State<Arc<Fake>>, body: axum::body::Bytes) -> Response {
        if f.requests.fetch_add(1, Ordering::SeqCst) < f.fail_first {
            return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let ids: Vec<String> = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        f.batches.lock().unwrap().push((ids.len(), Instant::now()));
        axum::Json(BatchResponse {
            accepted: ids,
            ..Default::default()
        })
        .into_response()
    }

    async fn fake(fail_first: usize) -> (String, Arc<Fake>) {
        let f = Arc::new(Fake {
            fail_first,
            ..Default::default()
        });
        let app = axum::Router::new()
            .route("/v1/usage", axum::routing::post(handle))
            .with_state(f.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), f)
    }

    fn recorder(
        dir: &std::path::Path,
        url: String,
        tweak: impl FnOnce(&mut ReportingConfig),
    ) -> Recorder {
        let (signer, _) = generate_key();
        let mut cfg = ReportingConfig {
            spool_dir: Some(dir.to_path_buf()),
            collector_url: Some(url),
            // The key as the app would hand it over, in memory.
            signing_key: Some(signer.seed_base64()),
            batch_max_records: 2,
            batch_max_age_ms: 20,
            request_timeout_ms: 2_000,
            retry_initial_backoff_ms: 20,
            retry_max_backoff_ms: 100,
            shutdown_timeout_ms: 500,
            ..Default::default()
        };
        tweak(&mut cfg);
        let ident = Identity {
            org: Some("o".into()),
            api_key_id: Some("k".into()),
            ..Default::default()
        };
        Recorder::start(&cfg, &ident).unwrap()
    }

    fn record(r: &Recorder, n: usize) {
        for _ in 0..n {
            r.record(UsageRecordInput {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                prompt_tokens: 1,
                ..Default::default()
            })
            .unwrap();
        }
    }

    async fn wait_until(what: &str, ms: u64, cond: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_millis(ms);
        while !cond() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suspended_records_are_spooled_not_sent_and_go_on_resume() {
        let (url, fake) = fake(0).await;
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path(), url, |_| {});
        r.suspend();
        assert!(r.link_state().suspended && r.link_state().holds());
        record(&r, 5);
        tokio::time::sleep(Duration::from_millis(300)).await; // 15 batch ages
        assert_eq!(
            fake.requests.load(Ordering::SeqCst),
            0,
            "sent while suspended"
        );
        assert_eq!(r.status().pending_records, 5);
        // flush() does not wait while nothing may be sent.
        let t = Instant::now();
        let out = r.flush(Duration::from_secs(5)).await.unwrap();
        assert!(
            !out.drained && out.pending_records == 5 && t.elapsed() < Duration::from_secs(1),
            "{out:?}"
        );
        let t = Instant::now();
        r.resume();
        assert!(t.elapsed() < Duration::from_millis(50), "resume blocked");
        wait_until("delivery after resume", 3_000, || fake.stored() == 5).await;
        // Everything that waited went at once, in full batches (2 + 2 + 1).
        assert_eq!(fake.sizes(), vec![2, 2, 1]);
        assert!(r.flush(Duration::from_secs(2)).await.unwrap().drained);
        // A second resume is harmless.
        r.resume();
        record(&r, 1);
        wait_until("delivery when running", 3_000, || fake.stored() == 6).await;
        r.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offline_holds_like_suspended_and_back_online_sends() {
        let (url, fake) = fake(0).await;
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path(), url, |_| {});
        r.set_network_class(NetworkClass::Offline);
        record(&r, 3);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            fake.requests.load(Ordering::SeqCst),
            0,
            "sent while offline"
        );
        // Suspend + back online: still held until resumed.
        r.suspend();
        r.set_network_class(NetworkClass::Wifi);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            fake.requests.load(Ordering::SeqCst),
            0,
            "sent while suspended"
        );
        r.resume();
        wait_until("delivery when online", 3_000, || fake.stored() == 3).await;
        r.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cellular_batches_bigger_and_waits_longer() {
        let (url, fake) = fake(0).await;
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path(), url, |c| {
            c.cellular_batch_max_records = 5;
            c.cellular_batch_max_age_ms = 600;
        });
        r.set_network_class(NetworkClass::Cellular);
        assert_eq!(r.link_state().network, NetworkClass::Cellular);
        record(&r, 4);
        // On Wi-Fi these would have gone after 20 ms as 2 + 2.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            fake.requests.load(Ordering::SeqCst),
            0,
            "cellular did not wait for a fuller batch"
        );
        record(&r, 1);
        wait_until("a full cellular batch", 3_000, || fake.stored() == 5).await;
        assert_eq!(fake.sizes(), vec![5]);
        // A lone record waits for the cellular age, not the Wi-Fi one.
        let t = Instant::now();
        record(&r, 1);
        wait_until("the aged cellular batch", 5_000, || fake.stored() == 6).await;
        let waited = fake.batches.lock().unwrap()[1].1 - t;
        assert!(
            waited >= Duration::from_millis(500),
            "sent after {waited:?}, before the cellular age"
        );
        // Back on Wi-Fi: the Wi-Fi policy again.
        r.set_network_class(NetworkClass::Wifi);
        let t = Instant::now();
        record(&r, 1);
        wait_until("the Wi-Fi batch", 3_000, || fake.stored() == 7).await;
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "Wi-Fi waited {:?}",
            t.elapsed()
        );
        r.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suspend_abandons_a_retry_wait_and_resume_retries_at_once() {
        let (url, fake) = fake(1).await;
        let dir = tempfile::tempdir().unwrap();
        // After the first 500 the reporter would wait 10-40 s.
        let r = recorder(dir.path(), url, |c| {
            c.retry_initial_backoff_ms = 40_000;
            c.retry_max_backoff_ms = 40_000;
        });
        record(&r, 2);
        wait_until("the failing first attempt", 3_000, || {
            fake.requests.load(Ordering::SeqCst) == 1
        })
        .await;
        r.suspend();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
        let t = Instant::now();
        r.resume();
        wait_until("the retry after resume", 3_000, || fake.stored() == 2).await;
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(r.status().pending_records, 0);
        r.shutdown().await.unwrap();
    }

    #[test]
    fn cellular_settings_are_validated_and_the_in_memory_key_is_never_serialized() {
        let c = ReportingConfig {
            cellular_batch_max_records: 0,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("reporting.cellular_batch_max_records")
        );
        let c = ReportingConfig {
            cellular_batch_max_age_ms: 0,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("reporting.cellular_batch_max_age_ms")
        );

        let (signer, public) = generate_key();
        let seed = signer.seed_base64();
        let c = ReportingConfig {
            signing_key: Some(seed.clone()),
            signing_key_file: Some("/nonexistent/key".into()),
            ..Default::default()
        };
        // The in-memory key wins over the file.
        assert_eq!(c.load_signer().unwrap().public_key(), public);
        let text = toml::to_string(&c).unwrap();
        assert!(
            !text.contains(seed.expose()) && !text.contains("signing_key ="),
            "{text}"
        );
        assert!(!format!("{c:?}").contains(seed.expose()));
        // And a config file cannot set it.
        let e = crate::Config::from_toml_str(
            &format!("[reporting]\nsigning_key = \"{}\"\n", seed.expose()),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("signing_key"), "{e}");
        let bad = ReportingConfig {
            signing_key: Some(Secret::new("not a key")),
            ..Default::default()
        };
        assert!(
            bad.load_signer()
                .unwrap_err()
                .to_string()
                .contains("in memory")
        );
    }
}
