//! The HTTP server: shared state, routing, the per-request pipeline and the admin endpoints.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::common::{self, ApiErr, CacheUse, Out, Prompt};
use crate::faults::{self, Applied, Fault, FaultKind, Queued};
use crate::provider::Provider;
use crate::{anthropic, gemini, openai};

/// How many requests `GET /_emulator/requests` keeps.
const REQUEST_LOG_LEN: usize = 100;
/// Prefix-cache entries kept before the cache is cleared (bounds memory in long benchmarks).
const CACHE_CAPACITY: usize = 200_000;

#[derive(Debug, Default)]
struct Stats {
    total: u64,
    by_provider: BTreeMap<&'static str, u64>,
    by_outcome: BTreeMap<String, u64>,
    by_provider_outcome: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

#[derive(Debug, Default)]
struct Inner {
    seq: AtomicU64,
    /// Connections accepted, and how many of them have TCP_NODELAY (checked after setting it).
    accepted: AtomicU64,
    nodelay: AtomicU64,
    faults: Mutex<VecDeque<Queued>>,
    stats: Mutex<Stats>,
    requests: Mutex<VecDeque<Value>>,
    cache: Mutex<HashSet<u64>>,
    /// Uses of header/directive faults with a `times` budget.
    times: Mutex<std::collections::HashMap<u64, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The emulator's shared state; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl Emulator {
    /// A fresh emulator state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The axum router serving every route (for embedding in another server).
    pub fn router(&self) -> Router {
        let s = self.clone();
        Router::new()
            .route(
                "/healthz",
                get(|| async { axum::Json(json!({"status": "ok"})) }),
            )
            .route("/openai/v1/chat/completions", post(chat_openai))
            .route("/v1/chat/completions", post(chat_openai))
            .route("/deepseek/v1/chat/completions", post(chat_deepseek))
            .route("/deepseek/chat/completions", post(chat_deepseek))
            .route("/anthropic/v1/messages", post(messages))
            .route("/v1/messages", post(messages))
            .route(
                "/anthropic/v1/messages/count_tokens",
                post(count_tokens_anthropic),
            )
            .route("/v1/messages/count_tokens", post(count_tokens_anthropic))
            .route("/gemini/{version}/models/{action}", post(gemini_prefixed))
            .route("/{version}/models/{action}", post(gemini_bare))
            .route("/_emulator/faults", post(queue_fault))
            .route("/_emulator/reset", post(reset))
            .route("/_emulator/stats", get(stats))
            .route("/_emulator/requests", get(requests))
            .fallback(no_route)
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(s)
    }

    fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn record(&self, provider: Provider, outcome: &str) {
        let mut st = lock(&self.inner.stats);
        st.total += 1;
        *st.by_provider.entry(provider.name()).or_default() += 1;
        *st.by_outcome.entry(outcome.to_string()).or_default() += 1;
        *st.by_provider_outcome
            .entry(provider.name())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }

    fn log_request(
        &self,
        provider: Provider,
        uri: &Uri,
        headers: &HeaderMap,
        raw: &Bytes,
        parsed: &Result<Value, serde_json::Error>,
    ) -> u64 {
        let seq = self.next_seq();
        let mut hs = serde_json::Map::new();
        for (name, value) in headers {
            let v = String::from_utf8_lossy(value.as_bytes()).to_string();
            let n = name.as_str();
            let v = if matches!(
                n,
                "authorization" | "x-api-key" | "x-goog-api-key" | "api-key" | "cookie"
            ) {
                mask(&v)
            } else {
                v
            };
            hs.insert(n.to_string(), Value::String(v));
        }
        let query = uri.query().map(|q| {
            q.split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("key", v)) => format!("key={}", mask(v)),
                    _ => kv.to_string(),
                })
                .collect::<Vec<_>>()
                .join("&")
        });
        let body_v = match parsed {
            Ok(v) => v.clone(),
            Err(_) => json!({"_raw": String::from_utf8_lossy(raw)}),
        };
        let entry = json!({
            "seq": seq,
            "provider": provider.name(),
            "method": "POST",
            "path": uri.path(),
            "query": query,
            "headers": hs,
            "body": body_v,
        });
        let mut log = lock(&self.inner.requests);
        if log.len() >= REQUEST_LOG_LEN {
            log.pop_front();
        }
        log.push_back(entry);
        seq
    }

    /// Drops header/directive faults whose `times=N` budget is used up. The budget is counted
    /// per (provider, model, last user text, fault spec), so a client retrying the same request
    /// sees the fault N times and then succeeds.
    fn within_times(&self, faults: Vec<Fault>, p: Provider, model: &str, text: &str) -> Vec<Fault> {
        use std::hash::{Hash, Hasher};
        faults
            .into_iter()
            .filter(|f| {
                let Some(times) = f.u64_param("times") else {
                    return true;
                };
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (p.name(), model, text, f.kind.name(), &f.params).hash(&mut h);
                let mut seen = lock(&self.inner.times);
                let n = seen.entry(h.finish()).or_insert(0);
                *n += 1;
                *n <= times
            })
            .collect()
    }

    fn take_queued(&self, provider: Provider, model: &str) -> Option<Fault> {
        let mut q = lock(&self.inner.faults);
        let idx = q.iter().position(|f| {
            f.remaining > 0
                && f.provider.is_none_or(|p| p == provider)
                && f.model.as_deref().is_none_or(|m| m == model)
        })?;
        let f = q.get_mut(idx)?;
        f.remaining -= 1;
        let fault = f.fault.clone();
        if f.remaining == 0 {
            q.remove(idx);
        }
        Some(fault)
    }

    /// Automatic prefix caching: longest previously seen prefix >= `min`, rounded down to `step`.
    fn auto_cache(&self, ns: &str, prompt: &Prompt, min: u64, step: u64) -> u64 {
        let prefixes = prompt.prefixes(ns);
        let total = prompt.total();
        if total < min {
            return 0;
        }
        let mut cache = lock(&self.inner.cache);
        let mut best = 0;
        for (h, cum, _) in &prefixes {
            if cache.contains(h) {
                best = best.max(*cum);
            }
        }
        if cache.len() > CACHE_CAPACITY {
            cache.clear();
        }
        for (h, cum, _) in &prefixes {
            if *cum >= min {
                cache.insert(*h);
            }
        }
        let cached = best / step.max(1) * step.max(1);
        if cached >= min { cached.min(total) } else { 0 }
    }

    /// Anthropic explicit caching at `cache_control` breakpoints.
    fn breakpoint_cache(&self, ns: &str, prompt: &Prompt, min: u64) -> CacheUse {
        let prefixes = prompt.prefixes(ns);
        let bps: Vec<(u64, u64, bool)> = prefixes
            .iter()
            .filter_map(|(h, cum, bp)| bp.map(|ttl| (*h, *cum, ttl)))
            .filter(|(_, cum, _)| *cum >= min)
            .collect();
        let Some(&(_, last_cum, _)) = bps.last() else {
            return CacheUse::default();
        };
        let mut cache = lock(&self.inner.cache);
        // Like the real lookback: any earlier breakpoint's prefix (even one the client has since
        // moved) that ends at or before the last breakpoint is read from the cache.
        let mut read = 0;
        for (h, cum, _) in prefixes.iter().filter(|(_, cum, _)| *cum <= last_cum) {
            if cache.contains(h) {
                read = read.max(*cum);
            }
        }
        let mut out = CacheUse {
            read,
            ..CacheUse::default()
        };
        if let Some((h, cum, ttl)) = bps.last()
            && *cum > read
            && !cache.contains(h)
        {
            out.write = cum - read;
            out.write_1h = *ttl;
        }
        if cache.len() > CACHE_CAPACITY {
            cache.clear();
        }
        for (h, _, _) in &bps {
            cache.insert(*h);
        }
        out
    }

    /// Queues a fault described like the body of `POST /_emulator/faults`; returns the
    /// number of queued fault uses.
    pub fn queue_fault(&self, spec: &Value) -> Result<u64, String> {
        let q = faults::parse_queue_body(spec)?;
        let mut faults = lock(&self.inner.faults);
        if q.remaining > 0 {
            faults.push_back(q);
        }
        Ok(faults.iter().map(|f| f.remaining).sum())
    }

    /// The `GET /_emulator/stats` document.
    pub fn stats(&self) -> Value {
        let queued: u64 = lock(&self.inner.faults).iter().map(|f| f.remaining).sum();
        let st = lock(&self.inner.stats);
        json!({
            "total": st.total,
            "by_provider": st.by_provider,
            "by_outcome": st.by_outcome,
            "by_provider_outcome": st.by_provider_outcome,
            "faults_queued": queued,
            "connections": {
                "accepted": self.inner.accepted.load(Ordering::Relaxed),
                "nodelay": self.inner.nodelay.load(Ordering::Relaxed),
            },
        })
    }

    /// The `GET /_emulator/requests` entries, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.inner.requests).iter().cloned().collect()
    }

    /// Clears queued faults, stats, the request log, prompt caches and the id counter.
    pub fn reset(&self) {
        lock(&self.inner.faults).clear();
        *lock(&self.inner.stats) = Stats::default();
        lock(&self.inner.requests).clear();
        lock(&self.inner.cache).clear();
        lock(&self.inner.times).clear();
        self.inner.seq.store(0, Ordering::Relaxed);
    }
}

fn mask(v: &str) -> String {
    let (prefix, rest) = match v.strip_prefix("Bearer ") {
        Some(r) => ("Bearer ", r),
        None => ("", v),
    };
    format!("{prefix}{}***", common::first_chars(rest, 4))
}

/// Which API shape a request uses.
#[derive(Debug, Clone)]
enum Route {
    Chat,
    Messages,
    Gemini {
        model: String,
        stream: bool,
        sse: bool,
    },
    /// Anthropic `POST /v1/messages/count_tokens`.
    AnthropicCount,
    /// Gemini `:countTokens`.
    GeminiCount {
        model: String,
    },
}

async fn chat_openai(
    State(e): State<Emulator>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(e, Provider::OpenAi, Route::Chat, headers, uri, body).await
}

async fn chat_deepseek(
    State(e): State<Emulator>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(e, Provider::DeepSeek, Route::Chat, headers, uri, body).await
}

async fn messages(
    State(e): State<Emulator>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(e, Provider::Anthropic, Route::Messages, headers, uri, body).await
}

async fn count_tokens_anthropic(
    State(e): State<Emulator>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(
        e,
        Provider::Anthropic,
        Route::AnthropicCount,
        headers,
        uri,
        body,
    )
    .await
}

async fn gemini_prefixed(
    State(e): State<Emulator>,
    Path((_version, action)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    gemini_route(e, action, headers, uri, body).await
}

async fn gemini_bare(
    State(e): State<Emulator>,
    Path((version, action)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if !matches!(version.as_str(), "v1" | "v1beta" | "v1alpha") {
        return no_route(axum::http::Method::POST, uri).await;
    }
    gemini_route(e, action, headers, uri, body).await
}

async fn gemini_route(
    e: Emulator,
    action: String,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let (model, method) = match action.rsplit_once(':') {
        Some((m, a)) => (m.to_string(), a.to_string()),
        None => (action.clone(), String::new()),
    };
    let stream = match method.as_str() {
        "generateContent" => false,
        "streamGenerateContent" => true,
        "countTokens" => {
            return handle(
                e,
                Provider::Gemini,
                Route::GeminiCount { model },
                headers,
                uri,
                body,
            )
            .await;
        }
        _ => {
            return gemini::render_error(
                &ApiErr::invalid(format!(
                    "Unknown method '{method}'; use :generateContent or :streamGenerateContent"
                )),
                StatusCode::NOT_FOUND,
            );
        }
    };
    let sse = query_param(&uri, "alt").is_some_and(|v| v == "sse");
    handle(
        e,
        Provider::Gemini,
        Route::Gemini { model, stream, sse },
        headers,
        uri,
        body,
    )
    .await
}

/// The model a request is for (body `model`, or the Gemini path).
fn request_model(route: &Route, body: &Value) -> String {
    match route {
        Route::Gemini { model, .. } | Route::GeminiCount { model } => model.clone(),
        _ => body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn render_error(p: Provider, err: &ApiErr) -> Response {
    match p {
        Provider::OpenAi | Provider::DeepSeek => openai::render_error(err),
        Provider::Anthropic => anthropic::render_error(err),
        Provider::Gemini => gemini::render_error(err, StatusCode::OK),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn context_limit(p: Provider, model: &str) -> u64 {
    match p {
        Provider::OpenAi if model.starts_with("gpt-4.1") => 1_047_576,
        Provider::OpenAi if model.starts_with("gpt-5") => 400_000,
        Provider::OpenAi | Provider::DeepSeek => 128_000,
        Provider::Anthropic => 200_000,
        Provider::Gemini => 1_048_576,
    }
}

/// The per-request pipeline shared by every provider route.
async fn handle(
    e: Emulator,
    p: Provider,
    route: Route,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&raw);
    let seq = e.log_request(p, &uri, &headers, &raw, &parsed);
    let (resp, outcome) = pipeline(&e, p, route, &headers, &uri, parsed, seq).await;
    e.record(p, &outcome);
    resp
}

async fn pipeline(
    e: &Emulator,
    p: Provider,
    route: Route,
    headers: &HeaderMap,
    uri: &Uri,
    parsed: Result<Value, serde_json::Error>,
    seq: u64,
) -> (Response, String) {
    let fail = |err: ApiErr| {
        let o = err.outcome().to_string();
        (render_error(p, &err), o)
    };
    let body: Value = match parsed {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return fail(ApiErr::InvalidJson(
                "the request body must be a JSON object".into(),
            ));
        }
        Err(err) => return fail(ApiErr::InvalidJson(err.to_string())),
    };

    // Authentication.
    let key = match p {
        Provider::OpenAi | Provider::DeepSeek => header_str(headers, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string),
        Provider::Anthropic => header_str(headers, "x-api-key")
            .map(str::to_string)
            .or_else(|| {
                header_str(headers, "authorization")
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_string)
            }),
        Provider::Gemini => header_str(headers, "x-goog-api-key")
            .map(str::to_string)
            .or_else(|| query_param(uri, "key")),
    };
    match key.as_deref().map(str::trim) {
        None | Some("") => return fail(ApiErr::MissingKey),
        Some(k) if k.starts_with("bad") => return fail(ApiErr::InvalidKey(k.to_string())),
        Some(_) => {}
    }
    if p == Provider::Anthropic
        && header_str(headers, "anthropic-version").is_none_or(str::is_empty)
    {
        return fail(ApiErr::invalid("anthropic-version: header is required"));
    }

    // Token counting endpoints: no faults, no caching, just the usage rule.
    match &route {
        Route::AnthropicCount => {
            let mut b = body.clone();
            if let Some(o) = b.as_object_mut() {
                o.entry("max_tokens").or_insert(json!(1_000_000));
                o.remove("thinking");
            }
            return match anthropic::normalize(&b) {
                Ok(n) => (
                    axum::Json(json!({"input_tokens": n.prompt.total()})).into_response(),
                    "ok".into(),
                ),
                Err(err) => fail(err),
            };
        }
        Route::GeminiCount { model } => {
            let req = body.get("generateContentRequest").unwrap_or(&body);
            return match gemini::normalize(req, model) {
                Ok(n) => {
                    let t = n.prompt.total();
                    (
                        axum::Json(json!({"totalTokens": t,
                            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": t}]}))
                        .into_response(),
                        "ok".into(),
                    )
                }
                Err(err) => fail(err),
            };
        }
        _ => {}
    }

    // Faults: header, then directives, then the queue.
    let mut selected: Vec<Fault> = Vec::new();
    let user_text = match p {
        Provider::OpenAi | Provider::DeepSeek => openai::last_user_text(&body),
        Provider::Anthropic => anthropic::last_user_text(&body),
        Provider::Gemini => gemini::last_user_text(&body),
    };
    let model = request_model(&route, &body);
    if let Some(h) = header_str(headers, "x-emulator-fault") {
        match faults::parse_header(h) {
            Ok(f) => selected = e.within_times(f, p, &model, &user_text),
            Err(msg) => return fail(ApiErr::invalid(msg)),
        }
    }
    if selected.is_empty() {
        match faults::parse_directives(&user_text) {
            Ok(f) => selected = e.within_times(f, p, &model, &user_text),
            Err(msg) => return fail(ApiErr::invalid(msg)),
        }
    }
    if selected.is_empty()
        && let Some(f) = e.take_queued(p, &model)
    {
        selected.push(f);
    }
    let mut applied = Applied::from_faults(&selected);
    let is_stream = match &route {
        Route::Gemini { stream, .. } => *stream,
        _ => body.get("stream") == Some(&Value::Bool(true)),
    };
    if applied.slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(applied.slow_ms)).await;
    }
    if let Some(f) = applied.terminal.clone() {
        let outcome = format!("fault:{}", f.kind.name());
        let err = match f.kind {
            FaultKind::RateLimit => ApiErr::RateLimit {
                retry_after: f
                    .f64_param("retry_after")
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .unwrap_or(1.0),
            },
            FaultKind::ServerError => ApiErr::Server,
            FaultKind::Overloaded => ApiErr::Overloaded,
            FaultKind::Auth => ApiErr::InvalidKey("emulated-auth-fault".into()),
            FaultKind::ContextLength => {
                let model = body.get("model").and_then(Value::as_str).unwrap_or("");
                let limit = context_limit(p, model);
                ApiErr::ContextLength {
                    tokens: limit + common::tok(&body.to_string()).max(1),
                    limit,
                }
            }
            FaultKind::HtmlError => {
                return (
                    common::html_error(status_param(&f, StatusCode::BAD_GATEWAY)),
                    outcome,
                );
            }
            _ => ApiErr::invalid(
                "Emulated bad request (emulator fault 'bad_request'): the request was rejected on purpose.",
            ),
        };
        // On a stream, `after_events=N` turns the error into a mid-stream error event.
        if let Some(n) = f.u64_param("after_events").filter(|_| is_stream)
            && !matches!(
                f.kind,
                FaultKind::Auth | FaultKind::ContextLength | FaultKind::BadRequest
            )
        {
            let ev = match p {
                Provider::OpenAi | Provider::DeepSeek => {
                    common::sse_data(&openai::error_parts(&err).1)
                }
                Provider::Anthropic => common::sse_event("error", &anthropic::error_parts(&err).1),
                Provider::Gemini => common::sse_data(&gemini::error_parts(&err, StatusCode::OK).1),
            };
            applied.mid_error = Some((usize::try_from(n).unwrap_or(usize::MAX), ev));
            applied.terminal = None;
        } else {
            let mut resp = render_error(p, &err);
            // `server_error;status=502` (or 503, 504): the same provider error body
            // under another 5xx status, as gateways in front of the API answer.
            if f.kind == FaultKind::ServerError {
                *resp.status_mut() = status_param(&f, StatusCode::INTERNAL_SERVER_ERROR);
            }
            return (resp, outcome);
        }
    }

    // Validation and normalization.
    let (norm, stream, json_array_stream) = match &route {
        Route::Chat => match openai::normalize(&body, p) {
            Ok(n) => (n, body.get("stream") == Some(&Value::Bool(true)), false),
            Err(err) => return fail(err),
        },
        Route::Messages => match anthropic::normalize(&body) {
            Ok(n) => (n, body.get("stream") == Some(&Value::Bool(true)), false),
            Err(err) => return fail(err),
        },
        Route::Gemini { model, stream, sse } => match gemini::normalize(&body, model) {
            Ok(n) => (n, *stream, *stream && !*sse),
            Err(err) => return fail(err),
        },
        Route::AnthropicCount | Route::GeminiCount { .. } => {
            return fail(ApiErr::invalid("token counting is answered above"));
        }
    };
    let total = norm.prompt.total();
    let limit = context_limit(p, &norm.model);
    if total > limit {
        return fail(ApiErr::ContextLength {
            tokens: total,
            limit,
        });
    }

    // Caching.
    let ns = format!("{}\u{0}{}", p.name(), norm.model);
    let cache = match p {
        Provider::OpenAi => CacheUse {
            read: e.auto_cache(&ns, &norm.prompt, 1024, 128),
            ..Default::default()
        },
        Provider::DeepSeek => CacheUse {
            read: e.auto_cache(&ns, &norm.prompt, 64, 64),
            ..Default::default()
        },
        Provider::Gemini => CacheUse {
            read: e.auto_cache(&ns, &norm.prompt, 1024, 1),
            ..Default::default()
        },
        Provider::Anthropic => e.breakpoint_cache(&ns, &norm.prompt, 1024),
    };

    let mut reply = common::make_reply(&norm, applied.bad_tool_args);
    if applied.content_filter {
        reply = common::filtered(reply, &norm.model, &norm.user_text);
    }
    let out = Out {
        body: &body,
        norm: &norm,
        reply: &reply,
        cache,
        seq,
        created: now_unix(),
        stream,
        applied: &applied,
        json_array_stream,
    };
    let resp = match p {
        Provider::OpenAi | Provider::DeepSeek => openai::render(&out, p),
        Provider::Anthropic => anthropic::render(&out),
        Provider::Gemini => gemini::render(&out),
    };
    let outcome = applied
        .names
        .first()
        .map(|n| format!("fault:{n}"))
        .unwrap_or_else(|| "ok".to_string());
    (resp, outcome)
}

/// The fault's `status` parameter when it is a valid HTTP status (100..=599), else
/// `default`.
fn status_param(f: &Fault, default: StatusCode) -> StatusCode {
    f.u64_param("status")
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..=599).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(default)
}

async fn queue_fault(State(e): State<Emulator>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(err) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("invalid JSON: {err}")})),
            )
                .into_response();
        }
    };
    match e.queue_fault(&v) {
        Ok(n) => axum::Json(json!({"queued": n})).into_response(),
        Err(msg) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": msg}))).into_response(),
    }
}

/// Unknown routes: a JSON 404 that names the route, to make a wrong `base_url` obvious.
async fn no_route(method: axum::http::Method, uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {
            "message": format!(
                "gaterouter-emulator has no route for {method} {}; provider routes are /openai/v1/chat/completions, /deepseek/v1/chat/completions, /anthropic/v1/messages, /gemini/v1beta/models/MODEL:generateContent (see the crate docs)",
                uri.path()
            ),
            "type": "not_found_error",
            "code": 404,
            "status": "NOT_FOUND"
        }})),
    )
        .into_response()
}

async fn reset(State(e): State<Emulator>) -> Response {
    e.reset();
    axum::Json(json!({"reset": true})).into_response()
}

async fn stats(State(e): State<Emulator>) -> Response {
    axum::Json(e.stats()).into_response()
}

async fn requests(State(e): State<Emulator>) -> Response {
    axum::Json(Value::Array(e.requests())).into_response()
}

/// A running emulator; dropping it stops the server.
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    emulator: Emulator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (e.g. to reset between tests without HTTP).
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and serves the emulator on the current runtime.
pub async fn start(addr: SocketAddr) -> std::io::Result<EmulatorHandle> {
    let emulator = Emulator::new();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    // No Nagle: small SSE events must not wait for delayed ACKs.
    let counters = emulator.clone();
    let listener = listener.tap_io(move |tcp| {
        let _ = tcp.set_nodelay(true);
        counters.inner.accepted.fetch_add(1, Ordering::Relaxed);
        if tcp.nodelay().unwrap_or(false) {
            counters.inner.nodelay.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (tx, rx) = oneshot::channel::<()>();
    let app = emulator.router();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(EmulatorHandle {
        addr,
        emulator,
        stop: Some(tx),
        task: Some(task),
    })
}

/// An emulator running on its own thread and runtime, for synchronous callers.
#[derive(Debug)]
pub struct BlockingHandle {
    addr: SocketAddr,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlockingHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Stops the server and joins its thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }
    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BlockingHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts the emulator on a dedicated thread with a current-thread runtime.
pub fn start_blocking(addr: SocketAddr) -> std::io::Result<BlockingHandle> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("gaterouter-emulator".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match start(addr).await {
                    Ok(h) => {
                        let _ = ready_tx.send(Ok(h.addr()));
                        let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                        h.shutdown().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })?;
    let addr = ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("emulator thread exited before binding"))??;
    Ok(BlockingHandle {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}
