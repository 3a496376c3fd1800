//! `gaterouter` for Node.js: the napi-rs shim. It converts types and errors and nothing
//! else; all logic lives in the `gaterouter` core crate.
//!
//! - Requests cross into Rust as JSON text (`ChatRequest::from_json`, which names the
//!   offending field) and responses/chunks come back as JSON text, so the core's serde
//!   types are the one definition of every field.
//! - Every network wait runs on the tokio runtime napi-rs owns (`tokio_rt` feature); the
//!   JS thread only converts strings, so the event loop is never blocked.
//!
//! ## How errors cross (mapped once, here)
//! A native promise never rejects for a GateRouter failure. It resolves to an *outcome
//! envelope*, one JSON text: `{"ok": <response or chunk>}` or
//! `{"error": {"code", "message", "retryAfter", "provider", "status", "providerMessage",
//! "field"}}`, where `code` is the core's stable [`ErrorKind::code`]. `index.js` parses
//! it once (`JSON.parse` reads the payload in the same pass) and throws a
//! `GateRouterError` carrying those fields. Why not a custom napi status: a napi
//! rejection carries only `code` and `message`, so `retryAfter`, `provider` and the rest
//! would have to be smuggled through the message text. The core's `CANCELLED` crosses as
//! [`ABORTED`] (the JS layer turns it into an `AbortError`); `CLIENT_CLOSED` is the
//! core's too. A napi rejection therefore only ever means a bug in the JS layer (a wrong
//! argument type).
//!
//! ## Cancellation and close: the core's
//! The core tracks every call and stream in flight, cancels them and refuses new ones
//! after `Client::close`. A call is cancelled through its [`NativeCall`] (the core's
//! `Cancel`, made synchronously before the call starts, so an abort can never race it),
//! a stream by its own `close()`, and everything by the client's `close()`.
//!
//! ## CPU work
//! Token counting and cost estimates are pure CPU work whose cost grows with the input
//! (a 1 MB prompt takes tens of milliseconds). Their promise-returning forms run on
//! tokio's blocking pool (`spawn_blocking`), never on the JS thread; the `*Sync` forms
//! exist for small inputs and scripts.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gaterouter::{Cancel, ChatRequest, ChatStream, Client, Config, ConfigSource, Error, ErrorKind};
use napi::bindgen_prelude::{PromiseRaw, within_runtime_if_available};
use napi::{Env, Result as NapiResult};
use napi_derive::napi;
use serde::Serialize;

/// What JavaScript calls a cancelled call (the core's `CANCELLED`).
const ABORTED: &str = "ABORTED";
/// Shim-local code: a background task died (a bug; never expected).
const INTERNAL: &str = "INTERNAL";

/// The outcome envelope: externally tagged, so `{"ok": ...}` or `{"error": {...}}`.
// Built and serialized at once, never stored: the size of the error variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
enum Outcome<'a, T: Serialize> {
    #[serde(rename = "ok")]
    Ok(&'a T),
    #[serde(rename = "error")]
    Error(serde_json::Value),
}

/// The one place a core error becomes something JavaScript sees: the core's
/// serialized [`gaterouter::ErrorInfo`] with camelCased keys (its budget's too), plus
/// `retryAfter` in seconds; a call's own cancellation is an abort to JavaScript
/// (index.js: `AbortError`).
fn error_json(e: &Error) -> String {
    let i = e.info();
    let mut v = serde_json::to_value(&i).unwrap_or_default();
    camel_case_keys(&mut v);
    if let serde_json::Value::Object(o) = &mut v {
        if i.kind == ErrorKind::Cancelled {
            o.insert("code".into(), ABORTED.into());
        }
        if let Some(ms) = i.retry_after_ms {
            o.insert("retryAfter".into(), (ms as f64 / 1000.0).into());
        }
    }
    envelope::<()>(Outcome::Error(v))
}

/// `snake_case` keys to `camelCase`, at every depth.
fn camel_case_keys(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            *o = std::mem::take(o)
                .into_iter()
                .map(|(k, mut v)| {
                    camel_case_keys(&mut v);
                    let mut out = String::with_capacity(k.len());
                    let mut upper = false;
                    for c in k.chars() {
                        match c {
                            '_' => upper = true,
                            c if upper => {
                                out.push(c.to_ascii_uppercase());
                                upper = false;
                            }
                            c => out.push(c),
                        }
                    }
                    (out, v)
                })
                .collect();
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(camel_case_keys),
        _ => {}
    }
}

/// An envelope with one of the shim's own codes.
fn local_error_json(code: &str, message: &str) -> String {
    envelope::<()>(Outcome::Error(
        serde_json::json!({ "code": code, "message": message }),
    ))
}

fn envelope<T: Serialize>(outcome: Outcome<'_, T>) -> String {
    // Serializing our own plain types cannot fail (string keys, finite numbers); keep a
    // well-formed fallback rather than a panic all the same.
    serde_json::to_string(&outcome).unwrap_or_else(|e| {
        format!(
            r#"{{"error":{{"code":"INVALID_RESPONSE","message":{}}}}}"#,
            serde_json::Value::from(format!("cannot serialize: {e}"))
        )
    })
}

fn result_json<T: Serialize>(r: Result<T, Error>) -> String {
    match r {
        Ok(v) => envelope(Outcome::Ok(&v)),
        Err(e) => error_json(&e),
    }
}

/// The native client behind `GateRouter` (index.js). Cheap to share: the core client is
/// an `Arc` and holds one connection pool. Its lifecycle (calls in flight, their
/// cancellation, close) is the core's.
#[napi]
#[derive(Debug)]
pub struct NativeClient {
    client: Client,
}

/// One call's cancel handle (the core's [`Cancel`]): made before the call starts, so an
/// abort can never race it.
#[napi]
#[derive(Debug)]
pub struct NativeCall {
    cancel: Cancel,
}

#[napi]
impl NativeCall {
    /// Cancel the call: its provider request is dropped and its promise resolves to an
    /// `ABORTED` envelope. Idempotent; harmless once the call has ended.
    #[napi]
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

#[napi]
impl NativeClient {
    /// `new NativeClient(configJson?, configFile?)`: config as JSON text in the TOML
    /// config's structure, or a TOML file path; neither means built-in defaults (API keys
    /// from the environment). Throws synchronously (code `CONFIG`) on a bad config; the
    /// message names the field and the fix.
    #[napi(constructor)]
    pub fn new(
        config_json: Option<String>,
        config_file: Option<String>,
    ) -> napi::Result<Self, String> {
        let source = ConfigSource::one_of(
            config_json,
            config_file.map(Into::into),
            "new GateRouter()",
            ["config", "configFile"],
        );
        // The HTTP client is built inside the runtime context so it may bind to it.
        let client = source.and_then(Config::load).and_then(|c| {
            within_runtime_if_available(|| {
                Client::builder(c)
                    .sdk_named("gaterouter-node", env!("CARGO_PKG_VERSION"), "node")
                    .build()
            })
        });
        match client {
            Ok(client) => Ok(NativeClient { client }),
            // Constructors cannot resolve to an envelope: a sync throw whose `code` is the
            // kind code and whose message is the envelope's JSON (index.js re-wraps it).
            Err(e) => Err(napi::Error::new(e.kind().code().to_owned(), error_json(&e))),
        }
    }

    /// A cancel handle for one `chat` call.
    #[napi]
    pub fn new_call(&self) -> NativeCall {
        NativeCall {
            cancel: self.client.cancel_handle(),
        }
    }

    /// Chat: request JSON in, outcome envelope out (`{"ok": ChatCompletion}` or
    /// `{"error": ...}`); `call.cancel()` aborts it.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn chat<'env>(
        &self,
        env: &'env Env,
        request_json: String,
        call: &NativeCall,
    ) -> NapiResult<PromiseRaw<'env, String>> {
        let client = self.client.clone();
        let cancel = call.cancel.clone();
        env.spawn_future(async move {
            let req = match ChatRequest::from_json(&request_json) {
                Ok(r) => r,
                Err(e) => return Ok(error_json(&e)),
            };
            Ok(result_json(client.chat_cancellable(req, &cancel).await))
        })
    }

    /// Open a stream. Returns at once; the connection is made by the first `next()`,
    /// which also reports any error opening it.
    #[napi]
    pub fn stream(&self, request_json: String) -> NativeStream {
        let cancel = self.client.cancel_handle();
        let chunks = match ChatRequest::from_json(&request_json) {
            Ok(req) => self.client.chat_stream_lazy(req, &cancel),
            Err(e) => ChatStream::new(futures_util::stream::once(async move { Err(e) })),
        };
        NativeStream {
            chunks: Arc::new(tokio::sync::Mutex::new(chunks)),
            cancel,
        }
    }

    /// The routing decision for a request, without calling anything: an envelope of
    /// `RouteDecision` (cheap CPU work, so synchronous).
    #[napi]
    pub fn route(&self, request_json: String) -> String {
        result_json(ChatRequest::from_json(&request_json).and_then(|req| self.client.route(&req)))
    }

    /// Prompt tokens of a request as its model (`auto`: the routed model) bills them: an
    /// envelope of `PromptCount`, computed on the blocking pool.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn count_tokens<'env>(
        &self,
        env: &'env Env,
        request_json: String,
    ) -> NapiResult<PromiseRaw<'env, String>> {
        let c = self.client.clone();
        off_thread(env, move || {
            result_json(ChatRequest::from_json(&request_json).and_then(|r| c.count_tokens(&r)))
        })
    }

    /// Expected and maximum cost of a request before calling, with this client's price
    /// catalog and routing: an envelope of `CostEstimate`, computed on the blocking pool.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn estimate_cost<'env>(
        &self,
        env: &'env Env,
        request_json: String,
    ) -> NapiResult<PromiseRaw<'env, String>> {
        let c = self.client.clone();
        off_thread(env, move || {
            result_json(ChatRequest::from_json(&request_json).and_then(|r| c.estimate_cost(&r)))
        })
    }

    /// Outcome feedback on a call (`Client::feedback`): `recordId` is the call's
    /// `usage_record_id`, `score` in [0, 1], `source` one of `user` (default),
    /// `evaluator`, `implicit`, `tagsJson` a JSON object of string values. Validates,
    /// signs and spools a feedback record (a small append, so synchronous, like the
    /// core): an envelope of the feedback's own id. Errors: `INVALID_REQUEST` naming
    /// `score`, `record_id`, `label`, `source` or `tags`; `CONFIG` when usage records
    /// are off.
    #[napi]
    pub fn feedback(
        &self,
        record_id: String,
        score: f64,
        label: Option<String>,
        source: Option<String>,
        tags_json: Option<String>,
    ) -> String {
        let input = feedback_input(record_id, score, label, source, tags_json);
        result_json(input.and_then(|i| self.client.feedback(i)).map(|id| id.0))
    }

    /// What became of the usage records, now: an envelope of `DeliveryReport`.
    #[napi]
    pub fn usage_status(&self) -> String {
        envelope(Outcome::Ok(&self.client.usage_status()))
    }

    /// Refusal reasons seen for the first time since the last call: an envelope of a
    /// list of strings (each reason once; the JS side turns them into warnings).
    #[napi]
    pub fn take_refusal_warnings(&self) -> String {
        envelope(Outcome::Ok(&self.client.take_refusal_warnings()))
    }

    /// Wait (at most `timeoutMs`) until every usage record so far is resolved by the
    /// collector: an envelope of `DeliveryReport` (`drained`, `delivered`, `pending`,
    /// `refused`, ...).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn flush<'env>(
        &self,
        env: &'env Env,
        timeout_ms: f64,
    ) -> NapiResult<PromiseRaw<'env, String>> {
        let client = self.client.clone();
        env.spawn_future(async move { Ok(result_json(client.flush(millis(timeout_ms)).await)) })
    }

    /// Close the client (`Client::close(grace)`): later calls resolve to a
    /// `CLIENT_CLOSED` envelope; calls and streams still in flight after `graceMs` are
    /// aborted (same envelope) and write their usage records; then the usage spool is
    /// drained (bounded by `reporting.shutdown_timeout_ms`). Resolves to an envelope of
    /// `DeliveryReport`. Idempotent: a second call resolves with the first one's report.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn close<'env>(
        &self,
        env: &'env Env,
        grace_ms: f64,
    ) -> NapiResult<PromiseRaw<'env, String>> {
        let client = self.client.clone();
        env.spawn_future(async move { Ok(result_json(client.close(millis(grace_ms)).await)) })
    }

    /// Calls and streams in flight (for tests: it must go back to zero, or calls leak).
    #[napi(getter)]
    pub fn pending_calls(&self) -> u32 {
        u32::try_from(self.client.in_flight()).unwrap_or(u32::MAX)
    }
}

/// `timeoutMs` as a duration: NaN and negatives mean "do not wait"; the cast saturates.
fn millis(ms: f64) -> Duration {
    Duration::from_millis(ms.max(0.0) as u64)
}

/// A native chat stream: `next()` resolves to chunk envelopes, then `null`.
#[napi]
pub struct NativeStream {
    chunks: Arc<tokio::sync::Mutex<ChatStream>>,
    cancel: Cancel,
}

impl std::fmt::Debug for NativeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeStream")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

#[napi]
impl NativeStream {
    /// Next chunk as an envelope (`{"ok": ChatCompletionChunk}` or `{"error": ...}`), or
    /// `null` after the last chunk or an error; after `close()`, `ABORTED`
    /// (`CLIENT_CLOSED` when the client was closed), then `null`.
    #[napi(ts_return_type = "Promise<string | null>")]
    pub fn next<'env>(&self, env: &'env Env) -> NapiResult<PromiseRaw<'env, Option<String>>> {
        let chunks = self.chunks.clone();
        env.spawn_future(async move {
            Ok(match chunks.lock().await.next().await {
                Some(Ok(chunk)) => Some(envelope(Outcome::Ok(&chunk))),
                Some(Err(e)) => Some(error_json(&e)),
                None => None,
            })
        })
    }

    /// Stop reading: abort a pending `next()` and drop the connection. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

/// The core's `FeedbackInput` from the JS arguments; a bad `source` or `tags` is an
/// `INVALID_REQUEST` naming it (the core checks the rest).
fn feedback_input(
    record_id: String,
    score: f64,
    label: Option<String>,
    source: Option<String>,
    tags_json: Option<String>,
) -> Result<gaterouter::usage::FeedbackInput, Error> {
    let invalid = |field: &str, message: String| Error::InvalidRequest {
        field: Some(field.to_owned()),
        message,
    };
    let source = match source.as_deref() {
        None => gaterouter::usage::FeedbackSource::default(),
        Some(s) => gaterouter::usage::FeedbackSource::parse(s)
            .map_err(|e| invalid("source", e.to_string()))?,
    };
    let tags = match tags_json.as_deref() {
        None => Default::default(),
        Some(j) => serde_json::from_str(j).map_err(|e| {
            invalid(
                "tags",
                format!(
                    "tags: {e}; pass an object of string values, e.g. {{\"scenario\": \"support\"}}"
                ),
            )
        })?,
    };
    Ok(gaterouter::usage::FeedbackInput {
        record_id,
        score,
        label,
        source,
        tags,
    })
}

/// Version of the Rust core this addon was built from.
#[napi]
pub fn core_version() -> String {
    gaterouter::SDK_VERSION.to_owned()
}

/// Run CPU work on tokio's blocking pool and resolve a promise with its envelope.
fn off_thread<'env>(
    env: &'env Env,
    work: impl FnOnce() -> String + Send + 'static,
) -> NapiResult<PromiseRaw<'env, String>> {
    env.spawn_future(async move {
        Ok(tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
            local_error_json(INTERNAL, &format!("the counting task failed: {e}"))
        }))
    })
}

/// `countText` / `countTextSync`: tokens of a text for `model`.
fn count_text_json(text: &str, model: &str) -> String {
    let c = gaterouter::tokens::count_text(text, model);
    envelope(Outcome::Ok(&c))
}

/// Prompt tokens of a request for its own `model` (no client: `auto` is not resolved).
fn count_request_json(request_json: &str) -> String {
    result_json(
        ChatRequest::from_json(request_json)
            .map(|req| gaterouter::tokens::count_request(&req, &req.model)),
    )
}

/// Cost estimate of a request for its own `model` with the built-in catalog.
fn estimate_cost_json(request_json: &str) -> String {
    result_json(
        ChatRequest::from_json(request_json)
            .and_then(|req| gaterouter::pricing::estimate_cost(&req, &req.model)),
    )
}

/// Tokens of a text as `model` counts them, off the JS thread: an envelope of
/// `{tokens, exact}`.
#[napi(ts_return_type = "Promise<string>")]
pub fn count_text(env: &Env, text: String, model: String) -> NapiResult<PromiseRaw<'_, String>> {
    off_thread(env, move || count_text_json(&text, &model))
}

/// [`count_text`] on the calling thread (small inputs).
#[napi]
pub fn count_text_sync(text: String, model: String) -> String {
    count_text_json(&text, &model)
}

/// Prompt tokens of a request (JSON) as its `model` bills them, off the JS thread: an
/// envelope of `PromptCount`.
#[napi(ts_return_type = "Promise<string>")]
pub fn count_request(env: &Env, request_json: String) -> NapiResult<PromiseRaw<'_, String>> {
    off_thread(env, move || count_request_json(&request_json))
}

/// [`count_request`] on the calling thread.
#[napi]
pub fn count_request_sync(request_json: String) -> String {
    count_request_json(&request_json)
}

/// Expected and maximum cost of a request (JSON) with the built-in catalog, off the JS
/// thread: an envelope of `CostEstimate`.
#[napi(ts_return_type = "Promise<string>")]
pub fn estimate_cost(env: &Env, request_json: String) -> NapiResult<PromiseRaw<'_, String>> {
    off_thread(env, move || estimate_cost_json(&request_json))
}

/// [`estimate_cost`] on the calling thread.
#[napi]
pub fn estimate_cost_sync(request_json: String) -> String {
    estimate_cost_json(&request_json)
}

/// Cost of a finished call from its usage (JSON, `Usage` shape; `total_tokens` may be
/// left out) with the built-in catalog: an envelope of `Cost`.
#[napi]
pub fn cost(usage_json: String, model: String, batch: bool, cache_write_1h: bool) -> String {
    let opts = gaterouter::pricing::CostOptions {
        batch,
        cache_write_1h,
    };
    result_json(gaterouter::standalone::cost_json(&usage_json, &model, opts))
}

/// Canonical JSON and Ed25519 signature of a usage record (JSON) with the given key
/// (base64 seed or PKCS#8 PEM): an envelope of `{canonical, signature}`. For the shared
/// test vectors and apps that sign records themselves.
#[napi]
pub fn sign_record(record_json: String, signing_key: String) -> String {
    #[derive(Serialize)]
    struct Signed {
        canonical: String,
        signature: String,
    }
    let signed = gaterouter::standalone::sign_record_json(&record_json, &signing_key).map(
        |(canonical, signature)| Signed {
            canonical,
            signature,
        },
    );
    result_json(signed)
}
