//! The one error type apps see: a variant per public [`gaterouter::ErrorKind`] plus `Other`,
//! each carrying the same [`ErrorInfo`] record (the core's `gaterouter::ErrorInfo`, field
//! for field).
//!
//! Kotlin names it `GateRouterException` (uniffi turns `...Error` into `...Exception`),
//! Swift `GateRouterError`. An app `when`/`switch`es on the kind it handles and reads the
//! rest from `info` (or from the `info()` method on any error, without matching).
//!
//! The human text is `info.detail`, not `message`: `Throwable.message` is Kotlin's own.

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
        // Every field by name, as for the error record.
        let gaterouter::accounts::BudgetStatus {
            id,
            level,
            metric,
            period,
            limit,
            used,
            reserved,
            remaining,
            period_start_ms,
            resets_at_ms,
            enforcement,
            notify_at,
        } = b;
        BudgetInfo {
            id: id.clone(),
            level: level.to_string(),
            metric: metric.as_str().to_owned(),
            period: period.as_str().to_owned(),
            limit: *limit,
            used: *used,
            reserved: *reserved,
            remaining: *remaining,
            period_start_ms: *period_start_ms,
            resets_at_ms: *resets_at_ms,
            enforcement: enforcement.as_str().to_owned(),
            notify_at: notify_at.clone(),
        }
    }
}

/// Everything known about a failure: the core's `ErrorInfo`, field for field.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ErrorInfo {
    /// Stable code (`RATE_LIMITED`, `CONFIG`, ...).
    pub code: String,
    /// What is wrong, where, and the fix (the human text).
    pub detail: String,
    /// Provider, when the error came from one.
    pub provider: Option<String>,
    /// HTTP status, when a provider answered.
    pub status: Option<u16>,
    /// How long the provider asked to wait, in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// The provider's own error text, when a provider answered.
    pub provider_message: Option<String>,
    /// The offending request field, when known.
    pub field: Option<String>,
    /// `Permission`: the policy rule (`allow_models`, `deny_models`...).
    pub rule: Option<String>,
    /// `Permission` / `Budget`: where the rule or budget was set (`department:eng`).
    pub level: Option<String>,
    /// `Budget`: the budget, what is left and when it resets.
    pub budget: Option<BudgetInfo>,
}

/// A GateRouter failure. Match on the variant to decide what to do (`RateLimited`:
/// wait `info.retry_after_ms`; `Config`: fix the config; `Auth`: fix the key...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum GateRouterError {
    /// Bad configuration: a file, field or environment variable must be fixed.
    #[error("{}", info.detail)]
    Config {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The provider refused the credentials.
    #[error("{}", info.detail)]
    Auth {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The provider asked to slow down; wait `info.retry_after_ms` when set.
    #[error("{}", info.detail)]
    RateLimited {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The provider is down or overloaded (5xx, connection refused, circuit open).
    #[error("{}", info.detail)]
    ProviderUnavailable {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The request is invalid (`info.field` names the field when GateRouter found it).
    #[error("{}", info.detail)]
    InvalidRequest {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The prompt does not fit the model's context window.
    #[error("{}", info.detail)]
    ContextLengthExceeded {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The call took longer than the configured timeout.
    #[error("{}", info.detail)]
    Timeout {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The stream broke after it started; what arrived is kept.
    #[error("{}", info.detail)]
    StreamInterrupted {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The provider answered something that is not its documented format.
    #[error("{}", info.detail)]
    InvalidResponse {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// A budget or quota would be exceeded: `info.budget` says which, what is left and when it resets.
    #[error("{}", info.detail)]
    Budget {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The caller may not use this model, provider or tier (`info.rule`, `info.level`).
    #[error("{}", info.detail)]
    Permission {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// The call was cancelled (its handle's `cancel()`, or the task awaiting it).
    #[error("{}", info.detail)]
    Cancelled {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// `close()` was called before or during this call.
    #[error("{}", info.detail)]
    ClientClosed {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
    /// A kind newer than this binding, or a failure of the binding itself (the runtime
    /// could not start). `info.code` still carries the stable code.
    #[error("{}", info.detail)]
    Other {
        /// The code, the text and every detail known.
        info: ErrorInfo,
    },
}

#[uniffi::export]
impl GateRouterError {
    /// The details of any error, without matching on its kind.
    pub fn info(&self) -> ErrorInfo {
        self.details().clone()
    }

    /// The stable code (`RATE_LIMITED`, ...), whatever the variant.
    pub fn code(&self) -> String {
        self.details().code.clone()
    }
}

impl GateRouterError {
    /// The details, borrowed.
    pub fn details(&self) -> &ErrorInfo {
        match self {
            GateRouterError::Config { info }
            | GateRouterError::Auth { info }
            | GateRouterError::RateLimited { info }
            | GateRouterError::ProviderUnavailable { info }
            | GateRouterError::InvalidRequest { info }
            | GateRouterError::ContextLengthExceeded { info }
            | GateRouterError::Timeout { info }
            | GateRouterError::StreamInterrupted { info }
            | GateRouterError::InvalidResponse { info }
            | GateRouterError::Budget { info }
            | GateRouterError::Permission { info }
            | GateRouterError::Cancelled { info }
            | GateRouterError::ClientClosed { info }
            | GateRouterError::Other { info } => info,
        }
    }

    /// A binding-side failure (not from the core): `Other` with code `INTERNAL`.
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        GateRouterError::Other {
            info: ErrorInfo {
                code: "INTERNAL".to_owned(),
                detail: detail.into(),
                provider: None,
                status: None,
                retry_after_ms: None,
                provider_message: None,
                field: None,
                rule: None,
                level: None,
                budget: None,
            },
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
}

impl From<Error> for GateRouterError {
    /// From the core's [`gaterouter::ErrorInfo`], field for field.
    fn from(e: Error) -> Self {
        // Every field by name: a field the core adds does not compile here until the
        // record carries it.
        let gaterouter::ErrorInfo {
            kind,
            code,
            message,
            field,
            provider,
            status,
            retry_after_ms,
            provider_message,
            rule,
            level,
            budget,
        } = e.info();
        let info = ErrorInfo {
            code: code.to_owned(),
            budget: budget.as_ref().map(BudgetInfo::from),
            detail: message,
            provider,
            status,
            retry_after_ms,
            provider_message,
            field,
            rule,
            level,
        };
        match kind {
            ErrorKind::Config => GateRouterError::Config { info },
            ErrorKind::Auth => GateRouterError::Auth { info },
            ErrorKind::RateLimited => GateRouterError::RateLimited { info },
            ErrorKind::ProviderUnavailable => GateRouterError::ProviderUnavailable { info },
            ErrorKind::InvalidRequest => GateRouterError::InvalidRequest { info },
            ErrorKind::ContextLengthExceeded => GateRouterError::ContextLengthExceeded { info },
            ErrorKind::Timeout => GateRouterError::Timeout { info },
            ErrorKind::StreamInterrupted => GateRouterError::StreamInterrupted { info },
            ErrorKind::InvalidResponse => GateRouterError::InvalidResponse { info },
            ErrorKind::Budget => GateRouterError::Budget { info },
            ErrorKind::Permission => GateRouterError::Permission { info },
            ErrorKind::Cancelled => GateRouterError::Cancelled { info },
            ErrorKind::ClientClosed => GateRouterError::ClientClosed { info },
            // `ErrorKind` is non-exhaustive: a kind added to the core later still
            // reaches the app, with its code, until this binding grows a variant.
            _ => GateRouterError::Other { info },
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
        assert_eq!(&e.info(), e.details());
        match e {
            GateRouterError::RateLimited { info } => {
                assert_eq!(info.code, "RATE_LIMITED");
                assert_eq!(info.provider.as_deref(), Some("openai"));
                assert_eq!(info.status, Some(429));
                assert_eq!(info.retry_after_ms, Some(2500));
                assert_eq!(info.provider_message.as_deref(), Some("slow down"));
                assert!(info.detail.contains("slow down"), "{}", info.detail);
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
            matches!(&e, GateRouterError::InvalidRequest { info } if info.field.as_deref() == Some("messages")),
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
            GateRouterError::Permission { info } => {
                assert_eq!(
                    (info.rule.as_deref(), info.level.as_deref(), info.budget),
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
                info:
                    ErrorInfo {
                        rule,
                        level,
                        budget: Some(b),
                        ..
                    },
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
