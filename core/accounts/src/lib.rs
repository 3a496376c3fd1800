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
//! - `rules`: [`PolicyRules`], what one level (org, department, project, group, user,
//!   key) sets;
//!   [`EffectiveRules`], the rules that apply to one API key, resolved broad → narrow,
//!   each remembering the [`Level`] that set it (errors name it); [`glob_match`].
//! - [`BudgetStatus`] / [`Period`]: budgets and their calendar windows (UTC); the data
//!   lives in `gaterouter_types::budget` (errors carry it) and is re-exported here.
//! - `policy`: [`EffectivePolicy`], what `GET /v1/policy` returns; [`RoutingPolicy`] and
//!   [`SignedWeights`]: an org's learned routing and its signature check.
//! - `protocol`: [`ReservationRequest`] / [`ReservationResponse`] / [`SettleRequest`]: reserve the
//!   maximum cost before a call, settle the actual cost after it.
//! - [`enforce`]: the pure checks the SDK runs before a call (model permitted,
//!   `max_tokens`, maximum cost, hard budgets).

pub mod enforce;
mod policy;
mod protocol;
mod rules;

pub use policy::{
    EffectivePolicy, KeyScope, MAX_EXPLORE_PERMILLE, MAX_SHADOW_PERMILLE, RoutingPolicy,
    SignedWeights,
};
pub use protocol::{
    AccountsErrorBody, BUDGET_EXCEEDED, PERMISSION_DENIED, ReservationRequest, ReservationResponse,
    SettleRequest,
};
pub use rules::{EffectiveRules, PolicyRules, Sourced, glob_match};

pub use gaterouter_types::budget::{
    BudgetStatus, Denial, Enforcement, Level, LevelKind, Metric, Period, civil_from_days,
    days_from_civil, fmt_usd, iso_utc,
};

pub use gaterouter_types::decision::Tier;

/// The names of the routing tiers a policy may allow ([`Tier::ALL`], lightest first).
pub const TIERS: &[&str] = Tier::NAMES;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
