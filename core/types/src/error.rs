//! Errors: a rich internal [`Error`] and the small, stable public [`ErrorKind`].
//!
//! Bindings map [`ErrorKind`] once per language (a Python exception class, a JS
//! `err.code`, a uniffi error variant); the variants of [`Error`] may grow freely.

use std::time::Duration;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The stable public error kinds. New kinds may be added (hence `non_exhaustive`),
/// existing ones keep their meaning and their [`ErrorKind::code`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad configuration: a file, field or environment variable must be fixed.
    Config,
    /// The provider refused the credentials (401/403 on a key).
    Auth,
    /// The provider asked us to slow down (429); see [`Error::retry_after`].
    RateLimited,
    /// The provider is down, overloaded (5xx, 529) or unreachable.
    ProviderUnavailable,
    /// The request itself is wrong (4xx other than the above); never retried.
    InvalidRequest,
    /// The prompt plus `max_tokens` exceed the model's context window.
    ContextLengthExceeded,
    /// No answer within the configured timeout.
    Timeout,
    /// A stream ended before the provider said it was complete.
    StreamInterrupted,
    /// The provider answered, but the answer cannot be used (malformed JSON, an HTML
    /// page with a success status, tool-call arguments that are not JSON).
    InvalidResponse,
    /// A budget or quota would be exceeded.
    #[strum(serialize = "BUDGET_EXCEEDED")]
    Budget,
    /// The caller may not use this model, provider or tier.
    #[strum(serialize = "PERMISSION_DENIED")]
    Permission,
    /// The call was cancelled by its caller (`gaterouter::client::Cancel`) before it ended.
    Cancelled,
    /// The client is closed (`gaterouter::Client::close`): the call was refused, or cut by
    /// the close.
    ClientClosed,
}

impl ErrorKind {
    /// Stable SCREAMING_SNAKE code, used as JS `err.code` and in usage records.
    pub fn code(self) -> &'static str {
        self.into()
    }

    /// Every kind, in declaration order.
    pub const ALL: &'static [ErrorKind] = <ErrorKind as strum::VariantArray>::VARIANTS;

    /// The kind of a [`ErrorKind::code`].
    pub fn from_code(code: &str) -> Option<Self> {
        code.parse().ok()
    }

    /// Whether a retry of the same request may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited | ErrorKind::ProviderUnavailable | ErrorKind::Timeout
        )
    }
}

/// Everything that can go wrong, with the detail needed to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Configuration is wrong. `location` names the file and field, `fix` says what to do.
    #[error("config error at {location}: {message}. Fix: {fix}")]
    Config {
        /// File and field, e.g. `gaterouter.toml: providers.openai.base_url`.
        location: String,
        /// What is wrong.
        message: String,
        /// What to do about it.
        fix: String,
    },

    /// The provider refused the request as invalid (a 4xx other than auth/rate limit).
    #[error("{provider} rejected the request (HTTP {status}): {message}")]
    Rejected {
        /// Which provider refused it.
        provider: String,
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },

    /// The request is invalid (our own validation); `field` names the field.
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// The offending field path, e.g. `messages[2].tool_call_id`.
        field: Option<String>,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// Credentials refused.
    #[error("{provider} refused the credentials (HTTP {status}): {message}")]
    Auth {
        /// Provider name.
        provider: String,
        /// HTTP status.
        status: u16,
        /// Provider's message.
        message: String,
    },

    /// Rate limited.
    #[error("{provider} rate limited the request{}: {message}", retry_suffix(.retry_after))]
    RateLimited {
        /// Provider name.
        provider: String,
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
        /// Provider's message.
        message: String,
    },

    /// Provider down, overloaded or unreachable.
    #[error("{provider} is unavailable{}: {message}", status_suffix(.status))]
    ProviderUnavailable {
        /// Provider name.
        provider: String,
        /// HTTP status, if the provider answered.
        status: Option<u16>,
        /// Provider's message or the transport error.
        message: String,
    },

    /// Context window exceeded.
    #[error("{provider}: the request does not fit the model's context window: {message}")]
    ContextLengthExceeded {
        /// Provider name.
        provider: String,
        /// Provider's message.
        message: String,
    },

    /// Timed out.
    #[error("{provider} did not answer within {}ms ({what})", .after.as_millis())]
    Timeout {
        /// Provider name.
        provider: String,
        /// The timeout that fired.
        after: Duration,
        /// Which timeout (`request`, `connect`, `stream idle`).
        what: &'static str,
    },

    /// Stream cut off.
    #[error("{provider} stream ended early: {message}")]
    StreamInterrupted {
        /// Provider name.
        provider: String,
        /// What was missing.
        message: String,
    },

    /// Unusable answer.
    #[error("{provider} sent an unusable response{}: {message}", status_suffix(.status))]
    InvalidResponse {
        /// Provider name.
        provider: String,
        /// HTTP status.
        status: Option<u16>,
        /// What is wrong with it.
        message: String,
    },

    /// A hard budget would be exceeded (raised before any provider is called).
    #[error("budget exceeded: {message}")]
    Budget {
        /// The budget: id, level, metric, period, limit, what is left (`remaining`)
        /// and when it resets (`resets_at_ms`). Boxed to keep `Error` small.
        budget: Box<crate::budget::BudgetStatus>,
        /// Which budget, its period, what is left and when it resets, in words.
        message: String,
    },

    /// Not permitted (raised before any provider is called).
    #[error("permission denied: {message}")]
    Permission {
        /// The rule: `allow_models`, `deny_models`, `allowed_tiers`,
        /// `max_tokens_per_request`, `zero_retention_only` (organization policy),
        /// `models` (the config's `[[models]]` list), `policy_unavailable` (the
        /// collector cannot be reached and `[policy]` says to refuse) or `api_key`
        /// (the collector refused the key).
        rule: String,
        /// The level of the organization tree that set the rule (`department:eng`),
        /// when it comes from an organization policy.
        level: Option<crate::budget::Level>,
        /// Which rule, set at which level, and what to do.
        message: String,
    },

    /// The call was cancelled by its caller before it ended (its usage record says
    /// `cancelled`).
    #[error("the call was cancelled")]
    Cancelled,

    /// The client is closed: build a new one.
    #[error("the client is closed: build a new client")]
    ClientClosed,
}

/// What every binding shows of an error ([`Error::info`]): one shape, built once.
/// Serialized (snake_case keys; absent fields left out; `kind` is `code`), it is the JSON
/// a binding hands on (Node camelCases the keys).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErrorInfo {
    /// The public kind (the exception class / enum variant).
    #[serde(skip)]
    pub kind: ErrorKind,
    /// Its stable code (`RATE_LIMITED`, ...).
    pub code: &'static str,
    /// The whole human message: what is wrong and the fix.
    pub message: String,
    /// `INVALID_REQUEST` from GateRouter's own checks: the offending field (`messages`,
    /// `score`, `tools[0].parameters_json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The provider the error came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider's HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the provider asked to wait, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The provider's own error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message: Option<String>,
    /// `PERMISSION_DENIED`: the policy rule (`allow_models`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `PERMISSION_DENIED` / `BUDGET_EXCEEDED`: where the rule or budget was set
    /// (`department:eng`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// `BUDGET_EXCEEDED`: the budget, what is left and when it resets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::budget::BudgetStatus>,
}

fn status_suffix(s: &Option<u16>) -> String {
    s.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

fn retry_suffix(d: &Option<Duration>) -> String {
    d.map(|d| format!(" (retry after {}ms)", d.as_millis()))
        .unwrap_or_default()
}

impl Error {
    /// The stable public kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::InvalidRequest { .. } | Error::Rejected { .. } => ErrorKind::InvalidRequest,
            Error::Auth { .. } => ErrorKind::Auth,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::ProviderUnavailable { .. } => ErrorKind::ProviderUnavailable,
            Error::ContextLengthExceeded { .. } => ErrorKind::ContextLengthExceeded,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::StreamInterrupted { .. } => ErrorKind::StreamInterrupted,
            Error::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            Error::Budget { .. } => ErrorKind::Budget,
            Error::Permission { .. } => ErrorKind::Permission,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::ClientClosed => ErrorKind::ClientClosed,
        }
    }

    /// How long to wait before retrying, when the provider said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The provider this error came from, if any.
    pub fn provider(&self) -> Option<&str> {
        match self {
            Error::Auth { provider, .. }
            | Error::RateLimited { provider, .. }
            | Error::ProviderUnavailable { provider, .. }
            | Error::ContextLengthExceeded { provider, .. }
            | Error::Timeout { provider, .. }
            | Error::StreamInterrupted { provider, .. }
            | Error::InvalidResponse { provider, .. }
            | Error::Rejected { provider, .. } => Some(provider),
            _ => None,
        }
    }

    /// The HTTP status the provider answered with, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Auth { status, .. } | Error::Rejected { status, .. } => Some(*status),
            Error::ProviderUnavailable { status, .. } | Error::InvalidResponse { status, .. } => {
                *status
            }
            Error::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The provider's own message (or ours when the error is local).
    pub fn provider_message(&self) -> Option<&str> {
        match self {
            Error::Auth { message, .. }
            | Error::RateLimited { message, .. }
            | Error::ProviderUnavailable { message, .. }
            | Error::ContextLengthExceeded { message, .. }
            | Error::StreamInterrupted { message, .. }
            | Error::InvalidResponse { message, .. }
            | Error::Rejected { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The public description of this error, built here once: every binding maps it to
    /// its language (Python exception attributes, Node `err.code` and fields, the uniffi
    /// enum's fields) and reads nothing else of [`Error`], so all of them say the same.
    pub fn info(&self) -> ErrorInfo {
        let kind = self.kind();
        let (rule, level) = match self.permission_rule() {
            Some((rule, level)) => (Some(rule.to_owned()), level.map(ToString::to_string)),
            None => (None, self.budget_status().map(|b| b.level.to_string())),
        };
        ErrorInfo {
            kind,
            code: kind.code(),
            message: self.to_string(),
            field: match self {
                Error::InvalidRequest { field, .. } => field.clone(),
                _ => None,
            },
            provider: self.provider().map(str::to_owned),
            status: self.status(),
            retry_after_ms: self
                .retry_after()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            provider_message: self.provider_message().map(str::to_owned),
            rule,
            level,
            budget: self.budget_status().cloned(),
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// A config error (helper for the many call sites that build one).
    pub fn config(
        location: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Error::Config {
            location: location.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A permission error from a policy denial.
    pub fn permission(d: crate::budget::Denial) -> Self {
        Error::Permission {
            rule: d.rule,
            level: Some(d.level),
            message: d.message,
        }
    }

    /// A budget error for `budget`; the message is [`crate::budget::BudgetStatus::describe`]
    /// with `context` (what was asked) in front when given.
    pub fn budget(budget: crate::budget::BudgetStatus, context: Option<&str>) -> Self {
        let described = budget.describe();
        let message = match context {
            Some(c) if !c.is_empty() => format!("{c}: {described}"),
            _ => described,
        };
        Error::Budget {
            budget: Box::new(budget),
            message,
        }
    }

    /// The rule and level of a permission error.
    pub fn permission_rule(&self) -> Option<(&str, Option<&crate::budget::Level>)> {
        match self {
            Error::Permission { rule, level, .. } => Some((rule, level.as_ref())),
            _ => None,
        }
    }

    /// The budget of a budget error.
    pub fn budget_status(&self) -> Option<&crate::budget::BudgetStatus> {
        match self {
            Error::Budget { budget, .. } => Some(budget),
            _ => None,
        }
    }

    /// An unusable-response error.
    pub fn invalid_response(
        provider: &str,
        status: Option<u16>,
        message: impl Into<String>,
    ) -> Self {
        Error::InvalidResponse {
            provider: provider.to_owned(),
            status,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(ErrorKind::RateLimited.code(), "RATE_LIMITED");
        assert_eq!(ErrorKind::Budget.code(), "BUDGET_EXCEEDED");
        let e = Error::RateLimited {
            provider: "openai".into(),
            retry_after: Some(Duration::from_secs(2)),
            message: "slow".into(),
        };
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.is_retryable());
        assert!(e.to_string().contains("retry after 2000ms"), "{e}");
    }

    #[test]
    fn every_code_is_fixed_and_parses_back() {
        let codes: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(
            codes,
            [
                "CONFIG",
                "AUTH",
                "RATE_LIMITED",
                "PROVIDER_UNAVAILABLE",
                "INVALID_REQUEST",
                "CONTEXT_LENGTH_EXCEEDED",
                "TIMEOUT",
                "STREAM_INTERRUPTED",
                "INVALID_RESPONSE",
                "BUDGET_EXCEEDED",
                "PERMISSION_DENIED",
                "CANCELLED",
                "CLIENT_CLOSED",
            ]
        );
        for &k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
            assert_eq!(k.to_string(), k.code());
        }
        assert_eq!(ErrorKind::from_code("BUDGET"), None);
        assert_eq!(ErrorKind::from_code("rate_limited"), None);
    }

    #[test]
    fn info_carries_every_public_field() {
        let i = Error::RateLimited {
            provider: "openai".into(),
            retry_after: Some(Duration::from_millis(2500)),
            message: "slow down".into(),
        }
        .info();
        assert_eq!(
            (
                i.kind,
                i.code,
                i.provider.as_deref(),
                i.status,
                i.retry_after_ms
            ),
            (
                ErrorKind::RateLimited,
                "RATE_LIMITED",
                Some("openai"),
                Some(429),
                Some(2500)
            )
        );
        assert_eq!(i.provider_message.as_deref(), Some("slow down"));
        assert!(i.message.contains("slow down"), "{}", i.message);
        let i = Error::InvalidRequest {
            field: Some("score".into()),
            message: "bad".into(),
        }
        .info();
        assert_eq!(
            (i.code, i.field.as_deref(), i.provider),
            ("INVALID_REQUEST", Some("score"), None)
        );
        let level: crate::budget::Level = "department:eng".parse().unwrap();
        let i = Error::Permission {
            rule: "allow_models".into(),
            level: Some(level),
            message: "no".into(),
        }
        .info();
        assert_eq!(
            (i.rule.as_deref(), i.level.as_deref(), i.budget),
            (Some("allow_models"), Some("department:eng"), None)
        );
    }

    #[test]
    fn info_serializes_to_the_json_bindings_hand_on() {
        let i = Error::RateLimited {
            provider: "openai".into(),
            retry_after: Some(Duration::from_millis(2500)),
            message: "slow down".into(),
        }
        .info();
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "code": "RATE_LIMITED",
                "message": i.message,
                "provider": "openai",
                "status": 429,
                "retry_after_ms": 2500,
                "provider_message": "slow down",
            })
        );
    }
}
