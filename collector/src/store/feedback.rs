//! Feedback records as stored (`feedback`, once per (org, id); migration 8).

use std::collections::HashSet;

use gaterouter::usage::FeedbackRecord;
use sqlx::AnyConnection;

use super::usage::{ROWS_PER_STATEMENT, i};
use crate::db::{Backend, DbError, Param, bind_all, dberr, get_str, placeholders};

/// A verified feedback record's row.
#[derive(Debug, Clone)]
pub(crate) struct NewFeedback<'a> {
    /// The org it is stored (and deduplicated) under.
    pub org: &'a str,
    /// The record.
    pub rec: &'a FeedbackRecord,
    /// Its signature.
    pub signature: &'a str,
}

/// Insert `rows` stamped `received_ms`, `ON CONFLICT (org, id) DO NOTHING`; returns the
/// (org, id) of the rows inserted (the others were already stored).
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &[NewFeedback<'_>],
    received_ms: i64,
) -> Result<HashSet<(String, String)>, DbError> {
    let mut claimed: HashSet<(String, String)> = HashSet::new();
    const COLS: usize = 15;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut params = Vec::with_capacity(chunk.len() * COLS);
        for v in chunk {
            let r = v.rec;
            params.extend([
                Param::Text(v.org.to_owned()),
                Param::Text(r.id.0.clone()),
                Param::Text(r.record_id.0.clone()),
                Param::Text(r.api_key_id.clone()),
                i(r.seq),
                i(r.ts),
                Param::I64(i64::from(r.score_milli)),
                Param::OptText(r.label.clone()),
                Param::Text(r.source.as_str().to_owned()),
                Param::Text(serde_json::to_string(&r.tags).unwrap_or_else(|_| "{}".into())),
                Param::Text(r.sdk.name.clone()),
                Param::Text(r.sdk.version.clone()),
                Param::Text(r.sdk.language.clone()),
                Param::Text(v.signature.to_owned()),
                Param::I64(received_ms),
            ]);
        }
        let sql = format!(
            "INSERT INTO feedback (org, id, record_id, api_key_id, seq, ts, score_milli, label, source, tags, sdk_name, sdk_version, sdk_language, signature, received_ms)
             VALUES {} ON CONFLICT (org, id) DO NOTHING RETURNING org, id",
            placeholders(chunk.len(), COLS, backend)
        );
        for r in bind_all(&sql, &params)
            .fetch_all(&mut *conn)
            .await
            .map_err(dberr("inserting feedback"))?
        {
            claimed.insert((get_str(&r, 0)?, get_str(&r, 1)?));
        }
    }
    Ok(claimed)
}
