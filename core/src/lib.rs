//! # gaterouter
//!
//! One chat API over OpenAI, Anthropic, Gemini and OpenAI-compatible hosts
//! (DeepSeek, Mistral, Groq, Together, Ollama, vLLM...).
//!
//! Map of the crate:
//!
//! | module | concept |
//! |---|---|
//! | [`types`] | the OpenAI-shaped request, response and stream chunk every caller sees |
//! | [`model_id`] | `provider/model` names and `auto` |
//! | [`config`] | plain serde configuration (TOML or a map), validated with field-naming errors |
//! | [`error`] | the rich internal [`Error`] and the small stable public [`ErrorKind`] |
//! | [`health`] | circuit breaker per provider and observed latency per model |
//! | [`providers`] | sans-IO adapters: our types <-> each provider's wire format |
//! | [`sse`] | an incremental Server-Sent-Events parser shared by every adapter |
//! | [`retry`] | bounded, jittered exponential backoff honouring `retry-after` |
//! | [`stream`] | the normalized chunk stream and its accumulator |
//! | [`pricing`] | the versioned price catalog and exact micro-dollar cost |
//! | [`tokens`] | exact and calibrated token counts |
//! | [`routing`] | complexity scoring, tiers, policies and explained model selection |
//! | [`usage`] | signed usage records, the durable spool and the batching reporter |
//! | [`accounts`] | org policies, budgets and reservations shared with the collector |
//! | [`standalone`] | JSON-in helpers without a client (cost from usage, record signing) the bindings expose |
//! | [`client`] | [`Client`]: the one entry point that ties config, transport and adapters |
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
pub mod error;
pub mod health;
mod http_reply;
pub mod model_id;
pub mod money;
pub mod pricing;
pub mod providers;
pub mod retry;
pub mod routing;
mod secret;
pub mod sse;
pub mod standalone;
pub mod stream;
pub mod tokens;
pub mod types;
pub mod usage;

pub use client::{Cancel, Client, ClientBuilder};
pub use config::{Config, ConfigSource};
pub use error::{Error, ErrorInfo, ErrorKind, Result};
pub use model_id::ModelId;
pub use stream::{ChatStream, StreamAccumulator};
pub use types::*;

/// Name and version reported by this SDK (used in `User-Agent` and usage records).
pub const SDK_NAME: &str = "gaterouter-rust";
/// Crate version.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
