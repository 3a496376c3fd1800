//! OpenAI Chat Completions and the DeepSeek flavour.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::{
    self, ApiErr, Finish, JsonMode, Norm, Out, Prompt, ReplyKind, ToolChoice, ToolDef,
    content_parts, parts_tokens, retry_headers, sse_data, tok,
};
use crate::provider::Provider;

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// OpenAI reasoning models (hidden reasoning tokens; `max_tokens` rejected).
fn is_reasoning_model(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    (m.starts_with("o1") || m.starts_with("o3") || m.starts_with("o4") || m.starts_with("gpt-5"))
        && !m.starts_with("gpt-5-chat")
}

fn message_text(m: &Value) -> (Vec<String>, u64) {
    m.get("content").map(content_parts).unwrap_or_default()
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
        .map(|m| message_text(m).0.join("\n"))
        .unwrap_or_default()
}

pub(crate) fn normalize(body: &Value, p: Provider) -> Result<Norm, ApiErr> {
    let model = match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ApiErr::invalid("you must provide a model parameter")),
    };
    let messages = match body.get("messages") {
        None | Some(Value::Null) => {
            return Err(ApiErr::invalid_param(
                "Missing required parameter: 'messages'.",
                "messages",
                Some("missing_required_parameter"),
            ));
        }
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(ApiErr::invalid_param(
                format!(
                    "Invalid type for 'messages': expected an array of objects, but got {} instead.",
                    type_name(other)
                ),
                "messages",
                Some("invalid_type"),
            ));
        }
    };
    if messages.is_empty() {
        return Err(ApiErr::invalid_param(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
            Some("empty_array"),
        ));
    }
    let reasoning_model = p == Provider::OpenAi && is_reasoning_model(&model);
    if reasoning_model && body.get("max_tokens").is_some_and(|v| !v.is_null()) {
        return Err(ApiErr::invalid_param(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "max_tokens",
            Some("unsupported_parameter"),
        ));
    }

    if reasoning_model
        && let Some(t) = body.get("temperature").and_then(Value::as_f64)
        && t != 1.0
    {
        return Err(ApiErr::invalid_param(
            format!(
                "Unsupported value: 'temperature' does not support {t} with this model. Only the default (1) value is supported."
            ),
            "temperature",
            Some("unsupported_value"),
        ));
    }
    if body.get("stream_options").is_some_and(|v| !v.is_null())
        && body.get("stream") != Some(&Value::Bool(true))
    {
        return Err(ApiErr::invalid_param(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            None,
        ));
    }

    let mut prompt = Prompt::default();
    let tools_v = body.get("tools").and_then(Value::as_array);
    let mut tools = Vec::new();
    if let Some(ts) = tools_v.filter(|t| !t.is_empty()) {
        for (i, t) in ts.iter().enumerate() {
            let f = t.get("function");
            let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
            let Some(name) = name else {
                return Err(ApiErr::invalid_param(
                    format!("Missing required parameter: 'tools[{i}].function.name'."),
                    &format!("tools[{i}].function.name"),
                    Some("missing_required_parameter"),
                ));
            };
            let schema = f
                .and_then(|f| f.get("parameters"))
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            tools.push(ToolDef {
                name: name.to_string(),
                schema,
            });
        }
        let js = Value::Array(ts.clone()).to_string();
        prompt.push(format!("tools\u{1}{js}"), tok(&js));
    }

    let mut prev_had_tool_calls = false;
    let mut all_text = String::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err(ApiErr::invalid_param(
                format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                ),
                &format!("messages[{i}].role"),
                Some("invalid_value"),
            ));
        }
        if role == "tool" && !prev_had_tool_calls {
            return Err(ApiErr::invalid_param(
                "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                &format!("messages.[{i}].role"),
                None,
            ));
        }
        let (texts, images) = message_text(m);
        let mut tokens = common::MESSAGE_OVERHEAD + parts_tokens(&texts, images);
        let mut key = format!("{role}\u{1}{}", texts.join("\u{2}"));
        let tool_calls = m.get("tool_calls").and_then(Value::as_array);
        if let Some(calls) = tool_calls {
            for c in calls {
                let f = c.get("function");
                let name = f
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let args = f
                    .and_then(|f| f.get("arguments"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                tokens += tok(name) + tok(args);
                key.push_str(&format!("\u{3}{name}\u{3}{args}"));
            }
        }
        if role != "tool" {
            prev_had_tool_calls = tool_calls.is_some_and(|c| !c.is_empty());
        }
        for t in &texts {
            all_text.push_str(t);
        }
        prompt.push(key, tokens);
    }

    let json = match body.get("response_format") {
        Some(rf) => match rf.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                if !all_text.to_ascii_lowercase().contains("json") {
                    return Err(ApiErr::invalid_param(
                        "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                        "messages",
                        None,
                    ));
                }
                Some(JsonMode::Object)
            }
            Some("json_schema") => {
                let schema = rf
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"}));
                let s = schema.to_string();
                prompt.push(format!("schema\u{1}{s}"), tok(&s));
                Some(JsonMode::Schema(schema))
            }
            _ => None,
        },
        None => None,
    };

    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            "auto" => ToolChoice::Auto,
            other => {
                return Err(ApiErr::invalid_param(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'none', 'auto', and 'required'."
                    ),
                    "tool_choice",
                    Some("invalid_value"),
                ));
            }
        },
        Some(obj) => match obj
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(n) => ToolChoice::Named(n.to_string()),
            None => ToolChoice::Auto,
        },
    };
    if tools.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Named(_)) {
        return Err(ApiErr::invalid_param(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            "tool_choice",
            None,
        ));
    }

    let max_tokens = body
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| body.get("max_tokens").and_then(Value::as_u64));
    let stops = match body.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![],
    };

    let last = messages.last();
    let last_role = last
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let tool_result = if matches!(last_role, "tool" | "function") {
        last.map(|m| message_text(m).0.join("\n"))
    } else {
        None
    };
    if last_role != "user" && tool_result.is_none() {
        tools.clear();
    }
    let effort = body.get("reasoning_effort").and_then(Value::as_str);
    let reasoning = match p {
        Provider::OpenAi if reasoning_model && !matches!(effort, Some("none" | "minimal")) => {
            Some(None)
        }
        Provider::DeepSeek if model.contains("reasoner") => Some(None),
        _ => None,
    };
    Ok(Norm {
        model,
        user_text: common::strip_directives(&last_user_text(body)),
        tool_result,
        tools,
        choice,
        max_tokens,
        stops,
        json,
        reasoning,
        prompt,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn usage(out: &Out<'_>, p: Provider) -> Value {
    let prompt = out.norm.prompt.total();
    let completion = out.reply.completion_tokens();
    let cached = out.cache.read;
    match p {
        Provider::DeepSeek => {
            let mut u = json!({
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached},
                "prompt_cache_hit_tokens": cached,
                "prompt_cache_miss_tokens": prompt - cached,
            });
            if out.reply.reasoning.is_some() {
                u["completion_tokens_details"] =
                    json!({"reasoning_tokens": out.reply.reasoning_tokens});
            }
            u
        }
        _ => json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": out.reply.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        }),
    }
}

fn finish_reason(kind: &ReplyKind) -> &'static str {
    match kind {
        ReplyKind::Tool { .. } => "tool_calls",
        ReplyKind::Text {
            finish: Finish::Length,
            ..
        } => "length",
        ReplyKind::Text {
            finish: Finish::ContentFilter,
            ..
        } => "content_filter",
        ReplyKind::Text { .. } => "stop",
    }
}

fn arguments_string(args: &Value, bad: bool) -> String {
    let s = args.to_string();
    if bad { common::malformed(&s) } else { s }
}

pub(crate) fn render(out: &Out<'_>, p: Provider) -> Response {
    let id = format!("chatcmpl-emu{:06}", out.seq);
    let call_id = format!("call_emu{:06}", out.seq);
    let model = &out.norm.model;
    let deepseek_reasoning = if p == Provider::DeepSeek {
        out.reply.reasoning.as_deref()
    } else {
        None
    };
    let extra = [("x-request-id", format!("req_emu{:06}", out.seq))];
    if !out.stream {
        let mut message = json!({"role": "assistant", "content": Value::Null});
        match &out.reply.kind {
            ReplyKind::Text { text, .. } => message["content"] = json!(text),
            ReplyKind::Tool { name, args } => {
                message["tool_calls"] = json!([{
                    "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": arguments_string(args, out.applied.bad_tool_args)}
                }]);
            }
        }
        if p == Provider::OpenAi {
            message["refusal"] = Value::Null;
            message["annotations"] = json!([]);
        }
        if let Some(r) = deepseek_reasoning {
            message["reasoning_content"] = json!(r);
        }
        let mut v = json!({
            "id": id,
            "object": "chat.completion",
            "created": out.created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": Value::Null,
                "finish_reason": finish_reason(&out.reply.kind),
            }],
            "usage": usage(out, p),
            "system_fingerprint": "fp_emulator",
        });
        if p == Provider::OpenAi {
            v["service_tier"] = json!("default");
        }
        return common::json_response(&v, out.applied, &extra);
    }

    let include_usage = out
        .body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": out.created,
            "model": model,
            "system_fingerprint": "fp_emulator",
            "choices": [{"index": 0, "delta": delta, "logprobs": Value::Null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        sse_data(&c)
    };
    let mut events: Vec<Bytes> = Vec::new();
    let is_tool = matches!(out.reply.kind, ReplyKind::Tool { .. });
    let mut first = json!({"role": "assistant", "content": if is_tool || deepseek_reasoning.is_some() { Value::Null } else { json!("") }});
    if p == Provider::OpenAi {
        first["refusal"] = Value::Null;
    }
    if deepseek_reasoning.is_some() {
        first["reasoning_content"] = json!("");
    }
    events.push(chunk(first, Value::Null));
    if let Some(r) = deepseek_reasoning {
        for piece in common::split_deltas(r) {
            events.push(chunk(
                json!({"content": Value::Null, "reasoning_content": piece}),
                Value::Null,
            ));
        }
    }
    match &out.reply.kind {
        ReplyKind::Text { text, .. } => {
            for piece in common::split_deltas(text) {
                let mut d = json!({"content": piece});
                if deepseek_reasoning.is_some() {
                    d["reasoning_content"] = Value::Null;
                }
                events.push(chunk(d, Value::Null));
            }
        }
        ReplyKind::Tool { name, args } => {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            let a = arguments_string(args, out.applied.bad_tool_args);
            for frag in common::split_fragments(&a, 3) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}),
                    Value::Null,
                ));
            }
        }
    }
    events.push(chunk(json!({}), json!(finish_reason(&out.reply.kind))));
    if include_usage {
        events.push(sse_data(&json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": out.created,
            "model": model,
            "system_fingerprint": "fp_emulator",
            "choices": [],
            "usage": usage(out, p),
        })));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
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

/// Status, JSON body and extra headers of an error (also used for mid-stream error events).
pub(crate) fn error_parts(err: &ApiErr) -> (StatusCode, Value, Vec<(&'static str, String)>) {
    let mut extra: Vec<(&str, String)> = vec![];
    let (status, message, ty, param, code) = match err {
        ApiErr::MissingKey => (
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.".to_string(),
            "invalid_request_error",
            None,
            None,
        ),
        ApiErr::InvalidKey(k) => (
            StatusCode::UNAUTHORIZED,
            format!(
                "Incorrect API key provided: {}***. You can find your API key at https://platform.openai.com/account/api-keys.",
                common::first_chars(k, 4)
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key".to_string()),
        ),
        ApiErr::InvalidJson(_) => (
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)".to_string(),
            "invalid_request_error",
            None,
            None,
        ),
        ApiErr::Invalid { msg, param, code } => (
            StatusCode::BAD_REQUEST,
            msg.clone(),
            "invalid_request_error",
            param.clone(),
            code.clone(),
        ),
        ApiErr::ContextLength { tokens, limit } => (
            StatusCode::BAD_REQUEST,
            format!(
                "This model's maximum context length is {limit} tokens. However, your messages resulted in {tokens} tokens. Please reduce the length of the messages."
            ),
            "invalid_request_error",
            Some("messages".to_string()),
            Some("context_length_exceeded".to_string()),
        ),
        ApiErr::RateLimit { retry_after } => {
            extra = retry_headers(*retry_after);
            extra.push(("x-ratelimit-limit-requests", "60".into()));
            extra.push(("x-ratelimit-remaining-requests", "0".into()));
            extra.push(("x-ratelimit-reset-requests", format!("{retry_after}s")));
            (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Rate limit reached for requests in organization org-emulator on requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in {retry_after}s."
                ),
                "requests",
                None,
                Some("rate_limit_exceeded".to_string()),
            )
        }
        ApiErr::Server => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!".to_string(),
            "server_error",
            None,
            None,
        ),
        ApiErr::Overloaded => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is overloaded or not ready yet.".to_string(),
            "server_error",
            None,
            None,
        ),
    };
    let body = json!({"error": {"message": message, "type": ty, "param": param, "code": code}});
    (status, body, extra)
}
