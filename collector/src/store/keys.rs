//! API keys as stored: a key's binding and its currently valid public keys.

use std::collections::{HashMap, HashSet};

use sqlx::AnyConnection;

use crate::db::{Db, DbError, Param, bind_all, dberr};

/// A registered key as ingest needs it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// Key id.
    pub id: String,
    /// Bound org.
    pub org: String,
    /// Bound department, if any.
    pub department: Option<String>,
    /// Bound project, if any.
    pub project: Option<String>,
    /// Bound group, if any.
    pub group: Option<String>,
    /// Bound user, if any.
    pub user: Option<String>,
    /// `active` or `revoked`.
    pub revoked: bool,
    /// Public keys currently valid (current + rotated within grace).
    pub public_keys: Vec<String>,
}

/// Load the keys named in a batch, with their currently valid public keys.
pub async fn load_keys(
    db: &Db,
    ids: &HashSet<String>,
    now_ms: i64,
) -> Result<HashMap<String, KeyInfo>, DbError> {
    let mut out = HashMap::new();
    for id in ids {
        let rows = db
            .fetch(
                "SELECT k.id, k.org_id, k.department_id, k.project_id, k.group_id, k.user_id, k.status, v.public_key, v.not_after_ms
                 FROM api_keys k LEFT JOIN api_key_versions v ON v.api_key_id = k.id WHERE k.id = $1",
                &[Param::Text(id.clone())],
                "loading an API key",
            )
            .await?;
        let mut info: Option<KeyInfo> = None;
        for r in &rows {
            use crate::db::{get_opt_i64, get_opt_str, get_str};
            let ki = info.get_or_insert_with(|| KeyInfo {
                id: get_str(r, 0).unwrap_or_default(),
                org: get_str(r, 1).unwrap_or_default(),
                department: get_opt_str(r, 2).ok().flatten(),
                project: get_opt_str(r, 3).ok().flatten(),
                group: get_opt_str(r, 4).ok().flatten(),
                user: get_opt_str(r, 5).ok().flatten(),
                revoked: get_str(r, 6).map(|s| s != "active").unwrap_or(true),
                public_keys: Vec::new(),
            });
            if let Some(pk) = get_opt_str(r, 7)? {
                let not_after = get_opt_i64(r, 8)?;
                if not_after.is_none_or(|t| t > now_ms) {
                    ki.public_keys.push(pk);
                }
            }
        }
        if let Some(ki) = info {
            out.insert(id.clone(), ki);
        }
    }
    Ok(out)
}

/// A key to register (the admin API's `POST /v1/admin/keys`).
#[derive(Debug, Clone)]
pub(crate) struct NewKey<'a> {
    /// Key id.
    pub id: &'a str,
    /// Bound org.
    pub org_id: &'a str,
    /// Bound department.
    pub department_id: Option<&'a str>,
    /// Bound project.
    pub project_id: Option<&'a str>,
    /// Bound group.
    pub group_id: Option<&'a str>,
    /// Bound user.
    pub user_id: Option<&'a str>,
    /// Free text.
    pub description: &'a str,
    /// Version 1's public key (standard base64).
    pub public_key: &'a str,
    /// Registration time, Unix ms.
    pub created_ms: i64,
}

/// One public key of a registered key.
#[derive(Debug, Clone)]
pub struct KeyVersion {
    /// Version (1, 2, ...).
    pub version: i64,
    /// Public key, standard base64.
    pub public_key: String,
    /// End of its validity (set by a rotation), Unix ms.
    pub not_after_ms: Option<i64>,
}

/// A registered key as the admin API lists it.
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// Key id.
    pub id: String,
    /// Bound org.
    pub org_id: String,
    /// Bound department.
    pub department_id: Option<String>,
    /// Bound project.
    pub project_id: Option<String>,
    /// Bound group.
    pub group_id: Option<String>,
    /// Bound user.
    pub user_id: Option<String>,
    /// Free text.
    pub description: String,
    /// `active` or `revoked`.
    pub status: String,
    /// Registration time, Unix ms.
    pub created_ms: i64,
    /// Revocation time, Unix ms.
    pub revoked_ms: Option<i64>,
    /// Its public keys, oldest first.
    pub versions: Vec<KeyVersion>,
}

/// Register a key and its first public key (version 1). Rows inserted by the statement
/// that inserted fewest (0: nothing registered).
pub(crate) async fn register(conn: &mut AnyConnection, k: &NewKey<'_>) -> Result<u64, DbError> {
    let a = bind_all(
        "INSERT INTO api_keys (id, org_id, department_id, project_id, group_id, user_id, description, status, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8)",
        &[
            Param::Text(k.id.to_owned()),
            Param::Text(k.org_id.to_owned()),
            Param::OptText(k.department_id.map(str::to_owned)),
            Param::OptText(k.project_id.map(str::to_owned)),
            Param::OptText(k.group_id.map(str::to_owned)),
            Param::OptText(k.user_id.map(str::to_owned)),
            Param::Text(k.description.to_owned()),
            Param::I64(k.created_ms),
        ],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("registering a key"))?;
    if a.rows_affected() == 0 {
        return Ok(0);
    }
    let b = bind_all(
        "INSERT INTO api_key_versions (api_key_id, version, public_key, created_ms) VALUES ($1, 1, $2, $3)",
        &[
            Param::Text(k.id.to_owned()),
            Param::Text(k.public_key.to_owned()),
            Param::I64(k.created_ms),
        ],
    )
    .execute(conn)
    .await
    .map_err(dberr("registering a key"))?;
    Ok(b.rows_affected())
}

/// A key's status (`active`, `revoked`) and its highest version, if it is registered.
pub(crate) async fn status_and_version(
    db: &Db,
    id: &str,
) -> Result<Option<(String, i64)>, DbError> {
    let rows = db
        .fetch("SELECT k.status, CAST(COALESCE(MAX(v.version), 0) AS BIGINT) FROM api_keys k LEFT JOIN api_key_versions v ON v.api_key_id = k.id WHERE k.id = $1 GROUP BY k.status", &[Param::Text(id.to_owned())], "reading a key")
        .await?;
    match rows.first() {
        Some(r) => Ok(Some((crate::db::get_str(r, 0)?, crate::db::get_i64(r, 1)?))),
        None => Ok(None),
    }
}

/// Rotate: the key's valid versions end at `not_after_ms`, and `version` with
/// `public_key` is added. Rows changed by the statement that changed fewest (0: the
/// key has no version left to end).
pub(crate) async fn rotate(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    public_key: &str,
    now_ms: i64,
    not_after_ms: i64,
) -> Result<u64, DbError> {
    let a = bind_all(
        "UPDATE api_key_versions SET not_after_ms = $1 WHERE api_key_id = $2 AND (not_after_ms IS NULL OR not_after_ms > $1)",
        &[Param::I64(not_after_ms), Param::Text(id.to_owned())],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("rotating a key"))?;
    if a.rows_affected() == 0 {
        return Ok(0);
    }
    let b = bind_all(
        "INSERT INTO api_key_versions (api_key_id, version, public_key, created_ms) VALUES ($1, $2, $3, $4)",
        &[
            Param::Text(id.to_owned()),
            Param::I64(version),
            Param::Text(public_key.to_owned()),
            Param::I64(now_ms),
        ],
    )
    .execute(conn)
    .await
    .map_err(dberr("rotating a key"))?;
    Ok(b.rows_affected())
}

/// Revoke an active key. Rows changed (0: unknown or already revoked).
pub(crate) async fn revoke(
    conn: &mut AnyConnection,
    id: &str,
    now_ms: i64,
) -> Result<u64, DbError> {
    let r = bind_all(
        "UPDATE api_keys SET status = 'revoked', revoked_ms = $1 WHERE id = $2 AND status = 'active'",
        &[Param::I64(now_ms), Param::Text(id.to_owned())],
    )
    .execute(conn)
    .await
    .map_err(dberr("revoking a key"))?;
    Ok(r.rows_affected())
}

/// The registered keys (of one org when `org` is set) with their versions, in id order.
pub(crate) async fn list(db: &Db, org: Option<&str>) -> Result<Vec<KeyRow>, DbError> {
    use crate::db::{get_i64, get_opt_i64, get_opt_str, get_str};
    let (filter, params) = crate::db::where_eq("k.org_id", org);
    let sql = format!(
        "SELECT k.id, k.org_id, k.department_id, k.project_id, k.group_id, k.user_id, k.description, k.status, k.created_ms, k.revoked_ms, v.version, v.public_key, v.not_after_ms
         FROM api_keys k JOIN api_key_versions v ON v.api_key_id = k.id{filter} ORDER BY k.id, v.version"
    );
    let rows = db.fetch(&sql, &params, "listing keys").await?;
    let mut out: Vec<KeyRow> = Vec::new();
    for r in &rows {
        let id = get_str(r, 0)?;
        let version = KeyVersion {
            version: get_i64(r, 10)?,
            public_key: get_str(r, 11)?,
            not_after_ms: get_opt_i64(r, 12)?,
        };
        if let Some(last) = out.last_mut().filter(|l| l.id == id) {
            last.versions.push(version);
            continue;
        }
        out.push(KeyRow {
            id,
            org_id: get_str(r, 1)?,
            department_id: get_opt_str(r, 2)?,
            project_id: get_opt_str(r, 3)?,
            group_id: get_opt_str(r, 4)?,
            user_id: get_opt_str(r, 5)?,
            description: get_str(r, 6)?,
            status: get_str(r, 7)?,
            created_ms: get_i64(r, 8)?,
            revoked_ms: get_opt_i64(r, 9)?,
            versions: vec![version],
        });
    }
    Ok(out)
}
