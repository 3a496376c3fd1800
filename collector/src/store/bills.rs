//! What a bill reads (`bills.rs` computes it): the org's name, where a department or
//! project sits, one month's usage totals and breakdowns for a scope, the units and
//! keys under a department or project, and the spend one budget level counts.

use gaterouter::accounts::{Level, LevelKind};

use crate::db::{Db, DbError, Param, get_i64, get_opt_str, get_str};

/// The usage a bill covers: one org's month (`yyyymm`), optionally one department or
/// one project.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Org id.
    pub org: &'a str,
    /// `yyyymm`.
    pub month: i64,
    /// Only this department's records.
    pub department: Option<&'a str>,
    /// Only this project's records (when no department is given).
    pub project: Option<&'a str>,
}

impl Scope<'_> {
    /// The `WHERE` clause and its parameters. The `month` column is `month_of(ts_start)`,
    /// set at ingest: the covering index serves every query of a bill.
    fn filter(&self) -> (String, Vec<Param>) {
        let mut w = String::from(" WHERE org = $1 AND month = $2");
        let mut params = vec![Param::Text(self.org.to_owned()), Param::I64(self.month)];
        if let Some(d) = self.department {
            w.push_str(" AND department = $3");
            params.push(Param::Text(d.to_owned()));
        } else if let Some(p) = self.project {
            w.push_str(" AND project = $3");
            params.push(Param::Text(p.to_owned()));
        }
        (w, params)
    }
}

/// A scope's usage sums (a bill's totals, which add the spend as dollar text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sums {
    /// Calls (records).
    pub calls: i64,
    /// Calls that failed.
    pub errors: i64,
    /// Prompt tokens (including cached).
    pub prompt_tokens: i64,
    /// Completion tokens (including reasoning).
    pub completion_tokens: i64,
    /// All tokens.
    pub total_tokens: i64,
    /// Spend in micro-dollars.
    pub spend_micros: i64,
}

/// One group of a breakdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The grouping columns' values, in the order asked.
    pub parts: Vec<Option<String>>,
    /// Records.
    pub calls: i64,
    /// Total tokens.
    pub total_tokens: i64,
    /// Spend, micro-dollars.
    pub spend_micros: i64,
}

/// A unit a bill can be scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `departments`.
    Department,
    /// `projects`.
    Project,
}

fn sum(c: &str) -> String {
    format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)")
}

/// The org's display name, `None` when there is no such org.
pub async fn org_name(db: &Db, org: &str) -> Result<Option<String>, DbError> {
    let rows = db
        .fetch(
            "SELECT name FROM orgs WHERE id = $1",
            &[Param::Text(org.to_owned())],
            "reading the org",
        )
        .await?;
    rows.first().map(|r| get_str(r, 0)).transpose()
}

/// The org and the department of a department (itself) or project; `None` when there
/// is no such unit.
pub async fn unit_place(
    db: &Db,
    unit: Unit,
    id: &str,
) -> Result<Option<(String, Option<String>)>, DbError> {
    let sql = match unit {
        Unit::Department => "SELECT org_id, id FROM departments WHERE id = $1",
        Unit::Project => "SELECT org_id, department_id FROM projects WHERE id = $1",
    };
    let rows = db
        .fetch(
            sql,
            &[Param::Text(id.to_owned())],
            "resolving a department or project",
        )
        .await?;
    rows.first()
        .map(|r| Ok((get_str(r, 0)?, get_opt_str(r, 1)?)))
        .transpose()
}

/// The scope's usage sums.
pub async fn totals(db: &Db, scope: &Scope<'_>) -> Result<Sums, DbError> {
    let (w, params) = scope.filter();
    let sql = format!(
        "SELECT COUNT(*), {}, {}, {}, {}, {} FROM usage_records{w}",
        sum("is_error"),
        sum("prompt_tokens"),
        sum("completion_tokens"),
        sum("total_tokens"),
        sum("spend_micros")
    );
    let rows = db.fetch(&sql, &params, "bill totals").await?;
    let Some(r) = rows.first() else {
        return Ok(Sums::default());
    };
    Ok(Sums {
        calls: get_i64(r, 0)?,
        errors: get_i64(r, 1)?,
        prompt_tokens: get_i64(r, 2)?,
        completion_tokens: get_i64(r, 3)?,
        total_tokens: get_i64(r, 4)?,
        spend_micros: get_i64(r, 5)?,
    })
}

/// The scope's usage grouped by `cols` (columns of `usage_records`, comma-separated:
/// `"provider, model"`), unordered.
pub async fn breakdown(
    db: &Db,
    scope: &Scope<'_>,
    cols: &'static str,
) -> Result<Vec<Group>, DbError> {
    let (w, params) = scope.filter();
    let sql = format!(
        "SELECT {cols}, COUNT(*), {}, {} FROM usage_records{w} GROUP BY {cols}",
        sum("total_tokens"),
        sum("spend_micros")
    );
    let n = cols.split(',').count();
    let rows = db.fetch(&sql, &params, "bill breakdown").await?;
    rows.iter()
        .map(|r| {
            Ok(Group {
                parts: (0..n)
                    .map(|i| get_opt_str(r, i))
                    .collect::<Result<_, _>>()?,
                calls: get_i64(r, n)?,
                total_tokens: get_i64(r, n + 1)?,
                spend_micros: get_i64(r, n + 2)?,
            })
        })
        .collect()
}

/// Ids of the rows of `table` whose column `col` is `v` (units and keys under a
/// department or project).
pub async fn ids_where(
    db: &Db,
    table: &'static str,
    col: &'static str,
    v: &str,
) -> Result<Vec<String>, DbError> {
    let rows = db
        .fetch(
            &format!("SELECT id FROM {table} WHERE {col} = $1"),
            &[Param::Text(v.to_owned())],
            "listing units for a bill",
        )
        .await?;
    rows.iter().map(|r| get_str(r, 0)).collect()
}

/// Keys bound to a member of department `d` but not to a department themselves.
pub async fn member_keys_of_department(db: &Db, d: &str) -> Result<Vec<String>, DbError> {
    let rows = db
        .fetch(
            "SELECT k.id FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.department_id IS NULL AND u.department_id = $1",
            &[Param::Text(d.to_owned())],
            "listing keys for a bill",
        )
        .await?;
    rows.iter().map(|r| get_str(r, 0)).collect()
}

/// The spend (micro-dollars) in `org`'s month that counts against a budget at `level`,
/// as ingest counts it (a group: the record's group, or any group of its member).
pub async fn level_spend(db: &Db, org: &str, month: i64, level: &Level) -> Result<i64, DbError> {
    let cond = match level.kind {
        LevelKind::Org => "org = $3",
        LevelKind::Department => "department = $3",
        LevelKind::Project => "project = $3",
        LevelKind::User => "usr = $3",
        LevelKind::Key => "api_key_id = $3",
        LevelKind::Group => {
            "(grp = $3 OR usr IN (SELECT user_id FROM group_members WHERE group_id = $3 UNION SELECT id FROM users WHERE group_id = $3))"
        }
    };
    let params = [
        Param::Text(org.to_owned()),
        Param::I64(month),
        Param::Text(level.id.clone()),
    ];
    let rows = db
        .fetch(
            &format!("SELECT CAST(COALESCE(SUM(spend_micros), 0) AS BIGINT) FROM usage_records WHERE org = $1 AND month = $2 AND {cond}"),
            &params,
            "bill budget actual",
        )
        .await?;
    rows.first().map_or(Ok(0), |r| get_i64(r, 0))
}
