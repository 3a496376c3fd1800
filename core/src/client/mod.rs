//! [`Client`]: the one entry point.
//!
//! One call, start to end:
//! 1. validate the request (and its tags, so a bad tag fails before anything is billed);
//!    with an organization policy (`[policy]`, [`crate::accounts`]), fetch it (cached,
//!    single-flight) and check the model, `max_tokens` and tier against it;
//! 2. decide the route ([`crate::routing::select`]): score `auto` requests, filter and
//!    rank candidates, or check an explicit model; the decision is kept for the response;
//! 3. execute it: for each model of the chain (chosen, then fallbacks) let the provider's
//!    adapter translate the request, send it with retries (429/5xx/529/timeouts only,
//!    `retry-after` honoured), skip providers whose circuit breaker is open, and fall
//!    back on rate limits, outages, timeouts and context overflows, all within one time
//!    budget; when a hard budget applies, each model of the chain first reserves its
//!    maximum cost with the collector (a fallback reserves anew for its own model, after
//!    the failed model's hold is released);
//! 4. price the answer from the provider's usage ([`crate::pricing`]);
//! 5. append one signed usage record to the spool ([`crate::usage`]) — for failures and
//!    cancelled streams too — before returning, and settle the reservation with the
//!    actual cost and the record's id (zero and no record for failures: released).
//!
//! A `Client` is cheap to clone (an `Arc` inside) and safe to share across tasks.
//!
//! The stages live in their own modules, in call order:
//!
//! | module | stage |
//! |---|---|
//! | `admission` | policy start and fetch, `[identity]` check, budget reservation and settlement |
//! | `route` | validation, the route decision, learning state, availability of a model |
//! | `execution` | the fallback chain over one `Exchange` (plain or streamed) |
//! | `transport` | one HTTP exchange: send, timeouts, transport errors, SSE decoding |
//! | `recording` | the recorder, pricing, usage records (answered, failed, denied, cancelled) |
//! | `builder` | [`ClientBuilder`]: config, SDK name and version, the reporter's initial link state |
//! | `lifecycle` | calls in flight, [`Cancel`] handles, [`Client::close`] |
//!
//! This file holds the [`Client`] type and its public methods: it reads as the map.

mod admission;
mod builder;
mod execution;
mod lifecycle;
mod recording;
mod route;
#[cfg(test)]
mod testing;
mod transport;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::accounts::EffectivePolicy;
use crate::accounts::policy_client::{PolicyClient, PolicyState};
use crate::config::{Config, Identity, ResolvedProvider};
use crate::error::{Error, Result};
use crate::health::{BreakerState, Health};
use crate::model_id::ModelId;
use crate::pricing::{Catalog, CostEstimate, EstimateOptions};
use crate::providers::{Target, adapter_for};
use crate::routing::learning::Learning;
use crate::routing::{RouteDecision, Scorer};
use crate::stream::ChatStream;
use crate::tokens::{PromptCount, count_request};
use crate::types::{ChatRequest, ChatResponse};
use crate::usage::{
    DeliveryEvent, DeliveryReport, LinkState, NetworkClass, RecordId, Recorder, SdkInfo,
    SpoolStatus, UsageError, UsageStatus,
};

pub use builder::ClientBuilder;
pub use lifecycle::Cancel;

use admission::start_policy;
use execution::{Call, Plain, Served, Streamed};
use recording::{AbandonedCall, RecordingStream, start_recorder, usage_error, usage_tokens};
use route::route_policy;

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
    /// Fingerprint of `scorer`'s weights (what records and `explain` name).
    scorer_version: String,
    /// The organization's learning settings and weights, parsed once per policy version:
    /// (cache key, result).
    learning: std::sync::Mutex<Option<(String, Option<Arc<Learning>>)>>,
    health: Health,
    recorder: Option<Recorder>,
    policy: Option<PolicyClient>,
    /// Reservations settled with a usage record the collector has not answered for yet:
    /// record id -> reservation id. A refused record releases its reservation.
    awaiting_records: std::sync::Mutex<BTreeMap<String, String>>,
    /// Recent `auto` answers, when implicit feedback is on (`routing::resend`).
    resends: Option<crate::routing::resend::ResendWatch>,
    /// Calls in flight, their cancellation, and the close.
    life: lifecycle::Lifecycle,
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
        Self::builder(config).build()
    }

    /// A [`ClientBuilder`]: SDK name and version, initial reporting link state.
    pub fn builder(config: Config) -> ClientBuilder {
        ClientBuilder::new(config)
    }

    /// Build a client whose usage records name another SDK: [`ClientBuilder::sdk`].
    pub fn with_sdk(config: Config, sdk: SdkInfo) -> Result<Self> {
        Self::builder(config).sdk(sdk).build()
    }

    /// What [`ClientBuilder::build`] does.
    ///
    /// Usage records are on (`[reporting] mode = "spool"`, the default) when a signing key
    /// and `identity.api_key_id` are configured; without either, and with no
    /// `collector_url`, the client works and writes no records (logged once at `info`).
    /// With a `collector_url`, missing key or id is a config error.
    fn build(
        config: Config,
        sdk: SdkInfo,
        link: LinkState,
        clock: Arc<dyn crate::usage::Clock>,
    ) -> Result<Self> {
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
            .map_err(|e| {
                Error::config(
                    "http client",
                    format!("cannot build the HTTP client: {e}"),
                    "check the TLS setup of this machine",
                )
            })?;
        let catalog = Catalog::builtin().with_overrides(&config.prices)?;
        let scorer = match &config.routing.scorer_weights_file {
            Some(path) => Scorer::from_file(path)?,
            None => Scorer::builtin()?,
        };
        let health = Health::new(config.routing.circuit_breaker.clone());
        let recorder = start_recorder(&config, sdk, link, clock.clone())?;
        let config_window_ms = config.routing.implicit_feedback_window_ms;
        let policy = start_policy(&config, &http, clock)?;
        let client = Client {
            inner: Arc::new(Inner {
                config,
                providers,
                http,
                catalog,
                scorer_version: scorer.weights().fingerprint(),
                scorer,
                learning: Default::default(),
                health,
                recorder,
                policy,
                awaiting_records: Default::default(),
                resends: (config_window_ms > 0).then(|| {
                    crate::routing::resend::ResendWatch::new(Duration::from_millis(
                        config_window_ms,
                    ))
                }),
                life: lifecycle::Lifecycle::default(),
            }),
        };
        if let (Some(rec), Some(_)) = (&client.inner.recorder, &client.inner.policy) {
            // A record the collector refuses releases the reservation its call settled.
            let weak = Arc::downgrade(&client.inner);
            rec.delivery()
                .set_listener(Some(Arc::new(move |e: &DeliveryEvent| {
                    if let Some(inner) = weak.upgrade() {
                        Client { inner }.on_delivery(e);
                    }
                })));
        }
        if client.inner.policy.is_some() {
            // Learn the key's binding (and check `[identity]` against it) now rather than
            // at the first call; offline, the first call that reaches the collector does.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let c = client.clone();
                rt.spawn(async move {
                    if let Err(e) = c.refresh_policy().await {
                        tracing::warn!(error = %e, "the organization policy could not be fetched at start");
                    }
                });
            }
        }
        Ok(client)
    }

    /// [`Client::new`], then wait for the organization policy (when enforced) so that a
    /// wrong `[identity]` value or a refused key fails here rather than at the first
    /// call. A collector that cannot be reached is not an error (the first call that
    /// reaches it checks).
    pub async fn start(config: Config) -> Result<Self> {
        let c = Self::new(config)?;
        c.ready().await?;
        Ok(c)
    }

    /// Wait for the start-up policy fetch (when the policy is enforced) and report a
    /// binding mismatch ([`crate::ErrorKind::Config`] naming the `identity.*` field) or a
    /// refused key. `Ok` when the collector cannot be reached. On an error this client
    /// stops reporting and releases its spool directory, so a corrected config can start
    /// at once (every call of this client would fail the same way).
    pub async fn ready(&self) -> Result<()> {
        if let Err(e) = self.refresh_policy().await {
            let _ = self.shutdown().await;
            return Err(e);
        }
        Ok(())
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
                message: "`auto` is resolved by routing: call route() or chat(), not resolve()"
                    .into(),
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
                rule: "models".into(),
                level: None,
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
        Ok(Target {
            provider: provider.clone(),
            model: provider_model,
            model_id: id.to_string(),
            api_key,
        })
    }

    /// Decide where a request would go, without calling anything: score, tier, features,
    /// the chosen model, ranked alternatives with estimated cost, and why each excluded
    /// model was excluded.
    ///
    /// With an organization policy, the last one fetched applies (models it does not
    /// permit are excluded, tiers and budgets respected); `route` itself never calls
    /// the collector: call [`Client::refresh_policy`] first for a fresh one.
    pub fn route(&self, req: &ChatRequest) -> Result<RouteDecision> {
        self.inner.life.check_open()?;
        let accounts = self
            .inner
            .policy
            .as_ref()
            .and_then(|pc| pc.cached().map(|p| route_policy(self, pc, &p)));
        self.route_with(req, accounts.as_ref(), true)
    }

    /// Fetch the organization policy now (or take it from the cache while fresh).
    /// `Ok(None)` when no policy is enforced (`[policy] enforce`, or a collector without
    /// accounts) or the collector cannot be reached and nothing was fetched before.
    pub async fn refresh_policy(&self) -> Result<Option<Arc<EffectivePolicy>>> {
        let Some(pc) = &self.inner.policy else {
            return Ok(None);
        };
        let p = match pc.current().await? {
            PolicyState::Current(p) => Some(p),
            PolicyState::NotManaged => None,
            PolicyState::Offline { policy, .. } => policy,
        };
        if let Some(p) = &p {
            self.bind(p)?;
        }
        Ok(p)
    }

    /// Budget warnings since the last call (soft-budget thresholds reported by the
    /// collector or crossed by this process's spend), oldest first; each is also logged
    /// at `warn`.
    pub fn policy_warnings(&self) -> Vec<String> {
        self.inner
            .policy
            .as_ref()
            .map(PolicyClient::take_warnings)
            .unwrap_or_default()
    }

    /// The policy client, when the organization policy is enforced.
    pub fn policy_client(&self) -> Option<&PolicyClient> {
        self.inner.policy.as_ref()
    }

    /// Count a request's prompt tokens as `model` bills them (`auto`: as the routed
    /// model would). Exact for OpenAI encodings, a calibrated estimate elsewhere.
    pub fn count_tokens(&self, req: &ChatRequest) -> Result<PromptCount> {
        self.inner.life.check_open()?;
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
    pub fn estimate_cost_with(
        &self,
        req: &ChatRequest,
        opts: EstimateOptions,
    ) -> Result<CostEstimate> {
        self.inner.life.check_open()?;
        let model = self.priced_model(req)?;
        self.inner.catalog.estimate_cost_with(req, &model, opts)
    }

    /// Send a chat request and wait for the whole answer.
    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse> {
        self.chat_with_stats(req).await.map(|(r, _)| r)
    }

    /// [`Client::chat`], also returning how many attempts it took.
    pub async fn chat_with_stats(&self, req: ChatRequest) -> Result<(ChatResponse, CallStats)> {
        self.chat_with(req, &self.cancel_handle()).await
    }

    /// [`Client::chat`] that `cancel` can stop: the provider request is dropped at once
    /// and the call ends with [`Error::Cancelled`] (its usage record says `cancelled`).
    pub async fn chat_cancellable(
        &self,
        req: ChatRequest,
        cancel: &Cancel,
    ) -> Result<ChatResponse> {
        self.chat_with(req, cancel).await.map(|(r, _)| r)
    }

    async fn chat_with(
        &self,
        req: ChatRequest,
        cancel: &Cancel,
    ) -> Result<(ChatResponse, CallStats)> {
        let _in_flight = self.inner.life.enter()?;
        self.inner.life.race(cancel, self.chat_call(req)).await
    }

    async fn chat_call(&self, req: ChatRequest) -> Result<(ChatResponse, CallStats)> {
        let mut call = self.begin(&req, false).await?;
        let req = Arc::new(req);
        let Some(shadow) = self.shadow_of(&mut call) else {
            return self.plain_call(&req, call).await;
        };
        // Shadow sampling: both arms at once; the shadow never changes the call's outcome.
        let (main, side) =
            futures_util::future::join(self.plain_call(&req, call), self.plain_call(&req, shadow))
                .await;
        match (main, side) {
            (Ok((mut resp, stats)), Ok((s, _))) => {
                resp.shadow = Some(Box::new(s));
                Ok((resp, stats))
            }
            (Ok((mut resp, stats)), Err(e)) => {
                tracing::warn!(error = %e, "shadow call failed: the response has no shadow answer (its usage record says why)");
                resp.shadow_error = Some(crate::types::ShadowError {
                    code: e.kind().code().to_owned(),
                    message: e.to_string(),
                });
                Ok((resp, stats))
            }
            (Err(e), side) => {
                if side.is_ok() {
                    tracing::info!(
                        "the call failed; its shadow answered (recorded and billed) but is not returned"
                    );
                }
                Err(e)
            }
        }
    }

    /// One plain call through its chain: recorded, settled, its decision and record id
    /// on the response.
    async fn plain_call(
        &self,
        req: &Arc<ChatRequest>,
        mut call: Call,
    ) -> Result<(ChatResponse, CallStats)> {
        // Dropped while the request is out (the caller gave up): still one record.
        let abandoned = AbandonedCall::arm(self, req, &call.decision, call.clock);
        let outcome = self.run(req, &mut call, Plain).await;
        abandoned.disarm();
        let Served {
            output: mut resp,
            target,
            hold,
        } = outcome?;
        let decision = call.decision;
        let attempts = recording::total_attempts(&decision);
        resp.cost = self.price(&resp.usage, &target.model_id);
        let rid = self.record(
            req,
            &target.model_id,
            &decision,
            &call.clock,
            Some(&resp.usage),
            resp.cost.as_ref(),
            UsageStatus::Ok,
            None,
            false,
        );
        let micros = resp.cost.as_ref().map_or(0, |c| c.total_micros);
        self.settle(hold, micros, usage_tokens(Some(&resp.usage)), rid.clone())
            .await;
        resp.route = Some(decision);
        resp.usage_record_id = rid.map(|r| r.0);
        self.remember_auto(
            call.resend_fp,
            resp.usage_record_id.as_deref(),
            &target.model_id,
        );
        Ok((resp, CallStats { attempts }))
    }

    /// Send a chat request and stream the answer. Retries and fallbacks happen only
    /// before the first byte of the answer; once streaming, a broken connection ends the
    /// stream with [`crate::ErrorKind::StreamInterrupted`]. The last chunk carries usage
    /// and cost; [`ChatStream::route`] has the decision.
    pub async fn chat_stream(&self, req: ChatRequest) -> Result<ChatStream> {
        self.chat_stream_with_stats(req).await.map(|(s, _)| s)
    }

    /// [`Client::chat_stream`], also returning how many attempts opening it took.
    pub async fn chat_stream_with_stats(
        &self,
        req: ChatRequest,
    ) -> Result<(ChatStream, CallStats)> {
        let cancel = self.cancel_handle();
        let in_flight = self.inner.life.enter()?;
        let (chunks, decision, stats) = self.inner.life.race(&cancel, self.open(req)).await?;
        let guarded = self.inner.life.stream(&cancel, in_flight, chunks);
        Ok((ChatStream::with_route(guarded, decision), stats))
    }

    /// A stream returned at once, without waiting: it connects when first polled, and
    /// its first item is the error opening it, if any (what bindings whose streams must
    /// not block use). `cancel` stops it (opening or reading); after
    /// [`Client::close`] the first item is [`Error::ClientClosed`]. No route is attached
    /// (the decision is made when it connects).
    pub fn chat_stream_lazy(&self, req: ChatRequest, cancel: &Cancel) -> ChatStream {
        use futures_util::StreamExt;
        let in_flight = match self.inner.life.enter() {
            Ok(g) => g,
            Err(e) => return ChatStream::new(futures_util::stream::once(async move { Err(e) })),
        };
        let client = self.clone();
        let lazy = futures_util::stream::once(async move { client.open(req).await })
            .map(|opened| match opened {
                Ok((chunks, _, _)) => chunks.left_stream(),
                Err(e) => futures_util::stream::once(async move { Err(e) }).right_stream(),
            })
            .flatten();
        ChatStream::new(self.inner.life.stream(cancel, in_flight, Box::pin(lazy)))
    }

    /// Open a stream: the chain until the first byte, then the recording chunk stream.
    async fn open(
        &self,
        req: ChatRequest,
    ) -> Result<(
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<crate::ChatChunk>> + Send>>,
        RouteDecision,
        CallStats,
    )> {
        let mut call = self.begin(&req, true).await?;
        let Served {
            output: resp,
            target,
            hold,
        } = self.run(&req, &mut call, Streamed).await?;
        let attempts = recording::total_attempts(&call.decision);
        let idle = Duration::from_millis(self.inner.config.timeouts.stream_idle_ms);
        let chunks = transport::sse_chunks(
            Box::pin(resp.bytes_stream()),
            adapter_for(target.provider.kind).stream_decoder(&target),
            target.provider.name.clone(),
            idle,
        );
        if self.inner.recorder.is_some() {
            // The stream's record gets the id chosen at its start.
            let rid = call.clock.record_id();
            self.remember_auto(call.resend_fp, Some(&rid.0), &target.model_id);
        }
        let recording = RecordingStream::new(
            self,
            req,
            target.model_id,
            call.decision.clone(),
            call.clock,
            hold,
            Box::pin(chunks),
        );
        Ok((Box::pin(recording), call.decision, CallStats { attempts }))
    }

    /// Wait until every usage record made so far is resolved by the collector (or
    /// `timeout` passes), and report what became of them. `drained` means nothing is
    /// pending: records the collector **refused** count as resolved, so check
    /// [`DeliveryReport::refused`] (or [`DeliveryReport::all_delivered`]). Without usage
    /// records there is nothing to wait for ([`DeliveryReport::off`]).
    pub async fn flush(&self, timeout: Duration) -> Result<DeliveryReport> {
        self.inner.life.check_open()?;
        match &self.inner.recorder {
            Some(r) => r.flush_report(timeout).await.map_err(usage_error),
            None => Ok(DeliveryReport::off()),
        }
    }

    /// Say how good a call's answer was: `record_id` is the response's
    /// `usage_record_id` (a stream's last chunk carries it too), `score` goes from 0.0
    /// (useless) to 1.0 (right). The feedback is a signed record, spooled and delivered
    /// with the usage records (same batches, same delivery report) and joined to the call
    /// by the collector, where routing learns from it and analytics show outcome scores
    /// beside spend. It holds no text: a label is a word from the app's vocabulary.
    /// Returns the feedback's own id once it is spooled.
    ///
    /// Errors: `InvalidRequest` naming `score`, `record_id`, `label` or `tags`; `Config`
    /// when usage records are off (there is then no record to join).
    pub fn feedback(&self, input: crate::usage::FeedbackInput) -> Result<RecordId> {
        self.inner.life.check_open()?;
        let Some(r) = &self.inner.recorder else {
            return Err(Error::config(
                "[reporting]",
                "feedback needs usage records, and they are off for this client",
                "configure identity.api_key_id, a signing key (reporting.signing_key_file) and reporting.collector_url",
            ));
        };
        r.feedback(input).map_err(|e| match e {
            UsageError::InvalidField { ref field, .. } => Error::InvalidRequest {
                field: Some(field.clone()),
                message: e.to_string(),
            },
            UsageError::InvalidTag { .. } => Error::InvalidRequest {
                field: Some("tags".into()),
                message: e.to_string(),
            },
            other => usage_error(other),
        })
    }

    /// A new [`Cancel`] handle for [`Client::chat_cancellable`] or
    /// [`Client::chat_stream_lazy`]; closing the client cancels it too.
    pub fn cancel_handle(&self) -> Cancel {
        self.inner.life.cancel_handle()
    }

    /// Close the client, once for all its clones: new calls are refused at once with
    /// [`Error::ClientClosed`]; calls and streams in flight get `grace` to end, then are
    /// cancelled (their provider requests dropped, each ending with
    /// [`Error::ClientClosed`] and writing its `cancelled` usage record); then the spool
    /// is drained (bounded by `reporting.shutdown_timeout_ms`) and reporting stops, and
    /// the delivery report says what became of the records ([`Client::shutdown`]'s
    /// report). Idempotent: a second `close` waits for the first and returns its report.
    /// `usage_status`, `identity` and the reporting link still answer after close.
    pub async fn close(&self, grace: Duration) -> Result<DeliveryReport> {
        self.inner.life.close(grace, || self.shutdown()).await
    }

    /// True once [`Client::close`] has started.
    pub fn is_closed(&self) -> bool {
        self.inner.life.is_closed()
    }

    /// Calls and open streams in flight now (what [`Client::close`] waits for).
    pub fn in_flight(&self) -> usize {
        self.inner.life.in_flight()
    }

    /// Drain the spool (bounded by `reporting.shutdown_timeout_ms`), stop reporting and
    /// report what became of the records. Calls keep working (and make no more records);
    /// [`Client::close`] also ends the calls.
    pub async fn shutdown(&self) -> Result<DeliveryReport> {
        match &self.inner.recorder {
            Some(r) => {
                let out = r.shutdown().await.map_err(usage_error)?;
                Ok(DeliveryReport {
                    drained: out.drained,
                    pending: out.pending_records,
                    ..r.report()
                })
            }
            None => Ok(DeliveryReport::off()),
        }
    }

    /// Delivered, pending and refused counts, refusal reasons and the oldest pending
    /// record's age, now (no waiting). Without usage records: [`DeliveryReport::off`].
    pub fn usage_status(&self) -> DeliveryReport {
        self.inner
            .recorder
            .as_ref()
            .map_or_else(DeliveryReport::off, Recorder::report)
    }

    /// The spool's low-level counters, when usage records are on.
    pub fn spool_status(&self) -> Option<SpoolStatus> {
        self.inner.recorder.as_ref().map(Recorder::status)
    }

    /// Refusal reasons seen for the first time since the last call, each reason once
    /// (Rust logs each at `warn` already; the bindings turn them into their own
    /// warnings).
    pub fn take_refusal_warnings(&self) -> Vec<String> {
        self.inner
            .recorder
            .as_ref()
            .map(|r| r.delivery().take_new_refusals())
            .unwrap_or_default()
    }

    /// What usage records are stamped with now: `[identity]`, completed with the key's
    /// binding once the collector has told it.
    pub fn identity(&self) -> Identity {
        self.inner
            .recorder
            .as_ref()
            .map_or_else(|| self.inner.config.identity.clone(), Recorder::identity)
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
