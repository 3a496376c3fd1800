//! The complexity scorer: features -> logistic score in `[0, 1]` -> tier.

use std::borrow::Cow;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::features::{self, FEATURE_NAMES, Features, N_FEATURES};
use super::lexical;
use super::weights::Weights;
use gaterouter_types::error::Result;
use gaterouter_types::types::ChatRequest;

/// Name of the n-gram part in score reports.
pub const LEXICAL_NAME: &str = "lexical";

pub use gaterouter_types::decision::{FeatureContribution, Tier};

/// The outcome of scoring one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    /// In `[0, 1]`; higher means the strong model is more likely to make a difference.
    pub score: f64,
    /// The tier the thresholds put this score in.
    pub tier: Tier,
    /// Every feature's contribution, in feature order.
    pub features: Vec<FeatureContribution>,
    /// Each model's predicted success, when the weights have success models
    /// ([`crate::weights::SuccessModels`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<SuccessPrediction>,
}

/// What the weights' success models predict for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccessPrediction {
    /// How far below the best candidate's a prediction may be and still count
    /// ([`crate::weights::SuccessModels::margin`]).
    pub margin: f64,
    /// `(model, predicted success in [0, 1])`, by model id.
    pub models: Vec<(String, f64)>,
}

impl SuccessPrediction {
    /// The prediction for a model, if the weights have one for it.
    pub fn of(&self, model: &str) -> Option<f64> {
        self.models
            .iter()
            .find(|(m, _)| m == model)
            .map(|(_, p)| *p)
    }
}

impl ScoreReport {
    /// The features sorted by the size of their contribution, largest first.
    pub fn top_contributions(&self, n: usize) -> Vec<&FeatureContribution> {
        let mut v: Vec<&FeatureContribution> = self.features.iter().collect();
        v.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        v.truncate(n);
        v
    }
}

/// Scores requests with a fixed set of [`Weights`]. Cheap to clone and share.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorer {
    weights: Weights,
}

impl Scorer {
    /// The scorer with the builtin weights file.
    pub fn builtin() -> Result<Self> {
        Ok(Scorer {
            weights: Weights::builtin()?,
        })
    }

    /// A scorer from a weights file's JSON text.
    pub fn from_json(json: &str) -> Result<Self> {
        Ok(Scorer {
            weights: Weights::from_json(json)?,
        })
    }

    /// A scorer from a weights file on disk.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Scorer {
            weights: Weights::from_file(path)?,
        })
    }

    /// A scorer from weights already in memory (e.g. fresh from calibration).
    pub fn new(weights: Weights) -> Self {
        Scorer { weights }
    }

    /// The weights in use.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Score a request and explain the score. With lexical weights the report has one
    /// more entry after the features, `lexical` (value: number of terms; contribution:
    /// the n-gram part of the log-odds).
    pub fn score(&self, req: &ChatRequest) -> ScoreReport {
        let f = features::extract(req);
        let mut features: Vec<FeatureContribution> = (0..N_FEATURES)
            .map(|i| FeatureContribution {
                name: Cow::Borrowed(FEATURE_NAMES[i]),
                value: f.raw[i],
                normalized: f.norm[i],
                weight: self.weights.weights[i],
                contribution: self.weights.weights[i] * f.norm[i],
            })
            .collect();
        let mut z = self.logit(&f.norm);
        if let Some(lex) = &self.weights.lexical {
            let (terms, part) =
                lexical::lexical_logit_terms_with(req, lex.hashing(), &lex.weights, lex.binary);
            z += part;
            features.push(FeatureContribution {
                name: Cow::Borrowed(LEXICAL_NAME),
                value: terms as f64,
                normalized: part,
                weight: 1.0,
                contribution: part,
            });
        }
        let score = self.weights.link.apply(z);
        let success = self.weights.success.as_ref().map(|sm| SuccessPrediction {
            margin: sm.margin,
            models: sm.predict_all(&f.norm, req),
        });
        ScoreReport {
            score,
            tier: self.tier(score),
            features,
            success,
        }
    }

    /// Only the score (no report allocation): what evaluation loops call.
    pub fn score_only(&self, req: &ChatRequest) -> f64 {
        let mut z = self.logit(&features::extract(req).norm);
        if let Some(lex) = &self.weights.lexical {
            z += lexical::lexical_logit_terms_with(req, lex.hashing(), &lex.weights, lex.binary).1;
        }
        self.weights.link.apply(z)
    }

    /// Score already extracted features (the structural part only: lexical weights,
    /// if any, need the request text; use [`Scorer::score_only`]).
    pub fn score_features(&self, f: &Features) -> f64 {
        self.weights.link.apply(self.logit(&f.norm))
    }

    fn logit(&self, x: &[f64; N_FEATURES]) -> f64 {
        self.weights.bias
            + self
                .weights
                .weights
                .iter()
                .zip(x)
                .map(|(w, v)| w * v)
                .sum::<f64>()
    }

    /// The tier of a score under this scorer's thresholds.
    pub fn tier(&self, score: f64) -> Tier {
        let t = self.weights.thresholds;
        if score >= t.heavy {
            Tier::Heavy
        } else if score >= t.standard {
            Tier::Standard
        } else {
            Tier::Light
        }
    }
}

pub use super::weights::sigmoid;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::Thresholds;
    use gaterouter_types::types::Message;

    #[test]
    fn builtin_scores_in_unit_interval_with_all_features() {
        let s = Scorer::builtin().expect("builtin loads");
        for text in [
            "hi",
            "Prove that there are infinitely many primes, step by step.",
            &"long text ".repeat(5000),
        ] {
            let r = s.score(&ChatRequest::new("auto", vec![Message::user(text)]));
            assert!((0.0..=1.0).contains(&r.score), "{}", r.score);
            assert_eq!(r.features.len(), N_FEATURES);
            let logit: f64 =
                s.weights().bias + r.features.iter().map(|c| c.contribution).sum::<f64>();
            assert!((sigmoid(logit) - r.score).abs() < 1e-12);
            assert_eq!(r.tier, s.tier(r.score));
        }
    }

    #[test]
    fn tier_boundaries_are_inclusive_below() {
        let mut w = Weights::prior();
        w.thresholds = Thresholds {
            standard: 0.25,
            heavy: 0.6,
        };
        let s = Scorer::new(w);
        assert_eq!(s.tier(0.0), Tier::Light);
        assert_eq!(s.tier(0.2499999), Tier::Light);
        assert_eq!(s.tier(0.25), Tier::Standard);
        assert_eq!(s.tier(0.5999999), Tier::Standard);
        assert_eq!(s.tier(0.6), Tier::Heavy);
        assert_eq!(s.tier(1.0), Tier::Heavy);
    }

    #[test]
    fn tier_serializes_lowercase() {
        assert_eq!(
            serde_json::to_string(&Tier::Heavy).expect("ser"),
            "\"heavy\""
        );
        assert_eq!(
            serde_json::from_str::<Tier>("\"light\"").expect("de"),
            Tier::Light
        );
    }

    #[test]
    fn sigmoid_is_total() {
        assert_eq!(sigmoid(f64::INFINITY), 1.0);
        assert_eq!(sigmoid(f64::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(f64::NAN), 0.5);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn lexical_weights_add_to_the_logit_and_report() {
        use crate::weights::LexicalWeights;
        let mut w = Weights::prior();
        w.weights = [0.0; N_FEATURES];
        w.bias = 0.0;
        w.lexical = Some(LexicalWeights {
            bits: 6,
            salt: 0,
            weights: vec![0.5; 64],
            binary: false,
        });
        let s = Scorer::new(w);
        let req = ChatRequest::new("auto", vec![Message::user("one two three four")]);
        let r = s.score(&req);
        // 8 terms of weight 0.5: 4 / sqrt(8)
        let part = 4.0 / 8f64.sqrt();
        assert_eq!(r.features.len(), N_FEATURES + 1);
        let last = r.features.last().expect("lexical entry");
        assert_eq!((last.name.as_ref(), last.value), (LEXICAL_NAME, 8.0));
        assert!((last.contribution - part).abs() < 1e-6);
        assert!((r.score - sigmoid(part)).abs() < 1e-6);
        assert!((s.score_only(&req) - r.score).abs() < 1e-12);
    }

    #[test]
    fn weights_steer_the_score() {
        let mut w = Weights::prior();
        w.weights = [0.0; N_FEATURES];
        w.bias = 0.0;
        w.weights[crate::features::Feature::Reasoning as usize] = 3.0;
        let s = Scorer::new(w);
        let plain = s
            .score(&ChatRequest::new("auto", vec![Message::user("hello")]))
            .score;
        let hard = s
            .score(&ChatRequest::new(
                "auto",
                vec![Message::user("prove, derive, analyze")],
            ))
            .score;
        assert!((plain - 0.5).abs() < 1e-12);
        assert!((hard - sigmoid(3.0)).abs() < 1e-12);
    }
}
