//! Enterprise accounts: the pure contract (crate `gaterouter-accounts`: levels, rules,
//! budgets, policies, reservations, the pre-call checks in [`enforce`]) re-exported
//! here, plus the SDK's I/O side, which needs the usage signer and the config:
//!
//! - [`policy_client`]: fetch and cache the policy (signed, single-flight, last known
//!   when offline), reserve and settle.
//! - [`request_auth`]: Ed25519-signed HTTP requests from the SDK to the collector.

pub use gaterouter_accounts::*;

pub mod policy_client;
pub mod request_auth;
