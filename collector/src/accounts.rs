//! Enterprise accounts at run time (protocol in `ACCOUNTS.md`): what the SDK-facing
//! signed endpoints `GET /v1/policy`, `POST /v1/reservations` and
//! `POST /v1/reservations/{id}/settle` do (their handlers are in `api/accounts.rs`,
//! the SQL in [`crate::store::accounts`]), and the ingest hooks that keep budgets exact.
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

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gaterouter::accounts::request_auth;
use gaterouter::accounts::{
    AccountsErrorBody, BudgetStatus, Denial, LevelKind, Metric, ReservationRequest,
    ReservationResponse, SettleRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyConnection;

use crate::db::{Backend, Db, DbError, dberr, ids_by_org};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::accounts as store;
use crate::store::budgets::{BudgetRow, budgets_at, fire_alerts, i, statuses};
use crate::store::keys::{KeyInfo, load_keys};
use crate::store::policy::{effective_rules, key_context};
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
        AccountsError::Refused(StatusCode::FORBIDDEN, AccountsErrorBody::denied(d))
    }
    /// 402 naming the budget, its period, what is left and when it resets.
    pub fn budget(b: BudgetStatus, amount: u64) -> Self {
        AccountsError::Refused(
            StatusCode::PAYMENT_REQUIRED,
            AccountsErrorBody::budget_exceeded(b, amount),
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
    let now = st.db.clock().now_u64();
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

/// A JSON body of type `T`, or 400 naming `what` was expected.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body is not a {what}: {e}")))
}

fn amount_for(metric: Metric, micros: u64, tokens: u64) -> u64 {
    match metric {
        Metric::Usd => micros,
        Metric::Tokens => tokens,
    }
}

/// `POST /v1/reservations` for `key`: check the rules, then hold the call's maximum
/// cost against every budget of the key, atomically. 201 when held, 200 for a retry of
/// a reservation already held.
pub async fn reserve(
    st: &AppState,
    key: KeyInfo,
    req: ReservationRequest,
) -> Result<(StatusCode, ReservationResponse), AccountsError> {
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
        if !store::reservation_exists(&st.db, &req.reservation_id, &ctx.key.id).await? {
            return Err(AccountsError::permission(d));
        }
    }
    let now = st.db.clock().now_u64();
    store::lapse_expired(&st.db, now, RESERVATION_RETENTION_MS).await;

    let _g = st.db.write_guard().await;
    let mut tx = st.db.begin_write().await?;
    let existing = store::reservation_owner(&mut tx, &req.reservation_id).await?;
    if let Some((owner, expires_at_ms)) = existing {
        if owner != ctx.key.id {
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
            ReservationResponse {
                reservation_id: req.reservation_id,
                expires_at_ms,
                budgets,
                warnings: vec![],
            },
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
    store::insert_reservation(
        &mut tx,
        &store::NewReservation {
            id: &req.reservation_id,
            api_key_id: &ctx.key.id,
            model: &req.model,
            amount_micros: req.amount_micros,
            amount_tokens: req.amount_tokens,
            now_ms: now,
            expires_at_ms: expires,
        },
    )
    .await?;
    let mut warnings = Vec::new();
    for (s, row) in sts.iter_mut().zip(&rows) {
        let amount = amount_for(s.metric, req.amount_micros, req.amount_tokens);
        store::insert_hold(
            &mut tx,
            &req.reservation_id,
            &s.id,
            s.metric.as_str(),
            amount,
        )
        .await?;
        s.reserved = s.reserved.saturating_add(amount);
        s.remaining = s.limit.saturating_sub(s.used.saturating_add(s.reserved));
        warnings.extend(fire_alerts(&mut tx, &row.org_id, s, now).await?);
    }
    tx.commit()
        .await
        .map_err(dberr("committing a reservation"))?;
    Ok((
        StatusCode::CREATED,
        ReservationResponse {
            reservation_id: req.reservation_id,
            expires_at_ms: expires,
            budgets: sts,
            warnings,
        },
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

/// `POST /v1/reservations/{id}/settle` for `key`: hold the actual cost until the
/// record arrives, or release; idempotent once closed.
pub async fn settle(
    st: &AppState,
    key: KeyInfo,
    id: String,
    req: SettleRequest,
) -> Result<SettleResponse, AccountsError> {
    if let Some(r) = &req.record_id {
        check_id("record_id", r)?;
    }
    let ctx = key_context(&st.db, key).await?;
    let key = ctx.key.clone();
    let now = st.db.clock().now_u64();
    let _g = st.db.write_guard().await;
    let mut tx = st.db.begin_write().await?;
    // Lock order as in reserve and ingest (budgets, then reservations): an ingest of
    // `record_id` running concurrently either committed before (seen below) or sees
    // this settlement and consumes it.
    budgets_at(&mut tx, st.db.backend(), &ctx.levels, true).await?;
    let row = store::reservation_for_update(&mut tx, st.db.backend(), &id).await?;
    let Some(row) = row.filter(|r| r.api_key_id == key.id) else {
        return Err(ApiError::not_found(format!(
            "reservation `{id}` does not exist for api_key_id `{}`",
            key.id
        ))
        .into());
    };
    let state = row.state;
    let expires = row.expires_at_ms;
    let open = (state == "held" || state == "settled") && expires > now;
    if !open {
        // Idempotent: a settled-and-consumed, released or lapsed reservation stays so.
        let state = if state == "held" || state == "settled" {
            "lapsed".to_owned()
        } else {
            state
        };
        return Ok(SettleResponse {
            reservation_id: id,
            state,
            hold_micros: 0,
            hold_tokens: 0,
            expires_at_ms: expires,
        });
    }
    let recorded = match &req.record_id {
        // Record ids are unique per org: only a record of the key's own org settles it.
        Some(r) => store::record_stored(&mut tx, &key.org, r).await?,
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
    store::settle(
        &mut tx,
        &store::Settlement {
            id: &id,
            state: new_state,
            record_id: req.record_id.as_deref(),
            now_ms: now,
            actual_micros: req.actual_micros,
            actual_tokens: req.actual_tokens,
            expires_at_ms: new_expires,
        },
    )
    .await?;
    tx.commit()
        .await
        .map_err(dberr("committing a settlement"))?;
    let (hm, ht) = if new_state == "settled" {
        (req.actual_micros, req.actual_tokens)
    } else {
        (0, 0)
    };
    Ok(SettleResponse {
        reservation_id: id,
        state: new_state.into(),
        hold_micros: hm,
        hold_tokens: ht,
        expires_at_ms: new_expires,
    })
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
            store::consume_settled(conn, org, chunk).await?;
        }
    }
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
    let budgets = store::budgets_of_orgs(conn, &orgs).await?;
    if budgets.is_empty() {
        return consume_reservations(conn, stored).await;
    }
    let mut member_groups: HashMap<String, BTreeSet<String>> = HashMap::new();
    if budgets.iter().any(|b| b.level.kind == LevelKind::Group) {
        let users: BTreeSet<&str> = stored
            .iter()
            .filter_map(|v| v.rec.user.as_deref())
            .collect();
        if !users.is_empty() {
            member_groups = store::member_groups(conn, &users).await?;
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
        let ids: Vec<&str> = touched.iter().map(|bi| budgets[*bi].id.as_str()).collect();
        store::lock_budgets(conn, &ids).await?;
    }
    // After the budget locks: a settle of these records (which takes the same locks
    // first) is either committed and seen here, or sees the records itself.
    consume_reservations(conn, stored).await?;
    for ((bi, start), amount) in &deltas {
        store::add_usage(conn, &budgets[*bi].id, *start, *amount).await?;
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
        let mut t = OrgUnits::default();
        for (kind, id, department) in store::org_units(db, &org).await? {
            match kind {
                'd' => t.departments.insert(id),
                'p' => t.projects.insert(id, department).is_none(),
                'g' => t.groups.insert(id, department).is_none(),
                _ => t.users.insert(id, department).is_none(),
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
