//! Answers about a request before (or without) sending it: the routing decision, the
//! prompt tokens and the cost. Records mirroring the core's types, conversions only.

use gaterouter as core;

use crate::error::GateRouterError;
use crate::types::Usage;

/// How the model was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RouteMode {
    /// `model = "auto"`: the router scored the request.
    Auto,
    /// The request named its model.
    Explicit,
}

/// The complexity tier a score maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Tier {
    /// A cheap model will very likely do.
    Light,
    /// Middle ground.
    Standard,
    /// Send to the strong model.
    Heavy,
}

/// How candidates are ranked (`routing.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RoutePolicy {
    /// Lowest estimated cost first.
    Cheapest,
    /// Cost weighed against the tier list's order.
    Balanced,
    /// The tier list's order.
    Quality,
    /// Lowest observed latency first.
    Fastest,
}

/// One feature's part in the score.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RouteFeature {
    /// Feature name (as in the weights file).
    pub name: String,
    /// Raw value: a count, share or token estimate.
    pub value: f64,
    /// The normalized value the weight multiplies.
    pub normalized: f64,
    /// The weight.
    pub weight: f64,
    /// `weight * normalized`: its push on the log-odds of the score.
    pub contribution: f64,
}

/// A ranked candidate model.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RouteCandidate {
    /// `provider/model`.
    pub model: String,
    /// Estimated cost with the expected completion length (micro-USD), when priced.
    pub estimated_cost_micros: Option<u64>,
    /// Estimated cost if the model writes `max_tokens` (micro-USD), when priced.
    pub max_cost_micros: Option<u64>,
    /// Context window, when known.
    pub context_window: Option<u64>,
    /// Observed latency, when known.
    pub latency_ms: Option<f64>,
    /// The tier list it came from (auto only).
    pub tier: Option<Tier>,
    /// Its predicted success on this request in [0, 1], when the router's weights have a
    /// success model for it (weights calibrated on outcomes of several models).
    pub predicted_success: Option<f64>,
}

/// A model left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ExcludedModel {
    /// `provider/model`.
    pub model: String,
    /// Why it cannot serve this request (no key, not permitted, context too small...).
    pub reason: String,
}

/// Where a request would go, and why. Nothing was sent to compute it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RouteDecision {
    /// Auto or explicit.
    pub mode: RouteMode,
    /// Complexity score in [0, 1] (auto only).
    pub score: Option<f64>,
    /// The tier the score maps to (auto only).
    pub tier: Option<Tier>,
    /// The tier the chosen model came from, when the scored tier had no usable model.
    pub served_tier: Option<Tier>,
    /// Every feature's contribution to the score (auto only).
    pub features: Vec<RouteFeature>,
    /// Ranking policy.
    pub policy: RoutePolicy,
    /// The model tried first.
    pub chosen: String,
    /// `chosen` first, then the fallbacks in order.
    pub candidates: Vec<RouteCandidate>,
    /// Models left out, with the reason.
    pub excluded: Vec<ExcludedModel>,
    /// One line saying why `chosen` was chosen.
    pub reason: String,
    /// Rough prompt size used for the context and cost checks.
    pub estimated_prompt_tokens: u64,
    /// Version (fingerprint, 16 hex digits) of the router weights that scored the
    /// request (auto only): the builtin ones, a weights file's, or the organization's
    /// learned weights served by the collector with the policy.
    pub weights_version: Option<String>,
    /// Exploration and propensity, when the organization learns from outcomes.
    pub learning: Option<RouteLearning>,
}

/// What an `auto` decision logged for learning, when the organization learns from
/// outcomes.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct RouteLearning {
    /// The tier was drawn by exploration, not by the score.
    pub explored: bool,
    /// Probability the policy gave the arm the call went to (heavy vs lighter tiers).
    pub propensity: f64,
    /// The model was drawn by within-tier exploration, not the tier's policy.
    pub model_explored: bool,
    /// Probability the router gave the chosen model: its tier's probability times the
    /// model's within its tier.
    pub model_propensity: f64,
    /// The tier the score alone would have picked.
    pub scored_tier: Tier,
}

/// Where a request's prompt tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct TokenBreakdown {
    /// Message text.
    pub text: u64,
    /// Chat formatting: per-message overhead, roles, reply priming.
    pub overhead: u64,
    /// Participant `name` fields.
    pub names: u64,
    /// Tool definitions, tool choice and a JSON-schema response format.
    pub tools: u64,
    /// Images.
    pub images: u64,
    /// Images whose size was unknown (URLs) and were counted at an assumed size.
    pub images_assumed: u32,
}

/// A request's prompt tokens as its model bills them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct TokenCount {
    /// Total prompt tokens.
    pub tokens: u64,
    /// True when counted with the model's real tokenizer and published formulas
    /// (OpenAI text-only requests); otherwise a calibrated estimate.
    pub exact: bool,
    /// Where they come from.
    pub breakdown: TokenBreakdown,
}

/// Tokens of a plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct TextTokenCount {
    /// Token count.
    pub tokens: u64,
    /// True when counted with the model's real tokenizer.
    pub exact: bool,
}

/// The cost of a call in integer micro-dollars (1 USD = 1 000 000).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
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
    /// Reasoning tokens.
    pub reasoning_micros: u64,
    /// Always `USD`.
    pub currency: String,
    /// The total as a decimal string (`"0.012345"`).
    pub total_usd: String,
    /// The catalog entry used (`provider/model`).
    pub priced_as: String,
    /// Whether the batch discount was applied.
    pub batch: bool,
    /// The long-context price tier applied, by its threshold.
    pub tier_above_input_tokens: Option<u64>,
}

/// A request's cost before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CostEstimate {
    /// Prompt tokens.
    pub prompt: TokenCount,
    /// Completion tokens assumed for `expected`.
    pub expected_completion_tokens: u64,
    /// Completion bound used for `max` (`max_tokens`, else the model's limit).
    pub max_completion_tokens: u64,
    /// Cost with the expected completion.
    pub expected: Cost,
    /// Cost if the model writes `max_completion_tokens`.
    pub max: Cost,
}

/// Pricing options for [`calculate_cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Record)]
pub struct CostOptions {
    /// The call went through the provider's batch API.
    #[uniffi(default = false)]
    pub batch: bool,
    /// Cache writes used the 1-hour cache (Anthropic) rather than the 5-minute one.
    #[uniffi(default = false)]
    pub cache_write_1h: bool,
}

/// Tokens of `text` as `model` (`provider/model`) counts them. Exact for OpenAI
/// encodings, a calibrated estimate for other providers.
#[uniffi::export]
pub fn count_text_tokens(text: String, model: String) -> TextTokenCount {
    let c = core::tokens::count_text(&text, &model);
    TextTokenCount {
        tokens: c.tokens as u64,
        exact: c.exact,
    }
}

/// The cost of a finished call from its usage, with the built-in price catalog (a
/// client's `[prices]` overrides apply to the `cost` of its own responses).
#[uniffi::export]
pub fn calculate_cost(
    usage: Usage,
    model: String,
    options: CostOptions,
) -> Result<Cost, GateRouterError> {
    let u = core::Usage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.total_tokens,
        cached_prompt_tokens: usage.cached_prompt_tokens,
        cache_write_tokens: usage.cache_write_tokens,
        reasoning_tokens: usage.reasoning_tokens,
    };
    let opts = core::pricing::CostOptions {
        batch: options.batch,
        cache_write_1h: options.cache_write_1h,
    };
    Ok(core::pricing::cost(&u, &model, opts)?.into())
}

// ---- core -> binding ----

impl From<core::routing::Tier> for Tier {
    fn from(t: core::routing::Tier) -> Self {
        match t {
            core::routing::Tier::Light => Tier::Light,
            core::routing::Tier::Standard => Tier::Standard,
            core::routing::Tier::Heavy => Tier::Heavy,
        }
    }
}

impl From<core::routing::select::Policy> for RoutePolicy {
    fn from(p: core::routing::select::Policy) -> Self {
        use core::routing::select::Policy;
        match p {
            Policy::Cheapest => RoutePolicy::Cheapest,
            Policy::Balanced => RoutePolicy::Balanced,
            Policy::Quality => RoutePolicy::Quality,
            Policy::Fastest => RoutePolicy::Fastest,
        }
    }
}

impl From<core::routing::RouteDecision> for RouteDecision {
    fn from(d: core::routing::RouteDecision) -> Self {
        RouteDecision {
            mode: match d.mode {
                core::usage::RouteMode::Auto => RouteMode::Auto,
                core::usage::RouteMode::Explicit => RouteMode::Explicit,
            },
            score: d.score,
            tier: d.tier.map(Into::into),
            served_tier: d.served_tier.map(Into::into),
            features: d
                .features
                .into_iter()
                .map(|f| RouteFeature {
                    name: f.name.into_owned(),
                    value: f.value,
                    normalized: f.normalized,
                    weight: f.weight,
                    contribution: f.contribution,
                })
                .collect(),
            policy: d.policy.into(),
            chosen: d.chosen,
            candidates: d
                .candidates
                .into_iter()
                .map(|c| RouteCandidate {
                    model: c.model,
                    estimated_cost_micros: c.estimated_cost_micros,
                    max_cost_micros: c.max_cost_micros,
                    context_window: c.context_window,
                    latency_ms: c.latency_ms,
                    tier: c.tier.map(Into::into),
                    predicted_success: c.predicted_success,
                })
                .collect(),
            excluded: d
                .excluded
                .into_iter()
                .map(|e| ExcludedModel {
                    model: e.model,
                    reason: e.reason,
                })
                .collect(),
            reason: d.reason,
            estimated_prompt_tokens: d.estimated_prompt_tokens,
            weights_version: d.weights_version,
            learning: d.learning.map(|l| RouteLearning {
                explored: l.explored,
                propensity: l.propensity,
                model_explored: l.model_explored,
                model_propensity: l.model_propensity,
                scored_tier: l.scored_tier.into(),
            }),
        }
    }
}

impl From<core::tokens::PromptCount> for TokenCount {
    fn from(c: core::tokens::PromptCount) -> Self {
        let b = c.breakdown;
        TokenCount {
            tokens: c.tokens,
            exact: c.exact,
            breakdown: TokenBreakdown {
                text: b.text,
                overhead: b.overhead,
                names: b.names,
                tools: b.tools,
                images: b.images,
                images_assumed: b.images_assumed,
            },
        }
    }
}

impl From<core::pricing::Cost> for Cost {
    fn from(c: core::pricing::Cost) -> Self {
        Cost {
            total_usd: c.total_usd(),
            total_micros: c.total_micros,
            input_micros: c.input_micros,
            cached_input_micros: c.cached_input_micros,
            cache_write_micros: c.cache_write_micros,
            output_micros: c.output_micros,
            reasoning_micros: c.reasoning_micros,
            currency: match c.currency {
                core::pricing::Currency::Usd => "USD".to_owned(),
            },
            priced_as: c.priced_as,
            batch: c.batch,
            tier_above_input_tokens: c.tier_above_input_tokens,
        }
    }
}

impl From<core::pricing::CostEstimate> for CostEstimate {
    fn from(e: core::pricing::CostEstimate) -> Self {
        CostEstimate {
            prompt: e.prompt.into(),
            expected_completion_tokens: e.expected_completion_tokens,
            max_completion_tokens: e.max_completion_tokens,
            expected: e.expected.into(),
            max: e.max.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_tokens_and_cost_match_the_core() {
        let c = count_text_tokens("Hello, world!".into(), "openai/gpt-4o".into());
        assert_eq!(
            c,
            TextTokenCount {
                tokens: 4,
                exact: true
            }
        );
        let u = Usage {
            prompt_tokens: 1234,
            completion_tokens: 567,
            total_tokens: 1801,
            ..Default::default()
        };
        let cost =
            calculate_cost(u, "openai/gpt-4o".into(), CostOptions::default()).expect("priced");
        // tests/vectors/cost.json `plain_gpt4o`.
        assert_eq!(
            (cost.input_micros, cost.output_micros, cost.total_micros),
            (3085, 5670, 8755)
        );
        assert_eq!(cost.total_usd, "0.008755");
        let e =
            calculate_cost(u, "nosuch/model".into(), CostOptions::default()).expect_err("unpriced");
        assert!(e.to_string().contains("nosuch/model"), "{e}");
    }
}
