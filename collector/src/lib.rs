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
// Read top-down, a request goes api → domain → store → db.

// Ground: no database.
pub mod config; // `CollectorConfig`: file, then environment, then flags
pub mod logsafe; // request values made safe for logs, errors and CSV
pub mod metrics; // Prometheus counters of one collector (`GET /metrics`)
pub mod otlp; // stored records as OTLP/JSON bodies (pure)
pub mod rollup_schema; // the rollup tables: grains, keys, measures, their SQL text (pure)
pub mod time; // UTC calendar helpers (month buckets) and the collector's clock

// db and store: the pool and the SQL, knowing nothing of the HTTP handlers.
pub mod auth; // bearer tokens and dashboard sessions
pub mod db; // the pool over SQLite/PostgreSQL, migrations, parameter binding, the metrics it times
pub mod error; // `ApiError`: the JSON error answer
pub mod rollup; // hour/day/month rollup tables, their deltas and rebuild
pub mod store; // typed SQL per stored thing: accounts, analytics queries, audit, bills, budgets, keys, learning, org tree, policies, reports, sessions, usage
pub mod util; // UUIDv7 ids, id and public-key checks, the secret key file write

// Domain: verification, accounts, reports, and the state the handlers share.
pub mod accounts; // reserve, settle; ingest's budget hooks and org-tree check
pub mod analytics; // the reports of `/v1/analytics/{report}`: request checks, tables (queries in store::analytics)
pub mod bills; // a month's bill (JSON/CSV/HTML)
pub mod conns; // open connections: the cap and idle eviction
pub mod ingest; // verify, price and store a batch of signed records
pub mod learning; // routing that learns: runs, periodic task, an org's routing state
pub mod limits; // pricing settings and the per-key rate limiter
pub mod orgfile; // the org-tree file (TOML/YAML/JSON) and its checks
pub mod orgtree; // apply/export an org tree, the checks of levels
pub mod state; // `AppState` (database, config, limits, connections, metrics), the admin check
pub mod verified; // a verified record, or why it was refused

// API: the route table and the thin HTTP handlers, one module per area.
pub mod api;

// The server, the exporter it starts, and the command lines.
pub mod admin_cli; // `gaterouter admin ...` over the admin API
pub mod cli; // `serve` settings shared by both binaries
pub mod otlp_export; // background OTLP export of stored records
pub mod server; // router assembly from `api::routes`, `serve`/`spawn`, graceful shutdown
pub mod usage_cli; // `gaterouter usage ...` over the analytics API

pub use config::{CollectorConfig, ConfigError, LogFormat};
pub use server::{AppState, CollectorError, CollectorHandle, router, serve, spawn};
