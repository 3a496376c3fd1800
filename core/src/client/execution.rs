//! Execution: the fallback chain, once, for plain and streamed calls alike. A call is
//! admitted and routed ([`Client::begin`]), then [`Client::run`] walks the decision's
//! chain (chosen model, then fallbacks): skip models whose context window is known too
//! small or whose provider's circuit is open, reserve under a hard budget, send with
//! retries ([`crate::retry::Backoff`]), and fall back on rate limits, outages, timeouts
//! and context overflows while the call's time budget lasts. What one attempt *is* (wait
//! for a whole answer, or open a stream) is the [`Exchange`]; everything else is shared.

use std::future::Future;
use std::time::Instant;

use super::Client;
use super::admission::{Gate, HoldGuard};
use super::recording::CallClock;
use crate::accounts::policy_client::Hold;
use crate::error::{Error, ErrorKind, Result};
use crate::providers::{Adapter, HttpCall, Target, adapter_for};
use crate::retry::{Backoff, Decision};
use crate::routing::{Attempt, AttemptOutcome, RouteDecision};
use crate::types::{ChatRequest, ChatResponse};

/// One attempt at a provider: what is sent and what comes back on success.
pub(super) trait Exchange {
    /// What a successful attempt yields.
    type Output;
    /// Whether the provider is asked to stream its answer.
    const STREAM: bool;
    /// Make one attempt (no retries: the chain decides).
    fn attempt(
        &self,
        client: &Client,
        adapter: &'static dyn Adapter,
        call: &HttpCall,
        target: &Target,
    ) -> impl Future<Output = Result<Self::Output>> + Send;
}

/// A plain call: the whole answer, parsed.
pub(super) struct Plain;

impl Exchange for Plain {
    type Output = ChatResponse;
    const STREAM: bool = false;

    fn attempt(
        &self,
        client: &Client,
        adapter: &'static dyn Adapter,
        call: &HttpCall,
        target: &Target,
    ) -> impl Future<Output = Result<ChatResponse>> + Send {
        client.fetch_answer(adapter, call, target)
    }
}

/// A streamed call: the response once its status is 2xx (the body is read later).
pub(super) struct Streamed;

impl Exchange for Streamed {
    type Output = reqwest::Response;
    const STREAM: bool = true;

    fn attempt(
        &self,
        client: &Client,
        adapter: &'static dyn Adapter,
        call: &HttpCall,
        target: &Target,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        client.open_stream(adapter, call, target)
    }
}

/// An admitted, routed call on its way through the chain.
pub(super) struct Call {
    pub(super) clock: CallClock,
    /// Fingerprint of an `auto` request, for implicit feedback.
    pub(super) resend_fp: Option<u64>,
    pub(super) decision: RouteDecision,
    gate: Gate,
}

/// What answered: the exchange's output, where it came from, and the reservation to
/// settle with the call's cost.
pub(super) struct Served<T> {
    pub(super) output: T,
    pub(super) target: Target,
    pub(super) hold: Option<Hold>,
}

/// Errors after which the next model of the chain is tried (time allowing).
pub(super) fn falls_back(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::RateLimited
            | ErrorKind::ProviderUnavailable
            | ErrorKind::Timeout
            | ErrorKind::ContextLengthExceeded
    )
}

impl Client {
    /// Admission and routing: everything before a provider is called. A policy refusal
    /// is recorded (`denied`) before it is returned.
    pub(super) async fn begin(&self, req: &ChatRequest, stream: bool) -> Result<Call> {
        let clock = CallClock::start();
        let resend_fp = self.note_resend(req);
        let gate = self
            .admit(req)
            .await
            .inspect_err(|e| self.record_denial(req, e, &clock, stream))?;
        let decision = self
            .prepare(req, gate.route.as_ref())
            .inspect_err(|e| self.record_denial(req, e, &clock, stream))?;
        Ok(Call {
            clock,
            resend_fp,
            decision,
            gate,
        })
    }

    /// Walk the call's chain with `exchange`; a failure is recorded before it is
    /// returned.
    pub(super) async fn run<X: Exchange>(
        &self,
        req: &ChatRequest,
        call: &mut Call,
        exchange: X,
    ) -> Result<Served<X::Output>> {
        let outcome = self
            .execute(req, &mut call.decision, &exchange, &call.clock, &call.gate)
            .await;
        if let Err(e) = &outcome {
            let d = &call.decision;
            self.record_failure(req, d.answered_by(), d, &call.clock, e, X::STREAM);
        }
        outcome
    }

    /// Walk the decision's chain: retries per model, fallbacks between models.
    async fn execute<X: Exchange>(
        &self,
        req: &ChatRequest,
        decision: &mut RouteDecision,
        exchange: &X,
        clock: &CallClock,
        gate: &Gate,
    ) -> Result<Served<X::Output>> {
        let chain = decision.chain(self.inner.config.routing.max_fallbacks);
        let retry = &self.inner.config.retry;
        let mut last_err: Option<Error> = None;
        let mut min_context: Option<u64> = None;
        let failed = |model: &str, e: &Error, retries: u32| Attempt {
            model: model.to_owned(),
            outcome: AttemptOutcome::Failed(e.kind()),
            retries,
        };
        for model in chain {
            if let (Some(need), Some(window)) = (min_context, self.context_window(&model)) {
                if window <= need {
                    continue;
                }
            }
            let target = match self.resolve(&model) {
                Ok(t) => t,
                Err(e) => {
                    decision.attempts.push(failed(&model, &e, 0));
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
                Ok(h) => HoldGuard::new(self, h),
                Err(e) if matches!(e.kind(), ErrorKind::Budget | ErrorKind::Permission) => {
                    // This model does not fit or is refused; a later one of the chain may.
                    decision.attempts.push(failed(&model, &e, 0));
                    last_err = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let adapter = adapter_for(target.provider.kind);
            let call = match adapter.build_request(req, &target, X::STREAM) {
                Ok(c) => c,
                Err(e) => {
                    self.settle(hold.take(), 0, 0, None).await;
                    return Err(e);
                }
            };
            let mut backoff = Backoff::starting_at(retry, clock.instant);
            loop {
                let t0 = Instant::now();
                let e = match exchange.attempt(self, adapter, &call, &target).await {
                    Ok(output) => {
                        self.inner
                            .health
                            .record(&target.provider.name, Ok(t0.elapsed()), &model);
                        decision.attempts.push(Attempt {
                            model,
                            outcome: AttemptOutcome::Ok,
                            retries: backoff.retries(),
                        });
                        return Ok(Served {
                            output,
                            target,
                            hold: hold.take(),
                        });
                    }
                    Err(e) => e,
                };
                self.inner
                    .health
                    .record(&target.provider.name, Err(e.kind()), &model);
                if let Decision::RetryAfter(wait) = backoff.next(&e) {
                    tracing::debug!(model = %model, error = %e, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                decision
                    .attempts
                    .push(failed(&model, &e, backoff.retries()));
                // A failed attempt is not billed: release this model's hold.
                self.settle(hold.take(), 0, 0, None).await;
                if !(falls_back(e.kind()) && backoff.time_left()) {
                    return Err(e);
                }
                if e.kind() == ErrorKind::ContextLengthExceeded {
                    let window = self.context_window(&model).unwrap_or(0);
                    min_context = Some(min_context.unwrap_or(0).max(window));
                }
                tracing::info!(model = %model, error = %e, "falling back to the next model");
                last_err = Some(e);
                break;
            }
        }
        Err(last_err.unwrap_or_else(|| Error::InvalidRequest {
            field: Some("model".into()),
            message: "no model left to try".into(),
        }))
    }

    /// A model's context window, when the catalog knows it.
    fn context_window(&self, model: &str) -> Option<u64> {
        self.inner
            .catalog
            .lookup(model)
            .and_then(|(_, p)| p.context_window)
    }
}
