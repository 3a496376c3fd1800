//! What `GET /v1/policy` answers for a key ([`EffectivePolicy`]): its scope, effective
//! rules and budgets, and its org's routing ([`RoutingPolicy`], with the learned
//! [`SignedWeights`] and their signature check).

use serde::{Deserialize, Serialize};

use crate::{BudgetStatus, EffectiveRules, Enforcement, Metric};

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
