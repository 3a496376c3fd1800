//! Anthropic Messages.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::{
    self, ApiErr, Finish, IMAGE_TOKENS, JsonMode, Norm, Out, Prompt, ReplyKind, Segment,
    ToolChoice, ToolDef, retry_headers, sse_event, tok,
};

fn breakpoint(block: &Value) -> Option<bool> {
    block
        .get("cache_control")
        .filter(|c| c.is_object())
        .map(|c| c.get("ttl").and_then(Value::as_str) == Some("1h"))
}

/// Text and token count of one content block.
fn block_text_tokens(b: &Value) -> (String, u64) {
    match b.get("type").and_then(Value::as_str) {
        Some("text") => {
            let t = b.get("text").and_then(Value::as_str).unwrap_or("");
            (t.to_string(), tok(t))
        }
        Some("tool_use") | Some("server_tool_use") => {
            let name = b.get("name").and_then(Value::as_str).unwrap_or("");
            let input = b.get("input").map(Value::to_string).unwrap_or_default();
            (format!("{name}{input}"), tok(name) + tok(&input))
        }
        Some("tool_result") => {
            let t = tool_result_text(b);
            let images = match b.get("content") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter(|x| x.get("type").and_then(Value::as_str) != Some("text"))
                    .count() as u64,
                _ => 0,
            };
            let tokens = tok(&t) + images * IMAGE_TOKENS;
            (t, tokens)
        }
        Some("thinking") => {
            let t = b.get("thinking").and_then(Value::as_str).unwrap_or("");
            (t.to_string(), tok(t))
        }
        Some("redacted_thinking") => {
            let t = b.get("data").and_then(Value::as_str).unwrap_or("");
            (t.to_string(), tok(t))
        }
        _ => (b.to_string(), IMAGE_TOKENS),
    }
}

fn tool_result_text(b: &Value) -> String {
    match b.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(a)) => a.clone(),
        _ => vec![],
    }
}

fn user_text_of(m: &Value) -> String {
    blocks(m.get("content"))
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text of the last `user` message (directives intact).
pub(crate) fn last_user_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|ms| {
            ms.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .map(user_text_of)
        .unwrap_or_default()
}

pub(crate) fn normalize(body: &Value) -> Result<Norm, ApiErr> {
    let model = match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ApiErr::invalid("model: Field required")),
    };
    let max_tokens = match body.get("max_tokens") {
        None | Some(Value::Null) => return Err(ApiErr::invalid("max_tokens: Field required")),
        Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            ApiErr::invalid("max_tokens: Input should be greater than or equal to 1")
        })?,
    };
    let messages = match body.get("messages") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => return Err(ApiErr::invalid("messages: Field required")),
        Some(_) => return Err(ApiErr::invalid("messages: Input should be a valid list")),
    };
    if messages.is_empty() {
        return Err(ApiErr::invalid(
            "messages: at least one message is required",
        ));
    }
    let mut prev: Option<&str> = None;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(ApiErr::invalid(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        if i == 0 && role != "user" {
            return Err(ApiErr::invalid(
                "messages: first message must use the \"user\" role",
            ));
        }
        if prev == Some(role) {
            return Err(ApiErr::invalid(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
            )));
        }
        prev = Some(role);
    }

    let reasoning = match body.get("thinking") {
        Some(t) => match t.get("type").and_then(Value::as_str) {
            Some("enabled") => {
                let budget = t
                    .get("budget_tokens")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| {
                        ApiErr::invalid("thinking.enabled.budget_tokens: Field required")
                    })?;
                if budget < 1024 {
                    return Err(ApiErr::invalid(
                        "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
                    ));
                }
                if budget >= max_tokens {
                    return Err(ApiErr::invalid(
                        "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size",
                    ));
                }
                if body
                    .get("temperature")
                    .and_then(Value::as_f64)
                    .is_some_and(|t| t != 1.0)
                {
                    return Err(ApiErr::invalid(
                        "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility",
                    ));
                }
                Some(Some(budget))
            }
            Some("adaptive") => Some(None),
            _ => None,
        },
        None => None,
    };

    let mut prompt = Prompt::default();
    let mut tools = Vec::new();
    if let Some(ts) = body.get("tools").and_then(Value::as_array) {
        for (i, t) in ts.iter().enumerate() {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiErr::invalid(format!("tools.{i}.name: Field required")))?;
            let js = t.to_string();
            prompt.segments.push(Segment {
                key: format!("tool\u{1}{js}"),
                tokens: tok(&js),
                breakpoint: breakpoint(t),
            });
            if let Some(schema) = t.get("input_schema") {
                tools.push(ToolDef {
                    name: name.to_string(),
                    schema: schema.clone(),
                });
            } else if t.get("type").is_none_or(|ty| ty == "custom") {
                return Err(ApiErr::invalid(format!(
                    "tools.{i}.custom.input_schema: Field required"
                )));
            }
        }
    }
    match body.get("system") {
        Some(Value::String(s)) => {
            prompt.push(format!("system\u{1}{s}"), common::MESSAGE_OVERHEAD + tok(s))
        }
        Some(Value::Array(a)) => {
            prompt.push("system\u{1}".into(), common::MESSAGE_OVERHEAD);
            for b in a {
                let (t, n) = block_text_tokens(b);
                prompt.segments.push(Segment {
                    key: format!("sys\u{1}{t}"),
                    tokens: n,
                    breakpoint: breakpoint(b),
                });
            }
        }
        _ => {}
    }
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        prompt.push(format!("{role}\u{1}"), common::MESSAGE_OVERHEAD);
        for b in blocks(m.get("content")) {
            let (t, n) = block_text_tokens(&b);
            prompt.segments.push(Segment {
                key: format!("b\u{1}{t}"),
                tokens: n,
                breakpoint: breakpoint(&b),
            });
        }
    }

    let json = match body
        .get("output_format")
        .or_else(|| body.get("output_config").and_then(|c| c.get("format")))
    {
        Some(f) if f.get("type").and_then(Value::as_str) == Some("json_schema") => {
            let schema = f
                .get("schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            let s = schema.to_string();
            prompt.push(format!("schema\u{1}{s}"), tok(&s));
            Some(JsonMode::Schema(schema))
        }
        _ => None,
    };
    let choice = match body.get("tool_choice") {
        Some(tc) => match tc.get("type").and_then(Value::as_str) {
            Some("none") => ToolChoice::None,
            Some("any") => ToolChoice::Required,
            Some("tool") => match tc.get("name").and_then(Value::as_str) {
                Some(n) => ToolChoice::Named(n.to_string()),
                None => return Err(ApiErr::invalid("tool_choice.tool.name: Field required")),
            },
            _ => ToolChoice::Auto,
        },
        None => ToolChoice::Auto,
    };
    let stops = body
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();

    let last = messages.last();
    let last_role = last
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let last_blocks = blocks(last.and_then(|m| m.get("content")));
    let results: Vec<String> = last_blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(tool_result_text)
        .collect();
    let tool_result = (last_role == "user" && !results.is_empty()).then(|| results.join("\n"));
    if last_role != "user" {
        tools.clear();
    }
    Ok(Norm {
        model,
        user_text: common::strip_directives(&last_user_text(body)),
        tool_result,
        tools,
        choice,
        max_tokens: Some(max_tokens),
        stops,
        json,
        reasoning,
        prompt,
    })
}

fn stop_reason(kind: &ReplyKind) -> (&'static str, Value) {
    match kind {
        ReplyKind::Tool { .. } => ("tool_use", Value::Null),
        ReplyKind::Text {
            finish: Finish::Length,
            ..
        } => ("max_tokens", Value::Null),
        ReplyKind::Text {
            finish: Finish::StopSequence(s),
            ..
        } => ("stop_sequence", json!(s)),
        ReplyKind::Text {
            finish: Finish::ContentFilter,
            ..
        } => ("refusal", Value::Null),
        ReplyKind::Text { .. } => ("end_turn", Value::Null),
    }
}

fn signature(seq: u64, text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("EmuSig{seq:06}{:016x}", h.finish())
}

pub(crate) fn render(out: &Out<'_>) -> Response {
    let id = format!("msg_emu{:06}", out.seq);
    let tool_id = format!("toolu_emu{:06}", out.seq);
    let model = &out.norm.model;
    let total = out.norm.prompt.total();
    let input_tokens = total.saturating_sub(out.cache.read + out.cache.write);
    let output_tokens = out.reply.completion_tokens();
    let (stop, stop_seq) = stop_reason(&out.reply.kind);
    let extra = [("request-id", format!("req_emu{:06}", out.seq))];
    let (w5, w1) = if out.cache.write_1h {
        (0, out.cache.write)
    } else {
        (out.cache.write, 0)
    };

    if !out.stream {
        let mut content = Vec::new();
        if let Some(r) = &out.reply.reasoning {
            content.push(
                json!({"type": "thinking", "thinking": r, "signature": signature(out.seq, r)}),
            );
        }
        match &out.reply.kind {
            ReplyKind::Text { text, .. } => {
                if !text.is_empty() || content.is_empty() {
                    content.push(json!({"type": "text", "text": text}));
                }
            }
            ReplyKind::Tool { name, args } => {
                let input = if out.applied.bad_tool_args {
                    json!({})
                } else {
                    args.clone()
                };
                content
                    .push(json!({"type": "tool_use", "id": tool_id, "name": name, "input": input}));
            }
        }
        let v = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": stop_seq,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": out.cache.write,
                "cache_read_input_tokens": out.cache.read,
                "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
                "output_tokens": output_tokens,
                "service_tier": "standard"
            }
        });
        return common::json_response(&v, out.applied, &extra);
    }

    let mut events: Vec<Bytes> = Vec::new();
    events.push(sse_event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": Value::Null, "stop_sequence": Value::Null,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": out.cache.write,
                "cache_read_input_tokens": out.cache.read,
                "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
                "output_tokens": 1,
                "service_tier": "standard"
            }
        }}),
    ));
    let mut index = 0u64;
    let mut pinged = false;
    let mut ping = |events: &mut Vec<Bytes>| {
        if !pinged {
            events.push(sse_event("ping", &json!({"type": "ping"})));
            pinged = true;
        }
    };
    let delta = |i: u64, d: Value| {
        sse_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": i, "delta": d}),
        )
    };
    let stop_block = |i: u64| {
        sse_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": i}),
        )
    };
    let start = |i: u64, b: Value| {
        sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": i, "content_block": b}),
        )
    };

    if let Some(r) = &out.reply.reasoning {
        events.push(start(
            index,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        ));
        ping(&mut events);
        for piece in common::split_deltas(r) {
            events.push(delta(
                index,
                json!({"type": "thinking_delta", "thinking": piece}),
            ));
        }
        events.push(delta(
            index,
            json!({"type": "signature_delta", "signature": signature(out.seq, r)}),
        ));
        events.push(stop_block(index));
        index += 1;
    }
    match &out.reply.kind {
        ReplyKind::Text { text, .. } => {
            if !text.is_empty() || index == 0 {
                events.push(start(index, json!({"type": "text", "text": ""})));
                ping(&mut events);
                for piece in common::split_deltas(text) {
                    events.push(delta(index, json!({"type": "text_delta", "text": piece})));
                }
                events.push(stop_block(index));
            }
        }
        ReplyKind::Tool { name, args } => {
            events.push(start(
                index,
                json!({"type": "tool_use", "id": tool_id, "name": name, "input": {}}),
            ));
            ping(&mut events);
            let s = args.to_string();
            let s = if out.applied.bad_tool_args {
                common::malformed(&s)
            } else {
                s
            };
            events.push(delta(
                index,
                json!({"type": "input_json_delta", "partial_json": ""}),
            ));
            for frag in common::split_fragments(&s, 3) {
                events.push(delta(
                    index,
                    json!({"type": "input_json_delta", "partial_json": frag}),
                ));
            }
            events.push(stop_block(index));
        }
    }
    events.push(sse_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": stop_seq},
                "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(sse_event("message_stop", &json!({"type": "message_stop"})));
    common::sse_response(
        events,
        out.applied,
        "text/event-stream; charset=utf-8",
        &extra,
    )
}

pub(crate) fn render_error(err: &ApiErr) -> Response {
    common::json_error(error_parts(err), "application/json")
}

/// Status, JSON body and extra headers of an error (also used for mid-stream `error` events).
pub(crate) fn error_parts(err: &ApiErr) -> (StatusCode, Value, Vec<(&'static str, String)>) {
    let mut extra: Vec<(&str, String)> = vec![];
    let (status, ty, message): (StatusCode, &str, String) = match err {
        ApiErr::MissingKey => (
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required".into(),
        ),
        ApiErr::InvalidKey(_) => (
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key".into(),
        ),
        ApiErr::InvalidJson(e) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("There was an error parsing the body of your request: {e}"),
        ),
        ApiErr::Invalid { msg, .. } => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            msg.clone(),
        ),
        ApiErr::ContextLength { tokens, limit } => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("prompt is too long: {tokens} tokens > {limit} maximum"),
        ),
        ApiErr::RateLimit { retry_after } => {
            extra = retry_headers(*retry_after);
            extra.push(("anthropic-ratelimit-requests-limit", "50".into()));
            extra.push(("anthropic-ratelimit-requests-remaining", "0".into()));
            (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "This request would exceed your organization's rate limit of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.".into(),
            )
        }
        ApiErr::Server => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error".into(),
        ),
        ApiErr::Overloaded => (
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
            "Overloaded".into(),
        ),
    };
    let body = json!({"type": "error", "error": {"type": ty, "message": message}});
    (status, body, extra)
}
