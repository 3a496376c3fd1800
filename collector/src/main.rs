//! `gaterouter-collector`: run the usage collector.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gaterouter_collector::{CollectorConfig, LogFormat};

/// GateRouter usage collector. Settings come from the config file, then
/// GATEROUTER_COLLECTOR_* environment variables, then these flags.
#[derive(Debug, Parser)]
#[command(name = "gaterouter-collector", version)]
struct Cli {
    /// TOML config file (unknown keys are refused).
    #[arg(long, env = "GATEROUTER_COLLECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8787].
    #[arg(long)]
    listen: Option<String>,
    /// Database: sqlite://PATH or postgres://USER@HOST:PORT/DB [default: sqlite under the data dir].
    #[arg(long)]
    db: Option<String>,
    /// Data directory for the default SQLite database.
    #[arg(long)]
    data_dir: Option<String>,
    /// Bootstrap admin token (prefer GATEROUTER_COLLECTOR_ADMIN_TOKEN or admin_token_sha256 in the file).
    #[arg(long)]
    admin_token: Option<String>,
    /// Strongest configured model (provider/model) for routing savings.
    #[arg(long)]
    strongest_model: Option<String>,
    /// Largest request body in bytes.
    #[arg(long)]
    max_body_bytes: Option<String>,
    /// Most records per batch.
    #[arg(long)]
    max_batch_records: Option<String>,
    /// Per-key records/s (0 = unlimited).
    #[arg(long)]
    rate_limit_records_per_sec: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
}

fn load(cli: &Cli) -> Result<CollectorConfig, gaterouter_collector::ConfigError> {
    let mut cfg = match &cli.config {
        Some(p) => CollectorConfig::from_file(p)?,
        None => CollectorConfig::default(),
    };
    cfg.apply_env(std::env::vars().filter(|(k, _)| k != "GATEROUTER_COLLECTOR_CONFIG"))?;
    for (field, v) in [
        ("listen", &cli.listen),
        ("db", &cli.db),
        ("data_dir", &cli.data_dir),
        ("admin_token", &cli.admin_token),
        ("strongest_model", &cli.strongest_model),
        ("max_body_bytes", &cli.max_body_bytes),
        ("max_batch_records", &cli.max_batch_records),
        ("rate_limit_records_per_sec", &cli.rate_limit_records_per_sec),
        ("log_format", &cli.log_format),
    ] {
        if let Some(v) = v {
            cfg.set(field, v)?;
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(gaterouter_collector::serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
