//! `gaterouter route "prompt"` (explain a decision), `route score IN.jsonl`,
//! `route eval IN.jsonl`, `route calibrate IN.jsonl --out W.json`.

use std::io::BufReader;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use gaterouter::routing::calibrate::{self, FitOptions};
use gaterouter::routing::eval::{self, EvalReport};
use gaterouter::routing::{Scorer, load_jsonl, score_jsonl};
use gaterouter::{ChatRequest, Client, Config, Error, Message};

/// Arguments of `route`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RouteArgs {
    #[command(subcommand)]
    pub action: Option<RouteAction>,
    /// The prompt to route (explains the decision without calling anything).
    pub prompt: Option<String>,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `route` subcommands.
#[derive(Debug, Subcommand)]
pub enum RouteAction {
    /// Print `{"id","score","tier"}` for each prompt of a JSONL file (labels optional).
    Score {
        /// JSONL file in the routing data format.
        file: PathBuf,
        /// Scorer weights file (default: the built-in weights).
        #[arg(long)]
        weights: Option<PathBuf>,
    },
    /// Router metrics (APGR, CPT, strong share for 95% quality) on a labeled JSONL file,
    /// beside a random and a length-only router.
    Eval {
        /// Labeled JSONL file.
        file: PathBuf,
        /// Scorer weights file (default: the built-in weights).
        #[arg(long)]
        weights: Option<PathBuf>,
    },
    /// Fit scorer weights on a labeled JSONL file and write them.
    Calibrate {
        /// Labeled JSONL file.
        file: PathBuf,
        /// Where to write the weights (use with `[routing] scorer_weights_file`).
        #[arg(long)]
        out: PathBuf,
    },
}

fn scorer(weights: Option<&PathBuf>) -> Result<Scorer, Error> {
    match weights {
        Some(p) => Scorer::from_file(p),
        None => Scorer::builtin(),
    }
}

/// Run `route`.
pub fn run(config: Config, args: RouteArgs) -> Result<(), Error> {
    match (args.action, args.prompt) {
        (Some(RouteAction::Score { file, weights }), _) => {
            let f = std::fs::File::open(&file).map_err(|e| Error::InvalidRequest { field: Some("file".into()), message: format!("cannot open {}: {e}", file.display()) })?;
            let n = score_jsonl(&scorer(weights.as_ref())?, BufReader::new(f), &file.display().to_string(), std::io::stdout().lock())?;
            eprintln!("scored {n} prompts");
            Ok(())
        }
        (Some(RouteAction::Eval { file, weights }), _) => {
            let prompts = load_jsonl(&file)?;
            let c = eval::compare(&prompts, &scorer(weights.as_ref())?)?;
            println!("{} prompts; always-weak quality {:.3}, always-strong {:.3}", c.router.n, c.router.quality_weak, c.router.quality_strong);
            println!("{:<12} {:>6} {:>7} {:>7} {:>18}", "router", "APGR", "CPT50", "CPT80", "strong for 95% Q");
            for (name, r) in [("gaterouter", &c.router), ("length-only", &c.length), ("random", &c.random)] {
                print_row(name, r);
            }
            Ok(())
        }
        (Some(RouteAction::Calibrate { file, out }), _) => {
            let prompts = load_jsonl(&file)?;
            let w = calibrate::fit(&prompts, &FitOptions::default())?;
            std::fs::write(&out, w.to_json()).map_err(|e| Error::config(out.display().to_string(), format!("cannot write: {e}"), "check the path"))?;
            println!("wrote {} (fitted on {} prompts); set [routing] scorer_weights_file to use it", out.display(), prompts.len());
            Ok(())
        }
        (None, Some(prompt)) => {
            let client = Client::new(config)?;
            let req = ChatRequest::new("auto", vec![Message::user(prompt)]);
            let d = match client.route(&req) {
                Ok(d) => d,
                Err(e) => {
                    // Nothing usable (no keys, say): still show how the prompt scores.
                    let r = scorer(client.config().routing.scorer_weights_file.as_ref())?.score(&req);
                    println!("score {:.3}, tier {}", r.score, r.tier.as_str());
                    return Err(e);
                }
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
                return Ok(());
            }
            println!("{}", d.reason);
            if let (Some(score), Some(tier)) = (d.score, d.tier) {
                println!("score {score:.3}, tier {}", tier.as_str());
            }
            let mut top: Vec<_> = d.features.iter().filter(|f| f.contribution.abs() > 1e-9).collect();
            top.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
            for f in top.iter().take(6) {
                println!("  {:<22} value {:>10.3}  contribution {:+.3}", f.name, f.value, f.contribution);
            }
            println!("candidates:");
            for c in &d.candidates {
                let cost = c.estimated_cost_micros.map(|m| format!("~${}.{:06}", m / 1_000_000, m % 1_000_000)).unwrap_or_else(|| "unpriced".into());
                println!("  {:<34} {cost}", c.model);
            }
            for e in &d.excluded {
                println!("  excluded {:<25} {}", e.model, e.reason);
            }
            Ok(())
        }
        (None, None) => Err(Error::InvalidRequest { field: Some("prompt".into()), message: "give a prompt to route, or a subcommand (score, eval, calibrate)".into() }),
    }
}

fn print_row(name: &str, r: &EvalReport) {
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    println!("{name:<12} {:>6.3} {:>7} {:>7} {:>18}", r.apgr, pct(r.cpt50), pct(r.cpt80), pct(r.share_for_95pct_quality));
}
