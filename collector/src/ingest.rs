//! `POST /v1/usage`: verify, scope-check, price and store a batch of signed records.
//!
//! Per record, in order: it must be a JSON object with a string `id` and `api_key_id`;
//! the key must be registered and not revoked; the Ed25519 signature (over the JCS
//! canonical form without `signature`, see `gaterouter::usage::signing`) must verify
//! with one of the key's valid public keys (the current one, or a rotated one inside
//! its grace period); the record must pass `UsageRecord::validate`; and every scope
//! field the key is bound to (org, department, project, group, user) must match, and
//! the unbound ones must name units of the key's org (`accounts::check_tree`).
//! The collector then prices the record with its own catalog (`gaterouter::pricing`)
//! and stores both figures, flagging a difference. All accepted records of a batch are
//! inserted in one transaction, deduplicated per (org, id) through the
//! `usage_record_keys` table (`ON CONFLICT DO NOTHING`), so a replayed or retried record
//! is reported as `duplicate` and never counted twice, also when several collectors
//! share one PostgreSQL; a record of another org with the same id is another record and
//! cannot take the id from its owner.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use axum::http::StatusCode;
use gaterouter::pricing::{Catalog, CostOptions};
use gaterouter::types::Usage;
use gaterouter::usage::{BatchResponse, FeedbackRecord, Rejected, UsageRecord};
use serde::Deserialize;
use serde_json::value::RawValue;

use std::sync::Arc;

use crate::db::{Db, DbError, dberr};
use crate::error::ApiError;
pub use crate::limits::{PricingSettings, RateLimiter};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::feedback::NewFeedback;
pub use crate::store::keys::{KeyInfo, load_keys};
use crate::store::usage::{self, outcome, route_mode};
use crate::time::month_of_ms;
pub use crate::verified::{Refusal, Verified};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest<'a> {
    /// Signed wire records.
    #[serde(borrow)]
    pub records: Vec<&'a RawValue>,
}

fn refuse(code: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// For a model with a context window in the catalog, one record may carry at most this
/// many times (context window + max output) tokens (`prompt_tokens +
/// completion_tokens`): a call with retries and tool rounds stays well inside, and a
/// forged 2^53 cannot overflow a budget counter.
pub const RECORD_TOKEN_FACTOR: u64 = 4;

/// The largest `prompt_tokens + completion_tokens` one record of `provider/model` may
/// carry, and where the bound comes from.
pub fn token_bound(pricing: &PricingSettings, provider: &str, model: &str) -> (u64, String) {
    let entry = pricing
        .catalog
        .lookup(&format!("{provider}/{model}"))
        .or_else(|| pricing.catalog.lookup(model));
    match entry.and_then(|(k, p)| p.context_window.map(|w| (k, w, p.max_output.unwrap_or(0)))) {
        Some((k, w, o)) => (
            w.saturating_add(o).saturating_mul(RECORD_TOKEN_FACTOR),
            format!("{RECORD_TOKEN_FACTOR} x ({w} context window + {o} max output) of `{k}`"),
        ),
        None => (
            pricing.max_record_tokens,
            "the collector's max_record_tokens (the model has no context window in the catalog)"
                .to_owned(),
        ),
    }
}

/// Per-record upper bounds (issue 18, item 1): refused records are answered in
/// `rejected` (the SDK dead-letters them, it does not retry), so one forged record can
/// neither overflow a counter nor block the org.
fn check_bounds(rec: &UsageRecord, pricing: &PricingSettings) -> Result<(), Refusal> {
    let tokens = rec.prompt_tokens.saturating_add(rec.completion_tokens);
    let (bound, why) = token_bound(pricing, &rec.provider, &rec.model);
    if tokens > bound {
        return Err(refuse(
            "invalid",
            format!(
                "prompt_tokens + completion_tokens = {tokens} exceeds the per-record bound {bound} ({why}): one call cannot use that many tokens"
            ),
        ));
    }
    if rec.cost_micros > pricing.max_record_cost_micros {
        return Err(refuse(
            "invalid",
            format!(
                "cost_micros {} exceeds the per-record bound {} (the collector's max_record_cost_micros)",
                rec.cost_micros, pricing.max_record_cost_micros
            ),
        ));
    }
    Ok(())
}

/// The collector's price for a record: tries `provider/model`, then the bare model.
pub fn price(
    catalog: &Catalog,
    provider: &str,
    model: &str,
    usage: &Usage,
) -> Option<(u64, String)> {
    let opts = CostOptions::default();
    catalog
        .cost(usage, &format!("{provider}/{model}"), opts)
        .or_else(|_| catalog.cost(usage, model, opts))
        .ok()
        .map(|c| (c.total_micros, c.priced_as))
}

/// A parsed record whose signature is still to be checked.
struct Prepared {
    value: serde_json::Value,
    canonical: String,
    signature: String,
    sig: Option<ed25519_dalek::Signature>,
}

/// Parse, strip `signature`, canonicalize.
fn prepare(raw: &str) -> Result<Prepared, Refusal> {
    use base64::Engine as _;
    let mut value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| refuse("malformed", format!("record is not JSON: {e}")))?;
    let signature = value
        .as_object_mut()
        .and_then(|o| o.remove("signature"))
        .and_then(|s| s.as_str().map(str::to_owned))
        .ok_or_else(|| refuse("bad_signature", "record has no string `signature`"))?;
    let canonical = gaterouter::usage::canonical::canonicalize(&value)
        .map_err(|e| refuse("malformed", format!("record cannot be canonicalized: {e}")))?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature.as_bytes())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| ed25519_dalek::Signature::from_bytes(&b));
    Ok(Prepared {
        value,
        canonical,
        signature,
        sig,
    })
}

fn bad_signature(key: &KeyInfo) -> Refusal {
    refuse(
        "bad_signature",
        format!(
            "signature does not verify with the public key registered for api_key_id `{}`",
            key.id
        ),
    )
}

/// Check one signature against every valid public key of the key (strict verification).
fn verify_single(p: &Prepared, key: &KeyInfo) -> Result<(), Refusal> {
    if key.public_keys.iter().any(|pk| {
        gaterouter::usage::signing::verify(pk, p.canonical.as_bytes(), &p.signature).is_ok()
    }) {
        Ok(())
    } else {
        Err(bad_signature(key))
    }
}

/// How far in the future a record's `ts_end` may be (client clock skew). A record
/// counts in the budget window of its `ts_start`: a later stamp would let a signed
/// client move its spend out of the current window.
pub const MAX_FUTURE_SKEW_MS: u64 = 3_600_000;

/// Schema, bounds, scope and pricing of a record whose signature verified.
/// `now_ms`: the collector's clock when the batch arrived.
fn finish(
    p: Prepared,
    key: &KeyInfo,
    pricing: &PricingSettings,
    now_ms: u64,
) -> Result<Verified, Refusal> {
    let rec: UsageRecord = serde_json::from_value(p.value)
        .map_err(|e| refuse("invalid", format!("record does not match the schema: {e}")))?;
    rec.validate()
        .map_err(|e| refuse("invalid", e.to_string()))?;
    let latest = now_ms.saturating_add(MAX_FUTURE_SKEW_MS);
    if rec.ts_end > latest {
        return Err(refuse(
            "invalid",
            format!(
                "ts_end {} is more than {} s after the collector's clock ({latest}): fix the client's clock",
                rec.ts_end,
                MAX_FUTURE_SKEW_MS / 1000
            ),
        ));
    }
    if rec.schema_version != gaterouter::usage::record::SCHEMA_VERSION {
        return Err(refuse(
            "invalid",
            format!(
                "schema_version {} is not supported: this collector accepts schema_version {} only; upgrade the collector or the SDK",
                rec.schema_version,
                gaterouter::usage::record::SCHEMA_VERSION
            ),
        ));
    }
    let earliest = now_ms.saturating_sub(pricing.max_record_age_ms);
    if rec.ts_start < earliest {
        return Err(refuse(
            "invalid",
            format!(
                "ts_start {} is more than {} days before the collector's clock (earliest accepted {earliest}): old records would count into closed budget windows (max_record_age_days)",
                rec.ts_start,
                pricing.max_record_age_ms / 86_400_000
            ),
        ));
    }
    let mut rec = rec;
    let attributed = attribute(&mut rec, key)?;
    check_bounds(&rec, pricing)?;
    let usage = Usage::new(
        rec.prompt_tokens,
        rec.completion_tokens,
        rec.cached_prompt_tokens,
        rec.cache_write_tokens,
        rec.reasoning_tokens,
    );
    let mut priced = price(&pricing.catalog, &rec.provider, &rec.model, &usage);
    let baseline = pricing
        .strongest
        .as_deref()
        .and_then(|m| pricing.catalog.cost(&usage, m, CostOptions::default()).ok())
        .map(|c| c.total_micros);
    let mut mismatch = priced
        .as_ref()
        .is_some_and(|(c, _)| c.abs_diff(rec.cost_micros) > pricing.tolerance_micros);
    if priced.is_none() {
        // Unknown model (issue 18, item 6): never the client's figure alone, always flagged.
        if pricing.unknown_model == crate::config::UnknownModel::Refuse {
            return Err(refuse(
                "invalid",
                format!(
                    "model `{}/{}` has no price in the collector's catalog and unknown_model = refuse: add it to the catalog or route to a priced model",
                    rec.provider, rec.model
                ),
            ));
        }
        let tokens = u128::from(rec.prompt_tokens.saturating_add(rec.completion_tokens));
        let fallback =
            u64::try_from(tokens * u128::from(pricing.unknown_model_micros_per_mtok) / 1_000_000)
                .unwrap_or(u64::MAX);
        priced = Some((
            fallback.max(rec.cost_micros),
            "unknown-model-fallback".to_owned(),
        ));
        mismatch = true;
    }
    let (collector_cost, priced_as) = match priced {
        Some((c, p)) => (Some(c), Some(p)),
        None => (None, None),
    };
    Ok(Verified {
        rec,
        signature: p.signature,
        collector_cost,
        priced_as,
        baseline,
        mismatch,
        attributed,
    })
}

/// Verify one wire record against its key (strict single-signature verification);
/// `now_ms`: the collector's clock (time bounds).
pub fn verify_one(
    raw: &str,
    key: &KeyInfo,
    pricing: &PricingSettings,
    now_ms: u64,
) -> Result<Verified, Refusal> {
    let p = prepare(raw)?;
    verify_single(&p, key)?;
    finish(p, key, pricing, now_ms)
}

/// Verify a slice of records: signatures of keys with a single valid public key are
/// checked together with Ed25519 batch verification (about twice as fast); when a
/// batch fails, its records are checked one by one with strict verification, so a bad
/// record is found and refused and the good ones are kept.
fn verify_chunk(
    todo: &[(usize, String, String, &str)],
    keys: &HashMap<String, KeyInfo>,
    pricing: &PricingSettings,
    now_ms: u64,
) -> Vec<Result<Verified, Refusal>> {
    use base64::Engine as _;
    let mut vks: HashMap<&str, Option<ed25519_dalek::VerifyingKey>> = HashMap::new();
    let mut prepared: Vec<Result<(Prepared, &KeyInfo), Refusal>> = Vec::with_capacity(todo.len());
    for (_, _, key, raw) in todo {
        let Some(k) = keys.get(key) else {
            prepared.push(Err(refuse(
                "unknown_key",
                format!(
                    "unknown api_key_id `{}`: register it with POST /v1/admin/keys",
                    crate::logsafe::escape(key)
                ),
            )));
            continue;
        };
        if k.revoked {
            prepared.push(Err(refuse(
                "revoked_key",
                format!("api_key_id `{}` is revoked", crate::logsafe::escape(key)),
            )));
            continue;
        }
        prepared.push(prepare(raw).map(|p| (p, k)));
    }
    // Indices eligible for batch verification, with their verifying key.
    let mut batch: Vec<(usize, ed25519_dalek::VerifyingKey)> = Vec::new();
    let mut sig_ok = vec![false; prepared.len()];
    for (i, p) in prepared.iter().enumerate() {
        let Ok((p, k)) = p else { continue };
        if k.public_keys.len() != 1 || p.sig.is_none() {
            continue;
        }
        let vk = *vks.entry(k.public_keys[0].as_str()).or_insert_with(|| {
            base64::engine::general_purpose::STANDARD
                .decode(k.public_keys[0].trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
        });
        if let Some(vk) = vk {
            batch.push((i, vk));
        }
    }
    for group in batch.chunks(256) {
        let msgs: Vec<&[u8]> = group
            .iter()
            .filter_map(|(i, _)| {
                prepared[*i]
                    .as_ref()
                    .ok()
                    .map(|(p, _)| p.canonical.as_bytes())
            })
            .collect();
        let sigs: Vec<ed25519_dalek::Signature> = group
            .iter()
            .filter_map(|(i, _)| prepared[*i].as_ref().ok().and_then(|(p, _)| p.sig))
            .collect();
        let vk: Vec<ed25519_dalek::VerifyingKey> = group.iter().map(|(_, vk)| *vk).collect();
        if msgs.len() == group.len()
            && sigs.len() == group.len()
            && ed25519_dalek::verify_batch(&msgs, &sigs, &vk).is_ok()
        {
            for (i, _) in group {
                sig_ok[*i] = true;
            }
        }
    }
    prepared
        .into_iter()
        .zip(sig_ok)
        .map(|(p, ok)| {
            let (p, k) = p?;
            if !ok {
                verify_single(&p, k)?;
            }
            finish(p, k, pricing, now_ms)
        })
        .collect()
}

/// The key's binding as `org=acme, department=eng` (for refusal messages).
pub fn describe_binding(key: &KeyInfo) -> String {
    let mut parts = vec![format!("org=`{}`", key.org)];
    for (f, v) in [
        ("department", &key.department),
        ("project", &key.project),
        ("group", &key.group),
        ("user", &key.user),
    ] {
        if let Some(v) = v {
            parts.push(format!("{f}=`{v}`"));
        }
    }
    parts.join(", ")
}

/// Identity comes from the key: every unit the key is bound to and the record leaves
/// absent is filled from the binding (the stored columns; the signed bytes and the
/// signature are kept as received); a unit the record names that differs from the
/// binding is refused, naming the field, the value and the binding. Units the key is
/// not bound to are checked against the org tree afterwards (`accounts::check_tree`).
fn attribute(rec: &mut UsageRecord, key: &KeyInfo) -> Result<Vec<&'static str>, Refusal> {
    let mut filled = Vec::new();
    let bound = [
        ("org", Some(&key.org), &mut rec.org),
        ("department", key.department.as_ref(), &mut rec.department),
        ("project", key.project.as_ref(), &mut rec.project),
        ("group", key.group.as_ref(), &mut rec.group),
        ("user", key.user.as_ref(), &mut rec.user),
    ];
    for (field, want, got) in bound {
        let Some(want) = want else { continue };
        match got {
            None => {
                *got = Some(want.clone());
                filled.push(field);
            }
            Some(g) if g == want => {}
            Some(g) => {
                return Err(refuse(
                    "scope",
                    format!(
                        "scope violation: {field} is `{}` but api_key_id `{}` is bound to {field} `{want}` (binding: {}); leave {field} unset to use the key's binding",
                        crate::logsafe::escape(g),
                        crate::logsafe::escape(&key.id),
                        describe_binding(key)
                    ),
                ));
            }
        }
    }
    Ok(filled)
}

/// A verified feedback record (issue 20), ready to insert.
#[derive(Debug, Clone)]
pub struct VerifiedFeedback {
    /// The record; its `org` is set (from the key's binding when absent).
    pub rec: FeedbackRecord,
    /// Its signature.
    pub signature: String,
}

impl VerifiedFeedback {
    /// The org the feedback is stored (and deduplicated) under.
    pub fn org(&self) -> &str {
        self.rec.org.as_deref().unwrap_or_default()
    }
}

/// Verify feedback records: the key (known, not revoked), the signature (strict, one by
/// one: feedback is rare next to usage records), the schema and bounds, the time (not
/// in the future beyond the skew, not older than `max_record_age_days`) and the org
/// (absent: the key's; another org: refused). The judged record is not looked up: it
/// may arrive later (another key of the org) and is joined at query time, per org.
pub fn verify_feedback(
    todo: &[(usize, String, String, &str)],
    keys: &HashMap<String, KeyInfo>,
    pricing: &PricingSettings,
    now_ms: u64,
) -> Vec<Result<VerifiedFeedback, Refusal>> {
    todo.iter()
        .map(|(_, _, key, raw)| {
            let Some(k) = keys.get(key) else {
                return Err(refuse("unknown_key", format!("unknown api_key_id `{}`: register it with POST /v1/admin/keys", crate::logsafe::escape(key))));
            };
            if k.revoked {
                return Err(refuse("revoked_key", format!("api_key_id `{}` is revoked", crate::logsafe::escape(key))));
            }
            let p = prepare(raw)?;
            verify_single(&p, k)?;
            let mut rec: FeedbackRecord = serde_json::from_value(p.value).map_err(|e| refuse("invalid", format!("feedback does not match the schema: {e}")))?;
            rec.validate().map_err(|e| refuse("invalid", e.to_string()))?;
            if rec.schema_version != gaterouter::usage::record::SCHEMA_VERSION {
                return Err(refuse("invalid", format!("schema_version {} is not supported: upgrade the collector or the SDK", rec.schema_version)));
            }
            let now = now_ms;
            if rec.ts > now.saturating_add(MAX_FUTURE_SKEW_MS) || rec.ts < now.saturating_sub(pricing.max_record_age_ms) {
                return Err(refuse("invalid", format!("feedback ts {} is outside the accepted window around the collector's clock ({now}): fix the client's clock", rec.ts)));
            }
            match &rec.org {
                None => rec.org = Some(k.org.clone()),
                Some(o) if *o == k.org => {}
                Some(o) => {
                    return Err(refuse(
                        "scope",
                        format!("scope violation: org is `{}` but api_key_id `{}` is bound to org `{}`; leave org unset", crate::logsafe::escape(o), crate::logsafe::escape(&k.id), k.org),
                    ));
                }
            }
            Ok(VerifiedFeedback { rec, signature: p.signature })
        })
        .collect()
}

/// Insert verified feedback in one transaction; returns, for each, whether it was newly
/// stored (`false`: already stored for its org, a `duplicate`).
pub async fn store_feedback(
    db: &Db,
    recs: &[VerifiedFeedback],
    received_ms: i64,
) -> Result<Vec<bool>, DbError> {
    if recs.is_empty() {
        return Ok(Vec::new());
    }
    let _g = db.write_guard().await;
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(dberr("starting the feedback transaction"))?;
    let rows: Vec<NewFeedback<'_>> = recs
        .iter()
        .map(|v| NewFeedback {
            org: v.org(),
            rec: &v.rec,
            signature: &v.signature,
        })
        .collect();
    let mut claimed =
        crate::store::feedback::insert(&mut tx, db.backend(), &rows, received_ms).await?;
    tx.commit()
        .await
        .map_err(dberr("committing the feedback transaction"))?;
    Ok(recs
        .iter()
        .map(|v| claimed.remove(&(v.org().to_owned(), v.rec.id.0.clone())))
        .collect())
}

/// Outcome of the cheap first pass over a batch.
#[derive(Debug, Default)]
pub struct Triage<'a> {
    /// (index, id, api_key_id, raw text) of records to verify.
    pub todo: Vec<(usize, String, String, &'a str)>,
    /// Refused already.
    pub rejected: Vec<(String, Refusal)>,
    /// (index, id, api_key_id, raw text) of feedback records (`"kind": "feedback"`) to
    /// verify ([`verify_feedback`]).
    pub feedback: Vec<(usize, String, String, &'a str)>,
    /// Same id twice in the batch (a batch comes from one sender, whose record ids are
    /// unique; the first one is verified and stored, per (org, id) like any record).
    pub duplicate: Vec<String>,
}

#[derive(Deserialize)]
struct Head {
    id: Option<serde_json::Value>,
    api_key_id: Option<serde_json::Value>,
    /// `feedback` for feedback records; absent for usage records.
    kind: Option<serde_json::Value>,
}

/// A UUID in its canonical hyphenated form (any version; the SDKs use v7).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// Extract id and key of each record; refuse records without them.
pub fn triage<'a>(records: &[&'a RawValue]) -> Triage<'a> {
    let mut t = Triage::default();
    let mut seen = HashSet::new();
    for (i, raw) in records.iter().enumerate() {
        let text = raw.get();
        let head: Head = match serde_json::from_str(text) {
            Ok(h) => h,
            Err(_) => {
                t.rejected.push((
                    String::new(),
                    refuse("malformed", format!("record {i} is not a JSON object")),
                ));
                continue;
            }
        };
        let id = match head.id {
            Some(serde_json::Value::String(s)) if is_uuid(&s) => s,
            Some(serde_json::Value::String(s)) => {
                t.rejected.push((String::new(), refuse("malformed", format!("record {i}: `id` `{}` is not a UUID (8-4-4-4-12 hex digits): record ids are UUIDs", crate::logsafe::escape(&s)))));
                continue;
            }
            _ => {
                t.rejected.push((
                    String::new(),
                    refuse(
                        "malformed",
                        format!("record {i} has no string `id` (a UUID)"),
                    ),
                ));
                continue;
            }
        };
        let key = match head.api_key_id {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            _ => {
                t.rejected
                    .push((id, refuse("invalid", "record has no string `api_key_id`")));
                continue;
            }
        };
        if !seen.insert(id.clone()) {
            t.duplicate.push(id);
            continue;
        }
        if head.kind.as_ref().and_then(|k| k.as_str()) == Some("feedback") {
            t.feedback.push((i, id, key, text));
        } else {
            t.todo.push((i, id, key, text));
        }
    }
    t
}

/// Verify many records on all cores; `now_ms`: the collector's clock when they arrived
/// (time bounds).
pub fn verify_all(
    todo: &[(usize, String, String, &str)],
    keys: &HashMap<String, KeyInfo>,
    pricing: &PricingSettings,
    now_ms: u64,
) -> Vec<Result<Verified, Refusal>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if todo.len() < 128 || threads == 1 {
        return verify_chunk(todo, keys, pricing, now_ms);
    }
    let chunk = todo.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = todo
            .chunks(chunk)
            .map(|c| s.spawn(move || verify_chunk(c, keys, pricing, now_ms)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The record's rollup units ([`crate::rollup::UNIT_KEYS`], `''` when absent) and
/// measures ([`crate::rollup::MEASURES`]): the same values as the stored row gives the
/// rollup SQL of [`crate::rollup::rebuild`] (tests compare the two).
fn rollup_row(v: &Verified) -> (crate::rollup::Units, crate::rollup::Measures) {
    let r = &v.rec;
    let (status, is_error, spend) = outcome(v);
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    let units = [
        v.org().to_owned(),
        s(&r.department),
        s(&r.project),
        s(&r.group),
        s(&r.user),
        r.api_key_id.clone(),
        r.provider.clone(),
        r.model.clone(),
        r.route
            .as_ref()
            .and_then(|x| x.tier.clone())
            .unwrap_or_default(),
        route_mode(r).unwrap_or_default(),
        status.to_owned(),
    ];
    let measures = [
        1,
        is_error,
        i64::from(status == "denied"),
        sat(r.prompt_tokens),
        sat(r.completion_tokens),
        sat(r.prompt_tokens.saturating_add(r.completion_tokens)),
        sat(spend),
        sat(r.cost_micros),
        v.baseline.map_or(0, sat),
        if v.baseline.is_some() { sat(spend) } else { 0 },
        sat(r.latency_ms),
        i64::from(v.mismatch),
        sat(r.ts_start),
        sat(r.ts_end),
    ];
    (units, measures)
}

/// Insert verified records in one transaction; returns, for each record of `recs`,
/// whether it was newly stored (`false`: a record with the same id is already stored
/// for its org, a `duplicate`).
///
/// Dedup is per (org, id) (issue 18, item 7; see migration 6 in db.rs): the keys go into
/// `usage_record_keys` first, `ON CONFLICT DO NOTHING RETURNING org, id`, and only the
/// records whose key came back are stored raw, tagged, counted in budgets and
/// reservations ([`crate::accounts::on_ingest`]) and rolled up. Another org's record
/// with the same id is a different record: both are stored, each in its own org. Every
/// record here has its org: `attribute` fills it from the key's binding when the
/// record leaves it absent. Concurrent collectors on one PostgreSQL serialize on the
/// key's unique index, so a record is stored once.
pub async fn store(db: &Db, recs: &[Verified], received_ms: i64) -> Result<Vec<bool>, DbError> {
    if recs.is_empty() {
        return Ok(Vec::new());
    }
    let months: Vec<i64> = recs.iter().map(|v| month_of_ms(v.rec.ts_start)).collect();
    db.ensure_partitions(&months).await?;
    let _g = db.write_guard().await;
    let t = Instant::now();
    // On SQLite the transaction takes the write lock at once (BEGIN IMMEDIATE), so no other
    // writer can claim an id between the duplicate check and the insert below.
    let mut tx = db.begin_write().await?;
    let t_begin = t.elapsed();
    let mut claimed = usage::claim_ids(&mut tx, db.backend(), recs).await?;
    let t_keys = t.elapsed();
    // A key claimed once stores one record, also if a caller passed the same (org, id)
    // twice (`triage` already answers a repeated id within a batch `duplicate`).
    let new: Vec<bool> = recs
        .iter()
        .map(|v| claimed.remove(&(v.org().to_owned(), v.rec.id.0.clone())))
        .collect();
    let stored: Vec<&Verified> = recs
        .iter()
        .zip(&new)
        .filter(|(_, n)| **n)
        .map(|(v, _)| v)
        .collect();
    usage::insert_records(&mut tx, db.backend(), &stored, received_ms).await?;
    let t_raw = t.elapsed();
    usage::insert_tags(&mut tx, db.backend(), &stored).await?;
    crate::store::learning::insert_features(&mut tx, db.backend(), &stored).await?;
    let t_tags = t.elapsed();
    crate::accounts::on_ingest(
        &mut tx,
        db.backend(),
        &stored,
        u64::try_from(received_ms).unwrap_or(0),
    )
    .await?;
    let t_accounts = t.elapsed();
    let mut deltas = crate::rollup::Deltas::default();
    for v in &stored {
        let (units, measures) = rollup_row(v);
        deltas.add_record(
            sat(v.rec.ts_start),
            month_of_ms(v.rec.ts_start),
            units,
            measures,
            v.rec.time_to_first_token_ms.map(sat),
            &v.rec.tags,
        );
    }
    crate::rollup::apply(&mut tx, db.backend(), &deltas).await?;
    let t_rollups = t.elapsed();
    tx.commit()
        .await
        .map_err(dberr("committing the ingest transaction"))?;
    db.metrics().observe_db(t.elapsed());
    // Where a batch's write time goes (cumulative ms from the start of the transaction).
    tracing::trace!(
        records = stored.len(),
        begin_ms = t_begin.as_millis() as u64,
        keys_ms = t_keys.as_millis() as u64,
        raw_ms = t_raw.as_millis() as u64,
        tags_ms = t_tags.as_millis() as u64,
        accounts_ms = t_accounts.as_millis() as u64,
        rollups_ms = t_rollups.as_millis() as u64,
        commit_ms = t.elapsed().as_millis() as u64,
        "stored batch"
    );
    Ok(new)
}

/// Assemble the answer, counting metrics: `stored[i]` tells whether `verified_ids[i]`
/// was newly stored ([`store`]); the others were already stored for their org.
pub fn answer(
    triage_rejected: Vec<(String, Refusal)>,
    mut duplicate: Vec<String>,
    verified_ids: &[String],
    stored: &[bool],
    refused: Vec<(String, Refusal)>,
    metrics: &Metrics,
) -> BatchResponse {
    let mut resp = BatchResponse::default();
    for (id, new) in verified_ids.iter().zip(stored) {
        if *new {
            resp.accepted.push(id.clone());
        } else {
            duplicate.push(id.clone());
        }
    }
    for (id, r) in triage_rejected.into_iter().chain(refused) {
        metrics.reject(r.code);
        resp.rejected.push(Rejected {
            id,
            reason: r.reason,
        });
    }
    metrics.accepted(resp.accepted.len() as u64);
    metrics.duplicates(duplicate.len() as u64);
    resp.duplicate = duplicate;
    resp
}

/// Verify, rate-limit, scope-check and store a batch that was read and bounded
/// (`POST /v1/usage`): the answer lists each record as accepted, duplicate or rejected.
/// Verification runs off the async workers; the per-key rate limit is charged for
/// authenticated records only.
pub async fn ingest_batch(
    st: &Arc<AppState>,
    records: &[&RawValue],
) -> Result<BatchResponse, ApiError> {
    let tri = triage(records);
    let now_u = st.db.clock().now_u64();
    let now = i64::try_from(now_u).unwrap_or(i64::MAX);
    let t0 = std::time::Instant::now();
    let key_ids: HashSet<String> = tri
        .todo
        .iter()
        .chain(&tri.feedback)
        .map(|(_, _, k, _)| k.clone())
        .collect();
    let keys = crate::store::keys::load_keys(&st.db, &key_ids, now).await?;
    // Verification is CPU-bound: run it off the async workers.
    let owned = |v: &[(usize, String, String, &str)]| -> Vec<(usize, String, String, String)> {
        v.iter()
            .map(|(i, id, k, raw)| (*i, id.clone(), k.clone(), (*raw).to_owned()))
            .collect()
    };
    let (todo, fb_todo) = (owned(&tri.todo), owned(&tri.feedback));
    let st2 = st.clone();
    let results = tokio::task::spawn_blocking(move || {
        let b1: Vec<(usize, String, String, &str)> = todo
            .iter()
            .map(|(i, id, k, raw)| (*i, id.clone(), k.clone(), raw.as_str()))
            .collect();
        let b2: Vec<(usize, String, String, &str)> = fb_todo
            .iter()
            .map(|(i, id, k, raw)| (*i, id.clone(), k.clone(), raw.as_str()))
            .collect();
        let r = verify_all(&b1, &keys, &st2.pricing, now_u);
        let f = verify_feedback(&b2, &keys, &st2.pricing, now_u);
        (todo, r, fb_todo, f)
    })
    .await
    .map_err(|e| crate::error::internal(&format!("verification task failed: {e}")))?;
    let (todo, results, fb_todo, fb_results) = results;
    let t_verify = t0.elapsed();
    // The per-key rate limit is charged only after authentication (issue 18, item 2):
    // records of an unknown or revoked key, or whose signature does not verify, cost
    // the named key nothing, so a forger cannot exhaust an honest key's limit.
    let mut counts: HashMap<String, u64> = HashMap::new();
    let authenticated = |e: Option<&crate::verified::Refusal>| {
        e.is_none_or(|e| {
            !matches!(
                e.code,
                "unknown_key" | "revoked_key" | "bad_signature" | "malformed"
            )
        })
    };
    for ((_, _, k, _), r) in todo.iter().zip(&results) {
        if authenticated(r.as_ref().err()) {
            *counts.entry(k.clone()).or_default() += 1;
        }
    }
    for ((_, _, k, _), r) in fb_todo.iter().zip(&fb_results) {
        if authenticated(r.as_ref().err()) {
            *counts.entry(k.clone()).or_default() += 1;
        }
    }
    if let Err((key, wait)) = st.limiter.take(&counts) {
        st.metrics.rate_limited();
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "api_key_id `{}` exceeds {} records/s; retry after {wait} s",
                crate::logsafe::escape(&key),
                st.cfg.rate_limit_records_per_sec
            ),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let mut verified = Vec::new();
    let mut refused = Vec::new();
    for ((_, id, _, _), r) in todo.into_iter().zip(results) {
        match r {
            Ok(v) => verified.push((id, v)),
            Err(e) => refused.push((id, e)),
        }
    }
    let (kept, off_tree) = crate::accounts::check_tree(&st.db, verified).await?;
    refused.extend(off_tree);
    let (ok_ids, ok): (Vec<String>, Vec<crate::verified::Verified>) = kept.into_iter().unzip();
    let mut stored = store(&st.db, &ok, now).await?;
    let mut ok_ids = ok_ids;
    let mut fb_ok = Vec::new();
    for ((_, id, _, _), r) in fb_todo.into_iter().zip(fb_results) {
        match r {
            Ok(v) => {
                ok_ids.push(id);
                fb_ok.push(v);
            }
            Err(e) => refused.push((id, e)),
        }
    }
    stored.extend(store_feedback(&st.db, &fb_ok, now).await?);
    let t_store = t0.elapsed() - t_verify;
    let resp = answer(
        tri.rejected,
        tri.duplicate,
        &ok_ids,
        &stored,
        refused,
        &st.metrics,
    );
    if !resp.rejected.is_empty() {
        tracing::warn!(rejected = resp.rejected.len(), first_reason = %crate::logsafe::escape(&resp.rejected[0].reason), "usage records rejected");
    }
    tracing::debug!(
        verify_ms = t_verify.as_millis() as u64,
        store_ms = t_store.as_millis() as u64,
        accepted = resp.accepted.len(),
        duplicate = resp.duplicate.len(),
        rejected = resp.rejected.len(),
        "ingested batch"
    );
    Ok(resp)
}
