//! Recording: what a call leaves behind. Starts the usage recorder from `[reporting]`
//! ([`start_recorder`]), prices answers, builds one usage record per call (answered,
//! failed, denied, cancelled: [`record_input`]) and appends it to the spool; a stream
//! writes its record when it ends or is dropped ([`RecordingStream`]), a plain call
//! abandoned by its caller writes a `cancelled` one ([`AbandonedCall`]). Implicit
//! feedback (a re-send to a pricier model) is noted here too.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::Stream;

use super::Client;
use crate::accounts::policy_client::Hold;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::model_id::ModelId;
use crate::pricing::{Cost, CostOptions};
use crate::routing::RouteDecision;
use crate::types::{ChatChunk, ChatRequest, Usage};
use crate::usage::{
    LinkState, RecordId, Recorder, ReportingMode, RouteInfo, SdkInfo, UsageError, UsageRecordInput,
    UsageStatus, unix_ms_now,
};

impl Client {
    /// Implicit feedback, at a call's start: an explicit re-send of the messages an
    /// `auto` call answered within the window, to a pricier model, rates that call 0.
    /// Returns the fingerprint of an `auto` request (to remember its answer), if on.
    pub(super) fn note_resend(&self, req: &ChatRequest) -> Option<u64> {
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
    pub(super) fn remember_auto(
        &self,
        fp: Option<u64>,
        record_id: Option<&str>,
        answered_by: &str,
    ) {
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

    pub(super) fn price(&self, usage: &Usage, model_id: &str) -> Option<Cost> {
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
    pub(super) fn record(
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
        let rec = CallRecord {
            usage,
            cost,
            first_token_ms,
            ..CallRecord::new(
                model_id,
                route_info(decision),
                total_attempts(decision),
                status,
                stream,
            )
        };
        self.record_as(req, clock, rec)
    }

    /// A call that failed after routing: `denied` when the policy refused (every model
    /// of the chain denied or over budget), else the error's code.
    pub(super) fn record_failure(
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
                let rec = CallRecord {
                    denial: Some(denial),
                    ..CallRecord::new(
                        model_id,
                        route_info(decision),
                        total_attempts(decision),
                        UsageStatus::Denied,
                        stream,
                    )
                };
                self.record_as(req, clock, rec);
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
    pub(super) fn record_denial(
        &self,
        req: &ChatRequest,
        e: &Error,
        clock: &CallClock,
        stream: bool,
    ) {
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
        let rec = CallRecord {
            denial: Some(denial),
            ..CallRecord::new(&model, route, 1, UsageStatus::Denied, stream)
        };
        self.record_as(req, clock, rec);
    }

    /// Append the record of `rec`, made at `clock`'s start; the id is the clock's.
    pub(super) fn record_as(
        &self,
        req: &ChatRequest,
        clock: &CallClock,
        rec: CallRecord<'_>,
    ) -> Option<RecordId> {
        let recorder = self.inner.recorder.as_ref()?;
        let input = record_input(req, clock, unix_ms_now(), rec);
        match recorder.record_with_id(input, clock.record_id()) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "usage record not written");
                None
            }
        }
    }
}

/// What a usage record says about one call besides its request and clock.
pub(super) struct CallRecord<'a> {
    /// `provider/model` (a bare name is kept as the model, with no provider).
    pub(super) model_id: &'a str,
    pub(super) route: RouteInfo,
    /// HTTP attempts (at least 1 is recorded).
    pub(super) attempts: u32,
    pub(super) usage: Option<&'a Usage>,
    pub(super) cost: Option<&'a Cost>,
    pub(super) status: UsageStatus,
    pub(super) first_token_ms: Option<u64>,
    pub(super) stream: bool,
    /// The rule and level of a policy refusal (`denied` records).
    pub(super) denial: Option<(String, Option<String>)>,
}

impl<'a> CallRecord<'a> {
    /// No usage, cost, first token or denial.
    pub(super) fn new(
        model_id: &'a str,
        route: RouteInfo,
        attempts: u32,
        status: UsageStatus,
        stream: bool,
    ) -> Self {
        CallRecord {
            model_id,
            route,
            attempts,
            usage: None,
            cost: None,
            status,
            first_token_ms: None,
            stream,
            denial: None,
        }
    }
}

/// The usage record of a call that started at `clock` and ended at `now_ms`.
pub(super) fn record_input(
    req: &ChatRequest,
    clock: &CallClock,
    now_ms: u64,
    rec: CallRecord<'_>,
) -> UsageRecordInput {
    let (denied_rule, denied_level) = rec.denial.map_or((None, None), |(r, l)| (Some(r), l));
    let id = ModelId::parse(rec.model_id).unwrap_or(ModelId {
        provider: String::new(),
        model: rec.model_id.to_owned(),
    });
    let u = rec.usage.copied().unwrap_or_default();
    UsageRecordInput {
        ts_start: clock.unix_ms,
        ts_end: now_ms,
        provider: id.provider,
        model: id.model,
        route: Some(rec.route),
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_prompt_tokens: u.cached_prompt_tokens,
        cache_write_tokens: u.cache_write_tokens,
        reasoning_tokens: u.reasoning_tokens,
        cost_micros: rec.cost.map_or(0, |c| c.total_micros),
        latency_ms: clock.instant.elapsed().as_millis() as u64,
        time_to_first_token_ms: rec.first_token_ms,
        status: Some(rec.status),
        attempts: rec.attempts.max(1),
        stream: rec.stream,
        tags: req.metadata.clone(),
        denied_rule,
        denied_level,
    }
}

/// Start of a call: a monotonic instant for latency and a wall-clock stamp for records.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallClock {
    pub(super) instant: Instant,
    unix_ms: u64,
    /// The id the call's usage record will have (chosen up front so the response, or a
    /// stream's usage chunk, can name it before the record is written).
    record_id: uuid::Uuid,
}

impl CallClock {
    pub(super) fn start() -> Self {
        CallClock {
            instant: Instant::now(),
            unix_ms: unix_ms_now(),
            record_id: uuid::Uuid::now_v7(),
        }
    }

    pub(super) fn record_id(&self) -> RecordId {
        RecordId(self.record_id.hyphenated().to_string())
    }
}

/// What a usage record keeps of a routing decision.
pub(super) fn route_info(decision: &RouteDecision) -> RouteInfo {
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
        propensity_ppm: l.map(|l| ppm(l.propensity)),
        // A fallback answered: the model's propensity describes the chosen one, not it.
        model_propensity_ppm: l
            .filter(|_| decision.answered_by() == decision.chosen)
            .map(|l| ppm(l.model_propensity)),
        explored: l.map(|l| l.explored),
        features: l.and_then(|l| l.features.clone()),
        shadow_of: decision.shadow_of.clone().map(RecordId),
    }
}

/// A probability in millionths, as records carry it (never 0: a logged call happened).
fn ppm(p: f64) -> i64 {
    ((p * 1e6).round() as i64).clamp(1, 1_000_000)
}

pub(super) fn total_attempts(decision: &RouteDecision) -> u32 {
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

/// The rule and level of a policy refusal (`None`: not a refusal).
pub(super) fn denial_of(e: &Error) -> Option<(String, Option<String>)> {
    match e {
        Error::Permission { rule, level, .. } => {
            Some((rule.clone(), level.as_ref().map(ToString::to_string)))
        }
        Error::Budget { budget, .. } => Some(("budget".to_owned(), Some(budget.level.to_string()))),
        _ => None,
    }
}

/// Total tokens of a usage (what token budgets count).
pub(super) fn usage_tokens(u: Option<&Usage>) -> u64 {
    u.map_or(0, |u| u.prompt_tokens.saturating_add(u.completion_tokens))
}

pub(super) fn start_recorder(
    config: &Config,
    sdk: SdkInfo,
    link: LinkState,
    clock: Arc<dyn crate::usage::Clock>,
) -> Result<Option<Recorder>> {
    let rep = &config.reporting;
    if rep.mode == ReportingMode::Off {
        return Ok(None);
    }
    let key = rep.key_source();
    if rep.collector_url.is_none() && (!key.is_configured() || config.identity.api_key_id.is_none())
    {
        tracing::info!(
            "usage records are off: configure identity.api_key_id and a signing key ([reporting]) to turn them on"
        );
        return Ok(None);
    }
    let signer = rep.load_signer().map_err(usage_error)?;
    Recorder::start_linked(rep, &config.identity, sdk, Some(signer), link, clock)
        .map(Some)
        .map_err(usage_error)
}

/// Usage-pipeline errors seen by callers: configuration problems are `Config`, a bad tag
/// is `InvalidRequest`, spool trouble is `Config` with the spool's own fix.
pub(super) fn usage_error(e: UsageError) -> Error {
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

/// A stream that writes the call's usage record when it ends, fails, or is dropped
/// early (status `cancelled`), and prices the final chunk.
pub(super) struct RecordingStream {
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
    pub(super) fn new(
        client: &Client,
        req: ChatRequest,
        model_id: String,
        decision: RouteDecision,
        started: CallClock,
        hold: Option<Hold>,
        chunks: Pin<Box<dyn Stream<Item = Result<ChatChunk>> + Send>>,
    ) -> Self {
        RecordingStream {
            inner: chunks,
            client: client.clone(),
            req: Some(req),
            model_id,
            decision,
            started,
            first_token_ms: None,
            usage: None,
            done: false,
            hold,
        }
    }

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

/// Armed while a non-streaming call's request is out: if the caller drops the call's
/// future (a timeout of its own, an `AbortSignal`, a cancelled task), the provider has
/// most likely received the prompt and bills it, so one record with status `cancelled`
/// is written, carrying the prompt tokens counted here (the one-pass estimate: this runs
/// in `drop`) and their cost. The answer, if any, was never seen, so no completion.
pub(super) struct AbandonedCall {
    client: Client,
    req: Option<Arc<ChatRequest>>,
    model: String,
    route: RouteInfo,
    clock: CallClock,
}

impl AbandonedCall {
    /// Armed before the request goes out.
    pub(super) fn arm(
        client: &Client,
        req: &Arc<ChatRequest>,
        decision: &RouteDecision,
        clock: CallClock,
    ) -> Self {
        AbandonedCall {
            client: client.clone(),
            req: Some(req.clone()),
            model: decision.chosen.clone(),
            route: route_info(decision),
            clock,
        }
    }

    /// The call came back (answered or failed): nothing to record on drop.
    pub(super) fn disarm(mut self) {
        self.req = None;
    }
}

impl Drop for AbandonedCall {
    fn drop(&mut self) {
        let Some(req) = self.req.take() else { return };
        let prompt =
            crate::tokens::count_request_with(&req, &self.model, crate::tokens::Counting::Fast)
                .tokens;
        let usage = Usage::new(prompt, 0, 0, 0, 0);
        let cost = self.client.price(&usage, &self.model);
        let rec = CallRecord {
            usage: Some(&usage),
            cost: cost.as_ref(),
            ..CallRecord::new(
                &self.model,
                self.route.clone(),
                1,
                UsageStatus::Cancelled,
                false,
            )
        };
        self.client.record_as(&req, &self.clock, rec);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::client::testing::{ask, offline_client, records_config};
    use crate::routing::{Attempt, AttemptOutcome};
    use crate::usage::RouteMode;

    fn req() -> ChatRequest {
        let mut r = ask("openai/gpt-4o-mini");
        r.metadata.insert("feature".into(), "search".into());
        r
    }

    fn route() -> RouteInfo {
        RouteInfo {
            mode: RouteMode::Explicit,
            ..Default::default()
        }
    }

    #[test]
    fn an_answered_call_is_recorded_with_its_usage_cost_and_timing() {
        let c = offline_client();
        let usage = Usage::new(1_000, 200, 100, 0, 0);
        let cost = c.price(&usage, "openai/gpt-4o-mini").unwrap();
        assert!(cost.total_micros > 0);
        let clock = CallClock::start();
        let rec = CallRecord {
            usage: Some(&usage),
            cost: Some(&cost),
            first_token_ms: Some(42),
            ..CallRecord::new("openai/gpt-4o-mini", route(), 3, UsageStatus::Ok, true)
        };
        let r = record_input(&req(), &clock, clock.unix_ms + 500, rec);
        assert_eq!(
            (r.provider.as_str(), r.model.as_str()),
            ("openai", "gpt-4o-mini")
        );
        assert_eq!((r.ts_start, r.ts_end), (clock.unix_ms, clock.unix_ms + 500));
        assert_eq!(
            (r.prompt_tokens, r.completion_tokens, r.cached_prompt_tokens),
            (1_000, 200, 100)
        );
        assert_eq!(r.cost_micros, cost.total_micros);
        assert_eq!(r.time_to_first_token_ms, Some(42));
        assert_eq!(r.status, Some(UsageStatus::Ok));
        assert_eq!(r.attempts, 3);
        assert!(r.stream);
        assert_eq!(r.tags.get("feature").map(String::as_str), Some("search"));
        assert_eq!(r.route.unwrap().mode, RouteMode::Explicit);
        assert_eq!((r.denied_rule, r.denied_level), (None, None));
    }

    #[test]
    fn a_denied_call_is_recorded_with_its_rule_no_tokens_and_one_attempt() {
        let clock = CallClock::start();
        let rec = CallRecord {
            denial: Some(("deny_models".into(), Some("project".into()))),
            ..CallRecord::new("mystery", route(), 0, UsageStatus::Denied, false)
        };
        let r = record_input(&req(), &clock, clock.unix_ms, rec);
        // A bare name is kept as the model, with no provider.
        assert_eq!((r.provider.as_str(), r.model.as_str()), ("", "mystery"));
        assert_eq!(r.status, Some(UsageStatus::Denied));
        assert_eq!(r.denied_rule.as_deref(), Some("deny_models"));
        assert_eq!(r.denied_level.as_deref(), Some("project"));
        assert_eq!(
            (r.prompt_tokens, r.completion_tokens, r.cost_micros),
            (0, 0, 0)
        );
        assert_eq!(r.attempts, 1, "at least one attempt is recorded");
    }

    #[test]
    fn only_policy_refusals_are_denials() {
        let e = Error::Permission {
            rule: "allow_models".into(),
            level: None,
            message: "no".into(),
        };
        assert_eq!(denial_of(&e), Some(("allow_models".to_owned(), None)));
        let e = Error::Timeout {
            provider: "openai".into(),
            after: std::time::Duration::from_secs(1),
            what: "request",
        };
        assert_eq!(denial_of(&e), None);
    }

    #[test]
    fn attempts_count_every_sent_try_and_no_skipped_model() {
        let mut d = offline_client().route(&req()).unwrap();
        assert!(d.attempts.is_empty());
        for (model, outcome, retries) in [
            (
                "openai/gpt-4o-mini",
                AttemptOutcome::Failed(ErrorKind::RateLimited),
                2,
            ),
            ("gemini/gemini-2.5-flash", AttemptOutcome::CircuitOpen, 0),
            ("anthropic/claude-haiku-4-5", AttemptOutcome::Ok, 0),
        ] {
            d.attempts.push(Attempt {
                model: model.into(),
                outcome,
                retries,
            });
        }
        assert_eq!(total_attempts(&d), 4);
        assert_eq!(d.answered_by(), "anthropic/claude-haiku-4-5");
    }

    #[test]
    fn a_learning_records_propensities_name_the_model_that_answered() {
        let mut d = offline_client().route(&ask("auto")).unwrap();
        d.learning = Some(crate::routing::learning::LearningTrace {
            explored: false,
            propensity: 0.9,
            model_explored: true,
            model_propensity: 0.15,
            scored_tier: d.tier.unwrap(),
            features: None,
        });
        let chosen = d.chosen.clone();
        d.attempts.push(Attempt {
            model: chosen.clone(),
            outcome: AttemptOutcome::Ok,
            retries: 0,
        });
        let r = route_info(&d);
        assert_eq!(
            (r.propensity_ppm, r.model_propensity_ppm),
            (Some(900_000), Some(150_000))
        );
        // A fallback answered: the arm's propensity holds, the model's does not.
        d.attempts[0].outcome = AttemptOutcome::Failed(ErrorKind::RateLimited);
        d.attempts.push(Attempt {
            model: d.candidates[1].model.clone(),
            outcome: AttemptOutcome::Ok,
            retries: 0,
        });
        let r = route_info(&d);
        assert_eq!(
            (r.propensity_ppm, r.model_propensity_ppm),
            (Some(900_000), None)
        );
        // Served from another tier than decided: not a learning sample at all.
        d.served_tier = Some(crate::routing::Tier::Heavy);
        let r = route_info(&d);
        assert_eq!((r.propensity_ppm, r.model_propensity_ppm), (None, None));
    }

    /// With records on, a policy refusal writes one record and a malformed request none.
    #[tokio::test]
    async fn a_refusal_before_routing_writes_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::new(records_config(&dir.path().join("spool"))).unwrap();
        let clock = CallClock::start();
        let bad = Error::InvalidRequest {
            field: Some("messages".into()),
            message: "empty".into(),
        };
        c.record_denial(&req(), &bad, &clock, false);
        assert_eq!(c.spool_status().unwrap().pending_records, 0);
        let denied = Error::Permission {
            rule: "deny_models".into(),
            level: None,
            message: "no".into(),
        };
        c.record_denial(&req(), &denied, &clock, false);
        assert_eq!(c.spool_status().unwrap().pending_records, 1);
        c.shutdown().await.unwrap();
    }
}
