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
use gaterouter::ConfigSource;
use tokio::runtime::Runtime;

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

/// Cancels the call (the core's [`core::Cancel`]) when dropped: the foreign side
/// dropped (cancelled) the future.
struct CancelOnDrop(core::Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Run the call `fut` makes with a fresh cancel handle on the binding's runtime and await
/// it from whatever executor polls us (Kotlin coroutines, Swift tasks). reqwest and tokio
/// timers need a tokio reactor, which the foreign executor's threads do not have;
/// spawning onto our runtime gives them one, and keeps one runtime rather than uniffi's
/// `async_runtime = "tokio"` (async-compat), which would start a second, hidden one.
/// Dropping the awaiting future cancels the call in the core.
async fn on_runtime<T: Send + 'static, F>(
    client: &core::Client,
    fut: impl FnOnce(core::Client, core::Cancel) -> F,
) -> Result<T, GateRouterError>
where
    F: Future<Output = Result<T, core::Error>> + Send + 'static,
{
    let cancel = client.cancel_handle();
    let task = runtime()?.spawn(fut(client.clone(), cancel.clone()));
    let _cancel = CancelOnDrop(cancel);
    match task.await {
        Ok(result) => result.map_err(Into::into),
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

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A running stream. Dropping the handle does not stop the stream; `cancel()` does.
#[derive(Debug, uniffi::Object)]
pub struct StreamHandle {
    /// The core's cancel handle of the stream.
    cancel: core::Cancel,
    /// Set when the stream's task has ended.
    finished: Arc<AtomicBool>,
}

#[uniffi::export]
impl StreamHandle {
    /// Stop the stream and close its connection. No callback starts after this returns
    /// (one already running finishes). Idempotent.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// True once the stream has ended (completed, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.cancel.is_cancelled() || self.finished.load(Ordering::SeqCst)
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
            client: mobile_client(toml_text(text)?, MobileOptions::default())?,
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
        Ok(Arc::new(Self {
            client: mobile_client(toml_text(config_toml)?, options)?,
        }))
    }

    /// [`GateRouterClient::create`] with the config read from a TOML file.
    #[uniffi::constructor]
    pub fn create_from_file(
        path: String,
        options: MobileOptions,
    ) -> Result<Arc<Self>, GateRouterError> {
        Ok(Arc::new(Self {
            client: mobile_client(
                core::Config::load(ConfigSource::File(path.into()))?,
                options,
            )?,
        }))
    }

    /// Build from a TOML file path (Android: a path under `context.filesDir`; iOS: in
    /// the app container). Relative paths resolve against the process's working directory,
    /// which on a phone is rarely what you want: pass an absolute path.
    #[uniffi::constructor]
    pub fn from_config_file(path: String) -> Result<Arc<Self>, GateRouterError> {
        Ok(Arc::new(Self {
            client: mobile_client(
                core::Config::load(ConfigSource::File(path.into()))?,
                MobileOptions::default(),
            )?,
        }))
    }

    /// Build from JSON text with the same structure as the TOML config.
    #[uniffi::constructor]
    pub fn from_config_json(json: String) -> Result<Arc<Self>, GateRouterError> {
        Ok(Arc::new(Self {
            client: mobile_client(
                core::Config::load(ConfigSource::Json(json))?,
                MobileOptions::default(),
            )?,
        }))
    }

    /// Send a request and wait for the whole answer.
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, GateRouterError> {
        let req = core::ChatRequest::try_from(request)?;
        on_runtime(&self.client, |c, cancel| async move {
            c.chat_cancellable(req, &cancel).await
        })
        .await
        .map(Into::into)
    }

    /// Full-fidelity twin of `chat`: an OpenAI Chat Completions request as JSON in, the
    /// OpenAI-shaped response as JSON out (every content part and option the core knows).
    pub async fn chat_json(&self, request_json: String) -> Result<String, GateRouterError> {
        let req = core::ChatRequest::from_json(&request_json)?;
        let resp = on_runtime(&self.client, |c, cancel| async move {
            c.chat_cancellable(req, &cancel).await
        })
        .await?;
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
        let rt = runtime()?;
        let cancel = self.client.cancel_handle();
        let finished = Arc::new(AtomicBool::new(false));
        let mut stream = {
            // The lazy stream is made here; it connects on the runtime, when first polled.
            let _guard = rt.enter();
            self.client.chat_stream_lazy(req, &cancel)
        };
        let (live, done) = (cancel.clone(), SetOnDrop(finished.clone()));
        rt.spawn(async move {
            // Finished however the task ends: completed, failed, cancelled, or a listener
            // that threw (a panic inside this task).
            let _done = done;
            let mut usage = None;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(chunk) => {
                        if let Some(u) = chunk.usage {
                            usage = Some(u.into());
                        }
                        listener.on_chunk(chunk.into());
                    }
                    // `StreamHandle::cancel`: silent, as promised.
                    Err(e) if e.kind() == core::ErrorKind::Cancelled => break,
                    // Any other failure, the client's close included.
                    Err(e) => {
                        listener.on_error(e.into());
                        return;
                    }
                }
            }
            if !live.is_cancelled() {
                listener.on_complete(usage);
            }
        });
        Ok(Arc::new(StreamHandle { cancel, finished }))
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
        on_runtime(&self.client, move |c, _| async move {
            c.flush(std::time::Duration::from_millis(timeout_ms)).await
        })
        .await
        .map(Into::into)
    }

    /// Drain the spool (bounded by `reporting.shutdown_timeout_ms`) and stop reporting;
    /// undelivered records stay in the spool for the next start. Chat calls keep
    /// working but make no more records.
    pub async fn shutdown(&self) -> Result<DeliveryReport, GateRouterError> {
        on_runtime(&self.client, |c, _| async move { c.shutdown().await })
            .await
            .map(Into::into)
    }

    /// Close the client: later calls fail with `ClientClosed`; calls and streams in
    /// flight get `grace_ms` to end, then are cancelled (each writes its `cancelled`
    /// usage record; a stream's listener gets `on_error(ClientClosed)`); the spool is
    /// drained (bounded by `reporting.shutdown_timeout_ms`) and reporting stops.
    /// Returns what became of the records. Idempotent (a second call returns the first
    /// one's report). This is the core's `Client::close`, as in Python and Node.
    pub async fn close(&self, grace_ms: u64) -> Result<DeliveryReport, GateRouterError> {
        on_runtime(&self.client, move |c, _| async move {
            c.close(std::time::Duration::from_millis(grace_ms)).await
        })
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

/// TOML text the app passes (a bundled resource).
fn toml_text(text: String) -> Result<core::Config, GateRouterError> {
    Ok(core::Config::load(ConfigSource::Toml {
        text,
        name: "config (TOML text)".into(),
    })?)
}

/// A core client whose usage records name this SDK, with the app's options applied and
/// its initial link state (suspended, network class) set before the usage reporter
/// starts. Built inside the binding's runtime: the reporter task (when a collector is
/// configured) is spawned on it.
fn mobile_client(
    mut config: core::Config,
    options: MobileOptions,
) -> Result<core::Client, GateRouterError> {
    let network = options.network_class.unwrap_or_default();
    let suspended = options.start_suspended;
    options.apply(&mut config)?;
    let _guard = runtime()?.enter();
    Ok(core::Client::builder(config)
        .sdk_named("gaterouter-mobile", env!("CARGO_PKG_VERSION"), "uniffi")
        .suspended(suspended)
        .network_class(network.into())
        .build()?)
}
