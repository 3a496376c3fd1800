//! Crash suite: an app process calling through the SDK (plain and streaming calls,
//! against the emulator, reporting to a collector) is SIGKILLed at random moments, then
//! restarted on the same spool directory, which replays what was not delivered. At the
//! end the collector must hold exactly one record per call the app logged as answered,
//! no call twice, and every stored record must still verify against its signature.
//!
//! Short run: 5 kills; `GATEROUTER_RELIABILITY=full`: 50.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gaterouter::usage::UsageSigner;
use gaterouter_reliability::app::{LogEntry, read_log};
use gaterouter_reliability::procs::{self, Admin, CollectorProc};
use rand::Rng as _;

const APP: &str = env!("CARGO_BIN_EXE_rel-app");
const COLLECTOR: &str = env!("CARGO_BIN_EXE_rel-collector");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_app_loses_nothing_and_duplicates_nothing() {
    let kills = gaterouter_reliability::scale(5, 50);
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let db = format!("sqlite://{}", dir.join("collector.db").display());
    let collector = CollectorProc::start(
        Path::new(COLLECTOR),
        procs::free_port(),
        &db,
        &dir.join("collector.log"),
    )
    .unwrap();
    let admin = Admin::new(&collector.url());
    let signer = UsageSigner::from_seed(&[7; 32]);
    admin.seed(&[("k_app".into(), &signer)]).await.unwrap();
    let key = procs::write_key(dir, "k_app", &signer).unwrap();
    let cfg = procs::app_config(
        &emu.base_url(),
        &collector.url(),
        "k_app",
        &key,
        &dir.join("spool"),
    );
    let cfg_path = dir.join("app.json");
    procs::write_config(&cfg_path, &cfg).unwrap();
    let log = dir.join("calls.log");
    let app_err = dir.join("app.stderr");
    let args = |prefix: String, calls: u64| -> Vec<String> {
        [
            "--config",
            cfg_path.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--prefix",
            &prefix,
            "--calls",
            &calls.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };

    let mut rng = rand::rng();
    let mut answered_before_kill = Vec::new();
    for i in 0..kills {
        let before = ok_count(&log);
        let mut child =
            procs::spawn_app(Path::new(APP), &args(format!("k{i}"), 0), &app_err).unwrap();
        // Random moment. Even runs: 80-700 ms after the start (may hit start-up, before
        // any call). Odd runs: 0-300 ms after the first answered call (mid-call,
        // mid-stream, mid-delivery), so a slow machine still kills busy apps.
        if i % 2 == 1 {
            let t = Instant::now();
            while ok_count(&log) == before && t.elapsed() < Duration::from_secs(20) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(80..700))).await;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the app exited by itself: {}",
            procs::tail(&app_err)
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        answered_before_kill.push(ok_count(&log) - before);
    }
    // A last, clean run on the same spool replays whatever is left and flushes.
    let mut last = procs::spawn_app(Path::new(APP), &args("final".into(), 4), &app_err).unwrap();
    let st = tokio::task::spawn_blocking(move || last.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        st.success(),
        "final app run failed: {}",
        procs::tail(&app_err)
    );
    let entries = read_log(&log).unwrap();
    assert!(
        matches!(entries.last(), Some(LogEntry::Done(4))),
        "final run did not finish: {:?}",
        entries.last()
    );

    let keys = BTreeMap::from([("k_app".to_owned(), signer.public_key().to_owned())]);
    let db2 = db.clone();
    let entries2 = entries.clone();
    // Delivery is asynchronous; the final flush normally drains everything already.
    procs::wait_until(Duration::from_secs(30), || {
        let (db, entries, keys) = (db2.clone(), entries2.clone(), keys.clone());
        async move {
            procs::read_records(&db, &keys)
                .await
                .is_ok_and(|r| procs::audit(&entries, &r).lost.is_empty())
        }
    })
    .await;
    let records = procs::read_records(&db, &keys).await.unwrap();
    let a = procs::audit(&entries, &records);
    let errors = entries
        .iter()
        .filter(|e| matches!(e, LogEntry::Err(..)))
        .count();
    println!(
        "RELIABILITY crash: kills={kills} calls_answered={} call_errors={errors} records={} lost={} duplicates={} torn={} unlogged_records={} busy_kills={} answered_per_run={answered_before_kill:?} elapsed_s={:.1}",
        a.calls_logged,
        a.records,
        a.lost.len(),
        a.duplicates.len(),
        a.torn.len(),
        a.unlogged,
        answered_before_kill.iter().filter(|n| **n > 0).count(),
        started.elapsed().as_secs_f64()
    );
    let busy_kills = answered_before_kill.iter().filter(|n| **n > 0).count();
    assert!(
        busy_kills >= kills / 2,
        "only {busy_kills} of {kills} kills hit an app that had answered calls: {answered_before_kill:?}"
    );
    assert_eq!(
        errors,
        0,
        "calls failed against a healthy emulator: see {}",
        log.display()
    );
    assert!(
        a.clean(),
        "lost {:?}, duplicated {:?}, torn {:?}",
        a.lost,
        a.duplicates,
        a.torn
    );
    // A record the app never logged comes from a call killed after its record was
    // spooled but before its log line: at most one per kill.
    assert!(
        a.unlogged <= kills,
        "{} records of unlogged calls for {kills} kills",
        a.unlogged
    );

    // The torn-record check can fail: alter one stored field and it no longer verifies.
    {
        use sqlx::Connection as _;
        let mut c = sqlx::AnyConnection::connect(&db).await.unwrap();
        let sql = format!(
            "UPDATE usage_records SET prompt_tokens = prompt_tokens + 1 WHERE id = '{}'",
            records[0].id
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    let altered = procs::read_records(&db, &keys).await.unwrap();
    assert_eq!(
        procs::audit(&entries, &altered).torn,
        vec![records[0].id.clone()]
    );
    emu.shutdown().await;
}

fn ok_count(log: &Path) -> usize {
    read_log(log)
        .unwrap()
        .iter()
        .filter(|e| matches!(e, LogEntry::Ok(_)))
        .count()
}
