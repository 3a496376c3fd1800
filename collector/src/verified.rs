//! What verifying a usage record yields: the record ready to store (`Verified`) or
//! why it was refused (`Refusal`). Ingest produces them; the accounts checks and
//! hooks read them.

use gaterouter::usage::UsageRecord;

/// Why a record was refused; `code` is the `/metrics` label.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Metric label: unknown_key, revoked_key, bad_signature, scope, invalid, malformed.
    pub code: &'static str,
    /// Human reason returned to the client.
    pub reason: String,
}

/// A verified record plus the collector's pricing, ready to insert.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The record.
    pub rec: UsageRecord,
    /// Its signature.
    pub signature: String,
    /// The collector's cost, when the model is in its catalog.
    pub collector_cost: Option<u64>,
    /// Catalog entry used.
    pub priced_as: Option<String>,
    /// Cost at the strongest model, for routing savings.
    pub baseline: Option<u64>,
    /// Client and collector figures differ beyond the tolerance.
    pub mismatch: bool,
    /// Units filled from the key's binding (absent in the signed record), in
    /// org/department/project/group/user order.
    pub attributed: Vec<&'static str>,
}

impl Verified {
    /// The org the record is stored and deduplicated under. Always set: `attribute`
    /// fills an absent org from the key's binding (every key has an org) and refuses a
    /// different one, before a `Verified` exists.
    pub fn org(&self) -> &str {
        debug_assert!(self.rec.org.is_some(), "a verified record has its org");
        self.rec.org.as_deref().unwrap_or_default()
    }
}
