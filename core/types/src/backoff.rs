//! The one jittered exponential backoff: provider retries (`gaterouter::retry`) and the
//! usage uploader (`gaterouter-usage`) both draw their waits from [`ExponentialBackoff`],
//! with the randomness taken from an injectable [`Jitter`] so tests fix it.

use std::time::Duration;

use rand::Rng;

/// Where the backoff's randomness comes from: the thread RNG ([`ThreadJitter`]) in
/// production, a fixed or scripted source in tests.
pub trait Jitter: Send {
    /// A number in `lo..=hi` (`lo <= hi`).
    fn pick(&mut self, lo: u64, hi: u64) -> u64;
}

/// [`Jitter`] from `rand`'s thread-local generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadJitter;

impl Jitter for ThreadJitter {
    fn pick(&mut self, lo: u64, hi: u64) -> u64 {
        rand::rng().random_range(lo..=hi)
    }
}

/// [`Jitter`] without randomness: always the top of the range (the whole step), so a
/// test can predict every wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJitter;

impl Jitter for NoJitter {
    fn pick(&mut self, _lo: u64, hi: u64) -> u64 {
        hi
    }
}

/// "Full jitter" exponential backoff (AWS architecture blog): uniform in
/// `[step / 4, step]` with `step = min(max, initial * 2^attempt)`; the quarter floor keeps
/// retries from hammering at 0 ms. Millisecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExponentialBackoff {
    /// The step of the first retry (attempt 0).
    pub initial: Duration,
    /// The ceiling of the step.
    pub max: Duration,
}

impl ExponentialBackoff {
    /// The wait before retry number `attempt` (0 for the first).
    pub fn delay(&self, attempt: u32, jitter: &mut dyn Jitter) -> Duration {
        let initial = u64::try_from(self.initial.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.max.as_millis()).unwrap_or(u64::MAX);
        let step = initial
            .saturating_mul(1u64 << attempt.min(20))
            .min(max)
            .max(1);
        Duration::from_millis(jitter.pick(step / 4, step))
    }
}
