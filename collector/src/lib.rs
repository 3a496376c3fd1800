//! GateRouter usage collector.
//!
//! Receives signed usage records from `gaterouter::usage::Recorder` (`POST /v1/usage`),
//! verifies each Ed25519 signature against the key registered for its `api_key_id`,
//! enforces the key's scope, recomputes the cost with `gaterouter::pricing`, and stores
//! records exactly once in SQLite (default) or PostgreSQL (shared by several collector
//! processes). Serves an admin API, an analytics API (JSON/CSV), Prometheus metrics, an
//! OpenAPI document and a dashboard, and optionally exports the records as OpenTelemetry
//! spans and metrics (`otlp_export`).
//!
//! Start one in-process:
//! ```no_run
//! # async fn demo() -> Result<(), gaterouter_collector::CollectorError> {
//! let mut cfg = gaterouter_collector::CollectorConfig::default();
//! cfg.listen = "127.0.0.1:0".parse().unwrap();
//! cfg.db = Some("sqlite:///tmp/collector.db".into());
//! cfg.admin_token = Some("a-long-random-admin-token".into());
//! let handle = gaterouter_collector::spawn(cfg).await?;
//! println!("collector at {}", handle.url());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

// The map of the crate, in layers from the ground up: a module imports only modules of
// its own layer or of the layers listed before it (within a layer, alphabetical order).

// Ground: no database.
pub mod config; // `CollectorConfig`: file, then environment, then flags
pub mod logsafe; // request values made safe for logs, errors and CSV
pub mod metrics; // Prometheus counters (`GET /metrics`)
pub mod otlp; // stored records as OTLP/JSON bodies (pure)
pub mod time; // UTC calendar helpers (month buckets)

// The database and what is stored in it: SQL, knowing nothing of the HTTP handlers.
pub mod auth; // bearer tokens and dashboard sessions
pub mod db; // the pool over SQLite/PostgreSQL, migrations, parameter binding
pub mod error; // `ApiError`: the JSON error answer
pub mod rollup; // hour/day/month rollup tables, their deltas and rebuild
pub mod store; // budgets, policies, API keys, the audit log
pub mod util; // clock, UUIDv7 ids, id and public-key checks

// Verification and accounts logic, and the state the handlers share.
pub mod accounts; // `/v1/policy`, reservations, settles; ingest's budget hooks
pub mod conns; // open connections: the cap and idle eviction
pub mod ingest; // verify, price and store a batch of signed records
pub mod limits; // pricing settings and the per-key rate limiter
pub mod orgfile; // the org-tree file (TOML/YAML/JSON) and its checks
pub mod state; // `AppState`, and the admin check of admin handlers
pub mod verified; // a verified record, or why it was refused

// HTTP handlers (`api` holds the route table and the thin handlers; the modules
// after it still hold handlers of their own area, moving into `api`).
pub mod admin; // `/v1/admin/*`: units, keys, tokens, audit
pub mod analytics; // `/v1/analytics/{report}` (JSON/CSV)
pub mod api; // the route table; handlers of ingest and operations
pub mod bills; // `/v1/admin/bills`
pub mod learning; // `/v1/admin/orgs/{org}/routing`: routing that learns, its runs
pub mod orgtree; // `/v1/admin/org-tree`, policies, budgets, members, alerts

// The server, the exporter it starts, and the command lines.
pub mod admin_cli; // `gaterouter admin ...` over the admin API
pub mod cli; // `serve` settings shared by both binaries
pub mod otlp_export; // background OTLP export of stored records
pub mod server; // router, `serve`/`spawn`, graceful shutdown
pub mod usage_cli; // `gaterouter usage ...` over the analytics API

pub use config::{CollectorConfig, ConfigError, LogFormat};
pub use server::{AppState, CollectorError, CollectorHandle, router, serve, spawn};
