//! `gaterouter admin ...` (the organization, policies, budgets, alerts and bills of a
//! collector) and `gaterouter usage REPORT` (its analytics), over its admin and read APIs
//! (arguments and client in `gaterouter_collector::admin_cli` and `::usage_cli`).

use std::process::ExitCode;

use gaterouter_collector::admin_cli::{AdminArgs, AdminCommand, run as run_admin};
use gaterouter_collector::usage_cli::{UsageArgs, run as run_usage};

/// Run an admin command; errors go to standard error (never the token). Applying an org
/// file and building a bill can take a while: a spinner says so on a terminal.
pub async fn run(args: AdminArgs) -> ExitCode {
    let mut out = std::io::stdout();
    let spinner = match &args.command {
        AdminCommand::Apply { .. } => {
            Some(crate::progress::spinner("applying the organization file"))
        }
        AdminCommand::Bill { .. } => Some(crate::progress::spinner("building the bill")),
        _ => None,
    };
    let result = run_admin(args, &mut out).await;
    if let Some(pb) = &spinner {
        crate::progress::done(pb);
    }
    exit(result)
}

/// Run `gaterouter usage`: one analytics report.
pub async fn usage(args: UsageArgs) -> ExitCode {
    exit(run_usage(args, &mut std::io::stdout()).await)
}

fn exit(result: Result<(), gaterouter_collector::admin_cli::AdminError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
