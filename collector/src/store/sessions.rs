//! Dashboard sessions (`dashboard_sessions`): only SHA-256 digests of the session id
//! and of the token it was opened with are stored.

use crate::db::{Db, DbError, Param, get_str};

fn ms(v: u64) -> Param {
    Param::I64(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Open a session from `created_ms` to `expires_ms`.
pub(crate) async fn open(
    db: &Db,
    id_sha256: &str,
    token_sha256: &str,
    created_ms: u64,
    expires_ms: u64,
) -> Result<(), DbError> {
    db.exec(
        "INSERT INTO dashboard_sessions (id_sha256, token_sha256, created_ms, expires_ms) VALUES ($1, $2, $3, $4)",
        &[Param::Text(id_sha256.to_owned()), Param::Text(token_sha256.to_owned()), ms(created_ms), ms(expires_ms)],
        "opening a dashboard session",
    )
    .await?;
    Ok(())
}

/// The token digest of the session whose id has digest `id_sha256`, if it has not
/// expired at `now_ms`.
pub(crate) async fn token_of(
    db: &Db,
    id_sha256: &str,
    now_ms: u64,
) -> Result<Option<String>, DbError> {
    let rows = db
        .fetch(
            "SELECT token_sha256 FROM dashboard_sessions WHERE id_sha256 = $1 AND expires_ms > $2",
            &[Param::Text(id_sha256.to_owned()), ms(now_ms)],
            "reading a dashboard session",
        )
        .await?;
    rows.first().map(|r| get_str(r, 0)).transpose()
}

/// Delete the sessions expired at `now_ms` (so the table stays small without a sweeper).
pub(crate) async fn expire(db: &Db, now_ms: u64) -> Result<(), DbError> {
    db.exec(
        "DELETE FROM dashboard_sessions WHERE expires_ms < $1",
        &[ms(now_ms)],
        "expiring dashboard sessions",
    )
    .await?;
    Ok(())
}

/// End the session whose id has digest `id_sha256`.
pub(crate) async fn close(db: &Db, id_sha256: &str) -> Result<(), DbError> {
    db.exec(
        "DELETE FROM dashboard_sessions WHERE id_sha256 = $1",
        &[Param::Text(id_sha256.to_owned())],
        "ending a dashboard session",
    )
    .await?;
    Ok(())
}
