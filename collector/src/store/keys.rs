//! API keys as stored: a key's binding and its currently valid public keys.

use std::collections::{HashMap, HashSet};

use crate::db::{Db, DbError, Param};

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
