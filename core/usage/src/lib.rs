//! # gaterouter-usage
//!
//! Signed usage records, a durable on-disk spool, and the reporter that ships them.
//! Depends on `gaterouter-types` (identity, decision data, backoff, secrets) and
//! `gaterouter-accounts` (a key's scope); `gaterouter` re-exports it as
//! `gaterouter::usage` and its `[reporting]` table as `gaterouter::config::ReportingConfig`.
//!
//! Map of the crate:
//!
//! | module | concept |
//! |---|---|
//! | [`config`] | the `[reporting]` table (plain data) and where the signing key comes from |
//! | [`record`] | a call's [`UsageRecord`]: the input, validation, ids and `seq` |
//! | [`canonical`] | RFC 8785 canonical JSON, the bytes that are signed |
//! | [`signing`] | Ed25519 keys and signatures ([`UsageSigner`]) |
//! | [`feedback`] | outcome feedback: a signed record joining a usage record |
//! | [`spool`] | the durable, crash-safe on-disk queue and its dead-letter file |
//! | [`uploader`] | sans-IO delivery decisions: what to send next, what a reply means |
//! | [`reporter`] | the thin async loop that drives the uploader over HTTP |
//! | [`delivery`] | delivery events and listeners, refusal counts |
//! | `recorder` | [`Recorder`]: the one handle the client uses, and [`DeliveryReport`] |
//! | `error` | [`UsageError`]: what went wrong, named, with the fix |
//!
//!
//! Every model call produces one [`UsageRecord`]: who called (from
//! [`Identity`]), which provider and model, token counts, cost estimate,
//! timings, outcome and bounded tags. Never any prompt or completion text.
//!
//! The [`Recorder`] is the one handle the client uses:
//! 1. [`Recorder::record`] (the hot path) validates the input, assigns a UUIDv7 `id`
//!    and the next per-key `seq`, canonicalizes the record with RFC 8785 JCS
//!    ([`canonical`]), signs the canonical bytes with the API key's Ed25519 key
//!    ([`signing`]) and appends the signed record to the [`spool::Spool`] before it
//!    returns.
//! 2. A background [`reporter`] task sends spooled records in batches to the collector
//!    (`POST {collector_url}/v1/usage`), at least once, resuming from the spool after a
//!    restart.
//! 3. [`Recorder::flush`] waits for delivery; [`Recorder::shutdown`] drains and closes.
//!
//! Formats, precisely:
//! - timestamps `ts_start` / `ts_end`: integer Unix epoch milliseconds (UTC);
//! - signed bytes: UTF-8 JCS of the record without `signature` (integers only);
//! - `signature` and public keys: standard base64 with padding;
//! - the wire record is the canonical JSON with `"signature"` appended as the last
//!   member.
//!
//! `seq` is strictly increasing per signing key and spool directory, across restarts:
//! on start it continues after the highest `seq` found in the spool's segments or in its
//! delivery cursor (which remembers the highest seq ever delivered). Gaps can occur (a
//! record refused by validation, or lost with a power cut before its fsync), repeats
//! cannot. With `mode = "off"` nothing is signed or persisted, no key or
//! `identity.api_key_id` is needed, records are still validated (so a bad tag fails the
//! same way in both modes) and `seq` starts at 1 per process.

pub mod canonical;
pub mod config;
pub mod delivery;
mod error;
pub mod feedback;
pub mod record;
mod recorder;
pub mod reporter;
pub mod signing;
pub mod spool;
pub mod uploader;

pub use config::{configured_spool_dirs, default_data_dir, default_spool_base};
pub use delivery::{DeliveryEvent, DeliveryListener, RefusalCount};
pub use error::UsageError;
pub use feedback::{FeedbackInput, FeedbackRecord, FeedbackSource};
pub use record::{
    RecordId, RouteFeatures, RouteInfo, RouteMode, SDK_NAME, SDK_VERSION, SdkInfo, UsageRecord,
    UsageRecordInput, UsageStatus, unix_ms_now,
};
pub use recorder::{DeliveryReport, FlushOutcome, Recorder};
pub use reporter::{BatchResponse, LinkState, NetworkClass, Rejected};
pub use signing::{UsageSigner, generate_key};
pub use spool::{Spool, SpoolOptions, SpoolStatus};
pub use uploader::{Clock, ManualClock, SystemClock};

pub use config::{DEFAULT_SIGNING_KEY_ENV, KeySource, ReportingConfig, ReportingMode};
pub use gaterouter_types::identity::Identity;
