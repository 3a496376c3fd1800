//! The state shared by all handlers (`AppState`: database, configuration, ingest
//! settings, open connections, counters) and the admin check the admin handlers share.

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::auth::{Principal, authenticate, require_admin};
use crate::config::CollectorConfig;
use crate::conns::ConnTrack;
use crate::db::Db;
use crate::error::ApiError;
use crate::limits::{PricingSettings, RateLimiter};
use crate::metrics::Metrics;

/// State shared by all handlers.
#[derive(Debug)]
pub struct AppState {
    /// Database.
    pub db: Db,
    /// Effective configuration.
    pub cfg: CollectorConfig,
    /// SHA-256 (hex) of the bootstrap admin token.
    pub bootstrap_sha256: Option<String>,
    /// Pricing for cost recomputation.
    pub pricing: PricingSettings,
    /// Per-key ingest limits.
    pub limiter: RateLimiter,
    /// Open connections.
    pub conns: ConnTrack,
    /// This collector's counters (`GET /metrics`), shared with its database pool.
    pub metrics: Arc<Metrics>,
}

/// The caller, when it holds an admin token (else 401/403).
pub(crate) async fn admin(st: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let p = authenticate(headers, st.bootstrap_sha256.as_deref(), &st.db).await?;
    require_admin(&p)?;
    Ok(p)
}
