//! Bounded retries with jittered exponential backoff, honouring `retry-after`.
//!
//! Only errors whose kind is retryable (rate limits, unavailable providers, timeouts)
//! are retried; a 4xx request error never is. A `retry-after` longer than the
//! configured ceiling, or a wait that would break the total time budget, ends the
//! retries and returns the error as is.
//!
//! [`ExponentialBackoff`] (from `gaterouter_types::backoff`) is the one jittered exponential backoff: the
//! provider calls here and the usage uploader (`gaterouter-usage`) both draw their waits
//! from it, with the randomness taken from an injectable [`Jitter`] so tests fix it.

use std::time::{Duration, Instant};

pub use gaterouter_types::backoff::{ExponentialBackoff, Jitter, NoJitter, ThreadJitter};

use crate::config::RetryConfig;
use crate::error::Error;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Sleep this long, then try again.
    RetryAfter(Duration),
    /// Give up and return the error.
    GiveUp,
}

/// Retry state for one logical call.
pub struct Backoff {
    cfg: RetryConfig,
    started: Instant,
    retries: u32,
    jitter: Box<dyn Jitter>,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("cfg", &self.cfg)
            .field("started", &self.started)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// Start counting now.
    pub fn new(cfg: &RetryConfig) -> Self {
        Self::starting_at(cfg, Instant::now())
    }

    /// Count the total time budget from `started` (shared by the fallbacks of one call).
    pub fn starting_at(cfg: &RetryConfig, started: Instant) -> Self {
        Backoff {
            cfg: cfg.clone(),
            started,
            retries: 0,
            jitter: Box::new(ThreadJitter),
        }
    }

    /// Draw the jitter from `jitter` instead of the thread RNG (tests).
    pub fn with_jitter(mut self, jitter: impl Jitter + 'static) -> Self {
        self.jitter = Box::new(jitter);
        self
    }

    /// Whether the call's total time budget still has `margin` left.
    pub fn time_left(&self) -> bool {
        self.started.elapsed() < Duration::from_millis(self.cfg.max_total_ms)
    }

    /// Retries taken so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Decide after `err`. Records the retry when the answer is to retry.
    pub fn next(&mut self, err: &Error) -> Decision {
        if !err.is_retryable() || self.retries >= self.cfg.max_retries {
            return Decision::GiveUp;
        }
        let wait = match err.retry_after() {
            Some(ra) if ra > Duration::from_millis(self.cfg.max_retry_after_ms) => {
                return Decision::GiveUp;
            }
            Some(ra) => ra,
            None => ExponentialBackoff {
                initial: Duration::from_millis(self.cfg.initial_backoff_ms),
                max: Duration::from_millis(self.cfg.max_backoff_ms),
            }
            .delay(self.retries, self.jitter.as_mut()),
        };
        if self.started.elapsed() + wait > Duration::from_millis(self.cfg.max_total_ms) {
            return Decision::GiveUp;
        }
        self.retries += 1;
        Decision::RetryAfter(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Error {
        Error::ProviderUnavailable {
            provider: "p".into(),
            status: Some(500),
            message: "boom".into(),
        }
    }

    #[test]
    fn bounded_and_growing() {
        let cfg = RetryConfig {
            max_retries: 3,
            initial_backoff_ms: 100,
            max_backoff_ms: 250,
            ..RetryConfig::default()
        };
        let mut b = Backoff::new(&cfg);
        for n in 0..3 {
            match b.next(&unavailable()) {
                Decision::RetryAfter(d) => {
                    let cap = (100u64 << n).min(250);
                    assert!(
                        d <= Duration::from_millis(cap) && d >= Duration::from_millis(cap / 4),
                        "{d:?}"
                    );
                }
                Decision::GiveUp => panic!("gave up early"),
            }
        }
        assert_eq!(b.next(&unavailable()), Decision::GiveUp);
    }

    #[test]
    fn jitter_is_injected_and_the_step_doubles_to_its_ceiling() {
        /// Always the floor of the range.
        struct Floor;
        impl Jitter for Floor {
            fn pick(&mut self, lo: u64, _hi: u64) -> u64 {
                lo
            }
        }
        let cfg = RetryConfig {
            max_retries: 4,
            initial_backoff_ms: 100,
            max_backoff_ms: 300,
            max_total_ms: 60_000,
            ..RetryConfig::default()
        };
        let waits = |j: Box<dyn Jitter>| {
            let mut b = Backoff::new(&cfg);
            b.jitter = j;
            (0..4)
                .map(|_| match b.next(&unavailable()) {
                    Decision::RetryAfter(d) => d.as_millis(),
                    Decision::GiveUp => 0,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(waits(Box::new(NoJitter)), vec![100, 200, 300, 300]);
        assert_eq!(waits(Box::new(Floor)), vec![25, 50, 75, 75]);
        let step = ExponentialBackoff {
            initial: Duration::from_millis(0),
            max: Duration::from_secs(1),
        };
        assert_eq!(step.delay(3, &mut NoJitter), Duration::from_millis(1));
    }

    #[test]
    fn honours_retry_after_and_its_ceiling() {
        let cfg = RetryConfig {
            max_retry_after_ms: 5_000,
            ..RetryConfig::default()
        };
        let rl = |s| Error::RateLimited {
            provider: "p".into(),
            retry_after: Some(Duration::from_secs(s)),
            message: String::new(),
        };
        assert_eq!(
            Backoff::new(&cfg).next(&rl(2)),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(Backoff::new(&cfg).next(&rl(10)), Decision::GiveUp);
    }

    #[test]
    fn never_retries_request_errors() {
        let e = Error::Rejected {
            provider: "p".into(),
            status: 400,
            message: "bad".into(),
        };
        assert_eq!(
            Backoff::new(&RetryConfig::default()).next(&e),
            Decision::GiveUp
        );
    }
}
