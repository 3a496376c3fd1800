//! Budgets as stored: the row and its decoding, the budgets of a set of levels, where
//! each stands in its current window (used, reserved, remaining) and where it is
//! heading, and the alerts raised when a threshold is reached.

use std::collections::BTreeSet;

use gaterouter::accounts::{BudgetStatus, Enforcement, Level, Metric, Period};
use serde_json::Value;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::db::{Backend, Db, DbError, Param, bind_all, dberr, get_i64, get_str, in_list};

/// A stored budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow {
    /// Id.
    pub id: String,
    /// Org it belongs to.
    pub org_id: String,
    /// Level it is attached to.
    pub level: Level,
    /// What it counts.
    pub metric: Metric,
    /// Window.
    pub period: Period,
    /// Micro-dollars or tokens.
    pub limit: u64,
    /// Hard or soft.
    pub enforcement: Enforcement,
    /// Alert thresholds (percent).
    pub notify_at: Vec<u8>,
}

/// Columns read by [`budget_from_row`].
pub const BUDGET_COLS: &str =
    "id, org_id, level, metric, period, limit_value, enforcement, notify_at";

fn enum_from<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(Value::String(s.to_owned())).ok()
}

pub(crate) fn corrupt(what: String) -> DbError {
    DbError {
        op: "decoding a budget row".into(),
        source: sqlx::Error::Decode(what.into()),
    }
}

/// Decode a row of [`BUDGET_COLS`].
pub fn budget_from_row(r: &AnyRow) -> Result<BudgetRow, DbError> {
    let id = get_str(r, 0)?;
    let level: Level = get_str(r, 2)?
        .parse()
        .map_err(|e: String| corrupt(format!("budget {id}: {e}")))?;
    let metric =
        enum_from(&get_str(r, 3)?).ok_or_else(|| corrupt(format!("budget {id}: bad metric")))?;
    let period =
        enum_from(&get_str(r, 4)?).ok_or_else(|| corrupt(format!("budget {id}: bad period")))?;
    let enforcement = enum_from(&get_str(r, 6)?)
        .ok_or_else(|| corrupt(format!("budget {id}: bad enforcement")))?;
    let notify_at = serde_json::from_str(&get_str(r, 7)?).unwrap_or_default();
    Ok(BudgetRow {
        org_id: get_str(r, 1)?,
        level,
        metric,
        period,
        limit: u64::try_from(get_i64(r, 5)?).unwrap_or(0),
        enforcement,
        notify_at,
        id,
    })
}

pub(crate) fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Budgets attached to any of `levels`, in id order; on PostgreSQL with `lock`, the
/// rows are locked until the transaction ends (every writer locks in id order, so
/// there is no deadlock).
pub async fn budgets_at(
    conn: &mut AnyConnection,
    backend: Backend,
    levels: &[Level],
    lock: bool,
) -> Result<Vec<BudgetRow>, DbError> {
    if levels.is_empty() {
        return Ok(Vec::new());
    }
    let lock = if lock && backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {BUDGET_COLS} FROM budgets WHERE level IN ({}) ORDER BY id{lock}",
        in_list(1, levels.len())
    );
    let params: Vec<Param> = levels.iter().map(|l| Param::Text(l.to_string())).collect();
    let rows = bind_all(&sql, &params)
        .fetch_all(&mut *conn)
        .await
        .map_err(dberr("reading budgets"))?;
    rows.iter().map(budget_from_row).collect()
}

/// [`statuses`] on a connection of the pool (for reports, outside a transaction).
pub async fn statuses_now(
    db: &Db,
    budgets: &[BudgetRow],
    now_ms: u64,
) -> Result<Vec<BudgetStatus>, DbError> {
    let mut conn = db
        .pool
        .acquire()
        .await
        .map_err(dberr("acquiring a connection"))?;
    statuses(&mut conn, budgets, now_ms).await
}

/// Where each budget stands at `now_ms`: used in its current window, reserved by open
/// holds, remaining.
pub async fn statuses(
    conn: &mut AnyConnection,
    budgets: &[BudgetRow],
    now_ms: u64,
) -> Result<Vec<BudgetStatus>, DbError> {
    let mut out = Vec::with_capacity(budgets.len());
    for b in budgets {
        let (start, end) = b.period.window(now_ms);
        let used = bind_all(
            "SELECT used FROM budget_usage WHERE budget_id = $1 AND period_start_ms = $2",
            &[Param::Text(b.id.clone()), Param::I64(i(start))],
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(dberr("reading budget usage"))?;
        let used = match used {
            Some(r) => u(get_i64(&r, 0)?),
            None => 0,
        };
        let r = bind_all(
            "SELECT CAST(COALESCE(SUM(h.amount), 0) AS BIGINT) FROM reservation_holds h JOIN reservations r ON r.id = h.reservation_id \
             WHERE h.budget_id = $1 AND r.state IN ('held', 'settled') AND r.expires_at_ms > $2",
            &[Param::Text(b.id.clone()), Param::I64(i(now_ms))],
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(dberr("reading budget reservations"))?;
        let reserved = u(get_i64(&r, 0)?);
        out.push(BudgetStatus {
            id: b.id.clone(),
            level: b.level.clone(),
            metric: b.metric,
            period: b.period,
            limit: b.limit,
            used,
            reserved,
            remaining: b.limit.saturating_sub(used.saturating_add(reserved)),
            period_start_ms: start,
            resets_at_ms: end,
            enforcement: b.enforcement,
            notify_at: b.notify_at.clone(),
        });
    }
    Ok(out)
}

/// Raise the alerts of `status` whose threshold `used + reserved` has reached and that
/// have not fired in this window yet; returns their messages.
pub async fn fire_alerts(
    conn: &mut AnyConnection,
    org_id: &str,
    status: &BudgetStatus,
    now_ms: u64,
) -> Result<Vec<String>, DbError> {
    let mut out = Vec::new();
    if status.limit == 0 {
        return Ok(out);
    }
    let consumed = status.used.saturating_add(status.reserved);
    for t in status.notify_at.iter().copied().collect::<BTreeSet<u8>>() {
        if u128::from(consumed) * 100 < u128::from(status.limit) * u128::from(t) {
            continue;
        }
        let (c, l) = match status.metric {
            Metric::Usd => (
                gaterouter::accounts::fmt_usd(consumed),
                gaterouter::accounts::fmt_usd(status.limit),
            ),
            Metric::Tokens => (
                format!("{consumed} tokens"),
                format!("{} tokens", status.limit),
            ),
        };
        let msg = format!(
            "{} {} {} budget `{}` at {} reached {t}% ({c} of {l} used or reserved); resets at {}",
            status.enforcement.as_str(),
            status.period.as_str(),
            if status.metric == Metric::Usd {
                "spend"
            } else {
                "token"
            },
            status.id,
            status.level,
            gaterouter::accounts::iso_utc(status.resets_at_ms)
        );
        let params = [
            Param::Text(status.id.clone()),
            Param::I64(i(status.period_start_ms)),
            Param::I64(i64::from(t)),
            Param::Text(org_id.to_owned()),
            Param::Text(status.level.to_string()),
            Param::I64(i(now_ms)),
            Param::I64(i(consumed)),
            Param::I64(i(status.limit)),
            Param::Text(msg.clone()),
        ];
        let r = bind_all(
            "INSERT INTO budget_alerts (budget_id, period_start_ms, threshold, org_id, level, ts_ms, used, limit_value, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (budget_id, period_start_ms, threshold) DO NOTHING",
            &params,
        )
        .execute(&mut *conn)
        .await
        .map_err(dberr("recording a budget alert"))?;
        if r.rows_affected() > 0 {
            tracing::warn!(budget = %status.id, level = %status.level, threshold = t, "budget alert");
            out.push(msg);
        }
    }
    Ok(out)
}

/// `used` extrapolated to the end of the window at the rate so far (linear; the first
/// minute is not extrapolated, it says too little).
pub fn projected(s: &gaterouter::accounts::BudgetStatus, now_ms: u64) -> u64 {
    let elapsed = now_ms.saturating_sub(s.period_start_ms);
    let total = s.resets_at_ms.saturating_sub(s.period_start_ms);
    if elapsed < 60_000 || elapsed >= total {
        return s.used;
    }
    u64::try_from(u128::from(s.used) * u128::from(total) / u128::from(elapsed)).unwrap_or(u64::MAX)
}

/// Every budget (of `org`, or of all orgs), by level, metric and period.
pub(crate) async fn list(db: &crate::db::Db, org: Option<&str>) -> Result<Vec<BudgetRow>, DbError> {
    let (filter, params) = crate::db::where_eq("org_id", org);
    let rows = db
        .fetch(
            &format!("SELECT {BUDGET_COLS} FROM budgets{filter} ORDER BY level, metric, period"),
            &params,
            "listing budgets",
        )
        .await?;
    rows.iter().map(budget_from_row).collect()
}

/// A budget to create or replace (`level`, `metric` and `period` name it).
#[derive(Debug)]
pub(crate) struct NewBudget<'a> {
    pub(crate) org: &'a str,
    pub(crate) level: &'a str,
    pub(crate) metric: Metric,
    pub(crate) period: Period,
    pub(crate) limit: u64,
    pub(crate) enforcement: Enforcement,
    /// JSON array of percentages.
    pub(crate) notify_at: &'a str,
}

/// Create the budget, or replace the limit, enforcement and thresholds of the one with
/// the same level, metric and period; returns its id.
pub(crate) async fn upsert(
    conn: &mut AnyConnection,
    b: &NewBudget<'_>,
    now_ms: i64,
) -> Result<String, DbError> {
    let id = format!("b_{}", crate::util::uuid_v7());
    let t = |s: &str| Param::Text(s.to_owned());
    let r = bind_all(
        "INSERT INTO budgets (id, org_id, level, metric, period, limit_value, enforcement, notify_at, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (level, metric, period) DO UPDATE SET limit_value = excluded.limit_value, enforcement = excluded.enforcement, notify_at = excluded.notify_at, updated_ms = excluded.updated_ms RETURNING id",
        &[t(&id), t(b.org), t(b.level), t(b.metric.as_str()), t(b.period.as_str()), Param::I64(i(b.limit)), t(b.enforcement.as_str()), t(b.notify_at), Param::I64(now_ms)],
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(dberr("storing a budget"))?;
    get_str(&r, 0)
}

/// Delete budget `id` with its usage and holds; false when it does not exist.
pub(crate) async fn delete(conn: &mut AnyConnection, id: &str) -> Result<bool, DbError> {
    let mut first = true;
    for sql in [
        "DELETE FROM budgets WHERE id = $1",
        "DELETE FROM budget_usage WHERE budget_id = $1",
        "DELETE FROM reservation_holds WHERE budget_id = $1",
    ] {
        let r = bind_all(sql, &[Param::Text(id.to_owned())])
            .execute(&mut *conn)
            .await
            .map_err(dberr("deleting a budget"))?;
        if first && r.rows_affected() == 0 {
            return Ok(false);
        }
        first = false;
    }
    Ok(true)
}

/// A budget alert raised.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Alert {
    budget_id: String,
    period_start_ms: i64,
    threshold: i64,
    org_id: String,
    level: String,
    ts_ms: i64,
    used: i64,
    limit: i64,
    message: String,
}

/// The newest 1000 alerts (of `org`, or of all orgs), newest first.
pub(crate) async fn alerts(db: &crate::db::Db, org: Option<&str>) -> Result<Vec<Alert>, DbError> {
    let (filter, params) = crate::db::where_eq("org_id", org);
    let rows = db
        .fetch(&format!("SELECT budget_id, period_start_ms, threshold, org_id, level, ts_ms, used, limit_value, message FROM budget_alerts{filter} ORDER BY ts_ms DESC, threshold DESC LIMIT 1000"), &params, "listing alerts")
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Alert {
                budget_id: get_str(r, 0)?,
                period_start_ms: get_i64(r, 1)?,
                threshold: get_i64(r, 2)?,
                org_id: get_str(r, 3)?,
                level: get_str(r, 4)?,
                ts_ms: get_i64(r, 5)?,
                used: get_i64(r, 6)?,
                limit: get_i64(r, 7)?,
                message: get_str(r, 8)?,
            })
        })
        .collect()
}
