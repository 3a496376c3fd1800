//! Budget races across processes: one org with a hard monthly USD budget (applied with
//! `PUT /v1/admin/org-tree`), several app processes with `policy.enforce = "required"`
//! calling at the same time, each with its own key. Every call reserves its maximum cost
//! with the collector first, so the spend may pass the limit by at most one request's
//! maximum cost, however many processes race; every refused call is BUDGET_EXCEEDED.
//!
//! Short run: 3 processes x 10 calls; `GATEROUTER_RELIABILITY=full`: 8 x 50.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gaterouter::config::{Config, EnforceMode};
use gaterouter::types::{ChatRequest, Message};
use gaterouter::usage::UsageSigner;
use gaterouter_reliability::app::{LogEntry, read_log};
use gaterouter_reliability::procs::{self, Admin, CollectorProc};
use serde_json::json;

const APP: &str = env!("CARGO_BIN_EXE_rel-app");
const COLLECTOR: &str = env!("CARGO_BIN_EXE_rel-collector");
const MODEL: &str = "openai/gpt-4o";
const MAX_TOKENS: u32 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_hard_budget_overshoot_by_at_most_one_request() {
    let procs_n = gaterouter_reliability::scale(3, 8);
    let calls = gaterouter_reliability::scale(10, 50) as u64;
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    // One request's maximum cost (prompt + max_tokens at the catalog price): the
    // prompt of every call has the same shape as this one.
    let probe = gaterouter::Client::new(Config::for_emulator(&emu.base_url())).unwrap();
    let mut req = ChatRequest::new(
        MODEL,
        vec![Message::user(
            "reliability call b0-0-0190f0e1c2d37a8b9c0d1e2f3a4b5c6d",
        )],
    );
    req.max_tokens = Some(MAX_TOKENS);
    let max_cost = probe.estimate_cost(&req).unwrap().max.total_micros;
    // Room for about half of all the calls: refusals are certain, and late reservations
    // race for the last dollars.
    let limit = max_cost * (procs_n as u64 * calls) / 2;

    let db = format!("sqlite://{}", dir.join("collector.db").display());
    let collector = CollectorProc::start(
        Path::new(COLLECTOR),
        procs::free_port(),
        &db,
        &dir.join("collector.log"),
    )
    .unwrap();
    let admin = Admin::new(&collector.url());
    let signers: Vec<(String, UsageSigner)> = (0..procs_n)
        .map(|i| {
            (
                format!("k_b{i}"),
                UsageSigner::from_seed(&[i as u8 + 60; 32]),
            )
        })
        .collect();
    let tree = json!({
        "org": {"id": procs::ORG, "name": "Acme", "budgets": [{"metric": "usd", "period": "month", "limit": format!("{}.{:06}", limit / 1_000_000, limit % 1_000_000), "enforcement": "hard"}]},
        "departments": [{"id": procs::DEPT, "name": "Engineering"}],
        "members": [{"id": procs::USER, "name": "Alice", "department": procs::DEPT}],
        "keys": signers.iter().map(|(id, s)| json!({"id": id, "department": procs::DEPT, "user": procs::USER, "public_key": s.public_key()})).collect::<Vec<_>>(),
    });
    let (st, v) = admin
        .send(reqwest::Method::PUT, "/v1/admin/org-tree", Some(&tree))
        .await
        .unwrap();
    assert_eq!(st, 200, "{v}");

    let mut children = Vec::new();
    let mut logs = Vec::new();
    let mut keys = BTreeMap::new();
    for (i, (id, s)) in signers.iter().enumerate() {
        let key = procs::write_key(dir, id, s).unwrap();
        let mut cfg = procs::app_config(
            &emu.base_url(),
            &collector.url(),
            id,
            &key,
            &dir.join(format!("spool{i}")),
        );
        cfg.policy.enforce = EnforceMode::Required;
        let cfg_path = dir.join(format!("app{i}.json"));
        procs::write_config(&cfg_path, &cfg).unwrap();
        let log = dir.join(format!("calls{i}.log"));
        let args: Vec<String> = [
            "--config",
            cfg_path.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--prefix",
            &format!("b{i}"),
            "--calls",
            &calls.to_string(),
            "--model",
            MODEL,
            "--max-tokens",
            &MAX_TOKENS.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        children.push(
            procs::spawn_app(Path::new(APP), &args, &dir.join(format!("app{i}.stderr"))).unwrap(),
        );
        logs.push(log);
        keys.insert(id.clone(), s.public_key().to_owned());
    }
    for (i, mut ch) in children.into_iter().enumerate() {
        let st = tokio::task::spawn_blocking(move || ch.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(
            st.success(),
            "app {i}: {}",
            procs::tail(&dir.join(format!("app{i}.stderr")))
        );
    }
    let entries: Vec<LogEntry> = logs.iter().flat_map(|l| read_log(l).unwrap()).collect();
    procs::wait_until(Duration::from_secs(30), || async {
        procs::read_records(&db, &keys)
            .await
            .is_ok_and(|r| procs::audit(&entries, &r).lost.is_empty())
    })
    .await;
    let records = procs::read_records(&db, &keys).await.unwrap();
    let a = procs::audit(&entries, &records);
    let spend: i64 = records.iter().map(|r| r.spend_micros).sum();
    let max_actual = records.iter().map(|r| r.spend_micros).max().unwrap_or(0);
    let refused: Vec<&String> = entries
        .iter()
        .filter_map(|e| match e {
            LogEntry::Err(_, code) => Some(code),
            _ => None,
        })
        .collect();
    let other_errors: Vec<&&String> = refused
        .iter()
        .filter(|c| c.as_str() != "BUDGET_EXCEEDED")
        .collect();
    let overshoot = spend - limit as i64;
    println!(
        "RELIABILITY budget-races: processes={procs_n} calls_each={calls} limit_micros={limit} one_request_max_micros={max_cost} max_actual_micros={max_actual} \
         spend_micros={spend} overshoot_micros={overshoot} answered={} refused_budget={} other_errors={} records={} lost={} duplicates={} torn={} elapsed_s={:.1}",
        a.calls_logged,
        refused.len() - other_errors.len(),
        other_errors.len(),
        a.records,
        a.lost.len(),
        a.duplicates.len(),
        a.torn.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        other_errors.is_empty(),
        "refusals other than BUDGET_EXCEEDED: {other_errors:?}"
    );
    assert!(
        !refused.is_empty(),
        "the budget never refused a call: the test did not race"
    );
    assert!(a.calls_logged > 0, "no call passed");
    assert!(
        a.clean(),
        "lost {:?}, duplicated {:?}, torn {:?}",
        a.lost,
        a.duplicates,
        a.torn
    );
    assert!(
        spend <= (limit + max_cost) as i64,
        "spend {spend} > limit {limit} + one request's maximum {max_cost}"
    );
    // The collector's own counter agrees with the records.
    {
        use sqlx::{Connection as _, Row as _};
        let mut c = sqlx::AnyConnection::connect(&db).await.unwrap();
        let used: i64 = sqlx::query("SELECT COALESCE(SUM(used), 0) FROM budget_usage")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert_eq!(
            used, spend,
            "budget_usage.used differs from the sum of the records"
        );
    }
    drop(collector);
    emu.shutdown().await;
}
