//! Anthropic Messages API adapter (`POST {base}/v1/messages`).
//!
//! Translation rules, in short:
//! - system messages are lifted to the top-level `system` string;
//! - `messages` hold only `user` / `assistant` turns and must alternate, so consecutive
//!   same-role messages are merged into one turn with several content blocks, and `tool`
//!   messages become `tool_result` blocks inside a user turn;
//! - assistant `tool_calls` become `tool_use` blocks whose `input` is the parsed arguments;
//! - `max_tokens` is required by Anthropic, so [`DEFAULT_MAX_TOKENS`] fills it in;
//! - usage is normalized to the OpenAI convention: Anthropic's `input_tokens` excludes
//!   cache reads and writes, so `prompt_tokens = input + cache_creation + cache_read`.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::adapter::{Adapter, HttpCall, StreamDecoder, Target};
use gaterouter_types::error::{Error, Result};
use gaterouter_types::sse::SseEvent;
use gaterouter_types::types::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Content,
    ContentPart, Delta, FinishReason, FunctionCall, FunctionCallDelta, ImageRef, Message,
    NotBase64DataUrl, ResponseFormat, Role, ToolCall, ToolCallDelta, ToolChoice, Usage,
};

/// `max_tokens` sent when the request leaves it unset: Anthropic requires the field, and
/// 4096 is an output size every current Claude model accepts.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Anthropic accepts `temperature` in 0.0..=1.0 (OpenAI allows up to 2.0); a larger value
/// is refused locally with a clear message instead of a provider 400.
pub const MAX_TEMPERATURE: f64 = 1.0;

/// The Anthropic wire format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

impl Adapter for Anthropic {
    fn build_request(&self, req: &ChatRequest, target: &Target, stream: bool) -> Result<HttpCall> {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(key) = &target.api_key {
            headers.push(("x-api-key".to_owned(), key.expose().to_owned()));
        }
        headers.push((
            "anthropic-version".to_owned(),
            target.provider.api_version.clone(),
        ));
        // Configured headers win over ours (e.g. a pinned `anthropic-version`), without duplicates.
        for (name, value) in &target.provider.headers {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value.clone()));
        }
        Ok(HttpCall {
            url: format!(
                "{}/v1/messages",
                target.provider.base_url.trim_end_matches('/')
            ),
            headers,
            body: build_body(req, &target.model, stream)?,
        })
    }

    fn parse_response(&self, body: &[u8], target: &Target) -> Result<ChatResponse> {
        parse_message(body, target)
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8], target: &Target) -> Error {
        let provider = target.provider_name();
        let request_id = headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(|id| format!(" [request-id: {id}]"))
            .unwrap_or_default();
        let (kind, message) = match serde_json::from_slice::<Value>(body) {
            Ok(v) => {
                let err = v.get("error");
                let kind = err
                    .and_then(|e| e.get("type"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let message = err
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| gaterouter_types::http_reply::body_excerpt(body));
                (kind, message)
            }
            Err(_) => (None, gaterouter_types::http_reply::body_excerpt(body)),
        };
        let message = match &kind {
            Some(k) => format!("{message} ({k}){request_id}"),
            None => format!("{message}{request_id}"),
        };
        if kind.as_deref() == Some("overloaded_error") {
            return Error::ProviderUnavailable {
                provider: provider.to_owned(),
                status: Some(status),
                message,
            };
        }
        crate::adapter::map_status(provider, status, headers, kind.as_deref(), message)
    }

    fn stream_decoder(&self, target: &Target) -> Box<dyn StreamDecoder> {
        Box::new(AnthropicStreamDecoder::new(target))
    }
}

// ---------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::InvalidRequest {
        field: Some(field.into()),
        message: message.into(),
    }
}

/// Build the `/v1/messages` JSON body for `model` (the provider-side model name).
///
/// Fields without an Anthropic equivalent are dropped: `seed`, message `name`, the
/// caller-side `metadata` map and `reasoning_content` on earlier assistant messages.
///
/// `response_format`: the stable Messages API has no JSON mode. Forcing a tool call would
/// change the answer's shape (a `tool_use` block instead of text), so instead an explicit
/// instruction is appended to the system prompt: "answer with one JSON object only", plus
/// the schema for `json_schema`. The answer is then plain text that should parse as JSON;
/// callers that need a guarantee must still validate it.
pub fn build_body(req: &ChatRequest, model: &str, stream: bool) -> Result<Value> {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );

    if let Some(system) = system_prompt(req)? {
        body.insert("system".into(), json!(system));
    }
    body.insert(
        "messages".into(),
        Value::Array(convert_messages(&req.messages)?),
    );

    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut tool = Map::new();
                tool.insert("name".into(), json!(t.function.name));
                if let Some(d) = &t.function.description {
                    tool.insert("description".into(), json!(d));
                }
                let schema = t
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object"}));
                tool.insert("input_schema".into(), schema);
                Value::Object(tool)
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        if req.tools.is_empty() {
            // Anthropic refuses tool_choice without tools; auto/none mean the same as omitting it.
            if matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) {
                return Err(invalid(
                    "tool_choice",
                    "tool_choice requires a tool call but `tools` is empty: add tools or drop tool_choice",
                ));
            }
        } else {
            let v = match choice {
                ToolChoice::Auto => json!({"type": "auto"}),
                ToolChoice::Required => json!({"type": "any"}),
                ToolChoice::None => json!({"type": "none"}),
                ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
            };
            body.insert("tool_choice".into(), v);
        }
    }
    if let Some(stop) = &req.stop {
        let seqs = stop.to_vec();
        if !seqs.is_empty() {
            body.insert("stop_sequences".into(), json!(seqs));
        }
    }
    if let Some(t) = req.temperature {
        if t > MAX_TEMPERATURE {
            return Err(invalid(
                "temperature",
                format!(
                    "temperature {t} is above Anthropic's maximum of {MAX_TEMPERATURE}: use 0.0 to 1.0"
                ),
            ));
        }
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(body))
}

/// All system messages joined, plus the JSON-output instruction when asked for.
fn system_prompt(req: &ChatRequest) -> Result<Option<String>> {
    for (i, m) in req
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::System)
    {
        if let Some(Content::Parts(parts)) = &m.content {
            if parts
                .iter()
                .any(|p| matches!(p, ContentPart::ImageUrl { .. }))
            {
                return Err(invalid(
                    format!("messages[{i}].content"),
                    format!(
                        "messages[{i}] (system) contains an image: Anthropic's system prompt is text only; move the image to a user message"
                    ),
                ));
            }
        }
    }
    let instruction = json_instruction(req.response_format.as_ref())?;
    Ok(match (req.system_text(), instruction) {
        (Some(s), Some(i)) if !s.is_empty() => Some(format!("{s}\n\n{i}")),
        (_, Some(i)) => Some(i),
        (Some(s), None) if !s.is_empty() => Some(s),
        _ => None,
    })
}

/// The system-prompt instruction standing in for OpenAI's `response_format`.
fn json_instruction(format: Option<&ResponseFormat>) -> Result<Option<String>> {
    const BASE: &str = "Respond with a single valid JSON object and nothing else: no prose, no explanation and no Markdown code fences before or after it.";
    Ok(match format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(BASE.to_owned()),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let schema = serde_json::to_string(&json_schema.schema).map_err(|e| {
                invalid(
                    "response_format.json_schema.schema",
                    format!("the schema cannot be serialized: {e}"),
                )
            })?;
            let about = json_schema
                .description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            Some(format!(
                "{BASE} The object must conform to the JSON Schema named `{}`{about}:\n{schema}",
                json_schema.name
            ))
        }
    })
}

/// One Anthropic turn being assembled; `first` is the index of its first source message.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
    first: usize,
}

/// Convert the non-system messages to alternating user/assistant turns.
fn convert_messages(messages: &[Message]) -> Result<Vec<Value>> {
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => ("user", content_blocks(m.content.as_ref(), i)?),
            Role::Tool => ("user", vec![tool_result_block(m, i)?]),
            Role::Assistant => ("assistant", assistant_blocks(m, i)?),
        };
        match turns.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn {
                role,
                blocks,
                first: i,
            }),
        }
    }
    match turns.first() {
        None => {
            return Err(invalid(
                "messages",
                "messages holds only system messages: Anthropic needs at least one user message",
            ));
        }
        Some(t) if t.role == "assistant" => {
            return Err(invalid(
                format!("messages[{}]", t.first),
                format!(
                    "messages[{}] is the first non-system message and has role `assistant`: Anthropic conversations must start with a user message; insert one before it",
                    t.first
                ),
            ));
        }
        Some(_) => {}
    }
    turns
        .into_iter()
        .map(|t| {
            if t.blocks.is_empty() {
                return Err(invalid(
                    format!("messages[{}].content", t.first),
                    format!("messages[{}] ({}) has empty content: Anthropic refuses empty messages; add text or drop the message", t.first, t.role),
                ));
            }
            // One text block is sent as a plain string, the form Anthropic documents first.
            let content = match t.blocks.as_slice() {
                [b] if b.get("type").and_then(Value::as_str) == Some("text") => b.get("text").cloned().unwrap_or_default(),
                _ => Value::Array(t.blocks),
            };
            Ok(json!({"role": t.role, "content": content}))
        })
        .collect()
}

/// Text and image blocks of a message's content; empty text is dropped (Anthropic refuses it).
fn content_blocks(content: Option<&Content>, i: usize) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    match content {
        None => {}
        Some(Content::Text(t)) if t.is_empty() => {}
        Some(Content::Text(t)) => out.push(json!({"type": "text", "text": t})),
        Some(Content::Parts(parts)) => {
            for (k, p) in parts.iter().enumerate() {
                match p {
                    ContentPart::Text { text } if text.is_empty() => {}
                    ContentPart::Text { text } => out.push(json!({"type": "text", "text": text})),
                    ContentPart::ImageUrl { image_url } => out.push(image_block(
                        &image_url.url,
                        &format!("messages[{i}].content[{k}].image_url.url"),
                    )?),
                }
            }
        }
    }
    Ok(out)
}

/// `data:<mime>;base64,<data>` becomes a base64 source, `http(s)://` a url source.
fn image_block(url: &str, field: &str) -> Result<Value> {
    match ImageRef::parse(url) {
        Ok(ImageRef::Base64 { media_type, data }) => Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        ),
        Err(NotBase64DataUrl) => Err(invalid(
            field,
            format!(
                "{field} is a data URL but not `data:<media type>;base64,<data>`: Anthropic takes base64 images only"
            ),
        )),
        Ok(ImageRef::Url(url)) => {
            let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
            }
            let shown: String = url.chars().take(40).collect();
            Err(invalid(
                field,
                format!("{field} `{shown}` is neither an http(s) URL nor a base64 data URL"),
            ))
        }
    }
}

fn tool_result_block(m: &Message, i: usize) -> Result<Value> {
    let id = m.tool_call_id.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        invalid(
            format!("messages[{i}].tool_call_id"),
            format!("messages[{i}] has role `tool` but no tool_call_id: set it to the id of the tool call it answers"),
        )
    })?;
    let content = match &m.content {
        None => json!(""),
        Some(Content::Text(t)) => json!(t),
        Some(c @ Content::Parts(_)) => Value::Array(content_blocks(Some(c), i)?),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

fn assistant_blocks(m: &Message, i: usize) -> Result<Vec<Value>> {
    let mut out = content_blocks(m.content.as_ref(), i)?;
    for (j, tc) in m.tool_calls.iter().enumerate() {
        let field = format!("messages[{i}].tool_calls[{j}].function.arguments");
        let args = tc.function.arguments.trim();
        // An empty string is how some clients write "no arguments".
        let input: Value = if args.is_empty() {
            json!({})
        } else {
            serde_json::from_str(args).map_err(|e| {
                invalid(
                    &field,
                    format!("{field} (tool `{}`) is not valid JSON ({e}): send the arguments as a JSON-encoded object string", tc.function.name),
                )
            })?
        };
        if !input.is_object() {
            return Err(invalid(
                &field,
                format!(
                    "{field} (tool `{}`) must encode a JSON object: Anthropic's tool_use input is an object",
                    tc.function.name
                ),
            ));
        }
        out.push(
            json!({"type": "tool_use", "id": tc.id, "name": tc.function.name, "input": input}),
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct WireMessage {
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        thinking: String,
    },
    /// Encrypted reasoning: nothing readable to report.
    RedactedThinking,
    /// Block types added later (server tools, citations...) are skipped.
    #[serde(other)]
    Other,
}

/// Anthropic usage. In responses `input_tokens`/`output_tokens` are always present; in
/// stream events any field may be absent or null, hence all optional.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// Normalize to the OpenAI convention (see [`Usage`]): `input_tokens` excludes cache
/// reads and writes, so all three are added into `prompt_tokens`. Anthropic does not
/// report thinking tokens separately (they are inside `output_tokens`), so reasoning is 0.
fn normalize_usage(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Usage {
    Usage::new(
        input + cache_write + cache_read,
        output,
        cache_read,
        cache_write,
        0,
    )
}

/// Map Anthropic's `stop_reason`. Unknown or missing values (a newer API version) count
/// as a normal stop rather than failing an otherwise good answer.
pub fn map_stop_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn and anything new.
        _ => FinishReason::Stop,
    }
}

fn parse_message(body: &[u8], target: &Target) -> Result<ChatResponse> {
    let provider = target.provider_name();
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::invalid_response(
            provider,
            None,
            format!(
                "the body is not JSON ({e}); it starts with {}",
                gaterouter_types::http_reply::body_excerpt(body)
            ),
        )
    })?;
    if value.get("type").and_then(Value::as_str) == Some("error") {
        let msg = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        let kind = value
            .pointer("/error/type")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        return Err(Error::invalid_response(
            provider,
            None,
            format!("a success status carried an error body: {msg} ({kind})"),
        ));
    }
    let msg: WireMessage = serde_path_to_error::deserialize(&value).map_err(|e| {
        Error::invalid_response(
            provider,
            None,
            format!(
                "not an Anthropic message: field `{}`: {}",
                e.path(),
                e.inner()
            ),
        )
    })?;
    if let Some(kind) = msg.kind.as_deref().filter(|k| *k != "message") {
        return Err(Error::invalid_response(
            provider,
            None,
            format!("expected `type: \"message\"`, got `{kind}`"),
        ));
    }
    let (Some(input), Some(output)) = (msg.usage.input_tokens, msg.usage.output_tokens) else {
        return Err(Error::invalid_response(
            provider,
            None,
            "usage.input_tokens or usage.output_tokens is missing",
        ));
    };

    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in msg.content {
        match block {
            WireBlock::Text { text: t } => text.get_or_insert_with(String::new).push_str(&t),
            WireBlock::Thinking { thinking } => reasoning
                .get_or_insert_with(String::new)
                .push_str(&thinking),
            WireBlock::ToolUse { id, name, input } => {
                let input = if input.is_null() { json!({}) } else { input };
                tool_calls.push(ToolCall {
                    id,
                    kind: "function".into(),
                    function: FunctionCall {
                        name,
                        arguments: input.to_string(),
                    },
                });
            }
            WireBlock::RedactedThinking | WireBlock::Other => {}
        }
    }
    let usage = normalize_usage(
        input,
        output,
        msg.usage.cache_creation_input_tokens.unwrap_or(0),
        msg.usage.cache_read_input_tokens.unwrap_or(0),
    );
    Ok(ChatResponse {
        id: msg.id,
        object: "chat.completion".into(),
        created: crate::adapter::now_unix(),
        model: target.model_id.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: Role::Assistant,
                content: text,
                tool_calls,
                reasoning_content: reasoning.filter(|r| !r.is_empty()),
                refusal: None,
            },
            finish_reason: map_stop_reason(msg.stop_reason.as_deref()),
        }],
        usage,
        cost: None,
        route: None,
        usage_record_id: None,
        shadow: None,
        shadow_error: None,
    })
}

/// The canonical HTTP status of an Anthropic error type (used for in-stream `error`
/// events, which arrive on a 200 response).
fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        // api_error and anything unknown: a server-side failure.
        _ => 500,
    }
}

// ---------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------

/// What a content block (by its Anthropic `index`) turned out to be.
#[derive(Debug)]
enum Block {
    Text,
    Thinking,
    Tool {
        /// OpenAI-style tool-call index: the ordinal among tool_use blocks.
        ordinal: u32,
        /// Non-empty `partial_json` bytes seen so far.
        args_len: usize,
        /// The `input` of `content_block_start` (normally `{}`).
        start_input: Value,
    },
    Other,
}

/// Decodes Anthropic's named SSE events into normalized [`ChatChunk`]s.
#[derive(Debug)]
pub struct AnthropicStreamDecoder {
    provider: String,
    model: String,
    id: String,
    created: u64,
    role_sent: bool,
    saw_start: bool,
    blocks: BTreeMap<u64, Block>,
    tool_count: u32,
    usage: WireUsage,
    finish_sent: bool,
    saw_stop: bool,
    done: bool,
}

impl AnthropicStreamDecoder {
    /// A decoder for one response to `target`.
    pub fn new(target: &Target) -> Self {
        AnthropicStreamDecoder {
            provider: target.provider_name().to_owned(),
            model: target.model_id.clone(),
            id: String::new(),
            created: crate::adapter::now_unix(),
            role_sent: false,
            saw_start: false,
            blocks: BTreeMap::new(),
            tool_count: 0,
            usage: WireUsage::default(),
            finish_sent: false,
            saw_stop: false,
            done: false,
        }
    }

    fn bad(&self, message: impl Into<String>) -> Error {
        Error::invalid_response(&self.provider, None, message)
    }

    fn chunk(&mut self, mut delta: Delta, finish_reason: Option<FinishReason>) -> ChatChunk {
        if !self.role_sent {
            delta.role = Some(Role::Assistant);
            self.role_sent = true;
        }
        let mut c = ChatChunk::empty(&self.id, &self.model, self.created);
        c.choices.push(ChunkChoice {
            index: 0,
            delta,
            finish_reason,
        });
        c
    }

    fn text(&mut self, text: &str) -> ChatChunk {
        self.chunk(
            Delta {
                content: Some(text.to_owned()),
                ..Delta::default()
            },
            None,
        )
    }

    fn tool_delta(&mut self, d: ToolCallDelta) -> ChatChunk {
        self.chunk(
            Delta {
                tool_calls: vec![d],
                ..Delta::default()
            },
            None,
        )
    }

    /// Take the usage fields an event carries; absent or null ones keep their value.
    fn merge_usage(&mut self, u: Option<&Value>) -> Result<()> {
        let Some(u) = u.filter(|u| !u.is_null()) else {
            return Ok(());
        };
        let w: WireUsage = serde_json::from_value(u.clone())
            .map_err(|e| self.bad(format!("bad `usage` object: {e}")))?;
        let cur = &mut self.usage;
        cur.input_tokens = w.input_tokens.or(cur.input_tokens);
        cur.output_tokens = w.output_tokens.or(cur.output_tokens);
        cur.cache_creation_input_tokens = w
            .cache_creation_input_tokens
            .or(cur.cache_creation_input_tokens);
        cur.cache_read_input_tokens = w.cache_read_input_tokens.or(cur.cache_read_input_tokens);
        Ok(())
    }

    fn block_index(&self, v: &Value, event: &str) -> Result<u64> {
        v.get("index")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.bad(format!("`{event}` event without a numeric `index`")))
    }

    fn on_block_start(&mut self, v: &Value) -> Result<Vec<ChatChunk>> {
        let index = self.block_index(v, "content_block_start")?;
        let block = v
            .get("content_block")
            .ok_or_else(|| self.bad("`content_block_start` without `content_block`"))?;
        let mut out = Vec::new();
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                self.blocks.insert(index, Block::Text);
                // Emitted even when empty so a text-only answer always has content (OpenAI does the same).
                let t = block.get("text").and_then(Value::as_str).unwrap_or("");
                out.push(self.text(t));
            }
            Some("thinking") => {
                self.blocks.insert(index, Block::Thinking);
                if let Some(t) = block
                    .get("thinking")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    out.push(self.chunk(
                        Delta {
                            reasoning_content: Some(t.to_owned()),
                            ..Delta::default()
                        },
                        None,
                    ));
                }
            }
            Some("tool_use") => {
                let id = block.get("id").and_then(Value::as_str);
                let name = block.get("name").and_then(Value::as_str);
                let (Some(id), Some(name)) = (id, name) else {
                    return Err(self.bad(format!(
                        "tool_use content block {index} lacks `id` or `name`"
                    )));
                };
                let ordinal = self.tool_count;
                self.tool_count += 1;
                let start_input = block.get("input").cloned().unwrap_or(Value::Null);
                self.blocks.insert(
                    index,
                    Block::Tool {
                        ordinal,
                        args_len: 0,
                        start_input,
                    },
                );
                out.push(self.tool_delta(ToolCallDelta {
                    index: ordinal,
                    id: Some(id.to_owned()),
                    kind: Some("function".to_owned()),
                    function: FunctionCallDelta {
                        name: Some(name.to_owned()),
                        arguments: None,
                    },
                }));
            }
            _ => {
                self.blocks.insert(index, Block::Other);
            }
        }
        Ok(out)
    }

    fn on_block_delta(&mut self, v: &Value) -> Result<Vec<ChatChunk>> {
        let index = self.block_index(v, "content_block_delta")?;
        let delta = v
            .get("delta")
            .ok_or_else(|| self.bad("`content_block_delta` without `delta`"))?;
        let field = |name: &str| delta.get(name).and_then(Value::as_str);
        let mut out = Vec::new();
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => {
                let t = field("text").ok_or_else(|| self.bad("`text_delta` without `text`"))?;
                out.push(self.text(t));
            }
            Some("thinking_delta") => {
                let t = field("thinking")
                    .ok_or_else(|| self.bad("`thinking_delta` without `thinking`"))?;
                out.push(self.chunk(
                    Delta {
                        reasoning_content: Some(t.to_owned()),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            Some("input_json_delta") => {
                let part = field("partial_json")
                    .ok_or_else(|| self.bad("`input_json_delta` without `partial_json`"))?;
                let ordinal =
                    match self.blocks.get_mut(&index) {
                        Some(Block::Tool { ordinal, args_len, .. }) => {
                            *args_len += part.len();
                            *ordinal
                        }
                        _ => return Err(self.bad(format!(
                            "`input_json_delta` for content block {index}, which was not started as a tool_use block"
                        ))),
                    };
                if !part.is_empty() {
                    out.push(self.tool_delta(ToolCallDelta {
                        index: ordinal,
                        function: FunctionCallDelta {
                            name: None,
                            arguments: Some(part.to_owned()),
                        },
                        ..ToolCallDelta::default()
                    }));
                }
            }
            // signature_delta, citations_delta and future delta types carry nothing we report.
            _ => {}
        }
        Ok(out)
    }

    /// A tool_use block that streamed no argument text still needs valid JSON
    /// arguments: send its start `input` (normally `{}`).
    fn on_block_stop(&mut self, v: &Value) -> Result<Vec<ChatChunk>> {
        let index = self.block_index(v, "content_block_stop")?;
        if let Some(Block::Tool {
            ordinal,
            args_len: 0,
            start_input,
        }) = self.blocks.get(&index)
        {
            let args = if start_input.is_object() {
                start_input.to_string()
            } else {
                "{}".to_owned()
            };
            let d = ToolCallDelta {
                index: *ordinal,
                function: FunctionCallDelta {
                    name: None,
                    arguments: Some(args),
                },
                ..ToolCallDelta::default()
            };
            return Ok(vec![self.tool_delta(d)]);
        }
        Ok(Vec::new())
    }

    fn stream_error(&self, v: &Value) -> Error {
        let kind = v
            .pointer("/error/type")
            .and_then(Value::as_str)
            .unwrap_or("api_error");
        let msg = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        let message = format!("error event mid-stream: {msg} ({kind})");
        crate::adapter::map_status(
            &self.provider,
            status_for_error_type(kind),
            &HeaderMap::new(),
            Some(kind),
            message,
        )
    }
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<ChatChunk>> {
        const KNOWN: &[&str] = &[
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "error",
        ];
        if event.event == "ping"
            || (!event.event.is_empty() && !KNOWN.contains(&event.event.as_str()))
        {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_str(&event.data).map_err(|e| {
            let shown: String = event.data.chars().take(120).collect();
            self.bad(format!(
                "`{}` event data is not JSON ({e}): {shown}",
                event.event
            ))
        })?;
        // Without an `event:` line, the JSON's own `type` names the event.
        let name = if event.event.is_empty() {
            v.get("type").and_then(Value::as_str).unwrap_or("")
        } else {
            &event.event
        };
        if self.saw_stop && name != "error" {
            return Ok(Vec::new());
        }
        match name {
            "message_start" => {
                let m = v
                    .get("message")
                    .ok_or_else(|| self.bad("`message_start` without `message`"))?;
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                self.saw_start = true;
                self.merge_usage(m.get("usage"))?;
                let c = self.chunk(Delta::default(), None);
                Ok(vec![c])
            }
            "content_block_start" => self.on_block_start(&v),
            "content_block_delta" => self.on_block_delta(&v),
            "content_block_stop" => self.on_block_stop(&v),
            "message_delta" => {
                self.merge_usage(v.get("usage"))?;
                match v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    Some(reason) if !self.finish_sent => {
                        self.finish_sent = true;
                        Ok(vec![self.chunk(
                            Delta::default(),
                            Some(map_stop_reason(Some(reason))),
                        )])
                    }
                    _ => Ok(Vec::new()),
                }
            }
            "message_stop" => {
                self.saw_stop = true;
                // A completed message without a stop_reason still finished normally.
                if !self.finish_sent {
                    self.finish_sent = true;
                    return Ok(vec![self.chunk(Delta::default(), Some(FinishReason::Stop))]);
                }
                Ok(Vec::new())
            }
            "error" => Err(self.stream_error(&v)),
            _ => Ok(Vec::new()),
        }
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>> {
        if self.done {
            return Ok(Vec::new());
        }
        if !self.saw_stop {
            let missing = match (self.saw_start, self.finish_sent) {
                (false, _) => {
                    "no `message_start` event arrived (the body was empty or not an Anthropic stream)".to_owned()
                }
                (true, false) => format!(
                    "the body ended after {} content block(s) without `message_delta` (stop_reason) or `message_stop`",
                    self.blocks.len()
                ),
                (true, true) => "the body ended after `message_delta` but before `message_stop`".to_owned(),
            };
            return Err(Error::StreamInterrupted {
                provider: self.provider.clone(),
                message: missing,
            });
        }
        self.done = true;
        let u = self.usage;
        let mut c = ChatChunk::empty(&self.id, &self.model, self.created);
        c.usage = Some(normalize_usage(
            u.input_tokens.unwrap_or(0),
            u.output_tokens.unwrap_or(0),
            u.cache_creation_input_tokens.unwrap_or(0),
            u.cache_read_input_tokens.unwrap_or(0),
        ));
        Ok(vec![c])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::resolved::{ProviderKind, ResolvedProvider};
    use gaterouter_types::ErrorKind;
    use gaterouter_types::secret::Secret;
    use gaterouter_types::sse::SseParser;
    use gaterouter_types::stream::StreamAccumulator;
    use gaterouter_types::types::Tool;

    const RICH_INPUT: &str = include_str!("../../tests/fixtures/anthropic/rich_request.input.json");
    const RICH_EXPECTED: &str =
        include_str!("../../tests/fixtures/anthropic/rich_request.expected.json");
    const RESP_TEXT: &str = include_str!("../../tests/fixtures/anthropic/response_text.json");
    const RESP_TOOL: &str = include_str!("../../tests/fixtures/anthropic/response_tool_use.json");
    const RESP_THINKING: &str =
        include_str!("../../tests/fixtures/anthropic/response_thinking.json");
    const RESP_CACHE: &str = include_str!("../../tests/fixtures/anthropic/response_cache.json");
    const SSE_TOOL: &str = include_str!("../../tests/fixtures/anthropic/stream_tool_use.sse");
    const SSE_THINKING: &str = include_str!("../../tests/fixtures/anthropic/stream_thinking.sse");

    fn target() -> Target {
        let mut headers = BTreeMap::new();
        headers.insert(
            "anthropic-beta".to_owned(),
            "prompt-caching-2024-07-31".to_owned(),
        );
        Target {
            provider: ResolvedProvider {
                name: "anthropic".into(),
                kind: ProviderKind::Anthropic,
                base_url: "https://api.anthropic.com".into(),
                api_key: None,
                api_key_env: None,
                headers,
                api_version: "2023-06-01".into(),
                request_timeout: Duration::from_secs(60),
            },
            model: "claude-sonnet-4-5".into(),
            model_id: "anthropic/claude-sonnet-4-5".into(),
            api_key: Some(Secret::new("sk-ant-test")),
        }
    }

    fn build(req: &ChatRequest) -> Result<Value> {
        Anthropic
            .build_request(req, &target(), false)
            .map(|c| c.body)
    }

    fn user_req(messages: Vec<Message>) -> ChatRequest {
        ChatRequest::new("anthropic/claude-sonnet-4-5", messages)
    }

    fn field_of(e: &Error) -> Option<&str> {
        match e {
            Error::InvalidRequest { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    // ----- request -------------------------------------------------------------------

    #[test]
    fn rich_request_matches_golden_json() {
        let req = ChatRequest::from_json(RICH_INPUT).expect("fixture parses");
        let call = Anthropic
            .build_request(&req, &target(), false)
            .expect("builds");
        let expected: Value = serde_json::from_str(RICH_EXPECTED).expect("golden parses");
        assert_eq!(
            call.body,
            expected,
            "got:\n{}",
            serde_json::to_string_pretty(&call.body).unwrap_or_default()
        );
        assert_eq!(call.url, "https://api.anthropic.com/v1/messages");
        let h = |n: &str| {
            call.headers
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(h("x-api-key"), ["sk-ant-test"]);
        assert_eq!(h("anthropic-version"), ["2023-06-01"]);
        assert_eq!(h("content-type"), ["application/json"]);
        assert_eq!(h("anthropic-beta"), ["prompt-caching-2024-07-31"]);
    }

    #[test]
    fn stream_flag_default_max_tokens_and_no_key() {
        let mut t = target();
        t.api_key = None;
        t.provider.base_url = "http://localhost:8080/".into();
        t.provider
            .headers
            .insert("Anthropic-Version".into(), "2026-10-21".into());
        let call = Anthropic
            .build_request(&user_req(vec![Message::user("hi")]), &t, true)
            .expect("builds");
        assert_eq!(call.url, "http://localhost:8080/v1/messages");
        assert_eq!(
            call.body,
            json!({"model": "claude-sonnet-4-5", "max_tokens": DEFAULT_MAX_TOKENS, "messages": [{"role": "user", "content": "hi"}], "stream": true})
        );
        assert!(!call.headers.iter().any(|(k, _)| k == "x-api-key"));
        // A configured header replaces ours, never duplicates it.
        let versions: Vec<_> = call
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("anthropic-version"))
            .collect();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].1, "2026-10-21");
    }

    #[test]
    fn tool_choice_mapping() {
        let tool = Tool::function("f", "does f", json!({"type": "object", "properties": {}}));
        for (choice, want) in [
            (ToolChoice::Auto, json!({"type": "auto"})),
            (ToolChoice::Required, json!({"type": "any"})),
            (ToolChoice::None, json!({"type": "none"})),
            (
                ToolChoice::Function("f".into()),
                json!({"type": "tool", "name": "f"}),
            ),
        ] {
            let mut req = user_req(vec![Message::user("hi")]);
            req.tools = vec![tool.clone()];
            req.tool_choice = Some(choice.clone());
            assert_eq!(
                build(&req).expect("builds")["tool_choice"],
                want,
                "{choice:?}"
            );
        }
        let mut req = user_req(vec![Message::user("hi")]);
        req.tool_choice = Some(ToolChoice::Required);
        assert_eq!(
            field_of(&build(&req).expect_err("must fail")),
            Some("tool_choice")
        );
        req.tool_choice = Some(ToolChoice::None);
        assert!(build(&req).expect("builds").get("tool_choice").is_none());
    }

    #[test]
    fn invalid_tool_arguments_name_the_field() {
        let bad = ToolCall {
            id: "toolu_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "f".into(),
                arguments: "{\"a\": 1".into(),
            },
        };
        let good = ToolCall {
            function: FunctionCall {
                name: "g".into(),
                arguments: "{}".into(),
            },
            ..bad.clone()
        };
        let req = user_req(vec![
            Message::user("hi"),
            Message::assistant_tool_calls(vec![good.clone(), bad.clone()]),
            Message::tool("toolu_1", "x"),
        ]);
        let e = build(&req).expect_err("must fail");
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(
            field_of(&e),
            Some("messages[1].tool_calls[1].function.arguments")
        );
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        // A JSON array is valid JSON but not a tool_use input.
        let arr = ToolCall {
            function: FunctionCall {
                name: "f".into(),
                arguments: "[1]".into(),
            },
            ..bad
        };
        let req = user_req(vec![
            Message::user("hi"),
            Message::assistant_tool_calls(vec![arr]),
        ]);
        assert_eq!(
            field_of(&build(&req).expect_err("must fail")),
            Some("messages[1].tool_calls[0].function.arguments")
        );
        // Empty arguments mean "no arguments".
        let empty = ToolCall {
            function: FunctionCall {
                name: "g".into(),
                arguments: String::new(),
            },
            ..good
        };
        let req = user_req(vec![
            Message::user("hi"),
            Message::assistant_tool_calls(vec![empty]),
        ]);
        assert_eq!(
            build(&req).expect("builds")["messages"][1]["content"][0]["input"],
            json!({})
        );
    }

    #[test]
    fn conversation_must_start_with_user() {
        let req = user_req(vec![
            Message::system("s"),
            Message::assistant("hello"),
            Message::user("hi"),
        ]);
        let e = build(&req).expect_err("must fail");
        assert_eq!(field_of(&e), Some("messages[1]"));
        assert!(
            e.to_string().contains("must start with a user message"),
            "{e}"
        );
        let e = build(&user_req(vec![Message::system("only")])).expect_err("must fail");
        assert_eq!(field_of(&e), Some("messages"));
    }

    #[test]
    fn consecutive_assistant_messages_merge_and_empty_is_refused() {
        let req = user_req(vec![
            Message::user("a"),
            Message::assistant("b"),
            Message::assistant("c"),
            Message::user("d"),
        ]);
        let body = build(&req).expect("builds");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "text", "text": "b"}, {"type": "text", "text": "c"}]},
                {"role": "user", "content": "d"}
            ])
        );
        let e = build(&user_req(vec![Message::user("")])).expect_err("must fail");
        assert_eq!(field_of(&e), Some("messages[0].content"));
    }

    #[test]
    fn response_format_becomes_a_system_instruction() {
        let mut req = user_req(vec![Message::user("list three colors")]);
        req.response_format = Some(ResponseFormat::JsonObject);
        let system = build(&req).expect("builds")["system"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(system.contains("single valid JSON object"), "{system}");

        req.messages.insert(0, Message::system("Be terse."));
        req.response_format = Some(ResponseFormat::JsonSchema {
            json_schema: gaterouter_types::types::JsonSchemaFormat {
                name: "colors".into(),
                description: None,
                schema: json!({"type": "object", "properties": {"colors": {"type": "array"}}}),
                strict: Some(true),
            },
        });
        let system = build(&req).expect("builds")["system"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(system.starts_with("Be terse.\n\n"), "{system}");
        assert!(
            system.contains("`colors`")
                && system.contains(r#"{"properties":{"colors":{"type":"array"}},"type":"object"}"#),
            "{system}"
        );
    }

    #[test]
    fn bad_images_and_temperature_are_refused() {
        let part = |url: &str| {
            Message::user(Content::Parts(vec![ContentPart::ImageUrl {
                image_url: gaterouter_types::types::ImageUrl {
                    url: url.into(),
                    detail: Default::default(),
                },
            }]))
        };
        for url in [
            "data:image/png,rawbytes",
            "file:///etc/passwd",
            "data:;base64,AAAA",
        ] {
            let e = build(&user_req(vec![part(url)])).expect_err("must fail");
            assert_eq!(
                field_of(&e),
                Some("messages[0].content[0].image_url.url"),
                "{url}"
            );
        }
        let b = build(&user_req(vec![part("data:image/webp;base64,UklGR")])).expect("builds");
        assert_eq!(
            b["messages"][0]["content"][0]["source"],
            json!({"type": "base64", "media_type": "image/webp", "data": "UklGR"})
        );
        let mut req = user_req(vec![Message::user("hi")]);
        req.temperature = Some(1.5);
        assert_eq!(
            field_of(&build(&req).expect_err("must fail")),
            Some("temperature")
        );
    }

    // ----- response ------------------------------------------------------------------

    fn parse(body: &str) -> Result<ChatResponse> {
        Anthropic.parse_response(body.as_bytes(), &target())
    }

    #[test]
    fn parses_text_response() {
        let r = parse(RESP_TEXT).expect("parses");
        assert_eq!(r.id, "msg_013Zva2CMHLNnXjNJJKqJ2EF");
        assert_eq!(r.model, "anthropic/claude-sonnet-4-5");
        assert_eq!(r.object, "chat.completion");
        assert_eq!(r.text(), "Hi! My name is Claude. How can I help?");
        assert_eq!(r.finish_reason(), Some(FinishReason::Stop));
        assert!(r.tool_calls().is_empty());
        assert_eq!(r.usage, Usage::new(2095, 503, 0, 0, 0));
    }

    #[test]
    fn parses_tool_use_response() {
        let r = parse(RESP_TOOL).expect("parses");
        assert_eq!(r.finish_reason(), Some(FinishReason::ToolCalls));
        assert_eq!(
            r.text(),
            "I'll check the current weather in San Francisco for you."
        );
        let calls = r.tool_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(
            calls[0].function.arguments,
            r#"{"location":"San Francisco, CA","unit":"celsius"}"#
        );
        assert_eq!(calls[1].function.arguments, "{}");
        // null cache fields count as zero.
        assert_eq!(r.usage, Usage::new(384, 96, 0, 0, 0));
    }

    #[test]
    fn parses_thinking_response() {
        let r = parse(RESP_THINKING).expect("parses");
        let m = &r.choices[0].message;
        assert_eq!(
            m.reasoning_content.as_deref(),
            Some("Let me analyze this step by step. 27 * 453 = 12231.")
        );
        assert_eq!(r.text(), "27 * 453 = 12,231");
        assert_eq!(r.finish_reason(), Some(FinishReason::Length));
        assert_eq!(r.usage.reasoning_tokens, 0);
        assert_eq!(r.usage.completion_tokens, 318);
    }

    #[test]
    fn cache_tokens_are_folded_into_prompt_tokens() {
        let r = parse(RESP_CACHE).expect("parses");
        assert_eq!(r.finish_reason(), Some(FinishReason::Stop));
        let u = r.usage;
        assert_eq!(u.prompt_tokens, 21 + 188 + 18350);
        assert_eq!(u.cached_prompt_tokens, 18350);
        assert_eq!(u.cache_write_tokens, 188);
        assert_eq!(u.completion_tokens, 393);
        assert_eq!(u.total_tokens, 21 + 188 + 18350 + 393);
    }

    #[test]
    fn malformed_responses_are_invalid_response() {
        for (body, needle) in [
            ("not json", "not JSON"),
            ("<html><title>Bad Gateway</title></html>", "HTML"),
            (
                r#"{"id":"m","type":"message","content":[{"type":"text"}],"usage":{"input_tokens":1,"output_tokens":1}}"#,
                "content[0]",
            ),
            (r#"{"id":"m","type":"message","content":[]}"#, "usage"),
            (
                r#"{"id":"m","type":"message","content":[],"usage":{"input_tokens":1}}"#,
                "output_tokens",
            ),
            (
                r#"{"id":"m","type":"completion","content":[],"usage":{"input_tokens":1,"output_tokens":1}}"#,
                "completion",
            ),
            (
                r#"{"type":"error","error":{"type":"api_error","message":"boom"}}"#,
                "boom",
            ),
            (r#"[1,2]"#, "not an Anthropic message"),
        ] {
            let e = parse(body).expect_err("must fail");
            assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{body}");
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
        // Unknown block types are skipped, not fatal.
        let ok = r#"{"id":"m","type":"message","content":[{"type":"server_tool_use","id":"s","name":"web_search","input":{}},{"type":"text","text":"x"}],"stop_reason":"pause_turn","usage":{"input_tokens":1,"output_tokens":2}}"#;
        assert_eq!(parse(ok).expect("parses").text(), "x");
    }

    #[test]
    fn finish_reason_table() {
        for (wire, want) in [
            (Some("end_turn"), FinishReason::Stop),
            (Some("stop_sequence"), FinishReason::Stop),
            (Some("pause_turn"), FinishReason::Stop),
            (Some("max_tokens"), FinishReason::Length),
            (Some("tool_use"), FinishReason::ToolCalls),
            (Some("refusal"), FinishReason::ContentFilter),
            (Some("something_new"), FinishReason::Stop),
            (None, FinishReason::Stop),
        ] {
            assert_eq!(map_stop_reason(wire), want, "{wire:?}");
        }
    }

    // ----- errors --------------------------------------------------------------------

    fn err_body(kind: &str, message: &str) -> String {
        json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
    }

    #[test]
    fn error_mapping() {
        let none = HeaderMap::new();
        let cases = [
            (400, err_body("invalid_request_error", "messages: roles must alternate"), ErrorKind::InvalidRequest),
            (
                400,
                err_body("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
                ErrorKind::ContextLengthExceeded,
            ),
            (401, err_body("authentication_error", "invalid x-api-key"), ErrorKind::Auth),
            (
                403,
                err_body("permission_error", "Your API key does not have permission to use the specified resource."),
                ErrorKind::Auth,
            ),
            (404, err_body("not_found_error", "model: claude-nope"), ErrorKind::InvalidRequest),
            (
                413,
                err_body("request_too_large", "Request exceeds the maximum allowed number of bytes."),
                ErrorKind::InvalidRequest,
            ),
            (
                500,
                err_body("api_error", "An unexpected error has occurred internal to Anthropic's systems."),
                ErrorKind::ProviderUnavailable,
            ),
            (529, err_body("overloaded_error", "Overloaded"), ErrorKind::ProviderUnavailable),
            (
                502,
                "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
                    .to_owned(),
                ErrorKind::ProviderUnavailable,
            ),
        ];
        for (status, body, want) in cases {
            let e = Anthropic.parse_error(status, &none, body.as_bytes(), &target());
            assert_eq!(e.kind(), want, "{status} {body}: {e}");
            assert_eq!(e.provider(), Some("anthropic"));
        }
        let e = Anthropic.parse_error(
            401,
            &none,
            err_body("authentication_error", "invalid x-api-key").as_bytes(),
            &target(),
        );
        assert!(
            e.to_string().contains("invalid x-api-key")
                && e.to_string().contains("authentication_error"),
            "{e}"
        );
        let html = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>";
        let e = Anthropic.parse_error(502, &none, html.as_bytes(), &target());
        assert!(
            e.to_string().contains("HTML") && e.to_string().contains("502 Bad Gateway"),
            "{e}"
        );
        assert_eq!(e.status(), Some(502));
        // overloaded_error is "unavailable" even on an unexpected status.
        let e = Anthropic.parse_error(
            400,
            &none,
            err_body("overloaded_error", "Overloaded").as_bytes(),
            &target(),
        );
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
    }

    #[test]
    fn rate_limit_keeps_retry_after_and_request_id() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().expect("header"));
        h.insert(
            "request-id",
            "req_018EeWyXxfu5pfWkrYcMdjWG".parse().expect("header"),
        );
        let body = err_body(
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        );
        let e = Anthropic.parse_error(429, &h, body.as_bytes(), &target());
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(
            e.to_string().contains("req_018EeWyXxfu5pfWkrYcMdjWG"),
            "{e}"
        );
    }

    // ----- streaming -----------------------------------------------------------------

    /// Feed `input` cut at `cuts` through the SSE parser and the decoder; return the
    /// chunks or the first error.
    fn run_stream(input: &[u8], cuts: &[usize]) -> Result<Vec<ChatChunk>> {
        let mut parser = SseParser::new();
        let mut dec = Anthropic.stream_decoder(&target());
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|c| *c <= input.len()).collect();
        bounds.sort_unstable();
        bounds.push(input.len());
        for end in bounds {
            let events = parser
                .feed(&input[start..end])
                .map_err(|e| Error::invalid_response("anthropic", None, e.to_string()))?;
            start = end;
            for ev in events {
                chunks.extend(dec.on_event(&ev)?);
            }
        }
        if let Some(ev) = parser
            .finish()
            .map_err(|e| Error::invalid_response("anthropic", None, e.to_string()))?
        {
            chunks.extend(dec.on_event(&ev)?);
        }
        chunks.extend(dec.finish()?);
        Ok(chunks)
    }

    fn fold(chunks: &[ChatChunk]) -> Result<ChatResponse> {
        let mut acc = StreamAccumulator::default();
        for c in chunks {
            acc.push(c);
        }
        acc.finish()
    }

    /// Compare chunks ignoring `created` (the clock may tick between runs).
    fn strip_created(mut v: Vec<ChatChunk>) -> Vec<ChatChunk> {
        v.iter_mut().for_each(|c| c.created = 0);
        v
    }

    #[test]
    fn full_tool_use_stream_in_any_split() {
        let input = SSE_TOOL.as_bytes();
        let whole = strip_created(run_stream(input, &[]).expect("decodes"));

        let r = fold(&whole).expect("folds");
        assert_eq!(r.id, "msg_014p7gG3wDgGV9EUtLvnow3U");
        assert_eq!(r.model, "anthropic/claude-sonnet-4-5");
        assert_eq!(
            r.text(),
            "Okay, let's check the weather for San Francisco, CA — ☀️?"
        );
        assert_eq!(r.finish_reason(), Some(FinishReason::ToolCalls));
        let calls = r.tool_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
        assert_eq!(calls[0].function.name, "get_weather");
        let args: Value =
            serde_json::from_str(&calls[0].function.arguments).expect("arguments are JSON");
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
        );
        assert_eq!(calls[1].id, "toolu_01Kq2N8Jm4Xb5Vr7Wc9Yd3Ze");
        assert_eq!(calls[1].function.name, "get_time");
        assert_eq!(calls[1].function.arguments, "{}");
        assert_eq!(r.usage, Usage::new(472 + 1024, 89, 1024, 0, 0));

        // Shape of the chunks: role first, OpenAI-style tool indices, usage-only last chunk.
        assert_eq!(whole[0].choices[0].delta.role, Some(Role::Assistant));
        assert!(
            whole[1..]
                .iter()
                .all(|c| c.choices.iter().all(|ch| ch.delta.role.is_none()))
        );
        let first_tool_deltas: Vec<&ToolCallDelta> = whole
            .iter()
            .flat_map(|c| c.choices.iter().flat_map(|ch| ch.delta.tool_calls.iter()))
            .filter(|d| d.id.is_some())
            .collect();
        assert_eq!(
            first_tool_deltas
                .iter()
                .map(|d| d.index)
                .collect::<Vec<_>>(),
            [0, 1]
        );
        assert!(
            first_tool_deltas
                .iter()
                .all(|d| d.kind.as_deref() == Some("function") && d.function.name.is_some())
        );
        let last = whole.last().expect("chunks");
        assert!(last.choices.is_empty());
        assert!(last.usage.is_some());
        assert_eq!(whole.iter().filter(|c| c.usage.is_some()).count(), 1);
        assert_eq!(
            whole
                .iter()
                .filter(|c| c.choices.iter().any(|ch| ch.finish_reason.is_some()))
                .count(),
            1
        );

        // Every single cut point, and pseudo-random multi-cuts, give identical chunks.
        for cut in 0..=input.len() {
            assert_eq!(
                strip_created(run_stream(input, &[cut]).expect("decodes")),
                whole,
                "cut at {cut}"
            );
        }
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200 {
            let cuts: Vec<usize> = (0..8)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    (seed >> 33) as usize % (input.len() + 1)
                })
                .collect();
            assert_eq!(
                strip_created(run_stream(input, &cuts).expect("decodes")),
                whole,
                "cuts {cuts:?}"
            );
        }
        // CRLF line endings too.
        let crlf = SSE_TOOL.replace('\n', "\r\n");
        assert_eq!(
            strip_created(run_stream(crlf.as_bytes(), &[17, 400]).expect("decodes")),
            whole
        );
    }

    #[test]
    fn thinking_stream_and_late_usage() {
        let chunks = run_stream(SSE_THINKING.as_bytes(), &[]).expect("decodes");
        let r = fold(&chunks).expect("folds");
        assert_eq!(
            r.choices[0].message.reasoning_content.as_deref(),
            Some("I need to find the GCD of 1071 and 462 using the Euclidean algorithm.")
        );
        assert_eq!(r.text(), "The GCD is 21.");
        assert_eq!(r.finish_reason(), Some(FinishReason::Stop));
        // message_delta repeated input counts with a cache write: taken over message_start's.
        assert_eq!(r.usage, Usage::new(85 + 2048, 210, 0, 2048, 0));
    }

    #[test]
    fn cut_stream_is_interrupted() {
        let input = SSE_TOOL.as_bytes();
        let stop = SSE_TOOL
            .find("event: message_stop")
            .expect("fixture has message_stop");
        let delta = SSE_TOOL
            .find("event: message_delta")
            .expect("fixture has message_delta");
        for (end, needle) in [
            (stop, "before `message_stop`"),
            (delta, "without `message_delta`"),
            (0, "no `message_start`"),
        ] {
            let e = run_stream(&input[..end], &[]).expect_err("must fail");
            assert_eq!(e.kind(), ErrorKind::StreamInterrupted, "end {end}");
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn mid_stream_overloaded_error() {
        let cut = SSE_TOOL.find("event: content_block_stop").expect("fixture");
        let input = format!(
            "{}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}}}\n\n",
            &SSE_TOOL[..cut]
        );
        let e = run_stream(input.as_bytes(), &[]).expect_err("must fail");
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        assert!(
            e.to_string().contains("Overloaded") && e.to_string().contains("mid-stream"),
            "{e}"
        );
        let rl = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n";
        assert_eq!(
            run_stream(rl.as_bytes(), &[])
                .expect_err("must fail")
                .kind(),
            ErrorKind::RateLimited
        );
    }

    #[test]
    fn unknown_events_ignored_bad_json_refused() {
        let start = SSE_TOOL
            .find("event: content_block_start")
            .expect("fixture");
        let input = format!(
            "{}event: brand_new_event\ndata: not json at all\n\n{}",
            &SSE_TOOL[..start],
            &SSE_TOOL[start..]
        );
        assert!(fold(&run_stream(input.as_bytes(), &[]).expect("decodes")).is_ok());

        let bad =
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\n\n";
        let e = run_stream(bad.as_bytes(), &[]).expect_err("must fail");
        assert_eq!(e.kind(), ErrorKind::InvalidResponse);
        assert!(e.to_string().contains("message_start"), "{e}");

        let orphan = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n";
        assert_eq!(
            run_stream(orphan.as_bytes(), &[])
                .expect_err("must fail")
                .kind(),
            ErrorKind::InvalidResponse
        );
    }

    #[test]
    fn finish_is_idempotent_after_success() {
        let mut parser = SseParser::new();
        let mut dec = AnthropicStreamDecoder::new(&target());
        for ev in parser.feed(SSE_THINKING.as_bytes()).expect("sse") {
            dec.on_event(&ev).expect("event");
        }
        assert_eq!(dec.finish().expect("finish").len(), 1);
        assert!(dec.finish().expect("again").is_empty());
    }

    proptest::proptest! {
        /// Arbitrary event names and data, and arbitrary bodies, never panic.
        #[test]
        fn never_panics_on_garbage(
            name in proptest::sample::select(vec!["message_start", "content_block_start", "content_block_delta",
                "content_block_stop", "message_delta", "message_stop", "error", "ping", "", "x"]),
            data in "\\PC{0,80}",
            index in 0u64..4,
            status in 100u16..700,
        ) {
            let mut dec = AnthropicStreamDecoder::new(&target());
            let _ = dec.on_event(&SseEvent { event: name.to_owned(), data: data.clone(), id: None });
            let shaped = format!(r#"{{"type":"{name}","index":{index},"delta":{{"type":"input_json_delta","partial_json":{data:?}}},"content_block":{{"type":"tool_use"}},"message":{{"usage":{data:?}}}}}"#);
            let _ = dec.on_event(&SseEvent { event: name.to_owned(), data: shaped, id: None });
            let _ = dec.finish();
            let _ = Anthropic.parse_response(data.as_bytes(), &target());
            let _ = Anthropic.parse_error(status, &HeaderMap::new(), data.as_bytes(), &target());
        }
    }
}
