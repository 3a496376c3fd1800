//! `rel-collector --listen ADDR --db URL --admin-token T`: the collector as a process the
//! collector-fault suite can SIGKILL (the library's `serve`, nothing else).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cfg = gaterouter_collector::CollectorConfig {
        strongest_model: Some("openai/gpt-4o".into()),
        ..Default::default()
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [k, v] = pair else {
            eprintln!("error: expected --name value pairs");
            return ExitCode::from(2);
        };
        let field = k.trim_start_matches("--").replace('-', "_");
        if let Err(e) = cfg.set(&field, v) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = cfg.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
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
