//! Refit the scorer's weights from labeled prompts: L2-regularized logistic regression
//! over the normalized features, solved by Newton's method (IRLS) in plain Rust.
//! Deterministic: no sampling, fixed iteration order.

use std::collections::BTreeMap;

use serde_json::json;

use super::data::LabeledPrompt;
use super::features::{self, Feature, N_FEATURES};
use super::lexical;
use super::weights::sigmoid;
use super::weights::{LexicalWeights, MAX_LEXICAL_BITS, Target, Thresholds, Weights};
use gaterouter_types::error::{Error, Result};

/// How rows are weighted in the fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Every row counts once.
    Rows,
    /// Each row counts `1/sqrt(rows of its source)`, so one big subject
    /// (e.g. 1,500 law questions) does not dictate the weights for all others.
    #[default]
    SqrtSource,
}

/// Options of [`fit`].
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// What the score should estimate.
    pub target: Target,
    /// Strength of the L2 penalty pulling the weights toward `prior` (per unit of mean loss).
    pub l2: f64,
    /// Row weighting.
    pub balance: Balance,
    /// Centre of the penalty; features the data does not exercise keep these weights.
    pub prior: Weights,
    /// Share of the training prompts below the `standard` threshold (tier light).
    pub light_share: f64,
    /// Share of the training prompts at or above the `heavy` threshold (tier heavy).
    pub heavy_share: f64,
    /// Features kept at their prior weight (not fitted), e.g. ones the data cannot inform.
    pub frozen: Vec<Feature>,
    /// Give every training source its own intercept while fitting (see [`fit`]).
    pub per_source_intercepts: bool,
    /// Newton iterations at most.
    pub max_iter: usize,
    /// Free text stored in the weights file (which data, which split, which command).
    pub description: String,
    /// Also fit hashed word n-gram weights with `2^bits` buckets on top of the
    /// structural model (see [`crate::lexical`]); `None` fits the structural
    /// features only. On the bundled data they help on prompts of subjects the fit saw
    /// (+0.01 APGR) but not on unseen subjects (bench/RESULTS.md), so it is off by
    /// default; refitting on a deployment's own traffic is the case it is for.
    pub lexical_bits: Option<u8>,
    /// L2 penalty on the n-gram weights (per unit of mean loss).
    pub lexical_l2: f64,
    /// Full-batch Adam iterations of the n-gram fit.
    pub lexical_iters: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            target: Target::WeakFails,
            l2: 0.01,
            balance: Balance::SqrtSource,
            prior: Weights::prior(),
            light_share: 0.4,
            heavy_share: 0.3,
            frozen: Vec::new(),
            per_source_intercepts: true,
            max_iter: 50,
            description: String::new(),
            lexical_bits: None,
            lexical_l2: 1e-3,
            lexical_iters: 200,
        }
    }
}

fn bad(message: String) -> Error {
    Error::InvalidRequest {
        field: Some("calibration".into()),
        message,
    }
}

/// The per-row label for a target.
fn label(target: Target, weak: f64, strong: f64) -> f64 {
    match target {
        Target::Benefit => (strong - weak).clamp(0.0, 1.0),
        Target::WeakFails => 1.0 - weak,
    }
}

/// Fit weights and thresholds on labeled prompts.
pub fn fit(prompts: &[LabeledPrompt], opts: &FitOptions) -> Result<Weights> {
    if prompts.is_empty() {
        return Err(bad(
            "no prompts to fit on: give a JSONL file of labeled prompts".into(),
        ));
    }
    if !(opts.l2.is_finite() && opts.l2 > 0.0) {
        return Err(bad(format!("l2 = {} must be a positive number", opts.l2)));
    }
    let shares_ok = (0.0..=1.0).contains(&opts.light_share)
        && (0.0..=1.0).contains(&opts.heavy_share)
        && opts.light_share + opts.heavy_share <= 1.0;
    if !shares_ok {
        return Err(bad(format!(
            "light_share {} and heavy_share {} must be in [0, 1] and sum to at most 1",
            opts.light_share, opts.heavy_share
        )));
    }
    let mut per_source: BTreeMap<&str, usize> = BTreeMap::new();
    for p in prompts {
        *per_source.entry(p.source.as_str()).or_default() += 1;
    }
    let mut xs = Vec::with_capacity(prompts.len());
    let mut ys = Vec::with_capacity(prompts.len());
    let mut ws = Vec::with_capacity(prompts.len());
    for p in prompts {
        let (w, s) = p.labels()?;
        xs.push(features::extract(&p.request).norm);
        ys.push(label(opts.target, w, s));
        ws.push(match opts.balance {
            Balance::Rows => 1.0,
            Balance::SqrtSource => {
                1.0 / (per_source.get(p.source.as_str()).copied().unwrap_or(1) as f64).sqrt()
            }
        });
    }
    let wsum: f64 = ws.iter().sum();
    for w in &mut ws {
        *w /= wsum;
    }

    // Per-source intercepts absorb how hard each training subject is on average, so the
    // shared feature weights learn what makes a prompt harder than its neighbours —
    // the part that carries over to subjects the fit never saw.
    let (groups, n_groups) = if opts.per_source_intercepts {
        let index: BTreeMap<&str, usize> = per_source
            .keys()
            .enumerate()
            .map(|(i, s)| (*s, i))
            .collect();
        (
            prompts
                .iter()
                .map(|p| index.get(p.source.as_str()).copied().unwrap_or(0))
                .collect(),
            index.len(),
        )
    } else {
        (vec![0; prompts.len()], 1)
    };
    let mut frozen = [false; N_FEATURES];
    for f in &opts.frozen {
        frozen[*f as usize] = true;
    }
    let problem = Problem {
        xs: &xs,
        ys: &ys,
        ws: &ws,
        groups: &groups,
        n_groups,
        prior: &opts.prior,
        l2: opts.l2,
        frozen,
    };
    let (theta, obj, iterations) = problem.newton(opts.max_iter)?;
    let mut feature_w = [0.0; N_FEATURES];
    feature_w.copy_from_slice(&theta[n_groups..]);
    // One global intercept for unseen prompts: refit it with the feature weights fixed.
    let bias = if n_groups == 1 {
        theta[0]
    } else {
        let zs: Vec<f64> = xs
            .iter()
            .map(|x| feature_w.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect();
        let one = vec![0; xs.len()];
        let only_bias = Problem {
            xs: &xs,
            ys: &ys,
            ws: &ws,
            groups: &one,
            n_groups: 1,
            prior: &opts.prior,
            l2: opts.l2,
            frozen,
        };
        only_bias.fit_bias(&zs)
    };
    if !bias.is_finite() || feature_w.iter().any(|v| !v.is_finite()) {
        return Err(bad("the fit diverged: raise l2".into()));
    }

    let mut weights = opts.prior.clone();
    weights.link = super::weights::Link::Logistic;
    weights.bias = bias;
    weights.weights = feature_w;
    weights.target = opts.target;
    weights.description = opts.description.clone();
    let mut logits: Vec<f64> = xs
        .iter()
        .map(|x| bias + feature_w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>())
        .collect();
    weights.lexical = None;
    if let Some(bits) = opts.lexical_bits {
        if bits == 0 || bits > MAX_LEXICAL_BITS {
            return Err(bad(format!(
                "lexical_bits = {bits} must be in 1..={MAX_LEXICAL_BITS}"
            )));
        }
        if !(opts.lexical_l2.is_finite() && opts.lexical_l2 > 0.0) {
            return Err(bad(format!(
                "lexical_l2 = {} must be a positive number",
                opts.lexical_l2
            )));
        }
        let rows: Vec<Vec<(u32, f32)>> = prompts
            .iter()
            .map(|p| lexical::sparse_terms(&p.request, bits))
            .collect();
        let (shift, lex) = fit_lexical(
            &rows,
            &logits,
            &ys,
            &ws,
            bits,
            opts.lexical_l2,
            opts.lexical_iters,
        );
        if !shift.is_finite() || lex.iter().any(|v| !v.is_finite()) {
            return Err(bad("the n-gram fit diverged: raise lexical_l2".into()));
        }
        weights.bias += shift;
        let lex = LexicalWeights {
            bits,
            salt: 0,
            weights: lex,
            binary: false,
        };
        // Score what the file will hold: the quantized weights.
        let lex = Weights {
            lexical: Some(lex),
            ..Weights::prior()
        };
        let lex = Weights::from_json(&lex.to_json())?.lexical;
        if let Some(l) = &lex {
            for (z, p) in logits.iter_mut().zip(prompts) {
                *z += shift + lexical::lexical_logit(&p.request, l.hashing(), &l.weights);
            }
        }
        weights.lexical = lex;
    }
    // Thresholds at the training scores' quantiles.
    let mut scores: Vec<f64> = logits.iter().map(|z| sigmoid(*z)).collect();
    scores.sort_by(f64::total_cmp);
    let q = |share: f64| {
        let i = ((share * scores.len() as f64).round() as usize).min(scores.len() - 1);
        scores[i]
    };
    let standard = q(opts.light_share);
    let heavy = q(1.0 - opts.heavy_share).max(standard);
    weights.thresholds = Thresholds { standard, heavy };
    weights.fit = json!({
        "method": "L2 logistic regression (Newton), centred on the hand-set prior",
        "target": opts.target,
        "l2": opts.l2,
        "balance": format!("{:?}", opts.balance),
        "per_source_intercepts": opts.per_source_intercepts,
        "frozen": opts.frozen.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "rows": prompts.len(),
        "iterations": iterations,
        "objective": obj,
        "light_share": opts.light_share,
        "heavy_share": opts.heavy_share,
        "sources": per_source.keys().collect::<Vec<_>>(),
        "lexical": opts.lexical_bits.map(|bits| json!({
            "method": "hashed word unigrams+bigrams, L2 logistic regression on top of the structural logit (full-batch Adam), int8-quantized",
            "bits": bits,
            "l2": opts.lexical_l2,
            "iterations": opts.lexical_iters,
        })),
    });
    weights.validate("fitted weights")?;
    Ok(weights)
}

/// Estimated prompt tokens below which a plain request is `light` under the builtin weights.
pub const BUILTIN_LIGHT_BELOW_TOKENS: f64 = 50.0;
/// Estimated prompt tokens from which a plain request is `heavy` under the builtin weights.
pub const BUILTIN_HEAVY_FROM_TOKENS: f64 = 500.0;

/// Weight of `tokens` (log length) in the builtin weights: the slope of a two-feature
/// logistic fit on the whole dev file (log length + word problem, target benefit), fixed.
pub const BUILTIN_TOKENS_WEIGHT: f64 = 2.24;

/// The options of the builtin weights: a monotone length rule plus one structural cue.
/// The `tokens` weight is fixed at [`BUILTIN_TOKENS_WEIGHT`]; only the intercept and
/// `word_problem` (a question with three or more numbers, not multiple choice) are fitted, target `benefit` (P(strong model helps)), every row
/// counted once, no per-source intercepts. Every other feature is frozen at 0 except
/// conversation depth and tools (0.5 each: the labeled data has neither, so they keep a
/// hand-set weight; they only move multi-turn and tool requests up). Richer fits
/// (lexical, all 18 features) beat this on subjects they saw but not on unseen ones
/// (bench/RESULTS.md), so the default stays this small.
pub fn builtin_options() -> FitOptions {
    let mut prior = Weights::prior();
    prior.weights = [0.0; N_FEATURES];
    // The length slope is fixed (not fitted): the default stays a monotone length rule on
    // every split, and only the word-problem bump and the intercept are fitted.
    prior.weights[Feature::Tokens as usize] = BUILTIN_TOKENS_WEIGHT;
    prior.weights[Feature::Depth as usize] = 0.5;
    prior.weights[Feature::Tools as usize] = 0.5;
    prior.bias = -2.5;
    prior.target = Target::Benefit;
    FitOptions {
        target: Target::Benefit,
        l2: 1e-4,
        balance: Balance::Rows,
        frozen: Feature::ALL
            .iter()
            .copied()
            .filter(|f| *f != Feature::WordProblem)
            .collect(),
        prior,
        per_source_intercepts: false,
        ..FitOptions::default()
    }
}

/// Fit the builtin weights ([`builtin_options`]) and set its thresholds by prompt size:
/// a plain request (no other cue) under [`BUILTIN_LIGHT_BELOW_TOKENS`] estimated tokens
/// is light, from [`BUILTIN_HEAVY_FROM_TOKENS`] heavy; cues (a word problem, depth,
/// tools) move a request up from there.
pub fn fit_builtin(prompts: &[LabeledPrompt], description: &str) -> Result<Weights> {
    let mut o = builtin_options();
    o.description = description.to_owned();
    let mut w = fit(prompts, &o)?;
    let at = |tokens: f64| {
        sigmoid(w.bias + w.weights[Feature::Tokens as usize] * (1.0 + tokens).ln() / 4097f64.ln())
    };
    w.thresholds = Thresholds {
        standard: at(BUILTIN_LIGHT_BELOW_TOKENS),
        heavy: at(BUILTIN_HEAVY_FROM_TOKENS),
    };
    if let Some(f) = w.fit.as_object_mut() {
        f.insert("thresholds".into(), json!(format!("a plain request is light below {BUILTIN_LIGHT_BELOW_TOKENS} estimated tokens, heavy from {BUILTIN_HEAVY_FROM_TOKENS}")));
        f.remove("sources");
    }
    w.validate("builtin weights")?;
    Ok(w)
}

/// Fit n-gram weights `v` and an intercept shift on top of fixed per-row logits `base`:
/// minimizes `Σ w_i·logloss(base_i + shift + v·x_i) + l2/2·|v|²` by full-batch Adam with
/// a fixed number of steps (deterministic; the problem is convex, and the penalty keeps
/// the buckets that rarely occur near zero). `ws` must sum to 1.
fn fit_lexical(
    rows: &[Vec<(u32, f32)>],
    base: &[f64],
    ys: &[f64],
    ws: &[f64],
    bits: u8,
    l2: f64,
    iters: usize,
) -> (f64, Vec<f32>) {
    const LR: f64 = 0.05;
    const B1: f64 = 0.9;
    const B2: f64 = 0.999;
    let nb = 1usize << bits;
    // theta[0] = shift, theta[1..] = bucket weights
    let mut theta = vec![0.0f64; nb + 1];
    let mut m = vec![0.0f64; nb + 1];
    let mut v = vec![0.0f64; nb + 1];
    let mut g = vec![0.0f64; nb + 1];
    for it in 1..=iters {
        g.iter_mut().for_each(|x| *x = 0.0);
        for (i, row) in rows.iter().enumerate() {
            let z = base[i]
                + theta[0]
                + row
                    .iter()
                    .map(|(j, x)| theta[1 + *j as usize] * f64::from(*x))
                    .sum::<f64>();
            let gi = ws[i] * (sigmoid(z) - ys[i]);
            g[0] += gi;
            for (j, x) in row {
                g[1 + *j as usize] += gi * f64::from(*x);
            }
        }
        for j in 1..=nb {
            g[j] += l2 * theta[j];
        }
        let it = i32::try_from(it).unwrap_or(i32::MAX);
        let (c1, c2) = (1.0 - B1.powi(it), 1.0 - B2.powi(it));
        for k in 0..=nb {
            m[k] = B1 * m[k] + (1.0 - B1) * g[k];
            v[k] = B2 * v[k] + (1.0 - B2) * g[k] * g[k];
            theta[k] -= LR * (m[k] / c1) / ((v[k] / c2).sqrt() + 1e-8);
        }
    }
    (theta[0], theta[1..].iter().map(|x| *x as f32).collect())
}

/// The penalized, weighted logistic regression problem.
struct Problem<'a> {
    xs: &'a [[f64; N_FEATURES]],
    ys: &'a [f64],
    ws: &'a [f64],
    /// Intercept index of each row (`0..n_groups`).
    groups: &'a [usize],
    n_groups: usize,
    prior: &'a Weights,
    l2: f64,
    frozen: [bool; N_FEATURES],
}

/// Intercepts are nearly free; this tiny pull keeps a subject whose labels are all 0
/// (or all 1) from sending its intercept to infinity.
const INTERCEPT_L2: f64 = 1e-6;

fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

impl Problem<'_> {
    fn z(&self, theta: &[f64], i: usize) -> f64 {
        theta[self.groups[i]]
            + theta[self.n_groups..]
                .iter()
                .zip(&self.xs[i])
                .map(|(a, b)| a * b)
                .sum::<f64>()
    }

    fn objective(&self, theta: &[f64]) -> f64 {
        let mut loss = 0.0;
        for i in 0..self.xs.len() {
            let z = self.z(theta, i);
            loss += self.ws[i] * (softplus(z) - self.ys[i] * z);
        }
        let g = self.n_groups;
        let pen: f64 = (0..N_FEATURES)
            .map(|j| (theta[g + j] - self.prior.weights[j]).powi(2))
            .sum::<f64>()
            * self.l2
            + (0..g)
                .map(|k| (theta[k] - self.prior.bias).powi(2))
                .sum::<f64>()
                * INTERCEPT_L2;
        loss + 0.5 * pen
    }

    /// Newton's method with backtracking; returns (parameters, objective, iterations).
    fn newton(&self, max_iter: usize) -> Result<(Vec<f64>, f64, usize)> {
        let g = self.n_groups;
        let d = g + N_FEATURES;
        let mut theta = vec![self.prior.bias; g];
        theta.extend_from_slice(&self.prior.weights);
        let mut obj = self.objective(&theta);
        let mut iterations = 0;
        for _ in 0..max_iter {
            iterations += 1;
            let mut grad = vec![0.0; d];
            let mut hess = vec![0.0; d * d];
            for i in 0..self.xs.len() {
                let p = sigmoid(self.z(&theta, i));
                let gi = self.ws[i] * (p - self.ys[i]);
                let hi = self.ws[i] * p * (1.0 - p);
                let k = self.groups[i];
                let x = &self.xs[i];
                grad[k] += gi;
                hess[k * d + k] += hi;
                for a in 0..N_FEATURES {
                    grad[g + a] += gi * x[a];
                    hess[k * d + g + a] += hi * x[a];
                    for b in a..N_FEATURES {
                        hess[(g + a) * d + g + b] += hi * x[a] * x[b];
                    }
                }
            }
            for a in 0..d {
                for b in 0..a {
                    hess[a * d + b] = hess[b * d + a];
                }
            }
            for k in 0..g {
                grad[k] += INTERCEPT_L2 * (theta[k] - self.prior.bias);
                hess[k * d + k] += INTERCEPT_L2;
            }
            for j in 0..N_FEATURES {
                grad[g + j] += self.l2 * (theta[g + j] - self.prior.weights[j]);
                hess[(g + j) * d + g + j] += self.l2;
            }
            // A frozen weight gets a unit row/column and zero gradient: its step is 0.
            for j in (0..N_FEATURES).filter(|j| self.frozen[*j]) {
                let c = g + j;
                for k in 0..d {
                    hess[c * d + k] = 0.0;
                    hess[k * d + c] = 0.0;
                }
                hess[c * d + c] = 1.0;
                grad[c] = 0.0;
            }
            let step = solve(&hess, &grad, d).ok_or_else(|| {
                bad("the fit's Hessian is singular: add more varied prompts or raise l2".into())
            })?;
            // Backtracking line search keeps every step a descent step.
            let mut t = 1.0;
            let mut improved = false;
            for _ in 0..30 {
                let cand: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a - t * s).collect();
                let c = self.objective(&cand);
                if c <= obj {
                    improved = obj - c > 1e-13;
                    theta = cand;
                    obj = c;
                    break;
                }
                t *= 0.5;
            }
            if !improved {
                break;
            }
        }
        Ok((theta, obj, iterations))
    }

    /// The single intercept minimizing the loss given fixed per-row offsets `zs`.
    fn fit_bias(&self, zs: &[f64]) -> f64 {
        let mut b = self.prior.bias;
        for _ in 0..100 {
            let (mut gr, mut h) = (INTERCEPT_L2 * (b - self.prior.bias), INTERCEPT_L2);
            for ((z, w), y) in zs.iter().zip(self.ws).zip(self.ys) {
                let p = sigmoid(b + z);
                gr += w * (p - y);
                h += w * p * (1.0 - p);
            }
            let step = gr / h;
            b -= step.clamp(-5.0, 5.0);
            if step.abs() < 1e-12 {
                break;
            }
        }
        b
    }
}

/// Solve `a x = b` for a symmetric positive-definite `d x d` matrix `a` (row-major,
/// Cholesky); None if it is not positive definite.
fn solve(a: &[f64], b: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = a[i * d + j] - (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum::<f64>();
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    let mut y = vec![0.0; d];
    for i in 0..d {
        y[i] = (b[i] - (0..i).map(|k| l[i * d + k] * y[k]).sum::<f64>()) / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        x[i] = (y[i] - (i + 1..d).map(|k| l[k * d + i] * x[k]).sum::<f64>()) / l[i * d + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Feature;
    use crate::scorer::Scorer;
    use gaterouter_types::types::{ChatRequest, Message};

    fn lp(i: usize, text: &str, weak: f64, strong: f64) -> LabeledPrompt {
        LabeledPrompt {
            id: i.to_string(),
            source: format!("s{}", i % 3),
            request: ChatRequest::new("auto", vec![Message::user(text)]),
            weak_model: None,
            strong_model: None,
            weak_score: Some(weak),
            strong_score: Some(strong),
            scores: Default::default(),
        }
    }

    #[test]
    fn solve_matches_hand_example() {
        let x = solve(&[4.0, 2.0, 2.0, 3.0], &[2.0, 1.0], 2).expect("spd");
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(solve(&[0.0, 0.0, 0.0, 1.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn learns_a_planted_signal_and_is_deterministic() {
        // Prompts with reasoning cues need the strong model; plain ones do not.
        let mut ps = Vec::new();
        for i in 0..200 {
            if i % 2 == 0 {
                ps.push(lp(
                    i,
                    "Prove the claim and derive the bound step by step",
                    0.0,
                    1.0,
                ));
            } else {
                ps.push(lp(i, "Say hello to my friend", 1.0, 1.0));
            }
        }
        let opts = FitOptions::default();
        let w = fit(&ps, &opts).expect("fit");
        assert!(
            w.weights[Feature::Reasoning as usize]
                > Weights::prior().weights[Feature::Reasoning as usize]
        );
        let s = Scorer::new(w.clone());
        let hard = s.score_only(&ps[0].request);
        let easy = s.score_only(&ps[1].request);
        assert!(hard > 0.8 && easy < 0.2, "{hard} {easy}");
        assert_eq!(fit(&ps, &opts).expect("fit again").weights, w.weights);
        // Tools never vary here, so their weight stays at the prior.
        assert!(
            (w.weights[Feature::Tools as usize]
                - Weights::prior().weights[Feature::Tools as usize])
                .abs()
                < 1e-9
        );
        assert!(w.thresholds.standard <= w.thresholds.heavy);
    }

    #[test]
    fn lexical_fit_learns_words_the_features_miss() {
        // Same shape, different topic words: only the words tell them apart.
        let mut ps = Vec::new();
        for i in 0..120 {
            if i % 2 == 0 {
                ps.push(lp(
                    i,
                    &format!("Which tort doctrine applies to case {i}?"),
                    0.0,
                    1.0,
                ));
            } else {
                ps.push(lp(
                    i,
                    &format!("Which river flows through city {i}?"),
                    1.0,
                    1.0,
                ));
            }
        }
        let base = fit(&ps, &FitOptions::default()).expect("fit");
        assert!(base.lexical.is_none());
        let opts = FitOptions {
            lexical_bits: Some(10),
            ..FitOptions::default()
        };
        let w = fit(&ps, &opts).expect("fit lexical");
        let s = Scorer::new(w.clone());
        let hard = s.score_only(&ps[0].request);
        let easy = s.score_only(&ps[1].request);
        assert!(hard > 0.7 && easy < 0.3, "{hard} {easy}");
        let unseen = s.score_only(&ChatRequest::new(
            "auto",
            vec![Message::user("Which tort doctrine applies to case 9999?")],
        ));
        assert!(unseen > 0.7, "{unseen}");
        assert_eq!(
            fit(&ps, &opts).expect("again").lexical,
            w.lexical,
            "deterministic"
        );
        // the file round-trips to the same scores
        let again = Scorer::from_json(&w.to_json()).expect("parses");
        assert!((again.score_only(&ps[0].request) - hard).abs() < 1e-9);
        assert!(
            fit(
                &ps,
                &FitOptions {
                    lexical_bits: Some(0),
                    ..FitOptions::default()
                }
            )
            .is_err()
        );
        assert!(
            fit(
                &ps,
                &FitOptions {
                    lexical_bits: Some(8),
                    lexical_l2: 0.0,
                    ..FitOptions::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn bad_options_and_data_are_errors() {
        assert!(fit(&[], &FitOptions::default()).is_err());
        let ps = vec![lp(0, "a", 0.0, 1.0)];
        assert!(
            fit(
                &ps,
                &FitOptions {
                    l2: 0.0,
                    ..FitOptions::default()
                }
            )
            .is_err()
        );
        assert!(
            fit(
                &ps,
                &FitOptions {
                    light_share: 0.8,
                    heavy_share: 0.5,
                    ..FitOptions::default()
                }
            )
            .is_err()
        );
        let mut unl = lp(0, "a", 0.0, 1.0);
        unl.weak_score = None;
        assert!(fit(&[unl], &FitOptions::default()).is_err());
    }
}
