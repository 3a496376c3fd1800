//! [`Secret`]: a string (an API key, a signing key) that never prints and is wiped from
//! memory when dropped.
//!
//! Backed by `secrecy`'s `SecretString` (zeroized on drop, no `Display`, a redacted
//! `Debug`). The newtype stays because the config is serde data both ways (`Config`
//! serializes, and a provider's inline `api_key` is part of it), while `secrecy` refuses
//! to serialize a `SecretString` by design; `Secret` writes the value where a config is
//! written out, as the `String` it replaces did.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string whose `Debug` never shows the value and whose memory is zeroed on drop.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(SecretString::from(s.into()))
    }
    /// The secret value; call only where it is sent.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SecretString::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_and_round_trips_through_serde() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "sk-very-secret");
        let json = serde_json::to_string(&s).expect("ser");
        assert_eq!(json, "\"sk-very-secret\"");
        let back: Secret = serde_json::from_str(&json).expect("de");
        assert_eq!(back, s);
        assert_ne!(back, Secret::new("other"));
        assert!(serde_json::from_str::<Secret>("3").is_err());
    }
}
