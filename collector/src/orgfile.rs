//! The organization file (`gaterouter admin apply FILE`): one org's tree, policies and
//! budgets, kept in version control as TOML or YAML (format in `ACCOUNTS.md`). The CLI
//! parses it locally with [`parse`] and sends it as JSON to `PUT /v1/admin/org-tree`;
//! `GET /v1/admin/org-tree?org=ID` answers the same shape, so export → apply is a no-op.

use std::collections::HashSet;

use gaterouter::accounts::{Enforcement, Metric, Period, PolicyRules};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgFile {
    /// The organization.
    pub org: OrgEntry,
    /// Departments of the org.
    #[serde(default)]
    pub departments: Vec<DepartmentEntry>,
    /// Projects (in a department or directly under the org).
    #[serde(default)]
    pub projects: Vec<UnitEntry>,
    /// Groups of members.
    #[serde(default)]
    pub groups: Vec<UnitEntry>,
    /// Members (users).
    #[serde(default)]
    pub members: Vec<MemberEntry>,
    /// API keys.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

/// `[org]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgEntry {
    /// Stable id.
    pub id: String,
    /// Display name (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Rules at `org:ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRules>,
    /// Budgets at `org:ID`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetEntry>,
}

/// `[[departments]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepartmentEntry {
    /// Stable id.
    pub id: String,
    /// Display name (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Rules at `department:ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRules>,
    /// Budgets at `department:ID`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetEntry>,
}

/// `[[projects]]` and `[[groups]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitEntry {
    /// Stable id.
    pub id: String,
    /// Display name (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Department it belongs to (none: directly under the org).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Rules at `project:ID` / `group:ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRules>,
    /// Budgets at that level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetEntry>,
}

/// `[[members]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// Stable id (the `user` of usage records).
    pub id: String,
    /// Display name (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The member's department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Groups the member belongs to (any number).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Rules at `user:ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRules>,
    /// Budgets at `user:ID`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetEntry>,
}

/// `[[keys]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The `api_key_id`.
    pub id: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Bound department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Bound project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Bound group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Bound member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ed25519 public key, standard base64 (from `gaterouter keys new`). A different
    /// value than the registered one rotates the key (the previous one stays valid for
    /// 24 h, like `POST /v1/admin/keys/{id}/rotate`).
    pub public_key: String,
    /// Rules at `key:ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRules>,
    /// Budgets at `key:ID`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetEntry>,
}

/// A budget limit as written: dollars as a decimal string or number for `usd`, an
/// integer for `tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LimitValue {
    /// An integer.
    Int(u64),
    /// A number with a fraction (dollars).
    Float(f64),
    /// A decimal string (`"5000"`, `"20000.00"`, `"0.05"`).
    Text(String),
}

/// One budget of a level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetEntry {
    /// `usd` or `tokens`.
    pub metric: Metric,
    /// `hour`, `day` or `month`.
    pub period: Period,
    /// Dollars (usd) or tokens.
    pub limit: LimitValue,
    /// `hard` (block) or `soft` (warn).
    pub enforcement: Enforcement,
    /// Percent thresholds that raise an alert once per window (default `[50, 80, 100]`
    /// for soft budgets, none for hard ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_at: Option<Vec<u8>>,
}

impl BudgetEntry {
    /// The limit in stored units (micro-dollars or tokens); the error says what to write.
    pub fn limit_units(&self) -> Result<u64, String> {
        let v = match (&self.metric, &self.limit) {
            (Metric::Usd, LimitValue::Int(n)) => n
                .checked_mul(1_000_000)
                .ok_or_else(|| format!("{n} dollars is too large"))?,
            (Metric::Usd, LimitValue::Float(f)) => parse_dollars(&format!("{f}"))?,
            (Metric::Usd, LimitValue::Text(s)) => parse_dollars(s)?,
            (Metric::Tokens, LimitValue::Int(n)) => *n,
            (Metric::Tokens, LimitValue::Text(s)) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("`{s}` is not a whole number of tokens"))?,
            (Metric::Tokens, LimitValue::Float(f)) => {
                return Err(format!("{f} is not a whole number of tokens"));
            }
        };
        if v == 0 {
            return Err("must be above 0 (delete the budget to remove the limit)".into());
        }
        if v > i64::MAX as u64 {
            return Err("is too large".into());
        }
        Ok(v)
    }

    /// `notify_at` with its default.
    pub fn notify_at_or_default(&self) -> Vec<u8> {
        match (&self.notify_at, self.enforcement) {
            (Some(v), _) => v.clone(),
            (None, Enforcement::Soft) => vec![50, 80, 100],
            (None, Enforcement::Hard) => vec![],
        }
    }
}

/// Dollars (`"12.5"`, `"$20000.00"`, `"1,000"`) to micro-dollars, exactly.
pub fn parse_dollars(s: &str) -> Result<u64, String> {
    let t: String = s
        .trim()
        .trim_start_matches('$')
        .chars()
        .filter(|c| *c != ',' && *c != '_')
        .collect();
    let bad = || {
        format!(
            "`{s}` is not an amount of dollars (write e.g. \"5000\" or \"0.05\", at most 6 decimals)"
        )
    };
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
    {
        return Err(bad());
    }
    let w: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut f: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    for _ in frac.len()..6 {
        f *= 10;
    }
    w.checked_mul(1_000_000)
        .and_then(|x| x.checked_add(f))
        .ok_or_else(bad)
}

/// Micro-dollars as the shortest exact decimal string (`5000`, `0.05`).
pub fn format_dollars(micros: u64) -> String {
    gaterouter::money::Micros::from(micros).shortest()
}

/// The stored limit back as file text (inverse of [`BudgetEntry::limit_units`]).
pub fn limit_value(metric: Metric, units: u64) -> LimitValue {
    match metric {
        Metric::Usd => LimitValue::Text(format_dollars(units)),
        Metric::Tokens => LimitValue::Int(units),
    }
}

/// File formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
    /// JSON (what the API takes).
    Json,
}

impl Format {
    /// From a file name's extension (`.toml`, `.yaml`/`.yml`, `.json`); TOML otherwise.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// Parse and validate an organization file. Errors name the entry and field.
pub fn parse(text: &str, format: Format) -> Result<OrgFile, String> {
    let f: OrgFile = match format {
        Format::Toml => {
            toml::from_str(text).map_err(|e| format!("organization file (TOML): {e}"))?
        }
        Format::Yaml => {
            serde_norway::from_str(text).map_err(|e| format!("organization file (YAML): {e}"))?
        }
        Format::Json => {
            serde_json::from_str(text).map_err(|e| format!("organization file (JSON): {e}"))?
        }
    };
    f.validate()?;
    Ok(f)
}

/// Read and parse a file, the format chosen by its extension.
pub fn load(path: &std::path::Path) -> Result<OrgFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text, Format::from_path(path))
}

fn check_id(field: &str, v: &str) -> Result<(), String> {
    if v.trim().is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
        return Err(format!(
            "{field}: `{v}` must be 1..=128 bytes without control characters"
        ));
    }
    Ok(())
}

fn check_budgets(prefix: &str, budgets: &[BudgetEntry]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (i, b) in budgets.iter().enumerate() {
        let p = format!("{prefix}budgets[{i}]");
        b.limit_units().map_err(|e| format!("{p}.limit: {e}"))?;
        for n in b.notify_at.iter().flatten() {
            if *n == 0 || *n > 100 {
                return Err(format!("{p}.notify_at: {n} is not a percentage in 1..=100"));
            }
        }
        if !seen.insert((b.metric, b.period)) {
            return Err(format!(
                "{p}: a second {:?} {} budget at the same level; keep one per metric and period",
                b.metric,
                b.period.as_str()
            ));
        }
    }
    Ok(())
}

fn check_policy(prefix: &str, p: &Option<PolicyRules>) -> Result<(), String> {
    match p {
        Some(p) => p.validate(&format!("{prefix}policy.")),
        None => Ok(()),
    }
}

fn check_ref(
    field: &str,
    v: &Option<String>,
    known: &HashSet<&str>,
    what: &str,
) -> Result<(), String> {
    match v {
        Some(v) if !known.contains(v.as_str()) => Err(format!(
            "{field}: unknown {what} `{v}`; list it under [[{what}s]] in this file"
        )),
        _ => Ok(()),
    }
}

fn unique<'a>(kind: &str, ids: impl Iterator<Item = &'a str>) -> Result<HashSet<&'a str>, String> {
    let mut set = HashSet::new();
    for (i, id) in ids.enumerate() {
        check_id(&format!("{kind}[{i}].id"), id)?;
        if !set.insert(id) {
            return Err(format!("{kind}[{i}].id: `{id}` appears twice"));
        }
    }
    Ok(set)
}

impl OrgFile {
    /// Everything serde cannot check: ids, references inside the file, rules, limits.
    pub fn validate(&self) -> Result<(), String> {
        check_id("org.id", &self.org.id)?;
        check_policy("org.", &self.org.policy)?;
        check_budgets("org.", &self.org.budgets)?;
        let deps = unique(
            "departments",
            self.departments.iter().map(|d| d.id.as_str()),
        )?;
        let projects = unique("projects", self.projects.iter().map(|d| d.id.as_str()))?;
        let groups = unique("groups", self.groups.iter().map(|d| d.id.as_str()))?;
        let members = unique("members", self.members.iter().map(|d| d.id.as_str()))?;
        unique("keys", self.keys.iter().map(|d| d.id.as_str()))?;
        for (i, d) in self.departments.iter().enumerate() {
            let p = format!("departments[{i}].");
            check_policy(&p, &d.policy)?;
            check_budgets(&p, &d.budgets)?;
        }
        for (kind, list) in [("projects", &self.projects), ("groups", &self.groups)] {
            for (i, u) in list.iter().enumerate() {
                let p = format!("{kind}[{i}].");
                check_ref(
                    &format!("{p}department"),
                    &u.department,
                    &deps,
                    "department",
                )?;
                check_policy(&p, &u.policy)?;
                check_budgets(&p, &u.budgets)?;
            }
        }
        for (i, m) in self.members.iter().enumerate() {
            let p = format!("members[{i}].");
            check_ref(
                &format!("{p}department"),
                &m.department,
                &deps,
                "department",
            )?;
            let mut seen = HashSet::new();
            for (j, g) in m.groups.iter().enumerate() {
                check_ref(
                    &format!("{p}groups[{j}]"),
                    &Some(g.clone()),
                    &groups,
                    "group",
                )?;
                if !seen.insert(g) {
                    return Err(format!("{p}groups[{j}]: `{g}` appears twice"));
                }
            }
            check_policy(&p, &m.policy)?;
            check_budgets(&p, &m.budgets)?;
        }
        for (i, k) in self.keys.iter().enumerate() {
            let p = format!("keys[{i}].");
            check_ref(
                &format!("{p}department"),
                &k.department,
                &deps,
                "department",
            )?;
            check_ref(&format!("{p}project"), &k.project, &projects, "project")?;
            check_ref(&format!("{p}group"), &k.group, &groups, "group")?;
            check_ref(&format!("{p}user"), &k.user, &members, "member")?;
            if let (Some(u), Some(d)) = (&k.user, &k.department) {
                let md = self
                    .members
                    .iter()
                    .find(|m| &m.id == u)
                    .and_then(|m| m.department.as_ref());
                if md.is_some_and(|md| md != d) {
                    return Err(format!(
                        "{p}department: `{d}` but member `{u}` is in department `{}`",
                        md.map_or("", |s| s.as_str())
                    ));
                }
            }
            crate::util::check_public_key(&k.public_key)
                .map_err(|e| format!("{p}public_key: {}", e.message))?;
            check_policy(&p, &k.policy)?;
            check_budgets(&p, &k.budgets)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pk() -> String {
        gaterouter::usage::UsageSigner::from_seed(&[3; 32])
            .public_key()
            .to_owned()
    }

    fn toml_doc() -> String {
        let pk = pk();
        format!(
            r#"
[org]
id = "acme"
name = "Acme Corp"
policy = {{ allow_models = ["openai/*"], deny_models = ["openai/o1-pro*"] }}
budgets = [{{ metric = "usd", period = "month", limit = "20000.00", enforcement = "hard" }}]

[[departments]]
id = "eng"
budgets = [{{ metric = "tokens", period = "day", limit = 50000000, enforcement = "soft", notify_at = [50, 80, 100] }}]

[[groups]]
id = "oncall"
department = "eng"

[[members]]
id = "alice"
department = "eng"
groups = ["oncall"]
budgets = [{{ metric = "usd", period = "day", limit = 0.05, enforcement = "hard" }}]

[[keys]]
id = "k1"
department = "eng"
user = "alice"
public_key = "{pk}"
"#
        )
    }

    #[test]
    fn toml_and_yaml_parse_to_the_same_thing() {
        let t = parse(&toml_doc(), Format::Toml).unwrap();
        assert_eq!(t.org.budgets[0].limit_units().unwrap(), 20_000_000_000);
        assert_eq!(t.members[0].budgets[0].limit_units().unwrap(), 50_000);
        assert_eq!(
            t.departments[0].budgets[0].limit_units().unwrap(),
            50_000_000
        );
        let yaml = serde_norway::to_string(&t).unwrap();
        let y = parse(&yaml, Format::Yaml).unwrap();
        assert_eq!(y.org.budgets[0].limit_units().unwrap(), 20_000_000_000);
        assert_eq!(y.members, t.members);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(parse(&json, Format::Json).unwrap(), t);
    }

    #[test]
    fn errors_name_entry_and_field() {
        let bad = toml_doc().replace("limit = 50000000", "limit = \"lots\"");
        let e = parse(&bad, Format::Toml).unwrap_err();
        assert!(e.starts_with("departments[0].budgets[0].limit:"), "{e}");
        let bad = toml_doc().replace("groups = [\"oncall\"]", "groups = [\"nope\"]");
        assert!(
            parse(&bad, Format::Toml)
                .unwrap_err()
                .starts_with("members[0].groups[0]: unknown group `nope`")
        );
        let bad = toml_doc().replace("openai/o1-pro*", "");
        assert!(
            parse(&bad, Format::Toml)
                .unwrap_err()
                .starts_with("org.policy.deny_models")
        );
        let bad = toml_doc().replace(&pk(), "xyz");
        assert!(
            parse(&bad, Format::Toml)
                .unwrap_err()
                .starts_with("keys[0].public_key")
        );
        let bad = toml_doc().replace("name = \"Acme Corp\"", "nme = 1");
        assert!(parse(&bad, Format::Toml).unwrap_err().contains("nme"));
    }

    #[test]
    fn the_example_in_accounts_md_parses() {
        let doc = include_str!("../ACCOUNTS.md");
        let start = doc.find("```toml\n").unwrap() + 8;
        let end = start + doc[start..].find("```").unwrap();
        let text = doc[start..end].replace("base64 Ed25519 public key", &pk());
        let f = parse(&text, Format::Toml).unwrap();
        assert_eq!(f.org.budgets[0].limit_units().unwrap(), 20_000_000_000);
        assert_eq!(
            f.departments[0].budgets[0].limit_units().unwrap(),
            5_000_000_000
        );
        assert_eq!(f.members[0].groups, vec!["oncall".to_owned()]);
        assert_eq!(f.keys[0].project.as_deref(), Some("search"));
    }

    #[test]
    fn dollars_are_exact() {
        assert_eq!(parse_dollars("0.05").unwrap(), 50_000);
        assert_eq!(parse_dollars("$1,000.000001").unwrap(), 1_000_000_001);
        assert!(
            parse_dollars("1.0000001").is_err()
                && parse_dollars("-1").is_err()
                && parse_dollars("").is_err()
                && parse_dollars(".").is_err()
        );
        for m in [1, 50_000, 1_000_000, 20_000_000_000, 1_234_567] {
            assert_eq!(parse_dollars(&format_dollars(m)).unwrap(), m);
        }
        assert_eq!(format_dollars(50_000), "0.05");
    }
}

/// A problem of an org file that parses and validates but would not do what it says:
/// a glob that matches no model of the price catalog, a provider name that does not
/// exist, a policy that no model satisfies. `gaterouter admin apply` prints them as
/// warnings (errors with `--strict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgWarning {
    /// 1-based line of the file it is about, when found.
    pub line: Option<usize>,
    /// The field (`departments[2].policy.allow_models`).
    pub field: String,
    /// What is wrong and the fix.
    pub message: String,
}

impl std::fmt::Display for OrgWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// First line (1-based) at or after line `from` that contains `needle`.
fn line_of(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

/// One level of the file: where it is (field prefix, the line of its id), its rules, and
/// the levels above it (indexes into the same list).
struct LevelRules<'a> {
    prefix: String,
    id_line: Option<usize>,
    policy: Option<&'a PolicyRules>,
    parents: Vec<usize>,
}

impl OrgFile {
    /// Check the file against a price catalog (see [`OrgWarning`]); `text` is the file as
    /// written, to name lines. Providers are those of the catalog and the SDK's built-ins.
    pub fn check_against_catalog(
        &self,
        text: &str,
        catalog: &gaterouter::pricing::Catalog,
    ) -> Vec<OrgWarning> {
        use gaterouter::accounts::glob_match;
        let models: Vec<(&str, bool)> = catalog
            .models
            .iter()
            .map(|(id, p)| (id.as_str(), p.zero_retention))
            .collect();
        let mut providers: std::collections::BTreeSet<String> = models
            .iter()
            .filter_map(|(m, _)| m.split_once('/').map(|(p, _)| p.to_owned()))
            .collect();
        if let Ok(builtin) = gaterouter::Config::default().resolved_providers("built-in") {
            providers.extend(builtin.into_keys());
        }
        let id_line =
            |id: &str| line_of(text, &format!("\"{id}\""), 1).or_else(|| line_of(text, id, 1));

        // The levels and their parents (org first).
        let mut levels: Vec<LevelRules<'_>> = vec![LevelRules {
            prefix: "org".into(),
            id_line: id_line(&self.org.id),
            policy: self.org.policy.as_ref(),
            parents: vec![],
        }];
        let mut dept_index = std::collections::HashMap::new();
        for (i, d) in self.departments.iter().enumerate() {
            dept_index.insert(d.id.as_str(), levels.len());
            levels.push(LevelRules {
                prefix: format!("departments[{i}] ({})", d.id),
                id_line: id_line(&d.id),
                policy: d.policy.as_ref(),
                parents: vec![0],
            });
        }
        let under = |dept: &Option<String>| -> Vec<usize> {
            let mut v = vec![0];
            if let Some(i) = dept.as_deref().and_then(|d| dept_index.get(d)) {
                v.push(*i);
            }
            v
        };
        let mut unit_index = std::collections::HashMap::new();
        for (kind, list) in [("projects", &self.projects), ("groups", &self.groups)] {
            for (i, u) in list.iter().enumerate() {
                unit_index.insert((kind, u.id.as_str()), levels.len());
                levels.push(LevelRules {
                    prefix: format!("{kind}[{i}] ({})", u.id),
                    id_line: id_line(&u.id),
                    policy: u.policy.as_ref(),
                    parents: under(&u.department),
                });
            }
        }
        for (i, m) in self.members.iter().enumerate() {
            unit_index.insert(("members", m.id.as_str()), levels.len());
            levels.push(LevelRules {
                prefix: format!("members[{i}] ({})", m.id),
                id_line: id_line(&m.id),
                policy: m.policy.as_ref(),
                parents: under(&m.department),
            });
        }
        for (i, k) in self.keys.iter().enumerate() {
            let mut parents = under(&k.department);
            for (kind, v) in [
                ("projects", &k.project),
                ("groups", &k.group),
                ("members", &k.user),
            ] {
                if let Some(j) = v.as_deref().and_then(|v| unit_index.get(&(kind, v))) {
                    parents.push(*j);
                }
            }
            levels.push(LevelRules {
                prefix: format!("keys[{i}] ({})", k.id),
                id_line: id_line(&k.id),
                policy: k.policy.as_ref(),
                parents,
            });
        }

        let mut out = Vec::new();
        // Globs: provider names and matches.
        for l in &levels {
            let Some(p) = l.policy else { continue };
            for (field, list) in [
                ("allow_models", &p.allow_models),
                ("deny_models", &p.deny_models),
            ] {
                for pat in list.iter().flatten() {
                    let line = line_of(text, pat, l.id_line.unwrap_or(1)).or(l.id_line);
                    let field = format!("{}.policy.{field}", l.prefix);
                    let provider = pat.split_once('/').map_or(pat.as_str(), |(p, _)| p);
                    let literal_provider = !provider.contains(['*', '?']);
                    if literal_provider && !providers.contains(provider) {
                        out.push(OrgWarning {
                            line,
                            field,
                            message: format!(
                                "`{pat}` names provider `{provider}`, which does not exist; providers: {}",
                                providers.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        });
                    } else if !models.iter().any(|(m, _)| glob_match(pat, m)) {
                        let effect = if field.ends_with("allow_models") {
                            "it allows nothing"
                        } else {
                            "it blocks nothing"
                        };
                        out.push(OrgWarning {
                            line,
                            field,
                            message: format!("`{pat}` matches no model of the price catalog ({effect}); check the spelling: model ids are `provider/model`, e.g. `anthropic/claude-haiku-*`"),
                        });
                    }
                }
            }
        }
        // Policies no model satisfies: the narrowest allow_models and zero_retention_only
        // along the chain, every deny_models above.
        for l in &levels {
            let Some(own) = l.policy else { continue };
            let chain: Vec<&PolicyRules> = l
                .parents
                .iter()
                .filter_map(|&j| levels[j].policy)
                .chain(std::iter::once(own))
                .collect();
            let allow = chain.iter().rev().find_map(|p| p.allow_models.as_ref());
            let zero_retention = chain
                .iter()
                .rev()
                .find_map(|p| p.zero_retention_only)
                .unwrap_or(false);
            let denies: Vec<&String> = chain
                .iter()
                .flat_map(|p| p.deny_models.iter().flatten())
                .collect();
            let ok = models.iter().any(|(m, zr)| {
                allow.is_none_or(|a| a.iter().any(|g| glob_match(g, m)))
                    && !denies.iter().any(|g| glob_match(g, m))
                    && (!zero_retention || *zr)
            });
            if ok {
                continue;
            }
            let rule = if zero_retention && !models.iter().any(|(_, zr)| *zr) {
                "zero_retention_only = true, and no model of the price catalog is flagged zero_retention: flag the models under your agreement in the SDK config ([prices.\"provider/model\"] zero_retention = true) or drop the rule".to_owned()
            } else {
                let mut parts = Vec::new();
                if let Some(a) = allow {
                    parts.push(format!("allow_models {a:?}"));
                }
                if !denies.is_empty() {
                    parts.push(format!("deny_models {denies:?}"));
                }
                if zero_retention {
                    parts.push("zero_retention_only = true".into());
                }
                format!(
                    "{}: no model of the price catalog is left",
                    parts.join(" with ")
                )
            };
            let line = [
                "zero_retention_only",
                "allow_models",
                "deny_models",
                "policy",
            ]
            .iter()
            .find_map(|n| line_of(text, n, l.id_line.unwrap_or(1)))
            .or(l.id_line);
            out.push(OrgWarning {
                line,
                field: format!("{}.policy", l.prefix),
                message: format!("every call would be denied: {rule}"),
            });
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod catalog_checks {
    use super::*;

    #[test]
    fn globs_providers_and_unsatisfiable_policies_are_named_with_their_line() {
        let text = "[org]\nid = \"acme\"\npolicy = { allow_models = [\"openai/*\", \"google/*\"], deny_models = [\"openai/gtp-4o\"] }\n\n[[departments]]\nid = \"legal\"\npolicy = { zero_retention_only = true }\n\n[[departments]]\nid = \"eng\"\npolicy = { allow_models = [\"anthropic/*\"] }\n";
        let f = parse(text, Format::Toml).unwrap();
        let w = f.check_against_catalog(text, gaterouter::pricing::Catalog::builtin());
        let s: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert!(
            s.iter()
                .any(|m| m.starts_with("line 3: org.policy.allow_models")
                    && m.contains("provider `google`")),
            "{s:#?}"
        );
        assert!(
            s.iter()
                .any(|m| m.starts_with("line 3: org.policy.deny_models")
                    && m.contains("openai/gtp-4o")
                    && m.contains("blocks nothing")),
            "{s:#?}"
        );
        assert!(
            s.iter()
                .any(|m| m.starts_with("line 7: departments[0] (legal).policy")
                    && m.contains("zero_retention")),
            "{s:#?}"
        );
        // eng allows anthropic/*, which the org's allow list does not include — but the
        // narrowest allow_models wins, so anthropic models are permitted: no warning.
        assert!(!s.iter().any(|m| m.contains("(eng)")), "{s:#?}");
        assert_eq!(w.len(), 3, "{s:#?}");
    }

    #[test]
    fn the_example_org_file_is_clean() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/org.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let f = parse(&text, Format::Toml).unwrap();
        let w = f.check_against_catalog(&text, gaterouter::pricing::Catalog::builtin());
        assert!(w.is_empty(), "{w:#?}");
    }
}
