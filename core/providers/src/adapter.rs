//! The adapter contract: where a call goes ([`Target`]), the HTTP call an adapter builds
//! ([`HttpCall`]), the [`Adapter`] and [`StreamDecoder`] traits and the shared status mapping.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde_json::Value;

use gaterouter_types::error::{Error, Result};
use gaterouter_types::http_reply::retry_after;
use gaterouter_types::secret::Secret;
use gaterouter_types::sse::SseEvent;
use gaterouter_types::types::{ChatChunk, ChatRequest, ChatResponse};

use crate::resolved::ResolvedProvider;

/// Where a call goes: the resolved provider, the provider-side model name and the key.
#[derive(Debug, Clone)]
pub struct Target {
    /// The provider entry.
    pub provider: ResolvedProvider,
    /// The model name the provider expects (`gpt-4o-mini`).
    pub model: String,
    /// `provider/model` as reported in responses (`openai/gpt-4o-mini`).
    pub model_id: String,
    /// API key, if the provider needs one.
    pub api_key: Option<Secret>,
}

impl Target {
    /// Provider config name, for error messages.
    pub fn provider_name(&self) -> &str {
        &self.provider.name
    }
}

/// An HTTP request ready to send: always a `POST` of a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCall {
    /// Full URL.
    pub url: String,
    /// Headers (name, value), auth included.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Value,
}

/// The translation contract every provider implements.
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// Translate a validated request. `stream` selects the streaming endpoint/flag.
    fn build_request(&self, req: &ChatRequest, target: &Target, stream: bool) -> Result<HttpCall>;

    /// Parse a 2xx non-streaming body.
    fn parse_response(&self, body: &[u8], target: &Target) -> Result<ChatResponse>;

    /// Map a non-2xx answer to an error, keeping the provider's message.
    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8], target: &Target) -> Error;

    /// A fresh decoder for one streaming response.
    fn stream_decoder(&self, target: &Target) -> Box<dyn StreamDecoder>;
}

/// Turns one provider's SSE events into normalized chunks.
pub trait StreamDecoder: Send {
    /// Handle one event. An in-stream error event yields `Err`.
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<ChatChunk>>;

    /// The body ended. If the provider's end marker was seen, returns the remaining
    /// chunks, the last of which carries the final usage; otherwise
    /// [`Error::StreamInterrupted`].
    fn finish(&mut self) -> Result<Vec<ChatChunk>>;
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The common mapping from an HTTP status (plus the provider's own error type/code and
/// message) to an error kind. Adapters extract `message` and `code` from their error
/// body shape and call this.
pub fn map_status(
    provider: &str,
    status: u16,
    headers: &HeaderMap,
    code: Option<&str>,
    message: String,
) -> Error {
    let provider = provider.to_owned();
    let code_l = code.unwrap_or("").to_ascii_lowercase();
    let msg_l = message.to_ascii_lowercase();
    let context = code_l.contains("context_length")
        || msg_l.contains("context length")
        || msg_l.contains("context window")
        || msg_l.contains("maximum context")
        || msg_l.contains("prompt is too long")
        || msg_l.contains("input token count")
        || msg_l.contains("too many tokens");
    match status {
        401 | 403 => Error::Auth {
            provider,
            status,
            message,
        },
        429 => Error::RateLimited {
            provider,
            retry_after: retry_after(headers),
            message,
        },
        400 | 413 | 422 if context => Error::ContextLengthExceeded { provider, message },
        408 => Error::ProviderUnavailable {
            provider,
            status: Some(status),
            message,
        },
        500..=599 => Error::ProviderUnavailable {
            provider,
            status: Some(status),
            message,
        },
        // Anthropic's overloaded_error is 529; other non-standard codes above 599 alike.
        600.. => Error::ProviderUnavailable {
            provider,
            status: Some(status),
            message,
        },
        _ => Error::Rejected {
            provider,
            status,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        let h = HeaderMap::new();
        assert_eq!(
            map_status("p", 529, &h, None, "overloaded".into()).kind(),
            gaterouter_types::ErrorKind::ProviderUnavailable
        );
        assert_eq!(
            map_status("p", 400, &h, Some("context_length_exceeded"), "x".into()).kind(),
            gaterouter_types::ErrorKind::ContextLengthExceeded
        );
        assert_eq!(
            map_status("p", 400, &h, None, "bad".into()).kind(),
            gaterouter_types::ErrorKind::InvalidRequest
        );
        assert_eq!(
            map_status("p", 401, &h, None, "no".into()).kind(),
            gaterouter_types::ErrorKind::Auth
        );
    }
}
