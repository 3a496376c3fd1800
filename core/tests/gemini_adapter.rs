//! The Gemini adapter reached the way the client reaches it: config -> resolved provider
//! -> `adapter_for(kind)`.

use gaterouter::config::{Config, ProviderKind};
use gaterouter::providers::{Target, adapter_for};
use gaterouter::sse::SseParser;
use gaterouter::{ChatRequest, FinishReason, Message, StreamAccumulator};

fn target() -> Target {
    let cfg = Config::for_emulator("http://127.0.0.1:8080/");
    let providers = cfg.resolved_providers("test").expect("config resolves");
    let provider = providers.get("gemini").expect("gemini provider").clone();
    let api_key = provider.api_key().expect("key");
    Target {
        provider,
        model: "gemini-2.5-flash".into(),
        model_id: "gemini/gemini-2.5-flash".into(),
        api_key,
    }
}

#[test]
fn request_url_comes_from_the_configured_base() {
    let t = target();
    let adapter = adapter_for(ProviderKind::Gemini);
    let req = ChatRequest::new(
        "gemini/gemini-2.5-flash",
        vec![Message::system("be brief"), Message::user("hi")],
    );
    let call = adapter.build_request(&req, &t, true).expect("builds");
    assert_eq!(
        call.url,
        "http://127.0.0.1:8080/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert!(
        call.headers
            .iter()
            .any(|(n, v)| n == "x-goog-api-key" && v == "emulator-key")
    );
    assert_eq!(
        call.body["systemInstruction"]["parts"][0]["text"],
        "be brief"
    );
    assert_eq!(call.body["contents"][0]["role"], "user");
}

#[test]
fn stream_fixture_folds_into_a_response() {
    let t = target();
    let mut decoder = adapter_for(ProviderKind::Gemini).stream_decoder(&t);
    let mut parser = SseParser::new();
    let mut acc = StreamAccumulator::default();
    let input = include_bytes!("fixtures/gemini/stream_text.sse");
    for piece in input.chunks(7) {
        for ev in parser.feed(piece).expect("valid SSE") {
            for chunk in decoder.on_event(&ev).expect("decodes") {
                acc.push(&chunk);
            }
        }
    }
    for chunk in decoder.finish().expect("complete") {
        acc.push(&chunk);
    }
    let resp = acc.finish().expect("folds");
    assert_eq!(resp.text(), "Bonjour le monde, ça va ? 🌍");
    assert_eq!(resp.finish_reason(), Some(FinishReason::Stop));
    assert_eq!(
        (
            resp.usage.prompt_tokens,
            resp.usage.completion_tokens,
            resp.usage.reasoning_tokens
        ),
        (6, 29, 21)
    );
}
