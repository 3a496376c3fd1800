//! Admin API (admin bearer token): orgs, departments, projects, groups, users, API keys
//! (register / rotate / revoke) and access tokens. Every change is written to the
//! append-only `audit_log` in the same transaction as the change itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{Principal, new_token, sha256_hex};
use crate::error::ApiError;
use crate::state::{AppState, admin};
use crate::store::audit::Audited;
use crate::store::{audit, keys, tokens, units};
use crate::util::{check_id, check_public_key, uuid_v7};

pub use crate::store::units::UnitKind;

/// Body of `POST /v1/admin/{orgs|departments|projects|groups|users}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUnit {
    /// Stable id (1..=128 bytes), used in usage records.
    pub id: String,
    /// Display name (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Parent org (required except for orgs).
    #[serde(default)]
    pub org_id: Option<String>,
    /// Parent department.
    #[serde(default)]
    pub department_id: Option<String>,
    /// Group (users only).
    #[serde(default)]
    pub group_id: Option<String>,
}

/// End an admin change begun with [`Audited::begin`]: `changed` is the rows the change
/// wrote; none means the target does not exist (or is already in that state), so 404
/// and nothing is committed; otherwise the audit entry is appended and all commits.
async fn finish(
    ch: Audited<'_>,
    changed: u64,
    actor: &Principal,
    action: &str,
    target: &str,
    detail: Value,
) -> Result<(), ApiError> {
    if changed == 0 {
        return Err(ApiError::not_found(format!(
            "{target} does not exist (or is already in that state)"
        )));
    }
    ch.commit(
        (actor, action, target, &detail),
        "committing an admin change",
    )
    .await?;
    tracing::info!(actor = actor.id(), action, target, "admin change");
    Ok(())
}

async fn begin(st: &AppState) -> Result<Audited<'_>, ApiError> {
    Ok(Audited::begin(&st.db, "starting an admin transaction").await?)
}

fn kind(s: &str) -> Result<UnitKind, ApiError> {
    UnitKind::from_path(s).ok_or_else(|| ApiError::not_found(format!("unknown admin collection `{s}`: use orgs, departments, projects, groups, users, keys or tokens")))
}

/// `POST /v1/admin/{kind}`.
pub async fn create_unit(
    State(st): State<Arc<AppState>>,
    Path(k): Path<String>,
    headers: HeaderMap,
    body: Result<Json<CreateUnit>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = admin(&st, &headers).await?;
    let k = kind(&k)?;
    let Json(b) =
        body.map_err(|e| ApiError::bad_request(format!("invalid body: {}", e.body_text())))?;
    check_id("id", &b.id)?;
    let refs = [
        ("org_id", &b.org_id),
        ("department_id", &b.department_id),
        ("group_id", &b.group_id),
    ];
    for (f, v) in refs {
        match v {
            Some(v) if !k.refs().contains(&f) => {
                return Err(ApiError::bad_request(format!(
                    "a {} has no `{f}` (got `{v}`)",
                    k.name()
                )));
            }
            Some(v) => check_id(f, v)?,
            None if f == "org_id" && k != UnitKind::Org => {
                return Err(ApiError::bad_request(format!(
                    "a {} needs `org_id`",
                    k.name()
                )));
            }
            None => {}
        }
    }
    let name = b.name.clone().unwrap_or_else(|| b.id.clone());
    let refs: Vec<(&str, Option<String>)> = refs.iter().map(|(f, v)| (*f, (*v).clone())).collect();
    let detail = serde_json::to_value(&b).unwrap_or(Value::Null);
    let mut ch = begin(&st).await?;
    let n = units::insert(&mut ch.tx, k, &b.id, &name, ch.now, &refs).await?;
    finish(
        ch,
        n,
        &p,
        &format!("create_{}", k.name()),
        &format!("{} {}", k.name(), b.id),
        detail.clone(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

/// Query of list endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only units of this org.
    pub org_id: Option<String>,
}

/// `GET /v1/admin/{kind}`.
pub async fn list_units(
    State(st): State<Arc<AppState>>,
    Path(k): Path<String>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    let k = kind(&k)?;
    let mut items = Vec::new();
    for u in units::list(&st.db, k, q.org_id.as_deref()).await? {
        let mut o = serde_json::Map::new();
        o.insert("id".into(), json!(u.id));
        o.insert("name".into(), json!(u.name));
        o.insert("created_ms".into(), json!(u.created_ms));
        for (c, v) in u.refs {
            o.insert(c.into(), json!(v));
        }
        items.push(Value::Object(o));
    }
    Ok(Json(json!({ "items": items })))
}

/// Body of `POST /v1/admin/keys`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The `api_key_id` the client puts in its records.
    pub id: String,
    /// Ed25519 public key, standard base64 (44 characters).
    pub public_key: String,
    /// Bound org (records must carry it).
    pub org_id: String,
    /// Bound department (records must carry it when set).
    #[serde(default)]
    pub department_id: Option<String>,
    /// Bound project.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Bound group.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Bound user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /v1/admin/keys`: register a key and its scope.
pub async fn create_key(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<CreateKey>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = admin(&st, &headers).await?;
    let Json(b) =
        body.map_err(|e| ApiError::bad_request(format!("invalid body: {}", e.body_text())))?;
    check_id("id", &b.id)?;
    check_id("org_id", &b.org_id)?;
    check_public_key(&b.public_key)?;
    let detail = serde_json::to_value(&b).unwrap_or(Value::Null);
    let mut ch = begin(&st).await?;
    let n = keys::register(
        &mut ch.tx,
        &keys::NewKey {
            id: &b.id,
            org_id: &b.org_id,
            department_id: b.department_id.as_deref(),
            project_id: b.project_id.as_deref(),
            group_id: b.group_id.as_deref(),
            user_id: b.user_id.as_deref(),
            description: b.description.as_deref().unwrap_or_default(),
            public_key: b.public_key.trim(),
            created_ms: st.db.clock().now_ms(),
        },
    )
    .await?;
    finish(ch, n, &p, "register_key", &format!("key {}", b.id), detail).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": b.id, "status": "active", "version": 1})),
    ))
}

/// Body of `POST /v1/admin/keys/{id}/rotate`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// The new public key.
    pub public_key: String,
    /// How long records signed with the previous key are still accepted (they may sit
    /// in a client's spool). Default 86 400 s; 0 = refuse them at once.
    #[serde(default)]
    pub grace_secs: Option<u64>,
}

/// `POST /v1/admin/keys/{id}/rotate`.
pub async fn rotate_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RotateKey>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let Json(b) =
        body.map_err(|e| ApiError::bad_request(format!("invalid body: {}", e.body_text())))?;
    check_public_key(&b.public_key)?;
    let Some((status, latest)) = keys::status_and_version(&st.db, &id).await? else {
        return Err(ApiError::not_found(format!(
            "API key `{id}` is not registered"
        )));
    };
    if status != "active" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("API key `{id}` is revoked; register a new key id instead"),
        ));
    }
    let version = latest + 1;
    let now = st.db.clock().now_ms();
    let grace = b.grace_secs.unwrap_or(86_400);
    let not_after = now.saturating_add(
        i64::try_from(grace)
            .unwrap_or(i64::MAX / 2_000)
            .saturating_mul(1000),
    );
    let mut ch = begin(&st).await?;
    let n = keys::rotate(
        &mut ch.tx,
        &id,
        version,
        b.public_key.trim(),
        now,
        not_after,
    )
    .await?;
    finish(
        ch,
        n,
        &p,
        "rotate_key",
        &format!("key {id}"),
        serde_json::to_value(&b).unwrap_or(Value::Null),
    )
    .await?;
    Ok(Json(
        json!({"id": id, "status": "active", "version": version, "previous_valid_until_ms": not_after}),
    ))
}

/// `POST /v1/admin/keys/{id}/revoke`: records signed by this key are refused from now on.
pub async fn revoke_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let now = st.db.clock().now_ms();
    let mut ch = begin(&st).await?;
    let n = keys::revoke(&mut ch.tx, &id, now).await?;
    finish(ch, n, &p, "revoke_key", &format!("key {id}"), json!({})).await?;
    Ok(Json(
        json!({"id": id, "status": "revoked", "revoked_ms": now}),
    ))
}

/// `GET /v1/admin/keys`.
pub async fn list_keys(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    let items: Vec<Value> = keys::list(&st.db, q.org_id.as_deref())
        .await?
        .into_iter()
        .map(|k| {
            let versions: Vec<Value> = k
                .versions
                .iter()
                .map(|v| json!({"version": v.version, "public_key": v.public_key, "not_after_ms": v.not_after_ms}))
                .collect();
            json!({
                "id": k.id, "org_id": k.org_id, "department_id": k.department_id, "project_id": k.project_id,
                "group_id": k.group_id, "user_id": k.user_id, "description": k.description, "status": k.status,
                "created_ms": k.created_ms, "revoked_ms": k.revoked_ms, "versions": versions,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// Body of `POST /v1/admin/tokens`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `admin` or `read`.
    pub role: String,
    /// For `read`: the org it may read (required).
    #[serde(default)]
    pub org_id: Option<String>,
    /// For `read`: limit to one department.
    #[serde(default)]
    pub department_id: Option<String>,
    /// Free text (who holds it).
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /v1/admin/tokens`: issue a token; the clear token is returned once, only its
/// SHA-256 is stored.
pub async fn create_token(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = admin(&st, &headers).await?;
    let Json(b) =
        body.map_err(|e| ApiError::bad_request(format!("invalid body: {}", e.body_text())))?;
    match (b.role.as_str(), &b.org_id, &b.department_id) {
        ("admin", None, None) => {}
        ("admin", _, _) => {
            return Err(ApiError::bad_request(
                "admin tokens are not scoped: drop org_id/department_id, or use role `read`",
            ));
        }
        ("read", Some(o), d) => {
            check_id("org_id", o)?;
            if let Some(d) = d {
                check_id("department_id", d)?;
            }
        }
        ("read", None, _) => {
            return Err(ApiError::bad_request(
                "a read token needs `org_id` (and optionally `department_id`)",
            ));
        }
        (r, _, _) => {
            return Err(ApiError::bad_request(format!(
                "`role` is `{r}`: use `admin` or `read`"
            )));
        }
    }
    let token = new_token();
    let id = uuid_v7();
    let mut ch = begin(&st).await?;
    let n = tokens::insert(
        &mut ch.tx,
        &tokens::NewToken {
            id: &id,
            sha256: &sha256_hex(&token),
            role: &b.role,
            org_id: b.org_id.as_deref(),
            department_id: b.department_id.as_deref(),
            description: b.description.as_deref().unwrap_or_default(),
            created_ms: st.db.clock().now_ms(),
        },
    )
    .await?;
    finish(
        ch,
        n,
        &p,
        "create_token",
        &format!("token {id}"),
        serde_json::to_value(&b).unwrap_or(Value::Null),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": id, "token": token, "role": b.role, "org_id": b.org_id, "department_id": b.department_id}),
        ),
    ))
}

/// `GET /v1/admin/tokens` (never the tokens themselves).
pub async fn list_tokens(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    let items: Vec<Value> = tokens::list(&st.db)
        .await?
        .into_iter()
        .map(|t| {
            json!({"id": t.id, "role": t.role, "org_id": t.org_id, "department_id": t.department_id,
                "description": t.description, "created_ms": t.created_ms, "revoked_ms": t.revoked_ms})
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// `POST /v1/admin/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let mut ch = begin(&st).await?;
    let n = tokens::revoke(&mut ch.tx, &id, ch.now).await?;
    finish(ch, n, &p, "revoke_token", &format!("token {id}"), json!({})).await?;
    Ok(Json(json!({"id": id, "revoked": true})))
}

/// Query of `GET /v1/admin/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Most entries returned (newest first). Default 100, at most 10 000.
    pub limit: Option<u32>,
}

/// `GET /v1/admin/audit`.
pub async fn list_audit(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    let limit = i64::from(q.limit.unwrap_or(100).min(10_000));
    let mut items = Vec::new();
    for e in audit::entries(&st.db, limit).await? {
        let detail: Value = serde_json::from_str(&e.detail).unwrap_or(Value::Null);
        items.push(json!({"id": e.id, "ts_ms": e.ts_ms, "actor": e.actor, "action": e.action, "target": e.target, "detail": detail}));
    }
    Ok(Json(json!({ "items": items })))
}
