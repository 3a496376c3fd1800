//! [`UsageError`]: every failure of the usage pipeline, naming what is wrong and the fix.

use std::path::PathBuf;

/// Errors of the usage pipeline. Each names what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// `[reporting]` configuration is wrong.
    #[error("config error at {location}: {message}. Fix: {fix}")]
    Config {
        /// Field, e.g. `reporting.batch_max_records`.
        location: String,
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
    /// The signing key cannot be loaded. Never contains key material.
    #[error("usage signing key from {origin}: {message}. Fix: {fix}")]
    Key {
        /// Where the key was read from (file path or variable name).
        origin: String,
        /// What is wrong with it.
        message: String,
        /// What to do.
        fix: String,
    },
    /// A tag breaks the bounds (count, key or value length).
    #[error("usage record tag `{key}`: {reason}")]
    InvalidTag {
        /// The tag key (shortened if huge).
        key: String,
        /// Which bound and the limit.
        reason: String,
    },
    /// A record field is invalid.
    #[error("usage record field `{field}`: {message}")]
    InvalidField {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The spool reached `max_spool_bytes`; the record was refused (and counted in
    /// [`crate::SpoolStatus::overflow_count`]).
    #[error(
        "usage spool {} is full ({used_bytes} of {max_bytes} bytes): record refused. Fix: check the collector is reachable (`gaterouter spool status`) or raise reporting.max_spool_bytes",
        dir.display()
    )]
    SpoolFull {
        /// Spool directory.
        dir: PathBuf,
        /// Bytes in use.
        used_bytes: u64,
        /// The cap.
        max_bytes: u64,
    },
    /// Another process (or another recorder) holds this spool directory.
    #[error(
        "usage spool {} is in use by another process ({holder}). Fix: give each process its own reporting.spool_dir",
        dir.display()
    )]
    SpoolLocked {
        /// Spool directory.
        dir: PathBuf,
        /// Content of the lock file (the holder's pid).
        holder: String,
    },
    /// Disk I/O failed (e.g. the disk is full: the record is refused, nothing already
    /// spooled is lost, and appends work again once space is free).
    #[error(
        "usage spool I/O error on {}: {source}. Fix: free disk space or make the spool directory writable (reporting.spool_dir); records already spooled are kept",
        path.display()
    )]
    Io {
        /// File or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A signature or signed record does not verify.
    #[error("usage record signature: {message}")]
    Signature {
        /// What failed.
        message: String,
    },
    /// The recorder was shut down.
    #[error("the usage recorder is shut down; records are no longer accepted")]
    ShutDown,
    /// A collector is configured but there is no tokio runtime to run the reporter.
    #[error(
        "the usage reporter needs a tokio runtime. Fix: call Recorder::start inside a tokio runtime"
    )]
    NoRuntime,
}

impl UsageError {
    /// Stable code for bindings and logs.
    pub fn code(&self) -> &'static str {
        match self {
            UsageError::Config { .. } | UsageError::Key { .. } | UsageError::NoRuntime => "CONFIG",
            UsageError::InvalidTag { .. } | UsageError::InvalidField { .. } => "INVALID_REQUEST",
            UsageError::SpoolFull { .. } => "SPOOL_FULL",
            UsageError::SpoolLocked { .. } => "SPOOL_LOCKED",
            UsageError::Io { .. } => "SPOOL_IO",
            UsageError::Signature { .. } => "SIGNATURE",
            UsageError::ShutDown => "SHUT_DOWN",
        }
    }
}

pub(crate) fn cfg_err(
    field: &str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> UsageError {
    UsageError::Config {
        location: format!("reporting.{field}"),
        message: message.into(),
        fix: fix.into(),
    }
}
