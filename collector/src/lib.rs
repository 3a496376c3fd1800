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

pub mod accounts;
pub mod admin;
pub mod admin_cli;
pub mod analytics;
pub mod auth;
pub mod bills;
pub mod cli;
pub mod config;
pub mod conns;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod ingest;
pub mod limits;
pub mod logsafe;
pub mod metrics;
pub mod orgfile;
pub mod orgtree;
pub mod otlp;
pub mod otlp_export;
pub mod rollup;
pub mod server;
pub mod state;
pub mod store;
pub mod time;
pub mod usage_cli;
pub mod util;
pub mod verified;

pub use config::{CollectorConfig, ConfigError, LogFormat};
pub use server::{AppState, CollectorError, CollectorHandle, router, serve, spawn};
