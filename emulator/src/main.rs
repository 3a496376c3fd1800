//! `gaterouter-emulator --listen 127.0.0.1:0`: prints `listening on http://127.0.0.1:PORT` as its
//! first stdout line, then serves until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;

/// A local emulator of the OpenAI, Anthropic and Gemini chat APIs with fault injection.
#[derive(Debug, Parser)]
#[command(name = "gaterouter-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        default_value = "127.0.0.1:0",
        env = "GATEROUTER_EMULATOR_LISTEN"
    )]
    listen: SocketAddr,
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let handle = match gaterouter_emulator::start(args.listen).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("gaterouter-emulator: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", handle.base_url());
        let _ = out.flush();
    }
    terminated().await;
    handle.shutdown().await;
    std::process::ExitCode::SUCCESS
}
