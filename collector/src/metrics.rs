//! Prometheus metrics of one collector, exposed at `GET /metrics` in the OpenMetrics text
//! format by `prometheus-client`: one [`Registry`] per collector (no process-global
//! recorder), counters are atomics, so the ingest path only increments.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

type Label = [(&'static str, &'static str); 1];

/// The metrics of one collector (each [`crate::db::Db`] pool owns one; `AppState`
/// shares it), so several collectors in one process count apart.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    accepted: Counter,
    duplicates: Counter,
    batches: Counter,
    /// In [`REJECT_REASONS`] order (handles into the registry's family).
    rejected: Vec<Counter>,
    rate_limited: Counter,
    bad_requests: Counter,
    db: Histogram,
    /// Connections closed at once because the connection cap was reached.
    pub connections_shed: Counter,
    /// Idle connections closed to admit a new one at the cap.
    pub connections_evicted: Counter,
    /// Requests cut by `request_timeout_secs`.
    pub requests_timed_out: Counter,
    /// In [`OTEL_SIGNALS`] order.
    otel_exported: Vec<Counter>,
    otel_failed: Vec<Counter>,
    otel_rejected: Vec<Counter>,
}

fn signal_index(signal: &str) -> Option<usize> {
    OTEL_SIGNALS.iter().position(|s| *s == signal)
}

/// A counter family over `values` of label `key`, registered, with one handle per value
/// (created now, so every value shows from the first scrape).
fn family(
    r: &mut Registry,
    name: &str,
    help: &str,
    key: &'static str,
    values: &[&'static str],
) -> Vec<Counter> {
    let f = Family::<Label, Counter>::default();
    let handles = values
        .iter()
        .map(|v| f.get_or_create_owned(&[(key, *v)]))
        .collect();
    r.register(name, help, f);
    handles
}

fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    r.register(name, help, c.clone());
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A collector's metrics, all at zero. Names are registered without `_total`, which
    /// the OpenMetrics encoder adds to counters (`collector_records_accepted_total`).
    pub fn new() -> Self {
        let mut r = Registry::default();
        // Help texts without a final period: the encoder appends one.
        let accepted = counter(&mut r, "collector_records_accepted", "Usage records stored");
        let duplicates = counter(
            &mut r,
            "collector_records_duplicate",
            "Usage records already stored (dedup hits)",
        );
        let batches = counter(&mut r, "collector_batches", "Ingest batches handled");
        let rate_limited = counter(
            &mut r,
            "collector_batches_rate_limited",
            "Ingest batches refused with 429",
        );
        let bad_requests = counter(
            &mut r,
            "collector_batches_bad_request",
            "Ingest batches refused with another 4xx",
        );
        let connections_shed = counter(
            &mut r,
            "collector_connections_shed",
            "Connections closed at once: the connection cap was reached and no idle connection could be closed",
        );
        let connections_evicted = counter(
            &mut r,
            "collector_connections_evicted",
            "Idle connections closed to admit a new one at the connection cap",
        );
        let requests_timed_out = counter(
            &mut r,
            "collector_requests_timed_out",
            "Requests answered 408 after request_timeout_secs (slow body or handler)",
        );
        let rejected = family(
            &mut r,
            "collector_records_rejected",
            "Usage records refused, by reason",
            "reason",
            REJECT_REASONS,
        );
        let otel_exported = family(
            &mut r,
            "gaterouter_otel_exported",
            "Usage records delivered to the OTLP receiver, by signal (each record once per signal)",
            "signal",
            OTEL_SIGNALS,
        );
        let otel_failed = family(
            &mut r,
            "gaterouter_otel_failed",
            "OTLP export requests that failed (transport error or non-2xx answer), by signal; the batch is retried",
            "signal",
            OTEL_SIGNALS,
        );
        let otel_rejected = family(
            &mut r,
            "gaterouter_otel_rejected",
            "Spans or metric data points the OTLP receiver answered 2xx but rejected (partial success), by signal; not retried",
            "signal",
            OTEL_SIGNALS,
        );
        let db = Histogram::new(DB_BUCKETS.iter().copied());
        r.register(
            "collector_db_seconds",
            "Database round-trip latency",
            db.clone(),
        );
        Metrics {
            registry: r,
            accepted,
            duplicates,
            batches,
            rejected,
            rate_limited,
            bad_requests,
            db,
            connections_shed,
            connections_evicted,
            requests_timed_out,
            otel_exported,
            otel_failed,
            otel_rejected,
        }
    }

    /// Records stored.
    pub fn accepted(&self, n: u64) {
        self.accepted.inc_by(n);
    }
    /// Records already stored (replays, retries).
    pub fn duplicates(&self, n: u64) {
        self.duplicates.inc_by(n);
    }
    /// One batch handled.
    pub fn batch(&self) {
        self.batches.inc();
    }
    /// One record refused for `reason` (a [`REJECT_REASONS`] label).
    pub fn reject(&self, reason: &str) {
        if let Some(i) = REJECT_REASONS.iter().position(|r| *r == reason) {
            self.rejected[i].inc();
        }
    }
    /// One batch refused with 429.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }
    /// One batch refused with another 4xx.
    pub fn bad_request(&self) {
        self.bad_requests.inc();
    }
    /// One database round trip took `d`.
    pub fn observe_db(&self, d: Duration) {
        self.db.observe(d.as_secs_f64());
    }

    /// `n` records delivered to the OTLP receiver for `signal` (an [`OTEL_SIGNALS`] label).
    pub fn otel_exported(&self, signal: &str, n: u64) {
        if let Some(i) = signal_index(signal) {
            self.otel_exported[i].inc_by(n);
        }
    }
    /// One export request for `signal` failed (it is retried).
    pub fn otel_failed(&self, signal: &str) {
        if let Some(i) = signal_index(signal) {
            self.otel_failed[i].inc();
        }
    }
    /// The receiver answered 2xx but rejected `n` spans or data points (partial success).
    pub fn otel_rejected(&self, signal: &str, n: u64) {
        if let Some(i) = signal_index(signal) {
            self.otel_rejected[i].inc_by(n);
        }
    }

    /// Accepted records so far (tests, benchmarks).
    pub fn accepted_total(&self) -> u64 {
        self.accepted.get()
    }

    /// The OpenMetrics text exposition (ends with `# EOF`); serve it as
    /// [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        // Writing into a `String` cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_from_zero() {
        let m = Metrics::new();
        m.accepted(3);
        m.reject("scope");
        m.reject("no_such_reason");
        m.otel_failed("metrics");
        m.observe_db(Duration::from_millis(2));
        m.connections_evicted.inc();
        let t = m.render();
        for line in [
            "# TYPE collector_records_accepted counter",
            "collector_records_accepted_total 3",
            "collector_records_rejected_total{reason=\"scope\"} 1",
            "collector_records_rejected_total{reason=\"unknown_key\"} 0",
            "gaterouter_otel_failed_total{signal=\"metrics\"} 1",
            "gaterouter_otel_exported_total{signal=\"traces\"} 0",
            "collector_connections_evicted_total 1",
            "collector_db_seconds_count 1",
            "collector_db_seconds_bucket{le=\"0.001\"} 0",
            "collector_db_seconds_bucket{le=\"0.005\"} 1",
            "collector_db_seconds_bucket{le=\"+Inf\"} 1",
            "# EOF",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} not in\n{t}");
        }
        assert_eq!(m.accepted_total(), 3);
    }
}
