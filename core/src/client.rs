//! [`Client`]: the one entry point.
//!
//! One call, start to end:
//! 1. validate the request (and its tags, so a bad tag fails before anything is billed);
//! 2. decide the route ([`crate::routing::select`]): score `auto` requests, filter and
//!    rank candidates, or check an explicit model; the decision is kept for the response;
//! 3. execute it: for each model of the chain (chosen, then fallbacks) let the provider's
//!    adapter translate the request, send it with retries (429/5xx/529/timeouts only,
//!    `retry-after` honoured), skip providers whose circuit breaker is open, and fall
//!    back on rate limits, outages, timeouts and context overflows, all within one time
//!    budget;
//! 4. price the answer from the provider's usage ([`crate::pricing`]);
//! 5. append one signed usage record to the spool ([`crate::usage`]) — for failures and
//!    cancelled streams too — before returning.
//!
//! A `Client` is cheap to clone (an `Arc` inside) and safe to share across tasks.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::HeaderMap;

use crate::config::{Config, ResolvedProvider};
use crate::error::{Error, ErrorKind, Result};
use crate::health::{BreakerState, Health};
use crate::model_id::ModelId;
use crate::pricing::{Catalog, Cost, CostEstimate, CostOptions, EstimateOptions};
use crate::providers::{Adapter, HttpCall, StreamDecoder, Target, adapter_for};
use crate::retry::{Backoff, Decision};
use crate::routing::select::{Availability, SelectInput, select};
use crate::routing::{Attempt, RouteDecision, Scorer};
use crate::sse::SseParser;
use crate::stream::ChatStream;
use crate::tokens::{PromptCount, count_request};
use crate::types::{ChatChunk, ChatRequest, ChatResponse, Usage};
use crate::usage::{
    FlushOutcome, LinkState, NetworkClass, Recorder, ReportingMode, RouteInfo, SdkInfo, SpoolStatus, UsageError, UsageRecordInput, UsageStatus,
    unix_ms_now,
};

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
    catalog: Catalog,
    scorer: Scorer,
    health: Health,
    recorder: Option<Recorder>,
}

/// What one call did besides answering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// HTTP attempts made over all models (1 when the first succeeded).
    pub attempts: u32,
}

impl Client {
    /// Build a client from a validated config (usage records say `gaterouter-rust`).
    pub fn new(config: Config) -> Result<Self> {
        Self::with_sdk(config, SdkInfo::rust())
    }

    /// Build a client whose usage records name another SDK (the bindings use this).
    ///
    /// Usage records are on (`[reporting] mode = "spool"`, the default) when a signing key
    /// and `identity.api_key_id` are configured; without either, and with no
    /// `collector_url`, the client works and writes no records (logged once at `info`).
    /// With a `collector_url`, missing key or id is a config error.
    pub fn with_sdk(config: Config, sdk: SdkInfo) -> Result<Self> {
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
            .user_agent(format!("{}/{}", sdk.name, sdk.version))
            .build()
            .map_err(|e| Error::config("http client", format!("cannot build the HTTP client: {e}"), "check the TLS setup of this machine"))?;
        let catalog = Catalog::builtin().with_overrides(&config.prices)?;
        let scorer = match &config.routing.scorer_weights_file {
            Some(path) => Scorer::from_file(path)?,
            None => Scorer::builtin()?,
        };
        let health = Health::new(config.routing.circuit_breaker.clone());
        let recorder = start_recorder(&config, sdk)?;
        Ok(Client { inner: Arc::new(Inner { config, providers, http, catalog, scorer, health, recorder }) })
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

    /// The price catalog in force (built-in plus `[prices]` overrides).
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Circuit-breaker state of a provider.
    pub fn breaker_state(&self, provider: &str) -> BreakerState {
        self.inner.health.state(provider)
    }

    /// Resolve an explicit `provider/model` to where the call goes. Checks the
    /// `[[models]]` allow-list and that the provider's key is available.
    pub fn resolve(&self, model: &str) -> Result<Target> {
        let cfg = &self.inner.config;
        if ModelId::is_auto(model) {
            return Err(Error::InvalidRequest {
                field: Some("model".into()),
                message: "`auto` is resolved by routing: call route() or chat(), not resolve()".into(),
            });
        }
        let id = ModelId::parse(model)?;
        let provider = self.inner.providers.get(&id.provider).ok_or_else(|| Error::InvalidRequest {
            field: Some("model".into()),
            message: format!(
                "unknown provider `{}` in model `{model}`: configured providers are {}; add [providers.{}] to the config",
                id.provider,
                self.inner.providers.keys().cloned().collect::<Vec<_>>().join(", "),
                id.provider
            ),
        })?;
        let mut provider_model = id.model.clone();
        if !cfg.models.is_empty() {
            let entry = cfg.models.iter().find(|m| m.id == model).ok_or_else(|| Error::Permission {
                message: format!(
                    "model `{model}` is not in the configured [[models]] list ({}); add it there or pick one of those",
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

    /// Decide where a request would go, without calling anything: score, tier, features,
    /// the chosen model, ranked alternatives with estimated cost, and why each excluded
    /// model was excluded.
    pub fn route(&self, req: &ChatRequest) -> Result<RouteDecision> {
        req.validate()?;
        let cfg = &self.inner.config.routing;
        let score = if ModelId::is_auto(&req.model) {
            Some(self.inner.scorer.score(req))
        } else {
            // Explicit: the precise error (unknown provider, unset key variable, not in
            // the allow-list) comes from resolve().
            self.resolve(&req.model)?;
            None
        };
        select(SelectInput { req, score, cfg, catalog: &self.inner.catalog }, self)
    }

    /// Count a request's prompt tokens as `model` bills them (`auto`: as the routed
    /// model would). Exact for OpenAI encodings, a calibrated estimate elsewhere.
    pub fn count_tokens(&self, req: &ChatRequest) -> Result<PromptCount> {
        let model = self.priced_model(req)?;
        Ok(count_request(req, &model))
    }

    /// Estimate a request's cost before calling: expected and maximum.
    pub fn estimate_cost(&self, req: &ChatRequest) -> Result<CostEstimate> {
        self.estimate_cost_with(req, EstimateOptions::default())
    }

    /// [`Client::estimate_cost`] with options: expected completion length, batch
    /// pricing, and [`crate::tokens::Counting::Fast`] to skip the tokenizer on large
    /// prompts (a few percent of error, microseconds).
    pub fn estimate_cost_with(&self, req: &ChatRequest, opts: EstimateOptions) -> Result<CostEstimate> {
        let model = self.priced_model(req)?;
        self.inner.catalog.estimate_cost_with(req, &model, opts)
    }

    fn priced_model(&self, req: &ChatRequest) -> Result<String> {
        if ModelId::is_auto(&req.model) { Ok(self.route(req)?.chosen) } else { Ok(ModelId::parse(&req.model)?.to_string()) }
    }

    /// Send a chat request and wait for the whole answer.
    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse> {
        self.chat_with_stats(req).await.map(|(r, _)| r)
    }

    /// [`Client::chat`], also returning how many attempts it took.
    pub async fn chat_with_stats(&self, req: ChatRequest) -> Result<(ChatResponse, CallStats)> {
        let started = CallClock::start();
        let mut decision = self.prepare(&req)?;
        let outcome = self.execute(&req, &mut decision, Op::Chat, &started).await;
        let attempts = total_attempts(&decision);
        match outcome {
            Ok((Opened::Chat(mut resp), target)) => {
                resp.cost = self.price(&resp.usage, &target.model_id);
                self.record(&req, &target.model_id, &decision, &started, Some(&resp.usage), resp.cost.as_ref(), UsageStatus::Ok, None, false);
                resp.route = Some(decision);
                Ok((resp, CallStats { attempts }))
            }
            Ok((Opened::Stream(..), _)) => Err(Error::invalid_response("gaterouter", None, "internal: a stream opened for a chat call")),
            Err(e) => {
                self.record(&req, decision.answered_by(), &decision, &started, None, None, UsageStatus::Error(e.kind()), None, false);
                Err(e)
            }
        }
    }

    /// Send a chat request and stream the answer. Retries and fallbacks happen only
    /// before the first byte of the answer; once streaming, a broken connection ends the
    /// stream with [`crate::ErrorKind::StreamInterrupted`]. The last chunk carries usage
    /// and cost; [`ChatStream::route`] has the decision.
    pub async fn chat_stream(&self, req: ChatRequest) -> Result<ChatStream> {
        self.chat_stream_with_stats(req).await.map(|(s, _)| s)
    }

    /// [`Client::chat_stream`], also returning how many attempts opening it took.
    pub async fn chat_stream_with_stats(&self, req: ChatRequest) -> Result<(ChatStream, CallStats)> {
        let started = CallClock::start();
        let mut decision = self.prepare(&req)?;
        let outcome = self.execute(&req, &mut decision, Op::Stream, &started).await;
        let attempts = total_attempts(&decision);
        match outcome {
            Ok((Opened::Stream(resp, adapter), target)) => {
                let idle = Duration::from_millis(self.inner.config.timeouts.stream_idle_ms);
                let chunks = sse_chunks(Box::pin(resp.bytes_stream()), adapter.stream_decoder(&target), target.provider.name.clone(), idle);
                let recording = RecordingStream {
                    inner: Box::pin(chunks),
                    client: self.clone(),
                    req: Some(req),
                    model_id: target.model_id,
                    decision: decision.clone(),
                    started,
                    first_token_ms: None,
                    usage: None,
                    done: false,
                };
                Ok((ChatStream::with_route(recording, decision), CallStats { attempts }))
            }
            Ok((Opened::Chat(_), _)) => Err(Error::invalid_response("gaterouter", None, "internal: a chat answer for a stream call")),
            Err(e) => {
                self.record(&req, decision.answered_by(), &decision, &started, None, None, UsageStatus::Error(e.kind()), None, true);
                Err(e)
            }
        }
    }

    /// Wait until every usage record made so far is delivered (or `timeout` passes).
    /// Without reporting there is nothing to wait for.
    pub async fn flush(&self, timeout: Duration) -> Result<FlushOutcome> {
        match &self.inner.recorder {
            Some(r) => r.flush(timeout).await.map_err(usage_error),
            None => Ok(FlushOutcome { drained: true, pending_records: 0 }),
        }
    }

    /// Drain the spool (bounded by `reporting.shutdown_timeout_ms`) and stop reporting.
    pub async fn shutdown(&self) -> Result<FlushOutcome> {
        match &self.inner.recorder {
            Some(r) => r.shutdown().await.map_err(usage_error),
            None => Ok(FlushOutcome { drained: true, pending_records: 0 }),
        }
    }

    /// The spool's state, when usage records are on.
    pub fn usage_status(&self) -> Option<SpoolStatus> {
        self.inner.recorder.as_ref().map(Recorder::status)
    }

    /// Validation and the route decision: everything that can fail before a provider is
    /// called.
    fn prepare(&self, req: &ChatRequest) -> Result<RouteDecision> {
        req.validate()?;
        crate::usage::record::validate_tags(&req.metadata).map_err(|e| Error::InvalidRequest {
            field: Some("metadata".into()),
            message: format!("metadata becomes the usage record's tags: {e}"),
        })?;
        self.route(req)
    }

    /// Walk the decision's chain: retries per model, fallbacks between models.
    async fn execute(&self, req: &ChatRequest, decision: &mut RouteDecision, op: Op, clock: &CallClock) -> Result<(Opened, Target)> {
        let chain = decision.chain(self.inner.config.routing.max_fallbacks);
        let retry = &self.inner.config.retry;
        let mut last_err: Option<Error> = None;
        let mut min_context: Option<u64> = None;
        for model in chain {
            if let (Some(need), Some(window)) = (min_context, self.inner.catalog.lookup(&model).and_then(|(_, p)| p.context_window)) {
                if window <= need {
                    continue;
                }
            }
            let target = match self.resolve(&model) {
                Ok(t) => t,
                Err(e) => {
                    decision.attempts.push(Attempt { model: model.clone(), outcome: e.kind().code().to_owned(), retries: 0 });
                    last_err = Some(e);
                    continue;
                }
            };
            if !self.inner.health.admit(&target.provider.name) {
                decision.attempts.push(Attempt { model: model.clone(), outcome: "CIRCUIT_OPEN".into(), retries: 0 });
                last_err.get_or_insert(Error::ProviderUnavailable {
                    provider: target.provider.name.clone(),
                    status: None,
                    message: "skipped: the circuit breaker is open after repeated failures".into(),
                });
                continue;
            }
            let adapter = adapter_for(target.provider.kind);
            let call = adapter.build_request(req, &target, op == Op::Stream)?;
            let mut backoff = Backoff::starting_at(retry, clock.instant);
            loop {
                let t0 = Instant::now();
                let result = match op {
                    Op::Chat => self.attempt(adapter, &call, &target).await.map(Opened::Chat),
                    Op::Stream => self.open_stream(adapter, &call, &target).await.map(|r| Opened::Stream(r, adapter)),
                };
                match result {
                    Ok(opened) => {
                        self.inner.health.record(&target.provider.name, Ok(t0.elapsed()), &model);
                        decision.attempts.push(Attempt { model, outcome: "ok".into(), retries: backoff.retries() });
                        return Ok((opened, target));
                    }
                    Err(e) => {
                        self.inner.health.record(&target.provider.name, Err(e.kind()), &model);
                        match backoff.next(&e) {
                            Decision::RetryAfter(wait) => {
                                tracing::debug!(model = %model, error = %e, ?wait, "retrying");
                                tokio::time::sleep(wait).await;
                            }
                            Decision::GiveUp => {
                                decision.attempts.push(Attempt { model: model.clone(), outcome: e.kind().code().to_owned(), retries: backoff.retries() });
                                let fall_back = matches!(
                                    e.kind(),
                                    ErrorKind::RateLimited | ErrorKind::ProviderUnavailable | ErrorKind::Timeout | ErrorKind::ContextLengthExceeded
                                ) && backoff.time_left();
                                if !fall_back {
                                    return Err(e);
                                }
                                if e.kind() == ErrorKind::ContextLengthExceeded {
                                    let window = self.inner.catalog.lookup(&model).and_then(|(_, p)| p.context_window).unwrap_or(0);
                                    min_context = Some(min_context.unwrap_or(0).max(window));
                                }
                                tracing::info!(model = %model, error = %e, "falling back to the next model");
                                last_err = Some(e);
                                break;
                            }
                        }
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::InvalidRequest { field: Some("model".into()), message: "no model left to try".into() }))
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

    async fn open_stream(&self, adapter: &dyn Adapter, call: &HttpCall, target: &Target) -> Result<reqwest::Response> {
        let timeout = target.provider.request_timeout;
        let resp = tokio::time::timeout(timeout, self.send(call, target))
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
        Err(adapter.parse_error(status, &headers, &body, target))
    }

    async fn send(&self, call: &HttpCall, target: &Target) -> Result<reqwest::Response> {
        let mut rb = self.inner.http.post(&call.url).json(&call.body);
        for (k, v) in &call.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        rb.send().await.map_err(|e| transport_error(&target.provider.name, e, target.provider.request_timeout))
    }

    fn price(&self, usage: &Usage, model_id: &str) -> Option<Cost> {
        match self.inner.catalog.cost(usage, model_id, CostOptions::default()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(model = model_id, error = %e, "no price for this model: the response has no cost");
                None
            }
        }
    }

    /// Append the call's usage record. A full or broken spool does not fail a call the
    /// provider already answered: the spool counts the overflow and this logs it.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        req: &ChatRequest,
        model_id: &str,
        decision: &RouteDecision,
        clock: &CallClock,
        usage: Option<&Usage>,
        cost: Option<&Cost>,
        status: UsageStatus,
        first_token_ms: Option<u64>,
        stream: bool,
    ) {
        let Some(recorder) = &self.inner.recorder else { return };
        let id = ModelId::parse(model_id).unwrap_or(ModelId { provider: String::new(), model: model_id.to_owned() });
        let u = usage.copied().unwrap_or_default();
        let input = UsageRecordInput {
            ts_start: clock.unix_ms,
            ts_end: unix_ms_now(),
            provider: id.provider,
            model: id.model,
            route: Some(RouteInfo {
                mode: decision.mode,
                tier: decision.tier.map(|t| t.as_str().to_owned()),
                score: decision.score.map(|s| (s * 1000.0).round() as i64),
            }),
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_prompt_tokens: u.cached_prompt_tokens,
            cache_write_tokens: u.cache_write_tokens,
            reasoning_tokens: u.reasoning_tokens,
            cost_micros: cost.map_or(0, |c| c.total_micros),
            latency_ms: clock.instant.elapsed().as_millis() as u64,
            time_to_first_token_ms: first_token_ms,
            status: Some(status),
            attempts: total_attempts(decision).max(1),
            stream,
            tags: req.metadata.clone(),
        };
        if let Err(e) = recorder.record(input) {
            tracing::error!(error = %e, code = e.code(), "usage record not written");
        }
    }

    /// Pause usage-record delivery (mobile: the app went to the background). Calls keep
    /// working and their records keep being spooled; nothing is sent until
    /// [`Client::resume_reporting`]. Returns at once.
    pub fn suspend_reporting(&self) {
        if let Some(r) = &self.inner.recorder {
            r.suspend();
        }
    }

    /// Resume usage-record delivery; what waited is sent now (unless offline).
    /// Returns at once.
    pub fn resume_reporting(&self) {
        if let Some(r) = &self.inner.recorder {
            r.resume();
        }
    }

    /// Tell the reporter the device's network class (cellular batches more, offline
    /// holds records). Returns at once.
    pub fn set_network_class(&self, network: NetworkClass) {
        if let Some(r) = &self.inner.recorder {
            r.set_network_class(network);
        }
    }

    /// Suspended flag and network class, when usage records are on.
    pub fn reporting_link(&self) -> Option<LinkState> {
        self.inner.recorder.as_ref().map(Recorder::link_state)
    }
}

impl Availability for Client {
    fn check(&self, model: &str) -> std::result::Result<(), String> {
        let id = ModelId::parse(model).map_err(|e| e.to_string())?;
        let Some(provider) = self.inner.providers.get(&id.provider) else {
            return Err(format!("provider `{}` is not configured", id.provider));
        };
        let cfg = &self.inner.config;
        if !cfg.models.is_empty() && !cfg.models.iter().any(|m| m.id == model) {
            return Err("not permitted: not in the [[models]] allow-list".into());
        }
        if provider.api_key().is_err() {
            return Err(format!("no API key (${} is not set)", provider.api_key_env.as_deref().unwrap_or("?")));
        }
        if self.inner.health.state(&provider.name) == BreakerState::Open {
            return Err(format!("circuit open for provider `{}` after repeated failures", provider.name));
        }
        Ok(())
    }

    fn latency_ms(&self, model: &str) -> Option<f64> {
        self.inner.health.latency_ms(model)
    }
}

/// Start of a call: a monotonic instant for latency and a wall-clock stamp for records.
#[derive(Debug, Clone, Copy)]
struct CallClock {
    instant: Instant,
    unix_ms: u64,
}

impl CallClock {
    fn start() -> Self {
        CallClock { instant: Instant::now(), unix_ms: unix_ms_now() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Chat,
    Stream,
}

enum Opened {
    Chat(ChatResponse),
    Stream(reqwest::Response, &'static dyn Adapter),
}

fn total_attempts(decision: &RouteDecision) -> u32 {
    decision.attempts.iter().map(|a| if a.outcome == "CIRCUIT_OPEN" { 0 } else { a.retries + 1 }).sum()
}

fn start_recorder(config: &Config, sdk: SdkInfo) -> Result<Option<Recorder>> {
    let rep = &config.reporting;
    if rep.mode == ReportingMode::Off {
        return Ok(None);
    }
    let key_env = rep.signing_key_env.clone().unwrap_or_else(|| crate::usage::DEFAULT_SIGNING_KEY_ENV.to_owned());
    let key_configured = rep.signing_key.is_some() || rep.signing_key_file.is_some() || std::env::var(&key_env).is_ok_and(|v| !v.trim().is_empty());
    if rep.collector_url.is_none() && (!key_configured || config.identity.api_key_id.is_none()) {
        tracing::info!("usage records are off: configure identity.api_key_id and a signing key ([reporting]) to turn them on");
        return Ok(None);
    }
    let signer = rep.load_signer().map_err(usage_error)?;
    Recorder::start_with(rep, &config.identity, sdk, Some(signer)).map(Some).map_err(usage_error)
}

/// Usage-pipeline errors seen by callers: configuration problems are `Config`, a bad tag
/// is `InvalidRequest`, spool trouble is `Config` with the spool's own fix.
fn usage_error(e: UsageError) -> Error {
    match e.code() {
        "INVALID_REQUEST" => Error::InvalidRequest { field: Some("metadata".into()), message: e.to_string() },
        _ => Error::config("[reporting]", e.to_string(), "see the message; the spool keeps every record already written"),
    }
}

fn transport_error(provider: &str, e: reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        return Error::Timeout { provider: provider.to_owned(), after: timeout, what: "request" };
    }
    let what = if e.is_connect() { "cannot connect" } else if e.is_body() || e.is_decode() { "connection broke while reading" } else { "transport error" };
    // The whole source chain, without the URL (keys may travel in `?key=`).
    let e = e.without_url();
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::ProviderUnavailable { provider: provider.to_owned(), status: None, message: msg }
}

/// A stream that writes the call's usage record when it ends, fails, or is dropped
/// early (status `cancelled`), and prices the final chunk.
struct RecordingStream {
    inner: Pin<Box<dyn Stream<Item = Result<ChatChunk>> + Send>>,
    client: Client,
    req: Option<ChatRequest>,
    model_id: String,
    decision: RouteDecision,
    started: CallClock,
    first_token_ms: Option<u64>,
    usage: Option<Usage>,
    done: bool,
}

impl RecordingStream {
    fn finish(&mut self, status: UsageStatus, cost: Option<&Cost>) {
        if let Some(req) = self.req.take() {
            self.done = true;
            self.client.record(&req, &self.model_id, &self.decision, &self.started, self.usage.as_ref(), cost, status, self.first_token_ms, true);
        }
    }
}

impl Stream for RecordingStream {
    type Item = Result<ChatChunk>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(mut chunk))) => {
                if this.first_token_ms.is_none() && chunk.choices.iter().any(|c| c.delta.content.is_some() || !c.delta.tool_calls.is_empty()) {
                    this.first_token_ms = Some(this.started.instant.elapsed().as_millis() as u64);
                }
                if let Some(u) = chunk.usage {
                    this.usage = Some(u);
                    chunk.cost = this.client.price(&u, &this.model_id);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(UsageStatus::Error(e.kind()), None);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let cost = this.usage.and_then(|u| this.client.price(&u, &this.model_id));
                let status = if this.usage.is_some() { UsageStatus::Ok } else { UsageStatus::Error(ErrorKind::StreamInterrupted) };
                this.finish(status, cost.as_ref());
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for RecordingStream {
    fn drop(&mut self) {
        if !self.done {
            let cost = self.usage.and_then(|u| self.client.price(&u, &self.model_id));
            self.finish(UsageStatus::Cancelled, cost.as_ref());
        }
    }
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
