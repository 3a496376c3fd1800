//! Usage rollups at two grains, each one row per period × org × department × project ×
//! group × member × key × provider × model × route tier × status, with calls, errors,
//! denials, tokens, spend (exact micro-dollars), client cost, routing baseline and summed
//! latency. Missing units are stored as `''` (so the primary key can hold them).
//!
//! - [`HOUR`] (`usage_rollup_hour`, keyed by `hour_ms`): hour and day buckets, and any
//!   range on whole hours.
//! - [`MONTH`] (`usage_rollup_month`, keyed by `month` = `yyyymm` of the call's start, as
//!   the raw records are): month buckets and totals over whole calendar months (UTC),
//!   hundreds of times fewer rows than the hourly table for steady traffic (10 M records
//!   over a year: 4 M hourly rows against a few thousand monthly ones).
//!
//! Both are maintained at ingest in the same transaction as the raw rows ([`apply`],
//! called by `ingest::store` with the (org, id) of the records it inserted) with
//! `INSERT ... ON CONFLICT DO UPDATE SET x = <table>.x + excluded.x`, so several
//! collectors sharing one PostgreSQL database never lose an update (the conflicting row
//! is locked and re-read). [`rebuild`] recomputes both from the raw records (after a
//! restore, or to check them).

use sqlx::AnyConnection;

use crate::db::{Db, DbError, Param, bind_all, dberr, ids_by_org, in_list};

/// One rollup table: its name, its period column and how the raw records give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grain {
    /// Table name.
    pub table: &'static str,
    /// The period column (first key column).
    pub period: &'static str,
    /// The period of a raw record, as SQL over `usage_records`.
    pub period_of_record: &'static str,
}

/// Hourly rollups.
pub const HOUR: Grain = Grain {
    table: "usage_rollup_hour",
    period: "hour_ms",
    period_of_record: "(ts_start / 3600000) * 3600000",
};

/// Monthly rollups (`month` = `yyyymm`, UTC).
pub const MONTH: Grain = Grain {
    table: "usage_rollup_month",
    period: "month",
    period_of_record: "month",
};

/// Every grain, each maintained at ingest.
pub const GRAINS: [Grain; 2] = [HOUR, MONTH];

/// Key columns after the period, in order (the same in every grain).
pub const UNIT_KEYS: &[&str] = &[
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

/// Measure columns of every rollup table, in order.
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

/// The SELECT list over `usage_records` after the period, producing one rollup row per
/// group, matching [`UNIT_KEYS`] then [`MEASURES`].
const SELECT_UNITS: &str = "org, COALESCE(department, ''), COALESCE(project, ''), COALESCE(grp, ''), COALESCE(usr, ''), api_key_id, provider, model,
    COALESCE(route_tier, ''), status,
    COUNT(*), CAST(SUM(is_error) AS BIGINT), CAST(SUM(CASE WHEN status = 'denied' THEN 1 ELSE 0 END) AS BIGINT),
    CAST(SUM(prompt_tokens) AS BIGINT), CAST(SUM(completion_tokens) AS BIGINT), CAST(SUM(total_tokens) AS BIGINT), CAST(SUM(spend_micros) AS BIGINT),
    CAST(SUM(client_cost_micros) AS BIGINT), CAST(COALESCE(SUM(baseline_micros), 0) AS BIGINT),
    CAST(SUM(CASE WHEN baseline_micros IS NULL THEN 0 ELSE spend_micros END) AS BIGINT), CAST(SUM(latency_ms) AS BIGINT)";

const GROUP: &str = "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11";

/// Ids per statement (bound parameters stay far below SQLite's limit).
const IDS_PER_STATEMENT: usize = 5_000;

/// The upsert of `grain` from the raw records selected by `where_clause`.
fn upsert_sql(grain: Grain, where_clause: &str) -> String {
    let t = grain.table;
    let sets = MEASURES
        .iter()
        .map(|m| format!("{m} = {t}.{m} + excluded.{m}"))
        .collect::<Vec<_>>()
        .join(", ");
    let keys = format!("{}, {}", grain.period, UNIT_KEYS.join(", "));
    format!(
        "INSERT INTO {t} ({keys}, {}) SELECT {}, {SELECT_UNITS} FROM usage_records {where_clause} {GROUP} ON CONFLICT ({keys}) DO UPDATE SET {sets}",
        MEASURES.join(", "),
        grain.period_of_record,
    )
}

/// Add the records just inserted (by this transaction) to every rollup. Call it inside
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
            for grain in GRAINS {
                bind_all(
                    &upsert_sql(grain, &format!("WHERE org = $1 AND id IN ({marks})")),
                    &params,
                )
                .execute(&mut *tx)
                .await
                .map_err(dberr("updating usage rollups"))?;
            }
        }
    }
    Ok(())
}

/// Recompute every rollup from the raw records, in one write transaction; returns the
/// number of rollup rows written (all grains).
pub async fn rebuild(db: &Db) -> Result<u64, DbError> {
    let _g = db.write_guard().await;
    let mut tx = db.begin_write().await?;
    if db.backend() == crate::db::Backend::Postgres {
        // Keep concurrent ingest out while the tables are rebuilt.
        sqlx::query("LOCK TABLE usage_records IN SHARE MODE")
            .execute(&mut *tx)
            .await
            .map_err(dberr("locking usage records"))?;
    }
    let mut written = 0;
    for grain in GRAINS {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", grain.table)))
            .execute(&mut *tx)
            .await
            .map_err(dberr("clearing usage rollups"))?;
        let n = bind_all(&upsert_sql(grain, "WHERE 1 = 1"), &[])
            .execute(&mut *tx)
            .await
            .map_err(dberr("rebuilding usage rollups"))?
            .rows_affected();
        written += n;
    }
    tx.commit()
        .await
        .map_err(dberr("committing the rollup rebuild"))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_adds_every_measure() {
        for grain in GRAINS {
            let s = upsert_sql(grain, "WHERE 1 = 1");
            for m in MEASURES {
                assert!(
                    s.contains(&format!("{m} = {}.{m} + excluded.{m}", grain.table)),
                    "{m}"
                );
            }
            assert!(s.contains(&format!(
                "ON CONFLICT ({}, {})",
                grain.period,
                UNIT_KEYS.join(", ")
            )));
        }
        assert_eq!(KEYS[0], HOUR.period);
        assert_eq!(&KEYS[1..], UNIT_KEYS);
    }
}
