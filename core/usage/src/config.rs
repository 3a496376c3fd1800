//! The `[reporting]` table: where usage records are spooled, signed and sent. Plain
//! data; the usage pipeline that reads it ([`crate`]) validates it and loads the
//! signing key ([`ReportingConfig::validate`], [`ReportingConfig::load_signer`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{UsageError, cfg_err};
use crate::signing::UsageSigner;
use gaterouter_types::identity::Identity;

use gaterouter_types::secret::Secret;

/// Environment variable read for the signing key when neither `signing_key_file` nor
/// `signing_key_env` is configured.
pub const DEFAULT_SIGNING_KEY_ENV: &str = "GATEROUTER_SIGNING_KEY";

/// Where the usage-record signing key comes from ([`ReportingConfig::key_source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource<'a> {
    /// `reporting.signing_key`: held in memory, passed by the app (mobile).
    Memory(&'a Secret),
    /// `reporting.signing_key_file`.
    File(&'a Path),
    /// The environment variable named here, set and non-empty.
    Env(&'a str),
    /// No key: nothing in memory, no file, and the variable `var` unset or empty.
    None {
        /// The variable that was looked at.
        var: &'a str,
    },
}

impl KeySource<'_> {
    /// Whether a key is configured (any source but [`KeySource::None`]).
    pub fn is_configured(&self) -> bool {
        !matches!(self, KeySource::None { .. })
    }
}

/// Whether records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReportingMode {
    /// Sign and spool every record; ship them when `collector_url` is set.
    #[default]
    Spool,
    /// Validate records, then discard them: nothing is signed, written or sent.
    Off,
}

/// The `[reporting]` config table. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportingConfig {
    /// `spool` (default) or `off`.
    pub mode: ReportingMode,
    /// Collector base URL (`https://usage.example.com`); records are POSTed to
    /// `{collector_url}/v1/usage`. Unset: records stay in the spool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collector_url: Option<String>,
    /// Spool directory. Default: `<data dir>/gaterouter/spool/<api_key_id>/p<N>`, where
    /// the data dir is `$XDG_DATA_HOME` or `~/.local/share` (Linux),
    /// `~/Library/Application Support` (macOS), `%LOCALAPPDATA%` (Windows), else
    /// `./.gaterouter`; `p<N>` is the first slot no other process holds, so several
    /// processes can run with the default. An explicit directory is never shared: a
    /// second process gets [`crate::UsageError::SpoolLocked`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<PathBuf>,
    /// File holding the Ed25519 signing key (base64 32-byte seed, or PKCS#8 PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// Environment variable holding the signing key. Default
    /// [`DEFAULT_SIGNING_KEY_ENV`] when `signing_key_file` is not set either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_env: Option<String>,
    /// The signing key held in memory (base64 seed or PKCS#8 PEM), set by code only:
    /// mobile apps pass the key they keep in the Keychain / Keystore, and the SDK never
    /// writes it anywhere. Never read from or written to a config file (`serde(skip)`);
    /// when set it wins over `signing_key_file` and `signing_key_env`.
    #[serde(skip)]
    pub signing_key: Option<Secret>,
    /// Records per batch. Default 500 (1..=10 000).
    pub batch_max_records: usize,
    /// Longest a record waits for a fuller batch. Default 2 000 ms.
    pub batch_max_age_ms: u64,
    /// Records per batch while the app says the device is on cellular
    /// ([`crate::NetworkClass::Cellular`]): fewer, bigger uploads wake the radio less.
    /// Default 2 000 (1..=10 000).
    pub cellular_batch_max_records: usize,
    /// Longest a record waits for a fuller batch on cellular. Default 60 000 ms.
    pub cellular_batch_max_age_ms: u64,
    /// fsync interval of the spool; a power cut loses at most this much. 0 = fsync
    /// every record. Default 200 ms.
    pub fsync_interval_ms: u64,
    /// Cap on the spool's bytes; beyond it records are refused with
    /// [`crate::UsageError::SpoolFull`] and counted. Default 256 MiB, minimum 64 KiB.
    pub max_spool_bytes: u64,
    /// Collector request timeout. Default 10 000 ms.
    pub request_timeout_ms: u64,
    /// First retry backoff. Default 250 ms.
    pub retry_initial_backoff_ms: u64,
    /// Retry backoff ceiling. Default 30 000 ms.
    pub retry_max_backoff_ms: u64,
    /// How long [`crate::Recorder::shutdown`] waits for the spool to drain. Default 5 000 ms.
    pub shutdown_timeout_ms: u64,
}

impl Default for ReportingConfig {
    fn default() -> Self {
        ReportingConfig {
            mode: ReportingMode::Spool,
            collector_url: None,
            spool_dir: None,
            signing_key_file: None,
            signing_key_env: None,
            signing_key: None,
            batch_max_records: 500,
            batch_max_age_ms: 2_000,
            cellular_batch_max_records: 2_000,
            cellular_batch_max_age_ms: 60_000,
            fsync_interval_ms: 200,
            max_spool_bytes: 256 << 20,
            request_timeout_ms: 10_000,
            retry_initial_backoff_ms: 250,
            retry_max_backoff_ms: 30_000,
            shutdown_timeout_ms: 5_000,
        }
    }
}

impl ReportingConfig {
    /// The collector endpoint, `{collector_url}/v1/usage`.
    pub fn endpoint(&self) -> Option<String> {
        self.collector_url
            .as_ref()
            .map(|u| format!("{}/v1/usage", u.trim_end_matches('/')))
    }

    /// Where the signing key comes from, in precedence order: in memory (`signing_key`,
    /// mobile apps), else `signing_key_file`, else a non-empty environment variable
    /// (`signing_key_env`, else [`DEFAULT_SIGNING_KEY_ENV`]), else nowhere. The one
    /// answer that usage records, policy enforcement and key loading all follow.
    pub fn key_source(&self) -> KeySource<'_> {
        if let Some(k) = &self.signing_key {
            return KeySource::Memory(k);
        }
        if let Some(f) = &self.signing_key_file {
            return KeySource::File(f);
        }
        let var = self
            .signing_key_env
            .as_deref()
            .unwrap_or(DEFAULT_SIGNING_KEY_ENV);
        if std::env::var(var).is_ok_and(|v| !v.trim().is_empty()) {
            KeySource::Env(var)
        } else {
            KeySource::None { var }
        }
    }

    /// Whether a signing key is configured ([`ReportingConfig::key_source`] is not
    /// [`KeySource::None`]).
    pub fn signing_key_configured(&self) -> bool {
        self.key_source().is_configured()
    }
}

/// What the usage pipeline does with the `[reporting]` table: check it and load its
/// signing key.
impl ReportingConfig {
    /// Check ranges and the collector URL; errors name `reporting.<field>`.
    pub fn validate(&self) -> Result<(), UsageError> {
        for (f, v) in [
            ("batch_max_records", self.batch_max_records),
            (
                "cellular_batch_max_records",
                self.cellular_batch_max_records,
            ),
        ] {
            if !(1..=10_000).contains(&v) {
                return Err(cfg_err(f, format!("{v} is out of range"), "use 1..=10000"));
            }
        }
        for (f, v) in [
            ("batch_max_age_ms", self.batch_max_age_ms),
            ("cellular_batch_max_age_ms", self.cellular_batch_max_age_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("retry_initial_backoff_ms", self.retry_initial_backoff_ms),
        ] {
            if v == 0 {
                return Err(cfg_err(
                    f,
                    "must be positive",
                    "give a positive number of milliseconds",
                ));
            }
        }
        if self.retry_initial_backoff_ms > self.retry_max_backoff_ms {
            return Err(cfg_err(
                "retry_initial_backoff_ms",
                "is larger than retry_max_backoff_ms",
                "make it <= retry_max_backoff_ms",
            ));
        }
        if self.max_spool_bytes < 64 * 1024 {
            return Err(cfg_err(
                "max_spool_bytes",
                format!("{} bytes is too small", self.max_spool_bytes),
                "use at least 65536",
            ));
        }
        if let Some(u) = &self.collector_url {
            let ok = url::Url::parse(u).ok().filter(|p| {
                matches!(p.scheme(), "http" | "https")
                    && p.host_str().is_some_and(|h| !h.is_empty())
            });
            if ok.is_none() {
                return Err(cfg_err(
                    "collector_url",
                    format!("`{u}` is not an absolute http(s) URL"),
                    "write e.g. https://usage.example.com",
                ));
            }
        }
        Ok(())
    }

    /// Load the signing key from where [`ReportingConfig::key_source`] says it is
    /// (`signing_key` in memory, else `signing_key_file`, else the variable
    /// `signing_key_env`, else [`DEFAULT_SIGNING_KEY_ENV`]).
    pub fn load_signer(&self) -> Result<UsageSigner, UsageError> {
        match self.key_source() {
            KeySource::Memory(k) => UsageSigner::from_key_text(
                k.expose(),
                "reporting.signing_key (in memory, from the app)",
            ),
            KeySource::File(f) => UsageSigner::from_file(f),
            // An unset variable: its own error, naming the variable and the fix.
            KeySource::Env(var) | KeySource::None { var } => UsageSigner::from_env(var),
        }
    }
}

/// The platform data directory, or `./.gaterouter` when none is known.
pub fn default_data_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        env("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| h.join("Library").join("Application Support"))
    } else {
        env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local").join("share")))
    };
    base.map(|b| b.join("gaterouter"))
        .unwrap_or_else(|| PathBuf::from(".gaterouter"))
}

/// Where the default spool slots of a key live: `<data dir>/spool/<api_key_id>`; each
/// process takes the first free `p<N>` below it. See [`ReportingConfig::spool_dir`].
pub fn default_spool_base(identity: &Identity) -> PathBuf {
    default_data_dir()
        .join("spool")
        .join(sanitize(identity.api_key_id.as_deref().unwrap_or("")))
}

/// The spool directories a config uses: `reporting.spool_dir` when set, else every
/// existing `p<N>` slot under [`default_spool_base`] (in slot order). Empty when none
/// exists yet.
pub fn configured_spool_dirs(cfg: &ReportingConfig, identity: &Identity) -> Vec<PathBuf> {
    if let Some(d) = &cfg.spool_dir {
        return vec![d.clone()];
    }
    let base = default_spool_base(identity);
    (0..DEFAULT_SLOTS)
        .map(|n| base.join(format!("p{n}")))
        .filter(|d| d.is_dir())
        .collect()
}

/// Default slots tried under the default spool directory.
pub(crate) const DEFAULT_SLOTS: u32 = 64;

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() {
        "default".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_source_follows_the_precedence_memory_file_env() {
        let unset = "GATEROUTER_TEST_UNSET_KEY_VARIABLE";
        let mut rep = ReportingConfig {
            signing_key_env: Some(unset.into()),
            ..ReportingConfig::default()
        };
        assert_eq!(rep.key_source(), KeySource::None { var: unset });
        assert!(!rep.signing_key_configured());
        // A variable that is set (PATH always is) is a source.
        rep.signing_key_env = Some("PATH".into());
        assert_eq!(rep.key_source(), KeySource::Env("PATH"));
        rep.signing_key_file = Some(PathBuf::from("/keys/usage.key"));
        assert_eq!(
            rep.key_source(),
            KeySource::File(Path::new("/keys/usage.key"))
        );
        // In memory (mobile) wins over file and variable.
        let secret = Secret::new("seed");
        rep.signing_key = Some(secret.clone());
        assert_eq!(rep.key_source(), KeySource::Memory(&secret));
        assert!(rep.signing_key_configured());
    }

    #[test]
    fn without_a_variable_name_the_default_one_is_looked_at() {
        let rep = ReportingConfig::default();
        match rep.key_source() {
            KeySource::Env(v) | KeySource::None { var: v } => {
                assert_eq!(v, DEFAULT_SIGNING_KEY_ENV)
            }
            other => panic!("{other:?}"),
        }
    }
}
