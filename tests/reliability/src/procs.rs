//! Processes and checks shared by the crash, collector-fault and budget suites: a
//! collector process that can be SIGKILLed and restarted on the same port and database,
//! app processes, the admin calls that set up an org and its keys, and the final audit
//! of the collector database against the apps' logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gaterouter::config::{Config, Identity};
use gaterouter::usage::{UsageRecord, UsageSigner};
use serde_json::{Value, json};

use crate::app::{CALL_TAG, LogEntry};

/// Admin token of every collector the suites start.
pub const ADMIN: &str = "reliability-admin-token-0123456789";
/// Org, department and user of the apps.
pub const ORG: &str = "acme";
/// Department of the apps.
pub const DEPT: &str = "eng";
/// User of the apps.
pub const USER: &str = "alice";

/// `GET /healthz` on 127.0.0.1:`port` answers 200 (blocking, 1 s timeouts).
fn healthz_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// A free loopback port (bound and released; the collector reuses it across restarts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A collector running as a child process (`rel-collector`), killable with SIGKILL.
#[derive(Debug)]
pub struct CollectorProc {
    bin: PathBuf,
    /// Listen port (fixed across restarts).
    pub port: u16,
    /// Database URL.
    pub db: String,
    log: PathBuf,
    child: Option<Child>,
}

impl CollectorProc {
    /// Start on `port` with `db`; waits until `/healthz` answers. When another process
    /// took the port since [`free_port`] released it (the collector exits: address in
    /// use), starts on another free port (up to 3 times).
    pub fn start(bin: &Path, port: u16, db: &str, log: &Path) -> Result<CollectorProc, String> {
        let mut c = CollectorProc {
            bin: bin.to_owned(),
            port,
            db: db.to_owned(),
            log: log.to_owned(),
            child: None,
        };
        let mut tries = 0;
        loop {
            match c.restart() {
                Ok(()) => return Ok(c),
                Err(e) if tries < 3 && e.contains("in use") => {
                    tries += 1;
                    c.port = free_port();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)start it; waits until it answers (up to 30 s).
    pub fn restart(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err("collector already running".into());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("collector log: {e}"))?;
        let child = Command::new(&self.bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--db",
                &self.db,
                "--admin-token",
                ADMIN,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            self.check_alive()?;
            // Ready when `/healthz` answers 200 while our child still runs: a bare TCP
            // connect also succeeds when another process holds the port (ours then fails
            // to bind and exits a moment later), so ask over HTTP and look again.
            if healthz_ok(self.port) {
                std::thread::sleep(Duration::from_millis(50));
                self.check_alive()?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "collector did not listen within 30 s; log: {}",
            tail(&self.log)
        ))
    }

    /// An error with the log's tail when the child has exited.
    fn check_alive(&mut self) -> Result<(), String> {
        if let Some(ch) = self.child.as_mut()
            && let Ok(Some(st)) = ch.try_wait()
        {
            self.child = None;
            return Err(format!(
                "collector exited at start ({st}); log {}: {}",
                self.log.display(),
                tail(&self.log)
            ));
        }
        Ok(())
    }

    /// Process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL it and reap it.
    pub fn kill(&mut self) {
        if let Some(mut ch) = self.child.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }

    /// Is it running?
    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for CollectorProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Last 2 000 bytes of a log file.
pub fn tail(path: &Path) -> String {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let start = t.len().saturating_sub(2000);
    let start = (start..t.len())
        .find(|i| t.is_char_boundary(*i))
        .unwrap_or(t.len());
    t[start..].to_owned()
}

/// Start an app process (`rel-app`) with these arguments; its stderr goes to `stderr_log`.
pub fn spawn_app(bin: &Path, args: &[String], stderr_log: &Path) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_log)
        .map_err(|e| format!("app log: {e}"))?;
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))
}

/// Minimal admin client of a collector.
#[derive(Debug, Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    /// Admin client for `base`.
    pub fn new(base: &str) -> Admin {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Admin {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// `method path` with the admin token and a JSON body; (status, body).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.map_err(|e| format!("{path}: {e}"))?;
        let s = resp.status().as_u16();
        Ok((s, resp.json().await.unwrap_or(Value::Null)))
    }

    /// POST and require 200/201.
    pub async fn post_ok(&self, path: &str, body: Value) -> Result<Value, String> {
        let (s, v) = self.send(reqwest::Method::POST, path, Some(&body)).await?;
        if s == 200 || s == 201 {
            Ok(v)
        } else {
            Err(format!("POST {path} {body}: {s} {v}"))
        }
    }

    /// Create org `acme`, department `eng`, user `alice`, and one key per signer
    /// (`(key id, signer)`), bound to acme/eng/alice.
    pub async fn seed(&self, keys: &[(String, &UsageSigner)]) -> Result<(), String> {
        self.post_ok("/v1/admin/orgs", json!({"id": ORG, "name": "Acme"}))
            .await?;
        self.post_ok("/v1/admin/departments", json!({"id": DEPT, "org_id": ORG}))
            .await?;
        self.post_ok(
            "/v1/admin/users",
            json!({"id": USER, "org_id": ORG, "department_id": DEPT}),
        )
        .await?;
        for (id, s) in keys {
            self.post_ok("/v1/admin/keys", json!({"id": id, "org_id": ORG, "department_id": DEPT, "user_id": USER, "public_key": s.public_key()})).await?;
        }
        Ok(())
    }
}

/// Write the signing key of `signer` to `dir/<name>.key` and return the path.
pub fn write_key(dir: &Path, name: &str, signer: &UsageSigner) -> Result<PathBuf, String> {
    let p = dir.join(format!("{name}.key"));
    std::fs::write(&p, signer.seed_base64().expose())
        .map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

/// Client config of an app: providers at the emulator, records signed by `key_id` and
/// sent to `collector` from `spool`, batches sent quickly.
pub fn app_config(
    emulator: &str,
    collector: &str,
    key_id: &str,
    key_file: &Path,
    spool: &Path,
) -> Config {
    let mut cfg = Config::for_emulator(emulator);
    cfg.identity = Identity {
        org: Some(ORG.into()),
        department: Some(DEPT.into()),
        user: Some(USER.into()),
        api_key_id: Some(key_id.into()),
        ..Default::default()
    };
    cfg.reporting.collector_url = Some(collector.to_owned());
    cfg.reporting.spool_dir = Some(spool.to_owned());
    cfg.reporting.signing_key_file = Some(key_file.to_owned());
    cfg.reporting.batch_max_age_ms = 50;
    cfg.reporting.batch_max_records = 50;
    cfg.reporting.retry_initial_backoff_ms = 50;
    cfg.reporting.retry_max_backoff_ms = 500;
    cfg.reporting.request_timeout_ms = 3_000;
    cfg
}

/// Write a config as JSON for `rel-app --config`.
pub fn write_config(path: &Path, cfg: &Config) -> Result<(), String> {
    let text = serde_json::to_string_pretty(cfg).map_err(|e| format!("config to JSON: {e}"))?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One stored usage record, as read back from the database.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Record id.
    pub id: String,
    /// Signing key id.
    pub api_key_id: String,
    /// The `call` tag (the app's call id), if any.
    pub call: Option<String>,
    /// Status code string.
    pub status: String,
    /// What counts against budgets.
    pub spend_micros: i64,
    /// Did its signature verify over the record rebuilt from the stored columns?
    pub verifies: bool,
}

/// Read every usage record of a collector database and re-verify each signature against
/// the public keys given (`key id -> base64 public key`). A record whose stored fields
/// were torn or altered no longer matches its signature.
pub async fn read_records(
    db_url: &str,
    public_keys: &BTreeMap<String, String>,
) -> Result<Vec<StoredRecord>, String> {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(db_url)
        .await
        .map_err(|e| format!("connect {db_url}: {e}"))?;
    let rows = sqlx::query(
        "SELECT id, api_key_id, seq, ts_start, ts_end, org, department, project, grp, usr, provider, model, route_mode, route_tier, route_score, \
         prompt_tokens, completion_tokens, cached_prompt_tokens, cache_write_tokens, reasoning_tokens, client_cost_micros, latency_ms, ttft_ms, \
         status, attempts, stream, tags, sdk_name, sdk_version, sdk_language, signature, spend_micros, denied_rule, denied_level, attributed FROM usage_records",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| format!("reading usage_records: {e}"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let s = |i: usize| -> Result<String, String> {
            r.try_get::<String, _>(i)
                .map_err(|e| format!("column {i}: {e}"))
        };
        let os = |i: usize| -> Option<String> { r.try_get::<Option<String>, _>(i).ok().flatten() };
        let n = |i: usize| -> Result<i64, String> {
            r.try_get::<i64, _>(i)
                .map_err(|e| format!("column {i}: {e}"))
        };
        let on = |i: usize| -> Option<i64> { r.try_get::<Option<i64>, _>(i).ok().flatten() };
        let id = s(0)?;
        let key = s(1)?;
        let tags: BTreeMap<String, String> =
            serde_json::from_str(&s(26)?).map_err(|e| format!("tags of {id}: {e}"))?;
        let mut route = serde_json::Map::new();
        if let Some(m) = os(12) {
            route.insert("mode".into(), json!(m));
            if let Some(t) = os(13) {
                route.insert("tier".into(), json!(t));
            }
            if let Some(sc) = on(14) {
                route.insert("score".into(), json!(sc));
            }
        }
        let mut v = json!({
            "schema_version": 1, "id": id, "seq": n(2)?, "ts_start": n(3)?, "ts_end": n(4)?,
            "api_key_id": key, "provider": s(10)?, "model": s(11)?,
            "prompt_tokens": n(15)?, "completion_tokens": n(16)?, "cached_prompt_tokens": n(17)?,
            "cache_write_tokens": n(18)?, "reasoning_tokens": n(19)?, "cost_micros": n(20)?, "latency_ms": n(21)?,
            "status": s(23)?, "attempts": n(24)?, "stream": n(25)? != 0, "tags": tags,
            "sdk": {"name": s(27)?, "version": s(28)?, "language": s(29)?},
        });
        let obj = v.as_object_mut().ok_or("record object")?;
        // Units the collector filled from the key's binding were absent in the signed record.
        let attributed: Vec<String> = os(34)
            .map(|a| a.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let signed = |name: &str| !attributed.iter().any(|a| a == name);
        let org = s(5)?;
        if !org.is_empty() && signed("org") {
            obj.insert("org".into(), json!(org));
        }
        for (i, name) in [(6, "department"), (7, "project"), (8, "group"), (9, "user")] {
            if let Some(x) = os(i).filter(|_| signed(name)) {
                obj.insert(name.into(), json!(x));
            }
        }
        for (i, name) in [(32, "denied_rule"), (33, "denied_level")] {
            if let Some(x) = os(i) {
                obj.insert(name.into(), json!(x));
            }
        }
        if !route.is_empty() {
            obj.insert("route".into(), Value::Object(route));
        }
        if let Some(t) = on(22) {
            obj.insert("time_to_first_token_ms".into(), json!(t));
        }
        let signature = s(30)?;
        let verifies = match (
            serde_json::from_value::<UsageRecord>(v),
            public_keys.get(&key),
        ) {
            (Ok(rec), Some(pk)) => rec.canonical_json().is_ok_and(|c| {
                gaterouter::usage::signing::verify(pk, c.as_bytes(), &signature).is_ok()
            }),
            _ => false,
        };
        out.push(StoredRecord {
            call: tags.get(CALL_TAG).cloned(),
            id,
            api_key_id: key,
            status: s(23)?,
            spend_micros: n(31)?,
            verifies,
        });
    }
    let _ = conn.close().await;
    Ok(out)
}

/// The comparison of app logs with the database.
#[derive(Debug, Default, Clone)]
pub struct Audit {
    /// Calls the apps logged as answered.
    pub calls_logged: usize,
    /// Records in the database.
    pub records: usize,
    /// Logged calls without a record.
    pub lost: Vec<String>,
    /// Call ids with more than one record.
    pub duplicates: Vec<String>,
    /// Records whose signature does not verify over their stored fields.
    pub torn: Vec<String>,
    /// Records of calls the app did not log (killed between the record and the log
    /// line, or calls that failed): allowed, listed for the report.
    pub unlogged: usize,
}

impl Audit {
    /// Lost, duplicated and torn are all zero.
    pub fn clean(&self) -> bool {
        self.lost.is_empty() && self.duplicates.is_empty() && self.torn.is_empty()
    }
}

/// Compare: exactly one record per logged (`ok`) call, no call id twice, every record
/// verifies.
pub fn audit(logged: &[LogEntry], records: &[StoredRecord]) -> Audit {
    let mut by_call: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        if let Some(c) = &r.call {
            *by_call.entry(c.as_str()).or_default() += 1;
        }
    }
    let ok: BTreeSet<&str> = logged
        .iter()
        .filter_map(|e| match e {
            LogEntry::Ok(c) => Some(c.as_str()),
            _ => None,
        })
        .collect();
    Audit {
        calls_logged: ok.len(),
        records: records.len(),
        lost: ok
            .iter()
            .filter(|c| !by_call.contains_key(*c))
            .map(|c| (*c).to_owned())
            .collect(),
        duplicates: by_call
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(c, _)| (*c).to_owned())
            .collect(),
        torn: records
            .iter()
            .filter(|r| !r.verifies)
            .map(|r| r.id.clone())
            .collect(),
        unlogged: by_call.keys().filter(|c| !ok.contains(*c)).count(),
    }
}

/// Poll `f` every 100 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
