//! `gaterouter admin ...`: the organization, policies, budgets, alerts and bills of a
//! collector, over its admin API (arguments and client in
//! `gaterouter_collector::admin_cli`).

use std::process::ExitCode;

use gaterouter_collector::admin_cli::{AdminArgs, run as run_admin};

/// Run an admin command; errors go to standard error (never the token).
pub async fn run(args: AdminArgs) -> ExitCode {
    let mut out = std::io::stdout();
    match run_admin(args, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
