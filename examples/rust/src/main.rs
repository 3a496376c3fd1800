//! GateRouter from Rust against the provider emulator: chat, stream, `auto` with its
//! explanation, tools, and flush with the delivery report.
//!
//! ```sh
//! cargo run -p gaterouter-emulator -- --listen 127.0.0.1:8080 &
//! GATEROUTER_EMULATOR_URL=http://127.0.0.1:8080 cargo run -p gaterouter-example
//! ```
//!
//! In an app of your own, depend on `gaterouter` and `tokio`, and build the client from
//! your config file (`Client::from_toml_file("gaterouter.toml")`) instead of
//! `Config::emulated`.

use std::time::Duration;

use futures_util::StreamExt;
use gaterouter::{ChatRequest, Client, Config, Message, Tool};

#[tokio::main]
async fn main() -> Result<(), gaterouter::Error> {
    let base =
        std::env::var("GATEROUTER_EMULATOR_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    // The built-in providers pointed at the emulator (any key is accepted there).
    let client = Client::new(Config::emulated(&base))?;

    // 1. Chat: one call, cost in integer micro-dollars.
    let resp = client
        .chat(ChatRequest::new(
            "anthropic/claude-haiku-4-5",
            vec![Message::user("Say hi")],
        ))
        .await?;
    let cost = resp.cost.as_ref().map_or(0, |c| c.total_micros);
    println!(
        "chat: {} ({} tokens, {cost} micro-USD)",
        resp.text(),
        resp.usage.total_tokens
    );
    assert!(!resp.text().is_empty(), "empty answer");

    // 2. Stream: the last chunk carries usage and cost.
    let mut stream = client
        .chat_stream(ChatRequest::new(
            "gemini/gemini-2.5-flash",
            vec![Message::user("Count to 3")],
        ))
        .await?;
    let (mut text, mut usage) = (String::new(), None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        text.push_str(chunk.text().unwrap_or(""));
        if chunk.usage.is_some() {
            usage = chunk.usage;
        }
    }
    let usage = usage.ok_or_else(|| gaterouter::Error::InvalidResponse {
        provider: "gemini".into(),
        status: None,
        message: "the stream ended without usage".into(),
    })?;
    println!(
        "stream: {text} ({} completion tokens)",
        usage.completion_tokens
    );

    // 3. auto: the decision explained before calling (nothing is sent), then the call.
    let req = ChatRequest::new(
        "auto",
        vec![Message::user("Prove that sqrt(2) is irrational.")],
    );
    let decision = client.route(&req)?;
    let tier = decision.tier.map_or("-", |t| t.as_str());
    println!(
        "route: {} (tier {tier}, score {:.3}): {}",
        decision.chosen,
        decision.score.unwrap_or_default(),
        decision.reason
    );
    let resp = client.chat(req).await?;
    println!(
        "auto answered by {}",
        resp.route.as_ref().map_or("?", |r| r.chosen.as_str())
    );

    // 4. Tools: the model asks for a call, we answer it, the model finishes.
    let weather = Tool::function(
        "get_weather",
        "Weather of a city",
        serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    );
    let mut req = ChatRequest::new(
        "openai/gpt-4o-mini",
        vec![Message::user("Weather in Paris?")],
    );
    req.tools = vec![weather];
    let first = client.chat(req.clone()).await?;
    let calls = first.tool_calls().to_vec();
    println!(
        "tools: the model called {:?}",
        calls
            .iter()
            .map(|c| c.function.name.as_str())
            .collect::<Vec<_>>()
    );
    if let Some(call) = calls.first() {
        req.messages
            .push(Message::assistant_tool_calls(calls.clone()));
        req.messages.push(Message::tool(
            call.id.clone(),
            serde_json::json!({"celsius": 18}).to_string(),
        ));
        let second = client.chat(req).await?;
        println!("tools: final answer: {}", second.text());
    }

    // 5. Flush: the delivery report (delivered, pending, refused and why). Without a
    //    [reporting] section, as here, there are no records and it returns at once.
    let report = client.flush(Duration::from_secs(5)).await?;
    println!(
        "flush: drained={} delivered={} pending={} refused={}",
        report.drained, report.delivered, report.pending, report.refused
    );
    assert_eq!(
        report.refused, 0,
        "records refused: {:?}",
        report.last_refusal
    );
    println!("rust example: ok");
    Ok(())
}
