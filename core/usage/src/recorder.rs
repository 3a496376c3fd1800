//! [`Recorder`]: the one handle the client uses to record, flush and shut down, and the
//! [`DeliveryReport`] it answers with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use gaterouter_accounts::KeyScope;

use crate::config::{DEFAULT_SLOTS, ReportingConfig, ReportingMode, default_spool_base};
use crate::delivery::{self, RefusalCount};
use crate::error::{UsageError, cfg_err};
use crate::feedback::{FeedbackInput, FeedbackRecord};
use crate::record::{RecordId, SdkInfo, UsageRecord, UsageRecordInput};
use crate::reporter::{self, LinkState, NetworkClass};
use crate::signing::{self, UsageSigner};
use crate::spool::{Spool, SpoolOptions, SpoolStatus};
use crate::uploader::{Clock, SystemClock};
use gaterouter_types::identity::Identity;

/// Result of a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushOutcome {
    /// Every record recorded before the flush was delivered (or dead-lettered).
    pub drained: bool,
    /// Records still in the spool.
    pub pending_records: u64,
}

/// What became of the usage records: returned by `Client::flush` and
/// `Client::usage_status` (and the same shape in every binding).
///
/// `drained` only says the spool is empty: records the collector refused leave the spool
/// too (into the dead-letter file), so **check `refused`**: a run is clean when `drained`
/// and `refused == 0` ([`DeliveryReport::all_delivered`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// Nothing is left to send: every record made before the flush was delivered **or
    /// refused** (`pending == 0`).
    pub drained: bool,
    /// Records the collector stored (or already had) since the client started.
    pub delivered: u64,
    /// Records in the spool, not yet delivered.
    pub pending: u64,
    /// Records the collector refused for good since the client started (each moved to the
    /// spool's dead-letter file with the reason). Never part of `delivered`.
    pub refused: u64,
    /// Refused records per reason, most frequent first.
    pub refusals: Vec<RefusalCount>,
    /// The latest refusal reason (the collector's words).
    pub last_refusal: Option<String>,
    /// Records in the dead-letter file, earlier runs included.
    pub dead_letters: u64,
    /// Records refused locally because the spool was full (`reporting.max_spool_bytes`).
    pub overflow: u64,
    /// Age of the oldest pending record (from its end time), when one is pending.
    pub oldest_pending_age_ms: Option<u64>,
    /// The last delivery problem (collector unreachable, ...), while it lasts.
    pub last_error: Option<String>,
    /// The spool directory (`None`: usage records are off).
    pub spool_dir: Option<PathBuf>,
}

impl DeliveryReport {
    /// Drained and nothing refused: every record reached the collector.
    pub fn all_delivered(&self) -> bool {
        self.drained && self.refused == 0 && self.overflow == 0
    }

    /// The report of a client without usage records.
    pub fn off() -> Self {
        DeliveryReport {
            drained: true,
            ..Default::default()
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// What `[identity]` configures (overrides).
    configured: Identity,
    /// What records are stamped with: the configured fields, completed with the key's
    /// binding once it is known.
    identity: std::sync::RwLock<Identity>,
    delivery: Arc<delivery::Delivery>,
    sdk: SdkInfo,
    signer: Option<UsageSigner>,
    seq: AtomicU64,
    spool: Option<Arc<Spool>>,
    reporter: std::sync::Mutex<Option<reporter::ReporterHandle>>,
    /// Suspended / network class, set by the app; the reporter watches it.
    link: tokio::sync::watch::Sender<LinkState>,
    closed: AtomicBool,
    cfg: ReportingConfig,
    /// "Now" for the reporter, feedback timestamps and pending ages.
    clock: Arc<dyn Clock>,
}

/// The usage pipeline handle: signer, seq counter, spool and reporter task. Cheap to
/// clone (shared).
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl Recorder {
    /// Start from config: load the key, open (and lock) the spool, start the reporter
    /// if a collector is configured (which needs a tokio runtime).
    pub fn start(cfg: &ReportingConfig, identity: &Identity) -> Result<Recorder, UsageError> {
        let signer = match cfg.mode {
            ReportingMode::Off => None,
            ReportingMode::Spool => Some(cfg.load_signer()?),
        };
        Self::start_with(cfg, identity, SdkInfo::rust(), signer)
    }

    /// Start with an explicit SDK description (bindings) and signer (`None` only with
    /// `mode = "off"`).
    pub fn start_with(
        cfg: &ReportingConfig,
        identity: &Identity,
        sdk: SdkInfo,
        signer: Option<UsageSigner>,
    ) -> Result<Recorder, UsageError> {
        Self::start_linked(
            cfg,
            identity,
            sdk,
            signer,
            LinkState::default(),
            Arc::new(SystemClock),
        )
    }

    /// [`Recorder::start_with`] with the link state the reporter starts in (an app
    /// launched in the background, offline): set before the reporter task exists, so it
    /// never sends a batch the app would not have allowed; and the clock the reporter
    /// (batch age, backoff, dead-letter retries), feedback timestamps and the delivery
    /// report's ages read ([`SystemClock`] in production, a [`ManualClock`] in tests).
    ///
    /// [`ManualClock`]: crate::uploader::ManualClock
    pub fn start_linked(
        cfg: &ReportingConfig,
        identity: &Identity,
        sdk: SdkInfo,
        signer: Option<UsageSigner>,
        link: LinkState,
        clock: Arc<dyn Clock>,
    ) -> Result<Recorder, UsageError> {
        cfg.validate()?;
        let mut spool = None;
        let mut reporter = None;
        let delivery = Arc::new(delivery::Delivery::default());
        let (link, _) = tokio::sync::watch::channel(link);
        if cfg.mode == ReportingMode::Spool {
            if signer.is_none() {
                return Err(cfg_err(
                    "signing_key_file",
                    "spool mode needs a signing key",
                    "set signing_key_file or signing_key_env, or mode = \"off\"",
                ));
            }
            if identity
                .api_key_id
                .as_deref()
                .is_none_or(|k| k.trim().is_empty())
            {
                return Err(UsageError::Config {
                    location: "identity.api_key_id".into(),
                    message: "signed usage records need the API key id".into(),
                    fix: "set identity.api_key_id, or reporting.mode = \"off\"".into(),
                });
            }
            let sp = open_spool(cfg, identity)?;
            if let Some(endpoint) = cfg.endpoint() {
                let rt =
                    tokio::runtime::Handle::try_current().map_err(|_| UsageError::NoRuntime)?;
                let opts = reporter::ReporterOptions {
                    endpoint,
                    batch_max_records: cfg.batch_max_records,
                    batch_max_age: Duration::from_millis(cfg.batch_max_age_ms),
                    cellular_batch_max_records: cfg.cellular_batch_max_records,
                    cellular_batch_max_age: Duration::from_millis(cfg.cellular_batch_max_age_ms),
                    request_timeout: Duration::from_millis(cfg.request_timeout_ms),
                    initial_backoff: Duration::from_millis(cfg.retry_initial_backoff_ms),
                    max_backoff: Duration::from_millis(cfg.retry_max_backoff_ms),
                };
                let h = reporter::spawn(
                    sp.clone(),
                    opts,
                    link.subscribe(),
                    delivery.clone(),
                    &rt,
                    clock.clone(),
                )
                .map_err(|e| {
                    cfg_err(
                        "collector_url",
                        format!("cannot build the HTTP client: {e}"),
                        "check the TLS setup",
                    )
                })?;
                reporter = Some(h);
            }
            spool = Some(sp);
        }
        let first_seq = spool.as_ref().map_or(0, |s| s.max_seq()) + 1;
        let mut identity = identity.clone();
        if cfg.mode == ReportingMode::Off
            && identity
                .api_key_id
                .as_deref()
                .is_none_or(|k| k.trim().is_empty())
        {
            // Nothing is signed or kept: validate the call's data without requiring a key id.
            identity.api_key_id = Some("unset".into());
        }
        Ok(Recorder {
            inner: Arc::new(Inner {
                configured: identity.clone(),
                identity: std::sync::RwLock::new(identity),
                delivery,
                sdk,
                signer,
                seq: AtomicU64::new(first_seq),
                spool,
                reporter: std::sync::Mutex::new(reporter),
                link,
                closed: AtomicBool::new(false),
                cfg: cfg.clone(),
                clock,
            }),
        })
    }

    /// Validate, sign and spool one record; returns its id once it is written.
    pub fn record(&self, input: UsageRecordInput) -> Result<RecordId, UsageError> {
        self.record_with_id(input, RecordId::new_v7())
    }

    /// [`Recorder::record`] under an id chosen before the call (so a response can name
    /// its record, e.g. for [`Recorder::feedback`], before the record is written).
    pub fn record_with_id(
        &self,
        input: UsageRecordInput,
        id: RecordId,
    ) -> Result<RecordId, UsageError> {
        let sdk = &self.inner.sdk;
        self.sign_and_spool(|identity, seq| UsageRecord::build(input, identity, sdk, id, seq))
    }

    /// Validate, sign and spool one feedback record (see [`crate::feedback`]); returns its id
    /// once it is written. It shares the key's `seq` counter, spool, batches and delivery
    /// report with the usage records.
    pub fn feedback(&self, input: FeedbackInput) -> Result<RecordId, UsageError> {
        let sdk = &self.inner.sdk;
        self.sign_and_spool(|identity, seq| {
            FeedbackRecord::build(
                input,
                identity,
                sdk,
                RecordId::new_v7(),
                seq,
                self.inner.clock.unix_ms(),
            )
        })
    }

    /// The steps a usage record and a feedback record share: refused once shut down,
    /// the key's next `seq`, `build` with the identity records are stamped with now,
    /// then, when records are reported, canonicalized, signed and appended to the spool.
    /// Returns the record's id once it is written.
    fn sign_and_spool<R: Spooled>(
        &self,
        build: impl FnOnce(&Identity, u64) -> Result<R, UsageError>,
    ) -> Result<RecordId, UsageError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(UsageError::ShutDown);
        }
        let seq = inner.seq.fetch_add(1, Ordering::AcqRel);
        let rec = {
            let identity = inner.identity.read().unwrap_or_else(|p| p.into_inner());
            build(&identity, seq)?
        };
        let (Some(spool), Some(signer)) = (&inner.spool, &inner.signer) else {
            return Ok(rec.into_id());
        };
        let canonical = rec.signed_bytes()?;
        let wire = signing::wire_json(&canonical, &signer.sign(canonical.as_bytes()));
        spool.append(wire.as_bytes(), seq)?;
        Ok(rec.into_id())
    }

    /// Stamp later records with the key's binding (from the collector's policy answer):
    /// each unit (org, department, project, group, user) not set in `[identity]` takes
    /// the binding's value. Configured values are kept (the client checks them against
    /// the binding first). Records written before stay as they were: the collector
    /// attributes their absent units to the key's binding.
    pub fn apply_binding(&self, scope: &KeyScope) {
        let c = &self.inner.configured;
        // Configured values win (they were checked against the binding); the binding fills
        // the rest. Called on every policy-checked call: no allocation when unchanged.
        let want = [
            c.org
                .as_ref()
                .or(Some(&scope.org).filter(|o| !o.is_empty())),
            c.department.as_ref().or(scope.department.as_ref()),
            c.project.as_ref().or(scope.project.as_ref()),
            c.group.as_ref().or(scope.group.as_ref()),
            c.user.as_ref().or(scope.user.as_ref()),
        ];
        {
            let i = self
                .inner
                .identity
                .read()
                .unwrap_or_else(|p| p.into_inner());
            if [
                i.org.as_ref(),
                i.department.as_ref(),
                i.project.as_ref(),
                i.group.as_ref(),
                i.user.as_ref(),
            ] == want
            {
                return;
            }
        }
        let mut cur = self
            .inner
            .identity
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let [org, department, project, group, user] = want.map(|v| v.cloned());
        *cur = Identity {
            org,
            department,
            project,
            group,
            user,
            api_key_id: cur.api_key_id.clone(),
        };
        tracing::debug!(org = ?cur.org, department = ?cur.department, project = ?cur.project, "usage records now carry the key's binding");
    }

    /// What records are stamped with now.
    pub fn identity(&self) -> Identity {
        self.inner
            .identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Delivery counters shared with the reporter.
    pub fn delivery(&self) -> &delivery::Delivery {
        &self.inner.delivery
    }

    /// Delivered / pending / refused counts, refusal reasons and the oldest pending
    /// record's age, without waiting.
    pub fn report(&self) -> DeliveryReport {
        let d = &self.inner.delivery;
        let Some(spool) = &self.inner.spool else {
            return DeliveryReport {
                delivered: d.delivered(),
                refused: d.refused(),
                refusals: d.refusals(),
                last_refusal: d.last_refusal(),
                ..DeliveryReport::off()
            };
        };
        let st = spool.status();
        DeliveryReport {
            drained: st.pending_records == 0,
            delivered: d.delivered(),
            pending: st.pending_records,
            refused: d.refused(),
            refusals: d.refusals(),
            last_refusal: d.last_refusal(),
            dead_letters: st.dead_letters,
            overflow: st.overflow_count,
            oldest_pending_age_ms: if st.pending_records == 0 {
                None
            } else {
                oldest_pending_age_ms(spool, self.inner.clock.unix_ms())
            },
            last_error: st.last_error,
            spool_dir: Some(st.dir),
        }
    }

    /// [`Recorder::flush`], then the [`DeliveryReport`].
    pub async fn flush_report(&self, timeout: Duration) -> Result<DeliveryReport, UsageError> {
        let out = self.flush(timeout).await?;
        let mut report = self.report();
        // `drained` as the flush saw it (records made after it started do not count).
        report.drained = out.drained;
        Ok(report)
    }

    /// The signer's public key (standard base64), when records are signed.
    pub fn public_key(&self) -> Option<&str> {
        self.inner.signer.as_ref().map(UsageSigner::public_key)
    }

    /// fsync the spool and wait up to `timeout` for every record recorded so far to be
    /// delivered. Without a collector it only fsyncs (records stay spooled).
    pub async fn flush(&self, timeout: Duration) -> Result<FlushOutcome, UsageError> {
        let Some(spool) = &self.inner.spool else {
            return Ok(FlushOutcome {
                drained: true,
                pending_records: 0,
            });
        };
        let sp = spool.clone();
        tokio::task::spawn_blocking(move || sp.sync())
            .await
            .map_err(|_| UsageError::ShutDown)??;
        if self.link_state().holds() {
            // Suspended or offline: nothing may be sent, so waiting would only block.
            let pending = spool.pending_records();
            return Ok(FlushOutcome {
                drained: pending == 0,
                pending_records: pending,
            });
        }
        let ctl = self
            .inner
            .reporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|h| h.ctl.clone());
        let Some(ctl) = ctl else {
            let pending = spool.pending_records();
            return Ok(FlushOutcome {
                drained: pending == 0,
                pending_records: pending,
            });
        };
        let target = spool.flush_target();
        let mut rx = spool.resolved_tx.subscribe();
        ctl.flush_requested.store(true, Ordering::Release);
        ctl.flush.notify_one();
        let drained = tokio::time::timeout(timeout, rx.wait_for(|n| *n >= target))
            .await
            .is_ok_and(|r| r.is_ok());
        Ok(FlushOutcome {
            drained,
            pending_records: spool.pending_records(),
        })
    }

    /// Stop accepting records, drain the spool for up to `shutdown_timeout_ms`, stop
    /// the reporter, fsync and release the spool directory. Undelivered records stay in
    /// the spool for the next start.
    pub async fn shutdown(&self) -> Result<FlushOutcome, UsageError> {
        self.inner.closed.store(true, Ordering::Release);
        let outcome = self
            .flush(Duration::from_millis(self.inner.cfg.shutdown_timeout_ms))
            .await?;
        let handle = self
            .inner
            .reporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            h.ctl.stop.send_replace(true);
            let abort = h.join.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), h.join)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Some(sp) = &self.inner.spool {
            let sp = sp.clone();
            tokio::task::spawn_blocking(move || sp.close())
                .await
                .map_err(|_| UsageError::ShutDown)??;
        }
        Ok(FlushOutcome {
            pending_records: self.inner.spool.as_ref().map_or(0, |s| s.pending_records()),
            ..outcome
        })
    }

    /// Spool counters (`gaterouter spool status`).
    pub fn status(&self) -> SpoolStatus {
        match &self.inner.spool {
            Some(s) => s.status(),
            None => SpoolStatus {
                dir: PathBuf::new(),
                pending_records: 0,
                pending_bytes: 0,
                total_bytes: 0,
                max_bytes: 0,
                segments: 0,
                dead_letters: 0,
                overflow_count: 0,
                torn_bytes_skipped: 0,
                skipped_ranges: 0,
                cursor_repairs: 0,
                delivered_records: 0,
                max_seq: 0,
                last_error: None,
            },
        }
    }

    /// The spool directory, when spooling.
    pub fn spool_dir(&self) -> Option<&Path> {
        self.inner.spool.as_ref().map(|s| s.dir())
    }

    /// Pause delivery (the app goes to the background). Records are still signed and
    /// spooled; nothing is sent, and an upload in flight is abandoned (its records are
    /// sent again later; the collector drops duplicates). Returns at once.
    pub fn suspend(&self) {
        self.inner
            .link
            .send_if_modified(|l| !std::mem::replace(&mut l.suspended, true));
    }

    /// Resume delivery (the app is in the foreground again): what waited is sent now,
    /// unless the network class is offline. Returns at once.
    pub fn resume(&self) {
        self.inner
            .link
            .send_if_modified(|l| std::mem::replace(&mut l.suspended, false));
    }

    /// Tell the reporter which network the device is on: cellular batches with
    /// `reporting.cellular_batch_*`, offline holds records like [`Recorder::suspend`].
    /// Returns at once.
    pub fn set_network_class(&self, network: NetworkClass) {
        self.inner
            .link
            .send_if_modified(|l| std::mem::replace(&mut l.network, network) != network);
    }

    /// The current suspended flag and network class.
    pub fn link_state(&self) -> LinkState {
        *self.inner.link.borrow()
    }
}

/// A record the recorder signs and spools: a usage record or a feedback record.
trait Spooled {
    /// The signed bytes: the record's RFC 8785 canonical JSON (without `signature`).
    fn signed_bytes(&self) -> Result<String, UsageError>;
    /// Its id.
    fn into_id(self) -> RecordId;
}

impl Spooled for UsageRecord {
    fn signed_bytes(&self) -> Result<String, UsageError> {
        self.canonical_json()
    }
    fn into_id(self) -> RecordId {
        self.id
    }
}

impl Spooled for FeedbackRecord {
    fn signed_bytes(&self) -> Result<String, UsageError> {
        self.canonical_json()
    }
    fn into_id(self) -> RecordId {
        self.id
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self
            .reporter
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.ctl.stop.send_replace(true);
        }
    }
}

/// Age at `now_ms` of the first pending record, from its `ts_end`.
fn oldest_pending_age_ms(spool: &Spool, now_ms: u64) -> Option<u64> {
    #[derive(Deserialize)]
    struct End {
        // Feedback records carry their one timestamp as `ts`.
        #[serde(alias = "ts")]
        ts_end: u64,
    }
    let batch = spool.read_batch(1, u64::MAX).ok()?;
    let first = batch.records.first()?;
    let end: End = serde_json::from_slice(&first.payload).ok()?;
    Some(now_ms.saturating_sub(end.ts_end))
}

fn open_spool(cfg: &ReportingConfig, identity: &Identity) -> Result<Arc<Spool>, UsageError> {
    let opts = |dir: PathBuf| {
        SpoolOptions::new(
            dir,
            Duration::from_millis(cfg.fsync_interval_ms),
            cfg.max_spool_bytes,
        )
    };
    if let Some(dir) = &cfg.spool_dir {
        return Spool::open(opts(dir.clone()));
    }
    let base = default_spool_base(identity);
    let mut last = None;
    for slot in 0..DEFAULT_SLOTS {
        match Spool::open(opts(base.join(format!("p{slot}")))) {
            Ok(s) => return Ok(s),
            Err(e @ UsageError::SpoolLocked { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(UsageError::ShutDown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: ReportingConfig = toml::from_str("").unwrap();
        assert_eq!(c, ReportingConfig::default());
        assert_eq!(c.fsync_interval_ms, 200);
        assert!(toml::from_str::<ReportingConfig>("colector_url = \"x\"").is_err());
        let c: ReportingConfig =
            toml::from_str("mode = \"off\"\ncollector_url = \"http://h:1/\"").unwrap();
        assert_eq!(c.mode, ReportingMode::Off);
        assert_eq!(c.endpoint().unwrap(), "http://h:1/v1/usage");
    }

    #[test]
    fn config_validation_names_fields() {
        let c = ReportingConfig {
            batch_max_records: 0,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("reporting.batch_max_records")
        );
        let c = ReportingConfig {
            collector_url: Some("localhost:9".into()),
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("reporting.collector_url")
        );
    }

    #[test]
    fn off_mode_validates_but_keeps_nothing() {
        let cfg = ReportingConfig {
            mode: ReportingMode::Off,
            ..Default::default()
        };
        // No key and no identity needed when nothing is kept.
        let r = Recorder::start(&cfg, &Identity::default()).unwrap();
        let mut i = UsageRecordInput {
            provider: "openai".into(),
            model: "m".into(),
            ..Default::default()
        };
        r.record(i.clone()).unwrap();
        let mut bad = i.clone();
        bad.provider.clear();
        assert!(
            matches!(r.record(bad).unwrap_err(), UsageError::InvalidField { field, .. } if field == "provider")
        );
        i.tags.insert("x".repeat(100), "v".into());
        assert!(matches!(
            r.record(i).unwrap_err(),
            UsageError::InvalidTag { .. }
        ));
        assert_eq!(r.status().pending_records, 0);
    }

    #[test]
    fn spool_mode_without_key_is_a_config_error() {
        let cfg = ReportingConfig {
            signing_key_env: Some("GATEROUTER_TEST_NO_SUCH_KEY".into()),
            ..Default::default()
        };
        let e = Recorder::start(&cfg, &Identity::default()).unwrap_err();
        assert!(e.to_string().contains("GATEROUTER_TEST_NO_SUCH_KEY"), "{e}");
    }
}
