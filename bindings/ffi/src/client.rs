//! [`GateRouterClient`]: the exported object. It only converts (records <-> core types,
//! core errors -> [`GateRouterError`]) and schedules work on the binding's runtime.
//!
//! Threading, which matters on mobile:
//! - Every call returns without blocking the caller's thread: `chat` is a suspend
//!   function / Swift `async`, `chatStream` spawns and returns a [`StreamHandle`] at once.
//! - All network work runs on one shared tokio runtime (2 worker threads named
//!   `gaterouter`), never on the UI thread.
//! - [`ChatStreamListener`] callbacks run on those worker threads: hop to the main
//!   thread yourself (`Dispatchers.Main`, `DispatchQueue.main`) and return quickly.
//! - Cancelling the Kotlin coroutine / Swift `Task` that awaits `chat` drops the Rust
//!   future, which aborts the in-flight request (see `on_runtime`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::StreamExt;
use gaterouter as core;
use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

use crate::error::GateRouterError;
use crate::insight::{CostEstimate, RouteDecision, TokenCount};
use crate::mobile::{DeliveryReport, MobileOptions, NetworkClass, ReportingStatus};
use crate::types::{ChatChunk, ChatRequest, ChatResponse, FeedbackSource, Usage};

/// The binding's one runtime, started on first use. A library on a phone must not own
/// more threads than it needs, so it is small and shared by every client.
fn runtime() -> Result<&'static Runtime, GateRouterError> {
    // `get_or_init` builds exactly once: a runtime built by a losing racer would have to
    // be dropped, which panics when the caller is itself inside an async context.
    static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gaterouter")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| GateRouterError::internal(format!("cannot start the gaterouter runtime: {e}")))
}

/// Aborts the task when dropped: the foreign side dropped (cancelled) the future.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run `fut` on the binding's runtime and await it from whatever executor polls us
/// (Kotlin coroutines, Swift tasks). reqwest and tokio timers need a tokio reactor,
/// which the foreign executor's threads do not have; spawning onto our runtime gives
/// them one, and keeps one runtime rather than uniffi's `async_runtime = "tokio"`
/// (async-compat), which would start a second, hidden one.
async fn on_runtime<T: Send + 'static>(
    fut: impl Future<Output = Result<T, core::Error>> + Send + 'static,
) -> Result<T, GateRouterError> {
    let task = runtime()?.spawn(fut);
    let _abort = AbortOnDrop(task.abort_handle());
    match task.await {
        Ok(result) => result.map_err(Into::into),
        Err(e) if e.is_cancelled() => Err(GateRouterError::internal("the call was cancelled")),
        Err(e) => Err(GateRouterError::internal(format!(
            "the call failed inside gaterouter (a bug, please report): {e}"
        ))),
    }
}

/// Receives a streamed answer. Implemented by the app (Kotlin interface / Swift protocol).
///
/// Called on a gaterouter worker thread, in order: any number of `on_chunk`, then
/// exactly one of `on_complete` or `on_error`, unless the stream is cancelled first
/// (then nothing more after the callback in progress, if any). Return quickly; a
/// listener that throws ends the stream.
#[uniffi::export(foreign)]
pub trait ChatStreamListener: Send + Sync {
    /// One chunk, including the last one (no text, `usage` set).
    fn on_chunk(&self, chunk: ChatChunk);
    /// The stream ended normally. `usage` is the last chunk's usage (always present
    /// when the provider completed the stream; the core turns a cut stream into an error).
    fn on_complete(&self, usage: Option<Usage>);
    /// The stream failed (while opening or midway). Nothing follows.
    fn on_error(&self, error: GateRouterError);
}

/// A running stream. Dropping the handle does not stop the stream; `cancel()` does.
#[derive(Debug, uniffi::Object)]
pub struct StreamHandle {
    abort: AbortHandle,
    cancelled: Arc<AtomicBool>,
}

#[uniffi::export]
impl StreamHandle {
    /// Stop the stream and close its connection. No callback starts after this returns
    /// (one already running finishes). Idempotent.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.abort.abort();
    }

    /// True once the stream has ended (completed, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.abort.is_finished()
    }
}

/// The GateRouter client. Build it once (it holds the connection pool) and share it;
/// it is safe to use from any thread.
///
/// Mobile apps build it with [`GateRouterClient::create`] and [`MobileOptions`] (spool
/// directory in the app sandbox, signing key from the Keychain / Keystore), call
/// `suspend()` / `resume()` from the app lifecycle and `setNetworkClass` from the
/// connectivity callback. None of these block: they flip a flag the reporter task
/// watches.
#[derive(Debug, uniffi::Object)]
pub struct GateRouterClient {
    client: core::Client,
}

#[uniffi::export]
impl GateRouterClient {
    /// Build from TOML text (e.g. a config bundled as an app resource).
    #[uniffi::constructor]
    pub fn from_config_toml(text: String) -> Result<Arc<Self>, GateRouterError> {
        Ok(Arc::new(Self {
            client: mobile_client(core::Config::from_toml_str(&text, "config (TOML text)")?)?,
        }))
    }

    /// Build from TOML text plus what only the app knows at run time: the spool
    /// directory, the signing key (kept in memory only), the key id, the user, the
    /// network class and whether the app starts in the background.
    #[uniffi::constructor]
    pub fn create(
        config_toml: String,
        options: MobileOptions,
    ) -> Result<Arc<Self>, GateRouterError> {
        let config = core::Config::from_toml_str(&config_toml, "config (TOML text)")?;
        Self::with_options(config, options)
    }

    /// [`GateRouterClient::create`] with the config read from a TOML file.
    #[uniffi::constructor]
    pub fn create_from_file(
        path: String,
        options: MobileOptions,
    ) -> Result<Arc<Self>, GateRouterError> {
        Self::with_options(core::Config::from_toml_file(&path)?, options)
    }

    /// Build from a TOML file path (Android: a path under `context.filesDir`; iOS: in
    /// the app container). Relative paths resolve against the process's working directory,
    /// which on a phone is rarely what you want: pass an absolute path.
    #[uniffi::constructor]
    pub fn from_config_file(path: String) -> Result<Arc<Self>, GateRouterError> {
        Ok(Arc::new(Self {
            client: mobile_client(core::Config::from_toml_file(&path)?)?,
        }))
    }

    /// Build from JSON text with the same structure as the TOML config.
    #[uniffi::constructor]
    pub fn from_config_json(json: String) -> Result<Arc<Self>, GateRouterError> {
        Ok(Arc::new(Self {
            client: mobile_client(core::Config::from_json_str(&json)?)?,
        }))
    }

    /// Send a request and wait for the whole answer.
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, GateRouterError> {
        let req = core::ChatRequest::try_from(request)?;
        let client = self.client.clone();
        on_runtime(async move { client.chat(req).await })
            .await
            .map(Into::into)
    }

    /// Full-fidelity twin of `chat`: an OpenAI Chat Completions request as JSON in, the
    /// OpenAI-shaped response as JSON out (every content part and option the core knows).
    pub async fn chat_json(&self, request_json: String) -> Result<String, GateRouterError> {
        let req = core::ChatRequest::from_json(&request_json)?;
        let client = self.client.clone();
        let resp = on_runtime(async move { client.chat(req).await }).await?;
        serde_json::to_string(&resp).map_err(|e| {
            GateRouterError::internal(format!("cannot encode the response as JSON: {e}"))
        })
    }

    /// Stream the answer to `listener`; returns at once. A request that is invalid by
    /// itself throws here; failures of the call itself arrive as `on_error`.
    pub fn chat_stream(
        &self,
        request: ChatRequest,
        listener: Arc<dyn ChatStreamListener>,
    ) -> Result<Arc<StreamHandle>, GateRouterError> {
        let req = core::ChatRequest::try_from(request)?;
        req.validate()?;
        let client = self.client.clone();
        let cancelled = Arc::new(AtomicBool::new(false));
        let live = cancelled.clone();
        let is_live = move || !live.load(Ordering::SeqCst);
        let task = runtime()?.spawn(async move {
            let mut stream = match client.chat_stream(req).await {
                Ok(s) => s,
                Err(e) => {
                    if is_live() {
                        listener.on_error(e.into());
                    }
                    return;
                }
            };
            let mut usage = None;
            while let Some(item) = stream.next().await {
                if !is_live() {
                    return;
                }
                match item {
                    Ok(chunk) => {
                        if let Some(u) = chunk.usage {
                            usage = Some(u.into());
                        }
                        listener.on_chunk(chunk.into());
                    }
                    Err(e) => {
                        listener.on_error(e.into());
                        return;
                    }
                }
            }
            if is_live() {
                listener.on_complete(usage);
            }
        });
        Ok(Arc::new(StreamHandle {
            abort: task.abort_handle(),
            cancelled,
        }))
    }

    /// Where a request would go and why (score, tier, ranked candidates with estimated
    /// cost, excluded models), without sending anything. CPU only, no I/O.
    pub fn route(&self, request: ChatRequest) -> Result<RouteDecision, GateRouterError> {
        Ok(self
            .client
            .route(&core::ChatRequest::try_from(request)?)?
            .into())
    }

    /// `route` for an OpenAI Chat Completions request given as JSON (every content part
    /// and option the core knows).
    pub fn route_json(&self, request_json: String) -> Result<RouteDecision, GateRouterError> {
        Ok(self
            .client
            .route(&core::ChatRequest::from_json(&request_json)?)?
            .into())
    }

    /// The request's prompt tokens as its model bills them (`auto`: the routed model).
    /// Exact for OpenAI text, a calibrated estimate elsewhere. CPU only; the first call
    /// loads the tokenizer tables (tens of milliseconds): keep it off the UI thread.
    pub fn count_tokens(&self, request: ChatRequest) -> Result<TokenCount, GateRouterError> {
        Ok(self
            .client
            .count_tokens(&core::ChatRequest::try_from(request)?)?
            .into())
    }

    /// `countTokens` for a request given as JSON.
    pub fn count_tokens_json(&self, request_json: String) -> Result<TokenCount, GateRouterError> {
        Ok(self
            .client
            .count_tokens(&core::ChatRequest::from_json(&request_json)?)?
            .into())
    }

    /// Expected and maximum cost of a request before sending it (this client's prices).
    pub fn estimate_cost(&self, request: ChatRequest) -> Result<CostEstimate, GateRouterError> {
        Ok(self
            .client
            .estimate_cost(&core::ChatRequest::try_from(request)?)?
            .into())
    }

    /// `estimateCost` for a request given as JSON.
    pub fn estimate_cost_json(
        &self,
        request_json: String,
    ) -> Result<CostEstimate, GateRouterError> {
        Ok(self
            .client
            .estimate_cost(&core::ChatRequest::from_json(&request_json)?)?
            .into())
    }

    /// Wait up to `timeout_ms` until every usage record made so far is resolved by the
    /// collector, and report delivered / pending / refused counts. Returns at once (not
    /// drained) while suspended or offline.
    pub async fn flush(&self, timeout_ms: u64) -> Result<DeliveryReport, GateRouterError> {
        let client = self.client.clone();
        on_runtime(async move {
            client
                .flush(std::time::Duration::from_millis(timeout_ms))
                .await
        })
        .await
        .map(Into::into)
    }

    /// Drain the spool (bounded by `reporting.shutdown_timeout_ms`) and stop reporting;
    /// undelivered records stay in the spool for the next start. Chat calls keep
    /// working but make no more records.
    pub async fn shutdown(&self) -> Result<DeliveryReport, GateRouterError> {
        let client = self.client.clone();
        on_runtime(async move { client.shutdown().await })
            .await
            .map(Into::into)
    }

    /// The app goes to the background: stop sending usage records (they keep being
    /// spooled, durably). Call from `onStop` / `sceneDidEnterBackground`. Never blocks.
    pub fn suspend(&self) {
        self.client.suspend_reporting();
    }

    /// The app is in the foreground again: send what waited, then report as usual.
    /// Never blocks.
    pub fn resume(&self) {
        self.client.resume_reporting();
    }

    /// The device's network changed: `Cellular` batches more (`reporting.cellular_*`),
    /// `Offline` holds records until another class is set. Never blocks.
    pub fn set_network_class(&self, network: NetworkClass) {
        self.client.set_network_class(network.into());
    }

    /// Say how good a call's answer was: `record_id` is the response's `usage_record_id`
    /// (a stream's last chunk carries it too), `score` from 0.0 (useless) to 1.0 (right),
    /// `label` a word from the app's vocabulary (never the answer's text). The feedback
    /// is signed, spooled and delivered with the usage records (counted in `flush`'s
    /// report). Returns the feedback's id. Errors: `InvalidRequest` naming the field;
    /// `Config` when usage records are off.
    pub fn feedback(
        &self,
        record_id: String,
        score: f64,
        label: Option<String>,
        source: FeedbackSource,
        tags: std::collections::HashMap<String, String>,
    ) -> Result<String, GateRouterError> {
        let input = core::usage::FeedbackInput {
            record_id,
            score,
            label,
            source: source.into(),
            tags: tags.into_iter().collect(),
        };
        Ok(self.client.feedback(input)?.0)
    }

    /// What became of the usage records, now (no waiting).
    pub fn usage_status(&self) -> DeliveryReport {
        self.client.usage_status().into()
    }

    /// Refusal reasons seen for the first time since the last call, each reason once
    /// (also logged through the core's `tracing` at `warn`): show or log them.
    pub fn take_refusal_warnings(&self) -> Vec<String> {
        self.client.take_refusal_warnings()
    }

    /// The usage-record pipeline's state; `null`/`nil` when reporting is off.
    pub fn reporting_status(&self) -> Option<ReportingStatus> {
        let status = self.client.spool_status()?;
        let link = self.client.reporting_link()?;
        Some(ReportingStatus::from_core(status, link))
    }
}

impl GateRouterClient {
    fn with_options(
        mut config: core::Config,
        options: MobileOptions,
    ) -> Result<Arc<Self>, GateRouterError> {
        let network = options.network_class;
        let suspended = options.start_suspended;
        options.apply(&mut config)?;
        let client = mobile_client(config)?;
        // Right after start: the reporter waits `batch_max_age_ms` before its first batch
        // unless records left from a previous run fill one, and an upload it may already
        // have begun is abandoned as soon as it sees the suspended/offline state.
        if suspended {
            client.suspend_reporting();
        }
        if let Some(n) = network {
            client.set_network_class(n.into());
        }
        Ok(Arc::new(Self { client }))
    }
}

/// A core client whose usage records name this SDK. Built inside the binding's runtime:
/// the usage reporter task (when a collector is configured) is spawned on it.
fn mobile_client(config: core::Config) -> Result<core::Client, GateRouterError> {
    let sdk = core::usage::SdkInfo {
        name: "gaterouter-mobile".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        language: "uniffi".into(),
    };
    let _guard = runtime()?.enter();
    Ok(core::Client::with_sdk(config, sdk)?)
}
