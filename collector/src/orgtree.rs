//! Admin API for enterprise accounts (admin token): import/export of an org's tree as
//! one document (`PUT`/`GET /v1/admin/org-tree`, the shape of [`crate::orgfile`]),
//! policies per level, budgets with their status, alerts, and a key's effective policy.
//!
//! Import is a diff against the database: entries are created or updated, equal ones
//! are counted as unchanged, and entries missing from the document are reported in
//! `removed_not_deleted` and left alone (delete them explicitly). The whole apply is one
//! transaction with one audit entry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use gaterouter::accounts::{Enforcement, Level, LevelKind, Metric, Period, PolicyRules};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::AnyConnection;

use crate::db::{Param, bind_all, dberr, get_i64, get_opt_str, get_str};
use crate::error::ApiError;
use crate::orgfile::{
    BudgetEntry, DepartmentEntry, KeyEntry, LimitValue, MemberEntry, OrgEntry, OrgFile, UnitEntry,
    limit_value,
};
use crate::state::{AppState, admin};
use crate::store::audit::audit;
use crate::store::budgets::{BUDGET_COLS, budget_from_row, projected, statuses};
use crate::store::keys::load_keys;
use crate::store::policy::key_context;
use crate::util::{now_ms, uuid_v7};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Unit {
    name: String,
    department: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    department: Option<String>,
    groups: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    description: String,
    department: Option<String>,
    project: Option<String>,
    group: Option<String>,
    user: Option<String>,
    public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Budget {
    limit: i64,
    enforcement: String,
    notify_at: String,
}

/// An org's tree, normalized so the file and the database compare field by field.
#[derive(Debug, Clone, Default)]
struct Tree {
    org_name: Option<String>,
    departments: BTreeMap<String, Unit>,
    projects: BTreeMap<String, Unit>,
    groups: BTreeMap<String, Unit>,
    members: BTreeMap<String, Member>,
    keys: BTreeMap<String, Key>,
    /// level → canonical JSON of its `PolicyRules`
    policies: BTreeMap<String, String>,
    /// (level, metric, period) → budget
    budgets: BTreeMap<(String, String, String), Budget>,
    /// Current public key version per key (database side only).
    key_versions: BTreeMap<String, i64>,
}

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

    fn from_file(f: &OrgFile) -> Result<Tree, String> {
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

    async fn load(conn: &mut AnyConnection, org: &str) -> Result<Tree, ApiError> {
        let o = || vec![Param::Text(org.to_owned())];
        let mut t = Tree::default();
        let q = |sql: &'static str| bind_all(sql, &o());
        if let Some(r) = q("SELECT name FROM orgs WHERE id = $1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(dberr("reading the org"))?
        {
            t.org_name = Some(get_str(&r, 0)?);
        }
        for r in q("SELECT id, name FROM departments WHERE org_id = $1")
            .fetch_all(&mut *conn)
            .await
            .map_err(dberr("reading departments"))?
        {
            t.departments.insert(
                get_str(&r, 0)?,
                Unit {
                    name: get_str(&r, 1)?,
                    department: None,
                },
            );
        }
        for r in q("SELECT id, name, department_id FROM projects WHERE org_id = $1")
            .fetch_all(&mut *conn)
            .await
            .map_err(dberr("reading projects"))?
        {
            t.projects.insert(
                get_str(&r, 0)?,
                Unit {
                    name: get_str(&r, 1)?,
                    department: get_opt_str(&r, 2)?,
                },
            );
        }
        for r in q("SELECT id, name, department_id FROM user_groups WHERE org_id = $1")
            .fetch_all(&mut *conn)
            .await
            .map_err(dberr("reading groups"))?
        {
            t.groups.insert(
                get_str(&r, 0)?,
                Unit {
                    name: get_str(&r, 1)?,
                    department: get_opt_str(&r, 2)?,
                },
            );
        }
        for r in q("SELECT id, name, department_id, group_id FROM users WHERE org_id = $1")
            .fetch_all(&mut *conn)
            .await
            .map_err(dberr("reading members"))?
        {
            let groups = get_opt_str(&r, 3)?.into_iter().collect();
            t.members.insert(
                get_str(&r, 0)?,
                Member {
                    name: get_str(&r, 1)?,
                    department: get_opt_str(&r, 2)?,
                    groups,
                },
            );
        }
        for r in q("SELECT m.user_id, m.group_id FROM group_members m JOIN users u ON u.id = m.user_id WHERE u.org_id = $1").fetch_all(&mut *conn).await.map_err(dberr("reading memberships"))? {
            if let Some(m) = t.members.get_mut(&get_str(&r, 0)?) {
                m.groups.insert(get_str(&r, 1)?);
            }
        }
        let keys = q("SELECT k.id, k.description, k.department_id, k.project_id, k.group_id, k.user_id, v.version, v.public_key FROM api_keys k \
                      JOIN api_key_versions v ON v.api_key_id = k.id WHERE k.org_id = $1 ORDER BY k.id, v.version")
            .fetch_all(&mut *conn)
            .await
            .map_err(dberr("reading keys"))?;
        for r in keys {
            let id = get_str(&r, 0)?;
            // Ordered by version: the last row is the current public key.
            t.key_versions.insert(id.clone(), get_i64(&r, 6)?);
            t.keys.insert(
                id,
                Key {
                    description: get_str(&r, 1)?,
                    department: get_opt_str(&r, 2)?,
                    project: get_opt_str(&r, 3)?,
                    group: get_opt_str(&r, 4)?,
                    user: get_opt_str(&r, 5)?,
                    public_key: get_str(&r, 7)?,
                },
            );
        }
        for r in q("SELECT level, rules FROM policies WHERE org_id = $1")
            .fetch_all(&mut *conn)
            .await
            .map_err(dberr("reading policies"))?
        {
            t.policies.insert(get_str(&r, 0)?, get_str(&r, 1)?);
        }
        for r in q("SELECT level, metric, period, limit_value, enforcement, notify_at FROM budgets WHERE org_id = $1").fetch_all(&mut *conn).await.map_err(dberr("reading budgets"))? {
            t.budgets.insert((get_str(&r, 0)?, get_str(&r, 1)?, get_str(&r, 2)?), Budget { limit: get_i64(&r, 3)?, enforcement: get_str(&r, 4)?, notify_at: get_str(&r, 5)? });
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

    fn to_file(&self, org: &str) -> OrgFile {
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

/// What an apply did (or would do, with `dry_run`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Entries created (`department:eng`, `policy:org:acme`, `budget:user:alice/usd/day`).
    pub created: Vec<String>,
    /// Entries changed.
    pub updated: Vec<String>,
    /// Entries already as in the document.
    pub unchanged: u64,
    /// Entries in the database but not in the document: left in place.
    pub removed_not_deleted: Vec<String>,
    /// True when nothing was written.
    pub dry_run: bool,
}

type Stmt = (String, Vec<Param>);

fn t(s: &str) -> Param {
    Param::Text(s.to_owned())
}
fn ot(s: &Option<String>) -> Param {
    Param::OptText(s.clone())
}

/// Compare one map; returns (created, updated) keys and counts unchanged; reports removals.
fn diff<K: Ord + Clone, V: PartialEq>(
    want: &BTreeMap<K, V>,
    have: &BTreeMap<K, V>,
    report: &mut ApplyReport,
    name: impl Fn(&K) -> String,
) -> (Vec<K>, Vec<K>) {
    let (mut created, mut updated) = (Vec::new(), Vec::new());
    for (k, v) in want {
        match have.get(k) {
            None => {
                report.created.push(name(k));
                created.push(k.clone());
            }
            Some(h) if h != v => {
                report.updated.push(name(k));
                updated.push(k.clone());
            }
            Some(_) => report.unchanged += 1,
        }
    }
    for k in have.keys().filter(|k| !want.contains_key(*k)) {
        report.removed_not_deleted.push(name(k));
    }
    (created, updated)
}

/// The statements that turn `have` into `want` (never deleting an entry).
fn plan(org: &str, want: &Tree, have: &Tree, now: i64, report: &mut ApplyReport) -> Vec<Stmt> {
    let mut s: Vec<Stmt> = Vec::new();
    let name = want.org_name.clone().unwrap_or_else(|| org.to_owned());
    match &have.org_name {
        None => {
            report.created.push(format!("org:{org}"));
            s.push((
                "INSERT INTO orgs (id, name, created_ms) VALUES ($1, $2, $3)".into(),
                vec![t(org), t(&name), Param::I64(now)],
            ));
        }
        Some(n) if *n != name => {
            report.updated.push(format!("org:{org}"));
            s.push((
                "UPDATE orgs SET name = $1 WHERE id = $2".into(),
                vec![t(&name), t(org)],
            ));
        }
        Some(_) => report.unchanged += 1,
    }
    let (c, u) = diff(&want.departments, &have.departments, report, |k| {
        format!("department:{k}")
    });
    for id in c {
        s.push((
            "INSERT INTO departments (id, org_id, name, created_ms) VALUES ($1, $2, $3, $4)".into(),
            vec![
                t(&id),
                t(org),
                t(&want.departments[&id].name),
                Param::I64(now),
            ],
        ));
    }
    for id in u {
        s.push((
            "UPDATE departments SET name = $1 WHERE id = $2".into(),
            vec![t(&want.departments[&id].name), t(&id)],
        ));
    }
    for (kind, table, w, h) in [
        ("project", "projects", &want.projects, &have.projects),
        ("group", "user_groups", &want.groups, &have.groups),
    ] {
        let (c, u) = diff(w, h, report, |k| format!("{kind}:{k}"));
        for id in c {
            s.push((format!("INSERT INTO {table} (id, org_id, department_id, name, created_ms) VALUES ($1, $2, $3, $4, $5)"), vec![t(&id), t(org), ot(&w[&id].department), t(&w[&id].name), Param::I64(now)]));
        }
        for id in u {
            s.push((
                format!("UPDATE {table} SET name = $1, department_id = $2 WHERE id = $3"),
                vec![t(&w[&id].name), ot(&w[&id].department), t(&id)],
            ));
        }
    }
    let (c, u) = diff(&want.members, &have.members, report, |k| {
        format!("user:{k}")
    });
    for id in &c {
        let m = &want.members[id];
        s.push(("INSERT INTO users (id, org_id, department_id, name, created_ms) VALUES ($1, $2, $3, $4, $5)".into(), vec![t(id), t(org), ot(&m.department), t(&m.name), Param::I64(now)]));
    }
    for id in &u {
        let m = &want.members[id];
        s.push((
            "UPDATE users SET name = $1, department_id = $2, group_id = NULL WHERE id = $3".into(),
            vec![t(&m.name), ot(&m.department), t(id)],
        ));
        s.push((
            "DELETE FROM group_members WHERE user_id = $1".into(),
            vec![t(id)],
        ));
    }
    for id in c.iter().chain(&u) {
        for g in &want.members[id].groups {
            s.push((
                "INSERT INTO group_members (group_id, user_id, created_ms) VALUES ($1, $2, $3)"
                    .into(),
                vec![t(g), t(id), Param::I64(now)],
            ));
        }
    }
    let (c, u) = diff(&want.keys, &have.keys, report, |k| format!("key:{k}"));
    for id in c {
        let k = &want.keys[&id];
        s.push((
            "INSERT INTO api_keys (id, org_id, department_id, project_id, group_id, user_id, description, status, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8)".into(),
            vec![t(&id), t(org), ot(&k.department), ot(&k.project), ot(&k.group), ot(&k.user), t(&k.description), Param::I64(now)],
        ));
        s.push(("INSERT INTO api_key_versions (api_key_id, version, public_key, created_ms) VALUES ($1, 1, $2, $3)".into(), vec![t(&id), t(&k.public_key), Param::I64(now)]));
    }
    for id in u {
        let k = &want.keys[&id];
        s.push((
            "UPDATE api_keys SET department_id = $1, project_id = $2, group_id = $3, user_id = $4, description = $5 WHERE id = $6".into(),
            vec![ot(&k.department), ot(&k.project), ot(&k.group), ot(&k.user), t(&k.description), t(&id)],
        ));
        if have
            .keys
            .get(&id)
            .is_some_and(|h| h.public_key != k.public_key)
        {
            // A new public key rotates: the previous one stays valid 24 h.
            let grace = now + 86_400_000;
            s.push(("UPDATE api_key_versions SET not_after_ms = $1 WHERE api_key_id = $2 AND (not_after_ms IS NULL OR not_after_ms > $1)".into(), vec![Param::I64(grace), t(&id)]));
            let v = have.key_versions.get(&id).copied().unwrap_or(0) + 1;
            s.push(("INSERT INTO api_key_versions (api_key_id, version, public_key, created_ms) VALUES ($1, $2, $3, $4)".into(), vec![t(&id), Param::I64(v), t(&k.public_key), Param::I64(now)]));
        }
    }
    let (c, u) = diff(&want.policies, &have.policies, report, |k| {
        format!("policy:{k}")
    });
    for level in c.into_iter().chain(u) {
        s.push((
            "INSERT INTO policies (level, org_id, rules, updated_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (level) DO UPDATE SET org_id = excluded.org_id, rules = excluded.rules, updated_ms = excluded.updated_ms".into(),
            vec![t(&level), t(org), t(&want.policies[&level]), Param::I64(now)],
        ));
    }
    let (c, u) = diff(&want.budgets, &have.budgets, report, |(l, m, p)| {
        format!("budget:{l}/{m}/{p}")
    });
    for key in c {
        let b = &want.budgets[&key];
        s.push((
            "INSERT INTO budgets (id, org_id, level, metric, period, limit_value, enforcement, notify_at, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)".into(),
            vec![Param::Text(format!("b_{}", uuid_v7())), t(org), t(&key.0), t(&key.1), t(&key.2), Param::I64(b.limit), t(&b.enforcement), t(&b.notify_at), Param::I64(now)],
        ));
    }
    for key in u {
        let b = &want.budgets[&key];
        s.push((
            "UPDATE budgets SET limit_value = $1, enforcement = $2, notify_at = $3, updated_ms = $4 WHERE level = $5 AND metric = $6 AND period = $7".into(),
            vec![Param::I64(b.limit), t(&b.enforcement), t(&b.notify_at), Param::I64(now), t(&key.0), t(&key.1), t(&key.2)],
        ));
    }
    s
}

/// Ids of `table` that belong to another org than `org`.
async fn foreign_ids(
    conn: &mut AnyConnection,
    table: &str,
    org: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let col = if table == "orgs" { "id" } else { "org_id" };
    let sql = format!("SELECT id, {col} FROM {table} WHERE {col} <> $1");
    let rows = bind_all(&sql, &[t(org)])
        .fetch_all(&mut *conn)
        .await
        .map_err(dberr("checking ids"))?;
    rows.iter()
        .map(|r| Ok((get_str(r, 0)?, get_str(r, 1)?)))
        .collect()
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
    let want = Tree::from_file(&f).map_err(ApiError::bad_request)?;
    let org = f.org.id.clone();
    let _g = st.db.write_guard().await;
    let mut tx = st.db.begin_write().await?;
    check_foreign(&mut tx, &f).await?;
    let have = Tree::load(&mut tx, &org).await?;
    let mut report = ApplyReport {
        dry_run: q.dry_run,
        ..Default::default()
    };
    let stmts = plan(&org, &want, &have, now_ms(), &mut report);
    if q.dry_run {
        return Ok(Json(report));
    }
    for (sql, params) in &stmts {
        bind_all(sql, params)
            .execute(&mut *tx)
            .await
            .map_err(dberr("applying the org tree"))?;
    }
    if !stmts.is_empty() {
        let detail = json!({"created": report.created, "updated": report.updated, "removed_not_deleted": report.removed_not_deleted});
        audit(
            &mut tx,
            &p,
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
        actor = p.id(),
        org,
        created = report.created.len(),
        updated = report.updated.len(),
        "org tree applied"
    );
    Ok(Json(report))
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
    let mut conn = st
        .db
        .pool
        .acquire()
        .await
        .map_err(dberr("acquiring a connection"))?;
    let tree = Tree::load(&mut conn, &q.org).await?;
    if tree.org_name.is_none() {
        return Err(ApiError::not_found(format!(
            "org `{}` does not exist",
            q.org
        )));
    }
    Ok(Json(tree.to_file(&q.org)))
}

/// The org of the unit named by `level`, or 404.
async fn level_org(st: &AppState, level: &Level) -> Result<String, ApiError> {
    let (table, col) = match level.kind {
        LevelKind::Org => ("orgs", "id"),
        LevelKind::Department => ("departments", "org_id"),
        LevelKind::Project => ("projects", "org_id"),
        LevelKind::Group => ("user_groups", "org_id"),
        LevelKind::User => ("users", "org_id"),
        LevelKind::Key => ("api_keys", "org_id"),
    };
    let rows = st
        .db
        .fetch(
            &format!("SELECT {col} FROM {table} WHERE id = $1"),
            &[t(&level.id)],
            "resolving a level",
        )
        .await?;
    match rows.first() {
        Some(r) => Ok(get_str(r, 0)?),
        None => Err(ApiError::not_found(format!(
            "{level} does not exist; create it first"
        ))),
    }
}

fn parse_level(s: &str) -> Result<Level, ApiError> {
    s.parse().map_err(|e: String| ApiError::bad_request(e))
}

/// `GET /v1/admin/policies/{level}`.
pub async fn get_policy(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(level): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    let level = parse_level(&level)?;
    let rows = st
        .db
        .fetch(
            "SELECT rules, updated_ms FROM policies WHERE level = $1",
            &[t(&level.to_string())],
            "reading a policy",
        )
        .await?;
    let Some(r) = rows.first() else {
        return Err(ApiError::not_found(format!("no policy at {level}")));
    };
    let rules: Value = serde_json::from_str(&get_str(r, 0)?).unwrap_or(Value::Null);
    Ok(Json(
        json!({"level": level, "rules": rules, "updated_ms": get_i64(r, 1)?}),
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
    let org = level_org(&st, &level).await?;
    let text = serde_json::to_string(&rules).unwrap_or_else(|_| "{}".into());
    let now = now_ms();
    let _g = st.db.write_guard().await;
    let mut tx = st
        .db
        .pool
        .begin()
        .await
        .map_err(dberr("starting a policy change"))?;
    bind_all(
        "INSERT INTO policies (level, org_id, rules, updated_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (level) DO UPDATE SET org_id = excluded.org_id, rules = excluded.rules, updated_ms = excluded.updated_ms",
        &[t(&level.to_string()), t(&org), t(&text), Param::I64(now)],
    )
    .execute(&mut *tx)
    .await
    .map_err(dberr("storing a policy"))?;
    audit(
        &mut tx,
        &p,
        "put_policy",
        &level.to_string(),
        &serde_json::to_value(&rules).unwrap_or(Value::Null),
    )
    .await?;
    tx.commit().await.map_err(dberr("committing a policy"))?;
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
    let _g = st.db.write_guard().await;
    let mut tx = st
        .db
        .pool
        .begin()
        .await
        .map_err(dberr("starting a policy change"))?;
    let r = bind_all(
        "DELETE FROM policies WHERE level = $1",
        &[t(&level.to_string())],
    )
    .execute(&mut *tx)
    .await
    .map_err(dberr("deleting a policy"))?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no policy at {level}")));
    }
    audit(&mut tx, &p, "delete_policy", &level.to_string(), &json!({})).await?;
    tx.commit().await.map_err(dberr("committing a policy"))?;
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
    let (filter, params) = match &q.org_id {
        Some(o) => (" WHERE org_id = $1", vec![t(o)]),
        None => ("", vec![]),
    };
    let rows = st
        .db
        .fetch(
            &format!("SELECT {BUDGET_COLS} FROM budgets{filter} ORDER BY level, metric, period"),
            &params,
            "listing budgets",
        )
        .await?;
    let budgets: Vec<_> = rows.iter().map(budget_from_row).collect::<Result<_, _>>()?;
    let mut conn = st
        .db
        .pool
        .acquire()
        .await
        .map_err(dberr("acquiring a connection"))?;
    let sts = statuses(&mut conn, &budgets, gaterouter::usage::unix_ms_now()).await?;
    drop(conn);
    let now = gaterouter::usage::unix_ms_now();
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

/// Group and member must exist in the same org.
async fn check_membership(st: &AppState, group: &str, user: &str) -> Result<(), ApiError> {
    let g = level_org(st, &Level::new(LevelKind::Group, group)).await?;
    let u = level_org(st, &Level::new(LevelKind::User, user)).await?;
    if g != u {
        return Err(ApiError::bad_request(format!(
            "group `{group}` is in org `{g}` but user `{user}` is in org `{u}`"
        )));
    }
    Ok(())
}

/// `GET /v1/admin/groups/{id}/members`.
pub async fn list_members(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    level_org(&st, &Level::new(LevelKind::Group, group.clone())).await?;
    let rows = st
        .db
        .fetch("SELECT user_id FROM group_members WHERE group_id = $1 UNION SELECT id FROM users WHERE group_id = $1 ORDER BY 1", &[t(&group)], "listing group members")
        .await?;
    let items: Vec<String> = rows
        .iter()
        .map(|r| get_str(r, 0))
        .collect::<Result<_, _>>()?;
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
    check_membership(&st, &group, &b.user_id).await?;
    let _g = st.db.write_guard().await;
    let mut tx = st
        .db
        .pool
        .begin()
        .await
        .map_err(dberr("starting a membership change"))?;
    let r = bind_all("INSERT INTO group_members (group_id, user_id, created_ms) VALUES ($1, $2, $3) ON CONFLICT (group_id, user_id) DO NOTHING", &[t(&group), t(&b.user_id), Param::I64(now_ms())])
        .execute(&mut *tx)
        .await
        .map_err(dberr("adding a member"))?;
    if r.rows_affected() > 0 {
        audit(
            &mut tx,
            &p,
            "add_group_member",
            &format!("group {group}"),
            &json!({"user_id": b.user_id}),
        )
        .await?;
    }
    tx.commit()
        .await
        .map_err(dberr("committing a membership"))?;
    Ok(Json(
        json!({"group": group, "user_id": b.user_id, "added": r.rows_affected() > 0}),
    ))
}

/// `DELETE /v1/admin/groups/{id}/members/{user}`.
pub async fn remove_member(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((group, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let p = admin(&st, &headers).await?;
    let _g = st.db.write_guard().await;
    let mut tx = st
        .db
        .pool
        .begin()
        .await
        .map_err(dberr("starting a membership change"))?;
    let a = bind_all(
        "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
        &[t(&group), t(&user)],
    )
    .execute(&mut *tx)
    .await
    .map_err(dberr("removing a member"))?;
    let b = bind_all(
        "UPDATE users SET group_id = NULL WHERE id = $1 AND group_id = $2",
        &[t(&user), t(&group)],
    )
    .execute(&mut *tx)
    .await
    .map_err(dberr("removing a member"))?;
    if a.rows_affected() + b.rows_affected() == 0 {
        return Err(ApiError::not_found(format!(
            "user `{user}` is not a member of group `{group}`"
        )));
    }
    audit(
        &mut tx,
        &p,
        "remove_group_member",
        &format!("group {group}"),
        &json!({"user_id": user}),
    )
    .await?;
    tx.commit()
        .await
        .map_err(dberr("committing a membership"))?;
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
    let org = level_org(&st, &level).await?;
    let notify =
        serde_json::to_string(&entry.notify_at_or_default()).unwrap_or_else(|_| "[]".into());
    let now = now_ms();
    let id = format!("b_{}", uuid_v7());
    let _g = st.db.write_guard().await;
    let mut tx = st
        .db
        .pool
        .begin()
        .await
        .map_err(dberr("starting a budget change"))?;
    let r = bind_all(
        "INSERT INTO budgets (id, org_id, level, metric, period, limit_value, enforcement, notify_at, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (level, metric, period) DO UPDATE SET limit_value = excluded.limit_value, enforcement = excluded.enforcement, notify_at = excluded.notify_at, updated_ms = excluded.updated_ms RETURNING id",
        &[t(&id), t(&org), t(&level.to_string()), t(b.metric.as_str()), t(b.period.as_str()), Param::I64(i64::try_from(limit).unwrap_or(i64::MAX)), t(b.enforcement.as_str()), t(&notify), Param::I64(now)],
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(dberr("storing a budget"))?;
    let id = get_str(&r, 0)?;
    audit(
        &mut tx,
        &p,
        "put_budget",
        &format!("budget {id}"),
        &serde_json::to_value(&b).unwrap_or(Value::Null),
    )
    .await?;
    tx.commit().await.map_err(dberr("committing a budget"))?;
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
    let _g = st.db.write_guard().await;
    let mut tx = st
        .db
        .pool
        .begin()
        .await
        .map_err(dberr("starting a budget change"))?;
    let r = bind_all("DELETE FROM budgets WHERE id = $1", &[t(&id)])
        .execute(&mut *tx)
        .await
        .map_err(dberr("deleting a budget"))?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("budget `{id}` does not exist")));
    }
    for sql in [
        "DELETE FROM budget_usage WHERE budget_id = $1",
        "DELETE FROM reservation_holds WHERE budget_id = $1",
    ] {
        bind_all(sql, &[t(&id)])
            .execute(&mut *tx)
            .await
            .map_err(dberr("deleting a budget"))?;
    }
    audit(
        &mut tx,
        &p,
        "delete_budget",
        &format!("budget {id}"),
        &json!({}),
    )
    .await?;
    tx.commit().await.map_err(dberr("committing a budget"))?;
    Ok(Json(json!({"id": id, "deleted": true})))
}

/// `GET /v1/admin/alerts[?org_id=]`: budget alerts, newest first.
pub async fn list_alerts(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<OrgQuery>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers).await?;
    let (filter, params) = match &q.org_id {
        Some(o) => (" WHERE org_id = $1", vec![t(o)]),
        None => ("", vec![]),
    };
    let rows = st
        .db
        .fetch(&format!("SELECT budget_id, period_start_ms, threshold, org_id, level, ts_ms, used, limit_value, message FROM budget_alerts{filter} ORDER BY ts_ms DESC, threshold DESC LIMIT 1000"), &params, "listing alerts")
        .await?;
    let mut items = Vec::new();
    for r in &rows {
        items.push(json!({"budget_id": get_str(r, 0)?, "period_start_ms": get_i64(r, 1)?, "threshold": get_i64(r, 2)?, "org_id": get_str(r, 3)?, "level": get_str(r, 4)?,
            "ts_ms": get_i64(r, 5)?, "used": get_i64(r, 6)?, "limit": get_i64(r, 7)?, "message": get_str(r, 8)?}));
    }
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
    let mut keys = load_keys(&st.db, &ids, now_ms()).await?;
    let key = keys.remove(&q.api_key_id).ok_or_else(|| {
        ApiError::not_found(format!("API key `{}` is not registered", q.api_key_id))
    })?;
    let ctx = key_context(&st.db, key).await?;
    Ok(Json(
        crate::store::policy::effective_policy(&st.db, &ctx).await?,
    ))
}
