//! Policies as stored: a key's place in the org tree (its levels), the rules set at
//! those levels, and the effective policy `GET /v1/policy` answers.

use std::collections::{BTreeSet, HashMap};

use gaterouter::accounts::{
    EffectivePolicy, EffectiveRules, KeyScope, Level, LevelKind, PolicyRules,
};

use crate::db::{Db, DbError, Param, dberr, get_opt_str, get_str, in_list};
use crate::store::budgets::{budgets_at, corrupt, statuses};
use crate::store::keys::KeyInfo;

/// How long the SDK may cache `GET /v1/policy`.
pub const POLICY_TTL_MS: u64 = 30_000;

/// A key with its place in the tree.
#[derive(Debug, Clone)]
pub struct KeyContext {
    /// The key.
    pub key: KeyInfo,
    /// Its bound scope.
    pub scope: KeyScope,
    /// Its levels, broad → narrow: org, department, project, groups, user, key.
    pub levels: Vec<Level>,
}

/// The levels of a key: its bound fields, the department of its user when the key has
/// none, and every group of its user (a member may be in several).
pub async fn key_context(db: &Db, key: KeyInfo) -> Result<KeyContext, DbError> {
    let mut department = key.department.clone();
    let mut groups: BTreeSet<String> = key.group.iter().cloned().collect();
    if let Some(user) = &key.user {
        let rows = db
            .fetch(
                "SELECT department_id, group_id FROM users WHERE id = $1",
                &[Param::Text(user.clone())],
                "reading a member",
            )
            .await?;
        if let Some(r) = rows.first() {
            if department.is_none() {
                department = get_opt_str(r, 0)?;
            }
            groups.extend(get_opt_str(r, 1)?);
        }
        for r in db
            .fetch(
                "SELECT group_id FROM group_members WHERE user_id = $1",
                &[Param::Text(user.clone())],
                "reading group memberships",
            )
            .await?
        {
            groups.insert(get_str(&r, 0)?);
        }
    }
    let mut levels = vec![Level::new(LevelKind::Org, key.org.clone())];
    levels.extend(department.map(|d| Level::new(LevelKind::Department, d)));
    levels.extend(
        key.project
            .clone()
            .map(|p| Level::new(LevelKind::Project, p)),
    );
    levels.extend(groups.into_iter().map(|g| Level::new(LevelKind::Group, g)));
    levels.extend(key.user.clone().map(|p| Level::new(LevelKind::User, p)));
    levels.push(Level::new(LevelKind::Key, key.id.clone()));
    let scope = KeyScope {
        org: key.org.clone(),
        department: key.department.clone(),
        project: key.project.clone(),
        group: key.group.clone(),
        user: key.user.clone(),
    };
    Ok(KeyContext { key, scope, levels })
}

/// Stored rules of `levels`, in the order given.
pub async fn level_rules(db: &Db, levels: &[Level]) -> Result<Vec<(Level, PolicyRules)>, DbError> {
    let params: Vec<Param> = levels.iter().map(|l| Param::Text(l.to_string())).collect();
    let rows = db
        .fetch(
            &format!(
                "SELECT level, rules FROM policies WHERE level IN ({})",
                in_list(1, levels.len())
            ),
            &params,
            "reading policies",
        )
        .await?;
    let mut by_level: HashMap<String, PolicyRules> = HashMap::new();
    for r in &rows {
        let text = get_str(r, 1)?;
        let rules: PolicyRules = serde_json::from_str(&text)
            .map_err(|e| corrupt(format!("policy {}: {e}", get_str(r, 0).unwrap_or_default())))?;
        by_level.insert(get_str(r, 0)?, rules);
    }
    Ok(levels
        .iter()
        .filter_map(|l| by_level.remove(&l.to_string()).map(|r| (l.clone(), r)))
        .collect())
}

/// Effective rules of a key.
pub async fn effective_rules(db: &Db, ctx: &KeyContext) -> Result<EffectiveRules, DbError> {
    let rules = level_rules(db, &ctx.levels).await?;
    Ok(EffectiveRules::resolve(rules.iter().map(|(l, r)| (l, r))))
}

/// What `GET /v1/policy` answers for a key.
pub async fn effective_policy(db: &Db, ctx: &KeyContext) -> Result<EffectivePolicy, DbError> {
    let now = db.clock().now_u64();
    let rules = effective_rules(db, ctx).await?;
    let mut conn = db
        .pool
        .acquire()
        .await
        .map_err(dberr("acquiring a connection"))?;
    let budgets = budgets_at(&mut conn, db.backend(), &ctx.levels, false).await?;
    let budgets = statuses(&mut conn, &budgets, now).await?;
    Ok(EffectivePolicy {
        api_key_id: ctx.key.id.clone(),
        scope: ctx.scope.clone(),
        issued_at_ms: now,
        ttl_ms: POLICY_TTL_MS,
        rules,
        budgets,
        routing: super::learning::routing_policy(db, &ctx.scope.org, ctx.scope.project.as_deref())
            .await?,
    })
}

/// Set the rules of a level (insert or replace).
pub(crate) const UPSERT_POLICY: &str = "INSERT INTO policies (level, org_id, rules, updated_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (level) DO UPDATE SET org_id = excluded.org_id, rules = excluded.rules, updated_ms = excluded.updated_ms";

/// The rules (JSON text) set at `level` and when, or `None`.
pub(crate) async fn read_policy(db: &Db, level: &str) -> Result<Option<(String, i64)>, DbError> {
    let rows = db
        .fetch(
            "SELECT rules, updated_ms FROM policies WHERE level = $1",
            &[Param::Text(level.to_owned())],
            "reading a policy",
        )
        .await?;
    rows.first()
        .map(|r| Ok((get_str(r, 0)?, crate::db::get_i64(r, 1)?)))
        .transpose()
}

/// Set the rules (JSON text) of `level` in `org`.
pub(crate) async fn write_policy(
    conn: &mut sqlx::AnyConnection,
    level: &str,
    org: &str,
    rules: &str,
    now_ms: i64,
) -> Result<(), DbError> {
    crate::db::bind_all(
        UPSERT_POLICY,
        &[
            Param::Text(level.to_owned()),
            Param::Text(org.to_owned()),
            Param::Text(rules.to_owned()),
            Param::I64(now_ms),
        ],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("storing a policy"))?;
    Ok(())
}

/// Delete the rules of `level`; false when there were none.
pub(crate) async fn delete_policy(
    conn: &mut sqlx::AnyConnection,
    level: &str,
) -> Result<bool, DbError> {
    let r = crate::db::bind_all(
        "DELETE FROM policies WHERE level = $1",
        &[Param::Text(level.to_owned())],
    )
    .execute(&mut *conn)
    .await
    .map_err(dberr("deleting a policy"))?;
    Ok(r.rows_affected() > 0)
}
