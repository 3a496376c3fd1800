//! The analytics reports' queries (`crate::analytics` checks the request and shapes the
//! rows into tables): sums over the usage records and the rollups, the latency
//! histograms, the learner's log, the rated calls in a selection.
//!
//! Reports over sums read the coarsest rollup grain that tiles the range (`Source`:
//! months, days, hours; `crate::rollup`) and the raw records (shaped as rollup rows, so
//! the same query runs) only when no rollup answers exactly.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;

use crate::db::{Db, DbError, Param, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::rollup::{
    DAY, GRAINS, Grain, HOUR, LATENCY, LatencyMetric, MONTH, TAGS, latency_bucket, schema,
};
use crate::store::bills::Sums;
use crate::time::{month_of_ms, month_start_ms};

/// What a report reads: calls started in `from`..`to` (Unix ms, `to` exclusive) of the
/// given units (all given conditions hold), with a tag `(key, value)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Start (inclusive).
    pub from: Option<i64>,
    /// End (exclusive).
    pub to: Option<i64>,
    /// Org id.
    pub org: Option<String>,
    /// Department id.
    pub department: Option<String>,
    /// Project id.
    pub project: Option<String>,
    /// Group id.
    pub group: Option<String>,
    /// Member id.
    pub user: Option<String>,
    /// API key id.
    pub key: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Provider name.
    pub provider: Option<String>,
    /// Request tag `(key, value)`.
    pub tag: Option<(String, String)>,
}

impl Selection {
    /// Does it name a project, group, member or key (which the latency histograms and the
    /// tag rollups do not keep)?
    fn names_below_department(&self) -> bool {
        self.project.is_some() || self.group.is_some() || self.user.is_some() || self.key.is_some()
    }
}

/// The grouping dimensions (`by=`) and their columns, in the order errors and `--help`
/// list them.
pub const DIMENSIONS: [(&str, &str); 10] = [
    ("org", "org"),
    ("department", "department"),
    ("project", "project"),
    ("group", "grp"),
    ("user", "usr"),
    ("key", "api_key_id"),
    ("model", "model"),
    ("provider", "provider"),
    ("tier", "route_tier"),
    ("status", "status"),
];

/// A grouping dimension and its column, one of [`DIMENSIONS`] ([`Column::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column(&'static str, &'static str);

impl Column {
    /// Dimension `by`, or `None` for an unknown name.
    pub fn of(by: &str) -> Option<Column> {
        DIMENSIONS
            .iter()
            .find(|(n, _)| *n == by)
            .map(|(n, c)| Column(n, c))
    }
    /// The dimension's name (`by=`).
    pub fn name(self) -> &'static str {
        self.0
    }
    /// Its column.
    fn sql(self) -> &'static str {
        self.1
    }
}

/// The columns the latency histograms keep (others read the raw records).
const LATENCY_COLUMNS: &[&str] = &["org", "department", "provider", "model", "route_tier"];

/// A time bucket of `timeseries` and `breakdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// UTC hours.
    Hour,
    /// UTC days.
    Day,
    /// Calendar months (UTC).
    Month,
}

impl Bucket {
    /// `hour`, `day` or `month`.
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            "month" => Some(Bucket::Month),
            _ => None,
        }
    }
    /// The bucket of a raw record row.
    fn sql(self) -> &'static str {
        match self {
            Bucket::Hour => "(ts_start / 3600000) * 3600000",
            Bucket::Day => "(ts_start / 86400000) * 86400000",
            Bucket::Month => "month",
        }
    }
}

fn month_of(t: i64) -> i64 {
    month_of_ms(u64::try_from(t).unwrap_or(0))
}

/// `yyyymm` of a ms period column `col` as SQL both backends run: `CASE WHEN col <
/// <start of the next month> THEN <month> ... ELSE <last month> END`, for the months from
/// `lo`'s to `hi`'s (Unix ms, UTC).
fn month_case(col: &str, lo: i64, hi: i64) -> String {
    let next = |m: i64| {
        if m % 100 == 12 {
            (m / 100 + 1) * 100 + 1
        } else {
            m + 1
        }
    };
    let mut m = month_of(lo);
    let last = month_of(hi.max(lo));
    let mut sql = String::from("CAST((CASE");
    while m < last {
        let n = next(m);
        sql.push_str(&format!(" WHEN {col} < {} THEN {m}", month_start_ms(n)));
        m = n;
    }
    sql.push_str(&format!(" ELSE {last} END) AS BIGINT)"));
    sql
}

/// A WHERE clause and its parameters.
#[derive(Debug, Default, Clone)]
struct Filter {
    /// ` WHERE ...` or empty.
    sql: String,
    /// Parameters, `$1`...
    params: Vec<Param>,
}

/// The word that adds a condition after `where_sql` (a ` WHERE ...` clause or empty).
fn and_where(where_sql: &str) -> &'static str {
    if where_sql.is_empty() {
        " WHERE"
    } else {
        " AND"
    }
}

impl Filter {
    /// Add `cond`, whose `$?` is `p`.
    fn add(&mut self, cond: &str, p: Param) {
        self.params.push(p);
        let n = self.params.len();
        let cond = cond.replace("$?", &format!("${n}"));
        self.sql = format!("{}{} {cond}", self.sql, and_where(&self.sql));
    }

    /// The unit conditions (org, department, project, group, member, key, model,
    /// provider): the same columns in the raw records and the rollups.
    fn add_units(&mut self, s: &Selection) {
        for (v, cond) in [
            (&s.org, "org = $?"),
            (&s.department, "department = $?"),
            (&s.project, "project = $?"),
            (&s.group, "grp = $?"),
            (&s.user, "usr = $?"),
            (&s.key, "api_key_id = $?"),
            (&s.model, "model = $?"),
            (&s.provider, "provider = $?"),
        ] {
            if let Some(v) = v {
                self.add(cond, Param::Text(v.clone()));
            }
        }
    }

    /// The filter over `usage_records` of a selection.
    fn records(s: &Selection) -> Filter {
        let mut f = Filter::default();
        for (t, cond, name) in [
            (s.from, "ts_start >= $?", "from"),
            (s.to, "ts_start < $?", "to"),
        ] {
            let Some(t) = t else { continue };
            // Month bounds let the covering (month, org, department, ...) index serve the
            // query; for month-aligned ranges (the usual dashboard query) they replace
            // the time condition entirely, so no table row is read.
            let m = month_of(t);
            let aligned = t >= 0 && month_start_ms(m) == t;
            if !aligned {
                f.add(cond, Param::I64(t));
            }
            if t >= 0 {
                match name {
                    "from" => f.add("month >= $?", Param::I64(m)),
                    _ if aligned => f.add("month < $?", Param::I64(m)),
                    _ => f.add("month <= $?", Param::I64(m)),
                }
            }
        }
        f.add_units(s);
        if let Some((k, v)) = &s.tag {
            f.params.push(Param::Text(k.clone()));
            f.params.push(Param::Text(v.clone()));
            let n = f.params.len();
            f.sql.push_str(and_where(&f.sql));
            // Record ids are unique per org only: a tag belongs to the record of its own org.
            f.sql.push_str(&format!(
                " (org, id) IN (SELECT org, record_id FROM usage_tags WHERE k = ${} AND v = ${n})",
                n - 1
            ));
        }
        f
    }
}

/// Where a report reads: the coarsest rollup grain that answers exactly, or the raw
/// records shaped as rollup rows ([`schema::records_as_rows`]), so one query serves both.
#[derive(Debug)]
struct Source {
    /// The grain, or `None` for the raw records.
    grain: Option<Grain>,
    /// A parenthesised subquery for `FROM`, aliased `r`.
    from: String,
    /// Its ` WHERE ...` over the grain's table (empty for the raw records).
    where_sql: String,
    /// Its parameters.
    params: Vec<Param>,
}

impl Source {
    /// The rows a query reads: the coarsest grain (months, days, hours) whose periods
    /// tile `from`..`to` exactly and can form `bucket`, unless a tag filter needs the raw
    /// records (tags are not rolled up).
    fn pick(s: &Selection, bucket: Option<Bucket>) -> Source {
        let bounds: Vec<(i64, &str)> = [(s.from, ">="), (s.to, "<")]
            .into_iter()
            .filter_map(|(t, op)| t.map(|t| (t, op)))
            .collect();
        if s.tag.is_none() {
            for grain in GRAINS.into_iter().rev() {
                let fits_bucket = match bucket {
                    None | Some(Bucket::Month) => true,
                    Some(Bucket::Day) => grain
                        .period_ms
                        .is_some_and(|p| p <= DAY.period_ms.unwrap_or(0)),
                    Some(Bucket::Hour) => grain
                        .period_ms
                        .is_some_and(|p| p <= HOUR.period_ms.unwrap_or(0)),
                };
                let fits_range = bounds.iter().all(|(t, _)| match grain.period_ms {
                    None => *t >= 0 && month_start_ms(month_of(*t)) == *t,
                    Some(p) => t.rem_euclid(p) == 0,
                });
                if !(fits_bucket && fits_range) {
                    continue;
                }
                let mut f = Filter::default();
                for (t, op) in &bounds {
                    let v = if grain.period_ms.is_none() {
                        month_of(*t)
                    } else {
                        *t
                    };
                    f.add(&format!("{} {op} $?", grain.period), Param::I64(v));
                }
                f.add_units(s);
                return Source {
                    grain: Some(grain),
                    from: format!("(SELECT * FROM {}{}) r", grain.table, f.sql),
                    where_sql: f.sql,
                    params: f.params,
                };
            }
        }
        let raw = Filter::records(s);
        Source {
            grain: None,
            from: format!("({}) r", schema::records_as_rows(&raw.sql)),
            where_sql: String::new(),
            params: raw.params,
        }
    }

    /// The name of a query over these rows, for errors and metrics.
    fn what(&self, report: &str) -> String {
        match self.grain {
            Some(g) => format!("analytics {report} ({})", g.table),
            None => format!("analytics {report}"),
        }
    }

    /// Run `sql` over these rows and read each result row with `read`.
    async fn rows<T>(
        &self,
        db: &Db,
        sql: &str,
        report: &str,
        read: impl Fn(&AnyRow) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        db.fetch(sql, &self.params, &self.what(report))
            .await?
            .iter()
            .map(read)
            .collect()
    }

    /// The SQL of bucket `b` over these rows (months over a ms grain become a `CASE`
    /// over the months between the first and last period in range).
    async fn bucket_sql(&self, db: &Db, b: Bucket) -> Result<String, DbError> {
        let Some(g) = self.grain else {
            return Ok(b.sql().to_owned());
        };
        Ok(match (b, g.period_ms) {
            (Bucket::Month, None) => "month".to_owned(),
            (Bucket::Month, Some(_)) => {
                let sql = format!("SELECT MIN({p}), MAX({p}) FROM {}", self.from, p = g.period);
                let rows = db
                    .fetch(&sql, &self.params, "analytics month span (rollups)")
                    .await?;
                let span = match rows.first() {
                    Some(r) => (get_opt_i64(r, 0)?, get_opt_i64(r, 1)?),
                    None => (None, None),
                };
                month_case(g.period, span.0.unwrap_or(0), span.1.unwrap_or(0))
            }
            (Bucket::Day, Some(86_400_000)) | (Bucket::Hour, _) => g.period.to_owned(),
            (Bucket::Day, _) => format!("({} / 86400000) * 86400000", g.period),
        })
    }
}

/// `CAST(COALESCE(SUM(c), 0) AS BIGINT)` for each column, comma-separated.
fn sums(cols: &[&str]) -> String {
    cols.iter()
        .map(|c| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first `N` columns of a row, as integers.
fn ints<const N: usize>(r: &AnyRow) -> Result<[i64; N], DbError> {
    ints_from(r, 0)
}

/// `N` columns of a row from column `from`, as integers.
fn ints_from<const N: usize>(r: &AnyRow, from: usize) -> Result<[i64; N], DbError> {
    let mut out = [0; N];
    for (i, v) in out.iter_mut().enumerate() {
        *v = get_i64(r, from + i)?;
    }
    Ok(out)
}

/// The `summary` figures of a selection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Calls, errors, tokens and spend.
    pub sums: Sums,
    /// The clients' own cost figures (micro-USD).
    pub client_cost_micros: i64,
    /// Calls whose client cost differed from the collector's.
    pub cost_mismatches: i64,
    /// Distinct members.
    pub active_users: i64,
    /// Distinct keys.
    pub active_keys: i64,
    /// Policy denials.
    pub denials: i64,
}

/// The `summary` figures.
pub async fn summary(db: &Db, s: &Selection) -> Result<Summary, DbError> {
    let src = Source::pick(s, None);
    let sql = format!(
        "SELECT {}, COUNT(DISTINCT NULLIF(usr, '')), COUNT(DISTINCT api_key_id), {} FROM {}",
        sums(&[
            "calls",
            "errors",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "spend_micros",
            "client_cost_micros",
            "cost_mismatches"
        ]),
        sums(&["denials"]),
        src.from
    );
    let rows = src.rows(db, &sql, "summary", ints::<11>).await?;
    let Some(
        &[
            calls,
            errors,
            prompt_tokens,
            completion_tokens,
            total_tokens,
            spend_micros,
            client_cost_micros,
            cost_mismatches,
            active_users,
            active_keys,
            denials,
        ],
    ) = rows.first()
    else {
        return Ok(Summary::default());
    };
    Ok(Summary {
        sums: Sums {
            calls,
            errors,
            prompt_tokens,
            completion_tokens,
            total_tokens,
            spend_micros,
        },
        client_cost_micros,
        cost_mismatches,
        active_users,
        active_keys,
        denials,
    })
}

/// One `timeseries` row: a bucket (and group), calls, total tokens, spend, errors and
/// denials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRow {
    /// The bucket value: Unix ms of the bucket's start, or `yyyymm` for months.
    pub bucket: i64,
    /// The group (`by=`), when grouped.
    pub group: Option<String>,
    /// calls, total_tokens, spend_micros, errors, denials.
    pub sums: [i64; 5],
}

/// Sums per bucket `b` (and per `by` value), in bucket order.
pub async fn timeseries(
    db: &Db,
    s: &Selection,
    b: Bucket,
    by: Option<Column>,
) -> Result<Vec<SeriesRow>, DbError> {
    let src = Source::pick(s, Some(b));
    let dsel = by.map_or(String::new(), |d| format!(", NULLIF({}, '')", d.sql()));
    let by_extra = if by.is_some() { ", 2" } else { "" };
    let bsql = src.bucket_sql(db, b).await?;
    let sql = format!(
        "SELECT {bsql} AS b{dsel}, {} FROM {} GROUP BY 1{by_extra} ORDER BY 1{by_extra}",
        sums(&["calls", "total_tokens", "spend_micros", "errors", "denials"]),
        src.from
    );
    let off = usize::from(by.is_some());
    src.rows(db, &sql, "timeseries", |r| {
        Ok(SeriesRow {
            bucket: get_i64(r, 0)?,
            group: if by.is_some() {
                get_opt_str(r, 1)?
            } else {
                None
            },
            sums: ints_from(r, 1 + off)?,
        })
    })
    .await
}

/// One `breakdown` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    /// The bucket value, when bucketed.
    pub bucket: Option<i64>,
    /// The group (`None` for calls without one).
    pub group: Option<String>,
    /// calls, errors, total_tokens, spend_micros, active users, denials.
    pub sums: [i64; 6],
}

/// Sums per `by` value (and bucket): by bucket and spend (descending) when bucketed,
/// else by spend; at most `limit` rows.
pub async fn breakdown(
    db: &Db,
    s: &Selection,
    bucket: Option<Bucket>,
    by: Column,
    limit: i64,
) -> Result<Vec<GroupRow>, DbError> {
    let src = Source::pick(s, bucket);
    let (bsel, bgrp) = match bucket {
        Some(b) => (format!("{} AS b, ", src.bucket_sql(db, b).await?), "1, 2"),
        None => (String::new(), "1"),
    };
    let order = if bucket.is_some() {
        "1, 6 DESC, 2"
    } else {
        "5 DESC, 1"
    };
    let sql = format!(
        "SELECT {bsel}NULLIF({}, ''), {}, COUNT(DISTINCT NULLIF(usr, '')), {} FROM {} GROUP BY {bgrp} ORDER BY {order} LIMIT {limit}",
        by.sql(),
        sums(&["calls", "errors", "total_tokens", "spend_micros"]),
        sums(&["denials"]),
        src.from
    );
    let off = usize::from(bucket.is_some());
    src.rows(db, &sql, "breakdown", |r| {
        Ok(GroupRow {
            bucket: if bucket.is_some() {
                Some(get_i64(r, 0)?)
            } else {
                None
            },
            group: get_opt_str(r, off)?,
            sums: ints_from(r, 1 + off)?,
        })
    })
    .await
}

/// The members with the most spend: (member, [calls, total tokens, spend]), at most
/// `limit`.
pub async fn users(
    db: &Db,
    s: &Selection,
    limit: i64,
) -> Result<Vec<(Option<String>, [i64; 3])>, DbError> {
    let src = Source::pick(s, None);
    let sql = format!(
        "SELECT usr, {} FROM {} WHERE usr <> '' GROUP BY usr ORDER BY 4 DESC, 1 LIMIT {limit}",
        sums(&["calls", "total_tokens", "spend_micros"]),
        src.from
    );
    src.rows(db, &sql, "users", |r| {
        Ok((get_opt_str(r, 0)?, ints_from(r, 1)?))
    })
    .await
}

/// One `models` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRow {
    /// Provider.
    pub provider: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// calls, prompt_tokens, completion_tokens, total_tokens, spend_micros.
    pub sums: [i64; 5],
}

/// Sums per provider and model, by spend (descending).
pub async fn models(db: &Db, s: &Selection) -> Result<Vec<ModelRow>, DbError> {
    let src = Source::pick(s, None);
    let sql = format!(
        "SELECT provider, model, {} FROM {} GROUP BY provider, model ORDER BY 7 DESC, 1, 2",
        sums(&[
            "calls",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "spend_micros"
        ]),
        src.from
    );
    src.rows(db, &sql, "models", |r| {
        Ok(ModelRow {
            provider: get_opt_str(r, 0)?,
            model: get_opt_str(r, 1)?,
            sums: ints_from(r, 2)?,
        })
    })
    .await
}

/// One `keys` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// The key id.
    pub key: Option<String>,
    /// The end of its last call in the selection (Unix ms).
    pub last_end_ms: i64,
    /// calls, errors, spend_micros, total_tokens, denials.
    pub sums: [i64; 5],
}

/// Sums per key, by spend (descending), at most `limit`.
pub async fn keys(db: &Db, s: &Selection, limit: i64) -> Result<Vec<KeyRow>, DbError> {
    let src = Source::pick(s, None);
    let sql = format!(
        "SELECT api_key_id, CAST(MAX(last_end_ms) AS BIGINT), {} FROM {} GROUP BY api_key_id ORDER BY 5 DESC, 1 LIMIT {limit}",
        sums(&["calls", "errors", "spend_micros", "total_tokens", "denials"]),
        src.from
    );
    src.rows(db, &sql, "keys", |r| {
        Ok(KeyRow {
            key: get_opt_str(r, 0)?,
            last_end_ms: get_i64(r, 1)?,
            sums: ints_from(r, 2)?,
        })
    })
    .await
}

/// Per routing tier (else routing mode, else `none`): [calls, spend, the strongest
/// model's price of the same tokens, the spend of the calls that price covers], by calls
/// (descending).
pub async fn tiers(db: &Db, s: &Selection) -> Result<Vec<(Option<String>, [i64; 4])>, DbError> {
    let src = Source::pick(s, None);
    let sql = format!(
        "SELECT COALESCE(NULLIF(route_tier, ''), NULLIF(route_mode, ''), 'none'), {} FROM {} GROUP BY 1 ORDER BY 2 DESC, 1",
        sums(&[
            "calls",
            "spend_micros",
            "baseline_micros",
            "baseline_spend_micros"
        ]),
        src.from
    );
    src.rows(db, &sql, "routing", |r| {
        Ok((get_opt_str(r, 0)?, ints_from(r, 1)?))
    })
    .await
}

/// One `errors` row: calls that did not succeed, per status, provider and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRow {
    /// The stored status (`error`, `denied`, `cancelled`, ...).
    pub status: String,
    /// Provider.
    pub provider: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Calls.
    pub calls: i64,
    /// The start of the last (Unix ms).
    pub last_start_ms: i64,
}

/// The calls that did not succeed, most first, at most `limit` rows.
pub async fn errors(db: &Db, s: &Selection, limit: i64) -> Result<Vec<ErrorRow>, DbError> {
    let src = Source::pick(s, None);
    let sql = format!(
        "SELECT status, provider, model, {}, CAST(MAX(last_start_ms) AS BIGINT) FROM {} WHERE status <> 'ok'
         GROUP BY status, provider, model ORDER BY 4 DESC, 1, 2, 3 LIMIT {limit}",
        sums(&["calls"]),
        src.from
    );
    src.rows(db, &sql, "errors", |r| {
        Ok(ErrorRow {
            status: get_str(r, 0)?,
            provider: get_opt_str(r, 1)?,
            model: get_opt_str(r, 2)?,
            calls: get_i64(r, 3)?,
            last_start_ms: get_i64(r, 4)?,
        })
    })
    .await
}

/// One `denials` row: policy-denied calls per department, member, key, provider and
/// model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialRow {
    /// Department.
    pub department: Option<String>,
    /// Member.
    pub user: Option<String>,
    /// Key id.
    pub key: Option<String>,
    /// Provider.
    pub provider: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Denied calls.
    pub denials: i64,
    /// The start of the last (Unix ms).
    pub last_start_ms: i64,
}

/// The policy-denied calls, most first, at most `limit` rows.
pub async fn denials(db: &Db, s: &Selection, limit: i64) -> Result<Vec<DenialRow>, DbError> {
    let src = Source::pick(s, None);
    let sql = format!(
        "SELECT NULLIF(department, ''), NULLIF(usr, ''), api_key_id, provider, model, {}, CAST(MAX(last_start_ms) AS BIGINT) FROM {} WHERE status = 'denied'
         GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC, 1, 2, 3 LIMIT {limit}",
        sums(&["calls"]),
        src.from
    );
    src.rows(db, &sql, "denials", |r| {
        Ok(DenialRow {
            department: get_opt_str(r, 0)?,
            user: get_opt_str(r, 1)?,
            key: get_opt_str(r, 2)?,
            provider: get_opt_str(r, 3)?,
            model: get_opt_str(r, 4)?,
            denials: get_i64(r, 5)?,
            last_start_ms: get_i64(r, 6)?,
        })
    })
    .await
}

/// One latency histogram bucket of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyRow {
    /// The group (`None` for calls without one).
    pub group: Option<String>,
    /// Whole call or time to first token.
    pub metric: LatencyMetric,
    /// The bucket's upper bound ([`latency_bucket`]).
    pub le_ms: i64,
    /// Calls in it.
    pub calls: i64,
    /// Failed calls among them.
    pub errors: i64,
}

/// The latency histograms per `by` value: from the monthly histograms
/// (`usage_latency_month`) for whole months grouped and filtered by what they keep
/// (org, department, provider, model, tier), else from the raw records bucketed the
/// same way, so both answer alike.
pub async fn latency(db: &Db, s: &Selection, by: Column) -> Result<Vec<LatencyRow>, DbError> {
    let d = by.sql();
    let mut out = Vec::new();
    let histogram = LATENCY_COLUMNS.contains(&d) && !s.names_below_department();
    let monthly = Some(Source::pick(s, None)).filter(|src| histogram && src.grain == Some(MONTH));
    if let Some(f) = monthly {
        let sql = format!(
            "SELECT NULLIF({d}, ''), metric, le_ms, CAST(SUM(calls) AS BIGINT), CAST(SUM(errors) AS BIGINT) FROM {}{} GROUP BY 1, 2, 3",
            LATENCY.table, f.where_sql
        );
        for r in &db
            .fetch(&sql, &f.params, "analytics latency (histograms)")
            .await?
        {
            let Some(metric) = LatencyMetric::parse(&get_str(r, 1)?) else {
                continue;
            };
            let [le_ms, calls, errors] = ints_from(r, 2)?;
            out.push(LatencyRow {
                group: get_opt_str(r, 0)?,
                metric,
                le_ms,
                calls,
                errors,
            });
        }
        return Ok(out);
    }
    let raw = Filter::records(s);
    let w = &raw.sql;
    for &metric in LatencyMetric::ALL {
        let col = metric.column();
        let and = and_where(w);
        let sql = format!(
            "SELECT {d}, {col}, COUNT(*), CAST(SUM(is_error) AS BIGINT) FROM usage_records{w}{and} {col} IS NOT NULL GROUP BY 1, 2"
        );
        for r in &db.fetch(&sql, &raw.params, "analytics latency").await? {
            let [ms, calls, errors] = ints_from(r, 1)?;
            out.push(LatencyRow {
                group: get_opt_str(r, 0)?,
                metric,
                le_ms: latency_bucket(ms),
                calls,
                errors,
            });
        }
    }
    Ok(out)
}

/// What the `outcomes` report groups calls by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping<'a> {
    /// A dimension's column.
    Column(Column),
    /// The value of a request tag (`None` for calls without the tag).
    Tag(&'a str),
}

impl Grouping<'_> {
    /// The SQL of the group of a `usage_records` row, adding its parameter to `f`.
    fn sql_over_records(self, f: &mut Filter) -> String {
        match self {
            Grouping::Column(c) => c.sql().to_owned(),
            Grouping::Tag(k) => {
                f.params.push(Param::Text(k.to_owned()));
                format!(
                    "(SELECT t.v FROM usage_tags t WHERE t.org = usage_records.org AND t.record_id = usage_records.id AND t.k = ${})",
                    f.params.len()
                )
            }
        }
    }
}

/// Rows of (group, calls, spend) from `sql`.
async fn group_sums(
    db: &Db,
    sql: &str,
    params: &[Param],
    what: &str,
) -> Result<Vec<(Option<String>, i64, i64)>, DbError> {
    db.fetch(sql, params, &format!("analytics outcomes ({what})"))
        .await?
        .iter()
        .map(|r| Ok((get_opt_str(r, 0)?, get_i64(r, 1)?, get_i64(r, 2)?)))
        .collect()
}

/// (group, calls, spend) per group: from the rollups when grouped by a unit, or by a tag
/// over whole months of units the tag rollups keep; else from the raw records.
pub async fn group_totals(
    db: &Db,
    s: &Selection,
    by: Grouping<'_>,
) -> Result<Vec<(Option<String>, i64, i64)>, DbError> {
    let src = Source::pick(s, None);
    let calls_spend = sums(&["calls", "spend_micros"]);
    let tag_rollup =
        src.grain == Some(MONTH) && s.group.is_none() && s.user.is_none() && s.key.is_none();
    match by {
        Grouping::Tag(k) if tag_rollup => {
            // Each value's calls from the tag rollups; the calls without the tag are the
            // rest of the unit's calls (a record has one value per key).
            let mut params = src.params.clone();
            params.push(Param::Text(k.to_owned()));
            let sql = format!(
                "SELECT v, {calls_spend} FROM {}{}{} k = ${} GROUP BY v",
                TAGS.table,
                src.where_sql,
                and_where(&src.where_sql),
                params.len()
            );
            let mut totals = group_sums(db, &sql, &params, "usage_tag_rollup_month").await?;
            let sql = format!("SELECT NULL, {calls_spend} FROM {}", src.from);
            if let Some((_, c, s)) = group_sums(db, &sql, &src.params, "calls").await?.pop() {
                let (tc, ts) = totals.iter().fold((0, 0), |a, t| (a.0 + t.1, a.1 + t.2));
                if c != tc || s != ts {
                    totals.push((None, c - tc, s - ts));
                }
            }
            Ok(totals)
        }
        Grouping::Tag(_) => {
            let mut f = Filter::records(s);
            let g = by.sql_over_records(&mut f);
            let sql = format!(
                "SELECT {g}, COUNT(*), CAST(COALESCE(SUM(spend_micros), 0) AS BIGINT) FROM usage_records{} GROUP BY 1",
                f.sql
            );
            group_sums(db, &sql, &f.params, "calls").await
        }
        Grouping::Column(c) => {
            let sql = format!(
                "SELECT NULLIF({}, ''), {calls_spend} FROM {} GROUP BY 1",
                c.sql(),
                src.from
            );
            group_sums(db, &sql, &src.params, "calls").await
        }
    }
}

/// The rated calls (of `scores`) that are in the filter `f`: for each, its org, the
/// values of `cols` (SQL over `usage_records`) and its score. Looked up by (org, id), 400
/// calls a query, so the cost follows the rated calls, not every record.
async fn rated_in_filter(
    db: &Db,
    f: &Filter,
    cols: &[&str],
    scores: &BTreeMap<(String, String), i64>,
    what: &str,
) -> Result<Vec<(String, Vec<Option<String>>, i64)>, DbError> {
    let mut out = Vec::new();
    let keys: Vec<&(String, String)> = scores.keys().collect();
    for chunk in keys.chunks(400) {
        let mut params = f.params.clone();
        let mut values = Vec::with_capacity(chunk.len());
        for (o, id) in chunk {
            params.extend([Param::Text(o.clone()), Param::Text(id.clone())]);
            values.push(format!("(${}, ${})", params.len() - 1, params.len()));
        }
        let and = and_where(&f.sql);
        let sql = format!(
            "SELECT org, id, {} FROM usage_records{}{and} (org, id) IN (VALUES {})",
            cols.join(", "),
            f.sql,
            values.join(", ")
        );
        for r in &db
            .fetch(&sql, &params, &format!("analytics {what} (rated calls)"))
            .await?
        {
            let (org, id) = (get_str(r, 0)?, get_str(r, 1)?);
            let score = scores.get(&(org.clone(), id)).copied().unwrap_or(0);
            let vals = (0..cols.len())
                .map(|i| get_opt_str(r, i + 2))
                .collect::<Result<_, _>>()?;
            out.push((org, vals, score));
        }
    }
    Ok(out)
}

/// The rated calls (of `scores`: (org, record id) → score) in the selection: each one's
/// group and score.
pub async fn rated_groups(
    db: &Db,
    s: &Selection,
    by: Grouping<'_>,
    scores: &BTreeMap<(String, String), i64>,
) -> Result<Vec<(Option<String>, i64)>, DbError> {
    let mut f = Filter::records(s);
    let g = by.sql_over_records(&mut f);
    Ok(rated_in_filter(db, &f, &[&g], scores, "outcomes")
        .await?
        .into_iter()
        .map(|(_, cols, score)| (cols.into_iter().next().flatten(), score))
        .collect())
}

/// An `auto`-routed call's place: org, project, tier, provider and model.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct AutoCall {
    /// Org.
    pub org: String,
    /// Project (`None` or empty for none).
    pub project: Option<String>,
    /// The tier routing chose.
    pub tier: String,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
}

/// The `auto`-routed calls in the selection: per place, [calls, spend, the strongest
/// model's price of the same tokens, the spend of the calls that price covers].
pub async fn auto_calls(db: &Db, s: &Selection) -> Result<Vec<(AutoCall, [i64; 4])>, DbError> {
    let src = Source::pick(s, None);
    let sql = format!(
        "SELECT org, project, route_tier, provider, model, {} FROM {} WHERE route_mode = 'auto' GROUP BY 1, 2, 3, 4, 5",
        sums(&[
            "calls",
            "spend_micros",
            "baseline_micros",
            "baseline_spend_micros"
        ]),
        src.from
    );
    src.rows(db, &sql, "routing_quality", |r| {
        Ok((
            AutoCall {
                org: get_str(r, 0)?,
                project: get_opt_str(r, 1)?,
                tier: get_opt_str(r, 2)?.unwrap_or_default(),
                provider: get_opt_str(r, 3)?.unwrap_or_default(),
                model: get_opt_str(r, 4)?.unwrap_or_default(),
            },
            ints_from(r, 5)?,
        ))
    })
    .await
}

/// The rated `auto`-routed calls in the selection: each one's place and score.
pub async fn rated_auto_calls(
    db: &Db,
    s: &Selection,
    scores: &BTreeMap<(String, String), i64>,
) -> Result<Vec<(AutoCall, i64)>, DbError> {
    let mut f = Filter::records(s);
    f.add("route_mode = $?", Param::Text("auto".into()));
    let cols = ["project", "route_tier", "provider", "model"];
    Ok(rated_in_filter(db, &f, &cols, scores, "routing_quality")
        .await?
        .into_iter()
        .map(|(org, v, score)| {
            let mut v = v.into_iter();
            let project = v.next().flatten();
            let mut next = || v.next().flatten().unwrap_or_default();
            let (tier, provider, model) = (next(), next(), next());
            (
                AutoCall {
                    org,
                    project,
                    tier,
                    provider,
                    model,
                },
                score,
            )
        })
        .collect())
}

/// What the learner logged (`route_features`) of the calls in the selection, per org and
/// project: [logged calls, exploration draws, shadow calls]. Filtered on its own columns
/// (org, project, start time: its (org, ts_start) index serves them) when the selection
/// names nothing else, else on its records' filter.
pub async fn learner_log(
    db: &Db,
    s: &Selection,
) -> Result<Vec<(String, Option<String>, [i64; 3])>, DbError> {
    let direct = s.department.is_none()
        && s.group.is_none()
        && s.user.is_none()
        && s.key.is_none()
        && s.model.is_none()
        && s.provider.is_none()
        && s.tag.is_none();
    let (mut conds, mut params) = (Vec::new(), Vec::new());
    if !direct {
        let f = Filter::records(s);
        params = f.params;
        conds.push(format!(
            "(rf.org, rf.record_id) IN (SELECT org, id FROM usage_records{})",
            f.sql
        ));
    }
    if let Some(o) = &s.org {
        params.push(Param::Text(o.clone()));
        conds.push(format!("rf.org = ${}", params.len()));
    }
    if let (true, Some(p)) = (direct, &s.project) {
        params.push(Param::Text(p.clone()));
        conds.push(format!("rf.project = ${}", params.len()));
    }
    for (t, op) in [(s.from, ">="), (s.to, "<")] {
        if let Some(t) = t {
            params.push(Param::I64(t));
            conds.push(format!("rf.ts_start {op} ${}", params.len()));
        }
    }
    let where_sql = match conds.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conds.join(" AND ")),
    };
    let sql = format!(
        "SELECT rf.org, rf.project, CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(rf.explored), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN rf.shadow_of IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT)
         FROM route_features rf{where_sql} GROUP BY rf.org, rf.project"
    );
    db.fetch(&sql, &params, "analytics routing_quality (route features)")
        .await?
        .iter()
        .map(|r| Ok((get_str(r, 0)?, get_opt_str(r, 1)?, ints_from(r, 2)?)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn record_filter_uses_month_bounds_and_tags() {
        let s = Selection {
            org: Some("acme".into()),
            department: Some("eng".into()),
            ..Default::default()
        };
        assert_eq!(
            Filter::records(&s).sql,
            " WHERE org = $1 AND department = $2"
        );
        let s = Selection {
            tag: Some(("team".into(), "a".into())),
            from: crate::time::parse_time("2026-01-01"),
            ..Default::default()
        };
        assert_eq!(
            Filter::records(&s).sql,
            " WHERE month >= $1 AND (org, id) IN (SELECT org, record_id FROM usage_tags WHERE k = $2 AND v = $3)"
        );
        let s = Selection {
            from: crate::time::parse_time("2026-01-02"),
            to: crate::time::parse_time("2026-02-01"),
            ..Default::default()
        };
        assert_eq!(
            Filter::records(&s).sql,
            " WHERE ts_start >= $1 AND month >= $2 AND month < $3"
        );
    }

    #[test]
    fn source_reads_the_coarsest_grain_that_tiles_the_range() {
        let at = |t: &str| crate::time::parse_time(t);
        let s = Selection {
            from: at("2026-01-01"),
            to: at("2026-03-01"),
            ..Default::default()
        };
        assert_eq!(Source::pick(&s, None).grain, Some(MONTH));
        assert_eq!(Source::pick(&s, Some(Bucket::Day)).grain, Some(DAY));
        let s = Selection {
            from: at("2026-01-02"),
            ..s
        };
        assert_eq!(Source::pick(&s, None).grain, Some(DAY));
        let s = Selection {
            tag: Some(("k".into(), "v".into())),
            ..s
        };
        assert_eq!(Source::pick(&s, None).grain, None);
    }

    #[test]
    fn dimensions_map_to_columns() {
        assert_eq!(Column::of("user").map(Column::sql), Some("usr"));
        assert_eq!(Column::of("tier").map(Column::sql), Some("route_tier"));
        assert_eq!(Column::of("nope"), None);
    }
}
