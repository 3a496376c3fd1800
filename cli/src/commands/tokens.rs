//! `gaterouter tokens -m MODEL FILE` and `gaterouter cost -m MODEL --input N --output M`.

use std::path::PathBuf;

use clap::Args;
use gaterouter::pricing::{Catalog, CostOptions};
use gaterouter::tokens::count_text;
use gaterouter::{Error, Usage};

/// Arguments of `tokens`.
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// `provider/model` whose tokenizer counts.
    #[arg(short, long, default_value = "openai/gpt-4o")]
    pub model: String,
    /// Text file to count (`-` for standard input).
    pub file: PathBuf,
}

/// Run `tokens`.
pub fn tokens(args: TokensArgs) -> Result<(), Error> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.file)
    }
    .map_err(|e| Error::InvalidRequest {
        field: Some("file".into()),
        message: format!("cannot read {}: {e}", args.file.display()),
    })?;
    // Exact counts of many megabytes take a while: say so on a terminal.
    let pb = (text.len() > 1 << 20)
        .then(|| crate::progress::spinner(format!("counting {} MB", text.len() >> 20)));
    let c = count_text(&text, &args.model);
    if let Some(pb) = &pb {
        crate::progress::done(pb);
    }
    let how = if c.exact { "exact" } else { "estimate" };
    println!(
        "{} tokens ({how}, {} bytes, {})",
        c.tokens,
        text.len(),
        args.model
    );
    Ok(())
}

/// Arguments of `cost`.
#[derive(Debug, Args)]
pub struct CostArgs {
    /// `provider/model` to price.
    #[arg(short, long)]
    pub model: String,
    /// Prompt tokens (all of them, cached included).
    #[arg(long)]
    pub input: u64,
    /// Completion tokens (reasoning included).
    #[arg(long, default_value_t = 0)]
    pub output: u64,
    /// Of the prompt tokens, read from cache.
    #[arg(long, default_value_t = 0)]
    pub cached: u64,
    /// Of the prompt tokens, written to cache.
    #[arg(long, default_value_t = 0)]
    pub cache_write: u64,
    /// Of the completion tokens, reasoning.
    #[arg(long, default_value_t = 0)]
    pub reasoning: u64,
    /// Price at the batch API's discount.
    #[arg(long)]
    pub batch: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `cost`.
pub fn cost(catalog: &Catalog, args: CostArgs) -> Result<(), Error> {
    let usage = Usage::new(
        args.input,
        args.output,
        args.cached,
        args.cache_write,
        args.reasoning,
    );
    let c = catalog.cost(
        &usage,
        &args.model,
        CostOptions {
            batch: args.batch,
            cache_write_1h: false,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
        return Ok(());
    }
    let usd = |m: u64| gaterouter::money::Micros::from(m).to_string();
    println!(
        "{}: {} (priced as {})",
        args.model,
        usd(c.total_micros),
        c.priced_as
    );
    println!(
        "  input {}  cached {}  cache write {}  output {}  reasoning {}",
        usd(c.input_micros),
        usd(c.cached_input_micros),
        usd(c.cache_write_micros),
        usd(c.output_micros),
        usd(c.reasoning_micros)
    );
    if let Some(t) = c.tier_above_input_tokens {
        println!("  long-context tier (prompt above {t} tokens)");
    }
    Ok(())
}
