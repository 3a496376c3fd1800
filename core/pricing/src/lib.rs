//! # gaterouter-pricing
//!
//! Price catalog and cost: what a call will cost before it is sent, and what it cost
//! after, from the provider's usage. Depends on `gaterouter-types` (usage, money, the
//! request) and `gaterouter-tokens` (the prompt count of an estimate); `gaterouter`
//! re-exports it as `gaterouter::pricing`.
//!
//! Map of the crate (one module):
//!
//! | item | concept |
//! |---|---|
//! | [`Catalog`] | the versioned price list: [`Catalog::builtin`], a file's, overrides applied |
//! | [`Price`], [`ModelPrice`], [`PriceTier`], [`Capabilities`] | what one model costs and can do |
//! | [`ModelPriceOverride`], [`validate_overrides`] | `[prices."provider/model"]` from the config |
//! | [`cost`], [`Cost`] | the exact cost of a call's usage |
//! | [`estimate_cost`], [`CostEstimate`] | the expected and maximum cost before a call |
//!
//! - Prices live in `core/pricing/data/prices.json` (embedded; see [`Catalog::builtin`]) as
//!   decimal strings in USD per million tokens and are held as integer
//!   **micro-dollars per million tokens** ([`Price`]), which is the same number as
//!   pico-dollars per token. No float ever touches money.
//! - A cost is computed exactly in units of 1/100 pico-dollar (so a batch percentage
//!   discount stays exact). The total is the exact sum rounded half-up to micro-dollars
//!   once; the components are then allocated by largest remainder (each gets its floor,
//!   the micro-dollars left go one each to the components with the largest fractional
//!   parts, ties to the earlier one), so they always add up to `total_micros` exactly and
//!   each is within one micro-dollar of its exact value.
//! - Users override or add models with `[prices."provider/model"]` in the config
//!   ([`ModelPriceOverride`]); an override in the wrong unit (per token instead of per
//!   million) is refused with an error naming the field and the fix.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use gaterouter_tokens::{Counting, PromptCount, count_request_with};
use gaterouter_types::error::{Error, Result};
pub use gaterouter_types::money::{Cost, Currency};
use gaterouter_types::types::{ChatRequest, Usage};

/// The embedded catalog text.
const BUILTIN_JSON: &str = include_str!("../data/prices.json");

/// Smallest non-zero price accepted: $0.001 per million tokens. Anything lower is almost
/// certainly a per-token or per-thousand price typed where per-million is expected.
const MIN_NONZERO_MICROS: u64 = 1_000;
/// Largest price accepted: $10,000 per million tokens.
const MAX_MICROS: u64 = 10_000 * 1_000_000;

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
        if pico % 1_000_000 != 0 {
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
    fn check(self) -> std::result::Result<(), String> {
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

/// What a model can do (used by routing and validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capabilities {
    /// Function / tool calling.
    pub tools: bool,
    /// Image input.
    pub vision: bool,
    /// JSON-schema constrained output.
    pub json_schema: bool,
    /// Hidden reasoning (thinking) tokens.
    pub reasoning: bool,
}

/// Prices that replace the base prices when the prompt exceeds a threshold. The whole
/// request (input and output) is billed at the tier (Gemini 2.5 Pro, Claude Sonnet 4/4.5
/// long context). Absent fields keep the base price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    /// The tier applies when `prompt_tokens` is strictly greater than this.
    pub above_input_tokens: u64,
    /// Input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Price>,
    /// Output price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Price>,
    /// Cached-input read price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Price>,
    /// 5-minute cache write price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<Price>,
    /// 1-hour cache write price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<Price>,
    /// Reasoning price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Price>,
}

/// The prices and limits of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Uncached input.
    pub input: Price,
    /// Output (including reasoning unless `reasoning` is set).
    pub output: Price,
    /// Input read from the prompt cache. Absent: billed as `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Price>,
    /// Input written to a 5-minute cache (Anthropic: 1.25x input). Absent: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<Price>,
    /// Input written to a 1-hour cache (Anthropic: 2x input). Absent: `cache_write_5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<Price>,
    /// Reasoning tokens, where billed separately from output. Absent: `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Price>,
    /// Batch API discount in percent (50 = half price). Absent: no batch API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_discount_pct: Option<u8>,
    /// Long-context tiers, ascending by threshold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<PriceTier>,
    /// Context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Largest completion in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output: Option<u64>,
    /// What the model can do.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// The provider contractually does not retain prompts/outputs (e.g. a ZDR agreement).
    /// Default false: set it in your config when your account has such terms.
    #[serde(default)]
    pub zero_retention: bool,
    /// Where the price was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When it was read (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

impl ModelPrice {
    /// Check unit sanity and internal consistency; `Err((field, message))`.
    fn validate(&self) -> std::result::Result<(), (String, String)> {
        let prices = [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cached_input", self.cached_input),
            ("cache_write_5m", self.cache_write_5m),
            ("cache_write_1h", self.cache_write_1h),
            ("reasoning", self.reasoning),
        ];
        for (field, p) in prices {
            if let Some(p) = p {
                p.check().map_err(|m| (field.to_owned(), m))?;
            }
        }
        if let Some(pct) = self.batch_discount_pct {
            if pct > 100 {
                return Err((
                    "batch_discount_pct".into(),
                    format!(
                        "batch_discount_pct {pct} is above 100: give a percentage, 50 for half price"
                    ),
                ));
            }
        }
        let mut last = None;
        for (i, t) in self.tiers.iter().enumerate() {
            if last.is_some_and(|l| t.above_input_tokens <= l) {
                return Err((
                    format!("tiers[{i}].above_input_tokens"),
                    "tiers must be in ascending order of above_input_tokens".into(),
                ));
            }
            last = Some(t.above_input_tokens);
            for (field, p) in [
                ("input", t.input),
                ("output", t.output),
                ("cached_input", t.cached_input),
                ("cache_write_5m", t.cache_write_5m),
                ("cache_write_1h", t.cache_write_1h),
                ("reasoning", t.reasoning),
            ] {
                if let Some(p) = p {
                    p.check().map_err(|m| (format!("tiers[{i}].{field}"), m))?;
                }
            }
        }
        Ok(())
    }

    /// The price table that applies to a request with `prompt_tokens` input tokens.
    fn effective(&self, prompt_tokens: u64) -> (Rates, Option<u64>) {
        let mut r = Rates {
            input: self.input,
            output: self.output,
            cached_input: self.cached_input.unwrap_or(self.input),
            cache_write_5m: self.cache_write_5m.unwrap_or(self.input),
            cache_write_1h: self
                .cache_write_1h
                .or(self.cache_write_5m)
                .unwrap_or(self.input),
            reasoning: self.reasoning.unwrap_or(self.output),
        };
        let tier = self
            .tiers
            .iter()
            .rev()
            .find(|t| prompt_tokens > t.above_input_tokens);
        if let Some(t) = tier {
            r.input = t.input.unwrap_or(r.input);
            r.output = t.output.unwrap_or(r.output);
            r.cached_input = t.cached_input.unwrap_or(r.cached_input);
            r.cache_write_5m = t.cache_write_5m.unwrap_or(r.cache_write_5m);
            r.cache_write_1h = t
                .cache_write_1h
                .or(t.cache_write_5m)
                .unwrap_or(r.cache_write_1h);
            r.reasoning = t
                .reasoning
                .or(if self.reasoning.is_some() {
                    None
                } else {
                    t.output
                })
                .unwrap_or(r.reasoning);
        }
        (r, tier.map(|t| t.above_input_tokens))
    }
}

#[derive(Debug, Clone, Copy)]
struct Rates {
    input: Price,
    output: Price,
    cached_input: Price,
    cache_write_5m: Price,
    cache_write_1h: Price,
    reasoning: Price,
}

/// A user's change to one model's prices (`[prices."provider/model"]` in the config).
/// For a model already in the catalog every field is optional; a new model needs at
/// least `input` and `output`. Prices are USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPriceOverride {
    /// Uncached input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Price>,
    /// Output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Price>,
    /// Cached-input read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Price>,
    /// 5-minute cache write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<Price>,
    /// 1-hour cache write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<Price>,
    /// Reasoning, where billed separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Price>,
    /// Batch discount percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_discount_pct: Option<u8>,
    /// Replaces the long-context tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<PriceTier>>,
    /// Context window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Max output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output: Option<u64>,
    /// Replaces the capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Zero data retention for your account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_retention: Option<bool>,
    /// Where the price comes from (e.g. your contract).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

/// All overrides, keyed by `provider/model` (the `prices` table of the config).
pub type PriceOverrides = BTreeMap<String, ModelPriceOverride>;

/// Prices of many models, keyed by `provider/model`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Data-file version.
    pub version: u32,
    /// Prices by `provider/model`.
    pub models: BTreeMap<String, ModelPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: u32,
    currency: String,
    #[allow(dead_code)]
    unit: String,
    #[allow(dead_code)]
    note: String,
    models: BTreeMap<String, ModelPrice>,
}

/// Options for [`cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CostOptions {
    /// The call went through the provider's batch API.
    pub batch: bool,
    /// Cache writes used the 1-hour cache (Anthropic) rather than the 5-minute one.
    pub cache_write_1h: bool,
}

/// Options for [`Catalog::estimate_cost_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EstimateOptions {
    /// Completion tokens you expect. Default: [`DEFAULT_EXPECTED_COMPLETION_TOKENS`],
    /// capped at the maximum.
    pub expected_completion_tokens: Option<u64>,
    /// Price at the batch discount.
    pub batch: bool,
    /// How prompt text is counted: the tokenizer (default) or the one-pass
    /// [`Counting::Fast`] estimate (a few percent of error, cold cost in microseconds).
    pub counting: Counting,
}

/// Default expected completion length when the caller gives none.
pub const DEFAULT_EXPECTED_COMPLETION_TOKENS: u64 = 500;

/// A cost estimate before the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostEstimate {
    /// Prompt tokens (exact or estimated) and their breakdown.
    pub prompt: PromptCount,
    /// Completion tokens assumed for `expected`.
    pub expected_completion_tokens: u64,
    /// Completion bound used for `max`: `max_tokens`, else the model's max output, else
    /// what is left of its context window.
    pub max_completion_tokens: u64,
    /// Cost with the expected completion.
    pub expected: Cost,
    /// Cost if the model writes `max_completion_tokens`.
    pub max: Cost,
}

impl Catalog {
    /// The built-in catalog, parsed once.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The embedded file is checked by tests; an empty catalog (every lookup an
            // error naming the fix) is safer than a panic if it were ever broken.
            Catalog::from_json_str(BUILTIN_JSON).unwrap_or(Catalog {
                version: 0,
                models: BTreeMap::new(),
            })
        })
    }

    /// Parse a catalog in the `prices.json` format.
    pub fn from_json_str(text: &str) -> Result<Catalog> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: CatalogFile = serde_path_to_error::deserialize(de).map_err(|e| {
            Error::config(
                format!("prices.json: {}", e.path()),
                e.inner().to_string(),
                "fix the price catalog entry",
            )
        })?;
        if file.currency != "USD" {
            return Err(Error::config(
                "prices.json: currency",
                format!("currency `{}` is not supported", file.currency),
                "use USD",
            ));
        }
        for (key, p) in &file.models {
            p.validate().map_err(|(field, msg)| {
                Error::config(
                    format!("prices.json: models.\"{key}\".{field}"),
                    msg,
                    "correct the price",
                )
            })?;
        }
        Ok(Catalog {
            version: file.version,
            models: file.models,
        })
    }

    /// A copy with the user's overrides applied and checked. Errors name
    /// `prices."provider/model".field` and say how to fix it.
    pub fn with_overrides(&self, overrides: &PriceOverrides) -> Result<Catalog> {
        let mut out = self.clone();
        for (key, o) in overrides {
            let loc = |field: &str| format!("prices.\"{key}\".{field}");
            if !key.contains('/') {
                return Err(Error::config(
                    format!("prices.\"{key}\""),
                    "price keys are `provider/model`",
                    format!("write [prices.\"openai/{key}\"] or the provider you use"),
                ));
            }
            let base = match self.lookup(key) {
                Some((_, p)) => p.clone(),
                None => {
                    let (Some(input), Some(output)) = (o.input, o.output) else {
                        let missing = if o.input.is_none() { "input" } else { "output" };
                        return Err(Error::config(
                            loc(missing),
                            format!(
                                "`{key}` is not in the built-in catalog, so `{missing}` is required"
                            ),
                            "give both input and output in USD per million tokens",
                        ));
                    };
                    ModelPrice {
                        input,
                        output,
                        cached_input: None,
                        cache_write_5m: None,
                        cache_write_1h: None,
                        reasoning: None,
                        batch_discount_pct: None,
                        tiers: Vec::new(),
                        context_window: None,
                        max_output: None,
                        capabilities: Capabilities::default(),
                        zero_retention: false,
                        source: None,
                        as_of: None,
                    }
                }
            };
            let merged = ModelPrice {
                input: o.input.unwrap_or(base.input),
                output: o.output.unwrap_or(base.output),
                cached_input: o.cached_input.or(base.cached_input),
                cache_write_5m: o.cache_write_5m.or(base.cache_write_5m),
                cache_write_1h: o.cache_write_1h.or(base.cache_write_1h),
                reasoning: o.reasoning.or(base.reasoning),
                batch_discount_pct: o.batch_discount_pct.or(base.batch_discount_pct),
                tiers: o.tiers.clone().unwrap_or(base.tiers),
                context_window: o.context_window.or(base.context_window),
                max_output: o.max_output.or(base.max_output),
                capabilities: o.capabilities.unwrap_or(base.capabilities),
                zero_retention: o.zero_retention.unwrap_or(base.zero_retention),
                source: o.source.clone().or(base.source),
                as_of: o.as_of.clone().or(base.as_of),
            };
            merged.validate().map_err(|(field, msg)| {
                Error::config(
                    loc(&field),
                    msg,
                    format!(
                        "set {field} in USD per million tokens (e.g. input = 2.5 for $2.50 per 1M)"
                    ),
                )
            })?;
            out.models.insert(key.clone(), merged);
        }
        Ok(out)
    }

    /// The entry for `model` and its catalog key. Tries the exact `provider/model`, then
    /// without a date or version suffix (`-2024-08-06`, `-20250929`, `-latest`, `-2411`),
    /// then (for a bare name) the unique entry whose model part matches.
    pub fn lookup(&self, model: &str) -> Option<(&str, &ModelPrice)> {
        let m = model.trim();
        let m = m.strip_prefix("models/").unwrap_or(m);
        let try_key = |k: &str| self.models.get_key_value(k).map(|(k, v)| (k.as_str(), v));
        if let Some(hit) = try_key(m) {
            return Some(hit);
        }
        let (provider, name) = match m.split_once('/') {
            Some((p, n)) => (Some(p), n.strip_prefix("models/").unwrap_or(n)),
            None => (None, m),
        };
        let mut candidates = vec![name.to_owned()];
        let mut cur = name.to_owned();
        while let Some(stripped) = strip_version_suffix(&cur) {
            candidates.push(stripped.clone());
            cur = stripped;
        }
        for c in &candidates {
            match provider {
                Some(p) => {
                    if let Some(hit) = try_key(&format!("{p}/{c}")) {
                        return Some(hit);
                    }
                }
                None => {
                    let mut hits = self
                        .models
                        .iter()
                        .filter(|(k, _)| k.split_once('/').is_some_and(|(_, n)| n == c));
                    if let (Some((k, v)), None) = (hits.next(), hits.next()) {
                        return Some((k.as_str(), v));
                    }
                }
            }
        }
        None
    }

    fn require(&self, model: &str) -> Result<(&str, &ModelPrice)> {
        self.lookup(model).ok_or_else(|| {
            Error::config(
                format!("prices.\"{model}\""),
                format!("no price is known for `{model}`"),
                format!("add [prices.\"{model}\"] with input and output (USD per million tokens) to the config"),
            )
        })
    }

    /// The cost of a finished call from the provider's usage (OpenAI convention:
    /// `prompt_tokens` includes cached and cache-write tokens, `completion_tokens`
    /// includes reasoning). The long-context tier is chosen by `prompt_tokens`.
    /// Inconsistent usage (parts larger than the whole) is clamped, never a panic.
    pub fn cost(&self, usage: &Usage, model: &str, opts: CostOptions) -> Result<Cost> {
        let (key, price) = self.require(model)?;
        let discount = match (opts.batch, price.batch_discount_pct) {
            (false, _) => 0,
            (true, Some(pct)) => u128::from(pct.min(100)),
            (true, None) => {
                return Err(Error::config(
                    format!("prices.\"{key}\".batch_discount_pct"),
                    format!("`{key}` has no batch pricing"),
                    format!(
                        "set batch_discount_pct in [prices.\"{key}\"] or price the call without batch"
                    ),
                ));
            }
        };
        let (rates, tier) = price.effective(usage.prompt_tokens);
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let written = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
        let uncached = usage.prompt_tokens - cached - written;
        let reasoning = usage.reasoning_tokens.min(usage.completion_tokens);
        let visible = usage.completion_tokens - reasoning;
        let write_rate = if opts.cache_write_1h {
            rates.cache_write_1h
        } else {
            rates.cache_write_5m
        };
        // Units of 1/100 pico-dollar: tokens * (pico-dollars per token) * (100 - discount%).
        let keep = 100 - discount;
        let part =
            |tokens: u64, p: Price| u128::from(tokens) * u128::from(p.micros_per_million()) * keep;
        let parts = [
            part(uncached, rates.input),
            part(cached, rates.cached_input),
            part(written, write_rate),
            part(visible, rates.output),
            part(reasoning, rates.reasoning),
        ];
        let (
            total_micros,
            [
                input_micros,
                cached_input_micros,
                cache_write_micros,
                output_micros,
                reasoning_micros,
            ],
        ) = allocate(parts);
        Ok(Cost {
            total_micros,
            input_micros,
            cached_input_micros,
            cache_write_micros,
            output_micros,
            reasoning_micros,
            currency: Currency::Usd,
            priced_as: key.to_owned(),
            batch: opts.batch,
            tier_above_input_tokens: tier,
        })
    }

    /// Estimate before the call with default options.
    pub fn estimate_cost(&self, req: &ChatRequest, model: &str) -> Result<CostEstimate> {
        self.estimate_cost_with(req, model, EstimateOptions::default())
    }

    /// Estimate before the call: prompt tokens counted with [`gaterouter_tokens::count_request`], the
    /// completion bounded by `max_tokens` (or the model's max output), and both an
    /// expected and a maximum cost.
    pub fn estimate_cost_with(
        &self,
        req: &ChatRequest,
        model: &str,
        opts: EstimateOptions,
    ) -> Result<CostEstimate> {
        let (_, price) = self.require(model)?;
        let prompt = count_request_with(req, model, opts.counting);
        let max_completion = req
            .max_tokens
            .map(u64::from)
            .or(price.max_output)
            .or(price
                .context_window
                .map(|c| c.saturating_sub(prompt.tokens)))
            .unwrap_or(DEFAULT_EXPECTED_COMPLETION_TOKENS);
        let expected_completion = opts
            .expected_completion_tokens
            .unwrap_or(DEFAULT_EXPECTED_COMPLETION_TOKENS)
            .min(max_completion);
        let copts = CostOptions {
            batch: opts.batch,
            cache_write_1h: false,
        };
        let usage = |completion: u64| Usage::new(prompt.tokens, completion, 0, 0, 0);
        Ok(CostEstimate {
            expected: self.cost(&usage(expected_completion), model, copts)?,
            max: self.cost(&usage(max_completion), model, copts)?,
            prompt,
            expected_completion_tokens: expected_completion,
            max_completion_tokens: max_completion,
        })
    }
}

/// `name` without one trailing date/version suffix, or `None`.
fn strip_version_suffix(name: &str) -> Option<String> {
    let (head, tail) = name.rsplit_once('-')?;
    let digits = tail.bytes().all(|b| b.is_ascii_digit());
    // `-latest`, `-20250929`, `-2411` / `-0613`.
    if tail == "latest" || (digits && (tail.len() == 8 || tail.len() == 4)) {
        return Some(head.to_owned());
    }
    // `-YYYY-MM-DD`
    if tail.len() == 2 && digits {
        let parts: Vec<&str> = name.rsplitn(4, '-').collect();
        if parts.len() == 4
            && parts[1].len() == 2
            && parts[2].len() == 4
            && parts[..3]
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Some(parts[3].to_owned());
        }
    }
    None
}

/// Check config overrides against the built-in catalog; errors name `source` (the
/// config file) and `prices."provider/model".field`.
pub fn validate_overrides(overrides: &PriceOverrides, source: &str) -> Result<()> {
    match Catalog::builtin().with_overrides(overrides) {
        Ok(_) => Ok(()),
        Err(Error::Config {
            location,
            message,
            fix,
        }) => Err(Error::config(format!("{source}: {location}"), message, fix)),
        Err(e) => Err(e),
    }
}

/// Exact parts (units of 1/100 pico-dollar) to micro-dollars: the total rounded half-up
/// once, the parts by largest remainder so they sum to it exactly.
fn allocate<const N: usize>(parts: [u128; N]) -> (u64, [u64; N]) {
    const UNIT_PER_MICRO: u128 = 1_000_000 * 100;
    let to_u64 = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    let exact: u128 = parts.iter().sum();
    let total = (exact + UNIT_PER_MICRO / 2) / UNIT_PER_MICRO;
    let mut out = parts.map(|p| p / UNIT_PER_MICRO);
    // total - sum(floors) = round(sum of remainders) <= number of non-zero remainders.
    let mut left = total - out.iter().sum::<u128>();
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_by(|&a, &b| {
        (parts[b] % UNIT_PER_MICRO)
            .cmp(&(parts[a] % UNIT_PER_MICRO))
            .then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        if parts[i] % UNIT_PER_MICRO != 0 {
            out[i] += 1;
            left -= 1;
        }
    }
    (to_u64(total), out.map(to_u64))
}

/// Cost of a finished call with the built-in catalog.
pub fn cost(usage: &Usage, model: &str, opts: CostOptions) -> Result<Cost> {
    Catalog::builtin().cost(usage, model, opts)
}

/// Cost estimate before a call with the built-in catalog.
pub fn estimate_cost(req: &ChatRequest, model: &str) -> Result<CostEstimate> {
    Catalog::builtin().estimate_cost(req, model)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gaterouter_types::types::Message;
    use proptest::prelude::*;

    #[test]
    fn builtin_parses_and_covers_the_required_models() {
        let c = Catalog::from_json_str(BUILTIN_JSON).unwrap();
        for m in [
            "openai/gpt-4o",
            "openai/gpt-4o-mini",
            "openai/gpt-4.1",
            "openai/gpt-4.1-mini",
            "openai/gpt-4.1-nano",
            "openai/o3",
            "openai/o4-mini",
            "openai/gpt-5",
            "openai/gpt-5-mini",
            "openai/gpt-5-nano",
            "anthropic/claude-opus-4-1",
            "anthropic/claude-sonnet-4-5",
            "anthropic/claude-haiku-4-5",
            "anthropic/claude-3-5-haiku",
            "gemini/gemini-2.5-pro",
            "gemini/gemini-2.5-flash",
            "gemini/gemini-2.5-flash-lite",
            "gemini/gemini-2.0-flash",
            "deepseek/deepseek-chat",
            "deepseek/deepseek-reasoner",
            "mistral/mistral-large",
            "mistral/mistral-medium",
            "mistral/mistral-small",
            "mistral/codestral",
        ] {
            let p = &c.models[m];
            assert!(
                p.source
                    .as_deref()
                    .is_some_and(|s| s.starts_with("https://")),
                "{m}"
            );
            assert!(p.as_of.is_some(), "{m}");
        }
        assert_eq!(Catalog::builtin().models.len(), c.models.len());
    }

    #[test]
    fn parse_prices() {
        assert_eq!(
            Price::parse_usd_per_million("2.50")
                .unwrap()
                .micros_per_million(),
            2_500_000
        );
        assert_eq!(
            Price::parse_usd_per_million("0.075")
                .unwrap()
                .micros_per_million(),
            75_000
        );
        assert_eq!(
            Price::parse_usd_per_million("15")
                .unwrap()
                .micros_per_million(),
            15_000_000
        );
        assert_eq!(
            Price::parse_usd_per_million("0")
                .unwrap()
                .micros_per_million(),
            0
        );
        for bad in ["-1", "abc", "", ".", "1.2.3", "1e-6"] {
            assert!(Price::parse_usd_per_million(bad).is_err(), "{bad}");
        }
        let e = Price::parse_usd_per_million("0.0000025").unwrap_err();
        assert!(e.contains("per-token") && e.contains("write 2.5"), "{e}");
        assert!(
            Price::parse_usd_per_million("20000")
                .unwrap_err()
                .contains("10,000")
        );
        assert_eq!(
            Price::from_micros_per_million(2_500_000).to_string(),
            "2.50"
        );
        assert_eq!(Price::from_micros_per_million(75_000).to_string(), "0.075");
    }

    #[test]
    fn lookup_normalizes_names() {
        let c = Catalog::builtin();
        assert_eq!(
            c.lookup("openai/gpt-4o-2024-08-06").unwrap().0,
            "openai/gpt-4o"
        );
        assert_eq!(
            c.lookup("anthropic/claude-sonnet-4-5-20250929").unwrap().0,
            "anthropic/claude-sonnet-4-5"
        );
        assert_eq!(
            c.lookup("mistral/mistral-large-latest").unwrap().0,
            "mistral/mistral-large"
        );
        assert_eq!(
            c.lookup("mistral/mistral-large-2411").unwrap().0,
            "mistral/mistral-large"
        );
        assert_eq!(
            c.lookup("gemini/models/gemini-2.5-pro").unwrap().0,
            "gemini/gemini-2.5-pro"
        );
        assert_eq!(c.lookup("gpt-4o-mini").unwrap().0, "openai/gpt-4o-mini");
        assert_eq!(
            c.lookup("anthropic/claude-3-5-haiku-latest").unwrap().0,
            "anthropic/claude-3-5-haiku"
        );
        assert!(c.lookup("openai/gpt-4o-mini-tts").is_none());
        assert!(c.lookup("nope/thing").is_none());
    }

    #[test]
    fn cost_features() {
        let c = Catalog::builtin();
        // gpt-4o: 1000 in (200 cached) + 500 out: 800*2.5 + 200*1.25 + 500*10 = 2000+250+5000 micro.
        let k = c
            .cost(
                &Usage::new(1000, 500, 200, 0, 0),
                "openai/gpt-4o",
                CostOptions::default(),
            )
            .unwrap();
        assert_eq!(
            (
                k.input_micros,
                k.cached_input_micros,
                k.output_micros,
                k.total_micros
            ),
            (2000, 250, 5000, 7250)
        );
        let b = c
            .cost(
                &Usage::new(1000, 500, 200, 0, 0),
                "openai/gpt-4o",
                CostOptions {
                    batch: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(b.total_micros, 3625);
        // Sonnet 4.5 above 200k: everything at the long-context tier.
        let t = c
            .cost(
                &Usage::new(200_001, 1000, 0, 0, 0),
                "anthropic/claude-sonnet-4-5",
                CostOptions::default(),
            )
            .unwrap();
        assert_eq!(t.tier_above_input_tokens, Some(200_000));
        assert_eq!(t.input_micros, 1_200_006);
        assert_eq!(t.output_micros, 22_500);
        // Cache write 1h = 2x input.
        let w = c
            .cost(
                &Usage::new(1000, 0, 0, 1000, 0),
                "anthropic/claude-haiku-4-5",
                CostOptions {
                    cache_write_1h: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(w.cache_write_micros, 2000);
        // DeepSeek has no batch API: a clear error.
        let e = c
            .cost(
                &Usage::new(1, 1, 0, 0, 0),
                "deepseek/deepseek-chat",
                CostOptions {
                    batch: true,
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("batch"), "{e}");
        // Unknown model names the fix.
        let e = c
            .cost(&Usage::default(), "acme/x", CostOptions::default())
            .unwrap_err();
        assert!(e.to_string().contains("[prices.\"acme/x\"]"), "{e}");
    }

    #[test]
    fn rounding_is_half_up_once() {
        // gpt-5-nano input $0.05/M: 10 tokens = 0.5 micro -> rounds to 1; 9 tokens = 0.45 -> 0.
        let c = Catalog::builtin();
        assert_eq!(
            c.cost(
                &Usage::new(10, 0, 0, 0, 0),
                "openai/gpt-5-nano",
                CostOptions::default()
            )
            .unwrap()
            .total_micros,
            1
        );
        assert_eq!(
            c.cost(
                &Usage::new(9, 0, 0, 0, 0),
                "openai/gpt-5-nano",
                CostOptions::default()
            )
            .unwrap()
            .total_micros,
            0
        );
        // Two components of 0.4 micro each: the total (0.8) rounds to 1, which goes to the
        // earlier of the tied parts, so the parts still add up to the total.
        let k = c
            .cost(
                &Usage::new(8, 1, 0, 0, 0),
                "openai/gpt-5-nano",
                CostOptions::default(),
            )
            .unwrap();
        assert_eq!((k.input_micros, k.output_micros, k.total_micros), (1, 0, 1));
        // deepseek-chat, 31 in + 9 out: 8.68 + 3.78 = 12.46 -> 12. Rounded on their own the
        // parts were 9 + 4 = 13; by largest remainder they are 8 + 4 (0.78 beats 0.68).
        let d = c
            .cost(
                &Usage::new(31, 9, 0, 0, 0),
                "deepseek/deepseek-chat",
                CostOptions::default(),
            )
            .unwrap();
        assert_eq!(
            (d.input_micros, d.output_micros, d.total_micros),
            (8, 4, 12),
            "{d:?}"
        );
    }

    #[test]
    fn overrides_apply_and_unit_errors_are_named() {
        let mut o = PriceOverrides::new();
        o.insert(
            "openai/gpt-4o".into(),
            ModelPriceOverride {
                input: Some(Price::from_micros_per_million(1_000_000)),
                ..Default::default()
            },
        );
        o.insert(
            "local/llama".into(),
            ModelPriceOverride {
                input: Some(Price::default()),
                output: Some(Price::default()),
                ..Default::default()
            },
        );
        let c = Catalog::builtin().with_overrides(&o).unwrap();
        assert_eq!(
            c.models["openai/gpt-4o"].input.micros_per_million(),
            1_000_000
        );
        assert_eq!(
            c.models["openai/gpt-4o"].output.micros_per_million(),
            10_000_000
        );
        assert_eq!(
            c.cost(
                &Usage::new(100, 100, 0, 0, 0),
                "local/llama",
                CostOptions::default()
            )
            .unwrap()
            .total_micros,
            0
        );

        let mut bad = PriceOverrides::new();
        bad.insert(
            "openai/gpt-4o".into(),
            ModelPriceOverride {
                output: Some(Price::from_micros_per_million(10)),
                ..Default::default()
            },
        );
        let e = Catalog::builtin()
            .with_overrides(&bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("prices.\"openai/gpt-4o\".output") && e.contains("per million"),
            "{e}"
        );

        let mut new = PriceOverrides::new();
        new.insert(
            "acme/m".into(),
            ModelPriceOverride {
                input: Some(Price::from_micros_per_million(1_000_000)),
                ..Default::default()
            },
        );
        let e = Catalog::builtin()
            .with_overrides(&new)
            .unwrap_err()
            .to_string();
        assert!(e.contains("prices.\"acme/m\".output"), "{e}");
        // From TOML via the config: core/tests/config_prices.rs (the config is a layer up).
    }

    #[test]
    fn estimate_gives_expected_and_max() {
        let mut req = ChatRequest::new(
            "openai/gpt-4o-mini",
            vec![Message::user("Write a haiku about rust.")],
        );
        req.max_tokens = Some(1000);
        let e = estimate_cost(&req, "openai/gpt-4o-mini").unwrap();
        assert!(e.prompt.exact);
        assert_eq!(e.max_completion_tokens, 1000);
        assert_eq!(e.expected_completion_tokens, 500);
        assert!(e.max.total_micros > e.expected.total_micros);
        assert_eq!(e.max.output_micros, 600);
        req.max_tokens = None;
        let e = estimate_cost(&req, "anthropic/claude-haiku-4-5").unwrap();
        assert!(!e.prompt.exact);
        assert_eq!(e.max_completion_tokens, 64_000);
        let json = serde_json::to_value(&e.expected).unwrap();
        assert_eq!(json["currency"], "USD");
    }

    proptest! {
        #[test]
        fn parts_sum_to_the_total_and_stay_within_one_micro(
            p in 0u64..3_000_000, c in 0u64..300_000, cached in 0u64..3_000_000, w in 0u64..3_000_000, r in 0u64..300_000,
            batch in any::<bool>(), one_hour in any::<bool>(),
            model in prop::sample::select(vec!["openai/gpt-4o", "openai/gpt-5-nano", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-pro", "deepseek/deepseek-chat", "openai/gpt-4.1", "anthropic/claude-haiku-4-5"]),
        ) {
            let cached = cached.min(p);
            let w = w.min(p - cached);
            let r = r.min(c);
            let usage = Usage::new(p, c, cached, w, r);
            let cat = Catalog::builtin();
            let opts = CostOptions { batch, cache_write_1h: one_hour };
            let Ok(k) = cat.cost(&usage, model, opts) else { return Ok(()) }; // no batch price
            prop_assert_eq!(k.input_micros + k.cached_input_micros + k.cache_write_micros + k.output_micros + k.reasoning_micros, k.total_micros, "{:?}", k);
            // Each part within one micro-dollar of its exact value: compare with the part
            // priced alone (a one-kind usage), whose total is that part rounded half-up.
            let alone = cat.cost(&Usage::new(p - cached - w, 0, 0, 0, 0), model, CostOptions { batch, cache_write_1h: one_hour }).unwrap();
            prop_assert!(k.input_micros.abs_diff(alone.total_micros) <= 1 || alone.tier_above_input_tokens != k.tier_above_input_tokens, "{:?} vs {:?}", k, alone);
        }

        #[test]
        fn cost_is_monotonic_in_each_token_kind(
            p in 0u64..2_000_000, c in 0u64..200_000, cached in 0u64..1_000_000, w in 0u64..1_000_000, r in 0u64..200_000,
            which in 0usize..5, d in 1u64..10_000, model in prop::sample::select(vec!["openai/gpt-4o", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-pro", "deepseek/deepseek-chat", "anthropic/claude-opus-4-1"]),
        ) {
            // Build consistent usage, then add `d` tokens of one kind (growing the totals
            // that include it, as a provider would).
            let cached = cached.min(p);
            let w = w.min(p - cached);
            let r = r.min(c);
            let base = Usage::new(p, c, cached, w, r);
            let more = match which {
                0 => Usage::new(p + d, c, cached, w, r),
                1 => Usage::new(p + d, c, cached + d, w, r),
                2 => Usage::new(p + d, c, cached, w + d, r),
                3 => Usage::new(p, c + d, cached, w, r),
                _ => Usage::new(p, c + d, cached, w, r + d),
            };
            let cat = Catalog::builtin();
            let a = cat.cost(&base, model, CostOptions::default()).unwrap();
            let b = cat.cost(&more, model, CostOptions::default()).unwrap();
            prop_assert!(b.total_micros >= a.total_micros, "{base:?} -> {more:?}: {} > {}", a.total_micros, b.total_micros);
        }
    }
}
