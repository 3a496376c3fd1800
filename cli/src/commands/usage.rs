//! `gaterouter keys new`, `gaterouter spool status`, `gaterouter spool flush`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use gaterouter::usage::spool::DEAD_LETTER_FILE;
use gaterouter::usage::{Spool, configured_spool_dirs, default_spool_base, generate_key};
use gaterouter::{Client, Config, Error};

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Make an Ed25519 signing key: writes the secret to FILE (mode 0600) and prints the
    /// public key to register with the collector.
    New {
        /// Where to write the secret key (base64 seed).
        #[arg(long, default_value = "gaterouter-signing.key")]
        out: PathBuf,
    },
}

/// `spool` subcommands.
#[derive(Debug, Subcommand)]
pub enum SpoolAction {
    /// Pending records, bytes, segments, dead letters (counted per reason), overflow.
    /// The directory is resolved as the client does: `--dir`, else `reporting.spool_dir`,
    /// else every `p<N>` slot under `<data dir>/gaterouter/spool/<identity.api_key_id>`.
    Status {
        /// Spool directory (default: the one the config's client uses).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Deliver every pending record to the collector now and report what became of them
    /// (exits non-zero when records stay pending or the collector refused some).
    Flush {
        /// Spool directory (default: the one the config's client uses).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

/// Run `keys`.
pub fn keys(action: KeysAction) -> Result<(), Error> {
    match action {
        KeysAction::New { out } => {
            if out.exists() {
                return Err(Error::config(
                    out.display().to_string(),
                    "the file exists",
                    "choose another --out, or remove the old key first",
                ));
            }
            let (signer, public) = generate_key();
            write_secret(&out, signer.seed_base64().expose())?;
            println!(
                "secret key written to {} (keep it private; point [reporting] signing_key_file at it)",
                out.display()
            );
            println!("public key (register it with the collector): {public}");
            Ok(())
        }
    }
}

fn write_secret(path: &Path, text: &str) -> Result<(), Error> {
    gaterouter_collector::util::write_secret_file(path, text).map_err(|e| {
        Error::config(
            path.display().to_string(),
            format!("cannot write the key: {e}"),
            "check the directory",
        )
    })
}

/// The spool directories `spool` works on; a clear error when none exists.
fn spool_dirs(config: &Config, dir: Option<PathBuf>) -> Result<Vec<PathBuf>, Error> {
    let dirs = match dir {
        Some(d) => vec![d],
        None => configured_spool_dirs(&config.reporting, &config.identity),
    };
    if dirs.is_empty() {
        let base = default_spool_base(&config.identity);
        return Err(Error::config(
            "reporting.spool_dir",
            format!(
                "no spool directory found: reporting.spool_dir is not set and {} has no p<N> slot (identity.api_key_id = {})",
                base.display(),
                config.identity.api_key_id.as_deref().unwrap_or("unset")
            ),
            "pass --dir, or --config with the [identity] and [reporting] of the application whose records you want",
        ));
    }
    for d in &dirs {
        if !d.is_dir() {
            return Err(Error::config(
                "reporting.spool_dir",
                format!("spool directory {} does not exist", d.display()),
                "check the path (no record was ever written there), or pass --dir with the right one",
            ));
        }
    }
    Ok(dirs)
}

/// Dead letters per reason (most frequent first) and the last one's reason, from the
/// spool's dead-letter file.
fn dead_letter_reasons(dir: &std::path::Path) -> (Vec<serde_json::Value>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(dir.join(DEAD_LETTER_FILE)) else {
        return (Vec::new(), None);
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut last = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let reason = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "(unreadable dead-letter line)".to_owned());
        *counts.entry(reason.clone()).or_default() += 1;
        last = Some(reason);
    }
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (
        v.into_iter()
            .map(|(reason, count)| serde_json::json!({"reason": reason, "count": count}))
            .collect(),
        last,
    )
}

/// Run `spool`.
pub async fn spool(mut config: Config, action: SpoolAction) -> Result<(), Error> {
    match action {
        SpoolAction::Status { dir } => {
            for dir in spool_dirs(&config, dir)? {
                let s = Spool::inspect(&dir, config.reporting.max_spool_bytes).map_err(|e| {
                    Error::config(
                        dir.display().to_string(),
                        e.to_string(),
                        "check the directory",
                    )
                })?;
                let (reasons, last_dead) = dead_letter_reasons(&dir);
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    if s.last_error.is_none() {
                        o.insert(
                            "last_error".into(),
                            serde_json::json!(last_dead.map(|r| format!("dead-lettered: {r}"))),
                        );
                    }
                    o.insert(
                        "dead_letter_reasons".into(),
                        serde_json::Value::Array(reasons),
                    );
                }
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            Ok(())
        }
        SpoolAction::Flush { dir, timeout } => {
            let dirs = spool_dirs(&config, dir)?;
            let mut refused = 0;
            for d in dirs {
                config.reporting.spool_dir = Some(d.clone());
                let client = Client::new(config.clone())?;
                let out = client.flush(Duration::from_secs(timeout)).await?;
                client.shutdown().await?;
                println!(
                    "{}: drained: {}, delivered: {}, pending: {}, refused: {}",
                    d.display(),
                    out.drained,
                    out.delivered,
                    out.pending,
                    out.refused
                );
                for r in &out.refusals {
                    println!("  refused {} record(s): {}", r.count, r.reason);
                }
                if !out.drained {
                    return Err(Error::config(
                        "spool",
                        format!("{} records still pending in {}", out.pending, d.display()),
                        "check the collector URL and that it is up; rerun",
                    ));
                }
                refused += out.refused;
            }
            if refused > 0 {
                return Err(Error::config(
                    "spool",
                    format!(
                        "the collector refused {refused} record(s): they are in the dead-letter file"
                    ),
                    "fix the cause named above (often [identity] or the key's registration), see `gaterouter spool status`",
                ));
            }
            Ok(())
        }
    }
}
