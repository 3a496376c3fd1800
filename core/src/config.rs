//! Configuration: plain serde data, from a TOML file or a map (bindings pass dicts).
//!
//! Every struct refuses unknown fields, so a typo is an error naming the file and the
//! field rather than a silently ignored setting. Defaults are documented on each field
//! and in the README's config reference.
//!
//! Built-in providers (`openai`, `anthropic`, `gemini`, `deepseek`, `mistral`, `groq`,
//! `together`, `ollama`) are always available with their public base URLs and the usual
//! API-key environment variables; a `[providers.NAME]` table overrides any of their
//! fields or adds a new provider (an OpenAI-compatible host needs only `kind = "openai"`
//! and `base_url`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model_id::ModelId;
pub use gaterouter_types::secret::Secret;

pub use gaterouter_providers::{ProviderKind, ResolvedProvider};
pub use gaterouter_types::identity::Identity;
pub use gaterouter_usage::config::{
    DEFAULT_SIGNING_KEY_ENV, KeySource, ReportingConfig, ReportingMode,
};

/// One provider entry. For built-in names every field is optional (it overrides the
/// built-in); for a new name `kind` and `base_url` are required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Wire format: `openai`, `anthropic` or `gemini`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProviderKind>,
    /// Base URL. OpenAI-style: up to and including `/v1` (`https://api.openai.com/v1`);
    /// Anthropic: the host (`https://api.anthropic.com`); Gemini: up to and including the
    /// API version (`https://generativelanguage.googleapis.com/v1beta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The API key inline. Prefer `api_key_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Name of the environment variable holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Extra HTTP headers sent with every request (e.g. `OpenAI-Organization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Anthropic `anthropic-version` header. Default `2023-06-01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Per-provider request timeout in milliseconds (overrides `timeouts.request_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
}

/// Timeouts in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP + TLS connect. Default 10 000.
    pub connect_ms: u64,
    /// Whole non-streaming request, and a stream's first byte. Default 120 000.
    pub request_ms: u64,
    /// Longest silence between two stream events. Default 60 000.
    pub stream_idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 10_000,
            request_ms: 120_000,
            stream_idle_ms: 60_000,
        }
    }
}

/// Retry policy for 429, 5xx, 529, timeouts and connection failures. 4xx request
/// errors are never retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt. Default 2.
    pub max_retries: u32,
    /// First backoff. Default 500.
    pub initial_backoff_ms: u64,
    /// Backoff ceiling. Default 8 000.
    pub max_backoff_ms: u64,
    /// A `retry-after` longer than this is not waited for: the error is returned.
    /// Default 60 000.
    pub max_retry_after_ms: u64,
    /// Total time budget for all attempts of one call. Default 180 000.
    pub max_total_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 2,
            initial_backoff_ms: 500,
            max_backoff_ms: 8_000,
            max_retry_after_ms: 60_000,
            max_total_ms: 180_000,
        }
    }
}

/// A model the app may use. When `[[models]]` is empty, any model of a configured
/// provider may be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// `provider/model`.
    pub id: String,
    /// Name sent to the provider when it differs from the model part of `id`
    /// (a deployment name, a dated snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_model: Option<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Provider entries, merged over the built-ins.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Whether the built-in providers are available. Default true.
    pub builtin_providers: bool,
    /// Allowed models (empty: all models of configured providers).
    pub models: Vec<ModelEntry>,
    /// The caller's identity.
    pub identity: Identity,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retries.
    pub retry: RetryConfig,
    /// Usage records: signing, spool and collector (`[reporting]`).
    #[serde(default)]
    pub reporting: ReportingConfig,
    /// Routing for `auto`: tiers, policy, fallbacks, circuit breaker (`[routing]`).
    #[serde(default)]
    pub routing: crate::routing::RoutingConfig,
    /// Price overrides and additions, keyed by `provider/model` (USD per million tokens).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, crate::pricing::ModelPriceOverride>,
    /// Organization policies and budgets fetched from the collector (`[policy]`).
    #[serde(default)]
    pub policy: PolicyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            providers: BTreeMap::new(),
            builtin_providers: true,
            models: Vec::new(),
            identity: Identity::default(),
            timeouts: Timeouts::default(),
            retry: RetryConfig::default(),
            reporting: ReportingConfig::default(),
            routing: crate::routing::RoutingConfig::default(),
            prices: BTreeMap::new(),
            policy: PolicyConfig::default(),
        }
    }
}

/// Whether the client enforces the organization's policy and budgets (`policy.enforce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforceMode {
    /// On when `reporting.collector_url`, `identity.api_key_id` and a signing key are
    /// all configured (the key that signs records also signs policy requests); off
    /// otherwise. Default.
    #[default]
    Auto,
    /// Never ask the collector; only the local `[[models]]` allow-list applies.
    Off,
    /// Like `auto`, but a missing collector URL, key id or signing key is a config
    /// error at startup instead of silently running unenforced.
    Required,
}

/// What to do when the collector cannot be reached (`policy.when_unreachable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnreachable {
    /// Keep enforcing the last policy fetched (its rules, and its budgets minus what
    /// this process spent since it was fetched) for up to `max_stale_ms`; after that,
    /// refuse calls (`PERMISSION_DENIED`, rule `policy_unavailable`). When no policy was
    /// ever fetched there is nothing to enforce: calls are allowed (fail open) with a
    /// warning, because refusing every call of a fresh process while the collector is
    /// briefly down would turn a reporting outage into an application outage; choose
    /// `deny` for fail-closed. Default.
    #[default]
    LastKnown,
    /// Refuse every call while the collector cannot be reached (fail closed).
    Deny,
    /// Allow calls without policy or budget checks while the collector cannot be
    /// reached (fail open), with a warning.
    Allow,
}

/// `[policy]`: fetching and enforcing the organization's policy and budgets (see
/// `collector/ACCOUNTS.md`). Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// `auto` (default), `off` or `required`.
    pub enforce: EnforceMode,
    /// How long a fetched policy is used before asking again. Unset (default): the
    /// collector's `ttl_ms` (30 000 unless it says otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_ttl_ms: Option<u64>,
    /// Timeout of each policy, reservation and settle request. Default 2 000.
    pub request_timeout_ms: u64,
    /// `last_known` (default), `deny` or `allow`.
    pub when_unreachable: WhenUnreachable,
    /// Oldest last-known policy still enforced offline; older, calls are refused.
    /// Default 86 400 000 (24 h).
    pub max_stale_ms: u64,
    /// The collector's weights public key (standard base64, printed by `gaterouter admin
    /// routing show --org ORG`): learned router weights served with the policy
    /// are used only when this key signed them. Unset (default): any validly signed
    /// weights from the collector this client talks to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights_public_key: Option<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            enforce: EnforceMode::Auto,
            cache_ttl_ms: None,
            request_timeout_ms: 2_000,
            when_unreachable: WhenUnreachable::LastKnown,
            max_stale_ms: 86_400_000,
            weights_public_key: None,
        }
    }
}

impl PolicyConfig {
    /// Check ranges; errors name `policy.<field>`.
    pub fn validate(&self, source: &str) -> Result<()> {
        if self.request_timeout_ms == 0 {
            return Err(Error::config(
                format!("{source}: policy.request_timeout_ms"),
                "a timeout of 0 ms never lets a request succeed",
                "give a positive number of milliseconds (default 2000)",
            ));
        }
        if self.cache_ttl_ms == Some(0) {
            return Err(Error::config(
                format!("{source}: policy.cache_ttl_ms"),
                "a TTL of 0 would fetch the policy before every call",
                "give a positive number of milliseconds, or remove it to use the collector's ttl_ms",
            ));
        }
        Ok(())
    }
}

/// The built-in provider table: (name, kind, base URL, key variable).
const BUILTINS: &[(&str, ProviderKind, &str, Option<&str>)] = &[
    (
        "openai",
        ProviderKind::Openai,
        "https://api.openai.com/v1",
        Some("OPENAI_API_KEY"),
    ),
    (
        "anthropic",
        ProviderKind::Anthropic,
        "https://api.anthropic.com",
        Some("ANTHROPIC_API_KEY"),
    ),
    (
        "gemini",
        ProviderKind::Gemini,
        "https://generativelanguage.googleapis.com/v1beta",
        Some("GEMINI_API_KEY"),
    ),
    (
        "deepseek",
        ProviderKind::Openai,
        "https://api.deepseek.com",
        Some("DEEPSEEK_API_KEY"),
    ),
    (
        "mistral",
        ProviderKind::Openai,
        "https://api.mistral.ai/v1",
        Some("MISTRAL_API_KEY"),
    ),
    (
        "groq",
        ProviderKind::Openai,
        "https://api.groq.com/openai/v1",
        Some("GROQ_API_KEY"),
    ),
    (
        "together",
        ProviderKind::Openai,
        "https://api.together.xyz/v1",
        Some("TOGETHER_API_KEY"),
    ),
    (
        "ollama",
        ProviderKind::Openai,
        "http://localhost:11434/v1",
        None,
    ),
];

/// Default `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Where a config comes from: the one place that reads each kind ([`Config::load`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSource {
    /// The built-in defaults: built-in providers, API keys from the environment.
    Default,
    /// A TOML file.
    File(PathBuf),
    /// TOML text; `name` names it in errors (`config (TOML text)`, a resource name).
    Toml {
        /// The text.
        text: String,
        /// What errors call it.
        name: String,
    },
    /// JSON text in the TOML config's structure (what the Node binding passes).
    Json(String),
    /// A JSON value in the TOML config's structure (a Python dict, a JS object).
    Map(serde_json::Value),
    /// The file named by the environment variable [`CONFIG_ENV`] when it is set and not
    /// empty, else the built-in defaults.
    Env,
}

/// The environment variable [`ConfigSource::Env`] reads (the CLI's `--config` too).
pub const CONFIG_ENV: &str = "GATEROUTER_CONFIG";

impl ConfigSource {
    /// What a binding's constructor takes: at most one of a config (JSON text) and a
    /// config file; neither is [`ConfigSource::Default`]. Both is a config error at
    /// `caller` naming the two (`["config", "configFile"]`).
    pub fn one_of(
        json: Option<String>,
        file: Option<PathBuf>,
        caller: &str,
        names: [&str; 2],
    ) -> Result<Self> {
        match (json, file) {
            (Some(_), Some(_)) => Err(Error::config(
                caller,
                format!("both {} and {} were given", names[0], names[1]),
                "pass one of them",
            )),
            (Some(j), None) => Ok(ConfigSource::Json(j)),
            (None, Some(f)) => Ok(ConfigSource::File(f)),
            (None, None) => Ok(ConfigSource::Default),
        }
    }
}

impl Config {
    /// Load and validate a config from `source`; errors name the file or field and the
    /// fix.
    pub fn load(source: ConfigSource) -> Result<Self> {
        match source {
            ConfigSource::Default => Ok(Config::default()),
            ConfigSource::File(path) => Self::from_toml_file(path),
            ConfigSource::Toml { text, name } => Self::from_toml_str(&text, &name),
            ConfigSource::Json(text) => Self::from_json_str(&text),
            ConfigSource::Map(value) => Self::from_json_value(value),
            ConfigSource::Env => match std::env::var_os(CONFIG_ENV) {
                Some(path) if !path.is_empty() => Self::from_toml_file(PathBuf::from(path)),
                _ => Ok(Config::default()),
            },
        }
    }

    /// Parse TOML text. `source` names the file in error messages.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self> {
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(source, text, &e))?;
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::config(
                format!("{source}: {}{}", path, line_suffix(text, inner.span())),
                inner.message().to_owned(),
                fix_for(inner.message()),
            )
        })?;
        cfg.validate(source)?;
        Ok(cfg)
    }

    /// Read and parse a TOML file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                path.display().to_string(),
                format!("cannot read the config file: {e}"),
                "check the path and its permissions",
            )
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Build from a JSON value (what bindings get from a dict / object).
    pub fn from_json_value(value: serde_json::Value) -> Result<Self> {
        let cfg: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let fix = fix_for(&msg);
            Error::config(format!("config: {path}"), msg, fix)
        })?;
        cfg.validate("config")?;
        Ok(cfg)
    }

    /// Build from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            Error::config(
                "config",
                format!("not valid JSON: {e}"),
                "pass a JSON object",
            )
        })?;
        Self::from_json_value(v)
    }

    /// Check cross-field rules; errors name `source` and the field.
    pub fn validate(&self, source: &str) -> Result<()> {
        let providers = self.resolved_providers(source)?;
        let check_model = |field: String, id: &str| -> Result<()> {
            let mid = ModelId::parse(id).map_err(|e| {
                Error::config(
                    format!("{source}: {field}"),
                    e.to_string(),
                    "write `provider/model`",
                )
            })?;
            if !providers.contains_key(&mid.provider) {
                return Err(Error::config(
                    format!("{source}: {field}"),
                    format!("unknown provider `{}` in `{id}`", mid.provider),
                    format!(
                        "use one of: {}, or add [providers.{}]",
                        providers.keys().cloned().collect::<Vec<_>>().join(", "),
                        mid.provider
                    ),
                ));
            }
            Ok(())
        };
        for (i, m) in self.models.iter().enumerate() {
            check_model(format!("models[{i}].id"), &m.id)?;
            if m.provider_model
                .as_deref()
                .is_some_and(|v| v.trim().is_empty())
            {
                return Err(empty_value(
                    source,
                    &format!("models[{i}].provider_model"),
                    "remove it to send the model part of `id`",
                ));
            }
        }
        let id = &self.identity;
        for (name, v) in [
            ("org", &id.org),
            ("department", &id.department),
            ("project", &id.project),
            ("group", &id.group),
            ("user", &id.user),
            ("api_key_id", &id.api_key_id),
        ] {
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(empty_value(
                    source,
                    &format!("identity.{name}"),
                    "remove the line, or give the id",
                ));
            }
        }
        let t = &self.timeouts;
        for (name, v) in [
            ("connect_ms", t.connect_ms),
            ("request_ms", t.request_ms),
            ("stream_idle_ms", t.stream_idle_ms),
        ] {
            if v == 0 {
                return Err(Error::config(
                    format!("{source}: timeouts.{name}"),
                    "a timeout of 0 ms never lets a call succeed",
                    "give a positive number of milliseconds",
                ));
            }
        }
        crate::pricing::validate_overrides(&self.prices, source)?;
        self.routing.validate(source)?;
        self.policy.validate(source)?;
        if self.retry.initial_backoff_ms > self.retry.max_backoff_ms {
            return Err(Error::config(
                format!("{source}: retry.initial_backoff_ms"),
                "initial_backoff_ms is larger than max_backoff_ms",
                "make initial_backoff_ms <= max_backoff_ms",
            ));
        }
        Ok(())
    }

    /// The built-ins merged with `[providers]`, validated.
    pub fn resolved_providers(&self, source: &str) -> Result<BTreeMap<String, ResolvedProvider>> {
        let mut out = BTreeMap::new();
        let builtins = if self.builtin_providers {
            BUILTINS
        } else {
            &[]
        };
        let names = builtins
            .iter()
            .map(|b| b.0.to_owned())
            .chain(self.providers.keys().cloned());
        for name in names {
            if out.contains_key(&name) {
                continue;
            }
            let builtin = builtins.iter().find(|b| b.0 == name);
            let user = self.providers.get(&name).cloned().unwrap_or_default();
            let field = |f: &str| format!("{source}: providers.{name}.{f}");
            // An empty string where a value is required is a mistake, never "unset": an
            // empty `api_version` would drop the anthropic-version header (HTTP 400).
            for (f, v, fix) in [
                (
                    "api_version",
                    user.api_version.as_deref(),
                    "remove it to use the default \"2023-06-01\", or give a version",
                ),
                (
                    "api_key_env",
                    user.api_key_env.as_deref(),
                    "remove it to use the built-in variable, or name the variable",
                ),
                (
                    "api_key",
                    user.api_key.as_ref().map(Secret::expose),
                    "remove it and set the key variable, or give the key",
                ),
                (
                    "base_url",
                    user.base_url.as_deref(),
                    "remove it to use the built-in URL, or give an http(s) URL",
                ),
            ] {
                if v.is_some_and(|v| v.trim().is_empty()) {
                    return Err(empty_value(source, &format!("providers.{name}.{f}"), fix));
                }
            }
            for (h, v) in &user.headers {
                if h.trim().is_empty() {
                    return Err(empty_value(
                        source,
                        &format!("providers.{name}.headers"),
                        "give every header a name",
                    ));
                }
                if v.trim().is_empty() {
                    return Err(empty_value(
                        source,
                        &format!("providers.{name}.headers.\"{h}\""),
                        "remove the header, or give it a value",
                    ));
                }
            }
            let kind = user.kind.or(builtin.map(|b| b.1)).ok_or_else(|| {
                Error::config(
                    field("kind"),
                    "missing `kind`",
                    "set kind = \"openai\" (OpenAI-compatible hosts), \"anthropic\" or \"gemini\"",
                )
            })?;
            let base = user
                .base_url
                .clone()
                .or(builtin.map(|b| b.2.to_owned()))
                .ok_or_else(|| {
                    Error::config(
                        field("base_url"),
                        "missing `base_url`",
                        "set base_url, e.g. \"http://localhost:8000/v1\" for a vLLM server",
                    )
                })?;
            let base_url = validate_base_url(&base).map_err(|why| {
                Error::config(
                    field("base_url"),
                    format!("`{base}` {why}"),
                    "write an absolute http:// or https:// URL without query or fragment",
                )
            })?;
            if name.is_empty() || name.contains('/') || name.contains(char::is_whitespace) {
                return Err(Error::config(
                    format!("{source}: providers.{name}"),
                    "provider names may not be empty or contain `/` or spaces",
                    "rename the table",
                ));
            }
            out.insert(
                name.clone(),
                ResolvedProvider {
                    name: name.clone(),
                    kind,
                    base_url,
                    api_key: user.api_key.clone(),
                    api_key_env: user
                        .api_key_env
                        .clone()
                        .or(builtin.and_then(|b| b.3.map(str::to_owned))),
                    headers: user.headers.clone(),
                    api_version: user
                        .api_version
                        .clone()
                        .unwrap_or_else(|| ANTHROPIC_VERSION.to_owned()),
                    request_timeout: Duration::from_millis(
                        user.request_timeout_ms.unwrap_or(self.timeouts.request_ms),
                    ),
                },
            );
        }
        Ok(out)
    }

    /// A config pointing the three reference providers (and `deepseek`, an
    /// OpenAI-compatible host) at a provider emulator on `base` (e.g.
    /// `http://127.0.0.1:8080`), with an inline test key: `openai` at `{base}/openai/v1`,
    /// `anthropic` at `{base}/anthropic`, `gemini` at `{base}/gemini/v1beta`, `deepseek`
    /// at `{base}/deepseek/v1`. Used by the demo, `gaterouter --emulate`, the examples and
    /// tests. Same as [`Config::emulated`].
    pub fn emulated(base: &str) -> Self {
        Self::for_emulator(base)
    }

    /// See [`Config::emulated`].
    pub fn for_emulator(base: &str) -> Self {
        let mut cfg = Config::default();
        for (name, kind, path) in [
            ("openai", ProviderKind::Openai, "/openai/v1"),
            ("anthropic", ProviderKind::Anthropic, "/anthropic"),
            ("gemini", ProviderKind::Gemini, "/gemini/v1beta"),
            ("deepseek", ProviderKind::Openai, "/deepseek/v1"),
        ] {
            cfg.providers.insert(
                name.to_owned(),
                ProviderConfig {
                    kind: Some(kind),
                    base_url: Some(format!("{}{path}", base.trim_end_matches('/'))),
                    api_key: Some(Secret::new("emulator-key")),
                    ..ProviderConfig::default()
                },
            );
        }
        cfg
    }
}

/// A required value given as an empty string.
fn empty_value(source: &str, field: &str, fix: &str) -> Error {
    Error::config(format!("{source}: {field}"), "is an empty string", fix)
}

fn validate_base_url(s: &str) -> std::result::Result<String, &'static str> {
    let u = url::Url::parse(s).map_err(|_| "is not a valid URL")?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err("must use http or https");
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("must not have a query or fragment");
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn toml_error(source: &str, text: &str, e: &toml::de::Error) -> Error {
    Error::config(
        format!("{source}{}", line_suffix(text, e.span())),
        e.message().to_owned(),
        "fix the TOML syntax at that line",
    )
}

fn line_suffix(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|r| {
        let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

fn fix_for(message: &str) -> String {
    if message.contains("unknown field") {
        "remove the field or correct its spelling (the message lists the accepted names)".to_owned()
    } else if message.contains("missing field") {
        "add the missing field".to_owned()
    } else if message.contains("unknown variant") {
        "use one of the accepted values listed".to_owned()
    } else {
        "give the field a value of the expected type".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporting_table_in_main_config() {
        let c = Config::from_toml_str(
            "[reporting]\nmode = \"off\"\nbatch_max_records = 10\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.reporting.batch_max_records, 10);
        let e = Config::from_toml_str("[reporting]\nbogus = 1\n", "t.toml").unwrap_err();
        assert!(
            e.to_string().contains("reporting") && e.to_string().contains("bogus"),
            "{e}"
        );
        // The in-memory signing key is for apps (mobile); a config file cannot set it.
        let seed = "ZmFrZSBrZXkgdGhhdCBtdXN0IG5vdCBiZSByZWFkIGZyb20gYSBmaWxl";
        let e = Config::from_toml_str(
            &format!("[reporting]\nsigning_key = \"{seed}\"\n"),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("signing_key"), "{e}");
    }

    #[test]
    fn load_reads_each_source() {
        let toml = "[identity]\napi_key_id = \"k_load\"\n";
        let id = |c: Config| c.identity.api_key_id;
        assert_eq!(
            Config::load(ConfigSource::Default).unwrap(),
            Config::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gr.toml");
        std::fs::write(&path, toml).unwrap();
        assert_eq!(
            id(Config::load(ConfigSource::File(path.clone())).unwrap()).as_deref(),
            Some("k_load")
        );
        let text = ConfigSource::Toml {
            text: toml.into(),
            name: "bundled".into(),
        };
        assert_eq!(id(Config::load(text).unwrap()).as_deref(), Some("k_load"));
        let json = r#"{"identity": {"api_key_id": "k_load"}}"#;
        assert_eq!(
            id(Config::load(ConfigSource::Json(json.into())).unwrap()).as_deref(),
            Some("k_load")
        );
        let map = serde_json::json!({"identity": {"api_key_id": "k_load"}});
        assert_eq!(
            id(Config::load(ConfigSource::Map(map)).unwrap()).as_deref(),
            Some("k_load")
        );
        // Env: the file GATEROUTER_CONFIG names, else the defaults (tests never set it:
        // setting the environment is not thread-safe).
        let from_env = Config::load(ConfigSource::Env);
        match std::env::var_os(CONFIG_ENV) {
            None => assert_eq!(from_env.unwrap(), Config::default()),
            Some(p) if p.is_empty() => assert_eq!(from_env.unwrap(), Config::default()),
            Some(p) => assert_eq!(from_env.ok(), Config::from_toml_file(PathBuf::from(p)).ok()),
        }
        // Errors name the source and the field.
        let bad = ConfigSource::Toml {
            text: "[identity]\napi_key = 1\n".into(),
            name: "bundled".into(),
        };
        let e = Config::load(bad).unwrap_err().to_string();
        assert!(e.contains("bundled") && e.contains("identity"), "{e}");
        let e = Config::load(ConfigSource::File(dir.path().join("missing.toml"))).unwrap_err();
        assert!(e.to_string().contains("missing.toml"), "{e}");
    }

    #[test]
    fn one_of_picks_at_most_one_source() {
        let names = ["config", "configFile"];
        assert_eq!(
            ConfigSource::one_of(None, None, "new GateRouter()", names).unwrap(),
            ConfigSource::Default
        );
        assert_eq!(
            ConfigSource::one_of(Some("{}".into()), None, "x", names).unwrap(),
            ConfigSource::Json("{}".into())
        );
        assert_eq!(
            ConfigSource::one_of(None, Some("a.toml".into()), "x", names).unwrap(),
            ConfigSource::File("a.toml".into())
        );
        let e = ConfigSource::one_of(
            Some("{}".into()),
            Some("a.toml".into()),
            "new GateRouter()",
            names,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("new GateRouter()") && e.contains("both config and configFile were given"),
            "{e}"
        );
    }

    #[test]
    fn empty_config_has_builtins() {
        let cfg = Config::from_toml_str("", "t.toml").unwrap();
        let p = cfg.resolved_providers("t.toml").unwrap();
        assert_eq!(p["anthropic"].kind, ProviderKind::Anthropic);
        assert_eq!(p["deepseek"].base_url, "https://api.deepseek.com");
    }

    #[test]
    fn typo_names_file_field_and_line() {
        let e = Config::from_toml_str("[providers.openai]\nbse_url = \"http://x\"\n", "gr.toml")
            .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("gr.toml"), "{s}");
        assert!(s.contains("providers.openai"), "{s}");
        assert!(s.contains("bse_url"), "{s}");
        assert!(s.contains("line 2"), "{s}");
    }

    #[test]
    fn malformed_base_url_is_named() {
        let e = Config::from_toml_str(
            "[providers.vllm]\nkind = \"openai\"\nbase_url = \"localhost:8000\"\n",
            "gr.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("providers.vllm.base_url"), "{e}");
    }

    #[test]
    fn new_provider_needs_kind() {
        let e = Config::from_toml_str(
            "[providers.vllm]\nbase_url = \"http://h:1/v1\"\n",
            "gr.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("providers.vllm.kind"), "{e}");
    }

    #[test]
    fn unknown_provider_in_models() {
        let e = Config::from_toml_str("[[models]]\nid = \"nope/x\"\n", "gr.toml").unwrap_err();
        assert!(
            e.to_string().contains("models[0].id") && e.to_string().contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn missing_key_variable_is_a_config_error() {
        let cfg = Config::from_toml_str(
            "[providers.openai]\napi_key_env = \"GATEROUTER_TEST_SURELY_UNSET\"\n",
            "t",
        )
        .unwrap();
        let p = &cfg.resolved_providers("t").unwrap()["openai"];
        let e = p.api_key().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(
            e.to_string().contains("GATEROUTER_TEST_SURELY_UNSET"),
            "{e}"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?}").contains("very"));
    }

    #[test]
    fn policy_section_defaults_and_typos() {
        let cfg = Config::from_toml_str("", "t").unwrap();
        assert_eq!(cfg.policy, PolicyConfig::default());
        assert_eq!(cfg.policy.request_timeout_ms, 2_000);
        let cfg = Config::from_toml_str(
            "[policy]\nenforce = \"required\"\nwhen_unreachable = \"deny\"\ncache_ttl_ms = 500\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            (
                cfg.policy.enforce,
                cfg.policy.when_unreachable,
                cfg.policy.cache_ttl_ms
            ),
            (EnforceMode::Required, WhenUnreachable::Deny, Some(500))
        );
        let e = Config::from_toml_str("[policy]\nenforced = \"off\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("enforced"), "{e}");
        let e = Config::from_toml_str("[policy]\nrequest_timeout_ms = 0\n", "t").unwrap_err();
        assert!(e.to_string().contains("policy.request_timeout_ms"), "{e}");
    }

    #[test]
    fn empty_strings_are_refused_naming_the_field() {
        for (toml, field) in [
            (
                "[providers.anthropic]\napi_version = \"\"\n",
                "providers.anthropic.api_version",
            ),
            (
                "[providers.openai]\napi_key_env = \"\"\n",
                "providers.openai.api_key_env",
            ),
            (
                "[providers.openai]\napi_key = \" \"\n",
                "providers.openai.api_key",
            ),
            (
                "[providers.openai]\nbase_url = \"\"\n",
                "providers.openai.base_url",
            ),
            (
                "[providers.openai]\nheaders = { \"X-A\" = \"\" }\n",
                "providers.openai.headers.\"X-A\"",
            ),
            ("[identity]\norg = \"\"\n", "identity.org"),
            (
                "[[models]]\nid = \"openai/gpt-4o\"\nprovider_model = \"\"\n",
                "models[0].provider_model",
            ),
        ] {
            let e = Config::from_toml_str(toml, "gr.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("empty"), "{toml}: {e}");
        }
        let cfg = Config::emulated("http://127.0.0.1:9/");
        let p = cfg.resolved_providers("x").unwrap();
        assert_eq!(p["anthropic"].base_url, "http://127.0.0.1:9/anthropic");
        assert_eq!(p["gemini"].base_url, "http://127.0.0.1:9/gemini/v1beta");
        cfg.validate("x").unwrap();
    }

    #[test]
    fn json_config_names_the_field() {
        let e = Config::from_json_value(serde_json::json!({"timeouts": {"request_ms": "fast"}}))
            .unwrap_err();
        assert!(e.to_string().contains("timeouts.request_ms"), "{e}");
    }
}
