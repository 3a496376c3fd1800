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
//! would have to be smuggled through the message text. Two codes are the shim's own:
//! [`ABORTED`] (the call was cancelled; the JS layer turns it into an `AbortError`) and
//! [`CLIENT_CLOSED`] (`close()` was called). A napi rejection therefore only ever means a
//! bug in the JS layer (a wrong argument type).
//!
//! ## Cancellation
//! Every call gets a child of the client's [`CancellationToken`]; the future races it
//! with `tokio::select!`, so cancelling drops the in-flight provider request (and its
//! connection). A call is cancelled by id (`cancel(callId)`, the id chosen by the caller
//! and registered synchronously when the call starts, so an abort can never race the
//! registration), a stream by its own `close()`, and everything by the client's `close()`.
//!
//! ## CPU work
//! Token counting and cost estimates are pure CPU work whose cost grows with the input
//! (a 1 MB prompt takes tens of milliseconds). Their promise-returning forms run on
//! tokio's blocking pool (`spawn_blocking`), never on the JS thread; the `*Sync` forms
//! exist for small inputs and scripts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use gaterouter::{ChatRequest, Client, Config, Error};
use napi::bindgen_prelude::{PromiseRaw, within_runtime_if_available};
use napi::{Env, Result as NapiResult};
use napi_derive::napi;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Shim-local code: the call was cancelled (AbortSignal, `stream.close()`, `client.close()`).
const ABORTED: &str = "ABORTED";
/// Shim-local code: the client was closed before the call started.
const CLIENT_CLOSED: &str = "CLIENT_CLOSED";
/// Shim-local code: a background task died (a bug; never expected).
const INTERNAL: &str = "INTERNAL";
/// Longest `close()` waits for aborted calls to unwind (so their records are written
/// before the usage spool is drained).
const CLOSE_UNWIND: Duration = Duration::from_secs(2);

/// The `error` half of the outcome envelope (camelCase: it is read by JavaScript).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorInfo<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// `PERMISSION_DENIED`: the policy rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    /// Where the rule or budget was set (`department:eng`).
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<String>,
    /// `BUDGET_EXCEEDED`: the budget, camelCased.
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<BudgetInfo>,
}

/// A budget as JavaScript sees it (the core's `BudgetStatus`, camelCase).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BudgetInfo {
    id: String,
    level: String,
    metric: gaterouter::accounts::Metric,
    period: gaterouter::accounts::Period,
    limit: u64,
    used: u64,
    reserved: u64,
    remaining: u64,
    period_start_ms: u64,
    resets_at_ms: u64,
    enforcement: gaterouter::accounts::Enforcement,
    notify_at: Vec<u8>,
}

impl From<&gaterouter::accounts::BudgetStatus> for BudgetInfo {
    fn from(b: &gaterouter::accounts::BudgetStatus) -> Self {
        BudgetInfo {
            id: b.id.clone(),
            level: b.level.to_string(),
            metric: b.metric,
            period: b.period,
            limit: b.limit,
            used: b.used,
            reserved: b.reserved,
            remaining: b.remaining,
            period_start_ms: b.period_start_ms,
            resets_at_ms: b.resets_at_ms,
            enforcement: b.enforcement,
            notify_at: b.notify_at.clone(),
        }
    }
}

/// The outcome envelope: externally tagged, so `{"ok": ...}` or `{"error": {...}}`.
#[derive(Serialize)]
enum Outcome<'a, T: Serialize> {
    #[serde(rename = "ok")]
    Ok(&'a T),
    #[serde(rename = "error")]
    Error(ErrorInfo<'a>),
}

/// The one place a core error becomes something JavaScript sees: the core's
/// [`gaterouter::ErrorInfo`], camelCased.
fn error_json(e: &Error) -> String {
    let i = e.info();
    let info = ErrorInfo {
        code: i.code,
        message: i.message,
        retry_after: i.retry_after_ms.map(|ms| ms as f64 / 1000.0),
        provider: i.provider.as_deref(),
        status: i.status,
        provider_message: i.provider_message.as_deref(),
        field: i.field.as_deref(),
        rule: i.rule.as_deref(),
        level: i.level,
        budget: i.budget.as_ref().map(BudgetInfo::from),
    };
    envelope::<()>(Outcome::Error(info))
}

/// An envelope with one of the shim's own codes.
fn local_error_json(code: &str, message: &str) -> String {
    let info = ErrorInfo {
        code,
        message: message.to_owned(),
        retry_after: None,
        provider: None,
        status: None,
        provider_message: None,
        field: None,
        rule: None,
        level: None,
        budget: None,
    };
    envelope::<()>(Outcome::Error(info))
}

fn aborted_json() -> String {
    local_error_json(ABORTED, "the call was aborted")
}

/// What a cancelled call reports: closing the client (the root token) or its own abort.
fn cancelled_json(root: &CancellationToken) -> String {
    if root.is_cancelled() {
        closed_json()
    } else {
        aborted_json()
    }
}

fn closed_json() -> String {
    local_error_json(
        CLIENT_CLOSED,
        "the client is closed: create a new GateRouter",
    )
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

/// In-flight calls that can be cancelled by id. An entry lives from the synchronous start
/// of a call until its future ends or is dropped ([`CallGuard`]).
type Calls = Arc<Mutex<HashMap<u32, CancellationToken>>>;

/// Removes a call's entry when its future ends, whether it finished, failed or was dropped.
struct CallGuard {
    calls: Calls,
    id: Option<u32>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }
    }
}

/// The native client behind `GateRouter` (index.js). Cheap to share: the core client is
/// an `Arc` and holds one connection pool.
#[napi]
#[derive(Debug)]
pub struct NativeClient {
    /// `None` once closed (the connection pool is released with the last in-flight call).
    client: RwLock<Option<Client>>,
    /// Parent of every call's token: cancelling it aborts everything (`close()`).
    root: CancellationToken,
    calls: Calls,
    /// Open streams, so `close()` can drop them (writing their `cancelled` records)
    /// before it drains the usage spool. Dead entries are pruned as streams open.
    streams: Mutex<Vec<Weak<StreamSlot>>>,
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
        let config = match (config_json, config_file) {
            (Some(_), Some(_)) => Err(Error::config(
                "new GateRouter()",
                "both config and configFile were given",
                "pass one of them",
            )),
            (Some(j), None) => Config::from_json_str(&j),
            (None, Some(f)) => Config::from_toml_file(f),
            (None, None) => Ok(Config::default()),
        };
        // The HTTP client is built inside the runtime context so it may bind to it.
        let sdk = gaterouter::usage::SdkInfo {
            name: "gaterouter-node".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            language: "node".into(),
        };
        let client = config.and_then(|c| within_runtime_if_available(|| Client::with_sdk(c, sdk)));
        match client {
            Ok(client) => Ok(NativeClient {
                client: RwLock::new(Some(client)),
                root: CancellationToken::new(),
                calls: Arc::default(),
                streams: Mutex::default(),
            }),
            // Constructors cannot resolve to an envelope: a sync throw whose `code` is the
            // kind code and whose message is the envelope's JSON (index.js re-wraps it).
            Err(e) => Err(napi::Error::new(e.kind().code().to_owned(), error_json(&e))),
        }
    }

    fn client(&self) -> Option<Client> {
        self.client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Register a call's token synchronously (before any await), under `call_id` if given.
    fn start_call(&self, call_id: Option<u32>) -> (CancellationToken, CallGuard) {
        let token = self.root.child_token();
        if let Some(id) = call_id {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, token.clone());
        }
        (
            token,
            CallGuard {
                calls: self.calls.clone(),
                id: call_id,
            },
        )
    }

    /// Chat: request JSON in, outcome envelope out (`{"ok": ChatCompletion}` or
    /// `{"error": ...}`). `callId` makes the call cancellable with `cancel(callId)`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn chat<'env>(
        &self,
        env: &'env Env,
        request_json: String,
        call_id: Option<u32>,
    ) -> NapiResult<PromiseRaw<'env, String>> {
        let client = self.client();
        let (token, guard) = self.start_call(call_id);
        let root = self.root.clone();
        env.spawn_future(async move {
            let _guard = guard;
            let Some(client) = client else {
                return Ok(closed_json());
            };
            let req = match ChatRequest::from_json(&request_json) {
                Ok(r) => r,
                Err(e) => return Ok(error_json(&e)),
            };
            Ok(tokio::select! {
                biased;
                _ = token.cancelled() => cancelled_json(&root),
                r = client.chat(req) => result_json(r),
            })
        })
    }

    /// Open a stream. Returns at once; the connection is made by the first `next()`,
    /// which also reports any error opening it.
    #[napi]
    pub fn stream(&self, request_json: String) -> NativeStream {
        let client = self.client();
        let token = self.root.child_token();
        let opened = futures_util::stream::once(async move {
            let Some(client) = client else {
                return Err(None);
            };
            let req = ChatRequest::from_json(&request_json).map_err(Some)?;
            client.chat_stream(req).await.map_err(Some)
        });
        // One stream of chunks whose first item may be the error opening it
        // (`None`: the client was closed).
        let chunks = opened
            .map(|r| match r {
                Ok(s) => s.map(|c| c.map_err(Some)).left_stream(),
                Err(e) => futures_util::stream::once(async move { Err(e) }).right_stream(),
            })
            .flatten()
            .boxed();
        let inner = Arc::new(tokio::sync::Mutex::new(Some(chunks)));
        {
            let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
            streams.retain(|w| w.strong_count() > 0);
            streams.push(Arc::downgrade(&inner));
        }
        NativeStream {
            inner,
            token,
            root: self.root.clone(),
        }
    }

    /// Cancel the call started with `callId`: its provider request is dropped and its
    /// promise resolves to an `ABORTED` envelope. Unknown (finished) ids are ignored.
    #[napi]
    pub fn cancel(&self, call_id: u32) {
        if let Some(token) = self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&call_id)
        {
            token.cancel();
        }
    }

    /// The routing decision for a request, without calling anything: an envelope of
    /// `RouteDecision` (cheap CPU work, so synchronous).
    #[napi]
    pub fn route(&self, request_json: String) -> String {
        let Some(client) = self.client() else {
            return closed_json();
        };
        result_json(ChatRequest::from_json(&request_json).and_then(|req| client.route(&req)))
    }

    /// Prompt tokens of a request as its model (`auto`: the routed model) bills them: an
    /// envelope of `PromptCount`, computed on the blocking pool.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn count_tokens<'env>(
        &self,
        env: &'env Env,
        request_json: String,
    ) -> NapiResult<PromiseRaw<'env, String>> {
        let client = self.client();
        off_thread(env, move || match client {
            None => closed_json(),
            Some(c) => {
                result_json(ChatRequest::from_json(&request_json).and_then(|r| c.count_tokens(&r)))
            }
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
        let client = self.client();
        off_thread(env, move || match client {
            None => closed_json(),
            Some(c) => {
                result_json(ChatRequest::from_json(&request_json).and_then(|r| c.estimate_cost(&r)))
            }
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
        let Some(client) = self.client() else {
            return closed_json();
        };
        let input = feedback_input(record_id, score, label, source, tags_json);
        result_json(input.and_then(|i| client.feedback(i)).map(|id| id.0))
    }

    /// What became of the usage records, now: an envelope of `DeliveryReport`.
    #[napi]
    pub fn usage_status(&self) -> String {
        match self.client() {
            None => closed_json(),
            Some(c) => envelope(Outcome::Ok(&c.usage_status())),
        }
    }

    /// Refusal reasons seen for the first time since the last call: an envelope of a
    /// list of strings (each reason once; the JS side turns them into warnings).
    #[napi]
    pub fn take_refusal_warnings(&self) -> String {
        match self.client() {
            None => envelope(Outcome::Ok(&Vec::<String>::new())),
            Some(c) => envelope(Outcome::Ok(&c.take_refusal_warnings())),
        }
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
        let client = self.client();
        // NaN and negatives mean "do not wait"; the cast saturates at u64::MAX.
        let timeout = Duration::from_millis(timeout_ms.max(0.0) as u64);
        env.spawn_future(async move {
            Ok(match client {
                None => closed_json(),
                Some(c) => result_json(c.flush(timeout).await),
            })
        })
    }

    /// Close the client: abort every in-flight call and stream (they resolve to a
    /// `CLIENT_CLOSED` envelope, as do later calls), let them unwind so their usage
    /// records are written, then drain the usage spool (bounded by
    /// `reporting.shutdown_timeout_ms`) and release the client and its connection pool.
    /// Resolves to an envelope of `DeliveryReport`. Idempotent: a second call resolves at
    /// once with `drained: true`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn close<'env>(&self, env: &'env Env) -> NapiResult<PromiseRaw<'env, String>> {
        self.root.cancel();
        let client = self
            .client
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let streams: Vec<Arc<StreamSlot>> =
            std::mem::take(&mut *self.streams.lock().unwrap_or_else(PoisonError::into_inner))
                .iter()
                .filter_map(Weak::upgrade)
                .collect();
        let calls = self.calls.clone();
        env.spawn_future(async move {
            let Some(client) = client else {
                let done = gaterouter::usage::DeliveryReport::off();
                return Ok(envelope(Outcome::Ok(&done)));
            };
            // Aborted calls drop their request futures on the runtime's workers; wait
            // (bounded) until they have, and drop every open stream, so that the
            // `cancelled` records they write are in the spool before it is drained.
            let unwind = async {
                for slot in streams {
                    *slot.lock().await = None;
                }
                while !calls
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_empty()
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            let _ = tokio::time::timeout(CLOSE_UNWIND, unwind).await;
            Ok(result_json(client.shutdown().await))
        })
    }

    /// Number of calls currently registered for cancellation (for tests: it must go back
    /// to zero, or entries leak).
    #[napi(getter)]
    pub fn pending_calls(&self) -> u32 {
        let n = self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// A chunk stream whose items carry either a core error or `None` for "client closed".
type Chunks =
    futures_util::stream::BoxStream<'static, Result<gaterouter::ChatChunk, Option<Error>>>;

/// Where a stream's chunks live; `None` once ended, failed or closed (dropping the
/// chunks drops the connection and writes the usage record).
type StreamSlot = tokio::sync::Mutex<Option<Chunks>>;

/// A native chat stream: `next()` resolves to chunk envelopes, then `null`.
#[napi]
pub struct NativeStream {
    /// `None` once ended, failed or closed (dropping it drops the connection).
    inner: Arc<StreamSlot>,
    /// This stream's token (a child of the client's root).
    token: CancellationToken,
    /// The client's root token, to tell `close()` of the client from the stream's own.
    root: CancellationToken,
}

impl std::fmt::Debug for NativeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeStream")
            .field("cancelled", &self.token.is_cancelled())
            .finish_non_exhaustive()
    }
}

#[napi]
impl NativeStream {
    /// Next chunk as an envelope (`{"ok": ChatCompletionChunk}` or `{"error": ...}`), or
    /// `null` after the last chunk; after an error, `null`; after `close()`, `ABORTED`
    /// (`CLIENT_CLOSED` when the client was closed).
    #[napi(ts_return_type = "Promise<string | null>")]
    pub fn next<'env>(&self, env: &'env Env) -> NapiResult<PromiseRaw<'env, Option<String>>> {
        let inner = self.inner.clone();
        let token = self.token.clone();
        let root = self.root.clone();
        env.spawn_future(async move {
            let mut guard = tokio::select! {
                biased;
                _ = token.cancelled() => return Ok(Some(cancelled_json(&root))),
                g = inner.lock() => g,
            };
            let Some(chunks) = guard.as_mut() else {
                return Ok(None);
            };
            let item = tokio::select! {
                biased;
                _ = token.cancelled() => {
                    *guard = None;
                    return Ok(Some(cancelled_json(&root)));
                }
                item = chunks.next() => item,
            };
            Ok(match item {
                Some(Ok(chunk)) => Some(envelope(Outcome::Ok(&chunk))),
                Some(Err(e)) => {
                    *guard = None;
                    Some(e.map_or_else(closed_json, |e| error_json(&e)))
                }
                None => {
                    *guard = None;
                    None
                }
            })
        })
    }

    /// Stop reading: abort a pending `next()` and drop the connection. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.token.cancel();
        // A pending `next()` holds the lock and drops the stream itself on cancel.
        if let Ok(mut guard) = self.inner.try_lock() {
            *guard = None;
        }
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

/// Cost of a finished call from its usage (JSON, `Usage` shape) with the built-in
/// catalog: an envelope of `Cost`.
#[napi]
pub fn cost(usage_json: String, model: String, batch: bool, cache_write_1h: bool) -> String {
    let usage = serde_json::from_str::<gaterouter::Usage>(&usage_json).map_err(|e| Error::InvalidRequest {
        field: Some("usage".into()),
        message: format!("usage: {e}; pass {{prompt_tokens, completion_tokens, ...}} as in a response's usage"),
    });
    let opts = gaterouter::pricing::CostOptions {
        batch,
        cache_write_1h,
    };
    result_json(usage.and_then(|u| gaterouter::pricing::cost(&u, &model, opts)))
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
    let fail = |m: String| Error::InvalidRequest {
        field: Some("record".into()),
        message: m,
    };
    let signed = serde_json::from_str::<gaterouter::usage::UsageRecord>(&record_json)
        .map_err(|e| fail(format!("record: {e}")))
        .and_then(|record| {
            let signer = gaterouter::usage::UsageSigner::from_key_text(&signing_key, "signing_key")
                .map_err(|e| fail(e.to_string()))?;
            signer.sign_record(&record).map_err(|e| fail(e.to_string()))
        })
        .map(|(canonical, signature)| Signed {
            canonical,
            signature,
        });
    result_json(signed)
}
