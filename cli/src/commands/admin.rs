//! `gaterouter admin ...`: the organization, policies, budgets, alerts and bills of a
//! collector, over its admin API (arguments and client in
//! `gaterouter_collector::admin_cli`).

use std::process::ExitCode;

use gaterouter_collector::admin_cli::{AdminArgs, AdminCommand, run as run_admin};

/// Run an admin command; errors go to standard error (never the token). Applying an org
/// file and building a bill can take a while: a spinner says so on a terminal.
pub async fn run(args: AdminArgs) -> ExitCode {
    let mut out = std::io::stdout();
    let spinner = match &args.command {
        AdminCommand::Apply { .. } => Some(crate::progress::spinner("applying the organization file")),
        AdminCommand::Bill { .. } => Some(crate::progress::spinner("building the bill")),
        _ => None,
    };
    let result = run_admin(args, &mut out).await;
    if let Some(pb) = &spinner {
        crate::progress::done(pb);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
