//! `gaterouter._native`: the pyo3 shim. It converts types (JSON text both ways: the core's
//! serde types are the single source of truth) and errors, owns the one tokio runtime,
//! and releases the GIL during every wait. No logic lives here.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use gaterouter::usage::{FeedbackInput, FeedbackSource};
use gaterouter::{Cancel, ChatRequest, ChatStream, Client, Config, ConfigSource, Error, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

create_exception!(
    gaterouter._native,
    GateRouterError,
    PyException,
    "Base class of every GateRouter error."
);
create_exception!(
    gaterouter._native,
    ConfigError,
    GateRouterError,
    "The configuration must be fixed."
);
create_exception!(
    gaterouter._native,
    AuthenticationError,
    GateRouterError,
    "The provider refused the credentials."
);
create_exception!(
    gaterouter._native,
    RateLimitError,
    GateRouterError,
    "Rate limited; see `retry_after`."
);
create_exception!(
    gaterouter._native,
    ProviderUnavailableError,
    GateRouterError,
    "The provider is down, overloaded or unreachable."
);
create_exception!(
    gaterouter._native,
    InvalidRequestError,
    GateRouterError,
    "The request is invalid; never retried."
);
create_exception!(
    gaterouter._native,
    ContextLengthExceededError,
    InvalidRequestError,
    "The request does not fit the context window."
);
create_exception!(
    gaterouter._native,
    APITimeoutError,
    GateRouterError,
    "No answer within the timeout."
);
create_exception!(
    gaterouter._native,
    StreamInterruptedError,
    GateRouterError,
    "A stream ended early."
);
create_exception!(
    gaterouter._native,
    InvalidResponseError,
    GateRouterError,
    "The provider's answer is unusable."
);
create_exception!(
    gaterouter._native,
    BudgetExceededError,
    GateRouterError,
    "A budget or quota would be exceeded."
);
create_exception!(
    gaterouter._native,
    PermissionDeniedError,
    GateRouterError,
    "The caller may not use this model."
);
create_exception!(
    gaterouter._native,
    ClientClosedError,
    GateRouterError,
    "The client was closed (`close()`) before or during this call."
);

/// Map a core error to its Python exception class, with attributes set.
fn to_pyerr(py: Python<'_>, e: Error) -> PyErr {
    // Every field by name: a field the core adds does not compile here until it is shown.
    let gaterouter::ErrorInfo {
        kind,
        code,
        message,
        field,
        provider,
        status,
        retry_after_ms,
        provider_message,
        rule,
        level,
        budget,
    } = e.info();
    let err = match kind {
        ErrorKind::Config => ConfigError::new_err(message),
        ErrorKind::Auth => AuthenticationError::new_err(message),
        ErrorKind::RateLimited => RateLimitError::new_err(message),
        ErrorKind::ProviderUnavailable => ProviderUnavailableError::new_err(message),
        ErrorKind::InvalidRequest => InvalidRequestError::new_err(message),
        ErrorKind::ContextLengthExceeded => ContextLengthExceededError::new_err(message),
        ErrorKind::Timeout => APITimeoutError::new_err(message),
        ErrorKind::StreamInterrupted => StreamInterruptedError::new_err(message),
        ErrorKind::InvalidResponse => InvalidResponseError::new_err(message),
        ErrorKind::Budget => BudgetExceededError::new_err(message),
        ErrorKind::Permission => PermissionDeniedError::new_err(message),
        ErrorKind::ClientClosed => ClientClosedError::new_err(message),
        _ => GateRouterError::new_err(message),
    };
    let value = err.value(py);
    let _ = value.setattr("code", code);
    let _ = value.setattr("provider", provider);
    let _ = value.setattr("status_code", status);
    let _ = value.setattr("retry_after", retry_after_ms.map(|ms| ms as f64 / 1000.0));
    let _ = value.setattr("provider_message", provider_message);
    // INVALID_REQUEST from our own validation: the offending field (e.g. `score`).
    let _ = value.setattr("field", field);
    let _ = value.setattr("rule", rule);
    let _ = value.setattr("level", level);
    // The budget as a plain dict (the core's serde shape), via JSON like every other type.
    let budget = budget
        .as_ref()
        .and_then(|b| serde_json::to_string(b).ok())
        .and_then(|text| {
            py.import("json")
                .and_then(|json| json.call_method1("loads", (text,)))
                .ok()
        });
    let _ = value.setattr("budget", budget);
    err
}

/// The module's one runtime, rebuilt in a forked child (a tokio runtime's threads do not
/// survive `fork`; the parent's is leaked in the child, never dropped there).
fn runtime() -> Arc<Runtime> {
    static RT: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = RT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return rt.clone();
        }
    }
    if let Some((_, stale)) = slot.take() {
        std::mem::forget(stale);
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gaterouter")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("gaterouter: cannot start the tokio runtime: {e}")),
    );
    *slot = Some((pid, rt.clone()));
    rt
}

/// Run `fut` to completion with the GIL released; Ctrl-C (checked every 50 ms on the
/// main thread) interrupts it with `KeyboardInterrupt`.
fn block_on<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = Result<T, Error>> + Send,
) -> PyResult<T> {
    let rt = runtime();
    let out = py.detach(|| {
        rt.block_on(async {
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => return Ok(r),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {
                        Python::attach(|py| py.check_signals())?;
                    }
                }
            }
        })
    });
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_pyerr(py, e)),
        Err(interrupt) => Err(interrupt),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::InvalidRequest {
        field: None,
        message: format!("cannot serialize: {e}"),
    })
}

/// Deliver a result to an asyncio future from any thread: `loop.call_soon_threadsafe(done, ok, value)`.
fn resolve(loop_: &Py<PyAny>, done: &Py<PyAny>, result: Result<Option<String>, Error>) {
    Python::attach(|py| {
        let (ok, value): (bool, Py<PyAny>) = match result {
            Ok(v) => (
                true,
                v.into_pyobject(py)
                    .map(|b| b.unbind())
                    .unwrap_or_else(|_| py.None()),
            ),
            Err(e) => (false, to_pyerr(py, e).into_value(py).into_any()),
        };
        // The loop may be closed already (the caller gave up): nothing to deliver to.
        let _ = loop_.call_method1(py, "call_soon_threadsafe", (done, ok, value));
    });
}

/// Handle of an async call: the core's [`Cancel`]; `cancel()` drops the in-flight
/// request (a stream's: the stream).
#[pyclass(module = "gaterouter._native", frozen)]
struct TaskHandle {
    cancel: Cancel,
}

#[pymethods]
impl TaskHandle {
    fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// The client: `NativeClient(config_json, config_file)`.
#[pyclass(module = "gaterouter._native", frozen)]
struct NativeClient {
    /// Kept to rebuild the core client in a forked child.
    config: Config,
    /// The core client and the pid that built it.
    state: Mutex<(u32, Client)>,
}

impl NativeClient {
    /// The core client of this process. After `os.fork()` the parent's client is unusable
    /// in the child (its pooled connections and reporter task belong to the parent's
    /// runtime, whose threads did not survive the fork), so the child builds its own from
    /// the same config; the parent's is leaked there, never dropped.
    fn client(&self) -> Result<Client, Error> {
        let pid = std::process::id();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 != pid {
            let fresh = build(self.config.clone())?;
            std::mem::forget(std::mem::replace(&mut state.1, fresh));
            state.0 = pid;
        }
        Ok(state.1.clone())
    }

    fn client_py(&self, py: Python<'_>) -> PyResult<Client> {
        self.client().map_err(|e| to_pyerr(py, e))
    }
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (config_json=None, config_file=None))]
    fn new(py: Python<'_>, config_json: Option<&str>, config_file: Option<&str>) -> PyResult<Self> {
        let source = ConfigSource::one_of(
            config_json.map(str::to_owned),
            config_file.map(Into::into),
            "Client()",
            ["config", "config_file"],
        );
        let built = source
            .and_then(Config::load)
            .and_then(|c| build(c.clone()).map(|client| (c, client)));
        built
            .map(|(config, client)| NativeClient {
                config,
                state: Mutex::new((std::process::id(), client)),
            })
            .map_err(|e| to_pyerr(py, e))
    }

    /// The routing decision for a request, without calling anything (JSON).
    fn route(&self, py: Python<'_>, request_json: &str) -> PyResult<String> {
        let req = ChatRequest::from_json(request_json).map_err(|e| to_pyerr(py, e))?;
        self.client_py(py)?
            .route(&req)
            .and_then(|d| to_json(&d))
            .map_err(|e| to_pyerr(py, e))
    }

    /// Prompt tokens of a request as its model (or the routed model) bills them (JSON).
    fn count_tokens(&self, py: Python<'_>, request_json: &str) -> PyResult<String> {
        let req = ChatRequest::from_json(request_json).map_err(|e| to_pyerr(py, e))?;
        let client = self.client_py(py)?;
        py.detach(|| client.count_tokens(&req).and_then(|c| to_json(&c)))
            .map_err(|e| to_pyerr(py, e))
    }

    /// Expected and maximum cost of a request before calling (JSON).
    fn estimate_cost(&self, py: Python<'_>, request_json: &str) -> PyResult<String> {
        let req = ChatRequest::from_json(request_json).map_err(|e| to_pyerr(py, e))?;
        let client = self.client_py(py)?;
        py.detach(|| client.estimate_cost(&req).and_then(|c| to_json(&c)))
            .map_err(|e| to_pyerr(py, e))
    }

    /// What became of the usage records, now (JSON `DeliveryReport`).
    fn usage_status(&self, py: Python<'_>) -> PyResult<String> {
        to_json(&self.client_py(py)?.usage_status()).map_err(|e| to_pyerr(py, e))
    }

    /// Refusal reasons seen for the first time since the last call (JSON list).
    fn take_refusal_warnings(&self, py: Python<'_>) -> PyResult<String> {
        to_json(&self.client_py(py)?.take_refusal_warnings()).map_err(|e| to_pyerr(py, e))
    }

    /// Wait for the start-up policy fetch: a wrong `[identity]` value raises ConfigError.
    fn ready(&self, py: Python<'_>) -> PyResult<()> {
        let client = self.client_py(py)?;
        block_on(py, async move { client.ready().await })
    }

    /// Wait until usage records are resolved (JSON `DeliveryReport`).
    fn flush(&self, py: Python<'_>, timeout_s: f64) -> PyResult<String> {
        let client = self.client_py(py)?;
        let timeout = Duration::from_secs_f64(timeout_s.max(0.0));
        block_on(py, async move { to_json(&client.flush(timeout).await?) })
    }

    /// Close the client (`Client::close`): later calls are refused, calls in flight get
    /// `grace_s` seconds, then are cancelled; the spool is drained (JSON `DeliveryReport`).
    fn close(&self, py: Python<'_>, grace_s: f64) -> PyResult<String> {
        let client = self.client_py(py)?;
        let grace = Duration::from_secs_f64(grace_s.max(0.0));
        block_on(py, async move { to_json(&client.close(grace).await?) })
    }

    /// Outcome feedback on a call (`record_id` = its `usage_record_id`): signed and
    /// spooled with the usage records; returns the feedback's own id.
    #[pyo3(signature = (record_id, score, label=None, source="user", tags=None))]
    fn feedback(
        &self,
        py: Python<'_>,
        record_id: String,
        score: f64,
        label: Option<String>,
        source: &str,
        tags: Option<BTreeMap<String, String>>,
    ) -> PyResult<String> {
        let source = FeedbackSource::parse(source).map_err(|e| {
            to_pyerr(
                py,
                Error::InvalidRequest {
                    field: Some("source".into()),
                    message: e.to_string(),
                },
            )
        })?;
        let input = FeedbackInput {
            record_id,
            score,
            label,
            source,
            tags: tags.unwrap_or_default(),
        };
        let client = self.client_py(py)?;
        // Spooling writes a file: without the GIL.
        py.detach(|| client.feedback(input))
            .map(|id| id.0)
            .map_err(|e| to_pyerr(py, e))
    }

    /// Blocking chat: request JSON in, response JSON out.
    fn chat(&self, py: Python<'_>, request_json: &str) -> PyResult<String> {
        let req = ChatRequest::from_json(request_json).map_err(|e| to_pyerr(py, e))?;
        let client = self.client_py(py)?;
        block_on(py, async move { to_json(&client.chat(req).await?) })
    }

    /// Async chat: resolves through `loop.call_soon_threadsafe(done, ok, value)`.
    fn chat_async(
        &self,
        py: Python<'_>,
        request_json: &str,
        event_loop: Py<PyAny>,
        done: Py<PyAny>,
    ) -> PyResult<TaskHandle> {
        let req = ChatRequest::from_json(request_json).map_err(|e| to_pyerr(py, e))?;
        let client = self.client_py(py)?;
        let cancel = client.cancel_handle();
        let call = cancel.clone();
        runtime().spawn(async move {
            let result = async { to_json(&client.chat_cancellable(req, &call).await?) }.await;
            resolve(&event_loop, &done, result.map(Some));
        });
        Ok(TaskHandle { cancel })
    }

    /// Open a stream (blocking until the provider answers).
    fn stream(&self, py: Python<'_>, request_json: &str) -> PyResult<NativeStream> {
        let req = ChatRequest::from_json(request_json).map_err(|e| to_pyerr(py, e))?;
        let client = self.client_py(py)?;
        let stream = block_on(py, async move { client.chat_stream(req).await })?;
        Ok(NativeStream {
            inner: Arc::new(tokio::sync::Mutex::new(Some(stream))),
            cancel: None,
            pid: std::process::id(),
        })
    }

    /// A stream returned at once, without blocking: it connects on the first
    /// `next_async` (what `AsyncClient` uses, so opening never blocks the event loop).
    fn stream_lazy(&self, py: Python<'_>, request_json: &str) -> PyResult<NativeStream> {
        let req = ChatRequest::from_json(request_json).map_err(|e| to_pyerr(py, e))?;
        let client = self.client_py(py)?;
        let cancel = client.cancel_handle();
        let stream = client.chat_stream_lazy(req, &cancel);
        Ok(NativeStream {
            inner: Arc::new(tokio::sync::Mutex::new(Some(stream))),
            cancel: Some(cancel),
            pid: std::process::id(),
        })
    }
}

/// A stream of chunk JSON strings.
#[pyclass(module = "gaterouter._native", frozen)]
struct NativeStream {
    inner: Arc<tokio::sync::Mutex<Option<ChatStream>>>,
    /// The lazy stream's cancel handle (`next_async`'s handle stops the stream).
    cancel: Option<Cancel>,
    /// The process that opened it: after `os.fork()` the child must not touch it (its
    /// connection lives on the parent's runtime, and reading would hang).
    pid: u32,
}

/// Dropped in a forked child, an object the parent made is leaked, not dropped: its
/// destructors belong to the parent (an unfinished stream would record a "cancelled" call
/// into the parent's spool and lose the parent's record; connections would be torn down
/// under the parent).
impl Drop for NativeStream {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            std::mem::forget(self.inner.clone());
        }
    }
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if state.0 != std::process::id() {
            std::mem::forget(state.1.clone());
        }
    }
}

impl NativeStream {
    fn same_process(&self, py: Python<'_>) -> PyResult<()> {
        if self.pid == std::process::id() {
            return Ok(());
        }
        let message = "this stream was opened before os.fork() and belongs to the parent process; open a new stream in this process".into();
        Err(to_pyerr(
            py,
            Error::InvalidRequest {
                field: None,
                message,
            },
        ))
    }
}

async fn next_chunk(
    inner: Arc<tokio::sync::Mutex<Option<ChatStream>>>,
) -> Result<Option<String>, Error> {
    let mut guard = inner.lock().await;
    let Some(stream) = guard.as_mut() else {
        return Ok(None);
    };
    match stream.next().await {
        Some(Ok(chunk)) => to_json(&chunk).map(Some),
        Some(Err(e)) => {
            *guard = None;
            Err(e)
        }
        None => {
            *guard = None;
            Ok(None)
        }
    }
}

#[pymethods]
impl NativeStream {
    /// Next chunk JSON, or None at the end.
    fn next(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.same_process(py)?;
        let inner = self.inner.clone();
        block_on(py, next_chunk(inner))
    }

    /// Async next: `done(ok, chunk_json_or_None_or_error)`.
    fn next_async(
        &self,
        py: Python<'_>,
        event_loop: Py<PyAny>,
        done: Py<PyAny>,
    ) -> PyResult<TaskHandle> {
        self.same_process(py)?;
        let inner = self.inner.clone();
        let cancel = match &self.cancel {
            Some(c) => c.clone(),
            None => {
                return Err(to_pyerr(
                    py,
                    Error::InvalidRequest {
                        field: None,
                        message: "next_async needs a stream opened with stream_lazy".into(),
                    },
                ));
            }
        };
        runtime().spawn(async move {
            let r = next_chunk(inner).await;
            resolve(&event_loop, &done, r);
        });
        Ok(TaskHandle { cancel })
    }

    /// Stop reading: drops the connection (in a forked child: nothing to do, the
    /// connection is the parent's).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.same_process(py).is_err() {
            return Ok(());
        }
        let inner = self.inner.clone();
        block_on(py, async move {
            *inner.lock().await = None;
            Ok(())
        })
    }
}

/// The core client for `config`, built inside the module's runtime (its reporter task
/// runs there); usage records name this package (`SdkInfo::version`: its own version).
fn build(config: Config) -> Result<Client, Error> {
    let _guard = runtime().enter();
    Client::builder(config)
        .sdk_named("gaterouter-python", env!("CARGO_PKG_VERSION"), "python")
        .build()
}

/// Tokens of a text as `model` counts them: `(tokens, exact)`.
#[pyfunction]
fn count_text(py: Python<'_>, text: &str, model: &str) -> (u64, bool) {
    let text = text.to_owned();
    let model = model.to_owned();
    let c = py.detach(move || gaterouter::tokens::count_text(&text, &model));
    (c.tokens, c.exact)
}

/// Prompt tokens of a request as its model bills them (JSON), without a client.
#[pyfunction]
fn count_request(py: Python<'_>, request_json: &str) -> PyResult<String> {
    let req = ChatRequest::from_json(request_json).map_err(|e| to_pyerr(py, e))?;
    let c = py.detach(|| gaterouter::tokens::count_request(&req, &req.model));
    to_json(&c).map_err(|e| to_pyerr(py, e))
}

/// Expected and maximum cost of a request with the built-in catalog (JSON).
#[pyfunction]
fn estimate_cost(py: Python<'_>, request_json: &str) -> PyResult<String> {
    let req = ChatRequest::from_json(request_json).map_err(|e| to_pyerr(py, e))?;
    py.detach(|| gaterouter::pricing::estimate_cost(&req, &req.model).and_then(|c| to_json(&c)))
        .map_err(|e| to_pyerr(py, e))
}

/// Cost of a call from its usage (JSON in the `Usage` shape) with the built-in catalog.
#[pyfunction]
#[pyo3(signature = (usage_json, model, batch=false, cache_write_1h=false))]
fn cost(
    py: Python<'_>,
    usage_json: &str,
    model: &str,
    batch: bool,
    cache_write_1h: bool,
) -> PyResult<String> {
    let opts = gaterouter::pricing::CostOptions {
        batch,
        cache_write_1h,
    };
    gaterouter::standalone::cost_json(usage_json, model, opts)
        .and_then(|c| to_json(&c))
        .map_err(|e| to_pyerr(py, e))
}

/// Canonical bytes and Ed25519 signature of a usage record (JSON), with the given key
/// (base64 seed or PKCS#8 PEM): `(canonical_json, signature_base64)`. For test vectors
/// and for apps that sign records themselves.
#[pyfunction]
fn sign_record(py: Python<'_>, record_json: &str, signing_key: &str) -> PyResult<(String, String)> {
    gaterouter::standalone::sign_record_json(record_json, signing_key).map_err(|e| to_pyerr(py, e))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", gaterouter::SDK_VERSION)?;
    m.add_function(wrap_pyfunction!(count_text, m)?)?;
    m.add_function(wrap_pyfunction!(count_request, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_cost, m)?)?;
    m.add_function(wrap_pyfunction!(cost, m)?)?;
    m.add_function(wrap_pyfunction!(sign_record, m)?)?;
    m.add_class::<NativeClient>()?;
    m.add_class::<NativeStream>()?;
    m.add_class::<TaskHandle>()?;
    for (name, ty) in [
        ("GateRouterError", py.get_type::<GateRouterError>()),
        ("ConfigError", py.get_type::<ConfigError>()),
        ("AuthenticationError", py.get_type::<AuthenticationError>()),
        ("RateLimitError", py.get_type::<RateLimitError>()),
        (
            "ProviderUnavailableError",
            py.get_type::<ProviderUnavailableError>(),
        ),
        ("InvalidRequestError", py.get_type::<InvalidRequestError>()),
        (
            "ContextLengthExceededError",
            py.get_type::<ContextLengthExceededError>(),
        ),
        ("APITimeoutError", py.get_type::<APITimeoutError>()),
        (
            "StreamInterruptedError",
            py.get_type::<StreamInterruptedError>(),
        ),
        (
            "InvalidResponseError",
            py.get_type::<InvalidResponseError>(),
        ),
        ("BudgetExceededError", py.get_type::<BudgetExceededError>()),
        (
            "PermissionDeniedError",
            py.get_type::<PermissionDeniedError>(),
        ),
        ("ClientClosedError", py.get_type::<ClientClosedError>()),
    ] {
        m.add(name, ty)?;
    }
    Ok(())
}
