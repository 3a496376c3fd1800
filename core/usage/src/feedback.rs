//! Outcome feedback: how good one call's answer was, as a signed record that joins the
//! call's usage record at the collector.
//!
//! The app (or a server-side evaluator holding a GateRouter key of the same org) calls
//! `gaterouter::Client::feedback` with the call's `usage_record_id` (on every response and
//! on a stream's last chunk) and a score in `[0, 1]`. The feedback travels exactly like a
//! usage record: validated, given the next per-key `seq`, signed with the key's Ed25519
//! key, appended to the spool, delivered in the same batches to `POST /v1/usage`,
//! deduplicated by the collector per (org, id), and counted in the delivery report.
//!
//! Like a usage record it never holds text: a score, an optional short label from the
//! app's own vocabulary (`thumbs_up`, `resolved`) and bounded tags.
//!
//! Wire form (integers only, so the canonical bytes are unambiguous):
//! `{"api_key_id","id","kind":"feedback","label"?,"org"?,"record_id","schema_version",
//! "score_milli","sdk","seq","source","tags","ts"}` plus `signature`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::canonical;
use super::record::{RecordId, SCHEMA_VERSION, SdkInfo, check_id, check_int, validate_tags};
use crate::error::UsageError;
use gaterouter_types::identity::Identity;

/// Longest label, in UTF-8 bytes.
pub const MAX_LABEL_BYTES: usize = 64;

/// The `kind` member that tells a feedback record from a usage record (which has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackKind {
    /// The only kind.
    #[default]
    Feedback,
}

/// Who judged the answer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Default,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum FeedbackSource {
    /// The end user (a thumbs up, an accepted suggestion).
    #[default]
    User,
    /// An automatic evaluator (tests passed, a grader model, a human reviewer's tool).
    Evaluator,
    /// Inferred from behaviour (e.g. the caller re-sent the request to a stronger model).
    Implicit,
}

impl FeedbackSource {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
    /// Parse the wire spelling; the error names the accepted values.
    pub fn parse(s: &str) -> Result<Self, UsageError> {
        s.parse().map_err(|_| {
            let names = <Self as strum::VariantNames>::VARIANTS;
            let (last, rest) = names.split_last().unwrap_or((&"", &[]));
            UsageError::InvalidField {
                field: "source".into(),
                message: format!(
                    "`{}` is not a feedback source: use {} or {last}",
                    s.chars().take(40).collect::<String>(),
                    rest.join(", ")
                ),
            }
        })
    }
}

/// What the caller says about one call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedbackInput {
    /// The judged call's `usage_record_id`.
    pub record_id: String,
    /// How good the answer was, from 0.0 (useless) to 1.0 (right); stored in thousandths.
    pub score: f64,
    /// Optional short label from the app's vocabulary (at most [`MAX_LABEL_BYTES`]).
    pub label: Option<String>,
    /// Who judged.
    pub source: FeedbackSource,
    /// Bounded tags, as on usage records.
    pub tags: BTreeMap<String, String>,
}

/// A complete feedback record (without its signature). Field names are the wire names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRecord {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Always `feedback`.
    pub kind: FeedbackKind,
    /// UUIDv7 of this feedback.
    pub id: RecordId,
    /// Per-signing-key sequence number, shared with the key's usage records.
    pub seq: u64,
    /// When the feedback was given, Unix ms UTC.
    pub ts: u64,
    /// Organization id (absent: the collector takes the key's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// GateRouter API key id whose Ed25519 key signs this record.
    pub api_key_id: String,
    /// The usage record (call) this feedback is about.
    pub record_id: RecordId,
    /// Score in thousandths, 0..=1000.
    pub score_milli: u32,
    /// Optional label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Who judged.
    pub source: FeedbackSource,
    /// Caller tags (always present, possibly `{}`).
    pub tags: BTreeMap<String, String>,
    /// Producing SDK.
    pub sdk: SdkInfo,
}

/// A score in `[0, 1]` as thousandths; anything else is a typed error naming `score`.
pub fn score_to_milli(score: f64) -> Result<u32, UsageError> {
    if !score.is_finite() || !(0.0..=1.0).contains(&score) {
        return Err(UsageError::InvalidField {
            field: "score".into(),
            message: format!(
                "{score} is not between 0 and 1: give 0.0 for a useless answer, 1.0 for a right one (e.g. 1.0/0.0 for thumbs up/down)"
            ),
        });
    }
    Ok((score * 1000.0).round() as u32)
}

impl FeedbackRecord {
    /// Assemble a feedback record from the caller's input, checking every bound.
    pub fn build(
        input: FeedbackInput,
        identity: &Identity,
        sdk: &SdkInfo,
        id: RecordId,
        seq: u64,
        ts: u64,
    ) -> Result<FeedbackRecord, UsageError> {
        let rec = FeedbackRecord {
            schema_version: SCHEMA_VERSION,
            kind: FeedbackKind::Feedback,
            id,
            seq,
            ts,
            org: identity.org.clone(),
            api_key_id: identity.api_key_id.clone().unwrap_or_default(),
            score_milli: score_to_milli(input.score)?,
            record_id: RecordId(input.record_id),
            label: input.label,
            source: input.source,
            tags: input.tags,
            sdk: sdk.clone(),
        };
        rec.validate()?;
        Ok(rec)
    }

    /// Check every bound: the error names the field (or tag) and the limit.
    pub fn validate(&self) -> Result<(), UsageError> {
        check_id("api_key_id", &self.api_key_id, true)?;
        RecordId::check("id", self.id.as_str())?;
        RecordId::check("record_id", self.record_id.as_str())?;
        if let Some(org) = &self.org {
            check_id("org", org, false)?;
        }
        if let Some(label) = &self.label {
            if label.trim().is_empty()
                || label.len() > MAX_LABEL_BYTES
                || label.chars().any(char::is_control)
            {
                return Err(UsageError::InvalidField {
                    field: "label".into(),
                    message: format!(
                        "must be 1 to {MAX_LABEL_BYTES} bytes without control characters (a word from your app's vocabulary, e.g. thumbs_up); never put the answer's text here"
                    ),
                });
            }
        }
        if self.score_milli > 1000 {
            return Err(UsageError::InvalidField {
                field: "score_milli".into(),
                message: format!("{} exceeds 1000", self.score_milli),
            });
        }
        check_id("sdk.name", &self.sdk.name, true)?;
        check_id("sdk.version", &self.sdk.version, true)?;
        check_id("sdk.language", &self.sdk.language, true)?;
        check_int("seq", self.seq)?;
        check_int("ts", self.ts)?;
        validate_tags(&self.tags)
    }

    /// The RFC 8785 canonical JSON (the bytes that are signed). Not the hot path: goes
    /// through `serde_json::Value` and [`canonical::canonicalize`].
    pub fn canonical_json(&self) -> Result<String, UsageError> {
        self.validate()?;
        let v = serde_json::to_value(self).map_err(|e| UsageError::InvalidField {
            field: "feedback".into(),
            message: e.to_string(),
        })?;
        canonical::canonicalize(&v).map_err(|e| UsageError::InvalidField {
            field: "feedback".into(),
            message: e.to_string(),
        })
    }

    /// The score as a fraction.
    pub fn score(&self) -> f64 {
        f64::from(self.score_milli) / 1000.0
    }
}

/// Whether a wire record (parsed JSON) is a feedback record.
pub fn is_feedback(v: &serde_json::Value) -> bool {
    v.get("kind").and_then(|k| k.as_str()) == Some("feedback")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> Identity {
        Identity {
            api_key_id: Some("k_app".into()),
            ..Default::default()
        }
    }

    fn input(score: f64) -> FeedbackInput {
        FeedbackInput {
            record_id: RecordId::new_v7().0,
            score,
            ..Default::default()
        }
    }

    #[test]
    fn builds_signs_and_round_trips() {
        let mut i = input(0.8);
        i.label = Some("thumbs_up".into());
        i.source = FeedbackSource::Evaluator;
        let rec = FeedbackRecord::build(
            i,
            &ident(),
            &SdkInfo::rust(),
            RecordId::new_v7(),
            7,
            1_765_000_000_000,
        )
        .unwrap();
        assert_eq!(rec.score_milli, 800);
        let c = rec.canonical_json().unwrap();
        assert!(c.starts_with("{\"api_key_id\":\"k_app\",\"id\":"), "{c}");
        assert!(
            c.contains("\"kind\":\"feedback\"")
                && c.contains("\"source\":\"evaluator\"")
                && c.contains("\"score_milli\":800"),
            "{c}"
        );
        let back: FeedbackRecord = serde_json::from_str(&c).unwrap();
        assert_eq!(back, rec);
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert!(is_feedback(&v));
    }

    #[test]
    fn bad_input_names_the_field() {
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            let e = FeedbackRecord::build(
                input(bad),
                &ident(),
                &SdkInfo::rust(),
                RecordId::new_v7(),
                1,
                1,
            )
            .unwrap_err();
            assert!(e.to_string().contains("`score`"), "{e}");
        }
        let mut i = input(1.0);
        i.record_id = "not-an-id".into();
        let e = FeedbackRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1, 1)
            .unwrap_err();
        assert!(
            e.to_string().contains("`record_id`") && e.to_string().contains("usage_record_id"),
            "{e}"
        );
        let mut i = input(1.0);
        i.label = Some("x".repeat(65));
        let e = FeedbackRecord::build(i, &ident(), &SdkInfo::rust(), RecordId::new_v7(), 1, 1)
            .unwrap_err();
        assert!(e.to_string().contains("`label`"), "{e}");
        assert!(
            FeedbackSource::parse("bot")
                .unwrap_err()
                .to_string()
                .contains("user, evaluator or implicit")
        );
    }

    #[test]
    fn rounds_to_thousandths() {
        assert_eq!(score_to_milli(0.0).unwrap(), 0);
        assert_eq!(score_to_milli(1.0).unwrap(), 1000);
        assert_eq!(score_to_milli(0.3335).unwrap(), 334);
    }
}
