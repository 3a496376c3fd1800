//! Google Gemini `generateContent` adapter.
//!
//! Wire format: `POST {base_url}/models/{model}:generateContent`, or
//! `:streamGenerateContent?alt=sse` for SSE. `base_url` carries the API version
//! (`.../v1beta` or `.../v1`), so nothing here hard-codes it.
//!
//! Translation choices worth knowing:
//! - System messages (wherever they appear) are lifted into `systemInstruction`.
//! - Tool results become `functionResponse` parts in a `user` turn; the function name is
//!   found by looking the `tool_call_id` up among earlier assistant tool calls (Gemini
//!   matches results by name, and our messages carry only the id).
//! - Tool parameter schemas and `json_schema` response formats are sent as `parameters`
//!   / `responseSchema` (Gemini's OpenAPI-3 subset), not `parametersJsonSchema` /
//!   `responseJsonSchema`: the latter exist only in `v1beta`, while `parameters` works on
//!   `v1` and `v1beta` alike and is what the emulator reproduces. JSON Schema is
//!   therefore cleaned by [`clean_schema`] (see there for what is kept and what dropped).
//! - Gemini has no tool-call ids on older models: a call without `functionCall.id` gets
//!   the deterministic id `call_<n>` (`n` = its ordinal in the reply, from 0), the same
//!   in streamed and non-streamed replies.

use std::collections::BTreeSet;
use std::time::Duration;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Adapter, HttpCall, StreamDecoder, Target, body_excerpt, map_status, now_unix};
use crate::error::{Error, Result};
use crate::sse::SseEvent;
use crate::types::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Content, ContentPart, Delta,
    FinishReason, FunctionCall, FunctionCallDelta, ResponseFormat, Role, ToolCall, ToolCallDelta, ToolChoice, Usage,
};

/// The Gemini wire format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

impl Adapter for Gemini {
    fn build_request(&self, req: &ChatRequest, target: &Target, stream: bool) -> Result<HttpCall> {
        let model = target.model.strip_prefix("models/").unwrap_or(&target.model);
        let base = target.provider.base_url.trim_end_matches('/');
        let url = if stream {
            format!("{base}/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("{base}/models/{model}:generateContent")
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(key) = &target.api_key {
            headers.push(("x-goog-api-key".into(), key.expose().to_owned()));
        }
        headers.push(("content-type".into(), "application/json".into()));
        // Configured headers win over ours (a proxy may want its own auth header).
        for (name, value) in &target.provider.headers {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value.clone()));
        }
        Ok(HttpCall { url, headers, body: build_body(req)? })
    }

    fn parse_response(&self, body: &[u8], target: &Target) -> Result<ChatResponse> {
        let provider = target.provider_name();
        let resp = parse_chunk(body, provider)?;
        let id = resp.response_id.clone().unwrap_or_else(generated_id);
        let usage = resp.usage_metadata.as_ref().map(UsageMetadata::to_usage).unwrap_or_default();
        let candidates = resp.candidates.unwrap_or_default();
        if candidates.is_empty() {
            let reason = blocked_reason(resp.prompt_feedback.as_ref()).ok_or_else(|| {
                Error::invalid_response(provider, None, "the reply has neither candidates nor promptFeedback.blockReason")
            })?;
            // A blocked prompt is an answer, not a failure: the caller sees
            // finish_reason content_filter, no content, and why in `refusal`.
            return Ok(ChatResponse {
                id,
                object: "chat.completion".into(),
                created: now_unix(),
                model: target.model_id.clone(),
                choices: vec![Choice {
                    index: 0,
                    message: AssistantMessage {
                        role: Role::Assistant,
                        content: None,
                        tool_calls: Vec::new(),
                        reasoning_content: None,
                        refusal: Some(reason),
                    },
                    finish_reason: FinishReason::ContentFilter,
                }],
                usage,
            });
        }
        let mut choices = Vec::with_capacity(candidates.len());
        for (pos, cand) in candidates.into_iter().enumerate() {
            let mut text: Option<String> = None;
            let mut reasoning: Option<String> = None;
            let mut tool_calls = Vec::new();
            for part in cand.content.and_then(|c| c.parts).unwrap_or_default() {
                if let Some(fc) = part.function_call {
                    let n = tool_calls.len();
                    tool_calls.push(fc.into_tool_call(n));
                } else if let Some(t) = part.text {
                    let slot = if part.thought == Some(true) { &mut reasoning } else { &mut text };
                    slot.get_or_insert_with(String::new).push_str(&t);
                }
            }
            let finish = match cand.finish_reason.as_deref() {
                Some(raw) => map_finish(raw, !tool_calls.is_empty(), cand.finish_message.as_deref())
                    .map_err(|m| Error::invalid_response(provider, None, m))?,
                // A complete non-streamed reply always has one; be lenient if not.
                None if !tool_calls.is_empty() => FinishReason::ToolCalls,
                None => FinishReason::Stop,
            };
            choices.push(Choice {
                index: cand.index.unwrap_or(pos as u32),
                message: AssistantMessage { role: Role::Assistant, content: text, tool_calls, reasoning_content: reasoning, refusal: None },
                finish_reason: finish,
            });
        }
        Ok(ChatResponse { id, object: "chat.completion".into(), created: now_unix(), model: target.model_id.clone(), choices, usage })
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8], target: &Target) -> Error {
        let provider = target.provider_name();
        match serde_json::from_slice::<Value>(body).ok().as_ref().and_then(error_object) {
            Some(err) => map_error(provider, status, headers, err),
            None => map_status(provider, status, headers, None, body_excerpt(body)),
        }
    }

    fn stream_decoder(&self, target: &Target) -> Box<dyn StreamDecoder> {
        Box::new(GeminiStream {
            provider: target.provider_name().to_owned(),
            model_id: target.model_id.clone(),
            created: now_unix(),
            id: None,
            sent_role: BTreeSet::new(),
            seen: BTreeSet::new(),
            finished: BTreeSet::new(),
            calls_per_candidate: Vec::new(),
            next_call_index: 0,
            usage: None,
        })
    }
}

// ---------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------

fn invalid(field: String, message: String) -> Error {
    Error::InvalidRequest { field: Some(field), message }
}

fn build_body(req: &ChatRequest) -> Result<Value> {
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(build_contents(req)?));
    if let Some(system) = req.system_text() {
        body.insert("systemInstruction".into(), json!({"parts": [{"text": system}]}));
    }
    if !req.tools.is_empty() {
        let mut decls = Vec::with_capacity(req.tools.len());
        for (i, tool) in req.tools.iter().enumerate() {
            let f = &tool.function;
            let mut decl = Map::new();
            decl.insert("name".into(), Value::String(f.name.clone()));
            if let Some(d) = f.description.as_ref().filter(|d| !d.is_empty()) {
                decl.insert("description".into(), Value::String(d.clone()));
            }
            if let Some(params) = &f.parameters {
                let cleaned = clean_schema(params, &format!("tools[{i}].function.parameters"))?;
                // Gemini refuses an OBJECT without properties ("should be non-empty for
                // OBJECT type"); a function without arguments simply has no `parameters`.
                let empty_object = cleaned.get("type").and_then(Value::as_str) == Some("OBJECT")
                    && cleaned.get("properties").is_none_or(|p| p.as_object().is_none_or(Map::is_empty));
                if !empty_object {
                    decl.insert("parameters".into(), cleaned);
                }
            }
            decls.push(Value::Object(decl));
        }
        body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        if let Some(choice) = &req.tool_choice {
            let config = match choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
            };
            body.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
        }
    }
    let mut config = Map::new();
    if let Some(t) = req.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        config.insert("topP".into(), json!(p));
    }
    if let Some(m) = req.max_tokens {
        config.insert("maxOutputTokens".into(), json!(m));
    }
    if let Some(stop) = &req.stop {
        let stops = stop.to_vec();
        if !stops.is_empty() {
            config.insert("stopSequences".into(), json!(stops));
        }
    }
    if let Some(seed) = req.seed {
        // Gemini's seed is an int32.
        let seed = i32::try_from(seed)
            .map_err(|_| invalid("seed".into(), format!("seed {seed} does not fit Gemini's 32-bit seed: use a value between {} and {}", i32::MIN, i32::MAX)))?;
        config.insert("seed".into(), json!(seed));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseSchema".into(), clean_schema(&json_schema.schema, "response_format.json_schema.schema")?);
        }
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// `contents[]`: user/model turns, consecutive same-role turns merged (Gemini wants
/// them alternating; tool results and a following user message share one `user` turn).
fn build_contents(req: &ChatRequest) -> Result<Vec<Value>> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, msg) in req.messages.iter().enumerate() {
        let (role, parts) = match msg.role {
            Role::System => continue,
            Role::User => ("user", content_parts(msg.content.as_ref(), i)?),
            Role::Assistant => {
                let mut parts = content_parts(msg.content.as_ref(), i)?;
                if !msg.tool_calls.is_empty() {
                    // Text-less assistant turns that only call tools must not carry `{text:""}`.
                    parts.retain(|p| p.get("text").and_then(Value::as_str) != Some(""));
                }
                for (j, tc) in msg.tool_calls.iter().enumerate() {
                    let args: Value = serde_json::from_str(&tc.function.arguments).map_err(|e| {
                        invalid(
                            format!("messages[{i}].tool_calls[{j}].function.arguments"),
                            format!("messages[{i}].tool_calls[{j}].function.arguments is not valid JSON ({e}): send the arguments as a JSON-encoded string"),
                        )
                    })?;
                    parts.push(json!({"functionCall": {"name": tc.function.name, "args": args}}));
                }
                ("model", parts)
            }
            Role::Tool => {
                let id = msg.tool_call_id.as_deref().unwrap_or("");
                let name = req.messages[..i]
                    .iter()
                    .rev()
                    .filter(|m| m.role == Role::Assistant)
                    .flat_map(|m| m.tool_calls.iter())
                    .find(|tc| tc.id == id)
                    .map(|tc| tc.function.name.clone())
                    .ok_or_else(|| {
                        invalid(
                            format!("messages[{i}].tool_call_id"),
                            format!("messages[{i}].tool_call_id `{id}` matches no tool call of an earlier assistant message: Gemini needs the function name, so keep the assistant message that made the call in the conversation"),
                        )
                    })?;
                let text = msg.text();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"content": text}),
                };
                ("user", vec![json!({"functionResponse": {"name": name, "response": response}})])
            }
        };
        match turns.last_mut() {
            Some((last_role, last_parts)) if *last_role == role => last_parts.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    if turns.is_empty() {
        return Err(invalid("messages".into(), "messages holds only system messages: Gemini needs at least one user message".into()));
    }
    Ok(turns.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect())
}

fn content_parts(content: Option<&Content>, i: usize) -> Result<Vec<Value>> {
    let Some(content) = content else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (k, part) in content.parts().into_iter().enumerate() {
        match part {
            ContentPart::Text { text } => out.push(json!({"text": text})),
            ContentPart::ImageUrl { image_url } => out.push(image_part(&image_url.url, &format!("messages[{i}].content[{k}].image_url.url"))?),
        }
    }
    Ok(out)
}

/// `data:` URLs become `inlineData`, remote URLs `fileData` (MIME type guessed from the
/// extension, `image/jpeg` when there is none that we know).
fn image_part(url: &str, field: &str) -> Result<Value> {
    if let Some(rest) = url.strip_prefix("data:") {
        let bad = || invalid(field.to_owned(), format!("{field} is not a base64 data URL: use `data:<mime type>;base64,<data>`"));
        let (meta, data) = rest.split_once(',').ok_or_else(bad)?;
        let mime = meta.strip_suffix(";base64").ok_or_else(bad)?;
        if mime.is_empty() || !mime.contains('/') {
            return Err(bad());
        }
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("gs://")) {
        return Err(invalid(field.to_owned(), format!("{field} must be an http(s):// URL or a `data:<mime>;base64,...` URL")));
    }
    let path = lower.split(['?', '#']).next().unwrap_or("");
    let ext = path.rsplit_once('.').map(|(_, e)| e).filter(|e| !e.contains('/')).unwrap_or("");
    let mime = match ext {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "bmp" => "image/bmp",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    };
    Ok(json!({"fileData": {"mimeType": mime, "fileUri": url}}))
}

/// Keys of Gemini's `Schema` object (an OpenAPI 3.0 subset); anything else is refused
/// by the API with "Unknown name", so it is dropped. Notably dropped: `$schema`, `$id`,
/// `$comment`, `$defs`/`definitions` (after `$ref`s are inlined), `additionalProperties`,
/// `strict`, `examples`, `patternProperties`, `unevaluatedProperties`, `not`,
/// `if`/`then`/`else`, `dependentRequired`, `readOnly`/`writeOnly`,
/// `contentEncoding`/`contentMediaType`.
const SCHEMA_KEYS: &[&str] = &[
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties", "required",
    "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf", "propertyOrdering",
    "default", "items", "minimum", "maximum",
];

/// Deepest `$ref` nesting we inline (recursive schemas cannot be expressed in Gemini's subset).
const MAX_REF_DEPTH: usize = 16;

/// Translate a JSON Schema into Gemini's OpenAPI-subset `Schema`:
/// - `$ref` to `#/$defs/..` or `#/definitions/..` is inlined (recursion is an error);
/// - `type` is upper-cased (`STRING`, `OBJECT`...); `["T","null"]` becomes `T` +
///   `nullable: true`, several non-null types become `anyOf`;
/// - `anyOf`/`oneOf` with a `{"type":"null"}` branch sets `nullable`; `oneOf` is sent
///   as `anyOf`; a one-element `allOf` (how pydantic wraps a described `$ref`) is merged;
/// - `const` becomes a one-value `enum`; non-string `enum`s (Gemini enums are strings)
///   are dropped and their values appended to the description;
/// - string `format`s other than `enum`/`date-time` are dropped (Gemini refuses them);
/// - an empty `properties` map is dropped; unknown keys are dropped (see [`SCHEMA_KEYS`]).
pub fn clean_schema(schema: &Value, field: &str) -> Result<Value> {
    clean_node(schema, schema, field, 0)
}

fn clean_node(node: &Value, root: &Value, field: &str, depth: usize) -> Result<Value> {
    let Some(obj) = node.as_object() else {
        // `true` / `{}` style schemas: anything goes, which Gemini cannot say; send nothing.
        return Ok(json!({}));
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        if depth >= MAX_REF_DEPTH {
            return Err(invalid(field.to_owned(), format!("{field}: `$ref` `{r}` nests deeper than {MAX_REF_DEPTH} levels (a recursive schema?): Gemini's schema format cannot express recursion, flatten the schema")));
        }
        let target = r
            .strip_prefix('#')
            .filter(|p| p.starts_with("/$defs/") || p.starts_with("/definitions/"))
            .and_then(|p| root.pointer(p))
            .ok_or_else(|| invalid(field.to_owned(), format!("{field}: `$ref` `{r}` cannot be resolved: only local `#/$defs/...` or `#/definitions/...` references are supported")))?;
        let mut resolved = clean_node(target, root, field, depth + 1)?;
        // Sibling keywords (a description next to the `$ref`) refine the target.
        let mut siblings = obj.clone();
        siblings.remove("$ref");
        if let (Value::Object(res), Value::Object(sib)) = (&mut resolved, clean_node(&Value::Object(siblings), root, field, depth)?) {
            for (k, v) in sib {
                res.insert(k, v);
            }
        }
        return Ok(resolved);
    }
    let mut out = Map::new();
    let mut nullable = obj.get("nullable").and_then(Value::as_bool).unwrap_or(false);
    let mut any_of: Vec<Value> = Vec::new();
    match obj.get("type") {
        Some(Value::String(t)) => {
            if t == "null" {
                nullable = true;
            }
            out.insert("type".into(), json!(t.to_ascii_uppercase()));
        }
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            nullable |= names.contains(&"null");
            let non_null: Vec<&str> = names.into_iter().filter(|t| *t != "null").collect();
            match non_null.as_slice() {
                [] => {
                    out.insert("type".into(), json!("NULL"));
                }
                [one] => {
                    out.insert("type".into(), json!(one.to_ascii_uppercase()));
                }
                many => any_of.extend(many.iter().map(|t| json!({"type": t.to_ascii_uppercase()}))),
            }
        }
        _ => {}
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(key) {
            for (b, branch) in branches.iter().enumerate() {
                if branch.get("type").and_then(Value::as_str) == Some("null") && branch.as_object().is_some_and(|m| m.len() == 1) {
                    nullable = true;
                    continue;
                }
                any_of.push(clean_node(branch, root, &format!("{field}.{key}[{b}]"), depth)?);
            }
        }
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        if let [only] = all.as_slice() {
            if let Value::Object(merged) = clean_node(only, root, &format!("{field}.allOf[0]"), depth)? {
                for (k, v) in merged {
                    out.entry(k).or_insert(v);
                }
            }
        }
    }
    let mut extra_description: Option<String> = None;
    for (key, value) in obj {
        match key.as_str() {
            "type" | "nullable" | "anyOf" => {}
            "properties" => {
                if let Some(props) = value.as_object().filter(|p| !p.is_empty()) {
                    let mut cleaned = Map::new();
                    for (name, sub) in props {
                        cleaned.insert(name.clone(), clean_node(sub, root, &format!("{field}.properties.{name}"), depth)?);
                    }
                    out.insert("properties".into(), Value::Object(cleaned));
                }
            }
            "items" => {
                out.insert("items".into(), clean_node(value, root, &format!("{field}.items"), depth)?);
            }
            "const" => {
                if let Some(s) = value.as_str() {
                    out.insert("enum".into(), json!([s]));
                } else {
                    extra_description = Some(format!("Must be {value}."));
                }
            }
            "enum" => match value.as_array() {
                Some(vals) if vals.iter().all(Value::is_string) => {
                    out.insert("enum".into(), value.clone());
                }
                Some(vals) => {
                    let list: Vec<String> = vals.iter().map(Value::to_string).collect();
                    extra_description = Some(format!("Allowed values: {}.", list.join(", ")));
                }
                None => {}
            },
            "format" => {
                let keep = match obj.get("type").and_then(Value::as_str) {
                    Some("string") => matches!(value.as_str(), Some("enum" | "date-time")),
                    Some("integer" | "number") => matches!(value.as_str(), Some("int32" | "int64" | "float" | "double")),
                    _ => false,
                };
                if keep {
                    out.insert("format".into(), value.clone());
                }
            }
            k if SCHEMA_KEYS.contains(&k) => {
                out.insert(k.to_owned(), value.clone());
            }
            _ => {}
        }
    }
    if let Some(extra) = extra_description {
        let desc = match out.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{d} {extra}"),
            _ => extra,
        };
        out.insert("description".into(), json!(desc));
    }
    if !any_of.is_empty() {
        if any_of.len() == 1 && !out.contains_key("type") {
            // `anyOf: [X, null]` (pydantic's Optional[X]) is X + nullable.
            if let Some(Value::Object(only)) = any_of.pop() {
                for (k, v) in only {
                    out.entry(k).or_insert(v);
                }
            }
        } else {
            out.insert("anyOf".into(), Value::Array(any_of));
        }
    }
    if nullable && out.get("type").and_then(Value::as_str) != Some("NULL") {
        out.insert("nullable".into(), json!(true));
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------

/// One `GenerateContentResponse` (a whole reply, or one SSE chunk of it). Lenient:
/// unknown fields are ignored and `null` reads as absent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenResponse {
    candidates: Option<Vec<Candidate>>,
    usage_metadata: Option<UsageMetadata>,
    response_id: Option<String>,
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<CandidateContent>,
    finish_reason: Option<String>,
    finish_message: Option<String>,
    index: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct CandidateContent {
    parts: Option<Vec<Part>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    thought: Option<bool>,
    function_call: Option<GeminiFunctionCall>,
}

#[derive(Debug, Deserialize)]
struct GeminiFunctionCall {
    id: Option<String>,
    name: String,
    args: Option<Value>,
}

impl GeminiFunctionCall {
    fn id_for(&self, n: usize) -> String {
        self.id.clone().filter(|id| !id.is_empty()).unwrap_or_else(|| format!("call_{n}"))
    }

    fn arguments(&self) -> String {
        self.args.as_ref().map(Value::to_string).unwrap_or_else(|| "{}".to_owned())
    }

    fn into_tool_call(self, n: usize) -> ToolCall {
        ToolCall {
            id: self.id_for(n),
            kind: "function".into(),
            function: FunctionCall { arguments: self.arguments(), name: self.name },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
}

impl UsageMetadata {
    /// `promptTokenCount` already includes cached tokens; tool-use prompt tokens
    /// (grounding results fed back) are input billed on top. Thoughts are output.
    fn to_usage(&self) -> Usage {
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        let prompt = self.prompt_token_count.unwrap_or(0) + self.tool_use_prompt_token_count.unwrap_or(0);
        let completion = self.candidates_token_count.unwrap_or(0) + thoughts;
        Usage::new(prompt, completion, self.cached_content_token_count.unwrap_or(0), 0, thoughts)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
    block_reason_message: Option<String>,
}

/// "prompt blocked by Gemini (SAFETY): ..." when the prompt was blocked.
fn blocked_reason(feedback: Option<&PromptFeedback>) -> Option<String> {
    let fb = feedback?;
    let reason = fb.block_reason.as_deref().filter(|r| !r.is_empty() && *r != "BLOCK_REASON_UNSPECIFIED")?;
    Some(match fb.block_reason_message.as_deref() {
        Some(m) if !m.is_empty() => format!("prompt blocked by Gemini ({reason}): {m}"),
        _ => format!("prompt blocked by Gemini ({reason})"),
    })
}

/// Parse one reply body; an `{error:{...}}` body with a 2xx status is an error too.
fn parse_chunk(body: &[u8], provider: &str) -> Result<GenResponse> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::invalid_response(provider, None, format!("the body is not JSON ({e}): {}", body_excerpt(body)))
    })?;
    if let Some(err) = error_object(&value) {
        let status = err.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
        return Err(map_error(provider, status, &HeaderMap::new(), err));
    }
    serde_json::from_value(value)
        .map_err(|e| Error::invalid_response(provider, None, format!("the body is not a GenerateContentResponse: {e}")))
}

/// Map Gemini's `finishReason`. `OTHER`, `LANGUAGE`, `TOO_MANY_TOOL_CALLS`, unknown
/// future values and the like read as `stop`: the reply is complete as far as it goes.
/// A malformed or unexpected function call is an error (`Err(message)`): the reply
/// carries no usable call, and `stop` would hide that.
fn map_finish(raw: &str, has_calls: bool, message: Option<&str>) -> std::result::Result<FinishReason, String> {
    Ok(match raw {
        "STOP" if has_calls => FinishReason::ToolCalls,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT" | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" => {
            return Err(format!(
                "finishReason {raw}: the model produced a function call that could not be used{}; retry, or simplify the tool schemas",
                message.map(|m| format!(" ({m})")).unwrap_or_default()
            ));
        }
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    })
}

fn generated_id() -> String {
    format!("gemini-{:016x}", rand::random::<u64>())
}

// ---------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------

/// The `error` object of `{error:{...}}` or of the array form `[{error:{...}}]`.
fn error_object(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(m) => m.get("error").filter(|e| e.is_object()),
        Value::Array(items) => items.iter().find_map(|i| i.get("error").filter(|e| e.is_object())),
        _ => None,
    }
}

fn map_error(provider: &str, status: u16, headers: &HeaderMap, err: &Value) -> Error {
    let code = err.get("status").and_then(Value::as_str);
    let raw = err.get("message").and_then(Value::as_str).unwrap_or("").trim();
    let message = match (code, raw.is_empty()) {
        (Some(c), false) => format!("{c}: {raw}"),
        (Some(c), true) => c.to_owned(),
        (None, false) => raw.to_owned(),
        (None, true) => format!("error without a message: {err}"),
    };
    let details = err.get("details").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    // Gemini answers a bad API key with 400 INVALID_ARGUMENT + ErrorInfo API_KEY_INVALID.
    let key_invalid = details.iter().any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        || raw.contains("API key not valid");
    if key_invalid && status == 400 {
        return Error::Auth { provider: provider.to_owned(), status, message };
    }
    match map_status(provider, status, headers, code, message) {
        Error::RateLimited { provider, retry_after: None, message } => {
            let retry_after = details.iter().find_map(retry_info_delay).or_else(|| retry_in_message(raw));
            Error::RateLimited { provider, retry_after, message }
        }
        other => other,
    }
}

/// `google.rpc.RetryInfo.retryDelay`, a protobuf Duration such as `"7s"` or `"45.83s"`.
fn retry_info_delay(detail: &Value) -> Option<Duration> {
    if !detail.get("@type").and_then(Value::as_str).is_some_and(|t| t.ends_with("google.rpc.RetryInfo")) {
        return None;
    }
    parse_seconds(detail.get("retryDelay")?.as_str()?.strip_suffix('s')?)
}

/// "... Please retry in 47.434392449s." (some quota errors carry the delay only here).
fn retry_in_message(message: &str) -> Option<Duration> {
    let rest = &message[message.find("retry in ")? + "retry in ".len()..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    if !rest[end..].starts_with('s') {
        return None;
    }
    parse_seconds(&rest[..end])
}

fn parse_seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().parse().ok()?;
    (secs.is_finite() && (0.0..=86_400.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

// ---------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------

/// Each SSE `data:` is a whole `GenerateContentResponse` holding the next piece of text
/// (or complete function calls); the chunk with `finishReason` ends a candidate, and
/// `usageMetadata` (repeated, the last one final) gives usage.
#[derive(Debug)]
struct GeminiStream {
    provider: String,
    model_id: String,
    created: u64,
    id: Option<String>,
    sent_role: BTreeSet<u32>,
    seen: BTreeSet<u32>,
    finished: BTreeSet<u32>,
    /// Function calls seen so far, per candidate index (for `call_<n>` and `tool_calls`).
    calls_per_candidate: Vec<(u32, usize)>,
    /// Tool-call delta index, an ordinal over the whole stream.
    next_call_index: u32,
    usage: Option<Usage>,
}

impl GeminiStream {
    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatChunk {
        let mut c = ChatChunk::empty(self.id.as_deref().unwrap_or(""), &self.model_id, self.created);
        c.choices = choices;
        c
    }

    fn calls_of(&mut self, index: u32) -> &mut usize {
        let pos = match self.calls_per_candidate.iter().position(|(i, _)| *i == index) {
            Some(p) => p,
            None => {
                self.calls_per_candidate.push((index, 0));
                self.calls_per_candidate.len() - 1
            }
        };
        &mut self.calls_per_candidate[pos].1
    }
}

impl StreamDecoder for GeminiStream {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<ChatChunk>> {
        let data = event.data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let resp = parse_chunk(data.as_bytes(), &self.provider)?;
        if self.id.is_none() {
            self.id = Some(resp.response_id.clone().unwrap_or_else(generated_id));
        }
        if let Some(u) = &resp.usage_metadata {
            self.usage = Some(u.to_usage());
        }
        let mut out = Vec::new();
        let candidates = resp.candidates.unwrap_or_default();
        if candidates.is_empty() {
            if blocked_reason(resp.prompt_feedback.as_ref()).is_some() && self.seen.insert(0) {
                self.finished.insert(0);
                self.sent_role.insert(0);
                out.push(self.chunk(vec![ChunkChoice {
                    index: 0,
                    delta: Delta { role: Some(Role::Assistant), ..Delta::default() },
                    finish_reason: Some(FinishReason::ContentFilter),
                }]));
            }
            return Ok(out);
        }
        for (pos, cand) in candidates.into_iter().enumerate() {
            let index = cand.index.unwrap_or(pos as u32);
            self.seen.insert(index);
            let mut delta = Delta::default();
            if self.sent_role.insert(index) {
                delta.role = Some(Role::Assistant);
            }
            for part in cand.content.and_then(|c| c.parts).unwrap_or_default() {
                if let Some(fc) = part.function_call {
                    let n = {
                        let calls = self.calls_of(index);
                        *calls += 1;
                        *calls - 1
                    };
                    delta.tool_calls.push(ToolCallDelta {
                        index: self.next_call_index,
                        id: Some(fc.id_for(n)),
                        kind: Some("function".into()),
                        function: FunctionCallDelta { arguments: Some(fc.arguments()), name: Some(fc.name) },
                    });
                    self.next_call_index += 1;
                } else if let Some(t) = part.text.filter(|t| !t.is_empty()) {
                    let slot = if part.thought == Some(true) { &mut delta.reasoning_content } else { &mut delta.content };
                    slot.get_or_insert_with(String::new).push_str(&t);
                }
            }
            if delta != Delta::default() {
                out.push(self.chunk(vec![ChunkChoice { index, delta, finish_reason: None }]));
            }
            if let Some(raw) = cand.finish_reason.as_deref() {
                let has_calls = *self.calls_of(index) > 0;
                let reason = map_finish(raw, has_calls, cand.finish_message.as_deref())
                    .map_err(|m| Error::invalid_response(&self.provider, None, m))?;
                self.finished.insert(index);
                out.push(self.chunk(vec![ChunkChoice { index, delta: Delta::default(), finish_reason: Some(reason) }]));
            }
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>> {
        if self.seen.is_empty() {
            return Err(Error::StreamInterrupted {
                provider: self.provider.clone(),
                message: "the stream ended before any candidate arrived (no finishReason)".into(),
            });
        }
        if let Some(open) = self.seen.difference(&self.finished).next() {
            return Err(Error::StreamInterrupted {
                provider: self.provider.clone(),
                message: format!("the stream ended before candidate {open} sent a finishReason"),
            });
        }
        let usage = self.usage.unwrap_or_else(|| {
            // Gemini always sends usageMetadata; report zero rather than fail a complete answer.
            tracing::warn!(provider = %self.provider, "Gemini stream finished without usageMetadata; reporting zero usage");
            Usage::default()
        });
        let mut last = self.chunk(Vec::new());
        last.usage = Some(usage);
        Ok(vec![last])
    }
}
