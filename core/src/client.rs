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

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::HeaderMap;

use crate::accounts::KeyScope;
use crate::accounts::enforce;
use crate::accounts::policy_client::{Hold, PolicyClient, PolicyState, Reserved};
use crate::accounts::{EffectivePolicy, Level};
use crate::config::Identity;
use crate::config::{Config, EnforceMode, ResolvedProvider, WhenUnreachable};
use crate::error::{Error, ErrorKind, Result};
use crate::health::{BreakerState, Health};
use crate::model_id::ModelId;
use crate::pricing::{Catalog, Cost, CostEstimate, CostOptions, EstimateOptions};
use crate::providers::{Adapter, HttpCall, StreamDecoder, Target, adapter_for};
use crate::retry::{Backoff, Decision};
use crate::routing::learning::{self, Learning};
use crate::routing::select::{Availability, RoutePolicy, SelectInput, select};
use crate::routing::{Attempt, AttemptOutcome, Exclusion, RouteDecision, Scorer, Tier};
use crate::sse::SseParser;
use crate::stream::ChatStream;
use crate::tokens::{PromptCount, count_request};
use crate::types::{ChatChunk, ChatRequest, ChatResponse, Usage};
use crate::usage::{
    DeliveryEvent, DeliveryReport, LinkState, NetworkClass, RecordId, Recorder, ReportingMode,
    RouteInfo, SdkInfo, SpoolStatus, UsageError, UsageRecordInput, UsageStatus, unix_ms_now,
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
}

/// Settled reservations remembered while their records travel (oldest dropped beyond:
/// the collector lets such a hold lapse after 24 h anyway).
const MAX_AWAITING_RECORDS: usize = 100_000;

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
        let recorder = start_recorder(&config, sdk)?;
        let config_window_ms = config.routing.implicit_feedback_window_ms;
        let policy = start_policy(&config, &http)?;
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
    /// binding mismatch ([`ErrorKind::Config`] naming the `identity.*` field) or a
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
        let accounts = self
            .inner
            .policy
            .as_ref()
            .and_then(|pc| pc.cached().map(|p| route_policy(self, pc, &p)));
        self.route_with(req, accounts.as_ref())
    }

    fn route_with(
        &self,
        req: &ChatRequest,
        accounts: Option<&RoutePolicy>,
    ) -> Result<RouteDecision> {
        req.validate()?;
        let cfg = &self.inner.config.routing;
        let learning = accounts.and_then(|a| a.learning.as_deref());
        let mut trace = None;
        let mut version = None;
        let score = if ModelId::is_auto(&req.model) {
            let (scorer, v) =
                match learning.and_then(|l| l.scorer.as_deref().zip(l.version.as_ref())) {
                    Some((s, v)) => (s, v),
                    None => (&self.inner.scorer, &self.inner.scorer_version),
                };
            version = Some(v.clone());
            let mut report = scorer.score(req);
            if let Some(l) = learning.filter(|l| l.record_features) {
                let allowed: Vec<Tier> = accounts
                    .and_then(|a| a.rules.allowed_tiers.as_ref())
                    .map(|t| t.value.iter().filter_map(|s| Tier::parse(s)).collect())
                    .unwrap_or_default();
                // Budget-aware: no exploration while a hard budget of the key has less
                // than a fifth of its limit left (exploring may pick the costly tier).
                let tight = accounts.is_some_and(|a| {
                    a.budgets.iter().any(|b| {
                        b.enforcement == crate::accounts::Enforcement::Hard
                            && b.remaining.saturating_mul(5) < b.limit
                    })
                });
                let share = if tight { 0.0 } else { l.explore };
                let draws = [rand::random::<f64>(), rand::random::<f64>()];
                let features = learning::features_of_scored(&report, req, l.hashing);
                let mut t = l.explore_at(share, &mut report, &allowed, draws);
                t.features = Some(features);
                trace = Some(t);
            }
            Some(report)
        } else {
            // Explicit: the precise error (unknown provider, unset key variable, not in
            // the allow-list) comes from resolve().
            self.resolve(&req.model)?;
            None
        };
        let mut decision = select(
            SelectInput {
                req,
                score,
                cfg,
                catalog: &self.inner.catalog,
                accounts,
            },
            self,
        )?;
        decision.weights_version = version;
        if let Some(t) = &trace {
            if t.explored {
                decision.reason.push_str(&format!(
                    " (explored: the score alone picked the {} tier; the organization explores to learn)",
                    t.scored_tier
                ));
            }
        }
        decision.learning = trace;
        Ok(decision)
    }

    /// The learning state of the organization's policy `p`, parsed and verified once per
    /// version of its routing section.
    fn learning_of(&self, pc: &PolicyClient, p: &EffectivePolicy) -> Option<Arc<Learning>> {
        let rp = p.routing.as_ref()?;
        let key = format!(
            "{}|{}|{}|{}|{}",
            rp.learning,
            rp.explore_permille,
            rp.salt,
            rp.bits,
            rp.weights.as_ref().map_or("", |w| w.version.as_str())
        );
        let mut cache = self
            .inner
            .learning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, l)) = cache.as_ref() {
            if *k == key {
                return l.clone();
            }
        }
        let (l, warning) =
            build_learning(&p.scope.org, rp, pc.config().weights_public_key.as_deref());
        if let Some(w) = warning {
            tracing::warn!("{w}");
            pc.warn(w);
        }
        *cache = Some((key, l.clone()));
        l
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

    /// Check `[identity]` against the key's binding in `policy` and stamp later usage
    /// records with the binding.
    fn bind(&self, policy: &EffectivePolicy) -> Result<()> {
        check_identity(
            &self.inner.config.identity,
            &policy.api_key_id,
            &policy.scope,
        )?;
        if let Some(r) = &self.inner.recorder {
            r.apply_binding(&policy.scope);
        }
        Ok(())
    }

    /// The collector answered for some records: forget delivered ones; release the
    /// reservation of each refused one (its cost will never be stored, so the hold must
    /// not keep counting against the budget).
    fn on_delivery(&self, e: &DeliveryEvent) {
        let released: Vec<String> = {
            let mut m = self
                .inner
                .awaiting_records
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for id in &e.delivered {
                m.remove(id);
            }
            e.refused
                .iter()
                .filter_map(|(id, _)| m.remove(id))
                .collect()
        };
        if released.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                count = released.len(),
                "no async runtime: the reservations of refused records lapse at their expiry"
            );
            return;
        };
        let client = self.clone();
        rt.spawn(async move {
            let Some(pc) = &client.inner.policy else { return };
            for res in released {
                match pc.settle(&res, 0, 0, None).await {
                    Ok(()) => tracing::info!(reservation = %res, "released the reservation of a refused usage record"),
                    Err(e) => tracing::warn!(reservation = %res, error = %e, "could not release the reservation of a refused usage record: it lapses in 24 h"),
                }
            }
        });
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
        let model = self.priced_model(req)?;
        self.inner.catalog.estimate_cost_with(req, &model, opts)
    }

    /// The model a request is priced on. With an organization policy (the last one
    /// fetched), an explicit model it denies, or a `max_tokens` above its limit, is the
    /// same `PermissionDenied` a call would get.
    fn priced_model(&self, req: &ChatRequest) -> Result<String> {
        if ModelId::is_auto(&req.model) {
            return Ok(self.route(req)?.chosen);
        }
        let model = ModelId::parse(&req.model)?.to_string();
        if let Some(p) = self.inner.policy.as_ref().and_then(PolicyClient::cached) {
            enforce::check_max_tokens(&p.rules, req)?;
            enforce::check_model(&p.rules, &self.inner.catalog, &model)?;
        }
        Ok(model)
    }

    /// Send a chat request and wait for the whole answer.
    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse> {
        self.chat_with_stats(req).await.map(|(r, _)| r)
    }

    /// [`Client::chat`], also returning how many attempts it took.
    pub async fn chat_with_stats(&self, req: ChatRequest) -> Result<(ChatResponse, CallStats)> {
        let started = CallClock::start();
        let fp = self.note_resend(&req);
        let gate = self
            .admit(&req)
            .await
            .inspect_err(|e| self.record_denial(&req, e, &started, false))?;
        let mut decision = self
            .prepare(&req, gate.route.as_ref())
            .inspect_err(|e| self.record_denial(&req, e, &started, false))?;
        let req = Arc::new(req);
        // Dropped while the request is out (the caller gave up): still one record.
        let mut abandoned = AbandonedCall {
            client: self.clone(),
            req: Some(req.clone()),
            model: decision.chosen.clone(),
            route: route_info(&decision),
            clock: started,
        };
        let outcome = self
            .execute(&req, &mut decision, Op::Chat, &started, &gate)
            .await;
        abandoned.req = None;
        let attempts = total_attempts(&decision);
        match outcome {
            Ok((Opened::Chat(mut resp), target, hold)) => {
                resp.cost = self.price(&resp.usage, &target.model_id);
                let rid = self.record(
                    &req,
                    &target.model_id,
                    &decision,
                    &started,
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
                self.remember_auto(fp, resp.usage_record_id.as_deref(), &target.model_id);
                Ok((resp, CallStats { attempts }))
            }
            Ok((Opened::Stream(_, _), _, hold)) => {
                self.settle(hold, 0, 0, None).await;
                Err(Error::invalid_response(
                    "gaterouter",
                    None,
                    "internal: a stream opened for a chat call",
                ))
            }
            Err(e) => {
                self.record_failure(&req, decision.answered_by(), &decision, &started, &e, false);
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
    pub async fn chat_stream_with_stats(
        &self,
        req: ChatRequest,
    ) -> Result<(ChatStream, CallStats)> {
        let started = CallClock::start();
        let fp = self.note_resend(&req);
        let gate = self
            .admit(&req)
            .await
            .inspect_err(|e| self.record_denial(&req, e, &started, true))?;
        let mut decision = self
            .prepare(&req, gate.route.as_ref())
            .inspect_err(|e| self.record_denial(&req, e, &started, true))?;
        let outcome = self
            .execute(&req, &mut decision, Op::Stream, &started, &gate)
            .await;
        let attempts = total_attempts(&decision);
        match outcome {
            Ok((Opened::Stream(resp, adapter), target, hold)) => {
                let idle = Duration::from_millis(self.inner.config.timeouts.stream_idle_ms);
                let chunks = sse_chunks(
                    Box::pin(resp.bytes_stream()),
                    adapter.stream_decoder(&target),
                    target.provider.name.clone(),
                    idle,
                );
                if self.inner.recorder.is_some() {
                    // The stream's record gets the id chosen at its start.
                    self.remember_auto(fp, Some(&started.record_id().0), &target.model_id);
                }
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
                    hold,
                };
                Ok((
                    ChatStream::with_route(recording, decision),
                    CallStats { attempts },
                ))
            }
            Ok((Opened::Chat(_), _, hold)) => {
                self.settle(hold, 0, 0, None).await;
                Err(Error::invalid_response(
                    "gaterouter",
                    None,
                    "internal: a chat answer for a stream call",
                ))
            }
            Err(e) => {
                self.record_failure(&req, decision.answered_by(), &decision, &started, &e, true);
                Err(e)
            }
        }
    }

    /// Wait until every usage record made so far is resolved by the collector (or
    /// `timeout` passes), and report what became of them. `drained` means nothing is
    /// pending: records the collector **refused** count as resolved, so check
    /// [`DeliveryReport::refused`] (or [`DeliveryReport::all_delivered`]). Without usage
    /// records there is nothing to wait for ([`DeliveryReport::off`]).
    pub async fn flush(&self, timeout: Duration) -> Result<DeliveryReport> {
        match &self.inner.recorder {
            Some(r) => r.flush_report(timeout).await.map_err(usage_error),
            None => Ok(DeliveryReport::off()),
        }
    }

    /// Implicit feedback, at a call's start: an explicit re-send of the messages an
    /// `auto` call answered within the window, to a pricier model, rates that call 0.
    /// Returns the fingerprint of an `auto` request (to remember its answer), if on.
    fn note_resend(&self, req: &ChatRequest) -> Option<u64> {
        let watch = self.inner.resends.as_ref()?;
        self.inner.recorder.as_ref()?;
        let fp = crate::routing::resend::fingerprint(req);
        if ModelId::is_auto(&req.model) {
            return Some(fp);
        }
        let strength = self.nominal_price(&req.model)?;
        if let Some(record_id) = watch.resent(fp, strength, Instant::now()) {
            let input = crate::usage::FeedbackInput {
                record_id,
                score: 0.0,
                label: Some(crate::routing::resend::RESENT_STRONGER.into()),
                source: crate::usage::FeedbackSource::Implicit,
                tags: BTreeMap::new(),
            };
            match self.feedback(input) {
                Ok(id) => {
                    tracing::debug!(feedback = %id, model = %req.model, "implicit feedback: re-sent to a pricier model")
                }
                Err(e) => tracing::warn!(error = %e, "implicit feedback not written"),
            }
        }
        None
    }

    /// Remember an `auto` answer for implicit feedback.
    fn remember_auto(&self, fp: Option<u64>, record_id: Option<&str>, answered_by: &str) {
        let (Some(watch), Some(fp), Some(rid)) = (self.inner.resends.as_ref(), fp, record_id)
        else {
            return;
        };
        if let Some(strength) = self.nominal_price(answered_by) {
            watch.remember(fp, rid.to_owned(), strength, Instant::now());
        }
    }

    /// A model's strength for implicit feedback: its catalog price of a nominal call
    /// (1 000 prompt + 1 000 completion tokens); `None` when it is not priced.
    fn nominal_price(&self, model: &str) -> Option<f64> {
        let id = ModelId::parse(model).ok()?.to_string();
        let usage = Usage::new(1_000, 1_000, 0, 0, 0);
        self.inner
            .catalog
            .cost(&usage, &id, CostOptions::default())
            .ok()
            .map(|c| c.total_micros as f64)
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

    /// Drain the spool (bounded by `reporting.shutdown_timeout_ms`), stop reporting and
    /// report what became of the records.
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

    /// Validation and the route decision: everything that can fail before a provider is
    /// called.
    fn prepare(&self, req: &ChatRequest, accounts: Option<&RoutePolicy>) -> Result<RouteDecision> {
        crate::usage::record::validate_tags(&req.metadata).map_err(|e| Error::InvalidRequest {
            field: Some("metadata".into()),
            message: format!("metadata becomes the usage record's tags: {e}"),
        })?;
        self.route_with(req, accounts)
    }

    /// The policy this call is held to: fetched (or cached) from the collector; when it
    /// cannot be reached, what `[policy] when_unreachable` says. Validates the request
    /// first so a malformed one never costs a collector round trip.
    async fn admit(&self, req: &ChatRequest) -> Result<Gate> {
        req.validate()?;
        let Some(pc) = &self.inner.policy else {
            return Ok(Gate::default());
        };
        let cfg = pc.config();
        match pc.current().await? {
            PolicyState::Current(p) => {
                self.bind(&p)?;
                Ok(Gate {
                    route: Some(route_policy(self, pc, &p)),
                    policy: Some(p),
                    online: true,
                })
            }
            PolicyState::NotManaged => Ok(Gate::default()),
            PolicyState::Offline {
                policy,
                age_ms,
                error,
            } => match cfg.when_unreachable {
                WhenUnreachable::Allow => {
                    tracing::warn!(error = %error, "collector unreachable: calling without policy or budget checks ([policy] when_unreachable = \"allow\")");
                    Ok(Gate::default())
                }
                WhenUnreachable::Deny => Err(policy_unavailable(format!(
                    "the collector cannot be reached ({error}) and [policy] when_unreachable = \"deny\" refuses calls until it can; fix the collector connection or choose \"last_known\""
                ))),
                WhenUnreachable::LastKnown => match policy {
                    None => {
                        tracing::warn!(error = %error, "collector unreachable and no policy was ever fetched: calling without policy checks (fail open; set [policy] when_unreachable = \"deny\" to refuse instead)");
                        Ok(Gate::default())
                    }
                    Some(_) if age_ms > cfg.max_stale_ms => Err(policy_unavailable(format!(
                        "the collector cannot be reached ({error}) and the last known policy is {age_ms} ms old, older than [policy] max_stale_ms = {}; fix the collector connection",
                        cfg.max_stale_ms
                    ))),
                    Some(p) => {
                        self.bind(&p)?;
                        tracing::debug!(error = %error, age_ms, "collector unreachable: enforcing the last known policy");
                        Ok(Gate {
                            route: Some(route_policy(self, pc, &p)),
                            policy: Some(p),
                            online: false,
                        })
                    }
                },
            },
        }
    }

    /// Before calling `model`: check it against the policy and, when a hard budget
    /// applies, reserve its maximum cost (with the collector when online, against the
    /// last known budgets minus local spend otherwise). `Ok(None)`: nothing to hold.
    async fn reserve_for(
        &self,
        gate: &Gate,
        req: &ChatRequest,
        model: &str,
    ) -> Result<Option<Hold>> {
        let (Some(pc), Some(policy)) = (&self.inner.policy, &gate.policy) else {
            return Ok(None);
        };
        enforce::check_model(&policy.rules, &self.inner.catalog, model)?;
        let budgets = pc.local_budgets(policy);
        if !enforce::has_hard(&budgets) {
            return Ok(None);
        }
        let (micros, tokens) = enforce::max_cost(&self.inner.catalog, req, model);
        let local = |budgets: &[crate::accounts::BudgetStatus]| -> Result<Option<Hold>> {
            enforce::check_budgets(budgets, model, micros, tokens)?;
            Ok(Some(pc.hold(
                uuid::Uuid::now_v7().hyphenated().to_string(),
                model,
                micros,
                tokens,
                false,
            )))
        };
        if !gate.online {
            return local(&budgets);
        }
        match pc.reserve(model, micros, tokens).await? {
            Reserved::Granted(r) => {
                Ok(Some(pc.hold(r.reservation_id, model, micros, tokens, true)))
            }
            Reserved::Unreachable(msg) => match pc.config().when_unreachable {
                WhenUnreachable::Allow => {
                    tracing::warn!(error = %msg, "cannot reserve with the collector: calling without a budget check ([policy] when_unreachable = \"allow\")");
                    Ok(None)
                }
                WhenUnreachable::Deny => Err(policy_unavailable(format!(
                    "cannot reserve the call's cost with the collector ({msg}) and [policy] when_unreachable = \"deny\""
                ))),
                WhenUnreachable::LastKnown => {
                    tracing::warn!(error = %msg, "cannot reserve with the collector: checking the last known budgets locally");
                    local(&budgets)
                }
            },
        }
    }

    /// End a call's hold with what it actually cost (0 releases it) and, when the
    /// collector holds it too, settle there with the usage record's id. A settle that
    /// fails is logged: the collector lets the hold lapse at its expiry.
    async fn settle(
        &self,
        hold: Option<Hold>,
        micros: u64,
        tokens: u64,
        record_id: Option<RecordId>,
    ) {
        let Some(pc) = &self.inner.policy else { return };
        match hold {
            Some(h) => {
                pc.release(&h, micros, tokens);
                if h.online {
                    self.settle_remote(&h, micros, tokens, record_id).await;
                }
            }
            None if micros > 0 || tokens > 0 => pc.note_spend(micros, tokens),
            None => {}
        }
    }

    async fn settle_remote(&self, h: &Hold, micros: u64, tokens: u64, record_id: Option<RecordId>) {
        let Some(pc) = &self.inner.policy else { return };
        let rid = record_id.filter(|_| micros > 0 || tokens > 0).map(|r| r.0);
        if let Some(r) = &rid {
            let mut m = self
                .inner
                .awaiting_records
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            m.insert(r.clone(), h.id.clone());
            if m.len() > MAX_AWAITING_RECORDS {
                m.pop_first();
            }
        }
        if let Err(e) = pc.settle(&h.id, micros, tokens, rid).await {
            tracing::warn!(reservation = %h.id, error = %e, "settle failed: the collector releases the hold at its expiry");
        }
    }

    /// [`Client::settle`] from synchronous code (a stream ending or dropped, a call
    /// abandoned by its caller): the local accounting now, the collector request on the
    /// runtime when there is one.
    fn settle_detached(
        &self,
        hold: Option<Hold>,
        micros: u64,
        tokens: u64,
        record_id: Option<RecordId>,
    ) {
        let Some(pc) = &self.inner.policy else { return };
        let Some(h) = hold else {
            if micros > 0 || tokens > 0 {
                pc.note_spend(micros, tokens);
            }
            return;
        };
        pc.release(&h, micros, tokens);
        if !h.online {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let client = self.clone();
                rt.spawn(async move { client.settle_remote(&h, micros, tokens, record_id).await });
            }
            Err(_) => {
                tracing::warn!(reservation = %h.id, "no async runtime to settle on: the collector releases the hold at its expiry")
            }
        }
    }

    /// Walk the decision's chain: retries per model, fallbacks between models.
    async fn execute(
        &self,
        req: &ChatRequest,
        decision: &mut RouteDecision,
        op: Op,
        clock: &CallClock,
        gate: &Gate,
    ) -> Result<(Opened, Target, Option<Hold>)> {
        let chain = decision.chain(self.inner.config.routing.max_fallbacks);
        let retry = &self.inner.config.retry;
        let mut last_err: Option<Error> = None;
        let mut min_context: Option<u64> = None;
        for model in chain {
            if let (Some(need), Some(window)) = (
                min_context,
                self.inner
                    .catalog
                    .lookup(&model)
                    .and_then(|(_, p)| p.context_window),
            ) {
                if window <= need {
                    continue;
                }
            }
            let target = match self.resolve(&model) {
                Ok(t) => t,
                Err(e) => {
                    decision.attempts.push(Attempt {
                        model: model.clone(),
                        outcome: AttemptOutcome::Failed(e.kind()),
                        retries: 0,
                    });
                    last_err = Some(e);
                    continue;
                }
            };
            if !self.inner.health.admit(&target.provider.name) {
                decision.attempts.push(Attempt {
                    model: model.clone(),
                    outcome: AttemptOutcome::CircuitOpen,
                    retries: 0,
                });
                last_err.get_or_insert(Error::ProviderUnavailable {
                    provider: target.provider.name.clone(),
                    status: None,
                    message: "skipped: the circuit breaker is open after repeated failures".into(),
                });
                continue;
            }
            let mut hold = match self.reserve_for(gate, req, &model).await {
                Ok(h) => HoldGuard {
                    client: self,
                    hold: h,
                },
                Err(e) if matches!(e.kind(), ErrorKind::Budget | ErrorKind::Permission) => {
                    // This model does not fit or is refused; a later one of the chain may.
                    decision.attempts.push(Attempt {
                        model: model.clone(),
                        outcome: AttemptOutcome::Failed(e.kind()),
                        retries: 0,
                    });
                    last_err = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let adapter = adapter_for(target.provider.kind);
            let call = match adapter.build_request(req, &target, op == Op::Stream) {
                Ok(c) => c,
                Err(e) => {
                    self.settle(hold.take(), 0, 0, None).await;
                    return Err(e);
                }
            };
            let mut backoff = Backoff::starting_at(retry, clock.instant);
            loop {
                let t0 = Instant::now();
                let result = match op {
                    Op::Chat => self
                        .attempt(adapter, &call, &target)
                        .await
                        .map(Opened::Chat),
                    Op::Stream => self
                        .open_stream(adapter, &call, &target)
                        .await
                        .map(|r| Opened::Stream(r, adapter)),
                };
                match result {
                    Ok(opened) => {
                        self.inner
                            .health
                            .record(&target.provider.name, Ok(t0.elapsed()), &model);
                        decision.attempts.push(Attempt {
                            model,
                            outcome: AttemptOutcome::Ok,
                            retries: backoff.retries(),
                        });
                        return Ok((opened, target, hold.take()));
                    }
                    Err(e) => {
                        self.inner
                            .health
                            .record(&target.provider.name, Err(e.kind()), &model);
                        match backoff.next(&e) {
                            Decision::RetryAfter(wait) => {
                                tracing::debug!(model = %model, error = %e, ?wait, "retrying");
                                tokio::time::sleep(wait).await;
                            }
                            Decision::GiveUp => {
                                decision.attempts.push(Attempt {
                                    model: model.clone(),
                                    outcome: AttemptOutcome::Failed(e.kind()),
                                    retries: backoff.retries(),
                                });
                                let fall_back = matches!(
                                    e.kind(),
                                    ErrorKind::RateLimited
                                        | ErrorKind::ProviderUnavailable
                                        | ErrorKind::Timeout
                                        | ErrorKind::ContextLengthExceeded
                                ) && backoff.time_left();
                                // A failed attempt is not billed: release this model's hold.
                                self.settle(hold.take(), 0, 0, None).await;
                                if !fall_back {
                                    return Err(e);
                                }
                                if e.kind() == ErrorKind::ContextLengthExceeded {
                                    let window = self
                                        .inner
                                        .catalog
                                        .lookup(&model)
                                        .and_then(|(_, p)| p.context_window)
                                        .unwrap_or(0);
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
        Err(last_err.unwrap_or_else(|| Error::InvalidRequest {
            field: Some("model".into()),
            message: "no model left to try".into(),
        }))
    }

    async fn attempt(
        &self,
        adapter: &dyn Adapter,
        call: &HttpCall,
        target: &Target,
    ) -> Result<ChatResponse> {
        let timeout = target.provider.request_timeout;
        let fut = async {
            let resp = self.send(call, target).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(|e| transport_error(&target.provider.name, e, timeout))?;
            if (200..300).contains(&status) {
                adapter.parse_response(&body, target)
            } else {
                Err(adapter.parse_error(status, &headers, &body, target))
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                provider: target.provider.name.clone(),
                after: timeout,
                what: "request",
            }),
        }
    }

    async fn open_stream(
        &self,
        adapter: &dyn Adapter,
        call: &HttpCall,
        target: &Target,
    ) -> Result<reqwest::Response> {
        let timeout = target.provider.request_timeout;
        let resp = tokio::time::timeout(timeout, self.send(call, target))
            .await
            .map_err(|_| Error::Timeout {
                provider: target.provider.name.clone(),
                after: timeout,
                what: "stream start",
            })??;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let headers: HeaderMap = resp.headers().clone();
        let body = tokio::time::timeout(timeout, resp.bytes())
            .await
            .map_err(|_| Error::Timeout {
                provider: target.provider.name.clone(),
                after: timeout,
                what: "error body",
            })?
            .map_err(|e| transport_error(&target.provider.name, e, timeout))?;
        Err(adapter.parse_error(status, &headers, &body, target))
    }

    async fn send(&self, call: &HttpCall, target: &Target) -> Result<reqwest::Response> {
        let mut rb = self.inner.http.post(&call.url).json(&call.body);
        for (k, v) in &call.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        rb.send()
            .await
            .map_err(|e| transport_error(&target.provider.name, e, target.provider.request_timeout))
    }

    fn price(&self, usage: &Usage, model_id: &str) -> Option<Cost> {
        match self
            .inner
            .catalog
            .cost(usage, model_id, CostOptions::default())
        {
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
    ) -> Option<RecordId> {
        self.record_as(
            req,
            model_id,
            route_info(decision),
            total_attempts(decision),
            clock,
            usage,
            cost,
            status,
            first_token_ms,
            stream,
            None,
        )
    }

    /// A call that failed after routing: `denied` when the policy refused (every model
    /// of the chain denied or over budget), else the error's code.
    fn record_failure(
        &self,
        req: &ChatRequest,
        model_id: &str,
        decision: &RouteDecision,
        clock: &CallClock,
        e: &Error,
        stream: bool,
    ) {
        match denial_of(e) {
            Some(denial) => {
                self.record_as(
                    req,
                    model_id,
                    route_info(decision),
                    total_attempts(decision),
                    clock,
                    None,
                    None,
                    UsageStatus::Denied,
                    None,
                    stream,
                    Some(denial),
                );
            }
            None => {
                self.record(
                    req,
                    model_id,
                    decision,
                    clock,
                    None,
                    None,
                    UsageStatus::Error(e.kind()),
                    None,
                    stream,
                );
            }
        }
    }

    /// A call refused by the policy before routing finished (a denied explicit model,
    /// `max_tokens` over the limit, no permitted model for `auto`, a budget, or the
    /// collector unreachable under `when_unreachable = "deny"`): one `denied` record, no
    /// tokens, zero cost. Other errors (a malformed request) write nothing.
    fn record_denial(&self, req: &ChatRequest, e: &Error, clock: &CallClock, stream: bool) {
        let Some(denial) = denial_of(e) else { return };
        let auto = ModelId::is_auto(&req.model);
        let model = if auto {
            "auto/auto".to_owned()
        } else {
            req.model.clone()
        };
        let route = RouteInfo {
            mode: if auto {
                crate::usage::RouteMode::Auto
            } else {
                crate::usage::RouteMode::Explicit
            },
            tier: None,
            score: None,
            ..Default::default()
        };
        self.record_as(
            req,
            &model,
            route,
            1,
            clock,
            None,
            None,
            UsageStatus::Denied,
            None,
            stream,
            Some(denial),
        );
    }

    /// [`Client::record`] with the route already summarized (what a record keeps of it);
    /// `denial` is the rule and level of a policy refusal (`denied` records).
    #[allow(clippy::too_many_arguments)]
    fn record_as(
        &self,
        req: &ChatRequest,
        model_id: &str,
        route: RouteInfo,
        attempts: u32,
        clock: &CallClock,
        usage: Option<&Usage>,
        cost: Option<&Cost>,
        status: UsageStatus,
        first_token_ms: Option<u64>,
        stream: bool,
        denial: Option<(String, Option<String>)>,
    ) -> Option<RecordId> {
        let Some(recorder) = &self.inner.recorder else {
            return None;
        };
        let (denied_rule, denied_level) = denial.map_or((None, None), |(r, l)| (Some(r), l));
        let id = ModelId::parse(model_id).unwrap_or(ModelId {
            provider: String::new(),
            model: model_id.to_owned(),
        });
        let u = usage.copied().unwrap_or_default();
        let input = UsageRecordInput {
            ts_start: clock.unix_ms,
            ts_end: unix_ms_now(),
            provider: id.provider,
            model: id.model,
            route: Some(route),
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_prompt_tokens: u.cached_prompt_tokens,
            cache_write_tokens: u.cache_write_tokens,
            reasoning_tokens: u.reasoning_tokens,
            cost_micros: cost.map_or(0, |c| c.total_micros),
            latency_ms: clock.instant.elapsed().as_millis() as u64,
            time_to_first_token_ms: first_token_ms,
            status: Some(status),
            attempts: attempts.max(1),
            stream,
            tags: req.metadata.clone(),
            denied_rule,
            denied_level,
        };
        match recorder.record_with_id(input, clock.record_id()) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "usage record not written");
                None
            }
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
    fn check(&self, model: &str) -> std::result::Result<(), (Exclusion, String)> {
        let id = ModelId::parse(model).map_err(|e| (Exclusion::UnknownProvider, e.to_string()))?;
        let Some(provider) = self.inner.providers.get(&id.provider) else {
            return Err((
                Exclusion::UnknownProvider,
                format!("provider `{}` is not configured", id.provider),
            ));
        };
        let cfg = &self.inner.config;
        if !cfg.models.is_empty() && !cfg.models.iter().any(|m| m.id == model) {
            return Err((
                Exclusion::NotPermitted,
                "not permitted: not in the [[models]] allow-list".into(),
            ));
        }
        if provider.api_key().is_err() {
            return Err((
                Exclusion::NoApiKey,
                format!(
                    "no API key (${} is not set)",
                    provider.api_key_env.as_deref().unwrap_or("?")
                ),
            ));
        }
        if self.inner.health.state(&provider.name) == BreakerState::Open {
            return Err((
                Exclusion::CircuitOpen,
                format!(
                    "circuit open for provider `{}` after repeated failures",
                    provider.name
                ),
            ));
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
    /// The id the call's usage record will have (chosen up front so the response, or a
    /// stream's usage chunk, can name it before the record is written).
    record_id: uuid::Uuid,
}

impl CallClock {
    fn start() -> Self {
        CallClock {
            instant: Instant::now(),
            unix_ms: unix_ms_now(),
            record_id: uuid::Uuid::now_v7(),
        }
    }

    fn record_id(&self) -> RecordId {
        RecordId(self.record_id.hyphenated().to_string())
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

/// A reservation held while a provider is called. If the call's future is dropped
/// (the caller gave up), the hold is released rather than leaked: the provider's answer,
/// if any, was never received, so the local view counts nothing.
struct HoldGuard<'a> {
    client: &'a Client,
    hold: Option<Hold>,
}

impl HoldGuard<'_> {
    fn take(&mut self) -> Option<Hold> {
        self.hold.take()
    }
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.hold.take() {
            self.client.settle_detached(Some(h), 0, 0, None);
        }
    }
}

/// The policy one call is held to (empty: none).
#[derive(Debug, Default)]
struct Gate {
    /// The effective policy (fresh, or last known when offline).
    policy: Option<Arc<EffectivePolicy>>,
    /// Whether the collector answers (reservations go to it) or not (local checks).
    online: bool,
    /// What routing sees of it.
    route: Option<RoutePolicy>,
}

fn route_policy(client: &Client, pc: &PolicyClient, p: &EffectivePolicy) -> RoutePolicy {
    RoutePolicy {
        rules: p.rules.clone(),
        budgets: pc.local_budgets(p),
        learning: client.learning_of(pc, p),
    }
}

/// The client-side learning state of an organization's routing policy: `None` when it
/// neither learns nor has learned weights. Weights that do not verify (or do not parse)
/// are refused with a policy warning; the client's own weights then score.
fn build_learning(
    org: &str,
    rp: &crate::accounts::RoutingPolicy,
    pinned: Option<&str>,
) -> (Option<Arc<Learning>>, Option<String>) {
    if let Err(e) = rp.validate() {
        return (
            None,
            Some(format!(
                "the collector's routing policy is invalid ({e}): learning is off for this client"
            )),
        );
    }
    let salt = rp.salt_u64().unwrap_or(0);
    let mut warning = None;
    let mut scorer = None;
    if let Some(sw) = &rp.weights {
        let checked = sw.verify(org, pinned).and_then(|()| {
            let w =
                crate::routing::Weights::from_json(&sw.weights_json).map_err(|e| e.to_string())?;
            if w.fingerprint() != sw.version {
                return Err(format!(
                    "weights {} have fingerprint {}",
                    sw.version,
                    w.fingerprint()
                ));
            }
            Ok(w)
        });
        match checked {
            Ok(w) => scorer = Some(Arc::new(Scorer::new(w))),
            Err(e) => {
                warning = Some(format!(
                    "learned router weights {} refused ({e}): routing with this client's own weights",
                    sw.version
                ))
            }
        }
    }
    if !rp.learning && scorer.is_none() {
        return (None, warning);
    }
    let version = scorer.as_ref().map(|s| s.weights().fingerprint());
    (
        Some(Arc::new(Learning {
            record_features: rp.learning,
            explore: if rp.learning {
                f64::from(rp.explore_permille) / 1000.0
            } else {
                0.0
            },
            hashing: crate::routing::lexical::Hashing {
                bits: rp.bits,
                salt,
            },
            scorer,
            version,
        })),
        warning,
    )
}

fn policy_unavailable(message: String) -> Error {
    Error::Permission {
        rule: "policy_unavailable".into(),
        level: None::<Level>,
        message,
    }
}

/// The rule and level of a policy refusal (`None`: not a refusal).
fn denial_of(e: &Error) -> Option<(String, Option<String>)> {
    match e {
        Error::Permission { rule, level, .. } => {
            Some((rule.clone(), level.as_ref().map(ToString::to_string)))
        }
        Error::Budget { budget, .. } => Some(("budget".to_owned(), Some(budget.level.to_string()))),
        _ => None,
    }
}

/// Total tokens of a usage (what token budgets count).
fn usage_tokens(u: Option<&Usage>) -> u64 {
    u.map_or(0, |u| u.prompt_tokens.saturating_add(u.completion_tokens))
}

/// Start policy enforcement per `[policy] enforce` (see [`EnforceMode`]).
fn start_policy(config: &Config, http: &reqwest::Client) -> Result<Option<PolicyClient>> {
    let pcfg = &config.policy;
    if pcfg.enforce == EnforceMode::Off {
        return Ok(None);
    }
    let rep = &config.reporting;
    let key_configured = rep.signing_key_configured();
    let (url, key_id) = match (&rep.collector_url, &config.identity.api_key_id) {
        (Some(u), Some(k)) if key_configured => (u, k),
        _ => {
            if pcfg.enforce == EnforceMode::Required {
                let mut missing = Vec::new();
                if rep.collector_url.is_none() {
                    missing.push("reporting.collector_url");
                }
                if config.identity.api_key_id.is_none() {
                    missing.push("identity.api_key_id");
                }
                if !key_configured {
                    missing.push("a signing key (reporting.signing_key_file, the signing key variable, or an in-memory key)");
                }
                return Err(Error::config(
                    "policy.enforce",
                    format!(
                        "enforce = \"required\" but {} not configured",
                        missing.join(", ")
                    ),
                    "configure them (the key that signs usage records also signs policy requests), or set enforce = \"auto\"",
                ));
            }
            tracing::debug!(
                "organization policy not enforced: needs reporting.collector_url, identity.api_key_id and a signing key"
            );
            return Ok(None);
        }
    };
    let signer = rep.load_signer().map_err(usage_error)?;
    PolicyClient::new(http.clone(), url, key_id, signer, pcfg.clone()).map(Some)
}

/// `[identity]` values must agree with the key's binding: a unit the binding sets must
/// be configured to the same value or not at all. A unit the binding leaves open may be
/// configured (it narrows attribution; the collector decides whether it accepts it).
fn check_identity(identity: &Identity, api_key_id: &str, scope: &KeyScope) -> Result<()> {
    let org = Some(scope.org.clone()).filter(|o| !o.is_empty());
    for (field, configured, bound) in [
        ("org", &identity.org, &org),
        ("department", &identity.department, &scope.department),
        ("project", &identity.project, &scope.project),
        ("group", &identity.group, &scope.group),
        ("user", &identity.user, &scope.user),
    ] {
        if let (Some(c), Some(b)) = (configured, bound) {
            if c != b {
                return Err(Error::config(
                    format!("identity.{field}"),
                    format!(
                        "is `{c}` but api_key_id `{api_key_id}` is bound to {field} `{b}` (the key's binding: {})",
                        describe_scope(scope)
                    ),
                    format!(
                        "remove identity.{field} (records take the key's binding) or set it to `{b}`; to attribute calls elsewhere, use a key bound there"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn describe_scope(s: &KeyScope) -> String {
    let mut parts = vec![format!("org `{}`", s.org)];
    for (k, v) in [
        ("department", &s.department),
        ("project", &s.project),
        ("group", &s.group),
        ("user", &s.user),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k} `{v}`"));
        }
    }
    parts.join(", ")
}

/// What a usage record keeps of a routing decision.
fn route_info(decision: &RouteDecision) -> RouteInfo {
    // A call served from another tier than the decided one (no usable model there, or a
    // budget) did not go to the arm its propensity describes: it is not a learning sample.
    let l = decision
        .learning
        .as_ref()
        .filter(|_| decision.served_tier.is_none());
    RouteInfo {
        mode: decision.mode,
        tier: decision.tier.map(|t| t.as_str().to_owned()),
        score: decision.score.map(|s| (s * 1000.0).round() as i64),
        weights: decision.weights_version.clone(),
        propensity_ppm: l.map(|l| ((l.propensity * 1e6).round() as i64).clamp(1, 1_000_000)),
        explored: l.map(|l| l.explored),
        features: l.and_then(|l| l.features.clone()),
    }
}

fn total_attempts(decision: &RouteDecision) -> u32 {
    decision
        .attempts
        .iter()
        .map(|a| {
            if a.outcome.was_sent() {
                a.retries + 1
            } else {
                0
            }
        })
        .sum()
}

fn start_recorder(config: &Config, sdk: SdkInfo) -> Result<Option<Recorder>> {
    let rep = &config.reporting;
    if rep.mode == ReportingMode::Off {
        return Ok(None);
    }
    let key_configured = rep.signing_key_configured();
    if rep.collector_url.is_none() && (!key_configured || config.identity.api_key_id.is_none()) {
        tracing::info!(
            "usage records are off: configure identity.api_key_id and a signing key ([reporting]) to turn them on"
        );
        return Ok(None);
    }
    let signer = rep.load_signer().map_err(usage_error)?;
    Recorder::start_with(rep, &config.identity, sdk, Some(signer))
        .map(Some)
        .map_err(usage_error)
}

/// Usage-pipeline errors seen by callers: configuration problems are `Config`, a bad tag
/// is `InvalidRequest`, spool trouble is `Config` with the spool's own fix.
fn usage_error(e: UsageError) -> Error {
    match e.code() {
        "INVALID_REQUEST" => Error::InvalidRequest {
            field: Some("metadata".into()),
            message: e.to_string(),
        },
        _ => Error::config(
            "[reporting]",
            e.to_string(),
            "see the message; the spool keeps every record already written",
        ),
    }
}

fn transport_error(provider: &str, e: reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        return Error::Timeout {
            provider: provider.to_owned(),
            after: timeout,
            what: "request",
        };
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading"
    } else {
        "transport error"
    };
    // The whole source chain, without the URL (keys may travel in `?key=`).
    let e = e.without_url();
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::ProviderUnavailable {
        provider: provider.to_owned(),
        status: None,
        message: msg,
    }
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
    /// The reservation to settle when the stream ends, fails or is dropped.
    hold: Option<Hold>,
}

impl RecordingStream {
    fn finish(&mut self, status: UsageStatus, cost: Option<&Cost>) {
        if let Some(req) = self.req.take() {
            self.done = true;
            let rid = self.client.record(
                &req,
                &self.model_id,
                &self.decision,
                &self.started,
                self.usage.as_ref(),
                cost,
                status,
                self.first_token_ms,
                true,
            );
            self.client.settle_detached(
                self.hold.take(),
                cost.map_or(0, |c| c.total_micros),
                usage_tokens(self.usage.as_ref()),
                rid,
            );
        }
    }
}

impl Stream for RecordingStream {
    type Item = Result<ChatChunk>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(mut chunk))) => {
                if this.first_token_ms.is_none()
                    && chunk
                        .choices
                        .iter()
                        .any(|c| c.delta.content.is_some() || !c.delta.tool_calls.is_empty())
                {
                    this.first_token_ms = Some(this.started.instant.elapsed().as_millis() as u64);
                }
                if let Some(u) = chunk.usage {
                    this.usage = Some(u);
                    chunk.cost = this.client.price(&u, &this.model_id);
                    if this.client.inner.recorder.is_some() {
                        chunk.usage_record_id = Some(this.started.record_id().0);
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(UsageStatus::Error(e.kind()), None);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let cost = this
                    .usage
                    .and_then(|u| this.client.price(&u, &this.model_id));
                let status = if this.usage.is_some() {
                    UsageStatus::Ok
                } else {
                    UsageStatus::Error(ErrorKind::StreamInterrupted)
                };
                this.finish(status, cost.as_ref());
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Armed while a non-streaming call's request is out: if the caller drops the call's
/// future (a timeout of its own, an `AbortSignal`, a cancelled task), the provider has
/// most likely received the prompt and bills it, so one record with status `cancelled`
/// is written, carrying the prompt tokens counted here (the one-pass estimate: this runs
/// in `drop`) and their cost. The answer, if any, was never seen, so no completion.
struct AbandonedCall {
    client: Client,
    req: Option<Arc<ChatRequest>>,
    model: String,
    route: RouteInfo,
    clock: CallClock,
}

impl Drop for AbandonedCall {
    fn drop(&mut self) {
        let Some(req) = self.req.take() else { return };
        let prompt =
            crate::tokens::count_request_with(&req, &self.model, crate::tokens::Counting::Fast)
                .tokens;
        let usage = Usage::new(prompt, 0, 0, 0, 0);
        let cost = self.client.price(&usage, &self.model);
        self.client.record_as(
            &req,
            &self.model,
            self.route.clone(),
            1,
            &self.clock,
            Some(&usage),
            cost.as_ref(),
            UsageStatus::Cancelled,
            None,
            false,
            None,
        );
    }
}

impl Drop for RecordingStream {
    fn drop(&mut self) {
        if !self.done {
            let cost = self
                .usage
                .and_then(|u| self.client.price(&u, &self.model_id));
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
fn sse_chunks<S>(
    body: S,
    decoder: Box<dyn StreamDecoder>,
    provider: String,
    idle: Duration,
) -> impl Stream<Item = Result<ChatChunk>> + Send
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static,
{
    let state = SseState {
        body,
        parser: SseParser::new(),
        decoder,
        pending: VecDeque::new(),
        provider,
        idle,
        ended: false,
    };
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
                    st.pending.push_back(Err(Error::Timeout {
                        provider: st.provider.clone(),
                        after: st.idle,
                        what: "stream idle",
                    }));
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
                    Err(e) => st.pending.push_back(Err(Error::invalid_response(
                        &st.provider,
                        Some(200),
                        e.to_string(),
                    ))),
                },
                Ok(Some(Err(e))) => {
                    st.pending.push_back(Err(Error::StreamInterrupted {
                        provider: st.provider.clone(),
                        message: format!("the connection broke mid-stream: {}", e.without_url()),
                    }));
                }
                Ok(None) => {
                    st.ended = true;
                    let tail = st.parser.finish().map_err(|e| {
                        Error::invalid_response(&st.provider, Some(200), e.to_string())
                    });
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::config::Secret;

    fn scope() -> KeyScope {
        KeyScope {
            org: "acme".into(),
            department: Some("eng".into()),
            project: None,
            group: None,
            user: Some("alice".into()),
        }
    }

    #[test]
    fn identity_overrides_are_checked_against_the_binding() {
        let none = Identity {
            api_key_id: Some("k".into()),
            ..Default::default()
        };
        check_identity(&none, "k", &scope()).unwrap();
        let same = Identity {
            org: Some("acme".into()),
            department: Some("eng".into()),
            ..none.clone()
        };
        check_identity(&same, "k", &scope()).unwrap();
        // A unit the binding leaves open may be set (it narrows attribution).
        let project = Identity {
            project: Some("p1".into()),
            ..none.clone()
        };
        check_identity(&project, "k", &scope()).unwrap();
        let wrong = Identity {
            department: Some("legal".into()),
            ..none
        };
        let e = check_identity(&wrong, "k", &scope()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let text = e.to_string();
        assert!(
            text.contains("identity.department")
                && text.contains("`legal`")
                && text.contains("department `eng`")
                && text.contains("user `alice`"),
            "{text}"
        );
    }

    /// Issue 19: a key passed in memory (MobileOptions) counts for the policy too, so
    /// `enforce = "required"` starts and `"auto"` enforces.
    #[tokio::test]
    async fn an_in_memory_signing_key_turns_on_policy_enforcement() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = crate::usage::generate_key();
        let mut cfg = Config::for_emulator("http://127.0.0.1:9");
        cfg.identity.api_key_id = Some("k_mobile".into());
        cfg.reporting.collector_url = Some("http://127.0.0.1:9".into());
        cfg.reporting.spool_dir = Some(dir.path().join("spool"));
        cfg.reporting.signing_key_env = Some("GATEROUTER_TEST_UNSET_KEY_VARIABLE".into());
        cfg.reporting.signing_key = Some(Secret::new(signer.seed_base64().expose()));
        assert!(cfg.reporting.signing_key_configured());
        cfg.policy.enforce = EnforceMode::Required;
        let c = Client::new(cfg.clone()).unwrap();
        assert!(c.policy_client().is_some() && c.usage_status().spool_dir.is_some());
        c.shutdown().await.unwrap();
        cfg.policy.enforce = EnforceMode::Auto;
        cfg.reporting.spool_dir = Some(dir.path().join("spool2"));
        let c = Client::new(cfg.clone()).unwrap();
        assert!(
            c.policy_client().is_some(),
            "auto enforces with an in-memory key"
        );
        c.shutdown().await.unwrap();
        // No key anywhere: required is a config error naming what is missing.
        cfg.reporting.signing_key = None;
        cfg.reporting.spool_dir = Some(dir.path().join("spool3"));
        assert!(!cfg.reporting.signing_key_configured());
        let e = Client::new(cfg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    }
}
