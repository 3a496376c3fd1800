//! Reservations as stored (`reservations`, `reservation_holds`), the budget counters
//! ingest adds to (`budget_usage`), and what ingest reads of the org tree: an org's
//! units, members' groups, the budgets of a set of orgs.

use std::collections::{BTreeSet, HashMap};

use sqlx::AnyConnection;

use crate::db::{
    Backend, Db, DbError, Param, bind_all, dberr, get_i64, get_opt_str, get_str, in_list,
};
use crate::store::budgets::{BUDGET_COLS, BudgetRow, budget_from_row, i, u};

fn t(s: &str) -> Param {
    Param::Text(s.to_owned())
}

/// Best effort: close holds that lapsed and drop closed reservations older than
/// `retention_ms` (keeps both tables small).
pub(crate) async fn lapse_expired(db: &Db, now_ms: u64, retention_ms: u64) {
    let _g = db.write_guard().await;
    let Ok(mut tx) = db.pool.begin().await else {
        return;
    };
    let now = Param::I64(i(now_ms));
    let ok = bind_all("DELETE FROM reservation_holds WHERE reservation_id IN (SELECT id FROM reservations WHERE state IN ('held', 'settled') AND expires_at_ms <= $1)", std::slice::from_ref(&now))
        .execute(&mut *tx)
        .await
        .is_ok()
        && bind_all("UPDATE reservations SET state = 'lapsed' WHERE state IN ('held', 'settled') AND expires_at_ms <= $1", std::slice::from_ref(&now)).execute(&mut *tx).await.is_ok()
        // Closed reservations are kept a while (idempotent retries and settles), then dropped.
        && bind_all("DELETE FROM reservations WHERE state IN ('consumed', 'released', 'lapsed') AND expires_at_ms <= $1", &[Param::I64(i(now_ms.saturating_sub(retention_ms)))])
            .execute(&mut *tx)
            .await
            .is_ok();
    if ok {
        let _ = tx.commit().await;
    }
}

/// Does reservation `id` of key `key` exist?
pub(crate) async fn reservation_exists(db: &Db, id: &str, key: &str) -> Result<bool, DbError> {
    let rows = db
        .fetch(
            "SELECT id FROM reservations WHERE id = $1 AND api_key_id = $2",
            &[t(id), t(key)],
            "reading a reservation",
        )
        .await?;
    Ok(!rows.is_empty())
}

/// The key and expiry of reservation `id`, when it exists.
pub(crate) async fn reservation_owner(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(String, u64)>, DbError> {
    let r = bind_all(
        "SELECT api_key_id, expires_at_ms FROM reservations WHERE id = $1",
        &[t(id)],
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(dberr("reading a reservation"))?;
    r.map(|r| Ok((get_str(&r, 0)?, u(get_i64(&r, 1)?))))
        .transpose()
}

/// A reservation to hold.
#[derive(Debug)]
pub(crate) struct NewReservation<'a> {
    pub(crate) id: &'a str,
    pub(crate) api_key_id: &'a str,
    pub(crate) model: &'a str,
    pub(crate) amount_micros: u64,
    pub(crate) amount_tokens: u64,
    pub(crate) now_ms: u64,
    pub(crate) expires_at_ms: u64,
}

/// Store a reservation in state `held`.
pub(crate) async fn insert_reservation(
    conn: &mut AnyConnection,
    r: &NewReservation<'_>,
) -> Result<(), DbError> {
    bind_all(
        "INSERT INTO reservations (id, api_key_id, model, amount_micros, amount_tokens, state, created_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, 'held', $6, $7)",
        &[
            t(r.id),
            t(r.api_key_id),
            t(r.model),
            Param::I64(i(r.amount_micros)),
            Param::I64(i(r.amount_tokens)),
            Param::I64(i(r.now_ms)),
            Param::I64(i(r.expires_at_ms)),
        ],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("storing a reservation"))?;
    Ok(())
}

/// Hold `amount` of budget `budget_id` (in `metric`) for reservation `id`.
pub(crate) async fn insert_hold(
    conn: &mut AnyConnection,
    id: &str,
    budget_id: &str,
    metric: &str,
    amount: u64,
) -> Result<(), DbError> {
    bind_all(
        "INSERT INTO reservation_holds (reservation_id, budget_id, metric, amount) VALUES ($1, $2, $3, $4)",
        &[t(id), t(budget_id), t(metric), Param::I64(i(amount))],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("storing a reservation hold"))?;
    Ok(())
}

/// A reservation as settle reads it.
#[derive(Debug)]
pub(crate) struct StoredReservation {
    pub(crate) api_key_id: String,
    pub(crate) state: String,
    pub(crate) expires_at_ms: u64,
}

/// Reservation `id`, locked until the transaction ends on PostgreSQL.
pub(crate) async fn reservation_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    id: &str,
) -> Result<Option<StoredReservation>, DbError> {
    let lock = if backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = bind_all(&format!("SELECT api_key_id, state, expires_at_ms, actual_micros, actual_tokens FROM reservations WHERE id = $1{lock}"), &[t(id)])
        .fetch_optional(&mut *conn)
        .await
        .map_err(dberr("reading a reservation"))?;
    row.map(|r| {
        Ok(StoredReservation {
            api_key_id: get_str(&r, 0)?,
            state: get_str(&r, 1)?,
            expires_at_ms: u(get_i64(&r, 2)?),
        })
    })
    .transpose()
}

/// Is record `record_id` of `org` stored?
pub(crate) async fn record_stored(
    conn: &mut AnyConnection,
    org: &str,
    record_id: &str,
) -> Result<bool, DbError> {
    Ok(bind_all(
        "SELECT id FROM usage_record_keys WHERE org = $1 AND id = $2",
        &[t(org), t(record_id)],
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(dberr("looking up a record"))?
    .is_some())
}

/// A settlement of a reservation.
#[derive(Debug)]
pub(crate) struct Settlement<'a> {
    pub(crate) id: &'a str,
    /// `settled`, `consumed` or `released`.
    pub(crate) state: &'a str,
    pub(crate) record_id: Option<&'a str>,
    pub(crate) now_ms: u64,
    pub(crate) actual_micros: u64,
    pub(crate) actual_tokens: u64,
    pub(crate) expires_at_ms: u64,
}

/// Write a settlement; a `settled` reservation keeps holding its actual cost, any other
/// state drops its holds.
pub(crate) async fn settle(conn: &mut AnyConnection, s: &Settlement<'_>) -> Result<(), DbError> {
    bind_all(
        "UPDATE reservations SET state = $1, record_id = $2, settled_ms = $3, actual_micros = $4, actual_tokens = $5, expires_at_ms = $6 WHERE id = $7",
        &[
            t(s.state),
            Param::OptText(s.record_id.map(str::to_owned)),
            Param::I64(i(s.now_ms)),
            Param::I64(i(s.actual_micros)),
            Param::I64(i(s.actual_tokens)),
            Param::I64(i(s.expires_at_ms)),
            t(s.id),
        ],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("settling a reservation"))?;
    if s.state == "settled" {
        bind_all(
            "UPDATE reservation_holds SET amount = CASE WHEN metric = 'usd' THEN $1 ELSE $2 END WHERE reservation_id = $3",
            &[Param::I64(i(s.actual_micros)), Param::I64(i(s.actual_tokens)), t(s.id)],
        )
        .execute(&mut *conn)
        .await
        .map_err(dberr("shrinking a hold"))?;
    } else {
        bind_all(
            "DELETE FROM reservation_holds WHERE reservation_id = $1",
            &[t(s.id)],
        )
        .execute(&mut *conn)
        .await
        .map_err(dberr("releasing a hold"))?;
    }
    Ok(())
}

/// Mark the open reservations of `org` that name one of the records `ids` consumed,
/// dropping their holds.
pub(crate) async fn consume_settled(
    conn: &mut AnyConnection,
    org: &str,
    ids: &[&str],
) -> Result<(), DbError> {
    let params: Vec<Param> = std::iter::once(org)
        .chain(ids.iter().copied())
        .map(t)
        .collect();
    let list = in_list(2, ids.len());
    let rows = bind_all(
        &format!("SELECT r.id FROM reservations r JOIN api_keys k ON k.id = r.api_key_id WHERE k.org_id = $1 AND r.record_id IN ({list}) AND r.state IN ('held', 'settled')"),
        &params,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(dberr("finding settled reservations"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Param> = rows
        .iter()
        .map(|r| get_str(r, 0).map(Param::Text))
        .collect::<Result<_, _>>()?;
    let l2 = in_list(1, ids.len());
    bind_all(
        &format!("DELETE FROM reservation_holds WHERE reservation_id IN ({l2})"),
        &ids,
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("releasing consumed holds"))?;
    bind_all(
        &format!("UPDATE reservations SET state = 'consumed' WHERE id IN ({l2})"),
        &ids,
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("marking reservations consumed"))?;
    Ok(())
}

/// Every budget of `orgs`, in id order.
pub(crate) async fn budgets_of_orgs(
    conn: &mut AnyConnection,
    orgs: &BTreeSet<&str>,
) -> Result<Vec<BudgetRow>, DbError> {
    let params: Vec<Param> = orgs.iter().map(|o| t(o)).collect();
    let rows = bind_all(
        &format!(
            "SELECT {BUDGET_COLS} FROM budgets WHERE org_id IN ({}) ORDER BY id",
            in_list(1, orgs.len())
        ),
        &params,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(dberr("reading budgets"))?;
    rows.iter().map(budget_from_row).collect()
}

/// The groups of each of `users` (memberships and main group).
pub(crate) async fn member_groups(
    conn: &mut AnyConnection,
    users: &BTreeSet<&str>,
) -> Result<HashMap<String, BTreeSet<String>>, DbError> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    let params: Vec<Param> = users.iter().map(|x| t(x)).collect();
    let l = in_list(1, users.len());
    let sql = format!(
        "SELECT user_id, group_id FROM group_members WHERE user_id IN ({l}) UNION SELECT id, group_id FROM users WHERE group_id IS NOT NULL AND id IN ({l})"
    );
    for r in bind_all(&sql, &params)
        .fetch_all(&mut *conn)
        .await
        .map_err(dberr("reading group memberships"))?
    {
        out.entry(get_str(&r, 0)?)
            .or_default()
            .insert(get_str(&r, 1)?);
    }
    Ok(out)
}

/// Lock budgets `ids` until the transaction ends (PostgreSQL; in id order, as
/// reservations lock them).
pub(crate) async fn lock_budgets(conn: &mut AnyConnection, ids: &[&str]) -> Result<(), DbError> {
    let params: Vec<Param> = ids.iter().map(|x| t(x)).collect();
    bind_all(
        &format!(
            "SELECT id FROM budgets WHERE id IN ({}) ORDER BY id FOR UPDATE",
            in_list(1, params.len())
        ),
        &params,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(dberr("locking budgets"))?;
    Ok(())
}

/// Add `amount` to the usage of budget `budget_id` in the window starting at `start_ms`.
pub(crate) async fn add_usage(
    conn: &mut AnyConnection,
    budget_id: &str,
    start_ms: u64,
    amount: u64,
) -> Result<(), DbError> {
    bind_all(
        // Saturating in SQL: never a 64-bit overflow (PostgreSQL "bigint out of
        // range" would fail every later record of the org; SQLite would turn the
        // counter into a float). A saturated counter is simply over every limit.
        "INSERT INTO budget_usage (budget_id, period_start_ms, used) VALUES ($1, $2, $3) ON CONFLICT (budget_id, period_start_ms) DO UPDATE SET used = \
         CASE WHEN budget_usage.used > 9223372036854775807 - excluded.used THEN 9223372036854775807 ELSE budget_usage.used + excluded.used END",
        &[t(budget_id), Param::I64(i(start_ms)), Param::I64(i(amount))],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("updating budget usage"))?;
    Ok(())
}

/// One unit of an org: `kind` is `d`epartment, `p`roject, `g`roup or `u`ser, with the
/// department it belongs to (none for departments).
pub(crate) async fn org_units(
    db: &Db,
    org: &str,
) -> Result<Vec<(char, String, Option<String>)>, DbError> {
    let rows = db
        .fetch(
            "SELECT 'd', id, CAST(NULL AS TEXT) FROM departments WHERE org_id = $1 UNION ALL SELECT 'p', id, department_id FROM projects WHERE org_id = $1 \
             UNION ALL SELECT 'g', id, department_id FROM user_groups WHERE org_id = $1 UNION ALL SELECT 'u', id, department_id FROM users WHERE org_id = $1",
            &[t(org)],
            "reading the org tree",
        )
        .await?;
    rows.iter()
        .map(|r| {
            let kind = get_str(r, 0)?.chars().next().unwrap_or('u');
            Ok((kind, get_str(r, 1)?, get_opt_str(r, 2)?))
        })
        .collect()
}
