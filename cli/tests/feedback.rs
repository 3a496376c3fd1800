//! Outcome feedback end to end (issue 20, "Outcomes in the product"), against a real
//! collector (SQLite) and the provider emulator, with the README's minimal SDK config:
//! every response (and a stream's usage chunk) names its usage record; `feedback` signs
//! and spools a feedback record that travels with the usage records (same delivery
//! report); the collector stores it once per (org, id) and the `outcomes` report shows
//! the scores beside calls and spend, per request tag and per model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use gaterouter::usage::{FeedbackInput, FeedbackSource};
use gaterouter::{Client, ErrorKind};

mod common;

use common::{ask, env, eventually};

fn scored(record_id: &str, score: f64) -> FeedbackInput {
    FeedbackInput {
        record_id: record_id.to_owned(),
        score,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feedback_joins_its_call_and_shows_in_outcomes() {
    let e = env().await;
    let client = Client::start(e.cfg.clone()).await.unwrap();
    let mut ids = Vec::new();
    for scenario in ["support-reply", "support-reply", "triage"] {
        let mut req = ask("openai/gpt-4o-mini");
        req.metadata.insert("scenario".into(), scenario.into());
        let resp = client.chat(req).await.unwrap();
        ids.push(
            resp.usage_record_id
                .clone()
                .expect("a response names its usage record"),
        );
    }
    // A stream names its record on the chunk that carries the usage.
    let mut req = ask("anthropic/claude-haiku-4-5");
    req.metadata.insert("scenario".into(), "triage".into());
    let mut stream = client.chat_stream(req).await.unwrap();
    let mut stream_id = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if chunk.usage.is_some() {
            stream_id.clone_from(&chunk.usage_record_id);
        }
    }
    let stream_id = stream_id.expect("the usage chunk names the record");
    assert!(!ids.contains(&stream_id));

    client
        .feedback(FeedbackInput {
            label: Some("thumbs_up".into()),
            ..scored(&ids[0], 1.0)
        })
        .unwrap();
    client.feedback(scored(&ids[1], 0.5)).unwrap();
    client.feedback(scored(&ids[2], 0.0)).unwrap();
    client
        .feedback(FeedbackInput {
            source: FeedbackSource::Evaluator,
            ..scored(&stream_id, 1.0)
        })
        .unwrap();
    // Bad input: a typed error naming the field, nothing spooled.
    for (bad, field) in [
        (scored(&ids[0], 1.5), "score"),
        (scored(&ids[0], f64::NAN), "score"),
        (scored("not-a-record", 1.0), "record_id"),
    ] {
        let err = client.feedback(bad).unwrap_err();
        assert!(
            matches!(&err, gaterouter::Error::InvalidRequest { field: Some(f), .. } if f == field),
            "{err:?}"
        );
    }
    let report = client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(
        (report.delivered, report.refused),
        (8, 0),
        "4 calls + 4 feedback records: {report:?}"
    );

    let v = e.get("/v1/analytics/outcomes?by=tag:scenario").await;
    let row = |g: &str| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == g)
            .cloned()
            .unwrap_or_else(|| panic!("no {g}: {v}"))
    };
    let (support, triage) = (row("support-reply"), row("triage"));
    assert_eq!(
        (
            support["calls"].as_i64(),
            support["rated_calls"].as_i64(),
            support["mean_score"].as_f64()
        ),
        (Some(2), Some(2), Some(0.75)),
        "{v}"
    );
    assert_eq!(
        (
            triage["calls"].as_i64(),
            triage["rated_calls"].as_i64(),
            triage["mean_score"].as_f64()
        ),
        (Some(2), Some(2), Some(0.5)),
        "{v}"
    );
    assert!(support["spend_micros"].as_i64().unwrap() > 0, "{v}");
    let by_model = e.get("/v1/analytics/outcomes?by=model").await;
    let haiku = by_model["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "claude-haiku-4-5")
        .cloned()
        .unwrap_or_else(|| panic!("{by_model}"));
    assert_eq!(haiku["mean_score"].as_f64(), Some(1.0), "{by_model}");

    // A second feedback on the same call counts with the mean of its ratings.
    client.feedback(scored(&ids[2], 1.0)).unwrap();
    let report = client.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!((report.delivered, report.refused), (9, 0), "{report:?}");
    eventually("the second rating is averaged in", || async {
        let v = e.get("/v1/analytics/outcomes?by=tag:scenario").await;
        let t = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == "triage")
            .cloned()
            .unwrap_or_default();
        if t["mean_score"].as_f64() == Some(0.75) {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    })
    .await;
    println!("FEEDBACK: 4 calls, 5 ratings delivered with them; outcomes by scenario {v}");
    client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feedback_without_usage_records_is_a_config_error() {
    let e = env().await;
    let mut cfg = e.cfg.clone();
    cfg.reporting.mode = gaterouter::usage::ReportingMode::Off;
    let client = Client::new(cfg).unwrap();
    let resp = client.chat(ask("openai/gpt-4o-mini")).await.unwrap();
    assert_eq!(resp.usage_record_id, None);
    let err = client
        .feedback(scored("0193c1f0-7a2b-7c3d-8e4f-5a6b7c8d9e0f", 1.0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("feedback needs usage records"),
        "{err}"
    );
}

/// `gaterouter chat` prints the record id; `gaterouter feedback ID SCORE` signs it with
/// the config's key and reports its delivery; a bad score exits non-zero naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_rates_a_call_it_made() {
    let e = env().await;
    let dir = e._dir.path();
    let cfg = &e.cfg;
    let toml = format!(
        "[providers.openai]\nbase_url = \"{}/openai/v1\"\napi_key = \"emulator\"\n\n[identity]\napi_key_id = \"k_alice\"\n\n[reporting]\ncollector_url = \"{}\"\nsigning_key_file = \"{}\"\nspool_dir = \"{}\"\nbatch_max_age_ms = 50\n",
        e.emu.base_url(),
        e.collector.url(),
        cfg.reporting.signing_key_file.as_ref().unwrap().display(),
        dir.join("cli-spool").display()
    );
    let file = dir.join("gaterouter.toml");
    std::fs::write(&file, toml).unwrap();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_gaterouter"))
                .args(&args)
                .env_remove("GATEROUTER_CONFIG")
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let cfg_arg = file.display().to_string();
    let (ok, _, err) = run(vec![
        "--config".into(),
        cfg_arg.clone(),
        "chat".into(),
        "-m".into(),
        "openai/gpt-4o-mini".into(),
        "Say hi".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    let record = err
        .split("| record ")
        .nth(1)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no record id in: {err}"));
    assert_eq!(record.len(), 36, "{err}");
    let (ok, out, err) = run(vec![
        "--config".into(),
        cfg_arg.clone(),
        "feedback".into(),
        record.clone(),
        "0.9".into(),
        "--label".into(),
        "good".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("on record {record}"))
            && out.contains("refused: 0")
            && out.contains("pending: 0"),
        "{out}"
    );
    let (ok, _, err) = run(vec![
        "--config".into(),
        cfg_arg,
        "feedback".into(),
        record.clone(),
        "2".into(),
    ])
    .await
    .unwrap();
    assert!(
        !ok && err.contains("`score`") && err.contains("between 0 and 1"),
        "{err}"
    );
    eventually("the CLI's rating shows in outcomes", || async {
        let v = e.get("/v1/analytics/outcomes?by=key").await;
        let row = v["rows"]
            .as_array()
            .and_then(|r| r.first().cloned())
            .unwrap_or_default();
        if row["rated_calls"].as_i64() == Some(1) && row["mean_score"].as_f64() == Some(0.9) {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    })
    .await;
}

/// Implicit feedback (`[routing] implicit_feedback_window_ms`): re-sending the messages
/// an `auto` call answered to a pricier explicit model rates the `auto` call 0 (once);
/// a re-send to the same model does not, nor does anything when the window is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_to_a_pricier_model_rates_the_auto_call() {
    let e = env().await;
    for (window, expect_rated) in [(60_000, 1), (0, 0)] {
        let mut cfg = e.cfg.clone();
        cfg.routing.implicit_feedback_window_ms = window;
        cfg.reporting.spool_dir = Some(e._dir.path().join(format!("spool-{window}")));
        let client = Client::start(cfg).await.unwrap();
        let question = format!("Which is larger, 2^10 or 10^3? (window {window})");
        let mut auto = ask("auto");
        auto.messages = vec![gaterouter::Message::user(question.clone())];
        auto.metadata.insert("run".into(), format!("w{window}"));
        let first = client.chat(auto.clone()).await.unwrap();
        let answered = first.route.as_ref().unwrap().answered_by().to_owned();
        // The same model again (not pricier: not a correction), then a pricier one twice
        // (counted once).
        for model in [answered.as_str(), "openai/gpt-5", "openai/gpt-5"] {
            let mut again = auto.clone();
            again.model = model.into();
            client.chat(again).await.unwrap();
        }
        let report = client.flush(Duration::from_secs(10)).await.unwrap();
        assert_eq!(
            (report.delivered, report.refused),
            (4 + expect_rated, 0),
            "{answered}: {report:?}"
        );
        let v = e
            .get(&format!(
                "/v1/analytics/outcomes?by=model&tag=run:w{window}"
            ))
            .await;
        let row = |m: &str| {
            v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["group"] == m)
                .cloned()
                .unwrap_or_else(|| panic!("{m}: {v}"))
        };
        let first_model = answered.split_once('/').unwrap().1;
        assert_ne!(
            first_model, "gpt-5",
            "auto must answer a short question with a cheaper model: {v}"
        );
        let r = row(first_model);
        assert_eq!(r["rated_calls"].as_u64(), Some(expect_rated), "{v}");
        if expect_rated == 1 {
            assert_eq!(r["mean_score"].as_f64(), Some(0.0), "{v}");
        }
        assert_eq!(row("gpt-5")["rated_calls"].as_i64(), Some(0), "{v}");
        client.shutdown().await.unwrap();
    }
}
