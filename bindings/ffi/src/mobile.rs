//! What a phone app hands the SDK at start-up, and the usage-reporting state it can read
//! back. See `GateRouterClient.create` and `suspend` / `resume` / `setNetworkClass`.

use std::path::PathBuf;
use std::sync::Arc;

use gaterouter as core;
use zeroize::Zeroizing;

use crate::error::GateRouterError;

/// The kind of network the device is on, as the app observes it (Android
/// `ConnectivityManager`, iOS `NWPathMonitor`); the SDK does not probe the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Enum)]
pub enum NetworkClass {
    /// Unmetered: usage records go in normal batches (`reporting.batch_*`). The default.
    #[default]
    Wifi,
    /// Metered: bigger batches, longer waits (`reporting.cellular_batch_*`).
    Cellular,
    /// No network: records are kept in the spool, nothing is sent.
    Offline,
}

/// The Ed25519 key that signs usage records, held in memory only.
///
/// An object rather than bytes in a record so that printing or logging [`MobileOptions`]
/// (Kotlin data-class `toString`, Swift `description`) can never show it. Make one from
/// what the app keeps in the Keychain / Keystore-protected storage; a new key is just 32
/// random bytes (`SecRandomCopyBytes`, `SecureRandom`), registered with the collector by
/// its [`UsageSigningKey::public_key`].
#[derive(uniffi::Object)]
pub struct UsageSigningKey {
    seed_base64: core::config::Secret,
    public_key: String,
}

impl std::fmt::Debug for UsageSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageSigningKey")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

#[uniffi::export]
impl UsageSigningKey {
    /// From the raw 32-byte seed (Swift `Data`, Kotlin `ByteArray`).
    #[uniffi::constructor]
    pub fn from_seed(seed: Vec<u8>) -> Result<Arc<Self>, GateRouterError> {
        let seed = Zeroizing::new(seed);
        let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| {
            GateRouterError::from(core::Error::config(
                "UsageSigningKey.fromSeed",
                format!("the seed is {} bytes, an Ed25519 seed is 32", seed.len()),
                "pass exactly the 32-byte seed (or its base64 / a PKCS#8 PEM to fromText)",
            ))
        })?;
        Ok(Arc::new(Self::from_signer(
            &core::usage::UsageSigner::from_seed(seed),
        )))
    }

    /// From text: the standard base64 of the 32-byte seed, or a PKCS#8 PEM.
    #[uniffi::constructor]
    pub fn from_text(text: String) -> Result<Arc<Self>, GateRouterError> {
        let text = Zeroizing::new(text);
        let signer =
            core::usage::UsageSigner::from_key_text(&text, "UsageSigningKey.fromText (in memory)")
                .map_err(|e| {
                    // The message says what is wrong with the key, never its bytes.
                    GateRouterError::from(core::Error::config(
                        "UsageSigningKey.fromText",
                        e.to_string(),
                        "pass the base64 seed or a PKCS#8 PEM",
                    ))
                })?;
        Ok(Arc::new(Self::from_signer(&signer)))
    }

    /// The public key (standard base64 of 32 bytes), to register with the collector.
    pub fn public_key(&self) -> String {
        self.public_key.clone()
    }
}

impl UsageSigningKey {
    fn from_signer(signer: &core::usage::UsageSigner) -> Self {
        UsageSigningKey {
            seed_base64: signer.seed_base64(),
            public_key: signer.public_key().to_owned(),
        }
    }
}

/// Start-up options of a mobile app. Every field is optional.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct MobileOptions {
    /// Absolute path of the usage-record spool directory inside the app sandbox
    /// (Android: `File(context.filesDir, "gaterouter-spool")`; iOS: a folder under
    /// Application Support). Overrides `reporting.spool_dir`. One client per directory.
    #[uniffi(default)]
    pub spool_dir: Option<String>,
    /// The usage-record signing key, read by the app from the Keychain / Keystore-
    /// protected storage. It stays in memory: the SDK never writes it to disk. Overrides
    /// `reporting.signing_key_file` / `signing_key_env`.
    #[uniffi(default)]
    pub signing_key: Option<Arc<UsageSigningKey>>,
    /// Overrides `identity.api_key_id` (the id the collector knows the key by), for
    /// apps that receive key and id together at run time.
    #[uniffi(default)]
    pub api_key_id: Option<String>,
    /// Overrides `identity.user`: the signed-in user, for per-user analytics.
    #[uniffi(default)]
    pub user: Option<String>,
    /// The network class at start (default Wi-Fi); change it with `setNetworkClass`.
    #[uniffi(default)]
    pub network_class: Option<NetworkClass>,
    /// Start with reporting suspended (an app launched in the background); call
    /// `resume()` when it comes to the foreground.
    #[uniffi(default = false)]
    pub start_suspended: bool,
}

impl MobileOptions {
    /// Apply the options to a parsed config. The key goes into
    /// `reporting.signing_key`, which is memory-only (never serialized).
    pub(crate) fn apply(self, config: &mut core::Config) -> Result<(), GateRouterError> {
        let cfg_err = |field: &str, message: String, fix: &str| -> GateRouterError {
            core::Error::config(format!("MobileOptions.{field}"), message, fix).into()
        };
        if let Some(dir) = self.spool_dir {
            let path = PathBuf::from(&dir);
            if !path.is_absolute() {
                return Err(cfg_err(
                    "spool_dir",
                    format!("`{dir}` is not an absolute path"),
                    "pass a directory inside the app sandbox, e.g. File(context.filesDir, \"gaterouter-spool\").absolutePath",
                ));
            }
            config.reporting.spool_dir = Some(path);
        }
        if let Some(key) = self.signing_key {
            config.reporting.signing_key = Some(key.seed_base64.clone());
        }
        if let Some(id) = self.api_key_id {
            config.identity.api_key_id = Some(id);
        }
        if let Some(user) = self.user {
            config.identity.user = Some(user);
        }
        Ok(())
    }
}

/// Records refused for one reason.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RefusalCount {
    /// The collector's reason.
    pub reason: String,
    /// Records refused for it since the client started.
    pub count: u64,
}

/// What became of the usage records: `flush()`, `shutdown()` and `usageStatus()`.
/// `drained` only says nothing is pending (refused records leave the spool too): check
/// `refused`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeliveryReport {
    /// Every record made before the flush was delivered **or refused** by the collector
    /// (dead-lettered). False when the wait timed out, or reporting is suspended or
    /// offline.
    pub drained: bool,
    /// Records the collector stored since the client started.
    pub delivered: u64,
    /// Records still waiting in the spool.
    pub pending: u64,
    /// Records the collector refused since the client started (dead-lettered).
    pub refused: u64,
    /// Refused records per reason, most frequent first.
    pub refusals: Vec<RefusalCount>,
    /// The latest refusal reason.
    pub last_refusal: Option<String>,
    /// Records in the spool's dead-letter file (earlier runs included).
    pub dead_letters: u64,
    /// Records dropped because the spool was full.
    pub overflow: u64,
    /// Age of the oldest pending record.
    pub oldest_pending_age_ms: Option<u64>,
    /// The last delivery problem, while it lasts.
    pub last_error: Option<String>,
    /// The spool directory (`null`/`nil`: usage records are off).
    pub spool_dir: Option<String>,
}

impl From<core::usage::DeliveryReport> for DeliveryReport {
    fn from(r: core::usage::DeliveryReport) -> Self {
        DeliveryReport {
            drained: r.drained,
            delivered: r.delivered,
            pending: r.pending,
            refused: r.refused,
            refusals: r
                .refusals
                .into_iter()
                .map(|c| RefusalCount {
                    reason: c.reason,
                    count: c.count,
                })
                .collect(),
            last_refusal: r.last_refusal,
            dead_letters: r.dead_letters,
            overflow: r.overflow,
            oldest_pending_age_ms: r.oldest_pending_age_ms,
            last_error: r.last_error,
            spool_dir: r.spool_dir.map(|d| d.display().to_string()),
        }
    }
}

/// The usage-record pipeline's state.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReportingStatus {
    /// The spool directory.
    pub spool_dir: String,
    /// Records written but not yet delivered.
    pub pending_records: u64,
    /// Their bytes.
    pub pending_bytes: u64,
    /// Records delivered (or dead-lettered) since the client started.
    pub delivered_records: u64,
    /// Records the collector refused for good (kept in the spool's dead-letter file).
    pub dead_letters: u64,
    /// Records refused because the spool was full.
    pub overflow_count: u64,
    /// The last delivery problem, if the last attempt failed.
    pub last_error: Option<String>,
    /// `suspend()` is in force.
    pub suspended: bool,
    /// The network class last set.
    pub network_class: NetworkClass,
}

impl From<NetworkClass> for core::usage::NetworkClass {
    fn from(n: NetworkClass) -> Self {
        match n {
            NetworkClass::Wifi => core::usage::NetworkClass::Wifi,
            NetworkClass::Cellular => core::usage::NetworkClass::Cellular,
            NetworkClass::Offline => core::usage::NetworkClass::Offline,
        }
    }
}

impl From<core::usage::NetworkClass> for NetworkClass {
    fn from(n: core::usage::NetworkClass) -> Self {
        match n {
            core::usage::NetworkClass::Wifi => NetworkClass::Wifi,
            core::usage::NetworkClass::Cellular => NetworkClass::Cellular,
            core::usage::NetworkClass::Offline => NetworkClass::Offline,
        }
    }
}

impl ReportingStatus {
    pub(crate) fn from_core(s: core::usage::SpoolStatus, link: core::usage::LinkState) -> Self {
        ReportingStatus {
            spool_dir: s.dir.display().to_string(),
            pending_records: s.pending_records,
            pending_bytes: s.pending_bytes,
            delivered_records: s.delivered_records,
            dead_letters: s.dead_letters,
            overflow_count: s.overflow_count,
            last_error: s.last_error,
            suspended: link.suspended,
            network_class: link.network.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn config() -> core::Config {
        core::Config::from_toml_str("[identity]\napi_key_id = \"from_file\"\n", "t.toml")
            .expect("config")
    }

    #[test]
    fn options_override_the_config_and_keep_the_key_in_memory() {
        let (signer, public) = core::usage::generate_key();
        let seed = base64::engine::general_purpose::STANDARD
            .decode(signer.seed_base64().expose())
            .expect("b64");
        let key = UsageSigningKey::from_seed(seed).expect("seed");
        assert_eq!(key.public_key(), public);
        assert!(!format!("{key:?}").contains(signer.seed_base64().expose()));
        let mut c = config();
        MobileOptions {
            spool_dir: Some("/data/app/spool".into()),
            signing_key: Some(key),
            api_key_id: Some("k_phone".into()),
            user: Some("alice".into()),
            ..Default::default()
        }
        .apply(&mut c)
        .expect("applies");
        assert_eq!(
            c.reporting.spool_dir,
            Some(PathBuf::from("/data/app/spool"))
        );
        assert_eq!(c.identity.api_key_id.as_deref(), Some("k_phone"));
        assert_eq!(c.identity.user.as_deref(), Some("alice"));
        assert_eq!(c.reporting.load_signer().expect("key").public_key(), public);

        let mut c = config();
        let key = UsageSigningKey::from_text(format!("  {}\n", signer.seed_base64().expose()))
            .expect("text");
        MobileOptions {
            signing_key: Some(key),
            ..Default::default()
        }
        .apply(&mut c)
        .expect("applies");
        assert_eq!(c.reporting.load_signer().expect("key").public_key(), public);
        assert_eq!(c.identity.api_key_id.as_deref(), Some("from_file"));
    }

    #[test]
    fn bad_options_name_the_field() {
        let e = MobileOptions {
            spool_dir: Some("spool".into()),
            ..Default::default()
        }
        .apply(&mut config())
        .expect_err("relative");
        assert!(e.to_string().contains("MobileOptions.spool_dir"), "{e}");
        let e = UsageSigningKey::from_seed(vec![1; 31]).expect_err("short");
        assert!(e.to_string().contains("31 bytes"), "{e}");
        let e = UsageSigningKey::from_text("s3cr3t-not-a-key".into()).expect_err("garbage");
        assert!(
            e.to_string().contains("UsageSigningKey.fromText") && !e.to_string().contains("s3cr3t"),
            "{e}"
        );
    }

    /// Issue 19: the key `MobileOptions` passes stays in memory and still turns on the
    /// organization policy: `enforce = "auto"` enforces, `"required"` is no config error.
    #[tokio::test]
    async fn an_options_key_turns_on_policy_enforcement() {
        let dir = tempfile::tempdir().expect("dir");
        let (signer, _) = core::usage::generate_key();
        for enforce in ["auto", "required"] {
            let toml = format!(
                "[reporting]\ncollector_url = \"http://127.0.0.1:9\"\n\
                 signing_key_env = \"GATEROUTER_TEST_UNSET_KEY_VARIABLE\"\n\
                 [policy]\nenforce = \"{enforce}\"\n"
            );
            let mut c = core::Config::from_toml_str(&toml, "t.toml").expect("config");
            let key =
                UsageSigningKey::from_text(signer.seed_base64().expose().to_owned()).expect("key");
            MobileOptions {
                spool_dir: Some(dir.path().join(enforce).to_string_lossy().into_owned()),
                signing_key: Some(key),
                api_key_id: Some("k_phone".into()),
                ..Default::default()
            }
            .apply(&mut c)
            .expect("applies");
            assert!(matches!(
                c.reporting.key_source(),
                core::config::KeySource::Memory(_)
            ));
            let client =
                core::Client::new(c).unwrap_or_else(|e| panic!("enforce = {enforce}: {e}"));
            assert!(client.policy_client().is_some(), "enforce = {enforce}");
            client.shutdown().await.expect("shutdown");
        }
    }
}
