//! Anthropic Messages: shapes, streaming events, tools, limits, caching, thinking, auth.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{json_of, long_text, parse_sse, start, tok};

fn tool() -> Value {
    json!({"name": "get_weather", "description": "Weather", "input_schema": {"type": "object",
        "properties": {"city": {"type": "string"}, "n": {"type": "number"}}, "required": ["city", "n"]}})
}

#[tokio::test]
async fn non_streaming_shape_and_usage() {
    let c = start().await;
    let (s, v) = json_of(
        c.anthropic(
            json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "Be nice.",
            "messages": [{"role": "user", "content": "Hello Claude"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["model"], "claude-sonnet-4-5");
    let text = "Emulated reply from claude-sonnet-4-5: Hello Claude";
    assert_eq!(v["content"], json!([{"type": "text", "text": text}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    let u = &v["usage"];
    assert_eq!(
        u["input_tokens"],
        3 + (4 + tok("Be nice.")) + (4 + tok("Hello Claude"))
    );
    assert_eq!(u["output_tokens"], tok(text));
    assert_eq!(u["cache_creation_input_tokens"], 0);
    assert_eq!(u["cache_read_input_tokens"], 0);
}

#[tokio::test]
async fn streaming_event_sequence() {
    let c = start().await;
    let r = c
        .anthropic(
            json!({"model": "claude-haiku-4-5", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "Stream me something please"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let events = parse_sse(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    for e in &events {
        assert_eq!(
            e.json()["type"],
            e.event.as_deref().unwrap(),
            "event name matches data.type"
        );
    }
    assert_eq!(names[0], "message_start");
    assert_eq!(names[1], "content_block_start");
    assert!(names.contains(&"ping"));
    let n = names.len();
    assert_eq!(
        &names[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let start_msg = events[0].json();
    assert_eq!(start_msg["message"]["content"], json!([]));
    assert!(
        start_msg["message"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let text: String = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_delta"))
        .map(|e| {
            let d = e.json();
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        text,
        "Emulated reply from claude-haiku-4-5: Stream me something please"
    );
    assert!(
        names
            .iter()
            .filter(|n| **n == "content_block_delta")
            .count()
            >= 3
    );
    let md = events[n - 2].json();
    assert_eq!(md["delta"]["stop_reason"], "end_turn");
    assert_eq!(md["usage"]["output_tokens"], tok(&text));
}

#[tokio::test]
async fn tool_use_and_tool_result() {
    let c = start().await;
    let (_, v) = json_of(
        c.anthropic(
            json!({"model": "claude-sonnet-4-5", "max_tokens": 200, "tools": [tool()],
            "messages": [{"role": "user", "content": "Weather?"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["stop_reason"], "tool_use");
    let b = &v["content"][0];
    assert_eq!(b["type"], "tool_use");
    assert!(b["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(b["name"], "get_weather");
    assert_eq!(b["input"], json!({"city": "example", "n": 1.5}));

    let r = c
        .anthropic(json!({"model": "claude-sonnet-4-5", "max_tokens": 200, "tools": [tool()], "stream": true,
            "messages": [{"role": "user", "content": "Weather?"}]}))
        .await;
    let events = parse_sse(&r.text().await.unwrap());
    let start_block = events
        .iter()
        .find(|e| e.event.as_deref() == Some("content_block_start"))
        .unwrap()
        .json();
    assert_eq!(start_block["content_block"]["type"], "tool_use");
    assert_eq!(start_block["content_block"]["input"], json!({}));
    let partial: String = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_delta"))
        .map(|e| {
            e.json()["delta"]["partial_json"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"city": "example", "n": 1.5})
    );
    let md = events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_delta"))
        .unwrap()
        .json();
    assert_eq!(md["delta"]["stop_reason"], "tool_use");

    let (s, v) = json_of(
        c.anthropic(json!({"model": "claude-sonnet-4-5", "max_tokens": 200, "tools": [tool()], "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Cold, -3C"}]}]}))
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["content"][0]["text"],
        "Emulated reply from claude-sonnet-4-5: received tool result: Cold, -3C"
    );

    let (_, v) = json_of(
        c.anthropic(json!({"model": "claude-sonnet-4-5", "max_tokens": 200, "tools": [tool()],
            "tool_choice": {"type": "none"}, "messages": [{"role": "user", "content": "Weather?"}]}))
        .await,
    )
    .await;
    assert_eq!(v["stop_reason"], "end_turn");
}

#[tokio::test]
async fn max_tokens_and_stop_sequences() {
    let c = start().await;
    let (_, v) = json_of(
        c.anthropic(json!({"model": "claude-sonnet-4-5", "max_tokens": 4,
            "messages": [{"role": "user", "content": "A long long question"}]}))
            .await,
    )
    .await;
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["content"][0]["text"], "Emulated reply f");
    assert_eq!(v["usage"]["output_tokens"], 4);

    let (_, v) = json_of(
        c.anthropic(
            json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stop_sequences": ["###"],
            "messages": [{"role": "user", "content": "one ### two"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "###");
    assert_eq!(
        v["content"][0]["text"],
        "Emulated reply from claude-sonnet-4-5: one "
    );
}

#[tokio::test]
async fn explicit_prompt_caching() {
    let c = start().await;
    let big = long_text(8000); // 2000 tokens
    let body = |q: &str| {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
            "system": [{"type": "text", "text": big, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": q}]})
    };
    let prefix = 3 + 4 + 2000;
    let (_, v1) = json_of(c.anthropic(body("question one")).await).await;
    let u1 = &v1["usage"];
    assert_eq!(u1["cache_creation_input_tokens"], prefix);
    assert_eq!(u1["cache_read_input_tokens"], 0);
    assert_eq!(u1["input_tokens"], 4 + tok("question one"));
    assert_eq!(u1["cache_creation"]["ephemeral_5m_input_tokens"], prefix);
    let (_, v2) = json_of(c.anthropic(body("question two")).await).await;
    let u2 = &v2["usage"];
    assert_eq!(u2["cache_creation_input_tokens"], 0);
    assert_eq!(u2["cache_read_input_tokens"], prefix);
    assert_eq!(u2["input_tokens"], 4 + tok("question two"));

    // Without cache_control nothing is cached, however long.
    let plain = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "system": big,
        "messages": [{"role": "user", "content": "q"}]});
    json_of(c.anthropic(plain.clone()).await).await;
    let (_, v3) = json_of(c.anthropic(plain).await).await;
    assert_eq!(v3["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(v3["usage"]["cache_creation_input_tokens"], 0);
}

#[tokio::test]
async fn thinking_block() {
    let c = start().await;
    let (s, v) = json_of(
        c.anthropic(json!({"model": "claude-sonnet-4-5", "max_tokens": 4000,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "messages": [{"role": "user", "content": "Ponder"}]}))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    let blocks = v["content"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "thinking");
    let thinking = blocks[0]["thinking"].as_str().unwrap();
    assert!(!thinking.is_empty());
    assert!(blocks[0]["signature"].as_str().is_some());
    assert_eq!(blocks[1]["type"], "text");
    let text = blocks[1]["text"].as_str().unwrap();
    assert_eq!(v["usage"]["output_tokens"], tok(thinking) + tok(text));

    let r = c
        .anthropic(
            json!({"model": "claude-sonnet-4-5", "max_tokens": 4000, "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "messages": [{"role": "user", "content": "Ponder"}]}),
        )
        .await;
    let events = parse_sse(&r.text().await.unwrap());
    let deltas: Vec<Value> = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_delta"))
        .map(|e| e.json()["delta"].clone())
        .collect();
    let streamed: String = deltas
        .iter()
        .filter(|d| d["type"] == "thinking_delta")
        .map(|d| d["thinking"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(streamed, thinking);
    assert!(deltas.iter().any(|d| d["type"] == "signature_delta"));

    let (s, v) = json_of(
        c.anthropic(json!({"model": "claude-sonnet-4-5", "max_tokens": 1000,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "messages": [{"role": "user", "content": "Ponder"}]}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn auth_and_validation_errors() {
    let c = start().await;
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]});
    let send = |h: Vec<(&'static str, &'static str)>, b: Value| {
        let mut rb = c.client.post(c.url("/v1/messages")).json(&b);
        for (k, v) in h {
            rb = rb.header(k, v);
        }
        rb.send()
    };
    let (s, v) = json_of(
        send(vec![("anthropic-version", "2023-06-01")], body.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}})
    );
    let (s, v) = json_of(
        send(
            vec![("x-api-key", "bad"), ("anthropic-version", "2023-06-01")],
            body.clone(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["type"], "authentication_error");
    // Bearer auth (newer SDKs) is accepted.
    let (s, _) = json_of(
        send(
            vec![
                ("authorization", "Bearer sk-ant"),
                ("anthropic-version", "2026-10-21"),
            ],
            body.clone(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = json_of(send(vec![("x-api-key", "k")], body).await.unwrap()).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );

    for bad in [
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 5, "messages": []}),
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}),
    ] {
        let (s, v) = json_of(c.anthropic(bad.clone()).await).await;
        assert_eq!(s, 400, "{bad}");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn count_tokens_matches_usage() {
    let c = start().await;
    let msgs = json!([{"role": "user", "content": "Count me please"}]);
    let r = c
        .client
        .post(c.url("/anthropic/v1/messages/count_tokens"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "system": "sys", "messages": msgs}))
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!(s, 200);
    let (_, full) = json_of(
        c.anthropic(json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "system": "sys", "messages": msgs})).await,
    )
    .await;
    assert_eq!(v["input_tokens"], full["usage"]["input_tokens"]);
}

#[tokio::test]
async fn moving_breakpoint_reads_earlier_prefix() {
    let c = start().await;
    let big = long_text(6000); // 1500 tokens
    let cc = json!({"type": "ephemeral", "ttl": "1h"});
    let turn1 = json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [
        {"role": "user", "content": [{"type": "text", "text": big, "cache_control": cc}]}]});
    let (_, v1) = json_of(c.anthropic(turn1).await).await;
    let first = 3 + 4 + 1500;
    assert_eq!(v1["usage"]["cache_creation_input_tokens"], first);
    assert_eq!(
        v1["usage"]["cache_creation"]["ephemeral_1h_input_tokens"],
        first
    );
    assert_eq!(v1["usage"]["input_tokens"], 0);
    // Next turn: the breakpoint moves to the newest user block.
    let turn2 = json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [
        {"role": "user", "content": [{"type": "text", "text": big}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "and then?", "cache_control": {"type": "ephemeral"}}]}]});
    let (_, v2) = json_of(c.anthropic(turn2).await).await;
    let u = &v2["usage"];
    assert_eq!(u["cache_read_input_tokens"], first);
    let rest = (4 + tok("ok")) + (4 + tok("and then?"));
    assert_eq!(u["cache_creation_input_tokens"], rest);
    assert_eq!(u["input_tokens"], 0);
}
