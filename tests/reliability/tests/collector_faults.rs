//! Collector-fault suite: app processes keep calling while the collector is SIGKILLed
//! and restarted mid-ingest (short 3 / full 20 times), then stays down for a long
//! stretch; on PostgreSQL the database server itself is restarted under load. Afterwards
//! every call the apps logged has exactly one record. Disk full on the client spool (a
//! 256 KiB tmpfs when we may mount one, else `reporting.max_spool_bytes`) gives the
//! documented typed error, corrupts nothing, and calls keep answering.
#![allow(clippy::unwrap_used)]

#[path = "../../../collector/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use gaterouter::Client;
use gaterouter::types::{ChatRequest, Message};
use gaterouter::usage::{Spool, SpoolOptions, UsageSigner};
use gaterouter_reliability::app::{LogEntry, read_log};
use gaterouter_reliability::procs::{self, Admin, CollectorProc};
use rand::Rng as _;

const APP: &str = env!("CARGO_BIN_EXE_rel-app");
const COLLECTOR: &str = env!("CARGO_BIN_EXE_rel-collector");

/// Apps calling until told to stop, each with its own key, spool and log.
struct Fleet {
    dir: PathBuf,
    apps: Vec<Child>,
    logs: Vec<PathBuf>,
    keys: BTreeMap<String, String>,
    stop: PathBuf,
}

impl Fleet {
    async fn start(
        dir: &Path,
        n: usize,
        emulator: &str,
        collector: &CollectorProc,
        admin: &Admin,
    ) -> Fleet {
        let signers: Vec<(String, UsageSigner)> = (0..n)
            .map(|i| {
                (
                    format!("k_app{i}"),
                    UsageSigner::from_seed(&[i as u8 + 20; 32]),
                )
            })
            .collect();
        let refs: Vec<(String, &UsageSigner)> =
            signers.iter().map(|(k, s)| (k.clone(), s)).collect();
        admin.seed(&refs).await.unwrap();
        let stop = dir.join("stop");
        let mut f = Fleet {
            dir: dir.to_owned(),
            apps: Vec::new(),
            logs: Vec::new(),
            keys: BTreeMap::new(),
            stop: stop.clone(),
        };
        for (i, (id, s)) in signers.iter().enumerate() {
            let key = procs::write_key(dir, id, s).unwrap();
            let cfg = procs::app_config(
                emulator,
                &collector.url(),
                id,
                &key,
                &dir.join(format!("spool{i}")),
            );
            let cfg_path = dir.join(format!("app{i}.json"));
            procs::write_config(&cfg_path, &cfg).unwrap();
            let log = dir.join(format!("calls{i}.log"));
            let args: Vec<String> = [
                "--config",
                cfg_path.to_str().unwrap(),
                "--log",
                log.to_str().unwrap(),
                "--prefix",
                &format!("a{i}"),
                "--pause-ms",
                "2",
                "--stop-file",
                stop.to_str().unwrap(),
                "--flush-ms",
                "60000",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            f.apps.push(
                procs::spawn_app(Path::new(APP), &args, &dir.join(format!("app{i}.stderr")))
                    .unwrap(),
            );
            f.logs.push(log);
            f.keys.insert(id.clone(), s.public_key().to_owned());
        }
        f
    }

    fn answered(&self) -> usize {
        self.logs
            .iter()
            .map(|l| {
                read_log(l)
                    .unwrap()
                    .iter()
                    .filter(|e| matches!(e, LogEntry::Ok(_)))
                    .count()
            })
            .sum()
    }

    /// Stop calling, wait for each app to flush and exit.
    async fn stop(mut self) -> (Vec<LogEntry>, BTreeMap<String, String>) {
        std::fs::write(&self.stop, b"stop").unwrap();
        for (i, mut ch) in std::mem::take(&mut self.apps).into_iter().enumerate() {
            let st = tokio::task::spawn_blocking(move || ch.wait())
                .await
                .unwrap()
                .unwrap();
            assert!(
                st.success(),
                "app {i} failed: {}",
                procs::tail(&self.dir.join(format!("app{i}.stderr")))
            );
        }
        let mut all = Vec::new();
        for l in &self.logs {
            let e = read_log(l).unwrap();
            assert!(
                matches!(e.last(), Some(LogEntry::Done(_))),
                "{} did not finish",
                l.display()
            );
            all.extend(e);
        }
        (all, std::mem::take(&mut self.keys))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for ch in &mut self.apps {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }
}

/// Wait until every logged call has its record, then audit; prints a figures line.
async fn final_audit(
    name: &str,
    db: &str,
    entries: &[LogEntry],
    keys: &BTreeMap<String, String>,
    extra: &str,
    started: Instant,
) {
    procs::wait_until(Duration::from_secs(60), || async {
        procs::read_records(db, keys)
            .await
            .is_ok_and(|r| procs::audit(entries, &r).lost.is_empty())
    })
    .await;
    let records = procs::read_records(db, keys).await.unwrap();
    let a = procs::audit(entries, &records);
    let errors: Vec<&LogEntry> = entries
        .iter()
        .filter(|e| matches!(e, LogEntry::Err(..)))
        .collect();
    println!(
        "RELIABILITY {name}: {extra} calls_answered={} call_errors={} records={} lost={} duplicates={} torn={} elapsed_s={:.1}",
        a.calls_logged,
        errors.len(),
        a.records,
        a.lost.len(),
        a.duplicates.len(),
        a.torn.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(a.calls_logged > 0, "no call answered");
    assert!(
        errors.is_empty(),
        "calls failed while only the collector was faulty: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert!(
        a.clean(),
        "lost {:?}, duplicated {:?}, torn {:?}",
        a.lost,
        a.duplicates,
        a.torn
    );
    // Failed calls are recorded too; here none failed, so records are exactly the calls.
    assert_eq!(a.records, a.calls_logged, "records of calls nobody logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_killed_mid_ingest_and_down_for_a_long_stretch() {
    let restarts = gaterouter_reliability::scale(3, 20);
    let downtime = Duration::from_secs(gaterouter_reliability::scale(3, 15) as u64);
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let db = format!("sqlite://{}", dir.join("collector.db").display());
    let mut collector = CollectorProc::start(
        Path::new(COLLECTOR),
        procs::free_port(),
        &db,
        &dir.join("collector.log"),
    )
    .unwrap();
    let admin = Admin::new(&collector.url());
    let fleet = Fleet::start(dir, 2, &emu.base_url(), &collector, &admin).await;

    let mut rng = rand::rng();
    for _ in 0..restarts {
        // Up long enough for batches to be in flight, then SIGKILL mid-ingest.
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..600))).await;
        collector.kill();
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..300))).await;
        collector.restart().unwrap();
    }
    let before_down = fleet.answered();
    collector.kill();
    tokio::time::sleep(downtime).await;
    let during_down = fleet.answered() - before_down;
    collector.restart().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (entries, keys) = fleet.stop().await;
    assert!(
        during_down > 0,
        "apps made no calls while the collector was down"
    );
    let extra = format!(
        "collector_kills={} downtime_s={} calls_while_down={during_down}",
        restarts + 1,
        downtime.as_secs()
    );
    final_audit("collector-kill", &db, &entries, &keys, &extra, started).await;
    emu.shutdown().await;
}

/// Restart the test's PostgreSQL server (`pg_ctl restart -m fast`: open connections are
/// cut, like a failover).
fn pg_restart(pg: &common::Pg) {
    let bin = ["/usr/lib/postgresql"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin"))
                .collect::<Vec<_>>()
        })
        .chain(
            std::env::var("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .find(|d| d.join("pg_ctl").exists())
        .unwrap();
    let data = pg.dir.path().join("data");
    // `-l`: without a log file the new server would inherit pg_ctl's stdout, and
    // `output()` would wait for that pipe to close forever.
    let log = pg.dir.path().join("pg.log");
    let cmd = format!(
        "'{}' -D '{}' -l '{}' -m fast -w -t 60 restart",
        bin.join("pg_ctl").display(),
        data.display(),
        log.display()
    );
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let out = if root {
        Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", &cmd])
            .output()
    } else {
        Command::new("sh").args(["-c", &cmd]).output()
    }
    .unwrap();
    assert!(
        out.status.success(),
        "pg_ctl restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load() {
    let Some(pg) = common::Pg::start() else {
        println!(
            "RELIABILITY postgres-restart: SKIPPED (PostgreSQL not installed; GATEROUTER_TEST_REQUIRE_POSTGRES=1 makes this a failure)"
        );
        return;
    };
    let restarts = gaterouter_reliability::scale(2, 5);
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = pg.new_db().await;
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let collector = CollectorProc::start(
        Path::new(COLLECTOR),
        procs::free_port(),
        &db,
        &dir.join("collector.log"),
    )
    .unwrap();
    let admin = Admin::new(&collector.url());
    let fleet = Fleet::start(dir, 2, &emu.base_url(), &collector, &admin).await;
    let mut rng = rand::rng();
    for _ in 0..restarts {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..900))).await;
        tokio::task::block_in_place(|| pg_restart(&pg));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (entries, keys) = fleet.stop().await;
    assert!(collector.running());
    final_audit(
        "postgres-restart",
        &db,
        &entries,
        &keys,
        &format!("pg_restarts={restarts}"),
        started,
    )
    .await;
    drop(collector);
    emu.shutdown().await;
}

/// A 256 KiB tmpfs mounted for the test (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Option<Tmpfs> {
        if std::env::var("GATEROUTER_RELIABILITY_NO_TMPFS").is_ok_and(|v| v == "1") {
            return None;
        }
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn signed(signer: &UsageSigner, n: u64) -> String {
    let spec = common::Spec {
        key: "k_disk",
        ts: gaterouter::usage::unix_ms_now() - 1000 + n,
        ..common::Spec::default()
    };
    common::wire(&spec, signer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_spool_gives_typed_error_no_corruption_calls_keep_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&tmp.path().join("tmpfs"));
    let how = if fs.is_some() {
        "tmpfs size=256k (real ENOSPC)"
    } else {
        "reporting.max_spool_bytes=65536 (no tmpfs: not root, mount refused, or GATEROUTER_RELIABILITY_NO_TMPFS=1)"
    };
    let root = fs
        .as_ref()
        .map_or_else(|| tmp.path().join("capped"), |t| t.0.clone());
    let cap: u64 = if fs.is_some() { 256 << 20 } else { 64 << 10 };
    let signer = UsageSigner::from_seed(&[9; 32]);

    // 1. The spool itself: append until the disk (or the cap) refuses.
    let dir = root.join("direct");
    let filler = root.join("filler");
    if fs.is_some() {
        // Another file takes part of the disk; removing it later frees room.
        std::fs::write(&filler, vec![1u8; 64 << 10]).unwrap();
    }
    let spool = Spool::open(SpoolOptions::new(&dir, Duration::ZERO, cap)).unwrap();
    let mut accepted = Vec::new();
    let mut first_err = None;
    for n in 1..=5_000u64 {
        let w = signed(&signer, n);
        match spool.append(w.as_bytes(), n) {
            Ok(()) => accepted.push(w),
            Err(e) => {
                first_err = Some(e);
                break;
            }
        }
    }
    let err = first_err.expect("the spool never filled up");
    let code = err.code();
    let text = err.to_string();
    println!(
        "RELIABILITY disk-full ({how}): spool accepted {} records, then {code}: {text}",
        accepted.len()
    );
    assert!(code == "SPOOL_FULL" || code == "SPOOL_IO", "{code}: {text}");
    assert!(
        text.contains(dir.to_str().unwrap()),
        "the error names the spool directory: {text}"
    );
    assert!(text.contains("Fix:"), "the error says what to do: {text}");
    // Further appends keep failing cleanly (no panic, nothing half-written counted).
    for n in 0..20u64 {
        assert!(
            spool
                .append(signed(&signer, 10_000 + n).as_bytes(), 10_000 + n)
                .is_err()
        );
    }
    if fs.is_some() {
        // Space comes back: appends work again without reopening the spool.
        std::fs::remove_file(&filler).unwrap();
        let w = signed(&signer, 20_000);
        spool
            .append(w.as_bytes(), 20_000)
            .expect("append after space was freed");
        accepted.push(w);
    }
    spool.close().unwrap();
    drop(spool);
    // No corruption: reopening reads back exactly the acknowledged records, in order.
    let spool = Spool::open(SpoolOptions::new(&dir, Duration::ZERO, cap.max(64 << 20))).unwrap();
    let batch = spool.read_batch(100_000, u64::MAX).unwrap();
    let got: Vec<String> = batch
        .records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect();
    assert_eq!(
        got.len(),
        accepted.len(),
        "records read back after the disk filled"
    );
    assert!(got == accepted, "records changed on disk");
    for w in &got {
        gaterouter::usage::signing::verify_wire(w, signer.public_key()).unwrap();
    }
    let torn = spool.status().torn_bytes_skipped;
    spool.close().unwrap();
    drop(spool);
    std::fs::remove_dir_all(&dir).unwrap();

    // 2. Through the SDK: the collector is down and the spool fills; every call still
    // answers; once the collector is back, every spooled record arrives exactly once.
    let emu = gaterouter_emulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let wdir = tmp.path().join("work");
    std::fs::create_dir_all(&wdir).unwrap();
    let port = procs::free_port();
    // The key is registered first; then the collector goes down while the spool fills.
    let db = format!("sqlite://{}", wdir.join("collector.db").display());
    let mut collector =
        CollectorProc::start(Path::new(COLLECTOR), port, &db, &wdir.join("collector.log")).unwrap();
    let url = collector.url();
    Admin::new(&collector.url())
        .seed(&[("k_disk".into(), &signer)])
        .await
        .unwrap();
    collector.kill();
    let key = procs::write_key(&wdir, "k_disk", &signer).unwrap();
    let mut cfg = procs::app_config(
        &emu.base_url(),
        &url,
        "k_disk",
        &key,
        &root.join("sdk-spool"),
    );
    cfg.reporting.max_spool_bytes = cap;
    cfg.reporting.fsync_interval_ms = 0;
    let client = Client::new(cfg).unwrap();
    let mut calls = Vec::new();
    let mut answered = 0;
    let mut full_at = None;
    for n in 0..3_000u32 {
        let call = format!("disk-{n}");
        let mut req = ChatRequest::new("openai/gpt-4o-mini", vec![Message::user("disk full test")]);
        req.max_tokens = Some(16);
        req.metadata.insert("call".into(), call.clone());
        let r = client.chat(req).await;
        assert!(
            r.is_ok(),
            "call {n} failed with a full spool: {:?}",
            r.err()
        );
        answered += 1;
        calls.push(call);
        let st = client.spool_status().unwrap();
        if full_at.is_none() && (st.overflow_count > 0 || st.pending_records < answered) {
            full_at = Some(n);
        }
        if full_at.is_some_and(|f| n >= f + 20) {
            break;
        }
    }
    let full_at = full_at.expect("the SDK spool never filled up");
    let st = client.spool_status().unwrap();
    let spooled = st.pending_records;
    println!(
        "RELIABILITY disk-full ({how}): SDK spool full after {full_at} calls; {answered} calls answered, {spooled} records spooled, overflow_count={}",
        st.overflow_count
    );
    // Free the space the first part used (tmpfs) and bring the collector up.
    collector.restart().unwrap();
    let out = client.flush(Duration::from_secs(30)).await.unwrap();
    assert!(
        out.drained,
        "{out:?} {:?} collector log: {}",
        client.usage_status(),
        procs::tail(&wdir.join("collector.log"))
    );
    let keys = BTreeMap::from([("k_disk".to_owned(), signer.public_key().to_owned())]);
    let records = procs::read_records(&db, &keys).await.unwrap();
    let entries: Vec<LogEntry> = Vec::new();
    let a = procs::audit(&entries, &records);
    println!(
        "RELIABILITY disk-full ({how}): delivered {} of {spooled} spooled records, duplicates={} torn={} torn_bytes_skipped_at_reopen={torn}",
        a.records,
        a.duplicates.len(),
        a.torn.len()
    );
    assert_eq!(a.records as u64, spooled, "every spooled record arrives");
    assert!(a.duplicates.is_empty() && a.torn.is_empty(), "{a:?}");
    // After space returns (the spool drained), records are accepted again.
    let mut req = ChatRequest::new("openai/gpt-4o-mini", vec![Message::user("after")]);
    req.metadata.insert("call".into(), "disk-after".into());
    client.chat(req).await.unwrap();
    assert!(client.flush(Duration::from_secs(10)).await.unwrap().drained);
    let records = procs::read_records(&db, &keys).await.unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.call.as_deref() == Some("disk-after")),
        "a record written after the spool drained was not delivered"
    );
    client.shutdown().await.unwrap();
    drop(collector);
    emu.shutdown().await;
    drop(fs);
}
