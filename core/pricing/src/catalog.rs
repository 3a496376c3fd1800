//! The [`Catalog`]: the versioned price list, overrides applied, exact [`cost`] of a call's
//! usage and [`estimate_cost`] before a call.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use gaterouter_tokens::{Counting, PromptCount, count_request_with};
use gaterouter_types::error::{Error, Result};
use gaterouter_types::money::{Cost, Currency};
use gaterouter_types::types::{ChatRequest, Usage};

use crate::model::{Capabilities, ModelPrice, PriceOverrides};
use crate::price::{Price, UNITS_PER_MICRO, round_to_micros};

/// The embedded catalog text.
const BUILTIN_JSON: &str = include_str!("../data/prices.json");

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
        let part = |tokens: u64, p: Price| p.exact_units(tokens, keep);
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
    let to_u64 = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    let exact: u128 = parts.iter().sum();
    let total = round_to_micros(exact);
    let mut out = parts.map(|p| p / UNITS_PER_MICRO);
    // total - sum(floors) = round(sum of remainders) <= number of non-zero remainders.
    let mut left = total - out.iter().sum::<u128>();
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_by(|&a, &b| {
        (parts[b] % UNITS_PER_MICRO)
            .cmp(&(parts[a] % UNITS_PER_MICRO))
            .then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        if parts[i] % UNITS_PER_MICRO != 0 {
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
    use crate::model::ModelPriceOverride;
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
        // Digits past the 12th decimal are not dropped: a price that precise is refused.
        for precise in ["2.5000000000001", "2.5000001"] {
            let e = Price::parse_usd_per_million(precise).unwrap_err();
            assert!(e.contains("more than 6 decimals"), "{e}");
        }
        assert_eq!(
            Price::parse_usd_per_million("2.500000000000000")
                .unwrap()
                .micros_per_million(),
            2_500_000
        );
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
        /// The routing shortcut is `cost(...).total_micros` for a plain usage, for every
        /// model of the catalog (long-context tiers included) and amounts past 64 bits.
        #[test]
        fn plain_cost_is_the_catalog_total(
            p in prop_oneof![0u64..3_000_000, 1u64 << 40..1u64 << 50],
            c in prop_oneof![0u64..300_000, 1u64 << 40..1u64 << 50],
            i in 0usize..1000,
        ) {
            let cat = Catalog::builtin();
            let (key, price) = cat.models.iter().nth(i % cat.models.len()).unwrap();
            let full = cat.cost(&Usage::new(p, c, 0, 0, 0), key, CostOptions::default()).unwrap();
            prop_assert_eq!(price.plain_cost_micros(p, c), full.total_micros, "{}", key);
        }

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
