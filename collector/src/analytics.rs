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
//! This module checks the request and turns it into a [`Selection`], then shapes the
//! rows the store's report queries return (`crate::store::analytics`: the rollup or raw
//! source, the SQL) into [`Table`]s: shares, per-member figures, display names,
//! percentiles, outcome scores.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::rollup::LatencyMetric;
use crate::state::AppState;
use crate::store::analytics::{self as store, Bucket, Column, Grouping, Selection};
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
pub const DIMENSIONS: [&str; store::DIMENSIONS.len()] = {
    let mut out = [""; store::DIMENSIONS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = store::DIMENSIONS[i].0;
        i += 1;
    }
    out
};

/// The dimension named `by`.
pub fn dimension(by: &str) -> Result<Column, ApiError> {
    Column::of(by).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`by={by}` is unknown: use one of {}",
            DIMENSIONS.join(", ")
        ))
    })
}

/// The `bucket=` of a query.
fn bucket(q: &AnalyticsQuery) -> Result<Option<Bucket>, ApiError> {
    match q.bucket.as_deref() {
        None | Some("") => Ok(None),
        Some(b) => Bucket::parse(b).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("`bucket={b}` is unknown: use hour, day or month"))
        }),
    }
}

/// (start ms, label) of a bucket value as the store returns it (`yyyymm` for months,
/// the start's Unix ms otherwise): what the series tables show.
fn bucket_label(b: Bucket, v: i64) -> (i64, String) {
    match b {
        Bucket::Month => (month_start_ms(v), format!("{:04}-{:02}", v / 100, v % 100)),
        Bucket::Day => (v, iso(v)[..10].to_owned()),
        Bucket::Hour => (v, iso(v)),
    }
}

fn parse_bound(name: &str, v: &str) -> Result<i64, ApiError> {
    parse_time(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{name}={v}` is not Unix ms, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
        ))
    })
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

/// The calls a query reads: its filters checked, within the caller's scope.
pub fn selection(q: &AnalyticsQuery, who: &Principal) -> Result<Selection, ApiError> {
    let (org, department) = scope(q, who)?;
    let bound = |name: &str, v: &Option<String>| v.as_deref().map(|v| parse_bound(name, v));
    let tag = q
        .tag
        .as_ref()
        .map(|t| {
            t.split_once(':')
                .or_else(|| t.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ApiError::bad_request(format!("`tag={t}` must be key:value")))
        })
        .transpose()?;
    Ok(Selection {
        from: bound("from", &q.from).transpose()?,
        to: bound("to", &q.to).transpose()?,
        org,
        department,
        project: q.project.clone(),
        group: q.group.clone(),
        user: q.user.clone(),
        key: q.key.clone(),
        model: q.model.clone(),
        provider: q.provider.clone(),
        tag,
    })
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

/// The active keys in the selection's scope (org and department, and the key bindings
/// it filters on: project, group, member), each with the end of its last call ever
/// (from the monthly rollups), in id order.
async fn idle_keys(
    db: &crate::db::Db,
    s: &Selection,
) -> Result<Vec<(String, Option<i64>)>, ApiError> {
    let keys = reports::active_keys(
        db,
        &reports::KeyFilter {
            org: s.org.as_deref(),
            department: s.department.as_deref(),
            project: s.project.as_deref(),
            group: s.group.as_deref(),
            user: s.user.as_deref(),
        },
    )
    .await?;
    let last = if keys.is_empty() {
        BTreeMap::new()
    } else {
        reports::keys_last_used(db, s.org.as_deref()).await?
    };
    Ok(keys
        .into_iter()
        .map(|(id, org)| {
            let l = last.get(&(org, id.clone())).copied();
            (id, l)
        })
        .collect())
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

/// The `latency` report: per group (`by=`, default `model`), calls, errors and the
/// whole-call latency percentiles, and for streamed calls the time-to-first-token
/// percentiles. Times are read at three significant digits
/// ([`crate::rollup::latency_bucket`]): exact below one second, at most 1 % above. Whole
/// months with filters on org, department, provider or model read the monthly
/// histograms (`usage_latency_month`); any other range or filter reads the raw records
/// and buckets them the same way, so both answer alike.
async fn latency(st: &AppState, q: &AnalyticsQuery, s: &Selection) -> Result<Table, ApiError> {
    let by = dimension(q.by.as_deref().unwrap_or("model"))?;
    let db = &st.db;
    let mut per: BTreeMap<Option<String>, [LatencyAcc; 2]> = BTreeMap::new();
    for r in store::latency(db, s, by).await? {
        let i = usize::from(r.metric == LatencyMetric::Ttft);
        per.entry(r.group).or_default()[i].add(r.le_ms, r.calls, r.errors);
    }
    let names = unit_names(db, by.name()).await?;
    let mut t = Table::new(&[
        by.name(),
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
    t.extra.insert("by".into(), json!(by.name()));
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

/// Compute one report.
pub async fn run_report(
    st: &AppState,
    name: &str,
    q: &AnalyticsQuery,
    who: &Principal,
) -> Result<Table, ApiError> {
    let s = selection(q, who)?;
    let bucket = bucket(q)?;
    let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 10_000));
    let db = &st.db;
    match name {
        "summary" => {
            let m = store::summary(db, &s).await?;
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
            let c = m.sums;
            let per_user = match m.active_users {
                0 => Value::Null,
                n => json!(c.spend_micros / n),
            };
            t.rows.push(vec![
                json!(c.calls),
                json!(c.errors),
                json!(c.prompt_tokens),
                json!(c.completion_tokens),
                json!(c.total_tokens),
                json!(c.spend_micros),
                json!(m.client_cost_micros),
                json!(m.cost_mismatches),
                json!(m.active_users),
                json!(m.active_keys),
                per_user,
                json!(m.denials),
            ]);
            Ok(t)
        }
        "timeseries" => {
            let b = bucket.unwrap_or(Bucket::Day);
            let dim = q.by.as_deref().map(dimension).transpose()?;
            let mut cols = vec!["bucket_start_ms", "bucket"];
            if dim.is_some() {
                cols.push("group");
            }
            cols.extend(["calls", "total_tokens", "spend_micros", "errors", "denials"]);
            let mut t = Table::new(&cols);
            for r in store::timeseries(db, &s, b, dim).await? {
                let (start, label) = bucket_label(b, r.bucket);
                let mut row = vec![json!(start), json!(label)];
                if dim.is_some() {
                    row.push(json!(r.group));
                }
                row.extend(r.sums.iter().map(|x| json!(x)));
                t.rows.push(row);
            }
            Ok(t)
        }
        "breakdown" | "per-capita" => {
            let by = dimension(q.by.as_deref().unwrap_or("department"))?;
            let rows = store::breakdown(db, &s, bucket, by, limit).await?;
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
            // Spend per bucket (0 when not bucketed), for each group's share.
            let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
            for r in &rows {
                *totals.entry(r.bucket.unwrap_or(0)).or_default() += r.sums[3];
            }
            let names = unit_names(db, by.name()).await?;
            let members = reports::unit_members(db, by.name()).await?;
            let mut t = Table::new(&cols);
            for r in rows {
                let n = r.sums;
                let total = totals.get(&r.bucket.unwrap_or(0)).copied().unwrap_or(0);
                let mut row = vec![];
                if let (Some(b), Some(v)) = (bucket, r.bucket) {
                    let (start, label) = bucket_label(b, v);
                    row.extend([json!(start), json!(label)]);
                }
                row.push(json!(r.group));
                row.extend(n[..5].iter().map(|x| json!(x)));
                row.push(if n[4] > 0 {
                    json!(n[3] / n[4])
                } else {
                    Value::Null
                });
                row.push(json!(share(n[3], total)));
                row.push(json!(display_name(&names, r.group.as_deref())));
                row.push(json!(n[5]));
                let m = members.as_ref().map(|m| {
                    r.group
                        .as_deref()
                        .and_then(|k| m.get(k))
                        .copied()
                        .unwrap_or(0)
                });
                row.push(json!(m));
                row.push(match m {
                    Some(m) if m > 0 => json!(n[3] / m),
                    _ => Value::Null,
                });
                t.rows.push(row);
            }
            t.extra.insert("by".into(), json!(by.name()));
            Ok(t)
        }
        "users" => {
            let names = unit_names(db, "user").await?;
            let mut t = Table::new(&[
                "rank",
                "user",
                "calls",
                "total_tokens",
                "spend_micros",
                "name",
            ]);
            for (i, (u, [calls, tokens, spend])) in
                store::users(db, &s, limit).await?.into_iter().enumerate()
            {
                t.rows.push(vec![
                    json!(i + 1),
                    json!(u),
                    json!(calls),
                    json!(tokens),
                    json!(spend),
                    json!(display_name(&names, u.as_deref())),
                ]);
            }
            Ok(t)
        }
        "models" => {
            let rows = store::models(db, &s).await?;
            let (tc, tt, ts) = rows.iter().fold((0, 0, 0), |a, r| {
                (a.0 + r.sums[0], a.1 + r.sums[3], a.2 + r.sums[4])
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
            for r in rows {
                let n = r.sums;
                let mut row = vec![json!(r.provider), json!(r.model)];
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
            for r in store::keys(db, &s, limit).await? {
                let [calls, errors, spend, tokens, denials] = r.sums;
                seen.insert(r.key.clone().unwrap_or_default());
                t.rows.push(vec![
                    json!(r.key),
                    json!(r.last_end_ms),
                    json!(iso(r.last_end_ms)),
                    json!(calls),
                    json!(errors),
                    json!(spend),
                    json!(tokens),
                    json!(display_name(&names, r.key.as_deref())),
                    json!(denials),
                    json!(false),
                ]);
            }
            // Idle keys: active keys in scope without a call in the range, with when
            // they were last used at all (or null), after the ranked ones.
            if s.model.is_none() && s.provider.is_none() && s.tag.is_none() && s.key.is_none() {
                for (k, last) in idle_keys(db, &s).await? {
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
            let rows = store::tiers(db, &s).await?;
            let total_calls: i64 = rows.iter().map(|r| r.1[0]).sum();
            let mut t = Table::new(&[
                "tier",
                "calls",
                "call_share",
                "spend_micros",
                "baseline_micros",
                "savings_micros",
            ]);
            let (mut base, mut spent_priced, mut spend) = (0i64, 0i64, 0i64);
            for (tier, [calls, sp, b, spb]) in rows {
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
        "latency" => latency(st, q, &s).await,
        "errors" => {
            let mut t = Table::new(&[
                "status",
                "kind",
                "provider",
                "model",
                "calls",
                "last_seen_ms",
                "last_seen",
            ]);
            for r in store::errors(db, &s, limit).await? {
                let kind = match r.status.as_str() {
                    "denied" => "denied",
                    "cancelled" => "cancelled",
                    _ => "error",
                };
                t.rows.push(vec![
                    json!(r.status),
                    json!(kind),
                    json!(r.provider),
                    json!(r.model),
                    json!(r.calls),
                    json!(r.last_start_ms),
                    json!(iso(r.last_start_ms)),
                ]);
            }
            Ok(t)
        }
        "denials" => {
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
            for r in store::denials(db, &s, limit).await? {
                t.rows.push(vec![
                    json!(r.department),
                    json!(display_name(&dn, r.department.as_deref())),
                    json!(r.user),
                    json!(display_name(&un, r.user.as_deref())),
                    json!(r.key),
                    json!(r.provider),
                    json!(r.model),
                    json!(r.denials),
                    json!(r.last_start_ms),
                    json!(iso(r.last_start_ms)),
                ]);
            }
            Ok(t)
        }
        "budgets" => budgets(st, &s).await,
        "outcomes" => outcomes(st, q, &s, limit).await,
        "routing_quality" => routing_quality(st, q, who, &s).await,
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
    s: &Selection,
    limit: i64,
) -> Result<Table, ApiError> {
    let by = q.by.as_deref().unwrap_or("model");
    let grouping = match by.strip_prefix("tag:") {
        Some("") => {
            return Err(ApiError::bad_request(
                "`by=tag:` needs a tag key, e.g. by=tag:scenario",
            ));
        }
        Some(k) => Grouping::Tag(k),
        None => Grouping::Column(dimension(by)?),
    };
    let db = &st.db;
    let totals = store::group_totals(db, s, grouping).await?;
    // Rated calls and their scores: the feedback's mean score per rated call, then each
    // rated call's group, looked up by (org, id) and kept when the call is in the filter.
    let scores = reports::feedback_scores(db, s.org.as_deref(), "outcomes").await?;
    let mut rated: BTreeMap<Option<String>, (i64, i64)> = BTreeMap::new();
    for (group, score) in store::rated_groups(db, s, grouping, &scores).await? {
        let e = rated.entry(group).or_default();
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
    s: &Selection,
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
    for (c, [calls, spend, baseline, baseline_spend]) in store::auto_calls(db, s).await? {
        let k = key(c.org, c.project);
        let g = groups.entry(k.clone()).or_default();
        g.calls += calls;
        if c.tier == "heavy" {
            g.strong += calls;
        }
        g.spend += spend;
        g.baseline += baseline;
        g.baseline_spend += baseline_spend;
        let model = format!("{}/{}", c.provider, c.model);
        let t = tier_model.entry((k.0, k.1, c.tier, model)).or_default();
        t.calls += calls;
        t.spend += spend;
    }
    // The learner's log of those calls: how many it holds and how many were explored.
    for (org, project, [logged, explored, shadow]) in store::learner_log(db, s).await? {
        let g = groups.entry(key(org, project)).or_default();
        g.learning += logged;
        g.explored += explored;
        g.shadow += shadow;
    }
    // Outcome scores of the rated auto calls in the filter, per group, tier and model.
    let scores = reports::feedback_scores(db, s.org.as_deref(), "routing_quality").await?;
    for (c, score) in store::rated_auto_calls(db, s, &scores).await? {
        let k = key(c.org, c.project);
        let g = groups.entry(k.clone()).or_default();
        g.rated.0 += 1;
        g.rated.1 += score;
        let e = g.rated_tier.entry(c.tier.clone()).or_default();
        e.0 += 1;
        e.1 += score;
        let t = tier_model
            .entry((k.0, k.1, c.tier, format!("{}/{}", c.provider, c.model)))
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
        let orgs: std::collections::BTreeSet<String> = match &s.org {
            Some(o) => [o.clone()].into(),
            None => {
                let mut all: std::collections::BTreeSet<String> =
                    groups.keys().map(|k| k.0.clone()).collect();
                all.extend(crate::store::learning::orgs_with_weights_or_runs(db).await?);
                all
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
                "success_models": report(r, "success_models"),
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
async fn budgets(st: &AppState, s: &Selection) -> Result<Table, ApiError> {
    let (org, dept) = (&s.org, &s.department);
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
    let sts = crate::store::budgets::statuses_now(&st.db, &kept, now).await?;
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
        assert_eq!(selection(&q, &who).unwrap_err().status, 403);
        let q = AnalyticsQuery {
            org: Some("other".into()),
            ..Default::default()
        };
        assert_eq!(selection(&q, &who).unwrap_err().status, 403);
        let s = selection(&AnalyticsQuery::default(), &who).unwrap();
        assert_eq!(
            (s.org.as_deref(), s.department.as_deref()),
            (Some("acme"), Some("eng"))
        );
        let q = AnalyticsQuery {
            tag: Some("team=a".into()),
            from: Some("2026-01-01".into()),
            ..Default::default()
        };
        let s = selection(&q, &Principal::Admin { id: "a".into() }).unwrap();
        assert_eq!(s.tag, Some(("team".into(), "a".into())));
        assert_eq!(s.from, parse_time("2026-01-01"));
        assert_eq!((s.org, s.department), (None, None));
        for bad in [
            AnalyticsQuery {
                tag: Some("team".into()),
                ..Default::default()
            },
            AnalyticsQuery {
                to: Some("yesterday".into()),
                ..Default::default()
            },
        ] {
            let e = selection(&bad, &Principal::Admin { id: "a".into() }).unwrap_err();
            assert_eq!(e.status, 400);
        }
        assert_eq!(dimension("nope").unwrap_err().status, 400);
        assert_eq!(DIMENSIONS[4], "user");
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
