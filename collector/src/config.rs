//! Collector configuration: a TOML file, then `GATEROUTER_COLLECTOR_*` environment
//! variables, then command-line flags (each later source wins). Unknown keys in the
//! file are refused so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors while loading or checking the configuration. Each names the field and the fix.
#[derive(Debug, thiserror::Error)]
#[error("collector config {field}: {message}. Fix: {fix}")]
pub struct ConfigError {
    /// Field or source, e.g. `listen` or `file /etc/collector.toml`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
}

fn err(field: &str, message: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
        fix: fix.into(),
    }
}

/// The collector's settings. Every field has a default except the admin token, which
/// is only needed to use the admin API.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Listen address. Default `127.0.0.1:8787`.
    pub listen: SocketAddr,
    /// Database URL: `sqlite://path` (default `sqlite://<data_dir>/collector.db`) or
    /// `postgres://user@host:port/db`. Several collectors may share one PostgreSQL.
    pub db: Option<String>,
    /// Directory for the default SQLite database. Default
    /// `<platform data dir>/gaterouter/collector`.
    pub data_dir: Option<PathBuf>,
    /// Bootstrap admin bearer token in clear (hashed in memory at once). Prefer
    /// `admin_token_sha256` in files.
    pub admin_token: Option<String>,
    /// Bootstrap admin token as the lowercase hex SHA-256 of the token.
    pub admin_token_sha256: Option<String>,
    /// Largest accepted request body in bytes. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Most records in one `POST /v1/usage` batch. Default 10 000.
    pub max_batch_records: usize,
    /// Sustained records per second allowed per API key (token bucket, per collector
    /// process); 0 disables. Default 20 000.
    pub rate_limit_records_per_sec: u64,
    /// Bucket size (burst) of the per-key limit. Default 2 x the rate, at least
    /// `max_batch_records`.
    pub rate_limit_burst: Option<u64>,
    /// Collector and client cost may differ by this many micro-dollars before the
    /// record is flagged as a mismatch (rounding). Default 1.
    pub cost_tolerance_micros: u64,
    /// The strongest configured model (`provider/model`, e.g. `openai/gpt-4o`): routing
    /// savings are measured against sending every call to it.
    pub strongest_model: Option<String>,
    /// Database connections in the pool. Default 8 (SQLite: 4).
    pub db_max_connections: Option<u32>,
    /// How long graceful shutdown waits for in-flight requests. Default 30 s.
    pub shutdown_timeout_secs: u64,
    /// Log format: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Most open client connections. At the cap, the oldest idle connection (no request
    /// in progress) is closed to admit a new one; when none is idle the new connection
    /// is closed at once (`collector_connections_shed_total`). Default 10 000.
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's headers, and may stay idle
    /// between keep-alive requests, before it is closed. Default 10.
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take, body upload included, before it is answered 408.
    /// Default 60.
    pub request_timeout_secs: u64,
    /// Largest `prompt_tokens + completion_tokens` of one record for a model whose
    /// catalog entry gives no context window (and for unknown models). For a model with
    /// a window the bound is `RECORD_TOKEN_FACTOR` (4) x (context window + max
    /// output). Records over the bound are refused. Default 10 000 000.
    pub max_record_tokens: u64,
    /// Largest `cost_micros` of one record (client figure). Default 1 000 000 000
    /// micro-dollars ($1 000).
    pub max_record_cost_micros: u64,
    /// Oldest accepted `ts_start`, in days before the collector's clock: older records
    /// are refused, so spend cannot be back-dated into closed budget windows. Default
    /// 35 (longer than the longest budget window, a month, plus a few days of spool).
    pub max_record_age_days: u64,
    /// What ingest does with a model the catalog does not price: `fallback` (default)
    /// stores it at the larger of the client's cost and
    /// `unknown_model_micros_per_mtok` per million tokens; `refuse` refuses the record.
    /// Either way the record is flagged as a cost mismatch.
    pub unknown_model: UnknownModel,
    /// Fallback price of unknown models, micro-dollars per million tokens (prompt +
    /// completion). Default 30 000 000 ($30 per million tokens).
    pub unknown_model_micros_per_mtok: u64,
    /// OpenTelemetry export (`otlp_export.rs`, collector/README.md "OpenTelemetry
    /// export"): base URL of an OTLP/HTTP receiver, e.g. `http://otel-collector:4318`;
    /// the exporter posts to `{otlp_endpoint}/v1/traces` and `{otlp_endpoint}/v1/metrics`.
    /// Absent (default): nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// Extra HTTP headers on every export request, e.g. `authorization` or a vendor's
    /// API key header. As an environment variable or flag: `name=value,name2=value2`.
    /// Default none.
    pub otlp_headers: BTreeMap<String, String>,
    /// Milliseconds between two polls for records to export (a full batch is followed
    /// by the next one at once). Default 5 000.
    pub otlp_interval_ms: u64,
    /// Most records per export request. Default 1 000.
    pub otlp_batch: usize,
    /// `service.name` of the exported resource. Default `gaterouter-collector`.
    pub otlp_service_name: String,
    /// A record is exported once its `received_ms` is this many milliseconds old. Ingest
    /// stamps `received_ms` before its transaction commits, and a request runs at most
    /// `request_timeout_secs`: waiting that long means no record can commit behind the
    /// export cursor. Default `request_timeout_secs` x 1 000 + 5 000 (65 000); lower it
    /// for fresher data at the risk of skipping a record whose ingest commits late.
    pub otlp_settle_ms: Option<u64>,
    /// Which signals to export: `traces`, `metrics` (default both). A receiver that takes
    /// traces only (Grafana Tempo, Langfuse) wants `["traces"]`. As an environment variable
    /// or flag: `traces,metrics`.
    pub otlp_signals: Vec<Signal>,
    /// Seconds between learning runs for the orgs that turned routing learning on
    /// (`PUT /v1/admin/orgs/{org}/routing`); 0 turns the periodic runs off (on demand:
    /// `POST /v1/admin/orgs/{org}/routing/learn`). Default 3 600.
    pub learn_interval_secs: u64,
}

/// `name=value,name2=value2` (the form of `OTEL_EXPORTER_OTLP_HEADERS`): each pair split
/// at its first `=`, names lowercased, surrounding spaces trimmed.
fn parse_headers(v: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(err(
                "otlp_headers",
                "a pair has no `=`",
                "write name=value pairs separated by commas, e.g. authorization=Bearer abc,x-scope=acme",
            ));
        };
        out.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    Ok(out)
}

/// Pricing rule for models the catalog does not know.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownModel {
    /// Price at `unknown_model_micros_per_mtok` (or the client's cost when higher), flagged.
    #[default]
    Fallback,
    /// Refuse the record.
    Refuse,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// An exported signal (`otlp_signals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Spans, `POST /v1/traces`.
    Traces,
    /// Metrics, `POST /v1/metrics`.
    Metrics,
}

/// Both signals, in export order.
pub const SIGNALS: [Signal; 2] = [Signal::Traces, Signal::Metrics];

impl Signal {
    /// From its name (`traces`, `metrics`).
    pub fn parse(s: &str) -> Option<Signal> {
        SIGNALS.into_iter().find(|x| x.label() == s)
    }
    /// The `/metrics` label and the name in `otlp_signals`.
    pub fn label(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            db: None,
            data_dir: None,
            admin_token: None,
            admin_token_sha256: None,
            max_body_bytes: 16 << 20,
            max_batch_records: 10_000,
            rate_limit_records_per_sec: 20_000,
            rate_limit_burst: None,
            cost_tolerance_micros: 1,
            strongest_model: None,
            db_max_connections: None,
            shutdown_timeout_secs: 30,
            log_format: LogFormat::Text,
            max_connections: 10_000,
            header_read_timeout_secs: 10,
            request_timeout_secs: 60,
            max_record_tokens: 10_000_000,
            max_record_cost_micros: 1_000_000_000,
            max_record_age_days: 35,
            unknown_model: UnknownModel::Fallback,
            unknown_model_micros_per_mtok: 30_000_000,
            otlp_endpoint: None,
            otlp_headers: BTreeMap::new(),
            otlp_interval_ms: 5_000,
            otlp_batch: 1_000,
            otlp_service_name: DEFAULT_OTLP_SERVICE_NAME.to_owned(),
            otlp_settle_ms: None,
            otlp_signals: SIGNALS.to_vec(),
            learn_interval_secs: 3_600,
        }
    }
}

/// Default `service.name` of exported telemetry.
pub const DEFAULT_OTLP_SERVICE_NAME: &str = "gaterouter-collector";

/// Prefix of the environment variables read by [`CollectorConfig::apply_env`].
pub const ENV_PREFIX: &str = "GATEROUTER_COLLECTOR_";

impl CollectorConfig {
    /// Parse a TOML document (unknown keys are errors).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            err(
                &format!("file {origin}"),
                e.message().to_owned(),
                "fix the key or value named above; unknown keys are refused",
            )
        })
    }

    /// Read a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                &format!("file {}", path.display()),
                format!("cannot read it: {e}"),
                "check the --config path",
            )
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Apply `GATEROUTER_COLLECTOR_<FIELD>` variables from `vars` (e.g. the process
    /// environment). Unknown `GATEROUTER_COLLECTOR_*` names are errors.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(
        &mut self,
        vars: I,
    ) -> Result<(), ConfigError> {
        for (k, v) in vars {
            let Some(name) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let field = name.to_ascii_lowercase();
            self.set(&field, &v).map_err(|mut e| {
                e.field = format!("environment variable {k}");
                e
            })?;
        }
        Ok(())
    }

    /// Set one field from its text form (used by env and flags).
    pub fn set(&mut self, field: &str, v: &str) -> Result<(), ConfigError> {
        let num = |f: &str| -> Result<u64, ConfigError> {
            v.trim().parse::<u64>().map_err(|_| {
                err(
                    f,
                    format!("`{v}` is not a non-negative integer"),
                    "give a number",
                )
            })
        };
        match field {
            "listen" => {
                self.listen = v.parse().map_err(|_| {
                    err(
                        "listen",
                        format!("`{v}` is not an address"),
                        "write e.g. 127.0.0.1:8787",
                    )
                })?
            }
            "db" => self.db = Some(v.to_owned()),
            "data_dir" => self.data_dir = Some(PathBuf::from(v)),
            "admin_token" => self.admin_token = Some(v.to_owned()),
            "admin_token_sha256" => self.admin_token_sha256 = Some(v.to_owned()),
            "max_body_bytes" => self.max_body_bytes = num(field)? as usize,
            "max_batch_records" => self.max_batch_records = num(field)? as usize,
            "rate_limit_records_per_sec" => self.rate_limit_records_per_sec = num(field)?,
            "rate_limit_burst" => self.rate_limit_burst = Some(num(field)?),
            "cost_tolerance_micros" => self.cost_tolerance_micros = num(field)?,
            "strongest_model" => self.strongest_model = Some(v.to_owned()),
            "db_max_connections" => self.db_max_connections = Some(num(field)? as u32),
            "shutdown_timeout_secs" => self.shutdown_timeout_secs = num(field)?,
            "max_connections" => self.max_connections = num(field)? as usize,
            "header_read_timeout_secs" => self.header_read_timeout_secs = num(field)?,
            "request_timeout_secs" => self.request_timeout_secs = num(field)?,
            "max_record_tokens" => self.max_record_tokens = num(field)?,
            "max_record_cost_micros" => self.max_record_cost_micros = num(field)?,
            "max_record_age_days" => self.max_record_age_days = num(field)?,
            "unknown_model_micros_per_mtok" => self.unknown_model_micros_per_mtok = num(field)?,
            "otlp_endpoint" => self.otlp_endpoint = Some(v.to_owned()),
            "otlp_headers" => self.otlp_headers = parse_headers(v)?,
            "otlp_interval_ms" => self.otlp_interval_ms = num(field)?,
            "learn_interval_secs" => self.learn_interval_secs = num(field)?,
            "otlp_batch" => self.otlp_batch = num(field)? as usize,
            "otlp_service_name" => self.otlp_service_name = v.to_owned(),
            "otlp_settle_ms" => self.otlp_settle_ms = Some(num(field)?),
            "otlp_signals" => {
                self.otlp_signals = v
                    .split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|x| {
                        Signal::parse(x).ok_or_else(|| {
                            err(
                                "otlp_signals",
                                format!("`{}` is not a signal", crate::logsafe::escape(x)),
                                "use traces, metrics or traces,metrics",
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            "unknown_model" => {
                self.unknown_model = match v {
                    "fallback" => UnknownModel::Fallback,
                    "refuse" => UnknownModel::Refuse,
                    _ => {
                        return Err(err(
                            "unknown_model",
                            format!("`{v}` is unknown"),
                            "use fallback or refuse",
                        ));
                    }
                }
            }
            "log_format" => {
                self.log_format = match v {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => {
                        return Err(err(
                            "log_format",
                            format!("`{v}` is unknown"),
                            "use text or json",
                        ));
                    }
                }
            }
            other => {
                return Err(err(
                    other,
                    "is not a collector setting",
                    "see `gaterouter-collector --help` for the settings",
                ));
            }
        }
        Ok(())
    }

    /// Check ranges and formats.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(err(
                "max_body_bytes",
                format!("{} is too small", self.max_body_bytes),
                "use at least 1024",
            ));
        }
        if !(1..=100_000).contains(&self.max_batch_records) {
            return Err(err(
                "max_batch_records",
                format!("{} is out of range", self.max_batch_records),
                "use 1..=100000",
            ));
        }
        if self.max_connections < 16 {
            return Err(err(
                "max_connections",
                format!("{} is too small", self.max_connections),
                "use at least 16",
            ));
        }
        if self.header_read_timeout_secs == 0 || self.request_timeout_secs == 0 {
            return Err(err(
                "header_read_timeout_secs",
                "a timeout of 0 s closes every connection",
                "use at least 1 s",
            ));
        }
        if self.max_record_tokens == 0 || self.max_record_tokens > (1 << 40) {
            return Err(err(
                "max_record_tokens",
                format!("{} is out of range", self.max_record_tokens),
                "use 1..=2^40",
            ));
        }
        if self.max_record_cost_micros == 0 || self.max_record_cost_micros > (1 << 50) {
            return Err(err(
                "max_record_cost_micros",
                format!("{} is out of range", self.max_record_cost_micros),
                "use 1..=2^50",
            ));
        }
        if !(1..=36_500).contains(&self.max_record_age_days) {
            return Err(err(
                "max_record_age_days",
                format!("{} is out of range", self.max_record_age_days),
                "use 1..=36500 (default 35)",
            ));
        }
        if self.unknown_model_micros_per_mtok > 1_000_000_000_000 {
            return Err(err(
                "unknown_model_micros_per_mtok",
                format!("{} is out of range", self.unknown_model_micros_per_mtok),
                "use at most 10^12",
            ));
        }
        if let Some(h) = &self.admin_token_sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(
                    "admin_token_sha256",
                    "is not 64 hex digits",
                    "store the output of `printf %s TOKEN | sha256sum`",
                ));
            }
        }
        if let Some(t) = &self.admin_token {
            if t.len() < 16 {
                return Err(err(
                    "admin_token",
                    "is shorter than 16 characters",
                    "use a long random token",
                ));
            }
        }
        if let Some(m) = &self.strongest_model {
            if gaterouter::pricing::Catalog::builtin().lookup(m).is_none() {
                return Err(err(
                    "strongest_model",
                    format!("`{m}` has no price in the catalog"),
                    "name a priced model such as openai/gpt-4o",
                ));
            }
        }
        self.db_url()?;
        self.validate_otlp()?;
        Ok(())
    }

    fn validate_otlp(&self) -> Result<(), ConfigError> {
        self.otlp_endpoint_url()?;
        for (name, value) in &self.otlp_headers {
            let field = format!("otlp_headers.{name}");
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                err(
                    &field,
                    "is not a valid HTTP header name",
                    "use letters, digits and `-`, e.g. authorization or x-api-key",
                )
            })?;
            if n == reqwest::header::CONTENT_TYPE
                || n == reqwest::header::CONTENT_LENGTH
                || n == reqwest::header::HOST
            {
                return Err(err(&field, "is set by the exporter itself", "remove it"));
            }
            // The value is not echoed: it is usually a secret.
            reqwest::header::HeaderValue::from_str(value).map_err(|_| err(&field, "has a value that is not valid in an HTTP header (control characters or non-ASCII)", "give a printable ASCII value"))?;
        }
        if !(10..=3_600_000).contains(&self.otlp_interval_ms) {
            return Err(err(
                "otlp_interval_ms",
                format!("{} is out of range", self.otlp_interval_ms),
                "use 10..=3600000 (default 5000)",
            ));
        }
        if !(1..=10_000).contains(&self.otlp_batch) {
            return Err(err(
                "otlp_batch",
                format!("{} is out of range", self.otlp_batch),
                "use 1..=10000 (default 1000)",
            ));
        }
        if self.otlp_service_name.trim().is_empty() || self.otlp_service_name.len() > 255 {
            return Err(err(
                "otlp_service_name",
                "is empty or longer than 255 bytes",
                "name the service, e.g. gaterouter-collector (the default)",
            ));
        }
        if self.otlp_signals.is_empty() {
            return Err(err(
                "otlp_signals",
                "is empty",
                "name at least one of traces, metrics (default both), or unset otlp_endpoint to turn export off",
            ));
        }
        if self.otlp_settle_ms.is_some_and(|s| s > 86_400_000) {
            return Err(err(
                "otlp_settle_ms",
                "is more than a day",
                "use at most 86400000 (default request_timeout_secs x 1000 + 5000)",
            ));
        }
        Ok(())
    }

    /// The OTLP/HTTP base URL without a trailing `/`, or `None` when export is off.
    pub fn otlp_endpoint_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(raw) = &self.otlp_endpoint else {
            return Ok(None);
        };
        const FIX: &str = "give the base URL of an OTLP/HTTP receiver, e.g. http://otel-collector:4318 (the exporter appends /v1/traces and /v1/metrics)";
        let base = raw.trim().trim_end_matches('/');
        let u = url::Url::parse(base).map_err(|e| {
            err(
                "otlp_endpoint",
                format!("`{}` is not a URL ({e})", crate::logsafe::escape(raw)),
                FIX,
            )
        })?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
            return Err(err(
                "otlp_endpoint",
                format!(
                    "`{}` is not an http:// or https:// URL with a host",
                    crate::logsafe::escape(raw)
                ),
                FIX,
            ));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(err(
                "otlp_endpoint",
                "carries credentials in the URL",
                "remove them from the URL and set an authorization header in otlp_headers",
            ));
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err(err(
                "otlp_endpoint",
                format!("`{}` has a query or fragment", crate::logsafe::escape(raw)),
                FIX,
            ));
        }
        if base.ends_with("/v1/traces")
            || base.ends_with("/v1/metrics")
            || base.ends_with("/v1/logs")
        {
            return Err(err(
                "otlp_endpoint",
                format!("`{}` names a signal path", crate::logsafe::escape(raw)),
                "give the base URL without /v1/traces or /v1/metrics: the exporter appends them",
            ));
        }
        Ok(Some(base.to_owned()))
    }

    /// Effective `otlp_settle_ms`.
    pub fn otlp_settle(&self) -> u64 {
        self.otlp_settle_ms.unwrap_or_else(|| {
            self.request_timeout_secs
                .saturating_mul(1000)
                .saturating_add(5000)
        })
    }

    /// The database URL, defaulting to SQLite under the data dir.
    pub fn db_url(&self) -> Result<String, ConfigError> {
        match &self.db {
            Some(u)
                if u.starts_with("sqlite:")
                    || u.starts_with("postgres://")
                    || u.starts_with("postgresql://") =>
            {
                Ok(u.clone())
            }
            Some(u) => Err(err(
                "db",
                format!("`{u}` is neither sqlite:// nor postgres://"),
                "write sqlite:///path/collector.db or postgres://user@host:5432/db",
            )),
            None => {
                let dir = self
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| gaterouter::usage::default_data_dir().join("collector"));
                Ok(format!("sqlite://{}", dir.join("collector.db").display()))
            }
        }
    }

    /// Effective rate-limit burst.
    pub fn burst(&self) -> u64 {
        self.rate_limit_burst.unwrap_or_else(|| {
            (self.rate_limit_records_per_sec * 2).max(self.max_batch_records as u64)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_and_named() {
        let e = CollectorConfig::from_toml("listen = \"127.0.0.1:1\"\nlisten_addr = 3\n", "t.toml")
            .unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let mut c = CollectorConfig::default();
        let e = c
            .apply_env([("GATEROUTER_COLLECTOR_NOPE".to_owned(), "1".to_owned())])
            .unwrap_err();
        assert!(e.to_string().contains("GATEROUTER_COLLECTOR_NOPE"), "{e}");
    }

    #[test]
    fn file_then_env_then_set() {
        let mut c = CollectorConfig::from_toml(
            "listen = \"127.0.0.1:9000\"\nmax_batch_records = 50\n",
            "t",
        )
        .unwrap();
        c.apply_env([
            (
                "GATEROUTER_COLLECTOR_MAX_BATCH_RECORDS".to_owned(),
                "60".to_owned(),
            ),
            ("OTHER".to_owned(), "x".to_owned()),
        ])
        .unwrap();
        assert_eq!(c.max_batch_records, 60);
        c.set("listen", "127.0.0.1:9001").unwrap();
        assert_eq!(c.listen.port(), 9001);
        c.validate().unwrap();
        c.db = Some("mysql://x".into());
        assert!(c.validate().unwrap_err().to_string().contains("db"));
    }

    #[test]
    fn otlp_settings() {
        let c = CollectorConfig::default();
        assert_eq!(
            c.otlp_endpoint_url().unwrap(),
            None,
            "export is off by default"
        );
        assert_eq!(
            (
                c.otlp_interval_ms,
                c.otlp_batch,
                c.otlp_service_name.as_str(),
                c.otlp_settle()
            ),
            (5000, 1000, "gaterouter-collector", 65_000)
        );
        let mut c = CollectorConfig::from_toml("otlp_endpoint = \"http://otel:4318/\"\notlp_batch = 10\n[otlp_headers]\nx-api-key = \"k\"\n", "t").unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.otlp_endpoint_url().unwrap().as_deref(),
            Some("http://otel:4318")
        );
        assert_eq!(
            c.otlp_headers.get("x-api-key").map(String::as_str),
            Some("k")
        );
        c.apply_env([(
            "GATEROUTER_COLLECTOR_OTLP_HEADERS".to_owned(),
            "Authorization=Basic YTpi==, x-scope = acme".to_owned(),
        )])
        .unwrap();
        assert_eq!(
            c.otlp_headers.get("authorization").map(String::as_str),
            Some("Basic YTpi==")
        );
        assert_eq!(
            c.otlp_headers.get("x-scope").map(String::as_str),
            Some("acme")
        );
        c.validate().unwrap();
        for (bad, needle) in [
            ("otel:4318", "otlp_endpoint"),
            ("ftp://otel:4318", "otlp_endpoint"),
            ("http://otel:4318/v1/traces", "without /v1/traces"),
            ("http://user:pw@otel:4318", "otlp_headers"),
            ("http://otel:4318?x=1", "query"),
        ] {
            c.otlp_endpoint = Some(bad.into());
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("Fix:"), "{bad}: {e}");
        }
        c.otlp_endpoint = Some("https://otlp.example.com/otlp".into());
        c.validate().unwrap();
        c.otlp_headers
            .insert("bad header".into(), "secret-value".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("otlp_headers.bad header") && !e.contains("secret-value"),
            "{e}"
        );
        c.otlp_headers.clear();
        c.otlp_headers.insert("x-key".into(), "line\nbreak".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("otlp_headers.x-key") && !e.contains("line"),
            "{e}"
        );
        c.otlp_headers.clear();
        c.otlp_batch = 0;
        assert!(c.validate().unwrap_err().to_string().contains("otlp_batch"));
        c.otlp_batch = 1;
        assert_eq!(c.otlp_signals, vec![Signal::Traces, Signal::Metrics]);
        c.set("otlp_signals", "traces").unwrap();
        assert_eq!(c.otlp_signals, vec![Signal::Traces]);
        assert!(
            c.set("otlp_signals", "traces,logs")
                .unwrap_err()
                .to_string()
                .contains("`logs`")
        );
        c.set("otlp_signals", "").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("otlp_signals")
        );
        let f = CollectorConfig::from_toml("otlp_signals = [\"metrics\"]\n", "t").unwrap();
        assert_eq!(f.otlp_signals, vec![Signal::Metrics]);
        assert!(CollectorConfig::from_toml("otlp_signals = [\"logs\"]\n", "t").is_err());
        assert!(
            CollectorConfig::default()
                .set("otlp_headers", "novalue")
                .unwrap_err()
                .to_string()
                .contains("name=value")
        );
    }
}
