//! What ingest holds records to, kept in the shared state: the pricing settings
//! (catalog, tolerance, per-record bounds) and the per-key rate limiter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use gaterouter::pricing::Catalog;

/// Pricing settings.
#[derive(Debug, Clone)]
pub struct PricingSettings {
    /// Catalog.
    pub catalog: Catalog,
    /// Strongest model for the savings baseline.
    pub strongest: Option<String>,
    /// Tolerated difference.
    pub tolerance_micros: u64,
    /// Token bound of one record when the model has no context window in the catalog.
    pub max_record_tokens: u64,
    /// Largest client `cost_micros` of one record.
    pub max_record_cost_micros: u64,
    /// Oldest accepted `ts_start`, milliseconds before now.
    pub max_record_age_ms: u64,
    /// Rule for models the catalog does not price.
    pub unknown_model: crate::config::UnknownModel,
    /// Fallback price, micro-dollars per million tokens.
    pub unknown_model_micros_per_mtok: u64,
}

/// Per-key token buckets (records per second), per process.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` records/s sustained, `burst` bucket size; rate 0 disables.
    pub fn new(rate: u64, burst: u64) -> Self {
        RateLimiter {
            rate: rate as f64,
            burst: burst as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take `counts` for every key, or nothing: returns the first limited key and the
    /// seconds to wait.
    pub fn take(&self, counts: &HashMap<String, u64>) -> Result<(), (String, u64)> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for (k, n) in counts {
            let (tokens, last) = b.get(k).copied().unwrap_or((self.burst, now));
            let avail =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
            if avail < *n as f64 {
                let wait = ((*n as f64 - avail) / self.rate).ceil().max(1.0) as u64;
                return Err((k.clone(), wait));
            }
        }
        for (k, n) in counts {
            let (tokens, last) = b.get(k).copied().unwrap_or((self.burst, now));
            let avail =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
            b.insert(k.clone(), (avail - *n as f64, now));
        }
        if b.len() > 100_000 {
            b.retain(|_, (_, last)| now.duration_since(*last).as_secs() < 60);
        }
        Ok(())
    }
}
