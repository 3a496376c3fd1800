//! The router's weights and tier thresholds, kept in a JSON data file.
//!
//! The builtin file (`core/routing/data/router_weights.json`) is produced by
//! [`crate::calibrate::fit`] from labeled data and embedded at build time; a
//! deployment can load its own file refitted on its own traffic.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::features::{FEATURE_NAMES, Feature, N_FEATURES};
use gaterouter_types::error::{Error, Result};

/// The builtin weights file, embedded at build time.
pub const BUILTIN_WEIGHTS_JSON: &str = include_str!("../data/router_weights.json");

/// Current weights file format version.
pub const WEIGHTS_VERSION: u32 = 1;

/// What the fitted score estimates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// How much the strong model beats the weak one, `clamp(strong - weak, 0, 1)`:
    /// the score is the probability that the strong model helps.
    Benefit,
    /// `1 - weak_score`: the probability that the weak model fails. The default: about
    /// twice as many positive labels as `Benefit`, and slightly better held-out APGR on
    /// the development data (bench/RESULTS.md).
    #[default]
    WeakFails,
}

/// How the linear predictor `z = bias + Σ w·x (+ n-gram part)` becomes a score in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// `score = sigmoid(z)`: a logistic model (the builtin weights).
    #[default]
    Logistic,
    /// `score = (1 + clamp(z, -1, 1)) / 2`: `z` is a predicted quality gain of the strong
    /// model over the weak one in `[-1, 1]` (ridge regression, `route calibrate`); a score
    /// of 0.5 means "no gain expected".
    Gain,
}

impl Link {
    /// The score of a linear predictor.
    pub fn apply(self, z: f64) -> f64 {
        match self {
            Link::Logistic => sigmoid(z),
            Link::Gain => {
                if z.is_nan() {
                    0.5
                } else {
                    (1.0 + z.clamp(-1.0, 1.0)) / 2.0
                }
            }
        }
    }
}

fn is_logistic(l: &Link) -> bool {
    *l == Link::Logistic
}

/// Score cut-offs between tiers: `score < standard` is light, `score >= heavy` is heavy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Lowest score of the `standard` tier.
    pub standard: f64,
    /// Lowest score of the `heavy` tier.
    pub heavy: f64,
}

/// Weights of the hashed word n-gram terms ([`crate::lexical`]): one per bucket.
/// Stored in the file quantized to `i8` with one scale (base64), so 2^14 buckets take
/// about 22 KB; held dequantized in memory so scoring is one lookup per term.
#[derive(Debug, Clone, PartialEq)]
pub struct LexicalWeights {
    /// `2^bits` buckets.
    pub bits: u8,
    /// Salt of the term hashes (0: the public hashing; an organization's learned weights
    /// carry its salt, see [`super::lexical::Hashing`]).
    pub salt: u64,
    /// One weight per bucket (`len == 2^bits`).
    pub weights: Vec<f32>,
    /// Term values: 1 per distinct bucket divided by sqrt(distinct buckets) (`true`,
    /// what `route calibrate` fits), or `count / sqrt(terms)` (`false`, the default and
    /// what files without the `binary` field mean).
    pub binary: bool,
}

/// Largest supported bucket count exponent (2^20 buckets = 1 MB quantized).
pub const MAX_LEXICAL_BITS: u8 = 20;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LexicalFile {
    bits: u8,
    /// Term-hash salt, 16 hex digits (absent: 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
    /// Weight of quantized value 1.
    scale: f32,
    /// `2^bits` signed bytes, standard base64.
    quantized: String,
    /// Binary term values (absent: counts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    binary: bool,
}

impl LexicalWeights {
    /// How requests are hashed into these weights' buckets.
    pub fn hashing(&self) -> super::lexical::Hashing {
        super::lexical::Hashing {
            bits: self.bits,
            salt: self.salt,
        }
    }

    /// The n-gram part of the sum for a request's terms as
    /// [`super::lexical::sparse_terms`] gives them (distinct sorted buckets, values
    /// `count / sqrt(terms)`): `Σ weight · value`, or with binary term values
    /// `Σ weight / sqrt(distinct buckets)`.
    pub fn logit_of(&self, terms: &[(u32, f32)]) -> f64 {
        let w = |b: u32| self.weights.get(b as usize).copied().unwrap_or(0.0);
        if self.binary {
            let sum: f32 = terms.iter().map(|&(b, _)| w(b)).sum();
            f64::from(sum) / (terms.len().max(1) as f64).sqrt()
        } else {
            f64::from(terms.iter().map(|&(b, v)| w(b) * v).sum::<f32>())
        }
    }

    fn to_file(&self) -> LexicalFile {
        use base64::Engine as _;
        let max = self.weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let q: Vec<u8> = self
            .weights
            .iter()
            .map(|w| ((w / scale).round().clamp(-127.0, 127.0) as i8) as u8)
            .collect();
        LexicalFile {
            bits: self.bits,
            salt: (self.salt != 0).then(|| format!("{:016x}", self.salt)),
            scale,
            quantized: base64::engine::general_purpose::STANDARD.encode(q),
            binary: self.binary,
        }
    }

    fn from_file(f: &LexicalFile, location: &str) -> Result<Self> {
        use base64::Engine as _;
        if f.bits == 0 || f.bits > MAX_LEXICAL_BITS {
            return Err(Error::config(
                format!("{location}: lexical.bits"),
                format!("bits = {} is out of range", f.bits),
                format!("use 1..={MAX_LEXICAL_BITS} (the calibration command writes 14)"),
            ));
        }
        if !(f.scale.is_finite() && f.scale > 0.0) {
            return Err(Error::config(
                format!("{location}: lexical.scale"),
                "scale must be a positive finite number",
                "regenerate the file with the calibration command",
            ));
        }
        let q = base64::engine::general_purpose::STANDARD
            .decode(f.quantized.as_bytes())
            .map_err(|e| {
                Error::config(
                    format!("{location}: lexical.quantized"),
                    format!("not valid base64: {e}"),
                    "regenerate the file with the calibration command",
                )
            })?;
        if q.len() != 1usize << f.bits {
            return Err(Error::config(
                format!("{location}: lexical.quantized"),
                format!("{} weights for 2^{} buckets", q.len(), f.bits),
                "give exactly 2^bits quantized weights (regenerate the file with the calibration command)",
            ));
        }
        let salt = match &f.salt {
            None => 0,
            Some(h) => u64::from_str_radix(h, 16).map_err(|_| {
                Error::config(
                    format!("{location}: lexical.salt"),
                    format!("`{h}` is not 16 hex digits"),
                    "write the salt as 16 hex digits (or regenerate the file)",
                )
            })?,
        };
        Ok(LexicalWeights {
            bits: f.bits,
            salt,
            weights: q.iter().map(|b| f32::from(*b as i8) * f.scale).collect(),
            binary: f.binary,
        })
    }
}

/// A linear model over the normalized features (and optional hashed n-grams):
/// `score = link(bias + Σ w·x)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// Free text: what data, which split, which command produced these weights.
    pub description: String,
    /// What the score estimates.
    pub target: Target,
    /// How the linear predictor maps to a score.
    pub link: Link,
    /// Intercept.
    pub bias: f64,
    /// One weight per feature, in [`Feature::ALL`] order.
    pub weights: [f64; N_FEATURES],
    /// Tier cut-offs.
    pub thresholds: Thresholds,
    /// Fit metadata (options, data size, training metrics); informational only.
    pub fit: Value,
    /// Optional hashed word n-gram weights added to the logit (absent: structural features only).
    pub lexical: Option<LexicalWeights>,
    /// Optional per-model success predictions (files calibrated on outcomes of more than
    /// two models): within a tier, a candidate predicted to do clearly worse than the best
    /// one there is ranked after it (see [`SuccessModels`]).
    pub success: Option<SuccessModels>,
}

/// Default [`SuccessModels::margin`].
pub const DEFAULT_SUCCESS_MARGIN: f64 = 0.05;

/// Each model's expected score on a request, `clamp(bias + Σ w·x + n-gram part, 0, 1)`:
/// a ridge fit of that model's own outcomes (`route calibrate` on a file whose lines carry
/// `scores` for several models). Selection uses it inside a tier: a candidate whose
/// prediction is below the best candidate's by more than `margin` goes after the others,
/// so the policy (cheapest, balanced...) picks among the models expected to do the task.
#[derive(Debug, Clone, PartialEq)]
pub struct SuccessModels {
    /// How much lower than the best candidate's a prediction may be and still count as
    /// "can do it", in `[0, 1]`. Default [`DEFAULT_SUCCESS_MARGIN`].
    pub margin: f64,
    /// Model id (`provider/model`, as the tiers name it) → its success model.
    pub models: BTreeMap<String, SuccessModel>,
}

/// One model's success model (see [`SuccessModels`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SuccessModel {
    /// Intercept.
    pub bias: f64,
    /// One weight per feature, in [`Feature::ALL`] order (0 for features not fitted).
    pub weights: [f64; N_FEATURES],
    /// Hashed n-gram weights (binary term values when `binary`), if any.
    pub lexical: Option<LexicalWeights>,
}

impl SuccessModels {
    /// Every model's predicted success on one request, by model id. The request's text is scanned
    /// once per distinct hashing (one, for a file from one `route calibrate`), not once
    /// per model.
    pub fn predict_all(
        &self,
        norm: &[f64; N_FEATURES],
        req: &gaterouter_types::types::ChatRequest,
    ) -> Vec<(String, f64)> {
        // (hashing, sorted distinct (bucket, count / sqrt(terms)) pairs)
        let mut scans: Vec<(super::lexical::Hashing, Vec<(u32, f32)>)> = Vec::new();
        self.models
            .iter()
            .map(|(name, m)| {
                let lexical = m.lexical.as_ref().map_or(0.0, |lex| {
                    let h = lex.hashing();
                    let i = match scans.iter().position(|(sh, _)| *sh == h) {
                        Some(i) => i,
                        None => {
                            scans.push((h, super::lexical::sparse_terms(req, h)));
                            scans.len() - 1
                        }
                    };
                    lex.logit_of(&scans[i].1)
                });
                (name.clone(), m.predict_with(norm, lexical))
            })
            .collect()
    }
}

impl SuccessModel {
    /// The predicted success from normalized features and the request (for the lexical part).
    pub fn predict(
        &self,
        norm: &[f64; N_FEATURES],
        req: &gaterouter_types::types::ChatRequest,
    ) -> f64 {
        let lexical = self.lexical.as_ref().map_or(0.0, |lex| {
            lex.logit_of(&super::lexical::sparse_terms(req, lex.hashing()))
        });
        self.predict_with(norm, lexical)
    }

    /// The prediction given the n-gram part of the sum, clamped to `[0, 1]`.
    fn predict_with(&self, norm: &[f64; N_FEATURES], lexical: f64) -> f64 {
        let z = self.bias
            + self
                .weights
                .iter()
                .zip(norm)
                .map(|(w, v)| w * v)
                .sum::<f64>()
            + lexical;
        if z.is_nan() { 0.0 } else { z.clamp(0.0, 1.0) }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuccessFile {
    #[serde(default = "default_margin")]
    margin: f64,
    models: BTreeMap<String, SuccessModelFile>,
}

fn default_margin() -> f64 {
    DEFAULT_SUCCESS_MARGIN
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuccessModelFile {
    bias: f64,
    /// Feature weights; features left out weigh 0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    weights: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lexical: Option<LexicalFile>,
}

/// Feature weights by name (in `weights.*` of a file) as an array; unknown names are an
/// error naming the field, missing ones are `missing` (an error when `None`).
fn feature_weights(
    map: &BTreeMap<String, f64>,
    location: &str,
    prefix: &str,
    missing: Option<f64>,
) -> Result<[f64; N_FEATURES]> {
    let mut weights = [missing.unwrap_or(0.0); N_FEATURES];
    let mut seen = [false; N_FEATURES];
    for (name, w) in map {
        let Some(f) = Feature::from_name(name) else {
            return Err(Error::config(
                format!("{location}: {prefix}weights.{name}"),
                format!("unknown feature `{name}`"),
                format!("use only these features: {}", FEATURE_NAMES.join(", ")),
            ));
        };
        weights[f as usize] = *w;
        seen[f as usize] = true;
    }
    if missing.is_none() {
        if let Some(i) = seen.iter().position(|s| !s) {
            let name = FEATURE_NAMES[i];
            return Err(Error::config(
                format!("{location}: {prefix}weights.{name}"),
                format!("feature `{name}` has no weight"),
                format!("add \"{name}\": 0.0 to disable it explicitly"),
            ));
        }
    }
    Ok(weights)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsFile {
    version: u32,
    #[serde(default)]
    description: String,
    #[serde(default)]
    target: Target,
    #[serde(default, skip_serializing_if = "is_logistic")]
    link: Link,
    bias: f64,
    weights: BTreeMap<String, f64>,
    thresholds: Thresholds,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    fit: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lexical: Option<LexicalFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    success: Option<SuccessFile>,
}

impl Weights {
    /// The builtin weights (fitted on the bundled development data).
    pub fn builtin() -> Result<Self> {
        Self::from_json_named(BUILTIN_WEIGHTS_JSON, "builtin router_weights.json")
    }

    /// Parse a weights file.
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_json_named(json, "router weights")
    }

    /// Read and parse a weights file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                path.display().to_string(),
                format!("cannot read router weights: {e}"),
                "check the path given for the router weights file",
            )
        })?;
        Self::from_json_named(&text, &path.display().to_string())
    }

    fn from_json_named(json: &str, location: &str) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(json);
        let file: WeightsFile = serde_path_to_error::deserialize(de).map_err(|e| {
            Error::config(
                format!("{location}: {}", e.path()),
                e.inner().to_string(),
                "fix the weights file (fields: version, description, target, bias, weights, thresholds, fit) or regenerate it with the calibration command",
            )
        })?;
        if file.version != WEIGHTS_VERSION {
            return Err(Error::config(
                format!("{location}: version"),
                format!("unsupported weights file version {}", file.version),
                format!(
                    "use version {WEIGHTS_VERSION} or regenerate the file with this release's calibration command"
                ),
            ));
        }
        let weights = feature_weights(&file.weights, location, "", None)?;
        let success = match &file.success {
            None => None,
            Some(sf) => {
                let mut models = BTreeMap::new();
                for (model, m) in &sf.models {
                    let prefix = format!("success.models.{model}.");
                    models.insert(
                        model.clone(),
                        SuccessModel {
                            bias: m.bias,
                            weights: feature_weights(&m.weights, location, &prefix, Some(0.0))?,
                            lexical: m
                                .lexical
                                .as_ref()
                                .map(|l| {
                                    LexicalWeights::from_file(l, &format!("{location}: {prefix}"))
                                })
                                .transpose()?,
                        },
                    );
                }
                Some(SuccessModels {
                    margin: sf.margin,
                    models,
                })
            }
        };
        let w = Weights {
            description: file.description,
            target: file.target,
            link: file.link,
            bias: file.bias,
            weights,
            thresholds: file.thresholds,
            fit: file.fit,
            lexical: file
                .lexical
                .as_ref()
                .map(|l| LexicalWeights::from_file(l, location))
                .transpose()?,
            success,
        };
        w.validate(location)?;
        Ok(w)
    }

    /// Check that every number is finite and the thresholds are ordered in `[0, 1]`.
    pub fn validate(&self, location: &str) -> Result<()> {
        if !self.bias.is_finite() {
            return Err(Error::config(
                format!("{location}: bias"),
                "bias is not a finite number",
                "set a finite bias",
            ));
        }
        for (i, w) in self.weights.iter().enumerate() {
            if !w.is_finite() {
                let name = FEATURE_NAMES[i];
                return Err(Error::config(
                    format!("{location}: weights.{name}"),
                    "weight is not finite",
                    "set a finite weight",
                ));
            }
        }
        let Thresholds { standard, heavy } = self.thresholds;
        if !(0.0..=1.0).contains(&standard) || !(0.0..=1.0).contains(&heavy) || standard > heavy {
            return Err(Error::config(
                format!("{location}: thresholds"),
                format!(
                    "thresholds standard={standard}, heavy={heavy} are not ordered within [0, 1]"
                ),
                "use 0 <= standard <= heavy <= 1",
            ));
        }
        if let Some(sm) = &self.success {
            if !(0.0..=1.0).contains(&sm.margin) {
                return Err(Error::config(
                    format!("{location}: success.margin"),
                    format!("margin {} is not within [0, 1]", sm.margin),
                    format!("use a share such as {DEFAULT_SUCCESS_MARGIN} (the default)"),
                ));
            }
            for (model, m) in &sm.models {
                if !(m.bias.is_finite() && m.weights.iter().all(|w| w.is_finite())) {
                    return Err(Error::config(
                        format!("{location}: success.models.{model}"),
                        "bias or a weight is not a finite number",
                        "regenerate the file with the calibration command",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Serialize as a pretty weights file (weights rounded to 1e-9 so diffs stay readable).
    pub fn to_json(&self) -> String {
        let r = |x: f64| (x * 1e9).round() / 1e9;
        let file = WeightsFile {
            version: WEIGHTS_VERSION,
            description: self.description.clone(),
            target: self.target,
            link: self.link,
            bias: r(self.bias),
            weights: FEATURE_NAMES
                .iter()
                .zip(self.weights.iter())
                .map(|(n, w)| ((*n).to_owned(), r(*w)))
                .collect(),
            thresholds: Thresholds {
                standard: r(self.thresholds.standard),
                heavy: r(self.thresholds.heavy),
            },
            fit: self.fit.clone(),
            lexical: self.lexical.as_ref().map(LexicalWeights::to_file),
            success: self.success.as_ref().map(|sm| SuccessFile {
                margin: sm.margin,
                models: sm
                    .models
                    .iter()
                    .map(|(name, m)| {
                        let file = SuccessModelFile {
                            bias: r(m.bias),
                            weights: FEATURE_NAMES
                                .iter()
                                .zip(m.weights.iter())
                                .filter(|(_, w)| **w != 0.0)
                                .map(|(n, w)| ((*n).to_owned(), r(*w)))
                                .collect(),
                            lexical: m.lexical.as_ref().map(LexicalWeights::to_file),
                        };
                        (name.clone(), file)
                    })
                    .collect(),
            }),
        };
        let mut s = serde_json::to_string_pretty(&file).unwrap_or_default();
        s.push('\n');
        s
    }

    /// A short content hash of the weights file (16 hex digits of FNV-1a over its JSON):
    /// the weights version that made a decision.
    pub fn fingerprint(&self) -> String {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in self.to_json().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Hand-set starting point used as the prior (the centre of the L2 penalty) when
    /// fitting. It matters only for features the calibration data barely exercises —
    /// tools, conversation depth, code, CJK text — which keep roughly these weights;
    /// for the others the data decides. Directions follow the issue: more of each
    /// cue means a harder request.
    pub fn prior() -> Self {
        let mut weights = [0.0; N_FEATURES];
        for (f, w) in [
            (Feature::Tokens, 0.5),
            (Feature::Depth, 0.5),
            (Feature::Code, 1.0),
            (Feature::Math, 0.5),
            (Feature::Numbers, 0.3),
            (Feature::Reasoning, 0.5),
            (Feature::Constraints, 0.3),
            (Feature::Tools, 0.5),
            (Feature::OutputLength, 0.3),
            (Feature::NonEnglish, 0.3),
        ] {
            weights[f as usize] = w;
        }
        Weights {
            description: "hand-set prior".to_owned(),
            target: Target::WeakFails,
            link: Link::Logistic,
            bias: -1.5,
            weights,
            thresholds: Thresholds {
                standard: 0.2,
                heavy: 0.3,
            },
            fit: Value::Null,
            lexical: None,
            success: None,
        }
    }
}

/// The logistic function, total over all finite and infinite inputs.
pub fn sigmoid(z: f64) -> f64 {
    if z.is_nan() {
        return 0.5;
    }
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_loads_and_round_trips() {
        let w = Weights::builtin().expect("builtin weights load");
        let again = Weights::from_json(&w.to_json()).expect("re-parses");
        assert_eq!(w.weights, again.weights);
        assert_eq!(w.thresholds, again.thresholds);
    }

    #[test]
    fn lexical_weights_round_trip_quantized() {
        let mut w = Weights::prior();
        let weights: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 64.0).collect();
        w.lexical = Some(LexicalWeights {
            bits: 8,
            salt: 0xfeed_0000_0000_0001,
            weights: weights.clone(),
            binary: false,
        });
        let again = Weights::from_json(&w.to_json()).expect("re-parses");
        let lex = again.lexical.as_ref().expect("lexical kept");
        assert_eq!(lex.bits, 8);
        assert_eq!(lex.salt, 0xfeed_0000_0000_0001);
        let scale = 2.0 / 127.0;
        for (a, b) in weights.iter().zip(&lex.weights) {
            assert!((a - b).abs() <= scale / 2.0 + 1e-6, "{a} {b}");
        }
        // quantizing twice changes nothing
        assert_eq!(
            Weights::from_json(&again.to_json()).expect("again").lexical,
            again.lexical
        );
        assert!(Weights::prior().to_json().find("lexical").is_none());
    }

    #[test]
    fn success_models_round_trip_and_errors_name_the_field() {
        let mut w = Weights::prior();
        let mut small = SuccessModel {
            bias: 0.7,
            weights: [0.0; N_FEATURES],
            lexical: Some(LexicalWeights {
                bits: 4,
                salt: 0,
                weights: vec![0.25; 16],
                binary: true,
            }),
        };
        small.weights[Feature::Tokens as usize] = -0.5;
        w.success = Some(SuccessModels {
            margin: 0.1,
            models: [
                ("openai/gpt-4o-mini".to_owned(), small),
                (
                    "openai/gpt-5".to_owned(),
                    SuccessModel {
                        bias: 0.9,
                        weights: [0.0; N_FEATURES],
                        lexical: None,
                    },
                ),
            ]
            .into_iter()
            .collect(),
        });
        let json = w.to_json();
        let again = Weights::from_json(&json).expect("re-parses");
        assert_eq!(again.success, w.success);
        // only non-zero feature weights are written for success models
        assert!(json.contains("\"tokens\": -0.5"), "{json}");
        let e = Weights::from_json(&json.replace("\"margin\": 0.1", "\"margin\": 1.5"))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("success.margin"), "{e}");
        let e = Weights::from_json(&json.replace("\"tokens\": -0.5", "\"tokenz\": -0.5"))
            .expect_err("must fail")
            .to_string();
        assert!(
            e.contains("success.models.openai/gpt-4o-mini.weights.tokenz"),
            "{e}"
        );
        // an older file (no `success`) has none
        assert!(Weights::prior().to_json().find("success").is_none());
    }

    #[test]
    fn success_predictions_scan_once_and_match_the_scorer_sums() {
        use gaterouter_types::types::{ChatRequest, Message};
        let req = ChatRequest::new(
            "auto",
            vec![Message::user(
                "the tort claim: a tort of negligence, or a tort of nuisance?",
            )],
        );
        let lex = |bits: u8, salt: u64, binary: bool| LexicalWeights {
            bits,
            salt,
            weights: (0..1u32 << bits)
                .map(|i| (i % 7) as f32 * 0.01 - 0.03)
                .collect(),
            binary,
        };
        let model = |lexical| SuccessModel {
            bias: 0.5,
            weights: [0.0; N_FEATURES],
            lexical,
        };
        let sm = SuccessModels {
            margin: 0.05,
            models: [
                ("a/binary".to_owned(), model(Some(lex(8, 0, true)))),
                ("b/counts".to_owned(), model(Some(lex(8, 0, false)))),
                ("c/salted".to_owned(), model(Some(lex(6, 42, true)))),
                ("d/mean".to_owned(), model(None)),
            ]
            .into_iter()
            .collect(),
        };
        let norm = [0.0; N_FEATURES];
        let all = sm.predict_all(&norm, &req);
        assert_eq!(all.len(), 4);
        for (name, p) in &all {
            let m = &sm.models[name];
            // the scorer's own sums (bitset for binary values, per-term for counts)
            let direct = m.lexical.as_ref().map_or(0.0, |l| {
                super::super::lexical::lexical_logit_terms_with(
                    &req,
                    l.hashing(),
                    &l.weights,
                    l.binary,
                )
                .1
            });
            assert!(
                (p - (0.5 + direct).clamp(0.0, 1.0)).abs() < 1e-6,
                "{name}: {p} vs {direct}"
            );
            assert!((p - m.predict(&norm, &req)).abs() < 1e-12, "{name}");
        }
        assert_ne!(
            all[0].1, all[1].1,
            "binary and counted term values differ here"
        );
        assert_eq!(all[3].1, 0.5);
    }

    #[test]
    fn errors_name_the_field() {
        let mut w = Weights::prior();
        w.thresholds = Thresholds {
            standard: 0.6,
            heavy: 0.4,
        };
        let e = Weights::from_json(&w.to_json())
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("thresholds"), "{e}");

        let json = Weights::prior().to_json().replace("\"tools\"", "\"toolz\"");
        let e = Weights::from_json(&json)
            .expect_err("must fail")
            .to_string();
        assert!(
            e.contains("weights.toolz") && e.contains("unknown feature"),
            "{e}"
        );

        let json = Weights::prior().to_json().replace("\"tools\": 0.5,", "");
        let e = Weights::from_json(&json)
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("weights.tools"), "{e}");

        let mut w = Weights::prior();
        w.lexical = Some(LexicalWeights {
            bits: 4,
            salt: 0,
            weights: vec![0.5; 16],
            binary: false,
        });
        let json = w.to_json();
        let e = Weights::from_json(&json.replace("\"bits\": 4", "\"bits\": 5"))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("lexical.quantized"), "{e}");
        let e = Weights::from_json(&json.replace("\"bits\": 4", "\"bits\": 40"))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("lexical.bits"), "{e}");

        let e = Weights::from_json(r#"{"version":1,"bias":"x"}"#)
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("bias"), "{e}");
        let json = Weights::prior()
            .to_json()
            .replace("\"version\": 1", "\"version\": 9");
        assert!(
            Weights::from_json(&json)
                .expect_err("must fail")
                .to_string()
                .contains("version")
        );
    }
}
