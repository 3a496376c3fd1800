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
//! - Gemini 3+ models get Google's placeholder `thoughtSignature` on replayed function
//!   calls (see `needs_thought_signature`); the real signature is not kept.
//! - Gemini has no tool-call ids on older models: a call without `functionCall.id` gets
//!   the deterministic id `call_<n>` (`n` = its ordinal in the reply, from 0), the same
//!   in streamed and non-streamed replies.

use std::collections::BTreeSet;
use std::time::Duration;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::adapter::{Adapter, HttpCall, StreamDecoder, Target, map_status, now_unix};
use gaterouter_types::error::{Error, Result};
use gaterouter_types::http_reply::body_excerpt;
use gaterouter_types::sse::SseEvent;
use gaterouter_types::types::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Content,
    ContentPart, Delta, FinishReason, FunctionCall, FunctionCallDelta, ImageRef, NotBase64DataUrl,
    ResponseFormat, Role, ToolCall, ToolCallDelta, ToolChoice, Usage,
};

/// The Gemini wire format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

impl Adapter for Gemini {
    fn build_request(&self, req: &ChatRequest, target: &Target, stream: bool) -> Result<HttpCall> {
        let model = target
            .model
            .strip_prefix("models/")
            .unwrap_or(&target.model);
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
        Ok(HttpCall {
            url,
            headers,
            body: build_body(req, model)?,
        })
    }

    fn parse_response(&self, body: &[u8], target: &Target) -> Result<ChatResponse> {
        let provider = target.provider_name();
        let resp = parse_chunk(body, provider)?;
        let id = resp.response_id.clone().unwrap_or_else(generated_id);
        let usage = resp
            .usage_metadata
            .as_ref()
            .map(UsageMetadata::to_usage)
            .unwrap_or_default();
        let candidates = resp.candidates.unwrap_or_default();
        if candidates.is_empty() {
            let reason = blocked_reason(resp.prompt_feedback.as_ref()).ok_or_else(|| {
                Error::invalid_response(
                    provider,
                    None,
                    "the reply has neither candidates nor promptFeedback.blockReason",
                )
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
                cost: None,
                route: None,
                usage_record_id: None,
                shadow: None,
                shadow_error: None,
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
                    let slot = if part.thought == Some(true) {
                        &mut reasoning
                    } else {
                        &mut text
                    };
                    slot.get_or_insert_with(String::new).push_str(&t);
                }
            }
            let finish = match cand.finish_reason.as_deref() {
                Some(raw) => {
                    map_finish(raw, !tool_calls.is_empty(), cand.finish_message.as_deref())
                        .map_err(|m| Error::invalid_response(provider, None, m))?
                }
                // A complete non-streamed reply always has one; be lenient if not.
                None if !tool_calls.is_empty() => FinishReason::ToolCalls,
                None => FinishReason::Stop,
            };
            choices.push(Choice {
                index: cand.index.unwrap_or(pos as u32),
                message: AssistantMessage {
                    role: Role::Assistant,
                    content: text,
                    tool_calls,
                    reasoning_content: reasoning,
                    refusal: None,
                },
                finish_reason: finish,
            });
        }
        Ok(ChatResponse {
            id,
            object: "chat.completion".into(),
            created: now_unix(),
            model: target.model_id.clone(),
            choices,
            usage,
            cost: None,
            route: None,
            usage_record_id: None,
            shadow: None,
            shadow_error: None,
        })
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8], target: &Target) -> Error {
        let provider = target.provider_name();
        match serde_json::from_slice::<Value>(body)
            .ok()
            .as_ref()
            .and_then(error_object)
        {
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
    Error::InvalidRequest {
        field: Some(field),
        message,
    }
}

fn build_body(req: &ChatRequest, model: &str) -> Result<Value> {
    let mut body = Map::new();
    body.insert(
        "contents".into(),
        Value::Array(build_contents(req, needs_thought_signature(model))?),
    );
    if let Some(system) = req.system_text() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
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
                    && cleaned
                        .get("properties")
                        .is_none_or(|p| p.as_object().is_none_or(Map::is_empty));
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
                ToolChoice::Function(name) => {
                    json!({"mode": "ANY", "allowedFunctionNames": [name]})
                }
            };
            body.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": config}),
            );
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
        let seed = i32::try_from(seed).map_err(|_| {
            invalid(
                "seed".into(),
                format!(
                    "seed {seed} does not fit Gemini's 32-bit seed: use a value between {} and {}",
                    i32::MIN,
                    i32::MAX
                ),
            )
        })?;
        config.insert("seed".into(), json!(seed));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert(
                "responseSchema".into(),
                clean_schema(&json_schema.schema, "response_format.json_schema.schema")?,
            );
        }
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// `contents[]`: user/model turns, consecutive same-role turns merged (Gemini wants
/// them alternating; tool results and a following user message share one `user` turn).
fn build_contents(req: &ChatRequest, sign_calls: bool) -> Result<Vec<Value>> {
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
                    let mut part =
                        json!({"functionCall": {"name": tc.function.name, "args": args}});
                    if sign_calls && j == 0 {
                        part["thoughtSignature"] = json!(SKIP_SIGNATURE);
                    }
                    parts.push(part);
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
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
        };
        match turns.last_mut() {
            Some((last_role, last_parts)) if *last_role == role => last_parts.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    if turns.is_empty() {
        return Err(invalid(
            "messages".into(),
            "messages holds only system messages: Gemini needs at least one user message".into(),
        ));
    }
    Ok(turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect())
}

/// Google's documented placeholder for a `thoughtSignature` we cannot replay.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Gemini 3 and later refuse (400 "Function call is missing a thought_signature") a
/// replayed model turn whose first `functionCall` part lacks the signature the model
/// attached to it. Our `ToolCall` has no field to carry the real signature, so for those
/// models the first call of each assistant message gets Google's documented placeholder,
/// which the API accepts (possibly with slightly weaker reasoning continuity). Older
/// models do not check and get no signature.
fn needs_thought_signature(model: &str) -> bool {
    let Some(rest) = model.strip_prefix("gemini-") else {
        return false;
    };
    let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|m| m >= 3)
}

fn content_parts(content: Option<&Content>, i: usize) -> Result<Vec<Value>> {
    let Some(content) = content else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (k, part) in content.parts().into_iter().enumerate() {
        match part {
            ContentPart::Text { text } => out.push(json!({"text": text})),
            ContentPart::ImageUrl { image_url } => out.push(image_part(
                &image_url.url,
                &format!("messages[{i}].content[{k}].image_url.url"),
            )?),
        }
    }
    Ok(out)
}

/// `data:` URLs become `inlineData`, remote URLs `fileData` (MIME type guessed from the
/// extension, `image/jpeg` when there is none that we know).
fn image_part(url: &str, field: &str) -> Result<Value> {
    match ImageRef::parse(url) {
        Ok(ImageRef::Base64 { media_type, data }) => {
            return Ok(json!({"inlineData": {"mimeType": media_type, "data": data}}));
        }
        Err(NotBase64DataUrl) => {
            return Err(invalid(
                field.to_owned(),
                format!("{field} is not a base64 data URL: use `data:<mime type>;base64,<data>`"),
            ));
        }
        Ok(ImageRef::Url(_)) => {}
    }
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://")
        || lower.starts_with("http://")
        || lower.starts_with("gs://"))
    {
        return Err(invalid(
            field.to_owned(),
            format!("{field} must be an http(s):// URL or a `data:<mime>;base64,...` URL"),
        ));
    }
    let path = lower.split(['?', '#']).next().unwrap_or("");
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.contains('/'))
        .unwrap_or("");
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
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
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
/// - an empty `properties` map is dropped; unknown keys are dropped (see `SCHEMA_KEYS`).
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
            return Err(invalid(
                field.to_owned(),
                format!(
                    "{field}: `$ref` `{r}` nests deeper than {MAX_REF_DEPTH} levels (a recursive schema?): Gemini's schema format cannot express recursion, flatten the schema"
                ),
            ));
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
        if let (Value::Object(res), Value::Object(sib)) = (
            &mut resolved,
            clean_node(&Value::Object(siblings), root, field, depth)?,
        ) {
            for (k, v) in sib {
                res.insert(k, v);
            }
        }
        return Ok(resolved);
    }
    let mut out = Map::new();
    let mut nullable = obj
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
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
                if branch.get("type").and_then(Value::as_str) == Some("null")
                    && branch.as_object().is_some_and(|m| m.len() == 1)
                {
                    nullable = true;
                    continue;
                }
                any_of.push(clean_node(
                    branch,
                    root,
                    &format!("{field}.{key}[{b}]"),
                    depth,
                )?);
            }
        }
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        if let [only] = all.as_slice() {
            if let Value::Object(merged) =
                clean_node(only, root, &format!("{field}.allOf[0]"), depth)?
            {
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
                        cleaned.insert(
                            name.clone(),
                            clean_node(sub, root, &format!("{field}.properties.{name}"), depth)?,
                        );
                    }
                    out.insert("properties".into(), Value::Object(cleaned));
                }
            }
            "items" => {
                out.insert(
                    "items".into(),
                    clean_node(value, root, &format!("{field}.items"), depth)?,
                );
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
                // `out["type"]` is already the Gemini type (also for `["string","null"]`).
                let keep = match out.get("type").and_then(Value::as_str) {
                    Some("STRING") => matches!(value.as_str(), Some("enum" | "date-time")),
                    Some("INTEGER" | "NUMBER") => {
                        matches!(value.as_str(), Some("int32" | "int64" | "float" | "double"))
                    }
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
        self.id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("call_{n}"))
    }

    fn arguments(&self) -> String {
        self.args
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_else(|| "{}".to_owned())
    }

    fn into_tool_call(self, n: usize) -> ToolCall {
        ToolCall {
            id: self.id_for(n),
            kind: "function".into(),
            function: FunctionCall {
                arguments: self.arguments(),
                name: self.name,
            },
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
        let prompt =
            self.prompt_token_count.unwrap_or(0) + self.tool_use_prompt_token_count.unwrap_or(0);
        let completion = self.candidates_token_count.unwrap_or(0) + thoughts;
        Usage::new(
            prompt,
            completion,
            self.cached_content_token_count.unwrap_or(0),
            0,
            thoughts,
        )
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
    let reason = fb
        .block_reason
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "BLOCK_REASON_UNSPECIFIED")?;
    Some(match fb.block_reason_message.as_deref() {
        Some(m) if !m.is_empty() => format!("prompt blocked by Gemini ({reason}): {m}"),
        _ => format!("prompt blocked by Gemini ({reason})"),
    })
}

/// Parse one reply body; an `{error:{...}}` body with a 2xx status is an error too.
fn parse_chunk(body: &[u8], provider: &str) -> Result<GenResponse> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::invalid_response(
            provider,
            None,
            format!("the body is not JSON ({e}): {}", body_excerpt(body)),
        )
    })?;
    if let Some(err) = error_object(&value) {
        let status = err
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(500);
        return Err(map_error(provider, status, &HeaderMap::new(), err));
    }
    serde_json::from_value(value).map_err(|e| {
        Error::invalid_response(
            provider,
            None,
            format!("the body is not a GenerateContentResponse: {e}"),
        )
    })
}

/// Map Gemini's `finishReason`. `OTHER`, `LANGUAGE`, `TOO_MANY_TOOL_CALLS`, unknown
/// future values and the like read as `stop` (or `tool_calls` when the reply carries
/// calls, so the caller runs them): the reply is complete as far as it goes.
/// A malformed or unexpected function call is an error (`Err(message)`): the reply
/// carries no usable call, and `stop` would hide that.
fn map_finish(
    raw: &str,
    has_calls: bool,
    message: Option<&str>,
) -> std::result::Result<FinishReason, String> {
    Ok(match raw {
        "STOP" if has_calls => FinishReason::ToolCalls,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
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
        Value::Array(items) => items
            .iter()
            .find_map(|i| i.get("error").filter(|e| e.is_object())),
        _ => None,
    }
}

fn map_error(provider: &str, status: u16, headers: &HeaderMap, err: &Value) -> Error {
    let code = err.get("status").and_then(Value::as_str);
    let raw = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let message = match (code, raw.is_empty()) {
        (Some(c), false) => format!("{c}: {raw}"),
        (Some(c), true) => c.to_owned(),
        (None, false) => raw.to_owned(),
        (None, true) => format!("error without a message: {err}"),
    };
    let details = err
        .get("details")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // Gemini answers a bad API key with 400 INVALID_ARGUMENT + ErrorInfo API_KEY_INVALID.
    let key_invalid = details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        || raw.contains("API key not valid");
    if key_invalid && status == 400 {
        return Error::Auth {
            provider: provider.to_owned(),
            status,
            message,
        };
    }
    match map_status(provider, status, headers, code, message) {
        Error::RateLimited {
            provider,
            retry_after: None,
            message,
        } => {
            let retry_after = details
                .iter()
                .find_map(retry_info_delay)
                .or_else(|| retry_in_message(raw));
            Error::RateLimited {
                provider,
                retry_after,
                message,
            }
        }
        other => other,
    }
}

/// `google.rpc.RetryInfo.retryDelay`, a protobuf Duration such as `"7s"` or `"45.83s"`.
fn retry_info_delay(detail: &Value) -> Option<Duration> {
    if !detail
        .get("@type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
    {
        return None;
    }
    parse_seconds(detail.get("retryDelay")?.as_str()?.strip_suffix('s')?)
}

/// "... Please retry in 47.434392449s." (some quota errors carry the delay only here).
fn retry_in_message(message: &str) -> Option<Duration> {
    let rest = &message[message.find("retry in ")? + "retry in ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
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
        let mut c = ChatChunk::empty(
            self.id.as_deref().unwrap_or(""),
            &self.model_id,
            self.created,
        );
        c.choices = choices;
        c
    }

    fn calls_of(&mut self, index: u32) -> &mut usize {
        let pos = match self
            .calls_per_candidate
            .iter()
            .position(|(i, _)| *i == index)
        {
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
                    delta: Delta {
                        role: Some(Role::Assistant),
                        ..Delta::default()
                    },
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
                        function: FunctionCallDelta {
                            arguments: Some(fc.arguments()),
                            name: Some(fc.name),
                        },
                    });
                    self.next_call_index += 1;
                } else if let Some(t) = part.text.filter(|t| !t.is_empty()) {
                    let slot = if part.thought == Some(true) {
                        &mut delta.reasoning_content
                    } else {
                        &mut delta.content
                    };
                    slot.get_or_insert_with(String::new).push_str(&t);
                }
            }
            if delta != Delta::default() {
                out.push(self.chunk(vec![ChunkChoice {
                    index,
                    delta,
                    finish_reason: None,
                }]));
            }
            if let Some(raw) = cand.finish_reason.as_deref() {
                let has_calls = *self.calls_of(index) > 0;
                let reason = map_finish(raw, has_calls, cand.finish_message.as_deref())
                    .map_err(|m| Error::invalid_response(&self.provider, None, m))?;
                self.finished.insert(index);
                out.push(self.chunk(vec![ChunkChoice {
                    index,
                    delta: Delta::default(),
                    finish_reason: Some(reason),
                }]));
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::resolved::{ProviderKind, ResolvedProvider};
    use gaterouter_types::ErrorKind;
    use gaterouter_types::secret::Secret;
    use gaterouter_types::sse::SseParser;
    use gaterouter_types::stream::StreamAccumulator;
    use gaterouter_types::types::Message;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/gemini/", $name))
        };
    }

    fn target() -> Target {
        Target {
            provider: ResolvedProvider {
                name: "gemini".into(),
                kind: ProviderKind::Gemini,
                base_url: "https://generativelanguage.googleapis.com/v1beta".into(),
                api_key: None,
                api_key_env: None,
                headers: BTreeMap::new(),
                api_version: String::new(),
                request_timeout: Duration::from_secs(60),
            },
            model: "gemini-2.5-flash".into(),
            model_id: "gemini/gemini-2.5-flash".into(),
            api_key: Some(Secret::new("test-key")),
        }
    }

    fn header<'a>(call: &'a HttpCall, name: &str) -> Vec<&'a str> {
        call.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    // ----- request -------------------------------------------------------------

    #[test]
    fn rich_request_matches_golden_body() {
        let req = ChatRequest::from_json(fixture!("request_rich_input.json"))
            .expect("fixture request is valid");
        let call = Gemini
            .build_request(&req, &target(), false)
            .expect("builds");
        let expected: Value =
            serde_json::from_str(fixture!("request_rich_expected.json")).expect("golden JSON");
        assert_eq!(
            call.body,
            expected,
            "got:\n{}",
            serde_json::to_string_pretty(&call.body).unwrap_or_default()
        );
        assert_eq!(
            call.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(header(&call, "x-goog-api-key"), ["test-key"]);
        assert_eq!(header(&call, "content-type"), ["application/json"]);
    }

    #[test]
    fn streaming_url_keeps_the_configured_version_and_headers() {
        let mut t = target();
        t.provider.base_url = "http://127.0.0.1:9/gemini/v1/".into();
        t.model = "models/gemini-2.5-pro".into();
        t.provider.headers.insert("X-Proxy-Tag".into(), "a".into());
        t.provider.headers.insert(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        );
        let call = Gemini
            .build_request(
                &ChatRequest::new("gemini/x", vec![Message::user("hi")]),
                &t,
                true,
            )
            .expect("builds");
        assert_eq!(
            call.url,
            "http://127.0.0.1:9/gemini/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert_eq!(header(&call, "x-proxy-tag"), ["a"]);
        assert_eq!(
            header(&call, "content-type"),
            ["application/json; charset=utf-8"],
            "configured header replaces ours"
        );
        t.api_key = None;
        let call = Gemini
            .build_request(
                &ChatRequest::new("gemini/x", vec![Message::user("hi")]),
                &t,
                false,
            )
            .expect("builds");
        assert!(header(&call, "x-goog-api-key").is_empty());
        assert!(
            call.url
                .ends_with("/v1/models/gemini-2.5-pro:generateContent")
        );
    }

    #[test]
    fn minimal_request_omits_empty_objects() {
        let call = Gemini
            .build_request(
                &ChatRequest::new("gemini/x", vec![Message::user("hi")]),
                &target(),
                false,
            )
            .expect("builds");
        assert_eq!(
            call.body,
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        );
    }

    #[test]
    fn tool_choice_and_json_object_mapping() {
        let tool = gaterouter_types::types::Tool::function(
            "lookup",
            "Look up",
            json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        );
        let no_args = gaterouter_types::types::Tool::function(
            "ping",
            "Ping",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        );
        for (choice, expected) in [
            (ToolChoice::Auto, json!({"mode": "AUTO"})),
            (ToolChoice::None, json!({"mode": "NONE"})),
            (ToolChoice::Required, json!({"mode": "ANY"})),
            (
                ToolChoice::Function("lookup".into()),
                json!({"mode": "ANY", "allowedFunctionNames": ["lookup"]}),
            ),
        ] {
            let mut req = ChatRequest::new("gemini/x", vec![Message::user("hi")]);
            req.tools = vec![tool.clone(), no_args.clone()];
            req.tool_choice = Some(choice);
            req.response_format = Some(ResponseFormat::JsonObject);
            let body = Gemini
                .build_request(&req, &target(), false)
                .expect("builds")
                .body;
            assert_eq!(body["toolConfig"]["functionCallingConfig"], expected);
            assert_eq!(
                body["generationConfig"],
                json!({"responseMimeType": "application/json"})
            );
            // A function without arguments has no `parameters` (Gemini refuses an empty OBJECT).
            assert_eq!(
                body["tools"][0]["functionDeclarations"][1],
                json!({"name": "ping", "description": "Ping"})
            );
        }
    }

    #[test]
    fn invalid_tool_arguments_name_the_field() {
        let mut bad = Message::assistant_tool_calls(vec![ToolCall {
            id: "c1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "f".into(),
                arguments: "{not json".into(),
            },
        }]);
        bad.content = None;
        let req = ChatRequest::new("gemini/x", vec![Message::user("hi"), bad]);
        let err = Gemini
            .build_request(&req, &target(), false)
            .expect_err("must fail");
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(
            matches!(&err, Error::InvalidRequest { field: Some(f), .. } if f == "messages[1].tool_calls[0].function.arguments"),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_tool_call_id_names_the_field() {
        let req = ChatRequest::new(
            "gemini/x",
            vec![Message::user("hi"), Message::tool("nope", "42")],
        );
        let err = Gemini
            .build_request(&req, &target(), false)
            .expect_err("must fail");
        assert!(
            matches!(&err, Error::InvalidRequest { field: Some(f), .. } if f == "messages[1].tool_call_id"),
            "{err:?}"
        );
        // A result that answers a *later* call does not count either.
        let call = ToolCall {
            id: "c1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "f".into(),
                arguments: "{}".into(),
            },
        };
        let req = ChatRequest::new(
            "gemini/x",
            vec![
                Message::user("hi"),
                Message::tool("c1", "x"),
                Message::assistant_tool_calls(vec![call]),
            ],
        );
        assert!(Gemini.build_request(&req, &target(), false).is_err());
    }

    #[test]
    fn repeated_ids_resolve_to_the_nearest_earlier_call() {
        // Gemini's generated ids (`call_0`) repeat across turns: the latest call wins.
        let call = |name: &str| ToolCall {
            id: "call_0".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: "{}".into(),
            },
        };
        let req = ChatRequest::new(
            "gemini/x",
            vec![
                Message::user("hi"),
                Message::assistant_tool_calls(vec![call("first")]),
                Message::tool("call_0", "1"),
                Message::assistant_tool_calls(vec![call("second")]),
                Message::tool("call_0", "2"),
            ],
        );
        let body = Gemini
            .build_request(&req, &target(), false)
            .expect("builds")
            .body;
        assert_eq!(
            body["contents"][2]["parts"][0]["functionResponse"]["name"],
            "first"
        );
        assert_eq!(
            body["contents"][4]["parts"][0]["functionResponse"]["name"],
            "second"
        );
    }

    #[test]
    fn gemini_3_tool_calls_carry_the_placeholder_signature() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "f".into(),
                arguments: "{}".into(),
            },
        };
        let req = ChatRequest::new(
            "gemini/x",
            vec![
                Message::user("hi"),
                Message::assistant_tool_calls(vec![call("a"), call("b")]),
                Message::tool("a", "1"),
                Message::tool("b", "2"),
            ],
        );
        for (model, signed) in [
            ("gemini-3-pro-preview", true),
            ("gemini-3.1-flash", true),
            ("gemini-10-ultra", true),
            ("gemini-2.5-flash", false),
            ("gemma-3-27b-it", false),
        ] {
            let mut t = target();
            t.model = model.into();
            let body = Gemini.build_request(&req, &t, false).expect("builds").body;
            let parts = &body["contents"][1]["parts"];
            let expected = if signed {
                json!(SKIP_SIGNATURE)
            } else {
                Value::Null
            };
            assert_eq!(parts[0]["thoughtSignature"], expected, "{model}");
            // Parallel calls: only the first part carries a signature.
            assert_eq!(parts[1]["thoughtSignature"], Value::Null, "{model}");
        }
    }

    #[test]
    fn bad_image_urls_and_seed_are_rejected() {
        for url in [
            "data:image/png,rawbytes",
            "ftp://x/y.png",
            "data:;base64,AAAA",
        ] {
            let msg = Message::user(Content::Parts(vec![ContentPart::ImageUrl {
                image_url: gaterouter_types::types::ImageUrl {
                    url: url.into(),
                    detail: Default::default(),
                },
            }]));
            let err = Gemini
                .build_request(&ChatRequest::new("gemini/x", vec![msg]), &target(), false)
                .expect_err("must fail");
            assert!(
                matches!(&err, Error::InvalidRequest { field: Some(f), .. } if f == "messages[0].content[0].image_url.url"),
                "{url}: {err:?}"
            );
        }
        let mut req = ChatRequest::new("gemini/x", vec![Message::user("hi")]);
        req.seed = Some(1 << 40);
        assert!(
            matches!(Gemini.build_request(&req, &target(), false), Err(Error::InvalidRequest { field: Some(f), .. }) if f == "seed")
        );
        let only_system = ChatRequest::new("gemini/x", vec![Message::system("be brief")]);
        assert_eq!(
            Gemini
                .build_request(&only_system, &target(), false)
                .expect_err("must fail")
                .kind(),
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn image_mime_types_are_guessed_from_the_extension() {
        for (url, mime) in [
            ("https://x/a.PNG", "image/png"),
            ("https://x/a.gif#frag", "image/gif"),
            ("https://x/a.jpeg", "image/jpeg"),
            ("https://x.com/no-extension", "image/jpeg"),
            ("https://x/doc.pdf?dl=1", "application/pdf"),
        ] {
            assert_eq!(
                image_part(url, "f").expect("ok")["fileData"]["mimeType"],
                mime,
                "{url}"
            );
        }
    }

    #[test]
    fn schema_cleaning_inlines_refs_and_drops_unsupported_keys() {
        // What pydantic emits for a model with an optional nested model and a literal.
        let schema = json!({
            "$defs": {"Address": {"type": "object", "title": "Address", "properties": {"street": {"type": "string", "format": "email"}}, "additionalProperties": false}},
            "type": "object",
            "properties": {
                "home": {"allOf": [{"$ref": "#/$defs/Address"}], "description": "Home address"},
                "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": null},
                "kind": {"const": "person"},
                "count": {"type": "integer", "enum": [1, 2], "format": "int32", "examples": [1]},
                "strict": {"type": "boolean"},
                "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
            },
            "patternProperties": {"^x-": {}},
            "required": ["home"]
        });
        let cleaned = clean_schema(&schema, "tools[0].function.parameters").expect("cleans");
        let address = json!({"type": "OBJECT", "title": "Address", "properties": {"street": {"type": "STRING"}}});
        let mut home = address.clone();
        home["description"] = json!("Home address");
        let mut work = address.clone();
        work["default"] = Value::Null;
        work["nullable"] = json!(true);
        assert_eq!(
            cleaned,
            json!({
                "type": "OBJECT",
                "properties": {
                    "home": home,
                    "work": work,
                    "kind": {"enum": ["person"]},
                    "count": {"type": "INTEGER", "format": "int32", "description": "Allowed values: 1, 2."},
                    "strict": {"type": "BOOLEAN"},
                    "id": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}
                },
                "required": ["home"]
            })
        );
    }

    #[test]
    fn recursive_or_foreign_refs_are_request_errors() {
        let recursive = json!({"$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}, "$ref": "#/$defs/Node"});
        let err =
            clean_schema(&recursive, "response_format.json_schema.schema").expect_err("must fail");
        assert!(
            matches!(&err, Error::InvalidRequest { field: Some(f), .. } if f.starts_with("response_format.json_schema.schema")),
            "{err:?}"
        );
        let foreign = json!({"$ref": "https://example.com/schema.json"});
        assert!(clean_schema(&foreign, "x").is_err());
    }

    // ----- response ------------------------------------------------------------

    fn parse(body: &str) -> Result<ChatResponse> {
        Gemini.parse_response(body.as_bytes(), &target())
    }

    #[test]
    fn parses_a_text_reply() {
        let r = parse(fixture!("response_text.json")).expect("parses");
        assert_eq!(r.id, "mM8rZ5OXL8Wi1dkP6Y7bqQo");
        assert_eq!(r.model, "gemini/gemini-2.5-flash");
        assert_eq!(r.object, "chat.completion");
        assert_eq!(r.text(), "The capital of France is Paris.");
        assert_eq!(r.finish_reason(), Some(FinishReason::Stop));
        assert_eq!(r.usage, Usage::new(9, 8, 0, 0, 0));
        assert!(r.choices[0].message.reasoning_content.is_none());
    }

    #[test]
    fn parses_parallel_function_calls() {
        let r = parse(fixture!("response_function_call.json")).expect("parses");
        assert_eq!(r.finish_reason(), Some(FinishReason::ToolCalls));
        assert_eq!(r.choices[0].message.content, None);
        let calls = r.tool_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].function.name.as_str()),
            ("call_0", "get_weather")
        );
        assert_eq!(
            calls[0].function.arguments,
            r#"{"city":"Paris","unit":"celsius"}"#
        );
        assert_eq!(
            (calls[1].id.as_str(), calls[1].function.arguments.as_str()),
            ("call_1", r#"{"timezone":"Europe/Paris"}"#)
        );
        assert_eq!(r.usage.total_tokens, 105);
        // A provider-assigned id is kept.
        let with_id = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"id":"fc-9","name":"f"}}]},"finishReason":"STOP"}]}"#;
        let r = parse(with_id).expect("parses");
        assert_eq!(
            (
                r.tool_calls()[0].id.as_str(),
                r.tool_calls()[0].function.arguments.as_str()
            ),
            ("fc-9", "{}")
        );
        assert!(
            !r.id.is_empty(),
            "an id is generated when responseId is absent"
        );
    }

    #[test]
    fn thoughts_go_to_reasoning_and_count_as_output() {
        let r = parse(fixture!("response_thinking.json")).expect("parses");
        assert_eq!(r.text(), "17 + 25 = 42.");
        assert!(
            r.choices[0]
                .message
                .reasoning_content
                .as_deref()
                .is_some_and(|t| t.starts_with("**Evaluating the sum**"))
        );
        assert_eq!(
            r.usage,
            Usage {
                prompt_tokens: 12,
                completion_tokens: 129,
                total_tokens: 141,
                cached_prompt_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 120
            }
        );
    }

    #[test]
    fn cached_tokens_are_part_of_the_prompt() {
        let r = parse(fixture!("response_cached.json")).expect("parses");
        assert_eq!(r.finish_reason(), Some(FinishReason::Length));
        assert_eq!(r.usage, Usage::new(4160, 6, 4096, 0, 0));
        let tool_use = r#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":100,"toolUsePromptTokenCount":30,"candidatesTokenCount":5,"totalTokenCount":135}}"#;
        assert_eq!(
            parse(tool_use).expect("parses").usage,
            Usage::new(130, 5, 0, 0, 0)
        );
    }

    #[test]
    fn a_blocked_prompt_is_a_content_filter_reply() {
        let r = parse(fixture!("response_blocked.json")).expect("parses");
        assert_eq!(r.finish_reason(), Some(FinishReason::ContentFilter));
        assert_eq!(r.choices[0].message.content, None);
        assert!(r.tool_calls().is_empty());
        assert!(
            r.choices[0]
                .message
                .refusal
                .as_deref()
                .is_some_and(|m| m.contains("SAFETY"))
        );
        assert_eq!(r.usage, Usage::new(14, 0, 0, 0, 0));
    }

    #[test]
    fn finish_reason_table() {
        let table = [
            ("STOP", false, Some(FinishReason::Stop)),
            ("STOP", true, Some(FinishReason::ToolCalls)),
            ("MAX_TOKENS", false, Some(FinishReason::Length)),
            ("MAX_TOKENS", true, Some(FinishReason::Length)),
            ("SAFETY", false, Some(FinishReason::ContentFilter)),
            ("RECITATION", false, Some(FinishReason::ContentFilter)),
            ("BLOCKLIST", false, Some(FinishReason::ContentFilter)),
            (
                "PROHIBITED_CONTENT",
                false,
                Some(FinishReason::ContentFilter),
            ),
            ("SPII", false, Some(FinishReason::ContentFilter)),
            ("IMAGE_SAFETY", false, Some(FinishReason::ContentFilter)),
            ("OTHER", false, Some(FinishReason::Stop)),
            ("LANGUAGE", false, Some(FinishReason::Stop)),
            ("FINISH_REASON_UNSPECIFIED", false, Some(FinishReason::Stop)),
            ("SOMETHING_NEW", false, Some(FinishReason::Stop)),
            ("MALFORMED_FUNCTION_CALL", false, None),
            ("UNEXPECTED_TOOL_CALL", false, None),
        ];
        for (raw, calls, expected) in table {
            assert_eq!(
                map_finish(raw, calls, None).ok(),
                expected,
                "{raw} (calls: {calls})"
            );
            // The same through a whole reply.
            let part = if calls {
                r#"{"functionCall":{"name":"f","args":{}}}"#
            } else {
                r#"{"text":"x"}"#
            };
            let body = format!(
                r#"{{"candidates":[{{"content":{{"role":"model","parts":[{part}]}},"finishReason":"{raw}"}}]}}"#
            );
            match (parse(&body), expected) {
                (Ok(r), Some(e)) => assert_eq!(r.finish_reason(), Some(e), "{raw}"),
                (Err(e), None) => assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{raw}"),
                (got, _) => panic!("{raw}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn malformed_bodies_are_invalid_responses() {
        for body in [
            "",
            "not json",
            "<html><title>OK</title></html>",
            r#"{"candidates": 5}"#,
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"args":{}}}]}}]}"#,
            "{}",
            "[1,2]",
        ] {
            let err = parse(body).expect_err("must fail");
            assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{body}: {err}");
        }
        // An error object with a 200 status is still the error it describes.
        let err = parse(
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        )
        .expect_err("must fail");
        assert_eq!(err.kind(), ErrorKind::ProviderUnavailable);
    }

    // ----- errors --------------------------------------------------------------

    fn error_for(status: u16, headers: &[(&'static str, &str)], body: &str) -> Error {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().expect("header value"));
        }
        Gemini.parse_error(status, &h, body.as_bytes(), &target())
    }

    #[test]
    fn error_mapping() {
        let e = error_for(
            400,
            &[],
            r#"{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified\n","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(
            e.to_string()
                .contains("INVALID_ARGUMENT: * GenerateContentRequest.contents"),
            "{e}"
        );

        let e = error_for(
            400,
            &[],
            r#"{"error":{"code":400,"message":"The input token count (1250000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::ContextLengthExceeded, "{e}");

        let e = error_for(
            400,
            &[],
            r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
            "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Auth, "{e}");

        let e = error_for(
            403,
            &[],
            r#"{"error":{"code":403,"message":"Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert_eq!(e.status(), Some(403));

        let rate = r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10\nPlease retry in 7.321093s.","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                       {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                       {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}]}}"#;
        let e = error_for(429, &[], rate);
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        // A retry-after header wins over the body.
        assert_eq!(
            error_for(429, &[("retry-after", "2")], rate).retry_after(),
            Some(Duration::from_secs(2))
        );
        // Without RetryInfo the "Please retry in Xs" sentence is used.
        let e = error_for(
            429,
            &[],
            r#"{"error":{"code":429,"message":"Quota exceeded. Please retry in 1.5s.","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        let e = error_for(
            429,
            &[],
            r#"{"error":{"code":429,"message":"Resource exhausted. Please try again later.","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!((e.kind(), e.retry_after()), (ErrorKind::RateLimited, None));

        let e = error_for(
            500,
            &[],
            r#"{"error":{"code":500,"message":"An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting","status":"INTERNAL"}}"#,
        );
        assert_eq!(
            (e.kind(), e.status()),
            (ErrorKind::ProviderUnavailable, Some(500))
        );
        let e = error_for(
            503,
            &[],
            r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        );
        assert_eq!(
            (e.kind(), e.status()),
            (ErrorKind::ProviderUnavailable, Some(503))
        );
        assert!(e.to_string().contains("overloaded"));

        let e = error_for(
            502,
            &[],
            "<!DOCTYPE html>\n<html lang=en><head><title>Error 502 (Server Error)!!1</title></head><body>That's an error.</body></html>",
        );
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        assert!(
            e.to_string().contains("HTML page") && e.to_string().contains("Error 502"),
            "{e}"
        );
        let e = error_for(404, &[], "<html><title>404 Not Found</title></html>");
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);

        let e = error_for(
            429,
            &[],
            r#"[{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37.5s"}]}}]"#,
        );
        assert_eq!(
            (e.kind(), e.retry_after()),
            (ErrorKind::RateLimited, Some(Duration::from_millis(37_500)))
        );
        assert!(e.to_string().contains("Resource has been exhausted"));

        let e = error_for(
            404,
            &[],
            r#"{"error":{"code":404,"message":"models/gemini-9 is not found for API version v1beta, or is not supported for generateContent.","status":"NOT_FOUND"}}"#,
        );
        assert_eq!(
            (e.kind(), e.status()),
            (ErrorKind::InvalidRequest, Some(404))
        );
        // JSON that is not an error object still yields a readable message.
        let e = error_for(500, &[], r#"{"unexpected":true}"#);
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
    }

    proptest::proptest! {
        /// Damaged provider output never panics, whatever the damage.
        #[test]
        fn damaged_bodies_never_panic(which in 0usize..7, at in 0usize..4096, junk in "[\\x00-\\x7f\\u{e9}\\u{1f30d}]{0,8}", cut in proptest::prelude::any::<bool>()) {
            let fixtures = [
                fixture!("response_text.json"), fixture!("response_function_call.json"), fixture!("response_thinking.json"),
                fixture!("response_cached.json"), fixture!("response_blocked.json"), fixture!("stream_text.sse"), fixture!("stream_tool_call.sse"),
            ];
            let src = fixtures[which];
            let mut at = at % (src.len() + 1);
            while !src.is_char_boundary(at) { at -= 1; }
            let damaged = if cut { format!("{}{junk}", &src[..at]) } else { format!("{}{junk}{}", &src[..at], &src[at..]) };
            let _ = Gemini.parse_response(damaged.as_bytes(), &target());
            let _ = Gemini.parse_error(429, &HeaderMap::new(), damaged.as_bytes(), &target());
            let _ = run_stream(damaged.as_bytes(), &[at / 2]);
            let mut d = Gemini.stream_decoder(&target());
            let _ = d.on_event(&SseEvent { event: String::new(), data: damaged.clone(), id: None });
            let _ = d.finish();
        }
    }

    // ----- streaming -----------------------------------------------------------

    /// Feed `input` split at `cuts` through the SSE parser and the decoder.
    fn run_stream(input: &[u8], cuts: &[usize]) -> Result<Vec<ChatChunk>> {
        let mut parser = SseParser::new();
        let mut decoder = Gemini.stream_decoder(&target());
        let mut chunks = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            for ev in parser.feed(&input[start..cut]).expect("valid SSE") {
                chunks.extend(decoder.on_event(&ev)?);
            }
            start = cut;
        }
        if let Some(ev) = parser.finish().expect("valid SSE") {
            chunks.extend(decoder.on_event(&ev)?);
        }
        chunks.extend(decoder.finish()?);
        Ok(chunks)
    }

    fn fold(chunks: &[ChatChunk]) -> ChatResponse {
        let mut acc = StreamAccumulator::default();
        for c in chunks {
            acc.push(c);
        }
        acc.finish().expect("complete stream")
    }

    #[test]
    fn text_stream_folds_the_same_for_every_split() {
        let input = fixture!("stream_text.sse").as_bytes();
        let whole = run_stream(input, &[]).expect("decodes");
        assert_eq!(whole[0].choices[0].delta.role, Some(Role::Assistant));
        assert!(
            whole
                .iter()
                .skip(1)
                .all(|c| c.choices.iter().all(|ch| ch.delta.role.is_none())),
            "role only once"
        );
        let last = whole.last().expect("chunks");
        assert!(last.choices.is_empty());
        assert_eq!(last.usage, Some(Usage::new(6, 29, 0, 0, 21)));
        let r = fold(&whole);
        assert_eq!(r.text(), "Bonjour le monde, ça va ? 🌍");
        assert_eq!(r.id, "yk4sab-JO7PIxN8PuaGxmQo");
        assert_eq!(r.model, "gemini/gemini-2.5-flash");
        assert_eq!(r.finish_reason(), Some(FinishReason::Stop));
        for cut in 0..=input.len() {
            assert_eq!(
                fold(&run_stream(input, &[cut]).expect("decodes")).choices,
                r.choices,
                "split at {cut}"
            );
        }
        // Many small pieces, including splits inside multi-byte characters.
        let cuts: Vec<usize> = (1..input.len()).step_by(3).collect();
        assert_eq!(
            fold(&run_stream(input, &cuts).expect("decodes")).usage,
            r.usage
        );
    }

    #[test]
    fn tool_call_stream_gives_complete_calls() {
        let input = fixture!("stream_tool_call.sse").as_bytes();
        for cut in [0, 17, input.len() / 2, input.len() - 3] {
            let chunks = run_stream(input, &[cut]).expect("decodes");
            let tc = chunks
                .iter()
                .flat_map(|c| &c.choices)
                .flat_map(|c| &c.delta.tool_calls)
                .next()
                .expect("a tool call delta");
            assert_eq!(
                (tc.index, tc.id.as_deref(), tc.function.name.as_deref()),
                (0, Some("call_0"), Some("get_weather"))
            );
            let r = fold(&chunks);
            assert_eq!(r.finish_reason(), Some(FinishReason::ToolCalls));
            assert_eq!(r.tool_calls().len(), 1);
            assert_eq!(
                r.tool_calls()[0].function.arguments,
                r#"{"city":"Paris","unit":"celsius"}"#
            );
            assert_eq!(r.choices[0].message.content, None);
            assert!(
                r.choices[0]
                    .message
                    .reasoning_content
                    .as_deref()
                    .is_some_and(|t| t.contains("Checking the weather"))
            );
            assert_eq!(r.usage, Usage::new(58, 62, 0, 0, 40));
        }
    }

    #[test]
    fn a_cut_stream_is_interrupted() {
        let input = fixture!("stream_text.sse");
        let cut = input.rfind("data:").expect("several events");
        let err = run_stream(&input.as_bytes()[..cut], &[]).expect_err("must fail");
        assert_eq!(err.kind(), ErrorKind::StreamInterrupted);
        assert!(err.to_string().contains("finishReason"), "{err}");
        let err = run_stream(b"", &[]).expect_err("must fail");
        assert_eq!(err.kind(), ErrorKind::StreamInterrupted);
        // Cut in the middle of the last event: the partial JSON is an invalid response.
        let err = run_stream(&input.as_bytes()[..input.len() - 10], &[]).expect_err("must fail");
        assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err}");
    }

    #[test]
    fn stream_errors_and_blocked_prompts() {
        let mut d = Gemini.stream_decoder(&target());
        let ev = |data: &str| SseEvent {
            event: String::new(),
            data: data.into(),
            id: None,
        };
        let err = d.on_event(&ev(r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#)).expect_err("must fail");
        assert_eq!(
            (err.kind(), err.status()),
            (ErrorKind::ProviderUnavailable, Some(503))
        );
        let err = d.on_event(&ev(r#"{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"3s"}]}}"#)).expect_err("must fail");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            d.on_event(&ev("{oops")).expect_err("must fail").kind(),
            ErrorKind::InvalidResponse
        );
        let err = d.on_event(&ev(r#"{"candidates":[{"content":{"parts":[]},"finishReason":"MALFORMED_FUNCTION_CALL","finishMessage":"Malformed function call: print(x"}]}"#)).expect_err("must fail");
        assert!(
            err.kind() == ErrorKind::InvalidResponse && err.to_string().contains("print(x"),
            "{err}"
        );

        let mut d = Gemini.stream_decoder(&target());
        let blocked = fixture!("response_blocked.json").replace('\n', " ");
        let mut chunks = d.on_event(&ev(&blocked)).expect("decodes");
        chunks.extend(d.finish().expect("complete"));
        let r = fold(&chunks);
        assert_eq!(r.finish_reason(), Some(FinishReason::ContentFilter));
        assert_eq!(r.choices[0].message.content, None);
        assert_eq!(r.usage.prompt_tokens, 14);
    }
}
