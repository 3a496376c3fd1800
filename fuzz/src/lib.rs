//! The bodies of the fuzz targets (issue 18), one `pub fn <target>(data: &[u8])` each.
//!
//! `fuzz_targets/<target>.rs` hands libFuzzer's input to the function of the same name;
//! `tests/replay.rs` runs every file of `corpus/<target>/` and `regressions/<target>/`
//! through it on stable, without libFuzzer. A target fails by panicking: on any panic of
//! the code under test, and on a broken invariant (`assert!`). Errors returned by the
//! code under test are fine — rejecting garbage is its job.
//!
//! Input layouts (the first bytes steer, the rest is the payload) are documented on each
//! function; `README.md` says how to add a seed in that layout.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use gaterouter::config::{Config, Secret};
use gaterouter::providers::{Target, adapter_for};
use gaterouter::sse::{SseError, SseEvent, SseParser};
use gaterouter::stream::StreamAccumulator;
use gaterouter::usage::spool::{SEGMENT_MAGIC, Spool, SpoolOptions};
use gaterouter_collector::ingest::{self, KeyInfo, PricingSettings};

/// The names of the targets, as in `fuzz/Cargo.toml` and `corpus/<name>/`.
pub const TARGETS: &[&str] = &["sse", "provider_response", "provider_stream", "config", "orgfile", "spool", "ingest", "tokenize"];

/// Run the target named `name` on `data` (the replay test's dispatcher).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "sse" => sse(data),
        "provider_response" => provider_response(data),
        "provider_stream" => provider_stream(data),
        "config" => config(data),
        "orgfile" => orgfile(data),
        "spool" => spool(data),
        "ingest" => ingest(data),
        "tokenize" => tokenize(data),
        other => panic!("unknown fuzz target `{other}`"),
    }
}

// ---------------------------------------------------------------------------------------
// SSE parser
// ---------------------------------------------------------------------------------------

/// Everything one way of feeding produced: the events, then the error that stopped it.
type Parsed = (Vec<SseEvent>, Option<SseError>);

fn parse_in_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Parsed {
    let mut p = SseParser::new();
    let mut events = Vec::new();
    for c in chunks {
        match p.feed(c) {
            Ok(evs) => events.extend(evs),
            Err(e) => return (events, Some(e)),
        }
    }
    match p.finish() {
        Ok(ev) => events.extend(ev),
        Err(e) => return (events, Some(e)),
    }
    (events, None)
}

/// `gaterouter::sse::SseParser` fed the same bytes whole, split where the input says, and
/// one byte at a time: the same events (and the same error, if any) every way.
///
/// Layout: byte 0 = `k` (mod 8) chunk lengths follow, one byte each; the rest is the
/// stream, cut into chunks of those lengths (cycled; a 0 is an empty `feed`).
pub fn sse(data: &[u8]) {
    let Some((&k, rest)) = data.split_first() else { return };
    let k = usize::from(k % 8).min(rest.len());
    let (lens, stream) = rest.split_at(k);
    let whole = parse_in_chunks([stream]);
    for ev in &whole.0 {
        // Lines are split on CR and LF, so no field can hold one (data lines are joined
        // with LF only).
        assert!(!ev.data.contains('\r'), "CR in data: {ev:?}");
        assert!(!ev.event.contains(['\r', '\n']), "line break in event: {ev:?}");
        assert!(ev.id.as_deref().is_none_or(|id| !id.contains(['\r', '\n', '\0'])), "bad id: {ev:?}");
    }
    if !lens.is_empty() {
        let mut chunks = Vec::new();
        let mut at = 0;
        // Bounded: lengths of 0 (empty feeds) must not loop forever.
        for &l in lens.iter().cycle().take(stream.len() + lens.len()) {
            if at >= stream.len() {
                break;
            }
            let end = (at + usize::from(l)).min(stream.len());
            chunks.push(&stream[at..end]);
            at = end;
        }
        chunks.push(&stream[at..]);
        let split = parse_in_chunks(chunks);
        compare(&whole, &split, "split as the input says");
    }
    let bytewise = parse_in_chunks(stream.chunks(1));
    compare(&whole, &bytewise, "byte by byte");
}

fn compare(whole: &Parsed, other: &Parsed, how: &str) {
    // On an error the events of the failing `feed` call are not returned, so only the
    // error itself is compared then.
    assert_eq!(whole.1, other.1, "different error when fed {how}");
    if whole.1.is_none() {
        assert_eq!(whole.0, other.0, "different events when fed {how}");
    }
}

// ---------------------------------------------------------------------------------------
// Provider adapters
// ---------------------------------------------------------------------------------------

/// The providers whose response parsers are fuzzed, by the selector byte (mod 4).
const PROVIDERS: [(&str, &str); 4] =
    [("openai", "gpt-4o-mini"), ("deepseek", "deepseek-chat"), ("anthropic", "claude-sonnet-4-5"), ("gemini", "gemini-2.5-flash")];

fn targets() -> &'static [Target] {
    static T: OnceLock<Vec<Target>> = OnceLock::new();
    T.get_or_init(|| {
        let providers = Config::default().resolved_providers("fuzz").expect("the built-in providers resolve");
        PROVIDERS
            .iter()
            .map(|(p, m)| Target {
                provider: providers[*p].clone(),
                model: (*m).to_owned(),
                model_id: format!("{p}/{m}"),
                api_key: Some(Secret::new("sk-fuzz")),
            })
            .collect()
    })
}

/// A non-streaming 2xx body through `Adapter::parse_response`, or an error body
/// through `Adapter::parse_error`, of OpenAI, DeepSeek (OpenAI-compatible), Anthropic
/// Messages or Gemini generateContent.
///
/// Layout: byte 0: provider = bits 0-1 (openai, deepseek, anthropic, gemini); bit 2 set:
/// an error answer whose status is 400 + byte 1 (400..=655), with a `retry-after` header
/// when bit 3 is set. The rest is the body.
pub fn provider_response(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let target = &targets()[usize::from(sel & 3)];
    let adapter = adapter_for(target.provider.kind);
    if sel & 4 == 0 {
        if let Ok(resp) = adapter.parse_response(rest, target) {
            let _ = resp.text();
            // What the bindings hand out: it must serialize.
            serde_json::to_string(&resp).expect("a parsed response serializes");
        }
        return;
    }
    let Some((&status, body)) = rest.split_first() else { return };
    let mut headers = http::HeaderMap::new();
    if sel & 8 != 0 {
        headers.insert("retry-after", http::HeaderValue::from_static("7"));
    }
    let e = adapter.parse_error(400 + u16::from(status), &headers, body, target);
    let _ = (e.to_string(), e.kind());
}

/// A streaming body: bytes -> `SseParser` -> the provider's `StreamDecoder` ->
/// `StreamAccumulator`, the way `Client::chat_stream` drives them (an error ends the
/// stream; the parser's tail event and the decoder's `finish` run at the end).
///
/// Layout: byte 0: provider = bits 0-1 as for `provider_response`; the rest is the body.
pub fn provider_stream(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let target = &targets()[usize::from(sel & 3)];
    let mut decoder = adapter_for(target.provider.kind).stream_decoder(target);
    let mut parser = SseParser::new();
    let mut acc = StreamAccumulator::default();
    let Ok(events) = parser.feed(body) else { return };
    for ev in &events {
        match decoder.on_event(ev) {
            Ok(chunks) => chunks.iter().for_each(|c| acc.push(c)),
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    }
    let tail = match parser.finish() {
        Ok(Some(ev)) => decoder.on_event(&ev),
        Ok(None) => Ok(Vec::new()),
        Err(_) => return,
    };
    let Ok(tail) = tail else { return };
    tail.iter().for_each(|c| acc.push(c));
    let Ok(last) = decoder.finish() else { return };
    last.iter().for_each(|c| acc.push(c));
    if let Ok(resp) = acc.finish() {
        serde_json::to_string(&resp).expect("an accumulated response serializes");
    }
}

// ---------------------------------------------------------------------------------------
// Config loaders
// ---------------------------------------------------------------------------------------

/// The SDK config (`Config::from_toml_str`, `Config::from_json_str`) and the
/// collector's (`CollectorConfig::from_toml`). A valid SDK config must survive the trip
/// to JSON and back (what the bindings pass) unchanged, and its price overrides must
/// apply to the built-in catalog.
///
/// Layout: byte 0 (mod 3): 0 SDK TOML, 1 SDK JSON, 2 collector TOML; the rest is the
/// text (UTF-8, else ignored).
pub fn config(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let cfg = match sel % 3 {
        0 => Config::from_toml_str(text, "fuzz.toml"),
        1 => Config::from_json_str(text),
        _ => {
            if let Ok(c) = gaterouter_collector::CollectorConfig::from_toml(text, "fuzz.toml") {
                if c.validate().is_ok() {
                    let _ = (c.db_url(), c.burst());
                }
            }
            return;
        }
    };
    let Ok(cfg) = cfg else { return };
    let json = serde_json::to_value(&cfg).expect("a valid config serializes");
    match Config::from_json_value(json.clone()) {
        Ok(back) => assert_eq!(back, cfg, "config changed through JSON: {json}"),
        Err(e) => panic!("a valid config is refused after a trip through JSON: {e}\n{json}"),
    }
    let _ = gaterouter::pricing::Catalog::builtin().with_overrides(&cfg.prices);
    let _ = gaterouter::health::Health::new(cfg.routing.circuit_breaker.clone());
}

// ---------------------------------------------------------------------------------------
// Organization file
// ---------------------------------------------------------------------------------------

/// `gaterouter_collector::orgfile::parse` (TOML, YAML or JSON) and, for a valid file,
/// the catalog check `admin apply` runs and every budget's limit. The CLI sends a parsed
/// file to the collector as JSON, which parses it again: that must give the same file.
///
/// Layout: byte 0 (mod 3): 0 TOML, 1 YAML, 2 JSON; the rest is the text.
pub fn orgfile(data: &[u8]) {
    use gaterouter_collector::orgfile::{Format, parse};
    let Some((&sel, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let format = [Format::Toml, Format::Yaml, Format::Json][usize::from(sel % 3)];
    let Ok(f) = parse(text, format) else { return };
    let _ = f.check_against_catalog(text, gaterouter::pricing::Catalog::builtin());
    let budgets = f.org.budgets.iter().chain(f.departments.iter().flat_map(|d| &d.budgets));
    for b in budgets {
        let _ = (b.limit_units(), b.notify_at_or_default());
    }
    let json = serde_json::to_string(&f).expect("a valid org file serializes");
    match parse(&json, Format::Json) {
        Ok(back) => assert_eq!(back, f, "org file changed through JSON: {json}"),
        Err(e) => panic!("a valid org file is refused as JSON: {e}\n{json}"),
    }
}

// ---------------------------------------------------------------------------------------
// Spool recovery
// ---------------------------------------------------------------------------------------

/// One spool frame: `u32 LE length`, `u32 LE CRC-32`, payload (the format in
/// `gaterouter::usage::spool`).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fn record(id: &str, seq: u64) -> Vec<u8> {
    format!(r#"{{"id":"{id}","seq":{seq},"ts_end":1}}"#).into_bytes()
}

/// A spool directory holding arbitrary bytes: recovery (`Spool::inspect`,
/// `Spool::open`), a full drain (`read_batch` + `ack`), an append after it and a reopen.
///
/// Segment 1 is [magic] + intact prefix records + the input's garbage + [intact suffix
/// records]; segment 2 (optional) holds one intact record; `cursor.json` (optional) comes
/// from the input. Asserted: inspect and open agree; every record counted pending is
/// read exactly once and the drain ends (no endless empty batches); with the magic and
/// the cursor before them, the intact records before the garbage and after it (unless a
/// frame of the garbage covers them) are delivered, in order, and segment 2's record
/// when the cursor is not past it; a record appended after the drain is read back;
/// nothing is pending after a reopen.
///
/// Layout: byte 0 = flags: bits 0-1 prefix records (0..=3); bit 2 write the segment magic;
/// bit 3 intact suffix records after the garbage; bit 4 a second segment; bit 5 a cursor
/// file: byte 1 = its segment (mod 4), bytes 2-3 = its offset (u16 LE). The rest is the
/// garbage.
pub fn spool(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    let cursor = if flags & 32 != 0 {
        if rest.len() < 3 {
            return;
        }
        let c = (u64::from(rest[0] % 4), u64::from(u16::from_le_bytes([rest[1], rest[2]])));
        rest = &rest[3..];
        Some(c)
    } else {
        None
    };
    let garbage = rest;
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path();
    let prefix: Vec<String> = (0..flags & 3).map(|i| format!("p{i}")).collect();
    let mut seg = Vec::new();
    if flags & 4 != 0 {
        seg.extend_from_slice(SEGMENT_MAGIC);
    }
    for (i, id) in prefix.iter().enumerate() {
        seg.extend(frame(&record(id, i as u64 + 1)));
    }
    seg.extend_from_slice(garbage);
    if flags & 8 != 0 {
        seg.extend(frame(&record("s0", 10)));
        seg.extend(frame(&record("s1", 11)));
    }
    std::fs::write(path.join(seg_file(1)), &seg).expect("write segment 1");
    let mut seg2 = SEGMENT_MAGIC.to_vec();
    seg2.extend(frame(&record("t0", 20)));
    let seg2_len = seg2.len() as u64;
    if flags & 16 != 0 {
        std::fs::write(path.join(seg_file(2)), &seg2).expect("write segment 2");
    }
    if let Some((s, o)) = cursor {
        std::fs::write(path.join("cursor.json"), format!(r#"{{"segment":{s},"offset":{o},"max_seq":0}}"#)).expect("write the cursor");
    }

    let inspected = Spool::inspect(path, u64::MAX).expect("inspect a spool directory");
    let opts = SpoolOptions::new(path, Duration::ZERO, 64 << 20);
    let sp = Spool::open(opts.clone()).expect("open a spool directory");
    let opened = sp.status();
    assert_eq!(opened.pending_records, inspected.pending_records, "inspect and open disagree on pending records");
    assert_eq!(opened.pending_bytes, inspected.pending_bytes, "inspect and open disagree on pending bytes");
    assert_eq!(opened.torn_bytes_skipped, inspected.torn_bytes_skipped, "inspect and open disagree on skipped bytes");

    let ids = drain(&sp);
    assert_eq!(ids.len() as u64, opened.pending_records, "records read {ids:?} differ from the pending count");
    assert_eq!(sp.status().pending_records, 0, "records pending after a full drain");
    let (cseg, coff) = cursor.unwrap_or((0, 0));
    let from_start = cseg == 0 || (cseg == 1 && coff <= SEGMENT_MAGIC.len() as u64);
    if from_start && flags & 4 != 0 {
        assert!(ids.starts_with(&prefix), "intact records before the garbage lost: read {ids:?}");
    }
    if from_start && flags & 12 == 12 && ids.iter().all(|id| id.starts_with(['p', 's', 't']) && id.len() == 2) {
        // Without the magic the first 8 bytes are a bad header, whatever they hold. The
        // garbage may hold frames of its own (libFuzzer finds CRCs), and one of them
        // may legitimately cover the suffix. But a frame covering a suffix frame's header
        // (length 31, zero bytes) cannot be JSON, so it is read with the id "": when
        // every id read is one of ours, nothing covered the suffix.
        assert!(ids.ends_with(&["s0".to_owned(), "s1".to_owned()]) || ids.ends_with(&["s0".to_owned(), "s1".to_owned(), "t0".to_owned()]), "intact records after the garbage lost: read {ids:?}");
    }
    if flags & 16 != 0 && (cseg < 2 || (cseg == 2 && coff != seg2_len)) {
        // A cursor right at the end of segment 2 says its record was delivered.
        assert_eq!(ids.last().map(String::as_str), Some("t0"), "the intact second segment's record lost: read {ids:?}");
    }

    sp.append(&record("n0", 30), 30).expect("append after the drain");
    assert_eq!(drain(&sp), ["n0"], "the record appended after recovery");
    sp.close().expect("close");
    drop(sp);
    let after = Spool::inspect(path, u64::MAX).expect("inspect after the drain");
    assert_eq!(after.pending_records, 0, "records pending after a drain and a reopen");
}

fn seg_file(id: u64) -> String {
    format!("{id:020}.seg")
}

/// Read and ack until nothing is left; the ids read.
fn drain(sp: &Spool) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..10_000 {
        let batch = sp.read_batch(3, 1 << 20).expect("read a batch");
        if batch.records.is_empty() && sp.status().pending_records == 0 {
            sp.ack(&batch).expect("ack");
            return ids;
        }
        ids.extend(batch.records.iter().map(|r| r.id.clone()));
        sp.ack(&batch).expect("ack");
    }
    panic!("the spool never drained: {} records read, {} still pending", ids.len(), sp.status().pending_records);
}

// ---------------------------------------------------------------------------------------
// Collector ingest
// ---------------------------------------------------------------------------------------

const FUZZ_SEED: [u8; 32] = [7; 32];

fn signer() -> &'static gaterouter::usage::signing::UsageSigner {
    static S: OnceLock<gaterouter::usage::signing::UsageSigner> = OnceLock::new();
    S.get_or_init(|| gaterouter::usage::signing::UsageSigner::from_seed(&FUZZ_SEED))
}

/// The key a record names, registered as its name says: `nokey*` is not registered,
/// `revoked*` is revoked, `*dept*` is bound to department `research`, `*proj*` to
/// project `proj-42`, `*multi*` has two valid public keys (strict verification); every
/// key is of org `org_acme` (the units of tests/vectors/records.json) and holds the fuzz
/// signer's public key.
fn key_for(id: &str) -> Option<KeyInfo> {
    if id.starts_with("nokey") {
        return None;
    }
    let mut public_keys = vec![signer().public_key().to_owned()];
    if id.contains("multi") {
        public_keys.insert(0, gaterouter::usage::signing::UsageSigner::from_seed(&[9; 32]).public_key().to_owned());
    }
    Some(KeyInfo {
        id: id.to_owned(),
        org: "org_acme".into(),
        department: id.contains("dept").then(|| "research".into()),
        project: id.contains("proj").then(|| "proj-42".into()),
        group: None,
        user: None,
        revoked: id.starts_with("revoked"),
        public_keys,
    })
}

fn pricing(unknown: gaterouter_collector::config::UnknownModel, max_age_ms: u64) -> PricingSettings {
    let d = gaterouter_collector::CollectorConfig::default();
    PricingSettings {
        catalog: gaterouter::pricing::Catalog::builtin().clone(),
        strongest: Some("openai/gpt-4o".into()),
        tolerance_micros: d.cost_tolerance_micros,
        max_record_tokens: d.max_record_tokens,
        max_record_cost_micros: d.max_record_cost_micros,
        max_record_age_ms: max_age_ms,
        unknown_model: unknown,
        unknown_model_micros_per_mtok: d.unknown_model_micros_per_mtok,
    }
}

/// The record with its `signature` replaced by the fuzz signer's signature of its
/// canonical form (None when it is not an object or cannot be canonicalized).
fn resign(raw: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(raw).ok()?;
    let obj = v.as_object_mut()?;
    obj.remove("signature");
    let canonical = gaterouter::usage::canonical::canonicalize(&v).ok()?;
    let sig = signer().sign(canonical.as_bytes());
    v.as_object_mut()?.insert("signature".into(), serde_json::Value::String(sig));
    Some(v.to_string())
}

/// `POST /v1/usage` short of the database: the body decoded as the server does
/// (`BatchRequest`), `triage`, then `verify_all` (signature, schema, time bounds, key
/// binding, per-record bounds, pricing) and `answer`. Each record is also re-signed
/// with the registered key, so the checks after the signature see the fuzzer's records.
///
/// Asserted: one result per record; a re-signed record of a usable key is never refused
/// as `bad_signature` (signer and verifier agree on the canonical form); an accepted
/// record validates, carries the key's bound units and a collector price, is within the
/// token bound, and is flagged when priced by the unknown-model fallback.
///
/// Layout: the whole input is the request body.
pub fn ingest(data: &[u8]) {
    use gaterouter_collector::config::UnknownModel;
    let Ok(req) = serde_json::from_slice::<ingest::BatchRequest<'_>>(data) else { return };
    let tri = ingest::triage(&req.records);
    let keys: HashMap<String, KeyInfo> = tri.todo.iter().filter_map(|(_, _, k, _)| key_for(k).map(|ki| (k.clone(), ki))).collect();
    let default_age = gaterouter_collector::CollectorConfig::default().max_record_age_days * 86_400_000;
    let now = gaterouter::usage::unix_ms_now();
    let results = ingest::verify_all(&tri.todo, &keys, &pricing(UnknownModel::Fallback, default_age), now);
    assert_eq!(results.len(), tri.todo.len(), "one result per record");

    let resigned: Vec<(usize, String, String, String)> =
        tri.todo.iter().filter_map(|(i, id, k, raw)| resign(raw).map(|r| (*i, id.clone(), k.clone(), r))).collect();
    let todo: Vec<(usize, String, String, &str)> = resigned.iter().map(|(i, id, k, r)| (*i, id.clone(), k.clone(), r.as_str())).collect();
    for unknown in [UnknownModel::Fallback, UnknownModel::Refuse] {
        // Any age: the corpus's records are older than the default window.
        let p = pricing(unknown, u64::MAX);
        let results = ingest::verify_all(&todo, &keys, &p, now);
        assert_eq!(results.len(), todo.len(), "one result per re-signed record");
        let mut verified_ids = Vec::new();
        let mut refused = Vec::new();
        for ((_, id, k, raw), r) in todo.iter().zip(results) {
            let key = keys.get(k);
            match r {
                Ok(v) => {
                    let key = key.expect("a record of an unregistered key was accepted");
                    assert!(!key.revoked, "a record of a revoked key was accepted");
                    check_verified(&v, key, &p, raw);
                    verified_ids.push(id.clone());
                }
                Err(e) => {
                    if key.is_some_and(|k| !k.revoked) {
                        assert_ne!(e.code, "bad_signature", "a correctly signed record was refused: {} ({raw})", e.reason);
                    }
                    refused.push((id.clone(), e));
                }
            }
        }
        let stored = vec![true; verified_ids.len()];
        let resp = ingest::answer(tri.rejected.clone(), tri.duplicate.clone(), &verified_ids, &stored, refused, &gaterouter_collector::metrics::Metrics::default());
        assert_eq!(resp.accepted.len(), verified_ids.len(), "every stored record is answered accepted");
    }
}

fn check_verified(v: &ingest::Verified, key: &KeyInfo, p: &PricingSettings, raw: &str) {
    v.rec.validate().unwrap_or_else(|e| panic!("an accepted record does not validate: {e} ({raw})"));
    let bound: BTreeMap<&str, (&Option<String>, Option<&String>)> = [
        ("org", (&v.rec.org, Some(&key.org))),
        ("department", (&v.rec.department, key.department.as_ref())),
        ("project", (&v.rec.project, key.project.as_ref())),
    ]
    .into_iter()
    .collect();
    for (field, (got, want)) in bound {
        if let Some(want) = want {
            assert_eq!(got.as_ref(), Some(want), "accepted record's {field} is not the key's binding ({raw})");
        }
    }
    let (limit, _) = ingest::token_bound(p, &v.rec.provider, &v.rec.model);
    assert!(v.rec.prompt_tokens.saturating_add(v.rec.completion_tokens) <= limit, "accepted record over the token bound ({raw})");
    assert!(v.collector_cost.is_some() && v.priced_as.is_some(), "accepted record without a collector price ({raw})");
    if v.priced_as.as_deref() == Some("unknown-model-fallback") {
        assert!(v.mismatch, "a fallback-priced record is not flagged ({raw})");
    }
}

/// Every file of `dir` (sorted), for the replay test; an absent directory is empty.
pub fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// `tokenize`: the input (lossily decoded as UTF-8) through both exact encodings. Token ids
/// must equal tiktoken-rs's (tiktoken's algorithm and regexes), counts must equal the
/// number of ids, and nothing may panic.
pub fn tokenize(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for (ours, reference) in [
        (gaterouter_tokenizer::o200k_base(), tiktoken_rs::o200k_base_singleton()),
        (gaterouter_tokenizer::cl100k_base(), tiktoken_rs::cl100k_base_singleton()),
    ] {
        let ids = ours.encode(&text);
        assert_eq!(ids, reference.encode_ordinary(&text), "ids differ from tiktoken for {text:?}");
        assert_eq!(ours.count(&text), ids.len());
    }
}
