//! `gaterouter keys new`, `gaterouter spool status`, `gaterouter spool flush`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use gaterouter::usage::{Spool, generate_key};
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
    /// Pending records, bytes, segments, dead letters, overflow.
    Status {
        /// Spool directory (default: the config's `reporting.spool_dir`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Deliver every pending record to the collector now.
    Flush {
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
                return Err(Error::config(out.display().to_string(), "the file exists", "choose another --out, or remove the old key first"));
            }
            let (signer, public) = generate_key();
            write_secret(&out, signer.seed_base64().expose())?;
            println!("secret key written to {} (keep it private; point [reporting] signing_key_file at it)", out.display());
            println!("public key (register it with the collector): {public}");
            Ok(())
        }
    }
}

fn write_secret(path: &PathBuf, text: &str) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::config(path.display().to_string(), format!("cannot write the key: {e}"), "check the directory");
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text).map_err(fail)
    }
}

/// Run `spool`.
pub async fn spool(config: Config, action: SpoolAction) -> Result<(), Error> {
    match action {
        SpoolAction::Status { dir } => {
            let dir = dir.or_else(|| config.reporting.spool_dir.clone()).ok_or_else(|| {
                Error::config("reporting.spool_dir", "no spool directory given", "pass --dir or set [reporting] spool_dir")
            })?;
            let s = Spool::inspect(&dir, config.reporting.max_spool_bytes)
                .map_err(|e| Error::config(dir.display().to_string(), e.to_string(), "check the directory"))?;
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            Ok(())
        }
        SpoolAction::Flush { timeout } => {
            let client = Client::new(config)?;
            let out = client.flush(Duration::from_secs(timeout)).await?;
            client.shutdown().await?;
            println!("drained: {}, pending: {}", out.drained, out.pending_records);
            if out.drained { Ok(()) } else { Err(Error::config("spool", format!("{} records still pending", out.pending_records), "check the collector URL and that it is up; rerun")) }
        }
    }
}
