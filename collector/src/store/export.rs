//! The OpenTelemetry export's reads and cursors (`otel_export_cursor`, one row per
//! signal): stored usage records after a cursor, and the cursor's moves
//! (`crate::otlp_export` drives them).

use sqlx::AnyConnection;

use crate::db::{Db, DbError, Param, bind_all, dberr, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::otlp::ExportRecord;

/// Create the cursor `name` at `now_ms` unless it exists.
pub(crate) async fn create_cursor(db: &Db, name: &str, now_ms: i64) -> Result<(), DbError> {
    db.exec(
        "INSERT INTO otel_export_cursor (name, received_ms, last_id, updated_ms) VALUES ($1, $2, '', $2) ON CONFLICT (name) DO NOTHING",
        &[Param::Text(name.to_owned()), Param::I64(now_ms)],
        "creating the export cursor",
    )
    .await?;
    Ok(())
}

/// Columns read per record, in [`ExportRecord`] order.
const COLUMNS: &str = "id, received_ms, api_key_id, ts_start, ts_end, org, department, project, grp, usr, provider, model, route_mode, route_tier, route_score, \
prompt_tokens, completion_tokens, cached_prompt_tokens, cache_write_tokens, reasoning_tokens, client_cost_micros, spend_micros, cost_mismatch, priced_as, \
latency_ms, ttft_ms, status, attempts, stream, tags, sdk_name, sdk_version, sdk_language, denied_rule, denied_level";

fn record_of(r: &sqlx::any::AnyRow) -> Result<ExportRecord, DbError> {
    let tags: String = get_str(r, 29)?;
    Ok(ExportRecord {
        id: get_str(r, 0)?,
        received_ms: get_i64(r, 1)?,
        api_key_id: get_str(r, 2)?,
        ts_start: get_i64(r, 3)?,
        ts_end: get_i64(r, 4)?,
        org: get_str(r, 5)?,
        department: get_opt_str(r, 6)?,
        project: get_opt_str(r, 7)?,
        group: get_opt_str(r, 8)?,
        user: get_opt_str(r, 9)?,
        provider: get_str(r, 10)?,
        model: get_str(r, 11)?,
        route_mode: get_opt_str(r, 12)?,
        route_tier: get_opt_str(r, 13)?,
        route_score: get_opt_i64(r, 14)?,
        prompt_tokens: get_i64(r, 15)?,
        completion_tokens: get_i64(r, 16)?,
        cached_prompt_tokens: get_i64(r, 17)?,
        cache_write_tokens: get_i64(r, 18)?,
        reasoning_tokens: get_i64(r, 19)?,
        client_cost_micros: get_i64(r, 20)?,
        spend_micros: get_i64(r, 21)?,
        cost_mismatch: get_i64(r, 22)? != 0,
        priced_as: get_opt_str(r, 23)?,
        latency_ms: get_i64(r, 24)?,
        ttft_ms: get_opt_i64(r, 25)?,
        status: get_str(r, 26)?,
        attempts: get_i64(r, 27)?,
        stream: get_i64(r, 28)? != 0,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        sdk: (get_str(r, 30)?, get_str(r, 31)?, get_str(r, 32)?),
        denied_rule: get_opt_str(r, 33)?,
        denied_level: get_opt_str(r, 34)?,
    })
}

/// A cursor: the `(received_ms, id)` of the last record delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// `received_ms` of the last record delivered.
    pub received_ms: i64,
    /// Its id.
    pub last_id: String,
}

/// The cursor `name`; with `lock` (PostgreSQL, in a transaction) `FOR UPDATE SKIP
/// LOCKED`, so `None` also when another transaction holds it.
pub(crate) async fn read_cursor(
    conn: &mut AnyConnection,
    name: &str,
    lock: bool,
) -> Result<Option<Cursor>, DbError> {
    let sql = if lock {
        "SELECT received_ms, last_id FROM otel_export_cursor WHERE name = $1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT received_ms, last_id FROM otel_export_cursor WHERE name = $1"
    };
    let rows = bind_all(sql, &[Param::Text(name.to_owned())])
        .fetch_all(&mut *conn)
        .await
        .map_err(dberr("reading the export cursor"))?;
    rows.first()
        .map(|r| {
            Ok(Cursor {
                received_ms: get_i64(r, 0)?,
                last_id: get_str(r, 1)?,
            })
        })
        .transpose()
}

/// At most `limit` records after `after` received at `settled_ms` or before, in
/// `(received_ms, id)` order.
pub(crate) async fn read_batch(
    conn: &mut AnyConnection,
    after: &Cursor,
    settled_ms: i64,
    limit: usize,
) -> Result<Vec<ExportRecord>, DbError> {
    let sql = format!(
        // `received_ms >= $1 AND received_ms <= $3` is the range of index usage_received
        // (both backends scan it in order and stop at the limit); the OR skips what the
        // cursor already covers.
        "SELECT {COLUMNS} FROM usage_records WHERE received_ms >= $1 AND received_ms <= $3 AND (received_ms > $1 OR id > $2) ORDER BY received_ms, id LIMIT $4"
    );
    let params = [
        Param::I64(after.received_ms),
        Param::Text(after.last_id.clone()),
        Param::I64(settled_ms),
        Param::I64(i64::try_from(limit).unwrap_or(i64::MAX)),
    ];
    let rows = bind_all(&sql, &params)
        .fetch_all(&mut *conn)
        .await
        .map_err(dberr("reading records to export"))?;
    rows.iter().map(record_of).collect()
}

/// Move the cursor from `from` to `to`; false when it was not at `from` any more.
pub(crate) async fn advance(
    conn: &mut AnyConnection,
    name: &str,
    from: &Cursor,
    to: &Cursor,
    now_ms: i64,
) -> Result<bool, DbError> {
    let params = [
        Param::I64(to.received_ms),
        Param::Text(to.last_id.clone()),
        Param::I64(now_ms),
        Param::Text(name.to_owned()),
        Param::I64(from.received_ms),
        Param::Text(from.last_id.clone()),
    ];
    let r = bind_all("UPDATE otel_export_cursor SET received_ms = $1, last_id = $2, updated_ms = $3 WHERE name = $4 AND received_ms = $5 AND last_id = $6", &params)
        .execute(&mut *conn)
        .await
        .map_err(dberr("moving the export cursor"))?;
    Ok(r.rows_affected() == 1)
}
