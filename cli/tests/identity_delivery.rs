//! Issue 16 against a real collector (SQLite) and the provider emulator:
//! - a minimal config (`identity.api_key_id`, a signing key, `collector_url`) loses no
//!   record: the SDK learns the key's binding from the policy and stamps it;
//! - a wrong `[identity]` value is a typed config error naming the field;
//! - a record the collector refuses is counted, reported with its reason, and releases
//!   the reservation of its call (budgets count each call once);
//! - a call the policy denies yields a `denied` record, counted as a denial per
//!   department and model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gaterouter::{Client, ErrorKind};
use serde_json::json;

mod common;

use common::{ask, env, eventually, tree};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minimal_config_records_carry_the_keys_binding_and_none_is_refused() {
    let e = env().await;
    let client = Client::start(e.cfg.clone()).await.unwrap();
    let id = client.identity();
    assert_eq!(
        (
            id.org.as_deref(),
            id.department.as_deref(),
            id.user.as_deref()
        ),
        (Some("acme"), Some("eng"), Some("alice")),
        "{id:?}"
    );
    let mut cost = 0;
    for _ in 0..3 {
        cost += client
            .chat(ask("openai/gpt-4o-mini"))
            .await
            .unwrap()
            .cost
            .unwrap()
            .total_micros;
    }
    let report = client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(
        (
            report.delivered,
            report.refused,
            report.pending,
            report.last_refusal.as_deref()
        ),
        (3, 0, 0, None),
        "{report:?}"
    );
    let v = e.get("/v1/analytics/breakdown?by=department").await;
    let eng = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "eng")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(eng["calls"], 3, "{v}");
    eventually("budget counts each call once", || async {
        let (used, reserved) = e.eng_budget().await;
        if (used, reserved) == (cost, 0) {
            Ok(())
        } else {
            Err(format!(
                "used {used} reserved {reserved}, calls cost {cost}"
            ))
        }
    })
    .await;
    println!(
        "RELIABILITY minimal-config: 3 calls, {} delivered, {} refused, used {cost} == cost",
        report.delivered, report.refused
    );
    client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_identity_value_is_a_config_error_naming_the_field() {
    let e = env().await;
    let mut cfg = e.cfg.clone();
    cfg.identity.department = Some("legal".into());
    let err = Client::start(cfg.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("identity.department")
            && text.contains("`legal`")
            && text.contains("department `eng`"),
        "{text}"
    );
    // Without waiting at start (or offline at start): the first call fails the same way,
    // before any provider is called.
    // (Client::start released the spool it had opened: the same directory works again.)
    let client = Client::new(cfg).unwrap();
    let err = client.chat(ask("openai/gpt-4o-mini")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("identity.department"), "{err}");
    assert_eq!(e.emu.emulator().stats()["total"].as_u64().unwrap(), 0);
    client.shutdown().await.unwrap();
    // A configured value equal to the binding is fine.
    let mut ok = e.cfg.clone();
    ok.identity.department = Some("eng".into());
    Client::start(ok).await.unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_record_is_reported_and_releases_its_reservation() {
    let e = env().await;
    let client = Client::start(e.cfg.clone()).await.unwrap();
    let kept = client
        .chat(ask("openai/gpt-4o-mini"))
        .await
        .unwrap()
        .cost
        .unwrap()
        .total_micros;
    assert!(
        client
            .flush(Duration::from_secs(10))
            .await
            .unwrap()
            .all_delivered()
    );
    // The next record waits in the spool while the admin moves the key to another
    // department: the collector then refuses it (scope), although its call was settled.
    client.suspend_reporting();
    let lost = client
        .chat(ask("openai/gpt-4o-mini"))
        .await
        .unwrap()
        .cost
        .unwrap()
        .total_micros;
    eventually("the second call's settled hold", || async {
        let (used, reserved) = e.eng_budget().await;
        if (used, reserved) == (kept, lost) {
            Ok(())
        } else {
            Err(format!("used {used} reserved {reserved}"))
        }
    })
    .await;
    e.apply(&tree(&e.public_key, "legal", None)).await;
    client.resume_reporting();
    let report = client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(report.drained && !report.all_delivered(), "{report:?}");
    assert_eq!(
        (report.delivered, report.refused, report.dead_letters),
        (1, 1, 1),
        "{report:?}"
    );
    let reason = report.last_refusal.clone().unwrap();
    assert!(
        reason.contains("scope violation") && reason.contains("department"),
        "{reason}"
    );
    assert_eq!(report.refusals.len(), 1);
    assert_eq!(
        client.take_refusal_warnings(),
        vec![reason.clone()],
        "each reason once"
    );
    assert!(client.take_refusal_warnings().is_empty());
    assert_eq!(client.usage_status().refused, 1);
    // Reconciliation: used + reserved = what the stored records justify (no call is open).
    eventually("the refused record's reservation is released", || async {
        let (used, reserved) = e.eng_budget().await;
        let stored = e.stored_eng_spend().await;
        if used + reserved == stored && reserved == 0 && used == kept {
            Ok(())
        } else {
            Err(format!(
                "used {used} + reserved {reserved} != stored {stored} (kept {kept}, lost {lost})"
            ))
        }
    })
    .await;
    println!(
        "RELIABILITY refused-record: refused {} ({reason}); eng budget used {kept} reserved 0 = stored records; double counts 0",
        report.refused
    );
    client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_denied_call_yields_a_denied_record_counted_per_department_and_model() {
    let e = env().await;
    let client = Client::start(e.cfg.clone()).await.unwrap();
    let err = client
        .chat(ask("gemini/gemini-2.5-flash"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permission, "{err}");
    // estimate_cost applies the same policy to an explicit model.
    let est = client
        .estimate_cost(&ask("gemini/gemini-2.5-flash"))
        .unwrap_err();
    assert_eq!(
        (est.kind(), est.permission_rule().map(|r| r.0)),
        (ErrorKind::Permission, Some("allow_models")),
        "{est}"
    );
    let err = client.chat(ask("openai/o3")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permission, "{err}");
    client.chat(ask("openai/gpt-4o-mini")).await.unwrap();
    assert_eq!(
        e.emu.emulator().stats()["total"].as_u64().unwrap(),
        1,
        "denied calls never reach a provider"
    );
    let report = client.flush(Duration::from_secs(10)).await.unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(report.delivered, 3);
    let s = e.get("/v1/analytics/summary").await;
    assert_eq!(
        (
            s["rows"][0]["calls"].as_u64(),
            s["rows"][0]["denials"].as_u64(),
            s["rows"][0]["errors"].as_u64()
        ),
        (Some(3), Some(2), Some(0)),
        "{s}"
    );
    let d = e.get("/v1/analytics/breakdown?by=department").await;
    let eng = d["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "eng")
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(eng["denials"], 2, "{d}");
    let m = e.get("/v1/analytics/breakdown?by=model").await;
    let denials = |model: &str| {
        m["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == model)
            .map(|r| r["denials"].clone())
    };
    assert_eq!(
        (
            denials("gemini-2.5-flash"),
            denials("o3"),
            denials("gpt-4o-mini")
        ),
        (Some(json!(1)), Some(json!(1)), Some(json!(0))),
        "{m}"
    );
    client.shutdown().await.unwrap();
}
