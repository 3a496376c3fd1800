//! Routing for `model: "auto"`: how demanding is a request?
//!
//! The [`Scorer`] turns cheap text features of a [`crate::types::ChatRequest`] (length,
//! code, math, reasoning cues, constraints, tools, requested output, language,
//! question type...) into a score in `[0, 1]` with a logistic model, and the score into
//! a [`Tier`] by two thresholds; optionally hashed word n-gram weights ([`lexical`]) add
//! to the same log-odds. Weights and thresholds live in a data file
//! (`core/data/router_weights.json`, embedded; another can be loaded) that
//! [`calibrate::fit`] refits from labeled prompts and [`learn`] learns from outcomes (ridge on
//! hashed n-grams with cross-validation; a bandit replay with inverse-propensity refits); [`eval`] measures a router with the
//! standard metrics (PGR, APGR, CPT) against random and length-only baselines and
//! the oracle ceilings;
//! [`select`] turns the tier into a model by policy, within what the caller may use,
//! and explains the decision.
//!
//! ```
//! use gaterouter::routing::{Scorer, Tier};
//! use gaterouter::{ChatRequest, Message};
//! let scorer = Scorer::builtin()?;
//! let report = scorer.score(&ChatRequest::new("auto", vec![Message::user("Hi!")]));
//! assert!((0.0..=1.0).contains(&report.score));
//! assert!(matches!(report.tier, Tier::Light | Tier::Standard | Tier::Heavy));
//! # Ok::<(), gaterouter::Error>(())
//! ```

pub mod calibrate;
pub mod data;
pub mod eval;
pub mod features;
pub mod learn;
pub mod learning;
pub mod lexical;
pub mod offpolicy;
pub mod resend;
pub mod scorer;
pub mod select;
pub mod weights;

pub use data::{LabeledPrompt, ScoredLine, load_jsonl, read_jsonl, score_jsonl};
pub use features::{FEATURE_NAMES, Feature, Features};
pub use scorer::{FeatureContribution, ScoreReport, Scorer, Tier};
pub use select::{
    Attempt, AttemptOutcome, Candidate, Excluded, Exclusion, Policy, RouteDecision, RoutingConfig,
};
pub use weights::{Link, Target, Thresholds, Weights};
