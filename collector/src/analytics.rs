//! Analytics API: `GET /v1/analytics/{summary|timeseries|breakdown|per-capita|users|
//! models|keys|routing|latency|errors|denials|budgets|outcomes|routing_quality}`, JSON
//! by default, CSV with `format=csv`.
//!
//! Filters (all optional, combined with AND): `from`/`to` (Unix ms, `YYYY-MM-DD` or
//! `YYYY-MM-DDTHH:MM:SSZ`; `from` inclusive, `to` exclusive, on the call start time),
//! `org`, `department`, `project`, `group`, `user`, `key`, `model`, `provider`,
//! `tag=k:v` (or `k=v`). `bucket=hour|day|month` buckets `timeseries` and `breakdown`.
//! Spend is the collector's own cost when the model is in its catalog, else the
//! client's figure (`spend_micros`, micro-USD).
//!
//! A read token scoped to an org (and department) sees only that scope: its scope is
//! added to the filters, and a filter naming another org or department is 403.
//!
//! Reports over sums read the coarsest rollup grain that tiles the range ([`Source`]:
//! months, days, hours; `crate::rollup`), `latency` the monthly histograms, and the raw
//! records (shaped as rollup rows, so the same query runs) only when no rollup answers
//! exactly.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::db::{Param, get_i64, get_opt_str, get_str};
use crate::error::ApiError;
use crate::rollup::{
    DAY, GRAINS, Grain, HOUR, LATENCY, LatencyMetric, MONTH, TAGS, latency_bucket, schema,
};
use crate::state::AppState;
use crate::store::reports;
use crate::time::{iso, month_start_ms, parse_time};

/// Query parameters shared by every analytics endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    /// Start (inclusive).
    pub from: Option<String>,
    /// End (exclusive).
    pub to: Option<String>,
    /// Org id.
    pub org: Option<String>,
    /// Department id.
    pub department: Option<String>,
    /// Project id.
    pub project: Option<String>,
    /// Group id.
    pub group: Option<String>,
    /// User id.
    pub user: Option<String>,
    /// API key id.
    pub key: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Provider name.
    pub provider: Option<String>,
    /// Tag `k:v` or `k=v`.
    pub tag: Option<String>,
    /// `hour`, `day` or `month`.
    pub bucket: Option<String>,
    /// Grouping dimension (breakdown, per-capita, timeseries).
    pub by: Option<String>,
    /// Row limit (users ranking, breakdown). Default 100, at most 10 000.
    pub limit: Option<u32>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// The grouping dimensions (`by=`), in the order errors and `--help` list them.
pub const DIMENSIONS: &[&str] = &[
    "org",
    "department",
    "project",
    "group",
    "user",
    "key",
    "model",
    "provider",
    "tier",
    "status",
];

/// Map a dimension name to its column.
pub fn dimension(by: &str) -> Result<&'static str, ApiError> {
    Ok(match by {
        "org" => "org",
        "department" => "department",
        "project" => "project",
        "group" => "grp",
        "user" => "usr",
        "key" => "api_key_id",
        "model" => "model",
        "provider" => "provider",
        "tier" => "route_tier",
        "status" => "status",
        other => {
            return Err(ApiError::bad_request(format!(
                "`by={other}` is unknown: use one of {}",
                DIMENSIONS.join(", ")
            )));
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Hour,
    Day,
    Month,
}

impl Bucket {
    fn parse(s: Option<&str>) -> Result<Option<Bucket>, ApiError> {
        Ok(match s {
            None | Some("") => None,
            Some("hour") => Some(Bucket::Hour),
            Some("day") => Some(Bucket::Day),
            Some("month") => Some(Bucket::Month),
            Some(o) => {
                return Err(ApiError::bad_request(format!(
                    "`bucket={o}` is unknown: use hour, day or month"
                )));
            }
        })
    }
    fn sql(self) -> &'static str {
        match self {
            Bucket::Hour => "(ts_start / 3600000) * 3600000",
            Bucket::Day => "(ts_start / 86400000) * 86400000",
            Bucket::Month => "month",
        }
    }
    /// (start ms, label) of a bucket value.
    fn label(self, v: i64) -> (i64, String) {
        match self {
            Bucket::Month => (month_start_ms(v), format!("{:04}-{:02}", v / 100, v % 100)),
            Bucket::Day => (v, iso(v)[..10].to_owned()),
            Bucket::Hour => (v, iso(v)),
        }
    }
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
    let mut m = crate::time::month_of_ms(u64::try_from(lo).unwrap_or(0));
    let last = crate::time::month_of_ms(u64::try_from(hi.max(lo)).unwrap_or(0));
    let mut sql = String::from("CAST((CASE");
    while m < last {
        let n = next(m);
        sql.push_str(&format!(" WHEN {col} < {} THEN {m}", month_start_ms(n)));
        m = n;
    }
    sql.push_str(&format!(" ELSE {last} END) AS BIGINT)"));
    sql
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
    fn pick(
        q: &AnalyticsQuery,
        who: &Principal,
        bucket: Option<Bucket>,
    ) -> Result<Source, ApiError> {
        let raw = build_filter(q, who)?;
        let units = scope(q, who)?;
        let bounds = [("from", &q.from, ">="), ("to", &q.to, "<")]
            .into_iter()
            .filter_map(|(n, v, op)| v.as_ref().map(|v| (n, v, op)))
            .map(|(n, v, op)| Ok((parse_bound(n, v)?, op)))
            .collect::<Result<Vec<_>, ApiError>>()?;
        if q.tag.is_none() {
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
                let fits = fits_bucket && fits_range;
                if !fits {
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
                f.add_units(q, units);
                return Ok(Source {
                    grain: Some(grain),
                    from: format!("(SELECT * FROM {}{}) r", grain.table, f.sql),
                    where_sql: f.sql,
                    params: f.params,
                });
            }
        }
        Ok(Source::pick_raw(&raw))
    }

    /// The raw records (filtered by `raw`) as the rows.
    fn pick_raw(raw: &Filter) -> Source {
        Source {
            grain: None,
            from: format!("({}) r", schema::records_as_rows(&raw.sql)),
            where_sql: String::new(),
            params: raw.params.clone(),
        }
    }

    /// The SQL of bucket `b` over these rows (months over a ms grain become a `CASE`
    /// over the months between the first and last period in range).
    async fn bucket_sql(&self, db: &crate::db::Db, b: Bucket) -> Result<String, ApiError> {
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
                    Some(r) => (crate::db::get_opt_i64(r, 0)?, crate::db::get_opt_i64(r, 1)?),
                    None => (None, None),
                };
                month_case(g.period, span.0.unwrap_or(0), span.1.unwrap_or(0))
            }
            (Bucket::Day, Some(86_400_000)) | (Bucket::Hour, _) => g.period.to_owned(),
            (Bucket::Day, _) => format!("({} / 86400000) * 86400000", g.period),
        })
    }
}

fn month_of(t: i64) -> i64 {
    crate::time::month_of_ms(u64::try_from(t).unwrap_or(0))
}

fn parse_bound(name: &str, v: &str) -> Result<i64, ApiError> {
    parse_time(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{name}={v}` is not Unix ms, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
        ))
    })
}

/// A WHERE clause and its parameters.
#[derive(Debug, Default)]
pub struct Filter {
    /// ` WHERE ...` or empty.
    pub sql: String,
    /// Parameters, `$1`...
    pub params: Vec<Param>,
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
    fn add(&mut self, cond: &str, p: Param) {
        self.params.push(p);
        let n = self.params.len();
        let cond = cond.replace("$?", &format!("${n}"));
        self.sql = format!("{}{} {cond}", self.sql, and_where(&self.sql));
    }

    /// The unit conditions (org, department, project, group, member, key, model,
    /// provider): the same columns in the raw records and the rollups.
    fn add_units(
        &mut self,
        q: &AnalyticsQuery,
        (org, department): (Option<String>, Option<String>),
    ) {
        for (v, cond) in [
            (&org, "org = $?"),
            (&department, "department = $?"),
            (&q.project, "project = $?"),
            (&q.group, "grp = $?"),
            (&q.user, "usr = $?"),
            (&q.key, "api_key_id = $?"),
            (&q.model, "model = $?"),
            (&q.provider, "provider = $?"),
        ] {
            if let Some(v) = v {
                self.add(cond, Param::Text(v.clone()));
            }
        }
    }
}

/// The (org, department) a query reads: a read token's scope replaces absent filters,
/// and a filter naming another org or department is refused (403).
fn scope(
    q: &AnalyticsQuery,
    who: &Principal,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let mut org = q.org.clone();
    let mut department = q.department.clone();
    if let Principal::Reader {
        org: so,
        department: sd,
        ..
    } = who
    {
        if org.as_ref().is_some_and(|o| o != so) {
            return Err(ApiError::forbidden(format!(
                "this token may only read org `{so}`"
            )));
        }
        org = Some(so.clone());
        if let Some(sd) = sd {
            if department.as_ref().is_some_and(|d| d != sd) {
                return Err(ApiError::forbidden(format!(
                    "this token may only read department `{sd}`"
                )));
            }
            department = Some(sd.clone());
        }
    }
    Ok((org, department))
}

/// Apply the caller's scope and build the filter.
pub fn build_filter(q: &AnalyticsQuery, who: &Principal) -> Result<Filter, ApiError> {
    let units = scope(q, who)?;
    let mut f = Filter::default();
    for (name, v, cond) in [
        ("from", &q.from, "ts_start >= $?"),
        ("to", &q.to, "ts_start < $?"),
    ] {
        if let Some(v) = v {
            let t = parse_time(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{name}={v}` is not Unix ms, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
                ))
            })?;
            // Month bounds let the covering (month, org, department, ...) index serve the
            // query; for month-aligned ranges (the usual dashboard query) they replace
            // the time condition entirely, so no table row is read.
            let m = crate::time::month_of_ms(u64::try_from(t).unwrap_or(0));
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
    }
    f.add_units(q, units);
    if let Some(t) = &q.tag {
        let (k, v) = t
            .split_once(':')
            .or_else(|| t.split_once('='))
            .ok_or_else(|| ApiError::bad_request(format!("`tag={t}` must be key:value")))?;
        f.params.push(Param::Text(k.to_owned()));
        f.params.push(Param::Text(v.to_owned()));
        let n = f.params.len();
        f.sql.push_str(and_where(&f.sql));
        f.sql.push(' ');
        // Record ids are unique per org only: a tag belongs to the record of its own org.
        f.sql.push_str(&format!(
            "(org, id) IN (SELECT org, record_id FROM usage_tags WHERE k = ${} AND v = ${n})",
            n - 1
        ));
    }
    Ok(f)
}

fn share(part: i64, total: i64) -> f64 {
    if total <= 0 {
        0.0
    } else {
        (part as f64 / total as f64 * 1e6).round() / 1e6
    }
}

/// Nearest-rank percentile over (value, count) pairs sorted by value.
pub fn percentile(sorted: &[(i64, i64)], total: i64, p: f64) -> Option<i64> {
    if total <= 0 {
        return None;
    }
    let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (v, c) in sorted {
        seen += c;
        if seen >= rank {
            return Some(*v);
        }
    }
    sorted.last().map(|x| x.0)
}

/// A result: rows of named columns, plus top-level extras for JSON.
#[derive(Debug, Default)]
pub struct Table {
    /// Column names in order.
    pub columns: Vec<&'static str>,
    /// Rows (same order as `columns`).
    pub rows: Vec<Vec<Value>>,
    /// Extra top-level members of the JSON answer.
    pub extra: serde_json::Map<String, Value>,
}

impl Table {
    fn new(columns: &[&'static str]) -> Self {
        Table {
            columns: columns.to_vec(),
            ..Default::default()
        }
    }
    /// The JSON answer: `columns`, `rows` as objects, and the table's extra fields.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                Value::Object(
                    self.columns
                        .iter()
                        .map(|c| (*c).to_owned())
                        .zip(r.iter().cloned())
                        .collect(),
                )
            })
            .collect();
        let mut o = self.extra.clone();
        o.insert("columns".into(), json!(self.columns));
        o.insert("rows".into(), Value::Array(rows));
        Value::Object(o)
    }
    /// RFC 4180 CSV.
    pub fn csv(&self) -> String {
        let cell = |v: &Value| -> String {
            match v {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                o => o.to_string(),
            }
        };
        crate::logsafe::csv_table(&self.columns, self.rows.iter().map(|r| r.iter().map(cell)))
    }
}

/// Per model: (latency value, count) pairs, calls, errors.
/// The active keys in the query's scope (org and department, and the key bindings the
/// query filters on: project, group, member), each with the end of its last call ever
/// (from the monthly rollups), in id order.
async fn idle_keys(
    db: &crate::db::Db,
    q: &AnalyticsQuery,
    who: &Principal,
) -> Result<Vec<(String, Option<i64>)>, ApiError> {
    let (org, department) = scope(q, who)?;
    let keys = reports::active_keys(
        db,
        &reports::KeyFilter {
            org: org.as_deref(),
            department: department.as_deref(),
            project: q.project.as_deref(),
            group: q.group.as_deref(),
            user: q.user.as_deref(),
        },
    )
    .await?;
    let last = if keys.is_empty() {
        BTreeMap::new()
    } else {
        reports::keys_last_used(db, org.as_deref()).await?
    };
    Ok(keys
        .into_iter()
        .map(|(id, org)| {
            let l = last.get(&(org, id.clone())).copied();
            (id, l)
        })
        .collect())
}

/// Rows of (group, calls, spend) from `sql`, for the `outcomes` report (`what` names the
/// query in errors and metrics).
async fn group_sums(
    db: &crate::db::Db,
    sql: &str,
    params: &[Param],
    what: &str,
) -> Result<Vec<(Option<String>, i64, i64)>, ApiError> {
    db.fetch(sql, params, &format!("analytics outcomes ({what})"))
        .await?
        .iter()
        .map(|r| Ok((get_opt_str(r, 0)?, get_i64(r, 1)?, get_i64(r, 2)?)))
        .collect()
}

/// Per group and metric: the (bucket, calls) pairs and the calls and errors in all.
#[derive(Debug, Default)]
struct LatencyAcc {
    buckets: BTreeMap<i64, i64>,
    calls: i64,
    errors: i64,
}

impl LatencyAcc {
    fn add(&mut self, le_ms: i64, calls: i64, errors: i64) {
        *self.buckets.entry(le_ms).or_default() += calls;
        self.calls += calls;
        self.errors += errors;
    }
    fn pct(&self, p: f64) -> Option<i64> {
        let v: Vec<(i64, i64)> = self.buckets.iter().map(|(a, b)| (*a, *b)).collect();
        percentile(&v, self.calls, p)
    }
}

/// The dimensions the latency histograms keep (others read the raw records).
const LATENCY_DIMENSIONS: &[&str] = &["org", "department", "provider", "model", "tier"];

/// The `latency` report: per group (`by=`, default `model`), calls, errors and the
/// whole-call latency percentiles, and for streamed calls the time-to-first-token
/// percentiles. Times are read at three significant digits ([`latency_bucket`]): exact
/// below one second, at most 1 % above. Whole months with filters on org, department,
/// provider or model read the monthly histograms (`usage_latency_month`); any other
/// range or filter reads the raw records and buckets them the same way, so both answer
/// alike.
async fn latency(
    st: &AppState,
    q: &AnalyticsQuery,
    who: &Principal,
    raw: &Filter,
) -> Result<Table, ApiError> {
    let by = q.by.as_deref().unwrap_or("model");
    let d = dimension(by)?;
    let by_name = DIMENSIONS
        .iter()
        .copied()
        .find(|x| *x == by)
        .unwrap_or("model");
    let db = &st.db;
    // (group, metric, bucket, calls, errors) rows from either source.
    let mut per: BTreeMap<Option<String>, [LatencyAcc; 2]> = BTreeMap::new();
    let histogram = LATENCY_DIMENSIONS.contains(&by)
        && q.project.is_none()
        && q.group.is_none()
        && q.user.is_none()
        && q.key.is_none();
    // The monthly rollups' filter (month bounds and units) fits the histograms too.
    let monthly = match histogram {
        true => Some(Source::pick(q, who, None)?).filter(|s| s.grain == Some(MONTH)),
        false => None,
    };
    if let Some(f) = monthly {
        let sql = format!(
            "SELECT NULLIF({d}, ''), metric, le_ms, CAST(SUM(calls) AS BIGINT), CAST(SUM(errors) AS BIGINT) FROM {}{} GROUP BY 1, 2, 3",
            LATENCY.table, f.where_sql
        );
        for r in &db
            .fetch(&sql, &f.params, "analytics latency (histograms)")
            .await?
        {
            let Some(m) = LatencyMetric::parse(&get_str(r, 1)?) else {
                continue;
            };
            per.entry(get_opt_str(r, 0)?).or_default()[m as usize].add(
                get_i64(r, 2)?,
                get_i64(r, 3)?,
                get_i64(r, 4)?,
            );
        }
    } else {
        let w = &raw.sql;
        for &m in LatencyMetric::ALL {
            let col = m.column();
            let and = and_where(w);
            let sql = format!(
                "SELECT {d}, {col}, COUNT(*), CAST(SUM(is_error) AS BIGINT) FROM usage_records{w}{and} {col} IS NOT NULL GROUP BY 1, 2"
            );
            for r in &db.fetch(&sql, &raw.params, "analytics latency").await? {
                per.entry(get_opt_str(r, 0)?).or_default()[m as usize].add(
                    latency_bucket(get_i64(r, 1)?),
                    get_i64(r, 2)?,
                    get_i64(r, 3)?,
                );
            }
        }
    }
    let names = unit_names(db, by).await?;
    let mut t = Table::new(&[
        by_name,
        "calls",
        "errors",
        "error_rate",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "ttft_calls",
        "ttft_p50_ms",
        "ttft_p95_ms",
        "name",
    ]);
    for (g, [lat, ttft]) in per {
        t.rows.push(vec![
            json!(g.clone().unwrap_or_default()),
            json!(lat.calls),
            json!(lat.errors),
            json!(share(lat.errors, lat.calls)),
            json!(lat.pct(50.0)),
            json!(lat.pct(90.0)),
            json!(lat.pct(95.0)),
            json!(lat.pct(99.0)),
            json!(ttft.calls),
            json!(ttft.pct(50.0)),
            json!(ttft.pct(95.0)),
            json!(display_name(&names, g.as_deref())),
        ]);
    }
    t.extra.insert("by".into(), json!(by));
    t.extra.insert(
        "resolution".into(),
        json!("times at three significant digits: exact below 1 s, at most 1 % above"),
    );
    Ok(t)
}

/// Names of the reports (the OpenAPI test checks each is documented).
pub const REPORTS: &[&str] = &[
    "summary",
    "timeseries",
    "breakdown",
    "per-capita",
    "users",
    "models",
    "keys",
    "routing",
    "latency",
    "errors",
    "denials",
    "budgets",
    "outcomes",
    "routing_quality",
];

/// SQL counting policy-denied records (`status = 'denied'`), as a BIGINT.
/// `CAST(COALESCE(SUM(c), 0) AS BIGINT)` for each column, comma-separated.
fn sums(cols: &[&str]) -> String {
    cols.iter()
        .map(|c| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SQL of bucket `b` over a report's rows.
async fn src_bucket(
    src: Option<&Source>,
    db: &crate::db::Db,
    b: Bucket,
) -> Result<String, ApiError> {
    match src {
        Some(s) => s.bucket_sql(db, b).await,
        None => Ok(b.sql().to_owned()),
    }
}

/// id -> display name for a dimension (empty for dimensions without names).
pub async fn unit_names(
    db: &crate::db::Db,
    by: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    Ok(reports::unit_names(db, by).await?)
}

/// The name to show for an id: its org-tree name, else the id itself.
fn display_name(names: &BTreeMap<String, String>, id: Option<&str>) -> Option<String> {
    id.map(|i| names.get(i).cloned().unwrap_or_else(|| i.to_owned()))
}

/// Members of each department / group in the org tree (users listed there, plus group
/// memberships), for per-capita figures; `None` for other dimensions.
async fn unit_members(
    db: &crate::db::Db,
    by: &str,
) -> Result<Option<BTreeMap<String, i64>>, ApiError> {
    Ok(reports::unit_members(db, by).await?)
}

/// Compute one report.
pub async fn run_report(
    st: &AppState,
    name: &str,
    q: &AnalyticsQuery,
    who: &Principal,
) -> Result<Table, ApiError> {
    let f = build_filter(q, who)?;
    let bucket = Bucket::parse(q.bucket.as_deref())?;
    let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 10_000));
    let db = &st.db;
    // Reports over sums read the coarsest rollup that answers exactly (or the raw
    // records in the same shape); percentiles and outcomes read the raw records.
    let src = match name {
        "summary" | "timeseries" | "breakdown" | "per-capita" | "users" | "models" | "keys"
        | "routing" | "errors" | "denials" => Some(Source::pick(
            q,
            who,
            if name == "timeseries" {
                Some(bucket.unwrap_or(Bucket::Day))
            } else {
                bucket
            },
        )?),
        _ => None,
    };
    let (from, params): (&str, &[Param]) = match &src {
        Some(s) => (&s.from, &s.params),
        None => ("", &[]),
    };
    let what = |report: &str| match src.as_ref().and_then(|s| s.grain) {
        Some(g) => format!("analytics {report} ({})", g.table),
        None => format!("analytics {report}"),
    };
    match name {
        "summary" => {
            let sql = format!(
                "SELECT {}, COUNT(DISTINCT NULLIF(usr, '')), COUNT(DISTINCT api_key_id), {} FROM {from}",
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
                sums(&["denials"])
            );
            let rows = db.fetch(&sql, params, &what("summary")).await?;
            let mut t = Table::new(&[
                "calls",
                "errors",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "spend_micros",
                "client_cost_micros",
                "cost_mismatches",
                "active_users",
                "active_keys",
                "spend_per_active_user_micros",
                "denials",
            ]);
            if let Some(r) = rows.first() {
                let v: Vec<i64> = (0..10).map(|i| get_i64(r, i)).collect::<Result<_, _>>()?;
                let per_user = if v[8] > 0 {
                    json!(v[5] / v[8])
                } else {
                    Value::Null
                };
                let mut row: Vec<Value> = v.iter().map(|x| json!(x)).collect();
                row.push(per_user);
                row.push(json!(get_i64(r, 10)?));
                t.rows.push(row);
            }
            Ok(t)
        }
        "timeseries" => {
            let b = bucket.unwrap_or(Bucket::Day);
            let dim = q.by.as_deref().map(dimension).transpose()?;
            let dsel = dim.map_or(String::new(), |d| format!(", NULLIF({d}, '')"));
            let by_extra = if dim.is_some() { ", 2" } else { "" };
            let bsql = src_bucket(src.as_ref(), db, b).await?;
            let sql = format!(
                "SELECT {bsql} AS b{dsel}, {} FROM {from} GROUP BY 1{by_extra} ORDER BY 1{by_extra}",
                sums(&["calls", "total_tokens", "spend_micros", "errors", "denials"])
            );
            let rows = db.fetch(&sql, params, &what("timeseries")).await?;
            let mut cols = vec!["bucket_start_ms", "bucket"];
            if dim.is_some() {
                cols.push("group");
            }
            cols.extend(["calls", "total_tokens", "spend_micros", "errors", "denials"]);
            let mut t = Table::new(&cols);
            let off = usize::from(dim.is_some());
            for r in &rows {
                let (start, label) = b.label(get_i64(r, 0)?);
                let mut row = vec![json!(start), json!(label)];
                if dim.is_some() {
                    row.push(json!(get_opt_str(r, 1)?));
                }
                for i in 1..=5 {
                    row.push(json!(get_i64(r, i + off)?));
                }
                t.rows.push(row);
            }
            Ok(t)
        }
        "breakdown" | "per-capita" => {
            let by = q.by.as_deref().unwrap_or("department");
            let d = dimension(by)?;
            let (bsel, bgrp) = match bucket {
                Some(b) => (
                    format!("{} AS b, ", src_bucket(src.as_ref(), db, b).await?),
                    "1, 2",
                ),
                None => (String::new(), "1"),
            };
            let order = if bucket.is_some() {
                "1, 6 DESC, 2"
            } else {
                "5 DESC, 1"
            };
            let sql = format!(
                "SELECT {bsel}NULLIF({d}, ''), {}, COUNT(DISTINCT NULLIF(usr, '')), {} FROM {from} GROUP BY {bgrp} ORDER BY {order} LIMIT {limit}",
                sums(&["calls", "errors", "total_tokens", "spend_micros"]),
                sums(&["denials"])
            );
            let rows = db.fetch(&sql, params, &what("breakdown")).await?;
            let mut cols = vec![];
            if bucket.is_some() {
                cols.extend(["bucket_start_ms", "bucket"]);
            }
            cols.extend([
                "group",
                "calls",
                "errors",
                "total_tokens",
                "spend_micros",
                "active_users",
                "spend_per_active_user_micros",
                "spend_share",
                "name",
                "denials",
                "members",
                "spend_per_member_micros",
            ]);
            let off = usize::from(bucket.is_some());
            let mut parsed = Vec::new();
            for r in &rows {
                let b = if let Some(b) = bucket {
                    Some(b.label(get_i64(r, 0)?))
                } else {
                    None
                };
                let key = get_opt_str(r, off)?;
                let nums: Vec<i64> = (1..=6)
                    .map(|i| get_i64(r, i + off))
                    .collect::<Result<_, _>>()?;
                parsed.push((b, key, nums));
            }
            let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
            for (b, _, n) in &parsed {
                *totals.entry(b.as_ref().map_or(0, |x| x.0)).or_default() += n[3];
            }
            let names = unit_names(db, by).await?;
            let members = unit_members(db, by).await?;
            let mut t = Table::new(&cols);
            for (b, key, n) in parsed {
                let total = totals
                    .get(&b.as_ref().map_or(0, |x| x.0))
                    .copied()
                    .unwrap_or(0);
                let mut row = vec![];
                if let Some((s, l)) = b {
                    row.extend([json!(s), json!(l)]);
                }
                row.push(json!(key));
                row.extend(n[..5].iter().map(|x| json!(x)));
                row.push(if n[4] > 0 {
                    json!(n[3] / n[4])
                } else {
                    Value::Null
                });
                row.push(json!(share(n[3], total)));
                row.push(json!(display_name(&names, key.as_deref())));
                row.push(json!(n[5]));
                let m = members
                    .as_ref()
                    .map(|m| key.as_deref().and_then(|k| m.get(k)).copied().unwrap_or(0));
                row.push(json!(m));
                row.push(match m {
                    Some(m) if m > 0 => json!(n[3] / m),
                    _ => Value::Null,
                });
                t.rows.push(row);
            }
            t.extra.insert("by".into(), json!(by));
            Ok(t)
        }
        "users" => {
            let sql = format!(
                "SELECT usr, {} FROM {from} WHERE usr <> '' GROUP BY usr ORDER BY 4 DESC, 1 LIMIT {limit}",
                sums(&["calls", "total_tokens", "spend_micros"])
            );
            let rows = db.fetch(&sql, params, &what("users")).await?;
            let names = unit_names(db, "user").await?;
            let mut t = Table::new(&[
                "rank",
                "user",
                "calls",
                "total_tokens",
                "spend_micros",
                "name",
            ]);
            for (i, r) in rows.iter().enumerate() {
                let u = get_opt_str(r, 0)?;
                t.rows.push(vec![
                    json!(i + 1),
                    json!(u.clone()),
                    json!(get_i64(r, 1)?),
                    json!(get_i64(r, 2)?),
                    json!(get_i64(r, 3)?),
                    json!(display_name(&names, u.as_deref())),
                ]);
            }
            Ok(t)
        }
        "models" => {
            let sql = format!(
                "SELECT provider, model, {} FROM {from} GROUP BY provider, model ORDER BY 7 DESC, 1, 2",
                sums(&[
                    "calls",
                    "prompt_tokens",
                    "completion_tokens",
                    "total_tokens",
                    "spend_micros"
                ])
            );
            let rows = db.fetch(&sql, params, &what("models")).await?;
            let mut parsed = Vec::new();
            for r in &rows {
                let nums: Vec<i64> = (2..=6).map(|i| get_i64(r, i)).collect::<Result<_, _>>()?;
                parsed.push((get_opt_str(r, 0)?, get_opt_str(r, 1)?, nums));
            }
            let (tc, tt, ts) = parsed.iter().fold((0, 0, 0), |a, (_, _, n)| {
                (a.0 + n[0], a.1 + n[3], a.2 + n[4])
            });
            let mut t = Table::new(&[
                "provider",
                "model",
                "calls",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "spend_micros",
                "call_share",
                "token_share",
                "spend_share",
            ]);
            for (p, m, n) in parsed {
                let mut row = vec![json!(p), json!(m)];
                row.extend(n.iter().map(|x| json!(x)));
                row.extend([
                    json!(share(n[0], tc)),
                    json!(share(n[3], tt)),
                    json!(share(n[4], ts)),
                ]);
                t.rows.push(row);
            }
            Ok(t)
        }
        "keys" => {
            let sql = format!(
                "SELECT api_key_id, CAST(MAX(last_end_ms) AS BIGINT), {} FROM {from} GROUP BY api_key_id ORDER BY 5 DESC, 1 LIMIT {limit}",
                sums(&["calls", "errors", "spend_micros", "total_tokens", "denials"])
            );
            let rows = db.fetch(&sql, params, &what("keys")).await?;
            let names = unit_names(db, "key").await?;
            let mut t = Table::new(&[
                "api_key_id",
                "last_seen_ms",
                "last_seen",
                "calls",
                "errors",
                "spend_micros",
                "total_tokens",
                "name",
                "denials",
                "idle",
            ]);
            let mut seen = std::collections::BTreeSet::new();
            for r in &rows {
                let last = get_i64(r, 1)?;
                let k = get_opt_str(r, 0)?;
                seen.insert(k.clone().unwrap_or_default());
                t.rows.push(vec![
                    json!(k.clone()),
                    json!(last),
                    json!(iso(last)),
                    json!(get_i64(r, 2)?),
                    json!(get_i64(r, 3)?),
                    json!(get_i64(r, 4)?),
                    json!(get_i64(r, 5)?),
                    json!(display_name(&names, k.as_deref())),
                    json!(get_i64(r, 6)?),
                    json!(false),
                ]);
            }
            // Idle keys: active keys in scope without a call in the range, with when
            // they were last used at all (or null), after the ranked ones.
            if q.model.is_none() && q.provider.is_none() && q.tag.is_none() && q.key.is_none() {
                for (k, last) in idle_keys(db, q, who).await? {
                    if seen.contains(&k) {
                        continue;
                    }
                    t.rows.push(vec![
                        json!(k.clone()),
                        json!(last),
                        json!(last.map(iso)),
                        json!(0),
                        json!(0),
                        json!(0),
                        json!(0),
                        json!(display_name(&names, Some(&k))),
                        json!(0),
                        json!(true),
                    ]);
                }
            }
            Ok(t)
        }
        "routing" => {
            let sql = format!(
                "SELECT COALESCE(NULLIF(route_tier, ''), NULLIF(route_mode, ''), 'none'), {} FROM {from} GROUP BY 1 ORDER BY 2 DESC, 1",
                sums(&[
                    "calls",
                    "spend_micros",
                    "baseline_micros",
                    "baseline_spend_micros"
                ])
            );
            let rows = db.fetch(&sql, params, &what("routing")).await?;
            let mut parsed = Vec::new();
            for r in &rows {
                parsed.push((
                    get_opt_str(r, 0)?,
                    get_i64(r, 1)?,
                    get_i64(r, 2)?,
                    get_i64(r, 3)?,
                    get_i64(r, 4)?,
                ));
            }
            let total_calls: i64 = parsed.iter().map(|p| p.1).sum();
            let mut t = Table::new(&[
                "tier",
                "calls",
                "call_share",
                "spend_micros",
                "baseline_micros",
                "savings_micros",
            ]);
            let (mut base, mut spent_priced, mut spend) = (0i64, 0i64, 0i64);
            for (tier, calls, sp, b, spb) in parsed {
                base += b;
                spent_priced += spb;
                spend += sp;
                t.rows.push(vec![
                    json!(tier),
                    json!(calls),
                    json!(share(calls, total_calls)),
                    json!(sp),
                    json!(b),
                    json!(b - spb),
                ]);
            }
            t.extra
                .insert("strongest_model".into(), json!(st.pricing.strongest));
            t.extra.insert("spend_micros".into(), json!(spend));
            t.extra.insert("baseline_micros".into(), json!(base));
            t.extra
                .insert("savings_micros".into(), json!(base - spent_priced));
            t.extra.insert(
                "savings_share".into(),
                json!(share(base - spent_priced, base)),
            );
            Ok(t)
        }
        "latency" => latency(st, q, who, &f).await,
        "errors" => {
            let sql = format!(
                "SELECT status, provider, model, {}, CAST(MAX(last_start_ms) AS BIGINT) FROM {from} WHERE status <> 'ok'
                 GROUP BY status, provider, model ORDER BY 4 DESC, 1, 2, 3 LIMIT {limit}",
                sums(&["calls"])
            );
            let rows = db.fetch(&sql, params, &what("errors")).await?;
            let mut t = Table::new(&[
                "status",
                "kind",
                "provider",
                "model",
                "calls",
                "last_seen_ms",
                "last_seen",
            ]);
            for r in &rows {
                let status = get_str(r, 0)?;
                let kind = match status.as_str() {
                    "denied" => "denied",
                    "cancelled" => "cancelled",
                    _ => "error",
                };
                let last = get_i64(r, 4)?;
                t.rows.push(vec![
                    json!(status),
                    json!(kind),
                    json!(get_opt_str(r, 1)?),
                    json!(get_opt_str(r, 2)?),
                    json!(get_i64(r, 3)?),
                    json!(last),
                    json!(iso(last)),
                ]);
            }
            Ok(t)
        }
        "denials" => {
            let sql = format!(
                "SELECT NULLIF(department, ''), NULLIF(usr, ''), api_key_id, provider, model, {}, CAST(MAX(last_start_ms) AS BIGINT) FROM {from} WHERE status = 'denied'
                 GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC, 1, 2, 3 LIMIT {limit}",
                sums(&["calls"])
            );
            let rows = db.fetch(&sql, params, &what("denials")).await?;
            let (dn, un) = (
                unit_names(db, "department").await?,
                unit_names(db, "user").await?,
            );
            let mut t = Table::new(&[
                "department",
                "department_name",
                "user",
                "user_name",
                "api_key_id",
                "provider",
                "model",
                "denials",
                "last_seen_ms",
                "last_seen",
            ]);
            for r in &rows {
                let (d, u) = (get_opt_str(r, 0)?, get_opt_str(r, 1)?);
                let last = get_i64(r, 6)?;
                t.rows.push(vec![
                    json!(d),
                    json!(display_name(&dn, d.as_deref())),
                    json!(u),
                    json!(display_name(&un, u.as_deref())),
                    json!(get_opt_str(r, 2)?),
                    json!(get_opt_str(r, 3)?),
                    json!(get_opt_str(r, 4)?),
                    json!(get_i64(r, 5)?),
                    json!(last),
                    json!(iso(last)),
                ]);
            }
            Ok(t)
        }
        "budgets" => budgets(st, q, who).await,
        "outcomes" => outcomes(st, q, who, f, limit).await,
        "routing_quality" => routing_quality(st, q, who, f).await,
        other => Err(ApiError::not_found(format!(
            "unknown report `{other}`: use one of {}",
            REPORTS.join(", ")
        ))),
    }
}

/// The `outcomes` report (issue 20/21): per group (`by=` a dimension, or `tag:KEY` for a
/// request tag such as `tag:scenario`; default `model`), calls and spend beside the
/// outcome feedback apps sent for those calls: how many calls were rated and their mean
/// score (0 to 1; a call rated several times counts with the mean of its ratings).
/// Feedback joins its call per org; feedback whose call is outside the filter (or not
/// yet received) does not count.
async fn outcomes(
    st: &AppState,
    q: &AnalyticsQuery,
    who: &Principal,
    mut f: Filter,
    limit: i64,
) -> Result<Table, ApiError> {
    let by = q.by.as_deref().unwrap_or("model");
    let tag_key = by.strip_prefix("tag:");
    let tag = match tag_key {
        Some("") => {
            return Err(ApiError::bad_request(
                "`by=tag:` needs a tag key, e.g. by=tag:scenario",
            ));
        }
        Some(k) => {
            f.params.push(Param::Text(k.to_owned()));
            Some(format!(
                "(SELECT t.v FROM usage_tags t WHERE t.org = usage_records.org AND t.record_id = usage_records.id AND t.k = ${})",
                f.params.len()
            ))
        }
        None => None,
    };
    let db = &st.db;
    // Calls and spend per group: from the rollups when grouped by a unit or by a tag over
    // whole months, else from the raw records.
    let src = Source::pick(q, who, None)?;
    let calls_spend = sums(&["calls", "spend_micros"]);
    let tag_rollup =
        src.grain == Some(MONTH) && q.group.is_none() && q.user.is_none() && q.key.is_none();
    let totals = match (tag_key, &tag) {
        (Some(k), _) if tag_rollup => {
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
            totals
        }
        (_, Some(g)) => {
            let sql = format!(
                "SELECT {g}, COUNT(*), CAST(COALESCE(SUM(spend_micros), 0) AS BIGINT) FROM usage_records{} GROUP BY 1",
                f.sql
            );
            group_sums(db, &sql, &f.params, "calls").await?
        }
        (_, None) => {
            let sql = format!(
                "SELECT NULLIF({}, ''), {calls_spend} FROM {} GROUP BY 1",
                dimension(by)?,
                src.from
            );
            group_sums(db, &sql, &src.params, "calls").await?
        }
    };
    // Rated calls and their scores: the feedback's mean score per rated call, then each
    // rated call's group, looked up by (org, id) and kept when the call is in the filter.
    let g = tag
        .clone()
        .unwrap_or_else(|| dimension(by).unwrap_or("model").to_owned());
    let scores = reports::feedback_scores(db, scope(q, who)?.0.as_deref(), "outcomes").await?;
    let mut rated: BTreeMap<Option<String>, (i64, i64)> = BTreeMap::new();
    for (_, cols, score) in rated_in_filter(db, &f, &[&g], &scores, "outcomes").await? {
        let e = rated.entry(cols.into_iter().next().flatten()).or_default();
        e.0 += 1;
        e.1 += score;
    }
    let mut rows = Vec::new();
    for (key, calls, spend) in totals {
        let (n, s) = rated.get(&key).copied().unwrap_or((0, 0));
        rows.push((key, calls, spend, n, s));
    }
    rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let mut t = Table::new(&[
        "group",
        "calls",
        "spend_micros",
        "rated_calls",
        "rated_share",
        "mean_score",
        "spend_per_call_micros",
    ]);
    for (key, calls, spend, rated, score_sum) in rows {
        let mean = mean_score(rated, score_sum);
        t.rows.push(vec![
            json!(key),
            json!(calls),
            json!(spend),
            json!(rated),
            json!(share(rated, calls)),
            mean,
            json!(if calls > 0 { spend / calls } else { 0 }),
        ]);
    }
    t.extra.insert("by".into(), json!(by));
    Ok(t)
}

/// The tiers whose outcome scores `routing_quality` shows as columns (the router's
/// tiers, `gaterouter::accounts::TIERS`): (tier, rated calls column, mean score column).
const QUALITY_TIERS: [(&str, &str, &str); 3] = [
    ("light", "light_rated_calls", "light_mean_score"),
    ("standard", "standard_rated_calls", "standard_mean_score"),
    ("heavy", "heavy_rated_calls", "heavy_mean_score"),
];

/// One group of `routing_quality`: its `auto` calls and their outcomes.
#[derive(Debug, Default)]
struct QualityAcc {
    calls: i64,
    strong: i64,
    spend: i64,
    baseline: i64,
    baseline_spend: i64,
    learning: i64,
    explored: i64,
    shadow: i64,
    /// Rated calls and their score sum (thousandths), in all and per tier.
    rated: (i64, i64),
    rated_tier: BTreeMap<String, (i64, i64)>,
}

/// One (tier, model) of a `routing_quality` group.
#[derive(Debug, Default)]
struct TierModelAcc {
    calls: i64,
    spend: i64,
    rated: (i64, i64),
}

/// The `routing_quality` report (issue 20): how routing that learns does, per org (or
/// per org and project with `by=project`), over the `auto` calls in the filter: how many
/// went to the heavy tier (`strong_share`), how many of those the learner logged were
/// exploration draws (`explored_share`, from `route_features`), the outcome scores
/// (feedback joined to the calls as in `outcomes`) in all and per tier, and the savings
/// against sending every call to the `strongest_model` reference (as `routing`). JSON
/// adds the scores per tier and model (`by_tier_model`) and, for viewers whose scope
/// covers the whole org (admin or an org-wide read token), each org's promoted weights
/// versions, newest first, and its last learning run (`weights`; absent for a department
/// token). The weights history is the org's, not limited to the time range.
async fn routing_quality(
    st: &AppState,
    q: &AnalyticsQuery,
    who: &Principal,
    f: Filter,
) -> Result<Table, ApiError> {
    let by_project = match q.by.as_deref().unwrap_or("org") {
        "org" => false,
        "project" => true,
        o => {
            return Err(ApiError::bad_request(format!(
                "`by={o}` is unknown for routing_quality: use org or project"
            )));
        }
    };
    let db = &st.db;
    let (org, department) = scope(q, who)?;
    // The group of a call: its org, and its project with `by=project` ('' for none).
    let key = |org: String, project: Option<String>| {
        (
            org,
            if by_project {
                project.filter(|p| !p.is_empty())
            } else {
                None
            },
        )
    };
    let mut groups: BTreeMap<(String, Option<String>), QualityAcc> = BTreeMap::new();
    // Per group, tier and `provider/model`.
    let mut tier_model: BTreeMap<(String, Option<String>, String, String), TierModelAcc> =
        BTreeMap::new();
    // Calls, tiers and savings of the auto calls, from the rollups when they answer.
    let src = Source::pick(q, who, None)?;
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
    let what = match src.grain {
        Some(g) => format!("analytics routing_quality ({})", g.table),
        None => "analytics routing_quality".to_owned(),
    };
    for r in &db.fetch(&sql, &src.params, &what).await? {
        let k = key(get_str(r, 0)?, get_opt_str(r, 1)?);
        let tier = get_opt_str(r, 2)?.unwrap_or_default();
        let model = format!(
            "{}/{}",
            get_opt_str(r, 3)?.unwrap_or_default(),
            get_opt_str(r, 4)?.unwrap_or_default()
        );
        let (calls, spend) = (get_i64(r, 5)?, get_i64(r, 6)?);
        let g = groups.entry(k.clone()).or_default();
        g.calls += calls;
        if tier == "heavy" {
            g.strong += calls;
        }
        g.spend += spend;
        g.baseline += get_i64(r, 7)?;
        g.baseline_spend += get_i64(r, 8)?;
        let t = tier_model.entry((k.0, k.1, tier, model)).or_default();
        t.calls += calls;
        t.spend += spend;
    }
    // The learner's log of those calls: how many it holds and how many were explored.
    // Filtered on its own columns (org, project, start time: its (org, ts_start) index
    // serves them) when the query names nothing else, else on its records' filter.
    let direct = department.is_none()
        && q.group.is_none()
        && q.user.is_none()
        && q.key.is_none()
        && q.model.is_none()
        && q.provider.is_none()
        && q.tag.is_none();
    let (mut conds, mut params) = (Vec::new(), Vec::new());
    if !direct {
        params = f.params.clone();
        conds.push(format!(
            "(rf.org, rf.record_id) IN (SELECT org, id FROM usage_records{})",
            f.sql
        ));
    }
    if let Some(o) = &org {
        params.push(Param::Text(o.clone()));
        conds.push(format!("rf.org = ${}", params.len()));
    }
    if let (true, Some(p)) = (direct, &q.project) {
        params.push(Param::Text(p.clone()));
        conds.push(format!("rf.project = ${}", params.len()));
    }
    for (name, v, op) in [("from", &q.from, ">="), ("to", &q.to, "<")] {
        if let Some(v) = v {
            params.push(Param::I64(parse_bound(name, v)?));
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
    for r in &db
        .fetch(&sql, &params, "analytics routing_quality (route features)")
        .await?
    {
        let g = groups
            .entry(key(get_str(r, 0)?, get_opt_str(r, 1)?))
            .or_default();
        g.learning += get_i64(r, 2)?;
        g.explored += get_i64(r, 3)?;
        g.shadow += get_i64(r, 4)?;
    }
    // Outcome scores of the rated auto calls in the filter, per group, tier and model.
    let scores = reports::feedback_scores(db, org.as_deref(), "routing_quality").await?;
    let mut auto = f;
    auto.add("route_mode = $?", Param::Text("auto".into()));
    let cols = ["project", "route_tier", "provider", "model"];
    for (o, v, score) in rated_in_filter(db, &auto, &cols, &scores, "routing_quality").await? {
        let mut v = v.into_iter();
        let (project, tier, provider, model) = (
            v.next().flatten(),
            v.next().flatten().unwrap_or_default(),
            v.next().flatten().unwrap_or_default(),
            v.next().flatten().unwrap_or_default(),
        );
        let k = key(o, project);
        let g = groups.entry(k.clone()).or_default();
        g.rated.0 += 1;
        g.rated.1 += score;
        let e = g.rated_tier.entry(tier.clone()).or_default();
        e.0 += 1;
        e.1 += score;
        let t = tier_model
            .entry((k.0, k.1, tier, format!("{provider}/{model}")))
            .or_default();
        t.rated.0 += 1;
        t.rated.1 += score;
    }
    let org_names = unit_names(db, "org").await?;
    let project_names = if by_project {
        unit_names(db, "project").await?
    } else {
        BTreeMap::new()
    };
    let mut cols: Vec<&'static str> = vec!["org"];
    if by_project {
        cols.push("project");
    }
    cols.extend([
        "name",
        "auto_calls",
        "strong_calls",
        "strong_share",
        "learning_calls",
        "explored_calls",
        "explored_share",
        "shadow_calls",
        "rated_calls",
        "mean_score",
    ]);
    for (_, n, m) in QUALITY_TIERS {
        cols.extend([n, m]);
    }
    cols.extend([
        "spend_micros",
        "baseline_micros",
        "savings_micros",
        "savings_share",
    ]);
    let mut t = Table::new(&cols);
    let mut ordered: Vec<_> = groups.iter().collect();
    ordered.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then_with(|| a.0.cmp(b.0)));
    for ((o, p), g) in ordered {
        let mut row = vec![json!(o)];
        let name = if by_project {
            row.push(json!(p));
            display_name(&project_names, p.as_deref())
        } else {
            display_name(&org_names, Some(o))
        };
        let savings = g.baseline - g.baseline_spend;
        row.extend([
            json!(name),
            json!(g.calls),
            json!(g.strong),
            json!(share(g.strong, g.calls)),
            json!(g.learning),
            json!(g.explored),
            json!(share(g.explored, g.learning)),
            json!(g.shadow),
            json!(g.rated.0),
            mean_score(g.rated.0, g.rated.1),
        ]);
        for (tier, _, _) in QUALITY_TIERS {
            let (n, sum) = g.rated_tier.get(tier).copied().unwrap_or((0, 0));
            row.extend([json!(n), mean_score(n, sum)]);
        }
        row.extend([
            json!(g.spend),
            json!(g.baseline),
            json!(savings),
            json!(share(savings, g.baseline)),
        ]);
        t.rows.push(row);
    }
    let by_tier_model: Vec<Value> = tier_model
        .iter()
        .map(|((o, p, tier, model), a)| {
            let mut v = serde_json::Map::new();
            v.insert("org".into(), json!(o));
            if by_project {
                v.insert("project".into(), json!(p));
            }
            v.insert("tier".into(), json!(tier));
            v.insert("model".into(), json!(model));
            v.insert("calls".into(), json!(a.calls));
            v.insert("spend_micros".into(), json!(a.spend));
            v.insert("rated_calls".into(), json!(a.rated.0));
            v.insert("mean_score".into(), mean_score(a.rated.0, a.rated.1));
            Value::Object(v)
        })
        .collect();
    t.extra.insert(
        "by".into(),
        json!(if by_project { "project" } else { "org" }),
    );
    t.extra
        .insert("strongest_model".into(), json!(st.pricing.strongest));
    t.extra.insert("by_tier_model".into(), json!(by_tier_model));
    // The weights history is the org's: only for a scope that covers the whole org.
    let whole_org = matches!(
        who,
        Principal::Admin { .. }
            | Principal::Reader {
                department: None,
                ..
            }
    );
    if whole_org {
        let orgs: std::collections::BTreeSet<String> = match &org {
            Some(o) => [o.clone()].into(),
            None => {
                let mut s: std::collections::BTreeSet<String> =
                    groups.keys().map(|k| k.0.clone()).collect();
                for r in &db
                    .fetch(
                        "SELECT org FROM routing_weights UNION SELECT org FROM routing_learn_runs",
                        &[],
                        "analytics routing_quality (learning orgs)",
                    )
                    .await?
                {
                    s.insert(get_str(r, 0)?);
                }
                s
            }
        };
        let mut weights = Vec::new();
        for o in orgs {
            weights.push(weights_of(db, &o, display_name(&org_names, Some(&o))).await?);
        }
        t.extra.insert("weights".into(), json!(weights));
    }
    Ok(t)
}

/// An org's promoted weights versions, newest first (with the learning report's
/// estimates), and its last learning run, for `routing_quality`.
async fn weights_of(
    db: &crate::db::Db,
    org: &str,
    name: Option<String>,
) -> Result<Value, ApiError> {
    let report = |r: &Value, k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    let versions: Vec<Value> = crate::store::learning::weights_history(db, org)
        .await?
        .iter()
        .map(|w| {
            let r = &w["report"];
            json!({
                "version": w["version"],
                "project": w["project"],
                "created_ms": w["created_ms"],
                "active": w["active"],
                "outcomes": report(r, "outcomes"),
                "strong_outcomes": report(r, "strong_outcomes"),
                "new_apgr": report(r, "new_apgr"),
                "current_apgr": report(r, "current_apgr"),
                "length_apgr": report(r, "length_apgr"),
                "quality_weak": report(r, "quality_weak"),
                "quality_strong": report(r, "quality_strong"),
                "previous_version": report(r, "previous_version"),
                "reason": report(r, "reason"),
            })
        })
        .collect();
    let last_run = crate::store::learning::learn_runs(db, org, 1)
        .await?
        .first()
        .map(|r| {
            json!({
                "at_ms": r["at_ms"],
                "outcomes": r["outcomes"],
                "promoted": r["promoted"],
                "version": r["version"],
                "reason": report(&r["report"], "reason"),
            })
        });
    // The served versions from the store, not from the history (which is capped).
    let active = crate::store::learning::active_weights(db, org, "")
        .await?
        .map(|w| w.version);
    let project_versions = crate::store::learning::active_project_versions(db, org).await?;
    Ok(json!({
        "org": org,
        "name": name,
        "active_version": active,
        "project_versions": project_versions,
        "versions": versions,
        "last_run": last_run,
    }))
}

/// The rated calls (of `scores`) that are in the filter `f`: for each, its org, the
/// values of `cols` (SQL over `usage_records`) and its score. Looked up by (org, id), 400
/// calls a query, so the cost follows the rated calls, not every record.
async fn rated_in_filter(
    db: &crate::db::Db,
    f: &Filter,
    cols: &[&str],
    scores: &BTreeMap<(String, String), i64>,
    what: &str,
) -> Result<Vec<(String, Vec<Option<String>>, i64)>, ApiError> {
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

/// The mean score (0 to 1, four decimals) of `rated` calls whose scores (thousandths)
/// add up to `score_sum`; null when none was rated.
fn mean_score(rated: i64, score_sum: i64) -> Value {
    if rated > 0 {
        json!((score_sum as f64 / rated as f64 / 1000.0 * 1e4).round() / 1e4)
    } else {
        Value::Null
    }
}

/// The `budgets` report: every budget in the caller's scope (org, and for a department
/// token or `department=` filter the budgets of that department and of its projects,
/// groups and members) with its current window: limit, used, reserved, remaining and the
/// linear projection to the window's end. `from`/`to` do not apply (budgets are read in
/// their current window).
async fn budgets(st: &AppState, q: &AnalyticsQuery, who: &Principal) -> Result<Table, ApiError> {
    let (org, dept) = scope(q, who)?;
    let all = crate::store::budgets::list(&st.db, org.as_deref()).await?;
    // Department of each project / group / user, to keep a department's budgets.
    let dept_of = reports::departments_of_units(&st.db).await?;
    let level_dept = |l: &gaterouter::accounts::Level| -> Option<String> {
        let kind = l.kind.as_str();
        if kind == "department" {
            return Some(l.id.clone());
        }
        ["project", "group", "user"]
            .into_iter()
            .find(|k| *k == kind)
            .and_then(|k| dept_of.get(&(k, l.id.clone())).cloned().flatten())
    };
    let kept: Vec<_> = all
        .into_iter()
        .filter(|b| {
            dept.as_ref()
                .is_none_or(|d| level_dept(&b.level).as_ref() == Some(d))
        })
        .collect();
    let now = st.db.clock().now_u64();
    let mut conn = st
        .db
        .pool
        .acquire()
        .await
        .map_err(crate::db::dberr("acquiring a connection"))?;
    let sts = crate::store::budgets::statuses(&mut conn, &kept, now).await?;
    drop(conn);
    let mut names: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for k in ["org", "department", "project", "group", "user"] {
        names.insert(k, unit_names(&st.db, k).await?);
    }
    let mut t = Table::new(&[
        "id",
        "org",
        "level",
        "level_name",
        "metric",
        "period",
        "enforcement",
        "limit",
        "used",
        "reserved",
        "remaining",
        "projected",
        "used_share",
        "projected_share",
        "period_start_ms",
        "resets_at_ms",
    ]);
    for (s, b) in sts.iter().zip(&kept) {
        let kind = b.level.kind.as_str();
        let name = names
            .get(kind)
            .and_then(|m| m.get(&b.level.id))
            .cloned()
            .unwrap_or_else(|| b.level.id.clone());
        let projected = crate::store::budgets::projected(s, now);
        let lim = i64::try_from(s.limit).unwrap_or(i64::MAX);
        let sh = |x: u64| share(i64::try_from(x).unwrap_or(i64::MAX), lim);
        t.rows.push(vec![
            json!(b.id),
            json!(b.org_id),
            json!(b.level.to_string()),
            json!(format!("{kind} {name}")),
            json!(b.metric.as_str()),
            json!(b.period),
            json!(b.enforcement),
            json!(s.limit),
            json!(s.used),
            json!(s.reserved),
            json!(s.remaining),
            json!(projected),
            json!(sh(s.used)),
            json!(sh(projected)),
            json!(s.period_start_ms),
            json!(s.resets_at_ms),
        ]);
    }
    Ok(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v = [(10, 1), (20, 1), (30, 1), (40, 1), (100, 1)];
        assert_eq!(percentile(&v, 5, 50.0), Some(30));
        assert_eq!(percentile(&v, 5, 90.0), Some(100));
        assert_eq!(percentile(&v, 5, 20.0), Some(10));
        assert_eq!(percentile(&[], 0, 50.0), None);
    }

    #[test]
    fn scope_is_enforced() {
        let who = Principal::Reader {
            id: "t".into(),
            org: "acme".into(),
            department: Some("eng".into()),
        };
        let q = AnalyticsQuery {
            department: Some("sales".into()),
            ..Default::default()
        };
        assert_eq!(build_filter(&q, &who).unwrap_err().status, 403);
        let f = build_filter(&AnalyticsQuery::default(), &who).unwrap();
        assert_eq!(f.sql, " WHERE org = $1 AND department = $2");
        let q = AnalyticsQuery {
            tag: Some("team:a".into()),
            from: Some("2026-01-01".into()),
            ..Default::default()
        };
        let f = build_filter(&q, &Principal::Admin { id: "a".into() }).unwrap();
        assert_eq!(
            f.sql,
            " WHERE month >= $1 AND (org, id) IN (SELECT org, record_id FROM usage_tags WHERE k = $2 AND v = $3)"
        );
        let q = AnalyticsQuery {
            from: Some("2026-01-02".into()),
            to: Some("2026-02-01".into()),
            ..Default::default()
        };
        let f = build_filter(&q, &Principal::Admin { id: "a".into() }).unwrap();
        assert_eq!(
            f.sql,
            " WHERE ts_start >= $1 AND month >= $2 AND month < $3"
        );
    }

    #[test]
    fn quality_tiers_are_the_routers() {
        let tiers: Vec<&str> = QUALITY_TIERS.iter().map(|t| t.0).collect();
        assert_eq!(tiers, gaterouter::accounts::TIERS);
    }

    #[test]
    fn csv_escapes() {
        let mut t = Table::new(&["a", "b"]);
        t.rows.push(vec![json!("x,y"), json!(3)]);
        t.rows.push(vec![json!("q\""), Value::Null]);
        assert_eq!(t.csv(), "a,b\r\n\"x,y\",3\r\n\"q\"\"\",\r\n");
    }
}
