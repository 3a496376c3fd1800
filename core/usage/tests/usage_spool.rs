//! Spool durability: killed writers, torn tails at every byte offset, size cap,
//! concurrent appends.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gaterouter_usage::Identity;
use gaterouter_usage::spool::{SEGMENT_HEADER_BYTES, Spool, SpoolOptions};
use gaterouter_usage::{
    Recorder, ReportingConfig, UsageError, UsageRecordInput, UsageSigner, generate_key,
};

const CHILD_ENV: &str = "GATEROUTER_SPOOL_WRITER_DIR";
const SEED: [u8; 32] = [7u8; 32];

fn identity() -> Identity {
    Identity {
        org: Some("org".into()),
        api_key_id: Some("key_1".into()),
        ..Default::default()
    }
}

fn input(i: u64) -> UsageRecordInput {
    let mut tags = BTreeMap::new();
    tags.insert("i".to_owned(), i.to_string());
    UsageRecordInput {
        ts_start: 1_732_500_000_000 + i,
        ts_end: 1_732_500_000_100 + i,
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        prompt_tokens: 100 + i,
        completion_tokens: 20,
        latency_ms: 100,
        attempts: 1,
        tags,
        ..Default::default()
    }
}

fn cfg(dir: &Path) -> ReportingConfig {
    ReportingConfig {
        spool_dir: Some(dir.to_path_buf()),
        fsync_interval_ms: 50,
        ..Default::default()
    }
}

fn read_all(dir: &Path) -> Vec<gaterouter_usage::spool::SpooledRecord> {
    let sp = Spool::open(SpoolOptions::new(dir, Duration::ZERO, 1 << 30)).unwrap();
    let b = sp.read_batch(usize::MAX, u64::MAX).unwrap();
    sp.close().unwrap();
    b.records
}

/// The child half of `killed_writer_loses_no_acknowledged_record`: append forever,
/// printing each acknowledged id.
#[test]
fn spool_writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let rec = Recorder::start_with(
        &cfg(Path::new(&dir)),
        &identity(),
        Default::default(),
        Some(UsageSigner::from_seed(&SEED)),
    )
    .unwrap();
    for i in 0.. {
        let id = rec.record(input(i)).unwrap();
        println!("ACK {id}");
    }
}

#[test]
fn killed_writer_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "spool_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 3000 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-stream
    child.wait().unwrap();
    // Drain what the child printed before it died: those were acknowledged too.
    for line in lines.map_while(Result::ok) {
        if let Some(id) = line.strip_prefix("ACK ") {
            if id.len() == 36 {
                acked.push(id.to_owned());
            }
        }
    }
    let records = read_all(dir.path());
    let present: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    for id in &acked {
        assert!(
            present.contains(id.as_str()),
            "acknowledged record {id} lost"
        );
    }
    // Every record read back is whole and verifies; seqs strictly increase.
    let pk = UsageSigner::from_seed(&SEED).public_key().to_owned();
    let mut last = 0;
    for r in &records {
        let rec =
            gaterouter_usage::signing::verify_wire(std::str::from_utf8(&r.payload).unwrap(), &pk)
                .unwrap();
        assert!(rec.seq > last);
        last = rec.seq;
    }
    // The lock died with the child: a new recorder resumes after the highest seq.
    let rec = Recorder::start_with(
        &cfg(dir.path()),
        &identity(),
        Default::default(),
        Some(UsageSigner::from_seed(&SEED)),
    )
    .unwrap();
    rec.record(input(0)).unwrap();
    let st = rec.status();
    assert_eq!(st.max_seq, last + 1, "{st:?}");
    assert_eq!(st.pending_records, records.len() as u64 + 1);
}

fn write_records(dir: &Path, n: u64) -> Vec<String> {
    let sp = Spool::open(SpoolOptions::new(dir, Duration::ZERO, 1 << 30)).unwrap();
    let signer = UsageSigner::from_seed(&SEED);
    let mut ids = Vec::new();
    for i in 1..=n {
        let rec = gaterouter_usage::UsageRecord::build(
            input(i),
            &identity(),
            &Default::default(),
            gaterouter_usage::RecordId::new_v7(),
            i,
        )
        .unwrap();
        let (c, s) = signer.sign_record(&rec).unwrap();
        sp.append(gaterouter_usage::signing::wire_json(&c, &s).as_bytes(), i)
            .unwrap();
        ids.push(rec.id.0);
    }
    sp.close().unwrap();
    ids
}

fn only_segment(dir: &Path) -> std::path::PathBuf {
    let segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert_eq!(segs.len(), 1);
    segs[0].clone()
}

#[test]
fn torn_last_entry_is_skipped_at_every_byte_offset() {
    let src = tempfile::tempdir().unwrap();
    let ids = write_records(src.path(), 3);
    let seg = only_segment(src.path());
    let data = std::fs::read(&seg).unwrap();
    // Find where the last frame starts by walking the frames.
    let mut pos = SEGMENT_HEADER_BYTES as usize;
    let mut starts = Vec::new();
    while pos < data.len() {
        starts.push(pos);
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    assert_eq!(starts.len(), 3);
    let last = starts[2];
    for cut in last..data.len() {
        let d = tempfile::tempdir().unwrap();
        let name = seg.file_name().unwrap();
        std::fs::write(d.path().join(name), &data[..cut]).unwrap();
        let sp = Spool::open(SpoolOptions::new(d.path(), Duration::ZERO, 1 << 30)).unwrap();
        let st = sp.status();
        assert_eq!(st.pending_records, 2, "cut at {cut}");
        assert_eq!(st.torn_bytes_skipped, (cut - last) as u64, "cut at {cut}");
        // New appends go to a fresh segment and are read after the survivors.
        sp.append(br#"{"id":"new","seq":99}"#, 99).unwrap();
        let b = sp.read_batch(100, u64::MAX).unwrap();
        let got: Vec<&str> = b.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            got,
            vec![ids[0].as_str(), ids[1].as_str(), "new"],
            "cut at {cut}"
        );
        sp.close().unwrap();
    }
    // A flipped byte in the last payload (CRC mismatch) is skipped the same way.
    let mut bad = data.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x20;
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(seg.file_name().unwrap()), &bad).unwrap();
    let sp = Spool::open(SpoolOptions::new(d.path(), Duration::ZERO, 1 << 30)).unwrap();
    assert_eq!(sp.status().pending_records, 2);
    // Inspecting without opening gives the same counts.
    let st = Spool::inspect(d.path(), 1 << 30).unwrap();
    assert_eq!((st.pending_records, st.segments), (2, 1));
}

#[test]
fn full_spool_gives_the_typed_error_and_counts_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let c = ReportingConfig {
        max_spool_bytes: 64 * 1024,
        ..cfg(dir.path())
    };
    let (signer, _) = generate_key();
    let rec = Recorder::start_with(&c, &identity(), Default::default(), Some(signer)).unwrap();
    let mut ok = 0u64;
    let err = loop {
        match rec.record(input(ok)) {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 10_000, "cap never reached");
    };
    assert!(
        matches!(
            err,
            UsageError::SpoolFull {
                max_bytes: 65536,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), "SPOOL_FULL");
    assert!(err.to_string().contains("max_spool_bytes"), "{err}");
    assert!(matches!(
        rec.record(input(0)),
        Err(UsageError::SpoolFull { .. })
    ));
    let st = rec.status();
    assert_eq!(st.overflow_count, 2);
    assert_eq!(
        st.pending_records, ok,
        "nothing already spooled was dropped"
    );
    assert!(st.total_bytes <= 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_from_many_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, pk) = generate_key();
    let rec = Arc::new(
        Recorder::start_with(
            &cfg(dir.path()),
            &identity(),
            Default::default(),
            Some(signer),
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let rec = rec.clone();
        tasks.push(tokio::spawn(async move {
            (0..200u64)
                .map(|i| rec.record(input(t * 1000 + i)).unwrap().0)
                .collect::<Vec<_>>()
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1600);
    rec.shutdown().await.unwrap();
    let records = read_all(dir.path());
    assert_eq!(records.len(), 1600);
    let mut seqs = HashSet::new();
    for r in &records {
        assert!(ids.contains(&r.id));
        let parsed =
            gaterouter_usage::signing::verify_wire(std::str::from_utf8(&r.payload).unwrap(), &pk)
                .unwrap();
        assert!(seqs.insert(parsed.seq), "seq {} repeated", parsed.seq);
    }
}

/// Frame start offsets of a segment.
fn frame_starts(data: &[u8]) -> Vec<usize> {
    let mut pos = SEGMENT_HEADER_BYTES as usize;
    let mut starts = Vec::new();
    while pos < data.len() {
        starts.push(pos);
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    starts
}

/// Open the spool, read everything (in batches of 3, acking each), return the ids read
/// and the final status. The segment must survive until its last record is acked.
fn drain(dir: &Path, seg: &Path) -> (Vec<String>, gaterouter_usage::SpoolStatus) {
    let sp = Spool::open(SpoolOptions::new(dir, Duration::ZERO, 1 << 30)).unwrap();
    let st = sp.status();
    let mut got = Vec::new();
    loop {
        let b = sp.read_batch(3, u64::MAX).unwrap();
        if b.records.is_empty() {
            break;
        }
        got.extend(b.records.iter().map(|r| r.id.clone()));
        sp.ack(&b).unwrap();
        if sp.pending_records() > 0 {
            assert!(
                seg.exists(),
                "segment deleted with {} records still pending",
                sp.pending_records()
            );
        }
    }
    sp.close().unwrap();
    (got, st)
}

fn corrupted(
    ids_n: u64,
    damage: impl FnOnce(&mut Vec<u8>, &[usize]),
) -> (tempfile::TempDir, Vec<String>, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let ids = write_records(d.path(), ids_n);
    let seg = only_segment(d.path());
    let mut data = std::fs::read(&seg).unwrap();
    let starts = frame_starts(&data);
    damage(&mut data, &starts);
    std::fs::write(&seg, &data).unwrap();
    (d, ids, seg)
}

#[test]
fn flipped_byte_in_first_record_loses_only_that_record() {
    let (d, ids, seg) = corrupted(20, |data, starts| data[starts[0] + 20] ^= 0x01);
    let (got, st) = drain(d.path(), &seg);
    assert_eq!(got, ids[1..].to_vec(), "19 of 20 delivered, in order");
    assert_eq!(st.pending_records, 19);
    assert_eq!(st.skipped_ranges, 1);
    assert!(st.torn_bytes_skipped > 0);
}

#[test]
fn huge_frame_length_loses_only_that_record() {
    let (d, ids, seg) = corrupted(20, |data, starts| {
        data[starts[4]..starts[4] + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes())
    });
    let (got, st) = drain(d.path(), &seg);
    let mut want = ids.clone();
    want.remove(4);
    assert_eq!(got, want, "every intact record delivered");
    assert_eq!(st.skipped_ranges, 1);
    assert!(!seg.exists(), "deleted once every record was acknowledged");
}

#[test]
fn garbage_between_records_and_torn_tail_are_skipped() {
    let (d, ids, seg) = corrupted(20, |data, starts| {
        // Overwrite records 3..=5 with garbage that contains a `{`, and cut the last one.
        for b in &mut data[starts[3]..starts[6]] {
            *b = b'{';
        }
        let n = data.len();
        data.truncate(n - 3);
    });
    let (got, st) = drain(d.path(), &seg);
    let want: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| !(3..6).contains(i) && *i != 19)
        .map(|(_, s)| s.clone())
        .collect();
    assert_eq!(got, want);
    assert_eq!(st.skipped_ranges, 2);
}

#[test]
fn bad_cursor_is_repaired_and_everything_delivered() {
    for which in ["past_end", "mid_frame"] {
        let d = tempfile::tempdir().unwrap();
        let ids = write_records(d.path(), 20);
        let seg = only_segment(d.path());
        let data = std::fs::read(&seg).unwrap();
        let starts = frame_starts(&data);
        let segment: u64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let offset = if which == "past_end" {
            data.len() as u64 + 1_000_000
        } else {
            starts[3] as u64 + 3
        };
        std::fs::write(
            d.path().join("cursor.json"),
            format!(r#"{{"segment":{segment},"offset":{offset},"max_seq":20}}"#),
        )
        .unwrap();
        let (got, st) = drain(d.path(), &seg);
        assert_eq!(got, ids, "{which}: all 20 delivered");
        assert_eq!(st.cursor_repairs, 1, "{which}");
        // Inspecting without opening agrees.
    }
}
