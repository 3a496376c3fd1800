//! The append-only `audit_log`: one entry per admin change, written in the change's
//! own transaction.

use serde_json::Value;

use crate::auth::Principal;
use crate::db::{DbError, Param, bind_all, dberr};
use crate::error::ApiError;
use crate::util::uuid_v7;

/// Append one audit entry inside `tx`.
pub(crate) async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now_ms: i64,
    actor: &Principal,
    action: &str,
    target: &str,
    detail: &Value,
) -> Result<(), ApiError> {
    let params = [
        Param::Text(uuid_v7()),
        Param::I64(now_ms),
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

/// An admin change: a write transaction (under the SQLite writer guard) that ends with
/// one audit entry, so the change and its entry commit together or not at all.
pub(crate) struct Audited<'a> {
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
    /// The transaction the change runs in.
    pub(crate) tx: sqlx::Transaction<'static, sqlx::Any>,
    /// When the change happens (the collector's clock at its start), Unix ms: its
    /// audit entry's time, and the time the change's own rows carry.
    pub(crate) now: i64,
}

impl<'a> Audited<'a> {
    /// Begin a change; `what` names it in an error (`starting a policy change`).
    pub(crate) async fn begin(db: &'a crate::db::Db, what: &str) -> Result<Self, DbError> {
        let guard = db.write_guard().await;
        let tx = db.pool.begin().await.map_err(dberr(what))?;
        Ok(Audited {
            _guard: guard,
            tx,
            now: db.clock().now_ms(),
        })
    }

    /// Append the audit entry and commit; `what` names the commit in an error.
    pub(crate) async fn commit(
        mut self,
        entry: (&Principal, &str, &str, &Value),
        what: &str,
    ) -> Result<(), ApiError> {
        let (actor, action, target, detail) = entry;
        audit(&mut self.tx, self.now, actor, action, target, detail).await?;
        self.commit_unaudited(what).await
    }

    /// Commit without an entry (the change turned out to change nothing).
    pub(crate) async fn commit_unaudited(self, what: &str) -> Result<(), ApiError> {
        self.tx.commit().await.map_err(dberr(what))?;
        Ok(())
    }
}

/// One audit entry as listed.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Id (UUIDv7, so id order is time order).
    pub id: String,
    /// Time, Unix ms.
    pub ts_ms: i64,
    /// Who made the change.
    pub actor: String,
    /// What was done (`register_key`).
    pub action: String,
    /// On what (`key k_eng`).
    pub target: String,
    /// Details, as the JSON text written.
    pub detail: String,
}

/// The newest `limit` entries, newest first.
pub(crate) async fn entries(db: &crate::db::Db, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
    use crate::db::{get_i64, get_str};
    let rows = db.fetch("SELECT id, ts_ms, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1", &[Param::I64(limit)], "reading the audit log").await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(AuditEntry {
            id: get_str(r, 0)?,
            ts_ms: get_i64(r, 1)?,
            actor: get_str(r, 2)?,
            action: get_str(r, 3)?,
            target: get_str(r, 4)?,
            detail: get_str(r, 5)?,
        });
    }
    Ok(out)
}
