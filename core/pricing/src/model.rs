//! One model's prices and capabilities ([`ModelPrice`], [`PriceTier`], [`Capabilities`])
//! and a user's override of them ([`ModelPriceOverride`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::price::{Price, round_to_micros};

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
    pub(crate) fn validate(&self) -> std::result::Result<(), (String, String)> {
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

    /// The total, in micro-dollars, of a call with `prompt_tokens` uncached input and
    /// `completion_tokens` output (no cache, no batch): what [`crate::Catalog::cost`]
    /// answers as `total_micros` for that usage, without building a [`crate::Cost`]
    /// (routing estimates every candidate of every `auto` call this way). Exact integer
    /// arithmetic, rounded half-up once by the same rule.
    pub fn plain_cost_micros(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        let (rates, _) = self.effective(prompt_tokens);
        let total = round_to_micros(
            rates.input.exact_units(prompt_tokens, 100)
                + rates.output.exact_units(completion_tokens, 100),
        );
        u64::try_from(total).unwrap_or(u64::MAX)
    }

    /// The price table that applies to a request with `prompt_tokens` input tokens.
    pub(crate) fn effective(&self, prompt_tokens: u64) -> (Rates, Option<u64>) {
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

/// The rates in force for one call (the base prices or a long-context tier's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    pub(crate) input: Price,
    pub(crate) output: Price,
    pub(crate) cached_input: Price,
    pub(crate) cache_write_5m: Price,
    pub(crate) cache_write_1h: Price,
    pub(crate) reasoning: Price,
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
