//! `gaterouter usage REPORT [FILTERS]`: the analytics API (`GET /v1/analytics/{report}`)
//! from the command line, as an aligned table (money in dollars), CSV or JSON.
//!
//! It reads with a read token (`GATEROUTER_READ_TOKEN`, minted by `gaterouter admin tokens
//! mint --org ORG [--department D]`) or the admin token; a department token sees only its
//! department, as on the dashboard.

use std::io::Write;

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::admin_cli::{AdminClient, AdminError, Token, enc, table, write_out};
use crate::analytics::{DIMENSIONS, REPORTS};

/// `gaterouter usage [--url URL] [--token TOKEN] REPORT [FILTERS] [--format F]`.
#[derive(Debug, Clone, Args)]
pub struct UsageArgs {
    /// Which report: summary, timeseries, breakdown, per-capita, users, models, keys,
    /// routing, latency, errors, denials, budgets, outcomes or routing_quality (routing
    /// that learns: strong share, explored share, scores by tier, savings; `--by project`).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(REPORTS))]
    pub report: String,
    /// Collector base URL.
    #[arg(
        long,
        env = "GATEROUTER_COLLECTOR_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    pub url: String,
    /// A read token (org or department) or the admin token. Default: GATEROUTER_READ_TOKEN,
    /// else GATEROUTER_ADMIN_TOKEN.
    #[arg(long, env = "GATEROUTER_READ_TOKEN", hide_env_values = true)]
    pub token: Option<Token>,
    /// Start, inclusive: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` or Unix ms.
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive (same forms as --from).
    #[arg(long)]
    pub to: Option<String>,
    /// Only this org.
    #[arg(long)]
    pub org: Option<String>,
    /// Only this department.
    #[arg(long)]
    pub department: Option<String>,
    /// Only this project.
    #[arg(long)]
    pub project: Option<String>,
    /// Only this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Only this member (user id).
    #[arg(long)]
    pub user: Option<String>,
    /// Only this API key id.
    #[arg(long)]
    pub key: Option<String>,
    /// Only this model (name without the provider).
    #[arg(long)]
    pub model: Option<String>,
    /// Only this provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Only calls tagged `k=v` (the request's `metadata`, e.g. scenario=support-reply).
    #[arg(long)]
    pub tag: Option<String>,
    /// Group by (breakdown, timeseries, per-capita, outcomes; routing_quality: org or
    /// project): one of org, department,
    /// project, group, user, key, model, provider, tier, status; `outcomes` also takes
    /// `tag:KEY` (e.g. tag:scenario).
    #[arg(long, value_parser = parse_by)]
    pub by: Option<String>,
    /// Time bucket (timeseries, breakdown).
    #[arg(long, value_enum)]
    pub bucket: Option<Bucket>,
    /// Row limit (users, breakdown).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Output: an aligned table (money in dollars), the API's CSV or its JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// A dimension, or `tag:KEY` (the outcomes report).
fn parse_by(s: &str) -> Result<String, String> {
    if DIMENSIONS.contains(&s) || s.strip_prefix("tag:").is_some_and(|k| !k.is_empty()) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "use one of {}, or tag:KEY (outcomes)",
            DIMENSIONS.join(", ")
        ))
    }
}

/// Time buckets of the analytics API.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Bucket {
    /// Hourly.
    Hour,
    /// Daily.
    Day,
    /// Monthly.
    Month,
}

/// Output formats of `gaterouter usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns; `*_micros` shown in dollars; timestamps as ISO.
    Table,
    /// The API's CSV (RFC 4180, formula cells neutralised).
    Csv,
    /// The API's JSON.
    Json,
}

impl UsageArgs {
    /// The API path with its query string.
    pub fn path(&self) -> String {
        let bucket = self.bucket.map(|b| match b {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Month => "month",
        });
        let limit = self.limit.map(|l| l.to_string());
        let format = match self.format {
            Format::Csv => Some("csv"),
            Format::Table | Format::Json => None,
        };
        let pairs = [
            ("from", self.from.as_deref()),
            ("to", self.to.as_deref()),
            ("org", self.org.as_deref()),
            ("department", self.department.as_deref()),
            ("project", self.project.as_deref()),
            ("group", self.group.as_deref()),
            ("user", self.user.as_deref()),
            ("key", self.key.as_deref()),
            ("model", self.model.as_deref()),
            ("provider", self.provider.as_deref()),
            ("tag", self.tag.as_deref()),
            ("by", self.by.as_deref()),
            ("bucket", bucket),
            ("limit", limit.as_deref()),
            ("format", format),
        ];
        let query: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(v))))
            .collect();
        let mut p = format!("/v1/analytics/{}", self.report);
        if !query.is_empty() {
            p.push('?');
            p.push_str(&query.join("&"));
        }
        p
    }
}

/// Run `gaterouter usage`: one GET, printed in the chosen format.
pub async fn run(args: UsageArgs, stdout: &mut dyn Write) -> Result<(), AdminError> {
    let token = args.token.clone().filter(|t| !t.is_empty()).or_else(|| {
        std::env::var("GATEROUTER_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Token::new)
    });
    let Some(token) = token else {
        return Err(AdminError::NoReadToken);
    };
    let c = AdminClient::new(&args.url, Some(token))?;
    let text = c.get_text(&args.path()).await?;
    let out = match args.format {
        Format::Csv => text,
        Format::Json => format!("{}\n", text.trim_end()),
        Format::Table => {
            let v: Value = serde_json::from_str(&text).map_err(|e| AdminError::Decode {
                url: c.url().to_owned(),
                reason: e.to_string(),
            })?;
            render(&v, args.report == "summary")
        }
    };
    write_out(stdout, &out)
}

/// Render an analytics answer (`{"columns": [...], "rows": [{...}], ...}`) as a table:
/// `X_micros` columns become `X ($)` in dollars, a `X_ms` timestamp is dropped when the
/// answer also has `X` (its ISO form). `vertical` (the summary's one wide row): one line
/// per figure.
pub fn render(answer: &Value, vertical: bool) -> String {
    let rows = answer["rows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let columns: Vec<&str> = match answer["columns"].as_array() {
        Some(c) => c.iter().filter_map(Value::as_str).collect(),
        // An older collector: the keys of the first row.
        None => rows
            .first()
            .and_then(Value::as_object)
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default(),
    };
    let shown: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| {
            !c.strip_suffix("_ms")
                .is_some_and(|base| columns.contains(&base))
        })
        .collect();
    if rows.is_empty() {
        return "no data for these filters\n".into();
    }
    let head: Vec<String> = shown
        .iter()
        .map(|c| {
            c.strip_suffix("_micros")
                .map_or_else(|| (*c).to_owned(), |b| format!("{b} ($)"))
        })
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| shown.iter().map(|c| cell(c, &r[*c])).collect())
        .collect();
    if let ([one], true) = (cells.as_slice(), vertical) {
        let pairs: Vec<Vec<String>> = head
            .iter()
            .cloned()
            .zip(one.iter().cloned())
            .map(|(h, v)| vec![h, v])
            .collect();
        return table(&["figure", "value"], &pairs);
    }
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    table(&head, &cells)
}

fn cell(column: &str, v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if column.ends_with("_micros") => n
            .as_i64()
            .map_or_else(|| n.to_string(), crate::bills::dollars),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        usage: UsageArgs,
    }

    #[test]
    fn query_string_from_flags() {
        let a = Cli::try_parse_from([
            "x",
            "breakdown",
            "--org",
            "acme",
            "--by",
            "department",
            "--tag",
            "scenario=support reply",
            "--from",
            "2026-11-01",
        ])
        .unwrap()
        .usage;
        assert_eq!(
            a.path(),
            "/v1/analytics/breakdown?from=2026-11-01&org=acme&tag=scenario%3Dsupport+reply&by=department"
        );
        let a = Cli::try_parse_from(["x", "summary", "--format", "csv"])
            .unwrap()
            .usage;
        assert_eq!(a.path(), "/v1/analytics/summary?format=csv");
        // Unknown report and dimension are refused by the parser, naming the valid ones.
        let e = Cli::try_parse_from(["x", "spend"]).unwrap_err().to_string();
        assert!(e.contains("breakdown") && e.contains("per-capita"), "{e}");
        let e = Cli::try_parse_from(["x", "breakdown", "--by", "team"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("department"), "{e}");
    }

    #[test]
    fn renders_dollars_and_hides_raw_timestamps() {
        let v = json!({
            "columns": ["api_key_id", "last_seen_ms", "last_seen", "calls", "spend_micros", "share"],
            "rows": [
                {"api_key_id": "k_eng", "last_seen_ms": 1, "last_seen": "2026-11-02T10:00:00Z", "calls": 3, "spend_micros": 1_250_000, "share": 0.25},
                {"api_key_id": "k_ops", "last_seen_ms": null, "last_seen": null, "calls": 0, "spend_micros": 7, "share": 0.0}
            ]
        });
        let t = render(&v, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["api_key_id", "last_seen", "calls", "spend", "($)", "share"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["k_eng", "2026-11-02T10:00:00Z", "3", "1.25", "0.250"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["k_ops", "-", "0", "0.000007", "0.000"]
        );
        assert_eq!(
            render(&json!({"columns": ["calls"], "rows": []}), false),
            "no data for these filters\n"
        );
        let one = render(
            &json!({"columns": ["calls", "spend_micros"], "rows": [{"calls": 2, "spend_micros": 1500}]}),
            true,
        );
        assert_eq!(
            one.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>(),
            ["figure value", "calls 2", "spend ($) 0.0015"]
        );
    }
}
