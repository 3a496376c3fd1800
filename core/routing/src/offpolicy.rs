//! Learning router weights from logged production calls (what the collector runs for an
//! organization): each call's recorded features, the arm it went to (heavy tier or a
//! lighter one), the probability the router gave that arm, and the outcome score the app
//! sent back. Only the chosen arm's outcome is known, so:
//!
//! - each arm's success is fitted on the calls that went to it, weighted by the inverse
//!   of the propensity (capped), the gain model is strong minus weak (as
//!   `route simulate` does, [`replay`]);
//! - candidates are compared by a **doubly-robust, cross-fitted** estimate of their APGR:
//!   out-of-fold success models give each call pseudo-outcomes for both arms
//!   (`m̂_a + 1[a taken] (r − m̂_a) / p`), unbiased when the propensities are right, and
//!   the usual gain curve ([`super::eval::evaluate_scores`]) is computed over those. The
//!   new weights, the current ones and length-only are scored on the same pseudo-outcomes;
//! - the new weights are promoted only when their estimate beats the current weights'
//!   and length-only's by `margin`, with enough outcomes on each arm, and their
//!   advantage over the current weights holds fold by fold (by `z` standard errors).
//!
//! Deterministic for a seed.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::data::{LabeledPrompt, SourceOrder};
use super::eval;
use super::features::N_FEATURES;
use super::learn::{self, Logged, ReplayWarning, Ridge, Row, SimulateOptions, SimulateReport, bad};
use super::learning::{Learning, features_of_scored, row_of};
use super::lexical::Hashing;
use super::scorer::{Scorer, Tier};
use super::weights::{Link, Weights};
use gaterouter_types::error::Result;

/// The design rows of a log of rated calls, held once for every learner that reads the
/// log ([`learn_from_log`], [`super::offpolicy_models::learn_success_models`]): as
/// recorded (term counts, which score weights that count terms) and with binary term
/// values ([`binary_row`], what the fits read by default), each computed once when the
/// row is pushed. Calls refer to their row by index, so a call and its shadow, or the
/// two learners' views of one call, share it.
#[derive(Debug, Clone)]
pub struct LogRows {
    bits: u8,
    logged: Vec<Row>,
    binary: Vec<Row>,
}

impl LogRows {
    /// No rows yet, for rows hashed with `bits` (the organization's hashing).
    pub fn new(bits: u8) -> Result<Self> {
        learn::check_bits(bits)?;
        Ok(Self {
            bits,
            logged: Vec::new(),
            binary: Vec::new(),
        })
    }

    /// Add a design row ([`super::learning::row_of`]); returns its index for
    /// [`LoggedCall::row`] / [`super::offpolicy_models::ModelCall::row`]. A row with an
    /// entry outside the hashing (and the structural features after it) or not finite is
    /// an error: it was hashed with other bits.
    pub fn push(&mut self, row: Row) -> Result<usize> {
        let end = (1u32 << self.bits) + N_FEATURES as u32;
        if row.iter().any(|(j, x)| *j >= end || !x.is_finite()) {
            return Err(bad(
                "outcomes",
                format!(
                    "a logged row has a feature outside the {}-bit hashing or not finite: rows must be hashed with the log's bits",
                    self.bits
                ),
            ));
        }
        self.binary.push(binary_row(&row, self.bits));
        self.logged.push(row);
        Ok(self.logged.len() - 1)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.logged.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.logged.is_empty()
    }

    /// The hashing bits the rows were made with.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The rows as recorded.
    pub(crate) fn logged(&self) -> &[Row] {
        &self.logged
    }

    /// The rows a fit reads: binary term values or the recorded counts.
    pub(crate) fn fit(&self, binary: bool) -> &[Row] {
        if binary { &self.binary } else { &self.logged }
    }

    /// Typed error unless these rows suit `calls` (every row index in range) and the
    /// learner's hashing `bits`.
    pub(crate) fn check(&self, bits: u8, mut indexes: impl Iterator<Item = usize>) -> Result<()> {
        if bits != self.bits {
            return Err(bad(
                "bits",
                format!(
                    "the rows are hashed with {} bits, the options say {bits}: use the organization's hashing for both",
                    self.bits
                ),
            ));
        }
        let n = self.len();
        match indexes.find(|i| *i >= n) {
            Some(i) => Err(bad(
                "outcomes",
                format!("a logged call names row {i} of a log of {n} rows"),
            )),
            None => Ok(()),
        }
    }
}

/// One logged `auto` call with its outcome.
#[derive(Debug, Clone)]
pub struct LoggedCall {
    /// Its design row (recorded features, [`super::learning::row_of`]) in the log's
    /// [`LogRows`].
    pub row: usize,
    /// It went to the heavy tier.
    pub strong: bool,
    /// The outcome score in `[0, 1]` (the mean of its feedback).
    pub reward: f64,
    /// Probability that this arm's outcome was observed for the call, in `(0, 1]`: the
    /// router's probability of the arm, plus, under shadow sampling, that of the other
    /// arm times the shadow share.
    pub propensity: f64,
    /// The request it answered: a call and its shadow share the key (one request seen on
    /// both arms: one fold, one doubly-robust estimate); every other call has its own.
    pub call: u64,
}

/// Options of [`learn_from_log`].
#[derive(Debug, Clone)]
pub struct LogLearnOptions {
    /// The organization's hashing (the rows' buckets; the weights carry it).
    pub hashing: Hashing,
    /// Penalties tried per arm (3-fold CV of the weighted error). Default
    /// [`learn::DEFAULT_LAMBDAS`], the grid `route calibrate` uses.
    pub lambdas: Vec<f64>,
    /// Fit binary term values (`1 / sqrt(distinct terms)` per present term, what `route
    /// calibrate` fits and what the weights file then says: `lexical.binary`) instead of
    /// counts. Default true: on a few hundred outcomes counts overfit long prompts.
    pub binary: bool,
    /// Cross-fitting folds for the estimate.
    pub folds: usize,
    /// Seed of the folds.
    pub seed: u64,
    /// Cap of an outcome's inverse-propensity weight.
    pub max_weight: f64,
    /// Fewest rated calls on each arm before anything is fitted.
    pub min_per_arm: usize,
    /// The new weights must beat the current (and length-only) estimate by this much.
    pub margin: f64,
    /// And their per-fold advantage over the current weights must be positive by `z`
    /// standard errors. (Length-only is a floor on the overall estimate only: it is not
    /// what would be served instead, so it does not have to be beaten fold by fold.)
    pub z: f64,
    /// Tier cut-offs in predicted gain (how much the heavy tier is expected to raise the
    /// outcome score): at or above `heavy_gain` the call goes heavy, at or below
    /// `light_gain` light, standard between. Fixed in gain units rather than as shares of
    /// traffic, so the tier mix follows how many calls the strong model actually helps.
    pub heavy_gain: f64,
    /// See `heavy_gain`.
    pub light_gain: f64,
}

impl Default for LogLearnOptions {
    fn default() -> Self {
        LogLearnOptions {
            hashing: Hashing::plain(learn::DEFAULT_BITS),
            lambdas: learn::DEFAULT_LAMBDAS.to_vec(),
            binary: true,
            folds: 5,
            seed: 1,
            max_weight: 20.0,
            min_per_arm: 30,
            margin: 0.005,
            z: 2.0,
            heavy_gain: 0.10,
            light_gain: 0.03,
        }
    }
}

/// What a learning run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLearnReport {
    /// Rated calls used.
    pub outcomes: usize,
    /// Of which on the heavy tier.
    pub strong_outcomes: usize,
    /// Doubly-robust cross-fitted APGR of the new weights (None: not fitted).
    pub new_apgr: Option<f64>,
    /// Same estimate for the weights that made the decisions.
    pub current_apgr: Option<f64>,
    /// Same estimate for length-only.
    pub length_apgr: Option<f64>,
    /// Estimated mean outcome always-weak / always-strong on these calls.
    pub quality_weak: Option<f64>,
    /// See `quality_weak`.
    pub quality_strong: Option<f64>,
    /// Mean per-fold difference of the new fit's estimated APGR to the current weights'
    /// (None: not estimated).
    #[serde(default)]
    pub advantage: Option<f64>,
    /// Its standard error over the folds: an advantage smaller than about `z` times this
    /// cannot be told from noise on these calls.
    #[serde(default)]
    pub advantage_se: Option<f64>,
    /// The new weights beat the current ones and length by the margin.
    pub promote: bool,
    /// One line: why (not) promoted.
    pub reason: String,
}

/// Score of a design row under `w` (rows hashed with `h`). Lexical weights hashed
/// differently (other bits or salt) cannot be applied to the row and are left out.
pub fn score_row(w: &Weights, row: &[(u32, f32)], h: Hashing) -> f64 {
    let nb = 1u32 << h.bits;
    let mut z = w.bias;
    let lex = w.lexical.as_ref().filter(|l| l.hashing() == h);
    for (j, x) in row {
        if *j >= nb {
            let k = (*j - nb) as usize;
            if k < N_FEATURES {
                z += w.weights[k] * f64::from(*x);
            }
        } else if let Some(l) = lex {
            z += f64::from(l.weights.get(*j as usize).copied().unwrap_or(0.0)) * f64::from(*x);
        }
    }
    w.link.apply(z)
}

/// A design row with binary term values: every term below `2^bits` weighs
/// `1 / sqrt(number of terms)` (as [`crate::lexical::sparse_terms_binary`]); structural
/// entries are kept. Rows from records carry distinct buckets, so this is exact.
pub fn binary_row(row: &[(u32, f32)], bits: u8) -> Row {
    let nb = 1u32 << bits;
    let k = row.iter().filter(|(j, _)| *j < nb).count();
    let v = 1.0 / (k.max(1) as f32).sqrt();
    row.iter()
        .map(|&(j, x)| if j < nb { (j, v) } else { (j, x) })
        .collect()
}

/// Least-squares line `a + b · g` of the doubly-robust gains (`ps − pw`, unbiased but
/// noisy) on the out-of-fold predicted gains `g`. The slope is kept in `[0.25, 4]`: a
/// flatter or steeper line on a few hundred noisy outcomes says more about the noise
/// than about the model, and the identity is the fallback when `g` does not vary.
pub(crate) fn gain_calibration(g: &[f64], ps: &[f64], pw: &[f64]) -> (f64, f64) {
    let n = g.len() as f64;
    if g.is_empty() {
        return (0.0, 1.0);
    }
    let y: Vec<f64> = ps.iter().zip(pw).map(|(s, w)| s - w).collect();
    let (mg, my) = (g.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sgg: f64 = g.iter().map(|x| (x - mg).powi(2)).sum();
    if sgg <= 1e-12 {
        return (0.0, 1.0);
    }
    let sgy: f64 = g.iter().zip(&y).map(|(x, v)| (x - mg) * (v - my)).sum();
    let b = (sgy / sgg).clamp(0.25, 4.0);
    (my - b * mg, b)
}

fn sim_opts(o: &LogLearnOptions, bits: u8) -> SimulateOptions {
    SimulateOptions {
        bits,
        lambdas: o.lambdas.clone(),
        max_weight: o.max_weight,
        ..SimulateOptions::default()
    }
}

fn logs(calls: &[LoggedCall], idx: &[usize]) -> Vec<Logged> {
    idx.iter()
        .map(|&i| Logged {
            row: calls[i].row,
            strong: calls[i].strong,
            reward: calls[i].reward,
            propensity: calls[i].propensity,
        })
        .collect()
}

fn fit_arms(
    calls: &[LoggedCall],
    rows: &[Row],
    idx: &[usize],
    o: &SimulateOptions,
    seed: u64,
) -> Option<(Ridge, Ridge)> {
    let l = logs(calls, idx);
    let s: Vec<&Logged> = l.iter().filter(|x| x.strong).collect();
    let w: Vec<&Logged> = l.iter().filter(|x| !x.strong).collect();
    if s.len() < 5 || w.len() < 5 {
        return None;
    }
    Some((
        learn::fit_success(rows, &s, o, seed),
        learn::fit_success(rows, &w, o, seed ^ 0x5555),
    ))
}

/// Each call's request index, from the calls' request keys ([`LoggedCall::call`] or
/// [`super::offpolicy_models::ModelCall::call`]: equal keys share an index; indices in
/// order of first appearance, so calls without shadows are their own, in order) and the
/// first call of each request.
pub(crate) fn requests(keys: impl ExactSizeIterator<Item = u64>) -> (Vec<usize>, Vec<usize>) {
    let mut index = std::collections::HashMap::with_capacity(keys.len());
    let mut firsts = Vec::with_capacity(keys.len());
    let group_of = keys
        .enumerate()
        .map(|(i, key)| {
            *index.entry(key).or_insert_with(|| {
                firsts.push(i);
                firsts.len() - 1
            })
        })
        .collect();
    (group_of, firsts)
}

/// Fit new weights from logged calls (their rows in `rows`) and compare them with
/// `current` (the weights that made the decisions). Returns the report and, when
/// promoted, the new weights.
pub fn learn_from_log(
    rows: &LogRows,
    calls: &[LoggedCall],
    current: &Weights,
    opts: &LogLearnOptions,
) -> Result<(LogLearnReport, Option<Weights>)> {
    if !(2..=20).contains(&opts.folds) {
        return Err(bad(
            "folds",
            format!("folds = {} must be in 2..=20", opts.folds),
        ));
    }
    rows.check(opts.hashing.bits, calls.iter().map(|c| c.row))?;
    if let Some(c) = calls.iter().find(|c| {
        c.propensity <= 0.0 || c.propensity > 1.0 || c.propensity.is_nan() || !c.reward.is_finite()
    }) {
        return Err(bad(
            "outcomes",
            format!(
                "a logged call has propensity {} / reward {}: propensities must be in (0, 1], rewards finite",
                c.propensity, c.reward
            ),
        ));
    }
    let strong_n = calls.iter().filter(|c| c.strong).count();
    let weak_n = calls.len() - strong_n;
    let mut report = LogLearnReport {
        outcomes: calls.len(),
        strong_outcomes: strong_n,
        new_apgr: None,
        current_apgr: None,
        length_apgr: None,
        quality_weak: None,
        quality_strong: None,
        advantage: None,
        advantage_se: None,
        promote: false,
        reason: String::new(),
    };
    if strong_n < opts.min_per_arm || weak_n < opts.min_per_arm {
        report.reason = format!(
            "not enough rated calls: {strong_n} on the heavy tier and {weak_n} on lighter ones, {} of each needed (raise exploration or send more feedback)",
            opts.min_per_arm
        );
        return Ok((report, None));
    }
    let bits = opts.hashing.bits;
    let so = sim_opts(opts, bits);
    // The rows as logged (term counts) score the current weights when those count terms;
    // the fit and binary weights read binary rows.
    let (logged, fit_rows) = (rows.logged(), rows.fit(opts.binary));
    let n = calls.len();
    // Requests: a call and its shadow are one (same features, one fold, one estimate).
    let (group_of, firsts) = requests(calls.iter().map(|c| c.call));
    let ng = firsts.len();
    let gfold = learn::folds(ng, opts.folds, opts.seed);
    let fold: Vec<usize> = group_of.iter().map(|g| gfold[*g]).collect();
    // Cross-fitting: out-of-fold success models for each arm.
    let (mut ms, mut mw) = (vec![0.0; n], vec![0.0; n]);
    for k in 0..opts.folds {
        let train: Vec<usize> = (0..n).filter(|i| fold[*i] != k).collect();
        let Some((fs, fw)) = fit_arms(calls, fit_rows, &train, &so, opts.seed ^ k as u64) else {
            report.reason = "a fold had fewer than 5 rated calls on one arm".into();
            return Ok((report, None));
        };
        for i in (0..n).filter(|i| fold[*i] == k) {
            let r = &fit_rows[calls[i].row];
            ms[i] = fs.predict(r);
            mw[i] = fw.predict(r);
        }
    }
    // Doubly-robust pseudo-outcomes of both arms for every request: the model's
    // prediction, corrected by each arm observed for it.
    let mut ps: Vec<f64> = firsts.iter().map(|&i| ms[i]).collect();
    let mut pw: Vec<f64> = firsts.iter().map(|&i| mw[i]).collect();
    for (i, c) in calls.iter().enumerate() {
        // Uncapped here: a capped weight would pull each pseudo-outcome toward the model's
        // own prediction and make the new fit look better than it is.
        let wgt = 1.0 / c.propensity;
        let g = group_of[i];
        if c.strong {
            ps[g] += wgt * (c.reward - ms[i]);
        } else {
            pw[g] += wgt * (c.reward - mw[i]);
        }
    }
    let oof_gain: Vec<f64> = firsts.iter().map(|&i| ms[i] - mw[i]).collect();
    let current_binary = current.lexical.as_ref().is_some_and(|l| l.binary);
    let cur: Vec<f64> = firsts
        .iter()
        .map(|&i| {
            let r = if current_binary {
                &rows.fit(true)[calls[i].row]
            } else {
                &logged[calls[i].row]
            };
            score_row(current, r, opts.hashing)
        })
        .collect();
    let nb = 1u32 << bits;
    let len: Vec<f64> = firsts
        .iter()
        .map(|&i| {
            logged[calls[i].row]
                .iter()
                .find(|(j, _)| *j == nb)
                .map_or(0.0, |(_, x)| f64::from(*x))
        })
        .collect();
    let new_e = eval::evaluate_scores(&oof_gain, &pw, &ps);
    let (new_e, cur_e, len_e) = match (
        new_e,
        eval::evaluate_scores(&cur, &pw, &ps),
        eval::evaluate_scores(&len, &pw, &ps),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            report.reason = "the heavy tier is not estimated better than the lighter ones on these calls: nothing to learn (keep the current weights)".into();
            return Ok((report, None));
        }
    };
    report.new_apgr = Some(new_e.apgr);
    report.current_apgr = Some(cur_e.apgr);
    report.length_apgr = Some(len_e.apgr);
    report.quality_weak = Some(new_e.quality_weak);
    report.quality_strong = Some(new_e.quality_strong);
    // The estimate is noisy (few calls on the arm the router rarely picks): promote only
    // when the advantage over what is served now holds fold by fold, i.e. the paired
    // per-fold differences to the current weights are positive by at least `z` standard
    // errors. Length-only stays a floor on the overall estimate (below) but is not
    // tested fold by fold: it is not the alternative to promoting (keeping the current
    // weights is), and requiring both lower bounds kept fits that beat the current
    // weights clearly whenever length-only was close to them (bench/RESULTS.md,
    // "The promotion rule").
    let d_cur: std::result::Result<Vec<f64>, usize> = (0..opts.folds)
        .map(|k| {
            let idx: Vec<usize> = (0..ng).filter(|g| gfold[*g] == k).collect();
            let pick = |v: &[f64]| idx.iter().map(|i| v[*i]).collect::<Vec<f64>>();
            let (fw, fs) = (pick(&pw), pick(&ps));
            let apgr = |sc: &[f64]| eval::evaluate_scores(&pick(sc), &fw, &fs).map(|e| e.apgr);
            match (apgr(&oof_gain), apgr(&cur)) {
                (Ok(a), Ok(b)) => Ok(a - b),
                _ => Err(k),
            }
        })
        .collect();
    // Mean and standard error of the per-fold advantage, when every fold has one.
    let stats = d_cur.as_ref().ok().map(|d| {
        let m = d.iter().sum::<f64>() / d.len() as f64;
        let var = d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (d.len() as f64 - 1.0).max(1.0);
        (m, (var / d.len() as f64).sqrt())
    });
    report.advantage = stats.map(|(m, _)| m);
    report.advantage_se = stats.map(|(_, se)| se);
    // How much more evidence would settle a positive advantage the rule does not accept
    // (the standard error shrinks as one over the square root of the rated calls).
    let more = match stats {
        Some((m, se)) if m > 0.0 && m - opts.z * se <= 0.0 => format!(
            "; an advantage of {m:+.3} ± {se:.3} (one standard error over {} folds) needs about {:.0}× these rated calls to show, or shadow sampling",
            opts.folds,
            ((opts.z * se / m).powi(2)).ceil().max(2.0)
        ),
        _ => String::new(),
    };
    let bar = cur_e.apgr.max(len_e.apgr) + opts.margin;
    if new_e.apgr < bar {
        report.reason = format!(
            "kept the current weights: the new fit's estimated APGR {:.3} does not beat the current {:.3} / length-only {:.3} by {}{more}",
            new_e.apgr, cur_e.apgr, len_e.apgr, opts.margin
        );
        return Ok((report, None));
    }
    let Some((m, se)) = stats else {
        report.reason = format!(
            "kept the current weights: fold {} has no estimated gain from the heavy tier, so the advantage cannot be checked fold by fold (more rated calls needed)",
            d_cur.err().unwrap_or_default()
        );
        return Ok((report, None));
    };
    let lower = m - opts.z * se;
    if lower <= 0.0 {
        report.reason = format!(
            "kept the current weights: the new fit's estimated APGR {:.3} beats the current {:.3} overall, but not consistently across folds (lower bound {lower:+.3} at z = {}){more}",
            new_e.apgr, cur_e.apgr, opts.z
        );
        return Ok((report, None));
    }
    let all: Vec<usize> = (0..n).collect();
    let Some((fs, fw)) = fit_arms(calls, fit_rows, &all, &so, opts.seed) else {
        report.reason = "too few rated calls on one arm".into();
        return Ok((report, None));
    };
    // Ridge shrinks every prediction toward the mean gain, so a call the strong model
    // does not help still shows some predicted gain (and one it helps a lot, less than
    // it has). The tier cut-offs are in gain units, so recalibrate: regress the calls'
    // doubly-robust gains on the out-of-fold predicted gains and map the model through
    // that line (a monotone map: the ranking, hence the APGR, is unchanged).
    let (a, b) = gain_calibration(&oof_gain, &ps, &pw);
    let gain = fs.minus(&fw).affine(a, b);
    let fit = json!({
        "gain_calibration": {"intercept": a, "slope": b},
        "method": "per-arm ridge regression of the outcome score on salted hashed word 1-2-grams (binary: 1/sqrt(distinct terms)) + structural features, penalty by 3-fold CV over the calibrate grid, inverse-propensity weighted (capped); weights = heavy minus lighter; promoted on a doubly-robust cross-fitted APGR estimate",
        "binary": opts.binary,
        "outcomes": n,
        "strong_outcomes": strong_n,
        "estimated_apgr": new_e.apgr,
        "current_apgr": cur_e.apgr,
        "length_apgr": len_e.apgr,
    });
    let mut w = gain.to_salted_weights(
        format!("learned from {n} rated calls ({strong_n} on the heavy tier)"),
        fit,
        opts.hashing.salt,
    )?;
    debug_assert_eq!(w.link, Link::Gain);
    if let Some(l) = w.lexical.as_mut() {
        l.binary = opts.binary;
    }
    // Link::Gain: score = (1 + gain) / 2.
    let cut = |g: f64| ((1.0 + g) / 2.0).clamp(0.0, 1.0);
    w.thresholds = super::weights::Thresholds {
        standard: cut(opts.light_gain.min(opts.heavy_gain)),
        heavy: cut(opts.heavy_gain),
    };
    w.validate("learned weights")?;
    report.promote = true;
    report.reason = format!(
        "promoted: estimated APGR {:.3} vs current {:.3} and length-only {:.3}",
        new_e.apgr, cur_e.apgr, len_e.apgr
    );
    Ok((report, Some(w)))
}

/// `route simulate`: replay labeled prompts in order as production traffic of a learning
/// organization, through the same code: each call is scored by the weights served at the
/// time, a share `explore` of calls gets a tier drawn uniformly ([`Learning::explore`]),
/// only the chosen arm's score is revealed (heavy tier: `strong_score`, lighter tiers:
/// `weak_score`), the call is logged with its propensity and salted features, and as the
/// outcomes grow (`first_refit`, then by `refit_growth`) [`learn_from_log`] runs as the
/// collector's learning runs do, its weights served from the next call when promoted.
/// Returns the report and the weights served at the end.
pub fn replay(
    prompts: &[LabeledPrompt],
    start: &Weights,
    opts: &SimulateOptions,
) -> Result<(SimulateReport, Weights)> {
    if !(0.0..=0.5).contains(&opts.explore) {
        return Err(bad(
            "explore",
            format!(
                "explore = {} must be in [0, 0.5] (at most half of the calls explore, as an organization policy allows)",
                opts.explore
            ),
        ));
    }
    if !(opts.refit_growth > 1.0 && opts.refit_growth.is_finite()) || opts.first_refit == 0 {
        return Err(bad(
            "refit",
            "first_refit must be positive and refit_growth above 1".into(),
        ));
    }
    if !(1..=super::weights::MAX_LEXICAL_BITS).contains(&opts.bits) {
        return Err(bad(
            "bits",
            format!(
                "bits = {} must be in 1..={}",
                opts.bits,
                super::weights::MAX_LEXICAL_BITS
            ),
        ));
    }
    if prompts.is_empty() {
        return Err(bad(
            "prompts",
            "no prompts to replay: give a labeled JSONL file".into(),
        ));
    }
    let hashing = Hashing {
        bits: opts.bits,
        salt: opts.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
    };
    let learn_opts = LogLearnOptions {
        hashing,
        lambdas: opts.lambdas.clone(),
        seed: opts.seed,
        max_weight: opts.max_weight,
        ..LogLearnOptions::default()
    };
    if !(0.0..=1.0).contains(&opts.shadow) {
        return Err(bad(
            "shadow",
            format!("shadow = {} must be in [0, 1]", opts.shadow),
        ));
    }
    let explorer = Learning {
        record_features: true,
        explore: opts.explore,
        shadow: opts.shadow,
        hashing,
        scorer: None,
        version: None,
    };
    let mut rng = learn::SplitMix::new(opts.seed);
    let mut served = Scorer::new(start.clone());
    let mut calls: Vec<LoggedCall> = Vec::with_capacity(prompts.len());
    let mut rows = LogRows::new(hashing.bits)?;
    let (mut quality, mut sum_weak, mut sum_strong) = (0.0, 0.0, 0.0);
    let (mut n_strong, mut n_explored, mut refits, mut promotions) =
        (0usize, 0usize, 0usize, 0usize);
    let (mut n_shadowed, mut n_shadow_strong) = (0usize, 0usize);
    let mut next_refit = opts.first_refit;
    for p in prompts {
        let (weak, strong) = p.labels()?;
        sum_weak += weak;
        sum_strong += strong;
        let mut report = served.score(&p.request);
        let features = features_of_scored(&report, &p.request, hashing);
        let mut t = explorer.explore(&mut report, Tier::ALL, [rng.next_f64(), rng.next_f64()]);
        let went_strong = report.tier == Tier::Heavy;
        let reward = if went_strong { strong } else { weak };
        quality += reward;
        n_strong += usize::from(went_strong);
        n_explored += usize::from(t.explored);
        // Shadow sampling as the client does it (every tier allowed: the other arm always
        // exists); no draw without it, so replays without shadow are unchanged.
        let shadow = if opts.shadow > 0.0 {
            explorer.shadow_at(opts.shadow, &mut t, rng.next_f64())
        } else {
            None
        };
        let row = row_of(&features, hashing.bits)
            .ok_or_else(|| bad("bits", "feature rows do not match the bits".into()))?;
        let row = rows.push(row)?;
        let call = calls.len() as u64;
        if let Some(st) = shadow {
            n_shadowed += 1;
            n_shadow_strong += usize::from(!went_strong);
            calls.push(LoggedCall {
                row,
                strong: !went_strong,
                reward: if went_strong { weak } else { strong },
                propensity: st.propensity,
                call,
            });
        }
        calls.push(LoggedCall {
            row,
            strong: went_strong,
            reward,
            propensity: t.propensity,
            call,
        });
        if calls.len() >= next_refit {
            next_refit = ((next_refit as f64) * opts.refit_growth).ceil() as usize;
            refits += 1;
            let (_, w) = learn_from_log(&rows, &calls, served.weights(), &learn_opts)?;
            if let Some(w) = w {
                served = Scorer::new(w);
                promotions += 1;
            }
        }
    }
    let n = prompts.len() as f64;
    let final_weights = served.weights().clone();
    let report = SimulateReport {
        rows: prompts.len(),
        explore: opts.explore,
        seed: opts.seed,
        realized_quality: quality / n,
        strong_share: n_strong as f64 / n,
        explored_share: n_explored as f64 / n,
        shadowed_share: n_shadowed as f64 / n,
        shadow_strong_share: n_shadow_strong as f64 / n,
        quality_weak: sum_weak / n,
        quality_strong: sum_strong / n,
        refits,
        promotions,
        weights_version: final_weights.fingerprint(),
        warnings: order_warnings(prompts),
    };
    Ok((report, final_weights))
}

/// [`ReplayWarning`]s about the order of the replayed prompts.
fn order_warnings(prompts: &[LabeledPrompt]) -> Vec<ReplayWarning> {
    let o = SourceOrder::of(prompts);
    if o.grouped() {
        vec![ReplayWarning::GroupedBySource {
            sources: o.sources,
            runs: o.runs,
            expected_runs: o.expected_runs,
        }]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::SplitMix;
    use crate::learning::{features_of, row_of};
    use gaterouter_types::types::{ChatRequest, Message};

    /// Planted signal: prompts about "ledger" need the strong model (weak 0.1, strong
    /// 0.9); prompts about "garden" do not (both 0.8); both kinds have the same length.
    /// Logged by a router that ignores the signal (heavy with probability 0.5).
    fn log(n: usize, seed: u64, h: Hashing) -> (LogRows, Vec<LoggedCall>) {
        log_shadowed(n, seed, h, 0.0)
    }

    /// [`log`] with shadow sampling at share `s`: a shadowed call's other arm is logged
    /// too (same request key, its own outcome draw); every outcome's propensity is the
    /// probability that its arm is observed, 0.5 + 0.5·s.
    fn log_shadowed(n: usize, seed: u64, h: Hashing, s: f64) -> (LogRows, Vec<LoggedCall>) {
        let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
        let prompt = |rng: &mut SplitMix, i: usize| {
            let hard = rng.next_f64() < 0.5;
            let filler = words[(rng.next_u64() % 6) as usize];
            let text = if hard {
                format!("audit the ledger of {filler} unit {i}")
            } else {
                format!("water the garden of {filler} home {i}")
            };
            (hard, text)
        };
        let success = |hard, strong| match (hard, strong) {
            (true, true) => 0.9,
            (true, false) => 0.1,
            (false, _) => 0.8,
        };
        logged(n, seed, h, s, prompt, success)
    }

    /// `n` calls logged by a router that ignores the signal (heavy with probability 0.5):
    /// `prompt` draws whether a call is hard and its text, `success(hard, strong)` is the
    /// probability its outcome is 1; shadow sampling at share `s` as in [`log_shadowed`].
    fn logged(
        n: usize,
        seed: u64,
        h: Hashing,
        s: f64,
        prompt: impl Fn(&mut SplitMix, usize) -> (bool, String),
        success: impl Fn(bool, bool) -> f64,
    ) -> (LogRows, Vec<LoggedCall>) {
        let mut rng = SplitMix::new(seed);
        let mut out = Vec::with_capacity(n);
        let mut rows = LogRows::new(h.bits).unwrap();
        for i in 0..n {
            let (hard, text) = prompt(&mut rng, i);
            let req = ChatRequest::new("auto", vec![Message::user(text)]);
            let row = rows
                .push(row_of(&features_of(&req, h), h.bits).unwrap())
                .unwrap();
            let strong = rng.next_f64() < 0.5;
            let mut outcome = |strong: bool| {
                if rng.next_f64() < success(hard, strong) {
                    1.0
                } else {
                    0.0
                }
            };
            let reward = outcome(strong);
            let shadow = (s > 0.0).then(|| outcome(!strong));
            let propensity = 0.5 + 0.5 * s;
            if let Some(r) = shadow.filter(|_| rng.next_f64() < s) {
                out.push(LoggedCall {
                    row,
                    strong: !strong,
                    reward: r,
                    propensity,
                    call: i as u64,
                });
            }
            out.push(LoggedCall {
                row,
                strong,
                reward,
                propensity,
                call: i as u64,
            });
        }
        (rows, out)
    }

    #[test]
    fn a_call_and_its_shadow_are_one_request() {
        let key = |call| LoggedCall {
            row: 0,
            strong: false,
            reward: 0.0,
            propensity: 1.0,
            call,
        };
        let calls: Vec<LoggedCall> = [5, 9, 5, 7, 9].into_iter().map(key).collect();
        assert_eq!(
            requests(calls.iter().map(|c| c.call)),
            (vec![0, 1, 0, 2, 1], vec![0, 1, 3])
        );
    }

    #[test]
    fn shadowed_logs_give_unbiased_estimates_and_learn() {
        let h = Hashing {
            bits: 10,
            salt: 0xdead_beef,
        };
        let current = Weights::builtin().unwrap();
        let opts = LogLearnOptions {
            hashing: h,
            ..Default::default()
        };
        // True always-weak / always-strong quality: (0.1 + 0.8) / 2, (0.9 + 0.8) / 2.
        let (rows, calls) = log_shadowed(800, 3, h, 0.4);
        let shadows = calls.len() - 800;
        assert!((250..=390).contains(&shadows), "{shadows}");
        let (r, w) = learn_from_log(&rows, &calls, &current, &opts).unwrap();
        let (qw, qs) = (r.quality_weak.unwrap(), r.quality_strong.unwrap());
        assert!(
            (qw - 0.45).abs() < 0.05 && (qs - 0.85).abs() < 0.05,
            "{r:?}"
        );
        assert!(r.promote && w.is_some(), "{r:?}");
    }

    #[test]
    fn a_kept_run_says_how_uncertain_its_advantage_is_and_what_would_settle_it() {
        // A weak planted signal on few calls: the fit is usually a little better, but
        // the estimate cannot show it. Such a run reports the advantage and its standard
        // error, and its reason says how many times the rated calls would settle it.
        let h = Hashing::plain(10);
        let current = Weights::builtin().unwrap();
        let prompt = |rng: &mut SplitMix, i: usize| {
            let hard = rng.next_f64() < 0.5;
            let topic = if hard { "ledger" } else { "garden" };
            (hard, format!("look at the {topic} entry {i}"))
        };
        let success = |hard: bool, strong: bool| match (hard, strong) {
            (true, true) => 0.7,
            (true, false) => 0.5,
            (false, _) => 0.6,
        };
        let mut hinted = 0;
        for seed in 1..=10 {
            let (rows, calls) = logged(600, seed, h, 0.0, prompt, success);
            let opts = LogLearnOptions {
                hashing: h,
                seed,
                ..Default::default()
            };
            let (r, _) = learn_from_log(&rows, &calls, &current, &opts).unwrap();
            // (None: a fold had no estimated gain of the heavy tier to compare on.)
            let (Some(m), Some(se)) = (r.advantage, r.advantage_se) else {
                assert!(
                    !r.promote && !r.reason.contains("these rated calls"),
                    "{r:?}"
                );
                continue;
            };
            assert!(se > 0.0, "{r:?}");
            if !r.promote && m > 0.0 && m - opts.z * se <= 0.0 {
                let k = ((opts.z * se / m).powi(2)).ceil().max(2.0);
                assert!(
                    r.reason
                        .contains(&format!("needs about {k:.0}× these rated calls"))
                        && r.reason.contains("shadow sampling"),
                    "seed {seed}: {r:?}"
                );
                hinted += 1;
            } else {
                assert!(
                    !r.reason.contains("these rated calls"),
                    "seed {seed}: {r:?}"
                );
            }
        }
        assert!(hinted >= 3, "{hinted} of 10 seeds exercised the hint");
    }

    #[test]
    fn beats_poor_current_weights_without_beating_length_fold_by_fold() {
        // The strong model helps "ledger" prompts, which are mostly long: length-only is
        // nearly as good as a fit that also reads the word. The current weights rank by
        // shortness (the builtin weights negated), so they are poor. A fit that beats the
        // current weights clearly and length-only overall is promoted, though its edge
        // over length-only alone does not hold fold by fold: keeping the poor current
        // weights is the alternative, not length-only.
        let h = Hashing::plain(10);
        let filler = " and then we read every line of the report again".repeat(6);
        let prompt = |rng: &mut SplitMix, i: usize| {
            let hard = rng.next_f64() < 0.5;
            let long = rng.next_f64() < if hard { 0.97 } else { 0.03 };
            let topic = if hard {
                "audit the ledger"
            } else {
                "water the garden"
            };
            let tail = if long { filler.as_str() } else { "" };
            (hard, format!("{topic} number {i}{tail}"))
        };
        let success = |hard, strong| match (hard, strong) {
            (true, true) => 0.9,
            (true, false) => 0.2,
            (false, _) => 0.8,
        };
        let (rows, calls) = logged(1000, 4, h, 0.0, prompt, success);
        let mut current = Weights::builtin().unwrap();
        current.bias = -current.bias;
        current.weights.iter_mut().for_each(|w| *w = -*w);
        let opts = LogLearnOptions {
            hashing: h,
            ..Default::default()
        };
        let (r, w) = learn_from_log(&rows, &calls, &current, &opts).unwrap();
        let (new, cur, len) = (
            r.new_apgr.unwrap(),
            r.current_apgr.unwrap(),
            r.length_apgr.unwrap(),
        );
        assert!(cur < 0.4 && len > 0.7 && new > len + opts.margin, "{r:?}");
        assert!(r.promote && w.is_some(), "{r:?}");
    }

    #[test]
    fn recovers_a_planted_signal_and_promotes() {
        let h = Hashing {
            bits: 10,
            salt: 0xdead_beef,
        };
        let (rows, calls) = log(600, 3, h);
        let current = Weights::builtin().unwrap();
        let opts = LogLearnOptions {
            hashing: h,
            ..Default::default()
        };
        let (r, w) = learn_from_log(&rows, &calls, &current, &opts).unwrap();
        assert!(r.promote, "{r:?}");
        let w = w.unwrap();
        assert!(r.new_apgr.unwrap() > r.current_apgr.unwrap() + 0.1, "{r:?}");
        assert_eq!(w.lexical.as_ref().unwrap().salt, 0xdead_beef);
        // Fresh prompts of each kind: ledger ones score above garden ones, and land in
        // the heavy tier through the real scorer (salted hashing).
        let scorer = crate::Scorer::new(w);
        let s = |t: &str| scorer.score(&ChatRequest::new("auto", vec![Message::user(t)]));
        let hard = s("audit the ledger of omega unit 99999");
        let easy = s("water the garden of omega home 99999");
        assert!(hard.score > easy.score, "{} {}", hard.score, easy.score);
        assert_eq!(hard.tier, crate::Tier::Heavy);
        assert_ne!(easy.tier, crate::Tier::Heavy);
        // Deterministic.
        let (r2, _) = learn_from_log(&rows, &calls, &current, &opts).unwrap();
        assert_eq!(r, r2);
    }

    #[test]
    fn replay_learns_as_production_and_is_deterministic() {
        use crate::data::LabeledPrompt;
        // Planted: "ledger" prompts need the strong model, "garden" ones do not; same length.
        let mut rng = SplitMix::new(7);
        let ps: Vec<LabeledPrompt> = (0..1600)
            .map(|i| {
                let hard = rng.next_f64() < 0.5;
                let line = serde_json::json!({
                    "id": format!("p{i}"),
                    "source": "s",
                    "messages": [{"role": "user", "content": if hard { format!("audit the ledger of unit {}", i % 97) } else { format!("water the garden of home {}", i % 97) }}],
                    "weak_score": if hard { 0.0 } else { 1.0 },
                    "strong_score": 1.0,
                });
                crate::data::parse_line(&line.to_string(), i + 1, "t").unwrap()
            })
            .collect();
        let opts = SimulateOptions {
            explore: 0.2,
            seed: 3,
            bits: 10,
            ..Default::default()
        };
        let start = Weights::builtin().unwrap();
        let (rep, w) = replay(&ps[..1200], &start, &opts).unwrap();
        assert!(rep.refits >= 3 && rep.promotions >= 1, "{rep:?}");
        assert!((rep.explored_share - 0.2).abs() < 0.05, "{rep:?}");
        let r = eval::evaluate(&ps[1200..], &|p| {
            crate::Scorer::new(w.clone()).score_only(&p.request)
        })
        .unwrap();
        assert!(r.apgr > 0.7, "held-out APGR {}", r.apgr);
        let (rep2, w2) = replay(&ps[..1200], &start, &opts).unwrap();
        assert_eq!(rep, rep2);
        assert_eq!(w.to_json(), w2.to_json());
        assert_eq!(rep.shadowed_share, 0.0);
        // Shadow sampling: a third of the calls also reveal the other arm's outcome.
        let shadowed = SimulateOptions {
            shadow: 0.3,
            ..opts.clone()
        };
        let (rep_s, w_s) = replay(&ps[..1200], &start, &shadowed).unwrap();
        assert!((rep_s.shadowed_share - 0.3).abs() < 0.05, "{rep_s:?}");
        assert!(
            rep_s.shadow_strong_share < rep_s.shadowed_share,
            "{rep_s:?}"
        );
        assert!(rep_s.promotions >= 1, "{rep_s:?}");
        let r = eval::evaluate(&ps[1200..], &|p| {
            crate::Scorer::new(w_s.clone()).score_only(&p.request)
        })
        .unwrap();
        assert!(
            r.apgr > 0.7,
            "held-out APGR with shadow sampling {}",
            r.apgr
        );
        let bad = SimulateOptions {
            explore: 0.8,
            ..opts.clone()
        };
        assert!(replay(&ps, &start, &bad).is_err());
        let bad = SimulateOptions {
            shadow: 1.5,
            ..opts.clone()
        };
        assert!(replay(&ps, &start, &bad).is_err());
        assert!(replay(&[], &start, &opts).is_err());
    }

    #[test]
    fn no_signal_no_promotion_and_too_few_outcomes_say_so() {
        let h = Hashing::plain(10);
        let opts = LogLearnOptions {
            hashing: h,
            ..Default::default()
        };
        let current = Weights::builtin().unwrap();
        let (few_rows, few) = log(40, 1, h);
        let (r, w) = learn_from_log(&few_rows, &few, &current, &opts).unwrap();
        assert!(!r.promote && w.is_none());
        assert!(r.reason.contains("not enough rated calls"), "{}", r.reason);
        // Rewards independent of everything: nothing beats the current weights.
        let mut rng = SplitMix::new(9);
        let (rows, mut calls) = log(600, 5, h);
        for c in &mut calls {
            c.reward = if rng.next_f64() < 0.6 { 1.0 } else { 0.0 };
        }
        let (r, w) = learn_from_log(&rows, &calls, &current, &opts).unwrap();
        assert!(!r.promote && w.is_none(), "{r:?}");
        // Bad input is a typed error.
        let (bad_rows, mut bad) = log(100, 1, h);
        bad[0].propensity = 0.0;
        assert!(learn_from_log(&bad_rows, &bad, &current, &opts).is_err());
        bad[0].propensity = 0.5;
        bad[1].row = bad_rows.len();
        let e = learn_from_log(&bad_rows, &bad, &current, &opts).unwrap_err();
        assert!(
            e.to_string().contains("names row 100 of a log of 100 rows"),
            "{e}"
        );
        let wide = LogLearnOptions {
            hashing: Hashing::plain(12),
            ..opts.clone()
        };
        let e = learn_from_log(&rows, &calls, &current, &wide).unwrap_err();
        assert!(e.to_string().contains("hashed with 10 bits"), "{e}");
        let mut narrow = LogRows::new(8).unwrap();
        assert!(narrow.push(vec![(1 << 10, 1.0)]).is_err());
        assert!(narrow.push(vec![(3, f32::NAN)]).is_err());
        assert_eq!(narrow.push(vec![(3, 2.0), (1 << 8, 0.5)]).unwrap(), 0);
        assert_eq!(narrow.fit(true)[0], vec![(3, 1.0), (1 << 8, 0.5)]);
        assert_eq!(narrow.fit(false)[0], vec![(3, 2.0), (1 << 8, 0.5)]);
    }

    #[test]
    fn noise_never_promotes_across_seeds() {
        // Rewards independent of the prompt and of the arm: ten learning runs (one per
        // seed, as a replay makes) must keep the current weights every time.
        let h = Hashing::plain(10);
        let current = Weights::builtin().unwrap();
        for seed in 0..10u64 {
            let mut rng = SplitMix::new(100 + seed);
            let (rows, mut calls) = log(500, 20 + seed, h);
            for c in &mut calls {
                c.reward = if rng.next_f64() < 0.7 { 1.0 } else { 0.0 };
            }
            let opts = LogLearnOptions {
                hashing: h,
                seed,
                ..Default::default()
            };
            let (r, w) = learn_from_log(&rows, &calls, &current, &opts).unwrap();
            assert!(!r.promote && w.is_none(), "seed {seed}: {r:?}");
        }
    }

    #[test]
    fn gain_calibration_undoes_shrinkage_and_keeps_the_order() {
        // Shrunk predictions 0.1 (true gain 0) and 0.7 (true 0.8).
        let g: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 0.1 } else { 0.7 })
            .collect();
        let pw = vec![0.0; 100];
        let ps: Vec<f64> = g.iter().map(|x| if *x < 0.5 { 0.0 } else { 0.8 }).collect();
        let (a, b) = gain_calibration(&g, &ps, &pw);
        assert!(
            (a + b * 0.1).abs() < 1e-9 && (a + b * 0.7 - 0.8).abs() < 1e-9,
            "{a} {b}"
        );
        assert!(b > 0.0);
        // No variation: the identity.
        assert_eq!(
            gain_calibration(&[0.3; 10], &ps[..10], &pw[..10]),
            (0.0, 1.0)
        );
        // A wild slope is bounded.
        let (_, b) = gain_calibration(&[0.0, 0.001], &[0.0, 1.0], &[0.0, 0.0]);
        assert_eq!(b, 4.0);
    }

    #[test]
    fn binary_rows_weigh_each_term_by_the_number_of_terms() {
        let row: Row = vec![(1, 2.0), (5, 1.0), (7, 3.0), (1 << 10, 0.25)];
        let b = binary_row(&row, 10);
        let v = 1.0 / 3f32.sqrt();
        assert_eq!(b, vec![(1, v), (5, v), (7, v), (1 << 10, 0.25)]);
        // As the scorer's binary terms of the same request.
        let h = Hashing::plain(10);
        let req = ChatRequest::new("auto", vec![Message::user("the cat saw the cat")]);
        let from_record = binary_row(&row_of(&features_of(&req, h), 10).unwrap(), 10);
        let terms = crate::lexical::sparse_terms_binary(&req, h);
        assert_eq!(&from_record[..terms.len()], &terms[..]);
    }
}
