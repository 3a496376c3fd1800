//! `/v1/admin/org-tree`, policies per level, budgets with their status, alerts, group
//! members and a key's effective policy (admin token). Every change is written with
//! one audit entry in its own transaction.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use gaterouter::accounts::{Enforcement, Metric, Period, PolicyRules};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::dberr;
use crate::error::ApiError;
use crate::orgfile::{BudgetEntry, LimitValue, OrgFile};
use crate::orgtree::{ApplyReport, check_membership, level_org, parse_level};
use crate::state::{AppState, admin};
use crate::store::audit::Audited;
use crate::store::budgets::{NewBudget, projected, statuses};
use crate::store::keys::load_keys;
use crate::store::policy::key_context;

/// Query of `PUT /v1/admin/org-tree`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Report what would change without writing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `PUT /v1/admin/org-tree[?dry_run=true]`: apply an organization document.
pub async fn put_org_tree(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ApplyQuery>,
    body: axum::body::Bytes,
) -> Result<Json<ApplyReport>, ApiError> {
    let p = admin(&st, &headers).await?;
    let f = crate::orgfile::parse(
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("body is not UTF-8 JSON"))?,
        crate::orgfile::Format::Json,
    )
    .map_err(ApiError::bad_request)?;
    Ok(Json(
        crate::orgtree::apply(&st.db, &p, &f, q.dry_run).await?,
    ))
}

/// Query of `GET /v1/admin/org-tree`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Org id.
    pub org: String,
}

/// `GET /v1/admin/org-tree?org=ID`: the org as a document `PUT` accepts (a no-op apply).
pub async fn get_org_tree(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> Result<Json<OrgFile>, ApiError> {
    admin(&st, &headers).await?;
    Ok(Json(crate::orgtree::export(&st.db, &q.org).await?))
}

/// `GET /v1/admin/policies/{level}`.
pub async fn get_policy(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(level): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    let level = parse_level(&level)?;
    let Some((rules, updated_ms)) =
        crate::store::policy::read_policy(&st.db, &level.to_string()).await?
    else {
        return Err(ApiError::not_found(format!("no policy at {level}")));
    };
    let rules: Value = serde_json::from_str(&rules).unwrap_or(Value::Null);
    Ok(Json(
        json!({"level": level, "rules": rules, "updated_ms": updated_ms}),
    ))
}

/// `PUT /v1/admin/policies/{level}` with a `PolicyRules` body.
pub async fn put_policy(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(level): Path<String>,
    body: Result<Json<PolicyRules>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let level = parse_level(&level)?;
    let Json(rules) = body.map_err(|e| {
        ApiError::bad_request(format!("body is not PolicyRules: {}", e.body_text()))
    })?;
    rules.validate("").map_err(ApiError::bad_request)?;
    let org = level_org(&st.db, &level).await?;
    let text = serde_json::to_string(&rules).unwrap_or_else(|_| "{}".into());
    let now = st.db.clock().now_ms();
    let mut ch = Audited::begin(&st.db, "starting a policy change").await?;
    crate::store::policy::write_policy(&mut ch.tx, &level.to_string(), &org, &text, now).await?;
    ch.commit(
        (
            &p,
            "put_policy",
            &level.to_string(),
            &serde_json::to_value(&rules).unwrap_or(Value::Null),
        ),
        "committing a policy",
    )
    .await?;
    Ok(Json(
        json!({"level": level, "rules": rules, "updated_ms": now}),
    ))
}

/// `DELETE /v1/admin/policies/{level}`.
pub async fn delete_policy(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(level): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let level = parse_level(&level)?;
    let mut ch = Audited::begin(&st.db, "starting a policy change").await?;
    if !crate::store::policy::delete_policy(&mut ch.tx, &level.to_string()).await? {
        return Err(ApiError::not_found(format!("no policy at {level}")));
    }
    ch.commit(
        (&p, "delete_policy", &level.to_string(), &json!({})),
        "committing a policy",
    )
    .await?;
    Ok(Json(json!({"level": level, "deleted": true})))
}

/// Query of the budget and alert lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgQuery {
    /// Only this org.
    pub org_id: Option<String>,
}

/// `GET /v1/admin/budgets[?org_id=]`: every budget with its current status.
pub async fn list_budgets(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<OrgQuery>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    let budgets = crate::store::budgets::list(&st.db, q.org_id.as_deref()).await?;
    let mut conn = st
        .db
        .pool
        .acquire()
        .await
        .map_err(dberr("acquiring a connection"))?;
    let sts = statuses(&mut conn, &budgets, st.db.clock().now_u64()).await?;
    drop(conn);
    let now = st.db.clock().now_u64();
    let items: Vec<Value> = sts.iter().zip(&budgets).map(|(s, b)| json!({"org_id": b.org_id, "status": s, "projected_at_reset": projected(s, now)})).collect();
    Ok(Json(json!({"items": items})))
}

/// Body of `POST /v1/admin/groups/{id}/members`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The member to add.
    pub user_id: String,
}

/// `GET /v1/admin/groups/{id}/members`.
pub async fn list_members(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    level_org(
        &st.db,
        &gaterouter::accounts::Level::new(gaterouter::accounts::LevelKind::Group, group.clone()),
    )
    .await?;
    let items = crate::store::orgtree::group_members(&st.db, &group).await?;
    Ok(Json(json!({"group": group, "members": items})))
}

/// `POST /v1/admin/groups/{id}/members`: add a member to a group (a member may be in
/// several groups; idempotent).
pub async fn add_member(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: Result<Json<AddMember>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let Json(b) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "body is not {{\"user_id\": ...}}: {}",
            e.body_text()
        ))
    })?;
    check_membership(&st.db, &group, &b.user_id).await?;
    let mut ch = Audited::begin(&st.db, "starting a membership change").await?;
    let added = crate::store::orgtree::add_member(&mut ch.tx, &group, &b.user_id, ch.now).await?;
    if added {
        let detail = json!({"user_id": b.user_id});
        ch.commit(
            (&p, "add_group_member", &format!("group {group}"), &detail),
            "committing a membership",
        )
        .await?;
    } else {
        ch.commit_unaudited("committing a membership").await?;
    }
    Ok(Json(
        json!({"group": group, "user_id": b.user_id, "added": added}),
    ))
}

/// `DELETE /v1/admin/groups/{id}/members/{user}`.
pub async fn remove_member(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((group, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let mut ch = Audited::begin(&st.db, "starting a membership change").await?;
    if !crate::store::orgtree::remove_member(&mut ch.tx, &group, &user).await? {
        return Err(ApiError::not_found(format!(
            "user `{user}` is not a member of group `{group}`"
        )));
    }
    ch.commit(
        (
            &p,
            "remove_group_member",
            &format!("group {group}"),
            &json!({"user_id": user}),
        ),
        "committing a membership",
    )
    .await?;
    Ok(Json(
        json!({"group": group, "user_id": user, "removed": true}),
    ))
}

/// Body of `POST /v1/admin/budgets`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBudget {
    /// Level (`department:eng`).
    pub level: String,
    /// `usd` or `tokens`.
    pub metric: Metric,
    /// `hour`, `day` or `month`.
    pub period: Period,
    /// Dollars (usd) or tokens.
    pub limit: LimitValue,
    /// `hard` or `soft`.
    pub enforcement: Enforcement,
    /// Alert thresholds in percent.
    #[serde(default)]
    pub notify_at: Option<Vec<u8>>,
}

/// `POST /v1/admin/budgets`: create (or replace the limit of) the budget of a level for
/// a metric and period.
pub async fn create_budget(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<CreateBudget>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = admin(&st, &headers).await?;
    let Json(b) =
        body.map_err(|e| ApiError::bad_request(format!("invalid body: {}", e.body_text())))?;
    let level = parse_level(&b.level)?;
    let entry = BudgetEntry {
        metric: b.metric,
        period: b.period,
        limit: b.limit.clone(),
        enforcement: b.enforcement,
        notify_at: b.notify_at.clone(),
    };
    let limit = entry
        .limit_units()
        .map_err(|e| ApiError::bad_request(format!("limit: {e}")))?;
    if entry
        .notify_at
        .iter()
        .flatten()
        .any(|n| *n == 0 || *n > 100)
    {
        return Err(ApiError::bad_request(
            "notify_at: percentages must be 1..=100",
        ));
    }
    let org = level_org(&st.db, &level).await?;
    let notify =
        serde_json::to_string(&entry.notify_at_or_default()).unwrap_or_else(|_| "[]".into());
    let mut ch = Audited::begin(&st.db, "starting a budget change").await?;
    let new = NewBudget {
        org: &org,
        level: &level.to_string(),
        metric: b.metric,
        period: b.period,
        limit,
        enforcement: b.enforcement,
        notify_at: &notify,
    };
    let id = crate::store::budgets::upsert(&mut ch.tx, &new, ch.now).await?;
    ch.commit(
        (
            &p,
            "put_budget",
            &format!("budget {id}"),
            &serde_json::to_value(&b).unwrap_or(Value::Null),
        ),
        "committing a budget",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": id, "org_id": org, "level": level, "metric": b.metric, "period": b.period, "limit": limit, "enforcement": b.enforcement, "notify_at": entry.notify_at_or_default()}),
        ),
    ))
}

/// `DELETE /v1/admin/budgets/{id}`.
pub async fn delete_budget(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let mut ch = Audited::begin(&st.db, "starting a budget change").await?;
    if !crate::store::budgets::delete(&mut ch.tx, &id).await? {
        return Err(ApiError::not_found(format!("budget `{id}` does not exist")));
    }
    ch.commit(
        (&p, "delete_budget", &format!("budget {id}"), &json!({})),
        "committing a budget",
    )
    .await?;
    Ok(Json(json!({"id": id, "deleted": true})))
}

/// `GET /v1/admin/alerts[?org_id=]`: budget alerts, newest first.
pub async fn list_alerts(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<OrgQuery>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    let items = crate::store::budgets::alerts(&st.db, q.org_id.as_deref()).await?;
    Ok(Json(json!({"items": items})))
}

/// Query of `GET /v1/admin/effective-policy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyQuery {
    /// The key.
    pub api_key_id: String,
}

/// `GET /v1/admin/effective-policy?api_key_id=`: what `GET /v1/policy` answers that key.
pub async fn effective_policy(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<KeyQuery>,
) -> Result<Json<gaterouter::accounts::EffectivePolicy>, ApiError> {
    admin(&st, &headers).await?;
    let ids = std::iter::once(q.api_key_id.clone()).collect();
    let mut keys = load_keys(&st.db, &ids, st.db.clock().now_ms()).await?;
    let key = keys.remove(&q.api_key_id).ok_or_else(|| {
        ApiError::not_found(format!("API key `{}` is not registered", q.api_key_id))
    })?;
    let ctx = key_context(&st.db, key).await?;
    Ok(Json(
        crate::store::policy::effective_policy(&st.db, &ctx).await?,
    ))
}
