//! Provider adapters: pure (sans-IO) translation between our types and each
//! provider's wire format.
//!
//! An adapter never touches the network. It builds an [`HttpCall`] from a
//! [`ChatRequest`], parses a response body, maps an error response to an [`Error`], and
//! turns SSE events into normalized [`ChatChunk`]s through a [`StreamDecoder`]. The
//! [`crate::client::Client`] does the I/O, retries and timeouts. Keeping I/O out makes
//! every adapter testable against captured payloads and fuzzable.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde_json::Value;

use crate::config::{ProviderKind, ResolvedProvider, Secret};
use crate::error::{Error, Result};
use crate::sse::SseEvent;
use crate::types::{ChatChunk, ChatRequest, ChatResponse};

pub mod anthropic;
pub mod gemini;
pub mod openai;

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

/// The adapter for a wire format.
pub fn adapter_for(kind: ProviderKind) -> &'static dyn Adapter {
    match kind {
        ProviderKind::Openai => &openai::OpenAi,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Gemini => &gemini::Gemini,
    }
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `retry-after-ms`, or `retry-after` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_millis(ms as u64));
        }
    }
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_millis((secs * 1000.0) as u64));
    }
    let when = httpdate_to_unix(v)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(when.saturating_sub(now)))
}

/// Parse an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`) to Unix seconds.
fn httpdate_to_unix(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// A short, readable excerpt of a non-JSON body (an HTML error page, a proxy message).
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if lower.contains("<html") || lower.contains("<!doctype") {
        let title = lower.find("<title>").and_then(|s| {
            lower[s + 7..]
                .find("</title>")
                .map(|e| text[s + 7..s + 7 + e].trim().to_owned())
        });
        return format!(
            "an HTML page instead of JSON{}",
            title.map(|t| format!(" (title: {t})")).unwrap_or_default()
        );
    }
    let t = text.trim();
    if t.is_empty() {
        return "an empty body".to_owned();
    }
    let cut: String = t.chars().take(300).collect();
    if cut.len() < t.len() {
        format!("{cut}…")
    } else {
        cut
    }
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
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(
            httpdate_to_unix("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
    }

    #[test]
    fn html_pages_are_summarized() {
        let s = body_excerpt(
            b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>",
        );
        assert!(s.contains("HTML") && s.contains("502 Bad Gateway"), "{s}");
    }

    #[test]
    fn status_mapping() {
        let h = HeaderMap::new();
        assert_eq!(
            map_status("p", 529, &h, None, "overloaded".into()).kind(),
            crate::ErrorKind::ProviderUnavailable
        );
        assert_eq!(
            map_status("p", 400, &h, Some("context_length_exceeded"), "x".into()).kind(),
            crate::ErrorKind::ContextLengthExceeded
        );
        assert_eq!(
            map_status("p", 400, &h, None, "bad".into()).kind(),
            crate::ErrorKind::InvalidRequest
        );
        assert_eq!(
            map_status("p", 401, &h, None, "no".into()).kind(),
            crate::ErrorKind::Auth
        );
    }
}
