//! `gaterouter demo`: a few calls across providers. Providers whose API key variable is
//! set are called for real; the others are served by the provider emulator, started
//! in-process on 127.0.0.1, so the demo runs on a fresh machine with no keys at all.

use std::time::Instant;

use clap::Args;
use futures_util::StreamExt;
use gaterouter::money::Micros;
use gaterouter::{ChatRequest, Client, Config, Error, Message, Tool};
use serde_json::json;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Use the emulator for every provider even when API keys are set.
    #[arg(long)]
    pub emulate_all: bool,
    /// Keep the embedded collector (and its dashboard) running until Ctrl-C even when
    /// stdout is not a terminal. In a terminal this is the default.
    #[arg(long, conflicts_with = "no_keep")]
    pub keep_running: bool,
    /// Exit as soon as the demo is done, even in a terminal (the dashboard stops too).
    #[arg(long)]
    pub no_keep: bool,
}

impl DemoArgs {
    /// Whether to keep the dashboard up after the demo: `--no-keep` says no,
    /// `--keep-running` says yes, otherwise only when stdout is a terminal.
    pub fn keep(&self, stdout_is_terminal: bool) -> bool {
        !self.no_keep && (self.keep_running || stdout_is_terminal)
    }
}

const ADMIN_TOKEN: &str = "demo-admin-token-not-for-production";

const PROVIDERS: &[(&str, &str, &str)] = &[
    ("openai", "OPENAI_API_KEY", "openai/gpt-4o-mini"),
    (
        "anthropic",
        "ANTHROPIC_API_KEY",
        "anthropic/claude-sonnet-4-5",
    ),
    ("gemini", "GEMINI_API_KEY", "gemini/gemini-2.5-flash"),
    ("deepseek", "DEEPSEEK_API_KEY", "deepseek/deepseek-chat"),
];

/// Run the demo.
pub async fn run(args: DemoArgs) -> Result<(), Error> {
    let real: Vec<&str> = PROVIDERS
        .iter()
        .filter(|(_, var, _)| {
            !args.emulate_all && std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
        })
        .map(|(name, _, _)| *name)
        .collect();
    let emulator = if real.len() < PROVIDERS.len() {
        let handle = gaterouter_emulator::start(
            "127.0.0.1:0"
                .parse()
                .map_err(|_| Error::config("demo", "bad address", "-"))?,
        )
        .await
        .map_err(|e| {
            Error::config(
                "demo",
                format!("cannot start the provider emulator: {e}"),
                "free a loopback port",
            )
        })?;
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
        let how = if real.contains(name) {
            "real API (key found)"
        } else {
            "local emulator"
        };
        println!("{name:<10} -> {how}");
    }
    if let Some(h) = &emulator {
        println!("emulator listening on {}", h.base_url());
    }
    // An embedded collector on SQLite; the client signs and reports every call to it.
    let collector = start_collector(&mut config).await?;
    println!(
        "collector listening on {} (SQLite under {})",
        collector.url(),
        collector_dir().display()
    );
    let client = Client::new(config)?;

    // 1. A plain question to each provider.
    for (_, _, model) in PROVIDERS {
        let started = Instant::now();
        let req = ChatRequest::new(
            *model,
            vec![Message::user("In one sentence: why is the sky blue?")],
        );
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
        let resp = client
            .chat(ChatRequest::new("auto", vec![Message::user(prompt)]))
            .await?;
        if let Some(route) = &resp.route {
            println!(
                "\n[auto] {prompt}\n  -> {} ({}), cost {}",
                resp.model,
                route.reason,
                usd(resp.cost.as_ref())
            );
        }
    }

    // 3. Streaming from Anthropic.
    println!("\n[anthropic/claude-sonnet-4-5, streaming]");
    let mut stream = client
        .chat_stream(ChatRequest::new(
            "anthropic/claude-sonnet-4-5",
            vec![Message::user("Count from one to five.")],
        ))
        .await?;
    print!("  ");
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if let Some(t) = chunk.text() {
            print!("{t}");
        }
        if let Some(u) = chunk.usage {
            println!(
                "\n  final usage: {} prompt + {} completion tokens",
                u.prompt_tokens, u.completion_tokens
            );
        }
    }

    // 4. A tool call round trip with Gemini.
    let weather = Tool::function(
        "get_weather",
        "Current weather for a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    );
    let mut req = ChatRequest::new(
        "gemini/gemini-2.5-flash",
        vec![Message::user("What's the weather in Paris?")],
    );
    req.tools = vec![weather];
    let first = client.chat(req.clone()).await?;
    println!("\n[gemini/gemini-2.5-flash, tools]");
    if let Some(call) = first.tool_calls().first() {
        println!(
            "  model called {}({})",
            call.function.name, call.function.arguments
        );
        req.messages.push(first.choices[0].message.to_message());
        req.messages.push(Message::tool(
            call.id.clone(),
            r#"{"temp_c": 18, "sky": "clear"}"#,
        ));
        let second = client.chat(req).await?;
        println!("  answer: {}", second.text());
    } else {
        println!("  answer (no tool call): {}", first.text());
    }

    // Deliver the usage records and ask the collector what it saw.
    let out = client.flush(std::time::Duration::from_secs(15)).await?;
    println!(
        "\nusage records delivered: {} ({} pending)",
        out.all_delivered(),
        out.pending
    );
    if out.refused > 0 {
        println!(
            "usage records refused by the collector: {} (last reason: {})",
            out.refused,
            out.last_refusal.as_deref().unwrap_or("?")
        );
    }
    print_analytics(&collector.url()).await?;
    println!(
        "dashboard: {}/dashboard (sign in with the demo admin token {ADMIN_TOKEN})",
        collector.url()
    );
    use std::io::IsTerminal as _;
    if args.keep(std::io::stdout().is_terminal()) {
        println!(
            "The dashboard stays up until you press Ctrl-C (run with --no-keep to exit at once)."
        );
        let _ = tokio::signal::ctrl_c().await;
        println!("stopping");
    } else {
        println!(
            "The demo is done and its dashboard stops now; run `gaterouter demo --keep-running` to keep it up until Ctrl-C."
        );
    }
    client.shutdown().await?;
    collector.shutdown().await;
    if let Some(h) = emulator {
        h.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(collector_dir());
    Ok(())
}

fn collector_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("gaterouter-demo-{}", std::process::id()))
}

fn demo_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::config("demo", format!("{what}: {e}"), "see the message")
}

/// Start a collector, register a small org and an API key, and point `config` at it.
async fn start_collector(
    config: &mut Config,
) -> Result<gaterouter_collector::CollectorHandle, Error> {
    let dir = collector_dir();
    std::fs::create_dir_all(&dir).map_err(|e| demo_error("cannot create the demo directory", e))?;
    let cfg = gaterouter_collector::CollectorConfig {
        listen: "127.0.0.1:0"
            .parse()
            .map_err(|e| demo_error("address", e))?,
        db: Some(format!("sqlite://{}", dir.join("collector.db").display())),
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        strongest_model: Some("anthropic/claude-sonnet-4-5".to_owned()),
        ..Default::default()
    };
    let collector = gaterouter_collector::spawn(cfg)
        .await
        .map_err(|e| demo_error("cannot start the collector", e))?;
    let (signer, public_key) = gaterouter::usage::generate_key();
    let key_file = dir.join("signing.key");
    std::fs::write(&key_file, signer.seed_base64().expose())
        .map_err(|e| demo_error("cannot write the demo key", e))?;
    let http = reqwest::Client::new();
    let base = collector.url();
    for (path, body) in [
        ("orgs", json!({"id": "acme", "name": "Acme Corp"})),
        (
            "departments",
            json!({"id": "research", "org_id": "acme", "name": "Research"}),
        ),
        (
            "projects",
            json!({"id": "search", "org_id": "acme", "department_id": "research", "name": "Semantic search"}),
        ),
        (
            "users",
            json!({"id": "alice", "org_id": "acme", "department_id": "research", "name": "Alice Martin"}),
        ),
        (
            "keys",
            json!({"id": "demo-key", "public_key": public_key, "org_id": "acme", "department_id": "research",
                   "project_id": "search", "user_id": "alice"}),
        ),
    ] {
        let r = http
            .post(format!("{base}/v1/admin/{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .map_err(|e| demo_error("admin call", e))?;
        if !r.status().is_success() {
            let status = r.status();
            return Err(demo_error(
                &format!("POST /v1/admin/{path} answered {status}"),
                r.text().await.unwrap_or_default(),
            ));
        }
    }
    config.identity = gaterouter::config::Identity {
        org: Some("acme".into()),
        department: Some("research".into()),
        project: Some("search".into()),
        group: None,
        user: Some("alice".into()),
        api_key_id: Some("demo-key".into()),
    };
    config.reporting.collector_url = Some(base);
    config.reporting.spool_dir = Some(dir.join("spool"));
    config.reporting.signing_key_file = Some(key_file);
    config.reporting.batch_max_age_ms = 200;
    Ok(collector)
}

async fn print_analytics(base: &str) -> Result<(), Error> {
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{base}/v1/analytics/{path}");
        async move {
            let r = http
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .map_err(|e| demo_error("analytics call", e))?;
            r.json::<serde_json::Value>()
                .await
                .map_err(|e| demo_error("analytics answer", e))
        }
    };
    let usd = |v: &serde_json::Value| Micros::from(v.as_u64().unwrap_or(0)).to_string();
    let summary = get("summary").await?;
    println!("\ncollector analytics (verified, deduplicated, cost recomputed by the collector):");
    if let Some(s) = summary["rows"].get(0) {
        println!(
            "  {} calls, {} tokens, spend {} ({} cost mismatches), {} active users, {} per active user",
            s["calls"],
            s["total_tokens"],
            usd(&s["spend_micros"]),
            s["cost_mismatches"],
            s["active_users"],
            usd(&s["spend_per_active_user_micros"])
        );
    }
    let models = get("models").await?;
    for m in models["rows"].as_array().into_iter().flatten() {
        let share = m["spend_share"].as_f64().unwrap_or(0.0) * 100.0;
        println!(
            "  {:<32} {:>3} calls  {:>10}  {share:5.1}% of spend",
            format!(
                "{}/{}",
                m["provider"].as_str().unwrap_or(""),
                m["model"].as_str().unwrap_or("")
            ),
            m["calls"],
            usd(&m["spend_micros"])
        );
    }
    Ok(())
}

fn usd(cost: Option<&gaterouter::pricing::Cost>) -> String {
    cost.map(|c| format!("${}", c.total_usd()))
        .unwrap_or_else(|| "unpriced".into())
}

#[cfg(test)]
mod tests {
    use super::DemoArgs;

    #[test]
    fn keeps_running_only_in_a_terminal_unless_told() {
        let a = |keep_running, no_keep| DemoArgs {
            emulate_all: true,
            keep_running,
            no_keep,
        };
        assert!(a(false, false).keep(true));
        assert!(!a(false, false).keep(false));
        assert!(a(true, false).keep(false));
        assert!(!a(false, true).keep(true));
    }
}
