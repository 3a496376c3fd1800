//! The append-only `audit_log`: one entry per admin change, written in the change's
//! own transaction.

use serde_json::Value;

use crate::auth::Principal;
use crate::db::{Param, bind_all, dberr};
use crate::error::ApiError;
use crate::util::{now_ms, uuid_v7};

/// Append one audit entry inside `tx`.
pub(crate) async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    actor: &Principal,
    action: &str,
    target: &str,
    detail: &Value,
) -> Result<(), ApiError> {
    let params = [
        Param::Text(uuid_v7()),
        Param::I64(now_ms()),
        Param::Text(actor.id().to_owned()),
        Param::Text(action.to_owned()),
        Param::Text(target.to_owned()),
        Param::Text(detail.to_string()),
    ];
    bind_all("INSERT INTO audit_log (id, ts_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)", &params)
        .execute(&mut **tx)
        .await
        .map_err(dberr("writing the audit log"))?;
    Ok(())
}
