//! Operations endpoints: `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// `GET /healthz`: the process answers.
pub async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.db.ping().await {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the database does not answer",
        )
        .into_response()
    }
}

/// `GET /metrics`: this collector's metrics, OpenMetrics text.
pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut r = st.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}

/// `GET /openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /`: to the dashboard.
pub async fn root() -> axum::response::Redirect {
    axum::response::Redirect::to("/dashboard")
}
