//! Refit the scorer's weights from labeled prompts: L2-regularized logistic regression
//! over the normalized features, solved by Newton's method (IRLS) in plain Rust.
//! Deterministic: no sampling, fixed iteration order.

use std::collections::BTreeMap;

use serde_json::json;

use super::data::LabeledPrompt;
use super::features::{self, N_FEATURES};
use super::scorer::sigmoid;
use super::weights::{Target, Thresholds, Weights};
use crate::error::{Error, Result};

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
    /// Newton iterations at most.
    pub max_iter: usize,
    /// Free text stored in the weights file (which data, which split, which command).
    pub description: String,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            target: Target::Benefit,
            l2: 0.01,
            balance: Balance::SqrtSource,
            prior: Weights::prior(),
            light_share: 0.4,
            heavy_share: 0.3,
            max_iter: 50,
            description: String::new(),
        }
    }
}

fn bad(message: String) -> Error {
    Error::InvalidRequest { field: Some("calibration".into()), message }
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
        return Err(bad("no prompts to fit on: give a JSONL file of labeled prompts".into()));
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
            Balance::SqrtSource => 1.0 / (per_source.get(p.source.as_str()).copied().unwrap_or(1) as f64).sqrt(),
        });
    }
    let wsum: f64 = ws.iter().sum();
    for w in &mut ws {
        *w /= wsum;
    }

    // Parameters: theta[0] = bias, theta[1..] = feature weights.
    const D: usize = N_FEATURES + 1;
    let mut prior = [0.0; D];
    prior[0] = opts.prior.bias;
    prior[1..].copy_from_slice(&opts.prior.weights);
    let mut theta = prior;
    let row = |x: &[f64; N_FEATURES]| {
        let mut r = [1.0; D];
        r[1..].copy_from_slice(x);
        r
    };
    let objective = |t: &[f64; D]| -> f64 {
        let mut loss = 0.0;
        for ((x, y), w) in xs.iter().zip(&ys).zip(&ws) {
            let z: f64 = row(x).iter().zip(t).map(|(a, b)| a * b).sum();
            // numerically stable log(1 + e^z) - y z
            let softplus = if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
            loss += w * (softplus - y * z);
        }
        let pen: f64 = (1..D).map(|j| (t[j] - prior[j]).powi(2)).sum();
        loss + 0.5 * opts.l2 * pen
    };
    let mut obj = objective(&theta);
    let mut iterations = 0;
    for _ in 0..opts.max_iter {
        iterations += 1;
        let mut grad = [0.0; D];
        let mut hess = [[0.0; D]; D];
        for ((x, y), w) in xs.iter().zip(&ys).zip(&ws) {
            let r = row(x);
            let z: f64 = r.iter().zip(&theta).map(|(a, b)| a * b).sum();
            let p = sigmoid(z);
            let g = w * (p - y);
            let h = w * p * (1.0 - p);
            for a in 0..D {
                grad[a] += g * r[a];
                for b in a..D {
                    hess[a][b] += h * r[a] * r[b];
                }
            }
        }
        for a in 0..D {
            for b in 0..a {
                hess[a][b] = hess[b][a];
            }
        }
        for j in 1..D {
            grad[j] += opts.l2 * (theta[j] - prior[j]);
            hess[j][j] += opts.l2;
        }
        hess[0][0] += 1e-12;
        let step = solve(hess, grad).ok_or_else(|| bad("the fit's Hessian is singular: add more varied prompts or raise l2".into()))?;
        // Backtracking line search keeps every step a descent step.
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..30 {
            let mut cand = theta;
            for j in 0..D {
                cand[j] -= t * step[j];
            }
            let c = objective(&cand);
            if c <= obj {
                let done = obj - c < 1e-12;
                theta = cand;
                obj = c;
                improved = !done;
                break;
            }
            t *= 0.5;
        }
        if !improved {
            break;
        }
    }
    if theta.iter().any(|v| !v.is_finite()) {
        return Err(bad("the fit diverged: raise l2".into()));
    }

    let mut weights = opts.prior.clone();
    weights.bias = theta[0];
    weights.weights.copy_from_slice(&theta[1..]);
    weights.target = opts.target;
    weights.description = opts.description.clone();
    // Thresholds at the training scores' quantiles.
    let scorer_w = weights.clone();
    let mut scores: Vec<f64> = xs
        .iter()
        .map(|x| sigmoid(scorer_w.bias + scorer_w.weights.iter().zip(x).map(|(a, b)| a * b).sum::<f64>()))
        .collect();
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
        "rows": prompts.len(),
        "iterations": iterations,
        "objective": obj,
        "light_share": opts.light_share,
        "heavy_share": opts.heavy_share,
        "sources": per_source.keys().collect::<Vec<_>>(),
    });
    weights.validate("fitted weights")?;
    Ok(weights)
}

/// Solve `a x = b` for a symmetric positive-definite `a` (Cholesky); None if singular.
fn solve<const D: usize>(a: [[f64; D]; D], b: [f64; D]) -> Option<[f64; D]> {
    let mut l = [[0.0; D]; D];
    for i in 0..D {
        for j in 0..=i {
            let s: f64 = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if !(s > 0.0) {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    let mut y = [0.0; D];
    for i in 0..D {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0; D];
    for i in (0..D).rev() {
        x[i] = (y[i] - (i + 1..D).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::features::Feature;
    use crate::routing::scorer::Scorer;
    use crate::types::{ChatRequest, Message};

    fn lp(i: usize, text: &str, weak: f64, strong: f64) -> LabeledPrompt {
        LabeledPrompt {
            id: i.to_string(),
            source: format!("s{}", i % 3),
            request: ChatRequest::new("auto", vec![Message::user(text)]),
            weak_model: None,
            strong_model: None,
            weak_score: Some(weak),
            strong_score: Some(strong),
        }
    }

    #[test]
    fn solve_matches_hand_example() {
        let x = solve([[4.0, 2.0], [2.0, 3.0]], [2.0, 1.0]).expect("spd");
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(solve([[0.0, 0.0], [0.0, 1.0]], [1.0, 1.0]).is_none());
    }

    #[test]
    fn learns_a_planted_signal_and_is_deterministic() {
        // Prompts with reasoning cues need the strong model; plain ones do not.
        let mut ps = Vec::new();
        for i in 0..200 {
            if i % 2 == 0 {
                ps.push(lp(i, "Prove the claim and derive the bound step by step", 0.0, 1.0));
            } else {
                ps.push(lp(i, "Say hello to my friend", 1.0, 1.0));
            }
        }
        let opts = FitOptions::default();
        let w = fit(&ps, &opts).expect("fit");
        assert!(w.weights[Feature::Reasoning as usize] > Weights::prior().weights[Feature::Reasoning as usize]);
        let s = Scorer::new(w.clone());
        let hard = s.score_only(&ps[0].request);
        let easy = s.score_only(&ps[1].request);
        assert!(hard > 0.8 && easy < 0.2, "{hard} {easy}");
        assert_eq!(fit(&ps, &opts).expect("fit again").weights, w.weights);
        // Tools never vary here, so their weight stays at the prior.
        assert!((w.weights[Feature::Tools as usize] - Weights::prior().weights[Feature::Tools as usize]).abs() < 1e-9);
        assert!(w.thresholds.standard <= w.thresholds.heavy);
    }

    #[test]
    fn bad_options_and_data_are_errors() {
        assert!(fit(&[], &FitOptions::default()).is_err());
        let ps = vec![lp(0, "a", 0.0, 1.0)];
        assert!(fit(&ps, &FitOptions { l2: 0.0, ..FitOptions::default() }).is_err());
        assert!(fit(&ps, &FitOptions { light_share: 0.8, heavy_share: 0.5, ..FitOptions::default() }).is_err());
        let mut unl = lp(0, "a", 0.0, 1.0);
        unl.weak_score = None;
        assert!(fit(&[unl], &FitOptions::default()).is_err());
    }
}
