//! Access tokens as stored (`access_tokens`): only the SHA-256 of each token.

use sqlx::AnyConnection;

use crate::db::{Db, DbError, Param, bind_all, dberr, get_i64, get_opt_i64, get_opt_str, get_str};

/// A new token's row.
#[derive(Debug, Clone)]
pub(crate) struct NewToken<'a> {
    /// Token id.
    pub id: &'a str,
    /// SHA-256 (hex) of the clear token.
    pub sha256: &'a str,
    /// `admin` or `read`.
    pub role: &'a str,
    /// Org a `read` token may read.
    pub org_id: Option<&'a str>,
    /// Department a `read` token is limited to.
    pub department_id: Option<&'a str>,
    /// Free text.
    pub description: &'a str,
    /// Creation time, Unix ms.
    pub created_ms: i64,
}

/// A stored token, as listed (never the token).
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Id.
    pub id: String,
    /// Role.
    pub role: String,
    /// Org scope.
    pub org_id: Option<String>,
    /// Department scope.
    pub department_id: Option<String>,
    /// Free text.
    pub description: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// Revocation time, Unix ms.
    pub revoked_ms: Option<i64>,
}

/// An unrevoked token as authentication reads it.
#[derive(Debug, Clone)]
pub(crate) struct ActiveToken {
    /// Id.
    pub id: String,
    /// Role (`admin` or `read`).
    pub role: String,
    /// Org scope.
    pub org_id: Option<String>,
    /// Department scope.
    pub department_id: Option<String>,
}

/// The unrevoked token whose SHA-256 (hex) is `sha256`, if any.
pub(crate) async fn find_active(db: &Db, sha256: &str) -> Result<Option<ActiveToken>, DbError> {
    let rows = db
        .fetch("SELECT id, role, org_id, department_id FROM access_tokens WHERE token_sha256 = $1 AND revoked_ms IS NULL", &[Param::Text(sha256.to_owned())], "checking a token")
        .await?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(ActiveToken {
        id: get_str(r, 0)?,
        role: get_str(r, 1)?,
        org_id: get_opt_str(r, 2)?,
        department_id: get_opt_str(r, 3)?,
    }))
}

/// Insert a token. Rows inserted.
pub(crate) async fn insert(conn: &mut AnyConnection, t: &NewToken<'_>) -> Result<u64, DbError> {
    let params = [
        Param::Text(t.id.to_owned()),
        Param::Text(t.sha256.to_owned()),
        Param::Text(t.role.to_owned()),
        Param::OptText(t.org_id.map(str::to_owned)),
        Param::OptText(t.department_id.map(str::to_owned)),
        Param::Text(t.description.to_owned()),
        Param::I64(t.created_ms),
    ];
    let r = bind_all(
        "INSERT INTO access_tokens (id, token_sha256, role, org_id, department_id, description, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &params,
    )
    .execute(conn)
    .await
    .map_err(dberr("creating a token"))?;
    Ok(r.rows_affected())
}

/// Every token, in id order.
pub(crate) async fn list(db: &Db) -> Result<Vec<TokenRow>, DbError> {
    let rows = db.fetch("SELECT id, role, org_id, department_id, description, created_ms, revoked_ms FROM access_tokens ORDER BY id", &[], "listing tokens").await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(TokenRow {
            id: get_str(r, 0)?,
            role: get_str(r, 1)?,
            org_id: get_opt_str(r, 2)?,
            department_id: get_opt_str(r, 3)?,
            description: get_str(r, 4)?,
            created_ms: get_i64(r, 5)?,
            revoked_ms: get_opt_i64(r, 6)?,
        });
    }
    Ok(out)
}

/// Revoke a token not yet revoked. Rows changed (0: unknown or already revoked).
pub(crate) async fn revoke(
    conn: &mut AnyConnection,
    id: &str,
    now_ms: i64,
) -> Result<u64, DbError> {
    let r = bind_all(
        "UPDATE access_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        &[Param::I64(now_ms), Param::Text(id.to_owned())],
    )
    .execute(conn)
    .await
    .map_err(dberr("revoking a token"))?;
    Ok(r.rows_affected())
}
