//! # gaterouter-providers
//!
//! Provider adapters: pure (sans-IO) translation between our types and each
//! provider's wire format. Depends on `gaterouter-types` only; `gaterouter` re-exports
//! it as `gaterouter::providers`.
//!
//! Map of the crate:
//!
//! | module | concept |
//! |---|---|
//! | `adapter` | the [`Adapter`] contract, [`Target`], [`HttpCall`], [`StreamDecoder`], [`adapter_for`], status mapping |
//! | `resolved` | [`ProviderKind`] (wire format) and [`ResolvedProvider`] (a config entry, resolved) |
//! | [`openai`] | Chat Completions, and every OpenAI-compatible host |
//! | [`anthropic`] | Anthropic Messages |
//! | [`gemini`] | Google Gemini `generateContent` |
//!
//! An adapter never touches the network. It builds an [`HttpCall`] from a
//! [`gaterouter_types::ChatRequest`], parses a response body, maps an error response to an [`gaterouter_types::Error`], and
//! turns SSE events into normalized [`gaterouter_types::ChatChunk`]s through a [`StreamDecoder`]. The
//! client (`gaterouter::Client`) does the I/O, retries and timeouts. Keeping I/O out makes
//! every adapter testable against captured payloads and fuzzable.

mod adapter;
pub mod anthropic;
pub mod gemini;
pub mod openai;
mod resolved;

pub use adapter::{Adapter, HttpCall, StreamDecoder, Target, map_status, now_unix};
pub use resolved::{ProviderKind, ResolvedProvider};

pub use gaterouter_types::http_reply::{body_excerpt, retry_after};

/// The adapter for a wire format.
pub fn adapter_for(kind: ProviderKind) -> &'static dyn Adapter {
    match kind {
        ProviderKind::Openai => &openai::OpenAi,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Gemini => &gemini::Gemini,
    }
}
