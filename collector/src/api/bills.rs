//! `GET /v1/admin/bills`: a month's bill of an org or one of its units, as JSON, CSV or
//! printable HTML (admin token, or a read token of that org).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::auth::authenticate;
use crate::bills::{BillQuery, compute};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/admin/bills`.
pub async fn get_bill(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<BillQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let who = authenticate(&headers, st.bootstrap_sha256.as_deref(), &st.db).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("invalid query: {} (use org=ORG&month=YYYY-MM[&department=D|&project=P][&format=json|csv|html])", e.body_text())))?;
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "csv" | "html") {
        return Err(ApiError::bad_request(format!(
            "`format={format}` is unknown: use json, csv or html"
        )));
    }
    let now = st.db.clock().now_ms();
    let bill = compute(&st, &q, &who, now).await?;
    let stem: String = format!(
        "bill-{}-{}-{}",
        bill.org,
        bill.scope.replace(':', "-"),
        bill.month
    )
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        }
    })
    .collect();
    let (body, ctype) = match format.as_str() {
        "csv" => (bill.csv(), "text/csv; charset=utf-8"),
        "html" => (bill.html(), "text/html; charset=utf-8"),
        _ => return Ok(axum::Json(bill).into_response()),
    };
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if format == "csv" {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{stem}.csv\"")) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(r)
}
