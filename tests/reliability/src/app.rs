//! The "app" process of the suites (`src/bin/rel-app.rs`): it makes calls through the
//! SDK, alternating plain and streaming ones, and appends one line per finished call to
//! an fsynced log, so a test can compare what the app saw with what the collector
//! stored after the app was killed at any moment.
//!
//! Every call carries the metadata tag `call=<prefix>-<n>-<uuid>` (metadata becomes the
//! usage record's tags), which is how a log line is matched with its record: the SDK
//! does not hand the record id back to the caller.
//!
//! Log lines (one `write` + `fsync` each, so a kill leaves at most a partial last line,
//! which readers ignore):
//! - `ok <call>`: the call answered (for a stream: the last chunk was read);
//! - `err <call> <CODE>`: the call failed with that `ErrorKind` code.
//!
//! When the app exits normally it flushes the reporter first and writes `done <n>`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gaterouter::Client;
use gaterouter::config::Config;
use gaterouter::types::{ChatRequest, Message};

/// Metadata key carrying the call id.
pub const CALL_TAG: &str = "call";

/// What one app run does (command line `--name value` pairs).
#[derive(Debug, Clone)]
pub struct AppArgs {
    /// JSON `gaterouter::config::Config` (use `reporting.signing_key_file`, the key is
    /// never inlined).
    pub config: PathBuf,
    /// Call log (appended).
    pub log: PathBuf,
    /// Calls to make; 0 = until killed.
    pub calls: u64,
    /// Call id prefix (unique per process start).
    pub prefix: String,
    /// Model of every call.
    pub model: String,
    /// `max_tokens` of every call (bounds what a reservation holds).
    pub max_tokens: u32,
    /// Pause between calls.
    pub pause_ms: u64,
    /// How long to wait for delivery before exiting normally.
    pub flush_ms: u64,
    /// Stop calling (then flush and exit) once this file exists.
    pub stop_file: Option<PathBuf>,
}

impl AppArgs {
    /// Parse `--config P --log P [--calls N] [--prefix S] [--model M] [--max-tokens N]
    /// [--pause-ms N] [--flush-ms N] [--stop-file P]`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<AppArgs, String> {
        let mut m: BTreeMap<String, String> = BTreeMap::new();
        let mut it = args.into_iter();
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                return Err(format!("unexpected argument `{k}`: expected --name value"));
            };
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            m.insert(name.to_owned(), v);
        }
        let num = |k: &str, d: u64| -> Result<u64, String> {
            m.get(k).map_or(Ok(d), |v| {
                v.parse()
                    .map_err(|_| format!("--{k} must be a whole number, got `{v}`"))
            })
        };
        let args = AppArgs {
            config: m
                .get("config")
                .map(PathBuf::from)
                .ok_or("--config FILE is required")?,
            log: m
                .get("log")
                .map(PathBuf::from)
                .ok_or("--log FILE is required")?,
            calls: num("calls", 0)?,
            prefix: m
                .get("prefix")
                .cloned()
                .unwrap_or_else(|| format!("p{}", std::process::id())),
            model: m
                .get("model")
                .cloned()
                .unwrap_or_else(|| "openai/gpt-4o-mini".into()),
            max_tokens: u32::try_from(num("max-tokens", 64)?)
                .map_err(|_| "--max-tokens is too large")?,
            pause_ms: num("pause-ms", 0)?,
            flush_ms: num("flush-ms", 20_000)?,
            stop_file: m.get("stop-file").map(PathBuf::from),
        };
        for k in m.keys() {
            if ![
                "config",
                "log",
                "calls",
                "prefix",
                "model",
                "max-tokens",
                "pause-ms",
                "flush-ms",
                "stop-file",
            ]
            .contains(&k.as_str())
            {
                return Err(format!("unknown option --{k}"));
            }
        }
        Ok(args)
    }
}

/// The fsynced call log.
#[derive(Debug)]
pub struct CallLog {
    file: File,
}

impl CallLog {
    /// Open `path` for appending (created if missing).
    pub fn open(path: &Path) -> std::io::Result<CallLog> {
        Ok(CallLog {
            file: OpenOptions::new().create(true).append(true).open(path)?,
        })
    }

    /// Append one line and fsync it before returning.
    pub fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.file.write_all(format!("{text}\n").as_bytes())?;
        self.file.sync_data()
    }
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// The call answered.
    Ok(String),
    /// The call failed with this error code.
    Err(String, String),
    /// The app exited normally after this many calls.
    Done(u64),
}

/// Read a call log; a last line without its newline (the app was killed while writing
/// it) is ignored.
pub fn read_log(path: &Path) -> std::io::Result<Vec<LogEntry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    Ok(complete
        .lines()
        .filter_map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            match parts.as_slice() {
                ["ok", id] => Some(LogEntry::Ok((*id).to_owned())),
                ["err", id, code] => Some(LogEntry::Err((*id).to_owned(), (*code).to_owned())),
                ["done", n] => n.parse().ok().map(LogEntry::Done),
                _ => None,
            }
        })
        .collect())
}

/// Run the app: make the calls, log each, flush, write `done`.
pub async fn run(args: &AppArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| format!("cannot read {}: {e}", args.config.display()))?;
    let config: Config = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a JSON config: {e}", args.config.display()))?;
    let client = Client::new(config).map_err(|e| format!("cannot build the client: {e}"))?;
    let mut log =
        CallLog::open(&args.log).map_err(|e| format!("cannot open {}: {e}", args.log.display()))?;
    let mut n = 0u64;
    while (args.calls == 0 || n < args.calls)
        && !args.stop_file.as_ref().is_some_and(|p| p.exists())
    {
        let call = format!("{}-{n}-{}", args.prefix, uuid::Uuid::now_v7().simple());
        let mut req = ChatRequest::new(
            args.model.clone(),
            vec![Message::user(format!("reliability call {call}"))],
        );
        req.max_tokens = Some(args.max_tokens);
        req.metadata.insert(CALL_TAG.into(), call.clone());
        let outcome = if n % 2 == 1 {
            match client.chat_stream(req).await {
                Ok(s) => s.collect_response().await.map(|_| ()),
                Err(e) => Err(e),
            }
        } else {
            client.chat(req).await.map(|_| ())
        };
        let line = match outcome {
            Ok(()) => format!("ok {call}"),
            Err(e) => format!("err {call} {}", e.kind().code()),
        };
        log.line(&line)
            .map_err(|e| format!("cannot write {}: {e}", args.log.display()))?;
        n += 1;
        if args.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        }
    }
    let out = client
        .flush(Duration::from_millis(args.flush_ms))
        .await
        .map_err(|e| format!("flush: {e}"))?;
    log.line(&format!("done {n}"))
        .map_err(|e| format!("cannot write {}: {e}", args.log.display()))?;
    eprintln!("rel-app {}: {n} calls, flush {out:?}", args.prefix);
    Ok(())
}
