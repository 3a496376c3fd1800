//! `gaterouter`: the command line over the GateRouter core.
//!
//! Every subcommand is a thin layer over the `gaterouter` crate; none holds logic of its
//! own beyond argument parsing and printing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gaterouter::{Config, Error};

mod commands;
mod progress;

#[derive(Debug, Parser)]
#[command(
    name = "gaterouter",
    version,
    about = "One API over OpenAI, Anthropic, Gemini and OpenAI-compatible models"
)]
struct Cli {
    /// Config file (TOML). Default: ./gaterouter.toml when it exists, else built-in defaults.
    #[arg(long, global = true, env = "GATEROUTER_CONFIG")]
    config: Option<PathBuf>,
    /// Send provider calls to a provider emulator started inside this process (no API keys
    /// needed): openai, anthropic, gemini and deepseek point at it. Try any command without keys.
    #[arg(long, global = true, conflicts_with = "emulator_url")]
    emulate: bool,
    /// Like --emulate, with an emulator already running at this URL
    /// (`gaterouter-emulator --listen 127.0.0.1:8080` → http://127.0.0.1:8080).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "GATEROUTER_EMULATOR_URL"
    )]
    emulator_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send one prompt and print the answer.
    Chat(commands::chat::ChatArgs),
    /// List the configured providers and models.
    Models,
    /// Run a short demo across providers (emulated locally unless API keys are set).
    Demo(commands::demo::DemoArgs),
    /// Count the tokens of a text file as a model bills them.
    Tokens(commands::tokens::TokensArgs),
    /// Price a call from token counts.
    Cost(commands::tokens::CostArgs),
    /// Say how good a call's answer was (a signed feedback record joined to the call's
    /// usage record; routing learns from it, analytics show it beside spend).
    Feedback(commands::feedback::FeedbackArgs),
    /// Explain where `auto` sends a prompt; score, evaluate and calibrate the router.
    Route(commands::route::RouteArgs),
    /// Signing keys for usage records.
    Keys {
        #[command(subcommand)]
        action: commands::usage::KeysAction,
    },
    /// The on-disk spool of usage records.
    Spool {
        #[command(subcommand)]
        action: commands::usage::SpoolAction,
    },
    /// Manage a collector's organizations: apply/export an org file, policies, budgets,
    /// alerts and monthly bills (admin token in GATEROUTER_ADMIN_TOKEN).
    Admin(gaterouter_collector::admin_cli::AdminArgs),
    /// Spend, tokens, calls, errors and denials from a collector's analytics, by department,
    /// project, member, key, model or tag (read token in GATEROUTER_READ_TOKEN).
    Usage(gaterouter_collector::usage_cli::UsageArgs),
    /// The usage collector.
    Collector {
        #[command(subcommand)]
        action: CollectorAction,
    },
}

#[derive(Debug, Subcommand)]
enum CollectorAction {
    /// Run a collector until Ctrl-C / SIGTERM (same settings as `gaterouter-collector`).
    Serve(gaterouter_collector::cli::ServeArgs),
}

/// Load the config named on the command line, or ./gaterouter.toml, or the defaults.
pub(crate) fn load_config(path: Option<&PathBuf>) -> Result<Config, Error> {
    match path {
        Some(p) => Config::from_toml_file(p),
        None if std::path::Path::new("gaterouter.toml").exists() => {
            Config::from_toml_file("gaterouter.toml")
        }
        None => Ok(Config::default()),
    }
}

/// Where `--emulate` / `--emulator-url` send provider calls; keeps an in-process emulator
/// alive while the command runs.
#[derive(Debug)]
struct Emulation {
    base_url: String,
    _local: Option<gaterouter_emulator::EmulatorHandle>,
}

impl Emulation {
    async fn start(emulate: bool, emulator_url: Option<&str>) -> Result<Option<Self>, Error> {
        if let Some(url) = emulator_url {
            return Ok(Some(Emulation {
                base_url: url.trim_end_matches('/').to_owned(),
                _local: None,
            }));
        }
        if !emulate {
            return Ok(None);
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let handle = gaterouter_emulator::start(addr).await.map_err(|e| {
            Error::config(
                "--emulate",
                format!("cannot start the provider emulator: {e}"),
                "free a loopback port, or pass --emulator-url",
            )
        })?;
        Ok(Some(Emulation {
            base_url: handle.base_url(),
            _local: Some(handle),
        }))
    }

    /// The loaded config with the emulated providers (openai, anthropic, gemini, deepseek)
    /// pointed at the emulator; everything else in the file is kept.
    fn apply(&self, mut config: Config) -> Config {
        for (name, p) in Config::emulated(&self.base_url).providers {
            let entry = config.providers.entry(name).or_default();
            entry.kind = p.kind;
            entry.base_url = p.base_url;
            entry.api_key = p.api_key;
            entry.api_key_env = None;
        }
        config
    }
}

/// A closed output pipe (`gaterouter route "2+2?" | head -1`) ends the command quietly
/// with exit 0, as Unix tools do, instead of a panic (exit 101). `println!` panics with
/// "failed printing to stdout: Broken pipe"; this hook turns exactly that panic into an
/// exit; every other panic keeps the default report.
fn exit_quietly_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let broken_pipe = msg
            .contains(&std::io::Error::from(std::io::ErrorKind::BrokenPipe).to_string())
            || msg.contains("Broken pipe")
            || msg.contains("os error 32")
            || msg.contains("os error 232");
        if msg.starts_with("failed printing to std") && broken_pipe {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_closed_pipe();
    let cli = Cli::parse();
    // The demo's admin calls use reqwest before any gaterouter::Client exists: install the
    // TLS crypto provider the core uses (ring) once, up front.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (emulate, emulator_url, config_path) =
        (cli.emulate, cli.emulator_url.clone(), cli.config.clone());
    let command = match cli.command {
        Command::Admin(args) => return rt.block_on(commands::admin::run(args)),
        Command::Usage(args) => return rt.block_on(commands::admin::usage(args)),
        Command::Route(args) => match args.action.as_ref().and_then(|a| a.as_admin()) {
            Some(admin) => return rt.block_on(commands::admin::run(admin)),
            None => Command::Route(args),
        },
        other => other,
    };
    let result = rt.block_on(async {
        let uses_providers = matches!(
            command,
            Command::Chat(_) | Command::Models | Command::Route(_) | Command::Spool { .. }
        );
        let emulation = if uses_providers {
            Emulation::start(emulate, emulator_url.as_deref()).await?
        } else {
            None
        };
        let config = || -> Result<Config, Error> {
            let c = load_config(config_path.as_ref())?;
            Ok(match &emulation {
                Some(e) => e.apply(c),
                None => c,
            })
        };
        match command {
            Command::Chat(args) => commands::chat::run(config()?, args).await,
            Command::Models => commands::models::run(config()?),
            Command::Demo(mut args) => {
                args.emulate_all |= emulate;
                commands::demo::run(args).await
            }
            Command::Tokens(args) => commands::tokens::tokens(args),
            Command::Cost(args) => {
                let config = load_config(config_path.as_ref())?;
                commands::tokens::cost(
                    &gaterouter::pricing::Catalog::builtin().with_overrides(&config.prices)?,
                    args,
                )
            }
            Command::Route(args) => commands::route::run(config()?, args),
            Command::Feedback(args) => commands::feedback::run(config()?, args).await,
            Command::Keys { action } => commands::usage::keys(action),
            Command::Spool { action } => commands::usage::spool(config()?, action).await,
            Command::Collector {
                action: CollectorAction::Serve(args),
            } => commands::collector::serve(args).await,
            Command::Admin(_) | Command::Usage(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.kind());
            ExitCode::FAILURE
        }
    }
}
