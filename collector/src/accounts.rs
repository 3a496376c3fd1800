//! Enterprise accounts at run time (protocol in `ACCOUNTS.md`): the SDK-facing signed
//! endpoints `GET /v1/policy`, `POST /v1/reservations` and
//! `POST /v1/reservations/{id}/settle`, and the ingest hooks that keep budgets exact.
//!
//! Budget accounting: `budget_usage(budget_id, period_start_ms, used)` is updated in the
//! same transaction that stores a record, for every budget whose level covers the
//! record; a reservation holds its amount in `reservation_holds` (one row per budget)
//! until it is settled and its record ingested (the ingest transaction marks it
//! `consumed` and drops the holds), released, or lapses. A reservation checks and
//! holds under a lock on its budgets (SQLite: the single in-process writer; PostgreSQL:
//! `SELECT ... FOR UPDATE` on the budget rows in id order, taken by ingest too), so
//! concurrent calls cannot all pass a nearly empty budget.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gaterouter::accounts::request_auth;
use gaterouter::accounts::{
    AccountsErrorBody, BudgetStatus, Denial, EffectivePolicy, LevelKind, Metric,
    ReservationRequest, ReservationResponse, SettleRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyConnection;

use crate::db::{
    Backend, Db, DbError, Param, bind_all, dberr, get_i64, get_opt_str, get_str, ids_by_org,
    in_list,
};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::budgets::{
    BUDGET_COLS, BudgetRow, budget_from_row, budgets_at, fire_alerts, i, statuses, u,
};
use crate::store::keys::{KeyInfo, load_keys};
use crate::store::policy::{effective_policy, effective_rules, key_context};
use crate::util::check_id;
use crate::verified::{Refusal, Verified};

/// Default reservation lifetime when never settled.
pub const DEFAULT_RESERVATION_TTL_MS: u64 = 120_000;
/// Longest reservation lifetime.
pub const MAX_RESERVATION_TTL_MS: u64 = 600_000;
/// How long closed reservations are kept before they are deleted.
pub const RESERVATION_RETENTION_MS: u64 = 7 * 86_400_000;
/// How long a settled hold waits for its usage record.
pub const SETTLED_HOLD_MS: u64 = 86_400_000;

/// Errors of the accounts endpoints: the usual `{"error": {...}}` body, with `rule` and
/// `level` or `budget` when a call is refused.
#[derive(Debug)]
pub enum AccountsError {
    /// A generic error.
    Api(ApiError),
    /// `permission_denied` (403) or `budget_exceeded` (402).
    Refused(StatusCode, AccountsErrorBody),
}

impl From<ApiError> for AccountsError {
    fn from(e: ApiError) -> Self {
        AccountsError::Api(e)
    }
}

impl From<DbError> for AccountsError {
    fn from(e: DbError) -> Self {
        AccountsError::Api(e.into())
    }
}

impl AccountsError {
    /// 403 naming the rule and the level that set it.
    pub fn permission(d: Denial) -> Self {
        AccountsError::Refused(
            StatusCode::FORBIDDEN,
            AccountsErrorBody {
                code: "permission_denied".into(),
                message: d.message,
                rule: Some(d.rule),
                level: Some(d.level),
                budget: None,
            },
        )
    }
    /// 402 naming the budget, its period, what is left and when it resets.
    pub fn budget(b: BudgetStatus, amount: u64) -> Self {
        let need = match b.metric {
            Metric::Usd => gaterouter::accounts::fmt_usd(amount),
            Metric::Tokens => format!("{amount} tokens"),
        };
        let message = format!("{}; this call may cost up to {need}", b.describe());
        AccountsError::Refused(
            StatusCode::PAYMENT_REQUIRED,
            AccountsErrorBody {
                code: "budget_exceeded".into(),
                message,
                rule: None,
                level: Some(b.level.clone()),
                budget: Some(b),
            },
        )
    }
}

impl IntoResponse for AccountsError {
    fn into_response(self) -> Response {
        match self {
            AccountsError::Api(e) => e.into_response(),
            AccountsError::Refused(s, body) => (s, Json(json!({ "error": body }))).into_response(),
        }
    }
}

/// Authenticate a request signed with the key's Ed25519 key (`request_auth`).
pub async fn authenticate_signed(
    st: &AppState,
    headers: &HeaderMap,
    method: &str,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Result<KeyInfo, ApiError> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized(format!(
                "missing Authorization header: sign the request (`{} key_id=...,ts=...,sig=...`)",
                request_auth::SCHEME
            ))
        })?;
    let parsed = request_auth::parse_authorization(h).map_err(ApiError::unauthorized)?;
    let now = gaterouter::usage::unix_ms_now();
    let ids: HashSet<String> = std::iter::once(parsed.key_id.clone()).collect();
    let mut keys = load_keys(&st.db, &ids, i(now)).await?;
    let key = keys.remove(&parsed.key_id).ok_or_else(|| {
        ApiError::unauthorized(format!(
            "unknown api_key_id `{}`: register it first",
            parsed.key_id
        ))
    })?;
    if key.revoked {
        return Err(ApiError::unauthorized(format!(
            "api_key_id `{}` is revoked",
            key.id
        )));
    }
    let pq = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    request_auth::verify_request(&parsed, &key.public_keys, method, &pq, body, now)
        .map_err(ApiError::unauthorized)?;
    Ok(key)
}

/// `GET /v1/policy` (signed).
pub async fn get_policy(
    State(st): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Json<EffectivePolicy>, AccountsError> {
    let key = authenticate_signed(&st, &headers, "GET", &uri, b"").await?;
    let ctx = key_context(&st.db, key).await?;
    Ok(Json(effective_policy(&st.db, &ctx).await?))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body is not a {what}: {e}")))
}

/// Best effort: close holds that lapsed and drop week-old closed reservations (keeps
/// both tables small).
async fn lapse_expired(db: &Db, now_ms: u64) {
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
        // Closed reservations are kept a week (idempotent retries and settles), then dropped.
        && bind_all("DELETE FROM reservations WHERE state IN ('consumed', 'released', 'lapsed') AND expires_at_ms <= $1", &[Param::I64(i(now_ms.saturating_sub(RESERVATION_RETENTION_MS)))])
            .execute(&mut *tx)
            .await
            .is_ok();
    if ok {
        let _ = tx.commit().await;
    }
}

fn amount_for(metric: Metric, micros: u64, tokens: u64) -> u64 {
    match metric {
        Metric::Usd => micros,
        Metric::Tokens => tokens,
    }
}

/// `POST /v1/reservations` (signed): check the rules, then hold the call's maximum cost
/// against every budget of the key, atomically.
pub async fn reserve(
    State(st): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ReservationResponse>), AccountsError> {
    let key = authenticate_signed(&st, &headers, "POST", &uri, &body).await?;
    let req: ReservationRequest = parse_body(
        &body,
        "ReservationRequest {reservation_id, model, amount_micros, amount_tokens, ttl_ms?}",
    )?;
    check_id("reservation_id", &req.reservation_id)?;
    if req.amount_micros > i64::MAX as u64 || req.amount_tokens > i64::MAX as u64 {
        return Err(ApiError::bad_request("amount_micros / amount_tokens are too large").into());
    }
    let ttl = req.ttl_ms.unwrap_or(DEFAULT_RESERVATION_TTL_MS);
    if ttl == 0 || ttl > MAX_RESERVATION_TTL_MS {
        return Err(
            ApiError::bad_request(format!("ttl_ms must be 1..={MAX_RESERVATION_TTL_MS}")).into(),
        );
    }
    let ctx = key_context(&st.db, key).await?;
    // Rules before the transaction: inside it, no second pool connection may be taken
    // (concurrent reservations holding connections would starve the pool).
    let rules = effective_rules(&st.db, &ctx).await?;
    let zero_retention = st
        .pricing
        .catalog
        .lookup(&req.model)
        .is_some_and(|(_, p)| p.zero_retention);
    let permitted = rules.check_model(&req.model, zero_retention);
    if let Err(d) = permitted.clone() {
        // A retry of a reservation granted before the rules changed stays granted.
        let exists = st
            .db
            .fetch(
                "SELECT id FROM reservations WHERE id = $1 AND api_key_id = $2",
                &[
                    Param::Text(req.reservation_id.clone()),
                    Param::Text(ctx.key.id.clone()),
                ],
                "reading a reservation",
            )
            .await?;
        if exists.is_empty() {
            return Err(AccountsError::permission(d));
        }
    }
    let now = gaterouter::usage::unix_ms_now();
    lapse_expired(&st.db, now).await;

    let _g = st.db.write_guard().await;
    let mut tx = st.db.begin_write().await?;
    let existing = bind_all(
        "SELECT api_key_id, expires_at_ms FROM reservations WHERE id = $1",
        &[Param::Text(req.reservation_id.clone())],
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(dberr("reading a reservation"))?;
    if let Some(r) = existing {
        if get_str(&r, 0)? != ctx.key.id {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "reservation_id `{}` belongs to another key; use a fresh UUID",
                    req.reservation_id
                ),
            )
            .into());
        }
        let budgets = budgets_at(&mut tx, st.db.backend(), &ctx.levels, false).await?;
        let budgets = statuses(&mut tx, &budgets, now).await?;
        return Ok((
            StatusCode::OK,
            Json(ReservationResponse {
                reservation_id: req.reservation_id,
                expires_at_ms: u(get_i64(&r, 1)?),
                budgets,
                warnings: vec![],
            }),
        ));
    }
    permitted.map_err(AccountsError::permission)?;

    let rows = budgets_at(&mut tx, st.db.backend(), &ctx.levels, true).await?;
    let mut sts = statuses(&mut tx, &rows, now).await?;
    for s in &sts {
        let amount = amount_for(s.metric, req.amount_micros, req.amount_tokens);
        if s.would_exceed(amount) {
            tracing::info!(key = %ctx.key.id, budget = %s.id, amount, remaining = s.remaining, "reservation refused");
            return Err(AccountsError::budget(s.clone(), amount));
        }
    }
    let expires = now + ttl;
    bind_all(
        "INSERT INTO reservations (id, api_key_id, model, amount_micros, amount_tokens, state, created_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, 'held', $6, $7)",
        &[
            Param::Text(req.reservation_id.clone()),
            Param::Text(ctx.key.id.clone()),
            Param::Text(req.model.clone()),
            Param::I64(i(req.amount_micros)),
            Param::I64(i(req.amount_tokens)),
            Param::I64(i(now)),
            Param::I64(i(expires)),
        ],
    )
    .execute(&mut *tx)
    .await
    .map_err(dberr("storing a reservation"))?;
    let mut warnings = Vec::new();
    for (s, row) in sts.iter_mut().zip(&rows) {
        let amount = amount_for(s.metric, req.amount_micros, req.amount_tokens);
        bind_all(
            "INSERT INTO reservation_holds (reservation_id, budget_id, metric, amount) VALUES ($1, $2, $3, $4)",
            &[Param::Text(req.reservation_id.clone()), Param::Text(s.id.clone()), Param::Text(s.metric.as_str().into()), Param::I64(i(amount))],
        )
        .execute(&mut *tx)
        .await
        .map_err(dberr("storing a reservation hold"))?;
        s.reserved = s.reserved.saturating_add(amount);
        s.remaining = s.limit.saturating_sub(s.used.saturating_add(s.reserved));
        warnings.extend(fire_alerts(&mut tx, &row.org_id, s, now).await?);
    }
    tx.commit()
        .await
        .map_err(dberr("committing a reservation"))?;
    Ok((
        StatusCode::CREATED,
        Json(ReservationResponse {
            reservation_id: req.reservation_id,
            expires_at_ms: expires,
            budgets: sts,
            warnings,
        }),
    ))
}

/// Answer of `POST /v1/reservations/{id}/settle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleResponse {
    /// The reservation.
    pub reservation_id: String,
    /// `settled` (holding the actual cost until its record arrives), `consumed` (the
    /// record is stored and counts instead), `released` or `lapsed`.
    pub state: String,
    /// Micro-dollars still held.
    pub hold_micros: u64,
    /// Tokens still held.
    pub hold_tokens: u64,
    /// When the hold ends at the latest.
    pub expires_at_ms: u64,
}

/// `POST /v1/reservations/{id}/settle` (signed).
pub async fn settle(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SettleResponse>, AccountsError> {
    let key = authenticate_signed(&st, &headers, "POST", &uri, &body).await?;
    let req: SettleRequest = parse_body(
        &body,
        "SettleRequest {actual_micros, actual_tokens, record_id?}",
    )?;
    if let Some(r) = &req.record_id {
        check_id("record_id", r)?;
    }
    let ctx = key_context(&st.db, key).await?;
    let key = ctx.key.clone();
    let now = gaterouter::usage::unix_ms_now();
    let _g = st.db.write_guard().await;
    let mut tx = st.db.begin_write().await?;
    // Lock order as in reserve and ingest (budgets, then reservations): an ingest of
    // `record_id` running concurrently either committed before (seen below) or sees
    // this settlement and consumes it.
    budgets_at(&mut tx, st.db.backend(), &ctx.levels, true).await?;
    let lock = if st.db.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = bind_all(&format!("SELECT api_key_id, state, expires_at_ms, actual_micros, actual_tokens FROM reservations WHERE id = $1{lock}"), &[Param::Text(id.clone())])
        .fetch_optional(&mut *tx)
        .await
        .map_err(dberr("reading a reservation"))?;
    let Some(row) = row.filter(|r| get_str(r, 0).is_ok_and(|k| k == key.id)) else {
        return Err(ApiError::not_found(format!(
            "reservation `{id}` does not exist for api_key_id `{}`",
            key.id
        ))
        .into());
    };
    let state = get_str(&row, 1)?;
    let expires = u(get_i64(&row, 2)?);
    let open = (state == "held" || state == "settled") && expires > now;
    if !open {
        // Idempotent: a settled-and-consumed, released or lapsed reservation stays so.
        let state = if state == "held" || state == "settled" {
            "lapsed".to_owned()
        } else {
            state
        };
        return Ok(Json(SettleResponse {
            reservation_id: id,
            state,
            hold_micros: 0,
            hold_tokens: 0,
            expires_at_ms: expires,
        }));
    }
    let recorded = match &req.record_id {
        // Record ids are unique per org: only a record of the key's own org settles it.
        Some(r) => bind_all(
            "SELECT id FROM usage_record_keys WHERE org = $1 AND id = $2",
            &[Param::Text(key.org.clone()), Param::Text(r.clone())],
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(dberr("looking up a record"))?
        .is_some(),
        None => false,
    };
    let new_state = if recorded {
        "consumed"
    } else if req.record_id.is_none() && req.actual_micros == 0 && req.actual_tokens == 0 {
        "released"
    } else {
        "settled"
    };
    let new_expires = if new_state == "settled" {
        now + SETTLED_HOLD_MS
    } else {
        now
    };
    bind_all(
        "UPDATE reservations SET state = $1, record_id = $2, settled_ms = $3, actual_micros = $4, actual_tokens = $5, expires_at_ms = $6 WHERE id = $7",
        &[
            Param::Text(new_state.into()),
            Param::OptText(req.record_id.clone()),
            Param::I64(i(now)),
            Param::I64(i(req.actual_micros)),
            Param::I64(i(req.actual_tokens)),
            Param::I64(i(new_expires)),
            Param::Text(id.clone()),
        ],
    )
    .execute(&mut *tx)
    .await
    .map_err(dberr("settling a reservation"))?;
    if new_state == "settled" {
        bind_all(
            "UPDATE reservation_holds SET amount = CASE WHEN metric = 'usd' THEN $1 ELSE $2 END WHERE reservation_id = $3",
            &[Param::I64(i(req.actual_micros)), Param::I64(i(req.actual_tokens)), Param::Text(id.clone())],
        )
        .execute(&mut *tx)
        .await
        .map_err(dberr("shrinking a hold"))?;
    } else {
        bind_all(
            "DELETE FROM reservation_holds WHERE reservation_id = $1",
            &[Param::Text(id.clone())],
        )
        .execute(&mut *tx)
        .await
        .map_err(dberr("releasing a hold"))?;
    }
    tx.commit()
        .await
        .map_err(dberr("committing a settlement"))?;
    let (hm, ht) = if new_state == "settled" {
        (req.actual_micros, req.actual_tokens)
    } else {
        (0, 0)
    };
    Ok(Json(SettleResponse {
        reservation_id: id,
        state: new_state.into(),
        hold_micros: hm,
        hold_tokens: ht,
        expires_at_ms: new_expires,
    }))
}

/// Levels a stored record counts toward.
fn record_levels(
    v: &Verified,
    member_groups: &HashMap<String, BTreeSet<String>>,
) -> HashSet<String> {
    let r = &v.rec;
    let mut out = HashSet::new();
    if let Some(o) = &r.org {
        out.insert(format!("org:{o}"));
    }
    if let Some(d) = &r.department {
        out.insert(format!("department:{d}"));
    }
    if let Some(p) = &r.project {
        out.insert(format!("project:{p}"));
    }
    if let Some(g) = &r.group {
        out.insert(format!("group:{g}"));
    }
    if let Some(user) = &r.user {
        out.insert(format!("user:{user}"));
        for g in member_groups.get(user).into_iter().flatten() {
            out.insert(format!("group:{g}"));
        }
    }
    out.insert(format!("key:{}", r.api_key_id));
    out
}

/// Reservations settled with these records: the records count from now on. A
/// reservation names its record by id, which is unique per org only: it is consumed by
/// the record of its own key's org, never by another org's record with the same id.
async fn consume_reservations(
    conn: &mut AnyConnection,
    stored: &[&Verified],
) -> Result<(), DbError> {
    for (org, ids) in ids_by_org(stored.iter().map(|v| (v.org(), v.rec.id.0.as_str()))) {
        for chunk in ids.chunks(500) {
            consume_settled(conn, org, chunk).await?;
        }
    }
    Ok(())
}

/// [`consume_reservations`] for records `ids` of `org`.
async fn consume_settled(conn: &mut AnyConnection, org: &str, ids: &[&str]) -> Result<(), DbError> {
    let params: Vec<Param> = std::iter::once(org)
        .chain(ids.iter().copied())
        .map(|s| Param::Text(s.to_owned()))
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

/// Inside the ingest transaction, for the records just stored: add them to the usage
/// counters of every budget covering them, mark the reservations they settle as
/// consumed (dropping their holds), and raise alerts that the new usage crossed.
pub async fn on_ingest(
    conn: &mut AnyConnection,
    backend: Backend,
    stored: &[&Verified],
    now_ms: u64,
) -> Result<(), DbError> {
    if stored.is_empty() {
        return Ok(());
    }
    let orgs: BTreeSet<&str> = stored.iter().filter_map(|v| v.rec.org.as_deref()).collect();
    if orgs.is_empty() {
        return consume_reservations(conn, stored).await;
    }
    let params: Vec<Param> = orgs.iter().map(|o| Param::Text((*o).to_owned())).collect();
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
    if rows.is_empty() {
        return consume_reservations(conn, stored).await;
    }
    let budgets: Vec<BudgetRow> = rows.iter().map(budget_from_row).collect::<Result<_, _>>()?;
    let mut member_groups: HashMap<String, BTreeSet<String>> = HashMap::new();
    if budgets.iter().any(|b| b.level.kind == LevelKind::Group) {
        let users: BTreeSet<&str> = stored
            .iter()
            .filter_map(|v| v.rec.user.as_deref())
            .collect();
        if !users.is_empty() {
            let params: Vec<Param> = users.iter().map(|x| Param::Text((*x).to_owned())).collect();
            let l = in_list(1, users.len());
            let sql = format!(
                "SELECT user_id, group_id FROM group_members WHERE user_id IN ({l}) UNION SELECT id, group_id FROM users WHERE group_id IS NOT NULL AND id IN ({l})"
            );
            for r in bind_all(&sql, &params)
                .fetch_all(&mut *conn)
                .await
                .map_err(dberr("reading group memberships"))?
            {
                member_groups
                    .entry(get_str(&r, 0)?)
                    .or_default()
                    .insert(get_str(&r, 1)?);
            }
        }
    }
    let mut deltas: std::collections::BTreeMap<(usize, u64), u64> = Default::default();
    for v in stored {
        let levels = record_levels(v, &member_groups);
        let spend = v.collector_cost.unwrap_or(v.rec.cost_micros);
        let tokens = v.rec.prompt_tokens.saturating_add(v.rec.completion_tokens);
        for (bi, b) in budgets.iter().enumerate() {
            if levels.contains(&b.level.to_string()) {
                let start = b.period.window(v.rec.ts_start).0;
                let e = deltas.entry((bi, start)).or_default();
                *e = e.saturating_add(amount_for(b.metric, spend, tokens));
            }
        }
    }
    if deltas.is_empty() {
        return consume_reservations(conn, stored).await;
    }
    let touched: BTreeSet<usize> = deltas.keys().map(|(bi, _)| *bi).collect();
    if backend == Backend::Postgres {
        // Same lock order as reservations: ingest and reserve serialize per budget.
        let params: Vec<Param> = touched
            .iter()
            .map(|bi| Param::Text(budgets[*bi].id.clone()))
            .collect();
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
    }
    // After the budget locks: a settle of these records (which takes the same locks
    // first) is either committed and seen here, or sees the records itself.
    consume_reservations(conn, stored).await?;
    for ((bi, start), amount) in &deltas {
        bind_all(
            // Saturating in SQL: never a 64-bit overflow (PostgreSQL "bigint out of
            // range" would fail every later record of the org; SQLite would turn the
            // counter into a float). A saturated counter is simply over every limit.
            "INSERT INTO budget_usage (budget_id, period_start_ms, used) VALUES ($1, $2, $3) ON CONFLICT (budget_id, period_start_ms) DO UPDATE SET used = \
             CASE WHEN budget_usage.used > 9223372036854775807 - excluded.used THEN 9223372036854775807 ELSE budget_usage.used + excluded.used END",
            &[Param::Text(budgets[*bi].id.clone()), Param::I64(i(*start)), Param::I64(i(*amount))],
        )
        .execute(&mut *conn)
        .await
        .map_err(dberr("updating budget usage"))?;
    }
    let alerting: Vec<BudgetRow> = touched
        .iter()
        .map(|bi| budgets[*bi].clone())
        .filter(|b| !b.notify_at.is_empty())
        .collect();
    if !alerting.is_empty() {
        for s in statuses(conn, &alerting, now_ms).await? {
            let org = alerting
                .iter()
                .find(|b| b.id == s.id)
                .map(|b| b.org_id.clone())
                .unwrap_or_default();
            fire_alerts(conn, &org, &s, now_ms).await?;
        }
    }
    Ok(())
}

/// The org tree of one org, as ingest checks records against it.
#[derive(Debug, Default)]
struct OrgUnits {
    departments: HashSet<String>,
    /// project → department
    projects: HashMap<String, Option<String>>,
    /// group → department
    groups: HashMap<String, Option<String>>,
    /// member → department
    users: HashMap<String, Option<String>>,
}

/// Refuse records whose scope names a department, project, group or member that is not
/// in the key's org (or a member outside the named department); the key's bound fields
/// were checked already. Returns the records kept.
pub async fn check_tree(
    db: &Db,
    ok: Vec<(String, Verified)>,
) -> Result<(Vec<(String, Verified)>, Vec<(String, Refusal)>), DbError> {
    let orgs: BTreeSet<String> = ok.iter().filter_map(|(_, v)| v.rec.org.clone()).collect();
    let mut trees: HashMap<String, OrgUnits> = HashMap::new();
    for org in orgs {
        let rows = db
            .fetch(
                "SELECT 'd', id, CAST(NULL AS TEXT) FROM departments WHERE org_id = $1 UNION ALL SELECT 'p', id, department_id FROM projects WHERE org_id = $1 \
                 UNION ALL SELECT 'g', id, department_id FROM user_groups WHERE org_id = $1 UNION ALL SELECT 'u', id, department_id FROM users WHERE org_id = $1",
                &[Param::Text(org.clone())],
                "reading the org tree",
            )
            .await?;
        let mut t = OrgUnits::default();
        for r in &rows {
            let id = get_str(r, 1)?;
            match get_str(r, 0)?.as_str() {
                "d" => t.departments.insert(id),
                "p" => t.projects.insert(id, get_opt_str(r, 2)?).is_none(),
                "g" => t.groups.insert(id, get_opt_str(r, 2)?).is_none(),
                _ => t.users.insert(id, get_opt_str(r, 2)?).is_none(),
            };
        }
        trees.insert(org, t);
    }
    let mut kept = Vec::with_capacity(ok.len());
    let mut refused = Vec::new();
    for (id, v) in ok {
        let r = &v.rec;
        let org = r.org.clone().unwrap_or_default();
        let empty = OrgUnits::default();
        let t = trees.get(&org).unwrap_or(&empty);
        let unknown = |field: &str, val: &str| Refusal {
            code: "scope",
            reason: format!(
                "scope violation: {field} `{val}` is not in org `{org}`; create it (PUT /v1/admin/org-tree or POST /v1/admin/{field}s) or fix the client's identity"
            ),
        };
        // A unit that belongs to a department must match the record's department
        // (after attribution from the key): a key of `eng` cannot charge a project,
        // group or member of `support`.
        let outside = |field: &str, val: &str, owner: &str| Refusal {
            code: "scope",
            reason: format!(
                "scope violation: {field} `{val}` is in department `{owner}`, not `{}` (the record's department, from api_key_id `{}`); use a {field} of `{}`",
                r.department.as_deref().unwrap_or_default(),
                crate::logsafe::escape(&r.api_key_id),
                r.department.as_deref().unwrap_or_default()
            ),
        };
        let dept = r.department.as_deref();
        let err = if let Some(d) = r
            .department
            .as_deref()
            .filter(|d| !t.departments.contains(*d))
        {
            Some(unknown("department", d))
        } else if let Some(p) = r.project.as_deref() {
            match t.projects.get(p) {
                None => Some(unknown("project", p)),
                Some(Some(pd)) if dept.is_some_and(|d| d != pd) => Some(outside("project", p, pd)),
                Some(_) => None,
            }
        } else {
            None
        };
        let err = err.or_else(|| {
            let g = r.group.as_deref()?;
            match t.groups.get(g) {
                None => Some(unknown("group", g)),
                Some(Some(gd)) if dept.is_some_and(|d| d != gd) => Some(outside("group", g, gd)),
                Some(_) => None,
            }
        });
        let err = err.or_else(|| {
            let user = r.user.as_deref()?;
            match t.users.get(user) {
                None => Some(unknown("user", user)),
                Some(Some(ud)) if dept.is_some_and(|d| d != ud) => Some(outside("user", user, ud)),
                Some(_) => None,
            }
        });
        match err {
            Some(e) => refused.push((id, e)),
            None => kept.push((id, v)),
        }
    }
    Ok((kept, refused))
}
