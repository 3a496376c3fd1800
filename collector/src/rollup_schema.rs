//! What the rollup tables are: their grains, key columns and measures, and the SQL that
//! creates them and fills them from the raw records. Pure data and SQL text (no database
//! access), so `db`'s migrations can create the tables from the same definitions that
//! ingest and analytics use.

/// One rollup table: its name, its period column and how a raw record gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grain {
    /// Table name.
    pub table: &'static str,
    /// The period column (first key column).
    pub period: &'static str,
    /// The period of a raw record, as SQL over `usage_records`.
    pub period_of_record: &'static str,
    /// Length of a period in ms (`None`: calendar months, `yyyymm`).
    pub period_ms: Option<i64>,
}

impl Grain {
    /// The period of a call that started at `ts_start_ms` (Unix ms) in `month`
    /// (`yyyymm`, UTC).
    pub fn period_of(self, ts_start_ms: i64, month: i64) -> i64 {
        match self.period_ms {
            Some(p) => ts_start_ms.div_euclid(p) * p,
            None => month,
        }
    }
}

/// Hourly rollups: hour buckets, and any range on whole hours.
pub const HOUR: Grain = Grain {
    table: "usage_rollup_hour",
    period: "hour_ms",
    period_of_record: "(ts_start / 3600000) * 3600000",
    period_ms: Some(3_600_000),
};

/// Daily rollups (UTC days): day buckets, and any range on whole days (a year by day
/// reads 365 periods per unit instead of 8,760).
pub const DAY: Grain = Grain {
    table: "usage_rollup_day",
    period: "day_ms",
    period_of_record: "(ts_start / 86400000) * 86400000",
    period_ms: Some(86_400_000),
};

/// Monthly rollups (`month` = `yyyymm` of the call's start, UTC, as the raw records
/// store it): month buckets and ranges on whole months.
pub const MONTH: Grain = Grain {
    table: "usage_rollup_month",
    period: "month",
    period_of_record: "month",
    period_ms: None,
};

/// Every grain, finest first; each is maintained at ingest.
pub const GRAINS: [Grain; 3] = [HOUR, DAY, MONTH];

/// Key columns after the period, in order (the same in every grain).
pub const UNIT_KEYS: &[&str] = &[
    "org",
    "department",
    "project",
    "grp",
    "usr",
    "api_key_id",
    "provider",
    "model",
    "route_tier",
    "route_mode",
    "status",
];

/// How a measure combines rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// Summed.
    Sum,
    /// The largest value (times of the last call).
    Max,
}

/// One measure column: its name, how it combines, and its value for one raw record (SQL
/// over `usage_records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// Column name.
    pub name: &'static str,
    /// How rows combine.
    pub agg: Agg,
    /// The value one raw record contributes.
    pub of_record: &'static str,
}

const fn sum(name: &'static str, of_record: &'static str) -> Measure {
    Measure {
        name,
        agg: Agg::Sum,
        of_record,
    }
}

/// Measure columns of every rollup table, in order.
pub const MEASURES: &[Measure] = &[
    sum("calls", "1"),
    sum("errors", "is_error"),
    sum("denials", "CASE WHEN status = 'denied' THEN 1 ELSE 0 END"),
    sum("prompt_tokens", "prompt_tokens"),
    sum("completion_tokens", "completion_tokens"),
    sum("total_tokens", "total_tokens"),
    sum("spend_micros", "spend_micros"),
    sum("client_cost_micros", "client_cost_micros"),
    sum("baseline_micros", "COALESCE(baseline_micros, 0)"),
    sum(
        "baseline_spend_micros",
        "CASE WHEN baseline_micros IS NULL THEN 0 ELSE spend_micros END",
    ),
    sum("latency_ms_sum", "latency_ms"),
    sum("cost_mismatches", "cost_mismatch"),
    Measure {
        name: "last_start_ms",
        agg: Agg::Max,
        of_record: "ts_start",
    },
    Measure {
        name: "last_end_ms",
        agg: Agg::Max,
        of_record: "ts_end",
    },
];

/// Number of unit key columns.
pub const N_UNITS: usize = 11;
/// Number of measure columns.
pub const N_MEASURES: usize = 14;

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Where the unit column `k` sits in [`UNIT_KEYS`] (a build error if it is not there).
const fn unit_index(k: &str) -> usize {
    let mut i = 0;
    while i < UNIT_KEYS.len() {
        if same(UNIT_KEYS[i], k) {
            return i;
        }
        i += 1;
    }
    panic!("not a rollup unit column")
}

/// Where the measure `name` sits in [`MEASURES`] (a build error if it is not there).
pub const fn measure_index(name: &str) -> usize {
    let mut i = 0;
    while i < MEASURES.len() {
        if same(MEASURES[i].name, name) {
            return i;
        }
        i += 1;
    }
    panic!("not a rollup measure")
}

const fn unit_indices<const N: usize>(keys: &[&str]) -> [usize; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = unit_index(keys[i]);
        i += 1;
    }
    out
}

/// A unit column's value for one raw record (`''` for an absent unit).
fn unit_of_record(k: &str) -> String {
    unit_of(k, "")
}

/// [`unit_of_record`] with the record's columns qualified by `prefix` (e.g. `r.`).
fn unit_of(k: &str, prefix: &str) -> String {
    match k {
        "org" | "api_key_id" | "provider" | "model" | "status" => format!("{prefix}{k}"),
        other => format!("COALESCE({prefix}{other}, '')"),
    }
}

/// The raw records as rollup-shaped rows (one per record: the unit columns with `''` for
/// absent units, every measure, and `ts_start`/`month` for buckets), filtered by
/// `where_clause`: what analytics reads when no rollup can answer exactly, so every
/// report has one query over either source.
pub fn records_as_rows(where_clause: &str) -> String {
    let units = UNIT_KEYS
        .iter()
        .map(|k| format!("{} AS {k}", unit_of_record(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let measures = MEASURES
        .iter()
        .map(|m| format!("{} AS {}", m.of_record, m.name))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT ts_start, month, {units}, {measures} FROM usage_records{where_clause}")
}

/// How a derived table is keyed and what it holds: its period column, its other key
/// columns with their SQL types, and its measures (with how they combine). Creating the
/// table and upserting into it both read it.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Table name.
    pub table: &'static str,
    /// The period column (first key column, BIGINT).
    pub period: &'static str,
    /// The other key columns, in order, with their SQL types.
    pub keys: Vec<(&'static str, &'static str)>,
    /// The measure columns (BIGINT), in order, and how rows combine.
    pub measures: Vec<(&'static str, Agg)>,
}

impl Layout {
    /// `CREATE TABLE`, keyed by the period and the key columns.
    pub fn create_sql(&self) -> String {
        let cols = self
            .keys
            .iter()
            .map(|(k, ty)| format!("{k} {ty} NOT NULL"))
            .chain(
                self.measures
                    .iter()
                    .map(|(m, _)| format!("{m} BIGINT NOT NULL")),
            )
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "CREATE TABLE {t} ({p} BIGINT NOT NULL, {cols}, PRIMARY KEY ({keys}))",
            t = self.table,
            p = self.period,
            keys = self.key_columns()
        )
    }

    /// The key columns, the period first, comma-separated.
    pub fn key_columns(&self) -> String {
        std::iter::once(self.period)
            .chain(self.keys.iter().map(|(k, _)| *k))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The measure columns, comma-separated.
    pub fn measure_columns(&self) -> String {
        self.measures
            .iter()
            .map(|(m, _)| *m)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Columns per row: the period, the keys, the measures.
    pub fn width(&self) -> usize {
        1 + self.keys.len() + self.measures.len()
    }
}

fn text_keys(keys: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    keys.iter().map(|k| (*k, "TEXT")).collect()
}

fn measures_of(ms: &[Measure]) -> Vec<(&'static str, Agg)> {
    ms.iter().map(|m| (m.name, m.agg)).collect()
}

/// The layout of one rollup grain.
pub fn layout(g: Grain) -> Layout {
    Layout {
        table: g.table,
        period: g.period,
        keys: text_keys(UNIT_KEYS),
        measures: measures_of(MEASURES),
    }
}

/// `CREATE TABLE` of one grain.
pub fn create_table_sql(g: Grain) -> String {
    layout(g).create_sql()
}

/// The secondary index of one grain (org and department first: scoped dashboards).
pub fn index_sql(g: Grain) -> String {
    format!(
        "CREATE INDEX {t}_org_dept ON {t} (org, department, {p})",
        t = g.table,
        p = g.period
    )
}

/// Fill one (empty) grain from the raw records selected by `where_clause`.
pub fn fill_sql(g: Grain, where_clause: &str) -> String {
    let units = UNIT_KEYS
        .iter()
        .map(|k| unit_of_record(k))
        .collect::<Vec<_>>()
        .join(", ");
    let measures = MEASURES
        .iter()
        .map(|m| match m.agg {
            Agg::Sum => format!("CAST(COALESCE(SUM({}), 0) AS BIGINT)", m.of_record),
            Agg::Max => format!("CAST(MAX({}) AS BIGINT)", m.of_record),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let group = (1..=N_UNITS + 1)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {t} ({p}, {keys}, {names}) SELECT {pr}, {units}, {measures} FROM usage_records{where_clause} GROUP BY {group}",
        t = g.table,
        p = g.period,
        keys = UNIT_KEYS.join(", "),
        names = measure_names(),
        pr = g.period_of_record,
    )
}

/// The measure column names, comma-separated.
pub fn measure_names() -> String {
    MEASURES
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Latency histograms (`usage_latency_month`): per calendar month × org × department ×
/// provider × model × route tier × metric (`latency`, `ttft`) × bucket, the calls and
/// errors whose time fell in the bucket. Percentiles over any set of whole months read
/// these few rows instead of every record. Member, key, group and project are left out
/// (they would multiply the rows); filters on them read the raw records.
pub const LATENCY: Grain = Grain {
    table: "usage_latency_month",
    period: "month",
    period_of_record: "month",
    period_ms: None,
};

/// Unit key columns of [`LATENCY`] after the period (text).
pub const LATENCY_UNITS: &[&str] = &["org", "department", "provider", "model", "route_tier"];
/// Number of [`LATENCY_UNITS`].
pub const N_LATENCY_UNITS: usize = 5;
/// Positions of [`LATENCY_UNITS`] in [`UNIT_KEYS`].
pub const LATENCY_UNIT_INDEX: [usize; N_LATENCY_UNITS] = unit_indices(LATENCY_UNITS);

/// What a latency histogram row measures.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "lowercase")]
pub enum LatencyMetric {
    /// The whole call (`latency_ms`).
    Latency,
    /// Time to the first token of a streamed call (`ttft_ms`).
    Ttft,
}

impl LatencyMetric {
    /// Both, in stored order.
    pub const ALL: &'static [LatencyMetric] = <LatencyMetric as strum::VariantArray>::VARIANTS;

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The raw record column it reads.
    pub fn column(self) -> &'static str {
        match self {
            LatencyMetric::Latency => "latency_ms",
            LatencyMetric::Ttft => "ttft_ms",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<LatencyMetric> {
        s.parse().ok()
    }
}

/// The histogram bucket of a time in ms: the value rounded up to three significant
/// digits (exact below 1 s, at most 1 % above), so a percentile read from the buckets is
/// the value at three significant digits, whichever source answers.
pub fn latency_bucket(ms: i64) -> i64 {
    let mut step = 1i64;
    while ms >= step.saturating_mul(1000) && step < 1_000_000_000_000 {
        step *= 10;
    }
    ms.saturating_add(step - 1) / step * step
}

/// [`latency_bucket`] in SQL over column `col` (both backends: integer division).
pub fn latency_bucket_sql(col: &str) -> String {
    let mut sql = format!("CASE WHEN {col} < 1000 THEN {col}");
    let mut step = 10i64;
    while step <= 1_000_000_000_000 {
        sql.push_str(&format!(
            " WHEN {col} < {} THEN (({col} + {}) / {step}) * {step}",
            step * 1000,
            step - 1
        ));
        step *= 10;
    }
    sql.push_str(&format!(" ELSE {col} END"));
    sql
}

/// The layout of the latency histograms: units, metric and bucket; calls and errors.
pub fn latency_layout() -> Layout {
    let mut keys = text_keys(LATENCY_UNITS);
    keys.extend([("metric", "TEXT"), ("le_ms", "BIGINT")]);
    Layout {
        table: LATENCY.table,
        period: LATENCY.period,
        keys,
        measures: vec![("calls", Agg::Sum), ("errors", Agg::Sum)],
    }
}

/// Fill the (empty) latency histograms from the raw records, one statement per metric.
pub fn fill_latency_sql() -> Vec<String> {
    let units = LATENCY_UNITS
        .iter()
        .map(|k| unit_of_record(k))
        .collect::<Vec<_>>()
        .join(", ");
    LatencyMetric::ALL
        .iter()
        .map(|m| {
            let col = m.column();
            format!(
                "INSERT INTO {t} ({p}, {keys}, metric, le_ms, calls, errors) SELECT {pr}, {units}, '{name}', {b}, COUNT(*), CAST(SUM(is_error) AS BIGINT)
                 FROM usage_records WHERE {col} IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 8",
                t = LATENCY.table,
                p = LATENCY.period,
                keys = LATENCY_UNITS.join(", "),
                pr = LATENCY.period_of_record,
                name = m.as_str(),
                b = latency_bucket_sql(col),
            )
        })
        .collect()
}

/// Request-tag rollups (`usage_tag_rollup_month`): per calendar month × org × department
/// × project × provider × model × tag key × tag value, the calls, errors, tokens and
/// spend of the records carrying that tag. Spend by scenario (`tag:scenario`) over whole
/// months reads these. A record has at most one value per key, so the calls without a
/// key are the unit's calls minus the tagged ones. At worst (a distinct value per record)
/// it holds as many rows as `usage_tags`.
pub const TAGS: Grain = Grain {
    table: "usage_tag_rollup_month",
    period: "month",
    period_of_record: "month",
    period_ms: None,
};

/// Unit key columns of [`TAGS`] after the period (then `k`, `v`).
pub const TAG_UNITS: &[&str] = &["org", "department", "project", "provider", "model"];
/// Number of [`TAG_UNITS`].
pub const N_TAG_UNITS: usize = 5;
/// Positions of [`TAG_UNITS`] in [`UNIT_KEYS`].
pub const TAG_UNIT_INDEX: [usize; N_TAG_UNITS] = unit_indices(TAG_UNITS);
/// Measure columns of [`TAGS`] (sums), with their value for one raw record.
pub const TAG_MEASURES: &[Measure] = &[
    sum("calls", "1"),
    sum("errors", "is_error"),
    sum("total_tokens", "total_tokens"),
    sum("spend_micros", "spend_micros"),
];
/// Number of [`TAG_MEASURES`].
pub const N_TAG_MEASURES: usize = 4;
/// Positions of [`TAG_MEASURES`] in [`MEASURES`].
pub const TAG_MEASURE_INDEX: [usize; N_TAG_MEASURES] = {
    let mut out = [0; N_TAG_MEASURES];
    let mut i = 0;
    while i < N_TAG_MEASURES {
        out[i] = measure_index(TAG_MEASURES[i].name);
        i += 1;
    }
    out
};

/// The layout of the tag rollups: units, tag key and value; [`TAG_MEASURES`].
pub fn tags_layout() -> Layout {
    let mut keys = text_keys(TAG_UNITS);
    keys.extend([("k", "TEXT"), ("v", "TEXT")]);
    Layout {
        table: TAGS.table,
        period: TAGS.period,
        keys,
        measures: measures_of(TAG_MEASURES),
    }
}

/// Fill the (empty) tag rollups from the raw records and their tags.
pub fn fill_tags_sql() -> String {
    let units = TAG_UNITS
        .iter()
        .map(|k| unit_of(k, "r."))
        .collect::<Vec<_>>()
        .join(", ");
    let measures = TAG_MEASURES
        .iter()
        .map(|m| {
            let v = if m.of_record == "1" {
                "1".to_owned()
            } else {
                format!("r.{}", m.of_record)
            };
            format!("CAST(COALESCE(SUM({v}), 0) AS BIGINT)")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {t} ({p}, {keys}, k, v, {names}) SELECT r.month, {units}, t.k, t.v, {measures}
         FROM usage_records r JOIN usage_tags t ON t.org = r.org AND t.record_id = r.id GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
        t = TAGS.table,
        p = TAGS.period,
        keys = TAG_UNITS.join(", "),
        names = TAG_MEASURES.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    )
}

/// The statements of a migration that (re)creates every rollup table from the current
/// definitions and fills it from the raw records: rollups are derived data, so a change
/// of their shape is a new migration calling this (migration 11 is the first).
pub fn recreate_statements() -> Vec<String> {
    let mut out = Vec::new();
    for g in GRAINS {
        out.push(format!("DROP TABLE IF EXISTS {}", g.table));
        out.push(create_table_sql(g));
        out.push(index_sql(g));
        out.push(fill_sql(g, ""));
    }
    out.push(format!("DROP TABLE IF EXISTS {}", LATENCY.table));
    out.push(latency_layout().create_sql());
    out.extend(fill_latency_sql());
    out.push(format!("DROP TABLE IF EXISTS {}", TAGS.table));
    out.push(tags_layout().create_sql());
    out.push(fill_tags_sql());
    // Analytics read the rollups now: the wide covering index of the raw records (only
    // analytics used it) costs every insert; bills and drill-downs filter by org and
    // month.
    out.push("DROP INDEX IF EXISTS usage_month_org_dept".to_owned());
    out.push("CREATE INDEX usage_month_org ON usage_records (month, org)".to_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_lists() {
        assert_eq!(UNIT_KEYS.len(), N_UNITS);
        assert_eq!(MEASURES.len(), N_MEASURES);
    }

    #[test]
    fn tag_fill_reads_the_record_columns() {
        let f = fill_tags_sql();
        for want in [
            "r.org",
            "COALESCE(r.department, '')",
            "COALESCE(r.project, '')",
            "r.provider",
            "r.model",
            "SUM(r.spend_micros)",
            "SUM(1)",
        ] {
            assert!(f.contains(want), "{want} in {f}");
        }
        assert_eq!(TAG_UNITS.len(), N_TAG_UNITS);
        assert_eq!(TAG_MEASURES.len(), N_TAG_MEASURES);
    }

    #[test]
    fn periods() {
        let t = 1_770_000_000_123; // 2026-02-02T02:40:00.123Z
        assert_eq!(HOUR.period_of(t, 202602), 1_769_997_600_000);
        assert_eq!(DAY.period_of(t, 202602), 1_769_990_400_000);
        assert_eq!(MONTH.period_of(t, 202602), 202602);
    }

    #[test]
    fn latency_buckets_keep_three_significant_digits() {
        for (v, b) in [
            (0, 0),
            (7, 7),
            (999, 999),
            (1000, 1000),
            (1001, 1010),
            (1234, 1240),
            (9991, 10000),
            (56_789, 56_800),
            (123_456_789, 124_000_000),
        ] {
            assert_eq!(latency_bucket(v), b, "{v}");
        }
        for v in [1i64, 999, 1001, 20_000, 99_999, 1_000_001, 86_400_000] {
            let b = latency_bucket(v);
            assert!(b >= v && (b - v) * 100 <= v, "{v} -> {b}: within 1 %");
        }
    }

    #[test]
    fn fill_and_create_name_every_column() {
        for g in GRAINS {
            let c = create_table_sql(g);
            let f = fill_sql(g, "");
            for k in UNIT_KEYS {
                assert!(c.contains(&format!("{k} TEXT NOT NULL")), "{k}");
                assert!(f.contains(k), "{k}");
            }
            for m in MEASURES {
                assert!(c.contains(&format!("{} BIGINT NOT NULL", m.name)));
                assert!(f.contains(m.of_record));
            }
        }
    }
}
