//! Ed25519-signed HTTP requests from the SDK to the collector (`GET /v1/policy`,
//! `POST /v1/reservations`, settle). The key that signs usage records also signs
//! these, so the collector needs no other secret per key.
//!
//! Header: `Authorization: GateRouter-Ed25519 key_id=<api_key_id>,ts=<unix ms>,sig=<base64>`
//! where `sig` is the Ed25519 signature of
//! `GR1\n<METHOD>\n<path?query>\n<ts>\n<hex sha256 of the body>`.
//! The collector accepts `ts` within [`MAX_SKEW_MS`] of its clock; the endpoints are
//! idempotent (reservations carry their own id), so a replay inside that window
//! changes nothing.

use sha2::{Digest, Sha256};

use crate::usage::signing::{UsageSigner, verify};

/// Authorization scheme name.
pub const SCHEME: &str = "GateRouter-Ed25519";
/// Largest accepted clock difference between SDK and collector.
pub const MAX_SKEW_MS: u64 = 300_000;

/// The bytes that are signed.
pub fn string_to_sign(method: &str, path_and_query: &str, ts_ms: u64, body: &[u8]) -> String {
    format!(
        "GR1\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path_and_query,
        ts_ms,
        sha256_hex(body)
    )
}

/// Lowercase hex SHA-256 (also how the collector stores its access tokens).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(bytes).iter() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The `Authorization` header value for one request.
pub fn authorization(
    signer: &UsageSigner,
    key_id: &str,
    method: &str,
    path_and_query: &str,
    ts_ms: u64,
    body: &[u8],
) -> String {
    let sig = signer.sign(string_to_sign(method, path_and_query, ts_ms, body).as_bytes());
    format!("{SCHEME} key_id={key_id},ts={ts_ms},sig={sig}")
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeader {
    /// API key id.
    pub key_id: String,
    /// Timestamp the client signed.
    pub ts_ms: u64,
    /// Base64 signature.
    pub sig: String,
}

/// Parse the header; errors say what is malformed.
pub fn parse_authorization(value: &str) -> Result<SignedHeader, String> {
    let rest = value
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| format!("Authorization must be `{SCHEME} key_id=...,ts=...,sig=...`"))?;
    let (mut key_id, mut ts, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("Authorization part `{part}` is not key=value"))?;
        match k {
            "key_id" => key_id = Some(v.to_owned()),
            "ts" => {
                ts = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("Authorization ts `{v}` is not unix milliseconds"))?,
                )
            }
            // base64 may end in `=`: split_once kept them in `v`.
            "sig" => sig = Some(v.to_owned()),
            other => return Err(format!("Authorization has unknown part `{other}`")),
        }
    }
    match (key_id, ts, sig) {
        (Some(key_id), Some(ts_ms), Some(sig)) if !key_id.is_empty() => {
            Ok(SignedHeader { key_id, ts_ms, sig })
        }
        _ => Err("Authorization needs key_id, ts and sig".into()),
    }
}

/// Verify a parsed header against one of the key's public keys (any active version)
/// and the clock. Errors are client-facing messages.
pub fn verify_request(
    h: &SignedHeader,
    public_keys: &[String],
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<(), String> {
    if h.ts_ms.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(format!(
            "request timestamp {} is more than {} s from the collector's clock {}; fix the client's clock",
            h.ts_ms,
            MAX_SKEW_MS / 1000,
            now_ms
        ));
    }
    let msg = string_to_sign(method, path_and_query, h.ts_ms, body);
    if public_keys
        .iter()
        .any(|pk| verify(pk, msg.as_bytes(), &h.sig).is_ok())
    {
        Ok(())
    } else {
        Err(format!(
            "request signature does not verify with any active public key of `{}`",
            h.key_id
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sign_parse_verify() {
        let (signer, public) = crate::usage::signing::generate_key();
        let pk = std::slice::from_ref(&public);
        let body = br#"{"reservation_id":"r1"}"#;
        let h = authorization(&signer, "k1", "post", "/v1/reservations", 1_000_000, body);
        let p = parse_authorization(&h).unwrap();
        assert_eq!((p.key_id.as_str(), p.ts_ms), ("k1", 1_000_000));
        assert!(verify_request(&p, pk, "POST", "/v1/reservations", body, 1_000_500).is_ok());
        // another body, path, method, clock or key: refused
        assert!(verify_request(&p, pk, "POST", "/v1/reservations", b"{}", 1_000_500).is_err());
        assert!(verify_request(&p, pk, "POST", "/v1/policy", body, 1_000_500).is_err());
        assert!(verify_request(&p, pk, "GET", "/v1/reservations", body, 1_000_500).is_err());
        assert!(
            verify_request(
                &p,
                pk,
                "POST",
                "/v1/reservations",
                body,
                1_000_000 + MAX_SKEW_MS + 1
            )
            .unwrap_err()
            .contains("clock")
        );
        let (_, other) = crate::usage::signing::generate_key();
        assert!(verify_request(&p, &[other], "POST", "/v1/reservations", body, 1_000_500).is_err());
        assert!(parse_authorization("Bearer x").is_err());
        assert!(
            parse_authorization("GateRouter-Ed25519 key_id=k,ts=x,sig=a")
                .unwrap_err()
                .contains("ts")
        );
    }
}
