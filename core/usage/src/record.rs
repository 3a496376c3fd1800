//! The usage record: what one model call cost, who made it, and how it went.
//!
//! A record never holds prompt or completion text: the type has no field that could
//! carry it, only counts, identifiers, timings and bounded caller-chosen tags.
//!
//! Timestamps (`ts_start`, `ts_end`) are integer Unix epoch **milliseconds** (UTC), so
//! the record holds integers only and its canonical form needs no float formatting.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::canonical::{self, MAX_SAFE_INTEGER};
use crate::error::UsageError;
pub use gaterouter_types::decision::{RouteFeatures, RouteMode};
use gaterouter_types::identity::Identity;

/// Name of the SDK that makes the records unless a binding says otherwise
/// ([`SdkInfo`]); also the `User-Agent` product of uploads.
pub const SDK_NAME: &str = "gaterouter-rust";
/// The workspace version (every crate and binding built here shares it).
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
use gaterouter_types::error::ErrorKind;

/// Version of the record layout, carried in every record as `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;
/// Most tags a record may carry.
pub const MAX_TAGS: usize = 16;
/// Longest tag key, in UTF-8 bytes.
pub const MAX_TAG_KEY_BYTES: usize = 64;
/// Longest tag value, in UTF-8 bytes.
pub const MAX_TAG_VALUE_BYTES: usize = 256;
/// Longest identifier (provider, model, identity ids, route tier, SDK fields), in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// A record id: a UUIDv7 in lowercase hyphenated form (time-ordered, globally unique).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(pub String);

impl RecordId {
    /// A fresh UUIDv7.
    pub fn new_v7() -> Self {
        RecordId(uuid::Uuid::now_v7().hyphenated().to_string())
    }
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl RecordId {
    /// Check `id` is a record id as the SDKs write it (a lowercase hyphenated UUID); the
    /// error names `field`.
    pub fn check(field: &'static str, id: &str) -> Result<(), UsageError> {
        let ok = id.len() == 36
            && id.bytes().enumerate().all(|(i, b)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    b == b'-'
                } else {
                    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
                }
            });
        if ok {
            Ok(())
        } else {
            Err(UsageError::InvalidField {
                field: field.into(),
                message: format!(
                    "`{}` is not a usage record id (a lowercase UUID such as 0193c1f0-7a2b-7c3d-8e4f-5a6b7c8d9e0f): pass the response's usage_record_id",
                    id.chars().take(60).collect::<String>()
                ),
            })
        }
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Routing details, present when the call went through the router or names a tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteInfo {
    /// `auto` or `explicit`.
    pub mode: RouteMode,
    /// Tier the router chose (e.g. `small`, `large`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The router's score as an integer (the router's scale, e.g. per-mille); records
    /// carry integers only so their canonical form is unambiguous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i64>,
    /// Version (fingerprint) of the router weights that scored the call (`auto` only):
    /// the builtin ones, a file's, or the organization's learned weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// Probability, in millionths, that the router gave the arm this call went to (the
    /// heavy tier, or the lighter ones), when the organization learns from outcomes:
    /// what inverse-propensity learning divides by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propensity_ppm: Option<i64>,
    /// Probability, in millionths, that the router gave the model that served this call
    /// (its tier's probability times the model's within its tier, where the organization
    /// also explores among a tier's models), when the organization learns from outcomes:
    /// what per-model inverse-propensity learning divides by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_propensity_ppm: Option<i64>,
    /// The tier was drawn by exploration, not by the score (learning only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explored: Option<bool>,
    /// What the router saw, without any text (learning only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<RouteFeatures>,
    /// A shadow call (the organization's shadow sampling): the id of the usage record of
    /// the call it shadows, which the same request went to on the other arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_of: Option<RecordId>,
}

/// Most hashed-term buckets a record may carry (the scan reads at most 4 KB of text).
pub const MAX_ROUTE_TERMS: usize = 8192;
/// Most structural features a record may carry.
pub const MAX_ROUTE_STRUCTURAL: usize = 64;

/// Checks and canonical form of a record's [`RouteFeatures`] (the type is routing data,
/// defined with the decision; what a record accepts of it is decided here).
trait RouteFeaturesRecord {
    fn validate(&self) -> Result<(), UsageError>;
    fn write_canonical(&self, out: &mut String);
}

impl RouteFeaturesRecord for RouteFeatures {
    fn validate(&self) -> Result<(), UsageError> {
        let bad = |field: &str, message: String| UsageError::InvalidField {
            field: format!("route.features.{field}"),
            message,
        };
        if !(1..=20).contains(&self.bits) {
            return Err(bad("bits", format!("{} is not in 1..=20", self.bits)));
        }
        if self.structural.len() > MAX_ROUTE_STRUCTURAL {
            return Err(bad(
                "structural",
                format!(
                    "{} values, at most {MAX_ROUTE_STRUCTURAL}",
                    self.structural.len()
                ),
            ));
        }
        if let Some(v) = self
            .structural
            .iter()
            .find(|v| v.unsigned_abs() > MAX_SAFE_INTEGER)
        {
            return Err(bad("structural", format!("{v} exceeds 2^53-1")));
        }
        if self.terms.len() > MAX_ROUTE_TERMS {
            return Err(bad(
                "terms",
                format!("{} buckets, at most {MAX_ROUTE_TERMS}", self.terms.len()),
            ));
        }
        let nb = 1i64 << self.bits;
        let mut prev = -1i64;
        for [b, c] in &self.terms {
            if *b <= prev || *b >= nb || !(1..=1_000_000).contains(c) {
                return Err(bad(
                    "terms",
                    format!(
                        "[{b}, {c}]: buckets must be increasing in 0..{nb} with counts in 1..=1000000"
                    ),
                ));
            }
            prev = *b;
        }
        Ok(())
    }

    fn write_canonical(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(out, "{{\"bits\":{},\"structural\":[", self.bits);
        for (i, v) in self.structural.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{v}");
        }
        out.push_str("],\"terms\":[");
        for (i, [b, c]) in self.terms.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "[{b},{c}]");
        }
        out.push_str("]}");
    }
}

/// Outcome of the call: `ok`, `cancelled`, `denied`, or an [`ErrorKind::code`] such as
/// `RATE_LIMITED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageStatus {
    /// Completed.
    Ok,
    /// The caller dropped or cancelled the call (e.g. stopped reading a stream).
    Cancelled,
    /// Refused by the organization policy (a rule or a budget) before any provider was
    /// called: no tokens, zero cost; the record's `denied_rule` / `denied_level` say why.
    Denied,
    /// Failed with this error kind.
    Error(ErrorKind),
}

impl UsageStatus {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageStatus::Ok => "ok",
            UsageStatus::Cancelled => "cancelled",
            UsageStatus::Denied => "denied",
            UsageStatus::Error(k) => k.code(),
        }
    }
    /// Parse the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(UsageStatus::Ok),
            "cancelled" => Some(UsageStatus::Cancelled),
            "denied" => Some(UsageStatus::Denied),
            _ => ErrorKind::from_code(s).map(UsageStatus::Error),
        }
    }
}

impl Serialize for UsageStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for UsageStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UsageStatus::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown usage status `{s}`")))
    }
}

/// Which SDK produced the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdkInfo {
    /// SDK name, e.g. `gaterouter-rust`, `gaterouter-python`.
    pub name: String,
    /// Version of the package named by `name` (for a binding: the binding's own
    /// package, e.g. the npm or PyPI version, not the core's; the core's version is
    /// [`SDK_VERSION`]). Bindings built in this workspace share one version.
    pub version: String,
    /// Host language: `rust`, `python`, `node`, `kotlin`.
    pub language: String,
}

impl SdkInfo {
    /// This crate, used directly from Rust.
    pub fn rust() -> Self {
        SdkInfo {
            name: crate::record::SDK_NAME.to_owned(),
            version: crate::record::SDK_VERSION.to_owned(),
            language: "rust".to_owned(),
        }
    }
}

impl Default for SdkInfo {
    fn default() -> Self {
        Self::rust()
    }
}

/// What the caller knows about one finished call; the [`super::Recorder`] adds the id,
/// sequence number, identity and SDK and signs the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRecordInput {
    /// When the call started (Unix ms, UTC). See [`unix_ms_now`].
    pub ts_start: u64,
    /// When the call ended (Unix ms, UTC).
    pub ts_end: u64,
    /// Provider config name (`openai`, `my-vllm`).
    pub provider: String,
    /// Model name as sent to the provider.
    pub model: String,
    /// Routing details.
    pub route: Option<RouteInfo>,
    /// Prompt tokens, INCLUDING cached and cache-write tokens (OpenAI convention).
    pub prompt_tokens: u64,
    /// Completion tokens, INCLUDING reasoning tokens.
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_prompt_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// The client's cost estimate in millionths of a US dollar.
    pub cost_micros: u64,
    /// Wall time of the whole call, retries included.
    pub latency_ms: u64,
    /// Time to the first streamed token, for streams.
    pub time_to_first_token_ms: Option<u64>,
    /// Outcome.
    pub status: Option<UsageStatus>,
    /// Attempts taken (1 = no retry or fallback).
    pub attempts: u32,
    /// Whether the call streamed.
    pub stream: bool,
    /// Free-form tags; at most [`MAX_TAGS`], keys up to [`MAX_TAG_KEY_BYTES`] bytes,
    /// values up to [`MAX_TAG_VALUE_BYTES`] bytes.
    pub tags: BTreeMap<String, String>,
    /// For `denied`: the rule that refused the call (`deny_models`, `budget`, ...).
    pub denied_rule: Option<String>,
    /// For `denied`: the level of the organization tree that set it (`department:eng`).
    pub denied_level: Option<String>,
}

/// A complete usage record (without its signature). Field names are the wire names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecord {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// UUIDv7.
    pub id: RecordId,
    /// Per-signing-key sequence number: strictly increasing across restarts (gaps are
    /// possible, repeats are not).
    pub seq: u64,
    /// Call start, Unix ms UTC.
    pub ts_start: u64,
    /// Call end, Unix ms UTC.
    pub ts_end: u64,
    /// Organization id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Department id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Project id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Member id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// GateRouter API key id whose Ed25519 key signs this record.
    pub api_key_id: String,
    /// Provider config name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Routing details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteInfo>,
    /// Prompt tokens (including cached and cache-write).
    pub prompt_tokens: u64,
    /// Completion tokens (including reasoning).
    pub completion_tokens: u64,
    /// Cached prompt tokens.
    pub cached_prompt_tokens: u64,
    /// Cache-write prompt tokens.
    pub cache_write_tokens: u64,
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// Client cost estimate, micro-USD.
    pub cost_micros: u64,
    /// Status `denied`: the rule that refused the call. Absent otherwise (so records
    /// without it keep their canonical bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_rule: Option<String>,
    /// Status `denied`: the level that set the rule (`department:eng`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_level: Option<String>,
    /// Call wall time.
    pub latency_ms: u64,
    /// Time to first token (streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token_ms: Option<u64>,
    /// `ok`, `cancelled` or an error code.
    pub status: UsageStatus,
    /// Attempts taken (retries and fallbacks).
    pub attempts: u32,
    /// Streamed or not.
    pub stream: bool,
    /// Caller tags (always present, possibly `{}`).
    pub tags: BTreeMap<String, String>,
    /// Producing SDK.
    pub sdk: SdkInfo,
}

/// Current time as Unix milliseconds.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Check the tag bounds; the error names the offending tag.
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), UsageError> {
    if tags.len() > MAX_TAGS {
        let key = tags.keys().nth(MAX_TAGS).cloned().unwrap_or_default();
        return Err(UsageError::InvalidTag {
            key: shorten(&key),
            reason: format!(
                "{} tags given, at most {MAX_TAGS} are allowed; drop some tags",
                tags.len()
            ),
        });
    }
    for (k, v) in tags {
        if k.is_empty() {
            return Err(UsageError::InvalidTag {
                key: String::new(),
                reason: "tag keys may not be empty".into(),
            });
        }
        if k.len() > MAX_TAG_KEY_BYTES {
            return Err(UsageError::InvalidTag {
                key: shorten(k),
                reason: format!(
                    "key is {} bytes, at most {MAX_TAG_KEY_BYTES} are allowed",
                    k.len()
                ),
            });
        }
        if v.len() > MAX_TAG_VALUE_BYTES {
            return Err(UsageError::InvalidTag {
                key: shorten(k),
                reason: format!(
                    "value is {} bytes, at most {MAX_TAG_VALUE_BYTES} are allowed",
                    v.len()
                ),
            });
        }
        if k.contains('\0') || v.contains('\0') {
            return Err(UsageError::InvalidTag {
                key: shorten(&k.replace('\0', "\\0")),
                reason: NUL_MESSAGE.into(),
            });
        }
    }
    Ok(())
}

/// Cut a long string for an error message (at a char boundary).
fn shorten(s: &str) -> String {
    if s.len() <= MAX_TAG_KEY_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_TAG_KEY_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

pub(crate) fn check_id(field: &'static str, value: &str, required: bool) -> Result<(), UsageError> {
    if required && value.trim().is_empty() {
        return Err(UsageError::InvalidField {
            field: field.into(),
            message: "must not be empty".into(),
        });
    }
    if value.len() > MAX_ID_BYTES {
        return Err(UsageError::InvalidField {
            field: field.into(),
            message: format!(
                "is {} bytes, at most {MAX_ID_BYTES} are allowed",
                value.len()
            ),
        });
    }
    if value.contains('\0') {
        return Err(UsageError::InvalidField {
            field: field.into(),
            message: NUL_MESSAGE.into(),
        });
    }
    Ok(())
}

/// Why a NUL is refused: PostgreSQL text cannot hold it, so a stored record would fail
/// its whole batch on one backend and not on the other.
const NUL_MESSAGE: &str =
    "contains a NUL character (\\0), which text columns cannot store; remove it";

pub(crate) fn check_int(field: &'static str, v: u64) -> Result<(), UsageError> {
    if v > MAX_SAFE_INTEGER {
        return Err(UsageError::InvalidField {
            field: field.into(),
            message: format!("{v} exceeds 2^53-1"),
        });
    }
    Ok(())
}

impl UsageRecord {
    /// Assemble a record from the caller's input, checking every bound.
    pub fn build(
        input: UsageRecordInput,
        identity: &Identity,
        sdk: &SdkInfo,
        id: RecordId,
        seq: u64,
    ) -> Result<UsageRecord, UsageError> {
        let api_key_id = identity.api_key_id.clone().unwrap_or_default();
        let rec = UsageRecord {
            schema_version: SCHEMA_VERSION,
            id,
            seq,
            ts_start: input.ts_start,
            ts_end: input.ts_end,
            org: identity.org.clone(),
            department: identity.department.clone(),
            project: identity.project.clone(),
            group: identity.group.clone(),
            user: identity.user.clone(),
            api_key_id,
            provider: input.provider,
            model: input.model,
            route: input.route,
            prompt_tokens: input.prompt_tokens,
            completion_tokens: input.completion_tokens,
            cached_prompt_tokens: input.cached_prompt_tokens,
            cache_write_tokens: input.cache_write_tokens,
            reasoning_tokens: input.reasoning_tokens,
            cost_micros: input.cost_micros,
            denied_rule: input.denied_rule,
            denied_level: input.denied_level,
            latency_ms: input.latency_ms,
            time_to_first_token_ms: input.time_to_first_token_ms,
            status: input.status.unwrap_or(UsageStatus::Ok),
            attempts: input.attempts.max(1),
            stream: input.stream,
            tags: input.tags,
            sdk: sdk.clone(),
        };
        rec.validate()?;
        Ok(rec)
    }

    /// Check every bound: the error names the field (or tag) and the limit.
    pub fn validate(&self) -> Result<(), UsageError> {
        check_id("api_key_id", &self.api_key_id, true)?;
        check_id("provider", &self.provider, true)?;
        check_id("model", &self.model, true)?;
        for (f, v) in [
            ("denied_rule", &self.denied_rule),
            ("denied_level", &self.denied_level),
            ("org", &self.org),
            ("department", &self.department),
            ("project", &self.project),
            ("group", &self.group),
            ("user", &self.user),
        ] {
            if let Some(v) = v {
                check_id(f, v, false)?;
            }
        }
        if let Some(r) = &self.route {
            if let Some(t) = &r.tier {
                check_id("route.tier", t, false)?;
            }
            if let Some(s) = r.score {
                if s.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(UsageError::InvalidField {
                        field: "route.score".into(),
                        message: format!("{s} exceeds 2^53-1"),
                    });
                }
            }
            if let Some(w) = &r.weights {
                check_id("route.weights", w, false)?;
            }
            for (field, p) in [
                ("route.propensity_ppm", r.propensity_ppm),
                ("route.model_propensity_ppm", r.model_propensity_ppm),
            ] {
                if let Some(p) = p.filter(|p| !(1..=1_000_000).contains(p)) {
                    return Err(UsageError::InvalidField {
                        field: field.into(),
                        message: format!("{p} is not a probability in millionths (1..=1000000)"),
                    });
                }
            }
            if let Some(f) = &r.features {
                f.validate()?;
            }
            if let Some(id) = &r.shadow_of {
                RecordId::check("route.shadow_of", id.as_str())?;
            }
        }
        check_id("sdk.name", &self.sdk.name, true)?;
        check_id("sdk.version", &self.sdk.version, true)?;
        check_id("sdk.language", &self.sdk.language, true)?;
        for (f, v) in [
            ("seq", self.seq),
            ("ts_start", self.ts_start),
            ("ts_end", self.ts_end),
            ("prompt_tokens", self.prompt_tokens),
            ("completion_tokens", self.completion_tokens),
            ("cached_prompt_tokens", self.cached_prompt_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("reasoning_tokens", self.reasoning_tokens),
            ("cost_micros", self.cost_micros),
            ("latency_ms", self.latency_ms),
            (
                "time_to_first_token_ms",
                self.time_to_first_token_ms.unwrap_or(0),
            ),
        ] {
            check_int(f, v)?;
        }
        if self.ts_end < self.ts_start {
            return Err(UsageError::InvalidField {
                field: "ts_end".into(),
                message: format!(
                    "ts_end ({}) is before ts_start ({})",
                    self.ts_end, self.ts_start
                ),
            });
        }
        if self
            .cached_prompt_tokens
            .saturating_add(self.cache_write_tokens)
            > self.prompt_tokens
        {
            return Err(UsageError::InvalidField {
                field: "cached_prompt_tokens".into(),
                message: format!(
                    "cached ({}) + cache-write ({}) exceed prompt_tokens ({}); prompt_tokens must include them",
                    self.cached_prompt_tokens, self.cache_write_tokens, self.prompt_tokens
                ),
            });
        }
        if self.reasoning_tokens > self.completion_tokens {
            return Err(UsageError::InvalidField {
                field: "reasoning_tokens".into(),
                message: format!(
                    "reasoning_tokens ({}) exceed completion_tokens ({}); completion_tokens must include them",
                    self.reasoning_tokens, self.completion_tokens
                ),
            });
        }
        validate_tags(&self.tags)
    }

    /// The RFC 8785 canonical JSON of this record (the bytes that are signed).
    ///
    /// Written directly, members in their canonical order (the hot path; several times
    /// faster than going through `serde_json::Value`); tests check it equals
    /// [`canonical::canonicalize`] of the serde form and the Python vectors. Call
    /// [`UsageRecord::validate`] first: integers beyond 2^53-1 are refused there.
    pub fn canonical_json(&self) -> Result<String, UsageError> {
        use std::fmt::Write as _;
        fn key(out: &mut String, k: &str) {
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
        }
        fn num(out: &mut String, k: &str, v: impl std::fmt::Display) {
            key(out, k);
            let _ = write!(out, "{v},");
        }
        fn string(out: &mut String, k: &str, v: &str) {
            key(out, k);
            canonical::write_string(v, out);
            out.push(',');
        }
        fn opt_string(out: &mut String, k: &str, v: &Option<String>) {
            if let Some(v) = v {
                string(out, k, v);
            }
        }
        for (f, v) in [
            ("seq", self.seq),
            ("prompt_tokens", self.prompt_tokens),
            ("cached_prompt_tokens", self.cached_prompt_tokens),
        ] {
            check_int(f, v)?;
        }
        let mut out = String::with_capacity(640);
        out.push('{');
        string(&mut out, "api_key_id", &self.api_key_id);
        num(&mut out, "attempts", self.attempts);
        num(&mut out, "cache_write_tokens", self.cache_write_tokens);
        num(&mut out, "cached_prompt_tokens", self.cached_prompt_tokens);
        num(&mut out, "completion_tokens", self.completion_tokens);
        num(&mut out, "cost_micros", self.cost_micros);
        opt_string(&mut out, "denied_level", &self.denied_level);
        opt_string(&mut out, "denied_rule", &self.denied_rule);
        opt_string(&mut out, "department", &self.department);
        opt_string(&mut out, "group", &self.group);
        string(&mut out, "id", self.id.as_str());
        num(&mut out, "latency_ms", self.latency_ms);
        string(&mut out, "model", &self.model);
        opt_string(&mut out, "org", &self.org);
        opt_string(&mut out, "project", &self.project);
        num(&mut out, "prompt_tokens", self.prompt_tokens);
        string(&mut out, "provider", &self.provider);
        num(&mut out, "reasoning_tokens", self.reasoning_tokens);
        if let Some(r) = &self.route {
            key(&mut out, "route");
            out.push('{');
            if let Some(e) = r.explored {
                key(&mut out, "explored");
                out.push_str(if e { "true," } else { "false," });
            }
            if let Some(f) = &r.features {
                key(&mut out, "features");
                f.write_canonical(&mut out);
                out.push(',');
            }
            string(
                &mut out,
                "mode",
                match r.mode {
                    RouteMode::Auto => "auto",
                    RouteMode::Explicit => "explicit",
                },
            );
            if let Some(p) = r.model_propensity_ppm {
                num(&mut out, "model_propensity_ppm", p);
            }
            if let Some(p) = r.propensity_ppm {
                num(&mut out, "propensity_ppm", p);
            }
            if let Some(sc) = r.score {
                num(&mut out, "score", sc);
            }
            if let Some(id) = &r.shadow_of {
                string(&mut out, "shadow_of", id.as_str());
            }
            opt_string(&mut out, "tier", &r.tier);
            opt_string(&mut out, "weights", &r.weights);
            out.pop();
            out.push_str("},");
        }
        num(&mut out, "schema_version", self.schema_version);
        key(&mut out, "sdk");
        out.push('{');
        string(&mut out, "language", &self.sdk.language);
        string(&mut out, "name", &self.sdk.name);
        string(&mut out, "version", &self.sdk.version);
        out.pop();
        out.push_str("},");
        num(&mut out, "seq", self.seq);
        string(&mut out, "status", self.status.as_str());
        key(&mut out, "stream");
        out.push_str(if self.stream { "true," } else { "false," });
        key(&mut out, "tags");
        out.push('{');
        let mut tags: Vec<(&String, &String)> = self.tags.iter().collect();
        // BTreeMap order is code point order; JCS wants UTF-16 code unit order.
        tags.sort_by(|a, b| canonical::utf16_cmp(a.0, b.0));
        for (k, v) in tags {
            canonical::write_string(k, &mut out);
            out.push(':');
            canonical::write_string(v, &mut out);
            out.push(',');
        }
        if out.ends_with(',') {
            out.pop();
        }
        out.push_str("},");
        if let Some(t) = self.time_to_first_token_ms {
            num(&mut out, "time_to_first_token_ms", t);
        }
        num(&mut out, "ts_end", self.ts_end);
        num(&mut out, "ts_start", self.ts_start);
        opt_string(&mut out, "user", &self.user);
        out.pop();
        out.push('}');
        Ok(out)
    }

    /// The canonical JSON computed the generic way (serde value + [`canonical::canonicalize`]);
    /// slower, used to cross-check [`UsageRecord::canonical_json`].
    pub fn canonical_json_generic(&self) -> Result<String, UsageError> {
        let v = serde_json::to_value(self).map_err(|e| UsageError::InvalidField {
            field: "record".into(),
            message: e.to_string(),
        })?;
        canonical::canonicalize(&v).map_err(|e| UsageError::InvalidField {
            field: e.path,
            message: e.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> UsageRecordInput {
        UsageRecordInput {
            ts_start: 1,
            ts_end: 2,
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            prompt_tokens: 10,
            completion_tokens: 5,
            ..Default::default()
        }
    }

    fn ident() -> Identity {
        Identity {
            api_key_id: Some("key_1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn status_codes_round_trip() {
        for s in [
            "ok",
            "cancelled",
            "denied",
            "RATE_LIMITED",
            "BUDGET_EXCEEDED",
            "TIMEOUT",
        ] {
            assert_eq!(UsageStatus::parse(s).unwrap().as_str(), s);
        }
        assert!(UsageStatus::parse("nope").is_none());
        for &k in ErrorKind::ALL {
            assert_eq!(UsageStatus::parse(k.code()), Some(UsageStatus::Error(k)));
        }
    }

    #[test]
    fn nul_characters_are_refused() {
        let mut i = input();
        i.tags.insert("team".into(), "a\0b".into());
        let e =
            UsageRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap_err();
        assert!(
            matches!(&e, UsageError::InvalidTag { key, .. } if key == "team")
                && e.to_string().contains("NUL"),
            "{e}"
        );
        let mut i = input();
        i.model = "m\0".into();
        let e =
            UsageRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap_err();
        assert!(
            e.to_string().contains("model") && e.to_string().contains("NUL"),
            "{e}"
        );
    }

    #[test]
    fn tag_errors_name_the_tag() {
        let mut i = input();
        i.tags.insert("team".into(), "x".repeat(257));
        let e =
            UsageRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap_err();
        assert!(
            matches!(&e, UsageError::InvalidTag { key, .. } if key == "team"),
            "{e}"
        );
        assert!(
            e.to_string().contains("team") && e.to_string().contains("256"),
            "{e}"
        );

        let mut i = input();
        i.tags.insert("k".repeat(65), "v".into());
        let e =
            UsageRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap_err();
        assert!(e.to_string().contains("64"), "{e}");

        let mut i = input();
        for n in 0..17 {
            i.tags.insert(format!("t{n:02}"), "v".into());
        }
        let e =
            UsageRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap_err();
        assert!(e.to_string().contains("17 tags"), "{e}");

        let mut i = input();
        for n in 0..16 {
            i.tags.insert(format!("t{n:02}"), "é".repeat(128));
        }
        i.tags.insert("k".repeat(64), String::new());
        i.tags.remove("t00");
        UsageRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap();
    }

    #[test]
    fn token_invariants_and_required_fields() {
        let mut i = input();
        i.cached_prompt_tokens = 11;
        let e =
            UsageRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap_err();
        assert!(e.to_string().contains("cached_prompt_tokens"), "{e}");
        let e = UsageRecord::build(
            input(),
            &Identity::default(),
            &SdkInfo::rust(),
            RecordId::new_v7(),
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("api_key_id"), "{e}");
        let mut i = input();
        i.ts_end = 0;
        let e =
            UsageRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap_err();
        assert!(e.to_string().contains("ts_end"), "{e}");
    }

    #[test]
    fn ids_are_v7_and_ordered() {
        let a = RecordId::new_v7();
        let b = RecordId::new_v7();
        assert!(a < b);
        assert_eq!(
            uuid::Uuid::parse_str(a.as_str()).unwrap().get_version_num(),
            7
        );
    }

    #[test]
    fn json_round_trip_and_no_absent_optionals() {
        let r =
            UsageRecord::build(input(), &ident(), &SdkInfo::rust(), RecordId::new_v7(), 3).unwrap();
        let j = r.canonical_json().unwrap();
        assert!(
            !j.contains("\"group\"")
                && !j.contains("\"route\"")
                && !j.contains("time_to_first_token_ms"),
            "{j}"
        );
        let back: UsageRecord = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
    }

    use proptest::prelude::*;

    fn opt_str() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-z\\u{e9}\\u{1f600}\\u{e000}\"\\\\\n\\u{1}]{0,8}")
    }

    proptest! {
        #[test]
        fn direct_canonical_equals_generic(
            org in opt_str(), group in opt_str(), user in opt_str(),
            tags in proptest::collection::btree_map("[a-zA-Z\\u{e9}\\u{1f600}\\u{e000}\\u{ff61}]{1,6}", "[ -~\\u{7f}\\u{2028}\\u{1}\\u{1f}]{0,10}", 0..16),
            tier in opt_str(), score in proptest::option::of(-1000i64..1000), mode in any::<bool>(),
            nums in proptest::array::uniform8(0u64..(1u64 << 53)), ttft in proptest::option::of(0u64..1000), stream in any::<bool>(),
            dl in opt_str(), weights in opt_str(), prop in proptest::option::of(1i64..=1_000_000), mprop in proptest::option::of(1i64..=1_000_000),
            explored in proptest::option::of(any::<bool>()), shadow in any::<bool>(),
            feats in proptest::option::of((1i64..=20, proptest::collection::vec(-2_000_000i64..2_000_000, 0..20), proptest::collection::btree_map(0i64..1024, 1i64..50, 0..30))),
        ) {
            let features = feats.map(|(bits, structural, terms)| RouteFeatures {
                bits: bits.max(10), structural, terms: terms.into_iter().map(|(b, c)| [b, c]).collect(),
            });
            let route = if tier.is_none() && score.is_none() && mode { None } else {
                Some(RouteInfo { mode: if mode { RouteMode::Auto } else { RouteMode::Explicit }, tier, score, weights, propensity_ppm: prop, model_propensity_ppm: mprop, explored, features, shadow_of: shadow.then(RecordId::new_v7) })
            };
            let r = UsageRecord {
                schema_version: SCHEMA_VERSION, id: RecordId::new_v7(), seq: nums[0], ts_start: nums[1], ts_end: nums[2],
                org, department: None, project: Some("p".into()), group, user, api_key_id: "k\u{e9}y".into(),
                provider: "openai".into(), model: "m\"x".into(), route, prompt_tokens: nums[3], completion_tokens: nums[4],
                cached_prompt_tokens: nums[5], cache_write_tokens: 0, reasoning_tokens: nums[6], cost_micros: nums[7],
                denied_rule: dl.clone(), denied_level: dl,
                latency_ms: 5, time_to_first_token_ms: ttft, status: UsageStatus::Error(ErrorKind::Timeout), attempts: 3,
                stream, tags, sdk: SdkInfo::rust(),
            };
            prop_assert_eq!(r.canonical_json().unwrap(), r.canonical_json_generic().unwrap());
        }
    }
}
