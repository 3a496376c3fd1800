//! Learning the router from outcomes: ridge regression of the strong model's quality gain
//! over the weak one on hashed word 1-2-grams plus the structural features (log length
//! first), regularisation chosen by k-fold cross-validation inside the given data, and the
//! per-arm inverse-propensity fits that learning from production logs uses
//! ([`super::offpolicy`], whose `replay` is `route simulate`).
//!
//! Everything here is deterministic for a seed (no thread, no global RNG): the same file
//! and options give byte-identical weights.
//!
//! The model: a sparse row `x` = the request's hashed terms ([`lexical::sparse_terms`],
//! `2^bits` buckets, values `count / sqrt(terms)`) followed by the normalized structural
//! features ([`features::extract`]); prediction `bias + β·x`. Ridge is linear in the
//! target, so fitting the gain `strong − weak` equals the difference of the two models'
//! separate fits with the same penalty; the production learner fits each model's success on the
//! rows where that model was called (the only ones it sees) and stores the difference.
//! The result is a [`Weights`] with [`Link::Gain`]: `score = (1 + predicted gain) / 2`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::data::LabeledPrompt;
use super::eval;
use super::features::{self, N_FEATURES};
use super::lexical;
use super::scorer::Scorer;
use super::weights::{
    LexicalWeights, Link, MAX_LEXICAL_BITS, SuccessModel, SuccessModels, Target, Thresholds,
    Weights,
};
use gaterouter_types::error::{Error, Result};
use gaterouter_types::types::ChatRequest;

/// Hashed n-gram buckets `2^14`: 22 KB in the weights file.
pub const DEFAULT_BITS: u8 = 14;
/// Ridge penalties tried by cross-validation (per unit of row weight; rows weigh 1 on
/// average). Wide on purpose: on a few hundred outcomes with little per-request signal the
/// best penalty is large (30-300 on the dev file); the grid used to stop at 1, and the
/// fits it allowed overfitted (bench/RESULTS.md).
pub const DEFAULT_LAMBDAS: [f64; 8] = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0];
/// Cross-validation folds.
pub const DEFAULT_FOLDS: usize = 5;

pub(crate) fn bad(field: &str, message: String) -> Error {
    Error::InvalidRequest {
        field: Some(field.into()),
        message,
    }
}

/// A sparse design row: hashed terms in `0..2^bits`, then the structural features at
/// `2^bits + j` (zeros left out).
pub type Row = Vec<(u32, f32)>;

/// The design row of a request.
pub fn design_row(req: &ChatRequest, h: impl Into<lexical::Hashing>) -> Row {
    design_row_with(req, h, FeatureSet::All, false)
}

/// Which structural features a calibration fits beside the n-grams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSet {
    /// Log length only (the issue's plain reference: n-grams + log length).
    Length,
    /// All structural features.
    All,
}

/// The design row of a request with the given structural features, binary
/// ([`lexical::sparse_terms_binary`]) or counted term values.
pub fn design_row_with(
    req: &ChatRequest,
    h: impl Into<lexical::Hashing>,
    set: FeatureSet,
    binary: bool,
) -> Row {
    let h = h.into();
    let mut v = if binary {
        lexical::sparse_terms_binary(req, h)
    } else {
        lexical::sparse_terms(req, h)
    };
    let nb = 1u32 << h.bits;
    let f = features::extract(req);
    let k = match set {
        FeatureSet::Length => 1,
        FeatureSet::All => N_FEATURES,
    };
    for (j, x) in f.norm.iter().take(k).enumerate() {
        if *x != 0.0 {
            v.push((nb + j as u32, *x as f32));
        }
    }
    v
}

/// A fitted ridge model over design rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Ridge {
    /// Bucket exponent of the lexical part.
    pub bits: u8,
    /// Penalty it was fitted with.
    pub lambda: f64,
    /// Intercept (not penalized).
    pub bias: f64,
    /// `2^bits` term weights, then `N_FEATURES` structural weights.
    pub beta: Vec<f64>,
}

impl Ridge {
    /// Prediction for one row.
    pub fn predict(&self, row: &[(u32, f32)]) -> f64 {
        self.bias
            + row
                .iter()
                .map(|(j, x)| self.beta.get(*j as usize).copied().unwrap_or(0.0) * f64::from(*x))
                .sum::<f64>()
    }

    /// `a + b · self`: the same model on another scale (a linear recalibration of its
    /// predictions).
    pub fn affine(&self, a: f64, b: f64) -> Ridge {
        Ridge {
            bits: self.bits,
            lambda: self.lambda,
            bias: a + b * self.bias,
            beta: self.beta.iter().map(|x| b * x).collect(),
        }
    }

    /// `self − other` (same bits): the gain model of two success models.
    pub fn minus(&self, other: &Ridge) -> Ridge {
        Ridge {
            bits: self.bits,
            lambda: self.lambda,
            bias: self.bias - other.bias,
            beta: self
                .beta
                .iter()
                .zip(&other.beta)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    /// As a weights file with [`Link::Gain`] (term weights int8-quantized as the file
    /// stores them); thresholds at the given quantiles of `scores_of` rows.
    pub(crate) fn to_weights(
        &self,
        description: String,
        fit: serde_json::Value,
    ) -> Result<Weights> {
        self.to_salted_weights(description, fit, 0)
    }

    /// [`Ridge::to_weights`] for rows hashed with `salt`.
    pub(crate) fn to_salted_weights(
        &self,
        description: String,
        fit: serde_json::Value,
        salt: u64,
    ) -> Result<Weights> {
        let nb = 1usize << self.bits;
        let mut weights = [0.0; N_FEATURES];
        weights.copy_from_slice(&self.beta[nb..nb + N_FEATURES]);
        let w = Weights {
            description,
            target: Target::Benefit,
            link: Link::Gain,
            bias: self.bias,
            weights,
            thresholds: Thresholds {
                standard: 0.5,
                heavy: 0.5,
            },
            fit,
            lexical: Some(LexicalWeights {
                bits: self.bits,
                salt,
                weights: self.beta[..nb].iter().map(|x| *x as f32).collect(),
                binary: false,
            }),
            success: None,
        };
        // What the file holds: quantized n-gram weights.
        Weights::from_json(&w.to_json())
    }

    /// As one model's success model: its n-gram weights int8-quantized as the file stores
    /// them, binary term values (what [`calibrate`] fits).
    pub(crate) fn to_success_model(&self) -> Result<SuccessModel> {
        let mut w = self.to_weights(String::new(), serde_json::Value::Null)?;
        if let Some(l) = w.lexical.as_mut() {
            l.binary = true;
        }
        Ok(SuccessModel {
            bias: w.bias,
            weights: w.weights,
            lexical: w.lexical,
        })
    }
}

/// Weighted ridge regression by preconditioned conjugate gradients:
/// minimizes `Σ s_i (y_i − bias − β·x_i)² + λ |β|²` (`bias` unpenalized). `warm` starts
/// from an earlier solution (a neighbouring penalty). Deterministic.
pub fn ridge(
    rows: &[Row],
    y: &[f64],
    s: &[f64],
    bits: u8,
    lambda: f64,
    warm: Option<&Ridge>,
) -> Ridge {
    let nb = 1usize << bits;
    let d = nb + N_FEATURES + 1; // intercept last
    let ic = d - 1;
    let apply = |v: &[f64], out: &mut [f64]| {
        out.iter_mut().for_each(|o| *o = 0.0);
        for (i, row) in rows.iter().enumerate() {
            let mut t = v[ic];
            for (j, x) in row {
                t += v[*j as usize] * f64::from(*x);
            }
            let t = t * s[i];
            out[ic] += t;
            for (j, x) in row {
                out[*j as usize] += t * f64::from(*x);
            }
        }
        for j in 0..ic {
            out[j] += lambda * v[j];
        }
    };
    let mut b = vec![0.0; d];
    let mut diag = vec![lambda; d];
    diag[ic] = 0.0;
    for (i, row) in rows.iter().enumerate() {
        let sy = s[i] * y[i];
        b[ic] += sy;
        diag[ic] += s[i];
        for (j, x) in row {
            b[*j as usize] += sy * f64::from(*x);
            diag[*j as usize] += s[i] * f64::from(*x) * f64::from(*x);
        }
    }
    let inv: Vec<f64> = diag
        .iter()
        .map(|v| if *v > 0.0 { 1.0 / v } else { 0.0 })
        .collect();
    let mut x = vec![0.0; d];
    if let Some(w) = warm.filter(|w| w.bits == bits) {
        x[..ic].copy_from_slice(&w.beta);
        x[ic] = w.bias;
    }
    let mut ap = vec![0.0; d];
    apply(&x, &mut ap);
    let mut r: Vec<f64> = b.iter().zip(&ap).map(|(a, c)| a - c).collect();
    let mut z: Vec<f64> = r.iter().zip(&inv).map(|(a, m)| a * m).collect();
    let mut p = z.clone();
    let mut rz: f64 = r.iter().zip(&z).map(|(a, c)| a * c).sum();
    let bnorm = b.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
    for _ in 0..400 {
        let rnorm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
        if rnorm <= 1e-7 * bnorm {
            break;
        }
        apply(&p, &mut ap);
        let pap: f64 = p.iter().zip(&ap).map(|(a, c)| a * c).sum();
        if pap <= 0.0 || !pap.is_finite() {
            break;
        }
        let alpha = rz / pap;
        for k in 0..d {
            x[k] += alpha * p[k];
            r[k] -= alpha * ap[k];
        }
        for k in 0..d {
            z[k] = r[k] * inv[k];
        }
        let rz_new: f64 = r.iter().zip(&z).map(|(a, c)| a * c).sum();
        let beta = rz_new / rz;
        rz = rz_new;
        for k in 0..d {
            p[k] = z[k] + beta * p[k];
        }
    }
    let bias = x[ic];
    x.truncate(ic);
    Ridge {
        bits,
        lambda,
        bias,
        beta: x,
    }
}

/// Deterministic 64-bit generator (splitmix64): seeded folds, shuffles and exploration.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator for a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed ^ 0x853c_49e6_748f_ea9b)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Seeded fold of every row: a shuffled round-robin, so folds differ in size by at most one.
pub fn folds(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix::new(seed);
    let mut order: Vec<(u64, usize)> = (0..n).map(|i| (rng.next_u64(), i)).collect();
    order.sort_unstable();
    let mut fold = vec![0; n];
    for (pos, (_, i)) in order.into_iter().enumerate() {
        fold[i] = pos % k.max(1);
    }
    fold
}

/// Options of [`calibrate`].
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// Hashed n-gram buckets `2^bits` (1..=20; the file grows by about `1.37 · 2^bits` bytes).
    pub bits: u8,
    /// Penalties tried; cross-validation picks one.
    pub lambdas: Vec<f64>,
    /// Cross-validation folds (2..=20).
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Share of the calibration prompts scored below the `standard` threshold (tier light).
    pub light_share: f64,
    /// Share of the calibration prompts at or above the `heavy` threshold (tier heavy).
    pub heavy_share: f64,
    /// Free text stored in the weights file.
    pub description: String,
    /// Return the fit even when its cross-validated APGR does not beat the builtin
    /// weights' and length-only's on the same folds (see [`calibrate`]).
    pub force: bool,
    /// [`SuccessModels::margin`] of the per-model success models written for files that
    /// score several models (default [`crate::weights::DEFAULT_SUCCESS_MARGIN`]).
    pub success_margin: f64,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions {
            bits: DEFAULT_BITS,
            lambdas: DEFAULT_LAMBDAS.to_vec(),
            folds: DEFAULT_FOLDS,
            seed: 1,
            light_share: 0.4,
            heavy_share: 0.3,
            description: String::new(),
            force: false,
            success_margin: crate::weights::DEFAULT_SUCCESS_MARGIN,
        }
    }
}

/// Which weights [`calibrate`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chosen {
    /// The fitted weights.
    Fit,
    /// The builtin weights (the fit did not beat them on the same folds).
    Builtin,
    /// A length-only rule (the fit and the builtin weights did not beat it).
    Length,
}

/// One model's success fitted on its own (files with a `scores` map of several models).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFit {
    /// Model name (key of `scores`).
    pub model: String,
    /// Prompts with a score for it.
    pub rows: usize,
    /// Its mean score.
    pub mean_score: f64,
    /// Share of the score variance the fit explains out of fold (1 − CV MSE / variance;
    /// 0 or less: the request text tells nothing about this model's success).
    pub cv_r2: f64,
    /// What the weights file holds for it: the fit when `cv_r2 > 0`, else its mean score
    /// alone (a constant: the text did not help predict it out of fold).
    pub written: SuccessFit,
}

/// Which success model [`calibrate`] wrote for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuccessFit {
    /// The ridge fit on the request's features and words.
    Fit,
    /// Its mean score (the fit did not predict better than that out of fold).
    Mean,
}

/// Honest figures of a calibration, all measured inside the given file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Prompts fitted on.
    pub rows: usize,
    /// Penalty chosen.
    pub lambda: f64,
    /// Structural features chosen beside the n-grams.
    pub features: FeatureSet,
    /// Folds.
    pub folds: usize,
    /// Cross-validated APGR of the chosen fit: the mean over the folds of each held-out
    /// fold's APGR.
    pub cv_apgr: f64,
    /// Out-of-fold strong share for 95% of always-strong quality (folds pooled).
    pub cv_share_for_95pct_quality: f64,
    /// Length-only (characters) APGR on the same folds (mean over the folds).
    pub cv_length_apgr: f64,
    /// The builtin weights' APGR on the same folds (mean over the folds).
    pub cv_builtin_apgr: f64,
    /// Length-only (characters) APGR on the whole file.
    pub length_apgr: f64,
    /// Length-only strong share for 95% quality on the whole file.
    pub length_share_for_95pct_quality: f64,
    /// `(lambda, out-of-fold squared error of the gain per row)` for every penalty tried
    /// with the chosen features.
    pub per_lambda: Vec<(f64, f64)>,
    /// What was returned: the fit only when it beats both baselines (or `force`).
    pub chosen: Chosen,
    /// True when the fit was returned although it did not beat both baselines.
    pub forced: bool,
    /// Per-model success fits when the file scores more than the weak/strong pair.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelFit>,
}

pub(crate) fn check_bits(bits: u8) -> Result<()> {
    if bits == 0 || bits > MAX_LEXICAL_BITS {
        return Err(bad(
            "bits",
            format!(
                "bits = {bits} is out of range: use 1..={MAX_LEXICAL_BITS} (default {DEFAULT_BITS})"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_lambdas(l: &[f64]) -> Result<()> {
    if l.is_empty() || l.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
        return Err(bad(
            "lambdas",
            format!("penalties {l:?} must be positive numbers, at least one"),
        ));
    }
    Ok(())
}

/// Out-of-fold predictions of ridge fits of `y` for every penalty (largest first, each
/// fit warm-starting the next), fitted only on the other folds' rows.
fn oof_ridge(
    rows: &[Row],
    y: &[f64],
    fold: &[usize],
    k: usize,
    bits: u8,
    lambdas: &[f64],
) -> Vec<Vec<f64>> {
    let mut oof = vec![vec![0.0; rows.len()]; lambdas.len()];
    for f in 0..k {
        let train: Vec<usize> = (0..rows.len()).filter(|i| fold[*i] != f).collect();
        let tr_rows: Vec<Row> = train.iter().map(|i| rows[*i].clone()).collect();
        let tr_y: Vec<f64> = train.iter().map(|i| y[*i]).collect();
        let tr_s = vec![1.0; train.len()];
        let mut warm: Option<Ridge> = None;
        for (li, lambda) in lambdas.iter().enumerate() {
            let m = ridge(&tr_rows, &tr_y, &tr_s, bits, *lambda, warm.as_ref());
            for i in (0..rows.len()).filter(|i| fold[*i] == f) {
                oof[li][i] = m.predict(&rows[i]);
            }
            warm = Some(m);
        }
    }
    oof
}

/// Mean over the folds of each fold's APGR (folds where the strong model is not better
/// on average are left out; `None` if none is left).
fn fold_apgr(
    scores: &[f64],
    weak: &[f64],
    strong: &[f64],
    fold: &[usize],
    k: usize,
) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for f in 0..k {
        let idx: Vec<usize> = (0..scores.len()).filter(|i| fold[*i] == f).collect();
        let pick = |v: &[f64]| idx.iter().map(|i| v[*i]).collect::<Vec<f64>>();
        if let Ok(r) = eval::evaluate_scores(&pick(scores), &pick(weak), &pick(strong)) {
            sum += r.apgr;
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// A length-only rule as weights: `sigmoid(log length)`, monotone in estimated tokens;
/// what [`calibrate`] returns when neither the fit nor the builtin weights beat length.
pub fn length_only_weights(description: String) -> Result<Weights> {
    let mut w = Weights::builtin()?;
    w.weights = [0.0; N_FEATURES];
    w.weights[features::Feature::Tokens as usize] = 4.0;
    w.bias = -2.0;
    w.link = Link::Logistic;
    w.lexical = None;
    w.description = description;
    w.fit = json!({"method": "length only: score rises with the estimated prompt tokens"});
    Ok(w)
}

/// Fit gain weights on labeled prompts (both models' scores needed).
///
/// Ridge regression of `strong − weak` on hashed word 1-2-grams plus either log length
/// alone or all structural features; the penalty and the feature set are chosen by k-fold
/// cross-validation (out-of-fold squared error of the gain, which is far less noisy than
/// out-of-fold APGR on a few hundred rows), then refitted on all prompts; thresholds at
/// the prompts' score quantiles.
///
/// No harm: the chosen fit's cross-validated APGR (mean over the folds) is compared with
/// the builtin weights' and length-only's APGR on the same folds. Unless it beats both
/// (or `opts.force`), the better of those two is returned instead (the builtin weights,
/// or [`length_only_weights`] with thresholds at this file's quantiles), and the report
/// says so (`chosen`).
pub fn calibrate(
    prompts: &[LabeledPrompt],
    opts: &CalibrateOptions,
) -> Result<(Weights, CalibrationReport)> {
    check_bits(opts.bits)?;
    check_lambdas(&opts.lambdas)?;
    if !(2..=20).contains(&opts.folds) {
        return Err(bad(
            "folds",
            format!("folds = {} must be in 2..=20", opts.folds),
        ));
    }
    let shares_ok = (0.0..=1.0).contains(&opts.light_share)
        && (0.0..=1.0).contains(&opts.heavy_share)
        && opts.light_share + opts.heavy_share <= 1.0;
    if !shares_ok {
        return Err(bad(
            "light_share/heavy_share",
            format!(
                "{} and {} must be in [0, 1] and sum to at most 1",
                opts.light_share, opts.heavy_share
            ),
        ));
    }
    // Labels first: an unlabeled line is named as such, however few lines there are.
    let mut weak = Vec::with_capacity(prompts.len());
    let mut strong = Vec::with_capacity(prompts.len());
    for p in prompts {
        let (w, s) = p.labels()?;
        weak.push(w);
        strong.push(s);
    }
    if prompts.len() < 2 * opts.folds {
        return Err(bad(
            "prompts",
            format!(
                "{} labeled prompts are too few to cross-validate {} folds: give at least {}",
                prompts.len(),
                opts.folds,
                2 * opts.folds
            ),
        ));
    }
    let y: Vec<f64> = weak.iter().zip(&strong).map(|(w, s)| s - w).collect();
    let fold = folds(prompts.len(), opts.folds, opts.seed);
    // Largest penalty first: each fit warm-starts the next smaller one.
    let mut lambdas = opts.lambdas.clone();
    lambdas.sort_by(|a, b| b.total_cmp(a));
    lambdas.dedup();
    let sq_err =
        |o: &[f64]| o.iter().zip(&y).map(|(p, t)| (t - p).powi(2)).sum::<f64>() / y.len() as f64;
    // (features, rows, out-of-fold predictions per lambda, best lambda index, its error)
    type Best = (FeatureSet, Vec<Row>, Vec<Vec<f64>>, usize, f64);
    let mut best: Option<Best> = None;
    for set in [FeatureSet::Length, FeatureSet::All] {
        let rows: Vec<Row> = prompts
            .iter()
            .map(|p| design_row_with(&p.request, opts.bits, set, true))
            .collect();
        let oof = oof_ridge(&rows, &y, &fold, opts.folds, opts.bits, &lambdas);
        let (li, err) = oof
            .iter()
            .map(|o| sq_err(o))
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, f64::INFINITY));
        // The richer set must earn its place: ties keep log length alone.
        if best.as_ref().is_none_or(|b| err < b.4) {
            best = Some((set, rows, oof, li, err));
        }
    }
    let Some((set, rows, oof, li, _)) = best else {
        return Err(bad("lambdas", "no penalty to try".into()));
    };
    let per_lambda: Vec<(f64, f64)> = lambdas
        .iter()
        .zip(&oof)
        .map(|(l, o)| (*l, sq_err(o)))
        .collect();
    let lambda = lambdas[li];
    let pooled = eval::evaluate_scores(&oof[li], &weak, &strong)?;
    let lengths: Vec<f64> = prompts.iter().map(eval::length_score).collect();
    let length = eval::evaluate_scores(&lengths, &weak, &strong)?;
    let builtin = Scorer::builtin()?;
    let builtin_scores: Vec<f64> = prompts
        .iter()
        .map(|p| builtin.score_only(&p.request))
        .collect();
    let cv_apgr = fold_apgr(&oof[li], &weak, &strong, &fold, opts.folds).unwrap_or(pooled.apgr);
    let cv_length = fold_apgr(&lengths, &weak, &strong, &fold, opts.folds).unwrap_or(length.apgr);
    let cv_builtin =
        fold_apgr(&builtin_scores, &weak, &strong, &fold, opts.folds).unwrap_or(f64::NEG_INFINITY);
    let fit_wins = cv_apgr > cv_length && cv_apgr > cv_builtin;
    let chosen = if fit_wins || opts.force {
        Chosen::Fit
    } else if cv_builtin >= cv_length {
        Chosen::Builtin
    } else {
        Chosen::Length
    };
    if !(0.0..=1.0).contains(&opts.success_margin) {
        return Err(bad(
            "success_margin",
            format!("{} must be in [0, 1]", opts.success_margin),
        ));
    }
    let (models, success): (Vec<ModelFit>, BTreeMap<String, SuccessModel>) =
        per_model_fits(prompts, &rows, &fold, opts, lambda)?
            .into_iter()
            .map(|(fit, m)| {
                let name = fit.model.clone();
                (fit, (name, m))
            })
            .unzip();
    let report = CalibrationReport {
        rows: rows.len(),
        lambda,
        features: set,
        folds: opts.folds,
        cv_apgr,
        cv_share_for_95pct_quality: pooled.share_for_95pct_quality,
        cv_length_apgr: cv_length,
        cv_builtin_apgr: cv_builtin,
        length_apgr: length.apgr,
        length_share_for_95pct_quality: length.share_for_95pct_quality,
        per_lambda: per_lambda.clone(),
        chosen,
        forced: opts.force && !fit_wins,
        models,
    };
    let fit = json!({
        "method": "ridge regression of strong_score - weak_score on hashed word 1-2-grams (binary: 1/sqrt(distinct terms)) + log length or all structural features, penalty and feature set by k-fold cross-validation (out-of-fold squared error)",
        "bits": opts.bits,
        "lambda": lambda,
        "features": set,
        "folds": opts.folds,
        "seed": opts.seed,
        "rows": rows.len(),
        "cv_apgr": cv_apgr,
        "cv_length_apgr": cv_length,
        "cv_builtin_apgr": cv_builtin,
        "cv_share_for_95pct_quality": pooled.share_for_95pct_quality,
        "length_apgr": length.apgr,
        "per_lambda_cv_squared_error": per_lambda,
        "light_share": opts.light_share,
        "heavy_share": opts.heavy_share,
        "forced": report.forced,
        "success_models": report.models,
    });
    let w = match chosen {
        Chosen::Fit => {
            let model = ridge(&rows, &y, &vec![1.0; rows.len()], opts.bits, lambda, None);
            let mut w = model.to_weights(opts.description.clone(), fit)?;
            if let Some(l) = w.lexical.as_mut() {
                l.binary = true;
            }
            set_thresholds(
                &mut w,
                prompts.iter().map(|p| &p.request),
                opts.light_share,
                opts.heavy_share,
            );
            w
        }
        Chosen::Builtin => builtin.weights().clone(),
        Chosen::Length => {
            let mut w = length_only_weights(format!(
                "{} (length-only: the fit and the builtin weights did not beat it on this file's folds)",
                opts.description
            ))?;
            set_thresholds(
                &mut w,
                prompts.iter().map(|p| &p.request),
                opts.light_share,
                opts.heavy_share,
            );
            w
        }
    };
    let mut w = w;
    // Per-model success models ride along whatever gain model was chosen: they rank
    // models inside a tier, the gain model picks the tier.
    w.success = (!success.is_empty()).then_some(SuccessModels {
        margin: opts.success_margin,
        models: success,
    });
    w.validate("calibrated weights")?;
    Ok((w, report))
}

/// Each model's success fitted on its own (ridge on the same design rows and penalty),
/// for files whose prompts carry a `scores` map: out-of-fold R² per model, and the success
/// model to serve — the fit refitted on all its rows when it predicts better than the
/// model's mean out of fold, else that mean alone.
fn per_model_fits(
    prompts: &[LabeledPrompt],
    rows: &[Row],
    fold: &[usize],
    opts: &CalibrateOptions,
    lambda: f64,
) -> Result<Vec<(ModelFit, SuccessModel)>> {
    let mut names: Vec<&str> = prompts
        .iter()
        .flat_map(|p| p.scores.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let idx: Vec<usize> = (0..prompts.len())
            .filter(|i| prompts[*i].scores.contains_key(name))
            .collect();
        if idx.len() < 2 * opts.folds {
            continue;
        }
        let r: Vec<Row> = idx.iter().map(|i| rows[*i].clone()).collect();
        let y: Vec<f64> = idx.iter().map(|i| prompts[*i].scores[name]).collect();
        let f: Vec<usize> = idx.iter().map(|i| fold[*i]).collect();
        let oof = oof_ridge(&r, &y, &f, opts.folds, opts.bits, &[lambda]);
        let n = y.len() as f64;
        let mean = y.iter().sum::<f64>() / n;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let mse = oof[0]
            .iter()
            .zip(&y)
            .map(|(p, t)| (t - p).powi(2))
            .sum::<f64>()
            / n;
        let cv_r2 = if var > 0.0 { 1.0 - mse / var } else { 0.0 };
        let (written, model) = if cv_r2 > 0.0 {
            let fit = ridge(&r, &y, &vec![1.0; r.len()], opts.bits, lambda, None);
            (SuccessFit::Fit, fit.to_success_model()?)
        } else {
            let constant = SuccessModel {
                bias: mean,
                weights: [0.0; N_FEATURES],
                lexical: None,
            };
            (SuccessFit::Mean, constant)
        };
        out.push((
            ModelFit {
                model: name.to_owned(),
                rows: idx.len(),
                mean_score: mean,
                cv_r2,
                written,
            },
            model,
        ));
    }
    Ok(out)
}

/// Thresholds at score quantiles: `light_share` of the requests below `standard`,
/// `heavy_share` at or above `heavy`.
fn set_thresholds<'a>(
    w: &mut Weights,
    reqs: impl Iterator<Item = &'a ChatRequest>,
    light_share: f64,
    heavy_share: f64,
) {
    let scorer = Scorer::new(w.clone());
    let scores: Vec<f64> = reqs.map(|r| scorer.score_only(r)).collect();
    set_thresholds_at(w, scores, light_share, heavy_share);
}

/// Thresholds at quantiles of the given scores (see [`set_thresholds`]).
fn set_thresholds_at(w: &mut Weights, mut scores: Vec<f64>, light_share: f64, heavy_share: f64) {
    if scores.is_empty() {
        return;
    }
    scores.sort_by(f64::total_cmp);
    let q =
        |share: f64| scores[((share * scores.len() as f64).round() as usize).min(scores.len() - 1)];
    let standard = q(light_share).clamp(0.0, 1.0);
    let heavy = q(1.0 - heavy_share).clamp(standard, 1.0);
    w.thresholds = Thresholds { standard, heavy };
}

/// Options of [`super::offpolicy::replay`] (`route simulate`) and of the per-arm fits.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Share of calls whose tier is drawn at random (uniformly among the tiers) instead
    /// of by the current weights, in `[0, 0.5]` (the organization policy's limit).
    pub explore: f64,
    /// Seed of the exploration draws and of the cross-validation folds.
    pub seed: u64,
    /// Hashed n-gram buckets `2^bits`.
    pub bits: u8,
    /// Penalties tried at each refit (default [`DEFAULT_LAMBDAS`], as `route calibrate`).
    pub lambdas: Vec<f64>,
    /// First refit after this many outcomes; later refits each time the outcomes grow by `refit_growth`.
    pub first_refit: usize,
    /// Growth factor between refits (> 1).
    pub refit_growth: f64,
    /// Cap on an outcome's inverse-propensity weight (variance control).
    pub max_weight: f64,
    /// Shadow sampling: share of calls also sent to the other arm, whose score is then
    /// revealed too, in `[0, 1]` (default 0).
    pub shadow: f64,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions {
            explore: 0.1,
            seed: 1,
            bits: DEFAULT_BITS,
            lambdas: DEFAULT_LAMBDAS.to_vec(),
            first_refit: 100,
            refit_growth: 1.5,
            max_weight: 20.0,
            shadow: 0.0,
        }
    }
}

/// What a replay did: one JSON line of `route simulate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulateReport {
    /// Calls replayed.
    pub rows: usize,
    /// Exploration share asked for.
    pub explore: f64,
    /// Seed.
    pub seed: u64,
    /// Mean quality of the answers actually chosen (each call's chosen model's score).
    pub realized_quality: f64,
    /// Share of calls sent to the strong model (the heavy tier).
    pub strong_share: f64,
    /// Share of calls whose tier was drawn by exploration.
    pub explored_share: f64,
    /// Share of calls also sent to the other arm (shadow sampling; 0 without).
    #[serde(default)]
    pub shadowed_share: f64,
    /// Share of calls that also sent a shadow call to the strong model (extra strong calls
    /// paid for learning, on top of `strong_share`).
    #[serde(default)]
    pub shadow_strong_share: f64,
    /// Always-weak and always-strong quality on the same calls, for context.
    pub quality_weak: f64,
    /// See `quality_weak`.
    pub quality_strong: f64,
    /// Learning runs made (as the collector would, as outcomes accumulate).
    pub refits: usize,
    /// Runs whose weights were promoted (served from then on).
    pub promotions: usize,
    /// Fingerprint of the final weights ([`Weights::fingerprint`]).
    pub weights_version: String,
    /// What the caller should know about this replay (also printed by `route simulate`
    /// on standard error); empty when nothing is amiss.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ReplayWarning>,
}

/// Something about a replay's input that makes its figures mean less than they seem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplayWarning {
    /// The prompts arrive grouped by `source` ([`super::data::SourceOrder::grouped`]): the
    /// replay learns one subject after another and its final weights reflect the last
    /// ones, where live traffic mixes them. Shuffle first (the CLI: `route simulate
    /// --shuffle`).
    GroupedBySource {
        /// Distinct sources.
        sources: usize,
        /// Runs of one source in the replayed order.
        runs: usize,
        /// Runs a random order would give.
        expected_runs: f64,
    },
}

impl std::fmt::Display for ReplayWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayWarning::GroupedBySource {
                sources,
                runs,
                expected_runs,
            } => write!(
                f,
                "the prompts arrive grouped by source ({runs} runs of {sources} sources; a random order would give about {expected_runs:.0}): the replay learns one source after another and its final weights reflect the last ones, unlike mixed live traffic; shuffle the prompts to replay them as mixed traffic"
            ),
        }
    }
}

/// One logged decision: the row it was made on, the arm, the revealed reward and the
/// probability the logging policy gave that arm.
pub(crate) struct Logged {
    pub(crate) row: usize,
    pub(crate) strong: bool,
    pub(crate) reward: f64,
    pub(crate) propensity: f64,
}

/// Fit one model's success on its logged outcomes, inverse-propensity weighted, penalty
/// by k-fold cross-validation of the weighted squared error.
pub(crate) fn fit_success(
    rows: &[Row],
    logs: &[&Logged],
    opts: &SimulateOptions,
    seed: u64,
) -> Ridge {
    let x: Vec<Row> = logs.iter().map(|l| rows[l.row].clone()).collect();
    let y: Vec<f64> = logs.iter().map(|l| l.reward).collect();
    let mut s: Vec<f64> = logs
        .iter()
        .map(|l| (1.0 / l.propensity).min(opts.max_weight))
        .collect();
    let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
    s.iter_mut().for_each(|v| *v /= mean);
    let mut lambdas = opts.lambdas.clone();
    lambdas.sort_by(|a, b| b.total_cmp(a));
    lambdas.dedup();
    let lambda = if lambdas.len() == 1 {
        lambdas[0]
    } else {
        const K: usize = 3;
        let fold = folds(x.len(), K, seed);
        let mut err = vec![0.0; lambdas.len()];
        for k in 0..K {
            let tr: Vec<usize> = (0..x.len()).filter(|i| fold[*i] != k).collect();
            let trx: Vec<Row> = tr.iter().map(|i| x[*i].clone()).collect();
            let try_: Vec<f64> = tr.iter().map(|i| y[*i]).collect();
            let trs: Vec<f64> = tr.iter().map(|i| s[*i]).collect();
            let mut warm: Option<Ridge> = None;
            for (li, l) in lambdas.iter().enumerate() {
                let m = ridge(&trx, &try_, &trs, opts.bits, *l, warm.as_ref());
                for i in (0..x.len()).filter(|i| fold[*i] == k) {
                    err[li] += s[i] * (y[i] - m.predict(&x[i])).powi(2);
                }
                warm = Some(m);
            }
        }
        let best = err
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        lambdas[best]
    };
    ridge(&x, &y, &s, opts.bits, lambda, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaterouter_types::types::Message;

    fn lp(i: usize, source: &str, text: &str, weak: f64, strong: f64) -> LabeledPrompt {
        LabeledPrompt {
            id: format!("p{i}"),
            source: source.to_owned(),
            request: ChatRequest::new("auto", vec![Message::user(text)]),
            weak_model: None,
            strong_model: None,
            weak_score: Some(weak),
            strong_score: Some(strong),
            scores: Default::default(),
        }
    }

    /// Same shape, same length: only a topic word tells which prompts gain from the strong model.
    fn planted(n: usize) -> Vec<LabeledPrompt> {
        let mut rng = SplitMix::new(7);
        (0..n)
            .map(|i| {
                let hard = rng.next_f64() < 0.5;
                let topic = if hard { "tort" } else { "lake" };
                let noise = rng.next_f64() < 0.1;
                let (w, s) = if hard != noise {
                    (0.0, 1.0)
                } else {
                    (1.0, 1.0)
                };
                lp(
                    i,
                    "s",
                    &format!("Which {topic} fact applies to case number {}?", i % 97),
                    w,
                    s,
                )
            })
            .collect()
    }

    #[test]
    fn ridge_recovers_a_linear_signal() {
        // y = 0.5 + 2 * x_a - 1 * x_b on two buckets
        let rows: Vec<Row> = (0..200)
            .map(|i| vec![(1, (i % 7) as f32 / 7.0), (2, (i % 5) as f32 / 5.0)])
            .collect();
        let y: Vec<f64> = rows
            .iter()
            .map(|r| 0.5 + 2.0 * f64::from(r[0].1) - f64::from(r[1].1))
            .collect();
        let m = ridge(&rows, &y, &vec![1.0; 200], 4, 1e-6, None);
        assert!(
            (m.bias - 0.5).abs() < 1e-3
                && (m.beta[1] - 2.0).abs() < 1e-3
                && (m.beta[2] + 1.0).abs() < 1e-3,
            "{m:?}"
        );
        // heavier penalty shrinks
        let m2 = ridge(&rows, &y, &vec![1.0; 200], 4, 100.0, None);
        assert!(m2.beta[1].abs() < m.beta[1].abs());
    }

    #[test]
    fn calibrate_recovers_a_planted_signal() {
        let ps = planted(400);
        let (w, rep) = calibrate(
            &ps,
            &CalibrateOptions {
                bits: 10,
                ..Default::default()
            },
        )
        .expect("calibrates");
        // 10% of the labels flipped: a perfect router of the topic reaches about 0.7
        assert!(rep.cv_apgr > 0.65, "{rep:?}");
        assert!(rep.cv_apgr > rep.length_apgr + 0.1, "{rep:?}");
        assert!(rep.cv_apgr > rep.cv_builtin_apgr + 0.1, "{rep:?}");
        assert_eq!(rep.chosen, Chosen::Fit);
        assert!(rep.models.is_empty(), "two-model file");
        assert_eq!(w.link, Link::Gain);
        let s = Scorer::new(w.clone());
        let hard = s.score_only(&ChatRequest::new(
            "auto",
            vec![Message::user(
                "Which tort fact applies to case number 5000?",
            )],
        ));
        let easy = s.score_only(&ChatRequest::new(
            "auto",
            vec![Message::user(
                "Which lake fact applies to case number 5000?",
            )],
        ));
        assert!(hard > easy + 0.3, "{hard} {easy}");
        // deterministic, and the file round-trips to the same scores
        let (again, _) = calibrate(
            &ps,
            &CalibrateOptions {
                bits: 10,
                ..Default::default()
            },
        )
        .expect("again");
        assert_eq!(again.to_json(), w.to_json());
        let back = Scorer::from_json(&w.to_json()).expect("parses");
        assert!((back.score_only(&ps[0].request) - s.score_only(&ps[0].request)).abs() < 1e-12);
        assert!(w.to_json().len() < 100_000);
    }

    #[test]
    fn calibrate_keeps_a_baseline_when_the_text_adds_nothing_to_length() {
        // The gain is decided by length alone (long prompts need the strong model) and the
        // words are noise: length-only ranks perfectly, so the fit can at best tie and the
        // builtin weights or a length-only rule are written instead.
        let mut rng = SplitMix::new(11);
        let words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"];
        let ps: Vec<LabeledPrompt> = (0..300)
            .map(|i| {
                let n = 3 + (rng.next_u64() % 60) as usize;
                let text: Vec<&str> = (0..n)
                    .map(|_| words[(rng.next_u64() % 6) as usize])
                    .collect();
                let long = n > 33;
                lp(i, "s", &text.join(" "), if long { 0.0 } else { 1.0 }, 1.0)
            })
            .collect();
        let o = CalibrateOptions {
            bits: 10,
            ..Default::default()
        };
        let (w, rep) = calibrate(&ps, &o).expect("calibrates");
        assert_ne!(rep.chosen, Chosen::Fit, "{rep:?}");
        assert!(!rep.forced);
        assert!(
            rep.cv_apgr <= rep.cv_length_apgr.max(rep.cv_builtin_apgr),
            "{rep:?}"
        );
        assert!(w.lexical.is_none(), "a baseline has no n-gram weights");
        // --force writes the fit and says so
        let (w, rep) = calibrate(
            &ps,
            &CalibrateOptions {
                force: true,
                ..o.clone()
            },
        )
        .expect("forced");
        assert_eq!(rep.chosen, Chosen::Fit);
        assert!(rep.forced);
        assert_eq!(w.link, Link::Gain);
    }

    #[test]
    fn calibrate_keeps_a_baseline_on_noise() {
        // Labels unrelated to the text: whatever the fit finds is noise, and it does not
        // beat the builtin weights and length-only on the same folds.
        let mut rng = SplitMix::new(5);
        let words = [
            "river", "tort", "prime", "cell", "poem", "tax", "orbit", "verb",
        ];
        let ps: Vec<LabeledPrompt> = (0..400)
            .map(|i| {
                let text: Vec<&str> = (0..8)
                    .map(|_| words[(rng.next_u64() % 8) as usize])
                    .collect();
                let weak = if rng.next_f64() < 0.5 { 0.0 } else { 1.0 };
                lp(i, "s", &text.join(" "), weak, 1.0)
            })
            .collect();
        let (w, rep) = calibrate(
            &ps,
            &CalibrateOptions {
                bits: 10,
                ..Default::default()
            },
        )
        .expect("calibrates");
        assert_ne!(rep.chosen, Chosen::Fit, "{rep:?}");
        assert!(w.lexical.is_none());
        // the penalty chosen on noise is the largest one tried
        assert_eq!(rep.lambda, 300.0, "{rep:?}");
    }

    #[test]
    fn cross_validation_does_not_leak_across_folds() {
        // A held-out fold's predictions come only from the other folds: changing the labels
        // of the rows in fold 0 leaves fold 0's out-of-fold predictions unchanged (and
        // changes the others').
        let ps = planted(120);
        let rows: Vec<Row> = ps.iter().map(|p| design_row(&p.request, 10)).collect();
        let y: Vec<f64> = ps
            .iter()
            .map(|p| p.labels().map_or(0.0, |(w, s)| s - w))
            .collect();
        let fold = folds(rows.len(), 5, 3);
        let a = oof_ridge(&rows, &y, &fold, 5, 10, &[1.0, 0.1]);
        let mut y2 = y.clone();
        for i in (0..y.len()).filter(|i| fold[*i] == 0) {
            y2[i] = 1.0 - y2[i];
        }
        let b = oof_ridge(&rows, &y2, &fold, 5, 10, &[1.0, 0.1]);
        for li in 0..2 {
            for i in 0..rows.len() {
                if fold[i] == 0 {
                    assert_eq!(a[li][i], b[li][i], "row {i} leaked its own label");
                }
            }
            assert!((0..rows.len()).any(|i| fold[i] != 0 && a[li][i] != b[li][i]));
        }
    }

    #[test]
    fn calibrate_fits_each_model_of_a_scores_map() {
        // Three models: `big` always succeeds, `small` succeeds except on the topic word
        // "tort", `coin` at random. The pair (small, big) is the gain target; every model
        // gets its own out-of-fold R².
        let mut rng = SplitMix::new(3);
        let ps: Vec<LabeledPrompt> = (0..300)
            .map(|i| {
                let hard = rng.next_f64() < 0.5;
                let topic = if hard { "tort" } else { "lake" };
                let mut p = lp(
                    i,
                    "s",
                    &format!("Which {topic} fact applies to case number {}?", i % 89),
                    0.0,
                    0.0,
                );
                p.weak_score = None;
                p.strong_score = None;
                p.weak_model = Some("small".into());
                p.strong_model = Some("big".into());
                p.scores = [
                    ("small".to_owned(), if hard { 0.0 } else { 1.0 }),
                    ("big".to_owned(), 1.0),
                    (
                        "coin".to_owned(),
                        if rng.next_f64() < 0.5 { 0.0 } else { 1.0 },
                    ),
                ]
                .into_iter()
                .collect();
                p
            })
            .collect();
        let (w, rep) = calibrate(
            &ps,
            &CalibrateOptions {
                bits: 10,
                ..Default::default()
            },
        )
        .expect("calibrates");
        assert_eq!(rep.chosen, Chosen::Fit, "{rep:?}");
        assert_eq!(w.link, Link::Gain);
        let r2 = |m: &str| {
            rep.models
                .iter()
                .find(|f| f.model == m)
                .map(|f| f.cv_r2)
                .expect("reported")
        };
        assert_eq!(rep.models.len(), 3);
        assert!(r2("small") > 0.8, "{rep:?}");
        assert!(r2("coin") < 0.1, "{rep:?}");
        assert_eq!(r2("big"), 0.0, "constant success: nothing to explain");

        // Every model gets a success model in the file: the fit where it predicts out of
        // fold, else its mean; they survive the file round trip and predict per request.
        let written = |m: &str| rep.models.iter().find(|f| f.model == m).map(|f| f.written);
        assert_eq!(written("small"), Some(SuccessFit::Fit));
        assert_eq!(written("big"), Some(SuccessFit::Mean));
        let coin = if r2("coin") > 0.0 {
            SuccessFit::Fit
        } else {
            SuccessFit::Mean
        };
        assert_eq!(written("coin"), Some(coin));
        let w = Weights::from_json(&w.to_json()).expect("round trip");
        let sm = w.success.as_ref().expect("success models written");
        assert_eq!(sm.margin, crate::weights::DEFAULT_SUCCESS_MARGIN);
        assert_eq!(sm.models.len(), 3);
        assert!(sm.models["big"].lexical.is_none() && sm.models["small"].lexical.is_some());
        let scorer = Scorer::new(w);
        let predict = |text: &str, m: &str| {
            let r = scorer.score(&ChatRequest::new(
                "auto",
                vec![gaterouter_types::types::Message::user(text)],
            ));
            r.success
                .expect("predictions")
                .of(m)
                .expect("model predicted")
        };
        let (hard, easy) = (
            "Which tort fact applies to case number 7?",
            "Which lake fact applies to case number 7?",
        );
        assert!(predict(hard, "small") < 0.3, "{}", predict(hard, "small"));
        assert!(predict(easy, "small") > 0.7, "{}", predict(easy, "small"));
        assert!((predict(hard, "big") - 1.0).abs() < 1e-9);
    }

    #[test]
    fn calibrate_refuses_bad_input() {
        let ps = planted(40);
        let e = calibrate(&ps[..5], &CalibrateOptions::default()).unwrap_err();
        assert!(
            e.to_string().contains("5 labeled prompts are too few"),
            "{e}"
        );
        // An unlabeled line is named as such, however few lines there are.
        let line = r#"{"id":"u1","messages":[{"role":"user","content":"x"}]}"#;
        let unlabeled = vec![crate::data::parse_line(line, 1, "t").unwrap()];
        let e = calibrate(&unlabeled, &CalibrateOptions::default()).unwrap_err();
        assert!(e.to_string().contains("`u1` has no weak_score"), "{e}");
        for o in [
            CalibrateOptions {
                bits: 0,
                ..Default::default()
            },
            CalibrateOptions {
                lambdas: vec![],
                ..Default::default()
            },
            CalibrateOptions {
                lambdas: vec![-1.0],
                ..Default::default()
            },
            CalibrateOptions {
                folds: 1,
                ..Default::default()
            },
            CalibrateOptions {
                light_share: 0.8,
                heavy_share: 0.5,
                ..Default::default()
            },
        ] {
            assert!(calibrate(&ps, &o).is_err(), "{o:?}");
        }
    }

    #[test]
    fn folds_are_balanced_and_seeded() {
        let f = folds(103, 5, 1);
        for k in 0..5 {
            let c = f.iter().filter(|x| **x == k).count();
            assert!((20..=21).contains(&c), "{c}");
        }
        assert_eq!(folds(103, 5, 1), f);
        assert_ne!(folds(103, 5, 2), f);
    }
}
