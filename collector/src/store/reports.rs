//! What the analytics reports read besides the usage tables (`analytics.rs` builds the
//! report queries over `usage_records` and the rollups): the display names and member
//! counts of the org tree's units, the active keys of a scope and when each was last
//! used, the department of each project, group and member, and each rated call's mean
//! score.

use std::collections::BTreeMap;

use crate::db::{Db, DbError, Param, get_i64, get_opt_str, get_str};

/// The org-tree table and column holding the display names of a dimension's ids.
fn names_table(by: &str) -> Option<(&'static str, &'static str)> {
    Some(match by {
        "org" => ("orgs", "name"),
        "department" => ("departments", "name"),
        "project" => ("projects", "name"),
        "group" => ("user_groups", "name"),
        "user" => ("users", "name"),
        "key" => ("api_keys", "description"),
        _ => return None,
    })
}

/// id -> display name for a dimension (`org`, `department`, `project`, `group`, `user`,
/// `key`; empty for others and for blank names).
pub async fn unit_names(db: &Db, by: &str) -> Result<BTreeMap<String, String>, DbError> {
    let Some((table, col)) = names_table(by) else {
        return Ok(BTreeMap::new());
    };
    let rows = db
        .fetch(
            &format!("SELECT id, {col} FROM {table}"),
            &[],
            "reading unit names",
        )
        .await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let (id, name) = (get_str(r, 0)?, get_str(r, 1)?);
        if !name.trim().is_empty() {
            out.insert(id, name);
        }
    }
    Ok(out)
}

/// Members of each org, department or group in the org tree (users listed there, plus
/// group memberships); `None` for other dimensions.
pub async fn unit_members(db: &Db, by: &str) -> Result<Option<BTreeMap<String, i64>>, DbError> {
    let sql = match by {
        "department" => {
            "SELECT department_id, COUNT(*) FROM users WHERE department_id IS NOT NULL GROUP BY department_id"
        }
        "group" => {
            "SELECT group_id, COUNT(DISTINCT user_id) FROM (SELECT group_id, user_id FROM group_members UNION SELECT group_id, id FROM users WHERE group_id IS NOT NULL) m GROUP BY group_id"
        }
        "org" => "SELECT org_id, COUNT(*) FROM users GROUP BY org_id",
        _ => return Ok(None),
    };
    let rows = db.fetch(sql, &[], "counting unit members").await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        out.insert(get_str(r, 0)?, get_i64(r, 1)?);
    }
    Ok(Some(out))
}

/// Which keys [`active_keys`] lists: each field set narrows to keys bound there.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyFilter<'a> {
    /// Org.
    pub org: Option<&'a str>,
    /// Department.
    pub department: Option<&'a str>,
    /// Project.
    pub project: Option<&'a str>,
    /// Group.
    pub group: Option<&'a str>,
    /// Member (user id).
    pub user: Option<&'a str>,
}

/// The active keys bound as `f` says: `(key id, org)` in id order.
pub async fn active_keys(db: &Db, f: &KeyFilter<'_>) -> Result<Vec<(String, String)>, DbError> {
    let mut sql = String::from("SELECT k.id, k.org_id FROM api_keys k WHERE k.status = $1");
    let mut params = vec![Param::Text("active".into())];
    for (v, col) in [
        (f.org, "k.org_id"),
        (f.department, "k.department_id"),
        (f.project, "k.project_id"),
        (f.group, "k.group_id"),
        (f.user, "k.user_id"),
    ] {
        if let Some(v) = v {
            params.push(Param::Text(v.to_owned()));
            sql.push_str(&format!(" AND {col} = ${}", params.len()));
        }
    }
    sql.push_str(" ORDER BY k.id");
    db.fetch(&sql, &params, "analytics idle keys")
        .await?
        .iter()
        .map(|r| Ok((get_str(r, 0)?, get_str(r, 1)?)))
        .collect()
}

/// The end of each key's last call ever, by (org, key id), from the monthly rollups
/// (of `org` only when given).
pub async fn keys_last_used(
    db: &Db,
    org: Option<&str>,
) -> Result<BTreeMap<(String, String), i64>, DbError> {
    let (filter, params) = crate::db::where_eq("org", org);
    let sql = format!(
        "SELECT org, api_key_id, CAST(MAX(last_end_ms) AS BIGINT) FROM usage_rollup_month{filter} GROUP BY org, api_key_id"
    );
    let mut last = BTreeMap::new();
    for r in &db.fetch(&sql, &params, "analytics keys last used").await? {
        last.insert((get_str(r, 0)?, get_str(r, 1)?), get_i64(r, 2)?);
    }
    Ok(last)
}

/// The department of every project, group and member, by (`"project"` / `"group"` /
/// `"user"`, id); `None` where it has none.
pub async fn departments_of_units(
    db: &Db,
) -> Result<BTreeMap<(&'static str, String), Option<String>>, DbError> {
    let mut out = BTreeMap::new();
    for (kind, table) in [
        ("project", "projects"),
        ("group", "user_groups"),
        ("user", "users"),
    ] {
        for r in &db
            .fetch(
                &format!("SELECT id, department_id FROM {table}"),
                &[],
                "reading the org tree",
            )
            .await?
        {
            out.insert((kind, get_str(r, 0)?), get_opt_str(r, 1)?);
        }
    }
    Ok(out)
}

/// Each rated call's score in thousandths, per (org, record id), from the feedback of
/// `org` (every org when `None`): a call rated several times counts once, with the mean
/// of its ratings. `what` names the report in errors and metrics.
pub async fn feedback_scores(
    db: &Db,
    org: Option<&str>,
    what: &str,
) -> Result<BTreeMap<(String, String), i64>, DbError> {
    let (filter, params) = crate::db::where_eq("org", org);
    let sql = format!(
        "SELECT org, record_id, CAST(SUM(score_milli) AS BIGINT), CAST(COUNT(*) AS BIGINT) FROM feedback{filter} GROUP BY org, record_id"
    );
    let mut scores = BTreeMap::new();
    for r in &db
        .fetch(&sql, &params, &format!("analytics {what} (feedback)"))
        .await?
    {
        let n = get_i64(r, 3)?.max(1);
        scores.insert((get_str(r, 0)?, get_str(r, 1)?), get_i64(r, 2)? / n);
    }
    Ok(scores)
}
