//! [`PolicyClient`]: the SDK's side of `GET /v1/policy`, `POST /v1/reservations` and
//! settle (protocol in `collector/ACCOUNTS.md`).
//!
//! Why a cache with single-flight refresh: the policy is needed before every call, but
//! asking the collector each time would add a round trip to every call and, under load,
//! hundreds of identical requests. One fetch serves every call for `ttl_ms`; when it
//! expires, the first caller refetches while the others wait for that answer instead of
//! all refetching.
//!
//! Why local spend tracking: offline, the last known budgets are only safe to enforce if
//! what this process spent since they were fetched is taken off them. Every settled call
//! adds to `spent`, every call in flight to `held`; a fresh policy resets `spent` (the
//! collector now counts those calls, through their reservations or records).

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::request_auth;
use super::{
    AccountsErrorBody, BUDGET_EXCEEDED, BudgetStatus, EffectivePolicy, Enforcement, Metric,
    PERMISSION_DENIED, ReservationRequest, ReservationResponse, SettleRequest,
};
use crate::config::PolicyConfig;
use crate::error::{Error, Result};
use crate::usage::signing::UsageSigner;
use crate::usage::uploader::Clock;

/// After a failed fetch, further calls use the last known state for this long before
/// trying again (so an unreachable collector costs one connect attempt a second, not
/// one per call).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// TTL used when the collector's answer has `ttl_ms = 0`.
const DEFAULT_TTL_MS: u64 = 30_000;
/// Policy warnings kept for [`PolicyClient::take_warnings`].
const MAX_WARNINGS: usize = 100;

/// What the SDK knows about its policy right now.
#[derive(Debug, Clone)]
pub enum PolicyState {
    /// Fetched from the collector within the TTL.
    Current(Arc<EffectivePolicy>),
    /// The collector has no accounts endpoint (404): nothing to enforce.
    NotManaged,
    /// The collector cannot be reached. `policy` is the last one fetched (if any) and
    /// `age_ms` how long ago.
    Offline {
        /// Last known policy.
        policy: Option<Arc<EffectivePolicy>>,
        /// Milliseconds since it was fetched.
        age_ms: u64,
        /// Why the collector could not be reached.
        error: String,
    },
}

/// Outcome of a reservation request that did not fail for a policy reason.
#[derive(Debug, Clone)]
pub enum Reserved {
    /// The collector granted it.
    Granted(ReservationResponse),
    /// The collector could not be reached (after one retry with the same id).
    Unreachable(String),
}

/// A call in flight, counted in the local `held` until it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Reservation id (also sent to the collector when `online`).
    pub id: String,
    /// `provider/model`.
    pub model: String,
    /// Maximum cost held (micro-dollars).
    pub micros: u64,
    /// Maximum tokens held.
    pub tokens: u64,
    /// Whether the collector holds it too (settle must be sent).
    pub online: bool,
    /// Policy generation when it was taken.
    generation: u64,
}

#[derive(Debug, Default)]
struct State {
    policy: Option<Arc<EffectivePolicy>>,
    fetched_at: Option<Instant>,
    ttl: Duration,
    not_managed_until: Option<Instant>,
    failed_at: Option<Instant>,
    last_error: Option<String>,
    generation: u64,
    spent_micros: u64,
    spent_tokens: u64,
    held_micros: u64,
    held_tokens: u64,
    /// (budget id, threshold, window start) already warned about.
    warned: BTreeSet<(String, u8, u64)>,
    warnings: VecDeque<String>,
}

/// Fetches, caches and enforces-with the key's effective policy; reserves and settles.
/// Shared by every clone of a [`crate::Client`].
#[derive(Debug)]
pub struct PolicyClient {
    http: reqwest::Client,
    base: String,
    base_path: String,
    key_id: String,
    signer: UsageSigner,
    cfg: PolicyConfig,
    state: Mutex<State>,
    refresh: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
    /// The clock of cache ages, budget windows and request signatures.
    clock: Arc<dyn Clock>,
}

impl PolicyClient {
    /// A client for the collector at `collector_url`, signing with `signer` as `key_id`,
    /// reading "now" from `clock` (the policy cache's age and lifetime, budget windows
    /// and the timestamps of signed requests; tests pass a [`crate::usage::ManualClock`]).
    pub fn new(
        http: reqwest::Client,
        collector_url: &str,
        key_id: &str,
        signer: UsageSigner,
        cfg: PolicyConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let base = collector_url.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base).map_err(|e| {
            Error::config(
                "reporting.collector_url",
                format!("`{collector_url}` is not a URL: {e}"),
                "write e.g. https://usage.example.com",
            )
        })?;
        let base_path = parsed.path().trim_end_matches('/').to_owned();
        Ok(PolicyClient {
            http,
            base,
            base_path,
            key_id: key_id.to_owned(),
            signer,
            cfg,
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
            clock,
        })
    }

    /// The `[policy]` settings in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// How many `GET /v1/policy` requests were sent (for tests and diagnostics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counters half-updated in a
        // way that matters more than refusing every later call would.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The policy now: from the cache while it is fresh, else fetched (one fetch at a
    /// time; concurrent callers wait for it). `Err` only for authoritative refusals
    /// (the collector does not accept the key).
    pub async fn current(&self) -> Result<PolicyState> {
        if let Some(s) = self.fresh_state() {
            return Ok(s);
        }
        let _guard = self.refresh.lock().await;
        // Someone else may have refreshed (or failed) while we waited.
        if let Some(s) = self.fresh_state() {
            return Ok(s);
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fetch().await {
            Ok(Some(policy)) => {
                let policy = Arc::new(policy);
                let ttl =
                    Duration::from_millis(self.cfg.cache_ttl_ms.unwrap_or(if policy.ttl_ms == 0 {
                        DEFAULT_TTL_MS
                    } else {
                        policy.ttl_ms
                    }));
                let mut st = self.lock();
                st.policy = Some(policy.clone());
                st.fetched_at = Some(self.clock.now());
                st.ttl = ttl;
                st.failed_at = None;
                st.last_error = None;
                st.not_managed_until = None;
                st.generation += 1;
                st.spent_micros = 0;
                st.spent_tokens = 0;
                Ok(PolicyState::Current(policy))
            }
            Ok(None) => {
                let ttl = Duration::from_millis(self.cfg.cache_ttl_ms.unwrap_or(DEFAULT_TTL_MS));
                tracing::info!(collector = %self.base, "the collector has no /v1/policy endpoint: no organization policy to enforce");
                self.lock().not_managed_until = Some(self.clock.now() + ttl);
                Ok(PolicyState::NotManaged)
            }
            Err(FetchError::Refused(e)) => Err(e),
            Err(FetchError::Unreachable(msg)) => {
                tracing::warn!(collector = %self.base, error = %msg, "cannot fetch the policy from the collector");
                let mut st = self.lock();
                let now = self.clock.now();
                st.failed_at = Some(now);
                st.last_error = Some(msg.clone());
                Ok(offline(&st, msg, now))
            }
        }
    }

    fn fresh_state(&self) -> Option<PolicyState> {
        let st = self.lock();
        let now = self.clock.now();
        if st.not_managed_until.is_some_and(|t| now < t) {
            return Some(PolicyState::NotManaged);
        }
        if let (Some(p), Some(at)) = (&st.policy, st.fetched_at) {
            if now.saturating_duration_since(at) < st.ttl {
                return Some(PolicyState::Current(p.clone()));
            }
        }
        if let Some(failed) = st.failed_at {
            if now.saturating_duration_since(failed) < RETRY_AFTER_FAILURE {
                let msg = st.last_error.clone().unwrap_or_default();
                return Some(offline(&st, msg, now));
            }
        }
        None
    }

    /// The last policy fetched, without asking the collector (for synchronous callers
    /// such as [`crate::Client::route`]).
    pub fn cached(&self) -> Option<Arc<EffectivePolicy>> {
        self.lock().policy.clone()
    }

    /// The budgets of `policy` as this process sees them now: `remaining` minus what it
    /// spent since the fetch and holds in flight, and full again once a window has reset.
    pub fn local_budgets(&self, policy: &EffectivePolicy) -> Vec<BudgetStatus> {
        let st = self.lock();
        let now = self.clock.unix_ms();
        policy
            .budgets
            .iter()
            .map(|b| {
                let mut b = b.clone();
                if now >= b.resets_at_ms && b.resets_at_ms > 0 {
                    // A new window: the cached `used` belongs to the last one.
                    let (start, end) = b.period.window(now);
                    b.used = 0;
                    b.reserved = 0;
                    b.remaining = b.limit;
                    b.period_start_ms = start;
                    b.resets_at_ms = end;
                }
                let (spent, held) = match b.metric {
                    Metric::Usd => (st.spent_micros, st.held_micros),
                    Metric::Tokens => (st.spent_tokens, st.held_tokens),
                };
                b.used = b.used.saturating_add(spent);
                b.reserved = b.reserved.saturating_add(held);
                b.remaining = b.remaining.saturating_sub(spent.saturating_add(held));
                b
            })
            .collect()
    }

    /// Count a call in flight locally (every call with a policy, online or not).
    pub fn hold(&self, id: String, model: &str, micros: u64, tokens: u64, online: bool) -> Hold {
        let mut st = self.lock();
        st.held_micros = st.held_micros.saturating_add(micros);
        st.held_tokens = st.held_tokens.saturating_add(tokens);
        Hold {
            id,
            model: model.to_owned(),
            micros,
            tokens,
            online,
            generation: st.generation,
        }
    }

    /// End a local hold with what the call actually cost, and warn about soft-budget
    /// thresholds this process's spend crossed.
    pub fn release(&self, hold: &Hold, actual_micros: u64, actual_tokens: u64) {
        let mut st = self.lock();
        st.held_micros = st.held_micros.saturating_sub(hold.micros);
        st.held_tokens = st.held_tokens.saturating_sub(hold.tokens);
        // An online hold taken before the current policy was fetched is already in the
        // collector's numbers (as a reservation): do not count it twice.
        if !(hold.online && hold.generation != st.generation) {
            st.spent_micros = st.spent_micros.saturating_add(actual_micros);
            st.spent_tokens = st.spent_tokens.saturating_add(actual_tokens);
        }
        drop(st);
        self.check_soft_thresholds();
    }

    /// Record spend of a call that took no hold (no hard budget applies).
    pub fn note_spend(&self, micros: u64, tokens: u64) {
        let mut st = self.lock();
        st.spent_micros = st.spent_micros.saturating_add(micros);
        st.spent_tokens = st.spent_tokens.saturating_add(tokens);
        drop(st);
        self.check_soft_thresholds();
    }

    /// Soft budgets: warn once per threshold per window when the local view of spend
    /// crosses it (the collector notifies too; this makes it visible in the app).
    fn check_soft_thresholds(&self) {
        let Some(policy) = self.cached() else { return };
        let budgets = self.local_budgets(&policy);
        for b in budgets
            .iter()
            .filter(|b| b.enforcement == Enforcement::Soft && b.limit > 0)
        {
            let consumed = b.limit.saturating_sub(b.remaining);
            let pct = (u128::from(consumed) * 100 / u128::from(b.limit)) as u64;
            let thresholds: Vec<u8> = if b.notify_at.is_empty() {
                vec![50, 80, 100]
            } else {
                b.notify_at.clone()
            };
            for t in thresholds.into_iter().filter(|t| pct >= u64::from(*t)) {
                let key = (b.id.clone(), t, b.period_start_ms);
                if self.lock().warned.insert(key) {
                    self.warn(format!("soft budget reached {t}%: {}", b.describe()));
                }
            }
        }
    }

    /// Log a policy warning and keep it for [`PolicyClient::take_warnings`].
    pub fn warn(&self, message: String) {
        tracing::warn!(warning = %message, "budget warning");
        let mut st = self.lock();
        if st.warnings.len() >= MAX_WARNINGS {
            st.warnings.pop_front();
        }
        st.warnings.push_back(message);
    }

    /// Warnings since the last call (soft-budget thresholds from the collector and from
    /// local spend), oldest first.
    pub fn take_warnings(&self) -> Vec<String> {
        self.lock().warnings.drain(..).collect()
    }

    /// `POST /v1/reservations` with the caller's id (a fresh UUIDv7: the caller knows it
    /// before sending, so it can release a reservation whose answer it never got); a
    /// transport failure is retried once with the same id (the collector returns the
    /// same reservation for it).
    pub async fn reserve(
        &self,
        reservation_id: &str,
        model: &str,
        amount_micros: u64,
        amount_tokens: u64,
    ) -> Result<Reserved> {
        let req = ReservationRequest {
            reservation_id: reservation_id.to_owned(),
            model: model.to_owned(),
            amount_micros,
            amount_tokens,
            ttl_ms: None,
        };
        let body = serde_json::to_vec(&req).map_err(|e| {
            Error::invalid_response(
                "collector",
                None,
                format!("cannot encode the reservation: {e}"),
            )
        })?;
        let mut last = String::new();
        for attempt in 0..2 {
            match self
                .send_json::<ReservationResponse>("POST", "/v1/reservations", body.clone())
                .await
            {
                Ok(Some(resp)) => {
                    for w in &resp.warnings {
                        self.warn(w.clone());
                    }
                    return Ok(Reserved::Granted(resp));
                }
                Ok(None) => {
                    return Ok(Reserved::Unreachable(
                        "the collector has no /v1/reservations endpoint (404)".into(),
                    ));
                }
                Err(FetchError::Refused(e)) => return Err(e),
                Err(FetchError::Unreachable(msg)) => {
                    tracing::debug!(attempt, error = %msg, "reservation request failed");
                    last = msg;
                }
            }
        }
        Ok(Reserved::Unreachable(last))
    }

    /// `POST /v1/reservations/{id}/settle`. Errors are messages: a settle that does not
    /// arrive only means the hold lapses at its expiry on the collector.
    pub async fn settle(
        &self,
        id: &str,
        actual_micros: u64,
        actual_tokens: u64,
        record_id: Option<String>,
    ) -> std::result::Result<(), String> {
        let body = serde_json::to_vec(&SettleRequest {
            actual_micros,
            actual_tokens,
            record_id,
        })
        .map_err(|e| e.to_string())?;
        let path = format!("/v1/reservations/{id}/settle");
        let mut last = String::new();
        for _ in 0..2 {
            match self
                .send_json::<serde_json::Value>("POST", &path, body.clone())
                .await
            {
                Ok(_) => return Ok(()),
                Err(FetchError::Refused(e)) => return Err(e.to_string()),
                Err(FetchError::Unreachable(msg)) => last = msg,
            }
        }
        Err(last)
    }

    async fn fetch(&self) -> std::result::Result<Option<EffectivePolicy>, FetchError> {
        self.send_json::<EffectivePolicy>("GET", "/v1/policy", Vec::new())
            .await
    }

    /// One signed request. `Ok(None)` on 404 (no accounts endpoint).
    async fn send_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> std::result::Result<Option<T>, FetchError> {
        let url = format!("{}{path}", self.base);
        let signed_path = format!("{}{path}", self.base_path);
        let auth = request_auth::authorization(
            &self.signer,
            &self.key_id,
            method,
            &signed_path,
            self.clock.unix_ms(),
            &body,
        );
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        let rb = if method == "GET" {
            self.http.get(&url)
        } else {
            self.http
                .post(&url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body)
        };
        let resp = rb
            .header(http::header::AUTHORIZATION, auth)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                FetchError::Unreachable(format!("{method} {path}: {}", e.without_url()))
            })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            FetchError::Unreachable(format!(
                "{method} {path}: reading the answer: {}",
                e.without_url()
            ))
        })?;
        match status {
            200..=299 => serde_json::from_slice::<T>(&bytes).map(Some).map_err(|e| {
                FetchError::Refused(Error::invalid_response(
                    "collector",
                    Some(status),
                    format!("{method} {path}: unexpected answer: {e}"),
                ))
            }),
            404 => Ok(None),
            // Down, overloaded, or throttling: the same as unreachable.
            408 | 429 | 500..=599 => Err(FetchError::Unreachable(format!(
                "{method} {path}: HTTP {status}: {}",
                excerpt(&bytes)
            ))),
            _ => Err(FetchError::Refused(refusal(status, &bytes, method, path))),
        }
    }
}

fn offline(st: &State, error: String, now: Instant) -> PolicyState {
    let age_ms = st
        .fetched_at
        .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64);
    PolicyState::Offline {
        policy: st.policy.clone(),
        age_ms,
        error,
    }
}

enum FetchError {
    /// An answer that settles the matter (permission, budget, bad key).
    Refused(Error),
    /// No usable answer: try later, use the last known policy.
    Unreachable(String),
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(300).collect()
}

/// 401/402/403 and other refusals as typed errors.
fn refusal(status: u16, bytes: &[u8], method: &str, path: &str) -> Error {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        error: AccountsErrorBody,
    }
    let body = serde_json::from_slice::<Wrapper>(bytes)
        .ok()
        .map(|w| w.error);
    match (status, body) {
        (_, Some(b)) if b.code == BUDGET_EXCEEDED && b.budget.is_some() => {
            let message = b.message.clone();
            match b.budget {
                Some(budget) => Error::budget(budget, Some(&message)),
                None => Error::invalid_response("collector", Some(status), message),
            }
        }
        (_, Some(b)) if b.code == PERMISSION_DENIED => Error::Permission {
            rule: b.rule.unwrap_or_else(|| "policy".into()),
            level: b.level,
            message: b.message,
        },
        (401, b) => Error::Permission {
            rule: "api_key".into(),
            level: None,
            message: format!(
                "the collector refused API key credentials ({}); check identity.api_key_id and the signing key, and that the key is registered and not revoked",
                b.map_or_else(|| excerpt(bytes), |b| b.message)
            ),
        },
        (403, b) => Error::Permission {
            rule: "api_key".into(),
            level: None,
            message: b.map_or_else(|| excerpt(bytes), |b| b.message),
        },
        (_, b) => Error::invalid_response(
            "collector",
            Some(status),
            format!(
                "{method} {path}: {}",
                b.map_or_else(|| excerpt(bytes), |b| b.message)
            ),
        ),
    }
}
