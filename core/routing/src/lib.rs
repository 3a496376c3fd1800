//! # gaterouter-routing
//!
//! Routing for `model: "auto"`: how demanding is a request? Depends on
//! `gaterouter-types` (the request, and the decision data it returns), `gaterouter-pricing`
//! (cost ranking), `gaterouter-accounts` (policy rules, budgets) and `gaterouter-health`
//! (the breaker section of its config); `gaterouter` re-exports it as `gaterouter::routing`.
//!
//! The [`Scorer`] turns cheap text features of a [`gaterouter_types::types::ChatRequest`] (length,
//! code, math, reasoning cues, constraints, tools, requested output, language,
//! question type...) into a score in `[0, 1]` with a logistic model, and the score into
//! a [`Tier`] by two thresholds; optionally hashed word n-gram weights ([`lexical`]) add
//! to the same log-odds. Weights and thresholds live in a data file
//! (`core/routing/data/router_weights.json`, embedded; another can be loaded) that
//! [`calibrate::fit`] refits from labeled prompts and [`learn`] learns from outcomes (ridge on
//! hashed n-grams with cross-validation; a bandit replay with inverse-propensity refits); [`eval`] measures a router with the
//! standard metrics (PGR, APGR, CPT) against random and length-only baselines and
//! the oracle ceilings;
//! [`select`] turns the tier into a model by policy, within what the caller may use,
//! and explains the decision; weights calibrated on outcomes of several models also
//! carry per-model success models ([`weights::SuccessModels`]), and inside a tier a
//! model predicted clearly worse than the best candidate goes after the others.
//!
//! ```
//! use gaterouter_routing::{Scorer, Tier};
//! use gaterouter_types::{ChatRequest, Message};
//! let scorer = Scorer::builtin()?;
//! let report = scorer.score(&ChatRequest::new("auto", vec![Message::user("Hi!")]));
//! assert!((0.0..=1.0).contains(&report.score));
//! assert!(matches!(report.tier, Tier::Light | Tier::Standard | Tier::Heavy));
//! # Ok::<(), gaterouter_types::Error>(())
//! ```
//!
//! Map of the crate:
//!
//! | module | concept |
//! |---|---|
//! | [`features`] | the structural features of a request |
//! | [`lexical`] | hashed word n-gram terms and their weights |
//! | [`weights`] | the weights file (embedded `core/routing/data/router_weights.json`) and thresholds |
//! | [`scorer`] | features -> logistic score in `[0, 1]` -> [`Tier`] |
//! | [`select`] | tier -> model by policy, within what the caller may use; [`RoutingConfig`] |
//! | [`learning`] | what an `auto` decision records for learning, and the exploration draw |
//! | [`calibrate`] / [`learn`] / [`offpolicy`] | refitting weights from labels and from outcomes |
//! | [`offpolicy_models`] | per-model success models learned from logged calls (within-tier exploration) |
//! | [`eval`] / [`data`] | measuring a router; labeled-prompt files (and the order of their sources) |
//! | [`resend`] | implicit feedback: the caller re-sending an `auto` answer's messages to a stronger model |
//!
//! The decision's data ([`RouteDecision`], [`Tier`], [`Candidate`], [`Exclusion`],
//! [`Attempt`]...) is defined in `gaterouter_types::decision` and re-exported here.

pub mod calibrate;
pub mod data;
pub mod eval;
pub mod features;
pub mod learn;
pub mod learning;
pub mod lexical;
pub mod offpolicy;
pub mod offpolicy_models;
pub mod resend;
pub mod scorer;
pub mod select;
pub mod weights;

pub use data::{LabeledPrompt, ScoredLine, SourceOrder, load_jsonl, read_jsonl, score_jsonl};
pub use features::{FEATURE_NAMES, Feature, Features};
pub use scorer::{FeatureContribution, ScoreReport, Scorer, SuccessPrediction, Tier};
pub use select::{
    Attempt, AttemptOutcome, Candidate, Excluded, Exclusion, FirstChoice, Policy, RouteDecision,
    RoutingConfig,
};
pub use weights::{Link, SuccessModel, SuccessModels, Target, Thresholds, Weights};
