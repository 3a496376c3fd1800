//! [`Client`]: the one entry point. It resolves `provider/model` to a provider, lets
//! that provider's adapter translate the request, does the HTTP (one pooled connection
//! set per client), retries what may be retried, and enforces timeouts; streams are
//! normalized into [`ChatStream`].
//!
//! A `Client` is cheap to clone (an `Arc` inside) and safe to share across tasks.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::HeaderMap;

use crate::config::{Config, ResolvedProvider};
use crate::error::{Error, Result};
use crate::model_id::ModelId;
use crate::providers::{Adapter, HttpCall, StreamDecoder, Target, adapter_for};
use crate::retry::{Backoff, Decision};
use crate::sse::SseParser;
use crate::stream::ChatStream;
use crate::types::{ChatChunk, ChatRequest, ChatResponse};

/// The GateRouter client.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    providers: BTreeMap<String, ResolvedProvider>,
    http: reqwest::Client,
}

/// What one call did besides answering: how many attempts it took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Attempts made (1 when the first succeeded).
    pub attempts: u32,
}

impl Client {
    /// Build a client from a validated config.
    pub fn new(config: Config) -> Result<Self> {
        config.validate("config")?;
        let providers = config.resolved_providers("config")?;
        // reqwest is built without a default TLS crypto provider so the core does not
        // drag in aws-lc (slow to build, awkward to cross-compile for mobile); ring is
        // installed process-wide here. `Err` means one is already installed: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.timeouts.connect_ms))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(format!("{}/{}", crate::SDK_NAME, crate::SDK_VERSION))
            .build()
            .map_err(|e| Error::config("http client", format!("cannot build the HTTP client: {e}"), "check the TLS setup of this machine"))?;
        Ok(Client { inner: Arc::new(Inner { config, providers, http }) })
    }

    /// Build from a TOML file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::new(Config::from_toml_file(path)?)
    }

    /// Build from TOML text (`source` names it in errors).
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self> {
        Self::new(Config::from_toml_str(text, source)?)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The providers after merging built-ins with the config.
    pub fn providers(&self) -> &BTreeMap<String, ResolvedProvider> {
        &self.inner.providers
    }

    /// Resolve a model name (`provider/model` or `auto`) to where the call goes.
    /// Checks the `[[models]]` allow-list and that the provider's key is available.
    pub fn resolve(&self, model: &str) -> Result<Target> {
        let cfg = &self.inner.config;
        let name = if ModelId::is_auto(model) { cfg.default_model.as_str() } else { model };
        let id = ModelId::parse(name)?;
        let provider = self.inner.providers.get(&id.provider).ok_or_else(|| Error::InvalidRequest {
            field: Some("model".into()),
            message: format!(
                "unknown provider `{}` in model `{name}`: configured providers are {}; add [providers.{}] to the config",
                id.provider,
                self.inner.providers.keys().cloned().collect::<Vec<_>>().join(", "),
                id.provider
            ),
        })?;
        let mut provider_model = id.model.clone();
        if !cfg.models.is_empty() {
            let entry = cfg.models.iter().find(|m| m.id == name).ok_or_else(|| Error::InvalidRequest {
                field: Some("model".into()),
                message: format!(
                    "model `{name}` is not in the configured [[models]] list ({}); add it there or pick one of those",
                    cfg.models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
            })?;
            if let Some(pm) = &entry.provider_model {
                provider_model.clone_from(pm);
            }
        }
        let api_key = provider.api_key()?;
        Ok(Target { provider: provider.clone(), model: provider_model, model_id: id.to_string(), api_key })
    }

    /// Send a chat request and wait for the whole answer.
    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse> {
        self.chat_with_stats(req).await.map(|(r, _)| r)
    }

    /// [`Client::chat`], also returning how many attempts it took.
    pub async fn chat_with_stats(&self, req: ChatRequest) -> Result<(ChatResponse, CallStats)> {
        req.validate()?;
        let target = self.resolve(&req.model)?;
        let adapter = adapter_for(target.provider.kind);
        let call = adapter.build_request(&req, &target, false)?;
        let mut backoff = Backoff::new(&self.inner.config.retry);
        loop {
            let result = self.attempt(adapter, &call, &target).await;
            match result {
                Ok(resp) => return Ok((resp, CallStats { attempts: backoff.retries() + 1 })),
                Err(e) => match backoff.next(&e) {
                    Decision::RetryAfter(wait) => {
                        tracing::debug!(provider = %target.provider.name, error = %e, ?wait, "retrying");
                        tokio::time::sleep(wait).await;
                    }
                    Decision::GiveUp => return Err(e),
                },
            }
        }
    }

    async fn attempt(&self, adapter: &dyn Adapter, call: &HttpCall, target: &Target) -> Result<ChatResponse> {
        let timeout = target.provider.request_timeout;
        let fut = async {
            let resp = self.send(call, target).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| transport_error(&target.provider.name, e, timeout))?;
            if (200..300).contains(&status) {
                adapter.parse_response(&body, target)
            } else {
                Err(adapter.parse_error(status, &headers, &body, target))
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout { provider: target.provider.name.clone(), after: timeout, what: "request" }),
        }
    }

    async fn send(&self, call: &HttpCall, target: &Target) -> Result<reqwest::Response> {
        let mut rb = self.inner.http.post(&call.url).json(&call.body);
        for (k, v) in &call.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        rb.send().await.map_err(|e| transport_error(&target.provider.name, e, target.provider.request_timeout))
    }

    /// Send a chat request and stream the answer. Retries happen only before the first
    /// byte of the answer; once streaming, a broken connection ends the stream with
    /// [`crate::ErrorKind::StreamInterrupted`].
    pub async fn chat_stream(&self, req: ChatRequest) -> Result<ChatStream> {
        self.chat_stream_with_stats(req).await.map(|(s, _)| s)
    }

    /// [`Client::chat_stream`], also returning how many attempts opening it took.
    pub async fn chat_stream_with_stats(&self, req: ChatRequest) -> Result<(ChatStream, CallStats)> {
        req.validate()?;
        let target = self.resolve(&req.model)?;
        let adapter = adapter_for(target.provider.kind);
        let call = adapter.build_request(&req, &target, true)?;
        let mut backoff = Backoff::new(&self.inner.config.retry);
        let timeout = target.provider.request_timeout;
        loop {
            let opened = async {
                let resp = tokio::time::timeout(timeout, self.send(&call, &target))
                    .await
                    .map_err(|_| Error::Timeout { provider: target.provider.name.clone(), after: timeout, what: "stream start" })??;
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(resp);
                }
                let headers: HeaderMap = resp.headers().clone();
                let body = tokio::time::timeout(timeout, resp.bytes())
                    .await
                    .map_err(|_| Error::Timeout { provider: target.provider.name.clone(), after: timeout, what: "error body" })?
                    .map_err(|e| transport_error(&target.provider.name, e, timeout))?;
                Err(adapter.parse_error(status, &headers, &body, &target))
            }
            .await;
            match opened {
                Ok(resp) => {
                    let idle = Duration::from_millis(self.inner.config.timeouts.stream_idle_ms);
                    let stream = sse_chunks(Box::pin(resp.bytes_stream()), adapter.stream_decoder(&target), target.provider.name.clone(), idle);
                    return Ok((ChatStream::new(stream), CallStats { attempts: backoff.retries() + 1 }));
                }
                Err(e) => match backoff.next(&e) {
                    Decision::RetryAfter(wait) => tokio::time::sleep(wait).await,
                    Decision::GiveUp => return Err(e),
                },
            }
        }
    }
}

fn transport_error(provider: &str, e: reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        return Error::Timeout { provider: provider.to_owned(), after: timeout, what: "request" };
    }
    let what = if e.is_connect() { "cannot connect" } else if e.is_body() || e.is_decode() { "connection broke while reading" } else { "transport error" };
    // `{:#}`-style source chain without the URL's query (keys may travel in `?key=`).
    let e = e.without_url();
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::ProviderUnavailable { provider: provider.to_owned(), status: None, message: msg }
}

/// State of a streaming response being decoded.
struct SseState<S> {
    body: S,
    parser: SseParser,
    decoder: Box<dyn StreamDecoder>,
    pending: VecDeque<Result<ChatChunk>>,
    provider: String,
    idle: Duration,
    ended: bool,
}

/// Bytes -> SSE events -> normalized chunks, with an idle timeout between reads.
fn sse_chunks<S>(body: S, decoder: Box<dyn StreamDecoder>, provider: String, idle: Duration) -> impl Stream<Item = Result<ChatChunk>> + Send
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static,
{
    let state = SseState { body, parser: SseParser::new(), decoder, pending: VecDeque::new(), provider, idle, ended: false };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                if item.is_err() {
                    // An error ends the stream: nothing after it is meaningful.
                    st.pending.clear();
                    st.ended = true;
                }
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            match tokio::time::timeout(st.idle, st.body.next()).await {
                Err(_) => {
                    st.pending.push_back(Err(Error::Timeout { provider: st.provider.clone(), after: st.idle, what: "stream idle" }));
                }
                Ok(Some(Ok(bytes))) => match st.parser.feed(&bytes) {
                    Ok(events) => {
                        for ev in events {
                            match st.decoder.on_event(&ev) {
                                Ok(chunks) => st.pending.extend(chunks.into_iter().map(Ok)),
                                Err(e) => {
                                    st.pending.push_back(Err(e));
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => st.pending.push_back(Err(Error::invalid_response(&st.provider, Some(200), e.to_string()))),
                },
                Ok(Some(Err(e))) => {
                    st.pending.push_back(Err(Error::StreamInterrupted {
                        provider: st.provider.clone(),
                        message: format!("the connection broke mid-stream: {}", e.without_url()),
                    }));
                }
                Ok(None) => {
                    st.ended = true;
                    let tail = st.parser.finish().map_err(|e| Error::invalid_response(&st.provider, Some(200), e.to_string()));
                    let tail_chunks = tail.and_then(|ev| match ev {
                        Some(ev) => st.decoder.on_event(&ev),
                        None => Ok(Vec::new()),
                    });
                    match tail_chunks.and_then(|mut c| {
                        c.extend(st.decoder.finish()?);
                        Ok(c)
                    }) {
                        Ok(chunks) => st.pending.extend(chunks.into_iter().map(Ok)),
                        Err(e) => st.pending.push_back(Err(e)),
                    }
                }
            }
        }
    })
}
