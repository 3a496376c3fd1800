//! `gaterouter admin ...`: manage a collector's organizations from the command line.
//! The arguments ([`AdminArgs`]) and a small HTTP client ([`AdminClient`]) over the
//! admin API (`ACCOUNTS.md`). The admin token comes from `--token` or
//! `GATEROUTER_ADMIN_TOKEN` and is never printed (its `Debug` is redacted, clap hides
//! the environment value in `--help`, errors never carry request headers).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use gaterouter::accounts::{BudgetStatus, EffectivePolicy, Metric};
use serde::Deserialize;
use serde_json::Value;

use crate::orgfile::{self, OrgFile};
use crate::orgtree::ApplyReport;

/// An admin or read token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Token(s.trim().to_owned()))
    }
}

impl Token {
    /// A token from text.
    pub fn new(s: impl Into<String>) -> Self {
        Token(s.into())
    }
    /// No token at all (an empty flag or variable).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `gaterouter admin [--url URL] [--token TOKEN] COMMAND`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Collector base URL.
    #[arg(
        long,
        env = "GATEROUTER_COLLECTOR_URL",
        default_value = "http://127.0.0.1:8787",
        global = true
    )]
    pub url: String,
    /// Admin token of the collector (prefer the environment variable: flags show in `ps`).
    #[arg(
        long,
        env = "GATEROUTER_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<Token>,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Admin subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Apply an organization file (TOML, YAML or JSON): create and update what it lists;
    /// entries missing from it are reported, never deleted. Idempotent.
    Apply {
        /// The organization file (format by extension: .toml, .yaml/.yml, .json).
        file: PathBuf,
        /// Show what would change without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Refuse the file (exit 1, nothing applied) when the catalog checks find a
        /// problem: a glob matching no model, an unknown provider, a policy no model
        /// satisfies. Without it they are warnings on standard error.
        #[arg(long)]
        strict: bool,
    },
    /// Print an org as an organization file (applying it again changes nothing).
    Export {
        /// Org id.
        #[arg(long)]
        org: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = FileFormat::Toml)]
        format: FileFormat,
    },
    /// Policies.
    Policy {
        /// What to do.
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Budgets of an org and where each stands in its current window.
    Budgets {
        /// Org id.
        #[arg(long)]
        org: String,
    },
    /// Routing that learns from the org's outcomes: settings, weights versions, runs.
    Routing {
        /// What to do.
        #[command(subcommand)]
        action: RoutingAction,
    },
    /// Budget alerts of an org (thresholds reached), newest first.
    Alerts {
        /// Org id.
        #[arg(long)]
        org: String,
    },
    /// Access tokens: mint a read token for the dashboard and analytics, list, revoke.
    Tokens {
        /// What to do.
        #[command(subcommand)]
        action: TokensAction,
    },
    /// API keys (usage-record signing keys): new, rotate with an overlap window, revoke, list.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: KeysAdminAction,
    },
    /// Members of an org: list, add, remove from a group.
    Members {
        /// What to do.
        #[command(subcommand)]
        action: MembersAction,
    },
    /// The monthly statement (chargeback) of an org, department or project.
    Bill {
        /// Org id.
        #[arg(long)]
        org: String,
        /// Month, YYYY-MM (UTC).
        #[arg(long)]
        month: String,
        /// Only this department.
        #[arg(long, conflicts_with = "project")]
        department: Option<String>,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Output format [default: from --out's extension (.html, .json), else csv].
        #[arg(long, value_enum)]
        format: Option<BillFormat>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `admin tokens` subcommands: access tokens of the admin and read APIs (the dashboard
/// sign-in form at `http://COLLECTOR/dashboard` takes a read token).
#[derive(Debug, Clone, Subcommand)]
pub enum TokensAction {
    /// Mint a token and print it once (only its SHA-256 is stored).
    Mint {
        /// `read` (analytics, bills and the dashboard of one org or department) or `admin`.
        #[arg(long, value_enum, default_value_t = TokenRole::Read)]
        role: TokenRole,
        /// The org a read token may read (required for `read`).
        #[arg(long)]
        org: Option<String>,
        /// Limit a read token to one department of the org.
        #[arg(long, requires = "org")]
        department: Option<String>,
        /// Who holds it (free text, shown by `list`).
        #[arg(long)]
        description: Option<String>,
    },
    /// List tokens (never the tokens themselves): id, role, scope, revoked.
    List {
        /// Only tokens of this org.
        #[arg(long)]
        org: Option<String>,
    },
    /// Revoke a token by its id (from `mint` or `list`).
    Revoke {
        /// Token id.
        id: String,
    },
}

/// Roles of access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    /// Reads one org (or one department of it).
    Read,
    /// Everything, including changes.
    Admin,
}

/// `admin keys` subcommands: the API keys whose Ed25519 keys sign usage records.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysAdminAction {
    /// Make a signing key (secret written to --out, mode 0600) and register its public
    /// key under --id with its scope.
    New {
        /// The key id (`[identity] api_key_id` of the SDK).
        #[arg(long)]
        id: String,
        /// Where to write the secret key (`[reporting] signing_key_file`).
        #[arg(long)]
        out: PathBuf,
        /// Org the key belongs to.
        #[arg(long)]
        org: String,
        /// Bind the key to a department.
        #[arg(long)]
        department: Option<String>,
        /// Bind the key to a project.
        #[arg(long)]
        project: Option<String>,
        /// Bind the key to a group.
        #[arg(long)]
        group: Option<String>,
        /// Bind the key to a member.
        #[arg(long)]
        user: Option<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// Rotate: make a new signing key for --id (secret to --out); records signed with the
    /// previous key are still accepted during the overlap window.
    Rotate {
        /// The key id.
        #[arg(long)]
        id: String,
        /// Where to write the new secret key.
        #[arg(long)]
        out: PathBuf,
        /// How long the previous key stays valid: `0`, `90s`, `30m`, `24h`, `7d`.
        #[arg(long, default_value = "24h", value_parser = parse_duration_secs)]
        overlap: u64,
    },
    /// Revoke a key: records it signs are refused from now on.
    Revoke {
        /// The key id.
        #[arg(long)]
        id: String,
    },
    /// List the keys of an org with their versions.
    List {
        /// Org id.
        #[arg(long)]
        org: String,
    },
}

/// `admin routing` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum RoutingAction {
    /// Settings, the served weights version, every promoted version with its estimates,
    /// the latest learning runs and the collector's weights public key.
    Show {
        /// Org id.
        #[arg(long)]
        org: String,
    },
    /// Turn learning on or off (auto records then carry features, never text) and set
    /// the exploration share.
    Set {
        /// Org id.
        #[arg(long)]
        org: String,
        /// `on` or `off` (also yes/no, true/false).
        #[arg(long, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
        learning: bool,
        /// Share of auto calls whose tier is drawn at random, in thousandths (0..=500).
        #[arg(long, default_value_t = 50)]
        explore_permille: u32,
        /// Shadow sampling: share of plain auto calls also sent to the other arm (each
        /// costs a second call), in thousandths (0..=1000; 0: off).
        #[arg(long, default_value_t = 0)]
        shadow_permille: u32,
    },
    /// Refit the org's router now from its rated auto calls; new weights are promoted
    /// (and signed) only when estimated better than the current ones and length-only.
    Learn {
        /// Org id.
        #[arg(long)]
        org: String,
    },
    /// Serve an earlier weights version again, or none (a rollback): `--to VERSION` (one
    /// that `admin routing show` lists) or `--to none` (the org's keys then use their own
    /// weights, a project's keys the org's).
    Activate {
        /// Org id.
        #[arg(long)]
        org: String,
        /// A weights version of the org (or of `--project`), or `none`.
        #[arg(long, value_name = "VERSION|none")]
        to: String,
        /// Change this project's served weights instead of the org's.
        #[arg(long)]
        project: Option<String>,
    },
}

/// `admin members` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum MembersAction {
    /// Members of an org (optionally one department).
    List {
        /// Org id.
        #[arg(long)]
        org: String,
        /// Only this department.
        #[arg(long)]
        department: Option<String>,
    },
    /// Add a member to an org (and a department), or an existing member to a group.
    Add {
        /// Member id (the `[identity] user` of the SDK).
        id: String,
        /// Org id.
        #[arg(long)]
        org: String,
        /// Department.
        #[arg(long)]
        department: Option<String>,
        /// Group to add the member to.
        #[arg(long)]
        group: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a member from a group (members themselves are kept: usage records name them).
    Remove {
        /// Member id.
        id: String,
        /// The group.
        #[arg(long)]
        group: String,
    },
}

/// `30`, `90s`, `30m`, `24h`, `7d` -> seconds.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3_600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a duration: write e.g. 0, 90s, 30m, 24h or 7d"))
}

/// `admin policy` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyAction {
    /// The effective policy of an API key: merged rules and every budget it must satisfy.
    Show {
        /// API key id.
        #[arg(long)]
        key: String,
        /// Print the collector's JSON answer instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

/// Organization file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// Bill formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BillFormat {
    /// One long CSV table with a `section` column.
    Csv,
    /// A printable standalone HTML page.
    Html,
    /// JSON.
    Json,
}

impl BillFormat {
    fn as_str(self) -> &'static str {
        match self {
            BillFormat::Csv => "csv",
            BillFormat::Html => "html",
            BillFormat::Json => "json",
        }
    }
}

/// What can go wrong; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The organization file is unreadable or invalid.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong (names the entry and field).
        message: String,
    },
    /// No token given.
    #[error(
        "no admin token: pass --token or set GATEROUTER_ADMIN_TOKEN to the collector's admin token"
    )]
    NoToken,
    /// No token given to a read command (`gaterouter usage`).
    #[error(
        "no token: set GATEROUTER_READ_TOKEN to a read token (`gaterouter admin tokens mint --org ORG`) or GATEROUTER_ADMIN_TOKEN, or pass --token"
    )]
    NoReadToken,
    /// `--url` is not an http(s) URL.
    #[error(
        "--url `{url}` is not an http:// or https:// URL; pass the collector's base URL, e.g. http://127.0.0.1:8787"
    )]
    BadUrl {
        /// The value given.
        url: String,
    },
    /// The collector cannot be reached.
    #[error(
        "cannot reach the collector at {url}: {reason}. Fix: start one (`gaterouter collector serve`) or point --url / GATEROUTER_COLLECTOR_URL at it"
    )]
    Connect {
        /// Base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The collector refused the request.
    #[error("collector answered HTTP {status} ({code}): {message}{hint}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The collector's error code.
        code: String,
        /// The collector's message.
        message: String,
        /// A fix for the common statuses.
        hint: &'static str,
    },
    /// The answer is not what this command expects.
    #[error(
        "unexpected answer from the collector at {url}: {reason}; is --url a GateRouter collector of the same version?"
    )]
    Decode {
        /// Base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Cannot write the output.
    #[error("unknown {what} `{id}`{scope}: {hint}")]
    NotFound {
        what: &'static str,
        id: String,
        scope: String,
        hint: String,
    },
    #[error("cannot write {path}: {reason}")]
    Write {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
}

/// An HTTP client of the admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    token: Token,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of the collector at `url` (trailing `/` ignored).
    pub fn new(url: &str, token: Option<Token>) -> Result<Self, AdminError> {
        let base = url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || url::Url::parse(&base).is_err()
        {
            return Err(AdminError::BadUrl {
                url: url.to_owned(),
            });
        }
        let token = token
            .filter(|t| !t.0.is_empty())
            .ok_or(AdminError::NoToken)?;
        // reqwest is built without a default TLS crypto provider: install the one the core uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| AdminError::Connect {
                url: base.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(AdminClient { base, token, http })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, AdminError> {
        let resp = req.bearer_auth(&self.token.0).send().await.map_err(|e| {
            let reason = if e.is_connect() {
                "connection refused or host unreachable".to_owned()
            } else if e.is_timeout() {
                "timed out".to_owned()
            } else {
                // Without the URL: reqwest's text repeats it, and it is in the message already.
                e.without_url().to_string()
            };
            AdminError::Connect {
                url: self.base.clone(),
                reason,
            }
        })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let code = parsed["error"]["code"]
            .as_str()
            .unwrap_or("http_error")
            .to_owned();
        let message = parsed["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.chars().take(300).collect());
        let hint = match status {
            401 => " (check --token / GATEROUTER_ADMIN_TOKEN)",
            403 => " (this command needs an admin token)",
            404 if code == "http_error" => " (is --url the collector's base URL?)",
            _ => "",
        };
        Err(AdminError::Http {
            status,
            code,
            message,
            hint,
        })
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, text: &str) -> Result<T, AdminError> {
        serde_json::from_str(text).map_err(|e| AdminError::Decode {
            url: self.base.clone(),
            reason: e.to_string(),
        })
    }

    async fn text(&self, resp: reqwest::Response) -> Result<String, AdminError> {
        resp.text().await.map_err(|e| AdminError::Connect {
            url: self.base.clone(),
            reason: format!("reading the answer: {}", e.without_url()),
        })
    }

    /// GET a path (with its query) and return the body text.
    pub async fn get_text(&self, path_and_query: &str) -> Result<String, AdminError> {
        let resp = self
            .send(self.http.get(format!("{}{path_and_query}", self.base)))
            .await?;
        self.text(resp).await
    }

    /// GET and decode JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<T, AdminError> {
        let text = self.get_text(path_and_query).await?;
        self.decode(&text)
    }

    /// `PUT /v1/admin/org-tree[?dry_run=true]`.
    pub async fn apply(&self, file: &OrgFile, dry_run: bool) -> Result<ApplyReport, AdminError> {
        let q = if dry_run { "?dry_run=true" } else { "" };
        let resp = self
            .send(
                self.http
                    .put(format!("{}/v1/admin/org-tree{q}", self.base))
                    .json(file),
            )
            .await?;
        let text = self.text(resp).await?;
        self.decode(&text)
    }
}

/// Percent-encode a query value.
impl AdminClient {
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, AdminError> {
        let resp = self
            .send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await?;
        let text = self.text(resp).await?;
        self.decode(&text)
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Result<Value, AdminError> {
        let resp = self
            .send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await?;
        let text = self.text(resp).await?;
        self.decode(&text)
    }

    pub async fn delete_json(&self, path: &str) -> Result<Value, AdminError> {
        let resp = self
            .send(self.http.delete(format!("{}{path}", self.base)))
            .await?;
        let text = self.text(resp).await?;
        self.decode(&text)
    }

    /// The org exists, else [`AdminError::NotFound`] listing the orgs that do.
    pub async fn require_org(&self, org: &str) -> Result<(), AdminError> {
        let all: Items<Value> = self.get_json("/v1/admin/orgs").await?;
        if all.items.iter().any(|o| o["id"] == org) {
            return Ok(());
        }
        let known: Vec<&str> = all.items.iter().filter_map(|o| o["id"].as_str()).collect();
        Err(AdminError::NotFound {
            what: "org",
            id: org.to_owned(),
            scope: String::new(),
            hint: known_hint(&known, "admin apply an org file first"),
        })
    }

    /// The department exists in the org.
    pub async fn require_unit(
        &self,
        kind: &'static str,
        path: &str,
        org: &str,
        id: &str,
    ) -> Result<(), AdminError> {
        let all: Items<Value> = self
            .get_json(&format!("/v1/admin/{path}?org_id={}", enc(org)))
            .await?;
        if all.items.iter().any(|o| o["id"] == id) {
            return Ok(());
        }
        let known: Vec<&str> = all.items.iter().filter_map(|o| o["id"].as_str()).collect();
        Err(AdminError::NotFound {
            what: kind,
            id: id.to_owned(),
            scope: format!(" in org `{org}`"),
            hint: known_hint(&known, "add it to the org file and apply it"),
        })
    }

    /// The API key's record, else NotFound.
    async fn require_key(&self, id: &str) -> Result<Value, AdminError> {
        let all: Items<Value> = self.get_json("/v1/admin/keys").await?;
        all.items
            .into_iter()
            .find(|k| k["id"] == id)
            .ok_or_else(|| AdminError::NotFound {
                what: "API key",
                id: id.to_owned(),
                scope: String::new(),
                hint: "list the keys with `gaterouter admin keys list --org ORG`".into(),
            })
    }
}

fn known_hint(known: &[&str], otherwise: &str) -> String {
    if known.is_empty() {
        format!("there are none; {otherwise}")
    } else {
        format!("known: {}", known.join(", "))
    }
}

/// Write a new secret key file (mode 0600 on Unix); refuses to overwrite.
fn write_secret(path: &Path, text: &str) -> Result<(), AdminError> {
    if path.exists() {
        return Err(AdminError::Write {
            path: path.display().to_string(),
            reason: "the file exists; choose another --out or remove the old key first".into(),
        });
    }
    crate::util::write_secret_file(path, text).map_err(|e| AdminError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn ms_iso(v: &Value) -> String {
    v.as_i64().map_or_else(|| "-".to_owned(), crate::time::iso)
}

fn render_tokens(items: &[Value]) -> String {
    if items.is_empty() {
        return "no tokens\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|t| {
            let scope = match (t["org_id"].as_str(), t["department_id"].as_str()) {
                (Some(o), Some(d)) => format!("{o}/{d}"),
                (Some(o), None) => o.to_owned(),
                _ => "*".into(),
            };
            let revoked = if t["revoked_ms"].is_null() {
                "-".to_owned()
            } else {
                ms_iso(&t["revoked_ms"])
            };
            vec![
                t["id"].as_str().unwrap_or("").to_owned(),
                t["role"].as_str().unwrap_or("").to_owned(),
                scope,
                ms_iso(&t["created_ms"]),
                revoked,
                t["description"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table(
        &["ID", "ROLE", "SCOPE", "CREATED", "REVOKED", "DESCRIPTION"],
        &rows,
    )
}

fn render_keys(items: &[Value]) -> String {
    if items.is_empty() {
        return "no keys\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|k| {
            let scope: Vec<String> = [
                ("department", "department_id"),
                ("project", "project_id"),
                ("group", "group_id"),
                ("user", "user_id"),
            ]
            .iter()
            .filter_map(|(n, f)| k[*f].as_str().map(|v| format!("{n} {v}")))
            .collect();
            let versions = k["versions"].as_array().map_or(0, Vec::len);
            let previous_until = k["versions"]
                .as_array()
                .and_then(|v| v.iter().rev().nth(1))
                .map(|v| ms_iso(&v["not_after_ms"]))
                .unwrap_or_else(|| "-".into());
            vec![
                k["id"].as_str().unwrap_or("").to_owned(),
                k["status"].as_str().unwrap_or("").to_owned(),
                if scope.is_empty() {
                    "org".into()
                } else {
                    scope.join(", ")
                },
                versions.to_string(),
                previous_until,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATUS",
            "BOUND TO",
            "VERSIONS",
            "PREVIOUS VALID UNTIL",
        ],
        &rows,
    )
}

pub(crate) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Load an organization file; errors name the file, the entry and the field.
pub fn load_file(path: &Path) -> Result<OrgFile, AdminError> {
    orgfile::load(path).map_err(|message| AdminError::File {
        path: path.display().to_string(),
        message,
    })
}

/// Render an apply report.
pub fn render_report(r: &ApplyReport) -> String {
    let mut s = String::new();
    if r.dry_run {
        s.push_str("dry run: nothing was written\n");
    }
    for (what, items) in [("created", &r.created), ("updated", &r.updated)] {
        s.push_str(&format!("{what}: {}\n", items.len()));
        for i in items {
            s.push_str(&format!("  {i}\n"));
        }
    }
    s.push_str(&format!("unchanged: {}\n", r.unchanged));
    s.push_str(&format!(
        "removed_not_deleted: {}",
        r.removed_not_deleted.len()
    ));
    if !r.removed_not_deleted.is_empty() {
        s.push_str(" (in the collector but not in the file: left in place; delete them through the admin API if they should go)");
    }
    s.push('\n');
    for i in &r.removed_not_deleted {
        s.push_str(&format!("  {i}\n"));
    }
    s
}

/// An org file as text in `format`.
pub fn render_file(f: &OrgFile, format: FileFormat) -> Result<String, String> {
    match format {
        FileFormat::Toml => toml::to_string_pretty(f).map_err(|e| e.to_string()),
        FileFormat::Yaml => serde_norway::to_string(f).map_err(|e| e.to_string()),
        FileFormat::Json => serde_json::to_string_pretty(f)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
    }
}

fn amount(metric: Metric, v: u64) -> String {
    match metric {
        Metric::Usd => format!(
            "${}",
            crate::bills::dollars(i64::try_from(v).unwrap_or(i64::MAX))
        ),
        Metric::Tokens => v.to_string(),
    }
}

/// A plain text table (`comfy-table`): no borders, columns padded to their widest cell
/// (display width) and two spaces apart, no trailing spaces, one line per row.
pub(crate) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_header(head.iter().copied())
        .add_rows(rows.iter().map(|r| r.iter().map(String::as_str)));
    let last = t.column_count().saturating_sub(1);
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding((0, if i == last { 0 } else { 2 }));
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

#[derive(Debug, Deserialize)]
struct BudgetItem {
    status: BudgetStatus,
    #[serde(default)]
    projected_at_reset: u64,
}

#[derive(Debug, Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

/// Render `GET /v1/admin/budgets` as a table.
fn render_budgets(items: &[BudgetItem]) -> String {
    if items.is_empty() {
        return "no budgets\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|b| {
            let s = &b.status;
            let m = s.metric;
            let pct = crate::bills::percent(
                i64::try_from(s.used.saturating_add(s.reserved)).unwrap_or(i64::MAX),
                i64::try_from(s.limit).unwrap_or(i64::MAX),
            )
            .map_or_else(|| "-".into(), |p| format!("{p}%"));
            vec![
                s.level.to_string(),
                format!("{m:?}").to_lowercase(),
                s.period.as_str().to_owned(),
                format!("{:?}", s.enforcement).to_lowercase(),
                amount(m, s.limit),
                amount(m, s.used),
                amount(m, s.reserved),
                amount(m, s.remaining),
                pct,
                amount(m, b.projected_at_reset),
                crate::time::iso(i64::try_from(s.resets_at_ms).unwrap_or(i64::MAX)),
            ]
        })
        .collect();
    table(
        &[
            "LEVEL",
            "METRIC",
            "PERIOD",
            "ENFORCEMENT",
            "LIMIT",
            "USED",
            "RESERVED",
            "REMAINING",
            "USED+RES%",
            "PROJECTED",
            "RESETS",
        ],
        &rows,
    )
}

/// Render an effective policy: each rule with the level that set it, then the budgets.
fn render_policy(p: &EffectivePolicy) -> String {
    let sc = &p.scope;
    let mut place = vec![format!("org {}", sc.org)];
    for (what, v) in [
        ("department", &sc.department),
        ("project", &sc.project),
        ("group", &sc.group),
        ("user", &sc.user),
    ] {
        if let Some(v) = v {
            place.push(format!("{what} {v}"));
        }
    }
    let mut out = format!(
        "key {} ({})\nrules (narrowest level wins; deny_models add up):\n",
        p.api_key_id,
        place.join(", ")
    );
    let r = &p.rules;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut one = |name: &str, v: Option<(String, String)>| match v {
        Some((value, level)) => {
            rows.push(vec![name.to_owned(), value, format!("(set at {level})")])
        }
        None => rows.push(vec![name.to_owned(), "-".into(), "(not set)".into()]),
    };
    one(
        "allow_models",
        r.allow_models
            .as_ref()
            .map(|s| (s.value.join(", "), s.level.to_string())),
    );
    one(
        "allowed_tiers",
        r.allowed_tiers.as_ref().map(|s| {
            let names: Vec<&str> = s.value.iter().map(|t| t.as_str()).collect();
            (names.join(", "), s.level.to_string())
        }),
    );
    one(
        "max_tokens_per_request",
        r.max_tokens_per_request
            .as_ref()
            .map(|s| (s.value.to_string(), s.level.to_string())),
    );
    one(
        "zero_retention_only",
        r.zero_retention_only
            .as_ref()
            .map(|s| (s.value.to_string(), s.level.to_string())),
    );
    if r.deny_models.is_empty() {
        one("deny_models", None);
    }
    for d in &r.deny_models {
        rows.push(vec![
            "deny_models".into(),
            d.value.clone(),
            format!("(set at {})", d.level),
        ]);
    }
    for line in table(&["RULE", "VALUE", "LEVEL"], &rows).lines().skip(1) {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("budgets (a call must satisfy every one):\n");
    let items: Vec<BudgetItem> = p
        .budgets
        .iter()
        .map(|b| BudgetItem {
            status: b.clone(),
            projected_at_reset: crate::store::budgets::projected(b, p.issued_at_ms),
        })
        .collect();
    for line in render_budgets(&items).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// Render `GET /v1/admin/alerts` as a table.
fn apgr(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{x:.3}"))
}

fn render_routing(v: &Value) -> String {
    let s = &v["settings"];
    let mut out = if s.is_null() {
        format!(
            "org {}: routing learning never set up (`admin routing set --org {} --learning on`)\n",
            v["org"].as_str().unwrap_or(""),
            v["org"].as_str().unwrap_or("")
        )
    } else {
        // Shadow sampling is named only when on (it costs a second call per shadowed call).
        let shadow = match s["shadow_permille"].as_u64().unwrap_or(0) {
            0 => String::new(),
            n => format!(", shadow sampling {n}‰"),
        };
        format!(
            "org {}: learning {}, exploration {}‰, {} auto calls with features ({} explored){shadow}\n",
            v["org"].as_str().unwrap_or(""),
            if s["learning"] == true { "on" } else { "off" },
            s["explore_permille"],
            v["calls_with_features"],
            v["explored_calls"],
        )
    };
    out.push_str(&format!(
        "served weights: {}\ncollector weights public key ([policy] weights_public_key): {}\n",
        v["active_version"]
            .as_str()
            .unwrap_or("none (clients use their own)"),
        v["public_key"].as_str().unwrap_or("")
    ));
    if let Some(pv) = v["project_versions"].as_object().filter(|m| !m.is_empty()) {
        let list: Vec<String> = pv
            .iter()
            .map(|(p, ver)| format!("{p} {}", ver.as_str().unwrap_or("")))
            .collect();
        out.push_str(&format!(
            "project weights (served to the project's keys): {}\n",
            list.join(", ")
        ));
    }
    let rows: Vec<Vec<String>> = v["weights"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let r = &w["report"];
            vec![
                w["version"].as_str().unwrap_or("").to_owned(),
                w["project"].as_str().unwrap_or("(org)").to_owned(),
                crate::time::iso(w["created_ms"].as_i64().unwrap_or(0)),
                if w["active"] == true { "yes" } else { "" }.to_owned(),
                r["outcomes"].to_string(),
                apgr(&r["new_apgr"]),
                apgr(&r["current_apgr"]),
                apgr(&r["length_apgr"]),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(
            &[
                "VERSION",
                "FOR",
                "PROMOTED",
                "ACTIVE",
                "OUTCOMES",
                "EST. APGR",
                "PREVIOUS",
                "LENGTH-ONLY",
            ],
            &rows,
        ));
    }
    if let Some(r) = v["runs"].as_array().and_then(|r| r.first()) {
        out.push_str(&format!(
            "last run {}: {}\n",
            crate::time::iso(r["at_ms"].as_i64().unwrap_or(0)),
            r["report"]["reason"].as_str().unwrap_or("")
        ));
    }
    out
}

fn render_learn(v: &Value) -> String {
    let r = &v["report"];
    format!(
        "{}\n{} rated calls ({} on the heavy tier); estimated APGR new {} / current {} / length-only {}\n",
        match v["promoted"].as_str() {
            Some(ver) => format!(
                "promoted weights {ver} (clients pick them up with their next policy fetch)"
            ),
            None => "kept the current weights".to_owned(),
        },
        r["outcomes"],
        r["strong_outcomes"],
        apgr(&r["new_apgr"]),
        apgr(&r["current_apgr"]),
        apgr(&r["length_apgr"]),
    ) + &format!("{}\n", r["reason"].as_str().unwrap_or(""))
        + &v["projects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "project {}: {}",
                    p["project"].as_str().unwrap_or(""),
                    render_learn(p)
                )
            })
            .collect::<String>()
}

fn render_alerts(items: &[Value]) -> String {
    if items.is_empty() {
        return "no alerts\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|a| {
            vec![
                crate::time::iso(a["ts_ms"].as_i64().unwrap_or(0)),
                a["level"].as_str().unwrap_or("").to_owned(),
                format!("{}%", a["threshold"].as_i64().unwrap_or(0)),
                a["message"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table(&["TIME", "LEVEL", "THRESHOLD", "MESSAGE"], &rows)
}

fn bill_format(format: Option<BillFormat>, out: Option<&Path>) -> BillFormat {
    format.unwrap_or_else(|| {
        match out
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("html" | "htm") => BillFormat::Html,
            Some("json") => BillFormat::Json,
            _ => BillFormat::Csv,
        }
    })
}

pub(crate) fn write_out(stdout: &mut dyn Write, text: &str) -> Result<(), AdminError> {
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // The reader went away (`| head`): nothing more to say, and not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| AdminError::Write {
            path: "standard output".into(),
            reason: e.to_string(),
        }),
    }
}

async fn tokens(
    c: &AdminClient,
    action: TokensAction,
    stdout: &mut dyn Write,
) -> Result<(), AdminError> {
    match action {
        TokensAction::Mint {
            role,
            org,
            department,
            description,
        } => {
            if let Some(o) = &org {
                c.require_org(o).await?;
                if let Some(d) = &department {
                    c.require_unit("department", "departments", o, d).await?;
                }
            }
            let role = match role {
                TokenRole::Read => "read",
                TokenRole::Admin => "admin",
            };
            let v = c.post_json("/v1/admin/tokens", &serde_json::json!({"role": role, "org_id": org, "department_id": department, "description": description})).await?;
            let token = v["token"].as_str().unwrap_or_default();
            let scope = match (&org, &department) {
                (Some(o), Some(d)) => format!("department {d} of org {o}"),
                (Some(o), None) => format!("org {o}"),
                _ => "everything".into(),
            };
            write_out(
                stdout,
                &format!(
                    "{token}\n# {role} token {id} for {scope}; shown once, keep it secret.\n# Dashboard: sign in at {url}/dashboard with the token above\n",
                    id = v["id"].as_str().unwrap_or(""),
                    url = c.url()
                ),
            )
        }
        TokensAction::List { org } => {
            if let Some(o) = &org {
                c.require_org(o).await?;
            }
            let v: Items<Value> = c.get_json("/v1/admin/tokens").await?;
            let items: Vec<Value> = v
                .items
                .into_iter()
                .filter(|t| org.as_deref().is_none_or(|o| t["org_id"] == o))
                .collect();
            write_out(stdout, &render_tokens(&items))
        }
        TokensAction::Revoke { id } => {
            let v: Items<Value> = c.get_json("/v1/admin/tokens").await?;
            match v.items.iter().find(|t| t["id"] == id.as_str()) {
                None => Err(AdminError::NotFound {
                    what: "token",
                    id,
                    scope: String::new(),
                    hint: "list them with `gaterouter admin tokens list`".into(),
                }),
                Some(t) if !t["revoked_ms"].is_null() => write_out(
                    stdout,
                    &format!(
                        "token {id} was already revoked at {}\n",
                        ms_iso(&t["revoked_ms"])
                    ),
                ),
                Some(_) => {
                    c.post_json(
                        &format!("/v1/admin/tokens/{}/revoke", enc(&id)),
                        &Value::Null,
                    )
                    .await?;
                    write_out(stdout, &format!("revoked token {id}\n"))
                }
            }
        }
    }
}

async fn keys(
    c: &AdminClient,
    action: KeysAdminAction,
    stdout: &mut dyn Write,
) -> Result<(), AdminError> {
    match action {
        KeysAdminAction::New {
            id,
            out,
            org,
            department,
            project,
            group,
            user,
            description,
        } => {
            c.require_org(&org).await?;
            for (kind, path, v) in [
                ("department", "departments", &department),
                ("project", "projects", &project),
                ("group", "groups", &group),
                ("member", "users", &user),
            ] {
                if let Some(v) = v {
                    c.require_unit(kind, path, &org, v).await?;
                }
            }
            if out.exists() {
                return Err(AdminError::Write {
                    path: out.display().to_string(),
                    reason: "the file exists; choose another --out or remove the old key first"
                        .into(),
                });
            }
            let (signer, public) = gaterouter::usage::generate_key();
            let body = serde_json::json!({"id": id, "public_key": public, "org_id": org, "department_id": department, "project_id": project, "group_id": group, "user_id": user, "description": description});
            c.post_json("/v1/admin/keys", &body).await?;
            write_secret(&out, signer.seed_base64().expose())?;
            write_out(
                stdout,
                &format!(
                    "registered API key {id} (org {org}); secret key written to {} (mode 0600)\nSDK config: [identity] api_key_id = \"{id}\", [reporting] signing_key_file = \"{}\"\n",
                    out.display(),
                    out.display()
                ),
            )
        }
        KeysAdminAction::Rotate { id, out, overlap } => {
            let k = c.require_key(&id).await?;
            if k["status"] != "active" {
                return Err(AdminError::NotFound {
                    what: "active API key",
                    id,
                    scope: " (it is revoked)".into(),
                    hint: "register a new key id with `admin keys new`".into(),
                });
            }
            if out.exists() {
                return Err(AdminError::Write {
                    path: out.display().to_string(),
                    reason: "the file exists; choose another --out".into(),
                });
            }
            let (signer, public) = gaterouter::usage::generate_key();
            let v = c
                .post_json(
                    &format!("/v1/admin/keys/{}/rotate", enc(&id)),
                    &serde_json::json!({"public_key": public, "grace_secs": overlap}),
                )
                .await?;
            write_secret(&out, signer.seed_base64().expose())?;
            write_out(
                stdout,
                &format!(
                    "rotated API key {id} to version {}; new secret key written to {}\nrecords signed with the previous key are accepted until {} (overlap {overlap} s): point signing_key_file at the new file before then\n",
                    v["version"],
                    out.display(),
                    ms_iso(&v["previous_valid_until_ms"])
                ),
            )
        }
        KeysAdminAction::Revoke { id } => {
            let k = c.require_key(&id).await?;
            if k["status"] == "revoked" {
                return write_out(
                    stdout,
                    &format!(
                        "API key {id} was already revoked at {}\n",
                        ms_iso(&k["revoked_ms"])
                    ),
                );
            }
            c.post_json(&format!("/v1/admin/keys/{}/revoke", enc(&id)), &Value::Null)
                .await?;
            write_out(
                stdout,
                &format!("revoked API key {id}: records it signs are refused from now on\n"),
            )
        }
        KeysAdminAction::List { org } => {
            c.require_org(&org).await?;
            let v: Items<Value> = c
                .get_json(&format!("/v1/admin/keys?org_id={}", enc(&org)))
                .await?;
            write_out(stdout, &render_keys(&v.items))
        }
    }
}

async fn members(
    c: &AdminClient,
    action: MembersAction,
    stdout: &mut dyn Write,
) -> Result<(), AdminError> {
    match action {
        MembersAction::List { org, department } => {
            c.require_org(&org).await?;
            if let Some(d) = &department {
                c.require_unit("department", "departments", &org, d).await?;
            }
            let v: Items<Value> = c
                .get_json(&format!("/v1/admin/users?org_id={}", enc(&org)))
                .await?;
            let rows: Vec<Vec<String>> = v
                .items
                .iter()
                .filter(|u| {
                    department
                        .as_deref()
                        .is_none_or(|d| u["department_id"] == d)
                })
                .map(|u| {
                    let f = |k: &str| u[k].as_str().unwrap_or("-").to_owned();
                    vec![f("id"), f("name"), f("department_id"), f("group_id")]
                })
                .collect();
            if rows.is_empty() {
                return write_out(stdout, "no members\n");
            }
            write_out(
                stdout,
                &table(&["ID", "NAME", "DEPARTMENT", "GROUP"], &rows),
            )
        }
        MembersAction::Add {
            id,
            org,
            department,
            group,
            name,
        } => {
            c.require_org(&org).await?;
            if let Some(d) = &department {
                c.require_unit("department", "departments", &org, d).await?;
            }
            if let Some(g) = &group {
                c.require_unit("group", "groups", &org, g).await?;
            }
            let existing: Items<Value> = c
                .get_json(&format!("/v1/admin/users?org_id={}", enc(&org)))
                .await?;
            let mut said = String::new();
            if !existing.items.iter().any(|u| u["id"] == id.as_str()) {
                c.post_json("/v1/admin/users", &serde_json::json!({"id": id, "name": name, "org_id": org, "department_id": department})).await?;
                said.push_str(&format!(
                    "added member {id} to org {org}{}\n",
                    department
                        .as_ref()
                        .map(|d| format!(", department {d}"))
                        .unwrap_or_default()
                ));
            } else if group.is_none() {
                said.push_str(&format!("member {id} already exists in org {org}\n"));
            }
            if let Some(g) = &group {
                c.post_json(
                    &format!("/v1/admin/groups/{}/members", enc(g)),
                    &serde_json::json!({"user_id": id}),
                )
                .await?;
                said.push_str(&format!("member {id} is in group {g}\n"));
            }
            write_out(stdout, &said)
        }
        MembersAction::Remove { id, group } => {
            c.delete_json(&format!(
                "/v1/admin/groups/{}/members/{}",
                enc(&group),
                enc(&id)
            ))
            .await?;
            write_out(stdout, &format!("removed member {id} from group {group}\n"))
        }
    }
}

/// Run one admin command, printing to `stdout`.
pub async fn run(args: AdminArgs, stdout: &mut dyn Write) -> Result<(), AdminError> {
    // Parse the file before anything else: a bad file is reported without a collector.
    let file = match &args.command {
        AdminCommand::Apply {
            file: path, strict, ..
        } => {
            let f = load_file(path)?;
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let warnings = f.check_against_catalog(&text, gaterouter::pricing::Catalog::builtin());
            for w in &warnings {
                eprintln!(
                    "{}: {} {w}",
                    path.display(),
                    if *strict { "error:" } else { "warning:" }
                );
            }
            if *strict && !warnings.is_empty() {
                return Err(AdminError::File {
                    path: path.display().to_string(),
                    message: format!(
                        "{} problem(s) above; nothing was applied (--strict)",
                        warnings.len()
                    ),
                });
            }
            Some(f)
        }
        _ => None,
    };
    let c = AdminClient::new(&args.url, args.token.clone())?;
    match args.command {
        AdminCommand::Apply { dry_run, .. } => {
            let Some(file) = file else { return Ok(()) };
            let r = c.apply(&file, dry_run).await?;
            write_out(stdout, &render_report(&r))
        }
        AdminCommand::Export { org, format } => {
            c.require_org(&org).await?;
            let f: OrgFile = c
                .get_json(&format!("/v1/admin/org-tree?org={}", enc(&org)))
                .await?;
            let text = render_file(&f, format).map_err(|reason| AdminError::Decode {
                url: c.url().to_owned(),
                reason,
            })?;
            write_out(stdout, &text)
        }
        AdminCommand::Policy {
            action: PolicyAction::Show { key, json },
        } => {
            c.require_key(&key).await?;
            let text = c
                .get_text(&format!(
                    "/v1/admin/effective-policy?api_key_id={}",
                    enc(&key)
                ))
                .await?;
            if json {
                let v: Value = c.decode(&text)?;
                return write_out(
                    stdout,
                    &format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()),
                );
            }
            let p: EffectivePolicy = c.decode(&text)?;
            write_out(stdout, &render_policy(&p))
        }
        AdminCommand::Tokens { action } => tokens(&c, action, stdout).await,
        AdminCommand::Keys { action } => keys(&c, action, stdout).await,
        AdminCommand::Members { action } => members(&c, action, stdout).await,
        AdminCommand::Budgets { org } => {
            c.require_org(&org).await?;
            let v: Items<BudgetItem> = c
                .get_json(&format!("/v1/admin/budgets?org_id={}", enc(&org)))
                .await?;
            write_out(stdout, &render_budgets(&v.items))
        }
        AdminCommand::Routing { action } => {
            let org = match &action {
                RoutingAction::Show { org }
                | RoutingAction::Set { org, .. }
                | RoutingAction::Learn { org }
                | RoutingAction::Activate { org, .. } => org.clone(),
            };
            c.require_org(&org).await?;
            let path = format!("/v1/admin/orgs/{}/routing", enc(&org));
            let text = match action {
                RoutingAction::Show { .. } => render_routing(&c.get_json(&path).await?),
                RoutingAction::Set {
                    learning,
                    explore_permille,
                    shadow_permille,
                    ..
                } => render_routing(
                    &c.put_json(
                        &path,
                        &serde_json::json!({"learning": learning, "explore_permille": explore_permille, "shadow_permille": shadow_permille}),
                    )
                    .await?,
                ),
                RoutingAction::Learn { .. } => {
                    render_learn(&c.post_json(&format!("{path}/learn"), &Value::Null).await?)
                }
                RoutingAction::Activate { to, project, .. } => {
                    let version = (to != "none").then_some(to);
                    render_routing(
                        &c.post_json(
                            &format!("{path}/activate"),
                            &serde_json::json!({"version": version, "project": project}),
                        )
                        .await?,
                    )
                }
            };
            write_out(stdout, &text)
        }
        AdminCommand::Alerts { org } => {
            c.require_org(&org).await?;
            let v: Items<Value> = c
                .get_json(&format!("/v1/admin/alerts?org_id={}", enc(&org)))
                .await?;
            write_out(stdout, &render_alerts(&v.items))
        }
        AdminCommand::Bill {
            org,
            month,
            department,
            project,
            format,
            out,
        } => {
            let fmt = bill_format(format, out.as_deref());
            c.require_org(&org).await?;
            if let Some(d) = &department {
                c.require_unit("department", "departments", &org, d).await?;
            }
            if let Some(p) = &project {
                c.require_unit("project", "projects", &org, p).await?;
            }
            let mut q = format!(
                "/v1/admin/bills?org={}&month={}&format={}",
                enc(&org),
                enc(&month),
                fmt.as_str()
            );
            if let Some(d) = &department {
                q.push_str(&format!("&department={}", enc(d)));
            }
            if let Some(p) = &project {
                q.push_str(&format!("&project={}", enc(p)));
            }
            let text = c.get_text(&q).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &text).map_err(|e| AdminError::Write {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    write_out(
                        stdout,
                        &format!(
                            "wrote the {} bill of {} for {month} to {} ({} bytes)\n",
                            fmt.as_str(),
                            project
                                .map(|p| format!("project {p}"))
                                .or(department.map(|d| format!("department {d}")))
                                .unwrap_or(format!("org {org}")),
                            path.display(),
                            text.len()
                        ),
                    )
                }
                None => write_out(stdout, &text),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn routing_views_name_project_weights() {
        let shown = render_routing(&serde_json::json!({
            "org": "acme",
            "settings": {"learning": true, "explore_permille": 50},
            "calls_with_features": 720, "explored_calls": 36,
            "active_version": "00aa", "public_key": "PK",
            "project_versions": {"atlas": "00bb"},
            "weights": [
                {"version": "00bb", "project": "atlas", "created_ms": 0, "active": true, "report": {"outcomes": 360}},
                {"version": "00aa", "project": null, "created_ms": 0, "active": true, "report": {"outcomes": 360}},
            ],
            "runs": [],
        }));
        assert!(shown.contains("served weights: 00aa"), "{shown}");
        assert!(
            shown.contains(
                "learning on, exploration 50‰, 720 auto calls with features (36 explored)\n"
            ),
            "shadow sampling is named only when on: {shown}"
        );
        let shadowing = render_routing(&serde_json::json!({
            "org": "acme",
            "settings": {"learning": true, "explore_permille": 0, "shadow_permille": 100},
            "calls_with_features": 10, "explored_calls": 0, "public_key": "PK",
        }));
        assert!(
            shadowing.contains(
                "exploration 0‰, 10 auto calls with features (0 explored), shadow sampling 100‰\n"
            ),
            "{shadowing}"
        );
        assert!(
            shown.contains("project weights (served to the project's keys): atlas 00bb"),
            "{shown}"
        );
        assert!(
            shown.contains("00bb     atlas  ") && shown.contains("00aa     (org)  "),
            "{shown}"
        );
        let learned = render_learn(&serde_json::json!({
            "org": "acme", "promoted": null, "report": {"outcomes": 720, "reason": "kept"},
            "projects": [{"org": "acme", "project": "atlas", "promoted": "00bb", "report": {"outcomes": 360, "reason": "better"}}],
        }));
        assert!(
            learned.starts_with("kept the current weights\n"),
            "{learned}"
        );
        assert!(
            learned.contains("project atlas: promoted weights 00bb"),
            "{learned}"
        );
    }

    #[test]
    fn token_is_redacted_and_urls_checked() {
        let t: Token = "secret-value".parse().unwrap();
        assert_eq!(format!("{t:?}"), "Token(***)");
        let e = AdminClient::new("localhost:8787", Some(t.clone())).unwrap_err();
        assert!(matches!(e, AdminError::BadUrl { .. }), "{e}");
        assert!(matches!(
            AdminClient::new("http://x", None).unwrap_err(),
            AdminError::NoToken
        ));
        let c = AdminClient::new("http://127.0.0.1:1/", Some(t)).unwrap();
        assert!(!format!("{c:?}").contains("secret-value"));
        assert_eq!(c.url(), "http://127.0.0.1:1");
    }

    #[test]
    fn formats_and_tables() {
        assert_eq!(
            bill_format(None, Some(Path::new("a.HTML"))),
            BillFormat::Html
        );
        assert_eq!(bill_format(None, None), BillFormat::Csv);
        assert_eq!(
            bill_format(Some(BillFormat::Json), Some(Path::new("a.html"))),
            BillFormat::Json
        );
        assert_eq!(
            table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]),
            "A    BB\nxyz  1\n"
        );
        let r = ApplyReport {
            created: vec!["org:acme".into()],
            unchanged: 3,
            removed_not_deleted: vec!["user:old".into()],
            ..Default::default()
        };
        let s = render_report(&r);
        assert!(
            s.contains("created: 1\n  org:acme\n")
                && s.contains("unchanged: 3")
                && s.contains("removed_not_deleted: 1 (")
                && s.contains("  user:old"),
            "{s}"
        );
        assert_eq!(enc("a b&c"), "a+b%26c");
    }
}
