//! # gaterouter
//!
//! One chat API over OpenAI, Anthropic, Gemini and OpenAI-compatible hosts
//! (DeepSeek, Mistral, Groq, Together, Ollama, vLLM...).
//!
//! The core is a stack of small crates under `core/` (see `ARCHITECTURE.md`, "The
//! core's layers"); this crate holds the client and everything that needs I/O or the
//! whole config, and re-exports every layer under its usual path, so users depend on
//! `gaterouter` alone.
//!
//! Map of the crate:
//!
//! | module | concept | defined in |
//! |---|---|---|
//! | [`types`] | the OpenAI-shaped request, response and stream chunk every caller sees | `gaterouter-types` |
//! | [`model_id`] | `provider/model` names and `auto` | `gaterouter-types` |
//! | [`error`] | the rich internal [`Error`] and the small stable public [`ErrorKind`] | `gaterouter-types` |
//! | [`money`] | micro-dollar amounts and a call's [`money::Cost`] | `gaterouter-types` |
//! | [`sse`] | an incremental Server-Sent-Events parser shared by every adapter | `gaterouter-types` |
//! | [`stream`] | the normalized chunk stream and its accumulator | `gaterouter-types` |
//! | [`tokens`] | exact and calibrated token counts | `gaterouter-tokens` |
//! | [`pricing`] | the versioned price catalog and exact micro-dollar cost | `gaterouter-pricing` |
//! | [`providers`] | sans-IO adapters: our types <-> each provider's wire format | `gaterouter-providers` |
//! | [`health`] | circuit breaker per provider and observed latency per model | `gaterouter-health` |
//! | [`routing`] | complexity scoring, tiers, policies and explained model selection | `gaterouter-routing` |
//! | [`accounts`] | org policies, budgets and reservations shared with the collector; the SDK's policy client | `gaterouter-accounts` + here |
//! | [`config`] | plain serde configuration (TOML or a map), validated with field-naming errors | here |
//! | [`retry`] | bounded, jittered exponential backoff honouring `retry-after` | here |
//! | [`usage`] | signed usage records, the durable spool and the batching reporter | `gaterouter-usage` |
//! | [`standalone`] | JSON-in helpers without a client (cost from usage, record signing) the bindings expose | here |
//! | [`client`] | [`Client`]: the one entry point that ties config, transport and adapters | here |
//!
//! ```no_run
//! # async fn run() -> Result<(), gaterouter::Error> {
//! use gaterouter::{Client, ChatRequest, Message};
//! let client = Client::from_toml_file("gaterouter.toml")?;
//! let req = ChatRequest::new("openai/gpt-4o-mini", vec![Message::user("Say hi")]);
//! let resp = client.chat(req).await?;
//! println!("{}", resp.text());
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod client;
pub mod config;
pub mod retry;
pub mod standalone;

// The layers below, each a crate of its own (see the map), under their old paths.
pub use gaterouter_types::{error, http_reply, model_id, money, sse, stream, types};

/// Token counts (crate `gaterouter-tokens`).
pub use gaterouter_tokens as tokens;

/// The price catalog and exact cost (crate `gaterouter-pricing`).
pub use gaterouter_pricing as pricing;

/// Sans-IO provider adapters (crate `gaterouter-providers`).
pub use gaterouter_providers as providers;

/// Circuit breakers and observed latency (crate `gaterouter-health`).
pub use gaterouter_health as health;

/// Scoring, tiers and explained model selection (crate `gaterouter-routing`).
pub use gaterouter_routing as routing;

/// Signed usage records, the spool and the uploader (crate `gaterouter-usage`).
pub use gaterouter_usage as usage;

pub use client::{Cancel, Client, ClientBuilder};
pub use config::{Config, ConfigSource};
pub use error::{Error, ErrorInfo, ErrorKind, Result};
pub use model_id::ModelId;
pub use stream::{ChatStream, StreamAccumulator};
pub use types::*;

/// Name and version reported by this SDK (used in `User-Agent` and usage records).
pub use gaterouter_usage::{SDK_NAME, SDK_VERSION};
