//! The org tree as stored: an org's departments, projects, groups, members, keys,
//! policies and budgets read as one `Tree`, the statements (`Plan`) that turn the
//! stored tree into a wanted one without deleting anything, the unit a level names,
//! and group memberships.

use std::collections::{BTreeMap, BTreeSet};

use gaterouter::accounts::{Level, LevelKind};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use crate::db::{Db, DbError, Param, bind_all, dberr, get_i64, get_opt_str, get_str};
use crate::util::uuid_v7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    pub(crate) name: String,
    pub(crate) department: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) department: Option<String>,
    pub(crate) groups: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) description: String,
    pub(crate) department: Option<String>,
    pub(crate) project: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) limit: i64,
    pub(crate) enforcement: String,
    pub(crate) notify_at: String,
}

/// An org's tree, normalized so the file and the database compare field by field.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    pub(crate) org_name: Option<String>,
    pub(crate) departments: BTreeMap<String, Unit>,
    pub(crate) projects: BTreeMap<String, Unit>,
    pub(crate) groups: BTreeMap<String, Unit>,
    pub(crate) members: BTreeMap<String, Member>,
    pub(crate) keys: BTreeMap<String, Key>,
    /// level → canonical JSON of its `PolicyRules`
    pub(crate) policies: BTreeMap<String, String>,
    /// (level, metric, period) → budget
    pub(crate) budgets: BTreeMap<(String, String, String), Budget>,
    /// Current public key version per key (database side only).
    pub(crate) key_versions: BTreeMap<String, i64>,
}

impl Tree {
    /// The tree of `org` as stored (empty, without `org_name`, when it does not exist).
    pub(crate) async fn load(conn: &mut AnyConnection, org: &str) -> Result<Tree, DbError> {
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

/// One statement of a [`Plan`].
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
pub(crate) fn plan(
    org: &str,
    want: &Tree,
    have: &Tree,
    now: i64,
    report: &mut ApplyReport,
) -> Plan {
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
            crate::store::policy::UPSERT_POLICY.into(),
            vec![
                t(&level),
                t(org),
                t(&want.policies[&level]),
                Param::I64(now),
            ],
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
    Plan(s)
}

/// The statements of an apply, in order.
#[derive(Debug, Default)]
pub(crate) struct Plan(Vec<Stmt>);

impl Plan {
    /// Nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Run the statements in `conn` (the caller's transaction).
    pub(crate) async fn apply(&self, conn: &mut AnyConnection) -> Result<(), DbError> {
        for (sql, params) in &self.0 {
            bind_all(sql, params)
                .execute(&mut *conn)
                .await
                .map_err(dberr("applying the org tree"))?;
        }
        Ok(())
    }
}

/// Ids of `table` that belong to another org than `org`.
pub(crate) async fn foreign_ids(
    conn: &mut AnyConnection,
    table: &str,
    org: &str,
) -> Result<BTreeMap<String, String>, DbError> {
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

/// The org of the unit `level` names, `None` when it does not exist.
pub(crate) async fn level_org(db: &Db, level: &Level) -> Result<Option<String>, DbError> {
    let (table, col) = match level.kind {
        LevelKind::Org => ("orgs", "id"),
        LevelKind::Department => ("departments", "org_id"),
        LevelKind::Project => ("projects", "org_id"),
        LevelKind::Group => ("user_groups", "org_id"),
        LevelKind::User => ("users", "org_id"),
        LevelKind::Key => ("api_keys", "org_id"),
    };
    let rows = db
        .fetch(
            &format!("SELECT {col} FROM {table} WHERE id = $1"),
            &[t(&level.id)],
            "resolving a level",
        )
        .await?;
    rows.first().map(|r| get_str(r, 0)).transpose()
}

/// The members of `group` (by membership or as their main group), sorted.
pub(crate) async fn group_members(db: &Db, group: &str) -> Result<Vec<String>, DbError> {
    let rows = db
        .fetch("SELECT user_id FROM group_members WHERE group_id = $1 UNION SELECT id FROM users WHERE group_id = $1 ORDER BY 1", &[t(group)], "listing group members")
        .await?;
    rows.iter().map(|r| get_str(r, 0)).collect()
}

/// Add `user` to `group`; false when already a member.
pub(crate) async fn add_member(
    conn: &mut AnyConnection,
    group: &str,
    user: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let r = bind_all("INSERT INTO group_members (group_id, user_id, created_ms) VALUES ($1, $2, $3) ON CONFLICT (group_id, user_id) DO NOTHING", &[t(group), t(user), Param::I64(now_ms)])
        .execute(&mut *conn)
        .await
        .map_err(dberr("adding a member"))?;
    Ok(r.rows_affected() > 0)
}

/// Take `user` out of `group` (membership and main group); false when not a member.
pub(crate) async fn remove_member(
    conn: &mut AnyConnection,
    group: &str,
    user: &str,
) -> Result<bool, DbError> {
    let a = bind_all(
        "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
        &[t(group), t(user)],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("removing a member"))?;
    let b = bind_all(
        "UPDATE users SET group_id = NULL WHERE id = $1 AND group_id = $2",
        &[t(user), t(group)],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("removing a member"))?;
    Ok(a.rows_affected() + b.rows_affected() > 0)
}
