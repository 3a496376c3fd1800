//! Fault kinds, their parsing from the header / directive / queue, and what a request applies.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::provider::Provider;

/// The injectable fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum FaultKind {
    /// 429 with `retry-after` (param `retry_after`, seconds, fractional allowed).
    RateLimit,
    /// 500, or the 5xx given by param `status` (502, 503, 504: a gateway's answer).
    ServerError,
    /// 529 (Anthropic) / 503 (OpenAI, DeepSeek, Gemini).
    Overloaded,
    /// Wait `delay_ms` before answering.
    Slow,
    /// Wait `delay_ms` between SSE events.
    SlowStream,
    /// Close the connection after `after_events` SSE events.
    CutStream,
    /// 200 with truncated JSON.
    MalformedJson,
    /// An HTML page, 502 or the status given by param `status` (200: a captive portal).
    HtmlError,
    /// A tool call with invalid arguments.
    BadToolArgs,
    /// 401.
    Auth,
    /// The provider's context-length-exceeded 400.
    ContextLength,
    /// 400.
    BadRequest,
    /// Output stopped by a safety system (OpenAI `content_filter`, Anthropic `refusal`, Gemini
    /// `promptFeedback.blockReason`).
    ContentFilter,
}

impl FaultKind {
    /// Parses the wire name (`rate_limit`, `server_error`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Kinds that replace the response with an error.
    pub(crate) fn is_terminal(self) -> bool {
        matches!(
            self,
            FaultKind::RateLimit
                | FaultKind::ServerError
                | FaultKind::Overloaded
                | FaultKind::HtmlError
                | FaultKind::Auth
                | FaultKind::ContextLength
                | FaultKind::BadRequest
        )
    }
}

/// A fault with its parameters.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub params: BTreeMap<String, String>,
}

impl Fault {
    /// Parses `kind;param=value;param=value`.
    pub fn parse_spec(spec: &str) -> Result<Fault, String> {
        let mut parts = spec.split(';');
        let name = parts.next().unwrap_or("").trim();
        let kind = FaultKind::parse(name).ok_or_else(|| unknown_kind(name))?;
        let mut params = BTreeMap::new();
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (k, v) = p.split_once('=').ok_or_else(|| {
                format!("emulator fault parameter '{p}' must be written name=value")
            })?;
            params.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(Fault { kind, params })
    }

    pub(crate) fn f64_param(&self, name: &str) -> Option<f64> {
        self.params.get(name).and_then(|v| v.parse::<f64>().ok())
    }

    pub(crate) fn u64_param(&self, name: &str) -> Option<u64> {
        self.f64_param(name)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64)
    }
}

pub(crate) fn unknown_kind(name: &str) -> String {
    format!(
        "unknown emulator fault kind '{name}'; use one of rate_limit, server_error, overloaded, slow, \
         slow_stream, cut_stream, malformed_json, html_error, bad_tool_args, auth, context_length, bad_request, content_filter"
    )
}

/// Parses a header value: one or more specs separated by `,`.
pub(crate) fn parse_header(v: &str) -> Result<Vec<Fault>, String> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Fault::parse_spec)
        .collect()
}

/// Finds every `[[emulator:spec]]` directive in a text.
pub(crate) fn parse_directives(text: &str) -> Result<Vec<Fault>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("[[emulator:") {
        let after = &rest[i + "[[emulator:".len()..];
        let Some(j) = after.find("]]") else { break };
        out.push(Fault::parse_spec(&after[..j])?);
        rest = &after[j + 2..];
    }
    Ok(out)
}

/// A queued fault (from `POST /_emulator/faults`).
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub fault: Fault,
    pub provider: Option<Provider>,
    /// Only requests for this model consume the fault (isolates parallel tests).
    pub model: Option<String>,
    pub remaining: u64,
}

/// Parses the queue endpoint's JSON body.
pub(crate) fn parse_queue_body(v: &Value) -> Result<Queued, String> {
    let obj = v
        .as_object()
        .ok_or("the body must be a JSON object like {\"fault\":\"rate_limit\",\"times\":1}")?;
    let name = obj
        .get("fault")
        .and_then(Value::as_str)
        .ok_or("field 'fault' (string) is required")?;
    let kind = FaultKind::parse(name).ok_or_else(|| unknown_kind(name))?;
    let times = match obj.get("times") {
        None | Some(Value::Null) => 1,
        Some(t) => t
            .as_u64()
            .ok_or("field 'times' must be a non-negative integer")?,
    };
    let provider = match obj.get("provider") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(Provider::parse(p).ok_or_else(|| {
            format!("unknown provider '{p}'; use openai, anthropic, gemini, deepseek or null")
        })?),
        Some(_) => return Err("field 'provider' must be a string or null".into()),
    };
    let mut params = BTreeMap::new();
    for (k, v) in obj {
        if matches!(k.as_str(), "fault" | "times" | "provider" | "model") {
            continue;
        }
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        params.insert(k.clone(), s);
    }
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err("field 'model' must be a string or null".into()),
    };
    Ok(Queued {
        fault: Fault { kind, params },
        provider,
        model,
        remaining: times,
    })
}

/// What the selected faults do to one request.
#[derive(Debug, Default, Clone)]
pub(crate) struct Applied {
    pub slow_ms: u64,
    pub stream_delay_ms: u64,
    pub cut_after: Option<usize>,
    pub cut_clean: bool,
    pub malformed: bool,
    pub bad_tool_args: bool,
    pub content_filter: bool,
    /// The first error-producing fault.
    pub terminal: Option<Fault>,
    /// Names of all faults applied (for stats).
    pub names: Vec<&'static str>,
    /// A provider error event that replaces the stream after this many events (an error fault
    /// with `after_events` on a streaming request).
    pub mid_error: Option<(usize, bytes::Bytes)>,
}

impl Applied {
    pub(crate) fn from_faults(faults: &[Fault]) -> Applied {
        let mut a = Applied::default();
        for f in faults {
            a.names.push(f.kind.name());
            match f.kind {
                FaultKind::Slow => a.slow_ms = f.u64_param("delay_ms").unwrap_or(1000),
                FaultKind::SlowStream => a.stream_delay_ms = f.u64_param("delay_ms").unwrap_or(200),
                FaultKind::CutStream => {
                    a.cut_after = Some(
                        f.u64_param("after_events")
                            .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
                            .unwrap_or(2),
                    );
                    a.cut_clean = f.params.get("clean").is_some_and(|v| v == "true");
                }
                FaultKind::MalformedJson => a.malformed = true,
                FaultKind::BadToolArgs => a.bad_tool_args = true,
                FaultKind::ContentFilter => a.content_filter = true,
                k if k.is_terminal() && a.terminal.is_none() => a.terminal = Some(f.clone()),
                _ => {}
            }
        }
        a
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spec_parsing() {
        let f = Fault::parse_spec("rate_limit;retry_after=1.5").unwrap();
        assert_eq!(f.kind, FaultKind::RateLimit);
        assert_eq!(f.f64_param("retry_after"), Some(1.5));
        assert!(Fault::parse_spec("nope").is_err());
        assert!(Fault::parse_spec("slow;delay").is_err());
        let d =
            parse_directives("a [[emulator:slow;delay_ms=5]] b [[emulator:cut_stream]]").unwrap();
        assert_eq!(d.len(), 2);
        let h = parse_header("slow_stream;delay_ms=1, cut_stream;after_events=3").unwrap();
        let a = Applied::from_faults(&h);
        assert_eq!(a.stream_delay_ms, 1);
        assert_eq!(a.cut_after, Some(3));
    }
}
