//! OpenAI Chat Completions and DeepSeek: shapes, streaming, tools, limits, caching, reasoning, auth.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{json_of, long_text, parse_sse, start, tok};

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"}, "detail": {"type": "boolean"}, "optional": {"type": "string"}},
          "required": ["city", "units", "days", "detail"]}}})
}

#[tokio::test]
async fn non_streaming_shape_and_usage() {
    let c = start().await;
    let user = "Hello there, how are you?";
    let (s, v) = json_of(
        c.openai(json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": user}]}))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    let text = format!("Emulated reply from gpt-4o-mini: {user}");
    assert_eq!(choice["message"]["content"], text.as_str());
    let u = &v["usage"];
    let prompt = 3 + (4 + tok("Be brief.")) + (4 + tok(user));
    assert_eq!(u["prompt_tokens"], prompt);
    assert_eq!(u["completion_tokens"], tok(&text));
    assert_eq!(u["total_tokens"], prompt + tok(&text));
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 0);
}

#[tokio::test]
async fn reply_uses_first_80_chars_of_last_user_text() {
    let c = start().await;
    let long = long_text(200);
    let (_, v) = json_of(
        c.openai(json!({"model": "m", "messages": [
            {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": long}]}]}))
            .await,
    )
    .await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("Emulated reply from m: {}", &long[..80])
    );
}

#[tokio::test]
async fn streaming_with_and_without_usage() {
    let c = start().await;
    let body = json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Please stream a reply to this sentence."}]});
    let r = c.openai(body).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"].get(0)?["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        text,
        "Emulated reply from gpt-4o-mini: Please stream a reply to this sentence."
    );
    let content_deltas = chunks
        .iter()
        .filter(|c| {
            c["choices"].get(0).is_some_and(|ch| {
                ch["delta"]["content"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            })
        })
        .count();
    assert!(content_deltas >= 3, "text split into several deltas");
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], tok(&text));
    assert!(chunks[..n - 1].iter().all(|c| c["usage"].is_null()));

    let r = c
        .openai(json!({"model": "gpt-4o-mini", "stream": true,
            "messages": [{"role": "user", "content": "No usage please."}]}))
        .await;
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn tool_call_non_streaming_and_streaming() {
    let c = start().await;
    let expected = json!({"city": "example", "units": "celsius", "days": 1, "detail": true});
    let (_, v) = json_of(
        c.openai(json!({"model": "gpt-4o", "tools": [weather_tool()],
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}))
            .await,
    )
    .await;
    let ch = &v["choices"][0];
    assert_eq!(ch["finish_reason"], "tool_calls");
    assert!(ch["message"]["content"].is_null());
    let call = &ch["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, expected);

    let r = c
        .openai(
            json!({"model": "gpt-4o", "tools": [weather_tool()], "stream": true,
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
        )
        .await;
    let events = parse_sse(&r.text().await.unwrap());
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    let mut args = String::new();
    let mut name = None;
    for ch in &chunks {
        if let Some(tcs) = ch["choices"][0]["delta"]["tool_calls"].as_array() {
            assert_eq!(tcs[0]["index"], 0);
            if let Some(n) = tcs[0]["function"]["name"].as_str() {
                name = Some(n.to_string());
                assert!(tcs[0]["id"].as_str().is_some());
            }
            args.push_str(tcs[0]["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), expected);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // Named tool choice picks the second tool; "none" gives text.
    let second = json!({"type": "function", "function": {"name": "lookup", "parameters": {"type": "object",
        "properties": {"q": {"type": "number"}}, "required": ["q"]}}});
    let (_, v) = json_of(
        c.openai(json!({"model": "gpt-4o", "tools": [weather_tool(), second],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "messages": [{"role": "user", "content": "x"}]}))
            .await,
    )
    .await;
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "lookup"
    );
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"q\":1.5}"
    );
    let (_, v) = json_of(
        c.openai(
            json!({"model": "gpt-4o", "tools": [weather_tool()], "tool_choice": "none",
            "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn tool_result_turn_gets_text() {
    let c = start().await;
    let (s, v) = json_of(
        c.openai(json!({"model": "gpt-4o", "tools": [weather_tool()], "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}]}))
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Emulated reply from gpt-4o: received tool result: 18C and sunny"
    );
    // A tool message without a preceding tool call is rejected.
    let (s, v) = json_of(
        c.openai(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "a"},
            {"role": "tool", "tool_call_id": "x", "content": "r"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn max_tokens_and_stop_sequences() {
    let c = start().await;
    for field in ["max_tokens", "max_completion_tokens"] {
        let (_, v) = json_of(
            c.openai(json!({"model": "gpt-4o-mini", field: 3,
                "messages": [{"role": "user", "content": "A long question that would get a long answer"}]}))
            .await,
        )
        .await;
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["choices"][0]["message"]["content"], "Emulated rep");
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }
    // Streaming honours it too.
    let r = c
        .openai(
            json!({"model": "gpt-4o-mini", "max_tokens": 5, "stream": true,
            "messages": [{"role": "user", "content": "A long question"}]}),
        )
        .await;
    let events = parse_sse(&r.text().await.unwrap());
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text.chars().count(), 20);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );

    let (_, v) = json_of(
        c.openai(json!({"model": "gpt-4o-mini", "stop": ["STOPHERE"],
            "messages": [{"role": "user", "content": "say hi STOPHERE and more"}]}))
            .await,
    )
    .await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Emulated reply from gpt-4o-mini: say hi "
    );
}

#[tokio::test]
async fn json_mode() {
    let c = start().await;
    let (_, v) = json_of(
        c.openai(
            json!({"model": "gpt-4o-mini", "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "Answer in JSON: hi"}]}),
        )
        .await,
    )
    .await;
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(content.is_object());
    assert_eq!(content["model"], "gpt-4o-mini");

    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"], "additionalProperties": false});
    let (_, v) = json_of(
        c.openai(json!({"model": "gpt-4o-mini",
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "strict": true, "schema": schema}},
            "messages": [{"role": "user", "content": "hi"}]}))
        .await,
    )
    .await;
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"name": "example", "age": 1}));

    // json_object without the word "json" is the real 400.
    let (s, v) = json_of(
        c.openai(
            json!({"model": "gpt-4o-mini", "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("json"));
}

#[tokio::test]
async fn automatic_prompt_caching() {
    let c = start().await;
    let system = long_text(6000); // 1500 tokens
    let body = |q: &str| {
        json!({"model": "gpt-4o", "messages": [{"role": "system", "content": system},
            {"role": "user", "content": q}]})
    };
    let (_, v1) = json_of(c.openai(body("first question")).await).await;
    assert_eq!(v1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let (_, v2) = json_of(c.openai(body("first question")).await).await;
    let prompt = v2["usage"]["prompt_tokens"].as_u64().unwrap();
    let cached = v2["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(cached, prompt / 128 * 128);
    assert!(cached >= 1024);
    // Same system prefix, different question: the system prefix is cached.
    let (_, v3) = json_of(c.openai(body("another question")).await).await;
    let cached3 = v3["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(cached3, (3 + 4 + 1500) / 128 * 128);
    // Short prompts are never cached.
    let short = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "short"}]});
    json_of(c.openai(short.clone()).await).await;
    let (_, v4) = json_of(c.openai(short).await).await;
    assert_eq!(v4["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn reasoning_models() {
    let c = start().await;
    let (s, v) = json_of(
        c.openai(json!({"model": "o3-mini", "max_completion_tokens": 1000,
            "messages": [{"role": "user", "content": "Think about it"}]}))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    let u = &v["usage"];
    let reasoning = u["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(reasoning > 0);
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        u["completion_tokens"].as_u64().unwrap(),
        tok(text) + reasoning
    );
    assert!(
        v["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );

    let (s, v) = json_of(
        c.openai(json!({"model": "gpt-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})).await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "unsupported_parameter");
    assert_eq!(v["error"]["param"], "max_tokens");

    let (_, v) = json_of(
        c.openai(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}))
            .await,
    )
    .await;
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
}

#[tokio::test]
async fn auth_and_validation_errors() {
    let c = start().await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]});
    let r = c
        .client
        .post(c.url("/openai/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("API key"));
    let r = c
        .client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("bad-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");

    let (s, v) = json_of(c.openai(json!({"model": "gpt-4o", "messages": []})).await).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "empty_array");
    assert_eq!(v["error"]["param"], "messages");
    let (s, v) = json_of(c.openai(json!({"model": "gpt-4o"})).await).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "missing_required_parameter");
    let (s, _) = json_of(
        c.openai(json!({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
    let r = c
        .client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("k")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn context_window_exceeded_naturally() {
    let c = start().await;
    let huge = long_text(130_000 * 4);
    let (s, v) = json_of(
        c.openai(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": huge}]}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
}

#[tokio::test]
async fn deepseek_flavour() {
    let c = start().await;
    let (s, v) = json_of(
        c.deepseek(json!({"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi DeepSeek"}]})).await,
    )
    .await;
    assert_eq!(s, 200);
    let u = &v["usage"];
    assert_eq!(u["prompt_cache_hit_tokens"], 0);
    assert_eq!(u["prompt_cache_miss_tokens"], u["prompt_tokens"]);
    assert!(
        v["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );
    // Repeat: DeepSeek caches in 64-token units.
    let long = long_text(1000);
    let body = json!({"model": "deepseek-chat", "messages": [{"role": "user", "content": long}]});
    json_of(c.deepseek(body.clone()).await).await;
    let (_, v) = json_of(c.deepseek(body).await).await;
    let u = &v["usage"];
    let hit = u["prompt_cache_hit_tokens"].as_u64().unwrap();
    let prompt = u["prompt_tokens"].as_u64().unwrap();
    assert_eq!(hit, prompt / 64 * 64);
    assert_eq!(
        u["prompt_cache_miss_tokens"].as_u64().unwrap(),
        prompt - hit
    );

    let (_, v) = json_of(
        c.deepseek(json!({"model": "deepseek-reasoner", "messages": [{"role": "user", "content": "Why?"}]})).await,
    )
    .await;
    let m = &v["choices"][0]["message"];
    let rc = m["reasoning_content"].as_str().unwrap();
    assert!(!rc.is_empty());
    assert_eq!(m["content"], "Emulated reply from deepseek-reasoner: Why?");
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        tok(rc)
    );

    let r = c
        .deepseek(json!({"model": "deepseek-reasoner", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Why?"}]}))
        .await;
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"].get(0)?["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(reasoning, rc);
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["prompt_cache_miss_tokens"].as_u64().is_some());
}

#[tokio::test]
async fn prompt_tokens_rule_with_tools_images_and_tool_calls() {
    let c = start().await;
    let tools = json!([weather_tool()]);
    let args = "{\"city\":\"Paris\"}";
    let (_, v) = json_of(
        c.openai(
            json!({"model": "gpt-4o", "tools": tools, "tool_choice": "none", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "get_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]}),
        )
        .await,
    )
    .await;
    let expected = 3
        + tok(&serde_json::to_string(&tools).unwrap())
        + (4 + tok("look") + 85)
        + (4 + tok("get_weather") + tok(args))
        + (4 + tok("sunny"));
    assert_eq!(v["usage"]["prompt_tokens"], expected);
}

#[tokio::test]
async fn reasoning_and_stream_option_validation() {
    let c = start().await;
    let (s, v) = json_of(
        c.openai(json!({"model": "o4-mini", "temperature": 0.2, "messages": [{"role": "user", "content": "x"}]}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "temperature");
    assert_eq!(v["error"]["code"], "unsupported_value");
    let (s, _) = json_of(
        c.openai(json!({"model": "gpt-4o", "temperature": 0.2, "messages": [{"role": "user", "content": "x"}]}))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = json_of(
        c.openai(
            json!({"model": "gpt-4o", "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "stream_options");
}
