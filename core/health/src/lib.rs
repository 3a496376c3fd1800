//! # gaterouter-health
//!
//! Provider health: a circuit breaker per provider and observed latency per model.
//! Depends on `gaterouter-types` only (its [`ErrorKind`] says which failures are the
//! provider's trouble) and `serde` (the config section); `gaterouter` re-exports it as
//! `gaterouter::health`.
//!
//! Map of the crate (one file):
//!
//! | item | concept |
//! |---|---|
//! | [`BreakerConfig`] | the `[routing.circuit_breaker]` section: `failure_threshold`, `cooldown_ms` |
//! | [`Health`] | one per client: a breaker per provider and a latency EWMA per model, behind mutexes |
//! | [`Health::admit`] / [`Health::record`] | may a call go now (a half-open breaker admits one probe); a call's outcome |
//! | [`Health::state`] / [`BreakerState`] | a provider's breaker now (closed, open, half-open), as route explanations report it |
//! | [`Health::latency_ms`] | a model's observed latency (EWMA, newest sample weighted 0.2) |
//!
//! Who uses it: `gaterouter-routing` reads [`BreakerConfig`] as part of its config;
//! each client (`gaterouter`, `core/src/client`) keeps one [`Health`], asks
//! [`Health::admit`] before it tries a model of the fallback chain, [`Health::record`]s
//! the outcome of every try (retries included), and gives routing the breaker state
//! (open providers are excluded) and the latency (the `fastest` policy).
//!
//! The breaker opens after `failure_threshold` consecutive failures that say the
//! provider itself is in trouble (unavailable, timeouts, rate limits, interrupted
//! streams), skips the provider while open, and after `cooldown_ms` lets exactly one
//! probe through (half-open): success closes it, failure opens it again; an error that
//! is not the provider's (a bad request, a budget refusal) counts as neither, but ends a
//! half-open probe as a success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use gaterouter_types::error::ErrorKind;

/// Circuit-breaker settings (`[routing.circuit_breaker]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// How long an open breaker waits before one probe. Default 30 000.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown_ms: 30_000,
        }
    }
}

/// State of one provider's breaker, as reported in route explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are skipped until the cool-down ends.
    Open,
    /// One probe is in flight; others are skipped.
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
struct Breaker {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// Shared health of all providers and models of one client.
#[derive(Debug, Default)]
pub struct Health {
    cfg: BreakerConfig,
    breakers: Mutex<HashMap<String, Breaker>>,
    latency: Mutex<HashMap<String, f64>>,
}

/// Weight of the newest latency sample in the EWMA.
const EWMA_ALPHA: f64 = 0.2;

impl Health {
    /// Health tracking with these breaker settings.
    pub fn new(cfg: BreakerConfig) -> Self {
        Health {
            cfg,
            ..Default::default()
        }
    }

    /// The breaker state of `provider` now (without taking a probe slot).
    pub fn state(&self, provider: &str) -> BreakerState {
        let map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(provider) {
            None => BreakerState::Closed,
            Some(b) => self.state_of(b),
        }
    }

    fn state_of(&self, b: &Breaker) -> BreakerState {
        match b.opened_at {
            None => BreakerState::Closed,
            Some(t) if t.elapsed() < Duration::from_millis(self.cfg.cooldown_ms) => {
                BreakerState::Open
            }
            Some(_) if b.probe_in_flight => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// May a call to `provider` go now? A half-open breaker admits one probe.
    pub fn admit(&self, provider: &str) -> bool {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = map.get_mut(provider) else {
            return true;
        };
        match b.opened_at {
            None => true,
            Some(t) if t.elapsed() < Duration::from_millis(self.cfg.cooldown_ms) => false,
            Some(_) if b.probe_in_flight => false,
            Some(_) => {
                b.probe_in_flight = true;
                true
            }
        }
    }

    /// Record a call's outcome. Only errors that indict the provider count as failures;
    /// a bad request or a budget refusal says nothing about the provider's health.
    pub fn record(&self, provider: &str, outcome: Result<Duration, ErrorKind>, model: &str) {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(provider.to_owned()).or_insert(Breaker {
            consecutive_failures: 0,
            opened_at: None,
            probe_in_flight: false,
        });
        match outcome {
            Ok(latency) => {
                *b = Breaker {
                    consecutive_failures: 0,
                    opened_at: None,
                    probe_in_flight: false,
                };
                drop(map);
                let mut lat = self.latency.lock().unwrap_or_else(|p| p.into_inner());
                let ms = latency.as_secs_f64() * 1000.0;
                lat.entry(model.to_owned())
                    .and_modify(|v| *v = EWMA_ALPHA * ms + (1.0 - EWMA_ALPHA) * *v)
                    .or_insert(ms);
            }
            Err(
                ErrorKind::ProviderUnavailable
                | ErrorKind::Timeout
                | ErrorKind::RateLimited
                | ErrorKind::StreamInterrupted,
            ) => {
                b.consecutive_failures += 1;
                if b.probe_in_flight || b.consecutive_failures >= self.cfg.failure_threshold {
                    b.opened_at = Some(Instant::now());
                }
                b.probe_in_flight = false;
            }
            Err(_) => {
                // Not the provider's fault; a half-open probe that ends this way proves
                // the provider answers.
                if b.probe_in_flight {
                    *b = Breaker {
                        consecutive_failures: 0,
                        opened_at: None,
                        probe_in_flight: false,
                    };
                }
            }
        }
    }

    /// Observed latency of `model` in milliseconds (EWMA), if any call finished.
    pub fn latency_ms(&self, model: &str) -> Option<f64> {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers_through_one_probe() {
        let h = Health::new(BreakerConfig {
            failure_threshold: 3,
            cooldown_ms: 40,
        });
        for _ in 0..2 {
            h.record("p", Err(ErrorKind::ProviderUnavailable), "p/m");
        }
        assert_eq!(h.state("p"), BreakerState::Closed);
        h.record("p", Err(ErrorKind::Timeout), "p/m");
        assert_eq!(h.state("p"), BreakerState::Open);
        assert!(!h.admit("p"));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(h.state("p"), BreakerState::HalfOpen);
        assert!(h.admit("p"), "one probe");
        assert!(!h.admit("p"), "only one probe");
        h.record("p", Err(ErrorKind::ProviderUnavailable), "p/m");
        assert_eq!(h.state("p"), BreakerState::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(50));
        assert!(h.admit("p"));
        h.record("p", Ok(Duration::from_millis(10)), "p/m");
        assert_eq!(h.state("p"), BreakerState::Closed);
        assert!(h.admit("p") && h.admit("p"));
    }

    #[test]
    fn request_errors_do_not_count() {
        let h = Health::new(BreakerConfig {
            failure_threshold: 1,
            cooldown_ms: 1000,
        });
        h.record("p", Err(ErrorKind::InvalidRequest), "p/m");
        h.record("p", Err(ErrorKind::Budget), "p/m");
        assert_eq!(h.state("p"), BreakerState::Closed);
    }

    #[test]
    fn latency_is_an_ewma() {
        let h = Health::new(BreakerConfig::default());
        h.record("p", Ok(Duration::from_millis(100)), "p/m");
        h.record("p", Ok(Duration::from_millis(200)), "p/m");
        let v = h.latency_ms("p/m").expect("latency");
        assert!((v - 120.0).abs() < 1e-6, "{v}");
    }
}
