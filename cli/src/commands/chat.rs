//! `gaterouter chat -m MODEL [--stream] PROMPT`

use std::io::{Read, Write};

use clap::Args;
use futures_util::StreamExt;
use gaterouter::pricing::Cost;
use gaterouter::{ChatRequest, Client, Config, Error, Message, Usage};

/// Arguments of `chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// `provider/model` or `auto`.
    #[arg(short, long, default_value = "auto")]
    pub model: String,
    /// Stream the answer as it is generated.
    #[arg(long)]
    pub stream: bool,
    /// A system prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Upper bound on generated tokens.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Print the whole response as JSON.
    #[arg(long)]
    pub json: bool,
    /// The prompt; `-` reads standard input.
    pub prompt: String,
}

/// Run `chat`.
pub async fn run(config: Config, args: ChatArgs) -> Result<(), Error> {
    let client = Client::new(config)?;
    let prompt = if args.prompt == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::InvalidRequest {
                field: Some("prompt".into()),
                message: format!("cannot read standard input: {e}"),
            })?;
        s
    } else {
        args.prompt
    };
    let mut messages = Vec::new();
    if let Some(s) = args.system {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(prompt));
    let mut req = ChatRequest::new(args.model, messages);
    req.max_tokens = args.max_tokens;
    if args.stream {
        let mut stream = client.chat_stream(req).await?;
        let answered_by = stream.route().map(|d| d.answered_by().to_owned());
        let mut out = std::io::stdout().lock();
        let mut usage = None;
        let mut cost = None;
        let mut model = String::new();
        let mut record = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if args.json {
                let _ = writeln!(out, "{}", serde_json::to_string(&chunk).unwrap_or_default());
            } else if let Some(t) = chunk.text() {
                let _ = write!(out, "{t}");
                let _ = out.flush();
            }
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
            if chunk.cost.is_some() {
                cost = chunk.cost.clone();
            }
            if model.is_empty() {
                model.clone_from(&chunk.model);
            }
            if chunk.usage_record_id.is_some() {
                record.clone_from(&chunk.usage_record_id);
            }
        }
        if !args.json {
            let _ = writeln!(out);
            let _ = out.flush();
            summary(
                answered_by.as_deref().unwrap_or(&model),
                &model,
                usage.as_ref(),
                cost.as_ref(),
                record.as_deref(),
            );
        }
    } else {
        let resp = client.chat(req).await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&resp).unwrap_or_default()
            );
        } else {
            println!("{}", resp.text());
            for tc in resp.tool_calls() {
                println!(
                    "[tool call {}: {}({})]",
                    tc.id, tc.function.name, tc.function.arguments
                );
            }
            let routed = resp.route.as_ref().map(|d| d.answered_by().to_owned());
            summary(
                routed.as_deref().unwrap_or(&resp.model),
                &resp.model,
                Some(&resp.usage),
                resp.cost.as_ref(),
                resp.usage_record_id.as_deref(),
            );
            // Shadow sampling: the other arm's answer, on stderr (stdout stays the answer).
            if let Some(s) = resp.shadow.as_deref() {
                eprintln!(
                    "-- shadow sampling: the other arm also answered (rate it with `gaterouter feedback`):"
                );
                eprintln!("{}", s.text());
                let routed = s.route.as_ref().map(|d| d.answered_by().to_owned());
                summary(
                    routed.as_deref().unwrap_or(&s.model),
                    &s.model,
                    Some(&s.usage),
                    s.cost.as_ref(),
                    s.usage_record_id.as_deref(),
                );
            }
        }
    }
    Ok(())
}

/// One line on stderr after the answer (stdout stays the answer alone): the model that
/// answered (as routed, and the provider's own name when it differs), tokens, cost and
/// the usage record's id (for `gaterouter feedback`) when usage records are on.
fn summary(
    routed: &str,
    provider_model: &str,
    usage: Option<&Usage>,
    cost: Option<&Cost>,
    record: Option<&str>,
) {
    let mut line = format!("-- {routed}");
    if !provider_model.is_empty() && !routed.ends_with(provider_model) {
        line.push_str(&format!(" ({provider_model})"));
    }
    if let Some(u) = usage {
        line.push_str(&format!(
            " | {} prompt + {} completion tokens",
            u.prompt_tokens, u.completion_tokens
        ));
    }
    match cost {
        Some(c) => line.push_str(&format!(
            " | cost {}",
            gaterouter::money::Micros::from(c.total_micros)
        )),
        None => line.push_str(" | cost unknown (no price for this model)"),
    }
    if let Some(r) = record {
        line.push_str(&format!(" | record {r}"));
    }
    eprintln!("{line}");
}
