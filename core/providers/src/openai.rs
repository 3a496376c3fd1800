//! OpenAI Chat Completions, and every OpenAI-compatible host (DeepSeek, Mistral, Groq,
//! Together, Ollama, vLLM) by configuration alone.
//!
//! Our types already follow this format, so the mapping is mostly renaming the model
//! and dropping fields the wire does not accept. Differences handled here:
//! - reasoning models (`o1`, `o3`, `o4-*`, `gpt-5*`) accept only `max_completion_tokens`;
//! - streaming always asks for `stream_options.include_usage` so usage arrives last;
//! - DeepSeek reports cache hits as `prompt_cache_hit_tokens` and reasoning text as
//!   `reasoning_content`;
//! - tool-call arguments are a JSON string the model wrote: they are checked, and
//!   invalid JSON is an [`Error::InvalidResponse`] rather than a surprise for the caller.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::adapter::{Adapter, HttpCall, StreamDecoder, Target, map_status, now_unix};
use gaterouter_types::error::{Error, Result};
use gaterouter_types::http_reply::body_excerpt;
use gaterouter_types::sse::SseEvent;
use gaterouter_types::types::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta,
    FinishReason, FunctionCallDelta, Role, ToolCall, ToolCallDelta, Usage,
};

/// The OpenAI wire format.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAi;

/// Whether `model` is an OpenAI reasoning model that refuses `max_tokens`.
pub fn is_reasoning_model(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    m.starts_with("o1") || m.starts_with("o3") || m.starts_with("o4") || m.starts_with("gpt-5")
}

impl Adapter for OpenAi {
    fn build_request(&self, req: &ChatRequest, target: &Target, stream: bool) -> Result<HttpCall> {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(target.model.clone()));
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| {
                // Reasoning text and refusals are answers, not inputs: never send them back.
                let mut m = m.clone();
                m.reasoning_content = None;
                m.refusal = None;
                serde_json::to_value(m)
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::InvalidRequest {
                field: Some("messages".into()),
                message: e.to_string(),
            })?;
        body.insert("messages".into(), Value::Array(messages));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                body.insert(k.to_owned(), v);
            }
        };
        put("temperature", req.temperature.map(Value::from));
        put("top_p", req.top_p.map(Value::from));
        let max_key = if target.provider.name == "openai" && is_reasoning_model(&target.model) {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        put(max_key, req.max_tokens.map(Value::from));
        put("stop", req.stop.as_ref().map(|s| json!(s.to_vec())));
        if !req.tools.is_empty() {
            put(
                "tools",
                Some(serde_json::to_value(&req.tools).map_err(ser_err)?),
            );
        }
        put(
            "tool_choice",
            req.tool_choice
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(ser_err)?,
        );
        put(
            "response_format",
            req.response_format
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(ser_err)?,
        );
        put("seed", req.seed.map(Value::from));
        put("user", req.user.clone().map(Value::String));
        if stream {
            put("stream", Some(Value::Bool(true)));
            put("stream_options", Some(json!({"include_usage": true})));
        }
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(key) = &target.api_key {
            headers.push((
                "authorization".to_owned(),
                format!("Bearer {}", key.expose()),
            ));
        }
        headers.extend(
            target
                .provider
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        Ok(HttpCall {
            url: format!("{}/chat/completions", target.provider.base_url),
            headers,
            body: Value::Object(body),
        })
    }

    fn parse_response(&self, body: &[u8], target: &Target) -> Result<ChatResponse> {
        let provider = target.provider_name();
        let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
            Error::invalid_response(
                provider,
                Some(200),
                format!("not a chat completion ({e}): {}", body_excerpt(body)),
            )
        })?;
        if let Some(err) = wire.error {
            return Err(map_status(
                provider,
                500,
                &HeaderMap::new(),
                err.code_str().as_deref(),
                err.message(),
            ));
        }
        let usage = wire
            .usage
            .as_ref()
            .map(WireUsage::normalize)
            .ok_or_else(|| {
                Error::invalid_response(provider, Some(200), "the response has no usage object")
            })?;
        let mut choices = Vec::with_capacity(wire.choices.len());
        for (i, c) in wire.choices.into_iter().enumerate() {
            let finish_reason = map_finish(c.finish_reason.as_deref());
            let m = c.message.unwrap_or_default();
            for tc in &m.tool_calls {
                check_arguments(
                    provider,
                    &tc.function.name,
                    &tc.function.arguments,
                    finish_reason,
                )?;
            }
            choices.push(Choice {
                index: c.index.unwrap_or(i as u32),
                message: AssistantMessage {
                    role: Role::Assistant,
                    content: m.content,
                    tool_calls: m.tool_calls,
                    reasoning_content: m.reasoning_content,
                    refusal: m.refusal,
                },
                finish_reason,
            });
        }
        if choices.is_empty() {
            return Err(Error::invalid_response(
                provider,
                Some(200),
                "the response has no choices",
            ));
        }
        Ok(ChatResponse {
            id: wire.id.unwrap_or_default(),
            object: "chat.completion".into(),
            created: wire.created.unwrap_or_else(now_unix),
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
        let (code, message) = match serde_json::from_slice::<WireErrorBody>(body) {
            Ok(WireErrorBody { error: Some(e), .. }) => (e.code_str(), e.message()),
            Ok(WireErrorBody {
                message: Some(m), ..
            })
            | Ok(WireErrorBody {
                detail: Some(Value::String(m)),
                ..
            }) => (None, m),
            _ => (None, body_excerpt(body)),
        };
        map_status(
            target.provider_name(),
            status,
            headers,
            code.as_deref(),
            message,
        )
    }

    fn stream_decoder(&self, target: &Target) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStream {
            target_model: target.model_id.clone(),
            provider: target.provider.name.clone(),
            ..Default::default()
        })
    }
}

fn ser_err(e: serde_json::Error) -> Error {
    Error::InvalidRequest {
        field: None,
        message: format!("cannot serialize the request: {e}"),
    }
}

/// OpenAI finish reasons; `function_call` is the legacy spelling of `tool_calls`.
pub fn map_finish(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("length") => FinishReason::Length,
        Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

fn check_arguments(provider: &str, name: &str, args: &str, finish: FinishReason) -> Result<()> {
    if serde_json::from_str::<Value>(args).is_err() {
        let why = if finish == FinishReason::Length {
            " (the answer was cut by max_tokens: raise it)"
        } else {
            ""
        };
        return Err(Error::invalid_response(
            provider,
            Some(200),
            format!(
                "the model called `{name}` with arguments that are not valid JSON{why}: {}",
                body_excerpt(args.as_bytes())
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct WireResponse {
    id: Option<String>,
    created: Option<u64>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    index: Option<u32>,
    message: Option<WireMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    tool_calls: Vec<ToolCall>,
    reasoning_content: Option<String>,
    refusal: Option<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Clone, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
    /// DeepSeek.
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    fn normalize(&self) -> Usage {
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(self.prompt_cache_hit_tokens)
            .unwrap_or(0);
        let reasoning = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        Usage::new(
            self.prompt_tokens,
            self.completion_tokens,
            cached.min(self.prompt_tokens),
            0,
            reasoning.min(self.completion_tokens),
        )
    }
}

#[derive(Debug, Deserialize)]
struct WireError {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<Value>,
}

impl WireError {
    fn code_str(&self) -> Option<String> {
        match &self.code {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => self.kind.clone(),
        }
    }
    fn message(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| self.kind.clone().unwrap_or_else(|| "no message".into()))
    }
}

#[derive(Debug, Deserialize)]
struct WireErrorBody {
    #[serde(default, deserialize_with = "error_object_or_string")]
    error: Option<WireError>,
    message: Option<String>,
    detail: Option<Value>,
}

/// Ollama and some proxies send `{"error": "text"}` instead of an object.
fn error_object_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<WireError>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(WireError {
            message: Some(s),
            kind: None,
            code: None,
        }),
        Some(v @ Value::Object(_)) => serde_json::from_value(v).ok(),
        _ => None,
    })
}

#[derive(Debug, Deserialize)]
struct WireChunk {
    id: Option<String>,
    created: Option<u64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    index: u32,
    delta: Option<WireDelta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireDelta {
    role: Option<Role>,
    content: Option<String>,
    reasoning_content: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    tool_calls: Vec<WireToolCallDelta>,
}

#[derive(Debug, Deserialize)]
struct WireToolCallDelta {
    #[serde(default)]
    index: u32,
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: Option<FunctionCallDelta>,
}

/// Stream state: the `[DONE]` marker, usage and tool-call arguments seen so far.
#[derive(Debug, Default)]
struct OpenAiStream {
    target_model: String,
    provider: String,
    id: String,
    created: u64,
    done: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    /// index -> (name, arguments so far), to check the JSON once complete.
    calls: BTreeMap<u32, (String, String)>,
}

impl StreamDecoder for OpenAiStream {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<ChatChunk>> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|e| {
            Error::invalid_response(
                &self.provider,
                Some(200),
                format!(
                    "stream chunk is not JSON ({e}): {}",
                    body_excerpt(data.as_bytes())
                ),
            )
        })?;
        if let Some(err) = chunk.error {
            return Err(map_status(
                &self.provider,
                500,
                &HeaderMap::new(),
                err.code_str().as_deref(),
                err.message(),
            ));
        }
        if self.id.is_empty() {
            self.id = chunk.id.clone().unwrap_or_default();
            self.created = chunk.created.unwrap_or_else(now_unix);
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.normalize());
        }
        let mut out = ChatChunk::empty(&self.id, &self.target_model, self.created);
        for c in chunk.choices {
            let d = c.delta.unwrap_or_default();
            let finish_reason = c.finish_reason.as_deref().map(|r| map_finish(Some(r)));
            if finish_reason.is_some() {
                self.finish = finish_reason;
            }
            let mut tool_calls = Vec::with_capacity(d.tool_calls.len());
            for tc in d.tool_calls {
                let f = tc.function.unwrap_or_default();
                let entry = self.calls.entry(tc.index).or_default();
                if let Some(n) = &f.name {
                    entry.0.push_str(n);
                }
                if let Some(a) = &f.arguments {
                    entry.1.push_str(a);
                }
                tool_calls.push(ToolCallDelta {
                    index: tc.index,
                    id: tc.id,
                    kind: tc.kind,
                    function: f,
                });
            }
            out.choices.push(ChunkChoice {
                index: c.index,
                delta: Delta {
                    role: d.role,
                    content: d.content,
                    reasoning_content: d.reasoning_content,
                    tool_calls,
                },
                finish_reason,
            });
        }
        // Usage is reported separately by `finish`, on the last chunk.
        Ok(if out.choices.is_empty() {
            Vec::new()
        } else {
            vec![out]
        })
    }

    fn finish(&mut self) -> Result<Vec<ChatChunk>> {
        let missing = match (self.done, self.finish, self.usage) {
            (true, Some(_), Some(_)) => None,
            (false, _, _) => Some("the `data: [DONE]` marker"),
            (true, None, _) => Some("a finish_reason"),
            (true, Some(_), None) => {
                Some("the final usage chunk (does this host support stream_options.include_usage?)")
            }
        };
        if let Some(what) = missing {
            return Err(Error::StreamInterrupted {
                provider: self.provider.clone(),
                message: format!("the stream ended without {what}"),
            });
        }
        let finish = self.finish.unwrap_or(FinishReason::Stop);
        for (name, args) in self.calls.values() {
            check_arguments(&self.provider, name, args, finish)?;
        }
        let mut last = ChatChunk::empty(&self.id, &self.target_model, self.created);
        last.usage = self.usage;
        Ok(vec![last])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::resolved::{ProviderKind, ResolvedProvider};
    use gaterouter_types::secret::Secret;
    use gaterouter_types::sse::SseParser;
    use gaterouter_types::stream::StreamAccumulator;
    use gaterouter_types::types::{Message, Tool, ToolChoice};

    /// The built-in entry the config resolves for `provider` (`openai` or `deepseek`).
    fn target(provider: &str, model: &str) -> Target {
        let (base_url, env) = match provider {
            "openai" => ("https://api.openai.com/v1", "OPENAI_API_KEY"),
            "deepseek" => ("https://api.deepseek.com", "DEEPSEEK_API_KEY"),
            other => panic!("no test entry for provider `{other}`"),
        };
        let p = ResolvedProvider {
            name: provider.into(),
            kind: ProviderKind::Openai,
            base_url: base_url.into(),
            api_key: None,
            api_key_env: Some(env.into()),
            headers: BTreeMap::new(),
            api_version: "2023-06-01".into(),
            request_timeout: Duration::from_millis(120_000),
        };
        Target {
            provider: p,
            model: model.into(),
            model_id: format!("{provider}/{model}"),
            api_key: Some(Secret::new("sk-test")),
        }
    }

    #[test]
    fn golden_request() {
        let mut req = ChatRequest::new(
            "openai/gpt-4o-mini",
            vec![Message::system("be brief"), Message::user("weather?")],
        );
        req.tools = vec![Tool::function(
            "get_weather",
            "Weather for a city",
            json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        )];
        req.tool_choice = Some(ToolChoice::Auto);
        req.max_tokens = Some(50);
        req.temperature = Some(0.5);
        req.stop = Some(gaterouter_types::types::Stop::One("END".into()));
        req.metadata.insert("feature".into(), "chat".into());
        let call = OpenAi
            .build_request(&req, &target("openai", "gpt-4o-mini"), true)
            .unwrap();
        assert_eq!(call.url, "https://api.openai.com/v1/chat/completions");
        assert!(
            call.headers
                .contains(&("authorization".into(), "Bearer sk-test".into()))
        );
        assert_eq!(
            call.body,
            json!({
                "model": "gpt-4o-mini",
                "messages": [{"role":"system","content":"be brief"},{"role":"user","content":"weather?"}],
                "temperature": 0.5, "max_tokens": 50, "stop": ["END"],
                "tools": [{"type":"function","function":{"name":"get_weather","description":"Weather for a city",
                    "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],
                "tool_choice": "auto",
                "stream": true, "stream_options": {"include_usage": true}
            })
        );
    }

    #[test]
    fn reasoning_models_get_max_completion_tokens_only_on_openai() {
        let mut req = ChatRequest::new("openai/o4-mini", vec![Message::user("x")]);
        req.max_tokens = Some(9);
        let b = OpenAi
            .build_request(&req, &target("openai", "o4-mini"), false)
            .unwrap()
            .body;
        assert_eq!(b["max_completion_tokens"], 9);
        assert!(b.get("max_tokens").is_none());
        let b = OpenAi
            .build_request(&req, &target("deepseek", "o4-mini"), false)
            .unwrap()
            .body;
        assert_eq!(b["max_tokens"], 9);
    }

    #[test]
    fn parses_response_with_cached_and_reasoning_tokens() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"o4-mini-2025-04-16",
          "choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],
          "usage":{"prompt_tokens":2000,"completion_tokens":300,"total_tokens":2300,
            "prompt_tokens_details":{"cached_tokens":1536,"audio_tokens":0},
            "completion_tokens_details":{"reasoning_tokens":256,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},
          "service_tier":"default","system_fingerprint":null}"#;
        let r = OpenAi
            .parse_response(body, &target("openai", "o4-mini"))
            .unwrap();
        assert_eq!(r.model, "openai/o4-mini");
        assert_eq!(r.text(), "Hi");
        assert_eq!(r.usage, Usage::new(2000, 300, 1536, 0, 256));
    }

    #[test]
    fn parses_deepseek_cache_hits_and_reasoning() {
        let body = br#"{"id":"x","object":"chat.completion","created":1,"model":"deepseek-reasoner",
          "choices":[{"index":0,"message":{"role":"assistant","content":"4","reasoning_content":"2+2"},"finish_reason":"stop"}],
          "usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36,
            "completion_tokens_details":{"reasoning_tokens":15}}}"#;
        let r = OpenAi
            .parse_response(body, &target("deepseek", "deepseek-reasoner"))
            .unwrap();
        assert_eq!(r.usage.cached_prompt_tokens, 64);
        assert_eq!(
            r.choices[0].message.reasoning_content.as_deref(),
            Some("2+2")
        );
    }

    #[test]
    fn tool_calls_round_trip_and_bad_arguments_are_typed() {
        let good = br#"{"id":"x","created":1,"choices":[{"index":0,"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}"#;
        let r = OpenAi
            .parse_response(good, &target("openai", "gpt-4o"))
            .unwrap();
        assert_eq!(r.finish_reason(), Some(FinishReason::ToolCalls));
        assert_eq!(r.tool_calls()[0].arguments_json().unwrap()["city"], "Paris");
        // The reply goes back into the conversation unchanged.
        let req = ChatRequest::new(
            "openai/gpt-4o",
            vec![
                Message::user("w?"),
                r.choices[0].message.to_message(),
                Message::tool("call_1", "20C"),
            ],
        );
        req.validate().unwrap();
        let b = OpenAi
            .build_request(&req, &target("openai", "gpt-4o"), false)
            .unwrap()
            .body;
        assert_eq!(
            b["messages"][1]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            b["messages"][2],
            json!({"role":"tool","content":"20C","tool_call_id":"call_1"})
        );

        let bad = String::from_utf8_lossy(good).replace(r#"{\"city\":\"Paris\"}"#, r#"{\"city\":"#);
        let e = OpenAi
            .parse_response(bad.as_bytes(), &target("openai", "gpt-4o"))
            .unwrap_err();
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::InvalidResponse);
        assert!(e.to_string().contains("get_weather"), "{e}");
    }

    #[test]
    fn finish_reasons() {
        for (wire, ours) in [
            ("stop", FinishReason::Stop),
            ("length", FinishReason::Length),
            ("tool_calls", FinishReason::ToolCalls),
            ("function_call", FinishReason::ToolCalls),
            ("content_filter", FinishReason::ContentFilter),
        ] {
            assert_eq!(map_finish(Some(wire)), ours);
        }
    }

    #[test]
    fn error_mapping() {
        let t = target("openai", "gpt-4o");
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        let e = OpenAi.parse_error(429, &h, br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#, &t);
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(3)));
        assert_eq!(e.provider_message(), Some("Rate limit reached"));
        let e = OpenAi.parse_error(400, &HeaderMap::new(), br#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#, &t);
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::ContextLengthExceeded);
        let e = OpenAi.parse_error(401, &HeaderMap::new(), br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#, &t);
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::Auth);
        let e = OpenAi.parse_error(
            400,
            &HeaderMap::new(),
            br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#,
            &t,
        );
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::InvalidRequest);
        let e = OpenAi.parse_error(
            502,
            &HeaderMap::new(),
            b"<html><head><title>502 Bad Gateway</title></head></html>",
            &t,
        );
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::ProviderUnavailable);
        assert!(e.to_string().contains("HTML"), "{e}");
        let e = OpenAi.parse_error(
            404,
            &HeaderMap::new(),
            br#"{"error":"model 'x' not found"}"#,
            &t,
        );
        assert_eq!(e.provider_message(), Some("model 'x' not found"));
        let e = OpenAi.parse_response(b"{\"id\": ", &t).unwrap_err();
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::InvalidResponse);
    }

    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    fn run_stream(input: &[u8], split: usize) -> Result<ChatResponse> {
        let t = target("openai", "gpt-4o");
        let mut dec = OpenAi.stream_decoder(&t);
        let mut p = SseParser::new();
        let mut acc = StreamAccumulator::default();
        for part in [&input[..split], &input[split..]] {
            for ev in p.feed(part).expect("valid sse") {
                for c in dec.on_event(&ev)? {
                    acc.push(&c);
                }
            }
        }
        if let Some(ev) = p.finish().expect("valid sse") {
            for c in dec.on_event(&ev)? {
                acc.push(&c);
            }
        }
        for c in dec.finish()? {
            acc.push(&c);
        }
        acc.finish()
    }

    #[test]
    fn stream_folds_into_a_response_at_any_split() {
        let input = STREAM.as_bytes();
        for split in (0..input.len()).step_by(7) {
            let r = run_stream(input, split).unwrap();
            assert_eq!(r.text(), "Hello");
            assert_eq!(r.tool_calls()[0].function.arguments, "{\"a\":1}");
            assert_eq!(r.tool_calls()[0].id, "call_9");
            assert_eq!(r.finish_reason(), Some(FinishReason::ToolCalls));
            assert_eq!(r.usage, Usage::new(9, 4, 0, 0, 0));
            assert_eq!(r.model, "openai/gpt-4o");
        }
    }

    #[test]
    fn cut_stream_is_interrupted() {
        let cut = STREAM.find("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],").unwrap();
        let e = run_stream(&STREAM.as_bytes()[..cut], 10).unwrap_err();
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::StreamInterrupted);
        let no_done = STREAM.replace("data: [DONE]\n\n", "");
        assert_eq!(
            run_stream(no_done.as_bytes(), 3).unwrap_err().kind(),
            gaterouter_types::ErrorKind::StreamInterrupted
        );
    }

    #[test]
    fn in_stream_error_and_garbage_are_typed() {
        let e = run_stream(
            b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
            0,
        )
        .unwrap_err();
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::ProviderUnavailable);
        let e = run_stream(b"data: {not json\n\n", 0).unwrap_err();
        assert_eq!(e.kind(), gaterouter_types::ErrorKind::InvalidResponse);
    }
}
