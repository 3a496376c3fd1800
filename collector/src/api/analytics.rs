//! `GET /v1/analytics/{report}` (JSON/CSV), with a bearer token or the dashboard's
//! session cookie.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::analytics::{AnalyticsQuery, run_report};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/analytics/{report}`.
pub async fn report(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: Result<Query<AnalyticsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // A bearer token, or the dashboard's session cookie (see api/dashboard.rs).
    let who =
        crate::auth::authenticate_read(&headers, st.bootstrap_sha256.as_deref(), &st.db).await?;
    let Query(q) =
        q.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "`format={o}` is unknown: use json or csv"
            )));
        }
    };
    let table = run_report(&st, &name, &q, &who).await?;
    if csv {
        let mut r = table.csv().into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        return Ok(r);
    }
    Ok(axum::Json(table.json()).into_response())
}
