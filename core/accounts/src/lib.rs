//! # gaterouter-accounts
//!
//! Enterprise accounts: the contract between the SDK and the collector for policies,
//! budgets and reservations (see `collector/ACCOUNTS.md` for the HTTP protocol).
//! Pure data and rules, no I/O; depends on `gaterouter-types`, `gaterouter-tokens` and
//! `gaterouter-pricing`. `gaterouter::accounts` re-exports it and adds the SDK's I/O side
//! (`policy_client`: fetch and cache the policy, reserve and settle; `request_auth`:
//! Ed25519-signed requests to the collector), which needs the usage signer and config.
//!
//! Why in the core: the collector resolves and enforces these rules as the authority,
//! and the SDK enforces the same rules before each call (so a denied call never reaches
//! a provider). Sharing one implementation means the two can never disagree about what
//! a glob or an inherited rule means.
//!
//! Map of the crate:
//!
//! - [`PolicyRules`]: what one level (org, department, project, group, user, key) sets.
//! - [`EffectiveRules`]: the rules that apply to one API key, resolved broad → narrow,
//!   each remembering the [`Level`] that set it (errors name it).
//! - [`BudgetStatus`] / [`Period`]: budgets and their calendar windows (UTC); the data
//!   lives in `gaterouter_types::budget` (errors carry it) and is re-exported here.
//! - [`EffectivePolicy`]: what `GET /v1/policy` returns; [`RoutingPolicy`] and
//!   [`SignedWeights`]: an org's learned routing and its signature check.
//! - [`ReservationRequest`] / [`ReservationResponse`] / [`SettleRequest`]: reserve the
//!   maximum cost before a call, settle the actual cost after it.
//! - [`enforce`]: the pure checks the SDK runs before a call (model permitted,
//!   `max_tokens`, maximum cost, hard budgets).

pub mod enforce;

use serde::{Deserialize, Serialize};

pub use gaterouter_types::budget::{
    BudgetStatus, Denial, Enforcement, Level, LevelKind, Metric, Period, civil_from_days,
    days_from_civil, fmt_usd, iso_utc,
};

pub use gaterouter_types::decision::Tier;

/// The names of the routing tiers a policy may allow ([`Tier::ALL`], lightest first).
pub const TIERS: &[&str] = Tier::NAMES;

/// The rules one level sets. Every field is optional: an unset field inherits from the
/// broader level. Narrower levels override broader ones field by field, except
/// `deny_models`, which accumulates (a deny set by the org cannot be lifted below it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyRules {
    /// Models that may be used, as globs over `provider/model` (`openai/*`,
    /// `anthropic/claude-*-4*`). Unset: all models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_models: Option<Vec<String>>,
    /// Models that may never be used (globs); accumulates down the tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_models: Option<Vec<String>>,
    /// Routing tiers `model: "auto"` may pick (`light`, `standard`, `heavy`; anything else
    /// is refused when the policy is parsed). Unset: all tiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_tiers: Option<Vec<Tier>>,
    /// Ceiling on `max_tokens` (completion) per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_request: Option<u64>,
    /// Only providers/models flagged `zero_retention` in the price catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_retention_only: Option<bool>,
}

impl PolicyRules {
    /// Check values that serde cannot: globs are non-empty, tiers are known.
    pub fn validate(&self, field_prefix: &str) -> Result<(), String> {
        for (name, list) in [
            ("allow_models", &self.allow_models),
            ("deny_models", &self.deny_models),
        ] {
            for g in list.iter().flatten() {
                if g.trim().is_empty() {
                    return Err(format!(
                        "{field_prefix}{name}: empty pattern; use globs such as `openai/*`"
                    ));
                }
            }
        }
        if self.max_tokens_per_request == Some(0) {
            return Err(format!(
                "{field_prefix}max_tokens_per_request: must be at least 1 (remove it for no limit)"
            ));
        }
        Ok(())
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == PolicyRules::default()
    }
}

/// A value together with the level that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it was set.
    pub level: Level,
}

/// The rules in force for one key, after inheritance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct EffectiveRules {
    /// Allow-list from the narrowest level that sets one.
    pub allow_models: Option<Sourced<Vec<String>>>,
    /// Every deny pattern from every level.
    pub deny_models: Vec<Sourced<String>>,
    /// Allowed tiers from the narrowest level that sets them.
    pub allowed_tiers: Option<Sourced<Vec<Tier>>>,
    /// Max tokens per request from the narrowest level that sets it.
    pub max_tokens_per_request: Option<Sourced<u64>>,
    /// Zero-retention requirement from the narrowest level that sets it.
    pub zero_retention_only: Option<Sourced<bool>>,
}

impl EffectiveRules {
    /// Resolve the rules of `levels`, given broadest first (org, department, project,
    /// group, user, key).
    pub fn resolve<'a>(
        levels: impl IntoIterator<Item = (&'a Level, &'a PolicyRules)>,
    ) -> EffectiveRules {
        let mut out = EffectiveRules::default();
        for (level, rules) in levels {
            if let Some(v) = &rules.allow_models {
                out.allow_models = Some(Sourced {
                    value: v.clone(),
                    level: level.clone(),
                });
            }
            for d in rules.deny_models.iter().flatten() {
                out.deny_models.push(Sourced {
                    value: d.clone(),
                    level: level.clone(),
                });
            }
            if let Some(v) = &rules.allowed_tiers {
                out.allowed_tiers = Some(Sourced {
                    value: v.clone(),
                    level: level.clone(),
                });
            }
            if let Some(v) = rules.max_tokens_per_request {
                out.max_tokens_per_request = Some(Sourced {
                    value: v,
                    level: level.clone(),
                });
            }
            if let Some(v) = rules.zero_retention_only {
                out.zero_retention_only = Some(Sourced {
                    value: v,
                    level: level.clone(),
                });
            }
        }
        out
    }

    /// May `model` (`provider/model`) be used? `zero_retention` is the catalog's flag for
    /// it (false when the catalog does not know the model).
    pub fn check_model(&self, model: &str, zero_retention: bool) -> Result<(), Denial> {
        if let Some(d) = self
            .deny_models
            .iter()
            .find(|d| glob_match(&d.value, model))
        {
            return Err(Denial {
                rule: "deny_models".into(),
                level: d.level.clone(),
                message: format!(
                    "model `{model}` is denied by pattern `{}` set at {}",
                    d.value, d.level
                ),
            });
        }
        if let Some(a) = &self.allow_models {
            if !a.value.iter().any(|g| glob_match(g, model)) {
                return Err(Denial {
                    rule: "allow_models".into(),
                    level: a.level.clone(),
                    message: format!(
                        "model `{model}` is not in the allowed models {:?} set at {}",
                        a.value, a.level
                    ),
                });
            }
        }
        if let Some(z) = &self.zero_retention_only {
            if z.value && !zero_retention {
                return Err(Denial {
                    rule: "zero_retention_only".into(),
                    level: z.level.clone(),
                    message: format!(
                        "model `{model}` is not flagged zero-retention in the price catalog, and {} allows only zero-retention models",
                        z.level
                    ),
                });
            }
        }
        Ok(())
    }

    /// May `model: "auto"` pick `tier`?
    pub fn check_tier(&self, tier: Tier) -> Result<(), Denial> {
        match &self.allowed_tiers {
            Some(t) if !t.value.contains(&tier) => Err(Denial {
                rule: "allowed_tiers".into(),
                level: t.level.clone(),
                message: format!(
                    "routing tier `{tier}` is not in the allowed tiers [{}] set at {}",
                    t.value
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    t.level
                ),
            }),
            _ => Ok(()),
        }
    }

    /// May a request ask for `max_tokens` completion tokens (None: not stated)?
    pub fn check_max_tokens(&self, max_tokens: Option<u64>) -> Result<(), Denial> {
        let Some(limit) = &self.max_tokens_per_request else {
            return Ok(());
        };
        match max_tokens {
            Some(n) if n <= limit.value => Ok(()),
            Some(n) => Err(Denial {
                rule: "max_tokens_per_request".into(),
                level: limit.level.clone(),
                message: format!(
                    "max_tokens {n} is above the limit of {} per request set at {}; lower max_tokens",
                    limit.value, limit.level
                ),
            }),
            None => Ok(()),
        }
    }
}

/// Glob match over `provider/model`: `*` matches any run of characters (including `/`),
/// `?` one character; everything else literally, case-sensitively. The matching is
/// `wildmatch`'s (the same two wildcards, no character classes or escapes).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(text)
}

/// Scope of an API key in the organization tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct KeyScope {
    /// Org id.
    pub org: String,
    /// Department id.
    pub department: Option<String>,
    /// Project id.
    pub project: Option<String>,
    /// Group id.
    pub group: Option<String>,
    /// User id.
    pub user: Option<String>,
}

/// What `GET /v1/policy` answers: everything the SDK needs to enforce the rules and
/// budgets of its key before each call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct EffectivePolicy {
    /// The key this policy is for.
    pub api_key_id: String,
    /// The key's place in the tree.
    pub scope: KeyScope,
    /// When the collector computed it (unix ms).
    pub issued_at_ms: u64,
    /// How long the SDK may use it without asking again.
    pub ttl_ms: u64,
    /// Rules after inheritance.
    pub rules: EffectiveRules,
    /// Every budget that applies to the key (its own and every level above it).
    pub budgets: Vec<BudgetStatus>,
    /// Routing that learns from the organization's outcomes: present when the org turned
    /// learning on or has learned weights (absent from collectors before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingPolicy>,
}

/// Most exploration an organization may set: half of its `auto` calls.
pub const MAX_EXPLORE_PERMILLE: u32 = 500;
/// Most shadow sampling an organization may set: every plain `auto` call.
pub const MAX_SHADOW_PERMILLE: u32 = 1000;

/// How `model: "auto"` learns from the organization's own outcomes (issue 20; protocol
/// in `collector/ACCOUNTS.md`, "Routing that learns").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct RoutingPolicy {
    /// `auto` records carry the router's features (structural values and salted hashed
    /// word 1-2-gram buckets, never text), its propensity and whether it explored.
    pub learning: bool,
    /// Share of `auto` calls whose tier is drawn at random (uniformly among the tiers the
    /// rules allow), in thousandths, `0..=500`: what lets the learner see the outcome of
    /// the tier the router would not have picked.
    pub explore_permille: u32,
    /// Shadow sampling: share of plain (not streamed) `auto` calls also sent to the other
    /// arm (the heavy tier for a lighter one, a lighter tier for heavy), in thousandths,
    /// `0..=1000`, so that the app's evaluator rates both answers. Each shadow call is
    /// admitted, budgeted and recorded like any call (its record names the call it
    /// shadows). Absent: 0 (what collectors before it send).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shadow_permille: u32,
    /// The organization's term-hash salt, 16 hex digits.
    pub salt: String,
    /// Hashed term buckets `2^bits` (1..=20).
    pub bits: u8,
    /// The organization's learned weights, signed by the collector; absent: the client's
    /// own weights (builtin or `[routing] scorer_weights_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<SignedWeights>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RoutingPolicy {
    /// The salt as a number; `Err` names the field.
    pub fn salt_u64(&self) -> Result<u64, String> {
        if self.salt.len() != 16 {
            return Err(format!(
                "routing.salt: `{}` is not 16 hex digits",
                self.salt
            ));
        }
        u64::from_str_radix(&self.salt, 16)
            .map_err(|_| format!("routing.salt: `{}` is not 16 hex digits", self.salt))
    }

    /// Check ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.explore_permille > MAX_EXPLORE_PERMILLE {
            return Err(format!(
                "routing.explore_permille: {} is above {MAX_EXPLORE_PERMILLE}",
                self.explore_permille
            ));
        }
        if self.shadow_permille > MAX_SHADOW_PERMILLE {
            return Err(format!(
                "routing.shadow_permille: {} is above {MAX_SHADOW_PERMILLE}",
                self.shadow_permille
            ));
        }
        if !(1..=20).contains(&self.bits) {
            return Err(format!("routing.bits: {} is not in 1..=20", self.bits));
        }
        self.salt_u64().map(|_| ())
    }
}

/// Router weights the collector learned for an organization, signed with the collector's
/// Ed25519 weights key so that an SDK can check them (against a pinned key, `[policy]
/// weights_public_key`, or at least their integrity) before routing with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct SignedWeights {
    /// The weights' fingerprint (`Weights::fingerprint`): what records and `explain` show.
    pub version: String,
    /// The weights file, as signed (JSON text).
    pub weights_json: String,
    /// When the collector promoted them (unix ms).
    pub issued_at_ms: u64,
    /// The collector's weights public key, standard base64 of the 32 raw bytes.
    pub public_key: String,
    /// Ed25519 signature of [`SignedWeights::signed_bytes`], standard base64.
    pub signature: String,
}

impl SignedWeights {
    /// The bytes the signature covers: a domain tag, the org, the version, the time and
    /// the file, so a signature cannot be replayed for another org or another message.
    pub fn signed_bytes(
        org: &str,
        version: &str,
        issued_at_ms: u64,
        weights_json: &str,
    ) -> Vec<u8> {
        format!("gaterouter-weights-v1\n{org}\n{version}\n{issued_at_ms}\n{weights_json}")
            .into_bytes()
    }

    /// Check the signature for `org`; with `pinned` (standard base64 of the collector's
    /// public key), also that this key signed. `Err` says what is wrong.
    pub fn verify(&self, org: &str, pinned: Option<&str>) -> Result<(), String> {
        use base64::Engine as _;
        use ed25519_dalek::{Signature, VerifyingKey};
        if let Some(p) = pinned {
            if p.trim() != self.public_key {
                return Err(format!(
                    "weights {} are signed by key {} but [policy] weights_public_key pins {}",
                    self.version,
                    self.public_key,
                    p.trim()
                ));
            }
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let pk: [u8; 32] = b64
            .decode(&self.public_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| "routing.weights.public_key is not 32 bytes of base64".to_owned())?;
        let pk = VerifyingKey::from_bytes(&pk)
            .map_err(|e| format!("routing.weights.public_key: {e}"))?;
        let sig: [u8; 64] = b64
            .decode(&self.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| "routing.weights.signature is not 64 bytes of base64".to_owned())?;
        pk.verify_strict(
            &Self::signed_bytes(org, &self.version, self.issued_at_ms, &self.weights_json),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| format!("the signature of weights {} does not verify", self.version))
    }
}

impl EffectivePolicy {
    /// Does any hard budget apply (then calls need a reservation)?
    pub fn has_hard_budget(&self) -> bool {
        self.budgets
            .iter()
            .any(|b| b.enforcement == Enforcement::Hard)
    }

    /// The first hard budget that `usd_micros` / `tokens` more would exceed.
    pub fn exceeded_budget(&self, usd_micros: u64, tokens: u64) -> Option<&BudgetStatus> {
        self.budgets.iter().find(|b| {
            b.would_exceed(match b.metric {
                Metric::Usd => usd_micros,
                Metric::Tokens => tokens,
            })
        })
    }
}

/// `POST /v1/reservations`: hold the maximum cost of one call against every budget of
/// the key before the call. Idempotent on `reservation_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationRequest {
    /// Client-generated UUID (retries reuse it).
    pub reservation_id: String,
    /// `provider/model` the call will use (checked against the rules).
    pub model: String,
    /// Maximum cost of the call in micro-dollars (prompt + `max_tokens` of output).
    pub amount_micros: u64,
    /// Maximum tokens of the call (prompt + `max_tokens`).
    pub amount_tokens: u64,
    /// How long to hold it if never settled (default 120 000, at most 600 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// Answer to a granted reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct ReservationResponse {
    /// The reservation.
    pub reservation_id: String,
    /// When it lapses if not settled.
    pub expires_at_ms: u64,
    /// Budgets after the hold.
    pub budgets: Vec<BudgetStatus>,
    /// Soft-budget thresholds crossed (human messages).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `POST /v1/reservations/{id}/settle`: the actual cost once the call ended. The hold
/// shrinks to the actual amount and lasts until the usage record `record_id` is
/// ingested (then the record itself counts), so the spend is never missing nor counted
/// twice. `actual_micros = 0` with no record releases it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    /// Actual cost in micro-dollars.
    pub actual_micros: u64,
    /// Actual total tokens.
    pub actual_tokens: u64,
    /// Id of the usage record the call produced, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

/// Error body of the accounts endpoints, inside `{"error": ...}`. `code` is
/// `permission_denied` (403, with `rule` and `level`) or `budget_exceeded` (402, with
/// `budget`), or a generic code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountsErrorBody {
    /// Stable code.
    pub code: String,
    /// Human message naming the rule or budget.
    pub message: String,
    /// Rule name for `permission_denied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Level that set the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Budget for `budget_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("openai/*", "openai/gpt-4o"));
        assert!(!glob_match("openai/*", "anthropic/claude-sonnet-4-5"));
        assert!(glob_match("*", "x/y"));
        assert!(glob_match(
            "anthropic/claude-*-4*",
            "anthropic/claude-sonnet-4-5"
        ));
        assert!(glob_match("openai/gpt-4?", "openai/gpt-4o"));
        assert!(!glob_match("openai/gpt-4?", "openai/gpt-4o-mini"));
        assert!(glob_match("*mini", "openai/gpt-4o-mini"));
        assert!(!glob_match("", "a"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        // Case-sensitive; `?` is one character, also a multi-byte one and `/`.
        assert!(!glob_match("OpenAI/*", "openai/gpt-4o"));
        assert!(glob_match("x/?", "x/é"));
        assert!(glob_match("openai?gpt-4o", "openai/gpt-4o"));
        assert!(!glob_match("a*b", "ab/c"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn inheritance_narrow_overrides_and_denies_accumulate() {
        let org = Level::new(LevelKind::Org, "acme");
        let dep = Level::new(LevelKind::Department, "eng");
        let key = Level::new(LevelKind::Key, "k1");
        let r_org = PolicyRules {
            allow_models: Some(vec!["openai/*".into(), "anthropic/*".into()]),
            deny_models: Some(vec!["openai/o1*".into()]),
            max_tokens_per_request: Some(8000),
            ..Default::default()
        };
        let r_dep = PolicyRules {
            allow_models: Some(vec!["openai/*".into()]),
            max_tokens_per_request: Some(2000),
            ..Default::default()
        };
        let r_key = PolicyRules {
            deny_models: Some(vec!["openai/gpt-4o".into()]),
            ..Default::default()
        };
        let eff = EffectiveRules::resolve([(&org, &r_org), (&dep, &r_dep), (&key, &r_key)]);
        assert!(eff.check_model("openai/gpt-4o-mini", false).is_ok());
        let d = eff
            .check_model("anthropic/claude-sonnet-4-5", false)
            .unwrap_err();
        assert_eq!(
            (d.rule.as_str(), d.level.clone()),
            ("allow_models", dep.clone())
        );
        let d = eff.check_model("openai/o1-mini", false).unwrap_err();
        assert_eq!((d.rule.as_str(), d.level.clone()), ("deny_models", org));
        let d = eff.check_model("openai/gpt-4o", false).unwrap_err();
        assert_eq!(d.level, key);
        assert!(eff.check_max_tokens(Some(2000)).is_ok());
        let d = eff.check_max_tokens(Some(2001)).unwrap_err();
        assert!(d.message.contains("department:eng"), "{}", d.message);
    }

    #[test]
    fn zero_retention_and_tiers() {
        let dep = Level::new(LevelKind::Department, "legal");
        let r = PolicyRules {
            zero_retention_only: Some(true),
            allowed_tiers: Some(vec![Tier::Light]),
            ..Default::default()
        };
        let eff = EffectiveRules::resolve([(&dep, &r)]);
        assert_eq!(
            eff.check_model("openai/gpt-4o", false).unwrap_err().rule,
            "zero_retention_only"
        );
        assert!(eff.check_model("openai/gpt-4o", true).is_ok());
        assert!(eff.check_tier(Tier::Light).is_ok());
        let d = eff.check_tier(Tier::Heavy).unwrap_err();
        assert_eq!(d.rule, "allowed_tiers");
        assert!(
            d.message.contains("[light] set at department:legal"),
            "{}",
            d.message
        );
        // An unknown tier is refused when the policy is read, naming the value and the choices.
        let e = serde_json::from_str::<PolicyRules>(r#"{"allowed_tiers": ["huge"]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("huge") && e.contains("heavy"), "{e}");
    }

    #[test]
    fn periods_are_calendar_windows() {
        // 2026-11-25T06:12:34.5Z
        let now = days_from_civil(2026, 11, 25) as u64 * 86_400_000
            + 6 * 3_600_000
            + 12 * 60_000
            + 34_500;
        let (s, e) = Period::Month.window(now);
        assert_eq!(
            (iso_utc(s), iso_utc(e)),
            ("2026-11-01T00:00:00Z".into(), "2026-12-01T00:00:00Z".into())
        );
        let (s, e) = Period::Day.window(now);
        assert_eq!(
            (iso_utc(s), iso_utc(e)),
            ("2026-11-25T00:00:00Z".into(), "2026-11-26T00:00:00Z".into())
        );
        let (s, e) = Period::Hour.window(now);
        assert_eq!(
            (iso_utc(s), iso_utc(e)),
            ("2026-11-25T06:00:00Z".into(), "2026-11-25T07:00:00Z".into())
        );
        let dec = days_from_civil(2026, 12, 31) as u64 * 86_400_000;
        assert_eq!(iso_utc(Period::Month.window(dec).1), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn level_strings_round_trip_and_budget_text() {
        let l: Level = "project:p-1".parse().unwrap();
        assert_eq!(l.to_string(), "project:p-1");
        assert!("team:x".parse::<Level>().is_err());
        assert_eq!(serde_json::to_string(&l).unwrap(), "\"project:p-1\"");
        let b = BudgetStatus {
            id: "b1".into(),
            level: l,
            metric: Metric::Usd,
            period: Period::Month,
            limit: 5_000_000,
            used: 4_000_000,
            reserved: 500_000,
            remaining: 500_000,
            period_start_ms: 0,
            resets_at_ms: 0,
            enforcement: Enforcement::Hard,
            notify_at: vec![80],
        };
        assert!(b.would_exceed(500_001) && !b.would_exceed(500_000));
        let text = b.describe();
        assert!(
            text.contains("month spend budget `b1`")
                && text.contains("$0.500000 left")
                && text.contains("project:p-1"),
            "{text}"
        );
    }
}
