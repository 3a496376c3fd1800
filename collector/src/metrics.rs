//! Prometheus counters of one collector, exposed as text at `GET /metrics`. Lock-free atomics: the
//! ingest path only increments.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Reject reason labels (fixed set, so the metric has bounded cardinality).
pub const REJECT_REASONS: &[&str] = &[
    "unknown_key",
    "revoked_key",
    "bad_signature",
    "scope",
    "invalid",
    "malformed",
];
/// OpenTelemetry export signals (`otlp_export.rs`), the `signal` label.
pub const OTEL_SIGNALS: &[&str] = &["traces", "metrics"];
/// Upper bounds (seconds) of the DB latency histogram buckets.
const DB_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The counters of one collector (each [`crate::db::Db`] pool owns one; `AppState`
/// shares it), so several collectors in one process count apart.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    batches: AtomicU64,
    rejected: [AtomicU64; 6],
    rate_limited: AtomicU64,
    bad_requests: AtomicU64,
    db_buckets: [AtomicU64; 8],
    db_count: AtomicU64,
    db_sum_micros: AtomicU64,
    /// Connections closed at once because the connection cap was reached.
    pub connections_shed: AtomicU64,
    /// Idle connections closed to admit a new one at the cap.
    pub connections_evicted: AtomicU64,
    /// Requests cut by `request_timeout_secs`.
    pub requests_timed_out: AtomicU64,
    otel_exported: [AtomicU64; 2],
    otel_failed: [AtomicU64; 2],
    otel_rejected: [AtomicU64; 2],
}

fn signal_index(signal: &str) -> Option<usize> {
    OTEL_SIGNALS.iter().position(|s| *s == signal)
}

impl Metrics {
    /// Records stored.
    pub fn accepted(&self, n: u64) {
        self.accepted.fetch_add(n, Relaxed);
    }
    /// Records already stored (replays, retries).
    pub fn duplicates(&self, n: u64) {
        self.duplicates.fetch_add(n, Relaxed);
    }
    /// One batch handled.
    pub fn batch(&self) {
        self.batches.fetch_add(1, Relaxed);
    }
    /// One record refused for `reason` (a [`REJECT_REASONS`] label).
    pub fn reject(&self, reason: &str) {
        if let Some(i) = REJECT_REASONS.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }
    /// One batch refused with 429.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }
    /// One batch refused with another 4xx.
    pub fn bad_request(&self) {
        self.bad_requests.fetch_add(1, Relaxed);
    }
    /// One database round trip took `d`.
    pub fn observe_db(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in DB_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.db_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.db_count.fetch_add(1, Relaxed);
        self.db_sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// `n` records delivered to the OTLP receiver for `signal` (an [`OTEL_SIGNALS`] label).
    pub fn otel_exported(&self, signal: &str, n: u64) {
        if let Some(i) = signal_index(signal) {
            self.otel_exported[i].fetch_add(n, Relaxed);
        }
    }
    /// One export request for `signal` failed (it is retried).
    pub fn otel_failed(&self, signal: &str) {
        if let Some(i) = signal_index(signal) {
            self.otel_failed[i].fetch_add(1, Relaxed);
        }
    }
    /// The receiver answered 2xx but rejected `n` spans or data points (partial success).
    pub fn otel_rejected(&self, signal: &str, n: u64) {
        if let Some(i) = signal_index(signal) {
            self.otel_rejected[i].fetch_add(n, Relaxed);
        }
    }

    /// Accepted records so far (tests, benchmarks).
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Relaxed)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(2048);
        let c = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        c(
            &mut s,
            "collector_records_accepted_total",
            "Usage records stored.",
            self.accepted.load(Relaxed),
        );
        c(
            &mut s,
            "collector_records_duplicate_total",
            "Usage records already stored (dedup hits).",
            self.duplicates.load(Relaxed),
        );
        c(
            &mut s,
            "collector_batches_total",
            "Ingest batches handled.",
            self.batches.load(Relaxed),
        );
        c(
            &mut s,
            "collector_batches_rate_limited_total",
            "Ingest batches refused with 429.",
            self.rate_limited.load(Relaxed),
        );
        c(
            &mut s,
            "collector_batches_bad_request_total",
            "Ingest batches refused with another 4xx.",
            self.bad_requests.load(Relaxed),
        );
        c(
            &mut s,
            "collector_connections_shed_total",
            "Connections closed at once: the connection cap was reached and no idle connection could be closed.",
            self.connections_shed.load(Relaxed),
        );
        c(
            &mut s,
            "collector_connections_evicted_total",
            "Idle connections closed to admit a new one at the connection cap.",
            self.connections_evicted.load(Relaxed),
        );
        c(
            &mut s,
            "collector_requests_timed_out_total",
            "Requests answered 408 after request_timeout_secs (slow body or handler).",
            self.requests_timed_out.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP collector_records_rejected_total Usage records refused, by reason.\n# TYPE collector_records_rejected_total counter"
        );
        for (i, r) in REJECT_REASONS.iter().enumerate() {
            let _ = writeln!(
                s,
                "collector_records_rejected_total{{reason=\"{r}\"}} {}",
                self.rejected[i].load(Relaxed)
            );
        }
        for (name, help, values) in [
            (
                "gaterouter_otel_exported_total",
                "Usage records delivered to the OTLP receiver, by signal (each record once per signal).",
                &self.otel_exported,
            ),
            (
                "gaterouter_otel_failed_total",
                "OTLP export requests that failed (transport error or non-2xx answer), by signal; the batch is retried.",
                &self.otel_failed,
            ),
            (
                "gaterouter_otel_rejected_total",
                "Spans or metric data points the OTLP receiver answered 2xx but rejected (partial success), by signal; not retried.",
                &self.otel_rejected,
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (i, sig) in OTEL_SIGNALS.iter().enumerate() {
                let _ = writeln!(s, "{name}{{signal=\"{sig}\"}} {}", values[i].load(Relaxed));
            }
        }
        let _ = writeln!(
            s,
            "# HELP collector_db_seconds Database round-trip latency.\n# TYPE collector_db_seconds histogram"
        );
        for (i, b) in DB_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "collector_db_seconds_bucket{{le=\"{b}\"}} {}",
                self.db_buckets[i].load(Relaxed)
            );
        }
        let n = self.db_count.load(Relaxed);
        let _ = writeln!(s, "collector_db_seconds_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            s,
            "collector_db_seconds_sum {}",
            self.db_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "collector_db_seconds_count {n}");
        s
    }
}
