//! Command-line settings shared by the `gaterouter-collector` binary and
//! `gaterouter collector serve`: the config file, then `GATEROUTER_COLLECTOR_*`
//! environment variables, then flags.

use std::path::PathBuf;

use clap::Args;

use crate::{CollectorConfig, ConfigError};

/// Settings of a collector run.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (unknown keys are refused).
    #[arg(long, env = "GATEROUTER_COLLECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8787].
    #[arg(long)]
    pub listen: Option<String>,
    /// Database: sqlite://PATH or postgres://USER@HOST:PORT/DB [default: sqlite under the data dir].
    #[arg(long)]
    pub db: Option<String>,
    /// Data directory for the default SQLite database.
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Bootstrap admin token (prefer GATEROUTER_COLLECTOR_ADMIN_TOKEN or admin_token_sha256 in the file).
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Strongest configured model (provider/model) for routing savings.
    #[arg(long)]
    pub strongest_model: Option<String>,
    /// Largest request body in bytes.
    #[arg(long)]
    pub max_body_bytes: Option<String>,
    /// Most records per batch.
    #[arg(long)]
    pub max_batch_records: Option<String>,
    /// Per-key records/s (0 = unlimited).
    #[arg(long)]
    pub rate_limit_records_per_sec: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// OpenTelemetry export: base URL of an OTLP/HTTP receiver, e.g.
    /// http://otel-collector:4318 [default: off].
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Headers of every export request: name=value,name2=value2 (prefer the environment
    /// variable GATEROUTER_COLLECTOR_OTLP_HEADERS for secrets).
    #[arg(long)]
    pub otlp_headers: Option<String>,
    /// Milliseconds between export polls [default: 5000].
    #[arg(long)]
    pub otlp_interval_ms: Option<String>,
    /// Most records per export request [default: 1000].
    #[arg(long)]
    pub otlp_batch: Option<String>,
    /// service.name of exported telemetry [default: gaterouter-collector].
    #[arg(long)]
    pub otlp_service_name: Option<String>,
    /// Export a record once it is this many ms old [default: request_timeout_secs x 1000 + 5000].
    #[arg(long)]
    pub otlp_settle_ms: Option<String>,
    /// Signals to export: traces, metrics or traces,metrics [default: traces,metrics].
    #[arg(long)]
    pub otlp_signals: Option<String>,
    /// Seconds between routing learning runs for orgs that learn; 0: only on demand
    /// [default: 3600].
    #[arg(long)]
    pub learn_interval_secs: Option<String>,
}

impl ServeArgs {
    /// The validated config: file, then environment, then flags.
    pub fn load(&self) -> Result<CollectorConfig, ConfigError> {
        let mut cfg = match &self.config {
            Some(p) => CollectorConfig::from_file(p)?,
            None => CollectorConfig::default(),
        };
        // GATEROUTER_COLLECTOR_URL is where `gaterouter admin` finds a collector, not a
        // collector setting: the same shell often sets both.
        cfg.apply_env(std::env::vars().filter(|(k, _)| {
            k != "GATEROUTER_COLLECTOR_CONFIG" && k != "GATEROUTER_COLLECTOR_URL"
        }))?;
        for (field, v) in [
            ("listen", &self.listen),
            ("db", &self.db),
            ("data_dir", &self.data_dir),
            ("admin_token", &self.admin_token),
            ("strongest_model", &self.strongest_model),
            ("max_body_bytes", &self.max_body_bytes),
            ("max_batch_records", &self.max_batch_records),
            (
                "rate_limit_records_per_sec",
                &self.rate_limit_records_per_sec,
            ),
            ("log_format", &self.log_format),
            ("otlp_endpoint", &self.otlp_endpoint),
            ("otlp_headers", &self.otlp_headers),
            ("otlp_interval_ms", &self.otlp_interval_ms),
            ("otlp_batch", &self.otlp_batch),
            ("otlp_service_name", &self.otlp_service_name),
            ("otlp_settle_ms", &self.otlp_settle_ms),
            ("otlp_signals", &self.otlp_signals),
            ("learn_interval_secs", &self.learn_interval_secs),
        ] {
            if let Some(v) = v {
                cfg.set(field, v)?;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}
