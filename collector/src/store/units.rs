//! Organizational units as stored (`orgs`, `departments`, `projects`, `user_groups`,
//! `users`): the admin API's create and list.

use sqlx::AnyConnection;

use crate::db::{Db, DbError, Param, bind_all, dberr, get_i64, get_opt_str, get_str};

/// Kinds of organizational units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
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
    /// The singular name (`department`), used in messages and audit actions.
    pub fn name(self) -> &'static str {
        self.into()
    }
    /// Optional reference columns the kind accepts (besides `org_id`).
    pub fn refs(self) -> &'static [&'static str] {
        match self {
            UnitKind::Org => &[],
            UnitKind::Department => &["org_id"],
            UnitKind::Project | UnitKind::Group => &["org_id", "department_id"],
            UnitKind::User => &["org_id", "department_id", "group_id"],
        }
    }
}

/// One stored unit: id, name, creation time and the kind's references
/// ([`UnitKind::refs`] order).
#[derive(Debug, Clone)]
pub struct Unit {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// `(column, value)` of each reference the kind has.
    pub refs: Vec<(&'static str, Option<String>)>,
}

/// Insert a unit of `kind` with the references it accepts (`refs`: `(column, value)`,
/// columns the kind does not accept are skipped). Rows inserted.
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    kind: UnitKind,
    id: &str,
    name: &str,
    created_ms: i64,
    refs: &[(&str, Option<String>)],
) -> Result<u64, DbError> {
    let mut cols = vec!["id", "name", "created_ms"];
    let mut params = vec![
        Param::Text(id.to_owned()),
        Param::Text(name.to_owned()),
        Param::I64(created_ms),
    ];
    for (f, v) in refs {
        if let Some(c) = kind.refs().iter().find(|c| *c == f) {
            cols.push(c);
            params.push(Param::OptText(v.clone()));
        }
    }
    let ph: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        kind.table(),
        cols.join(", "),
        ph.join(", ")
    );
    let r = bind_all(&sql, &params)
        .execute(conn)
        .await
        .map_err(dberr("creating a unit"))?;
    Ok(r.rows_affected())
}

/// The units of `kind`, of one org when `org` is set (for orgs: that org), in id order.
pub(crate) async fn list(db: &Db, kind: UnitKind, org: Option<&str>) -> Result<Vec<Unit>, DbError> {
    let mut cols = vec!["id", "name", "created_ms"];
    cols.extend(kind.refs());
    let (filter, params) = match (org, kind) {
        (Some(o), UnitKind::Org) => (" WHERE id = $1", vec![Param::Text(o.to_owned())]),
        (Some(o), _) => (" WHERE org_id = $1", vec![Param::Text(o.to_owned())]),
        (None, _) => ("", vec![]),
    };
    let sql = format!(
        "SELECT {} FROM {}{filter} ORDER BY id",
        cols.join(", "),
        kind.table()
    );
    let rows = db.fetch(&sql, &params, "listing units").await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut refs = Vec::new();
        for (i, c) in kind.refs().iter().enumerate() {
            refs.push((*c, get_opt_str(r, 3 + i)?));
        }
        out.push(Unit {
            id: get_str(r, 0)?,
            name: get_str(r, 1)?,
            created_ms: get_i64(r, 2)?,
            refs,
        });
    }
    Ok(out)
}
