//! Every fault kind through every injection route (header, directive, queue) for every provider.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{Ctx, parse_sse, start};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Header,
    Directive,
    Queue,
}

const PROVIDERS: [&str; 4] = ["openai", "deepseek", "anthropic", "gemini"];

fn body_for(provider: &str, text: &str, stream: bool, tools: bool) -> Value {
    let mut v = match provider {
        "openai" | "deepseek" => json!({"model": "m", "stream": stream,
            "messages": [{"role": "user", "content": text}],
            "tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": "object",
                "properties": {"a": {"type": "string"}}, "required": ["a"]}}}]}),
        "anthropic" => json!({"model": "m", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": text}],
            "tools": [{"name": "t", "input_schema": {"type": "object",
                "properties": {"a": {"type": "string"}}, "required": ["a"]}}]}),
        _ => json!({"contents": [{"role": "user", "parts": [{"text": text}]}],
            "tools": [{"functionDeclarations": [{"name": "t", "parameters": {"type": "object",
                "properties": {"a": {"type": "string"}}, "required": ["a"]}}]}]}),
    };
    if !tools {
        v.as_object_mut().unwrap().remove("tools");
    }
    v
}

/// Sends one request carrying `spec` through `via`.
async fn send(c: &Ctx, provider: &str, stream: bool, via: Via, spec: &str) -> reqwest::Response {
    let text = match via {
        Via::Directive => format!("Please answer [[emulator:{spec}]] now"),
        _ => "Please answer now".to_string(),
    };
    if via == Via::Queue {
        let mut parts = spec.split(';');
        let mut q = json!({"fault": parts.next().unwrap(), "provider": provider});
        for p in parts {
            let (k, v) = p.split_once('=').unwrap();
            q[k] = json!(v);
        }
        let r = c
            .client
            .post(c.url("/_emulator/faults"))
            .json(&q)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let body = body_for(provider, &text, stream, spec.starts_with("bad_tool_args"));
    let rb = match provider {
        "openai" => c
            .client
            .post(c.url("/openai/v1/chat/completions"))
            .bearer_auth("sk"),
        "deepseek" => c
            .client
            .post(c.url("/deepseek/v1/chat/completions"))
            .bearer_auth("sk"),
        "anthropic" => c
            .client
            .post(c.url("/anthropic/v1/messages"))
            .header("x-api-key", "sk")
            .header("anthropic-version", "2023-06-01"),
        _ => {
            let path = if stream {
                "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
            } else {
                "/gemini/v1beta/models/gemini-2.0-flash:generateContent"
            };
            c.client.post(c.url(path)).header("x-goog-api-key", "AIza")
        }
    };
    let rb = if via == Via::Header {
        rb.header("x-emulator-fault", spec)
    } else {
        rb
    };
    rb.json(&body).send().await.unwrap()
}

/// Checks the provider's error envelope and returns the body.
async fn error_body(provider: &str, r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status, "{provider}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: Value = r.json().await.unwrap();
    match provider {
        "openai" | "deepseek" => {
            assert!(v["error"]["message"].is_string(), "{v}");
            assert!(v["error"]["type"].is_string(), "{v}");
            assert!(
                v["error"].get("param").is_some() && v["error"].get("code").is_some(),
                "{v}"
            );
        }
        "anthropic" => {
            assert_eq!(v["type"], "error", "{v}");
            assert!(
                v["error"]["type"].is_string() && v["error"]["message"].is_string(),
                "{v}"
            );
        }
        _ => {
            assert_eq!(v["error"]["code"], status, "{v}");
            assert!(
                v["error"]["status"].is_string() && v["error"]["message"].is_string(),
                "{v}"
            );
        }
    }
    v
}

fn end_marker(provider: &str) -> &'static str {
    match provider {
        "openai" | "deepseek" => "data: [DONE]",
        "anthropic" => "event: message_stop",
        _ => "\"finishReason\"",
    }
}

#[tokio::test]
async fn error_faults_every_route_every_provider() {
    let c = start().await;
    for via in [Via::Header, Via::Directive, Via::Queue] {
        for p in PROVIDERS {
            let ctx = format!("{p} via {via:?}");
            // rate_limit with a fractional retry_after.
            let r = send(&c, p, false, via, "rate_limit;retry_after=1.5").await;
            assert_eq!(r.headers()["retry-after"], "2", "{ctx}");
            assert_eq!(r.headers()["retry-after-ms"], "1500", "{ctx}");
            let v = error_body(p, r, 429).await;
            match p {
                "anthropic" => assert_eq!(v["error"]["type"], "rate_limit_error"),
                "gemini" => assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED"),
                _ => assert_eq!(v["error"]["code"], "rate_limit_exceeded"),
            }
            let r = send(&c, p, false, via, "rate_limit;retry_after=3").await;
            assert_eq!(r.headers()["retry-after"], "3", "{ctx}");
            assert!(r.headers().get("retry-after-ms").is_none(), "{ctx}");

            let v = error_body(p, send(&c, p, false, via, "server_error").await, 500).await;
            if p == "anthropic" {
                assert_eq!(v["error"]["type"], "api_error");
            }

            let want = match p {
                "anthropic" => 529,
                _ => 503,
            };
            let v = error_body(p, send(&c, p, false, via, "overloaded").await, want).await;
            match p {
                "anthropic" => assert_eq!(v["error"]["type"], "overloaded_error"),
                "gemini" => assert_eq!(v["error"]["status"], "UNAVAILABLE"),
                _ => {}
            }

            let v = error_body(p, send(&c, p, false, via, "auth").await, 401).await;
            if p == "anthropic" {
                assert_eq!(v["error"]["type"], "authentication_error");
            }

            let v = error_body(p, send(&c, p, true, via, "context_length").await, 400).await;
            match p {
                "anthropic" => assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .starts_with("prompt is too long")
                ),
                "gemini" => assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("input token count")
                ),
                _ => assert_eq!(v["error"]["code"], "context_length_exceeded"),
            }

            let v = error_body(p, send(&c, p, false, via, "bad_request").await, 400).await;
            match p {
                "anthropic" => assert_eq!(v["error"]["type"], "invalid_request_error"),
                "gemini" => assert_eq!(v["error"]["status"], "INVALID_ARGUMENT"),
                _ => assert_eq!(v["error"]["type"], "invalid_request_error"),
            }

            let r = send(&c, p, false, via, "html_error").await;
            assert_eq!(r.status(), 502, "{ctx}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            assert!(r.text().await.unwrap().contains("<html>"));
        }
    }
    let stats = c.get_json("/_emulator/stats").await;
    assert_eq!(stats["by_outcome"]["fault:rate_limit"], 2 * 3 * 4);
    assert_eq!(stats["by_outcome"]["fault:html_error"], 3 * 4);
    assert_eq!(stats["faults_queued"], 0);
}

#[tokio::test]
async fn timing_faults() {
    let c = start().await;
    for (i, via) in [Via::Header, Via::Directive, Via::Queue]
        .into_iter()
        .enumerate()
    {
        let p = PROVIDERS[i % 4];
        let t = Instant::now();
        let r = send(&c, p, false, via, "slow;delay_ms=150").await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(150), "{p} {via:?}");

        let p = PROVIDERS[(i + 1) % 4];
        let t = Instant::now();
        let r = send(&c, p, true, via, "slow_stream;delay_ms=20").await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let n = parse_sse(&text).len() as u32;
        assert!(n >= 3);
        assert!(
            t.elapsed() >= Duration::from_millis(20) * (n - 1),
            "{p} {via:?}"
        );
        assert!(text.contains(end_marker(p)), "{p}: stream complete");
    }
    // Gemini streams too.
    let t = Instant::now();
    let r = send(&c, "gemini", true, Via::Header, "slow_stream;delay_ms=20").await;
    let n = parse_sse(&r.text().await.unwrap()).len() as u32;
    assert!(t.elapsed() >= Duration::from_millis(20) * (n - 1));
}

#[tokio::test]
async fn cut_stream_fault() {
    let c = start().await;
    for via in [Via::Header, Via::Directive, Via::Queue] {
        for p in PROVIDERS {
            let r = send(&c, p, true, via, "cut_stream;after_events=2").await;
            assert_eq!(r.status(), 200);
            // The first two events arrive, then the connection is aborted.
            let mut got = Vec::new();
            let mut stream = r.bytes_stream();
            let mut aborted = false;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(b) => got.extend_from_slice(&b),
                    Err(_) => {
                        aborted = true;
                        break;
                    }
                }
            }
            assert!(aborted, "{p} {via:?}: expected an aborted body");
            let text = String::from_utf8(got).unwrap();
            assert_eq!(parse_sse(&text).len(), 2, "{p} {via:?}: {text}");
            assert!(!text.contains(end_marker(p)));
            let r = send(&c, p, true, via, "cut_stream;after_events=2;clean=true").await;
            let text = r.text().await.unwrap();
            assert_eq!(parse_sse(&text).len(), 2, "{p} {via:?}");
            assert!(!text.contains(end_marker(p)), "{p} {via:?}");
        }
    }
    // Non-streaming: half a body, then the connection drops.
    let r = send(&c, "openai", false, Via::Header, "cut_stream").await;
    assert!(r.text().await.is_err());
}

#[tokio::test]
async fn malformed_json_fault() {
    let c = start().await;
    for via in [Via::Header, Via::Directive, Via::Queue] {
        for p in PROVIDERS {
            let r = send(&c, p, false, via, "malformed_json").await;
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            assert!(text.starts_with('{'));
            assert!(
                serde_json::from_str::<Value>(&text).is_err(),
                "{p} {via:?}: {text}"
            );
            // Streaming: the second event carries truncated JSON.
            let r = send(&c, p, true, via, "malformed_json").await;
            let text = r.text().await.unwrap();
            let events = parse_sse(&text);
            assert!(
                serde_json::from_str::<Value>(&events[1].data).is_err(),
                "{p} {via:?}"
            );
            assert!(serde_json::from_str::<Value>(&events[0].data).is_ok());
        }
    }
}

#[tokio::test]
async fn bad_tool_args_fault() {
    let c = start().await;
    for via in [Via::Header, Via::Directive, Via::Queue] {
        for p in ["openai", "deepseek"] {
            let r = send(&c, p, false, via, "bad_tool_args").await;
            let v: Value = r.json().await.unwrap();
            let call = &v["choices"][0]["message"]["tool_calls"][0];
            assert_eq!(call["function"]["name"], "t");
            let args = call["function"]["arguments"].as_str().unwrap();
            assert!(serde_json::from_str::<Value>(args).is_err(), "{args}");
            let r = send(&c, p, true, via, "bad_tool_args").await;
            let events = parse_sse(&r.text().await.unwrap());
            let args: String = events[..events.len() - 1]
                .iter()
                .filter_map(|e| {
                    e.json()["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect();
            assert!(serde_json::from_str::<Value>(&args).is_err(), "{args}");
        }
        let v: Value = send(&c, "anthropic", false, via, "bad_tool_args")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["content"][0]["type"], "tool_use");
        assert_eq!(v["content"][0]["input"], json!({}));
        let events = parse_sse(
            &send(&c, "anthropic", true, via, "bad_tool_args")
                .await
                .text()
                .await
                .unwrap(),
        );
        let partial: String = events
            .iter()
            .filter_map(|e| {
                e.json()["delta"]["partial_json"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert!(
            serde_json::from_str::<Value>(&partial).is_err(),
            "{partial}"
        );
        let v: Value = send(&c, "gemini", false, via, "bad_tool_args")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["functionCall"],
            json!({"name": "t", "args": {}})
        );
    }
}

#[tokio::test]
async fn queue_semantics() {
    let c = start().await;
    let q = |b: Value| c.client.post(c.url("/_emulator/faults")).json(&b).send();
    // times=2, restricted to anthropic: an OpenAI request does not consume it.
    let r = q(json!({"fault": "server_error", "times": 2, "provider": "anthropic"}))
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"queued": 2}));
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let r = c
        .client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ab = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let send_a = || {
        c.client
            .post(c.url("/v1/messages"))
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .json(&ab)
            .send()
    };
    assert_eq!(send_a().await.unwrap().status(), 500);
    assert_eq!(send_a().await.unwrap().status(), 500);
    assert_eq!(send_a().await.unwrap().status(), 200);

    // provider null matches any provider; faults fire in queue order.
    q(json!({"fault": "rate_limit", "retry_after": 2}))
        .await
        .unwrap();
    q(json!({"fault": "overloaded", "provider": null}))
        .await
        .unwrap();
    let r = c
        .client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(send_a().await.unwrap().status(), 529);

    // A bad key is rejected before a queued fault is consumed.
    q(json!({"fault": "server_error"})).await.unwrap();
    let r = c
        .client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("bad")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(c.get_json("/_emulator/stats").await["faults_queued"], 1);

    // Unknown kinds are rejected everywhere.
    let r = q(json!({"fault": "explode"})).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("rate_limit")
    );
    let r = c
        .client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("k")
        .header("x-emulator-fault", "explode")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("explode")
    );

    // Header wins over the queue (the queued server_error is still pending afterwards).
    let r = c
        .client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("k")
        .header("x-emulator-fault", "auth")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(c.get_json("/_emulator/stats").await["faults_queued"], 1);
}

#[tokio::test]
async fn directive_is_not_echoed() {
    let c = start().await;
    let v: Value = send(&c, "openai", false, Via::Directive, "slow;delay_ms=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Emulated reply from m: Please answer  now"
    );
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi [[emulator:slow;delay_ms=1]] there"}]});
    let v: Value = c
        .client
        .post(c.url("/v1/chat/completions"))
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Emulated reply from m: hi  there"
    );
}

#[tokio::test]
async fn mid_stream_error_events() {
    let c = start().await;
    for (i, p) in PROVIDERS.iter().enumerate() {
        let via = [Via::Header, Via::Directive, Via::Queue][i % 3];
        let r = send(&c, p, true, via, "overloaded;after_events=2").await;
        assert_eq!(r.status(), 200, "{p}");
        let text = r.text().await.unwrap();
        let events = parse_sse(&text);
        assert_eq!(events.len(), 3, "{p}: {text}");
        assert!(!text.contains(end_marker(p)));
        let last = events[2].json();
        match *p {
            "anthropic" => {
                assert_eq!(events[2].event.as_deref(), Some("error"));
                assert_eq!(last["type"], "error");
                assert_eq!(last["error"]["type"], "overloaded_error");
            }
            "gemini" => assert_eq!(last["error"]["status"], "UNAVAILABLE"),
            _ => assert_eq!(last["error"]["type"], "server_error"),
        }
    }
    // Non-streaming requests ignore after_events and get the plain error.
    let r = send(
        &c,
        "anthropic",
        false,
        Via::Header,
        "overloaded;after_events=2",
    )
    .await;
    assert_eq!(r.status(), 529);
}

#[tokio::test]
async fn queued_fault_filtered_by_model() {
    let c = start().await;
    c.handle
        .emulator()
        .queue_fault(&json!({"fault": "server_error", "model": "only-this"}))
        .unwrap();
    let other = json!({"model": "other", "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(c.openai(other).await.status(), 200);
    let gem = c
        .gemini(
            "only-this",
            false,
            json!({"contents": [{"parts": [{"text": "x"}]}]}),
        )
        .await;
    assert_eq!(gem.status(), 500);
    let again = json!({"model": "only-this", "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(c.openai(again).await.status(), 200);
}

#[tokio::test]
async fn content_filter_fault() {
    let c = start().await;
    for (i, p) in PROVIDERS.iter().enumerate() {
        let via = [Via::Header, Via::Directive, Via::Queue][i % 3];
        let v: Value = send(&c, p, false, via, "content_filter")
            .await
            .json()
            .await
            .unwrap();
        match *p {
            "anthropic" => {
                assert_eq!(v["stop_reason"], "refusal");
                let t = v["content"][0]["text"].as_str().unwrap();
                assert!(t.starts_with("Emulated") && t.len() < 40, "{t}");
            }
            "gemini" => {
                assert!(v.get("candidates").is_none());
                assert_eq!(v["promptFeedback"]["blockReason"], "SAFETY");
                assert_eq!(
                    v["usageMetadata"]["totalTokenCount"],
                    v["usageMetadata"]["promptTokenCount"]
                );
            }
            _ => {
                assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
                let t = v["choices"][0]["message"]["content"].as_str().unwrap();
                assert_eq!(v["usage"]["completion_tokens"], support::tok(t));
            }
        }
        // Streams end normally with the filtered finish.
        let text = send(&c, p, true, via, "content_filter")
            .await
            .text()
            .await
            .unwrap();
        let events = parse_sse(&text);
        match *p {
            "anthropic" => {
                let md = events
                    .iter()
                    .find(|e| e.event.as_deref() == Some("message_delta"))
                    .unwrap()
                    .json();
                assert_eq!(md["delta"]["stop_reason"], "refusal");
            }
            "gemini" => {
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].json()["promptFeedback"]["blockReason"], "SAFETY");
            }
            _ => assert!(text.contains("\"finish_reason\":\"content_filter\"")),
        }
    }
}

#[tokio::test]
async fn times_budget_lets_retries_succeed() {
    let c = start().await;
    for via in [Via::Header, Via::Directive] {
        for p in PROVIDERS {
            let spec = "rate_limit;retry_after=0.1;times=2";
            assert_eq!(
                send(&c, p, false, via, spec).await.status(),
                429,
                "{p} {via:?}"
            );
            assert_eq!(
                send(&c, p, false, via, spec).await.status(),
                429,
                "{p} {via:?}"
            );
            assert_eq!(
                send(&c, p, false, via, spec).await.status(),
                200,
                "{p} {via:?}"
            );
        }
    }
    // Reset clears the counters.
    c.client
        .post(c.url("/_emulator/reset"))
        .send()
        .await
        .unwrap();
    let r = send(&c, "openai", false, Via::Header, "server_error;times=1").await;
    assert_eq!(r.status(), 500);
    let r = send(&c, "openai", false, Via::Header, "server_error;times=1").await;
    assert_eq!(r.status(), 200);
}

/// `server_error;status=N` keeps the provider's error body under a gateway's 5xx, and
/// `html_error;status=N` serves the HTML page under any status (200: a captive portal).
#[tokio::test]
async fn status_parameter_of_server_and_html_errors() {
    let c = start().await;
    for provider in PROVIDERS {
        for via in [Via::Header, Via::Directive, Via::Queue] {
            for status in [502u16, 503, 504] {
                let r = send(
                    &c,
                    provider,
                    false,
                    via,
                    &format!("server_error;status={status}"),
                )
                .await;
                assert_eq!(r.status().as_u16(), status, "{provider} {via:?}");
                let v: Value = r.json().await.unwrap();
                assert!(v["error"].is_object(), "{provider}: {v}");
            }
            // An unusable status falls back to the default.
            let r = send(&c, provider, false, via, "server_error;status=99999").await;
            assert_eq!(r.status().as_u16(), 500, "{provider} {via:?}");
            for (spec, status) in [
                ("html_error", 502u16),
                ("html_error;status=503", 503),
                ("html_error;status=200", 200),
            ] {
                let r = send(&c, provider, true, via, spec).await;
                assert_eq!(r.status().as_u16(), status, "{provider} {via:?} {spec}");
                assert!(
                    r.headers()["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("text/html")
                );
                let body = r.text().await.unwrap();
                assert!(
                    body.starts_with("<html>") && body.contains(&status.to_string()),
                    "{body}"
                );
            }
        }
    }
}
