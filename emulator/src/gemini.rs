//! Gemini generateContent / streamGenerateContent.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::{
    self, ApiErr, Finish, IMAGE_TOKENS, JsonMode, Norm, Out, Prompt, ReplyKind, ToolChoice,
    ToolDef, retry_headers, sse_data, tok,
};

/// Proto-JSON accepts both lowerCamelCase and snake_case field names.
fn get<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn part_text_tokens(p: &Value) -> (String, u64) {
    if let Some(t) = p.get("text").and_then(Value::as_str) {
        return (t.to_string(), tok(t));
    }
    if let Some(fc) = get(p, "functionCall", "function_call") {
        let name = fc.get("name").and_then(Value::as_str).unwrap_or("");
        let args = fc.get("args").map(Value::to_string).unwrap_or_default();
        return (format!("{name}{args}"), tok(name) + tok(&args));
    }
    if let Some(fr) = get(p, "functionResponse", "function_response") {
        let name = fr.get("name").and_then(Value::as_str).unwrap_or("");
        let resp = fr.get("response").map(Value::to_string).unwrap_or_default();
        return (format!("{name}{resp}"), tok(name) + tok(&resp));
    }
    (p.to_string(), IMAGE_TOKENS)
}

fn parts(c: &Value) -> Vec<Value> {
    c.get("parts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn text_of(c: &Value) -> String {
    parts(c)
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

fn role_of(c: &Value) -> &str {
    c.get("role").and_then(Value::as_str).unwrap_or("user")
}

/// Text of the last `user` content (directives intact).
pub(crate) fn last_user_text(body: &Value) -> String {
    body.get("contents")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().rev().find(|c| role_of(c) == "user"))
        .map(text_of)
        .unwrap_or_default()
}

fn thinks(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    m.contains("2.5") || m.starts_with("gemini-3")
}

pub(crate) fn normalize(body: &Value, model: &str) -> Result<Norm, ApiErr> {
    let contents = match body.get("contents").and_then(Value::as_array) {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err(ApiErr::invalid(
                "* GenerateContentRequest.contents: contents is not specified\n",
            ));
        }
    };
    for c in contents {
        if !matches!(role_of(c), "user" | "model") {
            return Err(ApiErr::invalid("Please use a valid role: user, model."));
        }
        if parts(c).is_empty() {
            return Err(ApiErr::invalid(
                "* GenerateContentRequest.contents.parts: contents.parts must not be empty.\n",
            ));
        }
    }
    let empty = json!({});
    let gc = get(body, "generationConfig", "generation_config").unwrap_or(&empty);

    let mut prompt = Prompt::default();
    let mut tools = Vec::new();
    if let Some(ts) = body
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        for t in ts {
            let decls = get(t, "functionDeclarations", "function_declarations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for d in decls {
                let Some(name) = d.get("name").and_then(Value::as_str) else {
                    return Err(ApiErr::invalid(
                        "* GenerateContentRequest.tools[0].function_declarations[0].name: Name cannot be empty.\n",
                    ));
                };
                let schema = get(&d, "parameters", "parameters")
                    .or_else(|| get(&d, "parametersJsonSchema", "parameters_json_schema"))
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"}));
                tools.push(ToolDef {
                    name: name.to_string(),
                    schema,
                });
            }
        }
        let js = Value::Array(ts.clone()).to_string();
        prompt.push(format!("tools\u{1}{js}"), tok(&js));
    }
    if let Some(si) = get(body, "systemInstruction", "system_instruction") {
        let mut n = common::MESSAGE_OVERHEAD;
        let mut key = String::from("system\u{1}");
        for p in parts(si) {
            let (t, k) = part_text_tokens(&p);
            n += k;
            key.push_str(&t);
        }
        prompt.push(key, n);
    }
    for c in contents {
        let mut n = common::MESSAGE_OVERHEAD;
        let mut key = format!("{}\u{1}", role_of(c));
        for p in parts(c) {
            let (t, k) = part_text_tokens(&p);
            n += k;
            key.push_str(&t);
            key.push('\u{2}');
        }
        prompt.push(key, n);
    }

    let mime = get(gc, "responseMimeType", "response_mime_type").and_then(Value::as_str);
    let json = if mime == Some("application/json") {
        match get(gc, "responseJsonSchema", "response_json_schema")
            .or_else(|| get(gc, "responseSchema", "response_schema"))
        {
            Some(s) => {
                let st = s.to_string();
                prompt.push(format!("schema\u{1}{st}"), tok(&st));
                Some(JsonMode::Schema(s.clone()))
            }
            None => Some(JsonMode::Object),
        }
    } else {
        None
    };

    let fcc = get(body, "toolConfig", "tool_config")
        .and_then(|t| get(t, "functionCallingConfig", "function_calling_config"));
    let mode = fcc
        .and_then(|f| f.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    let allowed = fcc
        .and_then(|f| get(f, "allowedFunctionNames", "allowed_function_names"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    let choice = match (mode, allowed) {
        ("NONE", _) => ToolChoice::None,
        (_, Some(n)) => ToolChoice::Named(n.to_string()),
        ("ANY", None) => ToolChoice::Required,
        _ => ToolChoice::Auto,
    };

    let max_tokens = get(gc, "maxOutputTokens", "max_output_tokens").and_then(Value::as_u64);
    let stops = get(gc, "stopSequences", "stop_sequences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let tc = get(gc, "thinkingConfig", "thinking_config");
    let budget = tc
        .and_then(|t| get(t, "thinkingBudget", "thinking_budget"))
        .and_then(Value::as_i64);
    let reasoning = if thinks(model) {
        match budget {
            Some(0) => None,
            Some(b) if b > 0 => Some(Some(b as u64)),
            _ => Some(None),
        }
    } else {
        None
    };

    let last = contents.last();
    let last_role = last.map(role_of).unwrap_or("user");
    let responses: Vec<String> = last
        .map(parts)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| get(p, "functionResponse", "function_response"))
        .map(|fr| fr.get("response").map(Value::to_string).unwrap_or_default())
        .collect();
    let tool_result = (last_role == "user" && !responses.is_empty()).then(|| responses.join("\n"));
    if last_role != "user" {
        tools.clear();
    }
    Ok(Norm {
        model: model.to_string(),
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

/// `usageMetadata` with `cand` candidate tokens so far (streams repeat it, cumulatively).
fn usage(out: &Out<'_>, cand: u64) -> Value {
    let prompt = out.norm.prompt.total();
    let thoughts = out.reply.reasoning_tokens;
    let mut u = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": cand,
        "totalTokenCount": prompt + cand + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    });
    if thoughts > 0 {
        u["thoughtsTokenCount"] = json!(thoughts);
    }
    if out.cache.read > 0 {
        u["cachedContentTokenCount"] = json!(out.cache.read);
        u["cacheTokensDetails"] = json!([{"modality": "TEXT", "tokenCount": out.cache.read}]);
    }
    u
}

fn finish_reason(kind: &ReplyKind) -> &'static str {
    match kind {
        ReplyKind::Text {
            finish: Finish::Length,
            ..
        } => "MAX_TOKENS",
        _ => "STOP",
    }
}

pub(crate) fn render(out: &Out<'_>) -> Response {
    let response_id = format!("resp-emu{:06}", out.seq);
    let model = &out.norm.model;
    let include_thoughts = get(out.body, "generationConfig", "generation_config")
        .and_then(|g| get(g, "thinkingConfig", "thinking_config"))
        .and_then(|t| get(t, "includeThoughts", "include_thoughts"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let thought = out.reply.reasoning.as_ref().filter(|_| include_thoughts);
    let response = |parts: Vec<Value>, last: bool, cand_so_far: u64| {
        let mut cand = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        let mut v = json!({"candidates": [], "modelVersion": model, "responseId": response_id});
        if last {
            cand["finishReason"] = json!(finish_reason(&out.reply.kind));
        }
        v["usageMetadata"] = usage(
            out,
            if last {
                out.reply.output_tokens
            } else {
                cand_so_far
            },
        );
        v["candidates"] = json!([cand]);
        v
    };
    let call_part = |name: &String, args: &Value| {
        let args = if out.applied.bad_tool_args {
            json!({})
        } else {
            args.clone()
        };
        json!({"functionCall": {"name": name, "args": args}})
    };

    if matches!(
        out.reply.kind,
        ReplyKind::Text {
            finish: Finish::ContentFilter,
            ..
        }
    ) {
        // A blocked prompt: 200 with promptFeedback and no candidates.
        let prompt = out.norm.prompt.total();
        let v = json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
            "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]},
            "modelVersion": model,
            "responseId": response_id,
        });
        if out.stream && !out.json_array_stream {
            return common::sse_response(vec![sse_data(&v)], out.applied, "text/event-stream", &[]);
        }
        let body = if out.json_array_stream { json!([v]) } else { v };
        return common::json_response(&body, out.applied, &[]);
    }
    if !out.stream {
        let mut ps = Vec::new();
        if let Some(t) = thought {
            ps.push(json!({"text": t, "thought": true}));
        }
        match &out.reply.kind {
            ReplyKind::Text { text, .. } => ps.push(json!({"text": text})),
            ReplyKind::Tool { name, args } => ps.push(call_part(name, args)),
        }
        return common::json_response(&response(ps, true, 0), out.applied, &[]);
    }

    let mut chunks: Vec<Value> = Vec::new();
    if let Some(t) = thought {
        for piece in common::split_deltas(t) {
            chunks.push(response(
                vec![json!({"text": piece, "thought": true})],
                false,
                0,
            ));
        }
    }
    match &out.reply.kind {
        ReplyKind::Text { text, .. } => {
            let pieces = common::split_deltas(text);
            if pieces.is_empty() {
                chunks.push(response(vec![json!({"text": ""})], true, 0));
            }
            let n = pieces.len();
            let mut so_far = String::new();
            for (i, piece) in pieces.into_iter().enumerate() {
                so_far.push_str(piece);
                chunks.push(response(
                    vec![json!({"text": piece})],
                    i + 1 == n,
                    tok(&so_far),
                ));
            }
        }
        ReplyKind::Tool { name, args } => {
            chunks.push(response(vec![call_part(name, args)], true, 0))
        }
    }
    if out.json_array_stream {
        return common::json_response(&Value::Array(chunks), out.applied, &[]);
    }
    let events: Vec<Bytes> = chunks.iter().map(sse_data).collect();
    common::sse_response(events, out.applied, "text/event-stream", &[])
}

/// Renders an error; a non-200 `status_override` replaces the status (with `NOT_FOUND`).
pub(crate) fn render_error(err: &ApiErr, status_override: StatusCode) -> Response {
    common::json_error(
        error_parts(err, status_override),
        "application/json; charset=UTF-8",
    )
}

/// Status, JSON body and extra headers of an error (also used for mid-stream error events).
pub(crate) fn error_parts(
    err: &ApiErr,
    status_override: StatusCode,
) -> (StatusCode, Value, Vec<(&'static str, String)>) {
    let mut extra: Vec<(&str, String)> = vec![];
    let mut details: Option<Value> = None;
    let (status, st, message): (StatusCode, &str, String) = match err {
        ApiErr::MissingKey => (
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. Use x-goog-api-key or ?key=.".into(),
        ),
        ApiErr::InvalidKey(_) => {
            details = Some(json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}}]));
            (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "API key not valid. Please pass a valid API key.".into())
        }
        ApiErr::InvalidJson(e) => (
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. {e}"),
        ),
        ApiErr::Invalid { msg, .. } => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", msg.clone()),
        ApiErr::ContextLength { tokens, limit } => (
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("The input token count ({tokens}) exceeds the maximum number of tokens allowed ({limit})."),
        ),
        ApiErr::RateLimit { retry_after } => {
            extra = retry_headers(*retry_after);
            details = Some(json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format!("{retry_after}s")}]));
            (
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.".into(),
            )
        }
        ApiErr::Server => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting".into(),
        ),
        ApiErr::Overloaded => (
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.".into(),
        ),
    };
    let (status, st) = if status_override != StatusCode::OK {
        (status_override, "NOT_FOUND")
    } else {
        (status, st)
    };
    let mut e = json!({"code": status.as_u16(), "message": message, "status": st});
    if let Some(d) = details {
        e["details"] = d;
    }
    let body = json!({"error": e});
    (status, body, extra)
}
