//! `gaterouter feedback RECORD_ID SCORE`: say how good a call's answer was.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use gaterouter::usage::{FeedbackInput, FeedbackSource};
use gaterouter::{Client, Config, Error};

/// `gaterouter feedback`.
#[derive(Debug, Clone, Args)]
pub struct FeedbackArgs {
    /// The call's usage record id (`usage_record_id` of the response; `gaterouter chat`
    /// prints it as `record …`).
    pub record_id: String,
    /// How good the answer was, from 0 (useless) to 1 (right).
    pub score: f64,
    /// A short label from your own vocabulary (e.g. thumbs_up, resolved). Never text
    /// of the answer.
    #[arg(long)]
    pub label: Option<String>,
    /// Who judged: user, evaluator or implicit.
    #[arg(long, default_value = "user", value_parser = ["user", "evaluator", "implicit"])]
    pub source: String,
    /// A tag `k=v` (repeatable).
    #[arg(long = "tag", value_name = "K=V")]
    pub tags: Vec<String>,
    /// Give up waiting for delivery after this many seconds (the feedback stays spooled).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Sign and spool the feedback with the config's key, deliver it with the spooled usage
/// records, and print what became of it (non-zero exit when refused or still pending).
pub async fn run(config: Config, args: FeedbackArgs) -> Result<(), Error> {
    let mut tags = BTreeMap::new();
    for t in &args.tags {
        let (k, v) = t.split_once('=').ok_or_else(|| Error::InvalidRequest {
            field: Some("tags".into()),
            message: format!("`--tag {t}` must be K=V, e.g. --tag scenario=support-reply"),
        })?;
        tags.insert(k.to_owned(), v.to_owned());
    }
    let source = FeedbackSource::parse(&args.source).map_err(|e| Error::InvalidRequest {
        field: Some("source".into()),
        message: e.to_string(),
    })?;
    let client = Client::new(config)?;
    let id = client.feedback(FeedbackInput {
        record_id: args.record_id.clone(),
        score: args.score,
        label: args.label,
        source,
        tags,
    })?;
    let out = client.flush(Duration::from_secs(args.timeout)).await?;
    client.shutdown().await?;
    println!(
        "feedback {id} on record {}: score {}, delivered: {}, pending: {}, refused: {}",
        args.record_id, args.score, out.delivered, out.pending, out.refused
    );
    for r in &out.refusals {
        println!("  refused {} record(s): {}", r.count, r.reason);
    }
    if out.refused > 0 {
        return Err(Error::config(
            "feedback",
            "the collector refused it (see the reason above)",
            "fix the cause named above; see `gaterouter spool status`",
        ));
    }
    if !out.drained {
        return Err(Error::config(
            "feedback",
            format!("{} record(s) still pending", out.pending),
            "it stays spooled: check the collector URL and that it is up, then `gaterouter spool flush`",
        ));
    }
    Ok(())
}
