//! `gaterouter-collector`: run the usage collector.

use std::process::ExitCode;

use clap::Parser;
use gaterouter_collector::LogFormat;
use gaterouter_collector::cli::ServeArgs;

/// GateRouter usage collector. Settings come from the config file, then
/// GATEROUTER_COLLECTOR_* environment variables, then these flags.
#[derive(Debug, Parser)]
#[command(name = "gaterouter-collector", version)]
struct Cli {
    #[command(flatten)]
    args: ServeArgs,
    /// Maintenance command (without one, the collector serves).
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Usage rollups (hourly aggregates maintained at ingest).
    Rollup {
        #[command(subcommand)]
        action: RollupCmd,
    },
}

#[derive(Debug, clap::Subcommand)]
enum RollupCmd {
    /// Recompute every rollup from the raw usage records (settings flags go before
    /// `rollup`, e.g. `gaterouter-collector --db URL rollup rebuild`).
    Rebuild,
}

async fn rebuild(cfg: gaterouter_collector::CollectorConfig) -> Result<u64, String> {
    let url = cfg.db_url().map_err(|e| e.to_string())?;
    let db = gaterouter_collector::db::Db::connect(&url, cfg.db_max_connections)
        .await
        .map_err(|e| e.to_string())?;
    let n = gaterouter_collector::rollup::rebuild(&db)
        .await
        .map_err(|e| e.to_string())?;
    db.close().await;
    Ok(n)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match cli.args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Cmd::Rollup {
        action: RollupCmd::Rebuild,
    }) = cli.cmd
    {
        return match rt.block_on(rebuild(cfg)) {
            Ok(n) => {
                println!(
                    "rollups rebuilt: {n} rows (hour, day and month sums, latency histograms, tag sums)"
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match rt.block_on(gaterouter_collector::serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
