//! The reservation protocol's bodies (`collector/ACCOUNTS.md`): reserve a call's maximum
//! cost before it ([`ReservationRequest`] / [`ReservationResponse`]), settle the actual
//! cost after it ([`SettleRequest`]), and the collector's error body ([`AccountsErrorBody`]).

use serde::{Deserialize, Serialize};

use crate::{BudgetStatus, Denial, Level, Metric, fmt_usd};

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

/// [`AccountsErrorBody::code`] of a refusal by a policy rule (HTTP 403).
pub const PERMISSION_DENIED: &str = "permission_denied";
/// [`AccountsErrorBody::code`] of a refusal by a hard budget (HTTP 402).
pub const BUDGET_EXCEEDED: &str = "budget_exceeded";

impl AccountsErrorBody {
    /// A policy rule's refusal: the rule, the level that set it and its message.
    pub fn denied(d: Denial) -> Self {
        AccountsErrorBody {
            code: PERMISSION_DENIED.into(),
            message: d.message,
            rule: Some(d.rule),
            level: Some(d.level),
            budget: None,
        }
    }

    /// A hard budget's refusal of a call that may cost up to `amount` (micro-dollars or
    /// tokens, by the budget's metric): the budget, its period, what is left and when it
    /// resets.
    pub fn budget_exceeded(b: BudgetStatus, amount: u64) -> Self {
        let need = match b.metric {
            Metric::Usd => fmt_usd(amount),
            Metric::Tokens => format!("{amount} tokens"),
        };
        AccountsErrorBody {
            code: BUDGET_EXCEEDED.into(),
            message: format!("{}; this call may cost up to {need}", b.describe()),
            rule: None,
            level: Some(b.level.clone()),
            budget: Some(b),
        }
    }
}
