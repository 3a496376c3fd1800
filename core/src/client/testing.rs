//! Helpers shared by the stage modules' unit tests.

use std::path::Path;

use super::Client;
use crate::config::{Config, ReportingMode, Secret};
use crate::types::{ChatRequest, Message};

/// Emulator providers at a closed port (nothing answers), usage records off.
pub(super) fn offline_config() -> Config {
    let mut cfg = Config::for_emulator("http://127.0.0.1:9");
    cfg.reporting.mode = ReportingMode::Off;
    cfg
}

/// A client over [`offline_config`].
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
pub(super) fn offline_client() -> Client {
    Client::new(offline_config()).unwrap()
}

/// Usage records on: `k_test`, a fresh key held in memory (as `MobileOptions` passes
/// it), the spool in `spool`, no collector.
pub(super) fn records_config(spool: &Path) -> Config {
    let (signer, _) = crate::usage::generate_key();
    let mut cfg = Config::for_emulator("http://127.0.0.1:9");
    cfg.identity.api_key_id = Some("k_test".into());
    cfg.reporting.spool_dir = Some(spool.to_path_buf());
    cfg.reporting.signing_key = Some(Secret::new(signer.seed_base64().expose()));
    cfg
}

/// A one-message request to `model`.
pub(super) fn ask(model: &str) -> ChatRequest {
    ChatRequest::new(model, vec![Message::user("hi")])
}
