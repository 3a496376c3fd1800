//! The one error type apps see: a variant per public [`gaterouter::ErrorKind`] plus `Other`.
//!
//! Kotlin names it `GateRouterException` (uniffi turns `...Error` into `...Exception`),
//! Swift `GateRouterError`. Every variant carries the same fields so an app can log or
//! show any error the same way and `when`/`switch` only on the kind it handles.
//!
//! The human text is in `detail`, not `message`: a field named `message` would clash
//! with `Throwable.message` in the generated Kotlin (which builds `message` from the
//! fields).

use gaterouter::{Error, ErrorKind};

/// A budget named by a `Budget` error. Money in integer micro-dollars (`metric` `usd`) or
/// tokens (`tokens`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct BudgetInfo {
    /// Budget id.
    pub id: String,
    /// Where it is attached (`department:eng`).
    pub level: String,
    /// `usd` or `tokens`.
    pub metric: String,
    /// `hour`, `day` or `month` (UTC calendar windows).
    pub period: String,
    /// Limit.
    pub limit: u64,
    /// Used by stored records in this window.
    pub used: u64,
    /// Held by calls in flight.
    pub reserved: u64,
    /// What is left.
    pub remaining: u64,
    /// Window start (unix ms).
    pub period_start_ms: u64,
    /// When it resets (unix ms).
    pub resets_at_ms: u64,
    /// `hard` or `soft`.
    pub enforcement: String,
    /// Percentages of the limit at which the collector warns (soft budgets).
    pub notify_at: Vec<u8>,
}

impl From<&gaterouter::accounts::BudgetStatus> for BudgetInfo {
    fn from(b: &gaterouter::accounts::BudgetStatus) -> Self {
        BudgetInfo {
            id: b.id.clone(),
            level: b.level.to_string(),
            metric: b.metric.as_str().to_owned(),
            period: b.period.as_str().to_owned(),
            limit: b.limit,
            used: b.used,
            reserved: b.reserved,
            remaining: b.remaining,
            period_start_ms: b.period_start_ms,
            resets_at_ms: b.resets_at_ms,
            enforcement: b.enforcement.as_str().to_owned(),
            notify_at: b.notify_at.clone(),
        }
    }
}

/// A GateRouter failure. Match on the variant to decide what to do (`RateLimited`:
/// wait `retry_after_ms`; `Config`: fix the config; `Auth`: fix the key...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum GateRouterError {
    /// Bad configuration: a file, field or environment variable must be fixed.
    #[error("{detail}")]
    Config {
        /// What is wrong, where, and the fix.
        detail: String,
        /// Stable code (`CONFIG`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// The provider refused the credentials.
    #[error("{detail}")]
    Auth {
        /// Human-readable description.
        detail: String,
        /// Stable code (`AUTH`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// The provider asked to slow down; wait `retry_after_ms` when set.
    #[error("{detail}")]
    RateLimited {
        /// Human-readable description.
        detail: String,
        /// Stable code (`RATE_LIMITED`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// The provider is down, overloaded or unreachable (also: the device is offline).
    #[error("{detail}")]
    ProviderUnavailable {
        /// Human-readable description.
        detail: String,
        /// Stable code (`PROVIDER_UNAVAILABLE`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// The request is wrong; `field` names the field. Never retried.
    #[error("{detail}")]
    InvalidRequest {
        /// What is wrong and how to fix it.
        detail: String,
        /// Stable code (`INVALID_REQUEST`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, e.g. `messages[2].tool_call_id`.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// The prompt plus `max_tokens` exceed the model's context window.
    #[error("{detail}")]
    ContextLengthExceeded {
        /// Human-readable description.
        detail: String,
        /// Stable code (`CONTEXT_LENGTH_EXCEEDED`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// No answer within the configured timeout.
    #[error("{detail}")]
    Timeout {
        /// Human-readable description (which timeout fired).
        detail: String,
        /// Stable code (`TIMEOUT`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// A stream ended before the provider said it was complete.
    #[error("{detail}")]
    StreamInterrupted {
        /// Human-readable description.
        detail: String,
        /// Stable code (`STREAM_INTERRUPTED`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// The provider answered, but the answer cannot be used.
    #[error("{detail}")]
    InvalidResponse {
        /// Human-readable description.
        detail: String,
        /// Stable code (`INVALID_RESPONSE`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// A budget or quota would be exceeded.
    #[error("{detail}")]
    Budget {
        /// Which budget, what is left and when it resets.
        detail: String,
        /// Stable code (`BUDGET_EXCEEDED`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// The caller may not use this model, provider or tier.
    #[error("{detail}")]
    Permission {
        /// Which rule, set at which level.
        detail: String,
        /// Stable code (`PERMISSION_DENIED`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// The call was cancelled (its handle's `cancel()`, or the task awaiting it).
    #[error("{detail}")]
    Cancelled {
        /// Human-readable description.
        detail: String,
        /// Stable code (`CANCELLED`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// `close()` was called before or during this call.
    #[error("{detail}")]
    ClientClosed {
        /// Human-readable description.
        detail: String,
        /// Stable code (`CLIENT_CLOSED`).
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
    /// A kind newer than this binding, or a failure of the binding itself (the runtime
    /// could not start). `code` still carries the stable code.
    #[error("{detail}")]
    Other {
        /// Human-readable description.
        detail: String,
        /// Stable code of the kind.
        code: String,
        /// Provider, when the error came from one.
        provider: Option<String>,
        /// HTTP status, when a provider answered.
        status: Option<u16>,
        /// How long the provider asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
        /// The provider's own error text, when a provider answered.
        provider_message: Option<String>,
        /// The offending request field, when known.
        field: Option<String>,
        /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
        rule: Option<String>,
        /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
        level: Option<String>,
        /// `Budget`: the budget, what is left and when it resets.
        budget: Option<BudgetInfo>,
    },
}

impl GateRouterError {
    /// A binding-side failure (not from the core): `Other` with code `INTERNAL`.
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        GateRouterError::Other {
            detail: detail.into(),
            code: "INTERNAL".to_owned(),
            provider: None,
            status: None,
            retry_after_ms: None,
            provider_message: None,
            field: None,
            rule: None,
            level: None,
            budget: None,
        }
    }

    /// An invalid-request error raised while converting a binding record (e.g. a
    /// `parameters_json` that is not JSON), named like the core names its fields.
    pub(crate) fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::InvalidRequest {
            field: Some(field.into()),
            message: detail.into(),
        }
        .into()
    }

    /// The stable code (`RATE_LIMITED`, ...), whatever the variant.
    pub fn code(&self) -> &str {
        match self {
            GateRouterError::Config { code, .. }
            | GateRouterError::Auth { code, .. }
            | GateRouterError::RateLimited { code, .. }
            | GateRouterError::ProviderUnavailable { code, .. }
            | GateRouterError::InvalidRequest { code, .. }
            | GateRouterError::ContextLengthExceeded { code, .. }
            | GateRouterError::Timeout { code, .. }
            | GateRouterError::StreamInterrupted { code, .. }
            | GateRouterError::InvalidResponse { code, .. }
            | GateRouterError::Budget { code, .. }
            | GateRouterError::Permission { code, .. }
            | GateRouterError::Cancelled { code, .. }
            | GateRouterError::ClientClosed { code, .. }
            | GateRouterError::Other { code, .. } => code,
        }
    }
}

impl From<Error> for GateRouterError {
    /// From the core's [`gaterouter::ErrorInfo`], field for field.
    fn from(e: Error) -> Self {
        let i = e.info();
        let (detail, code, provider, status, retry_after_ms, provider_message, field, rule, level) = (
            i.message,
            i.code.to_owned(),
            i.provider,
            i.status,
            i.retry_after_ms,
            i.provider_message,
            i.field,
            i.rule,
            i.level,
        );
        let budget = i.budget.as_ref().map(BudgetInfo::from);
        macro_rules! variant {
            ($v:ident) => {
                GateRouterError::$v {
                    detail,
                    code,
                    provider,
                    status,
                    retry_after_ms,
                    provider_message,
                    field,
                    rule,
                    level,
                    budget,
                }
            };
        }
        match i.kind {
            ErrorKind::Config => variant!(Config),
            ErrorKind::Auth => variant!(Auth),
            ErrorKind::RateLimited => variant!(RateLimited),
            ErrorKind::ProviderUnavailable => variant!(ProviderUnavailable),
            ErrorKind::InvalidRequest => variant!(InvalidRequest),
            ErrorKind::ContextLengthExceeded => variant!(ContextLengthExceeded),
            ErrorKind::Timeout => variant!(Timeout),
            ErrorKind::StreamInterrupted => variant!(StreamInterrupted),
            ErrorKind::InvalidResponse => variant!(InvalidResponse),
            ErrorKind::Budget => variant!(Budget),
            ErrorKind::Permission => variant!(Permission),
            ErrorKind::Cancelled => variant!(Cancelled),
            ErrorKind::ClientClosed => variant!(ClientClosed),
            // `ErrorKind` is non-exhaustive: a kind added to the core later still
            // reaches the app, with its code, until this binding grows a variant.
            _ => variant!(Other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rate_limit_keeps_provider_status_and_wait() {
        let e: GateRouterError = Error::RateLimited {
            provider: "openai".into(),
            retry_after: Some(Duration::from_millis(2500)),
            message: "slow down".into(),
        }
        .into();
        match e {
            GateRouterError::RateLimited {
                code,
                provider,
                status,
                retry_after_ms,
                provider_message,
                detail,
                ..
            } => {
                assert_eq!(code, "RATE_LIMITED");
                assert_eq!(provider.as_deref(), Some("openai"));
                assert_eq!(status, Some(429));
                assert_eq!(retry_after_ms, Some(2500));
                assert_eq!(provider_message.as_deref(), Some("slow down"));
                assert!(detail.contains("slow down"), "{detail}");
            }
            other => panic!("wrong variant: {other:?}"),
        }
    }

    #[test]
    fn invalid_request_names_the_field() {
        let e: GateRouterError = Error::InvalidRequest {
            field: Some("messages".into()),
            message: "messages is empty".into(),
        }
        .into();
        assert!(
            matches!(&e, GateRouterError::InvalidRequest { field: Some(f), .. } if f == "messages"),
            "{e:?}"
        );
        assert_eq!(e.code(), "INVALID_REQUEST");
        assert!(e.to_string().contains("messages is empty"));
    }

    #[test]
    fn every_kind_maps_to_its_own_variant() {
        let cases: Vec<(Error, &str)> = vec![
            (Error::config("x", "y", "z"), "CONFIG"),
            (
                Error::Auth {
                    provider: "p".into(),
                    status: 401,
                    message: "m".into(),
                },
                "AUTH",
            ),
            (
                Error::ProviderUnavailable {
                    provider: "p".into(),
                    status: Some(503),
                    message: "m".into(),
                },
                "PROVIDER_UNAVAILABLE",
            ),
            (
                Error::Rejected {
                    provider: "p".into(),
                    status: 400,
                    message: "m".into(),
                },
                "INVALID_REQUEST",
            ),
            (
                Error::ContextLengthExceeded {
                    provider: "p".into(),
                    message: "m".into(),
                },
                "CONTEXT_LENGTH_EXCEEDED",
            ),
            (
                Error::Timeout {
                    provider: "p".into(),
                    after: Duration::from_secs(1),
                    what: "request",
                },
                "TIMEOUT",
            ),
            (
                Error::StreamInterrupted {
                    provider: "p".into(),
                    message: "m".into(),
                },
                "STREAM_INTERRUPTED",
            ),
            (
                Error::invalid_response("p", Some(200), "m"),
                "INVALID_RESPONSE",
            ),
            (
                Error::budget(
                    gaterouter::accounts::BudgetStatus {
                        id: "b".into(),
                        level: gaterouter::accounts::Level::new(
                            gaterouter::accounts::LevelKind::Org,
                            "o",
                        ),
                        metric: gaterouter::accounts::Metric::Usd,
                        period: gaterouter::accounts::Period::Day,
                        limit: 1,
                        used: 1,
                        reserved: 0,
                        remaining: 0,
                        period_start_ms: 0,
                        resets_at_ms: 0,
                        enforcement: gaterouter::accounts::Enforcement::Hard,
                        notify_at: vec![],
                    },
                    None,
                ),
                "BUDGET_EXCEEDED",
            ),
            (
                Error::Permission {
                    rule: "models".into(),
                    level: None,
                    message: "m".into(),
                },
                "PERMISSION_DENIED",
            ),
        ];
        for (core, code) in cases {
            let e: GateRouterError = core.into();
            assert_eq!(e.code(), code);
            assert!(
                !matches!(e, GateRouterError::Other { .. }),
                "{code} fell through to Other"
            );
        }
    }

    #[test]
    fn policy_errors_carry_rule_level_and_budget() {
        use gaterouter::accounts::{
            BudgetStatus, Denial, Enforcement, Level, LevelKind, Metric, Period,
        };
        let denial = Denial {
            rule: "deny_models".into(),
            level: Level::new(LevelKind::Department, "eng"),
            message: "no".into(),
        };
        match GateRouterError::from(Error::permission(denial)) {
            GateRouterError::Permission {
                rule,
                level,
                budget,
                ..
            } => {
                assert_eq!(
                    (rule.as_deref(), level.as_deref(), budget),
                    (Some("deny_models"), Some("department:eng"), None)
                );
            }
            other => panic!("{other:?}"),
        }
        let status = BudgetStatus {
            id: "b1".into(),
            level: Level::new(LevelKind::Key, "k"),
            metric: Metric::Tokens,
            period: Period::Hour,
            limit: 100,
            used: 90,
            reserved: 5,
            remaining: 5,
            period_start_ms: 1,
            resets_at_ms: 2,
            enforcement: Enforcement::Hard,
            notify_at: vec![80],
        };
        match GateRouterError::from(Error::budget(status, None)) {
            GateRouterError::Budget {
                rule,
                level,
                budget: Some(b),
                ..
            } => {
                assert_eq!((rule, level.as_deref()), (None, Some("key:k")));
                assert_eq!(
                    (b.metric.as_str(), b.period.as_str(), b.enforcement.as_str()),
                    ("tokens", "hour", "hard")
                );
                assert_eq!((b.limit, b.remaining, b.resets_at_ms), (100, 5, 2));
            }
            other => panic!("{other:?}"),
        }
    }
}
