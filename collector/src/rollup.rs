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
//! called by `ingest::store` with the sums of the records it inserted) with
//! `INSERT ... ON CONFLICT DO UPDATE SET x = <table>.x + excluded.x`, so several
//! collectors sharing one PostgreSQL database never lose an update (the conflicting row
//! is locked and re-read). [`rebuild`] recomputes both from the raw records (after a
//! restore, or to check them).

use std::collections::BTreeMap;

use sqlx::AnyConnection;

use crate::db::{Backend, Db, DbError, Param, bind_all, dberr, placeholders};

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

/// The unit values of one rollup row, in [`UNIT_KEYS`] order (`''` for an absent unit).
pub type Units = [String; 10];
/// The measures of one rollup row, in [`MEASURES`] order.
pub type Measures = [i64; 11];

/// What a set of new records adds to each grain: (period, units) → summed measures,
/// sorted, so every collector upserts rows in the same order (no lock-order deadlock
/// between collectors sharing a PostgreSQL database).
#[derive(Debug, Default)]
pub struct Deltas {
    rows: [BTreeMap<(i64, Units), Measures>; 2],
}

impl Deltas {
    /// Add one record: the start of its call (Unix ms), its `month` (`yyyymm`), units
    /// and measures.
    pub fn add(&mut self, ts_start_ms: i64, month: i64, units: Units, measures: Measures) {
        let periods = [(ts_start_ms / 3_600_000) * 3_600_000, month];
        for (rows, period) in self.rows.iter_mut().zip(periods) {
            let e = rows.entry((period, units.clone())).or_insert([0; 11]);
            for (a, b) in e.iter_mut().zip(measures) {
                *a = a.saturating_add(b);
            }
        }
    }
}

/// Rows per upsert statement (22 parameters each: under SQLite's 32 766 variables).
const ROWS_PER_UPSERT: usize = 1_000;

/// Add the records just inserted (by this transaction) to every rollup: one multi-row
/// upsert per grain, from values computed in memory ([`Deltas`]) instead of reading the
/// new raw rows back. Call it inside the ingest transaction with exactly the records
/// that were new (not duplicates).
pub async fn apply(
    tx: &mut AnyConnection,
    backend: Backend,
    deltas: &Deltas,
) -> Result<(), DbError> {
    for (grain, rows) in GRAINS.iter().zip(&deltas.rows) {
        let rows: Vec<(&(i64, Units), &Measures)> = rows.iter().collect();
        let t = grain.table;
        let keys = format!("{}, {}", grain.period, UNIT_KEYS.join(", "));
        let sets = MEASURES
            .iter()
            .map(|m| format!("{m} = {t}.{m} + excluded.{m}"))
            .collect::<Vec<_>>()
            .join(", ");
        for chunk in rows.chunks(ROWS_PER_UPSERT) {
            let mut params = Vec::with_capacity(chunk.len() * 22);
            for ((period, units), measures) in chunk {
                params.push(Param::I64(*period));
                params.extend(units.iter().map(|u| Param::Text(u.clone())));
                params.extend(measures.iter().map(|m| Param::I64(*m)));
            }
            let sql = format!(
                "INSERT INTO {t} ({keys}, {}) VALUES {} ON CONFLICT ({keys}) DO UPDATE SET {sets}",
                MEASURES.join(", "),
                placeholders(chunk.len(), 22, backend)
            );
            bind_all(&sql, &params)
                .execute(&mut *tx)
                .await
                .map_err(dberr("updating usage rollups"))?;
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
