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
use super::transport::Outbound;
use crate::accounts::policy_client::Hold;
use crate::error::{Error, ErrorKind, Result};
use crate::providers::{Target, adapter_for};
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
        out: Outbound<'_>,
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
        out: Outbound<'_>,
    ) -> impl Future<Output = Result<ChatResponse>> + Send {
        client.fetch_answer(out)
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
        out: Outbound<'_>,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        client.open_stream(out)
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
            .prepare(req, gate.route.as_ref(), !stream)
            .inspect_err(|e| self.record_denial(req, e, &clock, stream))?;
        Ok(Call {
            clock,
            resend_fp,
            decision,
            gate,
        })
    }

    /// The shadow call of `call`, when shadow sampling drew it: its own clock (and usage
    /// record id), the shadow decision naming `call`'s record, the same policy gate
    /// (admitted and budgeted per model like any call). Takes the plan out of `call`.
    pub(super) fn shadow_of(&self, call: &mut Call) -> Option<Call> {
        let mut decision = *call.decision.shadow.take()?;
        decision.shadow_of = Some(call.clock.record_id().0);
        Some(Call {
            clock: CallClock::start(),
            resend_fp: None,
            decision,
            gate: call.gate.clone(),
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
                let out = Outbound {
                    adapter,
                    call: &call,
                    target: &target,
                };
                let e = match exchange.attempt(self, out).await {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::client::testing::{ask, offline_config};
    use crate::routing::select::Candidate;

    /// An exchange that answers from a script instead of the network: each attempt takes
    /// the next result; `Ok` answers with the model it was sent to.
    struct Script(Mutex<VecDeque<Result<()>>>);

    impl Script {
        fn new(steps: impl IntoIterator<Item = Result<()>>) -> Self {
            Script(Mutex::new(steps.into_iter().collect()))
        }
        fn left(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl Exchange for &Script {
        type Output = String;
        const STREAM: bool = false;

        fn attempt(
            &self,
            _client: &Client,
            out: Outbound<'_>,
        ) -> impl Future<Output = Result<String>> + Send {
            let step = self.0.lock().unwrap().pop_front().unwrap();
            let model = out.target.model_id.clone();
            async move { step.map(|()| model) }
        }
    }

    fn client(max_retries: u32) -> Client {
        let mut cfg = offline_config();
        cfg.retry.max_retries = max_retries;
        cfg.retry.initial_backoff_ms = 1;
        cfg.retry.max_backoff_ms = 1;
        Client::new(cfg).unwrap()
    }

    /// A call routed to `models`, in chain order.
    async fn call_to(c: &Client, models: &[&str]) -> (ChatRequest, Call) {
        let req = ask(models[0]);
        let mut call = c.begin(&req, false).await.unwrap();
        let first = call.decision.candidates[0].clone();
        call.decision.candidates = models
            .iter()
            .map(|m| Candidate {
                model: (*m).to_owned(),
                ..first.clone()
            })
            .collect();
        (req, call)
    }

    fn rate_limited() -> Error {
        Error::RateLimited {
            provider: "openai".into(),
            retry_after: None,
            message: "slow down".into(),
        }
    }

    fn outcomes(call: &Call) -> Vec<(String, AttemptOutcome, u32)> {
        call.decision
            .attempts
            .iter()
            .map(|a| (a.model.clone(), a.outcome, a.retries))
            .collect()
    }

    #[tokio::test]
    async fn a_retryable_error_falls_back_to_the_next_model() {
        let c = client(0);
        let (req, mut call) =
            call_to(&c, &["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]).await;
        let script = Script::new([Err(rate_limited()), Ok(())]);
        let served = c.run(&req, &mut call, &script).await.unwrap();
        assert_eq!(served.output, "anthropic/claude-haiku-4-5");
        assert_eq!(served.target.provider.name, "anthropic");
        assert_eq!(
            outcomes(&call),
            vec![
                (
                    "openai/gpt-4o-mini".to_owned(),
                    AttemptOutcome::Failed(ErrorKind::RateLimited),
                    0
                ),
                (
                    "anthropic/claude-haiku-4-5".to_owned(),
                    AttemptOutcome::Ok,
                    0
                ),
            ]
        );
        assert_eq!(call.decision.answered_by(), "anthropic/claude-haiku-4-5");
    }

    #[tokio::test]
    async fn a_non_retryable_error_stops_the_chain() {
        let c = client(2);
        let (req, mut call) =
            call_to(&c, &["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]).await;
        let auth = Error::Auth {
            provider: "openai".into(),
            status: 401,
            message: "bad key".into(),
        };
        let script = Script::new([Err(auth), Ok(())]);
        let e = c.run(&req, &mut call, &script).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Auth);
        // Neither retried nor fallen back: the second model's step is still unused.
        assert_eq!(script.left(), 1);
        assert_eq!(
            outcomes(&call),
            vec![(
                "openai/gpt-4o-mini".to_owned(),
                AttemptOutcome::Failed(ErrorKind::Auth),
                0
            )]
        );
    }

    #[tokio::test]
    async fn a_retryable_error_is_retried_on_the_same_model_first() {
        let c = client(1);
        let (req, mut call) =
            call_to(&c, &["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]).await;
        let script = Script::new([Err(rate_limited()), Ok(())]);
        let served = c.run(&req, &mut call, &script).await.unwrap();
        assert_eq!(served.output, "openai/gpt-4o-mini");
        assert_eq!(
            outcomes(&call),
            vec![("openai/gpt-4o-mini".to_owned(), AttemptOutcome::Ok, 1)]
        );
        assert_eq!(super::super::recording::total_attempts(&call.decision), 2);
    }

    #[tokio::test]
    async fn the_last_error_is_returned_when_every_model_fails() {
        let c = client(0);
        let (req, mut call) =
            call_to(&c, &["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]).await;
        let outage = Error::ProviderUnavailable {
            provider: "anthropic".into(),
            status: Some(529),
            message: "overloaded".into(),
        };
        let script = Script::new([Err(rate_limited()), Err(outage)]);
        let e = c.run(&req, &mut call, &script).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        assert_eq!(call.decision.attempts.len(), 2);
    }

    #[test]
    fn only_capacity_time_and_context_errors_fall_back() {
        for k in [
            ErrorKind::RateLimited,
            ErrorKind::ProviderUnavailable,
            ErrorKind::Timeout,
            ErrorKind::ContextLengthExceeded,
        ] {
            assert!(falls_back(k), "{k:?}");
        }
        for k in [
            ErrorKind::Auth,
            ErrorKind::InvalidRequest,
            ErrorKind::InvalidResponse,
        ] {
            assert!(!falls_back(k), "{k:?}");
        }
    }

    /// The bindings spawn calls on multi-threaded runtimes: both kinds stay `Send`.
    #[test]
    fn call_futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let c = client(0);
        let req = ask("openai/gpt-4o-mini");
        send(&c.chat(req.clone()));
        send(&c.chat_stream(req));
    }
}
