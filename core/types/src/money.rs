//! Money as integers: every amount is micro-dollars (10⁻⁶ USD) and is written out exactly,
//! in one of three decimal forms, by this module only. [`Cost`], what one call cost, lives
//! here too, so the chat types carry it without depending on the price catalog
//! (`gaterouter::pricing` computes it).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of micro-dollars. Signed, so differences and credits fit; on the wire it is
/// a plain integer (`#[serde(transparent)]`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    /// From an unsigned count (saturating at `i64::MAX`, about 9.2 trillion dollars).
    pub fn from_unsigned(micros: u64) -> Micros {
        Micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    fn parts(self) -> (&'static str, u64, u64) {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        (sign, a / 1_000_000, a % 1_000_000)
    }

    /// All six decimals: `12.345678`, `0.000000`, `-1.250000`.
    pub fn fixed(self) -> String {
        let (sign, whole, frac) = self.parts();
        format!("{sign}{whole}.{frac:06}")
    }

    /// At least two decimals, no trailing zeros beyond: `0.00`, `12.50`, `0.000123`.
    pub fn trimmed(self) -> String {
        let (sign, whole, frac) = self.parts();
        let mut f = format!("{frac:06}");
        while f.len() > 2 && f.ends_with('0') {
            f.pop();
        }
        format!("{sign}{whole}.{f}")
    }

    /// The shortest exact form: `5000`, `0.05`, `1.000001`.
    pub fn shortest(self) -> String {
        let (sign, whole, frac) = self.parts();
        if frac == 0 {
            return format!("{sign}{whole}");
        }
        let f = format!("{frac:06}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }

    /// Dollars as a float, for telemetry and charts only (exact to the micro-dollar up to
    /// about 9 billion dollars).
    pub fn as_f64_dollars(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl From<u64> for Micros {
    fn from(micros: u64) -> Micros {
        Micros::from_unsigned(micros)
    }
}

/// `$12.345678` (six decimals, as bills and budgets print).
impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sign, whole, frac) = self.parts();
        write!(f, "{sign}${whole}.{frac:06}")
    }
}

/// Currency of a [`Cost`]; always US dollars today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Currency {
    /// US dollars.
    #[default]
    #[serde(rename = "USD")]
    Usd,
}

/// The cost of one call in integer micro-dollars (1 USD = 1,000,000).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Exact total, rounded half-up once.
    pub total_micros: u64,
    /// Uncached input.
    pub input_micros: u64,
    /// Cached-input reads.
    pub cached_input_micros: u64,
    /// Cache writes.
    pub cache_write_micros: u64,
    /// Output other than reasoning.
    pub output_micros: u64,
    /// Reasoning tokens (at the reasoning price, or the output price).
    pub reasoning_micros: u64,
    /// Always `USD`.
    pub currency: Currency,
    /// The catalog entry used (`provider/model`).
    pub priced_as: String,
    /// Whether the batch discount was applied.
    pub batch: bool,
    /// The long-context tier applied, by its threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_above_input_tokens: Option<u64>,
}

impl Cost {
    /// The total as a USD decimal string (`"0.012345"`).
    pub fn total_usd(&self) -> String {
        Micros::from(self.total_micros).fixed()
    }
}

#[cfg(test)]
mod tests {
    use super::Micros;

    #[test]
    fn forms_are_exact() {
        assert_eq!(Micros(12_345_678).fixed(), "12.345678");
        assert_eq!(Micros(0).fixed(), "0.000000");
        assert_eq!(Micros(-1_250_000).fixed(), "-1.250000");
        assert_eq!(Micros(0).trimmed(), "0.00");
        assert_eq!(Micros(12_500_000).trimmed(), "12.50");
        assert_eq!(Micros(123).trimmed(), "0.000123");
        assert_eq!(Micros(-1_250_000).trimmed(), "-1.25");
        assert_eq!(Micros(5_000_000_000).shortest(), "5000");
        assert_eq!(Micros(50_000).shortest(), "0.05");
        assert_eq!(Micros(1_000_001).shortest(), "1.000001");
        assert_eq!(Micros(12_345_678).to_string(), "$12.345678");
        assert_eq!(Micros(-5).to_string(), "-$0.000005");
        assert_eq!(Micros::from(u64::MAX), Micros(i64::MAX));
        assert_eq!(Micros(i64::MIN).trimmed(), "-9223372036854.775808");
        assert_eq!(Micros(2_500_000).as_f64_dollars(), 2.5);
    }
}
