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
use crate::db::{Param, bind_all, dberr, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::error::ApiError;
use crate::state::{AppState, admin};
use crate::store::audit::Audited;
use crate::util::{check_id, check_public_key, now_ms, uuid_v7};

/// Kinds of organizational units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Organization (top level).
    Org,
    /// Department of an org.
    Department,
    /// Project (of an org, optionally a department).
    Project,
    /// Group of users.
    Group,
    /// Member.
    User,
}

impl UnitKind {
    /// From the URL segment.
    pub fn from_path(s: &str) -> Option<Self> {
        Some(match s {
            "orgs" => UnitKind::Org,
            "departments" => UnitKind::Department,
            "projects" => UnitKind::Project,
            "groups" => UnitKind::Group,
            "users" => UnitKind::User,
            _ => return None,
        })
    }
    fn table(self) -> &'static str {
        match self {
            UnitKind::Org => "orgs",
            UnitKind::Department => "departments",
            UnitKind::Project => "projects",
            UnitKind::Group => "user_groups",
            UnitKind::User => "users",
        }
    }
    fn name(self) -> &'static str {
        match self {
            UnitKind::Org => "org",
            UnitKind::Department => "department",
            UnitKind::Project => "project",
            UnitKind::Group => "group",
            UnitKind::User => "user",
        }
    }
    /// Optional reference columns the kind accepts (besides `org_id`).
    fn refs(self) -> &'static [&'static str] {
        match self {
            UnitKind::Org => &[],
            UnitKind::Department => &["org_id"],
            UnitKind::Project | UnitKind::Group => &["org_id", "department_id"],
            UnitKind::User => &["org_id", "department_id", "group_id"],
        }
    }
}

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

/// Run `stmts` and one audit entry in one transaction.
async fn write_audited(
    st: &AppState,
    actor: &Principal,
    stmts: Vec<(&str, Vec<Param>)>,
    action: &str,
    target: &str,
    detail: Value,
) -> Result<(), ApiError> {
    let mut ch = Audited::begin(&st.db, "starting an admin transaction").await?;
    for (sql, params) in &stmts {
        let r = bind_all(sql, params)
            .execute(&mut *ch.tx)
            .await
            .map_err(dberr(action))?;
        if r.rows_affected() == 0 {
            return Err(ApiError::not_found(format!(
                "{target} does not exist (or is already in that state)"
            )));
        }
    }
    ch.commit(
        (actor, action, target, &detail),
        "committing an admin change",
    )
    .await?;
    tracing::info!(actor = actor.id(), action, target, "admin change");
    Ok(())
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
    let mut cols = vec!["id", "name", "created_ms"];
    let mut params = vec![
        Param::Text(b.id.clone()),
        Param::Text(name),
        Param::I64(now_ms()),
    ];
    for (f, v) in refs {
        if k.refs().contains(&f) {
            cols.push(f);
            params.push(Param::OptText(v.clone()));
        }
    }
    let ph: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        k.table(),
        cols.join(", "),
        ph.join(", ")
    );
    let detail = serde_json::to_value(&b).unwrap_or(Value::Null);
    write_audited(
        &st,
        &p,
        vec![(&sql, params)],
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
    let mut cols = vec!["id", "name", "created_ms"];
    cols.extend(k.refs());
    let (filter, params) = match (&q.org_id, k) {
        (Some(o), UnitKind::Org) => (" WHERE id = $1", vec![Param::Text(o.clone())]),
        (Some(o), _) => (" WHERE org_id = $1", vec![Param::Text(o.clone())]),
        (None, _) => ("", vec![]),
    };
    let sql = format!(
        "SELECT {} FROM {}{filter} ORDER BY id",
        cols.join(", "),
        k.table()
    );
    let rows = st.db.fetch(&sql, &params, "listing units").await?;
    let mut items = Vec::new();
    for r in &rows {
        let mut o = serde_json::Map::new();
        o.insert("id".into(), json!(get_str(r, 0)?));
        o.insert("name".into(), json!(get_str(r, 1)?));
        o.insert("created_ms".into(), json!(get_i64(r, 2)?));
        for (i, c) in k.refs().iter().enumerate() {
            o.insert((*c).into(), json!(get_opt_str(r, 3 + i)?));
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
    let now = now_ms();
    let stmts = vec![
        (
            "INSERT INTO api_keys (id, org_id, department_id, project_id, group_id, user_id, description, status, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8)",
            vec![
                Param::Text(b.id.clone()),
                Param::Text(b.org_id.clone()),
                Param::OptText(b.department_id.clone()),
                Param::OptText(b.project_id.clone()),
                Param::OptText(b.group_id.clone()),
                Param::OptText(b.user_id.clone()),
                Param::Text(b.description.clone().unwrap_or_default()),
                Param::I64(now),
            ],
        ),
        (
            "INSERT INTO api_key_versions (api_key_id, version, public_key, created_ms) VALUES ($1, 1, $2, $3)",
            vec![
                Param::Text(b.id.clone()),
                Param::Text(b.public_key.trim().to_owned()),
                Param::I64(now),
            ],
        ),
    ];
    let detail = serde_json::to_value(&b).unwrap_or(Value::Null);
    write_audited(
        &st,
        &p,
        stmts,
        "register_key",
        &format!("key {}", b.id),
        detail.clone(),
    )
    .await?;
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
    let rows = st
        .db
        .fetch("SELECT k.status, CAST(COALESCE(MAX(v.version), 0) AS BIGINT) FROM api_keys k LEFT JOIN api_key_versions v ON v.api_key_id = k.id WHERE k.id = $1 GROUP BY k.status", &[Param::Text(id.clone())], "reading a key")
        .await?;
    let Some(r) = rows.first() else {
        return Err(ApiError::not_found(format!(
            "API key `{id}` is not registered"
        )));
    };
    if get_str(r, 0)? != "active" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("API key `{id}` is revoked; register a new key id instead"),
        ));
    }
    let version = get_i64(r, 1)? + 1;
    let now = now_ms();
    let grace = b.grace_secs.unwrap_or(86_400);
    let not_after = now.saturating_add(
        i64::try_from(grace)
            .unwrap_or(i64::MAX / 2_000)
            .saturating_mul(1000),
    );
    let stmts = vec![
        (
            "UPDATE api_key_versions SET not_after_ms = $1 WHERE api_key_id = $2 AND (not_after_ms IS NULL OR not_after_ms > $1)",
            vec![Param::I64(not_after), Param::Text(id.clone())],
        ),
        (
            "INSERT INTO api_key_versions (api_key_id, version, public_key, created_ms) VALUES ($1, $2, $3, $4)",
            vec![
                Param::Text(id.clone()),
                Param::I64(version),
                Param::Text(b.public_key.trim().to_owned()),
                Param::I64(now),
            ],
        ),
    ];
    write_audited(
        &st,
        &p,
        stmts,
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
    let now = now_ms();
    let stmts = vec![(
        "UPDATE api_keys SET status = 'revoked', revoked_ms = $1 WHERE id = $2 AND status = 'active'",
        vec![Param::I64(now), Param::Text(id.clone())],
    )];
    write_audited(
        &st,
        &p,
        stmts,
        "revoke_key",
        &format!("key {id}"),
        json!({}),
    )
    .await?;
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
    let (filter, params) = match &q.org_id {
        Some(o) => (" WHERE k.org_id = $1", vec![Param::Text(o.clone())]),
        None => ("", vec![]),
    };
    let sql = format!(
        "SELECT k.id, k.org_id, k.department_id, k.project_id, k.group_id, k.user_id, k.description, k.status, k.created_ms, k.revoked_ms, v.version, v.public_key, v.not_after_ms
         FROM api_keys k JOIN api_key_versions v ON v.api_key_id = k.id{filter} ORDER BY k.id, v.version"
    );
    let rows = st.db.fetch(&sql, &params, "listing keys").await?;
    let mut items: Vec<Value> = Vec::new();
    for r in &rows {
        let id = get_str(r, 0)?;
        let version = json!({"version": get_i64(r, 10)?, "public_key": get_str(r, 11)?, "not_after_ms": get_opt_i64(r, 12)?});
        if let Some(last) = items.last_mut().filter(|l| l["id"] == json!(id)) {
            if let Some(a) = last["versions"].as_array_mut() {
                a.push(version);
            }
            continue;
        }
        items.push(json!({
            "id": id, "org_id": get_str(r, 1)?, "department_id": get_opt_str(r, 2)?, "project_id": get_opt_str(r, 3)?,
            "group_id": get_opt_str(r, 4)?, "user_id": get_opt_str(r, 5)?, "description": get_str(r, 6)?, "status": get_str(r, 7)?,
            "created_ms": get_i64(r, 8)?, "revoked_ms": get_opt_i64(r, 9)?, "versions": [version],
        }));
    }
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
    let stmts = vec![(
        "INSERT INTO access_tokens (id, token_sha256, role, org_id, department_id, description, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            Param::Text(id.clone()),
            Param::Text(sha256_hex(&token)),
            Param::Text(b.role.clone()),
            Param::OptText(b.org_id.clone()),
            Param::OptText(b.department_id.clone()),
            Param::Text(b.description.clone().unwrap_or_default()),
            Param::I64(now_ms()),
        ],
    )];
    write_audited(
        &st,
        &p,
        stmts,
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
    let rows = st.db.fetch("SELECT id, role, org_id, department_id, description, created_ms, revoked_ms FROM access_tokens ORDER BY id", &[], "listing tokens").await?;
    let mut items = Vec::new();
    for r in &rows {
        items.push(json!({"id": get_str(r, 0)?, "role": get_str(r, 1)?, "org_id": get_opt_str(r, 2)?, "department_id": get_opt_str(r, 3)?,
            "description": get_str(r, 4)?, "created_ms": get_i64(r, 5)?, "revoked_ms": get_opt_i64(r, 6)?}));
    }
    Ok(Json(json!({ "items": items })))
}

/// `POST /v1/admin/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let stmts = vec![(
        "UPDATE access_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        vec![Param::I64(now_ms()), Param::Text(id.clone())],
    )];
    write_audited(
        &st,
        &p,
        stmts,
        "revoke_token",
        &format!("token {id}"),
        json!({}),
    )
    .await?;
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
    let rows = st.db.fetch("SELECT id, ts_ms, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1", &[Param::I64(limit)], "reading the audit log").await?;
    let mut items = Vec::new();
    for r in &rows {
        let detail: Value = serde_json::from_str(&get_str(r, 5)?).unwrap_or(Value::Null);
        items.push(json!({"id": get_str(r, 0)?, "ts_ms": get_i64(r, 1)?, "actor": get_str(r, 2)?, "action": get_str(r, 3)?, "target": get_str(r, 4)?, "detail": detail}));
    }
    Ok(Json(json!({ "items": items })))
}
