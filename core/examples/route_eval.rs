//! Router figures for bench/RESULTS.md (see bench/route_eval.sh).
//!
//! ```text
//! cargo run -p gaterouter --example route_eval -- [--data tests/data/routing/dev.jsonl]
//!     [--default] [--calibrate] [--simulate] [--write-builtin core/routing/data/router_weights.json]
//! ```
//! `--default`: the builtin-weights procedure ([`calibrate::fit_builtin`]: log length + the
//! word-problem cue) refitted on the train part of every held-out split and scored on
//! the test part, beside length-only (characters): group 5-fold by `source` (no source
//! on both sides), and 8 "subject_or_row" splits (MMLU subjects / MT-Bench categories held
//! out whole, GSM8K split by row: the shape of the hidden judging set).
//! `--calibrate`: `route calibrate` (ridge on n-grams + structural features, penalty by
//! 5-fold CV) on a random 10% / 30% of the file, scored on the rest, 3 seeds each, for
//! random row splits and for subject splits (`--holdout source`, `subject_or_row`).
//! `--simulate`: `route simulate` over the first half of a seeded shuffle (explore 0.1,
//! 0.2; explore 0.1 with shadow sampling 0.2, 0.5), final weights scored on the second half.
//! `--production`: the collector's learner (`routing::offpolicy::learn_from_log`) on the
//! first half of a split logged as production logs it (the builtin router, explore 0.1 /
//! 0.2 uniformly among tiers, only the chosen arm's outcome, salted features), scored on the
//! second half with both labels; random and subject_or_row splits. Beside it, the same fit
//! with the promotion rule switched off ("fit, ungated"): what the rule costs or saves; and
//! each run's per-fold advantage ± standard error, from which the decision under another
//! `z` follows.
//! `--reference`: `route calibrate` (its fit, forced) beside the issue's plain reference
//! (ridge of strong − weak on hashed word 1-2-grams + log length, penalty by 5-fold CV) and
//! variants (binary terms, all features, per-model logistic fits), random and
//! subject_or_row splits at 10% / 30%; `REF_VARIANTS=ref,ref_bin,...` picks the variants.
//! Without a section flag, the first three. `--write-builtin PATH` fits the builtin weights on
//! the whole file and writes them.

use gaterouter::routing::calibrate;
use gaterouter::routing::eval::{self, Comparison, EvalReport, Holdout};
use gaterouter::routing::learn::{self, CalibrateOptions, SimulateOptions};
use gaterouter::routing::{LabeledPrompt, Scorer, Weights, load_jsonl};

fn main() {
    if let Err(e) = run() {
        eprintln!("route_eval: {e}");
        std::process::exit(1);
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut data = "tests/data/routing/dev.jsonl".to_owned();
    let (mut default, mut cal, mut sim, mut prod) = (false, false, false, false);
    let mut reference = false;
    let mut write = None;
    let mut seeds = 3u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = val()?,
            "--default" => default = true,
            "--calibrate" => cal = true,
            "--simulate" => sim = true,
            "--production" => prod = true,
            "--reference" => reference = true,
            "--seeds" => seeds = val()?.parse()?,
            "--write-builtin" => write = Some(val()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !(default || cal || sim || prod || reference || write.is_some()) {
        (default, cal, sim) = (true, true, true);
    }
    let prompts = load_jsonl(&data)?;
    println!("data: {data} ({} prompts)\n", prompts.len());
    if let Some(path) = write {
        let w = calibrate::fit_builtin(
            &prompts,
            &format!(
                "Builtin weights: `bench/route_eval.sh --write-builtin` (calibrate::fit_builtin) on all {} prompts of tests/data/routing/dev.jsonl: log length + word-problem cue, target P(strong helps); held-out figures in bench/RESULTS.md.",
                prompts.len()
            ),
        )?;
        std::fs::write(&path, w.to_json())?;
        println!("\nwrote {path}");
        let c = eval::compare(&prompts, &Scorer::new(w))?;
        println!(
            "in-sample on the whole file: APGR {:.3} (length-only {:.3})",
            c.router.apgr, c.length.apgr
        );
    }
    if default {
        default_section(&prompts)?;
    }
    if cal {
        calibrate_section(&prompts, seeds)?;
    }
    if sim {
        simulate_section(&prompts, seeds)?;
    }
    if prod {
        production_section(&prompts, seeds)?;
    }
    if reference {
        reference_section(&prompts, seeds)?;
    }
    Ok(())
}

/// How the hashed terms enter a design row.
#[derive(Clone, Copy, Debug)]
enum Terms {
    /// `count / sqrt(terms)` (what the scorer computes).
    Sqrt,
    /// 1 per distinct bucket, divided by sqrt(distinct buckets).
    Binary,
}

/// A model variant of the reference comparison.
#[derive(Clone, Debug)]
struct Variant {
    name: &'static str,
    terms: Terms,
    /// All 18 structural features (else log length only).
    all_features: bool,
    /// Structural columns multiplied by this (penalty on them divided by its square).
    feature_scale: f64,
    /// Penalty chosen by out-of-fold APGR (else by out-of-fold squared error of the gain).
    by_apgr: bool,
    /// Two logistic success models (else one ridge of the gain).
    logistic: bool,
    lambdas: Vec<f64>,
}

fn ref_row(p: &LabeledPrompt, v: &Variant, bits: u8) -> learn::Row {
    use gaterouter::routing::lexical;
    let mut row = lexical::sparse_terms(&p.request, bits);
    if let Terms::Binary = v.terms {
        let k = 1.0 / (row.len().max(1) as f32).sqrt();
        row.iter_mut().for_each(|t| t.1 = k);
    }
    let nb = 1u32 << bits;
    let f = gaterouter::routing::features::extract(&p.request);
    let n = if v.all_features { f.norm.len() } else { 1 };
    for (j, x) in f.norm.iter().take(n).enumerate() {
        if *x != 0.0 {
            row.push((nb + j as u32, (*x * v.feature_scale) as f32));
        }
    }
    row
}

fn logistic_fit(
    rows: &[learn::Row],
    y: &[f64],
    bits: u8,
    lambda: f64,
    warm: Option<&learn::Ridge>,
) -> learn::Ridge {
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    let mean = (y.iter().sum::<f64>() / y.len() as f64).clamp(0.02, 0.98);
    let mut m = warm.cloned().unwrap_or(learn::Ridge {
        bits,
        lambda,
        bias: (mean / (1.0 - mean)).ln(),
        beta: vec![0.0; (1usize << bits) + 18],
    });
    for _ in 0..6 {
        let mut z = Vec::with_capacity(rows.len());
        let mut w = Vec::with_capacity(rows.len());
        for (r, yi) in rows.iter().zip(y) {
            let eta = m.predict(r);
            let p = sig(eta);
            let wi = (p * (1.0 - p)).max(1e-3);
            z.push(eta + (yi - p) / wi);
            w.push(wi);
        }
        m = learn::ridge(rows, &z, &w, bits, lambda, Some(&m));
    }
    m
}

/// Fitted predictor of the gain.
enum Fitted {
    Gain(learn::Ridge),
    Two(learn::Ridge, learn::Ridge),
}

impl Fitted {
    fn predict(&self, r: &[(u32, f32)]) -> f64 {
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        match self {
            Fitted::Gain(m) => m.predict(r),
            Fitted::Two(s, w) => sig(s.predict(r)) - sig(w.predict(r)),
        }
    }
}

fn fit_variant(
    rows: &[learn::Row],
    weak: &[f64],
    strong: &[f64],
    v: &Variant,
    bits: u8,
    lambda: f64,
) -> Fitted {
    if v.logistic {
        Fitted::Two(
            logistic_fit(rows, strong, bits, lambda, None),
            logistic_fit(rows, weak, bits, lambda, None),
        )
    } else {
        let y: Vec<f64> = strong.iter().zip(weak).map(|(s, w)| s - w).collect();
        Fitted::Gain(learn::ridge(
            rows,
            &y,
            &vec![1.0; y.len()],
            bits,
            lambda,
            None,
        ))
    }
}

/// Penalty by 5-fold CV, refit on all; returns the model, the lambda and the CV APGR.
fn cv_variant(
    rows: &[learn::Row],
    weak: &[f64],
    strong: &[f64],
    v: &Variant,
    bits: u8,
    seed: u64,
) -> Result<(Fitted, f64, f64), Box<dyn std::error::Error>> {
    let k = 5;
    let fold = learn::folds(rows.len(), k, seed);
    let mut oof = vec![vec![0.0; rows.len()]; v.lambdas.len()];
    for f in 0..k {
        let tr: Vec<usize> = (0..rows.len()).filter(|i| fold[*i] != f).collect();
        let trr: Vec<learn::Row> = tr.iter().map(|i| rows[*i].clone()).collect();
        let trw: Vec<f64> = tr.iter().map(|i| weak[*i]).collect();
        let trs: Vec<f64> = tr.iter().map(|i| strong[*i]).collect();
        for (li, l) in v.lambdas.iter().enumerate() {
            let m = fit_variant(&trr, &trw, &trs, v, bits, *l);
            for i in (0..rows.len()).filter(|i| fold[*i] == f) {
                oof[li][i] = m.predict(&rows[i]);
            }
        }
    }
    let mut best = (0, f64::NEG_INFINITY, 0.0);
    for (li, o) in oof.iter().enumerate() {
        let apgr = eval::evaluate_scores(o, weak, strong)?.apgr;
        let crit = if v.by_apgr {
            apgr
        } else {
            -o.iter()
                .zip(weak.iter().zip(strong))
                .map(|(p, (w, s))| (s - w - p).powi(2))
                .sum::<f64>()
        };
        if crit > best.1 {
            best = (li, crit, apgr);
        }
    }
    let lambda = v.lambdas[best.0];
    Ok((
        fit_variant(rows, weak, strong, v, bits, lambda),
        lambda,
        best.2,
    ))
}

/// `route calibrate` against the issue's plain reference and variants (`--reference`).
fn reference_section(
    prompts: &[LabeledPrompt],
    seeds: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let bits = learn::DEFAULT_BITS;
    let wide = vec![0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0];
    let only =
        |s: &str| std::env::var("REF_VARIANTS").map_or(true, |v| v.split(',').any(|x| x == s));
    let all: Vec<Variant> = vec![
        Variant {
            name: "ref",
            terms: Terms::Sqrt,
            all_features: false,
            feature_scale: 1.0,
            by_apgr: false,
            logistic: false,
            lambdas: wide.clone(),
        },
        Variant {
            name: "ref_bin",
            terms: Terms::Binary,
            all_features: false,
            feature_scale: 1.0,
            by_apgr: false,
            logistic: false,
            lambdas: wide.clone(),
        },
        Variant {
            name: "ref_apgr",
            terms: Terms::Sqrt,
            all_features: false,
            feature_scale: 1.0,
            by_apgr: true,
            logistic: false,
            lambdas: wide.clone(),
        },
        Variant {
            name: "ours_raw",
            terms: Terms::Sqrt,
            all_features: true,
            feature_scale: 1.0,
            by_apgr: true,
            logistic: false,
            lambdas: learn::DEFAULT_LAMBDAS.to_vec(),
        },
        Variant {
            name: "all_mse",
            terms: Terms::Sqrt,
            all_features: true,
            feature_scale: 1.0,
            by_apgr: false,
            logistic: false,
            lambdas: wide.clone(),
        },
        Variant {
            name: "all_bin_mse",
            terms: Terms::Binary,
            all_features: true,
            feature_scale: 1.0,
            by_apgr: false,
            logistic: false,
            lambdas: wide.clone(),
        },
        Variant {
            name: "all_x3_mse",
            terms: Terms::Sqrt,
            all_features: true,
            feature_scale: 3.0,
            by_apgr: false,
            logistic: false,
            lambdas: wide.clone(),
        },
        Variant {
            name: "all_x10_mse",
            terms: Terms::Sqrt,
            all_features: true,
            feature_scale: 10.0,
            by_apgr: false,
            logistic: false,
            lambdas: wide.clone(),
        },
        Variant {
            name: "logit2",
            terms: Terms::Sqrt,
            all_features: false,
            feature_scale: 1.0,
            by_apgr: false,
            logistic: true,
            lambdas: vec![0.1, 0.3, 1.0, 3.0, 10.0],
        },
    ];
    let variants: Vec<Variant> = all.into_iter().filter(|v| only(v.name)).collect();
    println!(
        "### route calibrate vs the issue's plain reference (test APGR; CV APGR / lambda in brackets)\n"
    );
    let mut head = "| split | length | ours (calibrate) |".to_owned();
    for v in &variants {
        head.push_str(&format!(" {} |", v.name));
    }
    println!("{head}");
    println!("|{}", "---|".repeat(3 + variants.len()));
    for holdout in [Holdout::Random, Holdout::SubjectOrRow] {
        for frac in [0.1, 0.3] {
            let mut acc = vec![0.0; 2 + variants.len()];
            for seed in 1..=seeds {
                let (train, test) = eval::split(prompts, holdout, seed, frac);
                let lab = |ps: &[LabeledPrompt]| -> (Vec<f64>, Vec<f64>) {
                    ps.iter().map(|p| p.labels().unwrap_or((0.0, 0.0))).unzip()
                };
                let (trw, trs) = lab(&train);
                let (tew, tes) = lab(&test);
                let (w, rep) = learn::calibrate(
                    &train,
                    &CalibrateOptions {
                        seed,
                        ..CalibrateOptions::default()
                    },
                )?;
                let c = eval::compare(&test, &Scorer::new(w))?;
                let mut cells = vec![
                    format!("{:.3}", c.length.apgr),
                    format!(
                        "{:.3} ({:.3}/{}/{:?}{})",
                        c.router.apgr,
                        rep.cv_apgr,
                        rep.lambda,
                        rep.features,
                        if rep.forced { "/forced" } else { "" }
                    ),
                ];
                acc[0] += c.length.apgr / seeds as f64;
                acc[1] += c.router.apgr / seeds as f64;
                for (vi, v) in variants.iter().enumerate() {
                    let rows: Vec<learn::Row> = train.iter().map(|p| ref_row(p, v, bits)).collect();
                    let (m, lambda, cv) = cv_variant(&rows, &trw, &trs, v, bits, seed)?;
                    let preds: Vec<f64> = test
                        .iter()
                        .map(|p| m.predict(&ref_row(p, v, bits)))
                        .collect();
                    let r = eval::evaluate_scores(&preds, &tew, &tes)?;
                    acc[2 + vi] += r.apgr / seeds as f64;
                    cells.push(format!("{:.3} ({cv:.3}/{lambda})", r.apgr));
                }
                println!(
                    "| {holdout:?} {:.0}%, seed {seed} | {} |",
                    100.0 * frac,
                    cells.join(" | ")
                );
            }
            println!(
                "| **{holdout:?} {:.0}%, mean of {seeds}** | {} |",
                100.0 * frac,
                acc.iter()
                    .map(|a| format!("**{a:.3}**"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
    }
    println!();
    Ok(())
}

/// The production learning loop replayed: see the module doc (`--production`).
fn production_section(
    prompts: &[LabeledPrompt],
    seeds: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    use gaterouter::routing::Tier;
    use gaterouter::routing::learning::{Learning, features_of, row_of};
    use gaterouter::routing::lexical::Hashing;
    use gaterouter::routing::offpolicy::{LogLearnOptions, LogRows, LoggedCall, learn_from_log};
    println!(
        "### The collector's learner on logged production traffic (first half), scored on the second half\n"
    );
    println!(
        "| run | logged calls | promoted | estimated APGR new / current / length | per-fold advantage ± se | test APGR | fit, ungated | builtin | length APGR | test strong share for 95% Q | length | CPT50 / CPT80 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let builtin = Scorer::builtin()?;
    let h = Hashing {
        bits: learn::DEFAULT_BITS,
        salt: 0x5eed_0f00_9a17,
    };
    for holdout in [Holdout::Random, Holdout::SubjectOrRow] {
        for explore in [0.1, 0.2] {
            let mut acc = [0.0; 3];
            for seed in 1..=seeds {
                let (train, test) = eval::split(prompts, holdout, seed, 0.5);
                let l = Learning {
                    record_features: true,
                    explore,
                    shadow: 0.0,
                    hashing: h,
                    scorer: None,
                    version: None,
                };
                let mut rng = learn::SplitMix::new(seed);
                let mut calls = Vec::with_capacity(train.len());
                let mut rows = LogRows::new(h.bits)?;
                for p in &train {
                    let (weak, strong) = p.labels()?;
                    let mut report = builtin.score(&p.request);
                    let t = l.explore(&mut report, Tier::ALL, [rng.next_f64(), rng.next_f64()]);
                    let went_strong = report.tier == Tier::Heavy;
                    calls.push(LoggedCall {
                        row: rows
                            .push(row_of(&features_of(&p.request, h), h.bits).ok_or("bits")?)?,
                        strong: went_strong,
                        reward: if went_strong { strong } else { weak },
                        propensity: t.propensity,
                        call: calls.len() as u64,
                    });
                }
                let opts = LogLearnOptions {
                    hashing: h,
                    seed,
                    ..LogLearnOptions::default()
                };
                let (rep, w) = learn_from_log(&rows, &calls, builtin.weights(), &opts)?;
                let served = w.unwrap_or_else(|| builtin.weights().clone());
                // The same fit with the promotion rule switched off: what the gate costs or saves.
                let ungated = LogLearnOptions {
                    margin: -1.0,
                    z: -1e9,
                    ..opts.clone()
                };
                let fit_apgr = match learn_from_log(&rows, &calls, builtin.weights(), &ungated)? {
                    (_, Some(w)) => {
                        format!("{:.3}", eval::compare(&test, &Scorer::new(w))?.router.apgr)
                    }
                    (r, None) => format!("- ({})", r.reason),
                };
                let c = eval::compare(&test, &Scorer::new(served))?;
                let b = eval::compare(&test, &builtin)?.router.apgr;
                let f = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.3}"));
                println!(
                    "| {holdout:?}, explore {explore}, seed {seed} | {} ({} heavy) | {} | {} / {} / {} | {} ± {} | **{:.3}** | {fit_apgr} | {b:.3} | {:.3} | {} | {} | {} / {} |",
                    rep.outcomes,
                    rep.strong_outcomes,
                    if rep.promote {
                        "yes"
                    } else {
                        "no (builtin kept)"
                    },
                    f(rep.new_apgr),
                    f(rep.current_apgr),
                    f(rep.length_apgr),
                    f(rep.advantage),
                    f(rep.advantage_se),
                    c.router.apgr,
                    c.length.apgr,
                    pct(c.router.share_for_95pct_quality),
                    pct(c.length.share_for_95pct_quality),
                    pct(c.router.cpt50),
                    pct(c.router.cpt80),
                );
                acc[0] += c.router.apgr / seeds as f64;
                acc[1] += c.length.apgr / seeds as f64;
                acc[2] += b / seeds as f64;
            }
            println!(
                "| **{holdout:?}, explore {explore}, mean of {seeds}** | | | | | **{:.3}** | | {:.3} | {:.3} | | | |",
                acc[0], acc[2], acc[1]
            );
        }
    }
    println!();
    Ok(())
}

/// Group k-fold by `source`: sources ordered by a seeded hash, dealt round-robin to folds.
fn group_kfold(
    prompts: &[LabeledPrompt],
    k: usize,
    seed: u64,
) -> Vec<(Vec<LabeledPrompt>, Vec<LabeledPrompt>)> {
    let mut sources: Vec<&str> = prompts.iter().map(|p| p.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    let order = learn::folds(sources.len(), k, seed);
    (0..k)
        .map(|f| {
            let test_src: Vec<&str> = sources
                .iter()
                .zip(&order)
                .filter(|(_, o)| **o == f)
                .map(|(s, _)| *s)
                .collect();
            prompts
                .iter()
                .cloned()
                .partition(|p| !test_src.contains(&p.source.as_str()))
        })
        .collect()
}

fn default_section(prompts: &[LabeledPrompt]) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "### Default (builtin procedure refitted on each train part) vs length-only, held out\n"
    );
    println!(
        "| split | test n | router APGR | length APGR | router / length strong share for 95% quality | router / length CPT50 |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rows: Vec<(String, Comparison)> = Vec::new();
    for (i, (train, test)) in group_kfold(prompts, 5, 1).into_iter().enumerate() {
        let w = calibrate::fit_builtin(&train, "")?;
        rows.push((
            format!("source 5-fold, fold {}", i + 1),
            eval::compare(&test, &Scorer::new(w))?,
        ));
    }
    for seed in 1..=8 {
        let (train, test) = eval::split(prompts, Holdout::SubjectOrRow, seed, 0.5);
        let w = calibrate::fit_builtin(&train, "")?;
        rows.push((
            format!("subject_or_row, seed {seed}"),
            eval::compare(&test, &Scorer::new(w))?,
        ));
    }
    let mut means = [[0.0; 2]; 2];
    for (name, c) in &rows {
        let k = usize::from(name.starts_with("subject"));
        means[k][0] += c.router.apgr;
        means[k][1] += c.length.apgr;
        println!(
            "| {name} | {} | {:.3} | {:.3} | {} / {} | {} / {} |",
            c.router.n,
            c.router.apgr,
            c.length.apgr,
            pct(c.router.share_for_95pct_quality),
            pct(c.length.share_for_95pct_quality),
            pct(c.router.cpt50),
            pct(c.length.cpt50)
        );
    }
    println!(
        "| **mean, source 5-fold** | | **{:.3}** | **{:.3}** | | |\n| **mean, subject_or_row ×8** | | **{:.3}** | **{:.3}** | | |\n",
        means[0][0] / 5.0,
        means[0][1] / 5.0,
        means[1][0] / 8.0,
        means[1][1] / 8.0
    );
    let c = eval::compare(prompts, &Scorer::builtin()?)?;
    println!(
        "shipped builtin weights on the whole file (in-sample): APGR {:.3}, length-only {:.3}\n",
        c.router.apgr, c.length.apgr
    );
    Ok(())
}

fn line(name: &str, cv: Option<f64>, r: &EvalReport, l: &EvalReport, extra: &str) {
    println!(
        "| {name} | {} | {} | **{:.3}** | {:.3} | **{}** | {} | {} / {} |{extra}",
        r.n,
        cv.map_or("".into(), |x| format!("{x:.3}")),
        r.apgr,
        l.apgr,
        pct(r.share_for_95pct_quality),
        pct(l.share_for_95pct_quality),
        pct(r.cpt50),
        pct(r.cpt80)
    );
}

fn calibrate_section(
    prompts: &[LabeledPrompt],
    seeds: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("### route calibrate on a share of the file, scored on the rest\n");
    println!(
        "| split | test n | CV APGR (inside the train part) | test APGR | length APGR | test strong share for 95% Q | length | CPT50 / CPT80 | CV builtin / length | written, features, penalty |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for holdout in [Holdout::Random, Holdout::SubjectOrRow, Holdout::Source] {
        for frac in [0.1, 0.3] {
            let mut acc = [0.0; 4];
            for seed in 1..=seeds {
                let (train, test) = eval::split(prompts, holdout, seed, frac);
                let (w, rep) = learn::calibrate(
                    &train,
                    &CalibrateOptions {
                        seed,
                        ..CalibrateOptions::default()
                    },
                )?;
                let c = eval::compare(&test, &Scorer::new(w))?;
                line(
                    &format!(
                        "{holdout:?} {:.0}%, seed {seed} (train {})",
                        100.0 * frac,
                        train.len()
                    ),
                    Some(rep.cv_apgr),
                    &c.router,
                    &c.length,
                    &format!(
                        " {:.3} / {:.3} | {:?}, {:?}, λ {} |",
                        rep.cv_builtin_apgr,
                        rep.cv_length_apgr,
                        rep.chosen,
                        rep.features,
                        rep.lambda
                    ),
                );
                for (a, v) in acc.iter_mut().zip([
                    c.router.apgr,
                    c.length.apgr,
                    c.router.share_for_95pct_quality,
                    c.length.share_for_95pct_quality,
                ]) {
                    *a += v / seeds as f64;
                }
            }
            println!(
                "| **{holdout:?} {:.0}%, mean of {seeds}** | | | **{:.3}** | {:.3} | **{}** | {} | | | |",
                100.0 * frac,
                acc[0],
                acc[1],
                pct(acc[2]),
                pct(acc[3])
            );
        }
    }
    println!();
    Ok(())
}

fn simulate_section(
    prompts: &[LabeledPrompt],
    seeds: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "### route simulate over the first half of a shuffle, final weights scored on the second half\n"
    );
    println!(
        "| run | test n | | test APGR | length APGR | test strong share for 95% Q | length | CPT50 / CPT80 | replay: realized quality / strong share / runs (promoted) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let start = Weights::builtin()?;
    // Shadow sampling: a share of calls also reveals the other arm (a second call).
    for (explore, shadow) in [(0.1, 0.0), (0.2, 0.0), (0.1, 0.2), (0.1, 0.5)] {
        let name = if shadow > 0.0 {
            format!("explore {explore}, shadow {shadow}")
        } else {
            format!("explore {explore}")
        };
        let mut acc = [0.0; 4];
        for seed in 1..=seeds {
            let (train, test) = eval::split(prompts, Holdout::Random, seed, 0.5);
            let (rep, w) = gaterouter::routing::offpolicy::replay(
                &train,
                &start,
                &SimulateOptions {
                    explore,
                    seed,
                    shadow,
                    ..SimulateOptions::default()
                },
            )?;
            let c = eval::compare(&test, &Scorer::new(w))?;
            let shadowed = if shadow > 0.0 {
                format!(
                    "; shadowed {} ({} of the calls to the strong model)",
                    pct(rep.shadowed_share),
                    pct(rep.shadow_strong_share)
                )
            } else {
                String::new()
            };
            line(
                &format!("{name}, seed {seed}"),
                None,
                &c.router,
                &c.length,
                &format!(
                    " {:.3} / {} / {} ({}){shadowed} |",
                    rep.realized_quality,
                    pct(rep.strong_share),
                    rep.refits,
                    rep.promotions
                ),
            );
            for (a, v) in acc.iter_mut().zip([
                c.router.apgr,
                c.length.apgr,
                c.router.share_for_95pct_quality,
                c.length.share_for_95pct_quality,
            ]) {
                *a += v / seeds as f64;
            }
        }
        println!(
            "| **{name}, mean of {seeds}** | | | **{:.3}** | {:.3} | **{}** | {} | | |",
            acc[0],
            acc[1],
            pct(acc[2]),
            pct(acc[3])
        );
    }
    println!();
    Ok(())
}
