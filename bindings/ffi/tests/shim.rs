//! The shim end to end from Rust (the foreign-language suites live in bindings/kotlin):
//! records in, records out, the listener contract, and error mapping, against the emulator.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use gaterouter_ffi::types::{ChatChunk, ChatMessage, ChatRequest, FinishReason, Role, Usage};
use gaterouter_ffi::{ChatStreamListener, GateRouterClient, GateRouterError};

fn emulator() -> gaterouter_emulator::BlockingHandle {
    gaterouter_emulator::start_blocking("127.0.0.1:0".parse().expect("addr"))
        .expect("emulator starts")
}

fn client(base: &str, extra: &str) -> Arc<GateRouterClient> {
    let mut toml = String::new();
    for (name, kind, path) in [
        ("openai", "openai", "/openai/v1"),
        ("anthropic", "anthropic", "/anthropic"),
        ("gemini", "gemini", "/gemini/v1beta"),
    ] {
        toml.push_str(&format!("[providers.{name}]\nkind = \"{kind}\"\nbase_url = \"{base}{path}\"\napi_key = \"emulator-key\"\n\n"));
    }
    toml.push_str(extra);
    GateRouterClient::from_config_toml(toml).expect("config")
}

fn request(model: &str, text: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: Some(text.into()),
            images: vec![],
            name: None,
            tool_calls: vec![],
            tool_call_id: None,
        }],
        temperature: None,
        top_p: None,
        max_tokens: None,
        stop: vec![],
        tools: vec![],
        tool_choice: None,
        response_format_json: None,
        seed: None,
        user: None,
        metadata: Default::default(),
    }
}

#[derive(Debug)]
enum Event {
    Chunk(ChatChunk),
    Complete(Option<Usage>),
    Error(GateRouterError),
}

struct Recorder(Mutex<mpsc::Sender<Event>>);

impl ChatStreamListener for Recorder {
    fn on_chunk(&self, chunk: ChatChunk) {
        let _ = self.0.lock().expect("lock").send(Event::Chunk(chunk));
    }
    fn on_complete(&self, usage: Option<Usage>) {
        let _ = self.0.lock().expect("lock").send(Event::Complete(usage));
    }
    fn on_error(&self, error: GateRouterError) {
        let _ = self.0.lock().expect("lock").send(Event::Error(error));
    }
}

/// Runs a stream to its end; returns the events in order.
fn stream(client: &GateRouterClient, req: ChatRequest) -> Vec<Event> {
    let (tx, rx) = mpsc::channel();
    client
        .chat_stream(req, Arc::new(Recorder(Mutex::new(tx))))
        .expect("stream starts");
    let mut events = Vec::new();
    loop {
        let ev = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("stream ends in time");
        let end = !matches!(ev, Event::Chunk(_));
        events.push(ev);
        if end {
            return events;
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // The foreign side's executor, played by a plain single-thread runtime without IO:
    // the shim must not need the caller to provide a reactor.
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// tests/vectors/routing_weights_version.json: the builtin router weights' fingerprint,
/// which the Python, Node, Kotlin and Swift suites expect on an `auto` decision.
fn builtin_weights_version_vector() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/routing_weights_version.json"
    );
    let text = std::fs::read_to_string(path).expect("read the vector");
    let v: serde_json::Value = serde_json::from_str(&text).expect("vector JSON");
    v["builtin_weights_version"]
        .as_str()
        .expect("builtin_weights_version")
        .to_owned()
}

#[test]
fn auto_decisions_name_the_builtin_weights_version() {
    // The vector cannot go stale: it must be the builtin weights' fingerprint.
    let builtin = gaterouter::routing::Weights::builtin()
        .expect("builtin weights")
        .fingerprint();
    assert_eq!(
        builtin_weights_version_vector(),
        builtin,
        "tests/vectors/routing_weights_version.json is stale: set builtin_weights_version to {builtin}"
    );
    // Routing sends nothing: an unreachable base URL will do.
    let c = client("http://127.0.0.1:9", "");
    let auto = c
        .route(request("auto", "Hi! How are you today?"))
        .expect("route");
    assert_eq!(auto.weights_version.as_deref(), Some(builtin.as_str()));
    // No organization policy, so no learning.
    assert_eq!(auto.learning, None);
    let explicit = c
        .route(request("openai/gpt-4o-mini", "hello"))
        .expect("route");
    assert_eq!(explicit.weights_version, None);
    assert_eq!(explicit.learning, None);
}

#[test]
fn chat_and_stream_agree() {
    let emu = emulator();
    let c = client(&emu.base_url(), "");
    for model in [
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4-5",
        "gemini/gemini-2.5-flash",
    ] {
        let whole = block_on(c.chat(request(model, "Tell a fox story"))).expect("chat");
        assert_eq!(whole.finish_reason, Some(FinishReason::Stop));
        let events = stream(&c, request(model, "Tell a fox story"));
        let text: String = events
            .iter()
            .filter_map(|e| {
                if let Event::Chunk(c) = e {
                    c.text.clone()
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(text, whole.text, "{model}");
        match events.last() {
            Some(Event::Complete(Some(u))) => {
                assert_eq!(u.completion_tokens, whole.usage.completion_tokens)
            }
            other => panic!("{model}: stream did not complete with usage: {other:?}"),
        }
    }
}

#[test]
fn cut_stream_reports_stream_interrupted() {
    let emu = emulator();
    // No retries: a cut before the first byte would be retried and hide the cut.
    let c = client(&emu.base_url(), "[retry]\nmax_retries = 0\n");
    for model in [
        "anthropic/claude-sonnet-4-5",
        "gemini/gemini-2.5-flash",
        "openai/gpt-4o-mini",
    ] {
        // slow_stream makes the emulator flush the first events before it cuts; without
        // it the cut can beat the response headers out of the emulator.
        let prompt =
            "x [[emulator:slow_stream;delay_ms=20]] [[emulator:cut_stream;after_events=2]]";
        let events = stream(&c, request(model, prompt));
        assert!(
            matches!(
                events.last(),
                Some(Event::Error(GateRouterError::StreamInterrupted { .. }))
            ),
            "{model}: {events:?}"
        );
    }
}

#[test]
fn rate_limit_maps_with_retry_after() {
    let emu = emulator();
    let c = client(&emu.base_url(), "[retry]\nmax_retries = 0\n");
    let err = block_on(c.chat(request(
        "openai/gpt-4o",
        "x [[emulator:rate_limit;retry_after=2]]",
    )))
    .expect_err("429");
    assert!(
        matches!(&err, GateRouterError::RateLimited { info } if info.retry_after_ms == Some(2000) && info.status == Some(429) && info.provider.as_deref() == Some("openai")),
        "{err:?}"
    );
}

#[test]
fn mobile_options_spool_records_and_suspend_returns_at_once() {
    use gaterouter_ffi::{MobileOptions, NetworkClass, UsageSigningKey};
    let emu = emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let mut toml = format!(
        "[providers.openai]\nkind = \"openai\"\nbase_url = \"{}/openai/v1\"\napi_key = \"emulator-key\"\n\n",
        emu.base_url()
    );
    // A collector that is never reached: records must wait in the spool.
    toml.push_str("[identity]\norg = \"acme\"\n\n[reporting]\ncollector_url = \"http://127.0.0.1:9\"\nbatch_max_age_ms = 20\n");
    let key = UsageSigningKey::from_seed(vec![7; 32]).expect("key");
    let c = GateRouterClient::create(
        toml,
        MobileOptions {
            spool_dir: Some(spool.display().to_string()),
            signing_key: Some(key),
            api_key_id: Some("k_rust".into()),
            network_class: Some(NetworkClass::Offline),
            ..Default::default()
        },
    )
    .expect("create");
    block_on(c.chat(request("openai/gpt-4o-mini", "hello"))).expect("chat");
    let status = c.reporting_status().expect("reporting on");
    assert_eq!(
        (
            status.pending_records,
            status.network_class,
            status.suspended
        ),
        (1, NetworkClass::Offline, false)
    );
    assert_eq!(status.spool_dir, spool.display().to_string());
    let started = std::time::Instant::now();
    let flushed = block_on(c.flush(10_000)).expect("flush");
    assert!(
        !flushed.drained && flushed.pending == 1 && flushed.refused == 0,
        "{flushed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "flush waited while offline"
    );
    c.suspend();
    c.set_network_class(NetworkClass::Wifi);
    assert!(c.reporting_status().expect("status").suspended);
    // Nothing is sent while suspended, so the unreachable collector is never reported.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.reporting_status().expect("status").last_error, None);
}
