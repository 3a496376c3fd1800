//! Bearer-token authentication. Tokens are never stored in clear: the bootstrap admin
//! token is hashed in memory at start, and tokens issued through the admin API are
//! stored as their SHA-256 (hex). A token is either `admin` (everything) or `read`,
//! scoped to an org and optionally one department: analytics answers are then limited
//! to that scope, and asking for another scope is 403.

use axum::http::HeaderMap;

use crate::db::Db;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Full access; `id` is the token id (`bootstrap` for the configured token).
    Admin {
        /// Token id.
        id: String,
    },
    /// Analytics read access limited to an org (and a department).
    Reader {
        /// Token id.
        id: String,
        /// Org the token may read.
        org: String,
        /// Department the token may read (all of the org when absent).
        department: Option<String>,
    },
}

impl Principal {
    /// Token id for the audit log.
    pub fn id(&self) -> &str {
        match self {
            Principal::Admin { id } | Principal::Reader { id, .. } => id,
        }
    }
}

/// Lowercase hex SHA-256 of a token.
pub fn sha256_hex(s: &str) -> String {
    gaterouter::accounts::request_auth::sha256_hex(s.as_bytes())
}

/// Constant-time equality of two hex digests.
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A fresh random token: `grc_` + 43 url-safe base64 characters (256 bits).
pub fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!(
        "grc_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Resolve the `Authorization: Bearer` header.
pub async fn authenticate(
    headers: &HeaderMap,
    bootstrap_sha256: Option<&str>,
    db: &Db,
) -> Result<Principal, ApiError> {
    let Some(h) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing Authorization header: send `Authorization: Bearer <token>`",
        ));
    };
    let token = h
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization header is not `Bearer <token>`"))?;
    principal_of_hash(&sha256_hex(token), bootstrap_sha256, db)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))
}

/// The principal of a token digest: the bootstrap admin token or an unrevoked issued
/// token; `None` when unknown or revoked.
pub async fn principal_of_hash(
    hash: &str,
    bootstrap_sha256: Option<&str>,
    db: &Db,
) -> Result<Option<Principal>, ApiError> {
    if bootstrap_sha256.is_some_and(|b| ct_eq(b, hash)) {
        return Ok(Some(Principal::Admin {
            id: "bootstrap".into(),
        }));
    }
    let Some(t) = crate::store::tokens::find_active(db, hash).await? else {
        return Ok(None);
    };
    Ok(Some(match t.role.as_str() {
        "admin" => Principal::Admin { id: t.id },
        _ => Principal::Reader {
            id: t.id,
            org: t.org_id.unwrap_or_default(),
            department: t.department_id,
        },
    }))
}

/// Name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = "gr_session";

/// The dashboard session id from the `Cookie` header(s).
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The principal of a valid dashboard session cookie, `None` without one (or when it
/// expired or its token was revoked).
pub async fn principal_of_session(
    headers: &HeaderMap,
    bootstrap_sha256: Option<&str>,
    db: &Db,
) -> Result<Option<Principal>, ApiError> {
    let Some(id) = session_cookie(headers) else {
        return Ok(None);
    };
    let now = db.clock().now_u64();
    let Some(token_sha256) = crate::store::sessions::token_of(db, &sha256_hex(&id), now).await?
    else {
        return Ok(None);
    };
    principal_of_hash(&token_sha256, bootstrap_sha256, db).await
}

/// Authenticate a read request (analytics, the dashboard's session check):
/// `Authorization: Bearer` when present, else the dashboard session cookie.
pub async fn authenticate_read(
    headers: &HeaderMap,
    bootstrap_sha256: Option<&str>,
    db: &Db,
) -> Result<Principal, ApiError> {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        return authenticate(headers, bootstrap_sha256, db).await;
    }
    match principal_of_session(headers, bootstrap_sha256, db).await? {
        Some(p) => Ok(p),
        None if session_cookie(headers).is_some() => Err(ApiError::unauthorized(
            "the dashboard session expired or its token was revoked: sign in again at /dashboard",
        )),
        None => Err(ApiError::unauthorized(
            "missing Authorization header: send `Authorization: Bearer <token>` (or sign in at /dashboard)",
        )),
    }
}

/// Require an admin token.
pub fn require_admin(p: &Principal) -> Result<(), ApiError> {
    match p {
        Principal::Admin { .. } => Ok(()),
        Principal::Reader { .. } => Err(ApiError::forbidden(
            "this endpoint needs an admin token; read tokens may only use /v1/analytics",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(ct_eq("ab", "ab") && !ct_eq("ab", "ac") && !ct_eq("a", "ab"));
        assert!(new_token().starts_with("grc_") && new_token().len() == 47);
    }
}
