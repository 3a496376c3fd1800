//! Provider-neutral pieces: the token rule, the deterministic reply, JSON-schema synthesis,
//! prefix caching, SSE body construction, and what the server hands each provider module
//! ([`Out`] to render, [`ApiErr`] to answer in the provider's format).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::faults::Applied;

/// Fixed per-request overhead added to every prompt (the "reply priming" tokens).
pub(crate) const BASE_PROMPT_TOKENS: u64 = 3;
/// Per-message (per-turn) overhead.
pub(crate) const MESSAGE_OVERHEAD: u64 = 4;
/// Every image / inline binary part counts this many tokens.
pub(crate) const IMAGE_TOKENS: u64 = 85;
/// Characters per streamed text delta (4 tokens).
const DELTA_CHARS: usize = 16;

/// The token rule: `ceil(chars / 4)` over Unicode scalar values.
pub(crate) fn tok(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4)
}

/// The longest prefix of `s` that is at most `n` tokens (i.e. `4n` chars).
pub(crate) fn truncate_tokens(s: &str, n: u64) -> &str {
    let max_chars = usize::try_from(n.saturating_mul(4)).unwrap_or(usize::MAX);
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// First `n` chars of `s`.
pub(crate) fn first_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Splits `s` into deltas of at most [`DELTA_CHARS`] chars (never empty pieces).
pub(crate) fn split_deltas(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (i, _) in s.char_indices() {
        if count == DELTA_CHARS {
            out.push(&s[start..i]);
            start = i;
            count = 0;
        }
        count += 1;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Splits a JSON string into a few fragments (for tool-argument deltas).
pub(crate) fn split_fragments(s: &str, pieces: usize) -> Vec<&str> {
    let n = s.chars().count();
    if n == 0 {
        return vec![];
    }
    let size = n.div_ceil(pieces.max(1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (i, _) in s.char_indices() {
        if count == size {
            out.push(&s[start..i]);
            start = i;
            count = 0;
        }
        count += 1;
    }
    out.push(&s[start..]);
    out
}

/// One unit of the prompt for counting and prefix caching.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    /// Content identity for the prefix hash (role marker + text / JSON).
    pub key: String,
    pub tokens: u64,
    /// Anthropic `cache_control` on this block: `Some(is_1h_ttl)`.
    pub breakpoint: Option<bool>,
}

impl Segment {
    pub fn new(key: String, tokens: u64) -> Self {
        Segment {
            key,
            tokens,
            breakpoint: None,
        }
    }
}

/// The prompt as segments in provider order (tools, system, messages).
#[derive(Debug, Default)]
pub(crate) struct Prompt {
    pub segments: Vec<Segment>,
}

impl Prompt {
    pub fn push(&mut self, key: String, tokens: u64) {
        self.segments.push(Segment::new(key, tokens));
    }
    pub fn total(&self) -> u64 {
        BASE_PROMPT_TOKENS + self.segments.iter().map(|s| s.tokens).sum::<u64>()
    }
    /// `(prefix_hash, cumulative_tokens, breakpoint)` after each segment.
    pub fn prefixes(&self, namespace: &str) -> Vec<(u64, u64, Option<bool>)> {
        let mut h = DefaultHasher::new();
        namespace.hash(&mut h);
        let mut cum = BASE_PROMPT_TOKENS;
        let mut out = Vec::with_capacity(self.segments.len());
        for s in &self.segments {
            s.key.hash(&mut h);
            cum += s.tokens;
            out.push((h.finish(), cum, s.breakpoint));
        }
        out
    }
}

/// How a tool should be chosen.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolChoice {
    Auto,
    Required,
    None,
    Named(String),
}

#[derive(Debug, Clone)]
pub(crate) struct ToolDef {
    pub name: String,
    pub schema: Value,
}

#[derive(Debug, Clone)]
pub(crate) enum JsonMode {
    Object,
    Schema(Value),
}

/// A provider request reduced to what drives the reply.
#[derive(Debug)]
pub(crate) struct Norm {
    pub model: String,
    /// Text of the last user turn, emulator directives removed.
    pub user_text: String,
    /// Text of the tool result when the last turn is one.
    pub tool_result: Option<String>,
    pub tools: Vec<ToolDef>,
    pub choice: ToolChoice,
    pub max_tokens: Option<u64>,
    pub stops: Vec<String>,
    pub json: Option<JsonMode>,
    /// `Some(cap)` when the model reasons; `cap` bounds the reasoning tokens.
    pub reasoning: Option<Option<u64>>,
    pub prompt: Prompt,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Finish {
    Stop,
    Length,
    StopSequence(String),
    /// The `content_filter` fault: output stopped by a safety system.
    ContentFilter,
}

#[derive(Debug, Clone)]
pub(crate) enum ReplyKind {
    Text { text: String, finish: Finish },
    Tool { name: String, args: Value },
}

#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// Reasoning text (already truncated to `reasoning_tokens`).
    pub reasoning: Option<String>,
    pub reasoning_tokens: u64,
    pub kind: ReplyKind,
    /// Visible output tokens (text, or tool name + arguments JSON).
    pub output_tokens: u64,
}

impl Reply {
    /// Completion tokens including reasoning.
    pub fn completion_tokens(&self) -> u64 {
        self.output_tokens + self.reasoning_tokens
    }
}

/// Builds the deterministic reply for a normalized request.
///
/// `force_tool` (the `bad_tool_args` fault) calls a tool even when the rule would not.
pub(crate) fn make_reply(n: &Norm, force_tool: bool) -> Reply {
    let snippet_src = n.tool_result.as_deref().unwrap_or(&n.user_text);
    let snippet = first_chars(snippet_src.trim(), 80);
    // Reasoning is budgeted first; it shares max_tokens with the visible output.
    let (reasoning, reasoning_tokens) = match n.reasoning {
        Some(cap) => {
            let full = format!(
                "Thinking about the request to {}: \"{}\". The answer should be short and deterministic.",
                n.model, snippet
            );
            let mut limit = tok(&full);
            if let Some(c) = cap {
                limit = limit.min(c);
            }
            if let Some(m) = n.max_tokens {
                limit = limit.min(m);
            }
            let text = truncate_tokens(&full, limit).to_string();
            let t = tok(&text);
            (Some(text), t)
        }
        None => (None, 0),
    };
    let visible_budget = n.max_tokens.map(|m| m.saturating_sub(reasoning_tokens));

    let wants_tool = !n.tools.is_empty() && n.tool_result.is_none() && n.choice != ToolChoice::None;
    if wants_tool || force_tool {
        let chosen = match &n.choice {
            ToolChoice::Named(name) => {
                n.tools
                    .iter()
                    .find(|t| &t.name == name)
                    .cloned()
                    .unwrap_or(ToolDef {
                        name: name.clone(),
                        schema: json!({"type": "object"}),
                    })
            }
            _ => n.tools.first().cloned().unwrap_or(ToolDef {
                name: "emulated_tool".into(),
                schema: json!({"type": "object"}),
            }),
        };
        let args = synthesize(&chosen.schema, &chosen.schema, false, 0);
        let args = if args.is_object() { args } else { json!({}) };
        let output_tokens = tok(&chosen.name) + tok(&args.to_string());
        return Reply {
            reasoning,
            reasoning_tokens,
            kind: ReplyKind::Tool {
                name: chosen.name,
                args,
            },
            output_tokens,
        };
    }

    let base = if n.tool_result.is_some() {
        format!(
            "Emulated reply from {}: received tool result: {}",
            n.model, snippet
        )
    } else {
        format!("Emulated reply from {}: {}", n.model, snippet)
    };
    let full = match &n.json {
        None => base,
        Some(JsonMode::Object) => json!({"model": n.model, "reply": base}).to_string(),
        Some(JsonMode::Schema(s)) => {
            let v = synthesize(s, s, true, 0);
            if v.is_object() {
                v.to_string()
            } else {
                json!({"reply": base}).to_string()
            }
        }
    };
    // Whichever comes first: a stop sequence or the token limit.
    let stop_at = n
        .stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| full.find(s.as_str()).map(|i| (i, s.clone())))
        .min_by_key(|(i, _)| *i);
    let limit_at = visible_budget.map(|b| truncate_tokens(&full, b).len());
    let (text, finish) = match (stop_at, limit_at) {
        (Some((i, _)), Some(l)) if l < i => (full[..l].to_string(), Finish::Length),
        (Some((i, s)), _) => (full[..i].to_string(), Finish::StopSequence(s)),
        (None, Some(l)) if l < full.len() => (full[..l].to_string(), Finish::Length),
        _ => (full, Finish::Stop),
    };
    let output_tokens = tok(&text);
    Reply {
        reasoning,
        reasoning_tokens,
        kind: ReplyKind::Text { text, finish },
        output_tokens,
    }
}

/// The `content_filter` fault: keep the first half of the text (tool calls become text) and
/// finish as filtered.
pub(crate) fn filtered(mut r: Reply, model: &str, user_text: &str) -> Reply {
    let full = match &r.kind {
        ReplyKind::Text { text, .. } => text.clone(),
        ReplyKind::Tool { .. } => format!(
            "Emulated reply from {model}: {}",
            first_chars(user_text.trim(), 80)
        ),
    };
    let half = first_chars(&full, full.chars().count() / 2).to_string();
    r.output_tokens = tok(&half);
    r.kind = ReplyKind::Text {
        text: half,
        finish: Finish::ContentFilter,
    };
    r
}

/// Synthesizes a value from a JSON schema: `string` -> `"example"`, `integer` -> 1,
/// `number` -> 1.5, `boolean` -> true, `enum` -> first value, `array` -> `[]`, `object` ->
/// its required properties (all properties when `all_props`). Handles `$ref` into the root,
/// `anyOf`/`oneOf`/`allOf` (first branch), type arrays and Gemini's upper-case types.
pub(crate) fn synthesize(schema: &Value, root: &Value, all_props: bool, depth: usize) -> Value {
    if depth > 24 {
        return Value::Null;
    }
    let Some(obj) = schema.as_object() else {
        return json!("example");
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        if let Some(target) = r.strip_prefix('#').and_then(|p| root.pointer(p)) {
            return synthesize(target, root, all_props, depth + 1);
        }
        return json!({});
    }
    if let Some(v) = obj.get("const") {
        return v.clone();
    }
    if let Some(first) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = obj.get(key).and_then(Value::as_array).and_then(|a| {
            a.iter()
                .find(|s| s.get("type").and_then(Value::as_str) != Some("null"))
                .or(a.first())
        }) {
            return synthesize(first, root, all_props, depth + 1);
        }
    }
    let ty = match obj.get("type") {
        Some(Value::String(s)) => Some(s.to_ascii_lowercase()),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|s| !s.eq_ignore_ascii_case("null"))
            .map(str::to_ascii_lowercase),
        _ => None,
    };
    let ty = ty.unwrap_or_else(|| {
        if obj.contains_key("properties") {
            "object".into()
        } else if obj.contains_key("items") {
            "array".into()
        } else {
            "object".into()
        }
    });
    match ty.as_str() {
        "string" => json!("example"),
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "array" => json!([]),
        "null" => Value::Null,
        _ => {
            let mut out = Map::new();
            let props = obj.get("properties").and_then(Value::as_object);
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = props {
                for (k, v) in props {
                    if all_props || required.contains(&k.as_str()) {
                        out.insert(k.clone(), synthesize(v, root, all_props, depth + 1));
                    }
                }
            }
            for k in required {
                if !out.contains_key(k) {
                    out.insert(k.to_string(), json!("example"));
                }
            }
            Value::Object(out)
        }
    }
}

/// Removes `[[emulator:...]]` directives from a text.
pub(crate) fn strip_directives(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("[[emulator:") {
        out.push_str(&rest[..i]);
        match rest[i..].find("]]") {
            Some(j) => rest = &rest[i + j + 2..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// An error answered in the provider's own format.
#[derive(Debug, Clone)]
pub(crate) enum ApiErr {
    MissingKey,
    InvalidKey(String),
    InvalidJson(String),
    Invalid {
        msg: String,
        param: Option<String>,
        code: Option<String>,
    },
    ContextLength {
        tokens: u64,
        limit: u64,
    },
    RateLimit {
        retry_after: f64,
    },
    Server,
    Overloaded,
}

impl ApiErr {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        ApiErr::Invalid {
            msg: msg.into(),
            param: None,
            code: None,
        }
    }
    pub(crate) fn invalid_param(msg: impl Into<String>, param: &str, code: Option<&str>) -> Self {
        ApiErr::Invalid {
            msg: msg.into(),
            param: Some(param.to_string()),
            code: code.map(str::to_string),
        }
    }
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            ApiErr::MissingKey | ApiErr::InvalidKey(_) => "auth_error",
            ApiErr::InvalidJson(_) | ApiErr::Invalid { .. } => "invalid_request",
            ApiErr::ContextLength { .. } => "context_length",
            ApiErr::RateLimit { .. } => "rate_limit",
            ApiErr::Server => "server_error",
            ApiErr::Overloaded => "overloaded",
        }
    }
}

/// Cache accounting for one request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CacheUse {
    pub read: u64,
    pub write: u64,
    pub write_1h: bool,
}

/// Everything a provider needs to render a successful answer.
#[derive(Debug)]
pub(crate) struct Out<'a> {
    pub body: &'a Value,
    pub norm: &'a Norm,
    pub reply: &'a Reply,
    pub cache: CacheUse,
    pub seq: u64,
    pub created: u64,
    pub stream: bool,
    pub applied: &'a Applied,
    /// Gemini streamGenerateContent without `alt=sse` (JSON array).
    pub json_array_stream: bool,
}

/// `retry-after` (whole seconds, rounded up) and, for fractional values, `retry-after-ms`.
pub(crate) fn retry_headers(retry_after: f64) -> Vec<(&'static str, String)> {
    let mut v = vec![("retry-after", format!("{}", retry_after.ceil() as u64))];
    if retry_after.fract() != 0.0 {
        v.push((
            "retry-after-ms",
            format!("{}", (retry_after * 1000.0).round() as u64),
        ));
    }
    v
}

/// `data: {json}\n\n`
pub(crate) fn sse_data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// `event: name\ndata: {json}\n\n`
pub(crate) fn sse_event(name: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

/// Truncates a JSON document to produce invalid JSON (the `malformed_json` fault).
pub(crate) fn malformed(s: &str) -> String {
    let cut = s.len() / 2;
    let mut i = cut.max(1).min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    s[..i].to_string()
}

/// A 200 JSON response, honouring the `malformed_json` and `cut_stream` faults.
pub(crate) fn json_response(v: &Value, applied: &Applied, extra: &[(&str, String)]) -> Response {
    let s = v.to_string();
    if applied.cut_after.is_some() {
        // Send half the body then abort the connection.
        let half = Bytes::from(malformed(&s));
        let stream = futures_util::stream::unfold(0u8, move |step| {
            let half = half.clone();
            async move {
                match step {
                    0 => Some((Ok::<Bytes, std::io::Error>(half), 1)),
                    1 => {
                        // Flush the half body before dropping the connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Some((Err(std::io::Error::other("emulator: cut_stream fault")), 2))
                    }
                    _ => None,
                }
            }
        });
        let mut r = Response::new(Body::from_stream(stream));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        add_headers(&mut r, extra);
        return r;
    }
    let body = if applied.malformed { malformed(&s) } else { s };
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    add_headers(&mut r, extra);
    r
}

/// An error answer: `status`, a JSON `body` of `content_type`, and the provider's extra
/// headers (`retry-after`, request ids...).
pub(crate) fn json_error(
    (status, body, extra): (StatusCode, Value, Vec<(&'static str, String)>),
    content_type: &'static str,
) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.to_string(),
    )
        .into_response();
    add_headers(&mut r, &extra);
    r
}

pub(crate) fn add_headers(r: &mut Response, extra: &[(&str, String)]) {
    for (k, v) in extra {
        if let (Ok(name), Ok(val)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, val);
        }
    }
}

/// Streams precomputed SSE events, honouring `slow_stream`, `cut_stream` and
/// `malformed_json` (the second event's JSON is truncated).
pub(crate) fn sse_response(
    mut events: Vec<Bytes>,
    applied: &Applied,
    content_type: &'static str,
    extra: &[(&str, String)],
) -> Response {
    if let Some((n, ev)) = &applied.mid_error {
        events.truncate(*n);
        events.push(ev.clone());
    }
    if applied.malformed && !events.is_empty() {
        let i = 1.min(events.len() - 1);
        let s = String::from_utf8_lossy(&events[i]).to_string();
        let trimmed = s.trim_end();
        // Keep the `event:`/`data: ` framing; truncate only the JSON payload.
        let cut = match trimmed.find("data: ") {
            Some(d) => format!("{}{}", &trimmed[..d + 6], malformed(&trimmed[d + 6..])),
            None => malformed(trimmed),
        };
        events[i] = Bytes::from(format!("{cut}\n\n"));
    }
    let delay = Duration::from_millis(applied.stream_delay_ms);
    let cut = applied.cut_after;
    let clean = applied.cut_clean;
    let state = (events.into_iter(), 0usize);
    let stream = futures_util::stream::unfold(state, move |(mut it, idx)| async move {
        if let Some(c) = cut
            && idx >= c
        {
            if clean {
                return None;
            }
            // Let the server flush what was sent before the connection is dropped.
            tokio::time::sleep(Duration::from_millis(10)).await;
            return Some((
                Err(std::io::Error::other("emulator: cut_stream fault")),
                (it, usize::MAX - 1),
            ));
        }
        if idx == usize::MAX - 1 {
            return None;
        }
        let ev = it.next()?;
        if idx > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<Bytes, std::io::Error>(ev), (it, idx + 1)))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    add_headers(&mut r, extra);
    r
}

/// An HTML error page (the `html_error` fault: what a proxy in front of the API returns),
/// under `status` (502 by default; `html_error;status=200` is a captive portal's page).
pub(crate) fn html_error(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>emulated-proxy</center>\r\n</body>\r\n</html>\r\n"
        ),
    )
        .into_response()
}

/// Concatenated text of a JSON value that is a string or an array of `{type:"text",text}` parts
/// (also used for OpenAI and Anthropic content). Returns `(text parts, image count)`.
pub(crate) fn content_parts(v: &Value) -> (Vec<String>, u64) {
    match v {
        Value::String(s) => (vec![s.clone()], 0),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            let mut images = 0;
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") | Some("input_text") | Some("output_text") => {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            texts.push(t.to_string());
                        }
                    }
                    Some("refusal") => {
                        if let Some(t) = p.get("refusal").and_then(Value::as_str) {
                            texts.push(t.to_string());
                        }
                    }
                    Some(_) => images += 1,
                    None => {
                        if let Some(t) = p.as_str() {
                            texts.push(t.to_string());
                        }
                    }
                }
            }
            (texts, images)
        }
        _ => (vec![], 0),
    }
}

/// Tokens of text parts (each part rounded up separately) plus images.
pub(crate) fn parts_tokens(texts: &[String], images: u64) -> u64 {
    texts.iter().map(|t| tok(t)).sum::<u64>() + images * IMAGE_TOKENS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rule() {
        assert_eq!(tok(""), 0);
        assert_eq!(tok("abcd"), 1);
        assert_eq!(tok("abcde"), 2);
        assert_eq!(truncate_tokens("abcdefghij", 2), "abcdefgh");
        assert_eq!(truncate_tokens("héllo", 1), "héll");
    }

    #[test]
    fn deltas_rejoin() {
        let s = "Emulated reply from gpt: ünïcödé text that is long enough";
        let d = split_deltas(s);
        assert!(d.len() > 2);
        assert_eq!(d.concat(), s);
        assert_eq!(split_fragments("{\"a\":1}", 3).concat(), "{\"a\":1}");
    }

    #[test]
    fn schema_synthesis() {
        let s = json!({"type":"object","properties":{
            "s":{"type":"string"},"i":{"type":"integer"},"n":{"type":"number"},
            "b":{"type":"boolean"},"e":{"type":"string","enum":["c","f"]},
            "a":{"type":"array","items":{"type":"string"}},
            "o":{"type":"object","properties":{"x":{"type":"STRING"}},"required":["x"]},
            "opt":{"type":"string"},
            "r":{"$ref":"#/$defs/R"}},
            "required":["s","i","n","b","e","a","o","r"],
            "$defs":{"R":{"type":["integer","null"]}}});
        let v = synthesize(&s, &s, false, 0);
        assert_eq!(
            v,
            json!({"s":"example","i":1,"n":1.5,"b":true,"e":"c","a":[],"o":{"x":"example"},"r":1})
        );
    }

    #[test]
    fn directives_stripped() {
        assert_eq!(
            strip_directives("hi [[emulator:slow;delay_ms=1]] there"),
            "hi  there"
        );
    }
}
