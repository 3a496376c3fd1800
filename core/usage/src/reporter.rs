//! The reporter: a background tokio task that ships spooled records to the collector.
//!
//! The behaviour described below (batching, retries, acknowledgements, dead letters, the
//! link state) is decided by the sans-IO [`Uploader`] in `uploader.rs`; this file is the
//! thin driver around it: it reads the clock, asks for the next [`Task`], does that one
//! piece of I/O (spool reads and writes on the blocking pool, the reqwest POST, the
//! waits) and hands the result back.
//!
//! Protocol (see `core/usage/data/usage-api.openapi.json`): `POST {collector_url}/v1/usage`
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::delivery::Delivery;
use super::spool::{Batch, Spool};
pub use super::uploader::{
    BatchResponse, LinkState, MAX_BATCH_BYTES, MAX_UNACKNOWLEDGED_ROUNDS, NetworkClass, Rejected,
};
use super::uploader::{Clock, Resolution, Resolved, Task, UploadOutcome, UploadPolicy, Uploader};
use gaterouter_types::backoff::{ExponentialBackoff, Jitter, ThreadJitter};

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

impl ReporterOptions {
    /// The uploader's part of the settings.
    pub fn policy(&self) -> UploadPolicy {
        UploadPolicy {
            batch_max_records: self.batch_max_records,
            batch_max_age: self.batch_max_age,
            cellular_batch_max_records: self.cellular_batch_max_records,
            cellular_batch_max_age: self.cellular_batch_max_age,
            backoff: ExponentialBackoff {
                initial: self.initial_backoff,
                max: self.max_backoff,
            },
        }
    }
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

type Link = tokio::sync::watch::Receiver<LinkState>;

/// Start the reporter on `clock` and the thread RNG.
pub(crate) fn spawn(
    spool: Arc<Spool>,
    opts: ReporterOptions,
    link: Link,
    delivery: Arc<Delivery>,
    rt: &tokio::runtime::Handle,
    clock: Arc<dyn Clock>,
) -> Result<ReporterHandle, reqwest::Error> {
    spawn_with(
        spool,
        opts,
        link,
        delivery,
        rt,
        clock,
        Box::new(ThreadJitter),
    )
}

/// Start the reporter with this clock and jitter source.
pub(crate) fn spawn_with(
    spool: Arc<Spool>,
    opts: ReporterOptions,
    link: Link,
    delivery: Arc<Delivery>,
    rt: &tokio::runtime::Handle,
    clock: Arc<dyn Clock>,
    jitter: Box<dyn Jitter>,
) -> Result<ReporterHandle, reqwest::Error> {
    // Process-wide rustls provider for https collectors; an already installed one wins.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(opts.request_timeout)
        .user_agent(format!(
            "{}/{}",
            crate::record::SDK_NAME,
            crate::record::SDK_VERSION
        ))
        .build()?;
    let (stop, _) = tokio::sync::watch::channel(false);
    let ctl = Arc::new(Control {
        flush_requested: AtomicBool::new(false),
        flush: tokio::sync::Notify::new(),
        stop,
    });
    let driver = Driver {
        uploader: Uploader::new(opts.policy(), jitter),
        endpoint: opts.endpoint,
        http,
        spool,
        delivery,
        clock,
        ctl: ctl.clone(),
        link,
    };
    let join = rt.spawn(driver.run());
    Ok(ReporterHandle { ctl, join })
}

/// The I/O around the [`Uploader`].
struct Driver {
    uploader: Uploader,
    endpoint: String,
    http: reqwest::Client,
    spool: Arc<Spool>,
    delivery: Arc<Delivery>,
    clock: Arc<dyn Clock>,
    ctl: Arc<Control>,
    link: Link,
}

impl Driver {
    async fn run(mut self) {
        let mut stop = self.ctl.stop.subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            if self.ctl.flush_requested.swap(false, Ordering::AcqRel) {
                self.uploader.flush();
            }
            let state = *self.link.borrow_and_update();
            let task =
                self.uploader
                    .next_task(self.clock.now(), state, self.spool.pending_records());
            let go_on = match task {
                Task::Sync => {
                    // Make what is spooled durable before the OS may freeze or kill the app.
                    let sp = self.spool.clone();
                    let r = match tokio::task::spawn_blocking(move || sp.sync()).await {
                        Ok(Err(e)) => Err(e.to_string()),
                        _ => Ok(()),
                    };
                    self.uploader.on_synced(r);
                    true
                }
                Task::Held => tokio::select! {
                    r = self.link.changed() => r.is_ok(),
                    _ = stop.changed() => true,
                },
                Task::Idle => self.wait(None, &mut stop).await,
                Task::Wait(d) => self.wait(Some(d), &mut stop).await,
                Task::Read {
                    max_records,
                    max_bytes,
                } => {
                    let sp = self.spool.clone();
                    match tokio::task::spawn_blocking(move || sp.read_batch(max_records, max_bytes))
                        .await
                    {
                        Ok(r) => {
                            let now = self.clock.now();
                            self.uploader.on_batch(now, r.map_err(|e| e.to_string()));
                            true
                        }
                        Err(_) => false,
                    }
                }
                Task::Upload(batch) => {
                    let outcome = tokio::select! {
                        o = post(&self.endpoint, &self.http, body_of(&batch)) => Some(o),
                        _ = stop.changed() => None,
                        r = self.link.wait_for(LinkState::holds) => r.is_ok().then_some(UploadOutcome::LinkDown),
                    };
                    match outcome {
                        Some(o) => {
                            let now = self.clock.now();
                            self.uploader.on_result(now, o);
                            true
                        }
                        None => false,
                    }
                }
                Task::Resolve(res) => {
                    let r = settle(&self.spool, &self.delivery, &res).await;
                    let now = self.clock.now();
                    self.uploader.on_resolved(now, r);
                    true
                }
            };
            if let Some(e) = self.uploader.take_error_update() {
                self.spool.set_last_error(e);
            }
            if !go_on {
                return;
            }
        }
    }

    /// Wait for `d` (forever with `None`), an append, a flush or a link change. False
    /// when the link's sender is gone.
    async fn wait(
        &mut self,
        d: Option<Duration>,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let sleep = async {
            match d {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.spool.appended.notified() => true,
            _ = self.ctl.flush.notified() => true,
            _ = sleep => true,
            r = self.link.changed() => r.is_ok(),
            _ = stop.changed() => true,
        }
    }
}

/// Write the dead letters; only then count the outcome and move the cursor.
async fn settle(spool: &Arc<Spool>, delivery: &Delivery, res: &Resolution) -> Resolved {
    if let Err(e) = spool.dead_letter(&res.dead_letters()) {
        return Resolved::DeadLetterFailed(e.to_string());
    }
    if let Some(event) = &res.event {
        delivery.note(event);
    }
    let sp = spool.clone();
    let batch = res.batch.clone();
    match tokio::task::spawn_blocking(move || sp.ack(&batch)).await {
        Ok(Ok(())) => Resolved::Done,
        Ok(Err(e)) => Resolved::AckFailed(e.to_string()),
        Err(e) => Resolved::AckFailed(e.to_string()),
    }
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

async fn post(endpoint: &str, http: &reqwest::Client, body: Vec<u8>) -> UploadOutcome {
    let resp = match http
        .post(endpoint)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return UploadOutcome::Retryable {
                message: format!("cannot reach the collector: {e}"),
                retry_after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    let retry_after = gaterouter_types::http_reply::retry_after(resp.headers());
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return UploadOutcome::Retryable {
                message: format!("collector answer cut off: {e}"),
                retry_after: None,
            };
        }
    };
    match status {
        200..=299 => match serde_json::from_slice::<BatchResponse>(&bytes) {
            Ok(r) => UploadOutcome::Answered(r),
            Err(e) => UploadOutcome::Retryable {
                message: format!("collector answered {status} with an unreadable body: {e}"),
                retry_after: None,
            },
        },
        413 => UploadOutcome::TooLarge,
        408 | 429 | 500..=599 | 401 | 403 | 404 | 405 => UploadOutcome::Retryable {
            message: format!(
                "collector answered HTTP {status}: {}",
                gaterouter_types::http_reply::body_excerpt(&bytes)
            ),
            retry_after,
        },
        _ => UploadOutcome::RejectedAll(format!(
            "collector rejected the batch with HTTP {status}: {}",
            gaterouter_types::http_reply::body_excerpt(&bytes)
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};

    use super::*;
    use crate::config::ReportingConfig;
    use crate::record::UsageRecordInput;
    use crate::recorder::Recorder;
    use crate::signing::generate_key;
    use gaterouter_types::identity::Identity;
    use gaterouter_types::secret::Secret;

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
        // The collector stores before it answers; the cursor moves (an fsync) after.
        wait_until("the acknowledgement", 3_000, || {
            r.status().pending_records == 0
        })
        .await;
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
        // (A config file cannot set it: `gaterouter::config`'s tests.)
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
