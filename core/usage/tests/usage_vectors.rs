//! The Rust canonicalizer and signer reproduce the independently generated vectors in
//! `tests/vectors/records.json` (Python `cryptography` + its own JCS).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

use gaterouter_usage::UsageRecord;
use gaterouter_usage::canonical::canonicalize;
use gaterouter_usage::signing::{UsageSigner, verify, verify_wire, wire_json};
use serde_json::Value;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/records.json")
}

fn load() -> Value {
    serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap()
}

#[test]
fn canonical_bytes_and_signatures_match_the_vectors() {
    let v = load();
    let signer = UsageSigner::from_key_text(v["seed_base64"].as_str().unwrap(), "vectors").unwrap();
    let pem_signer =
        UsageSigner::from_key_text(v["private_key_pem"].as_str().unwrap(), "vectors pem").unwrap();
    let pk = v["public_key"].as_str().unwrap();
    assert_eq!(signer.public_key(), pk);
    assert_eq!(pem_signer.public_key(), pk);
    let vectors = v["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 4);
    for t in vectors {
        let name = t["name"].as_str().unwrap();
        let want = t["canonical"].as_str().unwrap();
        // The generic canonicalizer on the raw JSON value.
        assert_eq!(canonicalize(&t["record"]).unwrap(), want, "{name}");
        // The typed record: strict schema, bounds, and its own canonical form.
        let rec: UsageRecord =
            serde_json::from_value(t["record"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        rec.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rec.canonical_json().unwrap(), want, "{name}");
        // Ed25519 is deterministic: the same key and bytes give the same signature.
        let sig = t["signature"].as_str().unwrap();
        assert_eq!(signer.sign(want.as_bytes()), sig, "{name}");
        assert_eq!(
            signer.sign_record(&rec).unwrap(),
            (want.to_owned(), sig.to_owned()),
            "{name}"
        );
        verify(pk, want.as_bytes(), sig).unwrap();
        // Wire form verifies as a collector would, and any change breaks it.
        let wire = wire_json(want, sig);
        assert_eq!(verify_wire(&wire, pk).unwrap(), rec, "{name}");
        let tampered = wire.replacen("\"attempts\":", "\"attempts\":1", 1);
        assert!(verify_wire(&tampered, pk).is_err(), "{name}");
    }
}

#[test]
fn unicode_tag_keys_are_ordered_by_utf16() {
    let v = load();
    let full = v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"].as_str().unwrap().starts_with("full"))
        .unwrap();
    let c = full["canonical"].as_str().unwrap();
    let pos = |s: &str| c.find(s).unwrap_or_else(|| panic!("{s} missing"));
    assert!(pos("\"B\":") < pos("\"a\":"));
    assert!(pos("\"é\":") < pos("\"😀\":"));
    assert!(
        pos("\"😀\":") < pos("\"\u{e000}\":"),
        "UTF-16 order puts the surrogate pair first"
    );
    assert!(
        c.contains("bell \\u0007 us \\u001f del \u{7f} ls \u{2028}"),
        "{c}"
    );
}

/// Regenerate the vectors with the Python generator (when Python with `cryptography` is
/// available) and require the very same file: proves the checked-in vectors come from the
/// independent implementation. Set GATEROUTER_VECTORS_PYTHON to choose the interpreter.
#[test]
fn python_generator_reproduces_the_file() {
    let py = std::env::var("GATEROUTER_VECTORS_PYTHON").unwrap_or_else(|_| {
        if std::path::Path::new("/tmp/vecvenv/bin/python").exists() {
            "/tmp/vecvenv/bin/python".into()
        } else {
            "python3".into()
        }
    });
    let has = Command::new(&py)
        .args(["-c", "import cryptography"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has {
        eprintln!("skipping: {py} has no `cryptography` (pip install cryptography)");
        return;
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/gen_records.py");
    let out = Command::new(&py).arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(vectors_path()).unwrap()
    );
}
