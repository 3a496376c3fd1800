//! End-to-end tests of the public `Client` against the provider emulator on 127.0.0.1.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gaterouter::config::{ProviderConfig, Secret};
use gaterouter::{ChatRequest, Client, Config, ErrorKind, FinishReason, Message, Tool};
use gaterouter_emulator::EmulatorHandle;
use serde_json::{Value, json};

const MODELS: &[&str] = &[
    "openai/gpt-4o-mini",
    "anthropic/claude-sonnet-4-5",
    "gemini/gemini-2.5-flash",
    "deepseek/deepseek-chat",
];

async fn emulator() -> EmulatorHandle {
    gaterouter_emulator::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("emulator starts")
}

fn fast_retry_config(base: &str) -> Config {
    let mut cfg = Config::for_emulator(base);
    cfg.retry.initial_backoff_ms = 10;
    cfg.retry.max_backoff_ms = 50;
    cfg
}

async fn queue_fault(base: &str, fault: Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new()
        .post(format!("{base}/_emulator/faults"))
        .json(&fault)
        .send()
        .await
        .expect("admin call");
    assert!(
        r.status().is_success(),
        "queueing {fault} failed: {}",
        r.status()
    );
}

async fn requests_seen(base: &str) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{base}/_emulator/requests"))
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    match v {
        Value::Array(a) => a,
        Value::Object(mut o) => o
            .remove("requests")
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn ask(model: &str, text: &str) -> ChatRequest {
    ChatRequest::new(
        model,
        vec![Message::system("You are terse."), Message::user(text)],
    )
}

#[tokio::test]
async fn chat_with_every_provider() {
    let emu = emulator().await;
    let client = Client::new(Config::for_emulator(&emu.base_url())).expect("client");
    for model in MODELS {
        let resp = client
            .chat(ask(model, "Why is the sky blue?"))
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_eq!(&resp.model, model);
        assert!(
            resp.text().contains("Why is the sky blue?"),
            "{model}: {}",
            resp.text()
        );
        assert_eq!(resp.finish_reason(), Some(FinishReason::Stop));
        let u = resp.usage;
        assert!(
            u.prompt_tokens > 0 && u.completion_tokens > 0,
            "{model}: {u:?}"
        );
        assert_eq!(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn streaming_with_every_provider_ends_with_usage() {
    let emu = emulator().await;
    let client = Client::new(Config::for_emulator(&emu.base_url())).expect("client");
    for model in MODELS {
        let whole = client
            .chat(ask(model, "Tell me a short story about a fox."))
            .await
            .expect("chat");
        let mut stream = client
            .chat_stream(ask(model, "Tell me a short story about a fox."))
            .await
            .expect("stream opens");
        let mut text = String::new();
        let mut chunks = Vec::new();
        while let Some(c) = stream.next().await {
            let c = c.unwrap_or_else(|e| panic!("{model}: {e}"));
            if let Some(t) = c.text() {
                text.push_str(t);
            }
            chunks.push(c);
        }
        assert!(
            chunks.len() >= 3,
            "{model}: expected several chunks, got {}",
            chunks.len()
        );
        let last = chunks.last().expect("a chunk");
        assert!(
            last.choices.is_empty(),
            "{model}: last chunk must only carry usage"
        );
        let usage = last.usage.expect("final usage");
        assert_eq!(text, whole.text(), "{model}");
        assert_eq!(
            usage.completion_tokens, whole.usage.completion_tokens,
            "{model}"
        );
        assert!(chunks.iter().all(|c| c.model == *model));
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn tool_calls_round_trip_on_every_provider() {
    let emu = emulator().await;
    let client = Client::new(Config::for_emulator(&emu.base_url())).expect("client");
    let tool = Tool::function(
        "get_weather",
        "Weather",
        json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
    );
    for model in MODELS {
        let mut req = ChatRequest::new(*model, vec![Message::user("Weather in Paris?")]);
        req.tools = vec![tool.clone()];
        let first = client
            .chat(req.clone())
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_eq!(
            first.finish_reason(),
            Some(FinishReason::ToolCalls),
            "{model}"
        );
        let call = first
            .tool_calls()
            .first()
            .unwrap_or_else(|| panic!("{model}: no tool call"))
            .clone();
        assert_eq!(call.function.name, "get_weather");
        assert!(call.arguments_json().expect("json args")["city"].is_string());
        // Streaming gives the same call.
        let streamed = client
            .chat_stream(req.clone())
            .await
            .expect("stream")
            .collect_response()
            .await
            .expect("collect");
        assert_eq!(
            streamed.tool_calls()[0].function.name,
            "get_weather",
            "{model}"
        );
        assert_eq!(
            streamed.tool_calls()[0].arguments_json().expect("json"),
            call.arguments_json().expect("json"),
            "{model}"
        );
        // Answer the call.
        req.messages.push(first.choices[0].message.to_message());
        req.messages
            .push(Message::tool(call.id.clone(), "18C and sunny"));
        let second = client
            .chat(req)
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_eq!(second.finish_reason(), Some(FinishReason::Stop), "{model}");
        assert!(!second.text().is_empty());
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn retries_429_honouring_retry_after() {
    let emu = emulator().await;
    let base = emu.base_url();
    let client = Client::new(fast_retry_config(&base)).expect("client");
    for model in MODELS {
        let provider = model.split('/').next().expect("provider");
        queue_fault(
            &base,
            json!({"fault": "rate_limit", "times": 1, "provider": provider, "retry_after": 0.3}),
        )
        .await;
        let before = requests_seen(&base).await.len();
        let started = Instant::now();
        let (resp, stats) = client
            .chat_with_stats(ask(model, "hello"))
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        assert!(
            started.elapsed() >= Duration::from_millis(280),
            "{model}: retry-after not honoured ({:?})",
            started.elapsed()
        );
        assert_eq!(stats.attempts, 2, "{model}");
        assert!(resp.text().contains("hello"));
        let after = requests_seen(&base).await.len();
        assert!(
            after >= before + 2 || after == 100,
            "{model}: expected two requests"
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn gives_up_after_max_retries_and_never_retries_400() {
    let emu = emulator().await;
    let base = emu.base_url();
    let client = Client::new(fast_retry_config(&base)).expect("client");
    queue_fault(
        &base,
        json!({"fault": "overloaded", "times": 5, "provider": "anthropic"}),
    )
    .await;
    let (_, stats_err) = (
        0,
        client
            .chat_with_stats(ask("anthropic/claude-sonnet-4-5", "x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(stats_err.kind(), ErrorKind::ProviderUnavailable);
    assert_eq!(stats_err.status(), Some(529));
    // Two faults are left in the queue: drain them so later calls are clean.
    queue_fault(
        &base,
        json!({"fault": "bad_request", "times": 1, "provider": "openai"}),
    )
    .await;
    let err = client
        .chat_with_stats(ask("openai/gpt-4o-mini", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    // The next call succeeds at once: the 400 consumed exactly one queued fault.
    let (_, stats) = client
        .chat_with_stats(ask("openai/gpt-4o-mini", "x"))
        .await
        .expect("clean call");
    assert_eq!(stats.attempts, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn cut_stream_is_stream_interrupted_for_every_provider() {
    let emu = emulator().await;
    let base = emu.base_url();
    let client = Client::new(Config::for_emulator(&base)).expect("client");
    for model in MODELS {
        let provider = model.split('/').next().expect("provider");
        queue_fault(
            &base,
            json!({"fault": "cut_stream", "after_events": 2, "provider": provider}),
        )
        .await;
        let mut stream = client
            .chat_stream(ask(model, "a long answer please"))
            .await
            .expect("opens");
        let mut last = None;
        while let Some(item) = stream.next().await {
            last = Some(item);
        }
        let err = last
            .expect("some item")
            .expect_err("the stream must end with an error");
        assert_eq!(err.kind(), ErrorKind::StreamInterrupted, "{model}: {err}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn typed_errors_for_bad_answers() {
    let emu = emulator().await;
    let base = emu.base_url();
    let mut cfg = fast_retry_config(&base);
    cfg.retry.max_retries = 0;
    let client = Client::new(cfg).expect("client");
    let cases = [
        ("malformed_json", ErrorKind::InvalidResponse),
        ("html_error", ErrorKind::ProviderUnavailable),
        ("auth", ErrorKind::Auth),
        ("context_length", ErrorKind::ContextLengthExceeded),
        ("server_error", ErrorKind::ProviderUnavailable),
        ("rate_limit", ErrorKind::RateLimited),
    ];
    for model in MODELS {
        let provider = model.split('/').next().expect("provider");
        for (fault, kind) in cases {
            queue_fault(
                &base,
                json!({"fault": fault, "times": 1, "provider": provider}),
            )
            .await;
            let err = client.chat(ask(model, "x")).await.expect_err(fault);
            assert_eq!(err.kind(), kind, "{model} {fault}: {err}");
            assert!(!err.to_string().is_empty());
        }
    }
    // A tool call whose arguments are not JSON.
    queue_fault(
        &base,
        json!({"fault": "bad_tool_args", "times": 1, "provider": "openai"}),
    )
    .await;
    let mut req = ask("openai/gpt-4o-mini", "weather?");
    req.tools = vec![Tool::function("f", "f", json!({"type":"object"}))];
    assert_eq!(
        client.chat(req).await.unwrap_err().kind(),
        ErrorKind::InvalidResponse
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn timeouts_are_typed() {
    let emu = emulator().await;
    let base = emu.base_url();
    let mut cfg = fast_retry_config(&base);
    cfg.retry.max_retries = 0;
    cfg.timeouts.request_ms = 300;
    cfg.timeouts.stream_idle_ms = 300;
    let client = Client::new(cfg).expect("client");
    queue_fault(
        &base,
        json!({"fault": "slow", "delay_ms": 2000, "times": 1, "provider": "openai"}),
    )
    .await;
    let started = Instant::now();
    let err = client
        .chat(ask("openai/gpt-4o-mini", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    queue_fault(
        &base,
        json!({"fault": "slow_stream", "delay_ms": 1500, "times": 1, "provider": "gemini"}),
    )
    .await;
    let mut stream = client
        .chat_stream(ask("gemini/gemini-2.5-flash", "x"))
        .await
        .expect("opens");
    let mut last = None;
    while let Some(item) = stream.next().await {
        last = Some(item);
    }
    assert_eq!(last.expect("item").unwrap_err().kind(), ErrorKind::Timeout);
    emu.shutdown().await;
}

#[tokio::test]
async fn bad_input_gives_typed_errors() {
    let emu = emulator().await;
    let base = emu.base_url();
    let client = Client::new(Config::for_emulator(&base)).expect("client");
    let e = client.chat(ask("nope/model", "x")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(e.to_string().contains("unknown provider `nope`"), "{e}");
    let e = client.chat(ask("gpt-4o", "x")).await.unwrap_err();
    assert!(e.to_string().contains("provider/model"), "{e}");
    let e = client
        .chat(ChatRequest::new("openai/gpt-4o", vec![]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(e.to_string().contains("messages"), "{e}");

    // A provider whose key variable is unset: a config error naming the variable.
    let mut cfg = Config::for_emulator(&base);
    cfg.providers.insert(
        "openai".into(),
        ProviderConfig {
            api_key_env: Some("GATEROUTER_E2E_UNSET_KEY".into()),
            api_key: None,
            ..cfg.providers["openai"].clone()
        },
    );
    let client = Client::new(cfg).expect("client");
    let e = client.chat(ask("openai/gpt-4o", "x")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("GATEROUTER_E2E_UNSET_KEY"), "{e}");

    // A refused key.
    let mut cfg = Config::for_emulator(&base);
    cfg.providers
        .get_mut("anthropic")
        .expect("anthropic")
        .api_key = Some(Secret::new("bad-key"));
    let e = Client::new(cfg)
        .expect("client")
        .chat(ask("anthropic/claude-haiku-4-5", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(
        !e.to_string().contains("bad-key"),
        "the key must not leak into errors: {e}"
    );

    // Nothing listening: provider unavailable, not a panic or a hang.
    let mut cfg = Config::for_emulator("http://127.0.0.1:9");
    cfg.retry.max_retries = 0;
    let e = Client::new(cfg)
        .expect("client")
        .chat(ask("openai/gpt-4o", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    emu.shutdown().await;
}

#[test]
fn bad_config_names_the_field() {
    let e = Client::from_toml_str("[timeouts]\nrequest_msec = 5\n", "app.toml").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let s = e.to_string();
    assert!(
        s.contains("app.toml") && s.contains("timeouts") && s.contains("request_msec"),
        "{s}"
    );
}

#[tokio::test]
async fn sends_what_the_provider_expects() {
    let emu = emulator().await;
    let base = emu.base_url();
    let client = Client::new(Config::for_emulator(&base)).expect("client");
    let mut req = ask("anthropic/claude-sonnet-4-5", "hi");
    req.max_tokens = None;
    client.chat(req).await.expect("chat");
    let seen = requests_seen(&base).await;
    let last = seen.last().expect("a request").to_string();
    assert!(
        last.contains("max_tokens"),
        "anthropic requests always carry max_tokens: {last}"
    );
    assert!(
        last.contains("You are terse."),
        "system prompt lifted: {last}"
    );
    assert!(
        !last.contains("emulator-key"),
        "secrets are masked in the emulator log"
    );
    emu.shutdown().await;
}

#[test]
fn readme_config_reference_parses() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    // The "Config reference" block: the toml block that sets `builtin_providers`.
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|b| b.contains("builtin_providers = "))
        .expect("the config reference block");
    let cfg = Config::from_toml_str(block, "README.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.routing.max_fallbacks, 2);
    assert!(cfg.providers.contains_key("my-vllm"));
}
