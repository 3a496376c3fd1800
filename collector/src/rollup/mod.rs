//! Usage rollups at three grains (hour, UTC day, month), each one row per period × org ×
//! department × project × group × member × key × provider × model × route tier × route
//! mode × status, with calls, errors, denials, tokens, spend (exact micro-dollars),
//! client cost, routing baseline, summed latency, cost mismatches and the times of the
//! last call. Missing units are stored as `''` (so the primary key can hold them).
//! [`schema`] defines the tables; analytics picks the coarsest grain whose periods tile
//! the asked range exactly (months, then days, then hours), and the raw records only
//! when none does (a tag filter, a range not on whole hours) or for percentiles.
//!
//! Every grain is maintained at ingest in the same transaction as the raw rows
//! ([`apply`], called by `ingest::store` with the sums of the records it inserted) with
//! `INSERT ... ON CONFLICT DO UPDATE SET x = <table>.x + excluded.x`, so several
//! collectors sharing one PostgreSQL database never lose an update (the conflicting row
//! is locked and re-read). [`rebuild`] recomputes them from the raw records (after a
//! restore, or to check them).

/// The tables' definitions (`crate::rollup_schema`: pure data, below `db`, whose
/// migrations create the tables from them).
pub use crate::rollup_schema as schema;

use std::collections::BTreeMap;

use sqlx::AnyConnection;

use crate::db::{Backend, Db, DbError, Param, bind_all, dberr, placeholders};
use schema::Layout;
pub use schema::{
    Agg, DAY, GRAINS, Grain, HOUR, LATENCY, LATENCY_UNITS, LatencyMetric, MEASURES, MONTH, Measure,
    N_LATENCY_UNITS, N_MEASURES, N_TAG_MEASURES, N_TAG_UNITS, N_UNITS, TAG_MEASURES, TAG_UNITS,
    TAGS, UNIT_KEYS, latency_bucket,
};
use schema::{LATENCY_UNIT_INDEX, TAG_MEASURE_INDEX, TAG_UNIT_INDEX};

/// The unit values of one rollup row, in [`UNIT_KEYS`] order (`''` for an absent unit).
pub type Units = [String; N_UNITS];
/// The measures of one rollup row, in [`MEASURES`] order.
pub type Measures = [i64; N_MEASURES];
/// The unit values of one latency histogram row, in [`LATENCY_UNITS`] order.
pub type LatencyUnits = [String; N_LATENCY_UNITS];
/// (month, units, metric, bucket) of a latency histogram row.
type LatencyKey = (i64, LatencyUnits, LatencyMetric, i64);
/// (month, units, tag key, tag value) of a tag rollup row.
type TagKey = (i64, [String; N_TAG_UNITS], String, String);

/// What a set of new records adds to each grain: (period, units) → combined measures,
/// sorted, so every collector upserts rows in the same order (no lock-order deadlock
/// between collectors sharing a PostgreSQL database).
#[derive(Debug, Default)]
pub struct Deltas {
    rows: [BTreeMap<(i64, Units), Measures>; GRAINS.len()],
    /// Latency histograms: (calls, errors) per bucket.
    latency: BTreeMap<LatencyKey, [i64; 2]>,
    /// Tag rollups, [`TAG_MEASURES`] per tag.
    tags: BTreeMap<TagKey, [i64; N_TAG_MEASURES]>,
}

impl Deltas {
    /// Add one record: the start of its call (Unix ms), its `month` (`yyyymm`), units
    /// and measures.
    pub fn add(&mut self, ts_start_ms: i64, month: i64, units: Units, measures: Measures) {
        for (rows, grain) in self.rows.iter_mut().zip(GRAINS) {
            let period = grain.period_of(ts_start_ms, month);
            match rows.entry((period, units.clone())) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(measures);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    combine(e.get_mut(), &measures);
                }
            }
        }
    }
}

impl Deltas {
    /// Add one new record to every table: the start of its call (Unix ms), its `month`
    /// (`yyyymm`), rollup units and measures (one record's), its time to first token
    /// (streamed calls) and its tags.
    pub fn add_record<'a>(
        &mut self,
        ts_start_ms: i64,
        month: i64,
        units: Units,
        measures: Measures,
        ttft_ms: Option<i64>,
        tags: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) {
        let errors = measures[schema::measure_index("errors")];
        let latency_ms = measures[schema::measure_index("latency_ms_sum")];
        let latency_units = LATENCY_UNIT_INDEX.map(|j| units[j].clone());
        for (metric, ms) in [
            (LatencyMetric::Latency, Some(latency_ms)),
            (LatencyMetric::Ttft, ttft_ms),
        ] {
            if let Some(ms) = ms {
                let key = (month, latency_units.clone(), metric, latency_bucket(ms));
                let e = self.latency.entry(key).or_insert([0; 2]);
                e[0] += 1;
                e[1] += errors;
            }
        }
        let tag_units = TAG_UNIT_INDEX.map(|j| units[j].clone());
        let tag_measures = TAG_MEASURE_INDEX.map(|j| measures[j]);
        for (k, v) in tags {
            let key = (month, tag_units.clone(), k.clone(), v.clone());
            let e = self.tags.entry(key).or_insert([0; N_TAG_MEASURES]);
            for (a, b) in e.iter_mut().zip(tag_measures) {
                *a = a.saturating_add(b);
            }
        }
        self.add(ts_start_ms, month, units, measures);
    }
}

/// Fold `b` into `a`, measure by measure.
fn combine(a: &mut Measures, b: &Measures) {
    for ((x, y), m) in a.iter_mut().zip(b).zip(MEASURES) {
        *x = match m.agg {
            Agg::Sum => x.saturating_add(*y),
            Agg::Max => (*x).max(*y),
        };
    }
}

/// Rows per upsert statement (at most 26 columns: under SQLite's 32 766 variables).
const ROWS_PER_UPSERT: usize = 1_000;

/// The multi-row upsert of `rows` rows into the table of `layout`: sums add, maxima keep
/// the larger.
fn upsert_sql(layout: &Layout, rows: usize, backend: Backend) -> String {
    let t = layout.table;
    let max = match backend {
        Backend::Sqlite => "MAX",
        Backend::Postgres => "GREATEST",
    };
    let sets = layout
        .measures
        .iter()
        .map(|(n, agg)| match agg {
            Agg::Sum => format!("{n} = {t}.{n} + excluded.{n}"),
            Agg::Max => format!("{n} = {max}({t}.{n}, excluded.{n})"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let keys = layout.key_columns();
    format!(
        "INSERT INTO {t} ({keys}, {}) VALUES {} ON CONFLICT ({keys}) DO UPDATE SET {sets}",
        layout.measure_columns(),
        placeholders(rows, layout.width(), backend),
    )
}

/// Upsert `rows` (each the period, the keys and the measures of `layout`, in order).
async fn upsert(
    tx: &mut AnyConnection,
    backend: Backend,
    layout: &Layout,
    mut rows: impl Iterator<Item = Vec<Param>>,
) -> Result<(), DbError> {
    loop {
        let mut params = Vec::new();
        let mut n = 0;
        for row in rows.by_ref().take(ROWS_PER_UPSERT) {
            params.extend(row);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        bind_all(&upsert_sql(layout, n, backend), &params)
            .execute(&mut *tx)
            .await
            .map_err(dberr(&format!("updating {}", layout.table)))?;
    }
}

fn texts<'a>(v: impl IntoIterator<Item = &'a String>) -> impl Iterator<Item = Param> {
    v.into_iter().map(|u| Param::Text(u.clone()))
}

/// Add the records just inserted (by this transaction) to every rollup: one multi-row
/// upsert per table, from values computed in memory ([`Deltas`]) instead of reading the
/// new raw rows back. Call it inside the ingest transaction with exactly the records
/// that were new (not duplicates).
pub async fn apply(
    tx: &mut AnyConnection,
    backend: Backend,
    deltas: &Deltas,
) -> Result<(), DbError> {
    for (grain, rows) in GRAINS.into_iter().zip(&deltas.rows) {
        let rows = rows.iter().map(|((period, units), measures)| {
            std::iter::once(Param::I64(*period))
                .chain(texts(units))
                .chain(measures.iter().map(|m| Param::I64(*m)))
                .collect()
        });
        upsert(tx, backend, &schema::layout(grain), rows).await?;
    }
    let rows = deltas
        .latency
        .iter()
        .map(|((month, units, metric, le), [calls, errors])| {
            std::iter::once(Param::I64(*month))
                .chain(texts(units))
                .chain([
                    Param::Text(metric.as_str().to_owned()),
                    Param::I64(*le),
                    Param::I64(*calls),
                    Param::I64(*errors),
                ])
                .collect()
        });
    upsert(tx, backend, &schema::latency_layout(), rows).await?;
    let rows = deltas.tags.iter().map(|((month, units, k, v), measures)| {
        std::iter::once(Param::I64(*month))
            .chain(texts(units))
            .chain(texts([k, v]))
            .chain(measures.iter().map(|m| Param::I64(*m)))
            .collect()
    });
    upsert(tx, backend, &schema::tags_layout(), rows).await
}

/// Recompute every rollup (and the latency histograms) from the raw records, in one
/// write transaction; returns the number of rows written (all tables).
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
        let n = bind_all(&schema::fill_sql(grain, ""), &[])
            .execute(&mut *tx)
            .await
            .map_err(dberr("rebuilding usage rollups"))?
            .rows_affected();
        written += n;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {}",
        LATENCY.table
    )))
    .execute(&mut *tx)
    .await
    .map_err(dberr("clearing latency histograms"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", TAGS.table)))
        .execute(&mut *tx)
        .await
        .map_err(dberr("clearing tag rollups"))?;
    let fills = schema::fill_latency_sql()
        .into_iter()
        .chain([schema::fill_tags_sql()]);
    for sql in fills {
        written += bind_all(&sql, &[])
            .execute(&mut *tx)
            .await
            .map_err(dberr("rebuilding latency histograms"))?
            .rows_affected();
    }
    tx.commit()
        .await
        .map_err(dberr("committing the rollup rebuild"))?;
    Ok(written)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upsert_combines_every_measure() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            for grain in GRAINS {
                let s = upsert_sql(&schema::layout(grain), 2, backend);
                let t = grain.table;
                for m in MEASURES {
                    let n = m.name;
                    let want = match (m.agg, backend) {
                        (Agg::Sum, _) => format!("{n} = {t}.{n} + excluded.{n}"),
                        (Agg::Max, Backend::Sqlite) => format!("{n} = MAX({t}.{n}, excluded.{n})"),
                        (Agg::Max, Backend::Postgres) => {
                            format!("{n} = GREATEST({t}.{n}, excluded.{n})")
                        }
                    };
                    assert!(s.contains(&want), "{want}");
                }
                assert!(s.contains(&format!(
                    "ON CONFLICT ({}, {})",
                    grain.period,
                    UNIT_KEYS.join(", ")
                )));
            }
        }
    }

    #[test]
    fn deltas_sum_and_keep_the_latest() {
        let units: Units = Default::default();
        let mut a = [1; N_MEASURES];
        a[12] = 50;
        let mut b = [2; N_MEASURES];
        b[12] = 40;
        let mut d = Deltas::default();
        d.add(7_200_000, 197001, units.clone(), a);
        d.add(7_300_000, 197001, units.clone(), b);
        for rows in &d.rows {
            assert_eq!(rows.len(), 1);
            let m = rows.values().next().unwrap();
            assert_eq!(m[0], 3);
            assert_eq!(m[12], 50, "last_start_ms keeps the larger");
        }
    }
}
