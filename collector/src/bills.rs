//! Monthly statements (chargeback): `GET /v1/admin/bills?org=ORG&month=YYYY-MM
//! [&department=D | &project=P][&format=json|csv|html]`.
//!
//! A bill covers the stored usage records of one org (or one of its departments or
//! projects) whose call started in the UTC calendar month. It states the totals (calls,
//! errors, tokens, spend), spend by model, by member, by department and by project (the
//! breakdowns broader than the bill are left out), and budget versus actual for the
//! month: every monthly USD budget at the bill's level and below (for a department:
//! its projects, groups, members and keys; for a project: its keys), with its limit, the
//! actual spend of the month counted as ingest counts it (by the record's scope fields
//! and its member's groups) and the percentage used.
//!
//! Money is exact: sums are integer micro-dollars (`*_micros`) and the dollar texts
//! (`*_usd`) are those integers written as decimals, never floats. Every breakdown sums
//! to the total to the micro-dollar.
//!
//! CSV is one long table (RFC 4180, CRLF) with the columns of [`CSV_COLUMNS`]; the
//! `section` column says what a row is:
//! - `statement`: `item` is `org`, `scope`, `month`, `period_start`, `period_end` or
//!   `generated_at`, and `note` its value;
//! - `total`: `item` is the scope (`department:eng`), the totals;
//! - `model` (`provider/model`), `member`, `department`, `project`: one row per value,
//!   `item` empty for records without one;
//! - `budget`: `item` is the budget's level, `spend_*` the month's actual, `limit_*`,
//!   `percent_used` (two decimals, truncated) and `enforcement`.
//!
//! HTML is one standalone printable page (inline CSS with `@media print`, no script,
//! no external asset); every value from the database is HTML-escaped.
//!
//! Access: an admin token, or a read token of the org (a department-scoped read token
//! only for its own department's bill or the bill of a project of that department).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gaterouter::accounts::{LevelKind, Metric, Period};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::bills;
use crate::store::budgets::BudgetRow;
use crate::time::{iso, month_start_ms};

/// Query of `GET /v1/admin/bills`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BillQuery {
    /// Org id.
    pub org: String,
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// Bill only this department.
    pub department: Option<String>,
    /// Bill only this project.
    pub project: Option<String>,
    /// `json` (default), `csv` or `html`.
    pub format: Option<String>,
}

/// Totals of a set of records: the stored sums (flat in JSON) and the spend as dollars.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Calls, errors, tokens and spend in micro-dollars.
    #[serde(flatten)]
    pub sums: bills::Sums,
    /// Spend in dollars, exact decimal text.
    pub spend_usd: String,
}

/// One row of a breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The model (`provider/model`), member, department or project; null for records
    /// without one.
    pub item: Option<String>,
    /// Calls.
    pub calls: i64,
    /// All tokens.
    pub total_tokens: i64,
    /// Spend in micro-dollars.
    pub spend_micros: i64,
    /// Spend in dollars, exact decimal text.
    pub spend_usd: String,
}

/// Budget versus actual for one monthly USD budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetLine {
    /// Budget id.
    pub id: String,
    /// Level it is attached to (`department:eng`).
    pub level: String,
    /// `hard` or `soft`.
    pub enforcement: String,
    /// Limit in micro-dollars.
    pub limit_micros: i64,
    /// Limit in dollars.
    pub limit_usd: String,
    /// The month's spend under the level, micro-dollars.
    pub actual_micros: i64,
    /// The month's spend under the level, dollars.
    pub actual_usd: String,
    /// `actual / limit` in percent, two decimals (truncated); null for a zero limit.
    pub percent_used: Option<String>,
}

/// A monthly statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    /// Org id.
    pub org: String,
    /// Org display name.
    pub org_name: String,
    /// What is billed: `org:acme`, `department:eng` or `project:search`.
    pub scope: String,
    /// `YYYY-MM`.
    pub month: String,
    /// First instant of the month (Unix ms, inclusive).
    pub period_start_ms: i64,
    /// First instant of the next month (Unix ms, exclusive).
    pub period_end_ms: i64,
    /// `period_start_ms` as ISO-8601.
    pub period_start: String,
    /// `period_end_ms` as ISO-8601.
    pub period_end: String,
    /// When the bill was computed (Unix ms).
    pub generated_at_ms: i64,
    /// `generated_at_ms` as ISO-8601.
    pub generated_at: String,
    /// Totals.
    pub totals: Totals,
    /// Spend by `provider/model`, largest first.
    pub by_model: Vec<Line>,
    /// Spend by member, largest first.
    pub by_member: Vec<Line>,
    /// Spend by department (org bills only).
    pub by_department: Vec<Line>,
    /// Spend by project (org and department bills).
    pub by_project: Vec<Line>,
    /// Budget versus actual.
    pub budgets: Vec<BudgetLine>,
}

/// Columns of the CSV form, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "section",
    "item",
    "calls",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "spend_micros",
    "spend_usd",
    "limit_micros",
    "limit_usd",
    "percent_used",
    "enforcement",
    "note",
];

/// Micro-dollars as exact decimal dollars with at least two decimals
/// (`0.00`, `12.50`, `0.000123`, `-1.25`).
pub fn dollars(micros: i64) -> String {
    gaterouter::money::Micros(micros).trimmed()
}

/// `actual / limit` in percent with two decimals, truncated; `None` for a zero limit.
pub fn percent(actual: i64, limit: i64) -> Option<String> {
    if limit <= 0 {
        return None;
    }
    let bp = i128::from(actual.max(0)) * 10_000 / i128::from(limit);
    Some(format!("{}.{:02}", bp / 100, bp % 100))
}

/// Parse `YYYY-MM` to `yyyymm`.
pub fn parse_month(s: &str) -> Result<i64, String> {
    let bad = || format!("month `{s}` is not YYYY-MM (e.g. 2026-01)");
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let y: i64 = y.parse().map_err(|_| bad())?;
    let m: i64 = m.parse().map_err(|_| bad())?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) {
        return Err(bad());
    }
    Ok(y * 100 + m)
}

fn next_month(yyyymm: i64) -> i64 {
    if yyyymm % 100 == 12 {
        (yyyymm / 100 + 1) * 100 + 1
    } else {
        yyyymm + 1
    }
}

/// Check the caller may read this bill.
fn authorize(
    who: &Principal,
    q: &BillQuery,
    project_department: Option<&str>,
) -> Result<(), ApiError> {
    let Principal::Reader {
        org, department, ..
    } = who
    else {
        return Ok(());
    };
    if org != &q.org {
        return Err(ApiError::forbidden(format!(
            "this token may only read org `{org}`"
        )));
    }
    if let Some(d) = department {
        let ok = match (&q.department, &q.project) {
            (Some(qd), _) => qd == d,
            (None, Some(_)) => project_department == Some(d.as_str()),
            (None, None) => false,
        };
        if !ok {
            return Err(ApiError::forbidden(format!(
                "this token may only read bills of department `{d}` (pass department={d}) or of its projects"
            )));
        }
    }
    Ok(())
}

/// The department of a department (itself) or project in `org`, or 404.
async fn unit_department(
    st: &AppState,
    unit: bills::Unit,
    what: &str,
    id: &str,
    org: &str,
) -> Result<Option<String>, ApiError> {
    match bills::unit_place(&st.db, unit, id).await? {
        Some((o, dept)) if o == org => Ok(dept),
        _ => Err(ApiError::not_found(format!(
            "{what} `{id}` is not in org `{org}`; check the id (gaterouter admin export --org {org})"
        ))),
    }
}

/// Compute a bill (the caller is authenticated as `who`).
pub async fn compute(
    st: &AppState,
    q: &BillQuery,
    who: &Principal,
    now_ms: i64,
) -> Result<Bill, ApiError> {
    if q.department.is_some() && q.project.is_some() {
        return Err(ApiError::bad_request(
            "pass department or project, not both: a bill covers one org, one department or one project",
        ));
    }
    let month = parse_month(&q.month).map_err(ApiError::bad_request)?;
    if let Principal::Reader { org, .. } = who {
        if org != &q.org {
            return Err(ApiError::forbidden(format!(
                "this token may only read org `{org}`"
            )));
        }
    }
    let Some(org_name) = bills::org_name(&st.db, &q.org).await? else {
        return Err(ApiError::not_found(format!(
            "org `{}` does not exist; check --org",
            q.org
        )));
    };
    let mut project_department = None;
    if let Some(d) = &q.department {
        unit_department(st, bills::Unit::Department, "department", d, &q.org).await?;
    }
    if let Some(p) = &q.project {
        project_department =
            unit_department(st, bills::Unit::Project, "project", p, &q.org).await?;
    }
    authorize(who, q, project_department.as_deref())?;

    let (scope, scope_kind) = match (&q.department, &q.project) {
        (Some(d), _) => (format!("department:{d}"), LevelKind::Department),
        (None, Some(p)) => (format!("project:{p}"), LevelKind::Project),
        (None, None) => (format!("org:{}", q.org), LevelKind::Org),
    };
    let usage = bills::Scope {
        org: &q.org,
        month,
        department: q.department.as_deref(),
        project: q.project.as_deref(),
    };
    let sums = bills::totals(&st.db, &usage).await?;
    let totals = Totals {
        sums,
        spend_usd: dollars(sums.spend_micros),
    };
    let breakdown = |cols: &'static str| async move {
        let mut out: Vec<Line> = bills::breakdown(&st.db, &usage, cols)
            .await?
            .into_iter()
            .map(|g| Line {
                item: if g.parts.iter().all(Option::is_none) {
                    None
                } else {
                    Some(
                        g.parts
                            .into_iter()
                            .map(Option::unwrap_or_default)
                            .collect::<Vec<_>>()
                            .join("/"),
                    )
                },
                calls: g.calls,
                total_tokens: g.total_tokens,
                spend_micros: g.spend_micros,
                spend_usd: dollars(g.spend_micros),
            })
            .collect();
        out.sort_by(|a, b| {
            b.spend_micros
                .cmp(&a.spend_micros)
                .then_with(|| a.item.cmp(&b.item))
        });
        Ok::<_, ApiError>(out)
    };
    let by_model = breakdown("provider, model").await?;
    let by_member = breakdown("usr").await?;
    let by_department = if scope_kind == LevelKind::Org {
        breakdown("department").await?
    } else {
        Vec::new()
    };
    let by_project = if scope_kind == LevelKind::Project {
        Vec::new()
    } else {
        breakdown("project").await?
    };
    let budgets = budget_lines(st, q, scope_kind, month).await?;
    let start = month_start_ms(month);
    let end = month_start_ms(next_month(month));
    Ok(Bill {
        org: q.org.clone(),
        org_name,
        scope,
        month: format!("{:04}-{:02}", month / 100, month % 100),
        period_start_ms: start,
        period_end_ms: end,
        period_start: iso(start),
        period_end: iso(end),
        generated_at_ms: now_ms,
        generated_at: iso(now_ms),
        totals,
        by_model,
        by_member,
        by_department,
        by_project,
        budgets,
    })
}

/// The monthly USD budgets at the bill's level and below, with the month's actual.
async fn budget_lines(
    st: &AppState,
    q: &BillQuery,
    scope: LevelKind,
    month: i64,
) -> Result<Vec<BudgetLine>, ApiError> {
    let all = crate::store::budgets::list(&st.db, Some(&q.org)).await?;
    let monthly: Vec<BudgetRow> = all
        .into_iter()
        .filter(|b| b.metric == Metric::Usd && b.period == Period::Month)
        .collect();
    // Levels under the bill's scope.
    let wanted: Option<std::collections::HashSet<String>> = match (scope, &q.department, &q.project)
    {
        (LevelKind::Department, Some(d), _) => {
            let mut s = std::collections::HashSet::from([format!("department:{d}")]);
            for (kind, ids) in [
                (
                    "project",
                    bills::ids_where(&st.db, "projects", "department_id", d).await?,
                ),
                (
                    "group",
                    bills::ids_where(&st.db, "user_groups", "department_id", d).await?,
                ),
                (
                    "user",
                    bills::ids_where(&st.db, "users", "department_id", d).await?,
                ),
                (
                    "key",
                    bills::ids_where(&st.db, "api_keys", "department_id", d).await?,
                ),
            ] {
                s.extend(ids.into_iter().map(|i| format!("{kind}:{i}")));
            }
            // Keys bound to a member of the department but not to a department.
            s.extend(
                bills::member_keys_of_department(&st.db, d)
                    .await?
                    .into_iter()
                    .map(|k| format!("key:{k}")),
            );
            Some(s)
        }
        (LevelKind::Project, _, Some(p)) => {
            let mut s = std::collections::HashSet::from([format!("project:{p}")]);
            s.extend(
                bills::ids_where(&st.db, "api_keys", "project_id", p)
                    .await?
                    .into_iter()
                    .map(|i| format!("key:{i}")),
            );
            Some(s)
        }
        _ => None,
    };
    let mut out = Vec::new();
    for b in monthly.into_iter().filter(|b| {
        wanted
            .as_ref()
            .is_none_or(|s| s.contains(&b.level.to_string()))
    }) {
        let actual = bills::level_spend(&st.db, &q.org, month, &b.level).await?;
        let limit = i64::try_from(b.limit).unwrap_or(i64::MAX);
        out.push(BudgetLine {
            id: b.id.clone(),
            level: b.level.to_string(),
            enforcement: b.enforcement.as_str().to_owned(),
            limit_micros: limit,
            limit_usd: dollars(limit),
            actual_micros: actual,
            actual_usd: dollars(actual),
            percent_used: percent(actual, limit),
        });
    }
    let rank = |l: &str| {
        ["org:", "department:", "project:", "group:", "user:", "key:"]
            .iter()
            .position(|p| l.starts_with(p))
            .unwrap_or(9)
    };
    out.sort_by(|a, b| {
        rank(&a.level)
            .cmp(&rank(&b.level))
            .then_with(|| a.level.cmp(&b.level))
    });
    Ok(out)
}

impl Bill {
    /// The CSV form (one long table; see the module docs).
    pub fn csv(&self) -> String {
        let mut rows: Vec<BTreeMap<&str, String>> = Vec::new();
        let row = |pairs: &[(&'static str, String)]| {
            pairs.iter().cloned().collect::<BTreeMap<&str, String>>()
        };
        for (item, note) in [
            ("org", &self.org),
            ("scope", &self.scope),
            ("month", &self.month),
            ("period_start", &self.period_start),
            ("period_end", &self.period_end),
            ("generated_at", &self.generated_at),
        ] {
            rows.push(row(&[
                ("section", "statement".into()),
                ("item", item.into()),
                ("note", note.clone()),
            ]));
        }
        let tt = &self.totals;
        rows.push(row(&[
            ("section", "total".into()),
            ("item", self.scope.clone()),
            ("calls", tt.sums.calls.to_string()),
            ("errors", tt.sums.errors.to_string()),
            ("prompt_tokens", tt.sums.prompt_tokens.to_string()),
            ("completion_tokens", tt.sums.completion_tokens.to_string()),
            ("total_tokens", tt.sums.total_tokens.to_string()),
            ("spend_micros", tt.sums.spend_micros.to_string()),
            ("spend_usd", tt.spend_usd.clone()),
        ]));
        for (section, lines) in [
            ("model", &self.by_model),
            ("member", &self.by_member),
            ("department", &self.by_department),
            ("project", &self.by_project),
        ] {
            for l in lines {
                rows.push(row(&[
                    ("section", section.into()),
                    ("item", l.item.clone().unwrap_or_default()),
                    ("calls", l.calls.to_string()),
                    ("total_tokens", l.total_tokens.to_string()),
                    ("spend_micros", l.spend_micros.to_string()),
                    ("spend_usd", l.spend_usd.clone()),
                ]));
            }
        }
        for b in &self.budgets {
            rows.push(row(&[
                ("section", "budget".into()),
                ("item", b.level.clone()),
                ("spend_micros", b.actual_micros.to_string()),
                ("spend_usd", b.actual_usd.clone()),
                ("limit_micros", b.limit_micros.to_string()),
                ("limit_usd", b.limit_usd.clone()),
                ("percent_used", b.percent_used.clone().unwrap_or_default()),
                ("enforcement", b.enforcement.clone()),
                ("note", b.id.clone()),
            ]));
        }
        crate::logsafe::csv_table(
            CSV_COLUMNS,
            rows.iter().map(|r| {
                CSV_COLUMNS
                    .iter()
                    .map(|c| r.get(c).map_or("", String::as_str))
            }),
        )
    }

    /// The printable HTML page (standalone; see the module docs).
    pub fn html(&self) -> String {
        let e = escape;
        let mut h = String::new();
        let title = format!(
            "{} — {} statement, {}",
            self.org_name, self.scope, self.month
        );
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\n{CSS}\n</style></head><body>\n<header><h1>{}</h1>\
             <p class=\"meta\">Org <b>{}</b> ({}) · scope <b>{}</b> · period {} to {} (UTC, end exclusive) · generated {}</p></header>\n",
            e(&title),
            e(&title),
            e(&self.org_name),
            e(&self.org),
            e(&self.scope),
            e(&self.period_start),
            e(&self.period_end),
            e(&self.generated_at)
        );
        let tt = &self.totals;
        let _ = writeln!(
            h,
            "<section><h2>Totals</h2><table><tr><th class=\"n\">Spend</th><th class=\"n\">Calls</th><th class=\"n\">Errors</th><th class=\"n\">Prompt tokens</th><th class=\"n\">Completion tokens</th><th class=\"n\">Total tokens</th></tr>\
             <tr><td class=\"n\">${}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table></section>",
            e(&tt.spend_usd),
            tt.sums.calls,
            tt.sums.errors,
            tt.sums.prompt_tokens,
            tt.sums.completion_tokens,
            tt.sums.total_tokens
        );
        for (title, what, lines) in [
            ("Spend by model", "Model", &self.by_model),
            ("Spend by member", "Member", &self.by_member),
            ("Spend by department", "Department", &self.by_department),
            ("Spend by project", "Project", &self.by_project),
        ] {
            if lines.is_empty() && (what == "Department" || what == "Project") {
                continue;
            }
            let _ = write!(
                h,
                "<section><h2>{title}</h2><table><tr><th>{what}</th><th class=\"n\">Calls</th><th class=\"n\">Tokens</th><th class=\"n\">Spend</th></tr>"
            );
            for l in lines {
                let item = l
                    .item
                    .as_deref()
                    .map_or_else(|| "<i>(none)</i>".to_owned(), e);
                let _ = write!(
                    h,
                    "<tr><td>{item}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">${}</td></tr>",
                    l.calls,
                    l.total_tokens,
                    e(&l.spend_usd)
                );
            }
            let _ = writeln!(
                h,
                "<tr class=\"sum\"><td>Total</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">${}</td></tr></table></section>",
                tt.sums.calls,
                tt.sums.total_tokens,
                e(&tt.spend_usd)
            );
        }
        h.push_str("<section><h2>Budget versus actual (monthly USD budgets)</h2>");
        if self.budgets.is_empty() {
            h.push_str("<p>No monthly USD budget at this level or below.</p>");
        } else {
            h.push_str("<table><tr><th>Level</th><th>Enforcement</th><th class=\"n\">Limit</th><th class=\"n\">Actual</th><th class=\"n\">Used</th></tr>");
            for b in &self.budgets {
                let pct = b
                    .percent_used
                    .as_deref()
                    .map_or_else(|| "—".to_owned(), |p| format!("{}%", e(p)));
                let over = if b.actual_micros > b.limit_micros {
                    " class=\"over\""
                } else {
                    ""
                };
                let _ = write!(
                    h,
                    "<tr{over}><td>{}</td><td>{}</td><td class=\"n\">${}</td><td class=\"n\">${}</td><td class=\"n\">{pct}</td></tr>",
                    e(&b.level),
                    e(&b.enforcement),
                    e(&b.limit_usd),
                    e(&b.actual_usd)
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>\n<footer>Amounts are exact sums of the stored usage records (micro-dollar precision), priced by the collector. Generated by the GateRouter collector.</footer>\n</body></html>\n");
        h
    }
}

const CSS: &str = "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#111;margin:2em auto;max-width:60em;padding:0 1em}\
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.5em 0 .4em}.meta{color:#555;margin:0}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left}\
th{background:#f3f3f3}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.sum td{font-weight:bold;border-top:2px solid #999}\
tr.over td{color:#b00020;font-weight:bold}footer{margin-top:2em;color:#666;font-size:.85em}\
@media print{body{margin:0;max-width:none;font-size:11pt}th{background:none}section{break-inside:avoid}a{color:inherit;text-decoration:none}}";

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn money_and_percent_are_exact() {
        assert_eq!(dollars(0), "0.00");
        assert_eq!(dollars(1), "0.000001");
        assert_eq!(dollars(12_500_000), "12.50");
        assert_eq!(dollars(1_234_567), "1.234567");
        assert_eq!(dollars(-1_250_000), "-1.25");
        assert_eq!(dollars(i64::MIN), "-9223372036854.775808");
        assert_eq!(percent(1, 3), Some("33.33".into()));
        assert_eq!(percent(5, 5), Some("100.00".into()));
        assert_eq!(percent(7, 0), None);
        assert_eq!(
            percent(i64::MAX, 1),
            Some(format!("{}.00", i128::from(i64::MAX) * 100))
        );
    }

    #[test]
    fn months() {
        assert_eq!(parse_month("2026-01"), Ok(202601));
        assert!(
            parse_month("2026-13").is_err()
                && parse_month("2026-1").is_err()
                && parse_month("26-01").is_err()
                && parse_month("2026-01-01").is_err()
        );
        assert_eq!(next_month(202612), 202701);
        assert_eq!(next_month(202601), 202602);
    }

    #[test]
    fn escaping_and_csv() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(crate::logsafe::csv_cell("a,\"b\""), "\"a,\"\"b\"\"\"");
        let b = Bill {
            org: "o".into(),
            org_name: "<O>".into(),
            scope: "org:o".into(),
            month: "2026-01".into(),
            period_start_ms: 0,
            period_end_ms: 1,
            period_start: "s".into(),
            period_end: "e".into(),
            generated_at_ms: 0,
            generated_at: "g".into(),
            totals: Totals {
                spend_usd: "0.00".into(),
                ..Default::default()
            },
            by_model: vec![Line {
                item: Some("p/m,1".into()),
                calls: 1,
                total_tokens: 2,
                spend_micros: 3,
                spend_usd: "0.000003".into(),
            }],
            by_member: vec![Line {
                item: None,
                calls: 1,
                total_tokens: 2,
                spend_micros: 3,
                spend_usd: "0.000003".into(),
            }],
            by_department: vec![],
            by_project: vec![],
            budgets: vec![],
        };
        let csv = b.csv();
        assert!(csv.starts_with("section,item,calls,"), "{csv}");
        assert!(
            csv.contains("\r\nmodel,\"p/m,1\",1,,,,2,3,0.000003,,,,,\r\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\r\nmember,,1,,,,2,3,0.000003,,,,,\r\n"),
            "{csv}"
        );
        let html = b.html();
        assert!(
            html.contains("&lt;O&gt;")
                && !html.contains("<O>")
                && html.contains("@media print")
                && !html.contains("<script"),
            "{html}"
        );
    }
}
