//! The reporter's decisions without its I/O: a sans-IO state machine in the shape of
//! mozilla/glean's upload manager.
//!
//! [`Uploader`] owns batching (by size and age, per network class), retries (the crate's
//! one [`ExponentialBackoff`], honouring `Retry-After`), acknowledgements,
//! dead-lettering and the link state (suspended, offline). It never touches a socket, a
//! file or a timer: the driver in [`super::reporter`] asks it for the next [`Task`]
//! (passing the time, the link state and the number of pending records), does that one
//! piece of I/O (read the spool, POST, write dead letters and move the cursor, fsync),
//! and hands the result back (`on_batch`, `on_result`, `on_resolved`, `on_synced`).
//! Time comes in as an argument (read from a [`Clock`] by the driver) and the backoff's
//! randomness from an injected [`Jitter`], so the unit tests below drive it through
//! hours of retries without sockets or sleeping.
//!
//! Exactly-once acknowledgement: a batch is read from the spool's cursor and the cursor
//! moves past it only after its outcome is settled (every record accepted, duplicate or
//! dead-lettered). Until then the same records go again (after a crash too: they are
//! read again from the saved cursor, and the collector answers them as duplicates);
//! after it they are never read again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::delivery::DeliveryEvent;
use super::spool::{Batch, SpooledRecord};
use gaterouter_types::backoff::{ExponentialBackoff, Jitter};

/// Answers that leave records unmentioned before those records are dead-lettered.
pub const MAX_UNACKNOWLEDGED_ROUNDS: u32 = 5;
/// Upper bound on the bytes of one request body.
pub const MAX_BATCH_BYTES: u64 = 8 << 20;
/// Wait after the dead-letter file could not be written, before trying again.
pub const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);
/// Pause after moving past a stretch of unreadable spool bytes.
pub const SKIP_PAUSE: Duration = Duration::from_millis(10);

/// Where "now" comes from: [`SystemClock`] in production, a [`ManualClock`] in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Now on the calendar, Unix milliseconds (budget windows, signed requests). A clock
    /// moved by hand moves this too.
    fn unix_ms(&self) -> u64 {
        crate::record::unix_ms_now()
    }
}

/// The monotonic system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock moved by hand (tests, replays): from the system's time when it is made, its
/// instants and its calendar move together, only by [`ManualClock::advance`].
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    unix0: u64,
    offset: std::sync::Mutex<Duration>,
}

impl ManualClock {
    /// A clock stopped at the system's now.
    pub fn new() -> Self {
        ManualClock {
            start: Instant::now(),
            unix0: crate::record::unix_ms_now(),
            offset: std::sync::Mutex::new(Duration::ZERO),
        }
    }

    /// Move it forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }
    fn unix_ms(&self) -> u64 {
        self.unix0
            .saturating_add(u64::try_from(self.offset().as_millis()).unwrap_or(u64::MAX))
    }
}

/// The collector's answer to one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// Ids stored now.
    #[serde(default)]
    pub accepted: Vec<String>,
    /// Ids the collector already had (a resend).
    #[serde(default)]
    pub duplicate: Vec<String>,
    /// Ids refused for good, with the reason.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

/// One refused record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Record id.
    pub id: String,
    /// Why (e.g. `bad signature`, `unknown api_key_id`).
    pub reason: String,
}

/// The kind of network the device is on, as the app reports it (the SDK does not probe).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum NetworkClass {
    /// Unmetered (Wi-Fi, Ethernet): the normal batching policy. The default.
    #[default]
    Wifi,
    /// Metered mobile data: bigger batches and longer waits.
    Cellular,
    /// No network: records are held in the spool, nothing is sent.
    Offline,
}

impl NetworkClass {
    /// The lowercase name (`wifi`, `cellular`, `offline`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What the app told the reporter about its situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LinkState {
    /// The app is in the background (`Recorder::suspend`).
    pub suspended: bool,
    /// The network class (`Recorder::set_network_class`).
    pub network: NetworkClass,
}

impl LinkState {
    /// True when nothing may be sent: suspended or offline.
    pub fn holds(&self) -> bool {
        self.suspended || self.network == NetworkClass::Offline
    }
}

/// The uploader's policy: batching per network class and the retry backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPolicy {
    /// Records per batch.
    pub batch_max_records: usize,
    /// Longest a record waits for a fuller batch.
    pub batch_max_age: Duration,
    /// Records per batch on cellular.
    pub cellular_batch_max_records: usize,
    /// Longest a record waits for a fuller batch on cellular.
    pub cellular_batch_max_age: Duration,
    /// Retry waits; its `max` also caps a `Retry-After` and the wait after a spool read
    /// error.
    pub backoff: ExponentialBackoff,
}

impl UploadPolicy {
    /// `(records per batch, longest wait)` on this network.
    fn batching(&self, network: NetworkClass) -> (usize, Duration) {
        match network {
            NetworkClass::Cellular => (
                self.cellular_batch_max_records.max(1),
                self.cellular_batch_max_age,
            ),
            NetworkClass::Wifi | NetworkClass::Offline => {
                (self.batch_max_records.max(1), self.batch_max_age)
            }
        }
    }
}

/// What the driver should do next.
#[derive(Debug, Clone)]
pub enum Task {
    /// Entering the held state (suspended or offline): fsync the spool, then
    /// [`Uploader::on_synced`] (the OS may freeze or kill a backgrounded app).
    Sync,
    /// Nothing may be sent: wait for the link state to change.
    Held,
    /// Nothing is pending: wait for an append, a flush or a link change.
    Idle,
    /// Wait this long, or less if a record is appended, a flush is asked for or the
    /// link changes; then ask again.
    Wait(Duration),
    /// Read a batch from the spool's cursor and hand it to [`Uploader::on_batch`].
    Read {
        /// At most this many records.
        max_records: usize,
        /// About this many bytes at most.
        max_bytes: u64,
    },
    /// POST this batch; hand the outcome to [`Uploader::on_result`].
    Upload(Arc<Batch>),
    /// Settle this batch: write its dead letters, count the event, move the cursor past
    /// it; then [`Uploader::on_resolved`].
    Resolve(Arc<Resolution>),
}

/// How a batch is settled.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The batch (the spool cursor moves to its end).
    pub batch: Arc<Batch>,
    /// Records refused for good, by index in the batch, with the reason: the
    /// dead-letter file gets them before the cursor moves.
    pub dead: Vec<(usize, String)>,
    /// What to count in the delivery report (`None` for a batch of unreadable bytes).
    pub event: Option<DeliveryEvent>,
}

impl Resolution {
    /// The dead letters as [`super::Spool::dead_letter`] takes them.
    pub fn dead_letters(&self) -> Vec<(&SpooledRecord, String)> {
        self.dead
            .iter()
            .filter_map(|(i, why)| self.batch.records.get(*i).map(|r| (r, why.clone())))
            .collect()
    }
}

/// What came of one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The collector answered 2xx with per-record outcomes (accepted and duplicate ids
    /// are delivered, rejected ones are dead-lettered, unmentioned ones go again).
    Answered(BatchResponse),
    /// Worth trying again (network error, timeout, 408, 429, 5xx, 401/403/404/405, an
    /// unreadable answer): the message is shown as the spool's last error.
    Retryable {
        /// What went wrong.
        message: String,
        /// The collector's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// 413: the batch is too large.
    TooLarge,
    /// Any other 4xx: every record of the batch is refused for this reason.
    RejectedAll(String),
    /// The link went down (suspended, offline) while the upload was in flight: the
    /// upload was abandoned.
    LinkDown,
}

/// What came of settling a batch ([`Task::Resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Dead letters written, event counted, cursor moved.
    Done,
    /// The dead-letter file could not be written (nothing counted, cursor not moved).
    DeadLetterFailed(String),
    /// The cursor could not be moved (the batch is read and sent again).
    AckFailed(String),
}

/// The batch being delivered.
#[derive(Debug)]
struct InFlight {
    batch: Arc<Batch>,
    /// Retries so far (the backoff step).
    attempt: u32,
    /// Answers received for this batch.
    answers: u32,
    /// Not before this instant (a retry wait).
    retry_at: Option<Instant>,
    /// Set once the outcome is decided.
    resolution: Option<Arc<Resolution>>,
}

/// The reporter's state machine (see the module docs).
pub struct Uploader {
    policy: UploadPolicy,
    jitter: Box<dyn Jitter>,
    /// The link state seen last.
    link: LinkState,
    /// In the held state (synced on entry).
    held: bool,
    /// Send what is pending now, whatever the batching policy (a flush, a resume).
    flush: bool,
    /// When the current wait for a fuller batch started.
    oldest: Option<Instant>,
    /// After a 413: the batch size the collector may accept.
    split: Option<usize>,
    /// Nothing before this instant (after a spool read error, a skipped stretch, a
    /// failed dead-letter write).
    not_before: Option<Instant>,
    current: Option<InFlight>,
    /// A change of the spool's last error not yet taken by the driver.
    error_update: Option<Option<String>>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("policy", &self.policy)
            .field("link", &self.link)
            .field("held", &self.held)
            .field("flush", &self.flush)
            .field("oldest", &self.oldest)
            .field("split", &self.split)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Uploader {
    /// A fresh uploader: nothing in flight; it reads from the spool's cursor.
    pub fn new(policy: UploadPolicy, jitter: Box<dyn Jitter>) -> Self {
        Uploader {
            policy,
            jitter,
            link: LinkState::default(),
            held: false,
            flush: false,
            oldest: None,
            split: None,
            not_before: None,
            current: None,
            error_update: None,
        }
    }

    /// Send what is pending at once, in full batches (`Recorder::flush`).
    pub fn flush(&mut self) {
        self.flush = true;
    }

    /// The spool's last error, when it changed since the last call (`Some(None)`
    /// clears it).
    pub fn take_error_update(&mut self) -> Option<Option<String>> {
        self.error_update.take()
    }

    fn set_error(&mut self, e: Option<String>) {
        self.error_update = Some(e);
    }

    /// The next thing to do, at `now`, with the app's `link` state and `pending` records
    /// in the spool.
    pub fn next_task(&mut self, now: Instant, link: LinkState, pending: u64) -> Task {
        let changed = link != self.link;
        self.link = link;
        if link.holds() {
            // A decided batch is still settled (local I/O only). An upload in flight or
            // a retry wait is abandoned: the batch stays in the spool and goes again
            // later (the collector drops duplicates).
            if self.current.as_ref().is_none_or(|c| c.resolution.is_none()) {
                self.current = None;
                if !self.held {
                    self.held = true;
                    return Task::Sync;
                }
                return Task::Held;
            }
        } else if self.held {
            // Resumed or back online: what waited goes now, in full batches.
            self.held = false;
            self.flush = true;
        }
        if let Some(until) = self.not_before {
            if now < until {
                return Task::Wait(until - now);
            }
            self.not_before = None;
        }
        if let Some(c) = &mut self.current {
            if let Some(r) = &c.resolution {
                return Task::Resolve(r.clone());
            }
            if changed && c.retry_at.is_some() {
                // Another network during a retry wait: worth trying at once, from the
                // first backoff step.
                c.attempt = 0;
                c.retry_at = None;
            }
            if let Some(at) = c.retry_at {
                if now < at {
                    return Task::Wait(at - now);
                }
            }
            return Task::Upload(c.batch.clone());
        }
        if pending == 0 {
            self.oldest = None;
            self.flush = false;
            return Task::Idle;
        }
        let (batch_records, batch_age) = self.policy.batching(link.network);
        let max_records = self.split.unwrap_or(batch_records).max(1);
        let due = *self.oldest.get_or_insert(now) + batch_age;
        if (pending as usize) < max_records && !self.flush && now < due {
            return Task::Wait(due - now);
        }
        Task::Read {
            max_records,
            max_bytes: MAX_BATCH_BYTES,
        }
    }

    /// The spool was fsynced on entering the held state (or could not be).
    pub fn on_synced(&mut self, result: Result<(), String>) {
        if let Err(e) = result {
            self.set_error(Some(format!("syncing the spool on suspend: {e}")));
        }
    }

    /// The batch read for [`Task::Read`].
    pub fn on_batch(&mut self, now: Instant, batch: Result<Batch, String>) {
        match batch {
            Err(e) => {
                self.set_error(Some(format!("reading the spool: {e}")));
                self.not_before = Some(now + self.policy.backoff.max);
            }
            Ok(batch) => {
                let batch = Arc::new(batch);
                // Only unreadable bytes were left: move past them, counting nothing.
                let resolution = batch.records.is_empty().then(|| {
                    Arc::new(Resolution {
                        batch: batch.clone(),
                        dead: Vec::new(),
                        event: None,
                    })
                });
                self.current = Some(InFlight {
                    batch,
                    attempt: 0,
                    answers: 0,
                    retry_at: None,
                    resolution,
                });
            }
        }
    }

    /// The outcome of the [`Task::Upload`] of the batch in flight.
    pub fn on_result(&mut self, now: Instant, outcome: UploadOutcome) {
        let Some(mut c) = self.current.take() else {
            return;
        };
        let retry_after = match outcome {
            UploadOutcome::LinkDown => return,
            UploadOutcome::Answered(resp) => {
                c.answers += 1;
                match answer_resolution(&c.batch, &resp, c.answers) {
                    Ok(r) => {
                        c.resolution = Some(Arc::new(r));
                        self.current = Some(c);
                        return;
                    }
                    Err(missing) => {
                        self.set_error(Some(format!(
                            "collector did not acknowledge {missing} of {} records; resending",
                            c.batch.records.len()
                        )));
                        None
                    }
                }
            }
            UploadOutcome::Retryable {
                message,
                retry_after,
            } => {
                self.set_error(Some(message));
                retry_after
            }
            UploadOutcome::TooLarge if c.batch.records.len() > 1 => {
                // Read again, half as many.
                self.split = Some((c.batch.records.len() / 2).max(1));
                return;
            }
            UploadOutcome::TooLarge => {
                c.resolution = Some(Arc::new(refuse_all(
                    &c.batch,
                    "collector answered HTTP 413 for this single record",
                )));
                self.current = Some(c);
                return;
            }
            UploadOutcome::RejectedAll(why) => {
                c.resolution = Some(Arc::new(refuse_all(&c.batch, &why)));
                self.current = Some(c);
                return;
            }
        };
        let wait = match retry_after {
            Some(ra) => ra.min(self.policy.backoff.max),
            None => self.policy.backoff.delay(c.attempt, self.jitter.as_mut()),
        };
        c.attempt = c.attempt.saturating_add(1);
        c.retry_at = Some(now + wait);
        self.current = Some(c);
    }

    /// What came of the [`Task::Resolve`] of the batch in flight.
    pub fn on_resolved(&mut self, now: Instant, result: Resolved) {
        match result {
            Resolved::Done => {
                let Some(c) = self.current.take() else {
                    return;
                };
                if c.batch.records.is_empty() {
                    self.not_before = Some(now + SKIP_PAUSE);
                } else {
                    self.oldest = None;
                    self.split = None;
                    self.set_error(None);
                }
            }
            Resolved::DeadLetterFailed(e) => {
                // Keep the resolution; write again in a while.
                self.set_error(Some(format!("writing the dead-letter file: {e}")));
                self.not_before = Some(now + DEAD_LETTER_RETRY);
            }
            Resolved::AckFailed(e) => {
                // The cursor did not move: the batch is read and sent again.
                self.set_error(Some(format!("saving the delivery cursor: {e}")));
                self.current = None;
            }
        }
    }
}

/// Every record of `batch` refused for `why`.
fn refuse_all(batch: &Arc<Batch>, why: &str) -> Resolution {
    let dead: Vec<(usize, String)> = (0..batch.records.len())
        .map(|i| (i, why.to_owned()))
        .collect();
    Resolution {
        event: Some(event_of(batch, &dead, Vec::new())),
        batch: batch.clone(),
        dead,
    }
}

fn event_of(batch: &Batch, dead: &[(usize, String)], delivered: Vec<String>) -> DeliveryEvent {
    DeliveryEvent {
        delivered,
        refused: dead
            .iter()
            .filter_map(|(i, why)| batch.records.get(*i).map(|r| (r.id.clone(), why.clone())))
            .collect(),
    }
}

/// Settle `batch` after the `answers`-th answer `resp`, or `Err(records unmentioned)`
/// when they should go again.
fn answer_resolution(
    batch: &Arc<Batch>,
    resp: &BatchResponse,
    answers: u32,
) -> Result<Resolution, usize> {
    let done: HashSet<&str> = resp
        .accepted
        .iter()
        .chain(resp.duplicate.iter())
        .map(String::as_str)
        .collect();
    let rejected: HashMap<&str, &str> = resp
        .rejected
        .iter()
        .map(|r| (r.id.as_str(), r.reason.as_str()))
        .collect();
    let missing: Vec<usize> = (0..batch.records.len())
        .filter(|i| {
            let id = batch.records[*i].id.as_str();
            !done.contains(id) && !rejected.contains_key(id)
        })
        .collect();
    if !missing.is_empty() && answers < MAX_UNACKNOWLEDGED_ROUNDS {
        return Err(missing.len());
    }
    let mut dead: Vec<(usize, String)> = batch
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| !done.contains(r.id.as_str()))
        .filter_map(|(i, r)| {
            rejected
                .get(r.id.as_str())
                .map(|why| (i, (*why).to_owned()))
        })
        .collect();
    dead.extend(missing.into_iter().map(|i| {
        (
            i,
            format!("not acknowledged by the collector after {MAX_UNACKNOWLEDGED_ROUNDS} answers"),
        )
    }));
    let delivered = batch
        .records
        .iter()
        .filter(|r| done.contains(r.id.as_str()))
        .map(|r| r.id.clone())
        .collect();
    Ok(Resolution {
        event: Some(event_of(batch, &dead, delivered)),
        batch: batch.clone(),
        dead,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {

    use super::*;
    use crate::delivery::Delivery;
    use crate::spool::Cursor;
    use gaterouter_types::backoff::NoJitter;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 3 records or 100 ms on Wi-Fi, 10 records or 1 s on cellular; retries from 100 ms
    /// doubling to 800 ms.
    fn policy() -> UploadPolicy {
        UploadPolicy {
            batch_max_records: 3,
            batch_max_age: ms(100),
            cellular_batch_max_records: 10,
            cellular_batch_max_age: ms(1_000),
            backoff: ExponentialBackoff {
                initial: ms(100),
                max: ms(800),
            },
        }
    }

    /// An in-memory spool: records by position, the cursor, the dead-letter file.
    #[derive(Default)]
    struct Disk {
        records: Vec<SpooledRecord>,
        cursor: usize,
        dead: Vec<(String, String)>,
        fail_read: bool,
        fail_dead_letter: bool,
        fail_ack: bool,
    }

    impl Disk {
        fn append(&mut self, n: usize) {
            for _ in 0..n {
                let i = self.records.len();
                self.records.push(SpooledRecord {
                    id: format!("r{i}"),
                    seq: i as u64 + 1,
                    payload: format!("{{\"id\":\"r{i}\"}}").into_bytes(),
                });
            }
        }

        fn pending(&self) -> u64 {
            (self.records.len() - self.cursor) as u64
        }

        fn read(&self, max: usize) -> Batch {
            let end = (self.cursor + max).min(self.records.len());
            let records = self.records[self.cursor..end].to_vec();
            Batch {
                bytes: records.iter().map(|r| r.payload.len() as u64).sum(),
                records,
                end: Cursor {
                    segment: 0,
                    offset: end as u64,
                },
            }
        }
    }

    fn ids(b: &Batch) -> Vec<String> {
        b.records.iter().map(|r| r.id.clone()).collect()
    }

    fn accept_all(b: &Batch) -> UploadOutcome {
        UploadOutcome::Answered(BatchResponse {
            accepted: ids(b),
            ..Default::default()
        })
    }

    fn server_error(_: &Batch) -> UploadOutcome {
        UploadOutcome::Retryable {
            message: "collector answered HTTP 500: down".into(),
            retry_after: None,
        }
    }

    /// The uploader and a world it acts on through its tasks, with no I/O: a hand-moved
    /// clock, the link state, an in-memory spool, the delivery counters.
    struct World {
        up: Uploader,
        clock: ManualClock,
        link: LinkState,
        disk: Disk,
        delivery: Delivery,
        /// The ids of each upload, in order.
        sent: Vec<Vec<String>>,
        syncs: u32,
        /// The spool's last error as the driver would publish it.
        last_error: Option<String>,
    }

    impl World {
        fn new() -> Self {
            World {
                up: Uploader::new(policy(), Box::new(NoJitter)),
                clock: ManualClock::new(),
                link: LinkState::default(),
                disk: Disk::default(),
                delivery: Delivery::default(),
                sent: Vec::new(),
                syncs: 0,
                last_error: None,
            }
        }

        /// A crash and a restart: a new uploader on the same spool.
        fn restart(&mut self) {
            self.up = Uploader::new(policy(), Box::new(NoJitter));
        }

        fn task(&mut self) -> Task {
            self.up
                .next_task(self.clock.now(), self.link, self.disk.pending())
        }

        /// Do one task that is not a wait (answering an upload with `answer`); return
        /// the wait otherwise.
        fn step(&mut self, answer: &mut dyn FnMut(&Batch) -> UploadOutcome) -> Option<Task> {
            let now = self.clock.now();
            let waiting = match self.task() {
                Task::Sync => {
                    self.syncs += 1;
                    self.up.on_synced(Ok(()));
                    None
                }
                Task::Read { max_records, .. } => {
                    let b = if self.disk.fail_read {
                        Err("disk on fire".to_owned())
                    } else {
                        Ok(self.disk.read(max_records))
                    };
                    self.up.on_batch(now, b);
                    None
                }
                Task::Upload(b) => {
                    self.sent.push(ids(&b));
                    let outcome = answer(&b);
                    self.up.on_result(now, outcome);
                    None
                }
                Task::Resolve(r) => {
                    let result = if self.disk.fail_dead_letter {
                        Resolved::DeadLetterFailed("disk full".into())
                    } else {
                        for (rec, why) in r.dead_letters() {
                            self.disk.dead.push((rec.id.clone(), why));
                        }
                        if let Some(e) = &r.event {
                            self.delivery.note(e);
                        }
                        if self.disk.fail_ack {
                            Resolved::AckFailed("read-only file system".into())
                        } else {
                            self.disk.cursor = r.batch.end.offset as usize;
                            Resolved::Done
                        }
                    };
                    self.up.on_resolved(now, result);
                    None
                }
                t @ (Task::Idle | Task::Held | Task::Wait(_)) => Some(t),
            };
            if let Some(e) = self.up.take_error_update() {
                self.last_error = e;
            }
            waiting
        }

        /// Do tasks until the uploader waits; return the wait.
        fn run(&mut self, mut answer: impl FnMut(&Batch) -> UploadOutcome) -> Task {
            for _ in 0..1_000 {
                if let Some(t) = self.step(&mut answer) {
                    return t;
                }
            }
            panic!("no wait after 1000 tasks")
        }

        fn flat_sent(&self) -> Vec<String> {
            self.sent.iter().flatten().cloned().collect()
        }
    }

    fn wait_of(t: &Task) -> Option<Duration> {
        match t {
            Task::Wait(d) => Some(*d),
            _ => None,
        }
    }

    fn ids_from(a: usize, b: usize) -> Vec<String> {
        (a..b).map(|i| format!("r{i}")).collect()
    }

    #[test]
    fn idle_when_empty() {
        let mut w = World::new();
        assert!(matches!(w.run(accept_all), Task::Idle));
        w.up.flush();
        assert!(matches!(w.run(accept_all), Task::Idle));
        w.clock.advance(Duration::from_secs(3_600));
        assert!(matches!(w.run(accept_all), Task::Idle));
        assert!(w.sent.is_empty() && w.syncs == 0);
    }

    #[test]
    fn batches_by_size_and_by_age() {
        let mut w = World::new();
        w.disk.append(1);
        assert_eq!(wait_of(&w.run(accept_all)), Some(ms(100)));
        w.clock.advance(ms(40));
        assert_eq!(wait_of(&w.run(accept_all)), Some(ms(60)));
        // The age counts from the first record waiting, not the latest.
        w.disk.append(1);
        assert_eq!(wait_of(&w.run(accept_all)), Some(ms(60)));
        // A full batch goes at once.
        w.disk.append(1);
        assert!(matches!(w.run(accept_all), Task::Idle));
        assert_eq!(w.sent, vec![ids_from(0, 3)]);
        // After an acknowledged batch the age starts again with the next record.
        w.disk.append(1);
        assert_eq!(wait_of(&w.run(accept_all)), Some(ms(100)));
        w.clock.advance(ms(99));
        assert_eq!(wait_of(&w.run(accept_all)), Some(ms(1)));
        w.clock.advance(ms(1));
        assert!(matches!(w.run(accept_all), Task::Idle));
        assert_eq!(w.sent[1], ids_from(3, 4));
        // Seven records: two full batches, the last one waits for its age.
        w.disk.append(7);
        assert_eq!(wait_of(&w.run(accept_all)), Some(ms(100)));
        assert_eq!(w.sent[2..], [ids_from(4, 7), ids_from(7, 10)]);
        // A flush sends it now.
        w.up.flush();
        assert!(matches!(w.run(accept_all), Task::Idle));
        assert_eq!(w.sent[4], ids_from(10, 11));
        assert_eq!(w.delivery.delivered(), 11);
    }

    #[test]
    fn cellular_batches_bigger_and_waits_longer() {
        let mut w = World::new();
        w.link.network = NetworkClass::Cellular;
        w.disk.append(5);
        assert_eq!(wait_of(&w.run(accept_all)), Some(ms(1_000)));
        w.clock.advance(ms(500));
        w.disk.append(5);
        assert!(matches!(w.run(accept_all), Task::Idle));
        assert_eq!(w.sent, vec![ids_from(0, 10)]);
        // Back on Wi-Fi: the Wi-Fi age.
        w.link.network = NetworkClass::Wifi;
        w.disk.append(1);
        assert_eq!(wait_of(&w.run(accept_all)), Some(ms(100)));
    }

    #[test]
    fn retries_back_off_exponentially_and_honour_retry_after() {
        let mut w = World::new();
        w.disk.append(3);
        // The jitter source is the whole step: 100, 200, 400, then the 800 ms ceiling.
        for want in [100, 200, 400, 800, 800] {
            let t = w.run(server_error);
            assert_eq!(wait_of(&t), Some(ms(want)));
            // Part of the wait passes: still waiting, nothing sent.
            let before = w.sent.len();
            w.clock.advance(ms(want / 2));
            assert_eq!(wait_of(&w.run(server_error)), Some(ms(want - want / 2)));
            assert_eq!(w.sent.len(), before);
            w.clock.advance(ms(want - want / 2));
        }
        assert_eq!(
            w.last_error.as_deref(),
            Some("collector answered HTTP 500: down")
        );
        // A Retry-After is honoured as given, up to the ceiling.
        let t = w.run(|_| UploadOutcome::Retryable {
            message: "collector answered HTTP 429: slow down".into(),
            retry_after: Some(ms(300)),
        });
        assert_eq!(wait_of(&t), Some(ms(300)));
        w.clock.advance(ms(300));
        let t = w.run(|_| UploadOutcome::Retryable {
            message: "collector answered HTTP 503: later".into(),
            retry_after: Some(Duration::from_secs(3_600)),
        });
        assert_eq!(wait_of(&t), Some(ms(800)));
        w.clock.advance(ms(800));
        assert!(matches!(w.run(accept_all), Task::Idle));
        // Always the same batch, read once; the error clears on delivery.
        assert_eq!(w.sent.len(), 8);
        assert!(w.sent.iter().all(|s| *s == ids_from(0, 3)));
        assert_eq!(w.last_error, None);
        assert_eq!(w.delivery.delivered(), 3);
        // The next batch starts from the first step again.
        w.disk.append(3);
        assert_eq!(wait_of(&w.run(server_error)), Some(ms(100)));
    }

    #[test]
    fn a_network_change_during_a_retry_wait_retries_at_once_from_the_first_step() {
        let mut w = World::new();
        w.disk.append(3);
        for want in [100, 200] {
            assert_eq!(wait_of(&w.run(server_error)), Some(ms(want)));
            w.clock.advance(ms(want));
        }
        assert_eq!(wait_of(&w.run(server_error)), Some(ms(400)));
        w.link.network = NetworkClass::Cellular;
        assert_eq!(wait_of(&w.run(server_error)), Some(ms(100)));
        assert_eq!(w.sent.len(), 4);
    }

    #[test]
    fn refusals_are_dead_lettered_counted_and_reported() {
        let mut w = World::new();
        w.disk.append(3);
        w.run(|_| {
            UploadOutcome::Answered(BatchResponse {
                accepted: vec!["r0".into()],
                duplicate: vec!["r2".into()],
                rejected: vec![Rejected {
                    id: "r1".into(),
                    reason: "bad signature".into(),
                }],
            })
        });
        assert_eq!(w.disk.dead, vec![("r1".into(), "bad signature".into())]);
        assert_eq!((w.delivery.delivered(), w.delivery.refused()), (2, 1));
        assert_eq!(w.disk.cursor, 3);

        // Any other 4xx refuses the whole batch.
        w.disk.append(3);
        w.run(|_| UploadOutcome::RejectedAll("collector rejected the batch with HTTP 400".into()));
        assert_eq!(w.disk.dead.len(), 4);
        assert_eq!(w.delivery.refused(), 4);

        // 413: half the batch next time; a single record still too large is refused.
        w.disk.append(3);
        let mut n = 0;
        assert!(w.step(&mut |_| UploadOutcome::TooLarge).is_none()); // read
        assert!(w.step(&mut |_| UploadOutcome::TooLarge).is_none()); // upload
        assert!(matches!(w.task(), Task::Read { max_records: 1, .. }));
        w.run(|b: &Batch| {
            n += 1;
            if n == 1 {
                UploadOutcome::TooLarge
            } else {
                accept_all(b)
            }
        });
        assert_eq!(w.sent[2..4], [ids_from(6, 9), ids_from(6, 7)]);
        assert_eq!(
            w.disk.dead.last().unwrap(),
            &(
                "r6".into(),
                "collector answered HTTP 413 for this single record".into()
            )
        );

        // Records no answer mentions go again, then are refused after the fifth answer.
        let mut w = World::new();
        w.disk.append(3);
        let partial = |_: &Batch| {
            UploadOutcome::Answered(BatchResponse {
                accepted: vec!["r0".into()],
                ..Default::default()
            })
        };
        for want in [100, 200, 400, 800] {
            assert_eq!(wait_of(&w.run(partial)), Some(ms(want)));
            assert_eq!(
                w.last_error.as_deref(),
                Some("collector did not acknowledge 2 of 3 records; resending")
            );
            w.clock.advance(ms(want));
        }
        assert!(matches!(w.run(partial), Task::Idle));
        assert_eq!(w.sent.len(), MAX_UNACKNOWLEDGED_ROUNDS as usize);
        let why =
            format!("not acknowledged by the collector after {MAX_UNACKNOWLEDGED_ROUNDS} answers");
        assert_eq!(
            w.disk.dead,
            vec![("r1".into(), why.clone()), ("r2".into(), why.clone())]
        );
        assert_eq!((w.delivery.delivered(), w.delivery.refused()), (1, 2));
        assert_eq!(
            w.delivery.refusals(),
            vec![crate::delivery::RefusalCount {
                reason: why,
                count: 2
            }]
        );
    }

    #[test]
    fn a_held_link_sends_nothing_syncs_once_and_resuming_sends_at_once() {
        let mut w = World::new();
        w.link.suspended = true;
        w.disk.append(2);
        assert!(matches!(w.run(accept_all), Task::Held));
        w.clock.advance(Duration::from_secs(3_600));
        w.disk.append(1);
        assert!(matches!(w.run(accept_all), Task::Held));
        // Offline as well: still held, no second fsync.
        w.link.network = NetworkClass::Offline;
        assert!(matches!(w.run(accept_all), Task::Held));
        w.link.suspended = false;
        assert!(matches!(w.run(accept_all), Task::Held));
        assert!(w.sent.is_empty());
        assert_eq!(w.syncs, 1);
        // Back online: everything that waited goes now, in full batches, even below
        // the batch size and age.
        w.link.network = NetworkClass::Wifi;
        w.disk.append(2);
        assert!(matches!(w.run(accept_all), Task::Idle));
        assert_eq!(w.sent, vec![ids_from(0, 3), ids_from(3, 5)]);
    }

    #[test]
    fn going_down_abandons_an_upload_or_a_retry_wait_and_the_batch_goes_again() {
        let mut w = World::new();
        w.disk.append(3);
        // The link goes down while the upload is in flight.
        assert!(w.step(&mut accept_all).is_none()); // read
        let Task::Upload(b) = w.task() else {
            panic!("no upload")
        };
        w.sent.push(ids(&b));
        w.link.suspended = true;
        w.up.on_result(w.clock.now(), UploadOutcome::LinkDown);
        assert!(matches!(w.run(accept_all), Task::Held));
        assert_eq!(w.syncs, 1);
        w.link.suspended = false;
        assert!(matches!(w.run(accept_all), Task::Idle));
        assert_eq!(w.sent, vec![ids_from(0, 3), ids_from(0, 3)]);

        // Suspended during a long retry wait: resume retries at once, from the first step.
        w.disk.append(3);
        for want in [100, 200, 400] {
            assert_eq!(wait_of(&w.run(server_error)), Some(ms(want)));
            w.clock.advance(ms(want));
        }
        assert_eq!(wait_of(&w.run(server_error)), Some(ms(800)));
        w.link.suspended = true;
        assert!(matches!(w.run(accept_all), Task::Held));
        w.link.suspended = false;
        assert_eq!(wait_of(&w.run(server_error)), Some(ms(100)));
        assert_eq!(w.sent.len(), 2 + 5);
    }

    #[test]
    fn each_record_is_acknowledged_once_and_resent_after_a_crash_before_its_ack() {
        // The collector stores each id once and answers a resend as a duplicate.
        let stored = std::cell::RefCell::new(HashSet::<String>::new());
        let collector = |b: &Batch| {
            let mut s = stored.borrow_mut();
            let mut resp = BatchResponse::default();
            for id in ids(b) {
                if s.insert(id.clone()) {
                    resp.accepted.push(id);
                } else {
                    resp.duplicate.push(id);
                }
            }
            UploadOutcome::Answered(resp)
        };

        let mut w = World::new();
        w.disk.append(10);
        w.up.flush();
        assert!(matches!(w.run(collector), Task::Idle));
        // No id twice: an acknowledged record is never read again.
        assert_eq!(w.flat_sent(), ids_from(0, 10));
        w.clock.advance(Duration::from_secs(3_600));
        assert!(matches!(w.run(collector), Task::Idle));
        assert_eq!(w.sent.len(), 4);

        // A crash after the collector stored a batch but before the cursor moved.
        w.disk.append(3);
        assert!(w.step(&mut |b: &Batch| collector(b)).is_none()); // read
        assert!(w.step(&mut |b: &Batch| collector(b)).is_none()); // upload (stored)
        assert!(matches!(w.task(), Task::Resolve(_)));
        w.restart();
        assert!(matches!(w.run(collector), Task::Idle));
        // Sent again from the saved cursor, answered as duplicates, counted once each
        // time the collector answered.
        assert_eq!(w.sent[4..], [ids_from(10, 13), ids_from(10, 13)]);
        assert_eq!(w.disk.cursor, 13);
        assert_eq!(stored.borrow().len(), 13);
        assert_eq!(w.delivery.delivered(), 13);
        w.clock.advance(Duration::from_secs(3_600));
        assert!(matches!(w.run(collector), Task::Idle));
        assert_eq!(w.sent.len(), 6);
    }

    #[test]
    fn spool_failures_wait_and_try_again() {
        let mut w = World::new();
        w.disk.append(3);
        // An unreadable spool: the longest backoff, then again.
        w.disk.fail_read = true;
        assert_eq!(wait_of(&w.run(accept_all)), Some(ms(800)));
        assert_eq!(
            w.last_error.as_deref(),
            Some("reading the spool: disk on fire")
        );
        w.disk.fail_read = false;
        w.clock.advance(ms(800));
        // The dead-letter file cannot be written: nothing counted, the cursor stays.
        w.disk.fail_dead_letter = true;
        let reject = |_: &Batch| UploadOutcome::RejectedAll("HTTP 400".into());
        assert_eq!(wait_of(&w.run(reject)), Some(DEAD_LETTER_RETRY));
        assert_eq!((w.delivery.refused(), w.disk.cursor), (0, 0));
        w.disk.fail_dead_letter = false;
        w.clock.advance(DEAD_LETTER_RETRY);
        assert!(matches!(w.run(reject), Task::Idle));
        assert_eq!((w.delivery.refused(), w.disk.cursor), (3, 3));
        assert_eq!(
            w.sent.len(),
            1,
            "the dead-letter write is retried, not the upload"
        );
        // The cursor cannot be saved: the batch is read and sent again.
        w.disk.append(3);
        w.disk.fail_ack = true;
        w.step(&mut accept_all);
        w.step(&mut accept_all);
        w.step(&mut accept_all);
        assert_eq!(
            w.last_error.as_deref(),
            Some("saving the delivery cursor: read-only file system")
        );
        w.disk.fail_ack = false;
        assert!(matches!(w.run(accept_all), Task::Idle));
        assert_eq!(w.sent[1..], [ids_from(3, 6), ids_from(3, 6)]);
        assert_eq!(w.last_error, None);
    }

    #[test]
    fn a_decided_batch_is_settled_even_when_the_link_goes_down() {
        let mut w = World::new();
        w.disk.append(3);
        assert!(w.step(&mut accept_all).is_none()); // read
        assert!(w.step(&mut accept_all).is_none()); // upload, answered
        w.link.suspended = true;
        assert!(matches!(w.run(accept_all), Task::Held));
        assert_eq!((w.disk.cursor, w.delivery.delivered(), w.syncs), (3, 3, 1));
    }

    #[test]
    fn unreadable_bytes_are_skipped_without_counting() {
        let mut w = World::new();
        w.disk.append(1);
        w.up.flush();
        assert!(matches!(w.task(), Task::Read { .. }));
        let now = w.clock.now();
        w.up.on_batch(
            now,
            Ok(Batch {
                records: Vec::new(),
                end: Cursor {
                    segment: 0,
                    offset: 1,
                },
                bytes: 0,
            }),
        );
        match w.task() {
            Task::Resolve(r) => {
                assert!(r.event.is_none() && r.dead.is_empty());
                w.disk.cursor = 1;
            }
            t => panic!("{t:?}"),
        }
        w.up.on_resolved(now, Resolved::Done);
        assert_eq!(wait_of(&w.task()), Some(SKIP_PAUSE));
        assert!(w.sent.is_empty() && w.delivery.delivered() == 0);
    }
}
