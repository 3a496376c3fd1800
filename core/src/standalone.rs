//! Helpers without a client that the bindings expose as module functions, taking and
//! giving JSON text (the core's serde types are the one definition of every field).
//! Written here once so that no binding adds defaults or builds errors of its own.

use crate::error::{Error, Result};
use crate::pricing::{Cost, CostOptions};
use crate::types::Usage;

/// Cost of a finished call from its usage (JSON in the `Usage` shape) with the built-in
/// catalog. `total_tokens` may be left out: it is prompt plus completion tokens.
/// Errors: `InvalidRequest` naming `usage`; an unknown model as [`crate::pricing::cost`].
pub fn cost_json(usage_json: &str, model: &str, opts: CostOptions) -> Result<Cost> {
    let invalid = |e: &dyn std::fmt::Display| Error::InvalidRequest {
        field: Some("usage".into()),
        message: format!(
            "usage: {e}; pass {{prompt_tokens, completion_tokens, ...}} as in a response's usage"
        ),
    };
    let mut value: serde_json::Value = serde_json::from_str(usage_json).map_err(|e| invalid(&e))?;
    if let Some(obj) = value.as_object_mut() {
        if !obj.contains_key("total_tokens") {
            let n = |k: &str| obj.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let total = n("prompt_tokens").saturating_add(n("completion_tokens"));
            obj.insert("total_tokens".into(), total.into());
        }
    }
    let usage: Usage = serde_json::from_value(value).map_err(|e| invalid(&e))?;
    crate::pricing::cost(&usage, model, opts)
}

/// Canonical JSON and Ed25519 signature (base64) of a usage record given as JSON, with
/// `signing_key` (base64 seed or PKCS#8 PEM): for the shared test vectors and apps that
/// sign records themselves. Errors: `InvalidRequest` naming `record`.
pub fn sign_record_json(record_json: &str, signing_key: &str) -> Result<(String, String)> {
    let fail = |m: String| Error::InvalidRequest {
        field: Some("record".into()),
        message: m,
    };
    let record: crate::usage::UsageRecord =
        serde_json::from_str(record_json).map_err(|e| fail(format!("record: {e}")))?;
    let signer = crate::usage::UsageSigner::from_key_text(signing_key, "signing_key")
        .map_err(|e| fail(e.to_string()))?;
    signer.sign_record(&record).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn cost_fills_in_total_tokens_and_names_bad_usage() {
        let with = cost_json(
            r#"{"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}"#,
            "openai/gpt-4o-mini",
            CostOptions::default(),
        )
        .unwrap();
        let without = cost_json(
            r#"{"prompt_tokens": 1000, "completion_tokens": 500}"#,
            "openai/gpt-4o-mini",
            CostOptions::default(),
        )
        .unwrap();
        assert_eq!(with, without);
        assert!(with.total_micros > 0);
        let e = cost_json("[1]", "openai/gpt-4o-mini", CostOptions::default()).unwrap_err();
        assert_eq!(e.info().field.as_deref(), Some("usage"), "{e}");
    }

    #[test]
    fn a_bad_record_or_key_names_the_record() {
        let e = sign_record_json("{}", "nope").unwrap_err();
        assert_eq!(e.info().field.as_deref(), Some("record"), "{e}");
    }
}
