//! `gaterouter collector serve`: the collector, logging exactly like the standalone
//! `gaterouter-collector` binary (same `tracing` setup: `RUST_LOG`, default `info`, text
//! or JSON per `log_format`, on stderr), plus where its database and dashboard are.

use gaterouter::Error;
use gaterouter_collector::LogFormat;
use gaterouter_collector::cli::ServeArgs;

/// Initialise logging as the standalone collector binary does.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: a subscriber set earlier in this process wins.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The database URL without a password.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Run `collector serve` until Ctrl-C / SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<(), Error> {
    let cfg = args.load().map_err(|e| {
        Error::config(
            "collector settings",
            e.to_string(),
            "see `gaterouter collector serve --help`",
        )
    })?;
    init_logging(cfg.log_format);
    let db = cfg
        .db_url()
        .map(|u| redacted(&u))
        .unwrap_or_else(|e| e.to_string());
    let handle = gaterouter_collector::spawn(cfg).await.map_err(|e| {
        tracing::error!(error = %e, "collector did not start");
        Error::config(
            "collector",
            e.to_string(),
            "check the listen address and the database URL",
        )
    })?;
    tracing::info!(database = %db, "collector database");
    tracing::info!(url = %format!("{}/dashboard", handle.url()), "dashboard (sign in with a read or admin token)");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
