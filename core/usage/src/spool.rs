//! The durable on-disk spool of signed usage records.
//!
//! # Layout of a spool directory
//! - `spool.lock`: held with an exclusive advisory lock (`flock` / `LockFileEx`) for as
//!   long as a [`Spool`] is open, and containing the holder's pid. A second process (or a
//!   second `Spool` in the same process) opening the same directory gets
//!   [`UsageError::SpoolLocked`]: **one spool directory per process**. The OS releases the
//!   lock when the holder dies, so a killed process never leaves a stale lock.
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segment files, numbered in append order. Each starts with
//!   the 8-byte magic `GRSPOOL1`, followed by frames: `u32 LE payload length`,
//!   `u32 LE CRC-32 (IEEE) of the payload`, payload = the signed record's wire JSON.
//! - `cursor.json`: `{"segment":S,"offset":O,"max_seq":N}`, everything before byte `O`
//!   of segment `S` has been delivered (or dead-lettered); rewritten atomically
//!   (temp file, fsync, rename) after every resolved batch. Segments wholly before the
//!   cursor are deleted.
//! - `dead-letter.jsonl`: one line per record the collector rejected:
//!   `{"dead_at_ms":..,"reason":"..","record":{...wire record...}}`. Never retried.
//!
//! # Durability
//! Each append is one `write(2)` of a whole frame straight to the segment file (no user
//! space buffer), made before `append` returns: a killed process loses nothing it
//! acknowledged. `fsync` is grouped: a background thread calls `fdatasync` every
//! `fsync_interval` when something was written, so a power loss loses at most that
//! interval. `fsync_interval = 0` syncs inside every append instead.
//!
//! # Recovery
//! On open every segment is scanned, streaming (never more than one frame in memory). A
//! frame with a short header, a length over [`MAX_FRAME_BYTES`], a short payload or a
//! CRC mismatch is skipped by **resynchronising** on the next valid frame: the next
//! offset where a length in range, a payload that is a JSON object (`{` … `}`) and a
//! matching CRC-32 all line up. Only the bad bytes are skipped (each range counted in
//! [`SpoolStatus::skipped_ranges`], its bytes in [`SpoolStatus::torn_bytes_skipped`]);
//! every intact record before and after is delivered. A damaged segment is sealed
//! (read-only, deleted once every record in it is acknowledged); new appends go to a
//! **fresh segment**, never after the garbage. If the last segment is clean, appends
//! continue in it. A cursor that does not point at a frame boundary of its segment
//! (past the end, mid-frame) is repaired to the start of that segment (its records are
//! sent again and the collector answers them `duplicate`: at least once, never lost),
//! counted in [`SpoolStatus::cursor_repairs`].
//!
//! # Size cap
//! `max_bytes` bounds the bytes of all segment files. When an append would exceed it the
//! record is refused with [`UsageError::SpoolFull`] and [`SpoolStatus::overflow_count`]
//! grows: nothing already spooled is ever dropped to make room.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::UsageError;

/// Magic bytes at the start of every segment (format version 1).
pub const SEGMENT_MAGIC: &[u8; 8] = b"GRSPOOL1";
/// Header size of a segment.
pub const SEGMENT_HEADER_BYTES: u64 = 8;
/// Header size of a frame (length + CRC).
pub const FRAME_HEADER_BYTES: u64 = 8;
/// Largest payload a frame may carry; a larger length marks a torn or corrupt frame.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

const LOCK_FILE: &str = "spool.lock";
const CURSOR_FILE: &str = "cursor.json";
/// Name of the dead-letter file inside the spool directory.
pub const DEAD_LETTER_FILE: &str = "dead-letter.jsonl";

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Directory (created if missing).
    pub dir: PathBuf,
    /// Group fsyncs on this interval; zero syncs every append.
    pub fsync_interval: Duration,
    /// Cap on the bytes of all segment files.
    pub max_bytes: u64,
    /// Start a new segment when the current one would grow past this.
    pub segment_max_bytes: u64,
}

impl SpoolOptions {
    /// Options with the default segment size (4 MiB, at most an eighth of the cap so
    /// delivered segments can be reclaimed well before the cap).
    pub fn new(dir: impl Into<PathBuf>, fsync_interval: Duration, max_bytes: u64) -> Self {
        let segment_max_bytes = (4 << 20u64).min(max_bytes / 8).max(4096);
        SpoolOptions {
            dir: dir.into(),
            fsync_interval,
            max_bytes,
            segment_max_bytes,
        }
    }
}

/// Position in the spool: byte `offset` of segment `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Cursor {
    /// Segment number.
    pub segment: u64,
    /// Byte offset inside it.
    pub offset: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorFile {
    segment: u64,
    offset: u64,
    #[serde(default)]
    max_seq: u64,
}

/// What the CLI's `gaterouter spool status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolStatus {
    /// Spool directory.
    pub dir: PathBuf,
    /// Records written but not yet delivered.
    pub pending_records: u64,
    /// Their bytes (frames included).
    pub pending_bytes: u64,
    /// Bytes of all segment files (what the cap bounds).
    pub total_bytes: u64,
    /// The cap.
    pub max_bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Records in the dead-letter file.
    pub dead_letters: u64,
    /// Records refused because the spool was full, since this process opened it.
    pub overflow_count: u64,
    /// Bytes of torn or corrupt frames skipped (at recovery and while reading).
    pub torn_bytes_skipped: u64,
    /// Byte ranges skipped: each bad stretch between two intact frames (or a torn tail).
    #[serde(default)]
    pub skipped_ranges: u64,
    /// Cursors found pointing past the end or inside a frame and reset to the start of
    /// their segment (records re-sent; the collector answers them `duplicate`).
    #[serde(default)]
    pub cursor_repairs: u64,
    /// Records delivered (or dead-lettered) since this process opened the spool.
    pub delivered_records: u64,
    /// Highest sequence number seen in the spool or its cursor.
    pub max_seq: u64,
    /// The last delivery or fsync problem, if the last attempt failed.
    pub last_error: Option<String>,
}

/// One record read back for delivery.
#[derive(Debug, Clone)]
pub struct SpooledRecord {
    /// Record id.
    pub id: String,
    /// Its sequence number.
    pub seq: u64,
    /// The wire JSON exactly as signed and spooled.
    pub payload: Vec<u8>,
}

/// Records read from the cursor on, and where the read stopped.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Records in spool order.
    pub records: Vec<SpooledRecord>,
    /// Position right after the last record (the new cursor once resolved).
    pub end: Cursor,
    /// Frame bytes covered (for the pending counters).
    pub bytes: u64,
}

#[derive(Debug, Deserialize)]
struct Head {
    id: String,
    seq: u64,
}

#[derive(Debug, Clone)]
struct SegMeta {
    len: u64,
    /// End of the last intact frame.
    valid_end: u64,
    sealed: bool,
    /// Bad byte ranges `[start, end)` found at recovery, in order.
    bad: Vec<(u64, u64)>,
}

#[derive(Debug)]
struct State {
    segments: BTreeMap<u64, SegMeta>,
    active: Option<(u64, Arc<File>)>,
    next_segment: u64,
    cursor: Cursor,
    total_bytes: u64,
    pending_records: u64,
    pending_bytes: u64,
    dirty: bool,
    closed: bool,
    frame_buf: Vec<u8>,
}

#[derive(Debug, Default)]
struct FsyncCtl {
    stop: Mutex<bool>,
    cv: Condvar,
}

/// An open, locked spool directory. Share it as `Arc<Spool>`; appends from many threads
/// or tasks are serialized by a short internal lock (one `write` per record).
#[derive(Debug)]
pub struct Spool {
    opts: SpoolOptions,
    state: Mutex<State>,
    lock_file: Mutex<Option<File>>,
    overflow: AtomicU64,
    torn_bytes: AtomicU64,
    skipped_ranges: AtomicU64,
    cursor_repairs: u64,
    max_seq: AtomicU64,
    dead_letters: AtomicU64,
    resolved: AtomicU64,
    last_error: Mutex<Option<String>>,
    fsync: Arc<FsyncCtl>,
    fsync_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Woken on every append (the reporter waits on it).
    pub(crate) appended: tokio::sync::Notify,
    /// Count of records resolved (delivered or dead-lettered) since open; flush waits on it.
    pub(crate) resolved_tx: tokio::sync::watch::Sender<u64>,
}

fn io_err(path: &Path, e: std::io::Error) -> UsageError {
    UsageError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

fn parse_seg_name(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")
        .filter(|s| s.len() == 20)
        .and_then(|s| s.parse().ok())
}

/// Result of scanning one segment file.
#[derive(Debug, Default)]
struct Scan {
    len: u64,
    valid_end: u64,
    max_seq: u64,
    /// (records, frame bytes) at or after `from`.
    pending: (u64, u64),
    /// Bad ranges.
    bad: Vec<(u64, u64)>,
    /// `from` is a position the scan stopped at (a frame start, the end of a bad range
    /// or the end of the data): a valid cursor.
    from_ok: bool,
}

/// Read up to `buf.len()` bytes at `off` (fewer at the end of the file).
fn read_at(f: &File, off: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut r = f;
    r.seek(SeekFrom::Start(off))?;
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The intact frame at `pos` (ending at or before `end`): (payload, next position).
fn frame_at(f: &File, pos: u64, end: u64, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    if pos + FRAME_HEADER_BYTES > end {
        return Ok(None);
    }
    let mut hdr = [0u8; FRAME_HEADER_BYTES as usize];
    if read_at(f, pos, &mut hdr)? < hdr.len() {
        return Ok(None);
    }
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    if len == 0 || len > MAX_FRAME_BYTES || pos + FRAME_HEADER_BYTES + u64::from(len) > end {
        return Ok(None);
    }
    buf.resize(len as usize, 0);
    if read_at(f, pos + FRAME_HEADER_BYTES, buf)? < buf.len() || crc32fast::hash(buf) != crc {
        return Ok(None);
    }
    Ok(Some(pos + FRAME_HEADER_BYTES + u64::from(len)))
}

/// The first offset at or after `from` (before `end`) where an intact frame starts: a
/// length in range, a payload starting with `{` and ending with `}` (every spooled
/// record is a JSON object) and a matching CRC. Reads in 64 KiB windows; a candidate's
/// payload is read only when its first byte fits.
fn resync(f: &File, from: u64, end: u64, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    const WINDOW: usize = 64 * 1024;
    let mut win = vec![0u8; WINDOW + FRAME_HEADER_BYTES as usize + 1];
    let mut base = from;
    while base + FRAME_HEADER_BYTES < end {
        let n = read_at(f, base, &mut win)?;
        let n = n.min((end - base) as usize);
        if n <= FRAME_HEADER_BYTES as usize {
            break;
        }
        let last = n - FRAME_HEADER_BYTES as usize;
        for i in 0..last.min(WINDOW) {
            let len = u32::from_le_bytes([win[i], win[i + 1], win[i + 2], win[i + 3]]);
            if !(2..=MAX_FRAME_BYTES).contains(&len) || win[i + FRAME_HEADER_BYTES as usize] != b'{'
            {
                continue;
            }
            let pos = base + i as u64;
            if frame_at(f, pos, end, buf)?.is_some() && buf.last() == Some(&b'}') {
                return Ok(Some(pos));
            }
        }
        base += last.min(WINDOW) as u64;
    }
    Ok(None)
}

/// Scan a segment, streaming: validate every frame, resynchronise after bad bytes.
fn scan_segment(path: &Path, from: u64) -> Result<Scan, UsageError> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let len = f.metadata().map_err(|e| io_err(path, e))?.len();
    let mut s = Scan {
        len,
        ..Scan::default()
    };
    let mut magic = [0u8; 8];
    let n = read_at(&f, 0, &mut magic).map_err(|e| io_err(path, e))?;
    let mut pos = SEGMENT_HEADER_BYTES;
    if n < magic.len() {
        if len > 0 {
            s.bad.push((0, len));
        }
        s.from_ok = from <= SEGMENT_HEADER_BYTES;
        return Ok(s);
    }
    if &magic != SEGMENT_MAGIC {
        s.bad.push((0, SEGMENT_HEADER_BYTES));
    }
    s.valid_end = pos;
    s.from_ok = from <= SEGMENT_HEADER_BYTES;
    let mut buf = Vec::new();
    loop {
        if pos == from {
            s.from_ok = true;
        }
        if pos >= len {
            break;
        }
        match frame_at(&f, pos, len, &mut buf).map_err(|e| io_err(path, e))? {
            Some(next) => {
                if let Ok(h) = serde_json::from_slice::<Head>(&buf) {
                    s.max_seq = s.max_seq.max(h.seq);
                }
                if pos >= from {
                    s.pending.0 += 1;
                    s.pending.1 += next - pos;
                }
                pos = next;
                s.valid_end = pos;
            }
            None => {
                let next = resync(&f, pos + 1, len, &mut buf)
                    .map_err(|e| io_err(path, e))?
                    .unwrap_or(len);
                s.bad.push((pos, next));
                pos = next;
            }
        }
    }
    Ok(s)
}

/// Read `cursor.json`; a missing or unreadable file means "start from the beginning"
/// (records are then delivered again: at least once, never lost).
fn read_cursor(dir: &Path) -> CursorFile {
    fs::read(dir.join(CURSOR_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(CursorFile {
            segment: 0,
            offset: 0,
            max_seq: 0,
        })
}

/// Lines of a file, streaming (the dead-letter file may be large).
fn count_lines(path: &Path) -> u64 {
    let Ok(f) = File::open(path) else { return 0 };
    let mut r = BufReader::with_capacity(64 * 1024, f);
    let mut n = 0u64;
    loop {
        let buf = match std::io::BufRead::fill_buf(&mut r) {
            Ok([]) | Err(_) => return n,
            Ok(b) => b,
        };
        n += buf.iter().filter(|c| **c == b'\n').count() as u64;
        let k = buf.len();
        std::io::BufRead::consume(&mut r, k);
    }
}

/// Everything recovery learns from a directory.
#[derive(Debug)]
struct Recovered {
    segments: BTreeMap<u64, SegMeta>,
    cursor: Cursor,
    max_seq: u64,
    pending: (u64, u64),
    torn: u64,
    ranges: u64,
    cursor_repairs: u64,
    total: u64,
    stale: Vec<u64>,
}

fn recover(dir: &Path) -> Result<Recovered, UsageError> {
    let cf = read_cursor(dir);
    let mut cursor = Cursor {
        segment: cf.segment,
        offset: cf.offset,
    };
    let mut ids = Vec::new();
    if dir.exists() {
        for e in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let e = e.map_err(|e| io_err(dir, e))?;
            if let Some(id) = e.file_name().to_str().and_then(parse_seg_name) {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    let mut r = Recovered {
        segments: BTreeMap::new(),
        cursor,
        max_seq: cf.max_seq,
        pending: (0, 0),
        torn: 0,
        ranges: 0,
        cursor_repairs: 0,
        total: 0,
        stale: Vec::new(),
    };
    for id in ids {
        if id < cursor.segment {
            // Delivered, but the process died before deleting it.
            r.stale.push(id);
            continue;
        }
        let from = if id == cursor.segment {
            cursor.offset
        } else {
            0
        };
        let mut s = scan_segment(&dir.join(seg_name(id)), from)?;
        if id == cursor.segment && !s.from_ok {
            // Past the end or inside a frame: start this segment again (at least once).
            s = scan_segment(&dir.join(seg_name(id)), 0)?;
            cursor.offset = 0;
            r.cursor = cursor;
            r.cursor_repairs += 1;
        }
        r.max_seq = r.max_seq.max(s.max_seq);
        r.pending.0 += s.pending.0;
        r.pending.1 += s.pending.1;
        r.torn += s.bad.iter().map(|(a, b)| b - a).sum::<u64>();
        r.ranges += s.bad.len() as u64;
        r.total += s.len;
        r.segments.insert(
            id,
            SegMeta {
                len: s.len,
                valid_end: s.valid_end,
                sealed: true,
                bad: s.bad,
            },
        );
    }
    Ok(r)
}

impl Spool {
    /// Open (creating if needed) and lock a spool directory, recovering what is there.
    pub fn open(opts: SpoolOptions) -> Result<Arc<Spool>, UsageError> {
        let dir = opts.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        match <File as fs4::FileExt>::try_lock(&lock) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                return Err(UsageError::SpoolLocked {
                    dir,
                    holder: holder.trim().to_owned(),
                });
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io_err(&lock_path, e)),
        }
        lock.set_len(0).map_err(|e| io_err(&lock_path, e))?;
        lock.seek(SeekFrom::Start(0))
            .map_err(|e| io_err(&lock_path, e))?;
        write!(lock, "pid {}", std::process::id()).map_err(|e| io_err(&lock_path, e))?;

        let mut rec = recover(&dir)?;
        for id in &rec.stale {
            let _ = fs::remove_file(dir.join(seg_name(*id)));
        }
        // Continue appending in the last segment only if it is whole.
        let mut active = None;
        if let Some((&last, meta)) = rec.segments.iter_mut().next_back() {
            if meta.valid_end == meta.len && meta.len >= SEGMENT_HEADER_BYTES && meta.bad.is_empty()
            {
                let path = dir.join(seg_name(last));
                let f = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_err(&path, e))?;
                meta.sealed = false;
                active = Some((last, Arc::new(f)));
            }
        }
        // Never reuse a number at or below the cursor's segment: its offset would skip records.
        let next_segment = rec
            .segments
            .keys()
            .next_back()
            .map_or(1, |l| l + 1)
            .max(rec.cursor.segment + 1);
        let dead = count_lines(&dir.join(DEAD_LETTER_FILE));
        let (resolved_tx, _) = tokio::sync::watch::channel(0u64);
        let spool = Arc::new(Spool {
            state: Mutex::new(State {
                segments: rec.segments,
                active,
                next_segment,
                cursor: rec.cursor,
                total_bytes: rec.total,
                pending_records: rec.pending.0,
                pending_bytes: rec.pending.1,
                dirty: false,
                closed: false,
                frame_buf: Vec::with_capacity(4096),
            }),
            lock_file: Mutex::new(Some(lock)),
            overflow: AtomicU64::new(0),
            torn_bytes: AtomicU64::new(rec.torn),
            skipped_ranges: AtomicU64::new(rec.ranges),
            cursor_repairs: rec.cursor_repairs,
            max_seq: AtomicU64::new(rec.max_seq),
            dead_letters: AtomicU64::new(dead),
            resolved: AtomicU64::new(0),
            last_error: Mutex::new(None),
            fsync: Arc::new(FsyncCtl::default()),
            fsync_thread: Mutex::new(None),
            appended: tokio::sync::Notify::new(),
            resolved_tx,
            opts,
        });
        if !spool.opts.fsync_interval.is_zero() {
            let weak = Arc::downgrade(&spool);
            let ctl = spool.fsync.clone();
            let every = spool.opts.fsync_interval;
            let h = std::thread::Builder::new()
                .name("gaterouter-spool-fsync".into())
                .spawn(move || fsync_loop(weak, ctl, every))
                .map_err(|e| io_err(&dir, e))?;
            *lock_ignore_poison(&spool.fsync_thread) = Some(h);
        }
        Ok(spool)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    /// Highest sequence number recovered or appended.
    pub fn max_seq(&self) -> u64 {
        self.max_seq.load(Ordering::Acquire)
    }

    /// Records not yet delivered.
    pub fn pending_records(&self) -> u64 {
        lock_ignore_poison(&self.state).pending_records
    }

    /// Records resolved since open (monotonic).
    pub fn resolved_total(&self) -> u64 {
        self.resolved.load(Ordering::Acquire)
    }

    /// The value of the resolved counter at which every record spooled so far is
    /// delivered or dead-lettered.
    pub fn flush_target(&self) -> u64 {
        let st = lock_ignore_poison(&self.state);
        self.resolved.load(Ordering::Acquire) + st.pending_records
    }

    /// Append one record's wire JSON. Returns once the frame is written to the file
    /// (durable against a killed process; against power loss after the next fsync).
    pub fn append(&self, payload: &[u8], seq: u64) -> Result<(), UsageError> {
        if payload.is_empty() || payload.len() > MAX_FRAME_BYTES as usize {
            return Err(UsageError::InvalidField {
                field: "record".into(),
                message: format!(
                    "serialized record is {} bytes; a spool frame holds 1..={MAX_FRAME_BYTES}",
                    payload.len()
                ),
            });
        }
        let frame_len = FRAME_HEADER_BYTES + payload.len() as u64;
        let mut st = lock_ignore_poison(&self.state);
        if st.closed {
            return Err(UsageError::ShutDown);
        }
        let needs_new = match &st.active {
            None => true,
            Some((id, _)) => {
                let len = st.segments.get(id).map_or(0, |m| m.len);
                len + frame_len > self.opts.segment_max_bytes && len > SEGMENT_HEADER_BYTES
            }
        };
        let extra = if needs_new { SEGMENT_HEADER_BYTES } else { 0 };
        if st.total_bytes + frame_len + extra > self.opts.max_bytes {
            self.reclaim_active(&mut st);
            let extra = if st.active.is_none() {
                SEGMENT_HEADER_BYTES
            } else {
                extra
            };
            if st.total_bytes + frame_len + extra > self.opts.max_bytes {
                self.overflow.fetch_add(1, Ordering::AcqRel);
                return Err(UsageError::SpoolFull {
                    dir: self.opts.dir.clone(),
                    used_bytes: st.total_bytes,
                    max_bytes: self.opts.max_bytes,
                });
            }
        }
        if needs_new || st.active.is_none() {
            self.rotate(&mut st)?;
        }
        let (id, file) = match &st.active {
            Some((id, f)) => (*id, f.clone()),
            None => return Err(UsageError::ShutDown),
        };
        let mut buf = std::mem::take(&mut st.frame_buf);
        buf.clear();
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        buf.extend_from_slice(payload);
        let res = (&*file).write_all(&buf);
        st.frame_buf = buf;
        if let Err(e) = res {
            // A partial frame may now sit at the end: seal this segment at its last good
            // frame (recovery will skip the tail) and start a fresh one next time.
            if let Some(m) = st.segments.get_mut(&id) {
                m.sealed = true;
                let old = m.len;
                m.len = file.metadata().map(|md| md.len()).unwrap_or(m.len);
                // The partial frame's bytes are on disk too: count them, so deleting the
                // segment later subtracts what was added.
                let grown = m.len.saturating_sub(old);
                st.total_bytes += grown;
            }
            st.active = None;
            return Err(io_err(&self.opts.dir.join(seg_name(id)), e));
        }
        if let Some(m) = st.segments.get_mut(&id) {
            m.len += frame_len;
            m.valid_end = m.len;
        }
        st.total_bytes += frame_len;
        st.pending_records += 1;
        st.pending_bytes += frame_len;
        st.dirty = true;
        self.max_seq.fetch_max(seq, Ordering::AcqRel);
        if self.opts.fsync_interval.is_zero() {
            st.dirty = false;
            drop(st);
            file.sync_data()
                .map_err(|e| io_err(&self.opts.dir.join(seg_name(id)), e))?;
        } else {
            drop(st);
        }
        self.appended.notify_one();
        Ok(())
    }

    /// Seal the active segment (syncing it) and create the next one.
    fn rotate(&self, st: &mut State) -> Result<(), UsageError> {
        if let Some((id, f)) = st.active.take() {
            let _ = f.sync_data();
            if let Some(m) = st.segments.get_mut(&id) {
                m.sealed = true;
            }
        }
        let id = st.next_segment;
        let path = self.opts.dir.join(seg_name(id));
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        // The number is used up even if the header cannot be written (disk full): a
        // leftover file must not make every later rotation fail with "file exists".
        st.next_segment += 1;
        if let Err(e) = f.write_all(SEGMENT_MAGIC) {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(io_err(&path, e));
        }
        st.segments.insert(
            id,
            SegMeta {
                len: SEGMENT_HEADER_BYTES,
                valid_end: SEGMENT_HEADER_BYTES,
                sealed: false,
                bad: Vec::new(),
            },
        );
        st.total_bytes += SEGMENT_HEADER_BYTES;
        st.active = Some((id, Arc::new(f)));
        Ok(())
    }

    /// If every record of the active segment is delivered, delete it (frees its bytes).
    fn reclaim_active(&self, st: &mut State) {
        let Some((id, _)) = &st.active else { return };
        let id = *id;
        let Some(m) = st.segments.get(&id).cloned() else {
            return;
        };
        let consumed =
            st.cursor.segment > id || (st.cursor.segment == id && st.cursor.offset >= m.valid_end);
        let only_before = st.segments.range(..id).next().is_none();
        if consumed && only_before && fs::remove_file(self.opts.dir.join(seg_name(id))).is_ok() {
            st.active = None;
            st.segments.remove(&id);
            st.total_bytes = st.total_bytes.saturating_sub(m.len);
        }
    }

    /// Read up to `max_records` (and roughly `max_bytes`) records from the cursor on.
    /// Bad ranges found at recovery are jumped over; a frame that went bad since is
    /// skipped by resynchronising on the next intact one (counted), never by dropping
    /// the rest of its segment.
    pub fn read_batch(&self, max_records: usize, max_bytes: u64) -> Result<Batch, UsageError> {
        /// A segment as `read_batch` walks it: id, end of its valid bytes, bad ranges.
        type SegmentView = (u64, u64, Vec<(u64, u64)>);
        let (cursor, segs) = {
            let st = lock_ignore_poison(&self.state);
            let segs: Vec<SegmentView> = st
                .segments
                .range(st.cursor.segment..)
                .map(|(id, m)| (*id, m.valid_end, m.bad.clone()))
                .collect();
            (st.cursor, segs)
        };
        let mut batch = Batch {
            records: Vec::new(),
            end: cursor,
            bytes: 0,
        };
        for (id, valid_end, bad) in segs {
            let start = if id == cursor.segment {
                cursor.offset.max(SEGMENT_HEADER_BYTES)
            } else {
                SEGMENT_HEADER_BYTES
            };
            batch.end = Cursor {
                segment: id,
                offset: start,
            };
            if start >= valid_end {
                continue;
            }
            let path = self.opts.dir.join(seg_name(id));
            let f = File::open(&path).map_err(|e| io_err(&path, e))?;
            let mut r = BufReader::with_capacity(64 * 1024, &f);
            r.seek(SeekFrom::Start(start))
                .map_err(|e| io_err(&path, e))?;
            let mut pos = start;
            let mut hdr = [0u8; FRAME_HEADER_BYTES as usize];
            let mut scratch = Vec::new();
            while pos < valid_end {
                if batch.records.len() >= max_records
                    || (batch.bytes >= max_bytes && !batch.records.is_empty())
                {
                    return Ok(batch);
                }
                if let Some((_, b_end)) = bad.iter().find(|(a, b)| *a <= pos && pos < *b) {
                    pos = *b_end;
                    r.seek(SeekFrom::Start(pos)).map_err(|e| io_err(&path, e))?;
                    batch.end = Cursor {
                        segment: id,
                        offset: pos,
                    };
                    continue;
                }
                let mut ok = None;
                if pos + FRAME_HEADER_BYTES <= valid_end && r.read_exact(&mut hdr).is_ok() {
                    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
                    let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
                    if len > 0
                        && len <= MAX_FRAME_BYTES
                        && pos + FRAME_HEADER_BYTES + u64::from(len) <= valid_end
                    {
                        let mut payload = vec![0u8; len as usize];
                        if r.read_exact(&mut payload).is_ok() && crc32fast::hash(&payload) == crc {
                            ok = Some(payload);
                        }
                    }
                }
                let Some(payload) = ok else {
                    // Went bad after recovery: skip to the next intact frame.
                    let next = resync(&f, pos + 1, valid_end, &mut scratch)
                        .map_err(|e| io_err(&path, e))?
                        .unwrap_or(valid_end);
                    self.torn_bytes.fetch_add(next - pos, Ordering::AcqRel);
                    self.skipped_ranges.fetch_add(1, Ordering::AcqRel);
                    pos = next;
                    r.seek(SeekFrom::Start(pos)).map_err(|e| io_err(&path, e))?;
                    batch.end = Cursor {
                        segment: id,
                        offset: pos,
                    };
                    continue;
                };
                let frame = FRAME_HEADER_BYTES + payload.len() as u64;
                pos += frame;
                batch.bytes += frame;
                batch.end = Cursor {
                    segment: id,
                    offset: pos,
                };
                let head: Option<Head> = serde_json::from_slice(&payload).ok();
                let (rid, seq) = head.map_or((String::new(), 0), |h| (h.id, h.seq));
                batch.records.push(SpooledRecord {
                    id: rid,
                    seq,
                    payload,
                });
            }
            batch.end = Cursor {
                segment: id,
                offset: pos.max(valid_end),
            };
        }
        Ok(batch)
    }

    /// Mark a batch resolved: move the cursor to `batch.end` (persisted atomically) and
    /// delete segments that are wholly delivered.
    pub fn ack(&self, batch: &Batch) -> Result<(), UsageError> {
        let max_seq = self.max_seq();
        let cf = CursorFile {
            segment: batch.end.segment,
            offset: batch.end.offset,
            max_seq,
        };
        // On a full disk the cursor cannot be saved; the delivered segments must still be
        // deleted (below), or the spool never frees the space it needs: it would resend
        // the same batch forever while every new record is refused.
        let persisted = self.write_cursor(&cf);
        let mut st = lock_ignore_poison(&self.state);
        st.cursor = batch.end;
        st.pending_records = st
            .pending_records
            .saturating_sub(batch.records.len() as u64);
        st.pending_bytes = st.pending_bytes.saturating_sub(batch.bytes);
        let active = st.active.as_ref().map(|a| a.0);
        let done: Vec<u64> = st
            .segments
            .iter()
            .filter(|(id, m)| {
                Some(**id) != active
                    && (**id < batch.end.segment
                        || (**id == batch.end.segment
                            && m.sealed
                            && batch.end.offset >= m.valid_end))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if fs::remove_file(self.opts.dir.join(seg_name(id))).is_ok() {
                if let Some(m) = st.segments.remove(&id) {
                    st.total_bytes = st.total_bytes.saturating_sub(m.len);
                }
            }
        }
        // Updated under the state lock so `flush_target` sees pending and resolved agree.
        let n = self
            .resolved
            .fetch_add(batch.records.len() as u64, Ordering::AcqRel)
            + batch.records.len() as u64;
        drop(st);
        self.resolved_tx.send_replace(n);
        if persisted.is_err() {
            // Space may be free now. If not, the cursor stays in memory: after a restart
            // the records delivered since the saved cursor are sent again, and the
            // collector answers them as duplicates (at least once, never lost).
            if let Err(e) = self.write_cursor(&cf) {
                let _ = fs::remove_file(self.opts.dir.join("cursor.json.tmp"));
                self.set_last_error(Some(format!("saving the delivery cursor: {e}")));
            }
        }
        Ok(())
    }

    /// Save the delivery cursor atomically (temp file, fsync, rename).
    fn write_cursor(&self, cf: &CursorFile) -> Result<(), UsageError> {
        let tmp = self.opts.dir.join("cursor.json.tmp");
        let dst = self.opts.dir.join(CURSOR_FILE);
        let body = serde_json::to_vec(cf).map_err(|e| UsageError::Io {
            path: dst.clone(),
            source: std::io::Error::other(e),
        })?;
        {
            let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
            f.write_all(&body).map_err(|e| io_err(&tmp, e))?;
            f.sync_all().map_err(|e| io_err(&tmp, e))?;
        }
        fs::rename(&tmp, &dst).map_err(|e| io_err(&dst, e))
    }

    /// Append rejected records to the dead-letter file (fsynced).
    pub fn dead_letter(&self, entries: &[(&SpooledRecord, String)]) -> Result<(), UsageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let path = self.opts.dir.join(DEAD_LETTER_FILE);
        let now = super::record::unix_ms_now();
        let mut out = Vec::new();
        for (rec, reason) in entries {
            let record: Box<serde_json::value::RawValue> = match std::str::from_utf8(&rec.payload)
                .ok()
                .and_then(|s| serde_json::value::RawValue::from_string(s.to_owned()).ok())
            {
                Some(r) => r,
                None => continue,
            };
            let line = serde_json::json!({"dead_at_ms": now, "reason": reason, "record": record});
            out.extend_from_slice(line.to_string().as_bytes());
            out.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        f.write_all(&out).map_err(|e| io_err(&path, e))?;
        f.sync_data().map_err(|e| io_err(&path, e))?;
        self.dead_letters
            .fetch_add(entries.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// Record the latest delivery problem (cleared with `None`).
    pub fn set_last_error(&self, e: Option<String>) {
        *lock_ignore_poison(&self.last_error) = e;
    }

    /// fsync the active segment now.
    pub fn sync(&self) -> Result<(), UsageError> {
        let target = {
            let mut st = lock_ignore_poison(&self.state);
            st.dirty = false;
            st.active.as_ref().map(|(id, f)| (*id, f.clone()))
        };
        if let Some((id, f)) = target {
            f.sync_data()
                .map_err(|e| io_err(&self.opts.dir.join(seg_name(id)), e))?;
        }
        Ok(())
    }

    /// Counters for `gaterouter spool status`.
    pub fn status(&self) -> SpoolStatus {
        let st = lock_ignore_poison(&self.state);
        SpoolStatus {
            dir: self.opts.dir.clone(),
            pending_records: st.pending_records,
            pending_bytes: st.pending_bytes,
            total_bytes: st.total_bytes,
            max_bytes: self.opts.max_bytes,
            segments: st.segments.len() as u64,
            dead_letters: self.dead_letters.load(Ordering::Acquire),
            overflow_count: self.overflow.load(Ordering::Acquire),
            torn_bytes_skipped: self.torn_bytes.load(Ordering::Acquire),
            skipped_ranges: self.skipped_ranges.load(Ordering::Acquire),
            cursor_repairs: self.cursor_repairs,
            delivered_records: self.resolved.load(Ordering::Acquire),
            max_seq: self.max_seq(),
            last_error: lock_ignore_poison(&self.last_error).clone(),
        }
    }

    /// Status of a spool directory without opening (or locking) it: for the CLI while
    /// the owning process runs or after it stopped.
    pub fn inspect(dir: &Path, max_bytes: u64) -> Result<SpoolStatus, UsageError> {
        let r = recover(dir)?;
        Ok(SpoolStatus {
            dir: dir.to_path_buf(),
            pending_records: r.pending.0,
            pending_bytes: r.pending.1,
            total_bytes: r.total,
            max_bytes,
            segments: r.segments.len() as u64,
            dead_letters: count_lines(&dir.join(DEAD_LETTER_FILE)),
            overflow_count: 0,
            torn_bytes_skipped: r.torn,
            skipped_ranges: r.ranges,
            cursor_repairs: r.cursor_repairs,
            delivered_records: 0,
            max_seq: r.max_seq,
            last_error: None,
        })
    }

    /// Refuse further appends, fsync, stop the fsync thread and release the directory
    /// lock. Reads and acks still work (the reporter may finish its batch).
    pub fn close(&self) -> Result<(), UsageError> {
        let res = self.sync();
        {
            let mut st = lock_ignore_poison(&self.state);
            st.closed = true;
            st.active = None;
        }
        *lock_ignore_poison(&self.fsync.stop) = true;
        self.fsync.cv.notify_all();
        if let Some(h) = lock_ignore_poison(&self.fsync_thread).take() {
            let _ = h.join();
        }
        if let Some(f) = lock_ignore_poison(&self.lock_file).take() {
            let _ = <File as fs4::FileExt>::unlock(&f);
        }
        res
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        *lock_ignore_poison(&self.fsync.stop) = true;
        self.fsync.cv.notify_all();
        if let Some((_, f)) = &lock_ignore_poison(&self.state).active {
            let _ = f.sync_data();
        }
    }
}

fn fsync_loop(spool: Weak<Spool>, ctl: Arc<FsyncCtl>, every: Duration) {
    loop {
        {
            let stop = lock_ignore_poison(&ctl.stop);
            let (stop, _) = ctl
                .cv
                .wait_timeout(stop, every)
                .unwrap_or_else(|p| p.into_inner());
            if *stop {
                return;
            }
        }
        let Some(sp) = spool.upgrade() else { return };
        let target = {
            let mut st = lock_ignore_poison(&sp.state);
            if !st.dirty {
                None
            } else {
                st.dirty = false;
                st.active.as_ref().map(|(id, f)| (*id, f.clone()))
            }
        };
        if let Some((id, f)) = target {
            if let Err(e) = f.sync_data() {
                lock_ignore_poison(&sp.state).dirty = true;
                sp.set_last_error(Some(format!(
                    "fsync of segment {} failed: {e}",
                    seg_name(id)
                )));
            }
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain counters;
/// keep going rather than propagate the panic into the caller's request path.
fn lock_ignore_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> SpoolOptions {
        SpoolOptions::new(dir, Duration::from_millis(50), 1 << 20)
    }

    fn payload(i: u64) -> Vec<u8> {
        format!(r#"{{"id":"r{i}","seq":{i},"x":"{}"}}"#, "y".repeat(40)).into_bytes()
    }

    #[test]
    fn append_read_ack_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let sp = Spool::open(opts(d.path())).unwrap();
        for i in 1..=10 {
            sp.append(&payload(i), i).unwrap();
        }
        let b = sp.read_batch(4, u64::MAX).unwrap();
        assert_eq!(
            b.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        sp.ack(&b).unwrap();
        assert_eq!(sp.pending_records(), 6);
        sp.close().unwrap();
        drop(sp);
        let sp = Spool::open(opts(d.path())).unwrap();
        assert_eq!(sp.pending_records(), 6);
        assert_eq!(sp.max_seq(), 10);
        let b = sp.read_batch(100, u64::MAX).unwrap();
        assert_eq!(b.records.first().unwrap().id, "r5");
        assert_eq!(b.records.len(), 6);
    }

    #[test]
    fn max_seq_survives_deletion_of_every_segment() {
        let d = tempfile::tempdir().unwrap();
        let sp = Spool::open(opts(d.path())).unwrap();
        for i in 1..=5 {
            sp.append(&payload(i), i).unwrap();
        }
        let b = sp.read_batch(100, u64::MAX).unwrap();
        sp.ack(&b).unwrap();
        sp.close().unwrap();
        drop(sp);
        for e in fs::read_dir(d.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "seg") {
                fs::remove_file(p).unwrap();
            }
        }
        let sp = Spool::open(opts(d.path())).unwrap();
        assert_eq!((sp.max_seq(), sp.pending_records()), (5, 0));
        // The next segment number is past the cursor's, so the new record is not skipped.
        sp.append(&payload(6), 6).unwrap();
        let b = sp.read_batch(100, u64::MAX).unwrap();
        assert_eq!(b.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![6]);
    }

    #[test]
    fn second_open_is_locked() {
        let d = tempfile::tempdir().unwrap();
        let _a = Spool::open(opts(d.path())).unwrap();
        let e = Spool::open(opts(d.path())).unwrap_err();
        assert!(matches!(e, UsageError::SpoolLocked { .. }), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
    }

    #[test]
    fn rotation_and_segment_deletion() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        o.segment_max_bytes = 300;
        let sp = Spool::open(o).unwrap();
        for i in 1..=20 {
            sp.append(&payload(i), i).unwrap();
        }
        let segs = sp.status().segments;
        assert!(segs >= 5, "{segs}");
        let b = sp.read_batch(15, u64::MAX).unwrap();
        sp.ack(&b).unwrap();
        let st = sp.status();
        assert!(st.segments < segs, "{st:?}");
        assert_eq!(st.pending_records, 5);
        let b = sp.read_batch(100, u64::MAX).unwrap();
        assert_eq!(
            b.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (16..=20).collect::<Vec<_>>()
        );
    }

    #[test]
    fn full_spool_refuses_and_counts() {
        let d = tempfile::tempdir().unwrap();
        let sp = Spool::open(SpoolOptions::new(d.path(), Duration::ZERO, 600)).unwrap();
        let mut ok = 0;
        let mut err = None;
        for i in 1..=20 {
            match sp.append(&payload(i), i) {
                Ok(()) => ok += 1,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(ok > 0);
        assert!(matches!(err, Some(UsageError::SpoolFull { .. })), "{err:?}");
        assert_eq!(sp.status().overflow_count, 1);
        assert!(sp.status().total_bytes <= 600);
        // Delivering everything frees space again.
        let b = sp.read_batch(100, u64::MAX).unwrap();
        assert_eq!(b.records.len(), ok);
        sp.ack(&b).unwrap();
        sp.append(&payload(99), 99).unwrap();
    }
}
