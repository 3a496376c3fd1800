//! [`Price`]: integer micro-dollars per million tokens, parsed from and written as decimal
//! USD text, refusing amounts in the wrong unit.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Smallest non-zero price accepted: $0.001 per million tokens. Anything lower is almost
/// certainly a per-token or per-thousand price typed where per-million is expected.
const MIN_NONZERO_MICROS: u64 = 1_000;
/// Largest price accepted: $10,000 per million tokens.
const MAX_MICROS: u64 = 10_000 * 1_000_000;

/// Exact money: units of 1/100 pico-dollar per micro-dollar. A price is pico-dollars per
/// token, so tokens × price × (percent kept) is an exact integer in these units.
pub(crate) const UNITS_PER_MICRO: u128 = 1_000_000 * 100;

/// Exact units to micro-dollars, rounded half-up: the one rounding of every cost
/// ([`crate::Catalog::cost`]'s total and [`crate::ModelPrice::plain_cost_micros`]).
pub(crate) fn round_to_micros(units: u128) -> u128 {
    let half_up = units.saturating_add(UNITS_PER_MICRO / 2);
    // A u128 division is a library call; the amounts of real calls fit in 64 bits
    // (routing prices every candidate of every `auto` call).
    match u64::try_from(half_up) {
        Ok(x) => u128::from(x / (UNITS_PER_MICRO as u64)),
        Err(_) => half_up / UNITS_PER_MICRO,
    }
}

/// A price in integer micro-dollars per million tokens (= pico-dollars per token).
///
/// Serialized as a decimal string of USD per million tokens (`"2.50"`); parsed from such
/// a string or from a number (TOML/JSON numbers are read through their decimal text, so
/// `2.5` is exactly 2,500,000 micro-dollars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Price(u64);

impl Price {
    /// From micro-dollars per million tokens.
    pub const fn from_micros_per_million(micros: u64) -> Self {
        Price(micros)
    }

    /// Micro-dollars per million tokens.
    pub const fn micros_per_million(self) -> u64 {
        self.0
    }

    /// The exact cost of `tokens` at this price with `keep_pct` percent of it kept (100
    /// without a discount), in [units](UNITS_PER_MICRO): never rounded.
    pub(crate) fn exact_units(self, tokens: u64, keep_pct: u128) -> u128 {
        u128::from(tokens) * u128::from(self.0) * keep_pct
    }

    /// Parse USD per million tokens, e.g. `"2.50"`. At most 6 decimals; the error says
    /// what is wrong in words a config author can act on.
    pub fn parse_usd_per_million(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        let unit_hint = "prices are USD per million tokens, e.g. 2.5 for $2.50 per 1M tokens";
        if t.starts_with('-') {
            return Err(format!("price `{s}` is negative: {unit_hint}"));
        }
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!("price `{s}` is not a decimal number: {unit_hint}"));
        }
        // Value in pico-dollars per million tokens, 12 decimals, saturating on absurd input.
        let mut pico: u128 = 0;
        for b in int.bytes() {
            pico = pico.saturating_mul(10).saturating_add(u128::from(b - b'0'));
        }
        pico = pico.saturating_mul(1_000_000_000_000);
        let mut scale: u128 = 100_000_000_000;
        let mut finer_than_pico = false;
        for b in frac.bytes() {
            if scale == 0 {
                finer_than_pico |= b != b'0';
                continue;
            }
            pico = pico.saturating_add(u128::from(b - b'0') * scale);
            scale /= 10;
        }
        let min_pico = u128::from(MIN_NONZERO_MICROS) * 1_000_000;
        if (pico > 0 || finer_than_pico) && pico < min_pico {
            let per_million = pico.saturating_mul(1_000_000);
            let suggestion =
                format_micros(u64::try_from(per_million / 1_000_000).unwrap_or(u64::MAX));
            return Err(format!(
                "price `{s}` is below $0.001 per million tokens and looks like a per-token price: {unit_hint}; if `{s}` is per token, write {suggestion}"
            ));
        }
        if finer_than_pico || pico % 1_000_000 != 0 {
            return Err(format!(
                "price `{s}` has more than 6 decimals: {unit_hint}, at most 6 decimals"
            ));
        }
        let micros = u64::try_from(pico / 1_000_000).unwrap_or(u64::MAX);
        if micros > MAX_MICROS {
            return Err(format!(
                "price `{s}` is above $10,000 per million tokens: {unit_hint}; a per-billion or cents figure must be converted"
            ));
        }
        Ok(Price(micros))
    }

    /// Check the unit sanity rules on an already-built price.
    pub(crate) fn check(self) -> std::result::Result<(), String> {
        if self.0 > 0 && self.0 < MIN_NONZERO_MICROS {
            return Err(format!(
                "price of {} micro-dollars per million tokens looks like a per-token price: prices are USD per million tokens",
                self.0
            ));
        }
        if self.0 > MAX_MICROS {
            return Err(
                "price is above $10,000 per million tokens: prices are USD per million tokens"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `micros` as a decimal USD string without trailing zeros beyond two decimals.
fn format_micros(micros: u64) -> String {
    gaterouter_types::money::Micros::from(micros).trimmed()
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_micros(self.0))
    }
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Price;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a price in USD per million tokens (number or decimal string)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Price, E> {
                Price::parse_usd_per_million(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Price, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Price, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Price, E> {
                if !v.is_finite() {
                    return Err(E::custom("price must be a finite number"));
                }
                // Rust prints the shortest decimal that round-trips, never in exponent
                // form, so 2.5 -> "2.5" and 0.0000025 -> "0.0000025".
                self.visit_str(&format!("{v}"))
            }
        }
        d.deserialize_any(V)
    }
}
