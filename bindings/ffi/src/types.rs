//! uniffi records mirroring the core types in the shape mobile code wants: flat, typed,
//! and free of `serde_json::Value` (JSON-typed fields travel as JSON strings and are
//! parsed here, with errors naming the field). Conversions only: the core validates.
//!
//! Full OpenAI fidelity (every content part, every option) stays available through
//! `GateRouterClient.chatJson`.

use std::collections::{BTreeMap, HashMap};

use gaterouter as core;

use crate::error::GateRouterError;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call (set `tool_call_id`).
    Tool,
}

/// How much detail an image is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Enum)]
pub enum ImageDetail {
    /// Let the provider decide.
    #[default]
    Auto,
    /// One low-resolution tile (cheap).
    Low,
    /// Full tiling.
    High,
}

/// An image attached to a message: an `https://` URL or a `data:image/png;base64,...` URL.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ImageInput {
    /// `https://...` or `data:<mime>;base64,...`.
    pub url: String,
    /// Resolution hint; absent means `Auto`.
    #[uniffi(default)]
    pub detail: Option<ImageDetail>,
}

/// A tool call made by the model (or replayed in an assistant message).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ToolCall {
    /// Id that the answering tool message repeats as `tool_call_id`.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as a JSON-encoded string.
    pub arguments: String,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text. May be absent on an assistant message that only calls tools.
    #[uniffi(default)]
    pub content: Option<String>,
    /// Images sent along with the text (user messages).
    #[uniffi(default)]
    pub images: Vec<ImageInput>,
    /// Optional participant name.
    #[uniffi(default)]
    pub name: Option<String>,
    /// Tool calls made by an assistant message.
    #[uniffi(default)]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `Tool` message answers.
    #[uniffi(default)]
    pub tool_call_id: Option<String>,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Tool {
    /// Name, 1-64 characters of a-z, A-Z, 0-9, _ or -.
    pub name: String,
    /// What it does (the model reads this).
    #[uniffi(default)]
    pub description: Option<String>,
    /// JSON Schema of the arguments object, as JSON text.
    #[uniffi(default)]
    pub parameters_json: Option<String>,
    /// OpenAI structured-outputs strictness.
    #[uniffi(default)]
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool call (OpenAI `"none"`; renamed so Swift's `.none` stays `Optional.none`).
    Disabled,
    /// Some tool must be called.
    Required,
    /// This function must be called.
    Function {
        /// The function's name (must be in `tools`).
        name: String,
    },
}

/// A chat request (OpenAI Chat Completions in shape).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChatRequest {
    /// `provider/model` (e.g. `anthropic/claude-sonnet-4-5`) or `auto`.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature, 0.0 to 2.0.
    #[uniffi(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0.0 to 1.0.
    #[uniffi(default)]
    pub top_p: Option<f64>,
    /// Upper bound on generated tokens.
    #[uniffi(default)]
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[uniffi(default)]
    pub stop: Vec<String>,
    /// Tools the model may call.
    #[uniffi(default)]
    pub tools: Vec<Tool>,
    /// Tool selection.
    #[uniffi(default)]
    pub tool_choice: Option<ToolChoice>,
    /// Output format as OpenAI JSON: `{"type":"json_object"}` or
    /// `{"type":"json_schema","json_schema":{"name":...,"schema":{...}}}`.
    #[uniffi(default)]
    pub response_format_json: Option<String>,
    /// Deterministic sampling seed, where supported.
    #[uniffi(default)]
    pub seed: Option<i64>,
    /// End-user identifier passed to the provider.
    #[uniffi(default)]
    pub user: Option<String>,
    /// Free-form key/value metadata (kept on our side; tags usage records).
    #[uniffi(default)]
    pub metadata: HashMap<String, String>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
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

/// Token usage in OpenAI's convention: `prompt_tokens` includes the cached and
/// cache-write tokens, `completion_tokens` includes the reasoning tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Record)]
pub struct Usage {
    /// All input tokens.
    pub prompt_tokens: u64,
    /// All output tokens.
    pub completion_tokens: u64,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u64,
    /// Input tokens read from the provider's prompt cache (part of `prompt_tokens`).
    pub cached_prompt_tokens: u64,
    /// Input tokens written to the provider's prompt cache (part of `prompt_tokens`).
    pub cache_write_tokens: u64,
    /// Output tokens spent on hidden reasoning (part of `completion_tokens`).
    pub reasoning_tokens: u64,
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChatResponse {
    /// The provider's response id.
    pub id: String,
    /// The concrete `provider/model` that answered.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// The reply text ("" when the model only called tools).
    pub text: String,
    /// Tool calls the model made.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped (absent only if the provider sent no choice).
    pub finish_reason: Option<FinishReason>,
    /// Visible reasoning text, when the provider returns it.
    pub reasoning: Option<String>,
    /// The refusal text, if the model refused.
    pub refusal: Option<String>,
    /// The reply as a message, ready to append to the conversation (tool round trips).
    pub message: ChatMessage,
    /// Token usage.
    pub usage: Usage,
    /// Id of the call's usage record (absent without usage records): pass it to
    /// `feedback` to say how good the answer was.
    pub usage_record_id: Option<String>,
    /// Shadow sampling (an `auto` call of an organization that turned it on): the same
    /// request's answer from the other arm, for the app's evaluator to rate beside this
    /// one. Absent otherwise, or when the shadow call failed (its usage record says how).
    pub shadow: Option<ShadowAnswer>,
    /// The shadow call was drawn but failed: its code and message.
    pub shadow_error: Option<ShadowError>,
}

/// Why a shadow call failed (see `ChatResponse.shadow_error`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ShadowError {
    /// The error's stable code (`RATE_LIMITED`, `BUDGET_EXCEEDED`, ...).
    pub code: String,
    /// The error's message.
    pub message: String,
}

/// The other arm's answer to a shadowed call (see `ChatResponse.shadow`).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ShadowAnswer {
    /// The provider's response id.
    pub id: String,
    /// The concrete `provider/model` that answered.
    pub model: String,
    /// The reply text.
    pub text: String,
    /// Why it stopped.
    pub finish_reason: Option<FinishReason>,
    /// Token usage.
    pub usage: Usage,
    /// Id of the shadow call's usage record: rate it with `feedback`.
    pub usage_record_id: Option<String>,
}

/// A fragment of a tool call in a stream; fragments with the same `index` concatenate.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ToolCallDelta {
    /// Which call this fragment belongs to.
    pub index: u32,
    /// Present in the first fragment of a call.
    pub id: Option<String>,
    /// Present in the first fragment of a call.
    pub name: Option<String>,
    /// A fragment of the JSON arguments string.
    pub arguments: Option<String>,
}

/// One stream chunk. The last chunk of a successful stream has no text and `usage` set.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChatChunk {
    /// The provider's response id.
    pub id: String,
    /// The concrete `provider/model`.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// A text fragment.
    pub text: Option<String>,
    /// A reasoning-text fragment.
    pub reasoning: Option<String>,
    /// Tool-call fragments.
    pub tool_calls: Vec<ToolCallDelta>,
    /// Set on the last content chunk.
    pub finish_reason: Option<FinishReason>,
    /// Final usage, on the last chunk only.
    pub usage: Option<Usage>,
    /// Id of the call's usage record, on the chunk that carries `usage` (absent without
    /// usage records): pass it to `feedback`.
    pub usage_record_id: Option<String>,
}

/// Who judged an answer (`feedback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum FeedbackSource {
    /// The end user (a thumbs up, an accepted suggestion).
    User,
    /// An automatic evaluator.
    Evaluator,
    /// Inferred from behaviour.
    Implicit,
}

impl From<FeedbackSource> for core::usage::FeedbackSource {
    fn from(s: FeedbackSource) -> Self {
        match s {
            FeedbackSource::User => core::usage::FeedbackSource::User,
            FeedbackSource::Evaluator => core::usage::FeedbackSource::Evaluator,
            FeedbackSource::Implicit => core::usage::FeedbackSource::Implicit,
        }
    }
}

// ---- binding -> core ----

impl From<Role> for core::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::System => core::Role::System,
            Role::User => core::Role::User,
            Role::Assistant => core::Role::Assistant,
            Role::Tool => core::Role::Tool,
        }
    }
}

impl From<ImageDetail> for core::ImageDetail {
    fn from(d: ImageDetail) -> Self {
        match d {
            ImageDetail::Auto => core::ImageDetail::Auto,
            ImageDetail::Low => core::ImageDetail::Low,
            ImageDetail::High => core::ImageDetail::High,
        }
    }
}

impl From<ToolCall> for core::ToolCall {
    fn from(t: ToolCall) -> Self {
        core::ToolCall {
            id: t.id,
            kind: "function".to_owned(),
            function: core::FunctionCall {
                name: t.name,
                arguments: t.arguments,
            },
        }
    }
}

impl From<ChatMessage> for core::Message {
    fn from(m: ChatMessage) -> Self {
        // Text only -> a plain string (what every provider accepts); with images -> parts.
        let content = if m.images.is_empty() {
            m.content.map(core::Content::Text)
        } else {
            let mut parts: Vec<core::ContentPart> = m
                .content
                .into_iter()
                .filter(|t| !t.is_empty())
                .map(|text| core::ContentPart::Text { text })
                .collect();
            parts.extend(m.images.into_iter().map(|i| core::ContentPart::ImageUrl {
                image_url: core::ImageUrl {
                    url: i.url,
                    detail: i.detail.unwrap_or_default().into(),
                },
            }));
            Some(core::Content::Parts(parts))
        };
        core::Message {
            role: m.role.into(),
            content,
            name: m.name,
            tool_calls: m.tool_calls.into_iter().map(Into::into).collect(),
            tool_call_id: m.tool_call_id,
            reasoning_content: None,
            refusal: None,
        }
    }
}

impl From<ToolChoice> for core::ToolChoice {
    fn from(c: ToolChoice) -> Self {
        match c {
            ToolChoice::Auto => core::ToolChoice::Auto,
            ToolChoice::Disabled => core::ToolChoice::None,
            ToolChoice::Required => core::ToolChoice::Required,
            ToolChoice::Function { name } => core::ToolChoice::Function(name),
        }
    }
}

impl TryFrom<ChatRequest> for core::ChatRequest {
    type Error = GateRouterError;

    /// Parses the JSON-string fields; everything else is checked by the core's
    /// `ChatRequest::validate` when the request is sent.
    fn try_from(r: ChatRequest) -> Result<Self, GateRouterError> {
        let mut tools = Vec::with_capacity(r.tools.len());
        for (i, t) in r.tools.into_iter().enumerate() {
            let parameters = match t.parameters_json.as_deref() {
                None => None,
                Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                    GateRouterError::invalid_field(
                        format!("tools[{i}].parameters_json"),
                        format!("tools[{i}].parameters_json is not valid JSON ({e}): pass the JSON Schema of the arguments as JSON text"),
                    )
                })?),
            };
            tools.push(core::Tool {
                kind: "function".to_owned(),
                function: core::FunctionDef {
                    name: t.name,
                    description: t.description,
                    parameters,
                    strict: t.strict,
                },
            });
        }
        let response_format = match r.response_format_json.as_deref() {
            None => None,
            Some(text) => Some(serde_json::from_str::<core::ResponseFormat>(text).map_err(|e| {
                GateRouterError::invalid_field(
                    "response_format_json",
                    format!(
                        "response_format_json is not a valid response format ({e}): use {{\"type\":\"json_object\"}} or {{\"type\":\"json_schema\",\"json_schema\":{{\"name\":...,\"schema\":{{...}}}}}}"
                    ),
                )
            })?),
        };
        let mut req =
            core::ChatRequest::new(r.model, r.messages.into_iter().map(Into::into).collect());
        req.temperature = r.temperature;
        req.top_p = r.top_p;
        req.max_tokens = r.max_tokens;
        req.stop = if r.stop.is_empty() {
            None
        } else {
            Some(core::Stop::Many(r.stop))
        };
        req.tools = tools;
        req.tool_choice = r.tool_choice.map(Into::into);
        req.response_format = response_format;
        req.seed = r.seed;
        req.user = r.user;
        req.metadata = r.metadata.into_iter().collect::<BTreeMap<_, _>>();
        Ok(req)
    }
}

// ---- core -> binding ----

impl From<core::Role> for Role {
    fn from(r: core::Role) -> Self {
        match r {
            core::Role::System => Role::System,
            core::Role::User => Role::User,
            core::Role::Assistant => Role::Assistant,
            core::Role::Tool => Role::Tool,
        }
    }
}

impl From<core::FinishReason> for FinishReason {
    fn from(f: core::FinishReason) -> Self {
        match f {
            core::FinishReason::Stop => FinishReason::Stop,
            core::FinishReason::Length => FinishReason::Length,
            core::FinishReason::ToolCalls => FinishReason::ToolCalls,
            core::FinishReason::ContentFilter => FinishReason::ContentFilter,
        }
    }
}

impl From<core::Usage> for Usage {
    fn from(u: core::Usage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            cached_prompt_tokens: u.cached_prompt_tokens,
            cache_write_tokens: u.cache_write_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

impl From<&core::ToolCall> for ToolCall {
    fn from(t: &core::ToolCall) -> Self {
        ToolCall {
            id: t.id.clone(),
            name: t.function.name.clone(),
            arguments: t.function.arguments.clone(),
        }
    }
}

impl From<core::ChatResponse> for ChatResponse {
    fn from(r: core::ChatResponse) -> Self {
        let first = r.choices.first();
        let message = first
            .map(|c| c.message.to_message())
            .unwrap_or_else(|| core::Message::assistant(""));
        ChatResponse {
            text: r.text().to_owned(),
            tool_calls: r.tool_calls().iter().map(Into::into).collect(),
            finish_reason: r.finish_reason().map(Into::into),
            reasoning: first.and_then(|c| c.message.reasoning_content.clone()),
            refusal: first.and_then(|c| c.message.refusal.clone()),
            message: ChatMessage {
                role: message.role.into(),
                content: message.content.as_ref().map(core::Content::text),
                images: Vec::new(),
                name: None,
                tool_calls: message.tool_calls.iter().map(Into::into).collect(),
                tool_call_id: None,
            },
            usage: r.usage.into(),
            usage_record_id: r.usage_record_id,
            shadow: r.shadow.map(|s| ShadowAnswer {
                text: s.text().to_owned(),
                finish_reason: s.finish_reason().map(Into::into),
                usage: s.usage.into(),
                usage_record_id: s.usage_record_id,
                id: s.id,
                model: s.model,
            }),
            shadow_error: r.shadow_error.map(|e| ShadowError {
                code: e.code,
                message: e.message,
            }),
            id: r.id,
            model: r.model,
            created: r.created,
        }
    }
}

impl From<core::ChatChunk> for ChatChunk {
    fn from(c: core::ChatChunk) -> Self {
        // Providers here always stream one choice; the core normalizes to index 0.
        let choice = c.choices.into_iter().next();
        let (text, reasoning, tool_calls, finish_reason) = match choice {
            Some(ch) => (
                ch.delta.content,
                ch.delta.reasoning_content,
                ch.delta
                    .tool_calls
                    .into_iter()
                    .map(|t| ToolCallDelta {
                        index: t.index,
                        id: t.id,
                        name: t.function.name,
                        arguments: t.function.arguments,
                    })
                    .collect(),
                ch.finish_reason.map(Into::into),
            ),
            None => (None, None, Vec::new(), None),
        };
        ChatChunk {
            id: c.id,
            model: c.model,
            created: c.created,
            text,
            reasoning,
            tool_calls,
            finish_reason,
            usage: c.usage.map(Into::into),
            usage_record_id: c.usage_record_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> ChatMessage {
        ChatMessage {
            role: Role::User,
            content: Some(text.into()),
            images: vec![],
            name: None,
            tool_calls: vec![],
            tool_call_id: None,
        }
    }

    fn request(messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest {
            model: "openai/gpt-4o-mini".into(),
            messages,
            temperature: None,
            top_p: None,
            max_tokens: None,
            stop: vec![],
            tools: vec![],
            tool_choice: None,
            response_format_json: None,
            seed: None,
            user: None,
            metadata: HashMap::new(),
        }
    }

    #[test]
    fn request_converts_to_the_core_json_shape() {
        let mut r = request(vec![
            ChatMessage {
                images: vec![ImageInput {
                    url: "https://x/y.png".into(),
                    detail: Some(ImageDetail::Low),
                }],
                ..user("look")
            },
            ChatMessage {
                role: Role::Assistant,
                content: None,
                images: vec![],
                name: None,
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
                tool_call_id: None,
            },
            ChatMessage {
                role: Role::Tool,
                tool_call_id: Some("c1".into()),
                ..user("42")
            },
        ]);
        r.stop = vec!["END".into()];
        r.tools = vec![Tool {
            name: "f".into(),
            description: None,
            parameters_json: Some(r#"{"type":"object"}"#.into()),
            strict: None,
        }];
        r.tool_choice = Some(ToolChoice::Function { name: "f".into() });
        r.response_format_json = Some(r#"{"type":"json_object"}"#.into());
        let core: core::ChatRequest = r.try_into().expect("converts");
        core.validate().expect("valid for the core");
        let json = serde_json::to_value(&core).expect("serializes");
        assert_eq!(
            json["messages"][0]["content"][1]["image_url"]["detail"],
            "low"
        );
        assert_eq!(
            json["messages"][1]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(json["messages"][2]["tool_call_id"], "c1");
        assert_eq!(json["tools"][0]["function"]["parameters"]["type"], "object");
        assert_eq!(json["tool_choice"]["function"]["name"], "f");
        assert_eq!(json["response_format"]["type"], "json_object");
        assert_eq!(json["stop"], serde_json::json!(["END"]));
    }

    #[test]
    fn bad_json_fields_are_named() {
        let mut r = request(vec![user("hi")]);
        r.tools = vec![Tool {
            name: "f".into(),
            description: None,
            parameters_json: Some("{not json".into()),
            strict: None,
        }];
        let e = core::ChatRequest::try_from(r).expect_err("bad parameters");
        assert!(
            matches!(&e, GateRouterError::InvalidRequest { info } if info.field.as_deref() == Some("tools[0].parameters_json")),
            "{e:?}"
        );

        let mut r = request(vec![user("hi")]);
        r.response_format_json = Some(r#"{"type":"yaml"}"#.into());
        let e = core::ChatRequest::try_from(r).expect_err("bad format");
        assert!(
            matches!(&e, GateRouterError::InvalidRequest { info } if info.field.as_deref() == Some("response_format_json")),
            "{e:?}"
        );
    }

    #[test]
    fn last_chunk_carries_usage_and_no_text() {
        let mut c = core::ChatChunk::empty("id", "openai/gpt-4o", 1);
        c.usage = Some(core::Usage::new(10, 5, 0, 0, 0));
        let b: ChatChunk = c.into();
        assert_eq!(b.text, None);
        assert_eq!(b.usage.map(|u| u.total_tokens), Some(15));
    }
}
