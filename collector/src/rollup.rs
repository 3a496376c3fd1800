//! Hourly rollups of usage records: one row per hour × org × department × project ×
//! group × member × key × provider × model × route tier × status, with calls, errors,
//! denials, tokens, spend (exact micro-dollars), client cost, routing baseline and
//! summed latency. Missing units are stored as `''` (so the primary key can hold them).
//!
//! Maintained at ingest in the same transaction as the raw rows ([`apply`], called by
//! `ingest::store` with the (org, id) of the records it inserted) with
//! `INSERT ... ON CONFLICT DO UPDATE SET x = usage_rollup_hour.x + excluded.x`, so
//! several collectors sharing one PostgreSQL database never lose an update (the
//! conflicting row is locked and re-read). [`rebuild`] recomputes the table from the raw
//! records (after a restore, or to check it).

use sqlx::AnyConnection;

use crate::db::{Db, DbError, Param, bind_all, dberr, ids_by_org, in_list};

/// Key columns of `usage_rollup_hour`, in order.
pub const KEYS: &[&str] = &[
    "hour_ms",
    "org",
    "department",
    "project",
    "grp",
    "usr",
    "api_key_id",
    "provider",
    "model",
    "route_tier",
    "status",
];

/// Measure columns of `usage_rollup_hour`, in order.
pub const MEASURES: &[&str] = &[
    "calls",
    "errors",
    "denials",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "spend_micros",
    "client_cost_micros",
    "baseline_micros",
    "baseline_spend_micros",
    "latency_ms_sum",
];

/// The SELECT list over `usage_records` producing one rollup row per group, matching
/// [`KEYS`] then [`MEASURES`].
const SELECT: &str = "(ts_start / 3600000) * 3600000, org, COALESCE(department, ''), COALESCE(project, ''), COALESCE(grp, ''), COALESCE(usr, ''), api_key_id, provider, model,
    COALESCE(route_tier, ''), status,
    COUNT(*), CAST(SUM(is_error) AS BIGINT), CAST(SUM(CASE WHEN status = 'denied' THEN 1 ELSE 0 END) AS BIGINT),
    CAST(SUM(prompt_tokens) AS BIGINT), CAST(SUM(completion_tokens) AS BIGINT), CAST(SUM(total_tokens) AS BIGINT), CAST(SUM(spend_micros) AS BIGINT),
    CAST(SUM(client_cost_micros) AS BIGINT), CAST(COALESCE(SUM(baseline_micros), 0) AS BIGINT),
    CAST(SUM(CASE WHEN baseline_micros IS NULL THEN 0 ELSE spend_micros END) AS BIGINT), CAST(SUM(latency_ms) AS BIGINT)";

const GROUP: &str = "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11";

/// Ids per statement (bound parameters stay far below SQLite's limit).
const IDS_PER_STATEMENT: usize = 5_000;

fn upsert_sql(where_clause: &str) -> String {
    let sets = MEASURES
        .iter()
        .map(|m| format!("{m} = usage_rollup_hour.{m} + excluded.{m}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO usage_rollup_hour ({}, {}) SELECT {SELECT} FROM usage_records {where_clause} {GROUP} ON CONFLICT ({}) DO UPDATE SET {sets}",
        KEYS.join(", "),
        MEASURES.join(", "),
        KEYS.join(", ")
    )
}

/// Add the records just inserted (by this transaction) to the rollups. Call it inside
/// the ingest transaction with the (org, id) of exactly the records that were new (not
/// duplicates): ids are unique per org only, so each lookup names the org; the rollup
/// rows are computed from the stored rows.
pub async fn apply(tx: &mut AnyConnection, keys: &[(&str, &str)]) -> Result<(), DbError> {
    for (org, ids) in ids_by_org(keys.iter().copied()) {
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let marks = in_list(2, chunk.len());
            let params: Vec<Param> = std::iter::once(org)
                .chain(chunk.iter().copied())
                .map(|s| Param::Text(s.to_owned()))
                .collect();
            bind_all(
                &upsert_sql(&format!("WHERE org = $1 AND id IN ({marks})")),
                &params,
            )
            .execute(&mut *tx)
            .await
            .map_err(dberr("updating usage rollups"))?;
        }
    }
    Ok(())
}

/// Recompute every rollup from the raw records, in one write transaction; returns the
/// number of rollup rows.
pub async fn rebuild(db: &Db) -> Result<u64, DbError> {
    let _g = db.write_guard().await;
    let mut tx = db.begin_write().await?;
    if db.backend() == crate::db::Backend::Postgres {
        // Keep concurrent ingest out while the table is rebuilt.
        sqlx::query("LOCK TABLE usage_records IN SHARE MODE")
            .execute(&mut *tx)
            .await
            .map_err(dberr("locking usage records"))?;
    }
    sqlx::query("DELETE FROM usage_rollup_hour")
        .execute(&mut *tx)
        .await
        .map_err(dberr("clearing usage rollups"))?;
    let n = bind_all(&upsert_sql("WHERE 1 = 1"), &[])
        .execute(&mut *tx)
        .await
        .map_err(dberr("rebuilding usage rollups"))?
        .rows_affected();
    tx.commit()
        .await
        .map_err(dberr("committing the rollup rebuild"))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_adds_every_measure() {
        let s = upsert_sql("WHERE 1 = 1");
        for m in MEASURES {
            assert!(
                s.contains(&format!("{m} = usage_rollup_hour.{m} + excluded.{m}")),
                "{m}"
            );
        }
        assert!(s.contains(&format!("ON CONFLICT ({})", KEYS.join(", "))));
    }
}
