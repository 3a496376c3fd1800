//! `gaterouter`: the command line over the GateRouter core.
//!
//! Every subcommand is a thin layer over the `gaterouter` crate; none holds logic of its
//! own beyond argument parsing and printing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gaterouter::{Config, Error};

mod commands;

#[derive(Debug, Parser)]
#[command(name = "gaterouter", version, about = "One API over OpenAI, Anthropic, Gemini and OpenAI-compatible models")]
struct Cli {
    /// Config file (TOML). Default: ./gaterouter.toml when it exists, else built-in defaults.
    #[arg(long, global = true, env = "GATEROUTER_CONFIG")]
    config: Option<PathBuf>,
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
        None if std::path::Path::new("gaterouter.toml").exists() => Config::from_toml_file("gaterouter.toml"),
        None => Ok(Config::default()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's admin calls use reqwest before any gaterouter::Client exists: install the
    // TLS crypto provider the core uses (ring) once, up front.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::Admin(args) => return rt.block_on(commands::admin::run(args)),
        other => other,
    };
    let result = rt.block_on(async {
        match command {
            Command::Chat(args) => commands::chat::run(load_config(cli.config.as_ref())?, args).await,
            Command::Models => commands::models::run(load_config(cli.config.as_ref())?),
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Tokens(args) => commands::tokens::tokens(args),
            Command::Cost(args) => {
                let config = load_config(cli.config.as_ref())?;
                commands::tokens::cost(&gaterouter::pricing::Catalog::builtin().with_overrides(&config.prices)?, args)
            }
            Command::Route(args) => commands::route::run(load_config(cli.config.as_ref())?, args),
            Command::Keys { action } => commands::usage::keys(action),
            Command::Spool { action } => commands::usage::spool(load_config(cli.config.as_ref())?, action).await,
            Command::Collector { action: CollectorAction::Serve(args) } => commands::collector::serve(args).await,
            Command::Admin(_) => Ok(()),
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
