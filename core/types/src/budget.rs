//! Who may spend what: the organization [`Level`]s, a rule's [`Denial`] and a budget's
//! [`BudgetStatus`] in its calendar [`Period`] (UTC). Plain data that errors carry; the
//! rules that produce them live in the `accounts` module of `gaterouter`, which
//! re-exports these types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Kind of a level in the organization tree, broadest first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum LevelKind {
    /// The organization.
    Org,
    /// A department of the org.
    Department,
    /// A project (inside a department or directly under the org).
    Project,
    /// A group of members.
    Group,
    /// One member.
    User,
    /// One API key.
    Key,
}

impl LevelKind {
    /// Lowercase name used in level strings (`department:eng`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One node of the organization tree, written `kind:id` (`department:eng`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Level {
    /// Kind of node.
    pub kind: LevelKind,
    /// Its id.
    pub id: String,
}

impl Level {
    /// Build one.
    pub fn new(kind: LevelKind, id: impl Into<String>) -> Self {
        Level {
            kind,
            id: id.into(),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| format!("level `{s}` is not `kind:id` (e.g. `department:eng`)"))?;
        let kind: LevelKind = kind.parse().map_err(|_| {
            format!(
                "level kind `{kind}` is not one of {}",
                <LevelKind as strum::VariantNames>::VARIANTS.join(", ")
            )
        })?;
        if id.is_empty() {
            return Err(format!("level `{s}` has an empty id"));
        }
        Ok(Level {
            kind,
            id: id.to_owned(),
        })
    }
}

impl Serialize for Level {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a call is not permitted: the rule, the level that set it, and a message that says
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// `allow_models`, `deny_models`, `allowed_tiers`, `max_tokens_per_request` or
    /// `zero_retention_only`.
    pub rule: String,
    /// Level that set the rule.
    pub level: Level,
    /// Full explanation.
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Metric {
    /// Spend in micro-dollars.
    Usd,
    /// Total tokens (prompt + completion).
    Tokens,
}

impl Metric {
    /// Lowercase name (`usd`, `tokens`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Budget period: UTC calendar hour, day or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Period {
    /// Calendar hour (UTC).
    Hour,
    /// Calendar day (UTC).
    Day,
    /// Calendar month (UTC).
    Month,
}

impl Period {
    /// `[start, end)` in unix milliseconds of the window holding `now_ms`.
    pub fn window(self, now_ms: u64) -> (u64, u64) {
        const HOUR: u64 = 3_600_000;
        const DAY: u64 = 86_400_000;
        match self {
            Period::Hour => {
                let s = now_ms - now_ms % HOUR;
                (s, s + HOUR)
            }
            Period::Day => {
                let s = now_ms - now_ms % DAY;
                (s, s + DAY)
            }
            Period::Month => {
                let days = (now_ms / DAY) as i64;
                let (y, m, _) = civil_from_days(days);
                let start = days_from_civil(y, m, 1);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let end = days_from_civil(ny, nm, 1);
                (start as u64 * DAY, end as u64 * DAY)
            }
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Hard budgets block calls that would exceed them; soft ones only warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Enforcement {
    /// Refuse calls that could exceed the limit.
    Hard,
    /// Allow, but notify at the `notify_at` thresholds.
    Soft,
}

impl Enforcement {
    /// Lowercase name (`hard`, `soft`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A budget and where it stands in its current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// A server answer, read leniently (no `deny_unknown_fields`): fields a newer collector
// adds are ignored by older SDKs (ACCOUNTS.md, "Compatibility").
pub struct BudgetStatus {
    /// Budget id.
    pub id: String,
    /// Level it is attached to.
    pub level: Level,
    /// What it counts.
    pub metric: Metric,
    /// Window.
    pub period: Period,
    /// Limit: micro-dollars for `usd`, tokens for `tokens`.
    pub limit: u64,
    /// Consumed in this window by stored records.
    pub used: u64,
    /// Held by open reservations (calls in flight or settled but not yet recorded).
    pub reserved: u64,
    /// `limit - used - reserved`, floored at 0.
    pub remaining: u64,
    /// Window start (unix ms).
    pub period_start_ms: u64,
    /// When the window resets (unix ms).
    pub resets_at_ms: u64,
    /// Hard or soft.
    pub enforcement: Enforcement,
    /// Percent thresholds that notify (e.g. `[50, 80, 100]`).
    #[serde(default)]
    pub notify_at: Vec<u8>,
}

impl BudgetStatus {
    /// Would `amount` more (micros or tokens, by metric) exceed this hard budget?
    pub fn would_exceed(&self, amount: u64) -> bool {
        self.enforcement == Enforcement::Hard && amount > self.remaining
    }

    /// Human description for errors: names the budget, period, what is left and the reset.
    pub fn describe(&self) -> String {
        let (limit, left) = match self.metric {
            Metric::Usd => (fmt_usd(self.limit), fmt_usd(self.remaining)),
            Metric::Tokens => (
                format!("{} tokens", self.limit),
                format!("{} tokens", self.remaining),
            ),
        };
        format!(
            "{} {} budget `{}` of {} set at {}: {} left, resets at {}",
            self.period.as_str(),
            match self.metric {
                Metric::Usd => "spend",
                Metric::Tokens => "token",
            },
            self.id,
            limit,
            self.level,
            left,
            iso_utc(self.resets_at_ms)
        )
    }
}

/// `$12.345678` from micro-dollars.
pub fn fmt_usd(micros: u64) -> String {
    crate::money::Micros::from(micros).to_string()
}

/// `2026-11-25T06:00:00Z` from unix ms.
pub fn iso_utc(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let (y, m, d) = civil_from_days(days);
    let secs = (ms / 1000) % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}
