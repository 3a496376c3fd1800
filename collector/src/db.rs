//! The database layer: one code path over SQLite and PostgreSQL through sqlx's `Any`
//! driver. Every query is portable SQL with `$N` placeholders (which both backends
//! accept); only the migrations that need it (append-only triggers) differ by backend.
//!
//! Types are kept to BIGINT and TEXT so `Any` decodes them the same on both: booleans
//! are 0/1, sums are cast to BIGINT (PostgreSQL would return NUMERIC).

use std::time::{Duration, Instant};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (one file, one writer at a time).
    Sqlite,
    /// PostgreSQL (several collectors may share it).
    Postgres,
}

/// A bound query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// BIGINT.
    I64(i64),
    /// Nullable BIGINT.
    OptI64(Option<i64>),
    /// TEXT.
    Text(String),
    /// Nullable TEXT.
    OptText(Option<String>),
}

/// Database errors, with the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("database error while {op}: {source}")]
pub struct DbError {
    /// What was being done.
    pub op: String,
    /// The driver error.
    #[source]
    pub source: sqlx::Error,
}

impl DbError {
    /// A unique-constraint violation (e.g. creating an id twice).
    pub fn is_unique_violation(&self) -> bool {
        matches!(&self.source, sqlx::Error::Database(d) if d.is_unique_violation())
    }
}

pub(crate) fn dberr(op: &str) -> impl FnOnce(sqlx::Error) -> DbError + '_ {
    move |source| DbError {
        op: op.to_owned(),
        source,
    }
}

/// The shared pool.
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// PostgreSQL: months whose `usage_records` partition this process knows exists.
    partitions: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
    /// SQLite allows one writer: serialize write transactions in-process instead of
    /// spinning on SQLITE_BUSY.
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// This collector's counters (database timings are counted here).
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// This collector's wall clock (what "now" is to handlers, the store and the learner).
    clock: crate::time::Clock,
}

/// Column definitions of `usage_records` after `id`, as migration 1 created them (shared
/// with migration 6, which rebuilds the table on SQLite).
macro_rules! usage_record_columns_v1 {
    () => {
        "api_key_id TEXT NOT NULL, seq BIGINT NOT NULL,
            ts_start BIGINT NOT NULL, ts_end BIGINT NOT NULL, month BIGINT NOT NULL,
            org TEXT NOT NULL, department TEXT, project TEXT, grp TEXT, usr TEXT,
            provider TEXT NOT NULL, model TEXT NOT NULL,
            route_mode TEXT, route_tier TEXT, route_score BIGINT,
            prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, cached_prompt_tokens BIGINT NOT NULL,
            cache_write_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL, total_tokens BIGINT NOT NULL,
            client_cost_micros BIGINT NOT NULL, collector_cost_micros BIGINT, priced_as TEXT, cost_mismatch BIGINT NOT NULL,
            spend_micros BIGINT NOT NULL, baseline_micros BIGINT,
            latency_ms BIGINT NOT NULL, ttft_ms BIGINT, status TEXT NOT NULL, is_error BIGINT NOT NULL,
            attempts BIGINT NOT NULL, stream BIGINT NOT NULL, tags TEXT NOT NULL,
            sdk_name TEXT NOT NULL, sdk_version TEXT NOT NULL, sdk_language TEXT NOT NULL,
            signature TEXT NOT NULL, received_ms BIGINT NOT NULL"
    };
}

/// Every column of `usage_records` (migrations 1 and 5), in table order.
macro_rules! usage_record_column_names {
    () => {
        "id, api_key_id, seq, ts_start, ts_end, month, org, department, project, grp, usr, provider, model, route_mode, route_tier, route_score, \
prompt_tokens, completion_tokens, cached_prompt_tokens, cache_write_tokens, reasoning_tokens, total_tokens, client_cost_micros, collector_cost_micros, priced_as, \
cost_mismatch, spend_micros, baseline_micros, latency_ms, ttft_ms, status, is_error, attempts, stream, tags, sdk_name, sdk_version, sdk_language, signature, received_ms, \
denied_rule, denied_level, attributed"
    };
}

/// Every column of `usage_records`, in table order (ingest inserts them all).
pub(crate) const USAGE_RECORD_COLUMNS: &str = usage_record_column_names!();

/// One migration: its version and the statements for each backend.
struct Migration {
    version: i64,
    common: &'static [&'static str],
    sqlite: &'static [&'static str],
    postgres: &'static [&'static str],
    /// Statements built from current definitions, run after the others (derived tables
    /// such as the rollups, recreated whole).
    generated: Option<fn() -> Vec<String>>,
}

const MIGRATIONS: &[Migration] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3_DASHBOARD_SESSIONS,
    MIGRATION_4_USAGE_ROLLUPS,
    MIGRATION_5_DENIALS_ATTRIBUTION,
    MIGRATION_6_DEDUP_PER_ORG,
    MIGRATION_7_OTEL_EXPORT_CURSOR,
    MIGRATION_8_FEEDBACK,
    MIGRATION_9_PG_MONTH_PARTITIONS,
    MIGRATION_10_MONTHLY_ROLLUPS,
    MIGRATION_11_ROLLUPS_V2,
    MIGRATION_12_ROUTING_LEARNING,
    MIGRATION_13_PROJECT_WEIGHTS,
    MIGRATION_14_SHADOW_SAMPLING,
    MIGRATION_15_MODEL_PROPENSITY,
];

const MIGRATION_1: Migration = Migration {
    version: 1,
    common: &[
        "CREATE TABLE IF NOT EXISTS orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS departments (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL, created_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), department_id TEXT REFERENCES departments(id), name TEXT NOT NULL, created_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS user_groups (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), department_id TEXT REFERENCES departments(id), name TEXT NOT NULL, created_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), department_id TEXT REFERENCES departments(id), group_id TEXT REFERENCES user_groups(id), name TEXT NOT NULL, created_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), department_id TEXT, project_id TEXT, group_id TEXT, user_id TEXT, description TEXT NOT NULL, status TEXT NOT NULL, created_ms BIGINT NOT NULL, revoked_ms BIGINT)",
        "CREATE TABLE IF NOT EXISTS api_key_versions (api_key_id TEXT NOT NULL REFERENCES api_keys(id), version BIGINT NOT NULL, public_key TEXT NOT NULL, created_ms BIGINT NOT NULL, not_after_ms BIGINT, PRIMARY KEY (api_key_id, version))",
        "CREATE TABLE IF NOT EXISTS access_tokens (id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, role TEXT NOT NULL, org_id TEXT, department_id TEXT, description TEXT NOT NULL, created_ms BIGINT NOT NULL, revoked_ms BIGINT)",
        "CREATE TABLE IF NOT EXISTS audit_log (id TEXT PRIMARY KEY, ts_ms BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL)",
        concat!(
            "CREATE TABLE IF NOT EXISTS usage_records (id TEXT PRIMARY KEY, ",
            usage_record_columns_v1!(),
            ")"
        ),
        "CREATE INDEX IF NOT EXISTS usage_ts ON usage_records (ts_start)",
        "CREATE INDEX IF NOT EXISTS usage_month_org_dept ON usage_records (month, org, department, usr, spend_micros, total_tokens, is_error)",
        "CREATE INDEX IF NOT EXISTS usage_key_ts ON usage_records (api_key_id, ts_start)",
        "CREATE INDEX IF NOT EXISTS usage_user ON usage_records (usr)",
        "CREATE TABLE IF NOT EXISTS usage_tags (record_id TEXT NOT NULL, k TEXT NOT NULL, v TEXT NOT NULL, PRIMARY KEY (record_id, k))",
        "CREATE INDEX IF NOT EXISTS usage_tags_kv ON usage_tags (k, v)",
    ],
    sqlite: &[
        "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    ],
    postgres: &[
        "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql",
        "DROP TRIGGER IF EXISTS audit_no_change ON audit_log",
        "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    ],
    generated: None,
};

/// Enterprise accounts (see `ACCOUNTS.md`): group memberships, policies, budgets,
/// per-window usage counters (updated in the ingest transaction, so a reservation reads
/// one row per budget instead of summing records), reservations and their holds, and
/// soft-budget alerts.
const MIGRATION_2: Migration = Migration {
    version: 2,
    common: &[
        "CREATE TABLE IF NOT EXISTS group_members (group_id TEXT NOT NULL REFERENCES user_groups(id), user_id TEXT NOT NULL REFERENCES users(id), created_ms BIGINT NOT NULL, PRIMARY KEY (group_id, user_id))",
        "CREATE INDEX IF NOT EXISTS group_members_user ON group_members (user_id)",
        "CREATE TABLE IF NOT EXISTS policies (level TEXT PRIMARY KEY, org_id TEXT NOT NULL, rules TEXT NOT NULL, updated_ms BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS policies_org ON policies (org_id)",
        "CREATE TABLE IF NOT EXISTS budgets (id TEXT PRIMARY KEY, org_id TEXT NOT NULL, level TEXT NOT NULL, metric TEXT NOT NULL, period TEXT NOT NULL, limit_value BIGINT NOT NULL, enforcement TEXT NOT NULL, notify_at TEXT NOT NULL, created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, UNIQUE (level, metric, period))",
        "CREATE INDEX IF NOT EXISTS budgets_org ON budgets (org_id)",
        "CREATE TABLE IF NOT EXISTS budget_usage (budget_id TEXT NOT NULL, period_start_ms BIGINT NOT NULL, used BIGINT NOT NULL, PRIMARY KEY (budget_id, period_start_ms))",
        "CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, api_key_id TEXT NOT NULL, model TEXT NOT NULL, amount_micros BIGINT NOT NULL, amount_tokens BIGINT NOT NULL, state TEXT NOT NULL, record_id TEXT, created_ms BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL, settled_ms BIGINT, actual_micros BIGINT, actual_tokens BIGINT)",
        "CREATE INDEX IF NOT EXISTS reservations_record ON reservations (record_id)",
        "CREATE INDEX IF NOT EXISTS reservations_open ON reservations (state, expires_at_ms)",
        "CREATE TABLE IF NOT EXISTS reservation_holds (reservation_id TEXT NOT NULL, budget_id TEXT NOT NULL, metric TEXT NOT NULL, amount BIGINT NOT NULL, PRIMARY KEY (reservation_id, budget_id))",
        "CREATE INDEX IF NOT EXISTS reservation_holds_budget ON reservation_holds (budget_id)",
        "CREATE TABLE IF NOT EXISTS budget_alerts (budget_id TEXT NOT NULL, period_start_ms BIGINT NOT NULL, threshold BIGINT NOT NULL, org_id TEXT NOT NULL, level TEXT NOT NULL, ts_ms BIGINT NOT NULL, used BIGINT NOT NULL, limit_value BIGINT NOT NULL, message TEXT NOT NULL, PRIMARY KEY (budget_id, period_start_ms, threshold))",
        "CREATE INDEX IF NOT EXISTS budget_alerts_org ON budget_alerts (org_id, ts_ms)",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Dashboard sessions (api/dashboard.rs): SHA-256 of the session id and of the token it was
/// opened with (so revoking the token ends the session), and its expiry.
const MIGRATION_3_DASHBOARD_SESSIONS: Migration = Migration {
    version: 3,
    common: &[
        "CREATE TABLE IF NOT EXISTS dashboard_sessions (id_sha256 TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS dashboard_sessions_expiry ON dashboard_sessions (expires_ms)",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Hourly usage rollups (rollup.rs), maintained in the ingest transaction. Filled from
/// the raw records that exist when the migration runs.
const MIGRATION_4_USAGE_ROLLUPS: Migration = Migration {
    version: 4,
    common: &[
        "CREATE TABLE IF NOT EXISTS usage_rollup_hour (
            hour_ms BIGINT NOT NULL, org TEXT NOT NULL, department TEXT NOT NULL, project TEXT NOT NULL, grp TEXT NOT NULL, usr TEXT NOT NULL,
            api_key_id TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, route_tier TEXT NOT NULL, status TEXT NOT NULL,
            calls BIGINT NOT NULL, errors BIGINT NOT NULL, denials BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,
            total_tokens BIGINT NOT NULL, spend_micros BIGINT NOT NULL, client_cost_micros BIGINT NOT NULL, baseline_micros BIGINT NOT NULL,
            baseline_spend_micros BIGINT NOT NULL, latency_ms_sum BIGINT NOT NULL,
            PRIMARY KEY (hour_ms, org, department, project, grp, usr, api_key_id, provider, model, route_tier, status))",
        "CREATE INDEX IF NOT EXISTS usage_rollup_org_dept ON usage_rollup_hour (org, department, hour_ms)",
        "INSERT INTO usage_rollup_hour SELECT (ts_start / 3600000) * 3600000, org, COALESCE(department, ''), COALESCE(project, ''), COALESCE(grp, ''), COALESCE(usr, ''),
            api_key_id, provider, model, COALESCE(route_tier, ''), status, COUNT(*), CAST(SUM(is_error) AS BIGINT),
            CAST(SUM(CASE WHEN status = 'denied' THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(prompt_tokens) AS BIGINT), CAST(SUM(completion_tokens) AS BIGINT),
            CAST(SUM(total_tokens) AS BIGINT), CAST(SUM(spend_micros) AS BIGINT), CAST(SUM(client_cost_micros) AS BIGINT),
            CAST(COALESCE(SUM(baseline_micros), 0) AS BIGINT), CAST(SUM(CASE WHEN baseline_micros IS NULL THEN 0 ELSE spend_micros END) AS BIGINT),
            CAST(SUM(latency_ms) AS BIGINT) FROM usage_records GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// What a stored record needs to be re-verified and explained: the rule and level of a
/// policy denial (`status = 'denied'`), and which units the collector filled from the
/// key's binding (`attributed`, e.g. `department,project`: absent in the signed record, so
/// a re-verification leaves them out again).
const MIGRATION_5_DENIALS_ATTRIBUTION: Migration = Migration {
    version: 5,
    common: &[
        "ALTER TABLE usage_records ADD COLUMN denied_rule TEXT",
        "ALTER TABLE usage_records ADD COLUMN denied_level TEXT",
        "ALTER TABLE usage_records ADD COLUMN attributed TEXT",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Record ids are deduplicated per org (issue 18, item 7): before, `usage_records.id`
/// was the primary key, so a key of another org that learned an id could store it first
/// and the real record was refused.
///
/// Design: the dedup key is its own table, `usage_record_keys (org, id)` (primary key;
/// `month` of the record's `ts_start` is kept so keys can later be pruned with old
/// partitions: a replay of a record older than `max_record_age_days` is refused anyway).
/// Ingest inserts the keys first, in the same transaction, with `ON CONFLICT DO NOTHING
/// RETURNING org, id`: the keys returned are the new records (stored raw, counted in
/// budgets, reservations and rollups), the others are `duplicate`. `usage_records`
/// itself carries no uniqueness, only a plain `(org, id)` index for lookups: on
/// PostgreSQL a unique constraint of a partitioned table must include the partition
/// key, so a `UNIQUE (org, id)` there would block partitioning the raw records by month
/// (issue 21), while the small key table stays unpartitioned and global. Tags carry
/// the org of their record (`usage_tags (org, record_id, k)`).
///
/// Backfill: ids were unique across orgs until now, so every stored `(org, id)` goes into
/// the key table and each tag takes the org of the record with its id. SQLite cannot
/// drop a primary key, so it rebuilds both tables (same columns, same indexes);
/// PostgreSQL drops the constraints in place. Each migration runs in one transaction.
const MIGRATION_6_DEDUP_PER_ORG: Migration = Migration {
    version: 6,
    common: &[
        "CREATE TABLE IF NOT EXISTS usage_record_keys (org TEXT NOT NULL, id TEXT NOT NULL, month BIGINT NOT NULL, PRIMARY KEY (org, id))",
        "INSERT INTO usage_record_keys (org, id, month) SELECT org, id, month FROM usage_records WHERE 1 = 1 ON CONFLICT (org, id) DO NOTHING",
    ],
    sqlite: &[
        concat!(
            "CREATE TABLE usage_records_v6 (id TEXT NOT NULL, ",
            usage_record_columns_v1!(),
            ", denied_rule TEXT, denied_level TEXT, attributed TEXT)"
        ),
        concat!(
            "INSERT INTO usage_records_v6 (",
            usage_record_column_names!(),
            ") SELECT ",
            usage_record_column_names!(),
            " FROM usage_records"
        ),
        "CREATE TABLE usage_tags_v6 (org TEXT NOT NULL, record_id TEXT NOT NULL, k TEXT NOT NULL, v TEXT NOT NULL, PRIMARY KEY (org, record_id, k))",
        "INSERT INTO usage_tags_v6 (org, record_id, k, v) SELECT COALESCE(r.org, ''), t.record_id, t.k, t.v FROM usage_tags t LEFT JOIN usage_records r ON r.id = t.record_id",
        "DROP TABLE usage_records",
        "DROP TABLE usage_tags",
        "ALTER TABLE usage_records_v6 RENAME TO usage_records",
        "ALTER TABLE usage_tags_v6 RENAME TO usage_tags",
        "CREATE INDEX usage_ts ON usage_records (ts_start)",
        "CREATE INDEX usage_month_org_dept ON usage_records (month, org, department, usr, spend_micros, total_tokens, is_error)",
        "CREATE INDEX usage_key_ts ON usage_records (api_key_id, ts_start)",
        "CREATE INDEX usage_user ON usage_records (usr)",
        "CREATE INDEX usage_org_id ON usage_records (org, id)",
        "CREATE INDEX usage_tags_kv ON usage_tags (k, v)",
    ],
    postgres: &[
        "ALTER TABLE usage_tags ADD COLUMN org TEXT",
        "UPDATE usage_tags t SET org = r.org FROM usage_records r WHERE r.id = t.record_id",
        "UPDATE usage_tags SET org = '' WHERE org IS NULL",
        "ALTER TABLE usage_tags ALTER COLUMN org SET NOT NULL",
        "ALTER TABLE usage_tags DROP CONSTRAINT usage_tags_pkey",
        "ALTER TABLE usage_tags ADD PRIMARY KEY (org, record_id, k)",
        "ALTER TABLE usage_records DROP CONSTRAINT usage_records_pkey",
        "CREATE INDEX usage_org_id ON usage_records (org, id)",
    ],
    generated: None,
};

/// OpenTelemetry export (otlp_export.rs): one cursor per exported signal (`otlp.traces`,
/// `otlp.metrics`), the `(received_ms, id)` of the last record delivered. The index the exporter reads
/// by (`usage_records (received_ms, id)`) is created by the exporter when export is
/// turned on ([`Db::ensure_export_index`]), so collectors that do not export pay nothing
/// for it at ingest.
const MIGRATION_7_OTEL_EXPORT_CURSOR: Migration = Migration {
    version: 7,
    common: &[
        "CREATE TABLE IF NOT EXISTS otel_export_cursor (name TEXT PRIMARY KEY, received_ms BIGINT NOT NULL, last_id TEXT NOT NULL, updated_ms BIGINT NOT NULL)",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Version 8: outcome feedback (issue 20). One row per signed feedback record, keyed
/// (and deduplicated) per (org, id) like usage records; `record_id` names the judged
/// call's usage record of the same org (joined at query time: the feedback may arrive
/// before its record, from another key of the org, e.g. a server-side evaluator).
const MIGRATION_8_FEEDBACK: Migration = Migration {
    version: 8,
    common: &[
        "CREATE TABLE IF NOT EXISTS feedback (org TEXT NOT NULL, id TEXT NOT NULL, record_id TEXT NOT NULL, api_key_id TEXT NOT NULL, seq BIGINT NOT NULL,
         ts BIGINT NOT NULL, score_milli INTEGER NOT NULL, label TEXT, source TEXT NOT NULL, tags TEXT NOT NULL, sdk_name TEXT NOT NULL, sdk_version TEXT NOT NULL,
         sdk_language TEXT NOT NULL, signature TEXT NOT NULL, received_ms BIGINT NOT NULL, PRIMARY KEY (org, id))",
        "CREATE INDEX IF NOT EXISTS feedback_record ON feedback (org, record_id)",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Version 9 (issue 21): on PostgreSQL, raw records are partitioned by month
/// (`PARTITION BY RANGE (month)`, one partition `usage_records_pYYYYMM` per calendar month
/// of `ts_start`), so a month's records sit together, old months can be detached or
/// dropped whole, and scans of a month read one partition. Migration 6 already moved
/// deduplication to `usage_record_keys`, so the parent needs no unique constraint.
///
/// The table is rebuilt in the migration's transaction: the old one is renamed, its
/// indexes dropped (their names move to the new parent, whose indexes every partition
/// inherits), one partition is created per month present, the rows are copied and the old
/// table dropped. Later months get their partition at ingest ([`Db::ensure_partitions`]).
/// SQLite has no partitions: nothing changes there.
const MIGRATION_9_PG_MONTH_PARTITIONS: Migration = Migration {
    version: 9,
    common: &[],
    sqlite: &[],
    postgres: &[
        "ALTER TABLE usage_records RENAME TO usage_records_v8",
        "DROP INDEX IF EXISTS usage_ts",
        "DROP INDEX IF EXISTS usage_month_org_dept",
        "DROP INDEX IF EXISTS usage_key_ts",
        "DROP INDEX IF EXISTS usage_user",
        "DROP INDEX IF EXISTS usage_org_id",
        "DROP INDEX IF EXISTS usage_received",
        "CREATE TABLE usage_records (LIKE usage_records_v8 INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (month)",
        "DO $$ DECLARE m BIGINT; BEGIN
           FOR m IN SELECT DISTINCT month FROM usage_records_v8 LOOP
             EXECUTE format('CREATE TABLE %I PARTITION OF usage_records FOR VALUES FROM (%s) TO (%s)', 'usage_records_p' || m, m, m + 1);
           END LOOP;
         END $$",
        "CREATE INDEX usage_ts ON usage_records (ts_start)",
        "CREATE INDEX usage_month_org_dept ON usage_records (month, org, department, usr, spend_micros, total_tokens, is_error)",
        "CREATE INDEX usage_key_ts ON usage_records (api_key_id, ts_start)",
        "CREATE INDEX usage_user ON usage_records (usr)",
        "CREATE INDEX usage_org_id ON usage_records (org, id)",
        "INSERT INTO usage_records SELECT * FROM usage_records_v8",
        "DROP TABLE usage_records_v8",
    ],
    generated: None,
};

/// Version 10 (issue 21): monthly rollups (`rollup::MONTH`), the same keys and measures
/// as the hourly ones with `month` (`yyyymm`) as the period, so month buckets and whole
/// months read a few rows per unit instead of one per hour. Filled from the raw records.
const MIGRATION_10_MONTHLY_ROLLUPS: Migration = Migration {
    version: 10,
    common: &[
        "CREATE TABLE IF NOT EXISTS usage_rollup_month (
            month BIGINT NOT NULL, org TEXT NOT NULL, department TEXT NOT NULL, project TEXT NOT NULL, grp TEXT NOT NULL, usr TEXT NOT NULL,
            api_key_id TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, route_tier TEXT NOT NULL, status TEXT NOT NULL,
            calls BIGINT NOT NULL, errors BIGINT NOT NULL, denials BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,
            total_tokens BIGINT NOT NULL, spend_micros BIGINT NOT NULL, client_cost_micros BIGINT NOT NULL, baseline_micros BIGINT NOT NULL,
            baseline_spend_micros BIGINT NOT NULL, latency_ms_sum BIGINT NOT NULL,
            PRIMARY KEY (month, org, department, project, grp, usr, api_key_id, provider, model, route_tier, status))",
        "CREATE INDEX IF NOT EXISTS usage_rollup_month_org_dept ON usage_rollup_month (org, department, month)",
        "INSERT INTO usage_rollup_month SELECT month, org, COALESCE(department, ''), COALESCE(project, ''), COALESCE(grp, ''), COALESCE(usr, ''),
            api_key_id, provider, model, COALESCE(route_tier, ''), status, COUNT(*), CAST(SUM(is_error) AS BIGINT),
            CAST(SUM(CASE WHEN status = 'denied' THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(prompt_tokens) AS BIGINT), CAST(SUM(completion_tokens) AS BIGINT),
            CAST(SUM(total_tokens) AS BIGINT), CAST(SUM(spend_micros) AS BIGINT), CAST(SUM(client_cost_micros) AS BIGINT),
            CAST(COALESCE(SUM(baseline_micros), 0) AS BIGINT), CAST(SUM(CASE WHEN baseline_micros IS NULL THEN 0 ELSE spend_micros END) AS BIGINT),
            CAST(SUM(latency_ms) AS BIGINT) FROM usage_records GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Version 11 (issue 21): the rollups gain a daily grain (`usage_rollup_day`), the route
/// mode as a unit, and the measures the remaining reports need (cost mismatches, the
/// start and end of the last call), so summary, users, models, keys, routing, errors and
/// denials read rollups too. Rollups are derived data: all three tables are recreated
/// from `rollup_schema` and refilled from the raw records (on a large table this takes
/// minutes once, as `gaterouter-collector rollup rebuild` does).
const MIGRATION_11_ROLLUPS_V2: Migration = Migration {
    version: 11,
    common: &[],
    sqlite: &[],
    postgres: &[],
    generated: Some(crate::rollup_schema::recreate_statements),
};

/// Version 12 (issue 20): routing that learns from each organization's outcomes.
/// - `routing_settings`: per org, whether `auto` records carry learning features, the
///   exploration share, the org's term-hash salt and bucket bits (served with the policy);
/// - `route_features`: the learning part of each `auto` record that carries it (arm,
///   propensity, exploration, the weights version that scored it, the features as JSON),
///   one row per (org, record id), written by ingest with the record;
/// - `routing_weights`: every weights version promoted for an org, signed, with the
///   learning report that promoted it; `active = 1` on the one served;
/// - `routing_learn_runs`: every learning run (promoted or not) and its report;
/// - `collector_secrets`: the collector's weights signing key (shared by every collector
///   on one database).
const MIGRATION_12_ROUTING_LEARNING: Migration = Migration {
    version: 12,
    common: &[
        "CREATE TABLE IF NOT EXISTS routing_settings (org TEXT PRIMARY KEY, learning INTEGER NOT NULL, explore_permille INTEGER NOT NULL,
         salt TEXT NOT NULL, bits INTEGER NOT NULL, updated_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS route_features (org TEXT NOT NULL, record_id TEXT NOT NULL, ts_start BIGINT NOT NULL, project TEXT,
         tier TEXT, model TEXT NOT NULL, strong INTEGER NOT NULL, propensity_ppm INTEGER NOT NULL, explored INTEGER NOT NULL, weights TEXT,
         features TEXT NOT NULL, PRIMARY KEY (org, record_id))",
        "CREATE INDEX IF NOT EXISTS route_features_ts ON route_features (org, ts_start)",
        "CREATE TABLE IF NOT EXISTS routing_weights (org TEXT NOT NULL, version TEXT NOT NULL, created_ms BIGINT NOT NULL,
         weights_json TEXT NOT NULL, signature TEXT NOT NULL, public_key TEXT NOT NULL, report TEXT NOT NULL, active INTEGER NOT NULL,
         PRIMARY KEY (org, version))",
        "CREATE TABLE IF NOT EXISTS routing_learn_runs (org TEXT NOT NULL, at_ms BIGINT NOT NULL, outcomes BIGINT NOT NULL,
         promoted INTEGER NOT NULL, version TEXT, report TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS routing_learn_runs_org ON routing_learn_runs (org, at_ms)",
        "CREATE TABLE IF NOT EXISTS collector_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, created_ms BIGINT NOT NULL)",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Version 13 (issue 20): weights learned per project. `routing_weights` and
/// `routing_learn_runs` gain `project` (`''`: the org's own weights and runs, which
/// every row so far is); one weights version is active per (org, project).
const MIGRATION_13_PROJECT_WEIGHTS: Migration = Migration {
    version: 13,
    common: &[
        "ALTER TABLE routing_weights ADD COLUMN project TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE routing_learn_runs ADD COLUMN project TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX IF NOT EXISTS routing_weights_active ON routing_weights (org, project, active)",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Version 14 (issue 20): shadow sampling. `routing_settings` gains the org's shadow
/// share (0: off, what every org so far has); `route_features` gains `shadow_of`, the
/// record id of the call a shadow call shadows (NULL: not a shadow), so the learner takes
/// a call and its shadow as one request.
const MIGRATION_14_SHADOW_SAMPLING: Migration = Migration {
    version: 14,
    common: &[
        "ALTER TABLE routing_settings ADD COLUMN shadow_permille INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE route_features ADD COLUMN shadow_of TEXT",
    ],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Version 15 (issue 20): per-model learning. `route_features` gains the probability the
/// router gave the model that served the call (`route.model_propensity_ppm`, millionths;
/// NULL for records written before SDKs explored inside a tier, whose model followed from
/// the tier alone, and for calls a fallback answered).
const MIGRATION_15_MODEL_PROPENSITY: Migration = Migration {
    version: 15,
    common: &["ALTER TABLE route_features ADD COLUMN model_propensity_ppm INTEGER"],
    sqlite: &[],
    postgres: &[],
    generated: None,
};

/// Lock id for migrations on PostgreSQL, so collectors starting together do not race.
const PG_MIGRATION_LOCK: i64 = 0x6761_7465_726f_7574;

impl Db {
    /// Connect and run the migrations. SQLite files (and their directory) are created.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Db, DbError> {
        Self::connect_at_version(url, max_connections, i64::MAX).await
    }

    /// [`Db::connect`], applying the migrations up to `version` only: tests of a
    /// migration open a database at the version before it.
    #[doc(hidden)]
    pub async fn connect_at_version(
        url: &str,
        max_connections: Option<u32>,
        version: i64,
    ) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut url = url.to_owned();
        if backend == Backend::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path).to_owned();
            if path != ":memory:" {
                if let Some(parent) = std::path::Path::new(&path).parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent).map_err(|e| DbError {
                            op: format!("creating {}", parent.display()),
                            source: sqlx::Error::Io(e),
                        })?;
                    }
                }
            }
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        let opts = AnyPoolOptions::new()
            .max_connections(max_connections.unwrap_or(if backend == Backend::Sqlite {
                4
            } else {
                8
            }))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        use sqlx::Executor;
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout=10000").await?;
                        conn.execute("PRAGMA foreign_keys=ON").await?;
                        // 64 MiB page cache per connection (default 2 MiB) for analytics scans.
                        conn.execute("PRAGMA cache_size=-65536").await?;
                    }
                    Ok(())
                })
            });
        let pool = opts.connect(&url).await.map_err(dberr("connecting"))?;
        let db = Db {
            pool,
            backend,
            partitions: Default::default(),
            write_lock: Default::default(),
            metrics: Default::default(),
            clock: Default::default(),
        };
        db.migrate(version).await?;
        Ok(db)
    }

    /// The counters of the collector over this pool (`GET /metrics`).
    pub fn metrics(&self) -> &std::sync::Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// This collector's clock (tests move it forward).
    pub fn clock(&self) -> &crate::time::Clock {
        &self.clock
    }

    /// The backend kind.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Apply pending migrations up to `upto` (idempotent; PostgreSQL holds an advisory lock).
    async fn migrate(&self, upto: i64) -> Result<(), DbError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(dberr("acquiring a connection for migrations"))?;
        use sqlx::Executor;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(dberr("taking the migration lock"))?;
        }
        let result = async {
            conn.execute("CREATE TABLE IF NOT EXISTS collector_schema (version BIGINT NOT NULL)")
                .await
                .map_err(dberr("creating collector_schema"))?;
            let row = sqlx::query(
                "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM collector_schema",
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(dberr("reading the schema version"))?;
            let current: i64 = row
                .try_get(0)
                .map_err(dberr("reading the schema version"))?;
            for m in MIGRATIONS
                .iter()
                .filter(|m| m.version > current && m.version <= upto)
            {
                let specific = if self.backend == Backend::Sqlite {
                    m.sqlite
                } else {
                    m.postgres
                };
                // One transaction per migration (both backends have transactional DDL): a
                // crash in the middle of a table rebuild leaves the previous version.
                let mut tx = sqlx::Acquire::begin(&mut *conn)
                    .await
                    .map_err(dberr("starting a migration"))?;
                for stmt in m.common.iter().chain(specific) {
                    tx.execute(*stmt)
                        .await
                        .map_err(dberr(&format!("migration {}", m.version)))?;
                }
                for stmt in m.generated.map(|g| g()).unwrap_or_default() {
                    tx.execute(sqlx::AssertSqlSafe(stmt))
                        .await
                        .map_err(dberr(&format!("migration {}", m.version)))?;
                }
                sqlx::query("INSERT INTO collector_schema (version) VALUES ($1)")
                    .bind(m.version)
                    .execute(&mut *tx)
                    .await
                    .map_err(dberr("recording the schema version"))?;
                tx.commit()
                    .await
                    .map_err(dberr(&format!("committing migration {}", m.version)))?;
                tracing::info!(version = m.version, "applied migration");
            }
            Ok::<(), DbError>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await;
        }
        result
    }

    /// Create the index the OpenTelemetry exporter reads by, if missing (under the
    /// migration lock on PostgreSQL, so collectors starting together do not race). On a
    /// large table this takes a while once, and PostgreSQL holds inserts meanwhile.
    pub async fn ensure_export_index(&self) -> Result<(), DbError> {
        const SQL: &str =
            "CREATE INDEX IF NOT EXISTS usage_received ON usage_records (received_ms, id)";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(dberr("acquiring a connection for the export index"))?;
        use sqlx::Executor;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(dberr("taking the migration lock"))?;
        }
        let _g = self.write_guard().await;
        let r = conn
            .execute(SQL)
            .await
            .map(|_| ())
            .map_err(dberr("creating the export index usage_received"));
        if self.backend == Backend::Postgres {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await;
        }
        r
    }

    /// Make sure `usage_records` has a partition for each month (`yyyymm`) in `months`
    /// (PostgreSQL; a no-op on SQLite). Called before raw records are inserted. A month
    /// seen once is remembered, so ingest pays one set lookup per batch; a new month takes
    /// the migration lock (collectors sharing the database create it once, none fails)
    /// and `CREATE TABLE IF NOT EXISTS ... PARTITION OF`, in its own short transaction.
    pub async fn ensure_partitions(&self, months: &[i64]) -> Result<(), DbError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let missing: Vec<i64> = {
            let known = self
                .partitions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut m: Vec<i64> = months
                .iter()
                .copied()
                .filter(|m| !known.contains(m))
                .collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        for month in missing {
            if !(100_001..=999_912).contains(&month) || !(1..=12).contains(&(month % 100)) {
                return Err(DbError {
                    op: format!("partition for month {month}"),
                    source: sqlx::Error::Protocol(format!("{month} is not a yyyymm month")),
                });
            }
            let op = format!("creating the usage_records partition for {month}");
            let mut tx = self.pool.begin().await.map_err(dberr(&op))?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(dberr(&op))?;
            // `month` is a checked integer: nothing from outside reaches the statement text.
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS usage_records_p{month} PARTITION OF usage_records FOR VALUES FROM ({month}) TO ({})",
                month + 1
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(dberr(&op))?;
            tx.commit().await.map_err(dberr(&op))?;
            self.partitions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(month);
        }
        Ok(())
    }

    /// Serialize writers on SQLite; a no-op guard on PostgreSQL.
    pub(crate) async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.backend == Backend::Sqlite {
            Some(self.write_lock.lock().await)
        } else {
            None
        }
    }

    /// Start a transaction that reads before it writes and must not interleave with
    /// other writers: `BEGIN IMMEDIATE` on SQLite (takes the write lock at once, also
    /// against other processes on the same file; pair it with `Db::write_guard`), a
    /// plain transaction on PostgreSQL (which locks rows with `FOR UPDATE`).
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        let r = if self.backend == Backend::Sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await
        } else {
            self.pool.begin().await
        };
        r.map_err(dberr("starting a write transaction"))
    }

    /// Run a query returning rows, timing it for `/metrics`.
    pub async fn fetch(
        &self,
        sql: &str,
        params: &[Param],
        op: &str,
    ) -> Result<Vec<AnyRow>, DbError> {
        let t = Instant::now();
        let q = bind_all(sql, params);
        let r = q.fetch_all(&self.pool).await.map_err(dberr(op));
        self.metrics.observe_db(t.elapsed());
        r
    }

    /// Run a statement; returns rows affected.
    pub async fn exec(&self, sql: &str, params: &[Param], op: &str) -> Result<u64, DbError> {
        let _g = self.write_guard().await;
        let t = Instant::now();
        let r = bind_all(sql, params)
            .execute(&self.pool)
            .await
            .map_err(dberr(op));
        self.metrics.observe_db(t.elapsed());
        Ok(r?.rows_affected())
    }

    /// Is the database answering?
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await.is_ok()
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A query over `sql` (built only from constants and generated placeholders, never
/// from user input) with `params` bound in order.
pub(crate) fn bind_all(
    sql: &str,
    params: &[Param],
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for p in params {
        q = match p {
            Param::I64(v) => q.bind(*v),
            Param::OptI64(v) => q.bind(*v),
            Param::Text(v) => q.bind(v.clone()),
            Param::OptText(v) => q.bind(v.clone()),
        };
    }
    q
}

/// ` WHERE {col} = $1` and its parameter when `v` is set (one org, say), else no clause
/// and no parameter.
pub(crate) fn where_eq(col: &str, v: Option<&str>) -> (String, Vec<Param>) {
    match v {
        Some(v) => (
            format!(" WHERE {col} = $1"),
            vec![Param::Text(v.to_owned())],
        ),
        None => (String::new(), Vec::new()),
    }
}

/// `$first, $first+1, ...`: `n` placeholders for an `IN (...)` list.
pub(crate) fn in_list(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Record ids grouped by org: ids are unique per org only (migration 6), so a lookup
/// by record id names the org too (`WHERE org = $1 AND id IN (...)`).
pub(crate) fn ids_by_org<'a>(
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> std::collections::BTreeMap<&'a str, Vec<&'a str>> {
    let mut out: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (org, id) in keys {
        out.entry(org).or_default().push(id);
    }
    out
}

/// Read helpers that turn decode errors into [`DbError`].
pub(crate) fn get_i64(row: &AnyRow, idx: usize) -> Result<i64, DbError> {
    row.try_get::<Option<i64>, _>(idx)
        .map(|v| v.unwrap_or(0))
        .map_err(dberr("decoding an integer column"))
}
pub(crate) fn get_opt_i64(row: &AnyRow, idx: usize) -> Result<Option<i64>, DbError> {
    row.try_get::<Option<i64>, _>(idx)
        .map_err(dberr("decoding an integer column"))
}
pub(crate) fn get_str(row: &AnyRow, idx: usize) -> Result<String, DbError> {
    row.try_get::<Option<String>, _>(idx)
        .map(|v| v.unwrap_or_default())
        .map_err(dberr("decoding a text column"))
}
pub(crate) fn get_opt_str(row: &AnyRow, idx: usize) -> Result<Option<String>, DbError> {
    row.try_get::<Option<String>, _>(idx)
        .map_err(dberr("decoding a text column"))
}

/// `($1,$2,..),(..)` for PostgreSQL, `(?,?,..)` for SQLite: SQLite looks `$N` and `?N`
/// parameters up linearly while parsing, which makes large statements quadratic; plain
/// `?` is numbered in order at no cost.
pub(crate) fn placeholders(rows: usize, cols: usize, backend: Backend) -> String {
    let sigil = if backend == Backend::Sqlite { '?' } else { '$' };
    let mut s = String::with_capacity(rows * cols * 5);
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            s.push(sigil);
            if backend != Backend::Sqlite {
                s.push_str(&n.to_string());
            }
            n += 1;
        }
        s.push(')');
    }
    s
}
