//! `gaterouter route "prompt"` (explain a decision), `route score IN.jsonl`,
//! `route eval IN.jsonl`, `route calibrate IN.jsonl --out W.json`.

use std::io::BufReader;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use gaterouter::routing::calibrate::{self, FitOptions};
use gaterouter::routing::eval::{self, EvalReport};
use gaterouter::routing::{Scorer, load_jsonl, score_jsonl};
use std::cell::RefCell;
use std::collections::BTreeMap;

use gaterouter::error::ErrorKind;
use gaterouter::routing::select::{Availability, SelectInput, select};
use gaterouter::routing::{Excluded, RouteDecision};
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
        (None, Some(prompt)) => explain(config, prompt, args.json),
        (None, None) => Err(Error::InvalidRequest { field: Some("prompt".into()), message: "give a prompt to route, or a subcommand (score, eval, calibrate)".into() }),
    }
}

fn print_row(name: &str, r: &EvalReport) {
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    println!("{name:<12} {:>6.3} {:>7} {:>7} {:>18}", r.apgr, pct(r.cpt50), pct(r.cpt80), pct(r.share_for_95pct_quality));
}

/// Availability for explaining: a model that is unusable only because its provider has no
/// API key (or its breaker is open) counts as available, and the reason is kept, so the
/// explanation shows what `auto` would pick once the key is set.
struct IfKeysWereSet<'a> {
    client: &'a Client,
    missing: RefCell<BTreeMap<String, String>>,
}

impl Availability for IfKeysWereSet<'_> {
    fn check(&self, model: &str) -> Result<(), String> {
        match self.client.check(model) {
            Err(reason) if reason.starts_with("no API key") || reason.starts_with("circuit open") => {
                self.missing.borrow_mut().insert(model.to_owned(), reason);
                Ok(())
            }
            other => other,
        }
    }
    fn latency_ms(&self, model: &str) -> Option<f64> {
        self.client.latency_ms(model)
    }
}

/// "no API key ($OPENAI_API_KEY is not set)" -> "no API key for provider openai ($OPENAI_API_KEY is not set)".
fn why(model: &str, reason: &str) -> String {
    match (reason.strip_prefix("no API key"), model.split_once('/')) {
        (Some(rest), Some((provider, _))) => format!("no API key for provider {provider}{rest}"),
        _ => reason.to_owned(),
    }
}

fn usd(micros: u64) -> String {
    format!("~${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// `gaterouter route "prompt"`: explain where `auto` sends it, calling nothing. Always
/// explains (exit 0), also when no provider is usable now (no API keys): it then says so,
/// shows what would be chosen once keys are set, and why each model is left out.
fn explain(config: Config, prompt: String, json: bool) -> Result<(), Error> {
    let client = Client::new(config)?;
    let req = ChatRequest::new("auto", vec![Message::user(prompt)]);
    let (decision, unusable_now): (Option<RouteDecision>, Vec<Excluded>) = match client.route(&req) {
        Ok(d) => (Some(d), Vec::new()),
        Err(e) if e.kind() == ErrorKind::InvalidRequest => {
            let avail = IfKeysWereSet { client: &client, missing: RefCell::new(BTreeMap::new()) };
            let score = Some(scorer(client.config().routing.scorer_weights_file.as_ref())?.score(&req));
            let d = select(SelectInput { req: &req, score, cfg: &client.config().routing, catalog: client.catalog(), accounts: None }, &avail).ok();
            let missing = avail.missing.into_inner().into_iter().map(|(model, reason)| Excluded { reason: why(&model, &reason), model }).collect();
            (d, missing)
        }
        Err(e) => return Err(e),
    };
    if json {
        let mut v = serde_json::to_value(&decision).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("usable_now".into(), serde_json::Value::Bool(unusable_now.is_empty()));
            o.insert("unusable_now".into(), serde_json::to_value(&unusable_now).unwrap_or_default());
        }
        if decision.is_none() {
            let r = scorer(client.config().routing.scorer_weights_file.as_ref())?.score(&req);
            v = serde_json::json!({"usable_now": false, "score": r.score, "tier": r.tier.as_str(), "unusable_now": unusable_now});
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let Some(d) = decision else {
        let r = scorer(client.config().routing.scorer_weights_file.as_ref())?.score(&req);
        println!("score {:.3}, tier {}", r.score, r.tier.as_str());
        println!("no configured model can serve this request, even with every API key set:");
        for e in &unusable_now {
            println!("  excluded {:<34} {}", e.model, e.reason);
        }
        return Ok(());
    };
    if unusable_now.is_empty() {
        println!("{}", d.reason);
    } else {
        println!("no model is usable now (no provider API key is set, or a circuit is open); with the keys set:");
        println!("  {}", d.reason);
    }
    if let (Some(score), Some(tier)) = (d.score, d.tier) {
        println!("score {score:.3}, tier {}", tier.as_str());
    }
    let mut top: Vec<_> = d.features.iter().filter(|f| f.contribution.abs() > 1e-9).collect();
    top.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    for f in top.iter().take(6) {
        println!("  {:<22} value {:>10.3}  contribution {:+.3}", f.name, f.value, f.contribution);
    }
    println!("candidates (first is chosen, the rest are fallbacks in order):");
    let mut seen = std::collections::BTreeSet::new();
    for c in d.candidates.iter().filter(|c| seen.insert(c.model.as_str())) {
        let cost = c.estimated_cost_micros.map(usd).unwrap_or_else(|| "unpriced".into());
        let tier = c.tier.map(|t| t.as_str()).unwrap_or("");
        let note = unusable_now.iter().find(|e| e.model == c.model).map(|e| format!("  [{}]", e.reason)).unwrap_or_default();
        println!("  {:<34} {tier:<9} {cost}{note}", c.model);
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in d.excluded.iter().filter(|e| seen.insert(e.model.as_str())) {
        println!("  excluded {:<34} {}", e.model, why(&e.model, &e.reason));
    }
    Ok(())
}
