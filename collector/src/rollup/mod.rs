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

pub mod schema;

use std::collections::BTreeMap;

use sqlx::AnyConnection;

use crate::db::{Backend, Db, DbError, Param, bind_all, dberr, placeholders};
pub use schema::{
    Agg, DAY, GRAINS, Grain, HOUR, LATENCY, LATENCY_UNITS, LatencyMetric, MEASURES, MONTH, Measure,
    N_LATENCY_UNITS, N_MEASURES, N_TAG_MEASURES, N_TAG_UNITS, N_UNITS, TAG_MEASURES, TAG_UNITS,
    TAGS, UNIT_KEYS, latency_bucket,
};

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

/// The values of the unit columns `keys` among a rollup row's units.
fn pick_units<const N: usize>(units: &Units, keys: &[&str]) -> [String; N] {
    std::array::from_fn(|i| {
        UNIT_KEYS
            .iter()
            .position(|k| Some(k) == keys.get(i))
            .map(|j| units[j].clone())
            .unwrap_or_default()
    })
}

/// The latency histogram units of a rollup row's units.
pub fn latency_units(units: &Units) -> LatencyUnits {
    pick_units(units, LATENCY_UNITS)
}

impl Deltas {
    /// Add one record's tags to the tag rollups: its `month`, rollup units, tags and
    /// measures (as for [`Deltas::add`]).
    pub fn add_tags<'a>(
        &mut self,
        month: i64,
        units: &Units,
        tags: impl IntoIterator<Item = (&'a String, &'a String)>,
        measures: &Measures,
    ) {
        let tag_units: [String; N_TAG_UNITS] = pick_units(units, TAG_UNITS);
        let add: [i64; N_TAG_MEASURES] = std::array::from_fn(|i| {
            MEASURES
                .iter()
                .position(|m| m.name == TAG_MEASURES[i].name)
                .map_or(0, |j| measures[j])
        });
        for (k, v) in tags {
            let key = (month, tag_units.clone(), k.clone(), v.clone());
            let e = self.tags.entry(key).or_insert([0; N_TAG_MEASURES]);
            for (a, b) in e.iter_mut().zip(add) {
                *a = a.saturating_add(b);
            }
        }
    }

    /// Add one record's times to the latency histograms: its `month`, units, whole-call
    /// latency, time to first token (streamed calls) and whether it failed.
    pub fn add_latency(
        &mut self,
        month: i64,
        units: LatencyUnits,
        latency_ms: i64,
        ttft_ms: Option<i64>,
        is_error: i64,
    ) {
        let times = [
            (LatencyMetric::Latency, Some(latency_ms)),
            (LatencyMetric::Ttft, ttft_ms),
        ];
        for (metric, ms) in times {
            if let Some(ms) = ms {
                let key = (month, units.clone(), metric, latency_bucket(ms));
                let e = self.latency.entry(key).or_insert([0; 2]);
                e[0] += 1;
                e[1] += is_error;
            }
        }
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

/// `SET` list of the upsert into `table`: sums add, maxima keep the larger.
fn upsert_sets(table: &str, backend: Backend) -> String {
    let max = match backend {
        Backend::Sqlite => "MAX",
        Backend::Postgres => "GREATEST",
    };
    MEASURES
        .iter()
        .map(|m| match m.agg {
            Agg::Sum => format!("{n} = {table}.{n} + excluded.{n}", n = m.name),
            Agg::Max => format!("{n} = {max}({table}.{n}, excluded.{n})", n = m.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parameters per upserted row: the period, the units, the measures.
const PARAMS_PER_ROW: usize = 1 + N_UNITS + N_MEASURES;
/// Rows per upsert statement (under SQLite's 32 766 variables).
const ROWS_PER_UPSERT: usize = 1_000;

/// The multi-row upsert of `rows` rows into `grain`.
fn upsert_sql(grain: Grain, rows: usize, backend: Backend) -> String {
    let t = grain.table;
    let keys = format!("{}, {}", grain.period, UNIT_KEYS.join(", "));
    format!(
        "INSERT INTO {t} ({keys}, {}) VALUES {} ON CONFLICT ({keys}) DO UPDATE SET {}",
        schema::measure_names(),
        placeholders(rows, PARAMS_PER_ROW, backend),
        upsert_sets(t, backend)
    )
}

/// Add the records just inserted (by this transaction) to every rollup: one multi-row
/// upsert per grain, from values computed in memory ([`Deltas`]) instead of reading the
/// new raw rows back. Call it inside the ingest transaction with exactly the records
/// that were new (not duplicates).
pub async fn apply(
    tx: &mut AnyConnection,
    backend: Backend,
    deltas: &Deltas,
) -> Result<(), DbError> {
    for (grain, rows) in GRAINS.into_iter().zip(&deltas.rows) {
        let rows: Vec<(&(i64, Units), &Measures)> = rows.iter().collect();
        for chunk in rows.chunks(ROWS_PER_UPSERT) {
            let mut params = Vec::with_capacity(chunk.len() * PARAMS_PER_ROW);
            for ((period, units), measures) in chunk {
                params.push(Param::I64(*period));
                params.extend(units.iter().map(|u| Param::Text(u.clone())));
                params.extend(measures.iter().map(|m| Param::I64(*m)));
            }
            bind_all(&upsert_sql(grain, chunk.len(), backend), &params)
                .execute(&mut *tx)
                .await
                .map_err(dberr("updating usage rollups"))?;
        }
    }
    let rows: Vec<(&LatencyKey, &[i64; 2])> = deltas.latency.iter().collect();
    let keys = format!(
        "{}, {}, metric, le_ms",
        LATENCY.period,
        LATENCY_UNITS.join(", ")
    );
    let per_row = N_LATENCY_UNITS + 5;
    for chunk in rows.chunks(ROWS_PER_UPSERT) {
        let mut params = Vec::with_capacity(chunk.len() * per_row);
        for ((month, units, metric, le), [calls, errors]) in chunk {
            params.push(Param::I64(*month));
            params.extend(units.iter().map(|u| Param::Text(u.clone())));
            params.push(Param::Text(metric.as_str().to_owned()));
            params.extend([Param::I64(*le), Param::I64(*calls), Param::I64(*errors)]);
        }
        let t = LATENCY.table;
        let sql = format!(
            "INSERT INTO {t} ({keys}, calls, errors) VALUES {} ON CONFLICT ({keys}) DO UPDATE SET calls = {t}.calls + excluded.calls, errors = {t}.errors + excluded.errors",
            placeholders(chunk.len(), per_row, backend)
        );
        bind_all(&sql, &params)
            .execute(&mut *tx)
            .await
            .map_err(dberr("updating latency histograms"))?;
    }
    let rows: Vec<(&TagKey, &[i64; N_TAG_MEASURES])> = deltas.tags.iter().collect();
    let t = TAGS.table;
    let keys = format!("{}, {}, k, v", TAGS.period, TAG_UNITS.join(", "));
    let names: Vec<&str> = TAG_MEASURES.iter().map(|m| m.name).collect();
    let sets = names
        .iter()
        .map(|n| format!("{n} = {t}.{n} + excluded.{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let per_row = 1 + N_TAG_UNITS + 2 + N_TAG_MEASURES;
    for chunk in rows.chunks(ROWS_PER_UPSERT) {
        let mut params = Vec::with_capacity(chunk.len() * per_row);
        for ((month, units, k, v), measures) in chunk {
            params.push(Param::I64(*month));
            params.extend(units.iter().map(|u| Param::Text(u.clone())));
            params.extend([Param::Text(k.clone()), Param::Text(v.clone())]);
            params.extend(measures.iter().map(|m| Param::I64(*m)));
        }
        let sql = format!(
            "INSERT INTO {t} ({keys}, {}) VALUES {} ON CONFLICT ({keys}) DO UPDATE SET {sets}",
            names.join(", "),
            placeholders(chunk.len(), per_row, backend)
        );
        bind_all(&sql, &params)
            .execute(&mut *tx)
            .await
            .map_err(dberr("updating tag rollups"))?;
    }
    Ok(())
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
                let s = upsert_sql(grain, 2, backend);
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
