//! OpenTelemetry export: a background task that sends stored usage records to an
//! OTLP/HTTP receiver (JSON encoding) as spans and metrics (the mapping is the pure
//! `otlp.rs`). Off unless `otlp_endpoint` is set.
//!
//! Decoupled from ingest: the task polls `usage_records` in `(received_ms, id)` order
//! after a cursor kept in `otel_export_cursor`, one cursor per signal (`otlp.traces`,
//! `otlp.metrics`), so a receiver that takes traces but refuses metrics never makes
//! traces go twice. Per signal and poll:
//!
//! 1. claim the cursor: on PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED` in a
//!    transaction held until the end (another collector of the same database that holds
//!    it is exporting that signal: skip this poll); on SQLite read it;
//! 2. read at most `otlp_batch` records after it whose `received_ms` is at least
//!    `otlp_settle_ms` old (ingest stamps `received_ms` before it commits, so younger
//!    records could still be joined by an earlier stamp committing late);
//! 3. `POST {otlp_endpoint}/v1/traces` (or `/v1/metrics`);
//! 4. on a 2xx answer only, move the cursor past the batch (on SQLite only if it did not
//!    move meanwhile) and commit.
//!
//! Delivery is at-least-once: a batch whose answer is lost, or whose cursor update
//! fails, is sent again; spans keep their ids (trace id = record UUID), so a trace store
//! overwrites or deduplicates them, while a repeated metrics batch counts twice. In the
//! normal case (2xx answered and recorded) each record is sent once per signal, also
//! with several collectors on one PostgreSQL. Failures are retried with exponential
//! backoff (honouring `Retry-After`), counted in `/metrics`
//! (`gaterouter_otel_failed_total`) and logged at warn; records are never dropped, so a
//! receiver that keeps refusing a batch (HTTP 400) holds the export until it is fixed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gaterouter::retry::{ExponentialBackoff, NoJitter};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

pub use crate::config::{SIGNALS, Signal};

use crate::config::{CollectorConfig, ConfigError};
use crate::db::{Backend, Db, DbError, dberr};
use crate::otlp::{ExportRecord, Producer};
use crate::store::export::{Cursor, advance, read_batch, read_cursor};

/// What the exporter does per signal (the enum itself is configuration).
impl Signal {
    /// Its row in `otel_export_cursor`.
    pub fn cursor(self) -> &'static str {
        match self {
            Signal::Traces => "otlp.traces",
            Signal::Metrics => "otlp.metrics",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
    /// The `partialSuccess` field counting what the receiver rejected.
    fn rejected_field(self) -> &'static str {
        match self {
            Signal::Traces => "rejectedSpans",
            Signal::Metrics => "rejectedDataPoints",
        }
    }
}

/// What one export attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many records were delivered and the cursor moved past them.
    Exported(usize),
    /// Nothing (settled) to export.
    Idle,
    /// Another collector of this database holds the cursor (PostgreSQL).
    Busy,
}

/// Why an export attempt failed (the batch is retried).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading records or moving the cursor failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// No HTTP answer.
    #[error("POST {url} failed: {reason}")]
    Transport {
        /// Where.
        url: String,
        /// Why (connection refused, timeout, ...).
        reason: String,
    },
    /// A non-2xx answer.
    #[error("POST {url} answered HTTP {status}: {body}")]
    Status {
        /// Where.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the answer body (escaped).
        body: String,
        /// `Retry-After` (seconds, or an HTTP date as the time left until it).
        retry_after: Option<Duration>,
    },
}

/// Longest wait between two attempts of a failing export.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait before attempt `failures + 1` of a failing export: `interval` doubled per
/// failure after the first, at most [`MAX_BACKOFF`] (but never below `interval`), and at
/// least the receiver's `Retry-After` (itself capped at [`MAX_BACKOFF`]).
///
/// The steps are the core's one [`ExponentialBackoff`], taken whole ([`NoJitter`]): the
/// exporter's waits were never jittered and stay predictable.
pub fn backoff(interval: Duration, failures: u32, retry_after: Option<Duration>) -> Duration {
    let cap = MAX_BACKOFF.max(interval);
    let steps = ExponentialBackoff {
        initial: interval,
        max: cap,
    };
    let exp = steps.delay(failures.saturating_sub(1), &mut NoJitter);
    match retry_after {
        Some(ra) => exp.max(ra.min(cap)),
        None => exp,
    }
}

/// The exporter of one collector process.
#[derive(Debug)]
pub struct Exporter {
    db: Db,
    http: reqwest::Client,
    endpoint: String,
    batch: usize,
    interval: Duration,
    settle_ms: i64,
    signals: Vec<Signal>,
    producer: Producer,
    /// End of the previous metrics export (Unix ms): the start of the next DELTA points.
    metrics_since_ms: Mutex<i64>,
}

impl Exporter {
    /// The exporter `cfg` asks for, or `None` when `otlp_endpoint` is not set.
    /// `now_ms` starts the first metrics interval.
    pub fn new(
        db: Db,
        cfg: &CollectorConfig,
        now_ms: i64,
    ) -> Result<Option<Exporter>, ConfigError> {
        let Some(endpoint) = cfg.otlp_endpoint_url()? else {
            return Ok(None);
        };
        let bad = |field: String, message: &str| ConfigError {
            field,
            message: message.to_owned(),
            fix: "see collector/README.md, OpenTelemetry export".to_owned(),
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.otlp_headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| bad(format!("otlp_headers.{k}"), "is not a valid header name"))?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| bad(format!("otlp_headers.{k}"), "has an invalid value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        // reqwest is built without a default TLS crypto provider: install the one the core uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .default_headers(headers)
            .build()
            .map_err(|e| {
                bad(
                    "otlp_endpoint".to_owned(),
                    &format!("cannot build the HTTP client: {e}"),
                )
            })?;
        let producer = Producer {
            service_name: cfg.otlp_service_name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            instance_id: gaterouter::usage::RecordId::new_v7().0,
        };
        Ok(Some(Exporter {
            db,
            http,
            endpoint,
            batch: cfg.otlp_batch,
            interval: Duration::from_millis(cfg.otlp_interval_ms),
            settle_ms: i64::try_from(cfg.otlp_settle()).unwrap_or(i64::MAX),
            signals: SIGNALS
                .into_iter()
                .filter(|s| cfg.otlp_signals.contains(s))
                .collect(),
            producer,
            metrics_since_ms: Mutex::new(now_ms),
        }))
    }

    /// The resource identity this process exports under.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Create the read index and the cursors of the exported signals (a new cursor
    /// starts at `now_ms`: records stored before a signal was first exported are not
    /// exported).
    pub async fn prepare(&self, now_ms: i64) -> Result<(), DbError> {
        self.db.ensure_export_index().await?;
        for s in &self.signals {
            crate::store::export::create_cursor(&self.db, s.cursor(), now_ms).await?;
        }
        Ok(())
    }

    /// One export attempt of `signal` at time `now_ms`.
    pub async fn export_once(&self, signal: Signal, now_ms: i64) -> Result<Outcome, ExportError> {
        let settled = now_ms.saturating_sub(self.settle_ms);
        let name = signal.cursor();
        if self.db.backend() == Backend::Postgres {
            let mut tx = self
                .db
                .pool
                .begin()
                .await
                .map_err(dberr("starting the export transaction"))?;
            let Some(from) = read_cursor(&mut tx, name, true).await? else {
                return Ok(Outcome::Busy);
            };
            let recs = read_batch(&mut tx, &from, settled, self.batch).await?;
            let Some(to) = recs.last().map(|r| Cursor {
                received_ms: r.received_ms,
                last_id: r.id.clone(),
            }) else {
                return Ok(Outcome::Idle);
            };
            self.send(signal, &recs, now_ms).await?;
            // The row is locked: the update cannot miss.
            advance(&mut tx, name, &from, &to, now_ms).await?;
            tx.commit()
                .await
                .map_err(dberr("committing the export cursor"))?;
            self.sent(signal, now_ms);
            return Ok(Outcome::Exported(recs.len()));
        }
        // SQLite: no connection is held while the request is out (the pool is small and
        // ingest needs it).
        let (from, recs) = {
            let mut conn = self
                .db
                .pool
                .acquire()
                .await
                .map_err(dberr("acquiring a connection for the export"))?;
            let Some(from) = read_cursor(&mut conn, name, false).await? else {
                return Ok(Outcome::Busy);
            };
            let recs = read_batch(&mut conn, &from, settled, self.batch).await?;
            (from, recs)
        };
        let Some(to) = recs.last().map(|r| Cursor {
            received_ms: r.received_ms,
            last_id: r.id.clone(),
        }) else {
            return Ok(Outcome::Idle);
        };
        self.send(signal, &recs, now_ms).await?;
        let moved = {
            let _g = self.db.write_guard().await;
            let mut conn = self
                .db
                .pool
                .acquire()
                .await
                .map_err(dberr("acquiring a connection for the export cursor"))?;
            advance(&mut conn, name, &from, &to, now_ms).await?
        };
        if !moved {
            tracing::warn!(
                signal = signal.label(),
                "another process moved the export cursor while this batch was sent: the batch may have been exported twice (several collectors on one SQLite file; use PostgreSQL for that)"
            );
        }
        self.sent(signal, now_ms);
        Ok(Outcome::Exported(recs.len()))
    }

    /// After a delivered batch: the next metrics interval starts now.
    fn sent(&self, signal: Signal, now_ms: i64) {
        if signal == Signal::Metrics {
            let mut since = self
                .metrics_since_ms
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *since = now_ms.max(*since + 1);
        }
    }

    /// Build and POST the body of `signal` for `recs`.
    async fn send(
        &self,
        signal: Signal,
        recs: &[ExportRecord],
        now_ms: i64,
    ) -> Result<(), ExportError> {
        let body = match signal {
            Signal::Traces => crate::otlp::traces_request(&self.producer, recs),
            Signal::Metrics => {
                let since = *self
                    .metrics_since_ms
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                crate::otlp::metrics_request(&self.producer, recs, since, now_ms.max(since + 1))
            }
        };
        let url = format!("{}{}", self.endpoint, signal.path());
        let resp = self
            .http
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .send()
            .await
            .map_err(|e| ExportError::Transport {
                url: url.clone(),
                reason: transport_reason(e),
            })?;
        let status = resp.status();
        // the SDK's reader: delay seconds or an HTTP date (and `retry-after-ms`)
        let retry_after = gaterouter::http_reply::retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(ExportError::Status {
                url,
                status: status.as_u16(),
                body: crate::logsafe::escape(text.trim()).into_owned(),
                retry_after,
            });
        }
        // 2xx with partialSuccess: what was rejected is not retried (the receiver said
        // retrying would not help), but it is counted and logged.
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            let ps = &v["partialSuccess"];
            let rejected = match &ps[signal.rejected_field()] {
                Value::String(s) => s.parse::<u64>().unwrap_or(0),
                Value::Number(n) => n.as_u64().unwrap_or(0),
                _ => 0,
            };
            if rejected > 0 {
                self.db.metrics().otel_rejected(signal.label(), rejected);
                let msg = ps["errorMessage"].as_str().unwrap_or("");
                tracing::warn!(signal = signal.label(), rejected, message = %crate::logsafe::escape(msg), "the OTLP receiver rejected part of an export");
            }
        }
        Ok(())
    }

    /// Export until `stop` turns true: each signal on its own schedule (at once after a
    /// full batch, `otlp_interval_ms` after a partial or empty one, [`backoff`] after a
    /// failure).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let start = tokio::time::Instant::now();
        let mut due = [start; 2];
        let mut failures = [0u32; 2];
        loop {
            if *stop.borrow() {
                break;
            }
            for (i, signal) in SIGNALS.iter().enumerate() {
                if !self.signals.contains(signal) {
                    due[i] = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
                    continue;
                }
                if tokio::time::Instant::now() < due[i] {
                    continue;
                }
                let now_ms = self.db.clock().now_ms();
                let result = self.export_once(*signal, now_ms).await;
                let label = signal.label();
                due[i] = tokio::time::Instant::now()
                    + match result {
                        Ok(outcome) => {
                            if failures[i] > 0 {
                                tracing::info!(
                                    signal = label,
                                    failed_attempts = failures[i],
                                    "OpenTelemetry export recovered"
                                );
                            }
                            failures[i] = 0;
                            match outcome {
                                Outcome::Exported(n) => {
                                    self.db.metrics().otel_exported(label, n as u64);
                                    tracing::debug!(
                                        signal = label,
                                        records = n,
                                        "exported usage records to OTLP"
                                    );
                                    if n >= self.batch {
                                        Duration::ZERO
                                    } else {
                                        self.interval
                                    }
                                }
                                Outcome::Idle | Outcome::Busy => self.interval,
                            }
                        }
                        Err(e) => {
                            failures[i] += 1;
                            self.db.metrics().otel_failed(label);
                            let retry_after = match &e {
                                ExportError::Status { retry_after, .. } => *retry_after,
                                _ => None,
                            };
                            let wait = backoff(self.interval, failures[i], retry_after);
                            tracing::warn!(signal = label, error = %crate::logsafe::escape(&e.to_string()), failed_attempts = failures[i], retry_in_ms = wait.as_millis() as u64, "OpenTelemetry export failed; the batch will be sent again");
                            wait
                        }
                    };
            }
            let next = due.iter().min().copied().unwrap_or(start);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

fn transport_reason(e: reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused or host unreachable".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        // Without the URL (it is named beside) and escaped.
        crate::logsafe::escape(&e.without_url().to_string()).into_owned()
    }
}

/// Start the exporter of `cfg` on the current runtime, or nothing when export is off.
pub async fn start(
    db: &Db,
    cfg: &CollectorConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, crate::error::CollectorError> {
    let now_ms = db.clock().now_ms();
    let Some(exporter) = Exporter::new(db.clone(), cfg, now_ms)? else {
        return Ok(None);
    };
    exporter.prepare(now_ms).await?;
    tracing::info!(endpoint = %exporter.endpoint, signals = ?exporter.signals, batch = exporter.batch, interval_ms = exporter.interval.as_millis() as u64, settle_ms = exporter.settle_ms, "OpenTelemetry export on");
    Ok(Some(tokio::spawn(Arc::new(exporter).run(stop))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let s = Duration::from_secs;
        let i = s(5);
        assert_eq!(backoff(i, 1, None), s(5));
        assert_eq!(backoff(i, 2, None), s(10));
        assert_eq!(backoff(i, 4, None), s(40));
        assert_eq!(backoff(i, 10, None), MAX_BACKOFF);
        assert_eq!(backoff(i, u32::MAX, None), MAX_BACKOFF);
        assert_eq!(backoff(i, 1, Some(s(30))), s(30));
        assert_eq!(backoff(i, 4, Some(s(1))), s(40));
        assert_eq!(backoff(i, 1, Some(s(100_000))), MAX_BACKOFF);
        // An interval above the cap is still waited.
        assert_eq!(backoff(s(600), 3, None), s(600));
        assert_eq!(
            backoff(Duration::from_millis(50), 3, None),
            Duration::from_millis(200)
        );
    }
}
