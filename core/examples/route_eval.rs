//! Calibrate and evaluate the router on labeled prompts (see bench/route_eval.sh).
//!
//! ```text
//! cargo run -p gaterouter --release --example route_eval -- [--data tests/data/routing/dev.jsonl]
//!     [--l2 0.01] [--target benefit|weak_fails] [--balance rows|sqrt_source]
//!     [--lexical BITS] [--lexical-l2 0.001] [--write-weights core/data/router_weights.json]
//! ```
//! Prints markdown tables: held-out figures on eight subject splits (seeds 1-8, half of
//! the rows' subjects held out) and leave-one-family-out, each against the random and
//! length-only routers (each split: fit on its train part, report on its test part), and
//! beside them two ceilings on the same test part: the subject oracle (knows each test
//! subject's true mean benefit) and the per-prompt oracle. Three row splits (same
//! subjects on both sides) follow for contrast: they are not generalization figures.
//! `--write-weights PATH` then fits on ALL prompts with the same options and writes the
//! weights file (the builtin one is produced this way).

use gaterouter::routing::calibrate::{self, Balance, FitOptions};
use gaterouter::routing::eval::{self, Comparison};
use gaterouter::routing::{LabeledPrompt, Scorer, Target, load_jsonl};

const TEST_FRACTION: f64 = 0.5;
/// Subject splits (seeds 1..=SEEDS); more than three because one split's figure moves by ±0.04.
const SEEDS: u64 = 8;
/// Row splits (same subjects in train and test), for contrast.
const ROW_SEEDS: u64 = 3;

fn main() {
    if let Err(e) = run() {
        eprintln!("route_eval: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut data = "tests/data/routing/dev.jsonl".to_owned();
    let mut opts = FitOptions::default();
    let mut write = None;
    let mut diag = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = val()?,
            "--l2" => opts.l2 = val()?.parse()?,
            "--target" => {
                opts.target = match val()?.as_str() {
                    "benefit" => Target::Benefit,
                    "weak_fails" => Target::WeakFails,
                    t => return Err(format!("unknown target {t}: use benefit or weak_fails").into()),
                }
            }
            "--balance" => {
                opts.balance = match val()?.as_str() {
                    "rows" => Balance::Rows,
                    "sqrt_source" => Balance::SqrtSource,
                    b => return Err(format!("unknown balance {b}: use rows or sqrt_source").into()),
                }
            }
            "--write-weights" => write = Some(val()?),
            "--lexical" => opts.lexical_bits = Some(val()?.parse()?),
            "--lexical-l2" => opts.lexical_l2 = val()?.parse()?,
            "--diag" => diag = true,
            "--no-source-intercepts" => opts.per_source_intercepts = false,
            "--freeze" => {
                for name in val()?.split(',') {
                    let f = gaterouter::routing::Feature::from_name(name).ok_or_else(|| format!("unknown feature {name}"))?;
                    opts.frozen.push(f);
                }
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let prompts = load_jsonl(&data)?;
    if diag {
        return diagnose(&prompts, &opts);
    }
    println!(
        "data: {data} ({} prompts), l2={}, target={:?}, balance={:?}, per-source intercepts={}, frozen={:?}, lexical bits={:?} (l2 {})\n",
        prompts.len(),
        opts.l2,
        opts.target,
        opts.balance,
        opts.per_source_intercepts,
        opts.frozen,
        opts.lexical_bits,
        opts.lexical_l2
    );
    header();
    let mut sums = [0.0f64; 6];
    for seed in 1..=SEEDS {
        let (train, test) = eval::split_by_source(&prompts, seed, TEST_FRACTION);
        let c = fit_and_compare(&train, &test, &opts)?;
        let ceil = eval::ceilings(&test)?;
        for (acc, v) in sums.iter_mut().zip([
            c.router.apgr,
            c.length.apgr,
            ceil.subject_oracle.apgr,
            c.router.share_for_95pct_quality,
            c.length.share_for_95pct_quality,
            ceil.subject_oracle.share_for_95pct_quality,
        ]) {
            *acc += v / SEEDS as f64;
        }
        row(&format!("subjects, seed {seed} ({} sources)", count_sources(&test)), &c, &ceil);
    }
    for fam in ["gsm8k", "mmlu", "mt_bench"] {
        let (train, test) = eval::split_family(&prompts, fam);
        let c = fit_and_compare(&train, &test, &opts)?;
        row(&format!("leave out {fam}"), &c, &eval::ceilings(&test)?);
    }
    let mut row_sums = [0.0f64; 3];
    for seed in 1..=ROW_SEEDS {
        let (train, test) = eval::split_by_row(&prompts, seed, TEST_FRACTION);
        let c = fit_and_compare(&train, &test, &opts)?;
        row_sums[0] += c.router.apgr / ROW_SEEDS as f64;
        row_sums[1] += c.length.apgr / ROW_SEEDS as f64;
        row_sums[2] += c.router.share_for_95pct_quality / ROW_SEEDS as f64;
        row(&format!("rows, seed {seed} (seen subjects, new prompts)"), &c, &eval::ceilings(&test)?);
    }
    println!(
        "\nmean over the {ROW_SEEDS} row splits (subjects seen in the fit): APGR router {:.3}, length {:.3} (gain {:+.3}); strong share for 95% quality: router {:.1}%",
        row_sums[0],
        row_sums[1],
        row_sums[0] - row_sums[1],
        100.0 * row_sums[2]
    );
    println!(
        "\nmean over the {SEEDS} subject splits: APGR router {:.3}, length {:.3} (gain {:+.3}), subject oracle {:.3} (gain over length {:+.3}); strong share for 95% quality: router {:.1}%, length {:.1}%, subject oracle {:.1}%",
        sums[0],
        sums[1],
        sums[0] - sums[1],
        sums[2],
        sums[2] - sums[1],
        100.0 * sums[3],
        100.0 * sums[4],
        100.0 * sums[5]
    );

    if let Some(path) = write {
        let mut o = opts.clone();
        o.description = format!(
            "Fitted by `bench/route_eval.sh` on all {} prompts of tests/data/routing/dev.jsonl (held-out figures come from refitting with the same options on subject splits: bench/RESULTS.md).",
            prompts.len()
        );
        let w = calibrate::fit(&prompts, &o)?;
        std::fs::write(&path, w.to_json())?;
        println!("\nwrote {path}");
    }
    let c = eval::compare(&prompts, &Scorer::builtin()?)?;
    println!();
    header();
    row("builtin weights on the whole file (IN-SAMPLE, not a generalization figure)", &c, &eval::ceilings(&prompts)?);
    Ok(())
}

fn header() {
    println!("| part | n | router APGR | length APGR | random APGR | subject-oracle / oracle APGR | router CPT50 / CPT80 | length CPT50 / CPT80 | strong share for 95% quality: router / length / random / subject oracle |");
    println!("|---|---|---|---|---|---|---|---|---|");
}

fn count_sources(ps: &[LabeledPrompt]) -> usize {
    let mut s: Vec<&str> = ps.iter().map(|p| p.source.as_str()).collect();
    s.sort_unstable();
    s.dedup();
    s.len()
}

fn fit_and_compare(train: &[LabeledPrompt], test: &[LabeledPrompt], opts: &FitOptions) -> Result<Comparison, gaterouter::Error> {
    let w = calibrate::fit(train, opts)?;
    eval::compare(test, &Scorer::new(w))
}

fn row(name: &str, c: &Comparison, ceil: &eval::Ceilings) {
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    println!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} / {:.3} | {} / {} | {} / {} | {} / {} / {} / {} |",
        c.router.n,
        c.router.apgr,
        c.length.apgr,
        c.random.apgr,
        ceil.subject_oracle.apgr,
        ceil.oracle.apgr,
        pct(c.router.cpt50),
        pct(c.router.cpt80),
        pct(c.length.cpt50),
        pct(c.length.cpt80),
        pct(c.router.share_for_95pct_quality),
        pct(c.length.share_for_95pct_quality),
        pct(c.random.share_for_95pct_quality),
        pct(ceil.subject_oracle.share_for_95pct_quality),
    );
}

/// Per-feature view: each feature alone as a router on each held-out part, and the fitted weights.
fn diagnose(prompts: &[LabeledPrompt], opts: &FitOptions) -> Result<(), Box<dyn std::error::Error>> {
    use gaterouter::routing::features::{self, FEATURE_NAMES};
    let mut parts = Vec::new();
    for seed in 1..=3u64 {
        parts.push((format!("seed{seed}"), eval::split_by_source(prompts, seed, TEST_FRACTION)));
    }
    for fam in ["gsm8k", "mmlu", "mt_bench"] {
        parts.push((format!("-{fam}"), eval::split_family(prompts, fam)));
    }
    print!("{:16}", "feature");
    for (n, _) in &parts {
        print!(" {n:>9} {:>7}", "w");
    }
    println!();
    let fitted: Vec<_> = parts.iter().map(|(_, (tr, _))| calibrate::fit(tr, opts)).collect::<Result<_, _>>()?;
    for (i, name) in FEATURE_NAMES.iter().enumerate() {
        print!("{name:16}");
        for ((_, (_, test)), w) in parts.iter().zip(&fitted) {
            let r = eval::evaluate(test, &|p| features::extract(&p.request).norm[i])?;
            print!(" {:>9.3} {:>7.2}", r.apgr, w.weights[i]);
        }
        println!();
    }
    Ok(())
}
