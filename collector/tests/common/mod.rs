//! Test harness: a collector on SQLite (temp file) or on a real PostgreSQL started for
//! the test (as the `postgres` user when run as root, on a loopback port, in a temp
//! dir, stopped on drop), plus record-signing helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use gaterouter::config::Identity;
use gaterouter::usage::signing::wire_json;
use gaterouter::usage::{
    RecordId, RouteInfo, RouteMode, SdkInfo, UsageRecord, UsageRecordInput, UsageSigner,
    UsageStatus,
};
use gaterouter_collector::{CollectorConfig, CollectorHandle};
use serde_json::{Value, json};

/// `sqlite_tests!(a, b)` inside `mod sqlite { }`: one `#[tokio::test]` per scenario
/// `async fn a(db: Option<String>)` of the parent module, on a fresh SQLite file (`None`).
/// Visible with `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! sqlite_tests {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() { super::$name(None).await }
    )*};
}

/// `postgres_scenarios!(pg; a, b)`: run each scenario on a fresh database of the started
/// PostgreSQL `pg`, naming it on stderr first.
#[allow(unused_macros)]
macro_rules! postgres_scenarios {
    ($pg:expr; $($name:ident),*) => {$(
        eprintln!("postgres: {}", stringify!($name));
        $name(Some($pg.new_db().await)).await;
    )*};
}

pub const ADMIN: &str = "test-admin-token-0123456789";

/// A running PostgreSQL server; stopped and deleted on drop.
pub struct Pg {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
    next_db: AtomicU32,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_bin_dir() -> Option<PathBuf> {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
        v.sort();
        v.reverse();
        cands.extend(v);
    }
    if let Ok(path) = std::env::var("PATH") {
        cands.extend(std::env::split_paths(&path));
    }
    cands.into_iter().find(|d| {
        d.join("initdb").exists() && d.join("pg_ctl").exists() && d.join("postgres").exists()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pg {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let cmd = args
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        if self.as_postgres {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &cmd])
                .output()
                .unwrap()
        } else {
            Command::new("sh").args(["-c", &cmd]).output().unwrap()
        }
    }

    /// Start a server, or `None` (with a message) when PostgreSQL is not installed.
    pub fn start() -> Option<Pg> {
        let Some(bin) = pg_bin_dir() else {
            if std::env::var("GATEROUTER_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!(
                    "PostgreSQL binaries (initdb, pg_ctl, postgres) not found and GATEROUTER_TEST_REQUIRE_POSTGRES=1"
                );
            }
            eprintln!(
                "SKIPPED: PostgreSQL binaries (initdb, pg_ctl, postgres) not found; install `postgresql` to run the PostgreSQL tests (.ci/run does)"
            );
            return None;
        };
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("collector-pg")
            .tempdir_in("/tmp")
            .unwrap();
        if as_postgres {
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres:postgres", dir.path().to_str().unwrap()])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let port = free_port();
        let pg = Pg {
            dir,
            port,
            bin,
            as_postgres,
            next_db: AtomicU32::new(0),
        };
        let data = pg.dir.path().join("data");
        let data = data.to_str().unwrap();
        let initdb = pg.bin.join("initdb");
        let o = pg.run(&[
            initdb.to_str().unwrap(),
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        assert!(
            o.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("pg.log");
        let pg_ctl = pg.bin.join("pg_ctl");
        let o = pg.run(&[
            pg_ctl.to_str().unwrap(),
            "-D",
            data,
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        assert!(
            o.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Some(pg)
    }

    /// URL of the server's `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Create a fresh database and return its URL.
    pub async fn new_db(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&self.admin_url())
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let pg_ctl = self.bin.join("pg_ctl");
        let _ = self.run(&[
            pg_ctl.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
    }
}

/// Which database a test uses.
#[derive(Debug, Clone)]
pub enum DbKind {
    Sqlite(PathBuf),
    Url(String),
}

/// A collector plus an HTTP client.
pub struct Env {
    pub handle: CollectorHandle,
    pub http: reqwest::Client,
    pub base: String,
    pub _tmp: tempfile::TempDir,
}

pub fn base_config(db: &str) -> CollectorConfig {
    CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: Some(db.to_owned()),
        admin_token: Some(ADMIN.into()),
        strongest_model: Some("openai/gpt-4o".into()),
        shutdown_timeout_secs: 10,
        // The tests replay records of January 2026 on purpose.
        max_record_age_days: 3650,
        ..Default::default()
    }
}

impl Env {
    pub async fn start(db: Option<String>, tweak: impl FnOnce(&mut CollectorConfig)) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tmp = tempfile::tempdir().unwrap();
        let url = db.unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("c.db").display()));
        let mut cfg = base_config(&url);
        tweak(&mut cfg);
        let handle = gaterouter_collector::spawn(cfg).await.unwrap();
        let base = handle.url();
        Env {
            handle,
            http: reqwest::Client::new(),
            base,
            _tmp: tmp,
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_text(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub async fn admin_ok(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.post(path, Some(ADMIN), &body).await;
        assert!(s == 200 || s == 201, "{path} {body}: {s} {v}");
        v
    }

    /// Create org acme, departments eng and sales, users alice/bob (eng), carol (sales),
    /// keys k_eng (acme/eng) and k_sales (acme/sales).
    pub async fn seed_org(&self) -> (UsageSigner, UsageSigner) {
        self.admin_ok("/v1/admin/orgs", json!({"id": "acme", "name": "Acme"}))
            .await;
        self.admin_ok(
            "/v1/admin/departments",
            json!({"id": "eng", "org_id": "acme"}),
        )
        .await;
        self.admin_ok(
            "/v1/admin/departments",
            json!({"id": "sales", "org_id": "acme"}),
        )
        .await;
        self.admin_ok(
            "/v1/admin/users",
            json!({"id": "alice", "org_id": "acme", "department_id": "eng"}),
        )
        .await;
        self.admin_ok(
            "/v1/admin/users",
            json!({"id": "bob", "org_id": "acme", "department_id": "eng"}),
        )
        .await;
        self.admin_ok(
            "/v1/admin/users",
            json!({"id": "carol", "org_id": "acme", "department_id": "sales"}),
        )
        .await;
        let eng = signer(1);
        let sales = signer(2);
        self.admin_ok("/v1/admin/keys", json!({"id": "k_eng", "org_id": "acme", "department_id": "eng", "public_key": eng.public_key()})).await;
        self.admin_ok("/v1/admin/keys", json!({"id": "k_sales", "org_id": "acme", "department_id": "sales", "public_key": sales.public_key()})).await;
        (eng, sales)
    }

    pub async fn ingest(&self, wires: &[String]) -> (u16, Value) {
        let body = format!("{{\"records\":[{}]}}", wires.join(","));
        let resp = self
            .http
            .post(format!("{}/v1/usage", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }
}

/// A request signed with the key's Ed25519 key (`/v1/policy`, `/v1/reservations`).
pub async fn signed(
    env: &Env,
    signer: &UsageSigner,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = gaterouter::accounts::request_auth::authorization(
        signer,
        key,
        method,
        path,
        gaterouter::usage::unix_ms_now(),
        bytes.as_bytes(),
    );
    let r = if method == "GET" {
        env.http.get(format!("{}{path}", env.base))
    } else {
        env.http
            .post(format!("{}{path}", env.base))
            .header("content-type", "application/json")
            .body(bytes)
    };
    let resp = r.header("authorization", auth).send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

pub fn signer(n: u8) -> UsageSigner {
    UsageSigner::from_seed(&[n; 32])
}

/// Parameters of one test record.
#[derive(Debug, Clone)]
pub struct Spec {
    pub key: &'static str,
    pub dept: &'static str,
    pub user: &'static str,
    pub model: &'static str,
    pub ts: u64,
    pub latency: u64,
    /// Time to first token (a streamed call), if any.
    pub ttft: Option<u64>,
    pub status: UsageStatus,
    pub tier: Option<&'static str>,
    pub tags: &'static [(&'static str, &'static str)],
    pub prompt: u64,
    pub completion: u64,
    pub client_cost: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            key: "k_eng",
            dept: "eng",
            user: "alice",
            model: "gpt-4o-mini",
            ts: 1_768_471_200_000, // 2026-01-15T10:00:00Z
            latency: 100,
            ttft: None,
            status: UsageStatus::Ok,
            tier: None,
            tags: &[],
            prompt: 10_000,
            completion: 1_000,
            client_cost: 2_100,
        }
    }
}

pub fn record(s: &Spec) -> UsageRecord {
    let ident = Identity {
        org: Some("acme".into()),
        department: Some(s.dept.into()),
        user: Some(s.user.into()),
        api_key_id: Some(s.key.into()),
        ..Default::default()
    };
    let input = UsageRecordInput {
        ts_start: s.ts,
        ts_end: s.ts + s.latency,
        provider: "openai".into(),
        model: s.model.into(),
        route: Some(match s.tier {
            Some(t) => RouteInfo {
                mode: RouteMode::Auto,
                tier: Some(t.into()),
                score: Some(500),
                ..Default::default()
            },
            None => RouteInfo {
                mode: RouteMode::Explicit,
                tier: None,
                score: None,
                ..Default::default()
            },
        }),
        prompt_tokens: s.prompt,
        completion_tokens: s.completion,
        cost_micros: s.client_cost,
        latency_ms: s.latency,
        time_to_first_token_ms: s.ttft,
        stream: s.ttft.is_some(),
        status: Some(s.status),
        attempts: 1,
        tags: s
            .tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    UsageRecord::build(input, &ident, &SdkInfo::rust(), RecordId::new_v7(), 1).unwrap()
}

pub fn sign(rec: &UsageRecord, signer: &UsageSigner) -> String {
    let (c, sig) = signer.sign_record(rec).unwrap();
    wire_json(&c, &sig)
}

/// A signed feedback record (issue 20) of `key` on `record_id`, as the SDK writes it;
/// `tweak` changes it before signing (to test refusals).
pub fn feedback(
    key: &str,
    record_id: &gaterouter::usage::RecordId,
    score: f64,
    signer: &UsageSigner,
    tweak: impl FnOnce(&mut gaterouter::usage::FeedbackRecord),
) -> (gaterouter::usage::FeedbackRecord, String) {
    let ident = Identity {
        api_key_id: Some(key.into()),
        ..Default::default()
    };
    let input = gaterouter::usage::FeedbackInput {
        record_id: record_id.0.clone(),
        score,
        ..Default::default()
    };
    let mut fb = gaterouter::usage::FeedbackRecord::build(
        input,
        &ident,
        &SdkInfo::rust(),
        RecordId::new_v7(),
        9,
        gaterouter::usage::unix_ms_now(),
    )
    .unwrap();
    tweak(&mut fb);
    let v = serde_json::to_value(&fb).unwrap();
    let canonical = gaterouter::usage::canonical::canonicalize(&v).unwrap();
    let wire = wire_json(&canonical, &signer.sign(canonical.as_bytes()));
    (fb, wire)
}

pub fn wire(s: &Spec, signer: &UsageSigner) -> String {
    sign(&record(s), signer)
}

pub fn ids(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| x["id"].as_str().unwrap().to_owned())
        })
        .collect()
}

pub fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

pub const JAN15_1000: u64 = 1_768_471_200_000;
pub const JAN15_1030: u64 = 1_768_473_000_000;
pub const JAN16_1100: u64 = 1_768_561_200_000;
pub const FEB03_0900: u64 = 1_770_109_200_000;
pub const FEB03_0930: u64 = 1_770_111_000_000;

/// The seeded set of the analytics tests (hand-computed expectations below).
pub async fn seed_analytics(env: &Env) {
    let (eng, sales) = env.seed_org().await;
    let mini = 2_100; // 10k/1k tokens on gpt-4o-mini
    let big = 35_000; // 10k x $2.50/M + 1k x $10/M on gpt-4o
    let recs = [
        (
            Spec {
                ts: JAN15_1000,
                latency: 100,
                tier: Some("small"),
                tags: &[("team", "a")],
                ..Spec::default()
            },
            &eng,
        ),
        (
            Spec {
                ts: JAN15_1030,
                latency: 300,
                model: "gpt-4o",
                client_cost: big,
                tier: Some("large"),
                tags: &[("team", "a")],
                ..Spec::default()
            },
            &eng,
        ),
        (
            Spec {
                ts: JAN16_1100,
                latency: 200,
                user: "bob",
                status: gaterouter::usage::UsageStatus::parse("RATE_LIMITED").unwrap(),
                tier: Some("small"),
                ..Spec::default()
            },
            &eng,
        ),
        (
            Spec {
                key: "k_sales",
                dept: "sales",
                user: "carol",
                ts: FEB03_0900,
                latency: 400,
                model: "gpt-4o",
                client_cost: big,
                ..Spec::default()
            },
            &sales,
        ),
        (
            Spec {
                key: "k_sales",
                dept: "sales",
                user: "carol",
                ts: FEB03_0930,
                latency: 500,
                tier: Some("small"),
                client_cost: mini,
                ..Spec::default()
            },
            &sales,
        ),
    ];
    let wires: Vec<String> = recs.iter().map(|(s, k)| wire(s, k)).collect();
    let (_, v) = env.ingest(&wires).await;
    assert_eq!(ids(&v, "accepted").len(), 5, "{v}");
}

/// The row of the record `s` (with `id`, `org` and `spend_micros`) written into
/// `usage_records` behind ingest's back, with the columns every schema version has
/// (provider openai, no tokens).
pub async fn insert_raw_record(
    db: &gaterouter_collector::db::Db,
    id: &str,
    org: &str,
    s: &Spec,
    spend_micros: i64,
) {
    use gaterouter_collector::db::Param;
    let (t, ts) = (|s: &str| Param::Text(s.to_owned()), Param::I64(s.ts as i64));
    // From migration 9 on, PostgreSQL partitions raw records by month; tests of older
    // schema versions write into the plain table.
    let partitioned = db.backend() == gaterouter_collector::db::Backend::Postgres
        && !db
            .fetch(
                "SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'usage_records'::regclass",
                &[],
                "test",
            )
            .await
            .expect("reading pg_partitioned_table")
            .is_empty();
    if partitioned {
        db.ensure_partitions(&[gaterouter_collector::time::month_of_ms(s.ts)])
            .await
            .expect("partition for the record's month");
    }
    db.exec(
        "INSERT INTO usage_records (id, api_key_id, seq, ts_start, ts_end, month, org, department, usr, provider, model, prompt_tokens, completion_tokens,
         cached_prompt_tokens, cache_write_tokens, reasoning_tokens, total_tokens, client_cost_micros, cost_mismatch, spend_micros, latency_ms, status, is_error,
         attempts, stream, tags, sdk_name, sdk_version, sdk_language, signature, received_ms)
         VALUES ($1, $2, 99, $3, $3, $4, $5, $6, $7, 'openai', $8, 0, 0, 0, 0, 0, 0, 0, 0, $9, 0, $10, 0, 1, 0, '{}', 'gaterouter-rust', '0.1.0', 'rust', 'x', $3)",
        &[
            t(id),
            t(s.key),
            ts,
            Param::I64(gaterouter_collector::time::month_of_ms(s.ts)),
            t(org),
            t(s.dept),
            t(s.user),
            t(s.model),
            Param::I64(spend_micros),
            t(s.status.as_str()),
        ],
        "inserting a raw usage record",
    )
    .await
    .unwrap();
}
