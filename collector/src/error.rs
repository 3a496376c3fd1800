//! The collector's errors: HTTP error answers (`{"error":{"code":"...","message":"..."}}`
//! with a status) and what can stop it from starting ([`CollectorError`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::db::DbError;

/// Errors starting the collector.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Database unreachable or migrations failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Cannot bind or serve.
    #[error("collector listen address {addr}: {source}. Fix: choose a free address with --listen")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// An error answer. `message` says what is wrong and how to fix it.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `unauthorized`, `forbidden`, `bad_request`.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// Build one.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_unique_violation() {
            return ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "an object with this id already exists; choose another id",
            );
        }
        // PostgreSQL refuses NUL characters in text (SQLSTATE 22021): the caller's value
        // is wrong, not the database.
        if matches!(&e.source, sqlx::Error::Database(d) if d.code().as_deref() == Some("22021")) {
            return ApiError::bad_request(
                "a value contains a NUL character (\\0) or invalid text, which the database cannot store or match; remove it",
            );
        }
        if matches!(&e.source, sqlx::Error::Database(d) if d.is_foreign_key_violation()) {
            return ApiError::bad_request(
                "a referenced org/department/group does not exist; create it first",
            );
        }
        // The details go to the log only (issue 18, item 10): the body names an error
        // id to look them up, never the database's message.
        let id = error_id();
        tracing::error!(error_id = %id, error = %crate::logsafe::escape(&e.to_string()), "database error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            format!(
                "the database could not complete the request; retry later (error id {id}; the collector's log has the details)"
            ),
        )
    }
}

/// A fresh id tying a generic 5xx answer to its log line.
pub fn error_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A generic 500: `what` goes to the log with the id, the body names only the id.
pub fn internal(what: &str) -> ApiError {
    let id = error_id();
    tracing::error!(error_id = %id, error = %crate::logsafe::escape(what), "internal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("internal error (error id {id}; the collector's log has the details)"),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}
