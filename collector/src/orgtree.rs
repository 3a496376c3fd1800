//! Enterprise accounts: an org's tree imported and exported as one document (the shape
//! of [`crate::orgfile`], `PUT`/`GET /v1/admin/org-tree`), and the checks of the levels
//! that policies, budgets and group memberships name. The handlers are in
//! `api/orgtree.rs`, the SQL in [`crate::store::orgtree`].
//!
//! Import is a diff against the database: entries are created or updated, equal ones
//! are counted as unchanged, and entries missing from the document are reported in
//! `removed_not_deleted` and left alone (delete them explicitly). The whole apply is one
//! transaction with one audit entry.

use axum::http::StatusCode;
use gaterouter::accounts::{Level, LevelKind, Metric, PolicyRules};
use serde_json::json;
use sqlx::AnyConnection;

use crate::auth::Principal;
use crate::db::{Db, dberr};
use crate::error::ApiError;
use crate::orgfile::{
    BudgetEntry, DepartmentEntry, KeyEntry, MemberEntry, OrgEntry, OrgFile, UnitEntry, limit_value,
};
use crate::store::audit::audit;
pub use crate::store::orgtree::ApplyReport;
use crate::store::orgtree::{Budget, Key, Member, Tree, Unit, foreign_ids, plan};

fn rules_json(p: &Option<PolicyRules>) -> Option<String> {
    p.as_ref()
        .filter(|p| !p.is_empty())
        .and_then(|p| serde_json::to_string(p).ok())
}

fn budget_of(b: &BudgetEntry) -> Result<Budget, String> {
    Ok(Budget {
        limit: i64::try_from(b.limit_units()?).unwrap_or(i64::MAX),
        enforcement: b.enforcement.as_str().into(),
        notify_at: serde_json::to_string(&b.notify_at_or_default()).unwrap_or_else(|_| "[]".into()),
    })
}

impl Tree {
    fn add_level(
        &mut self,
        level: String,
        policy: &Option<PolicyRules>,
        budgets: &[BudgetEntry],
    ) -> Result<(), String> {
        if let Some(r) = rules_json(policy) {
            self.policies.insert(level.clone(), r);
        }
        for b in budgets {
            self.budgets.insert(
                (
                    level.clone(),
                    b.metric.as_str().into(),
                    b.period.as_str().into(),
                ),
                budget_of(b)?,
            );
        }
        Ok(())
    }

    /// The tree an org document describes.
    pub(crate) fn from_file(f: &OrgFile) -> Result<Tree, String> {
        let mut t = Tree {
            org_name: Some(f.org.name.clone().unwrap_or_else(|| f.org.id.clone())),
            ..Default::default()
        };
        t.add_level(format!("org:{}", f.org.id), &f.org.policy, &f.org.budgets)?;
        for d in &f.departments {
            t.departments.insert(
                d.id.clone(),
                Unit {
                    name: d.name.clone().unwrap_or_else(|| d.id.clone()),
                    department: None,
                },
            );
            t.add_level(format!("department:{}", d.id), &d.policy, &d.budgets)?;
        }
        for (kind, list) in [("project", &f.projects), ("group", &f.groups)] {
            for p in list {
                let u = Unit {
                    name: p.name.clone().unwrap_or_else(|| p.id.clone()),
                    department: p.department.clone(),
                };
                if kind == "project" {
                    t.projects.insert(p.id.clone(), u)
                } else {
                    t.groups.insert(p.id.clone(), u)
                };
                t.add_level(format!("{kind}:{}", p.id), &p.policy, &p.budgets)?;
            }
        }
        for m in &f.members {
            t.members.insert(
                m.id.clone(),
                Member {
                    name: m.name.clone().unwrap_or_else(|| m.id.clone()),
                    department: m.department.clone(),
                    groups: m.groups.iter().cloned().collect(),
                },
            );
            t.add_level(format!("user:{}", m.id), &m.policy, &m.budgets)?;
        }
        for k in &f.keys {
            t.keys.insert(
                k.id.clone(),
                Key {
                    description: k.description.clone().unwrap_or_default(),
                    department: k.department.clone(),
                    project: k.project.clone(),
                    group: k.group.clone(),
                    user: k.user.clone(),
                    public_key: k.public_key.trim().to_owned(),
                },
            );
            t.add_level(format!("key:{}", k.id), &k.policy, &k.budgets)?;
        }
        Ok(t)
    }

    fn level_extras(&self, level: &str) -> (Option<PolicyRules>, Vec<BudgetEntry>) {
        let policy = self
            .policies
            .get(level)
            .and_then(|s| serde_json::from_str(s).ok());
        let budgets = self
            .budgets
            .range((level.to_owned(), String::new(), String::new())..)
            .take_while(|((l, _, _), _)| l == level)
            .filter_map(|((_, m, p), b)| {
                let metric: Metric = serde_json::from_value(json!(m)).ok()?;
                Some(BudgetEntry {
                    metric,
                    period: serde_json::from_value(json!(p)).ok()?,
                    limit: limit_value(metric, u64::try_from(b.limit).unwrap_or(0)),
                    enforcement: serde_json::from_value(json!(b.enforcement)).ok()?,
                    notify_at: serde_json::from_str(&b.notify_at).ok(),
                })
            })
            .collect();
        (policy, budgets)
    }

    /// The tree as an org document (what `PUT` accepts as a no-op).
    pub(crate) fn to_file(&self, org: &str) -> OrgFile {
        let (policy, budgets) = self.level_extras(&format!("org:{org}"));
        let unit = |kind: &str, id: &String, u: &Unit| {
            let (policy, budgets) = self.level_extras(&format!("{kind}:{id}"));
            UnitEntry {
                id: id.clone(),
                name: Some(u.name.clone()),
                department: u.department.clone(),
                policy,
                budgets,
            }
        };
        OrgFile {
            org: OrgEntry {
                id: org.to_owned(),
                name: self.org_name.clone(),
                policy,
                budgets,
            },
            departments: self
                .departments
                .iter()
                .map(|(id, u)| {
                    let (policy, budgets) = self.level_extras(&format!("department:{id}"));
                    DepartmentEntry {
                        id: id.clone(),
                        name: Some(u.name.clone()),
                        policy,
                        budgets,
                    }
                })
                .collect(),
            projects: self
                .projects
                .iter()
                .map(|(id, u)| unit("project", id, u))
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|(id, u)| unit("group", id, u))
                .collect(),
            members: self
                .members
                .iter()
                .map(|(id, m)| {
                    let (policy, budgets) = self.level_extras(&format!("user:{id}"));
                    MemberEntry {
                        id: id.clone(),
                        name: Some(m.name.clone()),
                        department: m.department.clone(),
                        groups: m.groups.iter().cloned().collect(),
                        policy,
                        budgets,
                    }
                })
                .collect(),
            keys: self
                .keys
                .iter()
                .map(|(id, k)| {
                    let (policy, budgets) = self.level_extras(&format!("key:{id}"));
                    KeyEntry {
                        id: id.clone(),
                        description: Some(k.description.clone()).filter(|d| !d.is_empty()),
                        department: k.department.clone(),
                        project: k.project.clone(),
                        group: k.group.clone(),
                        user: k.user.clone(),
                        public_key: k.public_key.clone(),
                        policy,
                        budgets,
                    }
                })
                .collect(),
        }
    }
}

async fn check_foreign(conn: &mut AnyConnection, f: &OrgFile) -> Result<(), ApiError> {
    let org = &f.org.id;
    let lists: [(&str, &str, Vec<&String>); 5] = [
        (
            "departments",
            "departments",
            f.departments.iter().map(|x| &x.id).collect(),
        ),
        (
            "projects",
            "projects",
            f.projects.iter().map(|x| &x.id).collect(),
        ),
        (
            "groups",
            "user_groups",
            f.groups.iter().map(|x| &x.id).collect(),
        ),
        (
            "members",
            "users",
            f.members.iter().map(|x| &x.id).collect(),
        ),
        ("keys", "api_keys", f.keys.iter().map(|x| &x.id).collect()),
    ];
    for (field, table, ids) in lists {
        let foreign = foreign_ids(conn, table, org).await?;
        for (i, id) in ids.iter().enumerate() {
            if let Some(other) = foreign.get(*id) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "{field}[{i}].id: `{id}` already belongs to org `{other}`; ids are global, choose another"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Apply an org document: create and update what differs (never deleting), all in one
/// transaction with one audit entry; with `dry_run` only report what would change.
pub async fn apply(
    db: &Db,
    actor: &Principal,
    f: &OrgFile,
    dry_run: bool,
) -> Result<ApplyReport, ApiError> {
    let want = Tree::from_file(f).map_err(ApiError::bad_request)?;
    let org = f.org.id.clone();
    let _g = db.write_guard().await;
    let mut tx = db.begin_write().await?;
    check_foreign(&mut tx, f).await?;
    let have = Tree::load(&mut tx, &org).await?;
    let mut report = ApplyReport {
        dry_run,
        ..Default::default()
    };
    let now = db.clock().now_ms();
    let stmts = plan(&org, &want, &have, now, &mut report);
    if dry_run {
        return Ok(report);
    }
    stmts.apply(&mut tx).await?;
    if !stmts.is_empty() {
        let detail = json!({"created": report.created, "updated": report.updated, "removed_not_deleted": report.removed_not_deleted});
        audit(
            &mut tx,
            now,
            actor,
            "apply_org_tree",
            &format!("org {org}"),
            &detail,
        )
        .await?;
    }
    tx.commit()
        .await
        .map_err(dberr("committing the org tree"))?;
    tracing::info!(
        actor = actor.id(),
        org,
        created = report.created.len(),
        updated = report.updated.len(),
        "org tree applied"
    );
    Ok(report)
}

/// The org as a document, or 404.
pub async fn export(db: &Db, org: &str) -> Result<OrgFile, ApiError> {
    let mut conn = db
        .pool
        .acquire()
        .await
        .map_err(dberr("acquiring a connection"))?;
    let tree = Tree::load(&mut conn, org).await?;
    if tree.org_name.is_none() {
        return Err(ApiError::not_found(format!("org `{org}` does not exist")));
    }
    Ok(tree.to_file(org))
}

/// The org of the unit named by `level`, or 404.
pub(crate) async fn level_org(db: &Db, level: &Level) -> Result<String, ApiError> {
    crate::store::orgtree::level_org(db, level)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{level} does not exist; create it first")))
}

/// A level from its text (`department:eng`), or 400.
pub(crate) fn parse_level(s: &str) -> Result<Level, ApiError> {
    s.parse().map_err(|e: String| ApiError::bad_request(e))
}

/// Group and member must exist in the same org.
pub(crate) async fn check_membership(db: &Db, group: &str, user: &str) -> Result<(), ApiError> {
    let g = level_org(db, &Level::new(LevelKind::Group, group)).await?;
    let u = level_org(db, &Level::new(LevelKind::User, user)).await?;
    if g != u {
        return Err(ApiError::bad_request(format!(
            "group `{group}` is in org `{g}` but user `{user}` is in org `{u}`"
        )));
    }
    Ok(())
}
