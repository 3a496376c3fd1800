//! The SDK-facing signed endpoints: `GET /v1/policy`, `POST /v1/reservations` and
//! `POST /v1/reservations/{id}/settle` (each request signed with the key's Ed25519 key).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use gaterouter::accounts::{EffectivePolicy, ReservationRequest, ReservationResponse};

use crate::accounts::{AccountsError, SettleResponse, authenticate_signed, parse_body};
use crate::state::AppState;
use crate::store::policy::{effective_policy, key_context};

/// `GET /v1/policy` (signed).
pub async fn get_policy(
    State(st): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<EffectivePolicy>, AccountsError> {
    let key = authenticate_signed(&st, &headers, "GET", &uri, b"").await?;
    let ctx = key_context(&st.db, key).await?;
    Ok(Json(effective_policy(&st.db, &ctx).await?))
}

/// `POST /v1/reservations` (signed).
pub async fn reserve(
    State(st): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ReservationResponse>), AccountsError> {
    let key = authenticate_signed(&st, &headers, "POST", &uri, &body).await?;
    let req: ReservationRequest = parse_body(
        &body,
        "ReservationRequest {reservation_id, model, amount_micros, amount_tokens, ttl_ms?}",
    )?;
    let (status, resp) = crate::accounts::reserve(&st, key, req).await?;
    Ok((status, Json(resp)))
}

/// `POST /v1/reservations/{id}/settle` (signed).
pub async fn settle(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SettleResponse>, AccountsError> {
    let key = authenticate_signed(&st, &headers, "POST", &uri, &body).await?;
    let req = parse_body(
        &body,
        "SettleRequest {actual_micros, actual_tokens, record_id?}",
    )?;
    Ok(Json(crate::accounts::settle(&st, key, id, req).await?))
}
