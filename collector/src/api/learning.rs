//! `/v1/admin/orgs/{org}/routing`: an org's routing that learns, its settings and runs,
//! and which weights version is served (admin token).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use gaterouter::accounts::{MAX_EXPLORE_PERMILLE, MAX_SHADOW_PERMILLE};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::db::Db;
use crate::error::ApiError;
use crate::learning::describe;
use crate::state::{AppState, admin};
use crate::store::bills::{Unit, unit_place};
use crate::store::learning as store;

/// The org exists, or 404.
async fn org_exists(db: &Db, org: &str) -> Result<(), ApiError> {
    if !store::org_exists(db, org).await? {
        return Err(ApiError::not_found(format!(
            "org `{org}` does not exist: create it first (POST /v1/admin/orgs)"
        )));
    }
    Ok(())
}

/// Body of `PUT /v1/admin/orgs/{org}/routing`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRouting {
    /// `auto` records of the org carry learning features (and explore).
    pub learning: bool,
    /// Exploration share in thousandths, `0..=500` (default 50: 5 %).
    #[serde(default = "default_explore")]
    pub explore_permille: u32,
    /// Shadow sampling share in thousandths, `0..=1000` (default 0: off): plain `auto`
    /// calls also sent to the other arm, for the app's evaluator to rate both answers.
    #[serde(default)]
    pub shadow_permille: u32,
}

fn default_explore() -> u32 {
    store::DEFAULT_EXPLORE_PERMILLE
}

/// `GET /v1/admin/orgs/{org}/routing`: settings, the served weights version, every
/// promoted version with its report, the latest runs, the collector's weights public key.
pub async fn get_routing(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    org_exists(&st.db, &org).await?;
    Ok(Json(describe(&st.db, &org).await?))
}

/// `PUT /v1/admin/orgs/{org}/routing`: turn learning on or off, set exploration.
pub async fn put_routing(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org): Path<String>,
    body: Result<Json<PutRouting>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let Json(b) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "body is not {{\"learning\": bool, \"explore_permille\": 0..=500, \"shadow_permille\": 0..=1000}}: {}",
            e.body_text()
        ))
    })?;
    if b.explore_permille > MAX_EXPLORE_PERMILLE {
        return Err(ApiError::bad_request(format!(
            "explore_permille: {} is above {MAX_EXPLORE_PERMILLE} (at most half of the auto calls explore); use e.g. 50 for 5 %",
            b.explore_permille
        )));
    }
    if b.shadow_permille > MAX_SHADOW_PERMILLE {
        return Err(ApiError::bad_request(format!(
            "shadow_permille: {} is above {MAX_SHADOW_PERMILLE} (every plain auto call); use e.g. 100 for 10 % (each shadowed call costs a second call)",
            b.shadow_permille
        )));
    }
    org_exists(&st.db, &org).await?;
    let s = store::put_settings(
        &st.db,
        &org,
        b.learning,
        b.explore_permille,
        b.shadow_permille,
        st.db.clock().now_ms(),
    )
    .await?;
    let detail = json!({"learning": s.learning, "explore_permille": s.explore_permille, "shadow_permille": s.shadow_permille});
    crate::store::audit::Audited::begin(&st.db, "starting an audit entry")
        .await?
        .commit(
            (&p, "put_routing", &format!("org:{org}"), &detail),
            "committing an audit entry",
        )
        .await?;
    Ok(Json(describe(&st.db, &org).await?))
}

/// `POST /v1/admin/orgs/{org}/routing/learn`: run learning now; answers the report.
pub async fn post_learn(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    org_exists(&st.db, &org).await?;
    let run = crate::learning::learn_org(&st.db, &org).await?;
    Ok(Json(run.to_json()))
}

/// Body of `POST /v1/admin/orgs/{org}/routing/activate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activate {
    /// A stored version of the scope (`GET /v1/admin/orgs/{org}/routing` lists them), or
    /// `null`: serve no learned weights there (the org's keys use their own weights, a
    /// project's keys the org's). Required, so that a body that forgot it does not
    /// remove the served weights.
    #[serde(deserialize_with = "Option::deserialize")]
    pub version: Option<String>,
    /// The project whose weights to change; absent: the org's own.
    #[serde(default)]
    pub project: Option<String>,
}

/// `POST /v1/admin/orgs/{org}/routing/activate`: serve an earlier weights version again,
/// or none (a rollback); the next learning run compares its fit with what is served then.
pub async fn post_activate(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org): Path<String>,
    body: Result<Json<Activate>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let Json(b) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "body is not {{\"version\": \"VERSION\" | null, \"project\"?: \"PROJECT\"}}: {}",
            e.body_text()
        ))
    })?;
    org_exists(&st.db, &org).await?;
    let project = b.project.as_deref().unwrap_or("");
    // How the scope is named in a refusal, and in the audit log.
    let (scope, target) = match project {
        "" => (format!("org `{org}`"), format!("org:{org}")),
        pr => {
            let place = unit_place(&st.db, Unit::Project, pr).await?;
            if place.is_none_or(|(o, _)| o != org) {
                return Err(ApiError::not_found(format!(
                    "project: `{pr}` is not a project of org `{org}` (GET /v1/admin/projects?org_id={org} lists them); leave it out to change the org's own weights"
                )));
            }
            (
                format!("project `{pr}` of org `{org}`"),
                format!("org:{org}/project:{pr}"),
            )
        }
    };
    if !store::activate(&st.db, &org, project, b.version.as_deref()).await? {
        return Err(ApiError::not_found(format!(
            "version: `{}` is not a weights version of {scope}: pick one from GET /v1/admin/orgs/{org}/routing (`weights`, with its `project`), or null to serve none",
            b.version.unwrap_or_default()
        )));
    }
    crate::store::audit::Audited::begin(&st.db, "starting an audit entry")
        .await?
        .commit(
            (
                &p,
                "activate_routing_weights",
                &target,
                &json!({"version": b.version}),
            ),
            "committing an audit entry",
        )
        .await?;
    Ok(Json(describe(&st.db, &org).await?))
}
