//! `gaterouter demo`: a few calls across providers. Providers whose API key variable is
//! set are called for real; the others are served by the provider emulator, started
//! in-process on 127.0.0.1, so the demo runs on a fresh machine with no keys at all.

use std::time::Instant;

use clap::Args;
use futures_util::StreamExt;
use gaterouter::{ChatRequest, Client, Config, Error, Message, Tool};
use serde_json::json;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Use the emulator for every provider even when API keys are set.
    #[arg(long)]
    pub emulate_all: bool,
}

const PROVIDERS: &[(&str, &str, &str)] = &[
    ("openai", "OPENAI_API_KEY", "openai/gpt-4o-mini"),
    ("anthropic", "ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5"),
    ("gemini", "GEMINI_API_KEY", "gemini/gemini-2.5-flash"),
    ("deepseek", "DEEPSEEK_API_KEY", "deepseek/deepseek-chat"),
];

/// Run the demo.
pub async fn run(args: DemoArgs) -> Result<(), Error> {
    let real: Vec<&str> = PROVIDERS
        .iter()
        .filter(|(_, var, _)| !args.emulate_all && std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
        .map(|(name, _, _)| *name)
        .collect();
    let emulator = if real.len() < PROVIDERS.len() {
        let handle = gaterouter_emulator::start("127.0.0.1:0".parse().map_err(|_| Error::config("demo", "bad address", "-"))?)
            .await
            .map_err(|e| Error::config("demo", format!("cannot start the provider emulator: {e}"), "free a loopback port"))?;
        Some(handle)
    } else {
        None
    };
    let mut config = match &emulator {
        Some(h) => Config::for_emulator(&h.base_url()),
        None => Config::default(),
    };
    for name in &real {
        config.providers.remove(*name);
    }
    for (name, _, _) in PROVIDERS {
        let how = if real.contains(name) { "real API (key found)" } else { "local emulator" };
        println!("{name:<10} -> {how}");
    }
    if let Some(h) = &emulator {
        println!("emulator listening on {}", h.base_url());
    }
    let client = Client::new(config)?;

    // 1. A plain question to each provider.
    for (_, _, model) in PROVIDERS {
        let started = Instant::now();
        let req = ChatRequest::new(*model, vec![Message::user("In one sentence: why is the sky blue?")]);
        let resp = client.chat(req).await?;
        println!(
            "\n[{}] {} ms\n  {}\n  tokens: {} prompt ({} cached) + {} completion ({} reasoning), cost {}",
            resp.model,
            started.elapsed().as_millis(),
            resp.text(),
            resp.usage.prompt_tokens,
            resp.usage.cached_prompt_tokens,
            resp.usage.completion_tokens,
            resp.usage.reasoning_tokens,
            usd(resp.cost.as_ref())
        );
    }

    // 2. `auto`: the router picks by complexity and explains why.
    for prompt in [
        "Translate 'good morning' into Spanish.",
        "Prove step by step that there are infinitely many primes, then analyze the complexity of the sieve of Eratosthenes.",
    ] {
        let resp = client.chat(ChatRequest::new("auto", vec![Message::user(prompt)])).await?;
        if let Some(route) = &resp.route {
            println!("\n[auto] {prompt}\n  -> {} ({}), cost {}", resp.model, route.reason, usd(resp.cost.as_ref()));
        }
    }

    // 3. Streaming from Anthropic.
    println!("\n[anthropic/claude-sonnet-4-5, streaming]");
    let mut stream = client
        .chat_stream(ChatRequest::new("anthropic/claude-sonnet-4-5", vec![Message::user("Count from one to five.")]))
        .await?;
    print!("  ");
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if let Some(t) = chunk.text() {
            print!("{t}");
        }
        if let Some(u) = chunk.usage {
            println!("\n  final usage: {} prompt + {} completion tokens", u.prompt_tokens, u.completion_tokens);
        }
    }

    // 4. A tool call round trip with Gemini.
    let weather = Tool::function(
        "get_weather",
        "Current weather for a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    );
    let mut req = ChatRequest::new("gemini/gemini-2.5-flash", vec![Message::user("What's the weather in Paris?")]);
    req.tools = vec![weather];
    let first = client.chat(req.clone()).await?;
    println!("\n[gemini/gemini-2.5-flash, tools]");
    if let Some(call) = first.tool_calls().first() {
        println!("  model called {}({})", call.function.name, call.function.arguments);
        req.messages.push(first.choices[0].message.to_message());
        req.messages.push(Message::tool(call.id.clone(), r#"{"temp_c": 18, "sky": "clear"}"#));
        let second = client.chat(req).await?;
        println!("  answer: {}", second.text());
    } else {
        println!("  answer (no tool call): {}", first.text());
    }

    if let Some(h) = emulator {
        h.shutdown().await;
    }
    Ok(())
}

fn usd(cost: Option<&gaterouter::pricing::Cost>) -> String {
    cost.map(|c| format!("${}", c.total_usd())).unwrap_or_else(|| "unpriced".into())
}
