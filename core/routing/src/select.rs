//! Which model answers: candidate filtering, ranking by policy, fallback chains, and the
//! explanation of every decision.
//!
//! Pure: it reads the request, the score, the routing config, the price catalog and a
//! snapshot of what the client knows (keys, breakers, latencies) through the
//! [`Availability`] trait, and returns a [`RouteDecision`]. The client executes the
//! decision (attempts, retries, fallbacks) and appends what happened to it.
//!
//! Rules:
//! - `auto`: candidates are the models listed for the scored tier; when none of them is
//!   usable, the next tier up, then down. Each must be permitted (allow-list, key
//!   present, breaker not open), fit its context window, and have every capability the
//!   request needs (tools, vision, JSON schema). Survivors are ranked by the policy,
//!   a pinned model first; with load-spreading weights the first place is drawn by
//!   weight among the weighted candidates.
//! - explicit `provider/model`: no scoring; the same permission, context and capability
//!   checks (when the catalog knows the model), then the configured fallback chain.
//! - organization policy (when the client enforces one, [`RoutePolicy`]): models the
//!   policy does not permit are left out with the rule and the level that set it;
//!   `auto` serves only from allowed tiers (the nearest allowed one when the scored tier
//!   is not, and the reason says so); when a hard budget has less left than the
//!   preferred model's maximum cost, a cheaper permitted model that fits is chosen and
//!   the reason says so; when none fits, a `Budget` error.
//! - Token counts here are the cheap estimate (about 4 bytes a token) so that a decision
//!   takes microseconds; the exact count is for billing, after the call.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::scorer::{ScoreReport, SuccessPrediction, Tier};
use gaterouter_accounts::{BudgetStatus, EffectiveRules, Metric, fmt_usd};
use gaterouter_health::BreakerConfig;
use gaterouter_pricing::{Catalog, DEFAULT_EXPECTED_COMPLETION_TOKENS, ModelPrice};
pub use gaterouter_types::decision::{
    Attempt, AttemptOutcome, Candidate, Excluded, Exclusion, Policy, RouteDecision, RouteMode,
};
use gaterouter_types::error::{Error, Result};
use gaterouter_types::types::{ChatRequest, Content, ContentPart, ResponseFormat};

/// How a tier's policy chose its first model ([`RoutingConfig::first_choice`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FirstChoice {
    /// The first model is the tier's pin in force: certain, and never explored away.
    pub pinned: bool,
    /// The probability of each candidate being put first, in the candidates' order.
    pub odds: Vec<f64>,
}

/// `[routing]`: tiers, policy, pins, weights, fallbacks and the circuit breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Ranking policy. Default `balanced`.
    pub policy: Policy,
    /// Models for light work, preferred first.
    pub light: Vec<String>,
    /// Models for standard work, preferred first.
    pub standard: Vec<String>,
    /// Models for heavy work, preferred first.
    pub heavy: Vec<String>,
    /// A model that always goes first in a tier when usable (`heavy = "anthropic/..."`).
    pub pin: BTreeMap<Tier, String>,
    /// Load-spreading weights: the first place is drawn among weighted candidates in
    /// proportion to their weight.
    pub weights: BTreeMap<String, u32>,
    /// Fallback chains for explicit models (`"openai/gpt-4o" = ["anthropic/claude-sonnet-4-5"]`).
    pub fallbacks: BTreeMap<String, Vec<String>>,
    /// Fallbacks after the first model, at most. Default 2.
    pub max_fallbacks: u32,
    /// Completion tokens assumed for cost ranking when `max_tokens` is unset. Default 500.
    pub expected_completion_tokens: u64,
    /// Scorer weights file replacing the built-in one (see `gaterouter route calibrate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scorer_weights_file: Option<PathBuf>,
    /// Implicit feedback (`routing::resend`): when the caller sends the same messages to
    /// a pricier explicit model within this many ms of an `auto` answer, the `auto` call
    /// gets a feedback record with score 0 (label `resent_stronger`, source `implicit`).
    /// Needs usage records. 0 = off (default); e.g. 120000.
    pub implicit_feedback_window_ms: u64,
    /// Circuit breaker per provider.
    pub circuit_breaker: BreakerConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        RoutingConfig {
            policy: Policy::Balanced,
            light: v(&[
                "openai/gpt-4o-mini",
                "gemini/gemini-2.5-flash-lite",
                "deepseek/deepseek-chat",
                "mistral/mistral-small",
            ]),
            standard: v(&[
                "openai/gpt-4.1-mini",
                "gemini/gemini-2.5-flash",
                "anthropic/claude-haiku-4-5",
                "mistral/mistral-medium",
            ]),
            heavy: v(&[
                "anthropic/claude-sonnet-4-5",
                "openai/gpt-5",
                "gemini/gemini-2.5-pro",
                "openai/gpt-4.1",
            ]),
            pin: BTreeMap::new(),
            weights: BTreeMap::new(),
            fallbacks: BTreeMap::new(),
            max_fallbacks: 2,
            expected_completion_tokens: DEFAULT_EXPECTED_COMPLETION_TOKENS,
            scorer_weights_file: None,
            implicit_feedback_window_ms: 0,
            circuit_breaker: BreakerConfig::default(),
        }
    }
}

impl RoutingConfig {
    /// The models of a tier.
    pub fn tier_models(&self, tier: Tier) -> &[String] {
        match tier {
            Tier::Light => &self.light,
            Tier::Standard => &self.standard,
            Tier::Heavy => &self.heavy,
        }
    }

    /// How `tier`'s policy put the first of `models` (the tier's usable candidates as
    /// ranked, `models[0]` being the one it put first) first: pinned or not, and the
    /// probability of each model being first. A pinned model, or a ranking without
    /// load-spreading weights, is certain (`[1, 0, ..]`); with two or more weighted
    /// candidates the first place is drawn among them in proportion to their weight.
    /// What within-tier exploration builds on: it never moves a pinned model, and its
    /// propensity starts from these odds ([`crate::learning::Learning::explore_model`]).
    pub fn first_choice(&self, tier: Tier, models: &[&str]) -> FirstChoice {
        let mut odds = vec![0.0; models.len()];
        if models.is_empty() {
            return FirstChoice {
                pinned: false,
                odds,
            };
        }
        let pinned = self.pin.get(&tier).is_some_and(|p| p == models[0]);
        let weighted: Vec<(usize, u32)> = models
            .iter()
            .enumerate()
            .filter_map(|(i, m)| self.weights.get(*m).map(|w| (i, *w)))
            .collect();
        let total: u64 = weighted.iter().map(|(_, w)| u64::from(*w)).sum();
        if pinned || weighted.len() < 2 || total == 0 {
            odds[0] = 1.0;
        } else {
            for (i, w) in weighted {
                odds[i] = f64::from(w) / total as f64;
            }
        }
        FirstChoice { pinned, odds }
    }

    /// Check that every model name is `provider/model` and weights are positive.
    pub fn validate(&self, source: &str) -> Result<()> {
        let check = |field: String, id: &str| {
            gaterouter_types::model_id::ModelId::parse(id)
                .map(|_| ())
                .map_err(|e| {
                    Error::config(
                        format!("{source}: {field}"),
                        e.to_string(),
                        "write `provider/model`",
                    )
                })
        };
        for (name, list) in [
            ("light", &self.light),
            ("standard", &self.standard),
            ("heavy", &self.heavy),
        ] {
            for (i, m) in list.iter().enumerate() {
                check(format!("routing.{name}[{i}]"), m)?;
            }
        }
        for (tier, m) in &self.pin {
            check(format!("routing.pin.{}", tier.as_str()), m)?;
        }
        for (m, w) in &self.weights {
            check(format!("routing.weights.\"{m}\""), m)?;
            if *w == 0 {
                return Err(Error::config(
                    format!("{source}: routing.weights.\"{m}\""),
                    "a weight of 0 never selects the model",
                    "remove the entry or give a positive weight",
                ));
            }
        }
        for (from, chain) in &self.fallbacks {
            check(format!("routing.fallbacks.\"{from}\""), from)?;
            for (i, m) in chain.iter().enumerate() {
                check(format!("routing.fallbacks.\"{from}\"[{i}]"), m)?;
            }
        }
        Ok(())
    }
}

/// What the client can tell the selector about a model right now.
pub trait Availability {
    /// `Err((kind, reason))` when the model may not be used now (not permitted, no key,
    /// breaker open).
    fn check(&self, model: &str) -> std::result::Result<(), (Exclusion, String)>;
    /// Observed latency in milliseconds, if any.
    fn latency_ms(&self, model: &str) -> Option<f64>;
}

/// What a request needs from a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Tool definitions or tool messages.
    pub tools: bool,
    /// Image parts.
    pub vision: bool,
    /// A JSON schema response format.
    pub json_schema: bool,
}

impl Needs {
    /// Read the needs off a request.
    pub fn of(req: &ChatRequest) -> Self {
        let images = req.messages.iter().any(|m| match &m.content {
            Some(Content::Parts(parts)) => parts
                .iter()
                .any(|p| matches!(p, ContentPart::ImageUrl { .. })),
            _ => false,
        });
        Needs {
            tools: !req.tools.is_empty() || req.messages.iter().any(|m| !m.tool_calls.is_empty()),
            vision: images,
            json_schema: matches!(req.response_format, Some(ResponseFormat::JsonSchema { .. })),
        }
    }
}

/// About 4 bytes a token plus 4 per message: the routing-time size of a prompt. One pass,
/// no tokenizer: exact counts are for billing.
pub fn rough_prompt_tokens(req: &ChatRequest) -> u64 {
    let mut bytes = 0usize;
    let mut images = 0u64;
    for m in &req.messages {
        match &m.content {
            Some(Content::Text(t)) => bytes += t.len(),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match p {
                        ContentPart::Text { text } => bytes += text.len(),
                        ContentPart::ImageUrl { .. } => images += 1,
                    }
                }
            }
            None => {}
        }
        for tc in &m.tool_calls {
            bytes += tc.function.name.len() + tc.function.arguments.len();
        }
    }
    for t in &req.tools {
        bytes += t.function.name.len() + t.function.description.as_ref().map_or(0, String::len);
        bytes += t
            .function
            .parameters
            .as_ref()
            .map_or(0, |p| p.to_string().len());
    }
    (bytes as u64).div_ceil(4) + 4 * req.messages.len() as u64 + 3 + images * 765
}

/// Check one model (its catalog entry, if priced) against the request; `Err(reason)`
/// when it cannot serve it.
fn fit(
    price: Option<&ModelPrice>,
    needs: Needs,
    prompt: u64,
    completion_bound: u64,
) -> std::result::Result<Option<u64>, (Exclusion, String)> {
    let Some(price) = price else {
        return Ok(None);
    };
    let caps = price.capabilities;
    if needs.tools && !caps.tools {
        return Err((Exclusion::Capability, "does not support tools".into()));
    }
    if needs.vision && !caps.vision {
        return Err((Exclusion::Capability, "does not accept images".into()));
    }
    if needs.json_schema && !caps.json_schema {
        return Err((
            Exclusion::Capability,
            "does not support JSON-schema output".into(),
        ));
    }
    let window = price.context_window.filter(|w| *w > 0);
    if let Some(w) = window {
        if prompt + completion_bound > w {
            return Err((
                Exclusion::ContextWindow,
                format!(
                    "the request (~{prompt} prompt + {completion_bound} completion tokens) exceeds its {w}-token context window"
                ),
            ));
        }
    }
    Ok(window)
}

/// The cost of `prompt` + `completion` tokens on a priced model (`None`: unpriced).
fn estimate(price: Option<&ModelPrice>, prompt: u64, completion: u64) -> Option<u64> {
    price.map(|p| p.plain_cost_micros(prompt, completion))
}

/// The organization policy as routing sees it: the effective rules and the budgets as
/// this process knows them (the last fetched policy minus local spend since).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// Rules after inheritance.
    pub rules: EffectiveRules,
    /// Budgets with their local `remaining`.
    pub budgets: Vec<BudgetStatus>,
    /// Learning from the organization's outcomes (its weights, exploration), when on.
    pub learning: Option<std::sync::Arc<super::learning::Learning>>,
}

/// The most a call can cost on `model` at routing time: rough prompt plus `max_tokens`,
/// else the model's max output, else the rest of its context window. (micros, tokens);
/// unpriced models cost 0 micro-dollars.
fn max_cost_rough(catalog: &Catalog, req: &ChatRequest, model: &str, prompt: u64) -> (u64, u64) {
    let price = catalog.lookup(model).map(|(_, p)| p);
    let completion = req
        .max_tokens
        .map(u64::from)
        .or(price.and_then(|p| p.max_output))
        .or(price
            .and_then(|p| p.context_window)
            .map(|w| w.saturating_sub(prompt)))
        .unwrap_or(DEFAULT_EXPECTED_COMPLETION_TOKENS);
    (
        estimate(price, prompt, completion).unwrap_or(0),
        prompt.saturating_add(completion),
    )
}

/// The first hard budget `micros`/`tokens` would exceed.
fn exceeded(budgets: &[BudgetStatus], micros: u64, tokens: u64) -> Option<&BudgetStatus> {
    budgets.iter().find(|b| {
        b.would_exceed(match b.metric {
            Metric::Usd => micros,
            Metric::Tokens => tokens,
        })
    })
}

fn amount(b: &BudgetStatus, micros: u64, tokens: u64) -> String {
    match b.metric {
        Metric::Usd => fmt_usd(micros),
        Metric::Tokens => format!("{tokens} tokens"),
    }
}

fn left(b: &BudgetStatus) -> String {
    amount(b, b.remaining, b.remaining)
}

/// Inputs of one decision.
#[derive(Debug)]
pub struct SelectInput<'a> {
    /// The request.
    pub req: &'a ChatRequest,
    /// The score (auto only).
    pub score: Option<ScoreReport>,
    /// `[routing]`.
    pub cfg: &'a RoutingConfig,
    /// Prices, windows and capabilities.
    pub catalog: &'a Catalog,
    /// The organization policy, when the client enforces one.
    pub accounts: Option<&'a RoutePolicy>,
}

/// Decide. `Err` when no model can serve the request; the error lists every model and
/// why it was left out.
pub fn select(input: SelectInput<'_>, avail: &dyn Availability) -> Result<RouteDecision> {
    let SelectInput {
        req,
        score,
        cfg,
        catalog,
        accounts,
    } = input;
    if let Some(p) = accounts {
        p.rules
            .check_max_tokens(req.max_tokens.map(u64::from))
            .map_err(Error::permission)?;
    }
    let needs = Needs::of(req);
    let prompt = rough_prompt_tokens(req);
    let expected = req.max_tokens.map_or(cfg.expected_completion_tokens, |m| {
        u64::from(m).min(cfg.expected_completion_tokens)
    });
    let bound = req.max_tokens.map_or(0, u64::from);
    let mut excluded = Vec::new();

    // The organization policy's denials, and how many models it let through: when the
    // policy alone leaves no model (whatever keys or breakers say), the caller gets a
    // short permission error naming the rule instead of the list of exclusions.
    let policy_denials: std::cell::RefCell<Vec<gaterouter_accounts::Denial>> =
        std::cell::RefCell::new(Vec::new());
    let policy_passed = std::cell::Cell::new(0usize);
    let consider =
        |model: &str, tier: Option<Tier>, excluded: &mut Vec<Excluded>| -> Option<Candidate> {
            // One catalog lookup per model: retention, capabilities, window and prices.
            let price = catalog.lookup(model).map(|(_, p)| p);
            if let Some(p) = accounts {
                let zero_retention = price.is_some_and(|price| price.zero_retention);
                if let Err(d) = p.rules.check_model(model, zero_retention) {
                    excluded.push(Excluded::new(
                        model,
                        Exclusion::NotPermitted,
                        format!(
                            "not permitted by {} set at {}: {}",
                            d.rule, d.level, d.message
                        ),
                    ));
                    policy_denials.borrow_mut().push(d);
                    return None;
                }
            }
            policy_passed.set(policy_passed.get() + 1);
            if let Err((kind, reason)) = avail.check(model) {
                excluded.push(Excluded::new(model, kind, reason));
                return None;
            }
            match fit(price, needs, prompt, bound) {
                Err((kind, reason)) => {
                    excluded.push(Excluded::new(model, kind, reason));
                    None
                }
                Ok(context_window) => Some(Candidate {
                    model: model.to_owned(),
                    estimated_cost_micros: estimate(price, prompt, expected),
                    max_cost_micros: req
                        .max_tokens
                        .and_then(|m| estimate(price, prompt, u64::from(m))),
                    context_window,
                    latency_ms: avail.latency_ms(model),
                    tier,
                    predicted_success: None,
                }),
            }
        };

    let Some(report) = score else {
        // Explicit model: checks, then the configured chain. When the named model cannot
        // serve (breaker open, context, capability) its fallbacks still may; a model
        // the organization's policy denies is an error (never silently swapped).
        if let Some(p) = accounts {
            let zero_retention = catalog
                .lookup(&req.model)
                .is_some_and(|(_, price)| price.zero_retention);
            p.rules
                .check_model(&req.model, zero_retention)
                .map_err(Error::permission)?;
        }
        let mut candidates: Vec<Candidate> = std::iter::once(&req.model)
            .chain(cfg.fallbacks.get(&req.model).into_iter().flatten())
            .filter_map(|m| consider(m, None, &mut excluded))
            .collect();
        if candidates.is_empty() {
            return Err(explicit_error(&req.model, &excluded));
        }
        let reason = if candidates[0].model == req.model {
            format!("explicit model {}", req.model)
        } else {
            let why = excluded
                .iter()
                .find(|e| e.model == req.model)
                .map(|e| e.reason.as_str())
                .unwrap_or("unusable");
            format!(
                "explicit model {} skipped ({why}): its fallback {} serves",
                req.model, candidates[0].model
            )
        };
        let chosen = candidates[0].model.clone();
        candidates.dedup_by(|a, b| a.model == b.model);
        return Ok(RouteDecision {
            mode: RouteMode::Explicit,
            score: None,
            tier: None,
            served_tier: None,
            features: Vec::new(),
            policy: cfg.policy,
            chosen,
            candidates,
            excluded,
            reason,
            estimated_prompt_tokens: prompt,
            attempts: Vec::new(),
            weights_version: None,
            learning: None,
            shadow: None,
            shadow_of: None,
        });
    };

    let order: [Tier; 3] = match report.tier {
        Tier::Light => [Tier::Light, Tier::Standard, Tier::Heavy],
        Tier::Standard => [Tier::Standard, Tier::Heavy, Tier::Light],
        Tier::Heavy => [Tier::Heavy, Tier::Standard, Tier::Light],
    };
    // Tiers the policy does not allow are skipped; the nearest allowed one serves.
    let mut tier_note = None;
    let mut allowed_order = Vec::with_capacity(3);
    for tier in order {
        match accounts.map(|p| p.rules.check_tier(tier)) {
            Some(Err(d)) => {
                if tier == report.tier {
                    tier_note = Some(d);
                }
            }
            _ => allowed_order.push(tier),
        }
    }
    if allowed_order.is_empty() {
        if let Some(d) = tier_note {
            return Err(Error::permission(d));
        }
    }
    let mut served = None;
    let mut success_note = None;
    let mut ranked: Vec<Candidate> = Vec::new();
    for tier in allowed_order {
        let list = cfg.tier_models(tier);
        let mut here: Vec<(usize, Candidate)> = list
            .iter()
            .enumerate()
            .filter_map(|(i, m)| consider(m, Some(tier), &mut excluded).map(|c| (i, c)))
            .collect();
        if here.is_empty() {
            continue;
        }
        rank(&mut here, cfg.policy);
        let mut here: Vec<Candidate> = here.into_iter().map(|(_, c)| c).collect();
        if let Some(sp) = &report.success {
            let note = by_success(&mut here, sp);
            if served.is_none() {
                success_note = note;
            }
        }
        if let Some(pinned) = cfg.pin.get(&tier) {
            if let Some(pos) = here.iter().position(|c| &c.model == pinned) {
                let c = here.remove(pos);
                here.insert(0, c);
            }
        } else if let Some(pos) = draw_weighted(&here, &cfg.weights) {
            let c = here.remove(pos);
            here.insert(0, c);
        }
        if served.is_none() {
            served = Some(tier);
            ranked = here;
        } else {
            // Further tiers only add fallbacks after the serving tier's models.
            ranked.extend(here);
        }
    }
    // A model listed in several tiers (or twice in one) is one candidate: its first,
    // best-ranked place; likewise one exclusion per model and reason.
    // (A dozen entries: a scan of the kept ones beats hashing cloned strings.)
    dedup_by(&mut ranked, |a, b| a.model == b.model);
    dedup_by(&mut excluded, |a, b| {
        a.model == b.model && a.reason == b.reason
    });
    let mut served_tier = served.ok_or_else(|| {
        let denials = policy_denials.borrow();
        match denials.first() {
            Some(first) if policy_passed.get() == 0 => {
                policy_blocks_every_model(first, denials.len())
            }
            _ => Error::InvalidRequest {
                field: Some("model".into()),
                message: format!(
                    "no configured model can serve this `auto` request: {}",
                    excluded_list(&excluded)
                ),
            },
        }
    })?;
    // Hard budgets: keep only candidates whose maximum cost fits what is left; when the
    // preferred one does not, the best-ranked one that does serves.
    let mut budget_note = None;
    if let Some(p) = accounts.filter(|p| !p.budgets.is_empty()) {
        let preferred = ranked[0].clone();
        let (pm, pt) = max_cost_rough(catalog, req, &preferred.model, prompt);
        let first_over = exceeded(&p.budgets, pm, pt).cloned();
        let mut kept = Vec::with_capacity(ranked.len());
        for c in ranked.drain(..) {
            let (m, t) = max_cost_rough(catalog, req, &c.model, prompt);
            match exceeded(&p.budgets, m, t) {
                None => kept.push(c),
                Some(b) => excluded.push(Excluded::new(
                    c.model.clone(),
                    Exclusion::Budget,
                    format!(
                        "may cost up to {}, more than the {} left in the {} budget `{}` set at {}",
                        amount(b, m, t),
                        left(b),
                        b.period.as_str(),
                        b.id,
                        b.level
                    ),
                )),
            }
        }
        if kept.is_empty() {
            let b = first_over.unwrap_or_else(|| p.budgets[0].clone());
            let need = amount(&b, pm, pt);
            return Err(Error::budget(
                b,
                Some(&format!(
                    "no permitted model fits: {} alone may cost up to {need}",
                    preferred.model
                )),
            ));
        }
        ranked = kept;
        if let Some(b) = first_over {
            let (m, t) = max_cost_rough(catalog, req, &ranked[0].model, prompt);
            budget_note = Some(format!(
                "; budget `{}` set at {} has {} left, below {}'s maximum cost of {}: chose {}, which fits (at most {})",
                b.id,
                b.level,
                left(&b),
                preferred.model,
                amount(&b, pm, pt),
                ranked[0].model,
                amount(&b, m, t)
            ));
            if let Some(t) = ranked[0].tier {
                served_tier = t;
            }
        }
    }
    let chosen = ranked[0].model.clone();
    let why = match cfg.policy {
        Policy::Cheapest => "the cheapest usable model",
        Policy::Balanced => "the best cost/preference balance",
        Policy::Quality => "the most preferred usable model",
        Policy::Fastest => "the fastest observed usable model",
    };
    let mut reason = format!(
        "score {:.3} -> {} tier; {chosen} is {why}",
        report.score,
        report.tier.as_str()
    );
    let pinned_first = cfg.pin.get(&served_tier) == Some(&chosen);
    if pinned_first {
        reason = format!(
            "score {:.3} -> {} tier; {chosen} is pinned for it",
            report.score,
            report.tier.as_str()
        );
    }
    if let Some(d) = &tier_note {
        reason.push_str(&format!(
            " (tier {} is not allowed by {} set at {}: served from the nearest allowed tier, {})",
            report.tier.as_str(),
            d.rule,
            d.level,
            served_tier.as_str()
        ));
    } else if served_tier != report.tier && budget_note.is_none() {
        reason.push_str(&format!(
            " (no usable {} model: served from the {} tier)",
            report.tier.as_str(),
            served_tier.as_str()
        ));
    }
    if let Some(note) = success_note.filter(|_| !pinned_first) {
        reason.push_str(&note);
    }
    if let Some(note) = budget_note {
        reason.push_str(&note);
    }
    Ok(RouteDecision {
        mode: RouteMode::Auto,
        score: Some(report.score),
        tier: Some(report.tier),
        served_tier: (served_tier != report.tier).then_some(served_tier),
        features: report.features,
        policy: cfg.policy,
        chosen,
        candidates: ranked,
        excluded,
        reason,
        estimated_prompt_tokens: prompt,
        attempts: Vec::new(),
        weights_version: None,
        learning: None,
        shadow: None,
        shadow_of: None,
    })
}

/// Keep the first of each group of `same` items, in order.
fn dedup_by<T>(items: &mut Vec<T>, same: impl Fn(&T, &T) -> bool) {
    let mut kept = 0;
    for i in 0..items.len() {
        if !items[..kept].iter().any(|k| same(k, &items[i])) {
            items.swap(kept, i);
            kept += 1;
        }
    }
    items.truncate(kept);
}

/// Per-model success (weights with success models): annotate one tier's ranked
/// candidates with their predicted success and move those predicted below the best one's
/// by more than the margin after the others, each group in policy order (candidates
/// without a prediction stay). Returns the explanation when the policy's first choice
/// moved.
fn by_success(here: &mut Vec<Candidate>, sp: &SuccessPrediction) -> Option<String> {
    for c in here.iter_mut() {
        c.predicted_success = sp.of(&c.model);
    }
    let (best_model, best) = here
        .iter()
        .filter_map(|c| c.predicted_success.map(|p| (c.model.as_str(), p)))
        .fold(None, |acc: Option<(&str, f64)>, (m, p)| match acc {
            Some((_, b)) if b >= p => acc,
            _ => Some((m, p)),
        })?;
    let cut = best - sp.margin;
    let low = |c: &Candidate| c.predicted_success.is_some_and(|p| p < cut);
    if !here.iter().any(low) {
        return None;
    }
    let note = low(&here[0]).then(|| {
        format!(
            "; {} (predicted success {:.2}) goes after the models predicted within {:.2} of the best, {best_model} ({best:.2})",
            here[0].model,
            here[0].predicted_success.unwrap_or(0.0),
            sp.margin
        )
    });
    let (keep, demoted): (Vec<Candidate>, Vec<Candidate>) = here.drain(..).partition(|c| !low(c));
    here.extend(keep);
    here.extend(demoted);
    note
}

/// Stable sort of one tier's candidates; `usize` is the list position (preference).
fn rank(here: &mut [(usize, Candidate)], policy: Policy) {
    let cost = |c: &Candidate| c.estimated_cost_micros.unwrap_or(u64::MAX);
    match policy {
        Policy::Quality => here.sort_by_key(|(i, _)| *i),
        Policy::Cheapest => here.sort_by_key(|(i, c)| (cost(c), *i)),
        Policy::Fastest => here.sort_by(|(ia, a), (ib, b)| match (a.latency_ms, b.latency_ms) {
            (Some(x), Some(y)) => x.total_cmp(&y).then(ia.cmp(ib)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => ia.cmp(ib),
        }),
        Policy::Balanced => {
            // Cost relative to the cheapest, plus a quarter for each place down the
            // preference list: a model twice the price must be 4 places better to win.
            let min = here.iter().map(|(_, c)| cost(c)).min().unwrap_or(1).max(1) as f64;
            let key = |i: usize, c: &Candidate| cost(c) as f64 / min + 0.25 * i as f64;
            here.sort_by(|(ia, a), (ib, b)| key(*ia, a).total_cmp(&key(*ib, b)).then(ia.cmp(ib)));
        }
    }
}

/// Index of the candidate drawn by load-spreading weight, when two or more are weighted.
fn draw_weighted(here: &[Candidate], weights: &BTreeMap<String, u32>) -> Option<usize> {
    let weighted: Vec<(usize, u32)> = here
        .iter()
        .enumerate()
        .filter_map(|(i, c)| weights.get(&c.model).map(|w| (i, *w)))
        .collect();
    if weighted.len() < 2 {
        return None;
    }
    let total: u64 = weighted.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut pick = rand::rng().random_range(0..total);
    for (i, w) in weighted {
        if pick < u64::from(w) {
            return Some(i);
        }
        pick -= u64::from(w);
    }
    None
}

/// Every model `auto` could use is denied by the organization policy: a permission error
/// naming the first rule and its level, short (the per-model list is in `route()`).
fn policy_blocks_every_model(first: &gaterouter_accounts::Denial, models: usize) -> Error {
    Error::Permission {
        rule: first.rule.clone(),
        level: Some(first.level.clone()),
        message: format!(
            "the organization policy permits none of the {models} model(s) `auto` could use: {} set at {} denies them \
             (first: {}); ask an admin to allow one, or name a permitted model (`gaterouter route` lists each exclusion)",
            first.rule, first.level, first.message
        ),
    }
}

fn excluded_list(excluded: &[Excluded]) -> String {
    if excluded.is_empty() {
        return "the tier lists in [routing] are empty".into();
    }
    excluded
        .iter()
        .map(|e| format!("{} ({})", e.model, e.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

fn explicit_error(model: &str, excluded: &[Excluded]) -> Error {
    let Some(e) = excluded.iter().find(|e| e.model == model) else {
        return Error::InvalidRequest {
            field: Some("model".into()),
            message: format!("{model} cannot serve this request"),
        };
    };
    let (reason, provider) = (&e.reason, model.split('/').next().unwrap_or("").to_owned());
    match e.kind {
        Exclusion::ContextWindow => Error::ContextLengthExceeded {
            provider,
            message: format!("{model}: {reason}"),
        },
        Exclusion::CircuitOpen => Error::ProviderUnavailable {
            provider,
            status: None,
            message: format!("{model}: {reason}"),
        },
        Exclusion::NotPermitted => Error::Permission {
            rule: "models".into(),
            level: None,
            message: format!("{model}: {reason}"),
        },
        // UnknownProvider, NoApiKey, Capability, Budget; and, `Exclusion` being
        // `#[non_exhaustive]` in gaterouter-types, any kind added later.
        _ => Error::InvalidRequest {
            field: Some("model".into()),
            message: format!("{model} cannot serve this request: {reason}"),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gaterouter_types::error::ErrorKind;
    use gaterouter_types::types::{Message, Tool};

    struct Avail(Vec<&'static str>);
    impl Availability for Avail {
        fn check(&self, model: &str) -> std::result::Result<(), (Exclusion, String)> {
            if self.0.contains(&model) {
                Err((Exclusion::NoApiKey, "no API key".into()))
            } else {
                Ok(())
            }
        }
        fn latency_ms(&self, model: &str) -> Option<f64> {
            (model == "gemini/gemini-2.5-flash-lite").then_some(5.0)
        }
    }

    fn report(tier: Tier) -> ScoreReport {
        ScoreReport {
            score: 0.5,
            tier,
            features: Vec::new(),
            success: None,
        }
    }

    fn pick(
        req: &ChatRequest,
        tier: Tier,
        cfg: &RoutingConfig,
        blocked: Vec<&'static str>,
    ) -> Result<RouteDecision> {
        select(
            SelectInput {
                req,
                score: Some(report(tier)),
                cfg,
                catalog: Catalog::builtin(),
                accounts: None,
            },
            &Avail(blocked),
        )
    }

    #[test]
    fn policies_rank_differently() {
        let req = ChatRequest::new("auto", vec![Message::user("hi")]);
        let mut cfg = RoutingConfig {
            policy: Policy::Quality,
            ..RoutingConfig::default()
        };
        assert_eq!(
            pick(&req, Tier::Light, &cfg, vec![]).unwrap().chosen,
            "openai/gpt-4o-mini"
        );
        cfg.policy = Policy::Cheapest;
        let d = pick(&req, Tier::Light, &cfg, vec![]).unwrap();
        let costs: Vec<u64> = d
            .candidates
            .iter()
            .take(4)
            .map(|c| c.estimated_cost_micros.unwrap())
            .collect();
        assert!(costs.windows(2).all(|w| w[0] <= w[1]), "{costs:?}");
        cfg.policy = Policy::Fastest;
        assert_eq!(
            pick(&req, Tier::Light, &cfg, vec![]).unwrap().chosen,
            "gemini/gemini-2.5-flash-lite"
        );
    }

    #[test]
    fn success_predictions_put_clearly_worse_models_last_in_their_tier() {
        let req = ChatRequest::new("auto", vec![Message::user("hi")]);
        let cfg = RoutingConfig {
            policy: Policy::Quality,
            ..RoutingConfig::default()
        };
        let with = |models: Vec<(&str, f64)>, pin: bool| {
            let mut cfg = cfg.clone();
            if pin {
                cfg.pin.insert(Tier::Light, "openai/gpt-4o-mini".into());
            }
            let mut r = report(Tier::Light);
            r.success = Some(SuccessPrediction {
                margin: 0.05,
                models: models.into_iter().map(|(m, p)| (m.to_owned(), p)).collect(),
            });
            select(
                SelectInput {
                    req: &req,
                    score: Some(r),
                    cfg: &cfg,
                    catalog: Catalog::builtin(),
                    accounts: None,
                },
                &Avail(vec![]),
            )
            .unwrap()
        };
        // Preference order: gpt-4o-mini, flash-lite, deepseek-chat, mistral-small.
        let d = with(
            vec![
                ("openai/gpt-4o-mini", 0.40),
                ("gemini/gemini-2.5-flash-lite", 0.80),
                ("deepseek/deepseek-chat", 0.77),
            ],
            false,
        );
        let order: Vec<&str> = d
            .candidates
            .iter()
            .take(4)
            .map(|c| c.model.as_str())
            .collect();
        // within 0.05 of the best (0.80) or unknown keep policy order; 0.40 goes last
        assert_eq!(
            order,
            [
                "gemini/gemini-2.5-flash-lite",
                "deepseek/deepseek-chat",
                "mistral/mistral-small",
                "openai/gpt-4o-mini"
            ]
        );
        assert_eq!(d.candidates[0].predicted_success, Some(0.80));
        assert_eq!(d.candidates[2].predicted_success, None);
        assert!(
            d.reason
                .contains("openai/gpt-4o-mini (predicted success 0.40) goes after")
                && d.reason.contains("gemini/gemini-2.5-flash-lite (0.80)"),
            "{}",
            d.reason
        );
        // Close predictions change nothing (and say nothing).
        let d = with(
            vec![
                ("openai/gpt-4o-mini", 0.78),
                ("gemini/gemini-2.5-flash-lite", 0.80),
            ],
            false,
        );
        assert_eq!(d.chosen, "openai/gpt-4o-mini");
        assert!(!d.reason.contains("predicted"), "{}", d.reason);
        // A model predicted worse but not first moves without a note.
        let d = with(
            vec![
                ("gemini/gemini-2.5-flash-lite", 0.1),
                ("openai/gpt-4o-mini", 0.9),
            ],
            false,
        );
        assert_eq!(d.chosen, "openai/gpt-4o-mini");
        assert_eq!(d.candidates.last().map(|c| c.tier), Some(Some(Tier::Heavy)));
        let light: Vec<&str> = d
            .candidates
            .iter()
            .filter(|c| c.tier == Some(Tier::Light))
            .map(|c| c.model.as_str())
            .collect();
        assert_eq!(light.last(), Some(&"gemini/gemini-2.5-flash-lite"));
        assert!(!d.reason.contains("predicted"), "{}", d.reason);
        // A pin still wins.
        let d = with(
            vec![
                ("openai/gpt-4o-mini", 0.40),
                ("gemini/gemini-2.5-flash-lite", 0.80),
            ],
            true,
        );
        assert_eq!(d.chosen, "openai/gpt-4o-mini");
        assert!(d.reason.contains("pinned"), "{}", d.reason);
    }

    #[test]
    fn exclusions_are_explained_and_tiers_escalate() {
        let req = ChatRequest::new("auto", vec![Message::user("hi")]);
        let cfg = RoutingConfig {
            policy: Policy::Quality,
            ..RoutingConfig::default()
        };
        let d = pick(&req, Tier::Light, &cfg, vec!["openai/gpt-4o-mini"]).unwrap();
        assert_ne!(d.chosen, "openai/gpt-4o-mini");
        assert!(
            d.excluded
                .iter()
                .any(|e| e.model == "openai/gpt-4o-mini" && e.reason == "no API key")
        );
        let all_light = cfg
            .light
            .iter()
            .map(|s| &*Box::leak(s.clone().into_boxed_str()))
            .collect();
        let d = pick(&req, Tier::Light, &cfg, all_light).unwrap();
        assert_eq!(d.served_tier, Some(Tier::Standard));
        assert!(
            d.reason.contains("served from the standard tier"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn capabilities_and_context_filter() {
        let mut req = ChatRequest::new("auto", vec![Message::user("x".repeat(4 * 150_000))]);
        let cfg = RoutingConfig::default();
        let d = pick(&req, Tier::Heavy, &cfg, vec![]).unwrap();
        assert!(
            d.excluded
                .iter()
                .any(|e| e.reason.contains("context window")),
            "{:?}",
            d.excluded
        );
        assert!(
            d.candidates
                .iter()
                .all(|c| c.context_window.unwrap_or(u64::MAX) > 150_000)
        );
        req.messages = vec![Message::user("weather?")];
        req.tools = vec![Tool::function(
            "f",
            "f",
            serde_json::json!({"type":"object"}),
        )];
        let d = pick(&req, Tier::Light, &cfg, vec![]).unwrap();
        for c in &d.candidates {
            assert!(
                Catalog::builtin()
                    .lookup(&c.model)
                    .is_none_or(|(_, p)| p.capabilities.tools),
                "{}",
                c.model
            );
        }
    }

    #[test]
    fn pin_and_explicit_checks() {
        let req = ChatRequest::new("auto", vec![Message::user("hi")]);
        let mut cfg = RoutingConfig::default();
        cfg.pin.insert(Tier::Heavy, "openai/gpt-4.1".into());
        assert_eq!(
            pick(&req, Tier::Heavy, &cfg, vec![]).unwrap().chosen,
            "openai/gpt-4.1"
        );
        let mut explicit = ChatRequest::new(
            "openai/gpt-4o-mini",
            vec![Message::user("x".repeat(4 * 200_000))],
        );
        let e = select(
            SelectInput {
                req: &explicit,
                score: None,
                cfg: &cfg,
                catalog: Catalog::builtin(),
                accounts: None,
            },
            &Avail(vec![]),
        )
        .unwrap_err();
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::ContextLengthExceeded);
        explicit.messages = vec![Message::user("hi")];
        cfg.fallbacks.insert(
            "openai/gpt-4o-mini".into(),
            vec!["anthropic/claude-haiku-4-5".into()],
        );
        let d = select(
            SelectInput {
                req: &explicit,
                score: None,
                cfg: &cfg,
                catalog: Catalog::builtin(),
                accounts: None,
            },
            &Avail(vec![]),
        )
        .unwrap();
        assert_eq!(
            d.chain(2),
            vec!["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]
        );
    }

    #[test]
    fn explicit_errors_follow_the_exclusion_kind() {
        let cases = [
            (
                Exclusion::ContextWindow,
                gaterouter_types::ErrorKind::ContextLengthExceeded,
            ),
            (
                Exclusion::CircuitOpen,
                gaterouter_types::ErrorKind::ProviderUnavailable,
            ),
            (
                Exclusion::NotPermitted,
                gaterouter_types::ErrorKind::Permission,
            ),
            (
                Exclusion::NoApiKey,
                gaterouter_types::ErrorKind::InvalidRequest,
            ),
            (
                Exclusion::Budget,
                gaterouter_types::ErrorKind::InvalidRequest,
            ),
        ];
        for (kind, want) in cases {
            // The sentence no longer decides: a reason that reads like another kind's.
            let e = explicit_error(
                "openai/gpt-4o",
                &[Excluded::new(
                    "openai/gpt-4o",
                    kind,
                    "circuit open; context window",
                )],
            );
            assert_eq!(e.kind(), want, "{kind:?}");
        }
        assert_eq!(
            explicit_error("openai/gpt-4o", &[]).kind(),
            gaterouter_types::ErrorKind::InvalidRequest
        );
        // The wire form: snake_case kinds, outcome strings as before.
        let x =
            serde_json::to_value(Excluded::new("m/x", Exclusion::NoApiKey, "no API key")).unwrap();
        assert_eq!(
            x,
            serde_json::json!({"model": "m/x", "kind": "no_api_key", "reason": "no API key"})
        );
        for (o, s) in [
            (AttemptOutcome::Ok, "ok"),
            (AttemptOutcome::CircuitOpen, "CIRCUIT_OPEN"),
            (
                AttemptOutcome::Failed(ErrorKind::RateLimited),
                "RATE_LIMITED",
            ),
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), serde_json::json!(s));
            assert_eq!(
                serde_json::from_value::<AttemptOutcome>(serde_json::json!(s)).unwrap(),
                o
            );
        }
        assert!(
            serde_json::from_value::<AttemptOutcome>(serde_json::json!("NOPE"))
                .unwrap_err()
                .to_string()
                .contains("unknown attempt outcome `NOPE`")
        );
        for &k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
        }
    }

    fn org_policy(
        rules: gaterouter_accounts::PolicyRules,
        usd_remaining: Option<u64>,
    ) -> RoutePolicy {
        use gaterouter_accounts::{Enforcement, Level, LevelKind, Period};
        let level = Level::new(LevelKind::Department, "legal");
        let budgets = usd_remaining
            .map(|remaining| BudgetStatus {
                id: "b-day".into(),
                level: level.clone(),
                metric: Metric::Usd,
                period: Period::Day,
                limit: 10_000_000,
                used: 10_000_000 - remaining,
                reserved: 0,
                remaining,
                period_start_ms: 0,
                resets_at_ms: u64::MAX,
                enforcement: Enforcement::Hard,
                notify_at: vec![],
            })
            .into_iter()
            .collect();
        RoutePolicy {
            rules: EffectiveRules::resolve([(&level, &rules)]),
            budgets,
            learning: None,
        }
    }

    fn pick_with(
        req: &ChatRequest,
        tier: Tier,
        cfg: &RoutingConfig,
        p: &RoutePolicy,
    ) -> Result<RouteDecision> {
        select(
            SelectInput {
                req,
                score: Some(report(tier)),
                cfg,
                catalog: Catalog::builtin(),
                accounts: Some(p),
            },
            &Avail(vec![]),
        )
    }

    #[test]
    fn policy_denials_are_excluded_with_rule_and_level() {
        let req = ChatRequest::new("auto", vec![Message::user("hi")]);
        let cfg = RoutingConfig {
            policy: Policy::Quality,
            ..RoutingConfig::default()
        };
        let p = org_policy(
            gaterouter_accounts::PolicyRules {
                deny_models: Some(vec!["openai/*".into()]),
                ..Default::default()
            },
            None,
        );
        let d = pick_with(&req, Tier::Light, &cfg, &p).unwrap();
        assert!(!d.chosen.starts_with("openai/"), "{}", d.chosen);
        let e = d
            .excluded
            .iter()
            .find(|e| e.model == "openai/gpt-4o-mini")
            .unwrap();
        assert!(
            e.reason.contains("deny_models") && e.reason.contains("department:legal"),
            "{}",
            e.reason
        );
        // An explicitly named denied model is an error, not a silent swap.
        let explicit = ChatRequest::new("openai/gpt-4o-mini", vec![Message::user("hi")]);
        let e = select(
            SelectInput {
                req: &explicit,
                score: None,
                cfg: &cfg,
                catalog: Catalog::builtin(),
                accounts: Some(&p),
            },
            &Avail(vec![]),
        )
        .unwrap_err();
        assert_eq!(
            e.permission_rule()
                .map(|(r, l)| (r.to_owned(), l.map(ToString::to_string))),
            Some(("deny_models".into(), Some("department:legal".into())))
        );
    }

    #[test]
    fn a_policy_that_permits_no_model_is_a_short_permission_error() {
        let req = ChatRequest::new("auto", vec![Message::user("hi")]);
        let cfg = RoutingConfig::default();
        // An allow-list that matches no model (like zero_retention_only when no model has it).
        let p = org_policy(
            gaterouter_accounts::PolicyRules {
                allow_models: Some(vec!["nosuch/*".into()]),
                ..Default::default()
            },
            None,
        );
        // Keys missing for some providers must not turn it back into the long list.
        let e = select(
            SelectInput {
                req: &req,
                score: Some(report(Tier::Standard)),
                cfg: &cfg,
                catalog: Catalog::builtin(),
                accounts: Some(&p),
            },
            &Avail(vec!["openai/gpt-4o-mini"]),
        )
        .unwrap_err();
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::Permission, "{e}");
        assert_eq!(
            e.permission_rule()
                .map(|(r, l)| (r.to_owned(), l.map(ToString::to_string))),
            Some(("allow_models".into(), Some("department:legal".into())))
        );
        assert!(
            e.to_string().len() < 600,
            "{} chars: {e}",
            e.to_string().len()
        );
        // One permitted model that cannot serve (no key) keeps the explained InvalidRequest.
        let p = org_policy(
            gaterouter_accounts::PolicyRules {
                allow_models: Some(vec!["openai/gpt-4o-mini".into()]),
                ..Default::default()
            },
            None,
        );
        let e = select(
            SelectInput {
                req: &req,
                score: Some(report(Tier::Light)),
                cfg: &cfg,
                catalog: Catalog::builtin(),
                accounts: Some(&p),
            },
            &Avail(vec!["openai/gpt-4o-mini"]),
        )
        .unwrap_err();
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::InvalidRequest, "{e}");
    }

    #[test]
    fn disallowed_tier_serves_from_the_nearest_allowed_one() {
        let req = ChatRequest::new("auto", vec![Message::user("hi")]);
        let cfg = RoutingConfig::default();
        let p = org_policy(
            gaterouter_accounts::PolicyRules {
                allowed_tiers: Some(vec![Tier::Light, Tier::Standard]),
                ..Default::default()
            },
            None,
        );
        let d = pick_with(&req, Tier::Heavy, &cfg, &p).unwrap();
        assert!(cfg.standard.contains(&d.chosen), "{}", d.chosen);
        assert!(
            d.candidates.iter().all(|c| c.tier != Some(Tier::Heavy)),
            "{:?}",
            d.candidates
        );
        assert!(
            d.reason
                .contains("tier heavy is not allowed by allowed_tiers set at department:legal"),
            "{}",
            d.reason
        );
        let none = org_policy(
            gaterouter_accounts::PolicyRules {
                allowed_tiers: Some(vec![]),
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            pick_with(&req, Tier::Heavy, &cfg, &none)
                .unwrap_err()
                .kind(),
            gaterouter_types::ErrorKind::Permission
        );
    }

    #[test]
    fn low_budget_prefers_a_cheaper_model_that_fits() {
        let mut req = ChatRequest::new("auto", vec![Message::user("hi")]);
        req.max_tokens = Some(1000);
        let cfg = RoutingConfig {
            policy: Policy::Quality,
            ..RoutingConfig::default()
        };
        let rich = org_policy(
            gaterouter_accounts::PolicyRules::default(),
            Some(10_000_000),
        );
        let preferred = pick_with(&req, Tier::Heavy, &cfg, &rich).unwrap().chosen;
        let (pm, _) = max_cost_rough(
            Catalog::builtin(),
            &req,
            &preferred,
            rough_prompt_tokens(&req),
        );
        // Just under the preferred model's maximum: something cheaper must serve.
        let poor = org_policy(gaterouter_accounts::PolicyRules::default(), Some(pm - 1));
        let d = pick_with(&req, Tier::Heavy, &cfg, &poor).unwrap();
        assert_ne!(d.chosen, preferred);
        let (cm, _) = max_cost_rough(
            Catalog::builtin(),
            &req,
            &d.chosen,
            rough_prompt_tokens(&req),
        );
        assert!(cm < pm, "{cm} {pm}");
        assert!(
            d.reason.contains("budget `b-day`")
                && d.reason.contains(&preferred)
                && d.reason.contains("which fits"),
            "{}",
            d.reason
        );
        assert!(
            d.excluded
                .iter()
                .any(|e| e.model == preferred && e.reason.contains("may cost up to")),
            "{:?}",
            d.excluded
        );
        let broke = org_policy(gaterouter_accounts::PolicyRules::default(), Some(0));
        let e = pick_with(&req, Tier::Heavy, &cfg, &broke).unwrap_err();
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::Budget);
        assert_eq!(e.budget_status().unwrap().id, "b-day");
    }

    #[test]
    fn dedup_keeps_the_first_of_each_in_order() {
        let mut v = vec!["b", "a", "b", "c", "a", "d", "c"];
        dedup_by(&mut v, |x, y| x == y);
        assert_eq!(v, ["b", "a", "c", "d"]);
        let mut e: Vec<&str> = vec![];
        dedup_by(&mut e, |x, y| x == y);
        assert!(e.is_empty());
    }

    #[test]
    fn candidates_are_unique_across_tiers() {
        let req = ChatRequest::new("auto", vec![Message::user("hi")]);
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // 4 models, listed 12 times over the three tiers (issue 17).
        let four = [
            "openai/gpt-4o-mini",
            "openai/gpt-4.1-mini",
            "anthropic/claude-haiku-4-5",
            "openai/gpt-4.1",
        ];
        let mut cfg = RoutingConfig {
            light: v(&four),
            standard: v(&four),
            heavy: v(&four),
            ..RoutingConfig::default()
        };
        cfg.heavy.push("openai/gpt-4o-mini".into()); // twice in one tier too
        for tier in [Tier::Light, Tier::Standard, Tier::Heavy] {
            for policy in [
                Policy::Quality,
                Policy::Cheapest,
                Policy::Balanced,
                Policy::Fastest,
            ] {
                cfg.policy = policy;
                let d = pick(&req, tier, &cfg, vec![]).unwrap();
                let models: Vec<&str> = d.candidates.iter().map(|c| c.model.as_str()).collect();
                let unique: std::collections::BTreeSet<&str> = models.iter().copied().collect();
                assert_eq!(models.len(), 4, "{tier:?} {policy:?}: {models:?}");
                assert_eq!(unique.len(), 4, "{models:?}");
                assert_eq!(models[0], d.chosen);
                // each kept at its first place: the serving tier's
                assert!(
                    d.candidates.iter().all(|c| c.tier == Some(tier)),
                    "{:?}",
                    d.candidates
                );
            }
        }
        // an excluded model is reported once, not once per tier
        let d = pick(&req, Tier::Light, &cfg, vec!["openai/gpt-4.1"]).unwrap();
        assert_eq!(
            d.excluded
                .iter()
                .filter(|e| e.model == "openai/gpt-4.1")
                .count(),
            1,
            "{:?}",
            d.excluded
        );
        assert_eq!(d.candidates.len(), 3);
    }

    #[test]
    fn weights_spread_the_first_place() {
        let req = ChatRequest::new("auto", vec![Message::user("hi")]);
        let mut cfg = RoutingConfig::default();
        cfg.weights.insert("openai/gpt-4o-mini".into(), 1);
        cfg.weights.insert("deepseek/deepseek-chat".into(), 1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(pick(&req, Tier::Light, &cfg, vec![]).unwrap().chosen);
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
    }

    #[test]
    fn the_policys_first_choice() {
        let mut cfg = RoutingConfig::default();
        let odds = |cfg: &RoutingConfig, tier, ms: &[&str]| cfg.first_choice(tier, ms).odds;
        let ms = ["a/x", "b/y", "c/z"];
        assert_eq!(odds(&cfg, Tier::Light, &ms), vec![1.0, 0.0, 0.0]);
        assert!(odds(&cfg, Tier::Light, &[]).is_empty());
        assert!(!cfg.first_choice(Tier::Light, &ms).pinned);
        // Two weighted candidates share the first place by weight; the unweighted never.
        cfg.weights.insert("a/x".into(), 1);
        cfg.weights.insert("c/z".into(), 3);
        assert_eq!(odds(&cfg, Tier::Light, &ms), vec![0.25, 0.0, 0.75]);
        // One weighted candidate: no draw.
        assert_eq!(odds(&cfg, Tier::Light, &ms[..2]), vec![1.0, 0.0]);
        // A pin in force is certain; a pin of another tier changes nothing.
        cfg.pin.insert(Tier::Light, "a/x".into());
        assert_eq!(
            cfg.first_choice(Tier::Light, &ms),
            FirstChoice {
                pinned: true,
                odds: vec![1.0, 0.0, 0.0]
            }
        );
        // A pin not put first (unusable now) does not pin the first candidate.
        assert!(!cfg.first_choice(Tier::Light, &ms[1..]).pinned);
        assert!(!cfg.first_choice(Tier::Heavy, &ms).pinned);
        assert_eq!(odds(&cfg, Tier::Heavy, &ms), vec![0.25, 0.0, 0.75]);
    }
}
