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
use crate::types::{ChatChunk, ChatRequest, ChatResponse, Usage};

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
        Err(e) => Err(GateRouterError::internal(format!("the call failed inside gaterouter (a bug, please report): {e}"))),
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
/// Mobile lifecycle hooks (`suspend()` / `resume()` to flush and pause usage-record
/// upload, a spool directory for records written while offline, and the usage-record
/// signing key) arrive with the usage-records work in the core; they are not here yet.
#[derive(Debug, uniffi::Object)]
pub struct GateRouterClient {
    client: core::Client,
}

#[uniffi::export]
impl GateRouterClient {
    /// Build from TOML text (e.g. a config bundled as an app resource).
    #[uniffi::constructor]
    pub fn from_config_toml(text: String) -> Result<Arc<Self>, GateRouterError> {
        Ok(Arc::new(Self { client: mobile_client(core::Config::from_toml_str(&text, "config (TOML text)")?)? }))
    }

    /// Build from a TOML file path (Android: a path under `context.filesDir`; iOS: in
    /// the app container). Relative paths resolve against the process's working directory,
    /// which on a phone is rarely what you want: pass an absolute path.
    #[uniffi::constructor]
    pub fn from_config_file(path: String) -> Result<Arc<Self>, GateRouterError> {
        Ok(Arc::new(Self { client: mobile_client(core::Config::from_toml_file(&path)?)? }))
    }

    /// Build from JSON text with the same structure as the TOML config.
    #[uniffi::constructor]
    pub fn from_config_json(json: String) -> Result<Arc<Self>, GateRouterError> {
        Ok(Arc::new(Self { client: mobile_client(core::Config::from_json_str(&json)?)? }))
    }

    /// Send a request and wait for the whole answer.
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, GateRouterError> {
        let req = core::ChatRequest::try_from(request)?;
        let client = self.client.clone();
        on_runtime(async move { client.chat(req).await }).await.map(Into::into)
    }

    /// Full-fidelity twin of `chat`: an OpenAI Chat Completions request as JSON in, the
    /// OpenAI-shaped response as JSON out (every content part and option the core knows).
    pub async fn chat_json(&self, request_json: String) -> Result<String, GateRouterError> {
        let req = core::ChatRequest::from_json(&request_json)?;
        let client = self.client.clone();
        let resp = on_runtime(async move { client.chat(req).await }).await?;
        serde_json::to_string(&resp).map_err(|e| GateRouterError::internal(format!("cannot encode the response as JSON: {e}")))
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
        Ok(Arc::new(StreamHandle { abort: task.abort_handle(), cancelled }))
    }
}

/// A core client whose usage records name this SDK.
fn mobile_client(config: core::Config) -> Result<core::Client, core::Error> {
    let sdk = core::usage::SdkInfo { name: "gaterouter-mobile".into(), version: env!("CARGO_PKG_VERSION").into(), language: "uniffi".into() };
    core::Client::with_sdk(config, sdk)
}
