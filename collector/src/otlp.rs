//! Stored usage records as OpenTelemetry data: OTLP/HTTP request bodies in the JSON
//! encoding (the protobuf-JSON mapping of `ExportTraceServiceRequest` and
//! `ExportMetricsServiceRequest`), following the GenAI semantic conventions. Pure
//! functions of their inputs (no I/O, no clock: times are arguments); the poller, the
//! cursor and HTTP are in `otlp_export.rs`.
//!
//! One record is one span: name `chat {model}`, kind CLIENT, from `ts_start` to
//! `ts_end`, trace id = the record's UUID (16 bytes), span id = the first 8 bytes of
//! SHA-256 of the record id, so exporting a record twice yields the same span. Status
//! ERROR with the record's status as message when it is not `ok`. Records are grouped
//! into one resource per org (`service.name`, `service.version`, `service.instance.id`,
//! `gaterouter.org`).
//!
//! Metrics, one DELTA data point per attribute set over the records of one export batch:
//! `gen_ai.client.token.usage` (histogram, `{token}`, `gen_ai.token.type` = input |
//! output; denied calls, which reached no provider, are not observed),
//! `gen_ai.client.operation.duration` (histogram, `s`, `error.type` on failures) and
//! `gaterouter.client.cost` (monotonic sum, `{USD}`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A stored usage record, as the exporter reads it from `usage_records`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportRecord {
    /// Record id (a UUID).
    pub id: String,
    /// When the collector stored it (Unix ms).
    pub received_ms: i64,
    /// Signing API key.
    pub api_key_id: String,
    /// Call start (Unix ms).
    pub ts_start: i64,
    /// Call end (Unix ms).
    pub ts_end: i64,
    /// Org id.
    pub org: String,
    /// Department id.
    pub department: Option<String>,
    /// Project id.
    pub project: Option<String>,
    /// Group id.
    pub group: Option<String>,
    /// Member id.
    pub user: Option<String>,
    /// Provider config name (`openai`).
    pub provider: String,
    /// Model name as sent to the provider.
    pub model: String,
    /// `auto` or `explicit`.
    pub route_mode: Option<String>,
    /// Routing tier (`small`, `large`).
    pub route_tier: Option<String>,
    /// Routing score.
    pub route_score: Option<i64>,
    /// Prompt tokens (cached and cache-write included).
    pub prompt_tokens: i64,
    /// Completion tokens (reasoning included).
    pub completion_tokens: i64,
    /// Prompt tokens read from the provider's cache.
    pub cached_prompt_tokens: i64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: i64,
    /// Reasoning tokens.
    pub reasoning_tokens: i64,
    /// The client's cost figure, micro-dollars.
    pub client_cost_micros: i64,
    /// The cost the collector counts (its own price, see ingest), micro-dollars.
    pub spend_micros: i64,
    /// Client and collector cost differ.
    pub cost_mismatch: bool,
    /// Catalog entry the collector priced it as.
    pub priced_as: Option<String>,
    /// Wall time of the call, retries included.
    pub latency_ms: i64,
    /// Time to first token (streams).
    pub ttft_ms: Option<i64>,
    /// `ok`, `cancelled`, `denied` or an error code.
    pub status: String,
    /// Attempts (retries and fallbacks).
    pub attempts: i64,
    /// Streamed.
    pub stream: bool,
    /// Caller tags.
    pub tags: BTreeMap<String, String>,
    /// Producing SDK: name, version, language.
    pub sdk: (String, String, String),
    /// Denied calls: the rule and the level that set it.
    pub denied_rule: Option<String>,
    /// Denied calls: the level of the org tree that set the rule.
    pub denied_level: Option<String>,
}

/// Who produces the telemetry (resource and instrumentation scope).
#[derive(Debug, Clone, PartialEq)]
pub struct Producer {
    /// `service.name`.
    pub service_name: String,
    /// `service.version` and the scope's version.
    pub version: String,
    /// `service.instance.id`: one per collector process.
    pub instance_id: String,
}

/// `gen_ai.operation.name` of every record: GateRouter records chat completions.
pub const OPERATION: &str = "chat";
/// Instrumentation scope name.
pub const SCOPE: &str = "gaterouter-collector";
/// `gen_ai.client.token.usage` buckets (the semantic conventions' advice).
pub const TOKEN_BOUNDS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// `gen_ai.client.operation.duration` buckets, seconds (the semantic conventions' advice).
pub const DURATION_BOUNDS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// OTLP `SpanKind.SPAN_KIND_CLIENT`.
const SPAN_KIND_CLIENT: i64 = 3;
/// OTLP `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_CODE_ERROR: i64 = 2;
/// OTLP `AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA`.
const TEMPORALITY_DELTA: i64 = 1;

/// Trace id: the record's UUID as 32 lowercase hex digits (SHA-256 of the id for an id
/// that is not a UUID, which ingest refuses).
pub fn trace_id(record_id: &str) -> String {
    let hex: String = record_id
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() == 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && hex.bytes().any(|b| b != b'0')
    {
        hex
    } else {
        gaterouter::accounts::request_auth::sha256_hex(record_id.as_bytes())[..32].to_owned()
    }
}

/// Span id: the first 8 bytes of SHA-256 of the record id, as 16 hex digits (never all
/// zero, which OTLP treats as invalid).
pub fn span_id(record_id: &str) -> String {
    let h = gaterouter::accounts::request_auth::sha256_hex(record_id.as_bytes());
    if h[..16].bytes().all(|b| b == b'0') {
        "0000000000000001".to_owned()
    } else {
        h[..16].to_owned()
    }
}

fn nanos(ms: i64) -> String {
    (i128::from(ms.max(0)) * 1_000_000).to_string()
}

fn kv_str(key: &str, v: &str) -> Value {
    json!({"key": key, "value": {"stringValue": v}})
}
fn kv_int(key: &str, v: i64) -> Value {
    json!({"key": key, "value": {"intValue": v.to_string()}})
}
fn kv_f64(key: &str, v: f64) -> Value {
    json!({"key": key, "value": {"doubleValue": v}})
}
fn kv_bool(key: &str, v: bool) -> Value {
    json!({"key": key, "value": {"boolValue": v}})
}

/// Micro-dollars as dollars.
fn usd(micros: i64) -> f64 {
    gaterouter::money::Micros(micros).as_f64_dollars()
}

fn is_ok(status: &str) -> bool {
    status == "ok"
}

fn resource(p: &Producer, org: &str) -> Value {
    json!({"attributes": [
        kv_str("service.name", &p.service_name),
        kv_str("service.version", &p.version),
        kv_str("service.instance.id", &p.instance_id),
        kv_str("gaterouter.org", org),
    ]})
}

fn scope(p: &Producer) -> Value {
    json!({"name": SCOPE, "version": p.version})
}

/// Records by org, in first-seen order of the orgs (BTreeMap: deterministic).
fn by_org(recs: &[ExportRecord]) -> BTreeMap<&str, Vec<&ExportRecord>> {
    let mut m: BTreeMap<&str, Vec<&ExportRecord>> = BTreeMap::new();
    for r in recs {
        m.entry(r.org.as_str()).or_default().push(r);
    }
    m
}

/// The span attributes of one record: `gen_ai.*` per the semantic conventions, then
/// GateRouter's own as `gaterouter.*` (collector/README.md lists them).
pub fn span_attributes(r: &ExportRecord) -> Vec<Value> {
    let mut a = vec![
        kv_str("gen_ai.operation.name", OPERATION),
        kv_str("gen_ai.provider.name", &r.provider),
        // Deprecated name of gen_ai.provider.name, still read by some backends.
        kv_str("gen_ai.system", &r.provider),
        kv_str("gen_ai.request.model", &r.model),
        kv_str("gen_ai.response.model", &r.model),
        kv_int("gen_ai.usage.input_tokens", r.prompt_tokens),
        kv_int("gen_ai.usage.output_tokens", r.completion_tokens),
        kv_int(
            "gen_ai.usage.cache_read.input_tokens",
            r.cached_prompt_tokens,
        ),
        kv_int(
            "gen_ai.usage.cache_creation.input_tokens",
            r.cache_write_tokens,
        ),
        kv_int("gen_ai.usage.reasoning.output_tokens", r.reasoning_tokens),
    ];
    if let Some(t) = r.ttft_ms {
        a.push(kv_f64(
            "gen_ai.response.time_to_first_chunk",
            t as f64 / 1000.0,
        ));
    }
    if !is_ok(&r.status) {
        a.push(kv_str("error.type", &r.status));
    }
    if let Some(u) = &r.user {
        a.push(kv_str("user.id", u));
    }
    a.extend([
        kv_str("gaterouter.record.id", &r.id),
        kv_f64("gaterouter.cost_usd", usd(r.spend_micros)),
        kv_int("gaterouter.cost_micros", r.spend_micros),
        kv_int("gaterouter.client_cost_micros", r.client_cost_micros),
        kv_bool("gaterouter.cost_mismatch", r.cost_mismatch),
    ]);
    let opt_str = |a: &mut Vec<Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            a.push(kv_str(k, v));
        }
    };
    opt_str(&mut a, "gaterouter.priced_as", &r.priced_as);
    opt_str(&mut a, "gaterouter.route.mode", &r.route_mode);
    opt_str(&mut a, "gaterouter.route.tier", &r.route_tier);
    if let Some(s) = r.route_score {
        a.push(kv_int("gaterouter.route.score", s));
    }
    a.push(kv_str("gaterouter.org", &r.org));
    opt_str(&mut a, "gaterouter.department", &r.department);
    opt_str(&mut a, "gaterouter.project", &r.project);
    opt_str(&mut a, "gaterouter.group", &r.group);
    opt_str(&mut a, "gaterouter.user", &r.user);
    a.extend([
        kv_str("gaterouter.api_key_id", &r.api_key_id),
        kv_str("gaterouter.status", &r.status),
        kv_int("gaterouter.attempts", r.attempts),
        kv_bool("gaterouter.stream", r.stream),
        kv_int("gaterouter.latency_ms", r.latency_ms),
    ]);
    if let Some(t) = r.ttft_ms {
        a.push(kv_int("gaterouter.time_to_first_token_ms", t));
    }
    opt_str(&mut a, "gaterouter.denied.rule", &r.denied_rule);
    opt_str(&mut a, "gaterouter.denied.level", &r.denied_level);
    for (k, v) in &r.tags {
        a.push(kv_str(&format!("gaterouter.tag.{k}"), v));
    }
    a.extend([
        kv_str("gaterouter.sdk.name", &r.sdk.0),
        kv_str("gaterouter.sdk.version", &r.sdk.1),
        kv_str("gaterouter.sdk.language", &r.sdk.2),
    ]);
    a
}

/// One span.
pub fn span(r: &ExportRecord) -> Value {
    let mut s = json!({
        "traceId": trace_id(&r.id),
        "spanId": span_id(&r.id),
        "name": format!("{OPERATION} {}", r.model),
        "kind": SPAN_KIND_CLIENT,
        "startTimeUnixNano": nanos(r.ts_start),
        "endTimeUnixNano": nanos(r.ts_end.max(r.ts_start)),
        "attributes": span_attributes(r),
    });
    if !is_ok(&r.status) {
        s["status"] = json!({"code": STATUS_CODE_ERROR, "message": r.status});
    }
    s
}

/// The body of `POST /v1/traces`: one span per record, one resource per org.
pub fn traces_request(p: &Producer, recs: &[ExportRecord]) -> Value {
    let resource_spans: Vec<Value> = by_org(recs)
        .into_iter()
        .map(|(org, rs)| {
            json!({
                "resource": resource(p, org),
                "scopeSpans": [{"scope": scope(p), "spans": rs.into_iter().map(span).collect::<Vec<_>>()}],
            })
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

/// An explicit-bucket histogram being filled.
#[derive(Debug, Clone)]
struct Hist {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    buckets: Vec<u64>,
}

impl Hist {
    fn new(bounds: &[f64]) -> Self {
        Hist {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            buckets: vec![0; bounds.len() + 1],
        }
    }
    /// Bucket i holds values in (bounds[i-1], bounds[i]]; the last one the rest.
    fn observe(&mut self, v: f64, bounds: &[f64]) {
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
    fn point(
        &self,
        attrs: &[(&'static str, String)],
        bounds: &[f64],
        start: &str,
        time: &str,
    ) -> Value {
        json!({
            "attributes": attrs.iter().map(|(k, v)| kv_str(k, v)).collect::<Vec<_>>(),
            "startTimeUnixNano": start,
            "timeUnixNano": time,
            "count": self.count.to_string(),
            "sum": self.sum,
            "bucketCounts": self.buckets.iter().map(u64::to_string).collect::<Vec<_>>(),
            "explicitBounds": bounds,
            "min": self.min,
            "max": self.max,
        })
    }
}

type Attrs = Vec<(&'static str, String)>;

/// Attributes shared by every metric of a record.
fn metric_attrs(r: &ExportRecord) -> Attrs {
    let mut a = vec![
        ("gen_ai.operation.name", OPERATION.to_owned()),
        ("gen_ai.provider.name", r.provider.clone()),
        ("gen_ai.request.model", r.model.clone()),
        ("gen_ai.response.model", r.model.clone()),
    ];
    if let Some(d) = &r.department {
        a.push(("gaterouter.department", d.clone()));
    }
    a
}

fn histogram(name: &str, description: &str, unit: &str, points: Vec<Value>) -> Value {
    json!({"name": name, "description": description, "unit": unit, "histogram": {"aggregationTemporality": TEMPORALITY_DELTA, "dataPoints": points}})
}

/// The body of `POST /v1/metrics`: the records of one export batch aggregated into
/// DELTA data points over `(start_ms, end_ms]` (the exporter's previous and current
/// metrics export), one resource per org.
pub fn metrics_request(p: &Producer, recs: &[ExportRecord], start_ms: i64, end_ms: i64) -> Value {
    let (start, time) = (nanos(start_ms), nanos(end_ms.max(start_ms)));
    let resource_metrics: Vec<Value> = by_org(recs)
        .into_iter()
        .map(|(org, rs)| {
            let mut tokens: BTreeMap<Attrs, Hist> = BTreeMap::new();
            let mut duration: BTreeMap<Attrs, Hist> = BTreeMap::new();
            let mut cost: BTreeMap<Attrs, i64> = BTreeMap::new();
            for r in rs {
                let base = metric_attrs(r);
                if r.status != "denied" {
                    for (kind, n) in [("input", r.prompt_tokens), ("output", r.completion_tokens)] {
                        let mut a = base.clone();
                        a.push(("gen_ai.token.type", kind.to_owned()));
                        tokens.entry(a).or_insert_with(|| Hist::new(TOKEN_BOUNDS)).observe(n as f64, TOKEN_BOUNDS);
                    }
                }
                let mut a = base.clone();
                if !is_ok(&r.status) {
                    a.push(("error.type", r.status.clone()));
                }
                duration.entry(a).or_insert_with(|| Hist::new(DURATION_BOUNDS)).observe(r.latency_ms as f64 / 1000.0, DURATION_BOUNDS);
                *cost.entry(base).or_default() += r.spend_micros;
            }
            let mut metrics = Vec::new();
            if !tokens.is_empty() {
                let points = tokens.iter().map(|(a, h)| h.point(a, TOKEN_BOUNDS, &start, &time)).collect();
                metrics.push(histogram("gen_ai.client.token.usage", "Number of input and output tokens used.", "{token}", points));
            }
            let points = duration.iter().map(|(a, h)| h.point(a, DURATION_BOUNDS, &start, &time)).collect();
            metrics.push(histogram("gen_ai.client.operation.duration", "GenAI operation duration.", "s", points));
            let points: Vec<Value> = cost
                .iter()
                .map(|(a, micros)| {
                    json!({
                        "attributes": a.iter().map(|(k, v)| kv_str(k, v)).collect::<Vec<_>>(),
                        "startTimeUnixNano": start,
                        "timeUnixNano": time,
                        "asDouble": usd(*micros),
                    })
                })
                .collect();
            metrics.push(json!({
                "name": "gaterouter.client.cost",
                "description": "Cost of GenAI calls as the GateRouter collector prices them, US dollars.",
                "unit": "{USD}",
                "sum": {"aggregationTemporality": TEMPORALITY_DELTA, "isMonotonic": true, "dataPoints": points},
            }));
            json!({"resource": resource(p, org), "scopeMetrics": [{"scope": scope(p), "metrics": metrics}]})
        })
        .collect();
    json!({"resourceMetrics": resource_metrics})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn producer() -> Producer {
        Producer {
            service_name: "gaterouter-collector".into(),
            version: "1.2.3".into(),
            instance_id: "inst-1".into(),
        }
    }

    fn rec() -> ExportRecord {
        ExportRecord {
            id: "0190a5f4-7e2b-7c3d-8e4f-a1b2c3d4e5f6".into(),
            received_ms: 1_768_471_201_000,
            api_key_id: "k_eng".into(),
            ts_start: 1_768_471_200_000,
            ts_end: 1_768_471_200_250,
            org: "acme".into(),
            department: Some("eng".into()),
            project: None,
            group: None,
            user: Some("alice".into()),
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            route_mode: Some("auto".into()),
            route_tier: Some("small".into()),
            route_score: Some(500),
            prompt_tokens: 10_000,
            completion_tokens: 1_000,
            cached_prompt_tokens: 2_000,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            client_cost_micros: 2_100,
            spend_micros: 2_100,
            cost_mismatch: false,
            priced_as: Some("openai/gpt-4o-mini".into()),
            latency_ms: 250,
            ttft_ms: None,
            status: "ok".into(),
            attempts: 1,
            stream: false,
            tags: [("scenario".to_owned(), "support-reply".to_owned())].into(),
            sdk: ("gaterouter-rust".into(), "0.1.0".into(), "rust".into()),
            denied_rule: None,
            denied_level: None,
        }
    }

    #[test]
    fn ids_are_deterministic_and_well_formed() {
        let id = "0190a5f4-7e2b-7c3d-8e4f-a1b2c3d4e5f6";
        assert_eq!(trace_id(id), "0190a5f47e2b7c3d8e4fa1b2c3d4e5f6");
        assert_eq!(span_id(id), span_id(id));
        assert_eq!(span_id(id).len(), 16);
        assert_ne!(span_id(id), span_id("0190a5f4-7e2b-7c3d-8e4f-a1b2c3d4e5f7"));
        // Not a UUID (never stored, but never a malformed id either).
        let t = trace_id("not-a-uuid");
        assert!(
            t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()),
            "{t}"
        );
        assert_eq!(trace_id("00000000-0000-0000-0000-000000000000").len(), 32);
        assert_ne!(
            trace_id("00000000-0000-0000-0000-000000000000"),
            "0".repeat(32)
        );
    }

    /// Golden: the whole traces body of one ok record and one failed streamed record of
    /// another org.
    #[test]
    fn traces_golden() {
        let ok = rec();
        let mut failed = rec();
        failed.id = "0190a5f4-7e2b-7c3d-8e4f-000000000002".into();
        failed.org = "globex".into();
        failed.department = None;
        failed.user = None;
        failed.route_mode = Some("explicit".into());
        failed.route_tier = None;
        failed.route_score = None;
        failed.status = "RATE_LIMITED".into();
        failed.stream = true;
        failed.ttft_ms = Some(120);
        failed.tags.clear();
        failed.spend_micros = 0;
        failed.client_cost_micros = 5;
        failed.cost_mismatch = true;
        failed.priced_as = None;
        failed.attempts = 3;
        let got = traces_request(&producer(), &[failed.clone(), ok.clone()]);
        let resource = |org: &str| {
            json!({"attributes": [
                {"key": "service.name", "value": {"stringValue": "gaterouter-collector"}},
                {"key": "service.version", "value": {"stringValue": "1.2.3"}},
                {"key": "service.instance.id", "value": {"stringValue": "inst-1"}},
                {"key": "gaterouter.org", "value": {"stringValue": org}},
            ]})
        };
        let s = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
        let i = |k: &str, v: &str| json!({"key": k, "value": {"intValue": v}});
        let d = |k: &str, v: f64| json!({"key": k, "value": {"doubleValue": v}});
        let b = |k: &str, v: bool| json!({"key": k, "value": {"boolValue": v}});
        // The GenAI attributes both records share, then each one's own.
        let genai = json!([
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.provider.name", "openai"),
            s("gen_ai.system", "openai"),
            s("gen_ai.request.model", "gpt-4o-mini"),
            s("gen_ai.response.model", "gpt-4o-mini"),
            i("gen_ai.usage.input_tokens", "10000"),
            i("gen_ai.usage.output_tokens", "1000"),
            i("gen_ai.usage.cache_read.input_tokens", "2000"),
            i("gen_ai.usage.cache_creation.input_tokens", "0"),
            i("gen_ai.usage.reasoning.output_tokens", "0"),
        ]);
        let span = |id: &str, trace: &str, own: Value, status: Option<Value>| {
            let mut attributes = genai.as_array().unwrap().clone();
            attributes.extend(own.as_array().unwrap().iter().cloned());
            let mut sp = json!({
                "traceId": trace, "spanId": span_id(id), "name": "chat gpt-4o-mini", "kind": 3,
                "startTimeUnixNano": "1768471200000000000", "endTimeUnixNano": "1768471200250000000", "attributes": attributes,
            });
            if let Some(st) = status {
                sp["status"] = st;
            }
            sp
        };
        let scope = json!({"name": "gaterouter-collector", "version": "1.2.3"});
        let ok_span = span(
            &ok.id,
            "0190a5f47e2b7c3d8e4fa1b2c3d4e5f6",
            json!([
                s("user.id", "alice"),
                s(
                    "gaterouter.record.id",
                    "0190a5f4-7e2b-7c3d-8e4f-a1b2c3d4e5f6"
                ),
                d("gaterouter.cost_usd", 0.0021),
                i("gaterouter.cost_micros", "2100"),
                i("gaterouter.client_cost_micros", "2100"),
                b("gaterouter.cost_mismatch", false),
                s("gaterouter.priced_as", "openai/gpt-4o-mini"),
                s("gaterouter.route.mode", "auto"),
                s("gaterouter.route.tier", "small"),
                i("gaterouter.route.score", "500"),
                s("gaterouter.org", "acme"),
                s("gaterouter.department", "eng"),
                s("gaterouter.user", "alice"),
                s("gaterouter.api_key_id", "k_eng"),
                s("gaterouter.status", "ok"),
                i("gaterouter.attempts", "1"),
                b("gaterouter.stream", false),
                i("gaterouter.latency_ms", "250"),
                s("gaterouter.tag.scenario", "support-reply"),
                s("gaterouter.sdk.name", "gaterouter-rust"),
                s("gaterouter.sdk.version", "0.1.0"),
                s("gaterouter.sdk.language", "rust"),
            ]),
            None,
        );
        let failed_span = span(
            &failed.id,
            "0190a5f47e2b7c3d8e4f000000000002",
            json!([
                d("gen_ai.response.time_to_first_chunk", 0.12),
                s("error.type", "RATE_LIMITED"),
                s(
                    "gaterouter.record.id",
                    "0190a5f4-7e2b-7c3d-8e4f-000000000002"
                ),
                d("gaterouter.cost_usd", 0.0),
                i("gaterouter.cost_micros", "0"),
                i("gaterouter.client_cost_micros", "5"),
                b("gaterouter.cost_mismatch", true),
                s("gaterouter.route.mode", "explicit"),
                s("gaterouter.org", "globex"),
                s("gaterouter.api_key_id", "k_eng"),
                s("gaterouter.status", "RATE_LIMITED"),
                i("gaterouter.attempts", "3"),
                b("gaterouter.stream", true),
                i("gaterouter.latency_ms", "250"),
                i("gaterouter.time_to_first_token_ms", "120"),
                s("gaterouter.sdk.name", "gaterouter-rust"),
                s("gaterouter.sdk.version", "0.1.0"),
                s("gaterouter.sdk.language", "rust"),
            ]),
            Some(json!({"code": 2, "message": "RATE_LIMITED"})),
        );
        let want = json!({"resourceSpans": [
            {"resource": resource("acme"), "scopeSpans": [{"scope": scope, "spans": [ok_span]}]},
            {"resource": resource("globex"), "scopeSpans": [{"scope": scope, "spans": [failed_span]}]},
        ]});
        assert_eq!(got, want, "{}", serde_json::to_string_pretty(&got).unwrap());
        // Same input, same bytes: a re-export is the same span.
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&traces_request(&producer(), &[failed, ok])).unwrap()
        );
    }

    /// Golden: three records (one denied) aggregate into DELTA points whose sums are the
    /// records' tokens, seconds and dollars.
    #[test]
    fn metrics_golden() {
        let a = rec();
        let mut b = rec();
        b.prompt_tokens = 3;
        b.completion_tokens = 70_000_000;
        b.latency_ms = 100_000;
        b.spend_micros = 400;
        let mut denied = rec();
        denied.status = "denied".into();
        denied.prompt_tokens = 0;
        denied.completion_tokens = 0;
        denied.latency_ms = 5;
        denied.spend_micros = 0;
        denied.denied_rule = Some("deny_models".into());
        let got = metrics_request(&producer(), &[a, b, denied], 1_000, 6_000);
        let attrs = |extra: &[(&str, &str)]| {
            let mut v = vec![
                json!({"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}),
                json!({"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}}),
                json!({"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}}),
                json!({"key": "gen_ai.response.model", "value": {"stringValue": "gpt-4o-mini"}}),
                json!({"key": "gaterouter.department", "value": {"stringValue": "eng"}}),
            ];
            v.extend(
                extra
                    .iter()
                    .map(|(k, x)| json!({"key": k, "value": {"stringValue": x}})),
            );
            v
        };
        let counts = |set: &[(usize, u64)], n: usize| {
            let mut c = vec!["0".to_owned(); n];
            for (i, k) in set {
                c[*i] = k.to_string();
            }
            c
        };
        let (start, time) = ("1000000000", "6000000000");
        let want = json!({"resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "gaterouter-collector"}},
                {"key": "service.version", "value": {"stringValue": "1.2.3"}},
                {"key": "service.instance.id", "value": {"stringValue": "inst-1"}},
                {"key": "gaterouter.org", "value": {"stringValue": "acme"}},
            ]},
            "scopeMetrics": [{"scope": {"name": "gaterouter-collector", "version": "1.2.3"}, "metrics": [
                {"name": "gen_ai.client.token.usage", "description": "Number of input and output tokens used.", "unit": "{token}",
                 "histogram": {"aggregationTemporality": 1, "dataPoints": [
                    {"attributes": attrs(&[("gen_ai.token.type", "input")]), "startTimeUnixNano": start, "timeUnixNano": time,
                     "count": "2", "sum": 10003.0, "bucketCounts": counts(&[(1, 1), (7, 1)], 15), "explicitBounds": TOKEN_BOUNDS, "min": 3.0, "max": 10000.0},
                    {"attributes": attrs(&[("gen_ai.token.type", "output")]), "startTimeUnixNano": start, "timeUnixNano": time,
                     "count": "2", "sum": 70001000.0, "bucketCounts": counts(&[(5, 1), (14, 1)], 15), "explicitBounds": TOKEN_BOUNDS, "min": 1000.0, "max": 70000000.0},
                 ]}},
                {"name": "gen_ai.client.operation.duration", "description": "GenAI operation duration.", "unit": "s",
                 "histogram": {"aggregationTemporality": 1, "dataPoints": [
                    {"attributes": attrs(&[]), "startTimeUnixNano": start, "timeUnixNano": time,
                     "count": "2", "sum": 100.25, "bucketCounts": counts(&[(5, 1), (14, 1)], 15), "explicitBounds": DURATION_BOUNDS, "min": 0.25, "max": 100.0},
                    {"attributes": attrs(&[("error.type", "denied")]), "startTimeUnixNano": start, "timeUnixNano": time,
                     "count": "1", "sum": 0.005, "bucketCounts": counts(&[(0, 1)], 15), "explicitBounds": DURATION_BOUNDS, "min": 0.005, "max": 0.005},
                 ]}},
                {"name": "gaterouter.client.cost", "description": "Cost of GenAI calls as the GateRouter collector prices them, US dollars.", "unit": "{USD}",
                 "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [
                    {"attributes": attrs(&[]), "startTimeUnixNano": start, "timeUnixNano": time, "asDouble": 0.0025},
                 ]}},
            ]}],
        }]});
        assert_eq!(got, want, "{}", serde_json::to_string_pretty(&got).unwrap());
    }

    #[test]
    fn nothing_to_export_is_an_empty_request() {
        assert_eq!(
            traces_request(&producer(), &[]),
            json!({"resourceSpans": []})
        );
        assert_eq!(
            metrics_request(&producer(), &[], 0, 1),
            json!({"resourceMetrics": []})
        );
    }
}
