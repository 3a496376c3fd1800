//! `POST /v1/usage`: read and bound the batch, then hand it to [`crate::ingest`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use gaterouter::usage::BatchResponse;

use crate::error::ApiError;
use crate::ingest;
use crate::state::AppState;

/// `POST /v1/usage`.
pub async fn ingest(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::Json<BatchResponse>, ApiError> {
    let bad = |e: ApiError| {
        st.metrics.bad_request();
        e
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            bad(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "request body exceeds max_body_bytes ({} bytes): send smaller batches",
                    st.cfg.max_body_bytes
                ),
            ))
        } else {
            bad(ApiError::bad_request(format!(
                "cannot read the body: {}",
                e.body_text()
            )))
        }
    })?;
    let req: ingest::BatchRequest<'_> = serde_json::from_slice(&body).map_err(|e| {
        bad(ApiError::bad_request(format!(
            "body is not {{\"records\":[...]}}: {e}"
        )))
    })?;
    if req.records.len() > st.cfg.max_batch_records {
        return Err(bad(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "batch has {} records, at most {} are accepted: send smaller batches",
                req.records.len(),
                st.cfg.max_batch_records
            ),
        )));
    }
    st.metrics.batch();
    Ok(axum::Json(ingest::ingest_batch(&st, &req.records).await?))
}
