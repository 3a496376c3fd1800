//! Bearer-token authentication. Tokens are never stored in clear: the bootstrap admin
//! token is hashed in memory at start, and tokens issued through the admin API are
//! stored as their SHA-256 (hex). A token is either `admin` (everything) or `read`,
//! scoped to an org and optionally one department: analytics answers are then limited
//! to that scope, and asking for another scope is 403.

use axum::http::HeaderMap;

use crate::db::{Db, Param, get_opt_str, get_str};
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
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random token: `grc_` + 43 url-safe base64 characters (256 bits).
pub fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!("grc_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Resolve the `Authorization: Bearer` header.
pub async fn authenticate(headers: &HeaderMap, bootstrap_sha256: Option<&str>, db: &Db) -> Result<Principal, ApiError> {
    let Some(h) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized("missing Authorization header: send `Authorization: Bearer <token>`"));
    };
    let token = h
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization header is not `Bearer <token>`"))?;
    let hash = sha256_hex(token);
    if bootstrap_sha256.is_some_and(|b| ct_eq(b, &hash)) {
        return Ok(Principal::Admin { id: "bootstrap".into() });
    }
    let rows = db
        .fetch("SELECT id, role, org_id, department_id FROM access_tokens WHERE token_sha256 = $1 AND revoked_ms IS NULL", &[Param::Text(hash)], "checking a token")
        .await?;
    let Some(r) = rows.first() else {
        return Err(ApiError::unauthorized("unknown or revoked token"));
    };
    let id = get_str(r, 0)?;
    match get_str(r, 1)?.as_str() {
        "admin" => Ok(Principal::Admin { id }),
        _ => Ok(Principal::Reader { id, org: get_str(r, 2)?, department: get_opt_str(r, 3)? }),
    }
}

/// Require an admin token.
pub fn require_admin(p: &Principal) -> Result<(), ApiError> {
    match p {
        Principal::Admin { .. } => Ok(()),
        Principal::Reader { .. } => Err(ApiError::forbidden("this endpoint needs an admin token; read tokens may only use /v1/analytics")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256() {
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(ct_eq("ab", "ab") && !ct_eq("ab", "ac") && !ct_eq("a", "ab"));
        assert!(new_token().starts_with("grc_") && new_token().len() == 47);
    }
}
