//! OpenTelemetry export (collector/src/otlp_export.rs) against an in-test OTLP/HTTP
//! receiver: an axum server on 127.0.0.1 that takes `/v1/traces` and `/v1/metrics`,
//! checks every body strictly against the OTLP JSON shape (field names and types, hex
//! ids, int64 as strings, histogram buckets) and records what it accepted. No OpenTelemetry
//! Collector binary can be installed from the registries this project uses (not in
//! Debian, PyPI or npm), hence the receiver.
//!
//! On SQLite (one test per scenario) and on a real PostgreSQL (every scenario on a fresh
//! database, plus two collectors of one database exporting to one receiver).
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::*;
use gaterouter_collector::CollectorConfig;
use serde_json::{Value, json};

type Db = Option<String>;

// ---------------------------------------------------------------- the receiver

#[derive(Default)]
struct Rx {
    /// Accepted spans with their resource attributes.
    spans: Vec<(Vec<Value>, Value)>,
    /// Accepted metrics requests.
    metrics: Vec<Value>,
    /// Every request, accepted or not.
    requests: usize,
    /// Shape violations found (the test asserts there are none).
    problems: Vec<String>,
    /// `x-api-key` of every request.
    api_keys: Vec<Option<String>>,
    /// Statuses to answer next, per path, before accepting again.
    fail: HashMap<String, VecDeque<u16>>,
}

struct Receiver {
    url: String,
    st: Arc<Mutex<Rx>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let st = Arc::new(Mutex::new(Rx::default()));
        let app = axum::Router::new().fallback(receive).with_state(st.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, st }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Rx> {
        self.st.lock().unwrap()
    }
    /// Answer `statuses` to the next requests on `path` (without accepting them).
    fn fail_next(&self, path: &str, statuses: &[u16]) {
        self.lock()
            .fail
            .entry(path.to_owned())
            .or_default()
            .extend(statuses);
    }
    /// How many times each record id arrived as a span.
    fn span_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (_, s) in &self.lock().spans {
            *m.entry(
                attr(s, "gaterouter.record.id").unwrap()["stringValue"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
            .or_default() += 1;
        }
        m
    }
    /// Every data point of metric `name` with its resource attributes.
    fn points(&self, name: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for req in &self.lock().metrics {
            for (_, m) in envelope(req, "resourceMetrics", "scopeMetrics", "metrics").unwrap() {
                if m["name"] == name {
                    let data = if m["histogram"].is_object() {
                        &m["histogram"]
                    } else {
                        &m["sum"]
                    };
                    out.extend(data["dataPoints"].as_array().unwrap().iter().cloned());
                }
            }
        }
        out
    }
    /// Records counted by the metrics (data point counts of the duration histogram).
    fn metric_records(&self) -> u64 {
        self.points("gen_ai.client.operation.duration")
            .iter()
            .map(|p| p["count"].as_str().unwrap().parse::<u64>().unwrap())
            .sum()
    }
    fn assert_clean(&self) {
        let rx = self.lock();
        assert!(
            rx.problems.is_empty(),
            "OTLP shape violations: {:#?}",
            rx.problems
        );
    }
}

async fn receive(
    State(st): State<Arc<Mutex<Rx>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut rx = st.lock().unwrap();
    rx.requests += 1;
    rx.api_keys.push(
        headers
            .get("x-api-key")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let path = uri.path().to_owned();
    if let Some(s) = rx.fail.get_mut(&path).and_then(VecDeque::pop_front) {
        return (
            StatusCode::from_u16(s).unwrap(),
            "{\"message\":\"try again\"}".into(),
        );
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        rx.problems.push(format!(
            "{path}: content-type {:?}",
            headers.get("content-type")
        ));
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, String::new());
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            rx.problems.push(format!("{path}: not JSON: {e}"));
            return (StatusCode::BAD_REQUEST, String::new());
        }
    };
    let checked = match path.as_str() {
        "/v1/traces" => check_traces(&v),
        "/v1/metrics" => check_metrics(&v),
        _ => Err(format!("unexpected path {path}")),
    };
    if let Err(e) = checked {
        rx.problems.push(format!("{path}: {e}"));
        return (StatusCode::BAD_REQUEST, String::new());
    }
    if path == "/v1/traces" {
        for (res, s) in envelope(&v, "resourceSpans", "scopeSpans", "spans").unwrap() {
            rx.spans
                .push((res["attributes"].as_array().unwrap().clone(), s.clone()));
        }
    } else {
        rx.metrics.push(v);
    }
    (StatusCode::OK, "{}".into())
}

// ------------------------------------------------- strict OTLP JSON shape checks

type Check = Result<(), String>;

fn fields(v: &Value, what: &str, required: &[&str], optional: &[&str]) -> Check {
    let o = v
        .as_object()
        .ok_or(format!("{what} is not an object: {v}"))?;
    for k in o.keys() {
        if !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
            return Err(format!("{what} has unknown field `{k}`"));
        }
    }
    for r in required {
        if !o.contains_key(*r) {
            return Err(format!("{what} lacks `{r}`: {v}"));
        }
    }
    Ok(())
}

fn arr<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or(format!("{what} is not an array"))
}

fn hex(v: &Value, len: usize, what: &str) -> Check {
    let s = v.as_str().ok_or(format!("{what} is not a string"))?;
    if s.len() != len
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        || s.bytes().all(|b| b == b'0')
    {
        return Err(format!(
            "{what} `{s}` is not {len} lowercase hex digits (non-zero)"
        ));
    }
    Ok(())
}

/// A uint64/int64 in the JSON mapping: a decimal string.
fn int_str(v: &Value, what: &str) -> Result<u128, String> {
    let s = v.as_str().ok_or(format!(
        "{what} is not a string (int64 values are strings in OTLP JSON): {v}"
    ))?;
    s.parse::<u128>()
        .map_err(|_| format!("{what} `{s}` is not a decimal integer"))
}

fn number(v: &Value, what: &str) -> Result<f64, String> {
    v.as_f64().ok_or(format!("{what} is not a number: {v}"))
}

fn check_attributes(v: &Value, what: &str) -> Check {
    for kv in arr(v, what)? {
        fields(kv, what, &["key", "value"], &[])?;
        kv["key"]
            .as_str()
            .filter(|k| !k.is_empty())
            .ok_or(format!("{what}: key is not a non-empty string"))?;
        let val = kv["value"]
            .as_object()
            .ok_or(format!("{what}: value is not an object"))?;
        if val.len() != 1 {
            return Err(format!("{what}: value {kv} must have exactly one field"));
        }
        match val.iter().next().unwrap() {
            (k, Value::String(_)) if k == "stringValue" => {}
            (k, x) if k == "intValue" => {
                let s = x
                    .as_str()
                    .ok_or(format!("{what}: intValue {x} is not a string"))?;
                s.parse::<i64>()
                    .map_err(|_| format!("{what}: intValue `{s}` is not an int64"))?;
            }
            (k, Value::Number(_)) if k == "doubleValue" => {}
            (k, Value::Bool(_)) if k == "boolValue" => {}
            (k, x) => return Err(format!("{what}: unexpected value field `{k}`: {x}")),
        }
    }
    Ok(())
}

fn check_resource_scope(r: &Value, scope: &Value) -> Check {
    fields(r, "resource", &["attributes"], &[])?;
    check_attributes(&r["attributes"], "resource.attributes")?;
    fields(scope, "scope", &["name"], &["version"])?;
    scope["name"].as_str().ok_or("scope.name is not a string")?;
    Ok(())
}

/// The items (`spans` or `metrics`) of a request `{top: [{resource, scope_key: [{scope,
/// items_key: [...]}]}]}`, each with its resource, after checking the envelope.
fn envelope<'a>(
    v: &'a Value,
    top: &str,
    scope_key: &str,
    items_key: &str,
) -> Result<Vec<(&'a Value, &'a Value)>, String> {
    fields(v, "request", &[top], &[])?;
    let mut out = Vec::new();
    for r in arr(&v[top], top)? {
        fields(r, top, &["resource", scope_key], &["schemaUrl"])?;
        for sc in arr(&r[scope_key], scope_key)? {
            fields(sc, scope_key, &["scope", items_key], &["schemaUrl"])?;
            check_resource_scope(&r["resource"], &sc["scope"])?;
            out.extend(
                arr(&sc[items_key], items_key)?
                    .iter()
                    .map(|item| (&r["resource"], item)),
            );
        }
    }
    Ok(out)
}

fn check_traces(v: &Value) -> Check {
    for (_, s) in envelope(v, "resourceSpans", "scopeSpans", "spans")? {
        fields(
            s,
            "span",
            &[
                "traceId",
                "spanId",
                "name",
                "kind",
                "startTimeUnixNano",
                "endTimeUnixNano",
            ],
            &["attributes", "status", "parentSpanId", "flags"],
        )?;
        hex(&s["traceId"], 32, "traceId")?;
        hex(&s["spanId"], 16, "spanId")?;
        s["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or("span name is not a non-empty string")?;
        let kind = s["kind"]
            .as_i64()
            .ok_or("span kind is not an integer (enums are integers in OTLP JSON)")?;
        if !(0..=5).contains(&kind) {
            return Err(format!("span kind {kind} is out of range"));
        }
        let (a, b) = (
            int_str(&s["startTimeUnixNano"], "startTimeUnixNano")?,
            int_str(&s["endTimeUnixNano"], "endTimeUnixNano")?,
        );
        if b < a {
            return Err("span ends before it starts".into());
        }
        check_attributes(&s["attributes"], "span.attributes")?;
        if !s["status"].is_null() {
            fields(&s["status"], "status", &["code"], &["message"])?;
            let c = s["status"]["code"]
                .as_i64()
                .ok_or("status.code is not an integer")?;
            if !(0..=2).contains(&c) {
                return Err(format!("status.code {c} is out of range"));
            }
        }
    }
    Ok(())
}

fn check_point_times(p: &Value) -> Check {
    let (a, b) = (
        int_str(&p["startTimeUnixNano"], "startTimeUnixNano")?,
        int_str(&p["timeUnixNano"], "timeUnixNano")?,
    );
    if b <= a {
        return Err(format!("data point time {b} is not after its start {a}"));
    }
    check_attributes(&p["attributes"], "dataPoint.attributes")
}

fn check_metrics(v: &Value) -> Check {
    for (_, m) in envelope(v, "resourceMetrics", "scopeMetrics", "metrics")? {
        fields(
            m,
            "metric",
            &["name"],
            &["description", "unit", "histogram", "sum"],
        )?;
        if m["histogram"].is_object() {
            let h = &m["histogram"];
            fields(
                h,
                "histogram",
                &["aggregationTemporality", "dataPoints"],
                &[],
            )?;
            if h["aggregationTemporality"] != json!(1) {
                return Err("histogram temporality is not DELTA (1)".into());
            }
            for p in arr(&h["dataPoints"], "dataPoints")? {
                fields(
                    p,
                    "histogram point",
                    &[
                        "attributes",
                        "startTimeUnixNano",
                        "timeUnixNano",
                        "count",
                        "sum",
                        "bucketCounts",
                        "explicitBounds",
                    ],
                    &["min", "max"],
                )?;
                check_point_times(p)?;
                let count = int_str(&p["count"], "count")?;
                number(&p["sum"], "sum")?;
                let bounds = arr(&p["explicitBounds"], "explicitBounds")?
                    .iter()
                    .map(|b| number(b, "bound"))
                    .collect::<Result<Vec<_>, _>>()?;
                if bounds.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("explicitBounds are not increasing".into());
                }
                let buckets = arr(&p["bucketCounts"], "bucketCounts")?
                    .iter()
                    .map(|c| int_str(c, "bucketCounts[]"))
                    .collect::<Result<Vec<_>, _>>()?;
                if buckets.len() != bounds.len() + 1 || buckets.iter().sum::<u128>() != count {
                    return Err(format!(
                        "bucketCounts {buckets:?} do not fit {} bounds and count {count}",
                        bounds.len()
                    ));
                }
                if number(&p["min"], "min")? > number(&p["max"], "max")? {
                    return Err("min > max".into());
                }
            }
        } else if m["sum"].is_object() {
            let s = &m["sum"];
            fields(
                s,
                "sum",
                &["aggregationTemporality", "isMonotonic", "dataPoints"],
                &[],
            )?;
            s["isMonotonic"]
                .as_bool()
                .ok_or("isMonotonic is not a bool")?;
            for p in arr(&s["dataPoints"], "dataPoints")? {
                fields(
                    p,
                    "sum point",
                    &[
                        "attributes",
                        "startTimeUnixNano",
                        "timeUnixNano",
                        "asDouble",
                    ],
                    &[],
                )?;
                check_point_times(p)?;
                number(&p["asDouble"], "asDouble")?;
            }
        } else {
            return Err(format!("metric {} has no data", m["name"]));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------- helpers

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

fn s(v: &str) -> Value {
    json!({"stringValue": v})
}
fn i(v: i64) -> Value {
    json!({"intValue": v.to_string()})
}

fn export_to(rx: &Receiver) -> impl FnOnce(&mut CollectorConfig) + '_ {
    move |c: &mut CollectorConfig| {
        c.otlp_endpoint = Some(format!("{}/", rx.url));
        c.otlp_interval_ms = 25;
        // Ingest in these tests is sequential: nothing commits behind the cursor.
        c.otlp_settle_ms = Some(0);
    }
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("c.db").display())
}

fn metric_value(text: &str, line: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("{line} not in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

// ----------------------------------------------------------------- scenarios

/// Signed records arrive as spans with the GenAI attributes and GateRouter's cost and
/// route, and as metrics whose sums are the records' tokens, seconds and dollars.
async fn spans_and_metrics(db: Db) {
    let rx = Receiver::start().await;
    let env = Env::start(db, |c| {
        export_to(&rx)(c);
        c.otlp_service_name = "gr-test".into();
        c.otlp_headers
            .insert("x-api-key".into(), "secret-key".into());
    })
    .await;
    assert!(env.handle.exporting());
    let (eng, sales) = env.seed_org().await;
    let rate_limited = gaterouter::usage::UsageStatus::parse("RATE_LIMITED").unwrap();
    let specs = [
        (
            Spec {
                tier: Some("small"),
                tags: &[("scenario", "support-reply")],
                ..Spec::default()
            },
            &eng,
        ),
        (
            Spec {
                user: "bob",
                model: "gpt-4o",
                client_cost: 35_000,
                status: rate_limited,
                latency: 3_000,
                ..Spec::default()
            },
            &eng,
        ),
        (
            Spec {
                key: "k_sales",
                dept: "sales",
                user: "carol",
                model: "gpt-4o",
                prompt: 500,
                completion: 50,
                client_cost: 1_750,
                ..Spec::default()
            },
            &sales,
        ),
    ];
    let recs: Vec<_> = specs.iter().map(|(s, _)| record(s)).collect();
    let wires: Vec<String> = recs
        .iter()
        .zip(&specs)
        .map(|(r, (_, k))| sign(r, k))
        .collect();
    let (_, v) = env.ingest(&wires).await;
    assert_eq!(ids(&v, "accepted").len(), 3, "{v}");
    wait_for("3 spans and 3 records in metrics", || {
        rx.span_counts().len() == 3 && rx.metric_records() == 3
    })
    .await;
    rx.assert_clean();
    let spans: HashMap<String, (Vec<Value>, Value)> = rx
        .lock()
        .spans
        .iter()
        .map(|(res, sp)| {
            (
                attr(sp, "gaterouter.record.id").unwrap()["stringValue"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                (res.clone(), sp.clone()),
            )
        })
        .collect();

    // The ok record of alice.
    let (res, sp) = &spans[&recs[0].id.0];
    let res_attr = |k: &str| {
        res.iter()
            .find(|kv| kv["key"] == k)
            .map(|kv| kv["value"].clone())
    };
    assert_eq!(res_attr("service.name"), Some(s("gr-test")));
    assert_eq!(res_attr("gaterouter.org"), Some(s("acme")));
    assert_eq!(sp["traceId"], json!(recs[0].id.0.replace('-', "")));
    assert_eq!(sp["name"], "chat gpt-4o-mini");
    assert_eq!(sp["kind"], 3);
    assert_eq!(
        sp["startTimeUnixNano"],
        json!(format!("{}000000", JAN15_1000))
    );
    assert_eq!(
        sp["endTimeUnixNano"],
        json!(format!("{}000000", JAN15_1000 + 100))
    );
    assert!(sp["status"].is_null(), "{sp}");
    for (k, want) in [
        ("gen_ai.operation.name", s("chat")),
        ("gen_ai.provider.name", s("openai")),
        ("gen_ai.system", s("openai")),
        ("gen_ai.request.model", s("gpt-4o-mini")),
        ("gen_ai.response.model", s("gpt-4o-mini")),
        ("gen_ai.usage.input_tokens", i(10_000)),
        ("gen_ai.usage.output_tokens", i(1_000)),
        ("gaterouter.cost_micros", i(2_100)),
        ("gaterouter.cost_usd", json!({"doubleValue": 0.0021})),
        ("gaterouter.route.mode", s("auto")),
        ("gaterouter.route.tier", s("small")),
        ("gaterouter.route.score", i(500)),
        ("gaterouter.department", s("eng")),
        ("gaterouter.user", s("alice")),
        ("gaterouter.api_key_id", s("k_eng")),
        ("gaterouter.status", s("ok")),
        ("gaterouter.attempts", i(1)),
        ("gaterouter.tag.scenario", s("support-reply")),
    ] {
        assert_eq!(attr(sp, k), Some(&want), "{k} in {sp}");
    }
    assert_eq!(attr(sp, "error.type"), None);
    // The failed call: status ERROR, error.type, the collector's price.
    let (_, sp) = &spans[&recs[1].id.0];
    assert_eq!(sp["status"], json!({"code": 2, "message": "RATE_LIMITED"}));
    assert_eq!(attr(sp, "error.type"), Some(&s("RATE_LIMITED")));
    assert_eq!(attr(sp, "gaterouter.cost_micros"), Some(&i(35_000)));
    assert_eq!(attr(sp, "gaterouter.route.mode"), Some(&s("explicit")));
    // Sales: its department and price.
    let (_, sp) = &spans[&recs[2].id.0];
    assert_eq!(attr(sp, "gaterouter.department"), Some(&s("sales")));
    assert_eq!(attr(sp, "gaterouter.cost_micros"), Some(&i(1_750)));
    assert_eq!(attr(sp, "gen_ai.usage.input_tokens"), Some(&i(500)));

    // Metrics: histogram sums are the records' tokens and seconds, cost their dollars.
    let sum_of = |metric: &str, token_type: Option<&str>| -> f64 {
        rx.points(metric)
            .iter()
            .filter(|p| {
                token_type.is_none_or(|t| {
                    p["attributes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|kv| kv["key"] == "gen_ai.token.type" && kv["value"] == s(t))
                })
            })
            .map(|p| p["sum"].as_f64().or(p["asDouble"].as_f64()).unwrap())
            .sum()
    };
    assert_eq!(sum_of("gen_ai.client.token.usage", Some("input")), 20_500.0);
    assert_eq!(sum_of("gen_ai.client.token.usage", Some("output")), 2_050.0);
    assert!((sum_of("gen_ai.client.operation.duration", None) - 3.2).abs() < 1e-9);
    assert!((sum_of("gaterouter.client.cost", None) - 0.03885).abs() < 1e-12);
    let errors: Vec<Value> = rx
        .points("gen_ai.client.operation.duration")
        .into_iter()
        .filter(|p| {
            p["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|kv| kv["key"] == "error.type")
        })
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["count"], "1");

    // Every request carried the configured header; /metrics counts the delivery.
    assert!(
        rx.lock()
            .api_keys
            .iter()
            .all(|k| k.as_deref() == Some("secret-key"))
    );
    // The exporter counts a delivery once the receiver has answered, which can be just
    // after the test saw the spans arrive: wait for this collector's own counter.
    let mut m = String::new();
    for _ in 0..100 {
        m = env.get_text("/metrics", None).await.1;
        if metric_value(&m, "gaterouter_otel_exported_total{signal=\"traces\"}") >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        metric_value(&m, "gaterouter_otel_exported_total{signal=\"traces\"}") >= 3,
        "{m}"
    );
    assert!(
        m.contains("gaterouter_otel_failed_total{signal=\"metrics\"}"),
        "{m}"
    );
    env.handle.shutdown().await;
}

/// A receiver answering 503 then 200: every record arrives exactly once after recovery,
/// with no loss and no duplicate, in several batches; the failures are counted.
async fn retries_after_failures(db: Db) {
    let rx = Receiver::start().await;
    rx.fail_next("/v1/traces", &[503, 503, 503]);
    rx.fail_next("/v1/metrics", &[503, 502]);
    let env = Env::start(db, |c| {
        export_to(&rx)(c);
        c.otlp_batch = 7;
    })
    .await;
    let (eng, _) = env.seed_org().await;
    let wires: Vec<String> = (0..30)
        .map(|n| {
            wire(
                &Spec {
                    ts: JAN15_1000 + n,
                    prompt: 100 + n,
                    ..Spec::default()
                },
                &eng,
            )
        })
        .collect();
    let (_, v) = env.ingest(&wires).await;
    let accepted = ids(&v, "accepted");
    assert_eq!(accepted.len(), 30, "{v}");
    wait_for("30 spans and 30 records in metrics", || {
        rx.span_counts().len() == 30 && rx.metric_records() == 30
    })
    .await;
    // Let the exporter poll a few more times: nothing is sent again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.assert_clean();
    let counts = rx.span_counts();
    let mut want = accepted.clone();
    want.sort();
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), want);
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
    assert_eq!(rx.metric_records(), 30);
    let input: f64 = rx
        .points("gen_ai.client.token.usage")
        .iter()
        .filter(|p| p["attributes"].to_string().contains("\"input\""))
        .map(|p| p["sum"].as_f64().unwrap())
        .sum();
    assert_eq!(input, (0..30).map(|n| 100.0 + n as f64).sum::<f64>());
    // At least 5 batches of at most 7 records per signal.
    assert!(rx.lock().metrics.len() >= 5);
    let (_, m) = env.get_text("/metrics", None).await;
    assert!(
        metric_value(&m, "gaterouter_otel_failed_total{signal=\"traces\"}") >= 3,
        "{m}"
    );
    assert!(
        metric_value(&m, "gaterouter_otel_failed_total{signal=\"metrics\"}") >= 2,
        "{m}"
    );
    env.handle.shutdown().await;
}

/// The cursor lives in the database: a restarted collector sends what was stored while
/// export was off, and nothing it had already sent.
async fn restart_resumes(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = db.unwrap_or_else(|| sqlite_url(&dir));
    let rx = Receiver::start().await;
    let env = Env::start(Some(url.clone()), export_to(&rx)).await;
    let (eng, _) = env.seed_org().await;
    let first: Vec<String> = (0..5)
        .map(|n| {
            wire(
                &Spec {
                    ts: JAN15_1000 + n,
                    ..Spec::default()
                },
                &eng,
            )
        })
        .collect();
    env.ingest(&first).await;
    wait_for("5 spans", || {
        rx.span_counts().len() == 5 && rx.metric_records() == 5
    })
    .await;
    env.handle.shutdown().await;
    // Export off: records are stored, nothing is sent.
    let env = Env::start(Some(url.clone()), |_| {}).await;
    assert!(!env.handle.exporting());
    let second: Vec<String> = (0..4)
        .map(|n| {
            wire(
                &Spec {
                    ts: JAN16_1100 + n,
                    ..Spec::default()
                },
                &eng,
            )
        })
        .collect();
    let (_, v) = env.ingest(&second).await;
    assert_eq!(ids(&v, "accepted").len(), 4, "{v}");
    env.handle.shutdown().await;
    let before = rx.lock().requests;
    // Export on again: the 4 follow, the 5 are not sent again.
    let env = Env::start(Some(url), export_to(&rx)).await;
    wait_for("9 spans", || {
        rx.span_counts().len() == 9 && rx.metric_records() == 9
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.assert_clean();
    assert!(
        rx.span_counts().values().all(|n| *n == 1),
        "{:?}",
        rx.span_counts()
    );
    assert_eq!(rx.metric_records(), 9);
    assert!(rx.lock().requests > before);
    env.handle.shutdown().await;
}

/// Without `otlp_endpoint` nothing is exported; records stored before export is first
/// turned on are not exported afterwards (the cursor starts then).
async fn off_by_default(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = db.unwrap_or_else(|| sqlite_url(&dir));
    let rx = Receiver::start().await;
    let env = Env::start(Some(url.clone()), |_| {}).await;
    assert!(!env.handle.exporting());
    assert_eq!(env.handle.state().cfg.otlp_endpoint, None);
    let (eng, _) = env.seed_org().await;
    let (_, v) = env
        .ingest(&[
            wire(&Spec::default(), &eng),
            wire(
                &Spec {
                    user: "bob",
                    ..Spec::default()
                },
                &eng,
            ),
        ])
        .await;
    assert_eq!(ids(&v, "accepted").len(), 2, "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.lock().requests, 0);
    env.handle.shutdown().await;
    let env = Env::start(Some(url), export_to(&rx)).await;
    let (_, v) = env
        .ingest(&[wire(
            &Spec {
                ts: JAN16_1100,
                ..Spec::default()
            },
            &eng,
        )])
        .await;
    let new = ids(&v, "accepted");
    wait_for("the new record", || rx.span_counts().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.span_counts().keys().cloned().collect::<Vec<_>>(), new);
    rx.assert_clean();
    env.handle.shutdown().await;
}

/// `otlp_signals = ["traces"]` (a receiver that takes traces only): no metrics request.
async fn traces_only(db: Db) {
    let rx = Receiver::start().await;
    let env = Env::start(db, |c| {
        export_to(&rx)(c);
        c.otlp_signals = vec![gaterouter_collector::otlp_export::Signal::Traces];
    })
    .await;
    let (eng, _) = env.seed_org().await;
    env.ingest(&[
        wire(&Spec::default(), &eng),
        wire(
            &Spec {
                user: "bob",
                ..Spec::default()
            },
            &eng,
        ),
    ])
    .await;
    wait_for("2 spans", || rx.span_counts().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.assert_clean();
    assert!(rx.lock().metrics.is_empty());
    assert_eq!(
        rx.lock().requests,
        1,
        "one traces request, no metrics request"
    );
    env.handle.shutdown().await;
}

/// A bad endpoint is refused at start with a typed error naming the field and the fix.
async fn bad_endpoint_is_refused(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let url = db.unwrap_or_else(|| sqlite_url(&tmp));
    let mut cfg = base_config(&url);
    cfg.otlp_endpoint = Some("otel-collector:4318/v1/traces".into());
    let e = gaterouter_collector::spawn(cfg).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, gaterouter_collector::CollectorError::Config(_)),
        "{msg}"
    );
    assert!(
        msg.contains("otlp_endpoint") && msg.contains("Fix:"),
        "{msg}"
    );
}

/// Two collectors of one PostgreSQL database, both exporting to one receiver while both
/// ingest: every record arrives once per signal.
async fn two_collectors_one_database(url: String) {
    let rx = Receiver::start().await;
    let tweak = |c: &mut CollectorConfig| {
        export_to(&rx)(c);
        c.otlp_interval_ms = 10;
        c.otlp_batch = 25;
        // Both ingest at once: leave time for a late commit.
        c.otlp_settle_ms = Some(1_000);
    };
    let a = Env::start(Some(url.clone()), tweak).await;
    let b = Env::start(Some(url), tweak).await;
    let (eng, _) = a.seed_org().await;
    let wires: Vec<String> = (0..200)
        .map(|n| {
            wire(
                &Spec {
                    ts: JAN15_1000 + n,
                    ..Spec::default()
                },
                &eng,
            )
        })
        .collect();
    let (half_a, half_b) = wires.split_at(100);
    let mut accepted = 0;
    for chunk in 0..5 {
        let (ra, rb) = tokio::join!(
            a.ingest(&half_a[chunk * 20..chunk * 20 + 20]),
            b.ingest(&half_b[chunk * 20..chunk * 20 + 20])
        );
        accepted += ids(&ra.1, "accepted").len() + ids(&rb.1, "accepted").len();
    }
    assert_eq!(accepted, 200);
    wait_for("200 spans and 200 records in metrics", || {
        rx.span_counts().len() == 200 && rx.metric_records() >= 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rx.assert_clean();
    let counts = rx.span_counts();
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "{} records exported more than once, e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(3)]
    );
    assert_eq!(rx.metric_records(), 200);
    // Both resources (instances) may have exported; together exactly once.
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

mod sqlite {
    sqlite_tests!(
        spans_and_metrics,
        retries_after_failures,
        restart_resumes,
        off_by_default,
        traces_only,
        bad_endpoint_is_refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_all_scenarios() {
    let Some(pg) = Pg::start() else { return };
    postgres_scenarios!(pg; spans_and_metrics, retries_after_failures, restart_resumes, off_by_default, traces_only, bad_endpoint_is_refused);
    eprintln!("postgres: two_collectors_one_database");
    two_collectors_one_database(pg.new_db().await).await;
}
