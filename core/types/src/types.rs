//! The request, response and stream-chunk types every caller sees.
//!
//! They follow OpenAI Chat Completions in shape (so JSON written for the OpenAI SDK
//! deserializes as is), and each provider adapter maps them to its own wire format.
//! Unknown fields are refused: a typo is an error, not a silently dropped option.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    /// Instructions for the model. OpenAI's `developer` role is read as `system`.
    #[serde(alias = "developer")]
    System,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, answering `tool_call_id`.
    Tool,
}

impl Role {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How much detail an image is read with (OpenAI's `detail`; also drives token estimates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDetail {
    /// Let the provider decide.
    #[default]
    Auto,
    /// One low-resolution tile.
    Low,
    /// Full tiling.
    High,
}

/// An image reference: an `https://` URL or a `data:<mime>;base64,...` URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageUrl {
    /// `https://...` or `data:image/png;base64,...`.
    pub url: String,
    /// Resolution hint.
    #[serde(default, skip_serializing_if = "is_default")]
    pub detail: ImageDetail,
}

/// What an image URL points at: the one reading of `image_url.url` that every provider
/// adapter and the image token estimate share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRef<'a> {
    /// `data:<type>/<subtype>;base64,<data>`: inline bytes.
    Base64 {
        /// `image/png`...
        media_type: &'a str,
        /// The base64 payload (not decoded).
        data: &'a str,
    },
    /// Any other URL; which schemes a provider fetches is its adapter's business.
    Url(&'a str),
}

/// A `data:` URL that is not `data:<type>/<subtype>;base64,<data>` (no media type, not
/// base64, or no data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotBase64DataUrl;

impl<'a> ImageRef<'a> {
    /// Read an image URL.
    pub fn parse(url: &'a str) -> std::result::Result<Self, NotBase64DataUrl> {
        let Some(rest) = url.strip_prefix("data:") else {
            return Ok(ImageRef::Url(url));
        };
        let (meta, data) = rest.split_once(',').ok_or(NotBase64DataUrl)?;
        let media_type = meta.strip_suffix(";base64").ok_or(NotBase64DataUrl)?;
        let typed = media_type
            .split_once('/')
            .is_some_and(|(t, sub)| !t.is_empty() && !sub.is_empty());
        if !typed || data.is_empty() {
            return Err(NotBase64DataUrl);
        }
        Ok(ImageRef::Base64 { media_type, data })
    }
}

/// One part of a multi-part message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentPart {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image given by URL or data URL.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
}

/// Message content: a plain string, or a list of text and image parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// A plain string.
    Text(String),
    /// Text and image parts.
    Parts(Vec<ContentPart>),
}

impl Content {
    /// All text of the content, parts joined by newlines (images skipped).
    pub fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter_map(|p| match p {
                        ContentPart::Text { text } => Some(text.as_str()),
                        ContentPart::ImageUrl { .. } => None,
                    })
                    .collect();
                texts.join("\n")
            }
        }
    }

    /// The parts as a list (a plain string becomes one text part).
    pub fn parts(&self) -> Vec<ContentPart> {
        match self {
            Content::Text(t) => vec![ContentPart::Text { text: t.clone() }],
            Content::Parts(p) => p.clone(),
        }
    }

    /// True when there is no text and no image.
    pub fn is_empty(&self) -> bool {
        match self {
            Content::Text(t) => t.is_empty(),
            Content::Parts(p) => p.is_empty(),
        }
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content::Text(s.to_owned())
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content::Text(s)
    }
}

/// A function the model asked to call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments as a JSON-encoded string (as OpenAI sends them).
    pub arguments: String,
}

/// A tool call in an assistant message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// Identifier that the tool message answering this call repeats as `tool_call_id`.
    pub id: String,
    /// Always `"function"`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// What to call, and with which arguments.
    pub function: FunctionCall,
}

impl ToolCall {
    /// The arguments parsed as JSON.
    pub fn arguments_json(&self) -> Result<Value> {
        serde_json::from_str(&self.function.arguments).map_err(|e| Error::InvalidRequest {
            field: Some("tool_calls[].function.arguments".into()),
            message: format!(
                "arguments of tool call `{}` ({}) are not valid JSON: {e}",
                self.id, self.function.name
            ),
        })
    }
}

fn function_type() -> String {
    "function".to_owned()
}

/// One chat message.
///
/// A struct rather than an enum per role so that bindings can hand over plain
/// dictionaries; [`ChatRequest::validate`] checks the per-role rules and names the
/// offending index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Text or parts. May be absent on an assistant message that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Reasoning text some providers return (DeepSeek `reasoning_content`); never sent back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// OpenAI's `refusal` on assistant messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

impl Message {
    fn with(role: Role, content: impl Into<Content>) -> Self {
        Message {
            role,
            content: Some(content.into()),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            reasoning_content: None,
            refusal: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<Content>) -> Self {
        Self::with(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<Content>) -> Self {
        Self::with(Role::User, content)
    }

    /// An assistant message with text.
    pub fn assistant(content: impl Into<Content>) -> Self {
        Self::with(Role::Assistant, content)
    }

    /// An assistant message that only calls tools.
    pub fn assistant_tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        Message {
            content: None,
            tool_calls,
            ..Self::with(Role::Assistant, "")
        }
    }

    /// A tool result answering `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<Content>) -> Self {
        Message {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::with(Role::Tool, content)
        }
    }

    /// The message's text (parts joined), or "" when there is none.
    pub fn text(&self) -> String {
        self.content.as_ref().map(Content::text).unwrap_or_default()
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionDef {
    /// Name, `^[a-zA-Z0-9_-]{1,64}$`.
    pub name: String,
    /// What it does (the model reads this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// OpenAI structured-outputs strictness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A tool definition (only functions exist today).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Always `"function"`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

impl Tool {
    /// A function tool.
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
    ) -> Self {
        Tool {
            kind: function_type(),
            function: FunctionDef {
                name: name.into(),
                description: Some(description.into()),
                parameters: Some(parameters),
                strict: None,
            },
        }
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool call.
    None,
    /// Some tool must be called.
    Required,
    /// This function must be called.
    Function(String),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}}).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(s) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" | "any" => Ok(ToolChoice::Required),
                other => Err(de::Error::custom(format!(
                    "unknown tool_choice `{other}`: use \"auto\", \"none\", \"required\" or {{\"type\":\"function\",\"function\":{{\"name\":...}}}}"
                ))),
            },
            Value::Object(_) => v
                .pointer("/function/name")
                .and_then(Value::as_str)
                .map(|n| ToolChoice::Function(n.to_owned()))
                .ok_or_else(|| de::Error::custom("tool_choice object needs function.name")),
            _ => Err(de::Error::custom(
                "tool_choice must be a string or an object",
            )),
        }
    }
}

/// A JSON schema the answer must follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaFormat {
    /// Schema name.
    pub name: String,
    /// Optional description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema.
    pub schema: Value,
    /// Strict adherence (OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// Output format constraint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any valid JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema {
        /// The schema.
        json_schema: JsonSchemaFormat,
    },
}

/// Stop sequences: one string or a list (OpenAI accepts both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

/// A chat request in OpenAI Chat Completions shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// `provider/model` (e.g. `anthropic/claude-sonnet-4-5`) or `auto`.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Upper bound on generated tokens (`max_completion_tokens` is accepted as an alias).
    #[serde(
        default,
        alias = "max_completion_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Tool selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Deterministic sampling seed, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// End-user identifier passed to the provider (abuse monitoring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Free-form key/value metadata (kept on our side; also tags usage records).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Ignored on input: `Client::chat` and `Client::chat_stream` (in `gaterouter`) decide.
    /// Accepted so OpenAI-style JSON with `"stream": false` deserializes.
    #[serde(default, skip_serializing)]
    pub stream: Option<bool>,
}

impl ChatRequest {
    /// A request with defaults for everything but the model and messages.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            temperature: None,
            top_p: None,
            max_tokens: None,
            stop: None,
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            seed: None,
            user: None,
            metadata: BTreeMap::new(),
            stream: None,
        }
    }

    /// Parse a request from OpenAI-style JSON, naming the offending field on error.
    pub fn from_json(json: &str) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(json);
        let req: ChatRequest =
            serde_path_to_error::deserialize(de).map_err(|e| Error::InvalidRequest {
                field: Some(e.path().to_string()),
                message: format!("request field `{}`: {}", e.path(), e.inner()),
            })?;
        req.validate()?;
        Ok(req)
    }

    /// Check the rules serde cannot express; errors name the field and the fix.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: String, message: String| {
            Err(Error::InvalidRequest {
                field: Some(field),
                message,
            })
        };
        if self.model.trim().is_empty() {
            return bad(
                "model".into(),
                "model is empty: use `provider/model` (e.g. `openai/gpt-4o-mini`) or `auto`".into(),
            );
        }
        if self.messages.is_empty() {
            return bad(
                "messages".into(),
                "messages is empty: send at least one user message".into(),
            );
        }
        for (i, m) in self.messages.iter().enumerate() {
            match m.role {
                Role::Tool if m.tool_call_id.as_deref().is_none_or(str::is_empty) => {
                    return bad(
                        format!("messages[{i}].tool_call_id"),
                        format!(
                            "messages[{i}] has role `tool` but no tool_call_id: set it to the id of the tool call it answers"
                        ),
                    );
                }
                Role::Assistant if m.content.is_none() && m.tool_calls.is_empty() => {
                    return bad(
                        format!("messages[{i}].content"),
                        format!("messages[{i}] (assistant) has neither content nor tool_calls"),
                    );
                }
                Role::System | Role::User | Role::Tool if m.content.is_none() => {
                    return bad(
                        format!("messages[{i}].content"),
                        format!("messages[{i}] ({}) has no content", m.role.as_str()),
                    );
                }
                _ => {}
            }
            if m.role != Role::Assistant && !m.tool_calls.is_empty() {
                return bad(
                    format!("messages[{i}].tool_calls"),
                    format!(
                        "messages[{i}] ({}) carries tool_calls: only assistant messages may",
                        m.role.as_str()
                    ),
                );
            }
            for (j, tc) in m.tool_calls.iter().enumerate() {
                if serde_json::from_str::<Value>(&tc.function.arguments).is_err() {
                    return bad(
                        format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        format!(
                            "messages[{i}].tool_calls[{j}].function.arguments is not valid JSON: send the arguments as a JSON-encoded string"
                        ),
                    );
                }
            }
        }
        for (i, t) in self.tools.iter().enumerate() {
            if t.kind != "function" {
                return bad(
                    format!("tools[{i}].type"),
                    format!(
                        "tools[{i}].type is `{}`: only \"function\" is supported",
                        t.kind
                    ),
                );
            }
            let n = &t.function.name;
            if n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return bad(
                    format!("tools[{i}].function.name"),
                    format!(
                        "tools[{i}].function.name `{n}` must be 1-64 characters of a-z, A-Z, 0-9, _ or -"
                    ),
                );
            }
        }
        if let Some(ToolChoice::Function(name)) = &self.tool_choice {
            if !self.tools.iter().any(|t| &t.function.name == name) {
                return bad(
                    "tool_choice".into(),
                    format!("tool_choice names `{name}`, which is not in tools"),
                );
            }
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return bad(
                    "temperature".into(),
                    format!("temperature {t} is out of range: use 0.0 to 2.0"),
                );
            }
        }
        if let Some(p) = self.top_p {
            if !(0.0..=1.0).contains(&p) {
                return bad(
                    "top_p".into(),
                    format!("top_p {p} is out of range: use 0.0 to 1.0"),
                );
            }
        }
        if self.max_tokens == Some(0) {
            return bad(
                "max_tokens".into(),
                "max_tokens is 0: leave it unset or give a positive number".into(),
            );
        }
        Ok(())
    }

    /// The system messages' text, joined (adapters that lift the system prompt use this).
    pub fn system_text(&self) -> Option<String> {
        let parts: Vec<String> = self
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(Message::text)
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("\n\n"))
        }
    }
}

/// Why generation stopped, normalized across providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// A safety system cut the answer.
    ContentFilter,
}

impl FinishReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Token usage, normalized to OpenAI's convention whatever the provider:
///
/// - `prompt_tokens` counts **all** input tokens, including `cached_prompt_tokens`
///   (read from cache) and `cache_write_tokens` (written to cache). Anthropic reports
///   these three separately; the adapter adds them up.
/// - `completion_tokens` counts **all** output tokens, including `reasoning_tokens`
///   (Gemini reports thoughts separately; the adapter adds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// All input tokens.
    pub prompt_tokens: u64,
    /// All output tokens.
    pub completion_tokens: u64,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u64,
    /// Input tokens read from the provider's prompt cache (part of `prompt_tokens`).
    #[serde(default)]
    pub cached_prompt_tokens: u64,
    /// Input tokens written to the provider's prompt cache (part of `prompt_tokens`).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Output tokens spent on hidden reasoning (part of `completion_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Build a usage object, computing the total.
    pub fn new(
        prompt: u64,
        completion: u64,
        cached: u64,
        cache_write: u64,
        reasoning: u64,
    ) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            cached_prompt_tokens: cached,
            cache_write_tokens: cache_write,
            reasoning_tokens: reasoning,
        }
    }
}

/// The assistant's reply in a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: Role,
    /// The text, if any.
    pub content: Option<String>,
    /// Tool calls, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Visible reasoning text (DeepSeek `reasoning_content`, Anthropic/Gemini thinking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// A refusal message, if the model refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

impl AssistantMessage {
    /// Turn the reply into a message to append to the conversation.
    pub fn to_message(&self) -> Message {
        Message {
            role: Role::Assistant,
            content: self.content.clone().map(Content::Text),
            name: None,
            tool_calls: self.tool_calls.clone(),
            tool_call_id: None,
            reasoning_content: None,
            refusal: None,
        }
    }
}

/// One choice of a response (providers here always return one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position.
    pub index: u32,
    /// The reply.
    pub message: AssistantMessage,
    /// Why it stopped.
    pub finish_reason: FinishReason,
}

/// A chat response in OpenAI shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The provider's response id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The concrete `provider/model` that answered.
    pub model: String,
    /// The replies.
    pub choices: Vec<Choice>,
    /// Token usage as the provider reported it, normalized.
    pub usage: Usage,
    /// What the call cost, from the provider's usage and the price catalog (absent for
    /// models the catalog does not price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::money::Cost>,
    /// The routing decision that produced this response, with the attempts made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<crate::decision::RouteDecision>,
    /// Id of the call's usage record (absent without usage records): pass it to
    /// `Client::feedback` to say how good the answer was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_record_id: Option<String>,
    /// Shadow sampling (an `auto` call of an organization that turned it on): the same
    /// request's answer from the other arm (the heavy tier if this one is lighter, else a
    /// lighter one), with its own cost, route and `usage_record_id`, for the app's
    /// evaluator to rate beside this one. Absent otherwise, or when the shadow call failed
    /// (its usage record says how).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Box<ChatResponse>>,
    /// Shadow sampling drew this call but the shadow call failed: why (its usage record
    /// says the same). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_error: Option<ShadowError>,
}

/// Why a shadow call failed ([`ChatResponse::shadow_error`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowError {
    /// The error's stable code (`RATE_LIMITED`, `BUDGET_EXCEEDED`, ...).
    pub code: String,
    /// The error's message.
    pub message: String,
}

impl ChatResponse {
    /// The first choice's text, or "".
    pub fn text(&self) -> &str {
        self.choices
            .first()
            .and_then(|c| c.message.content.as_deref())
            .unwrap_or("")
    }

    /// The first choice's tool calls.
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.choices
            .first()
            .map(|c| c.message.tool_calls.as_slice())
            .unwrap_or(&[])
    }

    /// The first choice's finish reason.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.choices.first().map(|c| c.finish_reason)
    }
}

/// Partial function call in a stream delta.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    /// Present in the first delta of a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A fragment of the JSON arguments string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// Partial tool call in a stream delta; fragments with the same `index` concatenate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call this fragment belongs to.
    pub index: u32,
    /// Present in the first delta of a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, in the first delta.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and argument fragment.
    #[serde(default)]
    pub function: FunctionCallDelta,
}

/// What a chunk adds to the reply.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Delta {
    /// Present in the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// A text fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A reasoning-text fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta>,
}

/// One choice of a stream chunk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Position.
    pub index: u32,
    /// What this chunk adds.
    pub delta: Delta,
    /// Set on the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// A normalized stream chunk (OpenAI `chat.completion.chunk` shape).
///
/// The last chunk of every successful stream has empty `choices` and `usage` set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatChunk {
    /// The provider's response id.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The concrete `provider/model`.
    pub model: String,
    /// Deltas.
    pub choices: Vec<ChunkChoice>,
    /// Final usage, on the last chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What the call cost, on the last chunk only (when the model is priced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::money::Cost>,
    /// Id of the call's usage record, on the chunk that carries `usage` (absent without
    /// usage records): pass it to `Client::feedback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_record_id: Option<String>,
}

impl ChatChunk {
    /// A chunk with the given id/model/created and no choices.
    pub fn empty(id: &str, model: &str, created: u64) -> Self {
        ChatChunk {
            id: id.to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.to_owned(),
            choices: Vec::new(),
            usage: None,
            cost: None,
            usage_record_id: None,
        }
    }

    /// Text fragment of the first choice, if any.
    pub fn text(&self) -> Option<&str> {
        self.choices
            .first()
            .and_then(|c| c.delta.content.as_deref())
    }
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Enforcement, LevelKind, Metric, Period};
    use crate::decision::Tier;

    #[test]
    fn image_urls_are_read_one_way() {
        assert_eq!(
            ImageRef::parse("data:image/png;base64,iVBO"),
            Ok(ImageRef::Base64 {
                media_type: "image/png",
                data: "iVBO"
            })
        );
        for url in ["https://x.test/a.png", "gs://b/a.png", "ftp://x"] {
            assert_eq!(ImageRef::parse(url), Ok(ImageRef::Url(url)));
        }
        for bad in [
            "data:image/png,iVBO",
            "data:;base64,iVBO",
            "data:image;base64,iVBO",
            "data:image/png;base64,",
            "data:image/png;base64",
        ] {
            assert_eq!(ImageRef::parse(bad), Err(NotBase64DataUrl), "{bad}");
        }
    }

    /// `as_str` (strum) and the serde name agree for every enum that has both.
    #[test]
    fn enum_names_match_their_serde_names() {
        fn same<T: Serialize>(v: T, name: &str) {
            assert_eq!(
                serde_json::to_string(&v).expect("ser"),
                format!("\"{name}\"")
            );
        }
        for r in [Role::System, Role::User, Role::Assistant, Role::Tool] {
            same(r, r.as_str());
        }
        for f in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::ContentFilter,
        ] {
            same(f, f.as_str());
        }
        assert_eq!(FinishReason::ToolCalls.as_str(), "tool_calls");
        for &t in Tier::ALL {
            same(t, t.as_str());
            assert_eq!(Tier::parse(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(Tier::parse("Heavy"), None);
        for m in [Metric::Usd, Metric::Tokens] {
            same(m, m.as_str());
        }
        for p in [Period::Hour, Period::Day, Period::Month] {
            same(p, p.as_str());
        }
        for e in [Enforcement::Hard, Enforcement::Soft] {
            same(e, e.as_str());
        }
        for k in [
            LevelKind::Org,
            LevelKind::Department,
            LevelKind::Project,
            LevelKind::Group,
            LevelKind::User,
            LevelKind::Key,
        ] {
            same(k, k.as_str());
        }
        assert_eq!(
            "team:x".parse::<crate::budget::Level>().unwrap_err(),
            "level kind `team` is not one of org, department, project, group, user, key"
        );
    }

    #[test]
    fn openai_style_json_round_trips() {
        let json = r#"{"model":"openai/gpt-4o-mini","messages":[
            {"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"https://x/y.png","detail":"low"}}]},
            {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"f"}},
            "response_format":{"type":"json_object"},"stop":"END","max_completion_tokens":10,"stream":false}"#;
        let req = ChatRequest::from_json(json).expect("parses");
        assert_eq!(req.messages[0].role, Role::System);
        assert_eq!(req.max_tokens, Some(10));
        assert_eq!(req.tool_choice, Some(ToolChoice::Function("f".into())));
        let back = serde_json::to_string(&req).expect("serializes");
        let again = ChatRequest::from_json(&back).expect("re-parses");
        assert_eq!(req.messages, again.messages);
    }

    #[test]
    fn unknown_field_is_named() {
        let err =
            ChatRequest::from_json(r#"{"model":"auto","messages":[],"temprature":1}"#).unwrap_err();
        assert!(err.to_string().contains("temprature"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut req = ChatRequest::new("auto", vec![]);
        assert!(
            req.validate()
                .unwrap_err()
                .to_string()
                .contains("messages is empty")
        );
        req.messages.push(Message {
            tool_call_id: None,
            ..Message::tool("x", "y")
        });
        let e = req.validate().unwrap_err();
        assert!(
            e.to_string().contains("messages[0].tool_call_id")
                || e.to_string().contains("tool_call_id"),
            "{e}"
        );
        let mut req = ChatRequest::new("auto", vec![Message::user("hi")]);
        req.temperature = Some(3.0);
        assert!(
            req.validate()
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
    }
}
