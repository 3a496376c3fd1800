//! `gaterouter-emulator --listen 127.0.0.1:0`: prints `listening on http://127.0.0.1:PORT` as its
//! first stdout line, then serves until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

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

/// Resolves on SIGTERM or SIGINT. Handlers are installed when this is called, so call it
/// before announcing the port (a caller may signal right after reading the line).
fn termination() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let stop = match termination() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gaterouter-emulator: cannot install signal handlers: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
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
    stop.await;
    // Let in-flight requests finish, but do not hang on a long slow_stream.
    let _ = tokio::time::timeout(Duration::from_secs(5), handle.shutdown()).await;
    std::process::ExitCode::SUCCESS
}
