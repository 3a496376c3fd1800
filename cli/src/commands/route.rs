//! `gaterouter route "prompt"` (explain a decision), `route score IN.jsonl`,
//! `route eval IN.jsonl`, `route calibrate IN.jsonl --out W.json`,
//! `route simulate IN.jsonl --explore E --seed S --out W.json`.

use std::io::{BufReader, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use gaterouter::routing::eval::{self, EvalReport, Holdout};
use gaterouter::routing::learn::{self, CalibrateOptions, SimulateOptions};
use gaterouter::routing::{LabeledPrompt, Scorer, Weights, load_jsonl, score_jsonl};
use std::cell::RefCell;
use std::collections::BTreeMap;

use gaterouter::error::ErrorKind;
use gaterouter::routing::select::{Availability, SelectInput, select};
use gaterouter::routing::{Excluded, Exclusion, RouteDecision};
use gaterouter::{ChatRequest, Client, Config, Error, Message};

/// The input format, shown in every subcommand's `--help`.
const FORMAT: &str = "\
INPUT FORMAT (JSONL: one JSON object a line, blank lines skipped):
  {\"id\": \"gsm8k-0\", \"source\": \"gsm8k\",
   \"messages\": [{\"role\": \"user\", \"content\": \"...\"}],
   \"weak_model\": \"mixtral-8x7b\", \"strong_model\": \"gpt-4\",
   \"weak_score\": 1.0, \"strong_score\": 0.0}
  messages   required: the request as the router sees it (OpenAI chat format);
             `tools` and `max_tokens` may be added to score a full request.
  id         optional (default line-N); source optional (a group such as
             `mmlu/anatomy`, used by --holdout source / subject_or_row).
  weak_score, strong_score   quality of each model's answer in [0, 1]:
             needed by eval, calibrate and simulate, not by score.
  weak_model, strong_model   optional; name the pair in `scores` below.
  scores     optional, for more than two models: {\"model\": score, ...} in [0, 1];
             weak_score/strong_score default to scores[weak_model] and
             scores[strong_model] (calibrate --weak-model/--strong-model pick
             another pair), and calibrate writes each model's success model
             (name the models as your tiers do, e.g. openai/gpt-4o-mini: within a
             tier, a model predicted clearly worse than the best goes last).";

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

/// Which part of a labeled file a command uses.
#[derive(Debug, Args, Clone)]
pub struct SplitArgs {
    /// Split the file: fit/replay on this share of it, score on the rest (e.g. 0.3).
    /// Without it the whole file is used.
    #[arg(long, value_name = "F")]
    pub train_frac: Option<f64>,
    /// Seed of the split (and of cross-validation folds / exploration draws).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How to split: `random` (rows), `source` (whole `source` groups on one side),
    /// `subject_or_row` (sources with a `/` held out whole, others split by row).
    #[arg(long, default_value = "random")]
    pub holdout: String,
}

impl SplitArgs {
    /// `(train, test)`; test is empty without --train-frac.
    fn apply(
        &self,
        prompts: Vec<LabeledPrompt>,
    ) -> Result<(Vec<LabeledPrompt>, Vec<LabeledPrompt>), Error> {
        let holdout = Holdout::parse(&self.holdout)?;
        match self.train_frac {
            None => Ok((prompts, Vec::new())),
            Some(f) if f > 0.0 && f < 1.0 => Ok(eval::split(&prompts, holdout, self.seed, f)),
            Some(f) => Err(Error::InvalidRequest {
                field: Some("--train-frac".into()),
                message: format!("--train-frac {f} must be strictly between 0 and 1 (e.g. 0.3)"),
            }),
        }
    }
}

/// `route` subcommands.
#[derive(Debug, Subcommand)]
pub enum RouteAction {
    /// Print `{"id","score","tier"}` for each prompt of a JSONL file (labels optional).
    #[command(after_help = FORMAT)]
    Score {
        /// JSONL file in the routing data format.
        file: PathBuf,
        /// Scorer weights file (default: the built-in weights).
        #[arg(long)]
        weights: Option<PathBuf>,
    },
    /// Router metrics (APGR, CPT50/80, strong share for 95% quality) on a labeled JSONL
    /// file, each beside the length-only router (characters) and random.
    #[command(after_help = FORMAT)]
    Eval {
        /// Labeled JSONL file.
        file: PathBuf,
        /// Scorer weights file (default: the built-in weights).
        #[arg(long)]
        weights: Option<PathBuf>,
        // With --train-frac: score only the held-out part (the complement of what
        // `route calibrate`/`route simulate` with the same split options fitted on).
        #[command(flatten)]
        split: SplitArgs,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Fit scorer weights on a labeled JSONL file (ridge regression of strong − weak
    /// quality on hashed word 1-2-grams + log length, or + all structural features;
    /// penalty and feature set by k-fold cross-validation inside the file) and write
    /// them. Prints the cross-validated APGR beside the builtin weights' and
    /// length-only's on the same folds, and with --train-frac the figures on the
    /// held-out rest. No harm: when the fit does not beat both on the same folds it says
    /// so and writes the better of them instead (the builtin weights, or a length-only
    /// rule); --force writes the fit anyway.
    #[command(after_help = FORMAT)]
    Calibrate {
        /// Labeled JSONL file.
        file: PathBuf,
        /// Where to write the weights (use with `[routing] scorer_weights_file` or `route score --weights`).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        split: SplitArgs,
        /// Hashed n-gram buckets 2^BITS (14: a 22 KB file).
        #[arg(long, default_value_t = learn::DEFAULT_BITS)]
        bits: u8,
        /// Cross-validation folds.
        #[arg(long, default_value_t = learn::DEFAULT_FOLDS)]
        folds: usize,
        /// Ridge penalties tried, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = learn::DEFAULT_LAMBDAS.to_vec())]
        lambdas: Vec<f64>,
        /// Write the fit even when its cross-validated APGR does not beat the builtin
        /// weights' and length-only's on the same folds.
        #[arg(long)]
        force: bool,
        /// With a `scores` map: the weak model of the pair to fit (default: each line's
        /// weak_model).
        #[arg(long, value_name = "MODEL")]
        weak_model: Option<String>,
        /// With a `scores` map: the strong model of the pair to fit (default: each
        /// line's strong_model).
        #[arg(long, value_name = "MODEL")]
        strong_model: Option<String>,
        /// With a `scores` map: within a tier, a model whose predicted success is more
        /// than this below the best candidate's goes after the others (0..=1).
        #[arg(long, value_name = "M", default_value_t = gaterouter::routing::weights::DEFAULT_SUCCESS_MARGIN)]
        success_margin: f64,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Replay a labeled JSONL file in order as a learning organization's live traffic,
    /// through the same code as production: each call is routed by the weights served at
    /// the time, a share `--explore` of calls gets a tier drawn at random, only the chosen
    /// arm's score is revealed (heavy: strong_score, lighter: weak_score) and logged with
    /// its propensity, and the collector's learner runs as outcomes accumulate, its
    /// weights served once promoted (estimated better than the current ones and
    /// length-only). With --shadow S a share S of calls also reveals the other arm's
    /// score (shadow sampling), logged as the client logs it. Prints one JSON line and
    /// writes the final served weights (for `route score --weights`). With --train-frac F
    /// it replays the first F of the seeded shuffle; `route eval --weights W.json
    /// --train-frac F --seed S` scores the rest. A file whose lines arrive grouped by
    /// `source` (sorted by subject) is replayed as it is, with a warning on standard
    /// error and in the JSON line (`warnings`); --shuffle replays it in a seeded random order.
    #[command(after_help = FORMAT)]
    Simulate {
        /// Labeled JSONL file.
        file: PathBuf,
        /// Share of calls whose tier is drawn at random (exploration), in [0, 0.5].
        #[arg(long, default_value_t = 0.1)]
        explore: f64,
        /// Shadow sampling: share of calls also sent to the other arm, whose score is then
        /// revealed too (each costs a second call), in [0, 1].
        #[arg(long, default_value_t = 0.0)]
        shadow: f64,
        /// Where to write the final weights.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        split: SplitArgs,
        /// Starting weights (default: the built-in weights).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Hashed n-gram buckets 2^BITS.
        #[arg(long, default_value_t = learn::DEFAULT_BITS)]
        bits: u8,
        /// Replay in a random order seeded by --seed instead of the file's (a file sorted
        /// by `source` replays one subject after another, which live traffic does not;
        /// the command warns when it sees that order).
        #[arg(long)]
        shuffle: bool,
    },
    /// Ask the collector to refit an org's router now from its rated `auto` calls (the
    /// same as `gaterouter admin routing learn --org ORG`; the collector also does it
    /// every `learn_interval_secs`). New weights are promoted, signed and served with the
    /// policy only when estimated better than the current ones and length-only.
    Learn {
        /// Org id.
        #[arg(long)]
        org: String,
        /// Collector base URL.
        #[arg(
            long,
            env = "GATEROUTER_COLLECTOR_URL",
            default_value = "http://127.0.0.1:8787"
        )]
        url: String,
        /// Admin token of the collector.
        #[arg(long, env = "GATEROUTER_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<gaterouter_collector::admin_cli::Token>,
    },
}

impl RouteAction {
    /// `route learn` as the admin command it is (it needs a collector, not providers).
    pub fn as_admin(&self) -> Option<gaterouter_collector::admin_cli::AdminArgs> {
        use gaterouter_collector::admin_cli::{AdminArgs, AdminCommand, RoutingAction};
        match self {
            RouteAction::Learn { org, url, token } => Some(AdminArgs {
                url: url.clone(),
                token: token.clone(),
                command: AdminCommand::Routing {
                    action: RoutingAction::Learn { org: org.clone() },
                },
            }),
            _ => None,
        }
    }
}

fn load_weights(weights: Option<&PathBuf>) -> Result<Weights, Error> {
    match weights {
        Some(p) => Weights::from_file(p),
        None => Weights::builtin(),
    }
}

fn scorer(weights: Option<&PathBuf>) -> Result<Scorer, Error> {
    Ok(Scorer::new(load_weights(weights)?))
}

fn write_weights(out: &PathBuf, w: &Weights) -> Result<(), Error> {
    std::fs::write(out, w.to_json()).map_err(|e| {
        Error::config(
            out.display().to_string(),
            format!("cannot write the weights: {e}"),
            "check the --out path",
        )
    })
}

/// Print a line; a closed stdout (`| head`) ends quietly.
macro_rules! out {
    ($($t:tt)*) => {{
        let mut o = std::io::stdout().lock();
        if writeln!(o, $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// Standard output for a writer-taking library call (`route score`): a closed pipe
/// (`| head`) ends the command quietly with exit 0, as [`out!`] does for single lines.
struct QuietStdout(std::io::StdoutLock<'static>);

impl QuietStdout {
    fn new() -> Self {
        Self(std::io::stdout().lock())
    }

    fn check<T>(r: std::io::Result<T>) -> std::io::Result<T> {
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            r => r,
        }
    }
}

impl Write for QuietStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Self::check(self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Self::check(self.0.flush())
    }
}

/// Run `route`.
pub fn run(config: Config, args: RouteArgs) -> Result<(), Error> {
    match (args.action, args.prompt) {
        // Dispatched to the admin client by main before providers are configured.
        (Some(RouteAction::Learn { .. }), _) => Err(Error::InvalidRequest {
            field: Some("route learn".into()),
            message: "`route learn` runs against the collector: use `gaterouter route learn --org ORG` (or `gaterouter admin routing learn --org ORG`)".into(),
        }),
        (Some(RouteAction::Score { file, weights }), _) => {
            let f = std::fs::File::open(&file).map_err(|e| Error::InvalidRequest {
                field: Some("file".into()),
                message: format!("cannot open {}: {e}", file.display()),
            })?;
            let n = score_jsonl(
                &scorer(weights.as_ref())?,
                BufReader::new(f),
                &file.display().to_string(),
                QuietStdout::new(),
            )?;
            eprintln!("scored {n} prompts");
            Ok(())
        }
        (
            Some(RouteAction::Eval {
                file,
                weights,
                split,
                json,
            }),
            _,
        ) => {
            let pb = crate::progress::spinner(format!("evaluating {}", file.display()));
            let (train, test) = split.apply(load_jsonl(&file)?)?;
            let (part, what) = if split.train_frac.is_some() {
                (test, "held-out part")
            } else {
                (train, "whole file")
            };
            let s = scorer(weights.as_ref())?;
            let c = eval::compare(&part, &s)?;
            crate::progress::done(&pb);
            if json {
                out!(
                    "{}",
                    serde_json::json!({"prompts": part.len(), "part": what, "weights_version": s.weights().fingerprint(), "router": brief(&c.router), "length_only": brief(&c.length), "random": brief(&c.random)})
                );
                return Ok(());
            }
            out!(
                "{} prompts ({what}); always-weak quality {:.3}, always-strong {:.3}; weights {}",
                c.router.n,
                c.router.quality_weak,
                c.router.quality_strong,
                s.weights().fingerprint()
            );
            print_table(&c.router, &c.length, Some(&c.random));
            Ok(())
        }
        (
            Some(RouteAction::Calibrate {
                file,
                out,
                split,
                bits,
                folds,
                lambdas,
                force,
                weak_model,
                strong_model,
                success_margin,
                json,
            }),
            _,
        ) => {
            let pb = crate::progress::spinner(format!(
                "calibrating on {} (cross-validating the penalty)",
                file.display()
            ));
            let mut prompts = load_jsonl(&file)?;
            for p in &mut prompts {
                if let Some(m) = &weak_model {
                    p.weak_model = Some(m.clone());
                    p.weak_score = p.scores.get(m).copied();
                }
                if let Some(m) = &strong_model {
                    p.strong_model = Some(m.clone());
                    p.strong_score = p.scores.get(m).copied();
                }
            }
            let (train, test) = split.apply(prompts)?;
            let opts = CalibrateOptions {
                bits,
                folds,
                lambdas,
                force,
                success_margin,
                seed: split.seed,
                description: format!(
                    "route calibrate {}{}: {} prompts",
                    file.display(),
                    split
                        .train_frac
                        .map(|f| format!(
                            " --train-frac {f} --seed {} --holdout {}",
                            split.seed, split.holdout
                        ))
                        .unwrap_or_default(),
                    train.len()
                ),
                ..CalibrateOptions::default()
            };
            let (w, rep) = learn::calibrate(&train, &opts)?;
            write_weights(&out, &w)?;
            let held = if test.is_empty() {
                None
            } else {
                Some(eval::compare(&test, &Scorer::new(w.clone()))?)
            };
            crate::progress::done(&pb);
            if json {
                out!(
                    "{}",
                    serde_json::json!({
                        "out": out.display().to_string(),
                        "weights_version": w.fingerprint(),
                        "calibration": rep,
                        "held_out": held.as_ref().map(|c| serde_json::json!({"prompts": c.router.n, "router": brief(&c.router), "length_only": brief(&c.length)})),
                    })
                );
                return Ok(());
            }
            out!(
                "fitted on {} prompts: n-grams + {}, ridge penalty {} chosen by {}-fold cross-validation (bits {bits})",
                rep.rows,
                match rep.features {
                    learn::FeatureSet::Length => "log length",
                    learn::FeatureSet::All => "all structural features",
                },
                rep.lambda,
                rep.folds
            );
            out!(
                "cross-validated on this file (mean over the folds): APGR {:.3}, builtin weights {:.3}, length-only {:.3}; fit's strong share for 95% quality {:.1}% (length-only {:.1}% on the whole file)",
                rep.cv_apgr,
                rep.cv_builtin_apgr,
                rep.cv_length_apgr,
                100.0 * rep.cv_share_for_95pct_quality,
                100.0 * rep.length_share_for_95pct_quality
            );
            match (rep.chosen, rep.forced) {
                (learn::Chosen::Fit, false) => {
                    out!("the fit beats the builtin weights and length-only on the same folds: writing it")
                }
                (learn::Chosen::Fit, true) => out!(
                    "WARNING: the fit does NOT beat the builtin weights and length-only on the same folds; writing it anyway (--force)"
                ),
                (learn::Chosen::Builtin, _) => out!(
                    "the fit does NOT beat the builtin weights and length-only on the same folds: writing the builtin weights instead (--force writes the fit)"
                ),
                (learn::Chosen::Length, _) => out!(
                    "the fit and the builtin weights do NOT beat length-only on the same folds: writing a length-only rule instead (--force writes the fit)"
                ),
            }
            for m in &rep.models {
                out!(
                    "model {}: {} prompts, mean score {:.3}, success explained by the request text out of fold (R²) {:.3}; writing {}",
                    m.model,
                    m.rows,
                    m.mean_score,
                    m.cv_r2,
                    match m.written {
                        learn::SuccessFit::Fit => "its fitted success model",
                        learn::SuccessFit::Mean => "its mean score (the text did not predict it)",
                    }
                );
            }
            if !rep.models.is_empty() {
                out!(
                    "within a tier, a model predicted more than {success_margin} below the best candidate goes after the others (success models apply to models named as in [routing])"
                );
            }
            if let Some(c) = &held {
                out!(
                    "held-out part ({} prompts, never seen by the fit):",
                    c.router.n
                );
                print_table(&c.router, &c.length, None);
            }
            out!(
                "wrote {} ({} bytes, weights {}); set [routing] scorer_weights_file to use it",
                out.display(),
                w.to_json().len(),
                w.fingerprint()
            );
            Ok(())
        }
        (
            Some(RouteAction::Simulate {
                file,
                explore,
                shadow,
                out,
                split,
                weights,
                bits,
                shuffle,
            }),
            _,
        ) => {
            let pb =
                crate::progress::spinner(format!("replaying {} as live traffic", file.display()));
            let (mut train, _) = split.apply(load_jsonl(&file)?)?;
            if shuffle {
                train = eval::split(&train, Holdout::Random, split.seed, 1.0).0;
            }
            let opts = SimulateOptions {
                explore,
                shadow,
                seed: split.seed,
                bits,
                ..SimulateOptions::default()
            };
            let (rep, w) = gaterouter::routing::offpolicy::replay(
                &train,
                &load_weights(weights.as_ref())?,
                &opts,
            )?;
            crate::progress::done(&pb);
            for warning in &rep.warnings {
                // a closed stderr must not end the command before it writes the weights
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: {warning} (--shuffle replays in a random order seeded by --seed)"
                );
            }
            write_weights(&out, &w)?;
            let mut line = serde_json::to_value(&rep).unwrap_or_default();
            line["out"] = serde_json::json!(out.display().to_string());
            out!("{line}");
            Ok(())
        }
        (None, Some(prompt)) => explain(config, prompt, args.json),
        (None, None) => Err(Error::InvalidRequest {
            field: Some("prompt".into()),
            message: "give a prompt to route, or a subcommand (score, eval, calibrate, simulate)"
                .into(),
        }),
    }
}

fn brief(r: &EvalReport) -> serde_json::Value {
    serde_json::json!({"apgr": r.apgr, "cpt50": r.cpt50, "cpt80": r.cpt80, "share_for_95pct_quality": r.share_for_95pct_quality, "quality_weak": r.quality_weak, "quality_strong": r.quality_strong})
}

/// A metric row: name, getter, shown as a percentage.
type Metric = (&'static str, fn(&EvalReport) -> f64, bool);

/// One row per metric: the router, length-only beside it, the difference, and random.
fn print_table(r: &EvalReport, len: &EvalReport, random: Option<&EvalReport>) {
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    out!(
        "{:<26} {:>9} {:>12} {:>9}{}",
        "metric",
        "router",
        "length-only",
        "diff",
        if random.is_some() {
            format!(" {:>9}", "random")
        } else {
            String::new()
        }
    );
    let rows: [Metric; 4] = [
        ("APGR (higher is better)", |r| r.apgr, false),
        ("CPT50 (lower is better)", |r| r.cpt50, true),
        ("CPT80 (lower is better)", |r| r.cpt80, true),
        (
            "strong share for 95% Q",
            |r| r.share_for_95pct_quality,
            true,
        ),
    ];
    for (name, get, is_pct) in rows {
        let (a, b) = (get(r), get(len));
        let f = |x: f64| if is_pct { pct(x) } else { format!("{x:.3}") };
        let d = if is_pct {
            format!("{:+.1}", 100.0 * (a - b))
        } else {
            format!("{:+.3}", a - b)
        };
        let rnd = random
            .map(|x| format!(" {:>9}", f(get(x))))
            .unwrap_or_default();
        out!("{name:<26} {:>9} {:>12} {:>9}{rnd}", f(a), f(b), d);
    }
}

/// Availability for explaining: a model that is unusable only because its provider has no
/// API key (or its breaker is open) counts as available, and the reason is kept, so the
/// explanation shows what `auto` would pick once the key is set.
struct IfKeysWereSet<'a> {
    client: &'a Client,
    missing: RefCell<BTreeMap<String, (Exclusion, String)>>,
}

impl Availability for IfKeysWereSet<'_> {
    fn check(&self, model: &str) -> Result<(), (Exclusion, String)> {
        match self.client.check(model) {
            Err((kind @ (Exclusion::NoApiKey | Exclusion::CircuitOpen), reason)) => {
                self.missing
                    .borrow_mut()
                    .insert(model.to_owned(), (kind, reason));
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
fn why(model: &str, kind: Exclusion, reason: &str) -> String {
    match (
        kind,
        reason.strip_prefix("no API key"),
        model.split_once('/'),
    ) {
        (Exclusion::NoApiKey, Some(rest), Some((provider, _))) => {
            format!("no API key for provider {provider}{rest}")
        }
        _ => reason.to_owned(),
    }
}

fn usd(micros: u64) -> String {
    format!("~{}", gaterouter::money::Micros::from(micros))
}

/// `gaterouter route "prompt"`: explain where `auto` sends it, calling nothing. Always
/// explains (exit 0), also when no provider is usable now (no API keys): it then says so,
/// shows what would be chosen once keys are set, and why each model is left out.
fn explain(config: Config, prompt: String, json: bool) -> Result<(), Error> {
    let client = Client::new(config)?;
    let req = ChatRequest::new("auto", vec![Message::user(prompt)]);
    let (decision, unusable_now): (Option<RouteDecision>, Vec<Excluded>) = match client.route(&req)
    {
        Ok(d) => (Some(d), Vec::new()),
        Err(e) if e.kind() == ErrorKind::InvalidRequest => {
            let avail = IfKeysWereSet {
                client: &client,
                missing: RefCell::new(BTreeMap::new()),
            };
            let score =
                Some(scorer(client.config().routing.scorer_weights_file.as_ref())?.score(&req));
            let d = select(
                SelectInput {
                    req: &req,
                    score,
                    cfg: &client.config().routing,
                    catalog: client.catalog(),
                    accounts: None,
                },
                &avail,
            )
            .ok();
            let missing = avail
                .missing
                .into_inner()
                .into_iter()
                .map(|(model, (kind, reason))| {
                    Excluded::new(model.clone(), kind, why(&model, kind, &reason))
                })
                .collect();
            (d, missing)
        }
        Err(e) => return Err(e),
    };
    if json {
        let mut v = serde_json::to_value(&decision).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "usable_now".into(),
                serde_json::Value::Bool(unusable_now.is_empty()),
            );
            o.insert(
                "unusable_now".into(),
                serde_json::to_value(&unusable_now).unwrap_or_default(),
            );
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
        println!(
            "no model is usable now (no provider API key is set, or a circuit is open); with the keys set:"
        );
        println!("  {}", d.reason);
    }
    if let (Some(score), Some(tier)) = (d.score, d.tier) {
        println!("score {score:.3}, tier {}", tier.as_str());
    }
    let mut top: Vec<_> = d
        .features
        .iter()
        .filter(|f| f.contribution.abs() > 1e-9)
        .collect();
    top.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    for f in top.iter().take(6) {
        println!(
            "  {:<22} value {:>10.3}  contribution {:+.3}",
            f.name, f.value, f.contribution
        );
    }
    println!("candidates (first is chosen, the rest are fallbacks in order):");
    let mut seen = std::collections::BTreeSet::new();
    for c in d
        .candidates
        .iter()
        .filter(|c| seen.insert(c.model.as_str()))
    {
        let cost = c
            .estimated_cost_micros
            .map(usd)
            .unwrap_or_else(|| "unpriced".into());
        let tier = c.tier.map(|t| t.as_str()).unwrap_or("");
        let note = unusable_now
            .iter()
            .find(|e| e.model == c.model)
            .map(|e| format!("  [{}]", e.reason))
            .unwrap_or_default();
        let success = c
            .predicted_success
            .map(|p| format!("  predicted success {p:.2}"))
            .unwrap_or_default();
        println!("  {:<34} {tier:<9} {cost}{success}{note}", c.model);
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in d.excluded.iter().filter(|e| seen.insert(e.model.as_str())) {
        println!(
            "  excluded {:<34} {}",
            e.model,
            why(&e.model, e.kind, &e.reason)
        );
    }
    Ok(())
}
