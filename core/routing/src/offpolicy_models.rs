//! Per-model success models learned from logged production calls (what the collector
//! runs for an organization whose client explores *within* a tier): for every model that
//! served enough rated `auto` calls, a ridge model of its outcome score on the call's
//! recorded features (hashed word n-grams and structural features), served as
//! [`SuccessModels`] so that selection inside a tier ranks a model predicted clearly worse
//! than the best candidate after the others.
//!
//! Only the chosen model's outcome is known for a call, and the router chose it on the
//! request's features (the tier by the score, the model by the policy and the success
//! models already served, plus exploration). The calls a model served are therefore not a
//! sample of the organization's traffic: a model routed mostly math prompts sees few of
//! the others, and a penalized fit of its success leans toward the prompts it was sent.
//! Each call is weighted by the inverse of the probability the router gave its model
//! (`model_propensity`, tier probability times within-tier probability, the weight capped
//! for variance), so every model's fit targets the same population, all the traffic, and
//! predictions of different models can be compared on one request.
//!
//! The gate is honest and per model: out-of-fold (K-fold cross-fitting, folds by request,
//! seeded) the inverse-propensity-weighted squared error of the fit's predictions is
//! compared with that of the model's weighted mean outcome on the same training folds (a
//! constant predictor). A model is kept only when its features predict its success better
//! than its average does, by `min_gain` and by two standard errors of the per-call
//! differences: on outcomes independent of the request the fit beats the constant about as
//! often as not, by amounts of the size of their noise. Success models are returned only
//! when at least two models are kept (selection compares models, one alone ranks nothing).
//!
//! Deterministic for a seed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::learn::{self, Logged, SimulateOptions, bad};
use super::lexical::Hashing;
use super::offpolicy::{self, LogRows};
use super::weights::{DEFAULT_SUCCESS_MARGIN, SuccessModel, SuccessModels};
use gaterouter_types::error::Result;

/// One rated call as the per-model learner sees it.
#[derive(Debug, Clone)]
pub struct ModelCall {
    /// Its design row (recorded features, [`super::learning::row_of`]) in the log's
    /// [`LogRows`], shared with the call's [`super::offpolicy::LoggedCall`].
    pub row: usize,
    /// The model that served it (`provider/model`, as the tiers name it).
    pub model: String,
    /// The outcome score in `[0, 1]` (the mean of its feedback).
    pub reward: f64,
    /// The probability the router gave this model for the call, in `(0, 1]`: the tier's
    /// probability times the model's probability within the tier.
    pub propensity: f64,
    /// The request it answered, as [`super::offpolicy::LoggedCall::call`]: calls sharing
    /// the key share a cross-fitting fold.
    pub call: u64,
}

/// Options of [`learn_success_models`].
#[derive(Debug, Clone)]
pub struct ModelLearnOptions {
    /// The organization's hashing (the rows' buckets; the success models carry it).
    pub hashing: Hashing,
    /// Penalties tried per fit (3-fold CV of the weighted error inside the training
    /// calls). Default [`learn::DEFAULT_LAMBDAS`].
    pub lambdas: Vec<f64>,
    /// Fit binary term values (`1 / sqrt(distinct terms)` per present term, see
    /// [`offpolicy::binary_row`]) instead of counts; the success models say which
    /// (`lexical.binary`). Default true.
    pub binary: bool,
    /// Cross-fitting folds of the gate, in `2..=20`. Default 5.
    pub folds: usize,
    /// Seed of the folds and of the penalty choice.
    pub seed: u64,
    /// Cap of a call's inverse-propensity weight. Default 20.
    pub max_weight: f64,
    /// Fewest rated calls of a model before its success is fitted (they must also fall
    /// in at least two folds, which only a handful of repeated requests can fail).
    /// Default 30.
    pub min_per_model: usize,
    /// [`SuccessModels::margin`] of the returned models. Default
    /// [`DEFAULT_SUCCESS_MARGIN`].
    pub margin: f64,
    /// How much lower than the constant predictor's the fit's out-of-fold error must be
    /// for the model to be kept. Default 0.
    pub min_gain: f64,
}

impl Default for ModelLearnOptions {
    fn default() -> Self {
        ModelLearnOptions {
            hashing: Hashing::plain(learn::DEFAULT_BITS),
            lambdas: learn::DEFAULT_LAMBDAS.to_vec(),
            binary: true,
            folds: 5,
            seed: 1,
            max_weight: 20.0,
            min_per_model: 30,
            margin: DEFAULT_SUCCESS_MARGIN,
            min_gain: 0.0,
        }
    }
}

/// What the gate found for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFit {
    /// Model id.
    pub model: String,
    /// Its rated calls.
    pub outcomes: usize,
    /// Inverse-propensity-weighted mean squared error of the fit's out-of-fold
    /// predictions (clamped to `[0, 1]`, as served); 0 when not fitted.
    pub cv_error: f64,
    /// Same error for the model's weighted mean outcome on the training folds; 0 when not
    /// fitted.
    pub constant_error: f64,
    /// Fitted and `cv_error < constant_error - min_gain`, the gain
    /// `constant_error - cv_error - min_gain` being at least two standard errors of the
    /// per-call differences: its features predict its success better than its average
    /// does, by more than noise would.
    pub kept: bool,
}

/// What a per-model learning run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelLearnReport {
    /// Rated calls used.
    pub outcomes: usize,
    /// One entry per model that served a rated call, by model id.
    pub models: Vec<ModelFit>,
    /// Models kept by the gate.
    pub kept: usize,
    /// One sentence: why success models were (not) learned.
    pub reason: String,
}

/// Standard errors by which a model's out-of-fold gain over its constant predictor must
/// exceed `min_gain` to be kept (see [`ModelFit::kept`]).
const GATE_Z: f64 = 2.0;

fn validate(rows: &LogRows, calls: &[ModelCall], opts: &ModelLearnOptions) -> Result<()> {
    if !(2..=20).contains(&opts.folds) {
        return Err(bad(
            "folds",
            format!("folds = {} must be in 2..=20", opts.folds),
        ));
    }
    rows.check(opts.hashing.bits, calls.iter().map(|c| c.row))?;
    learn::check_lambdas(&opts.lambdas)?;
    if opts.max_weight.is_nan() || opts.max_weight < 1.0 {
        return Err(bad(
            "max_weight",
            format!(
                "max_weight = {} must be at least 1 (1: no inverse-propensity weighting)",
                opts.max_weight
            ),
        ));
    }
    if !(0.0..=1.0).contains(&opts.margin) {
        return Err(bad(
            "margin",
            format!("margin = {} must be in [0, 1]", opts.margin),
        ));
    }
    if !opts.min_gain.is_finite() {
        return Err(bad(
            "min_gain",
            format!("min_gain = {} must be a finite number", opts.min_gain),
        ));
    }
    if let Some(c) = calls.iter().find(|c| {
        c.propensity <= 0.0 || c.propensity > 1.0 || c.propensity.is_nan() || !c.reward.is_finite()
    }) {
        return Err(bad(
            "outcomes",
            format!(
                "a logged call to {} has model propensity {} / reward {}: propensities must be in (0, 1], rewards finite",
                c.model, c.propensity, c.reward
            ),
        ));
    }
    Ok(())
}

/// `n` models, in words.
fn models_in_words(n: usize) -> String {
    match n {
        0 => "no model has".into(),
        1 => "only 1 model has".into(),
        n => format!("only {n} models have"),
    }
}

/// Learn per-model success models from logged calls. Returns the report and, when at
/// least two models pass the gate, their success models (refitted on all their calls)
/// for [`super::weights::Weights::success`]; models that did not pass are left out, so
/// selection does not reorder them.
pub fn learn_success_models(
    rows: &LogRows,
    calls: &[ModelCall],
    opts: &ModelLearnOptions,
) -> Result<(ModelLearnReport, Option<SuccessModels>)> {
    validate(rows, calls, opts)?;
    let bits = opts.hashing.bits;
    let so = SimulateOptions {
        bits,
        lambdas: opts.lambdas.clone(),
        max_weight: opts.max_weight,
        ..SimulateOptions::default()
    };
    let rows = rows.fit(opts.binary);
    let log = |i: usize| Logged {
        row: calls[i].row,
        strong: false,
        reward: calls[i].reward,
        propensity: calls[i].propensity,
    };
    let weight: Vec<f64> = calls
        .iter()
        .map(|c| (1.0 / c.propensity).min(opts.max_weight))
        .collect();
    // Folds by request (first appearance order), then each call's fold.
    let (group_of, firsts) = offpolicy::requests(calls.iter().map(|c| c.call));
    let gfold = learn::folds(firsts.len(), opts.folds, opts.seed);
    let fold: Vec<usize> = group_of.iter().map(|g| gfold[*g]).collect();
    let mut by_model: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in calls.iter().enumerate() {
        by_model.entry(c.model.as_str()).or_default().push(i);
    }
    // Enough calls, spread over at least two folds (every fold has training calls).
    let enough = |idx: &[usize]| {
        idx.len() >= opts.min_per_model && idx.iter().any(|i| fold[*i] != fold[idx[0]])
    };
    let mut fits = Vec::with_capacity(by_model.len());
    for (model, idx) in &by_model {
        let mut fit = ModelFit {
            model: (*model).to_owned(),
            outcomes: idx.len(),
            cv_error: 0.0,
            constant_error: 0.0,
            kept: false,
        };
        if enough(idx) {
            // Out of fold, per call: (weight, squared error of the fit, of the constant).
            let mut oof: Vec<(f64, f64, f64)> = Vec::with_capacity(idx.len());
            for k in 0..opts.folds {
                let (test, train): (Vec<usize>, Vec<usize>) =
                    idx.iter().partition(|i| fold[**i] == k);
                if test.is_empty() {
                    continue;
                }
                let logs: Vec<Logged> = train.iter().map(|&i| log(i)).collect();
                let refs: Vec<&Logged> = logs.iter().collect();
                let m = learn::fit_success(rows, &refs, &so, opts.seed ^ k as u64);
                let tw: f64 = train.iter().map(|&i| weight[i]).sum();
                let constant = train
                    .iter()
                    .map(|&i| weight[i] * calls[i].reward)
                    .sum::<f64>()
                    / tw;
                for &i in &test {
                    let (r, p) = (
                        calls[i].reward,
                        m.predict(&rows[calls[i].row]).clamp(0.0, 1.0),
                    );
                    oof.push((weight[i], (r - p).powi(2), (r - constant).powi(2)));
                }
            }
            let w: f64 = oof.iter().map(|o| o.0).sum();
            fit.cv_error = oof.iter().map(|o| o.0 * o.1).sum::<f64>() / w;
            fit.constant_error = oof.iter().map(|o| o.0 * o.2).sum::<f64>() / w;
            // Standard error of the gain (a weighted mean of per-call differences,
            // linearized): on noise the gain is as often positive as not, so it must
            // stand out of its own noise, not just be above zero.
            let gain = fit.constant_error - fit.cv_error;
            let se = oof
                .iter()
                .map(|(wi, ef, ec)| (wi * (ec - ef) - gain * wi).powi(2))
                .sum::<f64>()
                .sqrt()
                / w;
            fit.kept = gain - opts.min_gain > GATE_Z * se;
        }
        fits.push(fit);
    }
    let fitted = by_model.values().filter(|idx| enough(idx)).count();
    let kept = fits.iter().filter(|f| f.kept).count();
    let mut report = ModelLearnReport {
        outcomes: calls.len(),
        models: fits,
        kept,
        reason: String::new(),
    };
    if fitted < 2 {
        report.reason = format!(
            "{} enough rated calls ({} needed): explore more or send more feedback",
            models_in_words(fitted),
            opts.min_per_model
        );
        return Ok((report, None));
    }
    if kept < 2 {
        report.reason = format!(
            "{kept} of the {fitted} models with enough rated calls predict their success from the request better than their average does out of fold: no success models learned"
        );
        return Ok((report, None));
    }
    let mut models = BTreeMap::new();
    for f in report.models.iter().filter(|f| f.kept) {
        let logs: Vec<Logged> = by_model[f.model.as_str()].iter().map(|&i| log(i)).collect();
        let refs: Vec<&Logged> = logs.iter().collect();
        let mut m: SuccessModel =
            learn::fit_success(rows, &refs, &so, opts.seed).to_success_model()?;
        if let Some(l) = m.lexical.as_mut() {
            l.salt = opts.hashing.salt;
            l.binary = opts.binary;
        }
        models.insert(f.model.clone(), m);
    }
    report.reason = format!(
        "learned success models of {kept} of {} models from {} rated calls: their requests' features predict their success better than their average does out of fold",
        report.models.len(),
        calls.len()
    );
    Ok((
        report,
        Some(SuccessModels {
            margin: opts.margin,
            models,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::{Row, SplitMix};
    use crate::offpolicy::binary_row;
    use gaterouter_types::error::Error;

    const BITS: u8 = 8;
    const MATH: u32 = 3;
    const OTHER: u32 = 5;
    const NAMES: [&str; 3] = ["a/math", "b/prose", "c/flat"];

    /// A synthetic design row: a "math" or an "other" term bucket, a filler term, and the
    /// length structural feature (independent of the rest).
    fn row(math: bool, rng: &mut SplitMix) -> Row {
        let filler = 10 + (rng.next_u64() % 20) as u32;
        let len = rng.next_f64() as f32;
        vec![
            (if math { MATH } else { OTHER }, 1.0),
            (filler, 1.0),
            (1 << BITS, len),
        ]
    }

    /// `n` logged calls: half of the requests are math; `policy(math)` gives each model's
    /// probability (recorded as the propensity), `truth(model, math)` its success rate
    /// (0/1 rewards).
    fn log(
        n: usize,
        seed: u64,
        policy: impl Fn(bool) -> [f64; 3],
        truth: impl Fn(usize, bool) -> f64,
    ) -> (LogRows, Vec<ModelCall>) {
        let mut rng = SplitMix::new(seed);
        let mut rows = LogRows::new(BITS).unwrap();
        let calls = (0..n)
            .map(|i| {
                let math = rng.next_f64() < 0.5;
                let row = rows.push(row(math, &mut rng)).unwrap();
                let p = policy(math);
                let u = rng.next_f64();
                let m = if u < p[0] {
                    0
                } else if u < p[0] + p[1] {
                    1
                } else {
                    2
                };
                let reward = if rng.next_f64() < truth(m, math) {
                    1.0
                } else {
                    0.0
                };
                ModelCall {
                    row,
                    model: NAMES[m].to_owned(),
                    reward,
                    propensity: p[m],
                    call: i as u64,
                }
            })
            .collect();
        (rows, calls)
    }

    /// A served success model's prediction on a raw row (binary term values, as served).
    fn predict(m: &SuccessModel, raw: &Row) -> f64 {
        let nb = 1u32 << BITS;
        let lex = m.lexical.as_ref().unwrap();
        let z = m.bias
            + binary_row(raw, BITS)
                .iter()
                .map(|&(j, x)| {
                    let w = if j < nb {
                        f64::from(lex.weights[j as usize])
                    } else {
                        m.weights[(j - nb) as usize]
                    };
                    w * f64::from(x)
                })
                .sum::<f64>();
        z.clamp(0.0, 1.0)
    }

    fn opts(seed: u64) -> ModelLearnOptions {
        ModelLearnOptions {
            hashing: Hashing {
                bits: BITS,
                salt: 0xdead_beef,
            },
            seed,
            ..Default::default()
        }
    }

    fn planted(m: usize, math: bool) -> f64 {
        match (m, math) {
            (0, true) => 0.9,
            (0, false) => 0.5,
            (1, true) => 0.2,
            (1, false) => 0.8,
            _ => 0.6,
        }
    }

    #[test]
    fn recovers_a_planted_signal_per_model() {
        let (rows, calls) = log(1500, 3, |_| [0.6, 0.3, 0.1], planted);
        let (r, s) = learn_success_models(&rows, &calls, &opts(1)).unwrap();
        let s = s.unwrap_or_else(|| panic!("{r:?}"));
        assert_eq!(r.outcomes, 1500);
        assert!(r.models[0].kept && r.models[1].kept, "{r:?}");
        let (a, b) = (&s.models["a/math"], &s.models["b/prose"]);
        let lex = a.lexical.as_ref().unwrap();
        assert!(lex.binary && lex.salt == 0xdead_beef && lex.bits == BITS);
        assert_eq!(s.margin, DEFAULT_SUCCESS_MARGIN);
        let mut rng = SplitMix::new(99);
        let (math, other) = (row(true, &mut rng), row(false, &mut rng));
        let (am, bm, ao, bo) = (
            predict(a, &math),
            predict(b, &math),
            predict(a, &other),
            predict(b, &other),
        );
        assert!(am > bm + 0.4, "math: a {am} b {bm}");
        assert!(bo > ao + 0.15, "other: a {ao} b {bo}");
        // C's success does not depend on the request: dropped, or flat.
        if let Some(c) = s.models.get("c/flat") {
            let (cm, co) = (predict(c, &math), predict(c, &other));
            assert!((cm - co).abs() < 0.1, "c: {cm} {co}");
        }
        // Deterministic.
        let (r2, s2) = learn_success_models(&rows, &calls, &opts(1)).unwrap();
        assert_eq!((r, Some(s)), (r2, s2));
    }

    #[test]
    fn inverse_propensity_weights_target_all_the_traffic() {
        // A serves mostly math prompts and B mostly the others; a fixed large penalty
        // shrinks each model's rarely seen kind toward the kind it usually serves unless
        // the calls are reweighted. True mean success over all traffic: A 0.7, B 0.5.
        let (rows, calls) = log(
            3000,
            5,
            |math| {
                if math {
                    [0.9, 0.1, 0.0]
                } else {
                    [0.1, 0.9, 0.0]
                }
            },
            planted,
        );
        let population: Vec<Row> = {
            let mut rng = SplitMix::new(77);
            (0..2000).map(|i| row(i % 2 == 0, &mut rng)).collect()
        };
        let mean_error = |max_weight: f64| {
            let o = ModelLearnOptions {
                lambdas: vec![300.0],
                max_weight,
                ..opts(2)
            };
            let (r, s) = learn_success_models(&rows, &calls, &o).unwrap();
            let s = s.unwrap_or_else(|| panic!("{r:?}"));
            let mean = |m: &SuccessModel| {
                population.iter().map(|x| predict(m, x)).sum::<f64>() / population.len() as f64
            };
            (
                (mean(&s.models["a/math"]) - 0.7).abs(),
                (mean(&s.models["b/prose"]) - 0.5).abs(),
            )
        };
        let (ips_a, ips_b) = mean_error(20.0);
        // max_weight 1: every call weighs 1, no reweighting.
        let (flat_a, flat_b) = mean_error(1.0);
        assert!(ips_a < 0.03 && ips_b < 0.03, "IPS: {ips_a} {ips_b}");
        assert!(
            flat_a > ips_a + 0.03 && flat_b > ips_b + 0.03,
            "unweighted {flat_a} {flat_b} vs IPS {ips_a} {ips_b}"
        );
    }

    #[test]
    fn too_few_outcomes_say_so_and_bad_input_is_an_error() {
        let (rows, calls) = log(60, 1, |_| [0.8, 0.1, 0.1], planted);
        let (r, s) = learn_success_models(&rows, &calls, &opts(1)).unwrap();
        assert!(s.is_none());
        assert_eq!(r.models.len(), 3);
        // A alone has enough calls (and may pass the gate); one model ranks nothing.
        assert!(
            r.models[0].outcomes >= 30 && r.models[0].cv_error > 0.0,
            "{r:?}"
        );
        assert!(
            r.models[1..].iter().all(|m| !m.kept && m.outcomes < 30),
            "{r:?}"
        );
        assert!(
            r.reason
                .contains("1 model has enough rated calls (30 needed"),
            "{}",
            r.reason
        );
        let field = |e: Error| match e {
            Error::InvalidRequest { field, .. } => field,
            e => panic!("{e:?}"),
        };
        for p in [0.0, -0.1, 1.5, f64::NAN] {
            let mut bad = calls.clone();
            bad[7].propensity = p;
            let e = learn_success_models(&rows, &bad, &opts(1)).unwrap_err();
            assert_eq!(field(e), Some("outcomes".into()), "{p}");
        }
        let mut bad = calls.clone();
        bad[0].reward = f64::INFINITY;
        let e = learn_success_models(&rows, &bad, &opts(1)).unwrap_err();
        assert_eq!(field(e), Some("outcomes".into()));
        let mut bad = calls.clone();
        bad[0].row = rows.len();
        let e = learn_success_models(&rows, &bad, &opts(1)).unwrap_err();
        assert_eq!(field(e), Some("outcomes".into()));
        let o = ModelLearnOptions {
            folds: 1,
            ..opts(1)
        };
        let e = learn_success_models(&rows, &calls, &o).unwrap_err();
        assert_eq!(field(e), Some("folds".into()));
        let o = ModelLearnOptions {
            hashing: Hashing::plain(BITS + 1),
            ..opts(1)
        };
        let e = learn_success_models(&rows, &calls, &o).unwrap_err();
        assert_eq!(field(e), Some("bits".into()));
    }

    #[test]
    fn noise_is_not_kept_across_seeds() {
        // Rewards independent of the request (each model its own rate): no model's
        // features beat its average out of fold.
        for seed in 0..10u64 {
            let (rows, calls) = log(
                900,
                40 + seed,
                |_| [0.5, 0.3, 0.2],
                |m, _| [0.7, 0.5, 0.6][m],
            );
            let (r, s) = learn_success_models(&rows, &calls, &opts(seed)).unwrap();
            assert!(s.is_none() && r.kept == 0, "seed {seed}: {r:?}");
        }
    }
}
