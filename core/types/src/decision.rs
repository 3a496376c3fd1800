//! What a routing decision says: the data every response carries ([`RouteDecision`]),
//! apart from the logic that makes it (the scorer and the selector live in the
//! `routing` module of `gaterouter`, which re-exports these types).
//!
//! Plain data, so the request/response types and the stream can carry a decision
//! without depending on the router.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// How demanding a request is; the candidate selection maps tiers to models.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Tier {
    /// A weak, cheap model will very likely do.
    Light,
    /// Middle ground.
    Standard,
    /// Send to the strong model.
    Heavy,
}

impl Tier {
    /// Every tier, lightest first.
    pub const ALL: &'static [Tier] = <Tier as strum::VariantArray>::VARIANTS;

    /// Every tier's name, lightest first.
    pub const NAMES: &'static [&'static str] = <Tier as strum::VariantNames>::VARIANTS;

    /// The tier of a lowercase name.
    pub fn parse(s: &str) -> Option<Tier> {
        s.parse().ok()
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One feature's part in a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureContribution {
    /// Feature name (as in the weights file).
    pub name: Cow<'static, str>,
    /// Raw value: a count, share or token estimate.
    pub value: f64,
    /// The normalized value the weight multiplies.
    pub normalized: f64,
    /// The weight.
    pub weight: f64,
    /// `weight * normalized`: its push on the log-odds of the score.
    pub contribution: f64,
}

/// How candidates are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Lowest estimated cost first.
    Cheapest,
    /// Cost weighed against the tier list's preference order (default).
    #[default]
    Balanced,
    /// The tier list's order (strongest first).
    Quality,
    /// Lowest observed latency (EWMA) first; models never observed keep list order
    /// after the observed ones.
    Fastest,
}

/// A ranked candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// `provider/model`.
    pub model: String,
    /// Estimated cost with the expected completion length (micro-USD), when priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_cost_micros: Option<u64>,
    /// Estimated cost if the model writes `max_tokens` (micro-USD), when priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost_micros: Option<u64>,
    /// Context window, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Observed latency, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Which tier list it came from (auto only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Its predicted success on this request, in `[0, 1]`, when the router's weights have a
    /// success model for it (auto only; `route calibrate` on outcomes of several models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_success: Option<f64>,
}

/// A model that was considered and left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    /// `provider/model`.
    pub model: String,
    /// Which rule left it out (serialized snake_case: `not_permitted`, `no_api_key`...).
    pub kind: Exclusion,
    /// Why it cannot serve this request, as a sentence.
    pub reason: String,
}

impl Excluded {
    /// `model` left out for `kind`, with the sentence saying why.
    pub fn new(model: impl Into<String>, kind: Exclusion, reason: impl Into<String>) -> Self {
        Excluded {
            model: model.into(),
            kind,
            reason: reason.into(),
        }
    }
}

/// Why a model was left out of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Exclusion {
    /// The organization policy or the config's `[[models]]` allow-list does not permit it.
    NotPermitted,
    /// The model id is not `provider/model`, or its provider is not configured.
    UnknownProvider,
    /// Its provider has no API key.
    NoApiKey,
    /// Its provider's circuit breaker is open after repeated failures.
    CircuitOpen,
    /// It lacks what the request needs (tools, images, JSON-schema output).
    Capability,
    /// The request does not fit its context window.
    ContextWindow,
    /// It may cost more than a budget has left.
    Budget,
}

/// One attempt the client made while executing a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// `provider/model`.
    pub model: String,
    /// How it ended (serialized `ok`, `CIRCUIT_OPEN` or the error kind code).
    pub outcome: AttemptOutcome,
    /// Retries made on this model before the outcome.
    pub retries: u32,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The model answered.
    Ok,
    /// Not sent: its provider's circuit breaker was open.
    CircuitOpen,
    /// Sent (or refused before sending) with this error.
    Failed(ErrorKind),
}

impl AttemptOutcome {
    /// `ok`, `CIRCUIT_OPEN` or the error kind's code (`RATE_LIMITED`...).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::CircuitOpen => "CIRCUIT_OPEN",
            AttemptOutcome::Failed(k) => k.code(),
        }
    }

    /// Whether a request went out (a circuit-open skip sends nothing).
    pub fn was_sent(self) -> bool {
        self != AttemptOutcome::CircuitOpen
    }
}

impl Serialize for AttemptOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AttemptOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "ok" => Ok(AttemptOutcome::Ok),
            "CIRCUIT_OPEN" => Ok(AttemptOutcome::CircuitOpen),
            code => ErrorKind::from_code(code)
                .map(AttemptOutcome::Failed)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown attempt outcome `{code}`: ok, CIRCUIT_OPEN or an error code"
                    ))
                }),
        }
    }
}

/// A routing decision and its explanation. Every response carries the one that produced
/// it, with the attempts actually made appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// `auto` or `explicit`.
    pub mode: RouteMode,
    /// Complexity score (auto only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Tier the score mapped to (auto only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// The tier the chosen model was taken from, when the scored tier had no usable model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_tier: Option<Tier>,
    /// Every feature's contribution to the score (auto only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeatureContribution>,
    /// Ranking policy.
    pub policy: Policy,
    /// The model tried first.
    pub chosen: String,
    /// Ranked candidates: `chosen` first, then the fallbacks in order.
    pub candidates: Vec<Candidate>,
    /// Models left out, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Excluded>,
    /// One line saying why `chosen` was chosen.
    pub reason: String,
    /// Rough prompt size used for context and cost checks.
    pub estimated_prompt_tokens: u64,
    /// What the client did: filled after the call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// Version (fingerprint) of the weights that scored the request (auto only): the
    /// builtin ones, a file's, or the organization's learned ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_version: Option<String>,
    /// Exploration and propensity, when the organization learns from outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<LearningTrace>,
    /// Shadow sampling drew this call: the same request also goes to this decision's
    /// model, on the other arm (heavy tier vs lighter ones), so that the app's evaluator
    /// can judge both answers (the response's `shadow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Box<RouteDecision>>,
    /// A shadow call's own decision: the usage record id of the call it shadows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_of: Option<String>,
}

impl RouteDecision {
    /// Models to try, in order: the chosen one and at most `max_fallbacks` more.
    pub fn chain(&self, max_fallbacks: u32) -> Vec<String> {
        self.candidates
            .iter()
            .take(1 + max_fallbacks as usize)
            .map(|c| c.model.clone())
            .collect()
    }

    /// The model that finally answered (the last `ok` attempt), else `chosen`.
    pub fn answered_by(&self) -> &str {
        self.attempts
            .iter()
            .rev()
            .find(|a| a.outcome == AttemptOutcome::Ok)
            .map(|a| a.model.as_str())
            .unwrap_or(&self.chosen)
    }
}

/// What one `auto` decision logged for learning (shown by `explain`, copied into the
/// usage record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearningTrace {
    /// The tier was drawn by exploration, not by the score.
    pub explored: bool,
    /// Probability the policy gave the arm the call went to (heavy vs lighter tiers).
    pub propensity: f64,
    /// The model was drawn by within-tier exploration, not the tier's policy.
    #[serde(default)]
    pub model_explored: bool,
    /// Probability the router gave the model the call went to: its tier's probability
    /// times the model's within its tier (what per-model learning divides by).
    #[serde(default = "one")]
    pub model_propensity: f64,
    /// The tier the score alone would have picked.
    pub scored_tier: Tier,
    /// The features the record carries (not shown by `explain`: no need, and large).
    #[serde(skip)]
    pub features: Option<RouteFeatures>,
}

fn one() -> f64 {
    1.0
}

/// How the model was chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    /// `model: "auto"`: the router picked.
    Auto,
    /// The caller named the model.
    #[default]
    Explicit,
}

/// The router's view of a request as a record carries it when the organization learns
/// from outcomes: structural features and salted hashed word 1-2-gram buckets. No text,
/// no word, no hash that can be checked without the organization's salt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFeatures {
    /// The buckets are `0..2^bits`.
    pub bits: i64,
    /// The structural features after normalization, in millionths, in the router's
    /// feature order (`gaterouter::routing::FEATURE_NAMES`).
    pub structural: Vec<i64>,
    /// `[bucket, count]` of the hashed terms, sorted by bucket.
    pub terms: Vec<[i64; 2]>,
}
