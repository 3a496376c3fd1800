//! Ed25519 signing of usage records.
//!
//! - Signed bytes: the UTF-8 RFC 8785 canonical JSON of the record without its
//!   `signature` member (see [`super::canonical`]).
//! - Signature and public key encoding: **standard base64 with padding** (RFC 4648
//!   section 4): 88 characters for a signature, 44 for a public key.
//! - Private key formats accepted from a file or an environment variable: the standard
//!   base64 of the 32-byte Ed25519 seed (surrounding whitespace ignored), or a PKCS#8
//!   PEM document (`-----BEGIN PRIVATE KEY-----`, as written by `openssl genpkey
//!   -algorithm ed25519`).
//!
//! The secret never appears in `Debug`, `Display` or an error message: decoding errors
//! say what is wrong with the key, never which bytes.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

use super::record::UsageRecord;
use crate::error::UsageError;
use gaterouter_types::secret::Secret;

/// A usage-record signing key. `Debug` shows the public key only.
#[derive(Clone)]
pub struct UsageSigner {
    key: SigningKey,
    public: String,
}

impl std::fmt::Debug for UsageSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageSigner")
            .field("public_key", &self.public)
            .field("secret", &"***")
            .finish()
    }
}

/// Generate a new random key: the signer and its public key (standard base64).
pub fn generate_key() -> (UsageSigner, String) {
    let seed = Zeroizing::new(rand::random::<[u8; 32]>());
    let signer = UsageSigner::from_seed(&seed);
    let public = signer.public_key().to_owned();
    (signer, public)
}

impl UsageSigner {
    /// From the raw 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let public = B64.encode(key.verifying_key().to_bytes());
        UsageSigner { key, public }
    }

    /// From key text: a PKCS#8 PEM document or the base64 of the 32-byte seed.
    /// `origin` names where the text came from, for error messages.
    pub fn from_key_text(text: &str, origin: &str) -> Result<Self, UsageError> {
        let t = text.trim();
        let key_err = |message: &str, fix: &str| UsageError::Key {
            origin: origin.to_owned(),
            message: message.to_owned(),
            fix: fix.to_owned(),
        };
        if t.is_empty() {
            return Err(key_err(
                "the key is empty",
                "generate one with `gaterouter keygen` and store its seed there",
            ));
        }
        if t.starts_with("-----BEGIN") {
            if !t.contains("-----BEGIN PRIVATE KEY-----") {
                return Err(key_err(
                    "PEM is not an unencrypted PKCS#8 private key",
                    "convert it with `openssl pkey -in KEY -out key.pem`",
                ));
            }
            let key = SigningKey::from_pkcs8_pem(t).map_err(|_| {
                key_err(
                    "PEM is not a valid Ed25519 PKCS#8 private key",
                    "use an Ed25519 key (`openssl genpkey -algorithm ed25519`)",
                )
            })?;
            let public = B64.encode(key.verifying_key().to_bytes());
            return Ok(UsageSigner { key, public });
        }
        let bytes = Zeroizing::new(B64.decode(t.as_bytes()).map_err(|_| {
            key_err(
                "not valid standard base64",
                "store the standard base64 of the 32-byte Ed25519 seed, or a PKCS#8 PEM",
            )
        })?);
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(bytes.as_slice().try_into().map_err(|_| {
                key_err(
                    &format!("decodes to {} bytes, an Ed25519 seed is 32", bytes.len()),
                    "store the base64 of exactly the 32-byte seed",
                )
            })?);
        Ok(Self::from_seed(&seed))
    }

    /// Read the key from a file.
    pub fn from_file(path: &Path) -> Result<Self, UsageError> {
        let origin = format!("file {}", path.display());
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| UsageError::Key {
            origin: origin.clone(),
            message: format!("cannot read the key file: {}", e.kind()),
            fix: "check reporting.signing_key_file and the file's permissions".into(),
        })?);
        Self::from_key_text(&text, &origin)
    }

    /// Read the key from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, UsageError> {
        let origin = format!("environment variable {var}");
        let text = Zeroizing::new(std::env::var(var).map_err(|_| UsageError::Key {
            origin: origin.clone(),
            message: "is not set or not valid UTF-8".into(),
            fix: format!("export {var}=<base64 seed from `gaterouter keygen`>, or set reporting.signing_key_file"),
        })?);
        Self::from_key_text(&text, &origin)
    }

    /// The public key, standard base64 of its 32 bytes.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The seed in the key-file format (standard base64), for writing a new key file.
    pub fn seed_base64(&self) -> Secret {
        Secret::new(B64.encode(Zeroizing::new(self.key.to_bytes()).as_slice()))
    }

    /// Sign `msg`; the signature in standard base64.
    pub fn sign(&self, msg: &[u8]) -> String {
        B64.encode(self.key.sign(msg).to_bytes())
    }

    /// Canonicalize and sign a record: `(canonical JSON, signature)`.
    pub fn sign_record(&self, record: &UsageRecord) -> Result<(String, String), UsageError> {
        let canonical = record.canonical_json()?;
        let sig = self.sign(canonical.as_bytes());
        Ok((canonical, sig))
    }
}

/// The wire form of a signed record: the canonical JSON with a `signature` member
/// appended as its last member (the wire text is not itself canonical; verifiers remove
/// `signature` and canonicalize again).
pub fn wire_json(canonical: &str, signature: &str) -> String {
    let body = canonical.strip_suffix('}').unwrap_or(canonical);
    let mut out = String::with_capacity(canonical.len() + signature.len() + 16);
    out.push_str(body);
    if body.len() > 1 {
        out.push(',');
    }
    out.push_str("\"signature\":\"");
    out.push_str(signature);
    out.push_str("\"}");
    out
}

/// Verify a base64 signature over `msg` against a base64 public key.
pub fn verify(public_key: &str, msg: &[u8], signature: &str) -> Result<(), UsageError> {
    let bad = |m: &str| UsageError::Signature {
        message: m.to_owned(),
    };
    let pk: [u8; 32] = B64
        .decode(public_key.trim())
        .map_err(|_| bad("public key is not standard base64"))?
        .try_into()
        .map_err(|_| bad("public key is not 32 bytes"))?;
    let vk = VerifyingKey::from_bytes(&pk)
        .map_err(|_| bad("public key is not a valid Ed25519 point"))?;
    let sig: [u8; 64] = B64
        .decode(signature)
        .map_err(|_| bad("signature is not standard base64"))?
        .try_into()
        .map_err(|_| bad("signature is not 64 bytes"))?;
    vk.verify(msg, &Signature::from_bytes(&sig))
        .map_err(|_| bad("signature does not match"))
}

/// Verify a wire record (`{...record..., "signature": "..."}`) as a collector would:
/// remove `signature`, canonicalize, verify; returns the parsed record.
pub fn verify_wire(wire: &str, public_key: &str) -> Result<UsageRecord, UsageError> {
    let bad = |m: String| UsageError::Signature { message: m };
    let mut v: serde_json::Value =
        serde_json::from_str(wire).map_err(|e| bad(format!("record is not JSON: {e}")))?;
    let sig = v
        .as_object_mut()
        .and_then(|o| o.remove("signature"))
        .and_then(|s| s.as_str().map(str::to_owned))
        .ok_or_else(|| bad("record has no string `signature`".into()))?;
    let canonical = super::canonical::canonicalize(&v).map_err(|e| bad(e.to_string()))?;
    verify(public_key, canonical.as_bytes(), &sig)?;
    serde_json::from_value(v).map_err(|e| bad(format!("record does not match the schema: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let (s, pk) = generate_key();
        let sig = s.sign(b"hello");
        verify(&pk, b"hello", &sig).unwrap();
        assert!(verify(&pk, b"hellp", &sig).is_err());
        assert_eq!(sig.len(), 88);
        assert_eq!(pk.len(), 44);
    }

    #[test]
    fn seed_round_trip_and_secret_hidden() {
        let (s, pk) = generate_key();
        let seed = s.seed_base64();
        let s2 = UsageSigner::from_key_text(seed.expose(), "test").unwrap();
        assert_eq!(s2.public_key(), pk);
        let dbg = format!("{s2:?}");
        assert!(!dbg.contains(seed.expose()) && dbg.contains(&pk), "{dbg}");
    }

    #[test]
    fn bad_key_errors_do_not_leak() {
        let secretish = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="; // 20 bytes
        let e = UsageSigner::from_key_text(secretish, "env X").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("20 bytes") && s.contains("env X") && !s.contains(secretish),
            "{s}"
        );
        let e = UsageSigner::from_key_text("not base64 !!", "f").unwrap_err();
        assert!(!e.to_string().contains("!!"), "{e}");
    }

    #[test]
    fn pkcs8_pem_is_accepted() {
        // RFC 8410 section 10.3 example private key.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let s = UsageSigner::from_key_text(pem, "pem").unwrap();
        let seed = B64.decode(s.seed_base64().expose()).unwrap();
        assert_eq!(seed[..4], [0xd4, 0xee, 0x72, 0xdb]);
    }

    #[test]
    fn wire_form_verifies() {
        let (s, pk) = generate_key();
        let canonical = r#"{"a":1,"b":"x"}"#;
        let w = wire_json(canonical, &s.sign(canonical.as_bytes()));
        let mut v: serde_json::Value = serde_json::from_str(&w).unwrap();
        let sig = v.as_object_mut().unwrap().remove("signature").unwrap();
        verify(
            &pk,
            super::super::canonical::canonicalize(&v)
                .unwrap()
                .as_bytes(),
            sig.as_str().unwrap(),
        )
        .unwrap();
    }
}
