//! Usage records as stored (`usage_records`, their tags in `usage_tags`, the per-org id
//! claims of `usage_record_keys`): the rows ingest inserts, in the caller's transaction.

use std::collections::HashSet;

use gaterouter::usage::UsageRecord;
use sqlx::AnyConnection;

use crate::db::{
    Backend, DbError, Param, USAGE_RECORD_COLUMNS, bind_all, dberr, get_str, placeholders,
};
use crate::time::month_of_ms;
use crate::verified::Verified;

/// Columns of `usage_records` ([`USAGE_RECORD_COLUMNS`]).
const NCOLS: usize = 43;
/// Rows per INSERT statement (43 columns x 400 rows stays under SQLite's 32 766 variables).
pub(crate) const ROWS_PER_STATEMENT: usize = 400;

/// A count or time as a stored integer (`i64::MAX` when it does not fit).
pub(super) fn i(v: u64) -> Param {
    Param::I64(i64::try_from(v).unwrap_or(i64::MAX))
}

/// What the stored row derives from a record: its status text, whether it counts as an
/// error, and its spend (the collector's price when it has one, else the client's).
pub(crate) fn outcome(v: &Verified) -> (&'static str, i64, u64) {
    let status = v.rec.status.as_str();
    let is_error = i64::from(status != "ok" && status != "cancelled" && status != "denied");
    (
        status,
        is_error,
        v.collector_cost.unwrap_or(v.rec.cost_micros),
    )
}

/// The stored name of the record's route mode (`auto`, `explicit`), if it was routed.
pub(crate) fn route_mode(r: &UsageRecord) -> Option<String> {
    r.route.as_ref().map(|x| {
        serde_json::to_value(x.mode)
            .ok()
            .and_then(|m| m.as_str().map(str::to_owned))
            .unwrap_or_default()
    })
}

fn row_params(v: &Verified, received_ms: i64, out: &mut Vec<Param>) {
    let r = &v.rec;
    let route = r.route.as_ref();
    let (status, is_error, spend) = outcome(v);
    let status = status.to_owned();
    out.extend([
        Param::Text(r.id.0.clone()),
        Param::Text(r.api_key_id.clone()),
        i(r.seq),
        i(r.ts_start),
        i(r.ts_end),
        Param::I64(month_of_ms(r.ts_start)),
        Param::Text(r.org.clone().unwrap_or_default()),
        Param::OptText(r.department.clone()),
        Param::OptText(r.project.clone()),
        Param::OptText(r.group.clone()),
        Param::OptText(r.user.clone()),
        Param::Text(r.provider.clone()),
        Param::Text(r.model.clone()),
        Param::OptText(route_mode(r)),
        Param::OptText(route.and_then(|x| x.tier.clone())),
        Param::OptI64(route.and_then(|x| x.score)),
        i(r.prompt_tokens),
        i(r.completion_tokens),
        i(r.cached_prompt_tokens),
        i(r.cache_write_tokens),
        i(r.reasoning_tokens),
        i(r.prompt_tokens.saturating_add(r.completion_tokens)),
        i(r.cost_micros),
        Param::OptI64(
            v.collector_cost
                .map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
        ),
        Param::OptText(v.priced_as.clone()),
        Param::I64(i64::from(v.mismatch)),
        i(spend),
        Param::OptI64(v.baseline.map(|c| i64::try_from(c).unwrap_or(i64::MAX))),
        i(r.latency_ms),
        Param::OptI64(
            r.time_to_first_token_ms
                .map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
        ),
        Param::Text(status),
        Param::I64(is_error),
        Param::I64(i64::from(r.attempts)),
        Param::I64(i64::from(r.stream)),
        Param::Text(serde_json::to_string(&r.tags).unwrap_or_else(|_| "{}".into())),
        Param::Text(r.sdk.name.clone()),
        Param::Text(r.sdk.version.clone()),
        Param::Text(r.sdk.language.clone()),
        Param::Text(v.signature.clone()),
        Param::I64(received_ms),
        Param::OptText(r.denied_rule.clone()),
        Param::OptText(r.denied_level.clone()),
        Param::OptText((!v.attributed.is_empty()).then(|| v.attributed.join(","))),
    ]);
}

/// Claim the records' (org, id) in `usage_record_keys`; returns the claimed ones (the
/// others are duplicates).
///
/// PostgreSQL (several collectors may insert at once): `ON CONFLICT DO NOTHING`; when it
/// inserted every row of a chunk (the usual case) they are all claimed, else the chunk is
/// undone (savepoint) and inserted again with `RETURNING`, which says which rows this
/// transaction inserted. SQLite (the caller holds the write lock):
/// one query finds the ids already stored (usually none) and the rest are inserted
/// without `RETURNING`, which saves streaming a row back per record (about a third of the
/// batch's write time, measured with `collector_bench`).
pub(crate) async fn claim_ids(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    recs: &[Verified],
) -> Result<HashSet<(String, String)>, DbError> {
    let mut claimed: HashSet<(String, String)> = HashSet::new();
    let key = |v: &Verified| (v.org().to_owned(), v.rec.id.0.clone());
    if backend == Backend::Sqlite {
        let mut todo: Vec<(String, String, i64)> = Vec::with_capacity(recs.len());
        let mut seen: HashSet<(String, String)> = HashSet::new();
        for v in recs {
            if seen.insert(key(v)) {
                let (o, id) = key(v);
                todo.push((o, id, month_of_ms(v.rec.ts_start)));
            }
        }
        let mut stored: HashSet<(String, String)> = HashSet::new();
        for chunk in todo.chunks(ROWS_PER_STATEMENT) {
            let params: Vec<Param> = chunk
                .iter()
                .flat_map(|(o, id, _)| [Param::Text(o.clone()), Param::Text(id.clone())])
                .collect();
            let sql = format!(
                "SELECT org, id FROM usage_record_keys WHERE (org, id) IN (VALUES {})",
                placeholders(chunk.len(), 2, backend)
            );
            for r in bind_all(&sql, &params)
                .fetch_all(&mut *tx)
                .await
                .map_err(dberr("looking up usage record ids"))?
            {
                stored.insert((get_str(&r, 0)?, get_str(&r, 1)?));
            }
        }
        todo.retain(|(o, id, _)| !stored.contains(&(o.clone(), id.clone())));
        for chunk in todo.chunks(ROWS_PER_STATEMENT) {
            let params: Vec<Param> = chunk
                .iter()
                .flat_map(|(o, id, m)| {
                    [
                        Param::Text(o.clone()),
                        Param::Text(id.clone()),
                        Param::I64(*m),
                    ]
                })
                .collect();
            let sql = format!(
                "INSERT INTO usage_record_keys (org, id, month) VALUES {}",
                placeholders(chunk.len(), 3, backend)
            );
            bind_all(&sql, &params)
                .execute(&mut *tx)
                .await
                .map_err(dberr("claiming usage record ids"))?;
        }
        claimed.extend(todo.into_iter().map(|(o, id, _)| (o, id)));
        return Ok(claimed);
    }
    for chunk in recs.chunks(ROWS_PER_STATEMENT) {
        let params: Vec<Param> = chunk
            .iter()
            .flat_map(|v| {
                [
                    Param::Text(v.org().to_owned()),
                    Param::Text(v.rec.id.0.clone()),
                    Param::I64(month_of_ms(v.rec.ts_start)),
                ]
            })
            .collect();
        let values = placeholders(chunk.len(), 3, backend);
        // Usually every id is new: insert without RETURNING and count. When some were
        // not inserted, undo this chunk and insert again saying which ones were.
        sqlx::query("SAVEPOINT claim_ids")
            .execute(&mut *tx)
            .await
            .map_err(dberr("claiming usage record ids"))?;
        let sql = format!(
            "INSERT INTO usage_record_keys (org, id, month) VALUES {values} ON CONFLICT (org, id) DO NOTHING"
        );
        let n = bind_all(&sql, &params)
            .execute(&mut *tx)
            .await
            .map_err(dberr("claiming usage record ids"))?
            .rows_affected();
        if usize::try_from(n).is_ok_and(|n| n == chunk.len()) {
            sqlx::query("RELEASE SAVEPOINT claim_ids")
                .execute(&mut *tx)
                .await
                .map_err(dberr("claiming usage record ids"))?;
            claimed.extend(chunk.iter().map(key));
            continue;
        }
        sqlx::query("ROLLBACK TO SAVEPOINT claim_ids")
            .execute(&mut *tx)
            .await
            .map_err(dberr("claiming usage record ids"))?;
        let sql = format!(
            "INSERT INTO usage_record_keys (org, id, month) VALUES {values} ON CONFLICT (org, id) DO NOTHING RETURNING org, id"
        );
        for r in bind_all(&sql, &params)
            .fetch_all(&mut *tx)
            .await
            .map_err(dberr("claiming usage record ids"))?
        {
            claimed.insert((get_str(&r, 0)?, get_str(&r, 1)?));
        }
    }
    Ok(claimed)
}

/// Insert the rows of `stored` (records whose id [`claim_ids`] claimed) into
/// `usage_records`, stamped `received_ms`.
pub(crate) async fn insert_records(
    conn: &mut AnyConnection,
    backend: Backend,
    stored: &[&Verified],
    received_ms: i64,
) -> Result<(), DbError> {
    for chunk in stored.chunks(ROWS_PER_STATEMENT) {
        let mut params = Vec::with_capacity(chunk.len() * NCOLS);
        for v in chunk {
            row_params(v, received_ms, &mut params);
        }
        let sql = format!(
            "INSERT INTO usage_records ({USAGE_RECORD_COLUMNS}) VALUES {}",
            placeholders(chunk.len(), NCOLS, backend)
        );
        bind_all(&sql, &params)
            .execute(&mut *conn)
            .await
            .map_err(dberr("inserting usage records"))?;
    }
    Ok(())
}

/// Insert the tags of `stored` into `usage_tags` (per org and record).
pub(crate) async fn insert_tags(
    conn: &mut AnyConnection,
    backend: Backend,
    stored: &[&Verified],
) -> Result<(), DbError> {
    let tag_params: Vec<Param> = stored
        .iter()
        .flat_map(|v| {
            v.rec.tags.iter().flat_map(|(k, val)| {
                [
                    Param::Text(v.org().to_owned()),
                    Param::Text(v.rec.id.0.clone()),
                    Param::Text(k.clone()),
                    Param::Text(val.clone()),
                ]
            })
        })
        .collect();
    for chunk in tag_params.chunks(4 * 2000) {
        let sql = format!(
            "INSERT INTO usage_tags (org, record_id, k, v) VALUES {} ON CONFLICT DO NOTHING",
            placeholders(chunk.len() / 4, 4, backend)
        );
        bind_all(&sql, chunk)
            .execute(&mut *conn)
            .await
            .map_err(dberr("inserting usage tags"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_has_a_value() {
        assert_eq!(USAGE_RECORD_COLUMNS.split(',').count(), NCOLS);
        let mut params = Vec::new();
        let ident = gaterouter::config::Identity {
            org: Some("acme".into()),
            api_key_id: Some("k".into()),
            ..Default::default()
        };
        let input = gaterouter::usage::UsageRecordInput {
            provider: "openai".into(),
            model: "m".into(),
            attempts: 1,
            ..Default::default()
        };
        let rec = UsageRecord::build(
            input,
            &ident,
            &gaterouter::usage::SdkInfo::rust(),
            gaterouter::usage::RecordId::new_v7(),
            1,
        )
        .expect("a valid record");
        let v = Verified {
            rec,
            signature: String::new(),
            collector_cost: None,
            priced_as: None,
            baseline: None,
            mismatch: false,
            attributed: Vec::new(),
        };
        row_params(&v, 0, &mut params);
        assert_eq!(params.len(), NCOLS);
        assert_eq!(v.org(), "acme");
    }
}
