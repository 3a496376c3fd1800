//! Routing that learns from each organization's outcomes (issue 20), the collector's
//! side: per-org settings served with the policy, learning runs (periodic and on
//! demand) that refit the org's router from its rated `auto` calls, promote new weights
//! only when their estimated quality beats the current ones, and sign them. A project
//! with enough rated calls of its own ([`MIN_PROJECT_OUTCOMES`]) is refitted too, and
//! its keys are served its weights (the org's until it has some).
//!
//! The data never includes text: `auto` records of a learning org carry the router's
//! structural features and salted hashed term buckets (`gaterouter::usage::RouteFeatures`),
//! the arm and its propensity; the outcome is the app's feedback for the same record.
//! The fit itself is `gaterouter::routing::offpolicy::learn_from_log` (per-arm
//! inverse-propensity ridge, doubly-robust cross-fitted APGR estimate). Records that also
//! carry the served model's propensity (SDKs explore inside a tier too) feed per-model
//! success models (`gaterouter::routing::offpolicy_models`), which rank the models inside
//! a tier; [`next_weights`] decides what is served next from the two fits.

use std::time::Duration;

use gaterouter::accounts::SignedWeights;
use gaterouter::routing::learning::row_of;
use gaterouter::routing::offpolicy::{LogLearnOptions, LogRows, LoggedCall, learn_from_log};
use gaterouter::routing::offpolicy_models::{
    ModelCall, ModelLearnOptions, ModelLearnReport, learn_success_models,
};
use gaterouter::routing::{SuccessModels, Weights};
use serde_json::{Value, json};

use crate::db::{Db, DbError};
use crate::store::learning as store;

/// Most rated calls one learning run reads (the newest).
pub const MAX_LEARN_CALLS: i64 = 50_000;

/// Rated calls a project needs before it gets weights of its own (fewer: it is served
/// the org's). Below a few hundred outcomes a refit is mostly noise (bench/RESULTS.md,
/// `route calibrate` on 10 % of dev), and the promotion rule would keep refusing it.
pub const MIN_PROJECT_OUTCOMES: i64 = 200;

/// What one refit did: the org's own weights, or one project's.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnRun {
    /// The org.
    pub org: String,
    /// The project refitted (`None`: the org's own weights).
    pub project: Option<String>,
    /// The learner's report (estimates, decision, reason) as JSON.
    pub report: Value,
    /// The weights promoted, signed, and now served there, if any.
    pub promoted: Option<SignedWeights>,
}

impl LearnRun {
    /// As the admin API answers it.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "org": self.org,
            "promoted": self.promoted.as_ref().map(|w| &w.version),
            "report": self.report,
        });
        if let (Some(o), Some(p)) = (v.as_object_mut(), &self.project) {
            o.insert("project".into(), json!(p));
        }
        v
    }
}

/// What one learning run of an org did: the org's refit, then its projects'.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgLearnRun {
    /// The refit of the org's own weights.
    pub org: LearnRun,
    /// The refits of the org's projects with at least [`MIN_PROJECT_OUTCOMES`] rated calls.
    pub projects: Vec<LearnRun>,
}

impl OrgLearnRun {
    /// As the admin API answers it: the org's run, with its projects' runs in `projects`.
    pub fn to_json(&self) -> Value {
        let mut v = self.org.to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "projects".into(),
                Value::Array(self.projects.iter().map(LearnRun::to_json).collect()),
            );
        }
        v
    }
}

/// Refit the org's router from its rated `auto` calls now, then each project's that has
/// at least [`MIN_PROJECT_OUTCOMES`] of its own; promote and sign new weights when they
/// are estimated better than the ones now served there (a project without weights of its
/// own is served the org's) and than length-only.
pub async fn learn_org(db: &Db, org: &str) -> Result<OrgLearnRun, DbError> {
    let Some(settings) = store::settings(db, org).await? else {
        return Ok(OrgLearnRun {
            org: LearnRun {
                org: org.to_owned(),
                project: None,
                report: json!({"promote": false, "outcomes": 0, "reason": format!("org {org} never turned routing learning on: PUT /v1/admin/orgs/{org}/routing first")}),
                promoted: None,
            },
            projects: Vec::new(),
        });
    };
    let org_active = store::active_weights(db, org, "").await?;
    let run = learn_scope(db, org, None, &settings, org_active.clone()).await?;
    // What the org's keys are served now: the weights just promoted, else the incumbent.
    let org_now = run.promoted.clone().or(org_active);
    let mut projects = Vec::new();
    for (project, _) in store::projects_with_outcomes(db, org, MIN_PROJECT_OUTCOMES).await? {
        let incumbent = match store::active_weights(db, org, &project).await? {
            Some(own) => Some(own),
            None => org_now.clone(),
        };
        projects.push(learn_scope(db, org, Some(&project), &settings, incumbent).await?);
    }
    Ok(OrgLearnRun { org: run, projects })
}

/// The learners' view of rated calls: one design row per request (a call and its shadow
/// answered one request: one key, one row), held once for both learners; the calls whose
/// recorded features do not fit the org's hashing `bits` are left out (the caller counts
/// them). Per-model learning reads only the calls whose model's propensity is known.
fn rated_log(
    rated: Vec<store::RatedCall>,
    bits: u8,
) -> gaterouter::Result<(LogRows, Vec<LoggedCall>, Vec<ModelCall>)> {
    use std::collections::hash_map::Entry;
    let mut requests = std::collections::HashMap::new();
    let mut rows = LogRows::new(bits)?;
    let mut model_calls = Vec::new();
    let mut calls = Vec::with_capacity(rated.len());
    for c in rated {
        let next = requests.len() as u64;
        let (call, row) = match requests.entry(c.request) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let Some(row) = row_of(&c.features, bits).and_then(|r| rows.push(r).ok()) else {
                    continue;
                };
                *e.insert((next, row))
            }
        };
        if let Some(mp) = c.model_propensity_ppm {
            model_calls.push(ModelCall {
                row,
                model: c.model,
                reward: c.reward,
                propensity: (mp as f64 / 1e6).clamp(1e-6, 1.0),
                call,
            });
        }
        calls.push(LoggedCall {
            row,
            strong: c.strong,
            reward: c.reward,
            propensity: (c.propensity_ppm as f64 / 1e6).clamp(1e-6, 1.0),
            call,
        });
    }
    Ok((rows, calls, model_calls))
}

/// One refit: the org's (`project` `None`, every rated call of the org) or one project's
/// (its rated calls), against `incumbent`, the weights served there now (builtin if none).
async fn learn_scope(
    db: &Db,
    org: &str,
    project: Option<&str>,
    settings: &store::Settings,
    incumbent: Option<SignedWeights>,
) -> Result<LearnRun, DbError> {
    let now = db.clock().now_ms();
    let rated = store::rated_calls(db, org, project, MAX_LEARN_CALLS).await?;
    let rated_n = rated.len();
    let bits = settings.bits;
    let current = incumbent
        .as_ref()
        .and_then(|w| Weights::from_json(&w.weights_json).ok())
        .or_else(|| Weights::builtin().ok());
    let opts = LogLearnOptions {
        hashing: settings.hashing(),
        ..LogLearnOptions::default()
    };
    let mopts = ModelLearnOptions {
        hashing: settings.hashing(),
        ..ModelLearnOptions::default()
    };
    // CPU-bound (ridge over up to 50k sparse rows): off the async workers.
    let fitted = tokio::task::spawn_blocking(move || {
        let current = current.ok_or_else(|| "the builtin weights do not load".to_owned())?;
        let (rows, calls, model_calls) = rated_log(rated, bits).map_err(|e| e.to_string())?;
        let (report, gain) =
            learn_from_log(&rows, &calls, &current, &opts).map_err(|e| e.to_string())?;
        let (models, success) =
            learn_success_models(&rows, &model_calls, &mopts).map_err(|e| e.to_string())?;
        let (next, why) = next_weights(&current, gain, success, &models);
        Ok::<_, String>((report, models, next, why, rated_n - calls.len()))
    })
    .await;
    let fitted = fitted.map_err(|e| e.to_string()).and_then(|r| r);
    let scope = project.unwrap_or("");
    let (mut report, models, weights, why, skipped) = match fitted {
        Ok(x) => x,
        Err(e) => {
            let report = json!({"promote": false, "reason": format!("learning failed: {e}")});
            store::record_run(db, org, scope, now, 0, &report, None).await?;
            return Ok(LearnRun {
                org: org.to_owned(),
                project: project.map(str::to_owned),
                report,
                promoted: None,
            });
        }
    };
    if weights.is_some() {
        report.promote = true;
        if !why.is_empty() {
            report.reason = format!("{}; {why}", report.reason);
        }
    }
    let mut report_json = serde_json::to_value(&report).unwrap_or(Value::Null);
    if let Some(o) = report_json.as_object_mut() {
        o.insert(
            "models".into(),
            serde_json::to_value(&models).unwrap_or(Value::Null),
        );
        o.insert("skipped_mismatched_features".into(), json!(skipped));
        // The models the promoted weights rank inside a tier by predicted success (what
        // the weights history shows beside the tier estimates).
        if let Some(w) = &weights {
            let served: Vec<&String> = w.success.iter().flat_map(|s| s.models.keys()).collect();
            o.insert("success_models".into(), json!(served));
        }
        o.insert(
            "previous_version".into(),
            json!(incumbent.as_ref().map(|w| w.version.clone())),
        );
    }
    let signed = match weights {
        Some(mut w) => {
            if let Some(p) = project {
                // A project's file names its scope (and so never shares a version, the
                // fingerprint, with the org's).
                w.description = format!("{} Project {p} of org {org}.", w.description);
            }
            let key = store::signing_key(db, now).await?;
            Some(store::sign(
                &key,
                org,
                &w.fingerprint(),
                u64::try_from(now).unwrap_or(0),
                &w.to_json(),
            ))
        }
        None => None,
    };
    store::record_run(
        db,
        org,
        scope,
        now,
        report.outcomes,
        &report_json,
        signed.as_ref(),
    )
    .await?;
    tracing::info!(org, project = scope, outcomes = report.outcomes, promoted = ?signed.as_ref().map(|w| &w.version), reason = %report.reason, "routing learning run");
    Ok(LearnRun {
        org: org.to_owned(),
        project: project.map(str::to_owned),
        report: report_json,
        promoted: signed,
    })
}

/// Most bytes of a served weights file: the policy carries it to every SDK, phones
/// included (issue 20's goal). Each text-dependent success model adds about 22 KB at
/// the default 14 bits, so past three or four of them the weakest are left out.
pub const MAX_WEIGHTS_BYTES: usize = 100 * 1024;

/// What a learning run serves next, from its two fits against `current` (the weights
/// served now): `gain`, new tier weights when the gain fit was promoted; `success`,
/// per-model success models when at least two models' outcomes are predicted better by
/// their features than by their average (`models`: that fit's report). Returns the
/// weights to promote (`None`: keep `current`) and why, in words.
///
/// - New tier weights carry the new success models, else the current ones (a run whose
///   per-model fit found nothing does not drop what an earlier run learned).
/// - Success models alone promote `current` with them only when `current` has none or
///   ranks another set of models: a refit of the same models every run would serve a
///   new version each interval for differences within the noise.
/// - The file stays within [`MAX_WEIGHTS_BYTES`]: the success models whose fit gained
///   least over their average are left out first (all of them when fewer than two
///   would remain).
pub fn next_weights(
    current: &Weights,
    gain: Option<Weights>,
    success: Option<SuccessModels>,
    models: &ModelLearnReport,
) -> (Option<Weights>, String) {
    let names = |s: &SuccessModels| s.models.keys().cloned().collect::<Vec<String>>();
    match (gain, success) {
        (Some(mut w), success) => {
            let fresh = success.is_some();
            w.success = success.or_else(|| current.success.clone());
            let dropped = fit_size(&mut w, models);
            let why = match (&w.success, fresh) {
                (Some(s), true) => {
                    format!("with per-model success models for {}", names(s).join(", "))
                }
                (Some(_), false) => "the per-model success models served now are kept".to_owned(),
                (None, _) => String::new(),
            };
            (Some(w), format!("{why}{dropped}"))
        }
        (None, Some(s)) => {
            let mut w = current.clone();
            w.success = Some(s);
            let dropped = fit_size(&mut w, models);
            match &w.success {
                Some(s) if current.success.as_ref().map(names) != Some(names(s)) => {
                    let why = format!(
                        "the tier weights are kept and per-model success models for {} are added{dropped}",
                        names(s).join(", ")
                    );
                    w.description = format!(
                        "{} Per-model success models learned from the organization's outcomes.",
                        w.description
                    );
                    (Some(w), why)
                }
                _ => (None, String::new()),
            }
        }
        (None, None) => (None, String::new()),
    }
}

/// Leave out `w`'s success models, least gain over their average first (as `models`
/// reports it; a model it does not report goes first), until the file fits
/// [`MAX_WEIGHTS_BYTES`]; none at all when fewer than two would remain. Returns what
/// was left out, in words (empty: nothing).
fn fit_size(w: &mut Weights, models: &ModelLearnReport) -> String {
    let gain = |m: &str| {
        models
            .models
            .iter()
            .find(|f| f.model == m)
            .map_or(f64::NEG_INFINITY, |f| f.constant_error - f.cv_error)
    };
    let mut left_out = Vec::new();
    while w.to_json().len() > MAX_WEIGHTS_BYTES {
        let Some(s) = w.success.as_mut() else { break };
        if s.models.len() <= 2 {
            left_out.extend(s.models.keys().cloned());
            w.success = None;
            break;
        }
        let weakest = s
            .models
            .keys()
            .min_by(|a, b| gain(a).total_cmp(&gain(b)))
            .cloned();
        if let Some(m) = weakest {
            s.models.remove(&m);
            left_out.push(m);
        }
    }
    if left_out.is_empty() {
        String::new()
    } else {
        format!(
            " (success models of {} left out to keep the weights within {} KB)",
            left_out.join(", "),
            MAX_WEIGHTS_BYTES / 1024
        )
    }
}

/// Learn for every org with learning on, every `interval`, until `stop`. With several
/// collectors on one database, an org whose last run is younger than half the interval
/// is skipped (another collector just ran it).
pub fn start(
    db: Db,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if interval.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = run_due(&db, interval).await {
                tracing::warn!(error = %e, "routing learning: the periodic run failed; retrying at the next interval");
            }
        }
    }))
}

async fn run_due(db: &Db, interval: Duration) -> Result<(), DbError> {
    let half = i64::try_from(interval.as_millis() / 2).unwrap_or(i64::MAX);
    for org in store::learning_orgs(db).await? {
        let last = store::last_run_ms(db, &org).await?;
        if last.is_some_and(|t| db.clock().now_ms().saturating_sub(t) < half) {
            continue;
        }
        learn_org(db, &org).await?;
    }
    Ok(())
}

/// An org's routing as `GET /v1/admin/orgs/{org}/routing` answers it: settings, counts
/// of calls with features, the served weights version, history, runs, public key.
pub async fn describe(db: &Db, org: &str) -> Result<Value, DbError> {
    let settings = store::settings(db, org).await?;
    let active = store::active_weights(db, org, "").await?;
    let key = store::signing_key(db, db.clock().now_ms()).await?;
    let (calls, explored) = store::feature_counts(db, org).await?;
    Ok(json!({
        "org": org,
        "settings": settings,
        "calls_with_features": calls,
        "explored_calls": explored,
        "active_version": active.map(|w| w.version),
        "project_versions": store::active_project_versions(db, org).await?,
        "public_key": store::public_key_b64(&key),
        "weights": store::weights_history(db, org).await?,
        "runs": store::learn_runs(db, org, 20).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaterouter::routing::SuccessModel;

    fn success(models: &[&str]) -> SuccessModels {
        SuccessModels {
            margin: 0.05,
            models: models
                .iter()
                .map(|m| {
                    let model = SuccessModel {
                        bias: 0.5,
                        weights: [0.0; gaterouter::routing::features::N_FEATURES],
                        lexical: None,
                    };
                    ((*m).to_owned(), model)
                })
                .collect(),
        }
    }

    fn report(gains: &[(&str, f64)]) -> ModelLearnReport {
        ModelLearnReport {
            outcomes: 0,
            models: gains
                .iter()
                .map(|(m, g)| gaterouter::routing::offpolicy_models::ModelFit {
                    model: (*m).to_owned(),
                    outcomes: 100,
                    cv_error: 0.2 - g,
                    constant_error: 0.2,
                    kept: true,
                })
                .collect(),
            kept: gains.len(),
            reason: String::new(),
        }
    }

    #[test]
    fn what_a_run_serves_next() {
        let r = &report(&[]);
        let current = Weights::builtin().unwrap();
        let mut gain = current.clone();
        gain.bias += 0.1;
        // Nothing learned: keep.
        assert!(next_weights(&current, None, None, r).0.is_none());
        // New tier weights carry the new success models...
        let (w, why) = next_weights(
            &current,
            Some(gain.clone()),
            Some(success(&["a/x", "b/y"])),
            r,
        );
        assert_eq!(w.unwrap().success, Some(success(&["a/x", "b/y"])));
        assert!(why.contains("a/x, b/y"), "{why}");
        // ...or keep the served ones when the per-model fit found none.
        let mut served = current.clone();
        served.success = Some(success(&["a/x", "b/y"]));
        let (w, _) = next_weights(&served, Some(gain), None, r);
        assert_eq!(w.unwrap().success, served.success);
        // Success models alone: added to weights without any...
        let (w, why) = next_weights(&current, None, Some(success(&["a/x", "b/y"])), r);
        let w = w.unwrap();
        assert_eq!((w.bias, w.weights), (current.bias, current.weights));
        assert_ne!(w.fingerprint(), current.fingerprint());
        assert!(why.contains("tier weights are kept"), "{why}");
        // ...or ranking another set of models; the same set again is not a new version.
        assert!(
            next_weights(&served, None, Some(success(&["a/x", "c/z"])), r)
                .0
                .is_some()
        );
        assert!(
            next_weights(&served, None, Some(success(&["a/x", "b/y"])), r)
                .0
                .is_none()
        );
    }

    #[test]
    fn the_served_file_stays_within_its_size() {
        // Five text-dependent success models at 14 bits (about 22 KB each) do not fit:
        // the weakest fits are left out until the file does.
        let current = Weights::builtin().unwrap();
        let names = ["a/v", "b/w", "c/x", "d/y", "e/z"];
        let mut s = success(&names);
        for (i, m) in s.models.values_mut().enumerate() {
            m.lexical = Some(gaterouter::routing::weights::LexicalWeights {
                bits: 14,
                salt: 7,
                weights: (0..1 << 14)
                    .map(|j| ((j * 7 + i * 13) % 255) as f32 / 100.0 - 1.2)
                    .collect(),
                binary: true,
            });
        }
        let r = report(&[
            ("a/v", 0.05),
            ("b/w", 0.01),
            ("c/x", 0.09),
            ("d/y", 0.02),
            ("e/z", 0.07),
        ]);
        let (w, why) = next_weights(&current, None, Some(s.clone()), &r);
        let w = w.unwrap();
        assert!(
            w.to_json().len() <= MAX_WEIGHTS_BYTES,
            "{}",
            w.to_json().len()
        );
        let kept: Vec<&str> = w
            .success
            .as_ref()
            .unwrap()
            .models
            .keys()
            .map(String::as_str)
            .collect();
        assert!(kept.len() >= 2 && kept.len() < 5, "{kept:?}");
        // The strongest fits stay, the weakest go first.
        assert!(kept.contains(&"c/x") && kept.contains(&"e/z"), "{kept:?}");
        assert!(!kept.contains(&"b/w"), "{kept:?}");
        assert!(why.contains("left out") && why.contains("b/w"), "{why}");
        // Fewer than two would fit: none are served, nothing is promoted.
        let mut two = s.clone();
        two.models.retain(|k, _| k == "a/v" || k == "b/w");
        for m in two.models.values_mut() {
            let l = m.lexical.as_mut().unwrap();
            l.bits = 16;
            l.weights = (0..1 << 16)
                .map(|j| (j % 251) as f32 / 100.0 - 1.2)
                .collect();
        }
        assert!(next_weights(&current, None, Some(two), &r).0.is_none());
    }
}
